//! The count and list of applied writes: what is not one (error answers, reads, refusals), and
//! the documented shape of the list on the control API.

use super::harness::{cluster_count, control, create, inject, simulator, Client};
use crate::{AppliedWrites, Fault, FaultKind, DEFAULT_REGION};
use serde_json::json;

#[tokio::test]
async fn error_answers_reads_and_refusals_are_not_applied_writes() {
    let sim = simulator().await;
    let c = Client::root(&sim);
    inject(
        &sim,
        "CreateCluster",
        Fault {
            status: 503,
            code: "ServiceUnavailable".into(),
            ..Fault::default()
        },
    );
    assert_eq!(create(&c, "refused", None).await.status, 503);
    inject(
        &sim,
        "CreateCluster",
        Fault {
            kind: FaultKind::HtmlError,
            ..Fault::default()
        },
    );
    assert_eq!(create(&c, "refused", None).await.status, 502);
    let invalid = c
        .op(
            "CreateCluster",
            &[],
            Some(json!({"region_id": "cn-hangzhou"})),
        )
        .await;
    assert_eq!(invalid.status, 400, "no name: {invalid:?}");
    assert_eq!(cluster_count(&c).await, 0);
    assert_eq!(sim.applied(), AppliedWrites::default());
    assert_eq!(sim.requests().len(), 4, "all of them were received");
}

#[tokio::test]
async fn applied_writes_are_listed_in_their_documented_shape() {
    let sim = simulator().await;
    let c = Client::root(&sim);
    let created = create(&c, "listed", Some("tok-listed")).await;
    assert_eq!(created.status, 200, "{created:?}");
    let id = created.text("cluster_id");
    let tags = json!([{"key": "env", "value": "dev"}]);
    let tagged = c
        .op(
            "ModifyClusterTags",
            &[("cluster_id", &id)],
            Some(tags.clone()),
        )
        .await;
    assert_eq!(tagged.status, 200, "{tagged:?}");
    let query = [("name".to_string(), "listed".to_string())];
    let listed = c.signed("GET", "/api/v1/clusters", &query, None).await;
    assert_eq!(listed.status, 200, "a read: {listed:?}");

    let got = control(&sim, "GET", "/__simulator/applied", None).await;
    assert_eq!(got.status, 200);
    assert_eq!(
        got.body,
        json!({"count": 2, "writes": [
            {"operation": "CreateCluster", "request_id": created.request_id,
             "path_params": {}, "query": [],
             "body": {"name": "listed", "region_id": DEFAULT_REGION, "client_token": "tok-listed"},
             "client_token": "tok-listed"},
            {"operation": "ModifyClusterTags", "request_id": tagged.request_id,
             "path_params": {"cluster_id": id}, "query": [], "body": tags,
             "client_token": null},
        ]})
    );
    assert_eq!(serde_json::to_value(sim.applied()).expect("json"), got.body);
    assert_eq!(sim.applied_for("ModifyClusterTags").len(), 1);
    // Cleared with the request log.
    sim.clear_requests();
    assert_eq!(sim.applied(), AppliedWrites::default());
}
