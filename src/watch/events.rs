//! A cluster's events (`WatchClusterEvents`): one poll reads `DescribeClusterEvents` newest
//! first, page after page (by `next_token`, which does not shift when events arrive), until it
//! meets an event it knows; the events it did not know become the target's new events, oldest
//! first, each once by its id. The first poll reads at most `MAX_PAGES` pages: what was there
//! before the first subscriber, kept for subscribers that ask for events `since` a time.
//!
//! The target's status does not change with the events (it says the cluster's events are
//! followed), so only new events, a failed poll or the end make a message; each subscriber
//! filters them by level and time on its own (`subscriber::EventFilter`).

use super::answer::Node;
use super::target::{History, MAX_EVENTS};
use super::Watcher;
use crate::error::GatewayError;
use crate::gateway::CallContext;
use crate::proto::gateway::{Phase, TaskEvent, WatchStatus};
use prost_reflect::{DynamicMessage, ReflectMessage as _, Value as PValue};
use std::collections::HashSet;

/// The operation polled.
pub(super) const OPERATION: &str = "DescribeClusterEvents";
/// Events per page (the API's most), and the most pages one poll reads.
const PAGE: i32 = 100;
const MAX_PAGES: usize = 10;

/// One poll: the events not known yet, oldest first, as one `DescribeClusterEvents` answer
/// holding just them. `request` names the cluster; each page sets its size and token on a copy.
/// Each page after the first takes the shared poll budget and counts as a poll.
pub(super) async fn fetch(
    hub: &Watcher,
    ctx: &CallContext,
    request: &DynamicMessage,
    history: &History,
) -> Result<(DynamicMessage, Option<String>), GatewayError> {
    let known: HashSet<&str> = history.events.iter().map(|e| e.event_id.as_str()).collect();
    let mut fresh: Vec<PValue> = Vec::new();
    let mut ids = HashSet::new();
    let mut page_request = request.clone();
    set(&mut page_request, "max_results", PValue::I32(PAGE))?;
    let mut request_id = None;
    // The answer's message, to hold the new events of every page read.
    let mut response = None;
    for page in 0..MAX_PAGES {
        if page > 0 {
            hub.budget.take().await;
            hub.count_poll();
        }
        let (mut answer, id) = hub
            .gateway
            .call_message(super::poller::SERVICE, OPERATION, ctx, &page_request)
            .await?;
        request_id = request_id.or(id);
        let events = match answer.take_field_by_name("events") {
            Some(PValue::List(events)) => events,
            _ => Vec::new(),
        };
        let mut met_known = false;
        let count = events.len();
        for e in events {
            let id = match &e {
                PValue::Message(m) => Node::of(m).get("event_id").text(),
                _ => String::new(),
            };
            if known.contains(id.as_str()) {
                met_known = true;
                break;
            }
            if ids.insert(id) {
                fresh.push(e);
            }
        }
        let token = Node::of(&answer)
            .get("next_token")
            .as_str()
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        response.get_or_insert_with(|| answer.descriptor());
        match token {
            Some(t) if !met_known && count > 0 => {
                set(&mut page_request, "next_token", PValue::String(t))?
            }
            _ => break,
        }
    }
    fresh.reverse();
    let response = response.ok_or_else(|| GatewayError::Internal("no page read".into()))?;
    let mut made = DynamicMessage::new(response);
    set(&mut made, "events", PValue::List(fresh))?;
    Ok((made, request_id))
}

fn set(message: &mut DynamicMessage, field: &str, value: PValue) -> Result<(), GatewayError> {
    message
        .try_set_field_by_name(field, value)
        .map_err(|e| GatewayError::Internal(format!("{OPERATION}: {e}")))
}

/// Reads a poll's new events into the history, each once, keeping the newest `MAX_EVENTS`.
pub(super) fn read(
    v: &Node,
    history: &mut History,
    status: &mut WatchStatus,
) -> Option<tonic::Status> {
    for e in v.get("events").items() {
        let event_id = e.get("event_id").text();
        if history.events.iter().any(|k| k.event_id == event_id) {
            continue;
        }
        history.events.push(TaskEvent {
            timestamp: e.get("time").text(),
            level: e.get("data").get("level").text(),
            reason: e.get("data").get("reason").text(),
            message: e.get("data").get("message").text(),
            source: e.get("source").text(),
            event_id,
            r#type: e.get("type").text(),
            subject: e.get("subject").text(),
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
