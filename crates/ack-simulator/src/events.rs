//! `DescribeClusterEvents`: what happened to a cluster — each task started, succeeded, failed
//! or was canceled, node pools created, scaled, updated and deleted, upgrades paused and resumed
//! — newest first, as the console lists them. Each event has its `event_id`, a `type` (the
//! task's), its `time`, the `subject` it concerns, and `data` with `level` (`info`, `warning`,
//! `error`), `reason` and `message`. `task_id` keeps one task's events.
//!
//! Paging, as the API pages: by `page_number` and `page_size` (1 to 100, default 50), or by
//! `max_results` (1 to 100, default 50) and `next_token`, which is the id of the next event to
//! return, so a page does not shift when new events arrive. Every answer carries `next_token`
//! (empty on the last page) and `page_info`. A token the simulator never issued reads past the
//! end: an empty page.

use super::handlers::{visible, Answer};
use super::state::{rfc3339, Cluster, ClusterEvent, Resources};
use super::Request;
use serde_json::{json, Value};

/// The default and the largest page.
const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 100;

fn number(req: &Request, key: &str) -> Option<usize> {
    req.query_param(key).and_then(|v| v.parse::<usize>().ok())
}

pub fn describe(state: &mut Resources, req: &Request) -> Answer {
    let cluster = visible(state, req, req.path_param("cluster_id"))?;
    let task = req.query_param("task_id").filter(|t| !t.is_empty());
    let newest_first: Vec<&ClusterEvent> = cluster
        .events
        .events
        .iter()
        .rev()
        .filter(|e| task.is_none_or(|t| e.task_id == t))
        .collect();
    let token = req.query_param("next_token").filter(|t| !t.is_empty());
    let by_token = token.is_some() || req.query_param("max_results").is_some();
    let (size, start) = if by_token {
        let size = number(req, "max_results")
            .unwrap_or(DEFAULT_PAGE)
            .clamp(1, MAX_PAGE);
        let start = match token {
            None => 0,
            Some(t) => newest_first
                .iter()
                .position(|e| e.id == t)
                .unwrap_or(newest_first.len()),
        };
        (size, start)
    } else {
        let size = number(req, "page_size")
            .unwrap_or(DEFAULT_PAGE)
            .clamp(1, MAX_PAGE);
        let page = number(req, "page_number").unwrap_or(1).max(1);
        (size, (page - 1).saturating_mul(size))
    };
    let page: Vec<Value> = newest_first
        .iter()
        .skip(start)
        .take(size)
        .map(|e| to_json(cluster, e))
        .collect();
    let next = newest_first
        .get(start.saturating_add(size))
        .map_or(String::new(), |e| e.id.clone());
    Ok(Some(json!({
        "events": page,
        "next_token": next,
        "page_info": {
            "page_number": start / size + 1,
            "page_size": size,
            "total_count": newest_first.len(),
        },
    })))
}

fn to_json(cluster: &Cluster, e: &ClusterEvent) -> Value {
    json!({
        "cluster_id": cluster.id,
        "event_id": e.id,
        "source": "simulator",
        "subject": e.subject,
        // Whole seconds, as the cloud's event times are: one length, so they sort as text.
        "time": rfc3339(e.time.replace_nanosecond(0).unwrap_or(e.time)),
        "type": e.kind,
        "data": {"level": e.level, "reason": e.reason, "message": e.message},
    })
}
