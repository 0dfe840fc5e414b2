//! Writes safe to retry (idempotency keys, detached sending, lost answers made known) and the
//! operations journal, on one replica, over gRPC and Connect, against the simulator's count of
//! applied writes.

use crate::http_clients::connect_json;
use crate::support::{applied_pool_names, create_cluster, wait_task, Answer, Harness, CS_SERVICE};
use ack_gateway::simulator::{Fault, FaultKind};
use serde_json::{json, Value};
use std::time::Duration;
use tonic::Code;
use tonic_types::StatusExt as _;

const OPERATIONS: &str = "ackgateway.v1.OperationsService";

async fn keyed(h: &Harness, op: &str, request: Value, key: &str) -> Answer {
    h.call(CS_SERVICE, op, request, &[("idempotency-key", key)], None)
        .await
}

fn header<'a>(a: &'a Answer, name: &str) -> Option<&'a str> {
    a.as_ref()
        .ok()
        .and_then(|(_, md)| md.get(name))
        .and_then(|v| v.to_str().ok())
}

fn fault(operation: &str, kind: FaultKind) -> Fault {
    Fault {
        operation: Some(operation.into()),
        kind,
        ..Fault::default()
    }
}

/// A running cluster of its own.
async fn cluster(h: &Harness, name: &str) -> String {
    let (id, task) = create_cluster(h, name).await;
    assert_eq!(wait_task(h, &task).await, "success");
    id
}

#[tokio::test]
async fn a_keyed_write_is_applied_once_and_its_answer_replayed() {
    let h = Harness::embedded().await;
    let id = cluster(&h, "replayed").await;
    let request = json!({"cluster_id": id, "cluster_name": "renamed"});
    let first = keyed(&h, "ModifyCluster", request.clone(), "modify-1").await;
    let (answer, md) = first.as_ref().expect("applied");
    assert!(md.get("x-ack-idempotent-replay").is_none());
    let request_id = header(&first, "x-acs-request-id")
        .expect("request id")
        .to_string();
    let again = keyed(&h, "ModifyCluster", request.clone(), "modify-1").await;
    let (replayed, _) = again.as_ref().expect("replayed");
    assert_eq!(replayed, answer);
    assert_eq!(header(&again, "x-ack-idempotent-replay"), Some("true"));
    assert_eq!(
        header(&again, "x-acs-request-id"),
        Some(request_id.as_str())
    );
    assert_eq!(h.sim().applied_for("ModifyCluster").len(), 1);
    assert_eq!(
        h.sim().requests_for("ModifyCluster").len(),
        1,
        "nothing sent"
    );
    // The gateway set the cloud's own client token from the key.
    let token = h.sim().applied_for("ModifyCluster")[0].client_token.clone();
    assert!(token.is_some_and(|t| t.starts_with("ackgw-")));

    // Over Connect, the same key replays the same answer with the same header.
    let body = request.to_string();
    let a = connect_json(
        &h,
        CS_SERVICE,
        "ModifyCluster",
        &body,
        &[("idempotency-key", "modify-1")],
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.json);
    assert_eq!(a.header("x-ack-idempotent-replay"), Some("true"));
    assert_eq!(a.header("x-acs-request-id"), Some(request_id.as_str()));
    assert_eq!(h.sim().applied_for("ModifyCluster").len(), 1);

    // Another key is another write.
    keyed(&h, "ModifyCluster", request, "modify-2")
        .await
        .expect("applied");
    assert_eq!(h.sim().applied_for("ModifyCluster").len(), 2);
}

#[tokio::test]
async fn a_key_used_for_another_request_is_invalid_argument_and_nothing_is_sent() {
    let h = Harness::embedded().await;
    let id = cluster(&h, "conflict").await;
    keyed(
        &h,
        "ModifyCluster",
        json!({"cluster_id": id, "cluster_name": "a"}),
        "k",
    )
    .await
    .expect("applied");
    let err = keyed(
        &h,
        "ModifyCluster",
        json!({"cluster_id": id, "cluster_name": "b"}),
        "k",
    )
    .await
    .expect_err("another request");
    assert_eq!(err.code(), Code::InvalidArgument);
    let bad = err.get_details_bad_request().expect("bad request");
    assert_eq!(bad.field_violations[0].field, "idempotency-key");
    assert_eq!(h.sim().requests_for("ModifyCluster").len(), 1);

    // A key that is not 1 to 255 printable ASCII bytes names the metadata too.
    let long = "k".repeat(256);
    let err = keyed(&h, "ModifyCluster", json!({"cluster_id": id}), &long)
        .await
        .expect_err("too long");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("idempotency-key"),
        "{}",
        err.message()
    );
    assert_eq!(h.sim().requests_for("ModifyCluster").len(), 1);
}

#[tokio::test]
async fn a_read_carrying_a_key_is_served_as_usual() {
    let h = Harness::embedded().await;
    let id = cluster(&h, "read").await;
    for _ in 0..2 {
        let a = keyed(
            &h,
            "DescribeClusterDetail",
            json!({"cluster_id": id}),
            "read-key",
        )
        .await;
        assert!(a.is_ok());
        assert_eq!(header(&a, "x-ack-idempotent-replay"), None);
    }
    assert_eq!(h.sim().requests_for("DescribeClusterDetail").len(), 2);
}

#[tokio::test]
async fn a_refusal_that_cannot_change_is_replayed_and_one_that_can_is_tried_again() {
    let h = Harness::embedded().await;
    // A missing cluster: the same refusal every time; recorded and replayed.
    let missing = json!({"cluster_id": "c-missing", "nodepool_info": {"name": "np"}});
    for replay in [None, Some("true")] {
        let a = keyed(&h, "CreateClusterNodePool", missing.clone(), "refused").await;
        let err = a.as_ref().expect_err("refused");
        assert_eq!(err.code(), Code::NotFound);
        assert_eq!(
            err.metadata()
                .get("x-ack-idempotent-replay")
                .and_then(|v| v.to_str().ok()),
            replay
        );
    }
    assert_eq!(h.sim().requests_for("CreateClusterNodePool").len(), 1);
    // The replay is journaled with the refusal's own code.
    let replayed = newest_entry(&h, "CreateClusterNodePool", |e| e["replay"] == true).await;
    assert_eq!(replayed["code"], "NOT_FOUND", "{replayed}");
    assert_eq!(replayed["reason"], "ErrorClusterNotFound", "{replayed}");

    // A 503 may be answered differently next time: not recorded, the retry is sent.
    let id = cluster(&h, "unavailable").await;
    h.sim().inject(Fault {
        status: 503,
        code: "ServiceUnavailable".into(),
        ..fault("CreateClusterNodePool", FaultKind::Answer)
    });
    let request = json!({"cluster_id": id, "nodepool_info": {"name": "np-503"}});
    let err = keyed(&h, "CreateClusterNodePool", request.clone(), "np-503")
        .await
        .expect_err("503");
    assert_eq!(err.code(), Code::Unavailable);
    keyed(&h, "CreateClusterNodePool", request, "np-503")
        .await
        .expect("applied on the retry");
    assert_eq!(h.sim().applied_for("CreateClusterNodePool").len(), 1);
}

#[tokio::test]
async fn a_lost_answer_with_a_client_token_is_resent_and_the_cloud_drops_the_duplicate() {
    let h = Harness::embedded().await;
    h.sim()
        .inject(fault("CreateCluster", FaultKind::ResetBeforeHeaders));
    let request = json!({"name": "tokened", "region_id": "cn-hangzhou"});
    let (created, _) = keyed(&h, "CreateCluster", request.clone(), "create-1")
        .await
        .expect("answered by the resend");
    assert_eq!(h.sim().requests_for("CreateCluster").len(), 2, "sent twice");
    assert_eq!(
        h.sim().applied_for("CreateCluster").len(),
        1,
        "applied once"
    );
    // The retry replays it; the cluster is the one the cloud made.
    let (again, _) = keyed(&h, "CreateCluster", request, "create-1")
        .await
        .expect("replayed");
    assert_eq!(again["cluster_id"], created["cluster_id"]);
    // The replay's journal entry names the cluster its recorded answer made.
    let entry = newest_entry(&h, "CreateCluster", |e| e["replay"] == true).await;
    assert_eq!(entry["cluster_id"], created["cluster_id"], "{entry}");
    assert_eq!(h.sim().applied_for("CreateCluster").len(), 1);
}

#[tokio::test]
async fn a_lost_answer_with_an_outcome_check_is_read_back_instead_of_resent() {
    let h = Harness::embedded().await;
    let id = cluster(&h, "read-back").await;

    // Applied, then the connection reset: the retry reads the node pool by name.
    h.sim().inject(fault(
        "CreateClusterNodePool",
        FaultKind::ResetBeforeHeaders,
    ));
    let request = json!({"cluster_id": id, "nodepool_info": {"name": "np-applied"}});
    let err = keyed(&h, "CreateClusterNodePool", request.clone(), "np-1")
        .await
        .expect_err("the answer was lost");
    assert_eq!(err.code(), Code::Unavailable);
    let (answer, _) = keyed(&h, "CreateClusterNodePool", request.clone(), "np-1")
        .await
        .expect("answered from the read");
    let made = h.sim().applied_for("CreateClusterNodePool");
    assert_eq!(made.len(), 1, "not sent again");
    assert!(
        answer["nodepool_id"]
            .as_str()
            .is_some_and(|s| !s.is_empty()),
        "{answer}"
    );
    assert_eq!(h.sim().requests_for("DescribeClusterNodePools").len(), 1);
    // A third call replays what the read established.
    let third = keyed(&h, "CreateClusterNodePool", request, "np-1").await;
    assert_eq!(third.as_ref().expect("replayed").0, answer);
    assert_eq!(header(&third, "x-ack-idempotent-replay"), Some("true"));

    // Reset before it was applied: the read says so, and the write is sent.
    let (_, task) = (
        answer.clone(),
        answer["task_id"].as_str().unwrap_or_default().to_string(),
    );
    if !task.is_empty() {
        wait_task(&h, &task).await;
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    h.sim()
        .inject(fault("CreateClusterNodePool", FaultKind::ResetUnapplied));
    let request = json!({"cluster_id": id, "nodepool_info": {"name": "np-unapplied"}});
    keyed(&h, "CreateClusterNodePool", request.clone(), "np-2")
        .await
        .expect_err("the answer was lost");
    keyed(&h, "CreateClusterNodePool", request, "np-2")
        .await
        .expect("sent after the read found nothing");
    assert_eq!(h.sim().applied_for("CreateClusterNodePool").len(), 2);
}

#[tokio::test]
async fn a_lost_answer_nothing_can_check_is_aborted_as_outcome_unknown() {
    let h = Harness::embedded().await;
    let id = cluster(&h, "unknown").await;
    let (np, _) = keyed(
        &h,
        "CreateClusterNodePool",
        json!({"cluster_id": id, "nodepool_info": {"name": "np"}}),
        "np",
    )
    .await
    .expect("created");
    let np = np["nodepool_id"].as_str().expect("id").to_string();
    tokio::time::sleep(Duration::from_millis(500)).await;
    h.sim()
        .inject(fault("ScaleClusterNodePool", FaultKind::ResetBeforeHeaders));
    let request = json!({"cluster_id": id, "nodepool_id": np, "count": 2});
    keyed(&h, "ScaleClusterNodePool", request.clone(), "scale")
        .await
        .expect_err("the answer was lost");
    for _ in 0..2 {
        let err = keyed(&h, "ScaleClusterNodePool", request.clone(), "scale")
            .await
            .expect_err("unknown");
        assert_eq!(err.code(), Code::Aborted);
        let info = err.get_details_error_info().expect("error info");
        assert_eq!(info.reason, "OUTCOME_UNKNOWN");
        assert!(
            err.message().contains("DescribeClusterNodePoolDetail"),
            "{}",
            err.message()
        );
    }
    assert_eq!(h.sim().applied_for("ScaleClusterNodePool").len(), 1);
    assert_eq!(h.sim().requests_for("ScaleClusterNodePool").len(), 1);
}

#[tokio::test]
async fn a_write_whose_caller_leaves_finishes_and_its_retry_gets_the_answer() {
    let h = Harness::embedded().await;
    h.sim().inject(Fault {
        answer_delay_ms: 800,
        ..fault("CreateCluster", FaultKind::Answer)
    });
    let request = json!({"name": "slow", "region_id": "cn-hangzhou"});
    let err = h
        .call(
            CS_SERVICE,
            "CreateCluster",
            request.clone(),
            &[("idempotency-key", "slow")],
            Some(Duration::from_millis(300)),
        )
        .await
        .expect_err("the caller's deadline passes first");
    assert_eq!(err.code(), Code::DeadlineExceeded);
    // Meanwhile, the same key waits for the write in flight, then gets its answer.
    let (created, md) = keyed(&h, "CreateCluster", request.clone(), "slow")
        .await
        .expect("the real answer");
    assert!(created["cluster_id"]
        .as_str()
        .is_some_and(|s| !s.is_empty()));
    assert_eq!(
        md.get("x-ack-idempotent-replay")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    assert_eq!(h.sim().applied_for("CreateCluster").len(), 1);
    assert_eq!(h.sim().requests_for("CreateCluster").len(), 1);

    // Without a key, a caller that leaves does not stop the write either: the journal tells
    // how it ended.
    h.sim().inject(Fault {
        answer_delay_ms: 600,
        ..fault("CreateCluster", FaultKind::Answer)
    });
    let err = h
        .call(
            CS_SERVICE,
            "CreateCluster",
            json!({"name": "left", "region_id": "cn-hangzhou"}),
            &[],
            Some(Duration::from_millis(200)),
        )
        .await
        .expect_err("left");
    assert_eq!(err.code(), Code::DeadlineExceeded);
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(h.sim().applied_for("CreateCluster").len(), 2);
    let (list, _) = h
        .call(
            OPERATIONS,
            "ListOperations",
            json!({"filter": {"operation": "CreateCluster"}}),
            &[],
            None,
        )
        .await
        .expect("listed");
    let newest = &list["operations"][0];
    assert_eq!(newest["code"], "OK", "{list}");
    assert!(newest["task_id"].as_str().is_some_and(|s| !s.is_empty()));
}

#[tokio::test]
async fn concurrent_calls_with_one_key_send_once_and_get_the_same_answer() {
    let h = Harness::embedded().await;
    h.sim().inject(Fault {
        answer_delay_ms: 300,
        ..fault("CreateCluster", FaultKind::Answer)
    });
    let request = json!({"name": "raced", "region_id": "cn-hangzhou"});
    let calls = (0..4).map(|_| keyed(&h, "CreateCluster", request.clone(), "raced"));
    let answers = futures_util::future::join_all(calls).await;
    let ids: Vec<&Value> = answers
        .iter()
        .map(|a| &a.as_ref().expect("answered").0["cluster_id"])
        .collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    let replays = answers
        .iter()
        .filter(|a| header(a, "x-ack-idempotent-replay") == Some("true"))
        .count();
    assert_eq!(replays, 3);
    assert_eq!(h.sim().requests_for("CreateCluster").len(), 1);
}

#[tokio::test]
async fn the_journal_lists_every_write_with_its_outcome_newest_first() {
    let h = Harness::embedded().await;
    let id = cluster(&h, "journaled").await;
    keyed(
        &h,
        "ModifyCluster",
        json!({"cluster_id": id, "cluster_name": "j"}),
        "j1",
    )
    .await
    .expect("applied");
    keyed(
        &h,
        "ModifyCluster",
        json!({"cluster_id": id, "cluster_name": "j"}),
        "j1",
    )
    .await
    .expect("replayed");
    h.cs(
        "DeleteClusterNodepool",
        json!({"cluster_id": id, "nodepool_id": "np-missing"}),
    )
    .await
    .expect_err("not found");
    // Entries are written as the write ends, in the background.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (list, _) = h
        .call(
            OPERATIONS,
            "ListOperations",
            json!({"filter": {"cluster_id": id}}),
            &[],
            None,
        )
        .await
        .expect("listed");
    let ops = list["operations"].as_array().expect("operations");
    // The cluster's creation is listed too: its entry names the cluster its answer made.
    assert_eq!(ops.len(), 4, "{list}");
    assert_eq!(ops[3]["operation"], "CreateCluster");
    assert_eq!(ops[0]["operation"], "DeleteClusterNodepool");
    assert_eq!(ops[0]["phase"], "OPERATION_PHASE_FAILED");
    assert_eq!(ops[0]["code"], "NOT_FOUND");
    assert_eq!(ops[1]["replay"], true);
    assert_eq!(ops[1]["idempotency_key"], "j1");
    assert_eq!(ops[2]["caller"], "local");
    assert_eq!(ops[2]["code"], "OK");
    assert!(ops[2]["request_id"].as_str().is_some_and(|s| !s.is_empty()));

    // Paging, newest first.
    let (page, _) = h
        .call(
            OPERATIONS,
            "ListOperations",
            json!({"filter": {"cluster_id": id}, "page_size": 2}),
            &[],
            None,
        )
        .await
        .expect("page");
    assert_eq!(page["operations"].as_array().map(Vec::len), Some(2));
    let token = page["next_page_token"].as_str().expect("token").to_string();
    let (rest, _) = h
        .call(
            OPERATIONS,
            "ListOperations",
            json!({"filter": {"cluster_id": id}, "page_size": 2, "page_token": token}),
            &[],
            None,
        )
        .await
        .expect("next page");
    assert_eq!(rest["operations"][0]["id"], ops[2]["id"]);
    assert_eq!(rest["next_page_token"].as_str().unwrap_or_default(), "");

    // Over Connect, with a bad filter named.
    let a = connect_json(
        &h,
        OPERATIONS,
        "ListOperations",
        &json!({"filter": {"since": "yesterday"}}).to_string(),
        &[],
    )
    .await;
    assert_eq!(a.status, 400, "{}", a.json);
    assert!(
        a.json["message"]
            .as_str()
            .is_some_and(|m| m.contains("filter.since")),
        "{}",
        a.json
    );
    let a = connect_json(
        &h,
        OPERATIONS,
        "ListOperations",
        &json!({"filter": {"cluster_id": id}}).to_string(),
        &[],
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.json);
    assert_eq!(a.json["operations"].as_array().map(Vec::len), Some(4));
}

/// A gateway with three callers: `alice` and `bob` see their own entries, `ops` everyone's.
async fn with_callers() -> Harness {
    use ack_gateway::access::token_hash;
    let caller = |name: &str, extra: &str| {
        format!(
            "[callers.{name}]\ntoken_sha256 = [\"{}\"]\nprofiles = [\"*\"]\noperations = [\"*\"]\n{extra}",
            token_hash(&format!("{name}-token"))
        )
    };
    let config = format!(
        "[simulator]\nmode = \"always\"\ntask_duration = \"300ms\"\n{}{}{}",
        caller("alice", ""),
        caller("bob", ""),
        caller("ops", "journal = \"all\"\n")
    );
    Harness::with_config(&config, std::collections::HashMap::new()).await
}

fn bearer(name: &str) -> String {
    format!("Bearer {name}-token")
}

#[tokio::test]
async fn callers_see_their_own_entries_unless_granted_all_and_watch_them_live() {
    use ack_gateway::proto::gateway::operations_service_client::OperationsServiceClient;
    use ack_gateway::proto::gateway::{OperationPhase, OperationsFilter, WatchOperationsRequest};
    let h = with_callers().await;
    let as_caller = |name: &str| bearer(name);
    let create = |name: &'static str| {
        let auth = as_caller(name);
        let h = &h;
        async move {
            h.call(
                CS_SERVICE,
                "CreateCluster",
                json!({"name": format!("{name}-cluster"), "region_id": "cn-hangzhou"}),
                &[("authorization", auth.as_str())],
                None,
            )
            .await
            .expect("created")
        }
    };
    let mut ops = OperationsServiceClient::new(h.channel.clone());
    let mut watch = tonic::Request::new(WatchOperationsRequest {
        filter: Some(OperationsFilter {
            operation: "CreateCluster".into(),
            ..OperationsFilter::default()
        }),
        ..WatchOperationsRequest::default()
    });
    watch
        .metadata_mut()
        .insert("authorization", bearer("ops").parse().expect("value"));
    let mut stream = ops
        .watch_operations(watch)
        .await
        .expect("watching")
        .into_inner();

    create("alice").await;
    create("bob").await;

    // The watcher granted all sees both writes start and end, live.
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let next = tokio::time::timeout(Duration::from_secs(5), stream.message())
            .await
            .expect("an entry in time")
            .expect("stream")
            .expect("not ended");
        assert!(!next.own_only);
        let op = next.operation.expect("entry");
        seen.push((
            op.caller,
            OperationPhase::try_from(op.phase).expect("phase"),
        ));
    }
    for who in ["alice", "bob"] {
        assert!(
            seen.contains(&(who.to_string(), OperationPhase::Running)),
            "{seen:?}"
        );
        assert!(
            seen.contains(&(who.to_string(), OperationPhase::TaskRunning)),
            "{seen:?}"
        );
    }

    // Listing: alice only her own, and told so; ops everyone's.
    let list = |name: &str| {
        let auth = as_caller(name);
        let h = &h;
        async move {
            h.call(
                OPERATIONS,
                "ListOperations",
                json!({}),
                &[("authorization", auth.as_str())],
                None,
            )
            .await
            .expect("listed")
            .0
        }
    };
    let alice = list("alice").await;
    assert_eq!(alice["own_only"], true);
    let callers: Vec<&str> = alice["operations"]
        .as_array()
        .expect("list")
        .iter()
        .map(|o| o["caller"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(callers, ["alice"]);
    let all = list("ops").await;
    assert!(!all["own_only"].as_bool().unwrap_or_default());
    assert_eq!(all["operations"].as_array().map(Vec::len), Some(2));
    // A filter naming another caller does not widen what alice sees.
    let err = h
        .call(
            OPERATIONS,
            "ListOperations",
            json!({"filter": {"caller": "bob"}}),
            &[("authorization", as_caller("alice").as_str())],
            None,
        )
        .await
        .expect_err("not hers to see");
    assert_eq!(err.code(), Code::PermissionDenied);
}

/// The newest journal entry of `operation`, once `done` says it has come far enough (bounded).
async fn newest_entry(h: &Harness, operation: &str, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..100 {
        let (list, _) = h
            .call(
                OPERATIONS,
                "ListOperations",
                json!({"filter": {"operation": operation}, "page_size": 1}),
                &[],
                None,
            )
            .await
            .expect("listed");
        let newest = list["operations"][0].clone();
        if done(&newest) {
            return newest;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no {operation} entry came far enough");
}

#[tokio::test]
async fn the_journal_follows_each_writes_task_to_its_end() {
    let h = Harness::embedded().await;
    let (_, task) = create_cluster(&h, "followed").await;
    let entry = newest_entry(&h, "CreateCluster", |e| {
        e["phase"] == "OPERATION_PHASE_SUCCEEDED"
    })
    .await;
    assert_eq!(entry["task_id"], task.as_str());
    assert_eq!(entry["code"], "OK");

    h.sim()
        .fail_next_task("CreateCluster", "InstanceCreationFailed", "no stock");
    create_cluster(&h, "fails").await;
    let entry = newest_entry(&h, "CreateCluster", |e| {
        e["phase"] == "OPERATION_PHASE_FAILED"
    })
    .await;
    assert_eq!(entry["code"], "ABORTED");
    assert_eq!(entry["reason"], "InstanceCreationFailed");
    assert!(
        entry["message"]
            .as_str()
            .is_some_and(|m| m.contains("no stock")),
        "{entry}"
    );
}

/// A profile's `when_busy = "wait"` makes its writes wait without the header; a call's
/// `x-ack-when-busy: fail` still has the refusal passed through.
#[tokio::test]
async fn a_profile_can_make_its_writes_wait_for_a_busy_cluster() {
    let h = Harness::with_config(
        "[simulator]\nmode = \"always\"\ntask_duration = \"300ms\"\n\
         [watch]\ninitial_interval = \"50ms\"\nmax_interval = \"200ms\"\n\
         [auth]\nmode = \"insecure_local\"\n\
         [profiles.patient]\ntype = \"access_key\"\naccess_key_id = \"LTAIpatient\"\n\
         access_key_secret = \"patient-secret-0123456789\"\nregion = \"cn-hangzhou\"\n\
         when_busy = \"wait\"\n",
        std::collections::HashMap::new(),
    )
    .await;
    // The profile's key belongs to the account the default profile's clusters are in.
    h.sim().add_key(
        "LTAIpatient",
        "patient-secret-0123456789",
        ack_gateway::simulator::DEFAULT_ACCOUNT,
    );
    let id = cluster(&h, "patient").await;
    let pool = |name: &str| json!({"cluster_id": id, "nodepool_info": {"name": name}});
    h.cs("CreateClusterNodePool", pool("first"))
        .await
        .expect("created");
    // The cluster is busy with the first pool: the call says `fail`, and fails.
    let err = h
        .call(
            CS_SERVICE,
            "CreateClusterNodePool",
            pool("refused"),
            &[("x-ack-profile", "patient"), ("x-ack-when-busy", "fail")],
            None,
        )
        .await
        .expect_err("busy");
    assert_eq!(err.code(), Code::FailedPrecondition);
    // Without the header, the profile's setting holds: the write waits and is applied.
    h.call(
        CS_SERVICE,
        "CreateClusterNodePool",
        pool("second"),
        &[("x-ack-profile", "patient")],
        Some(Duration::from_secs(20)),
    )
    .await
    .expect("waited, then applied");
    let names = applied_pool_names(h.sim());
    assert_eq!(names, ["first", "second"]);
}

#[tokio::test]
async fn writes_to_a_busy_cluster_wait_their_turn_when_asked() {
    // Cluster states are polled fast, as a watch test's are.
    let h = Harness::with_config(
        "[simulator]\nmode = \"always\"\ntask_duration = \"300ms\"\n\
         [watch]\ninitial_interval = \"50ms\"\nmax_interval = \"200ms\"\n",
        std::collections::HashMap::new(),
    )
    .await;
    let id = cluster(&h, "busy").await;
    let pool = |name: &str| json!({"cluster_id": id, "nodepool_info": {"name": name}});
    // The first pool's creation keeps the cluster busy.
    h.cs("CreateClusterNodePool", pool("first"))
        .await
        .expect("created");
    // Without the header the refusal passes through, as the cloud's precondition.
    let err = h
        .cs("CreateClusterNodePool", pool("refused"))
        .await
        .expect_err("busy");
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains("ErrorClusterState"),
        "{}",
        err.message()
    );
    let bad = h
        .call(
            CS_SERVICE,
            "CreateClusterNodePool",
            pool("bad"),
            &[("x-ack-when-busy", "later")],
            None,
        )
        .await
        .expect_err("not a choice");
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(
        bad.message().contains("x-ack-when-busy"),
        "{}",
        bad.message()
    );

    // Three writes that wait: each is sent when the cluster runs again, in the order they
    // came (each makes the cluster busy again for the next); one keyed, one over Connect.
    let wait = [("x-ack-when-busy", "wait")];
    let keyed_wait = [("x-ack-when-busy", "wait"), ("idempotency-key", "queued")];
    let second = h.call(
        CS_SERVICE,
        "CreateClusterNodePool",
        pool("second"),
        &wait,
        Some(Duration::from_secs(20)),
    );
    let third = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        h.call(
            CS_SERVICE,
            "CreateClusterNodePool",
            pool("third"),
            &keyed_wait,
            Some(Duration::from_secs(20)),
        )
        .await
    };
    let fourth = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        connect_json(
            &h,
            CS_SERVICE,
            "CreateClusterNodePool",
            &pool("fourth").to_string(),
            &[("x-ack-when-busy", "wait"), ("connect-timeout-ms", "20000")],
        )
        .await
    };
    let (second, third, fourth) = tokio::join!(second, third, fourth);
    second.expect("second applied");
    third.expect("third applied");
    assert_eq!(fourth.status, 200, "{}", fourth.json);
    let names = applied_pool_names(h.sim());
    assert_eq!(names, ["first", "second", "third", "fourth"]);
    // The keyed one keeps its record: a retry replays it.
    let again = h
        .call(
            CS_SERVICE,
            "CreateClusterNodePool",
            pool("third"),
            &keyed_wait,
            None,
        )
        .await;
    assert_eq!(header(&again, "x-ack-idempotent-replay"), Some("true"));
    // The journal says how long each waited.
    let (list, _) = h
        .call(
            OPERATIONS,
            "ListOperations",
            json!({"filter": {"operation": "CreateClusterNodePool", "outcome": "OK"}}),
            &[],
            None,
        )
        .await
        .expect("listed");
    let queued = list["operations"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["queued_ms"].as_u64().is_some_and(|ms| ms > 0))
        .count();
    assert_eq!(queued, 3, "{list}");
}

#[tokio::test]
async fn a_quiet_operations_watch_gets_heartbeats_and_creates_name_what_they_made() {
    use ack_gateway::proto::gateway::operations_service_client::OperationsServiceClient;
    use ack_gateway::proto::gateway::WatchOperationsRequest;
    let h = Harness::with_config(
        "[simulator]\nmode = \"always\"\ntask_duration = \"300ms\"\n[watch]\nheartbeat_interval = \"100ms\"\n",
        std::collections::HashMap::new(),
    )
    .await;
    let mut stream = OperationsServiceClient::new(h.channel.clone())
        .watch_operations(WatchOperationsRequest::default())
        .await
        .expect("watching")
        .into_inner();
    let beat = tokio::time::timeout(Duration::from_secs(2), stream.message())
        .await
        .expect("a heartbeat in time")
        .expect("stream")
        .expect("open");
    assert!(beat.heartbeat && beat.operation.is_none(), "{beat:?}");

    // A create's entry names the cluster its answer made.
    let (id, _) = create_cluster(&h, "named").await;
    let entry = newest_entry(&h, "CreateCluster", |e| e["code"] == "OK").await;
    assert_eq!(entry["cluster_id"], id.as_str());
}
