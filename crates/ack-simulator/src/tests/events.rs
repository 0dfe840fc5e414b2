//! A cluster's events: what they tell, newest first, paged by number and by token as the API
//! pages them, and an upgrade's pause, resume and cancel among them.

use super::harness::{running_cluster, simulator_with, wait_task, Client, LONG_TASK, TASK};
use serde_json::json;

#[tokio::test]
async fn cluster_events_tell_what_happened_newest_first_and_page_as_the_api() {
    let sim = simulator_with(TASK).await;
    let c = Client::root(&sim);
    let id = running_cluster(&c, "events").await;
    let cluster = [("cluster_id", id.as_str())];
    let created = c
        .op(
            "CreateClusterNodePool",
            &cluster,
            Some(json!({"nodepool_info": {"name": "p"}, "scaling_group": {"desired_size": 1}})),
        )
        .await;
    assert_eq!(wait_task(&c, &created.text("task_id")).await, "success");
    let np = created.text("nodepool_id");
    let pool = [("cluster_id", id.as_str()), ("nodepool_id", np.as_str())];
    let scaled = c
        .op("ScaleClusterNodePool", &pool, Some(json!({"count": 2})))
        .await;
    assert_eq!(wait_task(&c, &scaled.text("task_id")).await, "success");
    sim.fail_next_task("ScaleClusterNodePool", "InstanceStockOut", "no stock");
    let failed = c
        .op("ScaleClusterNodePool", &pool, Some(json!({"count": 1})))
        .await;
    assert_eq!(wait_task(&c, &failed.text("task_id")).await, "failed");
    let deleted = c.op("DeleteClusterNodepool", &pool, None).await;
    assert_eq!(wait_task(&c, &deleted.text("task_id")).await, "success");

    let all = c
        .op_query("DescribeClusterEvents", &cluster, &[("page_size", "100")])
        .await;
    assert_eq!(all.status, 200, "{all:?}");
    let events = all.body["events"].as_array().expect("events").clone();
    let reasons: Vec<&str> = events
        .iter()
        .rev()
        .filter_map(|e| e["data"]["reason"].as_str())
        .collect();
    assert_eq!(
        reasons,
        [
            "TaskStarted",
            "TaskSucceeded",
            "ClusterCreated",
            "TaskStarted",
            "TaskSucceeded",
            "NodePoolCreated",
            "TaskStarted",
            "TaskSucceeded",
            "NodePoolScaled",
            "TaskStarted",
            "TaskFailed",
            "TaskStarted",
            "TaskSucceeded",
            "NodePoolDeleted",
        ],
        "oldest first once reversed"
    );
    let times: Vec<&str> = events.iter().filter_map(|e| e["time"].as_str()).collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {times:?}"
    );
    let failure = events
        .iter()
        .find(|e| e["data"]["reason"] == "TaskFailed")
        .expect("failure");
    assert_eq!(failure["data"]["level"], "error");
    assert_eq!(failure["subject"], np.as_str());
    assert_eq!(failure["type"], "nodepool_scaleout");
    assert!(failure["data"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("InstanceStockOut: no stock")));
    assert!(events
        .iter()
        .all(|e| e["cluster_id"] == id.as_str() && e["data"]["level"] != ""));
    let ids: std::collections::BTreeSet<&str> = events
        .iter()
        .filter_map(|e| e["event_id"].as_str())
        .collect();
    assert_eq!(ids.len(), events.len(), "every event has its own id");
    assert_eq!(all.body["page_info"]["total_count"], events.len());
    assert_eq!(all.body["next_token"], "");

    // Pages by number, and by token: the same events in the same order.
    let paged = c
        .op_query(
            "DescribeClusterEvents",
            &cluster,
            &[("page_size", "4"), ("page_number", "2")],
        )
        .await;
    assert_eq!(
        paged.body["events"].as_array().expect("page")[..],
        events[4..8]
    );
    assert_eq!(paged.body["page_info"]["page_number"], 2);
    let mut by_token = Vec::new();
    let mut token = String::new();
    for _ in 0..10 {
        let mut query = vec![("max_results", "5")];
        if !token.is_empty() {
            query.push(("next_token", token.as_str()));
        }
        let page = c.op_query("DescribeClusterEvents", &cluster, &query).await;
        by_token.extend(page.body["events"].as_array().expect("page").clone());
        token = page.text("next_token");
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(by_token, events);
    // A token the simulator never issued reads past the end; one task's events on their own.
    let past = c
        .op_query(
            "DescribeClusterEvents",
            &cluster,
            &[("next_token", "evt-nope")],
        )
        .await;
    assert_eq!(
        (past.status, past.body["events"].as_array().map(Vec::len)),
        (200, Some(0))
    );
    let task = scaled.text("task_id");
    let one = c
        .op_query("DescribeClusterEvents", &cluster, &[("task_id", &task)])
        .await;
    let one = one.body["events"].as_array().expect("events").clone();
    assert_eq!(one.len(), 3);
    assert!(one.iter().all(|e| e["data"]["level"] == "info"));
    let unknown = c
        .op_query("DescribeClusterEvents", &[("cluster_id", "c-nope")], &[])
        .await;
    assert_eq!(
        (unknown.status, unknown.code()),
        (404, "ErrorClusterNotFound")
    );
}

#[tokio::test]
async fn upgrades_are_events_too() {
    let sim = simulator_with(LONG_TASK).await;
    let c = Client::root(&sim);
    let id = running_cluster(&c, "upgraded").await;
    let cluster = [("cluster_id", id.as_str())];
    let upgrade = c
        .op(
            "UpgradeCluster",
            &cluster,
            Some(json!({"next_version": "1.32.1-aliyun.1"})),
        )
        .await;
    assert_eq!(upgrade.status, 200, "{upgrade:?}");
    assert_eq!(
        c.op("PauseClusterUpgrade", &cluster, None).await.status,
        200
    );
    assert_eq!(
        c.op("ResumeUpgradeCluster", &cluster, None).await.status,
        200
    );
    assert_eq!(
        c.op("CancelClusterUpgrade", &cluster, None).await.status,
        200
    );
    let again = c
        .op(
            "UpgradeCluster",
            &cluster,
            Some(json!({"next_version": "1.32.1-aliyun.1"})),
        )
        .await;
    assert_eq!(wait_task(&c, &again.text("task_id")).await, "success");
    let all = c.op_query("DescribeClusterEvents", &cluster, &[]).await;
    let reasons: Vec<&str> = all.body["events"]
        .as_array()
        .expect("events")
        .iter()
        .rev()
        .filter(|e| e["type"] == "cluster_upgrade")
        .filter_map(|e| e["data"]["reason"].as_str())
        .collect();
    assert_eq!(
        reasons,
        [
            "TaskStarted",
            "UpgradePaused",
            "UpgradeResumed",
            "TaskCanceled",
            "TaskStarted",
            "TaskSucceeded",
            "ClusterUpgraded"
        ]
    );
}
