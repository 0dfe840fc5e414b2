//! Inspection reports: one runs with its task, then completes (or fails), is read with filters
//! and pages, and is listed newest first.

use super::harness::{
    cluster_state, running_cluster, simulator_with, wait_task, Client, LONG_TASK,
};
use serde_json::json;

#[tokio::test]
async fn an_inspection_report_runs_then_completes_and_is_listed() {
    let sim = simulator_with(LONG_TASK).await;
    let c = Client::root(&sim);
    let id = running_cluster(&c, "inspected").await;
    let cluster = [("cluster_id", id.as_str())];
    let run = c.op("RunClusterInspect", &cluster, Some(json!({}))).await;
    assert_eq!(run.status, 200, "{run:?}");
    let report = run.text("reportId");
    assert!(report.starts_with("ir-"), "{run:?}");
    assert!(run.text("taskId").starts_with("T-"));
    assert_eq!(
        cluster_state(&c, &id).await,
        "running",
        "an inspection keeps no cluster busy"
    );
    let in_report = [("cluster_id", id.as_str()), ("report_id", report.as_str())];
    let running = c
        .op("GetClusterInspectReportDetail", &in_report, None)
        .await;
    assert_eq!(running.status, 200, "{running:?}");
    assert_eq!(running.text("status"), "running");
    assert_eq!(
        running.body["checkItemResults"].as_array().map(Vec::len),
        Some(0)
    );
    assert_eq!(wait_task(&c, &run.text("taskId")).await, "success");
    let done = c
        .op("GetClusterInspectReportDetail", &in_report, None)
        .await;
    assert_eq!(done.text("status"), "completed");
    assert!(!done.text("endTime").is_empty());
    let items = done.body["checkItemResults"]
        .as_array()
        .expect("items")
        .clone();
    assert_eq!(items.len(), 7);
    let summary = &done.body["summary"];
    let problems = items.iter().filter(|i| i["result"] == "true").count() as i64;
    let counted: i64 = ["adviceCount", "warnCount", "errorCount"]
        .iter()
        .map(|k| summary[k].as_i64().unwrap_or(0))
        .sum();
    assert_eq!(counted, problems);
    assert_eq!(
        summary["normalCount"].as_i64(),
        Some(items.len() as i64 - problems)
    );
    // Filters and pages, with the API's wire names.
    let security = c
        .op_query(
            "GetClusterInspectReportDetail",
            &in_report,
            &[("category", "security"), ("enableFilter", "true")],
        )
        .await;
    let security = security.body["checkItemResults"]
        .as_array()
        .expect("items")
        .clone();
    assert_eq!(security.len(), 1);
    assert_eq!(security[0]["checkItemUid"], "sec-apiserver-public");
    let first = c
        .op_query(
            "GetClusterInspectReportDetail",
            &in_report,
            &[("maxResults", "3")],
        )
        .await;
    assert_eq!(
        first.body["checkItemResults"].as_array().map(Vec::len),
        Some(3)
    );
    let token = first.text("nextToken");
    let second = c
        .op_query(
            "GetClusterInspectReportDetail",
            &in_report,
            &[("maxResults", "3"), ("nextToken", &token)],
        )
        .await;
    assert_eq!(second.body["checkItemResults"][0], items[3]);

    sim.fail_next_task(
        "RunClusterInspect",
        "InspectFailed",
        "the agent did not answer",
    );
    let failing = c.op("RunClusterInspect", &cluster, Some(json!({}))).await;
    assert_eq!(wait_task(&c, &failing.text("taskId")).await, "failed");
    let listed = c.op("ListClusterInspectReports", &cluster, None).await;
    let reports = listed.body["reports"].as_array().expect("reports").clone();
    let statuses: Vec<(&str, &str)> = reports
        .iter()
        .map(|r| {
            (
                r["reportId"].as_str().unwrap_or(""),
                r["status"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [
            (failing.text("reportId").as_str(), "failed"),
            (report.as_str(), "completed")
        ],
        "newest first"
    );
    assert_eq!(reports[0]["summary"]["code"], "InspectFailed");
    // A report the simulator never made is answered with the catalogue's sample, as before.
    let unknown = c
        .op(
            "GetClusterInspectReportDetail",
            &[("cluster_id", &id), ("report_id", "r-never")],
            None,
        )
        .await;
    assert_eq!(unknown.status, 200);
}
