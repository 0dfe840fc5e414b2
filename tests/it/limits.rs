//! Input limits: a request that cannot be sent as given is INVALID_ARGUMENT naming the field,
//! with `google.rpc.BadRequest`, and nothing reaches the upstream; never a retryable or
//! server-side code.

use crate::every_operation::populate;
use crate::support::*;
use ack_gateway::proto;
use ack_gateway::table;
use prost_reflect::Kind;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tonic::Code;
use tonic_types::StatusExt as _;

/// The gateway and simulator with the given `[limits]` lines, upstream budget out of the way.
async fn harness(limits: &str) -> Harness {
    Harness::with_config(
        &format!(
            "[simulator]\nmode = \"always\"\ntask_duration = \"300ms\"\n\
             [rate_limit]\nupstream = {{ rate = 100000.0, burst = 100000 }}\n[limits]\n{limits}\n"
        ),
        Default::default(),
    )
    .await
}

/// The call was refused as INVALID_ARGUMENT naming `field` (message and BadRequest), and the
/// upstream received nothing.
fn assert_refused(h: &Harness, answer: Answer, field: &str, says: &str) {
    let err = answer.expect_err("refused");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().starts_with(&format!("{field}: ")),
        "{}",
        err.message()
    );
    assert!(err.message().contains(says), "{}", err.message());
    assert!(
        err.message().len() < 300,
        "the message does not echo the value"
    );
    let bad = err.get_details_bad_request().expect("BadRequest");
    assert_eq!(bad.field_violations[0].field, field);
    assert_eq!(h.sim().requests().len(), 0, "nothing reached the upstream");
}

#[tokio::test]
async fn a_3_mb_path_parameter_is_invalid_argument_and_never_sent() {
    let h = harness("").await;
    let id = "c".repeat(3 * 1024 * 1024);
    let answer = h
        .cs("DescribeClusterDetail", json!({ "cluster_id": id }))
        .await;
    assert_refused(&h, answer, "cluster_id", "over the gateway's limit of 1024");
    // 100 KB, and just over the limit, the same.
    for n in [100 * 1024, 1025] {
        let answer = h
            .cs(
                "DescribeClusterDetail",
                json!({ "cluster_id": "c".repeat(n) }),
            )
            .await;
        assert_refused(&h, answer, "cluster_id", &format!("is {n} bytes"));
    }
    // At the limit, it is sent (and the simulator knows no such cluster).
    let err = h
        .cs(
            "DescribeClusterDetail",
            json!({ "cluster_id": "c".repeat(1024) }),
        )
        .await
        .expect_err("unknown");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
}

#[tokio::test]
async fn an_oversized_query_value_or_url_is_invalid_argument_naming_the_field() {
    let h = harness("").await;
    let answer = h
        .cs(
            "DescribeClustersV1",
            json!({ "name": "n".repeat(100 * 1024) }),
        )
        .await;
    assert_refused(&h, answer, "name", "over the gateway's limit of 8192");
    // Each value within its limit, the URL over its own: the largest share is named.
    let answer = h
        .cs(
            "DescribeClustersV1",
            json!({ "name": "n".repeat(8000), "cluster_type": "t".repeat(7000), "profile": "p".repeat(2000) }),
        )
        .await;
    assert_refused(&h, answer, "name", "makes the URL");
    // Percent-encoding counts: 3000 multi-byte characters are 18000 bytes on the wire.
    let answer = h
        .cs("DescribeClustersV1", json!({ "name": "é".repeat(3000) }))
        .await;
    assert_refused(&h, answer, "name", "over the gateway's limit of 16384");
}

#[tokio::test]
async fn too_many_repeated_items_or_a_deep_struct_is_invalid_argument() {
    let h = harness("max_repeated_items = 100\nmax_json_depth = 8").await;
    let many: Vec<String> = (0..101).map(|i| format!("sg-{i}")).collect();
    let answer = h
        .cs(
            "DeleteCluster",
            json!({ "cluster_id": "c1", "retain_resources": many }),
        )
        .await;
    assert_refused(
        &h,
        answer,
        "retain_resources",
        "101 items, over the gateway's limit of 100",
    );

    let mut deep = json!("leaf");
    for _ in 0..9 {
        deep = json!({ "k": deep });
    }
    let answer = h
        .cs(
            "CreateClusterDiagnosis",
            json!({ "cluster_id": "c1", "target": { "t": deep } }),
        )
        .await;
    assert_refused(&h, answer, "target", "limit of 8 levels");
    // A free-form map with too many entries.
    let wide: serde_json::Map<String, Value> =
        (0..101).map(|i| (format!("k{i}"), json!(i))).collect();
    let answer = h
        .cs(
            "CreateClusterDiagnosis",
            json!({ "cluster_id": "c1", "target": wide }),
        )
        .await;
    assert_refused(&h, answer, "target", "101 entries");
}

/// The invariant, for every operation: whatever a string field holds (far too long, or control
/// characters), the answer is never UNAVAILABLE, INTERNAL or UNKNOWN; either the gateway refuses
/// it as INVALID_ARGUMENT, or it is sent as given and the upstream answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_string_value_makes_any_operation_fail_as_unavailable_internal_or_unknown() {
    let h = harness("").await;
    let table = table::builtin();
    let oversized = "x".repeat(70 * 1024);
    let hostile = "\u{0}\r\n\u{1b}[2J\u{7f}";
    let started = Instant::now();
    let mut calls = 0;
    let mut refused = 0;
    for op in table.operations() {
        let info = table.service(&op.service).expect("service");
        let service = format!("{}.{}", info.package, info.service);
        let desc =
            proto::message(&format!("{}.{}Request", info.package, op.name)).expect("request");
        let mut salt = 0;
        let base = populate(&desc, 0, &mut salt);
        let strings = desc
            .fields()
            .filter(|f| f.kind() == Kind::String && !f.is_map())
            .map(|f| (f.name().to_string(), f.is_list()));
        for (field, list) in strings {
            for value in [oversized.as_str(), hostile] {
                let mut request = base.clone();
                request[&field] = if list { json!([value]) } else { json!(value) };
                let answer = h
                    .call(
                        &service,
                        &op.name,
                        request,
                        &[],
                        Some(Duration::from_secs(10)),
                    )
                    .await;
                calls += 1;
                if let Err(e) = answer {
                    assert!(
                        !matches!(e.code(), Code::Unavailable | Code::Internal | Code::Unknown),
                        "{}.{field} = {:?}…: {e:?}",
                        op.name,
                        &value[..value.len().min(8)]
                    );
                    refused += usize::from(e.code() == Code::InvalidArgument);
                }
            }
        }
        h.sim().clear_requests();
    }
    assert!(calls > 800, "{calls} calls");
    assert!(refused > 0);
    eprintln!(
        "{calls} calls, {refused} INVALID_ARGUMENT, in {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn control_characters_in_path_and_query_are_sent_percent_encoded_as_given() {
    let h = harness("").await;
    let err = h
        .cs(
            "DescribeClusterDetail",
            json!({ "cluster_id": "c\u{0}\r\n1" }),
        )
        .await
        .expect_err("unknown cluster");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    h.cs("DescribeClustersV1", json!({ "name": "a\r\nb\u{0}" }))
        .await
        .expect("listed");
    let seen = h.sim().requests();
    assert_eq!(seen[0].raw_path, "/clusters/c%00%0D%0A1");
    assert!(
        seen[1]
            .query
            .contains(&("name".to_string(), "a\r\nb\u{0}".to_string())),
        "{:?}",
        seen[1].query
    );
}
