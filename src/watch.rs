//! Streaming watchers: follow tasks, cluster upgrades, add-on upgrades, cluster and node pool
//! state until they finish, wait on any read (`WaitFor`), and stream a cluster's events, over
//! server-streaming RPCs (`ackgateway.v1.WatchService`).
//!
//! ```text
//! subscriber ─┐                       ┌─► Gateway::call_message (authz, cache, limits, upstream)
//! subscriber ─┼─► watch channel ◄─ poller (one per profile, region, target)
//! subscriber ─┘   (latest Observed)       adaptive interval, retries, shared rate budget
//! ```
//!
//! A poller publishes the latest [`Observed`] on a `tokio::sync::watch` channel; subscribers
//! read it when it changes. Nothing is queued per subscriber, so a slow or idle subscriber costs
//! a channel receiver and two timers, and never slows the poller or the others. A subscriber
//! leaving drops its receiver; the poller stops when the last one has gone or the work ends.
//!
//! Invariant: a poller is only created or retired under the `pollers` lock, and subscribers
//! join under it, so a subscriber never joins a poller that has decided to stop.

mod answer;
mod backoff;
mod cluster;
mod events;
pub mod follow;
mod nodepool;
mod poller;
mod relay;
mod service;
mod subscriber;
mod target;
mod task;
mod upgrade;
mod wait;

pub use crate::error::code_name;
pub use service::WatchApi;

/// The gRPC service name, for health checking.
pub const SERVICE_NAME: &str = "ackgateway.v1.WatchService";
pub use target::{End, Target};

use crate::config::WatchConfig;
use crate::error::GatewayError;
use crate::gateway::{CallContext, Gateway};
use crate::proto::gateway::{PollError, TaskEvent, WatchStatus};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tokio::sync::watch;
use tonic::Status;

/// What a poller knows about its target, as every subscriber sees it.
#[derive(Debug, Clone)]
pub struct Observed {
    /// Increases with every publication.
    pub sequence: u64,
    /// Whether a poll has completed (successfully or not).
    pub polled: bool,
    pub status: WatchStatus,
    /// Every event seen so far, in order; only ever appended to (a cluster's events: the
    /// newest `MAX_EVENTS`, those before dropped from the front).
    pub events: Arc<Vec<TaskEvent>>,
    /// How many events were dropped from the front of `events`: an event's position among
    /// all ever seen is this plus its index.
    pub events_dropped: u64,
    /// Set while the latest poll failed transiently.
    pub poll_error: Option<PollError>,
    /// When the status was last read.
    pub observed_at: Option<SystemTime>,
    /// Set once the watch is over; no later snapshot follows.
    pub end: Option<End>,
}

/// The caller name of the hub's shared polls in audit lines and spans.
pub const POLL_CALLER: &str = "(watch poll)";

/// One poller per key. The caller is not part of it: every subscriber is authorized on its own
/// before it joins, with the rule unary calls use.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PollKey {
    pub profile: String,
    pub region: String,
    pub target: Target,
}

struct PollerHandle {
    id: u64,
    tx: watch::Sender<Arc<Observed>>,
}

/// The hub: starts pollers, lets subscribers join them, and counts polls.
pub struct Watcher {
    gateway: Arc<Gateway>,
    config: WatchConfig,
    /// At most `max_polls_per_second` polls, every poller's together.
    budget: crate::ratelimit::TokenBucket,
    pollers: Mutex<HashMap<PollKey, PollerHandle>>,
    next_id: AtomicU64,
    polls: AtomicU64,
    /// Watch streams open per caller (`[watch] max_streams_per_caller`); callers with none are
    /// absent.
    streams: Mutex<HashMap<String, usize>>,
    /// Set once when the gateway shuts down: every open stream ends with UNAVAILABLE.
    closing: tokio::sync::watch::Sender<bool>,
}

// === impl Watcher ===

impl Watcher {
    pub fn new(gateway: Arc<Gateway>, config: WatchConfig) -> Arc<Watcher> {
        Arc::new(Watcher {
            budget: crate::ratelimit::TokenBucket::new(crate::config::traffic::Rate {
                per_second: config.max_polls_per_second,
                burst: config.max_polls_per_second.max(1.0),
            }),
            gateway,
            config,
            pollers: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            polls: AtomicU64::new(0),
            streams: Mutex::new(HashMap::new()),
            closing: tokio::sync::watch::Sender::new(false),
        })
    }

    /// Ends every open stream, and every stream opened from now on, with UNAVAILABLE (the
    /// gateway is shutting down: a client reconnects, to another replica or this one's
    /// successor). Without it a graceful shutdown would wait for streams that last hours.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Resolves once `close` is called.
    pub(crate) fn closed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.closing.subscribe();
        async move {
            if rx.wait_for(|closing| *closing).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    pub fn config(&self) -> &WatchConfig {
        &self.config
    }

    /// Pollers running now.
    pub fn active_pollers(&self) -> usize {
        self.pollers.lock().expect("pollers lock").len()
    }

    /// Watch streams open now: every subscriber holds one receiver of its poller's channel
    /// (read-only, for the metrics endpoint).
    pub fn open_streams(&self) -> usize {
        self.pollers
            .lock()
            .expect("pollers lock")
            .values()
            .map(|p| p.tx.receiver_count())
            .sum()
    }

    /// Upstream polls made since start.
    pub fn polls(&self) -> u64 {
        self.polls.load(Ordering::Relaxed)
    }

    /// A place for one more of `caller`'s streams, held for the stream's life; RESOURCE_EXHAUSTED
    /// when the caller already holds `max_streams_per_caller`.
    pub fn admit(self: &Arc<Self>, caller: &str) -> Result<StreamSlot, Status> {
        let max = self.config.max_streams_per_caller;
        let mut streams = self.streams.lock().expect("streams lock");
        let open = streams.entry(caller.to_string()).or_default();
        if *open >= max {
            return Err(Status::resource_exhausted(format!(
                "caller `{caller}` already has {max} watch streams open, the most one caller may hold; close one first"
            )));
        }
        *open += 1;
        Ok(StreamSlot {
            hub: self.clone(),
            caller: caller.to_string(),
        })
    }

    /// Joins the poller of the caller's (profile, region, target), starting it if needed, once
    /// the caller is allowed to read the target.
    pub fn subscribe(
        self: &Arc<Self>,
        ctx: &CallContext,
        target: Target,
    ) -> Result<watch::Receiver<Arc<Observed>>, Status> {
        let snapshot = self.gateway.snapshot();
        let secrets = self
            .gateway
            .carries_secrets(target.service(), target.operation());
        snapshot
            .access
            .authorize(&ctx.caller, &ctx.profile, target.operation(), secrets)
            .map_err(|e| GatewayError::from(e).into_status())?;
        self.join(ctx, target)
    }

    /// Joins (or starts) the poller of `ctx`'s (profile, region, target), without
    /// authorizing a caller: for the gateway's own followers (`follow`), and for `subscribe`
    /// once it has authorized one.
    pub(crate) fn join(
        self: &Arc<Self>,
        ctx: &CallContext,
        target: Target,
    ) -> Result<watch::Receiver<Arc<Observed>>, Status> {
        let snapshot = self.gateway.snapshot();
        let profile = snapshot
            .vault
            .profile(&ctx.profile)
            .map_err(|e| GatewayError::from(e).into_status())?;
        // The region decides the endpoint, so it is part of the key even when defaulted.
        let region = ctx
            .region
            .clone()
            .or_else(|| profile.region.clone())
            .unwrap_or_default();
        let key = PollKey {
            profile: ctx.profile.clone(),
            region,
            target,
        };
        let mut pollers = self.pollers.lock().expect("pollers lock");
        if let Some(p) = pollers.get(&key) {
            return Ok(p.tx.subscribe());
        }
        let (tx, rx) = watch::channel(Arc::new(Observed {
            sequence: 0,
            polled: false,
            status: key.target.pending(),
            events: Arc::new(Vec::new()),
            events_dropped: 0,
            poll_error: None,
            observed_at: None,
            end: None,
        }));
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        pollers.insert(key.clone(), PollerHandle { id, tx: tx.clone() });
        // Polls run for all the target's subscribers, not as the one that started them: a
        // reload that revokes that caller ends its own stream only (see `still_allowed`).
        let poll_ctx = CallContext {
            caller: POLL_CALLER.to_string(),
            deadline: None,
            watcher_poll: true,
            ..ctx.clone()
        };
        tokio::spawn(poller::run(self.clone(), key, id, poll_ctx, tx));
        Ok(rx)
    }

    /// Removes the poller `id` of `key` if no subscriber is left (or `force`, when its work is
    /// over); returns whether it was removed.
    fn retire(&self, key: &PollKey, id: u64, force: bool) -> bool {
        let mut pollers = self.pollers.lock().expect("pollers lock");
        match pollers.get(key) {
            Some(p) if p.id == id && (force || p.tx.receiver_count() == 0) => {
                pollers.remove(key);
                true
            }
            // Replaced already (cannot happen while this poller runs, but harmless).
            Some(p) if p.id != id => true,
            None => true,
            Some(_) => false,
        }
    }

    /// A check, made before every message a subscriber is sent after the first, that `ctx`'s
    /// caller may still read `target` under the gateway's current access rules (they change on
    /// reload).
    pub fn still_allowed(&self, ctx: &CallContext, target: &Target) -> subscriber::StillAllowed {
        let gateway = self.gateway.clone();
        let (caller, profile, operation) = (
            ctx.caller.clone(),
            ctx.profile.clone(),
            target.operation().to_string(),
        );
        let secrets = gateway.carries_secrets(target.service(), &operation);
        Box::new(move || {
            gateway
                .snapshot()
                .access
                .authorize(&caller, &profile, &operation, secrets)
                .map_err(|e| GatewayError::from(e).into_status())
        })
    }

    fn count_poll(&self) {
        self.polls.fetch_add(1, Ordering::Relaxed);
    }
}

/// One open watch stream in its caller's count (`Watcher::admit`); dropping it frees the place.
pub struct StreamSlot {
    hub: Arc<Watcher>,
    caller: String,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        // A poisoned lock means a panic elsewhere already; the count is not worth a second one.
        let Ok(mut streams) = self.hub.streams.lock() else {
            return;
        };
        if let Some(open) = streams.get_mut(&self.caller) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                streams.remove(&self.caller);
            }
        }
    }
}

#[cfg(test)]
mod tests;
