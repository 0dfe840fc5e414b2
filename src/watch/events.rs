//! A cluster's events (`WatchClusterEvents`): one poll reads `DescribeClusterEvents` newest
//! first, page after page (by `next_token`, which does not shift when events arrive), until it
//! meets an event it knows; the events it did not know become the target's new events, oldest
//! first, each once by its id. The first poll reads at most `MAX_PAGES` pages: what was there
//! before the first subscriber, kept for subscribers that ask for events `since` a time.
//!
//! The target's status does not change with the events (it says the cluster's events are
//! followed), so only new events, a failed poll or the end make a message; each subscriber
//! filters them by level and time on its own (`subscriber::EventFilter`).

use super::target::{text, History, MAX_EVENTS};
use super::Watcher;
use crate::error::GatewayError;
use crate::gateway::CallContext;
use crate::proto::gateway::{Phase, TaskEvent, WatchStatus};
use serde_json::{json, Value};
use std::collections::HashSet;

/// The operation polled.
pub(super) const OPERATION: &str = "DescribeClusterEvents";
/// Events per page (the API's most), and the most pages one poll reads.
const PAGE: u64 = 100;
const MAX_PAGES: usize = 10;

/// One poll: the events not known yet, oldest first, as `{"events": [...]}` (proto names).
/// Each page after the first takes the shared poll budget and counts as a poll.
pub(super) async fn fetch(
    hub: &Watcher,
    ctx: &CallContext,
    cluster_id: &str,
    history: &History,
) -> Result<(Value, Option<String>), GatewayError> {
    let known: HashSet<&str> = history.events.iter().map(|e| e.event_id.as_str()).collect();
    let mut fresh: Vec<Value> = Vec::new();
    let mut ids = HashSet::new();
    let mut token: Option<String> = None;
    let mut request_id = None;
    for page in 0..MAX_PAGES {
        if page > 0 {
            hub.budget.take().await;
            hub.count_poll();
        }
        let mut request = json!({"cluster_id": cluster_id, "max_results": PAGE});
        if let Some(t) = &token {
            request["next_token"] = json!(t);
        }
        let (answer, id) = hub
            .gateway
            .call_json(super::poller::SERVICE, OPERATION, ctx, request)
            .await?;
        request_id = request_id.or(id);
        let events = answer["events"].as_array().map_or(&[][..], Vec::as_slice);
        let mut met_known = false;
        for e in events {
            let id = text(e, "event_id");
            if known.contains(id.as_str()) {
                met_known = true;
                break;
            }
            if ids.insert(id) {
                fresh.push(e.clone());
            }
        }
        token = answer["next_token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        if met_known || events.is_empty() || token.is_none() {
            break;
        }
    }
    fresh.reverse();
    Ok((json!({ "events": fresh }), request_id))
}

/// Reads a poll's new events into the history, each once, keeping the newest `MAX_EVENTS`.
pub(super) fn read(
    v: &Value,
    history: &mut History,
    status: &mut WatchStatus,
) -> Option<tonic::Status> {
    let events = v["events"].as_array().map_or(&[][..], Vec::as_slice);
    for e in events {
        let event_id = text(e, "event_id");
        if history.events.iter().any(|k| k.event_id == event_id) {
            continue;
        }
        history.events.push(TaskEvent {
            timestamp: text(e, "time"),
            level: text(&e["data"], "level"),
            reason: text(&e["data"], "reason"),
            message: text(&e["data"], "message"),
            source: text(e, "source"),
            event_id,
            r#type: text(e, "type"),
            subject: text(e, "subject"),
            ..Default::default()
        });
    }
    if history.events.len() > MAX_EVENTS {
        let extra = history.events.len() - MAX_EVENTS;
        history.events.drain(..extra);
        history.dropped += extra as u64;
    }
    status.phase = Phase::Running as i32;
    status.state = "following".into();
    status.message = format!("following the events of cluster {}", status.target_id);
    None
}
