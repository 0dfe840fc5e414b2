//! WaitFor over real sockets, gRPC and Connect: waits on reads of the table (a cluster
//! running, an inspection report completing, every report of a list, a cluster gone), each
//! change of the value streamed, failed values ending it ABORTED, NOT_FOUND, the request's
//! timeout, refused requests naming their field, the caller's grants, and one poller for
//! identical waits however many there are.

use crate::http_clients::connect_stream;
use crate::support::*;
use crate::watch_nodepool::{
    assert_well_formed, client, drain, harness, kind, phase, running_cluster, Events, INITIAL_MS,
};
use ack_gateway::access::token_hash;
use ack_gateway::proto::gateway::watch_service_client::WatchServiceClient;
use ack_gateway::proto::gateway::WatchEventKind as Kind;
use ack_gateway::proto::gateway::{Phase, WaitForMatch, WaitForRequest, WatchEvent};
use ack_gateway::proto::{json_to_struct, json_to_value};
use ack_gateway::simulator::SimulatorOptions;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tonic::{Code, Status};
use tonic_types::StatusExt;

/// A wait on `operation`'s `path` until one of `done`.
fn wait(operation: &str, request: Value, path: &str, done: &[&str]) -> WaitForRequest {
    WaitForRequest {
        operation: operation.into(),
        request: Some(json_to_struct(&request)),
        path: path.into(),
        done_values: done.iter().map(|d| json_to_value(&json!(d))).collect(),
        ..Default::default()
    }
}

async fn open(h: &Harness, r: WaitForRequest) -> Result<Events, Status> {
    client(h)
        .wait_for(r)
        .await
        .map(|s| Events::of(s.into_inner()))
}

fn state(m: &WatchEvent) -> &str {
    m.status.as_ref().map_or("", |s| s.state.as_str())
}

/// The states of the messages that reported a change (INITIAL, CHANGE, FINAL).
fn changes(messages: &[WatchEvent]) -> Vec<&str> {
    messages
        .iter()
        .filter(|m| matches!(kind(m), Kind::Initial | Kind::Change | Kind::Final))
        .map(state)
        .collect()
}

#[tokio::test]
async fn waits_for_a_cluster_to_run_streaming_each_change_of_the_value() {
    let h = harness("900ms", "").await;
    let (cluster, _) = create_cluster(&h, "waited").await;
    let mut r = wait(
        "DescribeClusterDetail",
        json!({"cluster_id": cluster}),
        "state",
        &["running"],
    );
    r.failed_values = vec![json_to_value(&json!("failed"))];
    let (messages, end) = drain(open(&h, r).await.expect("opened")).await;
    assert!(end.is_ok(), "{end:?}");
    assert_well_formed(&messages);
    assert_eq!(state(&messages[0]), "initial");
    let last = messages.last().expect("final");
    assert_eq!((state(last), phase(last)), ("running", Phase::Succeeded));
    let status = last.status.as_ref().expect("status");
    assert_eq!(status.target_kind, "wait");
    assert_eq!(status.target_id, "DescribeClusterDetail");
    assert_eq!(
        status.attributes.get("value").map(String::as_str),
        Some("\"running\"")
    );
    assert_eq!(status.progress_percent, Some(100));
    // A message for each new value, once; the last one is the FINAL message.
    assert_eq!(changes(&messages), ["initial", "running"]);
}

#[tokio::test]
async fn waits_for_inspection_reports_to_complete_one_or_all() {
    let h = harness("300ms", "").await;
    let cluster = running_cluster(&h, "inspected").await;
    h.sim()
        .set_task_duration("RunClusterInspect", Duration::from_millis(800));
    let mut reports = Vec::new();
    for _ in 0..2 {
        let (run, _) = h
            .cs("RunClusterInspect", json!({"cluster_id": cluster}))
            .await
            .expect("inspection started");
        reports.push(run["report_id"].as_str().expect("report").to_string());
    }
    let one = wait(
        "GetClusterInspectReportDetail",
        json!({"cluster_id": cluster, "report_id": reports[0]}),
        "status",
        &["completed"],
    );
    let mut all = wait(
        "ListClusterInspectReports",
        json!({"cluster_id": cluster}),
        "reports[*].status",
        &["completed"],
    );
    all.r#match = WaitForMatch::All as i32;
    let (one, all) = tokio::join!(
        async { drain(open(&h, one).await.expect("opened")).await },
        async { drain(open(&h, all).await.expect("opened")).await }
    );
    let (messages, end) = one;
    assert!(end.is_ok(), "{end:?}");
    assert_eq!(changes(&messages), ["running", "completed"]);
    let (messages, end) = all;
    assert!(end.is_ok(), "{end:?}");
    assert_eq!(state(&messages[0]), r#"["running","running"]"#);
    assert_eq!(
        messages[0].status.as_ref().and_then(|s| s.progress_percent),
        Some(0)
    );
    assert_eq!(
        state(messages.last().expect("final")),
        r#"["completed","completed"]"#
    );
}

#[tokio::test]
async fn a_failed_value_ends_the_wait_aborted_and_gone_can_be_done() {
    let h = harness("300ms", "").await;
    let cluster = running_cluster(&h, "failing").await;
    h.sim().fail_next_task(
        "RunClusterInspect",
        "InspectFailed",
        "the agent did not answer",
    );
    let (run, _) = h
        .cs("RunClusterInspect", json!({"cluster_id": cluster}))
        .await
        .expect("started");
    let mut r = wait(
        "GetClusterInspectReportDetail",
        json!({"cluster_id": cluster, "report_id": run["report_id"]}),
        "status",
        &["completed"],
    );
    r.failed_values = vec![json_to_value(&json!("failed"))];
    let (messages, end) = drain(open(&h, r).await.expect("opened")).await;
    let status = end.expect_err("failed");
    assert_eq!(status.code(), Code::Aborted, "{status:?}");
    let info = status.get_details_error_info().expect("ErrorInfo");
    assert_eq!(info.reason, "failed");
    assert_eq!(
        info.metadata.get("target_kind").map(String::as_str),
        Some("wait")
    );
    let last = messages.last().expect("final");
    assert_eq!(phase(last), Phase::Failed);

    // A deleted cluster: done when gone is a done value, NOT_FOUND otherwise.
    h.sim()
        .set_task_duration("DeleteCluster", Duration::from_millis(800));
    h.cs("DeleteCluster", json!({"cluster_id": cluster}))
        .await
        .expect("deletion started");
    let mut gone = wait(
        "DescribeClusterDetail",
        json!({"cluster_id": cluster}),
        "state",
        &[],
    );
    gone.done_when_gone = true;
    let kept = wait(
        "DescribeClusterDetail",
        json!({"cluster_id": cluster}),
        "state",
        &["running"],
    );
    let (gone, kept) = tokio::join!(
        async { drain(open(&h, gone).await.expect("opened")).await },
        async { drain(open(&h, kept).await.expect("opened")).await }
    );
    let (messages, end) = gone;
    assert!(end.is_ok(), "{end:?}");
    assert_eq!(state(&messages[0]), "deleting");
    let last = messages.last().expect("final");
    assert_eq!((state(last), phase(last)), ("gone", Phase::Succeeded));
    assert_eq!(kept.1.expect_err("gone").code(), Code::NotFound);
    let err = open(
        &h,
        wait(
            "DescribeClusterDetail",
            json!({"cluster_id": "c-nope"}),
            "state",
            &["running"],
        ),
    )
    .await
    .err()
    .expect("refused before any message");
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test]
async fn bad_waits_are_refused_naming_the_field_and_nothing_is_polled() {
    let h = harness("300ms", "").await;
    h.sim().clear_requests();
    let cases: Vec<(WaitForRequest, &str)> = vec![
        (wait("NoSuchRead", json!({}), "state", &["x"]), "operation"),
        (
            wait(
                "DeleteCluster",
                json!({"cluster_id": "c"}),
                "task_id",
                &["x"],
            ),
            "operation",
        ),
        (
            wait(
                "DescribeClusterDetail",
                json!({"cluster_id": "c"}),
                "stat",
                &["running"],
            ),
            "path",
        ),
        (
            wait(
                "DescribeClusterDetail",
                json!({"cluster_id": "c"}),
                "tags[x]",
                &["running"],
            ),
            "path",
        ),
        (
            wait(
                "DescribeClusterDetail",
                json!({"cluster": "c"}),
                "state",
                &["running"],
            ),
            "request",
        ),
        (
            wait(
                "DescribeClusterDetail",
                json!({"cluster_id": "c"}),
                "state",
                &[],
            ),
            "done_values",
        ),
    ];
    for (r, field) in cases {
        let operation = r.operation.clone();
        let err = open(&h, r).await.err().expect("refused");
        assert_eq!(err.code(), Code::InvalidArgument, "{operation}: {err:?}");
        let violations = err
            .get_details_bad_request()
            .expect("BadRequest")
            .field_violations;
        assert_eq!(violations[0].field, field, "{err:?}");
        assert!(err.message().starts_with(&format!("{field}: ")), "{err:?}");
    }
    // Over Connect, the same refusal in the end-of-stream message.
    let (messages, _, end) = connect_stream(
        &h,
        "WaitFor",
        json!({"operation": "DescribeClusterDetail", "request": {"cluster_id": "c"},
               "path": "nodepools[0]", "doneValues": ["x"]}),
        &[],
    )
    .await;
    assert!(messages.is_empty());
    assert_eq!(end["error"]["code"], "invalid_argument", "{end}");
    assert!(h.sim().requests().is_empty(), "nothing was polled");
}

#[tokio::test]
async fn the_waits_timeout_ends_it() {
    let h = harness("300ms", "").await;
    h.sim()
        .set_task_duration("CreateCluster", Duration::from_secs(60));
    let (cluster, _) = create_cluster(&h, "slow").await;
    let mut r = wait(
        "DescribeClusterDetail",
        json!({"cluster_id": cluster}),
        "state",
        &["running"],
    );
    r.timeout = Some(prost_types::Duration {
        seconds: 0,
        nanos: 400_000_000,
    });
    let started = Instant::now();
    let (messages, end) = drain(open(&h, r).await.expect("opened")).await;
    assert_eq!(end.expect_err("timeout").code(), Code::DeadlineExceeded);
    assert_eq!(kind(messages.last().expect("final")), Kind::Final);
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn identical_waits_share_one_poller() {
    const WAITERS: usize = 200;
    let h = harness("300ms", "max_streams_per_caller = 1000\n").await;
    h.sim()
        .set_task_duration("CreateCluster", Duration::from_millis(1500));
    let (a, _) = create_cluster(&h, "shared-a").await;
    let (b, _) = create_cluster(&h, "shared-b").await;
    h.sim().clear_requests();
    let started = Instant::now();
    let mut waiters = Vec::new();
    for i in 0..WAITERS {
        let mut c = client(&h);
        // Two waits, each written several ways: the path with `$.`, the values in any order.
        let cluster = if i % 4 < 2 { &a } else { &b };
        let r = wait(
            "DescribeClusterDetail",
            json!({"cluster_id": cluster}),
            if i % 3 == 0 { "$.state" } else { "state" },
            if i % 2 == 0 {
                &["running", "failed"]
            } else {
                &["failed", "running", "running"]
            },
        );
        waiters.push(tokio::spawn(async move {
            let stream = c.wait_for(r).await.expect("opened").into_inner();
            drain(Events::of(stream)).await
        }));
    }
    for w in waiters {
        let (messages, end) = w.await.expect("joined");
        assert!(end.is_ok(), "{end:?}");
        assert_eq!(state(messages.last().expect("final")), "running");
    }
    let elapsed = started.elapsed();
    let intervals = elapsed.as_millis() as u64 / INITIAL_MS;
    let ceiling = intervals as usize + 1;
    let polls = h.sim().requests_for("DescribeClusterDetail");
    let mut total = 0;
    for cluster in [&a, &b] {
        let n = polls
            .iter()
            .filter(|r| r.raw_path.ends_with(cluster.as_str()))
            .count();
        assert!(
            (1..=ceiling).contains(&n),
            "{cluster}: {n} polls in {elapsed:?} (at most {ceiling})"
        );
        total += n;
    }
    eprintln!(
        "WaitFor: {WAITERS} waiters, 2 distinct waits: {total} polls in {elapsed:?} = {:.2} polls per {INITIAL_MS} ms interval",
        total as f64 / intervals.max(1) as f64
    );
    // The waits' pollers stopped with them (the journal's task followers end with their tasks).
    let deadline = Instant::now() + Duration::from_secs(5);
    while h.running.watcher.active_pollers() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        h.running.watcher.active_pollers(),
        0,
        "every poller stopped"
    );
}

#[tokio::test]
async fn the_caller_must_be_allowed_the_read_it_waits_on() {
    let sim = simulator(SimulatorOptions {
        task_duration: Duration::from_millis(300),
        ..SimulatorOptions::default()
    })
    .await;
    let (id, secret) = sim.root_key();
    let h = Harness::with_config(
        &format!(
            "[simulator]\nmode = \"never\"\n[auth]\nmode = \"enforce\"\n[endpoints]\ncs = \"{}\"\n\
             [profiles.root]\ntype = \"access_key\"\naccess_key_id = \"{id}\"\n\
             access_key_secret = \"{}\"\nregion = \"cn-hangzhou\"\n\
             [callers.admin]\ntoken_sha256 = [\"{}\"]\nprofiles = [\"root\"]\noperations = [\"*\"]\n\
             [callers.lister]\ntoken_sha256 = [\"{}\"]\nprofiles = [\"root\"]\n\
             operations = [\"DescribeClustersV1\"]\n{}",
            sim.endpoint(),
            secret.expose(),
            token_hash("admin-token-123"),
            token_hash("lister-token-123"),
            crate::watch_nodepool::WATCH,
        ),
        env(&[]),
    )
    .await;
    let as_caller = |token: &str, r: WaitForRequest| {
        let mut request = tonic::Request::new(r);
        let md = request.metadata_mut();
        md.insert(
            "authorization",
            format!("Bearer {token}").parse().expect("metadata"),
        );
        md.insert("x-ack-profile", "root".parse().expect("metadata"));
        request
    };
    let admin = [
        ("authorization", "Bearer admin-token-123"),
        ("x-ack-profile", "root"),
    ];
    let (created, _) = h
        .call(
            CS_SERVICE,
            "CreateCluster",
            json!({"name": "acl", "region_id": "cn-hangzhou"}),
            &admin,
            None,
        )
        .await
        .expect("created");
    let cluster = created["cluster_id"].as_str().expect("id").to_string();
    let r = wait(
        "DescribeClusterDetail",
        json!({"cluster_id": cluster}),
        "state",
        &["running"],
    );
    let mut c = WatchServiceClient::new(h.channel.clone());
    let denied = c
        .wait_for(as_caller("lister-token-123", r.clone()))
        .await
        .expect_err("not allowed DescribeClusterDetail");
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    assert!(
        denied.message().contains("DescribeClusterDetail"),
        "{denied:?}"
    );
    let stream = c
        .wait_for(as_caller("admin-token-123", r))
        .await
        .expect("allowed")
        .into_inner();
    let (_, end) = drain(Events::of(stream)).await;
    assert!(end.is_ok(), "{end:?}");
}

#[tokio::test]
async fn wait_for_over_connect() {
    let h = harness("600ms", "").await;
    let (cluster, _) = create_cluster(&h, "connect").await;
    let (messages, _, end) = connect_stream(
        &h,
        "WaitFor",
        json!({"operation": "DescribeClusterDetail", "request": {"cluster_id": cluster},
               "path": "state", "doneValues": ["running"], "failedValues": ["failed"],
               "match": "WAIT_FOR_MATCH_ANY"}),
        &[],
    )
    .await;
    assert_eq!(
        end,
        json!({}),
        "success ends with an empty end-of-stream message"
    );
    let first = &messages.first().expect("initial").1;
    assert_eq!(first["kind"], "WATCH_EVENT_KIND_INITIAL");
    assert_eq!(first["status"]["targetKind"], "wait");
    let last = &messages.last().expect("final").1;
    assert_eq!(last["status"]["state"], "running");
    assert_eq!(last["status"]["phase"], "PHASE_SUCCEEDED");
    assert_eq!(last["status"]["attributes"]["value"], "\"running\"");
}
