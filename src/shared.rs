//! State the replicas share through Redis: upstream and caller budgets (GCRA in one script per
//! attempt, time from Redis), cache invalidation (pub/sub), poller leases with the latest status,
//! and replica heartbeats (how many replicas share a budget when Redis is away).
//!
//! Redis never fails a call: every command has a short timeout, and a circuit breaker stops
//! asking for a while after a failure; meanwhile the limiter uses this replica's share of each
//! budget, the cache is local (cleared whenever the invalidation subscription was lost), and
//! pollers poll locally. Sharing resumes by itself (scripts are reloaded after `NOSCRIPT` by
//! the client; the subscription is restored and the local cache cleared).
//!
//! Invariant: no secret reaches Redis. Keys hold a prefix, a kind and a hash of the account
//! identity (or caller) with the operation's name; values hold times, counters and watch
//! statuses (which carry scrubbed upstream messages only).
//!
//! Boundary: the only module that talks to Redis. It knows nothing of the gateway, the cache or
//! the watchers: they hand it callbacks and bytes.

mod breaker;
mod records;
mod scripts;

use crate::config::redis::RedisConfig;
use breaker::Breaker;
use redis::aio::ConnectionManager;
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often a replica says it is alive.
const HEARTBEAT: Duration = Duration::from_secs(2);
/// A replica not heard from for this long no longer counts.
const REPLICA_TIMEOUT: Duration = Duration::from_secs(10);
/// How fast a budget cut by throttling recovers: from nothing to full in this time.
const RECOVERY: Duration = Duration::from_secs(10);
/// Throttling signals within this time of a cut do not cut again.
const THROTTLE_COOLDOWN: Duration = Duration::from_secs(2);

/// A short hash (24 hex digits) of `parts`: how keys and cache tags name accounts, callers and
/// targets without showing them.
pub fn digest(parts: &[&str]) -> String {
    let mut hash = Sha256::new();
    for p in parts {
        hash.update(p.as_bytes());
        hash.update([0]);
    }
    hash.finalize()[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum SharedError {
    #[error("Redis is unavailable (circuit open)")]
    Open,
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("Redis: {0}")]
    Redis(String),
}

/// What one budget answer says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// Go after waiting this long (the slot is reserved).
    After(Duration),
    /// Over budget: retry after this long (nothing reserved).
    Denied(Duration),
}

/// The shared state's handle.
pub struct Shared {
    conn: ConnectionManager,
    client: redis::Client,
    prefix: String,
    timeout: Duration,
    lease: Duration,
    breaker: Breaker,
    replica: String,
    configured_replicas: Option<u32>,
    live_replicas: AtomicU64,
    subscribed: AtomicBool,
    commands: AtomicU64,
    /// Invalidations that could not be published (Redis away), sent once it answers again;
    /// past `PENDING_MAX` sets, one "clear everything" message is sent instead.
    pending: std::sync::Mutex<Pending>,
    /// Drops the whole local cache: set by `spawn`, run when Redis answers again after failing
    /// (invalidations may have been missed meanwhile).
    on_recovery: std::sync::OnceLock<Box<dyn Fn() + Send + Sync>>,
    /// Receives the journal entries other replicas announce (`on_journal`).
    journal_listener: std::sync::OnceLock<Box<dyn Fn(Vec<u8>) + Send + Sync>>,
}

/// Invalidations waiting for Redis.
#[derive(Debug, Default)]
struct Pending {
    tags: Vec<Vec<String>>,
    overflowed: bool,
}

/// How many unpublished invalidations are kept before one "clear everything" replaces them.
const PENDING_MAX: usize = 1000;

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("prefix", &self.prefix)
            .field("replica", &self.replica)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Connects lazily: a Redis that is down at start leaves the gateway serving locally.
    pub fn new(config: &RedisConfig) -> Result<Arc<Shared>, SharedError> {
        let mut info: redis::ConnectionInfo =
            redis::IntoConnectionInfo::into_connection_info(config.url.expose())
                .map_err(|_| SharedError::Redis("redis.url is not a usable Redis URL".into()))?;
        if let Some(password) = &config.password {
            let settings = info
                .redis_settings()
                .clone()
                .set_password(password.expose());
            info = info.set_redis_settings(settings);
        }
        let client = redis::Client::open(info).map_err(|e| SharedError::Redis(e.to_string()))?;
        let manager = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.command_timeout.max(Duration::from_millis(500))))
            .set_response_timeout(Some(config.command_timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(2));
        let conn = client
            .get_connection_manager_lazy(manager)
            .map_err(|e| SharedError::Redis(e.to_string()))?;
        Ok(Arc::new(Shared {
            conn,
            client,
            prefix: config.key_prefix.clone(),
            timeout: config.command_timeout,
            lease: config.lease,
            breaker: Breaker::default(),
            replica: uuid::Uuid::new_v4().simple().to_string(),
            configured_replicas: config.replicas,
            live_replicas: AtomicU64::new(0),
            subscribed: AtomicBool::new(false),
            commands: AtomicU64::new(0),
            pending: std::sync::Mutex::new(Pending::default()),
            on_recovery: std::sync::OnceLock::new(),
            journal_listener: std::sync::OnceLock::new(),
        }))
    }

    /// Whether state is shared now (Redis answers and the invalidation subscription is up).
    pub fn is_shared(&self) -> bool {
        !self.breaker.is_open() && self.subscribed.load(Ordering::Relaxed)
    }

    /// This replica's id (random per process).
    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// Commands sent to Redis so far (for metrics).
    pub fn commands(&self) -> u64 {
        self.commands.load(Ordering::Relaxed)
    }

    /// Replicas sharing a budget: those heard from lately, else the configured number, else 1.
    pub fn replicas(&self) -> u64 {
        match self.live_replicas.load(Ordering::Relaxed) {
            0 => u64::from(self.configured_replicas.unwrap_or(1)),
            n => n,
        }
    }

    /// How long a poller lease lasts.
    pub fn lease_duration(&self) -> Duration {
        self.lease
    }

    fn key(&self, kind: &str, parts: &[&str]) -> String {
        format!("{}{kind}:{}", self.prefix, digest(parts))
    }

    fn channel(&self) -> String {
        format!("{}invalidate", self.prefix)
    }

    /// Runs one command (or script) through the breaker, bounded by the command timeout.
    async fn run<T, F, Fut>(&self, f: F) -> Result<T, SharedError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        if self.breaker.is_open() {
            return Err(SharedError::Open);
        }
        self.commands.fetch_add(1, Ordering::Relaxed);
        match tokio::time::timeout(self.timeout, f(self.conn.clone())).await {
            Ok(Ok(v)) => {
                if self.breaker.succeeded() {
                    self.recovered();
                }
                Ok(v)
            }
            Ok(Err(e)) => {
                self.breaker.failed();
                Err(SharedError::Redis(e.to_string()))
            }
            Err(_) => {
                self.breaker.failed();
                Err(SharedError::Timeout(self.timeout))
            }
        }
    }

    /// Takes a slot of a shared budget (`kind`: `upstream` or `caller`; `parts`: what the
    /// budget is of) at `rate` per second with `burst`, waiting at most `max_wait`.
    pub async fn acquire(
        &self,
        kind: &str,
        parts: &[&str],
        rate: f64,
        burst: f64,
        max_wait: Duration,
    ) -> Result<Grant, SharedError> {
        let key = self.key(kind, parts);
        let interval_ms = 1000.0 / rate.max(1e-6);
        let (granted, wait_ms): (i64, i64) = self
            .run(|mut c| async move {
                scripts::ACQUIRE
                    .key(key)
                    .arg(interval_ms)
                    .arg(burst.max(1.0))
                    .arg(max_wait.as_millis() as u64)
                    .arg(RECOVERY.as_millis() as u64)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        let wait = Duration::from_millis(wait_ms.max(0) as u64);
        Ok(if granted == 1 {
            Grant::After(wait)
        } else {
            Grant::Denied(wait)
        })
    }

    /// The upstream throttled a budget: pause it for `retry_after` and halve its rate, once per
    /// cool-down however many replicas report the same burst.
    pub async fn throttled(
        &self,
        kind: &str,
        parts: &[&str],
        retry_after: Duration,
    ) -> Result<(), SharedError> {
        let key = self.key(kind, parts);
        let _: i64 = self
            .run(|mut c| async move {
                scripts::THROTTLE
                    .key(key)
                    .arg(retry_after.as_millis() as u64)
                    .arg(THROTTLE_COOLDOWN.as_millis() as u64)
                    .arg(RECOVERY.as_millis() as u64)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(())
    }

    /// Tells the other replicas to drop cached reads filed under `tags` (in the background:
    /// the call that made them stale does not wait). One that cannot be published now is kept
    /// and published once Redis answers again.
    pub fn publish_invalidation(self: &Arc<Self>, tags: Vec<String>) {
        if tags.is_empty() {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            let message = serde_json::json!({"from": this.replica, "tags": tags}).to_string();
            if let Err(e) = this.publish(message).await {
                tracing::debug!(error = %e, "could not publish a cache invalidation: kept until Redis is back");
                let mut pending = this.pending.lock().unwrap_or_else(|e| e.into_inner());
                if pending.tags.len() < PENDING_MAX {
                    pending.tags.push(tags);
                } else {
                    pending.overflowed = true;
                }
            }
        });
    }

    async fn publish(&self, message: String) -> Result<i64, SharedError> {
        let channel = self.channel();
        self.run(|mut c| async move {
            redis::cmd("PUBLISH")
                .arg(channel)
                .arg(message)
                .query_async(&mut c)
                .await
        })
        .await
    }

    /// Redis answers again after failing: what was cached meanwhile may be stale (this
    /// replica's own invalidations could not reach the others, nor theirs this one), so the
    /// local cache is dropped and the invalidations kept meanwhile are published.
    fn recovered(&self) {
        if let Some(clear) = self.on_recovery.get() {
            clear();
        }
        let pending = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        if pending.tags.is_empty() && !pending.overflowed {
            return;
        }
        let message = if pending.overflowed {
            serde_json::json!({"from": self.replica, "clear": true})
        } else {
            let tags: Vec<String> = pending.tags.into_iter().flatten().collect();
            serde_json::json!({"from": self.replica, "tags": tags})
        }
        .to_string();
        // Published from a task: `recovered` runs inside a command's success.
        let (client, channel) = (self.client.clone(), self.channel());
        tokio::spawn(async move {
            let sent = async {
                let mut c = client.get_multiplexed_async_connection().await?;
                redis::cmd("PUBLISH")
                    .arg(channel)
                    .arg(message)
                    .query_async::<i64>(&mut c)
                    .await
            };
            if let Err(e) = sent.await {
                tracing::debug!(error = %e, "could not publish the invalidations kept while Redis was away");
            }
        });
    }

    /// Hands every journal entry announced through Redis (by any replica, this one included)
    /// to `listener`; set once, before `spawn`.
    pub fn on_journal(&self, listener: impl Fn(Vec<u8>) + Send + Sync + 'static) {
        let _ = self.journal_listener.set(Box::new(listener));
    }

    /// Takes or renews the lease `name` for this replica; true while this replica holds it.
    pub async fn lease(&self, name: &str) -> Result<bool, SharedError> {
        let key = self.key("lease", &[name]);
        let replica = self.replica.clone();
        let ttl = self.lease.as_millis() as u64;
        let held: i64 = self
            .run(|mut c| async move {
                scripts::LEASE
                    .key(key)
                    .arg(replica)
                    .arg(ttl)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(held == 1)
    }

    /// Gives the lease `name` up, if this replica holds it (compare and delete).
    pub async fn release(&self, name: &str) {
        let key = self.key("lease", &[name]);
        let replica = self.replica.clone();
        let released: Result<i64, _> = self
            .run(|mut c| async move {
                scripts::RELEASE
                    .key(key)
                    .arg(replica)
                    .invoke_async(&mut c)
                    .await
            })
            .await;
        if let Err(e) = released {
            tracing::debug!(error = %e, "could not release a poller lease");
        }
    }

    /// Stores the latest status of `name` (while this replica holds its lease); false if the
    /// lease was lost meanwhile.
    pub async fn put_latest(&self, name: &str, bytes: Vec<u8>) -> Result<bool, SharedError> {
        let lease = self.key("lease", &[name]);
        let latest = self.key("latest", &[name]);
        let replica = self.replica.clone();
        // Kept a while after the work ends, for followers that read it late.
        let ttl = (self.lease.as_millis() as u64).max(1000) * 12;
        let stored: i64 = self
            .run(|mut c| async move {
                scripts::PUT_LATEST
                    .key(lease)
                    .key(latest)
                    .arg(replica)
                    .arg(bytes)
                    .arg(ttl)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(stored == 1)
    }

    /// The latest status stored for `name`, if any.
    pub async fn latest(&self, name: &str) -> Result<Option<Vec<u8>>, SharedError> {
        let key = self.key("latest", &[name]);
        self.run(|mut c| async move { redis::cmd("GET").arg(key).query_async(&mut c).await })
            .await
    }

    /// Runs the heartbeat and the invalidation subscription until the process ends.
    /// `invalidate` drops local entries filed under tags; `clear` drops the whole local cache
    /// (when invalidations may have been missed).
    pub fn spawn(
        self: &Arc<Self>,
        invalidate: impl Fn(Vec<String>) + Send + Sync + 'static,
        clear: impl Fn() + Send + Sync + 'static,
    ) {
        let clear = Arc::new(clear);
        let on_recovery = clear.clone();
        let _ = self
            .on_recovery
            .set(Box::new(move || on_recovery.as_ref()()));
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(this) = weak.upgrade() else { return };
                this.heartbeat().await;
                drop(this);
                tokio::time::sleep(HEARTBEAT).await;
            }
        });
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(200);
            loop {
                let Some(this) = weak.upgrade() else { return };
                match this.subscribe(&invalidate, clear.as_ref()).await {
                    Ok(()) => backoff = Duration::from_millis(200),
                    Err(e) => {
                        tracing::debug!(error = %e, "cache invalidation subscription failed");
                    }
                }
                if this.subscribed.swap(false, Ordering::Relaxed) {
                    tracing::warn!("lost the cache invalidation subscription: the local cache is cleared and stays local until it is back");
                }
                // Invalidations may have been missed: nothing cached before now can be trusted.
                clear();
                drop(this);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        });
    }

    async fn heartbeat(&self) {
        let key = format!("{}replicas", self.prefix);
        let replica = self.replica.clone();
        let window = REPLICA_TIMEOUT.as_millis() as u64;
        let live: Result<i64, _> = self
            .run(|mut c| async move {
                scripts::HEARTBEAT
                    .key(key)
                    .arg(replica)
                    .arg(window)
                    .invoke_async(&mut c)
                    .await
            })
            .await;
        if let Ok(n) = live {
            self.live_replicas.store(n.max(1) as u64, Ordering::Relaxed);
        }
    }

    /// Subscribes to invalidations and applies them until the subscription ends.
    async fn subscribe(
        &self,
        invalidate: &(impl Fn(Vec<String>) + Send + Sync),
        clear: &(impl Fn() + Send + Sync),
    ) -> Result<(), SharedError> {
        use futures_util::StreamExt as _;
        let connect = async {
            let mut pubsub = self.client.get_async_pubsub().await?;
            pubsub.subscribe(self.channel()).await?;
            pubsub.subscribe(self.journal_channel()).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        let pubsub = tokio::time::timeout(self.timeout.max(Duration::from_secs(1)), connect)
            .await
            .map_err(|_| SharedError::Timeout(self.timeout))?
            .map_err(|e| SharedError::Redis(e.to_string()))?;
        // Redis answered the subscription; whatever was cached while unsubscribed may be stale.
        if self.breaker.succeeded() {
            self.recovered();
        }
        clear();
        self.subscribed.store(true, Ordering::Relaxed);
        tracing::info!("sharing state through Redis: cache invalidations subscribed");
        let mut messages = pubsub.into_on_message();
        loop {
            // A stalled Redis sends nothing and keeps the socket open: the heartbeat's breaker
            // notices (sharing is off while it is open) and, when Redis answers again,
            // `recovered` drops what was cached meanwhile. The subscription itself lasts as long
            // as its connection: tearing it down whenever the breaker opened kept a replica from
            // ever settling after a restart (subscribed, dropped, subscribed again…).
            match messages.next().await {
                Some(msg) if msg.get_channel_name() == self.journal_channel() => {
                    if let (Some(listener), Ok(payload)) =
                        (self.journal_listener.get(), msg.get_payload::<Vec<u8>>())
                    {
                        listener(payload);
                    }
                }
                Some(msg) => {
                    let Ok(payload) = msg.get_payload::<String>() else {
                        continue;
                    };
                    let Ok(v) = serde_json::from_str::<serde_json::Value>(&payload) else {
                        continue;
                    };
                    if v["from"].as_str() == Some(&self.replica) {
                        continue;
                    }
                    if v["clear"].as_bool() == Some(true) {
                        clear();
                        continue;
                    }
                    let tags: Vec<String> = v["tags"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|t| t.as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default();
                    invalidate(tags);
                }
                None => return Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests;
