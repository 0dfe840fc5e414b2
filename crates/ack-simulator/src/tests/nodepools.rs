//! A node pool's counts and conditions while its tasks run: nodes created then joining, drained
//! then released, and the failed nodes a failed scale-out leaves.

use super::harness::{running_cluster, simulator_with, wait_task, Client, LONG_TASK, TASK};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// A node pool's `status`.
async fn pool_status(c: &Client, cluster: &str, pool: &str) -> Value {
    let detail = c
        .op(
            "DescribeClusterNodePoolDetail",
            &[("cluster_id", cluster), ("nodepool_id", pool)],
            None,
        )
        .await;
    assert_eq!(detail.status, 200, "{detail:?}");
    detail.body["status"].clone()
}

fn count(status: &Value, key: &str) -> i64 {
    status[key].as_i64().unwrap_or(-1)
}

/// Reads the pool's status until its task ends (bounded), keeping every status seen.
async fn statuses_until_done(c: &Client, cluster: &str, pool: &str, task: &str) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    loop {
        let status = pool_status(c, cluster, pool).await;
        let info = c.op("DescribeTaskInfo", &[("task_id", task)], None).await;
        let running = matches!(info.text("state").as_str(), "running" | "paused");
        seen.push(status);
        if !running {
            seen.push(pool_status(c, cluster, pool).await);
            return seen;
        }
        assert!(Instant::now() < deadline, "task {task} never ended");
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
}

#[tokio::test]
async fn node_pool_counts_move_while_its_tasks_run() {
    let sim = simulator_with(LONG_TASK).await;
    let c = Client::root(&sim);
    let id = running_cluster(&c, "counts").await;
    let cluster = [("cluster_id", id.as_str())];
    let created = c
        .op(
            "CreateClusterNodePool",
            &cluster,
            Some(json!({"nodepool_info": {"name": "p"}, "scaling_group": {"desired_size": 4}})),
        )
        .await;
    assert_eq!(created.status, 200, "{created:?}");
    let np = created.text("nodepool_id");
    let seen = statuses_until_done(&c, &id, &np, &created.text("task_id")).await;
    assert_eq!(seen[0]["state"], "initial");
    // Nodes are created, then join: serving never goes down, and never passes the total.
    let serving: Vec<i64> = seen.iter().map(|s| count(s, "serving_nodes")).collect();
    assert!(serving.windows(2).all(|w| w[0] <= w[1]), "{serving:?}");
    assert!(seen
        .iter()
        .all(|s| count(s, "serving_nodes") <= count(s, "total_nodes")));
    assert!(
        seen.iter().any(|s| count(s, "initial_nodes") > 0),
        "new nodes are seen before they serve: {seen:?}"
    );
    let last = seen.last().expect("last");
    assert_eq!(last["state"], "active");
    assert_eq!(
        (count(last, "serving_nodes"), count(last, "total_nodes")),
        (4, 4)
    );
    assert_eq!(last["conditions"][0]["type"], "Ready");
    assert_eq!(last["conditions"][0]["status"], "True");

    // A smaller desired size removes nodes: `removing`, then back to active.
    let pool = [("cluster_id", id.as_str()), ("nodepool_id", np.as_str())];
    let shrunk = c
        .op(
            "ModifyClusterNodePool",
            &pool,
            Some(json!({"scaling_group": {"desired_size": 1}})),
        )
        .await;
    assert_eq!(shrunk.status, 200, "{shrunk:?}");
    let seen = statuses_until_done(&c, &id, &np, &shrunk.text("task_id")).await;
    assert_eq!(seen[0]["state"], "removing");
    assert_eq!(count(&seen[0], "removing_nodes"), 3);
    assert_eq!(seen[0]["conditions"][1]["type"], "Progressing");
    let last = seen.last().expect("last");
    assert_eq!(last["state"], "active");
    assert_eq!(
        (count(last, "total_nodes"), count(last, "removing_nodes")),
        (1, 0)
    );

    // A deletion drains every node, then the pool is gone.
    let deleted = c.op("DeleteClusterNodepool", &pool, None).await;
    assert_eq!(deleted.status, 200, "{deleted:?}");
    let first = pool_status(&c, &id, &np).await;
    assert_eq!(first["state"], "deleting");
    assert_eq!(count(&first, "serving_nodes"), 0);
    assert_eq!(
        count(&first, "removing_nodes"),
        count(&first, "total_nodes")
    );
    assert_eq!(wait_task(&c, &deleted.text("task_id")).await, "success");
    let gone = c.op("DescribeClusterNodePoolDetail", &pool, None).await;
    assert_eq!((gone.status, gone.code()), (404, "ErrorNodePoolNotFound"));
}

#[tokio::test]
async fn a_failed_scale_out_leaves_failed_nodes_and_says_why() {
    let sim = simulator_with(TASK).await;
    let c = Client::root(&sim);
    let id = running_cluster(&c, "failing-scale").await;
    let created = c
        .op(
            "CreateClusterNodePool",
            &[("cluster_id", &id)],
            Some(json!({"nodepool_info": {"name": "p"}, "scaling_group": {"desired_size": 1}})),
        )
        .await;
    assert_eq!(wait_task(&c, &created.text("task_id")).await, "success");
    let np = created.text("nodepool_id");
    sim.fail_next_task(
        "ScaleClusterNodePool",
        "InstanceStockOut",
        "no ecs.g7.xlarge left",
    );
    let scaled = c
        .op(
            "ScaleClusterNodePool",
            &[("cluster_id", &id), ("nodepool_id", &np)],
            Some(json!({"count": 2})),
        )
        .await;
    assert_eq!(scaled.status, 200, "{scaled:?}");
    assert_eq!(wait_task(&c, &scaled.text("task_id")).await, "failed");
    let status = pool_status(&c, &id, &np).await;
    assert_eq!(status["state"], "active");
    assert_eq!(
        (
            count(&status, "serving_nodes"),
            count(&status, "failed_nodes"),
            count(&status, "total_nodes")
        ),
        (1, 2, 3)
    );
    let ready = &status["conditions"][0];
    assert_eq!(
        (ready["status"].as_str(), ready["reason"].as_str()),
        (Some("False"), Some("InstanceStockOut"))
    );
    assert!(
        ready["message"]
            .as_str()
            .is_some_and(|m| m.contains("no ecs.g7.xlarge left")),
        "{ready}"
    );
    let nodes = c
        .op_query(
            "DescribeClusterNodes",
            &[("cluster_id", &id)],
            &[("nodepool_id", &np), ("state", "failed")],
        )
        .await;
    assert_eq!(
        nodes.body["nodes"].as_array().map(Vec::len),
        Some(2),
        "{nodes:?}"
    );
}
