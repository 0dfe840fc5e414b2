//! Cluster inspections: `RunClusterInspect` starts a task that makes a report (it does not keep
//! the cluster busy); `GetClusterInspectReportDetail` and `ListClusterInspectReports` show it
//! `running` while the task runs, then `completed` with its check items and summary (or
//! `failed`, with the task's error code as the summary's `code`, when the task failed). The
//! wire names are the API's (`reportId`, `checkItemResults`, `maxResults`, ...).
//!
//! Reports are kept for the clusters the simulator keeps. A cluster or report id it does not
//! know is answered with the catalogue's sample, as for every operation without state.

use super::handlers::{body_json, visible, visible_mut, Answer};
use super::state::{new_id, rfc3339, Effect, Inspection, Resources, Task, TaskSpec};
use super::{Request, SimSettings};
use serde_json::{json, Value};

/// The most `maxResults` may ask for, and the default.
const MAX_PAGE: usize = 50;

/// The checks every report makes: (category, uid, name, level, whether it finds a problem,
/// target type).
const CHECKS: &[(&str, &str, &str, &str, bool, &str)] = &[
    (
        "security",
        "sec-apiserver-public",
        "API server reachable from the Internet",
        "warning",
        true,
        "Cluster",
    ),
    (
        "security",
        "sec-rbac-default-sa",
        "Default service accounts with cluster roles",
        "error",
        false,
        "Cluster",
    ),
    (
        "stability",
        "stb-node-disk",
        "Nodes with less than 10% free disk",
        "error",
        false,
        "Node",
    ),
    (
        "stability",
        "stb-single-zone",
        "Node pools in a single zone",
        "advice",
        true,
        "NodePool",
    ),
    (
        "performance",
        "prf-coredns-replicas",
        "CoreDNS replicas for the cluster's size",
        "advice",
        false,
        "Addon",
    ),
    (
        "limitation",
        "lim-pod-cidr",
        "Pod CIDR addresses left",
        "warning",
        false,
        "Cluster",
    ),
    (
        "cost",
        "cst-idle-nodes",
        "Nodes idle for seven days",
        "advice",
        true,
        "Node",
    ),
];

/// `RunClusterInspect`; `None` for a cluster the simulator does not know.
pub fn run(state: &mut Resources, req: &Request, s: &SimSettings) -> Option<Answer> {
    let cluster_id = req.path_param("cluster_id").to_string();
    visible(state, req, &cluster_id).ok()?;
    if let Err(e) = body_json(req) {
        return Some(Err(e));
    }
    let report_id = new_id("ir-");
    let task = state.start_task(TaskSpec {
        task_type: "cluster_inspect",
        cluster_id: cluster_id.clone(),
        duration: s.duration_for("RunClusterInspect"),
        stages: vec!["CollectData", "RunChecks", "GenerateReport"],
        effect: Effect::Inspected(report_id.clone()),
        fails_with: s.take_failure("RunClusterInspect"),
        owner: req.account.clone(),
        keeps_busy: false,
    });
    let started = state
        .tasks
        .get(&task)
        .map_or_else(time::OffsetDateTime::now_utc, |t| t.started_at);
    let cluster = visible_mut(state, req, &cluster_id).ok()?;
    cluster.inspections.push(Inspection {
        report_id: report_id.clone(),
        task_id: task.clone(),
        started,
    });
    Some(Ok(Some(json!({
        "reportId": report_id,
        "taskId": task,
        "requestId": req.request_id,
    }))))
}

/// `GetClusterInspectReportDetail`; `None` for a cluster or report the simulator does not know.
pub fn detail(state: &mut Resources, req: &Request) -> Option<Answer> {
    let cluster = visible(state, req, req.path_param("cluster_id")).ok()?;
    let report_id = req.path_param("report_id");
    let report = cluster
        .inspections
        .iter()
        .find(|r| r.report_id == report_id)?;
    let task = state.tasks.get(&report.task_id);
    let mut v = summary_json(report, task);
    let filter = |key: &str| req.query_param(key).filter(|v| !v.is_empty());
    let (category, level, target) = (filter("category"), filter("level"), filter("targetType"));
    let only_problems = req.query_param("enableFilter") == Some("true");
    let results: Vec<Value> = if v["status"] == "completed" {
        CHECKS
            .iter()
            .filter(|c| category.is_none_or(|x| x == c.0))
            .filter(|c| level.is_none_or(|x| x == c.3))
            .filter(|c| target.is_none_or(|x| x == c.5))
            .filter(|c| !only_problems || c.4)
            .map(|c| check_json(c, &cluster.id))
            .collect()
    } else {
        Vec::new()
    };
    let (page, next) = page_of(req, results, |c| c["checkItemUid"].clone());
    v["checkItemResults"] = json!(page);
    v["nextToken"] = json!(next);
    v["requestId"] = json!(req.request_id);
    Some(Ok(Some(v)))
}

/// `ListClusterInspectReports`, newest first; `None` for a cluster the simulator does not know.
pub fn list(state: &mut Resources, req: &Request) -> Option<Answer> {
    let cluster = visible(state, req, req.path_param("cluster_id")).ok()?;
    let reports: Vec<Value> = cluster
        .inspections
        .iter()
        .rev()
        .map(|r| summary_json(r, state.tasks.get(&r.task_id)))
        .collect();
    let (page, next) = page_of(req, reports, |r| r["reportId"].clone());
    Some(Ok(Some(json!({
        "reports": page,
        "nextToken": next,
        "requestId": req.request_id,
    }))))
}

/// A page of `items` by `maxResults` and `nextToken` (the id of the next item, as `id` gives
/// it), and the token of the page after it (empty on the last). A token never issued reads
/// past the end.
fn page_of(req: &Request, items: Vec<Value>, id: impl Fn(&Value) -> Value) -> (Vec<Value>, String) {
    let size = req
        .query_param("maxResults")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(MAX_PAGE)
        .clamp(1, MAX_PAGE);
    let start = match req.query_param("nextToken").filter(|t| !t.is_empty()) {
        None => 0,
        Some(t) => items.iter().position(|i| id(i) == t).unwrap_or(items.len()),
    };
    let next = items
        .get(start.saturating_add(size))
        .and_then(|i| id(i).as_str().map(str::to_string))
        .unwrap_or_default();
    (items.into_iter().skip(start).take(size).collect(), next)
}

/// A report's status, times and (once it ended) summary.
fn summary_json(report: &Inspection, task: Option<&Task>) -> Value {
    let state = task.map_or("success", Task::state);
    let status = match state {
        "success" => "completed",
        "failed" | "canceled" => "failed",
        _ => "running",
    };
    let mut v = json!({
        "reportId": report.report_id,
        "status": status,
        "startTime": rfc3339(report.started),
    });
    if status == "running" {
        return v;
    }
    if let Some(t) = task {
        v["endTime"] = json!(rfc3339(t.ended_at()));
    }
    let count = |level: &str| {
        CHECKS
            .iter()
            .filter(|c| c.4 && (c.3 == level || (level == "error" && c.3 == "critical")))
            .count()
    };
    v["summary"] = match task.and_then(Task::error) {
        Some((code, _)) => json!({"code": code, "normalCount": 0, "adviceCount": 0,
                                  "warnCount": 0, "errorCount": 0}),
        None => json!({
            "code": "Success",
            "normalCount": CHECKS.iter().filter(|c| !c.4).count(),
            "adviceCount": count("advice"),
            "warnCount": count("warning"),
            "errorCount": count("error"),
        }),
    };
    v
}

fn check_json(c: &(&str, &str, &str, &str, bool, &str), cluster_id: &str) -> Value {
    let (category, uid, name, level, problem, target_type) = *c;
    json!({
        "category": category,
        "checkItemUid": uid,
        "name": name,
        "description": format!("{name}: checked by the simulator"),
        "fix": if problem { "see the ACK documentation for the check" } else { "" },
        "level": level,
        "result": problem.to_string(),
        "targetType": target_type,
        "targets": if problem { vec![cluster_id.to_string()] } else { Vec::new() },
    })
}
