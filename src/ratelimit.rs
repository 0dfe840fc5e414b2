//! Token buckets: one per caller (fairness between callers) and one per (account, operation)
//! (the account's upstream budget). A call over budget waits up to a bounded time, then fails
//! with `RESOURCE_EXHAUSTED` and how long to wait. Upstream throttling (`Throttling*` answers,
//! `x-ratelimit-*` headers with `Remain:0`) pauses the bucket and halves its rate; successes
//! bring the rate back step by step (AIMD).
//!
//! With `[redis]` configured, every replica takes from the same budgets (`shared`: GCRA in
//! Redis, one round trip per take); a refusal is remembered locally until it could change, so an
//! over-budget key costs no Redis call per attempt. While Redis is unavailable each replica takes
//! from its own bucket holding its share of the budget (the budget divided by the replicas).

use crate::shared::{Grant, Shared};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use crate::config::traffic::Rate;

#[derive(Debug)]
struct BucketState {
    tokens: f64,
    last: Instant,
    rate: f64,
    paused_until: Option<Instant>,
}

#[derive(Debug)]
pub struct TokenBucket {
    configured: Rate,
    state: Mutex<BucketState>,
    /// The shared budget this bucket stands for: its full rate, and what it is of.
    shared: Option<SharedBudget>,
}

#[derive(Debug)]
struct SharedBudget {
    rate: Rate,
    kind: &'static str,
    parts: Vec<String>,
    /// Until when the shared budget refused (a local memo: no Redis call before then).
    denied_until: Mutex<Option<Instant>>,
}

/// Lowest rate adaptive slow-down goes to.
const MIN_RATE: f64 = 0.2;

// === impl TokenBucket ===

impl TokenBucket {
    pub fn new(rate: Rate) -> Self {
        TokenBucket {
            configured: rate,
            state: Mutex::new(BucketState {
                tokens: rate.burst,
                last: Instant::now(),
                rate: rate.per_second,
                paused_until: None,
            }),
            shared: None,
        }
    }

    /// A bucket standing for a shared budget of `rate`: locally it holds `1/replicas` of it,
    /// which is what this replica takes while the shared budget cannot be reached.
    fn shared(rate: Rate, replicas: u64, kind: &'static str, parts: Vec<String>) -> Self {
        let n = replicas.max(1) as f64;
        let mut bucket = TokenBucket::new(Rate {
            per_second: rate.per_second / n,
            burst: (rate.burst / n).max(1.0),
        });
        bucket.shared = Some(SharedBudget {
            rate,
            kind,
            parts,
            denied_until: Mutex::new(None),
        });
        bucket
    }

    fn refill(&self, s: &mut BucketState, now: Instant) {
        let elapsed = now.saturating_duration_since(s.last).as_secs_f64();
        s.tokens = (s.tokens + elapsed * s.rate).min(self.configured.burst);
        s.last = now;
    }

    /// Takes a token, returning how long to wait for it; `Err(wait)` when the wait would exceed
    /// `max_wait` (nothing is taken then).
    pub fn reserve(&self, max_wait: Duration) -> Result<Duration, Duration> {
        let now = Instant::now();
        let mut s = self.state.lock().expect("bucket lock");
        self.refill(&mut s, now);
        let pause = s
            .paused_until
            .map(|p| p.saturating_duration_since(now))
            .unwrap_or_default();
        let deficit = (1.0 - s.tokens).max(0.0);
        let wait = pause + Duration::from_secs_f64(deficit / s.rate.max(MIN_RATE));
        if wait > max_wait {
            return Err(wait);
        }
        s.tokens -= 1.0;
        Ok(wait)
    }

    /// A bucket that starts full at `now` (for tests with an explicit clock).
    pub fn full_at(rate: Rate, now: Instant) -> Self {
        let bucket = TokenBucket::new(rate);
        bucket.state.lock().expect("bucket lock").last = now;
        bucket
    }

    /// Takes a token if one is there at `now`, or says how long until one is (nothing is
    /// taken then).
    pub fn try_take_at(&self, now: Instant) -> Result<(), Duration> {
        let mut s = self.state.lock().expect("bucket lock");
        self.refill(&mut s, now);
        let pause = s
            .paused_until
            .map(|p| p.saturating_duration_since(now))
            .unwrap_or_default();
        if pause.is_zero() && s.tokens >= 1.0 {
            s.tokens -= 1.0;
            return Ok(());
        }
        let deficit = (1.0 - s.tokens).max(0.0);
        Err(pause + Duration::from_secs_f64(deficit / s.rate.max(MIN_RATE)))
    }

    /// Waits for a token, however long (bounded by the rate: each miss waits for the refill it
    /// computed, a few rounds at most under contention).
    pub async fn take(&self) {
        loop {
            match self.try_take_at(Instant::now()) {
                Ok(()) => return,
                Err(wait) => tokio::time::sleep(wait).await,
            }
        }
    }

    /// The upstream said to slow down: pause for `retry_after` and halve the rate.
    pub fn throttled(&self, retry_after: Option<Duration>) {
        let now = Instant::now();
        let mut s = self.state.lock().expect("bucket lock");
        self.refill(&mut s, now);
        s.rate = (s.rate / 2.0).max(MIN_RATE);
        s.tokens = s.tokens.min(0.0);
        let until = now + retry_after.unwrap_or(Duration::from_secs(1));
        s.paused_until = Some(s.paused_until.map_or(until, |p| p.max(until)));
    }

    /// A call went through: step the rate back towards the configured one.
    pub fn succeeded(&self) {
        let mut s = self.state.lock().expect("bucket lock");
        if s.rate < self.configured.per_second {
            s.rate = (s.rate + self.configured.per_second / 20.0).min(self.configured.per_second);
        }
    }

    pub fn current_rate(&self) -> f64 {
        self.state.lock().expect("bucket lock").rate
    }
}

/// Exponential backoff, the one the gateway's retries, the vault's refreshes and the watchers'
/// polls share: `initial`, doubling after each failure up to `max`, back to `initial` after a
/// success. How a wait is jittered is the caller's (`full_jitter`, `Backoff::spread`).
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
    attempts: u32,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            next: initial.min(max),
            attempts: 0,
        }
    }

    /// A failure: the wait before the next try (at least `asked`, when the upstream said how
    /// long) and how many failures in a row this is.
    pub fn failed(&mut self, asked: Option<Duration>) -> (Duration, u32) {
        self.attempts += 1;
        let wait = self.next.max(asked.unwrap_or_default());
        self.next = self.next.saturating_mul(2).min(self.max);
        (wait, self.attempts)
    }

    pub fn succeeded(&mut self) {
        self.next = self.initial.min(self.max);
        self.attempts = 0;
    }

    /// `wait` spread over `[1 - spread/2, 1 + spread/2]` of itself; `draw` is uniform in [0, 1).
    pub fn spread(wait: Duration, spread: f64, draw: f64) -> Duration {
        wait.mul_f64((1.0 - spread / 2.0 + spread * draw).max(0.0))
    }
}

/// "Full jitter": a wait uniformly drawn from `[0, wait)`; `draw` is uniform in [0, 1).
pub fn full_jitter(wait: Duration, draw: f64) -> Duration {
    wait.mul_f64(draw.clamp(0.0, 1.0))
}

/// Counters for the metrics endpoint.
#[derive(Debug, Default)]
pub struct LimiterStats {
    pub waits: AtomicU64,
    pub rejections: AtomicU64,
    pub throttle_signals: AtomicU64,
}

pub use crate::error::{Budget, OverBudget};

pub struct Limiter {
    caller_rate: Option<Rate>,
    upstream_rate: Option<Rate>,
    max_wait: Duration,
    shared: Option<Arc<Shared>>,
    callers: Mutex<HashMap<String, Arc<TokenBucket>>>,
    upstream: Mutex<HashMap<(String, String), Arc<TokenBucket>>>,
    pub stats: LimiterStats,
}

/// Buckets kept before idle ones are dropped (bounded memory).
const MAX_BUCKETS: usize = 10_000;

// === impl Limiter ===

impl Limiter {
    pub fn new(
        caller_rate: Option<Rate>,
        upstream_rate: Option<Rate>,
        max_wait: Duration,
        shared: Option<Arc<Shared>>,
    ) -> Self {
        Limiter {
            caller_rate,
            upstream_rate,
            max_wait,
            shared,
            callers: Mutex::new(HashMap::new()),
            upstream: Mutex::new(HashMap::new()),
            stats: LimiterStats::default(),
        }
    }

    fn bucket<K: std::hash::Hash + Eq + Clone>(
        &self,
        map: &Mutex<HashMap<K, Arc<TokenBucket>>>,
        key: &K,
        rate: Rate,
        kind: &'static str,
        parts: impl FnOnce() -> Vec<String>,
    ) -> Arc<TokenBucket> {
        let mut m = map.lock().expect("buckets lock");
        if m.len() >= MAX_BUCKETS && !m.contains_key(key) {
            // Full buckets are equivalent to fresh ones: dropping them loses nothing.
            m.retain(|_, b| {
                b.state
                    .lock()
                    .map(|s| s.tokens < rate.burst)
                    .unwrap_or(true)
            });
        }
        m.entry(key.clone())
            .or_insert_with(|| {
                Arc::new(match &self.shared {
                    Some(shared) => TokenBucket::shared(rate, shared.replicas(), kind, parts()),
                    None => TokenBucket::new(rate),
                })
            })
            .clone()
    }

    /// The upstream bucket of an account's operation, if budgets are configured.
    pub fn upstream_bucket(&self, identity: &str, operation: &str) -> Option<Arc<TokenBucket>> {
        let rate = self.upstream_rate?;
        Some(self.bucket(
            &self.upstream,
            &(identity.to_string(), operation.to_string()),
            rate,
            "upstream",
            || vec![identity.to_string(), operation.to_string()],
        ))
    }

    async fn take(
        &self,
        bucket: &TokenBucket,
        budget: Budget,
        deadline: Option<Duration>,
    ) -> Result<(), OverBudget> {
        let max_wait = deadline.map_or(self.max_wait, |d| d.min(self.max_wait));
        let reserved = match self.reserve_shared(bucket, max_wait).await {
            Some(reserved) => reserved,
            None => bucket.reserve(max_wait),
        };
        match reserved {
            Ok(wait) if wait.is_zero() => Ok(()),
            Ok(wait) => {
                self.stats.waits.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(wait).await;
                Ok(())
            }
            Err(retry_after) => {
                self.stats.rejections.fetch_add(1, Ordering::Relaxed);
                Err(OverBudget {
                    budget,
                    retry_after,
                })
            }
        }
    }

    /// Takes from the shared budget the bucket stands for; `None` when there is none or Redis
    /// cannot answer now (the local share is used then).
    async fn reserve_shared(
        &self,
        bucket: &TokenBucket,
        max_wait: Duration,
    ) -> Option<Result<Duration, Duration>> {
        let (shared, budget) = (self.shared.as_ref()?, bucket.shared.as_ref()?);
        let now = Instant::now();
        if let Some(until) = *budget.denied_until.lock().expect("memo lock") {
            let retry = until.saturating_duration_since(now);
            if retry > max_wait {
                return Some(Err(retry));
            }
        }
        let parts: Vec<&str> = budget.parts.iter().map(String::as_str).collect();
        match shared
            .acquire(
                budget.kind,
                &parts,
                budget.rate.per_second,
                budget.rate.burst,
                max_wait,
            )
            .await
        {
            Ok(Grant::After(wait)) => Some(Ok(wait)),
            Ok(Grant::Denied(retry)) => {
                *budget.denied_until.lock().expect("memo lock") = Some(now + retry);
                Some(Err(retry))
            }
            Err(e) => {
                tracing::debug!(error = %e, "shared budget unavailable: taking from the local share");
                None
            }
        }
    }

    /// Waits for the caller's token.
    pub async fn caller(&self, caller: &str, deadline: Option<Duration>) -> Result<(), OverBudget> {
        let Some(rate) = self.caller_rate else {
            return Ok(());
        };
        let bucket = self.bucket(&self.callers, &caller.to_string(), rate, "caller", || {
            vec![caller.to_string()]
        });
        self.take(&bucket, Budget::Caller, deadline).await
    }

    /// Waits for an upstream token of the account's operation.
    pub async fn upstream(
        &self,
        bucket: Option<&Arc<TokenBucket>>,
        deadline: Option<Duration>,
    ) -> Result<(), OverBudget> {
        match bucket {
            Some(b) => self.take(b, Budget::Upstream, deadline).await,
            None => Ok(()),
        }
    }

    pub fn throttled(&self, bucket: Option<&Arc<TokenBucket>>, retry_after: Option<Duration>) {
        self.stats.throttle_signals.fetch_add(1, Ordering::Relaxed);
        let Some(b) = bucket else { return };
        b.throttled(retry_after);
        if let (Some(shared), Some(budget)) = (&self.shared, &b.shared) {
            // Every replica that saw the signal reports it; the budget is cut once.
            let (shared, kind, parts) = (shared.clone(), budget.kind, budget.parts.clone());
            let retry_after = retry_after.unwrap_or(Duration::from_secs(1));
            tokio::spawn(async move {
                let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
                if let Err(e) = shared.throttled(kind, &parts, retry_after).await {
                    tracing::debug!(error = %e, "could not slow the shared budget down");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests;
