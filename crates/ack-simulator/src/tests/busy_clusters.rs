//! A cluster kept busy by its tasks: `scaling` or `updating` while one runs, refusing the writes
//! that need it running, and serving again once the task ends, even in failure.

use super::harness::{
    cluster_state, running_cluster, simulator_with, wait_task, Client, LONG_TASK,
};
use serde_json::{json, Value};

/// A task-starting write: operation, path parameters, body (`null`: none), and the state it
/// keeps the cluster in while its task runs.
type Step<'a> = (&'a str, &'a [(&'a str, &'a str)], Value, &'a str);

#[tokio::test]
async fn a_cluster_is_busy_while_its_task_runs_and_refuses_writes_that_need_it_running() {
    let sim = simulator_with(LONG_TASK).await;
    let c = Client::root(&sim);
    let id = running_cluster(&c, "busy").await;
    let cluster = [("cluster_id", id.as_str())];
    let pool = c
        .op(
            "CreateClusterNodePool",
            &cluster,
            Some(json!({"nodepool_info": {"name": "p1"}, "scaling_group": {"desired_size": 1}})),
        )
        .await;
    assert_eq!(pool.status, 200, "{pool:?}");
    assert_eq!(wait_task(&c, &pool.text("task_id")).await, "success");
    let np = pool.text("nodepool_id");
    let in_pool = [("cluster_id", id.as_str()), ("nodepool_id", np.as_str())];
    let steps: Vec<Step> = vec![
        ("ScaleOutCluster", &cluster, json!({"count": 1}), "scaling"),
        (
            "AttachInstances",
            &cluster,
            json!({"instances": ["i-1"]}),
            "scaling",
        ),
        (
            "CreateClusterNodePool",
            &cluster,
            json!({"nodepool_info": {"name": "p2"}, "scaling_group": {"desired_size": 1}}),
            "updating",
        ),
        (
            "ModifyClusterNodePool",
            &in_pool,
            json!({"nodepool_info": {"name": "p1-renamed"}}),
            "updating",
        ),
        (
            "ScaleClusterNodePool",
            &in_pool,
            json!({"count": 1}),
            "scaling",
        ),
        (
            "InstallClusterAddons",
            &cluster,
            json!([{"name": "extra"}]),
            "updating",
        ),
        (
            "UpgradeClusterAddons",
            &cluster,
            json!([{"component_name": "coredns", "next_version": "v2"}]),
            "updating",
        ),
        (
            "UnInstallClusterAddons",
            &cluster,
            json!([{"name": "extra"}]),
            "updating",
        ),
        (
            "UpgradeCluster",
            &cluster,
            json!({"next_version": "1.32.1-aliyun.1"}),
            "updating",
        ),
        ("DeleteClusterNodepool", &in_pool, Value::Null, "updating"),
    ];
    for (op, params, body, busy) in steps {
        let body = (!body.is_null()).then_some(body);
        let started = c.op(op, params, body).await;
        assert_eq!(started.status, 200, "{op}: {started:?}");
        assert_eq!(cluster_state(&c, &id).await, busy, "{op}");
        let counted = sim.applied().count;
        // A write that needs the cluster running is refused meanwhile, and applies nothing.
        let probe = json!({"count": 1});
        let refused = c.op("ScaleOutCluster", &cluster, Some(probe.clone())).await;
        assert_eq!(
            (refused.status, refused.code()),
            (400, "ErrorClusterState"),
            "{op}: {refused:?}"
        );
        assert_eq!(sim.applied().count, counted, "{op}: refused, not applied");
        assert_eq!(
            wait_task(&c, &started.text("task_id")).await,
            "success",
            "{op}"
        );
        assert_eq!(cluster_state(&c, &id).await, "running", "after {op}");
        // The same write is applied once the task has ended.
        let scaled = c.op("ScaleOutCluster", &cluster, Some(probe)).await;
        assert_eq!(scaled.status, 200, "after {op}: {scaled:?}");
        assert_eq!(sim.applied().count, counted + 1, "after {op}");
        assert_eq!(wait_task(&c, &scaled.text("task_id")).await, "success");
    }
}

#[tokio::test]
async fn a_cluster_whose_task_failed_serves_again() {
    let sim = simulator_with(LONG_TASK).await;
    let c = Client::root(&sim);
    let id = running_cluster(&c, "failing").await;
    sim.fail_next_task("CreateClusterNodePool", "QuotaExceeded", "no instances");
    let pool = c
        .op(
            "CreateClusterNodePool",
            &[("cluster_id", &id)],
            Some(
                json!({"nodepool_info": {"name": "doomed"}, "scaling_group": {"desired_size": 1}}),
            ),
        )
        .await;
    assert_eq!(pool.status, 200, "{pool:?}");
    assert_eq!(cluster_state(&c, &id).await, "updating");
    assert_eq!(wait_task(&c, &pool.text("task_id")).await, "failed");
    assert_eq!(cluster_state(&c, &id).await, "running");
    // A failed upgrade, as before, leaves the cluster `updating_failed`.
    sim.fail_next_task("UpgradeCluster", "UpgradeFailed", "nodes did not drain");
    let upgrade = c
        .op(
            "UpgradeCluster",
            &[("cluster_id", &id)],
            Some(json!({"next_version": "1.32.1-aliyun.1"})),
        )
        .await;
    assert_eq!(wait_task(&c, &upgrade.text("task_id")).await, "failed");
    assert_eq!(cluster_state(&c, &id).await, "updating_failed");
}
