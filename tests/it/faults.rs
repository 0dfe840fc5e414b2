//! Upstream faults below the API (closed connections, cut or slow bodies, answers that are not
//! the API's JSON, redirects), over HTTP and HTTPS: each ends in a clean status within the
//! caller's deadline, reads are retried as the policy says, and a mutation is never sent twice.

use crate::support::*;
use crate::tls::{gateway_with, https_simulator, write, LOOPBACK};
use ack_gateway::simulator::{Fault, FaultKind, Simulator, SimulatorOptions};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tonic::Code;

/// The answer size limit the gateways below are configured with.
const LIMIT: usize = 1024 * 1024;

/// A simulator and a gateway against it, over HTTPS (a test CA in `ca_file`) or plain HTTP.
async fn setup(https: bool) -> (Simulator, Harness) {
    let keys = format!("max_response_bytes = {LIMIT}\n");
    if https {
        let pki = Pki::new();
        let sim = https_simulator(pki.leaf("simulator", LOOPBACK)).await;
        let ca = write("faults", "ca.pem", &pki.ca_pem);
        let h = gateway_with(&sim, Some(&ca), &keys).await;
        (sim, h)
    } else {
        let sim = simulator(SimulatorOptions::default()).await;
        let h = gateway_with(&sim, None, &keys).await;
        (sim, h)
    }
}

fn fault(op: &str, kind: FaultKind, times: usize) -> Fault {
    Fault {
        operation: Some(op.into()),
        kind,
        times,
        ..Fault::default()
    }
}

/// [`setup`], with a cluster to read (its id) and the request log cleared.
async fn setup_with_cluster(https: bool) -> (Simulator, Harness, String) {
    let (sim, h) = setup(https).await;
    let (c, _) = h
        .cs(
            "CreateCluster",
            json!({"name": "faulty", "region_id": "cn-hangzhou"}),
        )
        .await
        .expect("created");
    sim.clear_requests();
    let id = c["cluster_id"].as_str().expect("id").to_string();
    (sim, h, id)
}

/// A read of cluster `id`, and a mutation.
fn read_and_mutation(id: &str) -> [(&'static str, Value); 2] {
    [
        ("DescribeClusterDetail", json!({"cluster_id": id})),
        (
            "CreateCluster",
            json!({"name": "x", "region_id": "cn-hangzhou"}),
        ),
    ]
}

/// A read under `kind` once: retried, it succeeds, and the upstream saw it twice. A mutation
/// under `kind`: UNAVAILABLE, and the upstream saw it exactly once.
async fn read_retried_mutation_sent_once(kind: FaultKind) {
    for https in [false, true] {
        let (sim, h, id) = setup_with_cluster(https).await;

        sim.inject(fault("DescribeClusterDetail", kind, 1));
        let (detail, _) = h
            .cs("DescribeClusterDetail", json!({"cluster_id": id}))
            .await
            .unwrap_or_else(|e| panic!("{kind:?} https={https}: the read is retried: {e:?}"));
        assert_eq!(detail["name"], "faulty");
        assert_eq!(sim.requests_for("DescribeClusterDetail").len(), 2);

        sim.inject(fault("CreateCluster", kind, 3));
        let started = Instant::now();
        let err = h
            .cs(
                "CreateCluster",
                json!({"name": "once", "region_id": "cn-hangzhou"}),
            )
            .await
            .expect_err("the mutation's answer is lost");
        assert_eq!(
            err.code(),
            Code::Unavailable,
            "{kind:?} https={https}: {err:?}"
        );
        assert!(
            err.message().contains("transport error"),
            "{kind:?}: {}",
            err.message()
        );
        assert_eq!(
            sim.requests_for("CreateCluster").len(),
            1,
            "{kind:?} https={https}: a mutation that may have been applied is not sent again"
        );
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}

#[tokio::test]
async fn a_connection_closed_before_the_headers() {
    read_retried_mutation_sent_once(FaultKind::ResetBeforeHeaders).await;
}

#[tokio::test]
async fn a_connection_closed_after_the_headers() {
    read_retried_mutation_sent_once(FaultKind::ResetAfterHeaders).await;
}

#[tokio::test]
async fn a_body_shorter_than_its_content_length() {
    read_retried_mutation_sent_once(FaultKind::TruncatedBody).await;
}

#[tokio::test]
async fn a_body_that_trickles_past_the_deadline_ends_at_the_deadline() {
    let deadline = Duration::from_millis(600);
    for https in [false, true] {
        let (sim, h, id) = setup_with_cluster(https).await;
        for (op, req) in read_and_mutation(&id) {
            sim.inject(Fault {
                interval_ms: 100,
                ..fault(op, FaultKind::Trickle, 3)
            });
            let started = Instant::now();
            let err = h
                .call(CS_SERVICE, op, req, &[], Some(deadline))
                .await
                .expect_err("too slow");
            let took = started.elapsed();
            assert_eq!(err.code(), Code::DeadlineExceeded, "{op}: {err:?}");
            assert!(
                took < deadline + Duration::from_millis(300),
                "{op} https={https}: {took:?}"
            );
            assert_eq!(sim.requests_for(op).len(), 1, "{op} https={https}");
        }
    }
}

#[tokio::test]
async fn a_200_that_is_not_json_is_internal_and_not_retried() {
    for https in [false, true] {
        let (sim, h, id) = setup_with_cluster(https).await;
        for (op, req) in read_and_mutation(&id) {
            sim.inject(fault(op, FaultKind::NotJson, 3));
            let err = h.cs(op, req).await.expect_err("not JSON");
            assert_eq!(err.code(), Code::Internal, "{op}: {err:?}");
            assert!(err.message().contains("invalid JSON"), "{}", err.message());
            assert!(!err.message().contains("this is not JSON"));
            assert_eq!(sim.requests_for(op).len(), 1, "{op} https={https}");
        }
    }
}

#[tokio::test]
async fn an_html_error_page_is_unavailable_with_a_short_message() {
    for https in [false, true] {
        let (sim, h, id) = setup_with_cluster(https).await;

        // Reads are retried on 5xx, as on any 5xx: here every attempt gets the page.
        sim.inject(fault("DescribeClusterDetail", FaultKind::HtmlError, 3));
        let err = h
            .cs("DescribeClusterDetail", json!({"cluster_id": id}))
            .await
            .expect_err("an error page");
        assert_eq!(err.code(), Code::Unavailable);
        assert!(
            err.message()
                .contains("answered HTTP 502: an HTML page (502 Bad Gateway)"),
            "{}",
            err.message()
        );
        assert!(err.message().len() < 200, "{}", err.message());
        assert!(!err.message().contains('<'));
        assert_eq!(sim.requests_for("DescribeClusterDetail").len(), 3);

        sim.inject(Fault {
            status: 503,
            ..fault("CreateCluster", FaultKind::HtmlError, 3)
        });
        let err = h
            .cs(
                "CreateCluster",
                json!({"name": "x", "region_id": "cn-hangzhou"}),
            )
            .await
            .expect_err("an error page");
        assert_eq!(err.code(), Code::Unavailable);
        assert!(err.message().contains("HTTP 503"), "{}", err.message());
        assert_eq!(sim.requests_for("CreateCluster").len(), 1);
    }
}

#[tokio::test]
async fn an_answer_over_max_response_bytes_is_internal_and_not_retried() {
    for https in [false, true] {
        let (sim, h, id) = setup_with_cluster(https).await;

        sim.inject(Fault {
            size: (LIMIT / 2) as u64,
            ..fault("DescribeClusterDetail", FaultKind::Oversized, 1)
        });
        h.cs("DescribeClusterDetail", json!({"cluster_id": id}))
            .await
            .expect("an answer under the limit is read");

        sim.inject(Fault {
            size: 4 * LIMIT as u64,
            ..fault("DescribeClusterDetail", FaultKind::Oversized, 3)
        });
        let started = Instant::now();
        let err = h
            .cs("DescribeClusterDetail", json!({"cluster_id": id}))
            .await
            .expect_err("too large");
        assert_eq!(err.code(), Code::Internal);
        assert!(
            err.message().contains(&format!(
                "answered more than {LIMIT} bytes (upstream.max_response_bytes)"
            )),
            "{}",
            err.message()
        );
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(sim.requests_for("DescribeClusterDetail").len(), 2);
    }
}

#[tokio::test]
async fn a_redirect_is_not_followed() {
    for https in [false, true] {
        let (sim, h) = setup(https).await;
        sim.inject(Fault {
            headers: [(
                "location".to_string(),
                "https://cs.moved.example/clusters?Signature=abc#x".to_string(),
            )]
            .into(),
            ..fault("DescribeClustersV1", FaultKind::Redirect, 3)
        });
        let err = h
            .cs("DescribeClustersV1", json!({}))
            .await
            .expect_err("not followed");
        assert_eq!(err.code(), Code::Internal);
        assert!(
            err.message().contains(
                "answered HTTP 302: a redirect to https://cs.moved.example/clusters, not followed"
            ),
            "{}",
            err.message()
        );
        assert!(!err.message().contains("Signature"));
        assert_eq!(sim.requests_for("DescribeClustersV1").len(), 1);
    }
}

#[tokio::test]
async fn faults_can_be_injected_over_http() {
    let sim = simulator(SimulatorOptions::default()).await;
    let client = reqwest::Client::new();
    let injected = client
        .post(format!("{}/__simulator/faults", sim.endpoint()))
        .json(&json!({"operation": "DescribeClustersV1", "kind": "reset_before_headers"}))
        .send()
        .await
        .expect("injected");
    assert_eq!(injected.status(), 204);
    let h = gateway_with(&sim, None, "").await;
    h.cs("DescribeClustersV1", json!({}))
        .await
        .expect("retried after the closed connection");
    assert_eq!(sim.requests_for("DescribeClustersV1").len(), 2);
}
