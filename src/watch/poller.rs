//! One poller: reads its target through `Gateway::call_json` (the unary path, so authorization,
//! caching and rate limits apply to polls too), publishes what changed, and waits: the adaptive
//! interval after a successful poll, the retry backoff after a transient failure, both jittered,
//! and never faster than the shared rate budget allows. It stops when the work ends, when a poll
//! fails in a way retrying cannot fix, or when its last subscriber has left.

use super::backoff::{jittered, Interval, Retry};
use super::target::{End, History, Reading};
use super::{PollKey, Snapshot, Watcher};
use crate::cache::Freshness;
use crate::gateway::CallContext;
use crate::proto::gateway::PollError;
use std::sync::Arc;
use std::time::SystemTime;
use tokio::sync::watch;
use tonic::{Code, Status};
use tonic_types::StatusExt;

/// The table's service key of the ACK API, which every watched operation belongs to.
const SERVICE: &str = "cs";

/// Codes of polls worth retrying: the upstream or the path to it is briefly unable to answer.
fn is_transient(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable | Code::ResourceExhausted | Code::DeadlineExceeded
    )
}

enum Outcome {
    Read(Box<Reading>),
    Transient(Status),
}

pub(super) async fn run(
    hub: Arc<Watcher>,
    key: PollKey,
    id: u64,
    mut ctx: CallContext,
    tx: watch::Sender<Arc<Snapshot>>,
) {
    let config = hub.config.clone();
    let mut interval = Interval::new(&config);
    let mut retry = Retry::new(&config);
    let mut history = History::default();
    let request = key.target.request();
    let operation = key.target.operation();
    let mut last_poll: Option<std::time::Instant> = None;
    tracing::debug!(target_kind = key.target.kind(), target_id = key.target.id(), profile = %key.profile, "poller started");
    loop {
        // A cached answer is welcome if it is newer than the previous poll: older, it would
        // tell nothing new. The first poll takes any cached answer as the current status.
        ctx.cache_control = match last_poll {
            Some(at) => Freshness::MaxAge(at.elapsed()),
            None => Freshness::Any,
        };
        last_poll = Some(std::time::Instant::now());
        // The budget wait and the poll are both abandoned when every subscriber has left.
        let result = tokio::select! {
            biased;
            () = tx.closed() => None,
            result = async {
                hub.budget.take().await;
                hub.count_poll();
                hub.gateway.call_json(SERVICE, operation, &ctx, request.clone()).await
            } => Some(result),
        };
        let Some(result) = result else {
            if hub.retire(&key, id, false) {
                break;
            }
            continue;
        };
        let outcome = match result {
            Ok((answer, _)) => Outcome::Read(Box::new(key.target.read(&answer, &mut history))),
            Err(e) => {
                let status = e.into_status();
                match status.code() {
                    Code::NotFound => {
                        Outcome::Read(Box::new(key.target.gone(status, &mut history)))
                    }
                    c if is_transient(c) => Outcome::Transient(status),
                    _ => Outcome::Read(Box::new(Reading {
                        status: key.target.pending(),
                        end: Some(End::Poll(status)),
                    })),
                }
            }
        };
        let previous = tx.borrow().clone();
        let wait = match outcome {
            Outcome::Read(reading) => {
                retry.succeeded();
                let ended = reading.end.is_some();
                if publish_reading(&tx, &previous, *reading, &history) {
                    interval.changed();
                } else {
                    interval.unchanged();
                }
                if ended {
                    hub.retire(&key, id, true);
                    break;
                }
                interval.current()
            }
            Outcome::Transient(status) => {
                let asked = status.get_details_retry_info().and_then(|r| r.retry_delay);
                let (wait, attempt) = retry.failed(asked);
                let wait = jittered(wait, config.jitter, rand::random::<f64>());
                tracing::debug!(target_id = key.target.id(), attempt, error = %status.message(), "transient poll failure");
                tx.send_replace(Arc::new(Snapshot {
                    sequence: previous.sequence + 1,
                    polled: true,
                    poll_error: Some(PollError {
                        code: crate::error::code_name(status.code()).into(),
                        message: status.message().to_string(),
                        attempt,
                        retry_in: prost_types::Duration::try_from(wait).ok(),
                    }),
                    ..(*previous).clone()
                }));
                // Already jittered: the retry wait is what the subscribers were told.
                if sleep_unless_abandoned(&hub, &key, id, &tx, wait).await {
                    break;
                }
                continue;
            }
        };
        let wait = jittered(wait, config.jitter, rand::random::<f64>());
        if sleep_unless_abandoned(&hub, &key, id, &tx, wait).await {
            break;
        }
    }
    tracing::debug!(
        target_kind = key.target.kind(),
        target_id = key.target.id(),
        "poller stopped"
    );
}

/// Publishes a successful read; returns whether anything a subscriber sees changed. An
/// unchanged read only refreshes `observed_at`, without waking anyone.
fn publish_reading(
    tx: &watch::Sender<Arc<Snapshot>>,
    previous: &Snapshot,
    reading: Reading,
    history: &History,
) -> bool {
    // A poll that ends the watch without a reading keeps the last status known.
    let status = match (&reading.end, previous.polled) {
        (Some(End::Poll(_)), true) => previous.status.clone(),
        _ => reading.status,
    };
    let new_events = history.events.len() != previous.events.len();
    let changed = !previous.polled
        || new_events
        || status != previous.status
        || previous.poll_error.is_some()
        || reading.end.is_some();
    let next = Arc::new(Snapshot {
        sequence: previous.sequence + u64::from(changed),
        polled: true,
        status,
        events: if new_events {
            Arc::new(history.events.clone())
        } else {
            previous.events.clone()
        },
        poll_error: None,
        observed_at: Some(SystemTime::now()),
        end: reading.end,
    });
    tx.send_if_modified(|current| {
        *current = next;
        changed
    });
    changed
}

/// Sleeps for `wait`; returns true if the poller was retired meanwhile because its last
/// subscriber left.
async fn sleep_unless_abandoned(
    hub: &Watcher,
    key: &PollKey,
    id: u64,
    tx: &watch::Sender<Arc<Snapshot>>,
    wait: std::time::Duration,
) -> bool {
    let until = tokio::time::Instant::now() + wait;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(until) => return false,
            () = tx.closed() => {
                if hub.retire(key, id, false) {
                    return true;
                }
                // Someone joined between the last leaving and the retirement: keep going. The
                // next `closed()` waits for that subscriber to leave.
                tokio::task::yield_now().await;
            }
        }
    }
}
