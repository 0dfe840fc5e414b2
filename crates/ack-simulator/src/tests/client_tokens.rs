//! Client tokens: a resent token gets the first answer and applies nothing, a lost answer's write
//! is applied once, a refused write leaves its token unused, and the operations whose token is in
//! the body honour it.

use super::harness::{cluster_count, create, inject, simulator, Client};
use crate::{Fault, FaultKind, DEFAULT_REGION};
use serde_json::json;

#[tokio::test]
async fn a_resent_client_token_gets_the_first_answer_and_applies_nothing() {
    let sim = simulator().await;
    let c = Client::root(&sim);
    let first = create(&c, "once", Some("tok-1")).await;
    assert_eq!(first.status, 200, "{first:?}");
    let again = create(&c, "once", Some("tok-1")).await;
    assert_eq!((again.status, &again.body), (200, &first.body));
    assert_eq!(cluster_count(&c).await, 1);
    let applied = sim.applied();
    assert_eq!(applied.count, 1, "the resend is not an applied write");
    assert_eq!(applied.writes[0].client_token.as_deref(), Some("tok-1"));
    assert_eq!(sim.requests_for("CreateCluster").len(), 2, "both received");

    // Another token, or none, is another write.
    let other = create(&c, "twice", Some("tok-2")).await;
    assert_ne!(other.text("cluster_id"), first.text("cluster_id"));
    create(&c, "untokened", None).await;
    create(&c, "untokened", None).await;
    assert_eq!(cluster_count(&c).await, 4);
    // Another account's token of the same value is its own.
    let stranger = Client::other_account(&sim);
    let theirs = create(&stranger, "theirs", Some("tok-1")).await;
    assert_eq!(theirs.status, 200, "{theirs:?}");
    assert_ne!(theirs.text("cluster_id"), first.text("cluster_id"));
    assert_eq!(cluster_count(&stranger).await, 1);
    assert_eq!(sim.applied().count, 5);
}

#[tokio::test]
async fn a_write_whose_answer_was_lost_is_applied_once_when_resent_with_its_token() {
    let sim = simulator().await;
    let c = Client::root(&sim);
    for kind in [FaultKind::ResetBeforeHeaders, FaultKind::ResetUnapplied] {
        let token = format!("tok-{kind:?}");
        inject(
            &sim,
            "CreateCluster",
            Fault {
                kind,
                ..Fault::default()
            },
        );
        let before = cluster_count(&c).await;
        assert_eq!(create(&c, "lost", Some(&token)).await.status, 0, "{kind:?}");
        let resent = create(&c, "lost", Some(&token)).await;
        assert_eq!(resent.status, 200, "{kind:?}: {resent:?}");
        assert_eq!(cluster_count(&c).await, before + 1, "{kind:?}: one cluster");
        let detail = c
            .op(
                "DescribeClusterDetail",
                &[("cluster_id", &resent.text("cluster_id"))],
                None,
            )
            .await;
        assert_eq!(detail.status, 200, "{kind:?}: the answer names it");
    }
    assert_eq!(sim.applied().count, 2);
}

#[tokio::test]
async fn a_refused_write_does_not_use_up_its_client_token() {
    let sim = simulator().await;
    let c = Client::root(&sim);
    let refused = c
        .op(
            "CreateCluster",
            &[],
            Some(json!({"region_id": DEFAULT_REGION, "client_token": "tok-r"})),
        )
        .await;
    assert_eq!(refused.status, 400, "{refused:?}");
    let applied = create(&c, "fixed", Some("tok-r")).await;
    assert_eq!(applied.status, 200, "judged afresh: {applied:?}");
    assert_eq!(cluster_count(&c).await, 1);
    assert_eq!(sim.applied().count, 1);
}

#[tokio::test]
async fn modify_cluster_and_run_cluster_inspect_honour_their_body_tokens() {
    let sim = simulator().await;
    let c = Client::root(&sim);
    let id = "c-anything";
    for (op, body) in [
        (
            "ModifyCluster",
            json!({"client_token": "tok-m", "cluster_name": "n"}),
        ),
        ("RunClusterInspect", json!({"clientToken": "tok-i"})),
    ] {
        let first = c.op(op, &[("cluster_id", id)], Some(body.clone())).await;
        assert_eq!(first.status, 200, "{op}: {first:?}");
        let again = c.op(op, &[("cluster_id", id)], Some(body)).await;
        assert_eq!(again.body, first.body, "{op}: the first answer");
        let applied = sim.applied_for(op);
        assert_eq!(applied.len(), 1, "{op}: applied once");
        assert!(applied[0].client_token.is_some(), "{op}");
    }
    // RunClusterInspect's token is `clientToken`: `client_token` is not it.
    let body = json!({"client_token": "tok-i"});
    c.op("RunClusterInspect", &[("cluster_id", id)], Some(body))
        .await;
    assert_eq!(sim.applied_for("RunClusterInspect").len(), 2);
}
