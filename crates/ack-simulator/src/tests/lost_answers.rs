//! How a write's answer is lost: `reset_unapplied` before the write is applied, the kinds that
//! apply first and then lose the answer, and `answer_delay_ms` against `delay_ms`.

use super::harness::{cluster_count, control, create, inject, simulator, Client};
use crate::{Fault, FaultKind};
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test]
async fn reset_unapplied_closes_the_connection_before_the_write_is_applied() {
    let sim = simulator().await;
    let c = Client::root(&sim);
    // Injected as a caller of the control API would.
    let added = control(
        &sim,
        "POST",
        "/__simulator/faults",
        Some(json!({"operation": "CreateCluster", "kind": "reset_unapplied"})),
    )
    .await;
    assert_eq!(added.status, 204, "{added:?}");
    let lost = create(&c, "never", None).await;
    assert_eq!((lost.status, lost.whole), (0, false), "no answer: {lost:?}");
    assert_eq!(cluster_count(&c).await, 0, "nothing was created");
    assert_eq!(sim.applied().count, 0);
    let seen = sim.requests_for("CreateCluster");
    assert_eq!(
        (seen.len(), seen[0].status),
        (1, 0),
        "recorded as unanswered"
    );
    // The resend is the first application.
    let resent = create(&c, "never", None).await;
    assert_eq!(resent.status, 200, "{resent:?}");
    assert_eq!(cluster_count(&c).await, 1);
    assert_eq!(sim.applied().count, 1);
}

#[tokio::test]
async fn the_kinds_that_apply_first_lose_an_answer_after_the_write_took_effect() {
    for kind in [
        FaultKind::ResetBeforeHeaders,
        FaultKind::ResetAfterHeaders,
        FaultKind::TruncatedBody,
    ] {
        let sim = simulator().await;
        let c = Client::root(&sim);
        inject(
            &sim,
            "CreateCluster",
            Fault {
                kind,
                ..Fault::default()
            },
        );
        let lost = create(&c, "applied", None).await;
        assert!(!lost.whole, "{kind:?}: the answer is lost: {lost:?}");
        assert_eq!(cluster_count(&c).await, 1, "{kind:?}: created all the same");
        let applied = sim.applied();
        assert_eq!(applied.count, 1, "{kind:?}");
        assert_eq!(applied.writes[0].operation, "CreateCluster");
    }
}

#[tokio::test]
async fn answer_delay_holds_the_answer_of_a_write_already_applied() {
    let sim = simulator().await;
    let c = Client::root(&sim);
    let added = control(
        &sim,
        "POST",
        "/__simulator/faults",
        Some(json!({"operation": "CreateCluster", "answer_delay_ms": 1500})),
    )
    .await;
    assert_eq!(added.status, 204, "{added:?}");
    let started = Instant::now();
    let call = tokio::spawn({
        let c = c.clone();
        async move { create(&c, "late", None).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!call.is_finished(), "the answer is held");
    assert_eq!(
        cluster_count(&c).await,
        1,
        "applied before the answer is sent"
    );
    assert_eq!(sim.applied().count, 1);
    let answer = call.await.expect("the call ends");
    assert!(started.elapsed() >= Duration::from_millis(1500));
    assert!(
        answer.status == 200 && answer.whole,
        "the real answer: {answer:?}"
    );
    assert_eq!(sim.applied().writes[0].request_id, answer.request_id);
    // The answer names the cluster the held write created.
    let listed = c.op("DescribeClustersV1", &[], None).await;
    assert_eq!(
        listed.body["clusters"][0]["cluster_id"],
        answer.body["cluster_id"]
    );

    // `delay_ms`, by contrast, waits before applying.
    inject(
        &sim,
        "CreateCluster",
        Fault {
            delay_ms: 1500,
            ..Fault::default()
        },
    );
    let call = tokio::spawn({
        let c = c.clone();
        async move { create(&c, "slow", None).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(cluster_count(&c).await, 1, "not applied yet");
    assert_eq!(call.await.expect("the call ends").status, 200);
    assert_eq!(cluster_count(&c).await, 2);
}
