//! One poller: reads its target through `Gateway::call_message` (the unary path, so authorization,
//! caching and rate limits apply to polls too; a cluster's events page by page, `events.rs`),
//! publishes what changed, and waits: the adaptive interval after a successful poll, the retry
//! backoff after a transient failure, both jittered, and never faster than the shared rate
//! budget allows. It stops when the work ends, when a poll
//! fails in a way retrying cannot fix, or when its last subscriber has left.
//!
//! With shared state (`[redis]`), one replica polls each target: the holder of the target's
//! lease, which it renews while it waits and stores every snapshot it publishes. The pollers of
//! the same target on other replicas relay what it stored instead of polling, and try for the
//! lease as they go, so one of them takes over within about a lease period when the holder
//! stops or is cut off. Sequences carry over, so subscribers drop nothing and repeat nothing.

use super::backoff::{jittered, Interval};
use super::target::{End, History, Reading, Target};
use super::{Observed, PollKey, Watcher};
use crate::cache::Freshness;
use crate::error::GatewayError;
use crate::gateway::CallContext;
use crate::proto::gateway::PollError;
use std::sync::Arc;
use std::time::SystemTime;
use tokio::sync::watch;
use tonic::{Code, Status};
use tonic_types::StatusExt;

/// The table's service key of the ACK API, which every watched operation belongs to.
pub(super) const SERVICE: &str = "cs";

/// Codes of polls worth retrying: the upstream or the path to it is briefly unable to answer.
fn is_transient(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable | Code::ResourceExhausted | Code::DeadlineExceeded
    )
}

enum PollOutcome {
    Read(Box<Reading>),
    Transient(Status),
}

pub(super) async fn run(
    hub: Arc<Watcher>,
    key: PollKey,
    id: u64,
    mut ctx: CallContext,
    tx: watch::Sender<Arc<Observed>>,
) {
    let config = hub.config.clone();
    let mut interval = Interval::new(&config);
    let mut retry = super::backoff::retry(&config);
    let mut history = History::default();
    let operation = key.target.operation();
    // The poll's typed request, made once.
    let request = hub
        .gateway
        .request_message(key.target.service(), operation)
        .and_then(|empty| key.target.request(empty));
    let mut last_poll: Option<std::time::Instant> = None;
    let lease = Lease::of(&hub, &key);
    // Whether the watch ended (rather than its subscribers leaving).
    let mut finished = false;
    tracing::debug!(target_kind = key.target.kind(), target_id = key.target.id(), profile = %key.profile, "poller started");
    loop {
        if let Some(lease) = &lease {
            // What the holder stored comes first: a watch it saw end needs no poll here.
            if lease.relay(&tx, &mut history).await {
                hub.retire(&key, id, true);
                finished = true;
                break;
            }
            if !lease.hold().await {
                // Another replica polls: relay what it stores.
                if sleep_unless_abandoned(&hub, &key, id, &tx, lease.relay_interval(&config)).await
                {
                    break;
                }
                continue;
            }
        }
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
                match (&key.target, &request) {
                    (_, Err(e)) => Err(GatewayError::Internal(e.to_string())),
                    // Paged: as many reads as there are new events' pages.
                    (Target::ClusterEvents { .. }, Ok(request)) => {
                        super::events::fetch(&hub, &ctx, request, &history).await
                    }
                    (target, Ok(request)) => {
                        let service = target.service();
                        hub.gateway.call_message(service, operation, &ctx, request).await
                    }
                }
            } => Some(result),
        };
        let Some(result) = result else {
            if hub.retire(&key, id, false) {
                break;
            }
            continue;
        };
        let outcome = match result {
            Ok((answer, _)) => PollOutcome::Read(Box::new(key.target.read(&answer, &mut history))),
            Err(e) => {
                let status = e.into_status();
                match status.code() {
                    Code::NotFound => {
                        PollOutcome::Read(Box::new(key.target.gone(status, &mut history)))
                    }
                    c if is_transient(c) => PollOutcome::Transient(status),
                    _ => PollOutcome::Read(Box::new(Reading {
                        status: key.target.pending(),
                        end: Some(End::Poll(status)),
                    })),
                }
            }
        };
        let previous = tx.borrow().clone();
        let wait = match outcome {
            PollOutcome::Read(reading) => {
                retry.succeeded();
                let ended = reading.end.is_some();
                if publish_reading(&tx, &previous, *reading, &history) {
                    interval.changed();
                    if let Some(lease) = &lease {
                        lease.store(&tx).await;
                    }
                } else {
                    interval.unchanged();
                }
                if ended {
                    hub.retire(&key, id, true);
                    finished = true;
                    break;
                }
                interval.current()
            }
            PollOutcome::Transient(status) => {
                let asked = status.get_details_retry_info().and_then(|r| r.retry_delay);
                let (wait, attempt) = retry.failed(asked);
                let wait = jittered(wait, config.jitter, rand::random::<f64>());
                tracing::debug!(target_id = key.target.id(), attempt, error = %status.message(), "transient poll failure");
                tx.send_replace(Arc::new(Observed {
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
                if let Some(lease) = &lease {
                    lease.store(&tx).await;
                }
                // Already jittered: the retry wait is what the subscribers were told.
                if wait_holding(&hub, &key, id, &tx, wait, lease.as_ref()).await {
                    break;
                }
                continue;
            }
        };
        let wait = jittered(wait, config.jitter, rand::random::<f64>());
        if wait_holding(&hub, &key, id, &tx, wait, lease.as_ref()).await {
            break;
        }
    }
    if let Some(lease) = &lease {
        // A lease of a finished watch runs out by itself: until then the other replicas relay
        // the final snapshot rather than take the lease and poll once more.
        if !finished {
            lease.release().await;
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
    tx: &watch::Sender<Arc<Observed>>,
    previous: &Observed,
    reading: Reading,
    history: &History,
) -> bool {
    // A poll that ends the watch without a reading keeps the last status known.
    let status = match (&reading.end, previous.polled) {
        (Some(End::Poll(_)), true) => previous.status.clone(),
        _ => reading.status,
    };
    let new_events = history.dropped + history.events.len() as u64
        != previous.events_dropped + previous.events.len() as u64;
    let changed = !previous.polled
        || new_events
        || status != previous.status
        || previous.poll_error.is_some()
        || reading.end.is_some();
    let next = Arc::new(Observed {
        sequence: previous.sequence + u64::from(changed),
        polled: true,
        status,
        events: if new_events {
            Arc::new(history.events.clone())
        } else {
            previous.events.clone()
        },
        events_dropped: history.dropped,
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

/// A target's lease in the shared state, when there is one.
struct Lease {
    shared: Arc<crate::shared::Shared>,
    name: String,
}

impl Lease {
    fn of(hub: &Watcher, key: &PollKey) -> Option<Lease> {
        let shared = hub.gateway.shared()?.clone();
        // The same on every replica: profile, region and everything the target is.
        let name = format!("{}|{}|{:?}", key.profile, key.region, key.target);
        Some(Lease { shared, name })
    }

    /// Takes or renews the lease: true if this replica should poll (it holds the lease, or
    /// Redis cannot say and it polls on its own).
    async fn hold(&self) -> bool {
        self.shared.lease(&self.name).await.unwrap_or(true)
    }

    /// Stores the latest snapshot for the replicas that relay it.
    async fn store(&self, tx: &watch::Sender<Arc<Observed>>) {
        let bytes = super::relay::encode(&tx.borrow().clone());
        if let Err(e) = self.shared.put_latest(&self.name, bytes).await {
            tracing::debug!(error = %e, "could not store a watch snapshot");
        }
    }

    /// Publishes what the lease holder stored, if it is newer; true once the watch has ended.
    async fn relay(&self, tx: &watch::Sender<Arc<Observed>>, history: &mut History) -> bool {
        let Ok(Some(bytes)) = self.shared.latest(&self.name).await else {
            return false;
        };
        let Some(stored) = super::relay::decode(&bytes) else {
            return false;
        };
        let current = tx.borrow().clone();
        if stored.sequence < current.sequence
            || (stored.sequence == current.sequence && current.polled)
        {
            return current.end.is_some();
        }
        // Should this replica take over, it goes on from what was seen.
        history.events.clone_from(&stored.events);
        history.dropped = stored.events_dropped;
        history.seen |= stored.polled;
        let ended = stored.end.is_some();
        tx.send_replace(Arc::new(stored));
        ended
    }

    /// How often a relaying poller reads the stored snapshot.
    fn relay_interval(&self, config: &crate::config::WatchConfig) -> std::time::Duration {
        config
            .initial_interval
            .min(self.shared.lease_duration() / 4)
            .max(std::time::Duration::from_millis(20))
    }

    async fn release(&self) {
        self.shared.release(&self.name).await;
    }
}

/// Sleeps for `wait` as `sleep_unless_abandoned` does, renewing the lease on the way (a wait
/// can be longer than a lease); returns true if the poller was retired meanwhile.
async fn wait_holding(
    hub: &Watcher,
    key: &PollKey,
    id: u64,
    tx: &watch::Sender<Arc<Observed>>,
    wait: std::time::Duration,
    lease: Option<&Lease>,
) -> bool {
    let Some(lease) = lease else {
        return sleep_unless_abandoned(hub, key, id, tx, wait).await;
    };
    let step = lease.shared.lease_duration() / 3;
    let until = std::time::Instant::now() + wait;
    loop {
        let left = until.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return false;
        }
        if sleep_unless_abandoned(hub, key, id, tx, left.min(step)).await {
            return true;
        }
        if !left.is_zero() && left > step && !lease.hold().await {
            // Lost the lease (e.g. cut off from Redis for longer than it lasts): the loop
            // relays from now on.
            return false;
        }
    }
}

/// Sleeps for `wait`; returns true if the poller was retired meanwhile because its last
/// subscriber left.
async fn sleep_unless_abandoned(
    hub: &Watcher,
    key: &PollKey,
    id: u64,
    tx: &watch::Sender<Arc<Observed>>,
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
