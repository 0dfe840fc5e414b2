//! The read cache: answers of cacheable operations (reads without secrets), keyed by who asks
//! (the profile's cache scope: the credential's identity, its session policy and the headers
//! sent with every call), where (region), what (operation) and the request message as the
//! caller encoded it (which determines the upstream request; a hit needs no mapping to HTTP).
//!
//! - Concurrent identical misses are coalesced into one upstream call (moka's `try_get_with`).
//! - Errors are never cached; coalesced waiters share the one error.
//! - Entries live for the operation's TTL (or a global override) and are bounded by total bytes.
//! - A successful mutation invalidates the reads that share one of its tags (the same cluster,
//!   node pool or template, or an account-wide collection such as the cluster list).
//!
//! Invariant: authorization runs before the cache is consulted (see `gateway`).

use bytes::Bytes;
use moka::future::Cache;
use moka::Expiry;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a cached answer is filed under.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    /// Whom the credential acts as and everything else of the profile that can change the
    /// answer (`vault::Profile::cache_scope`): differently scoped profiles never share an entry.
    pub scope: String,
    pub region: String,
    pub service: String,
    pub operation: String,
    /// The request message as the caller encoded it (it determines the upstream request).
    pub request: Bytes,
}

/// A cached answer.
#[derive(Debug)]
pub struct CachedAnswer {
    pub message: Bytes,
    pub request_id: Option<String>,
    /// The resource the request concerns, for the audit line of the calls it answers.
    pub target: String,
    /// When upstream last gave this answer: stored, or confirmed unchanged by a bypassing call.
    pub stored_at: Stamp,
    pub ttl: Duration,
    /// `identity|region|kind:value` tags a mutation can invalidate.
    pub tags: Vec<String>,
}

/// An instant that can be moved forward in place, shared by every holder of an entry.
#[derive(Debug)]
pub struct Stamp(AtomicU64);

impl Stamp {
    pub fn now() -> Stamp {
        Stamp(AtomicU64::new(Self::since_epoch()))
    }

    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(Self::since_epoch().saturating_sub(self.0.load(Ordering::Relaxed)))
    }

    /// Moves the stamp to now.
    pub fn reset(&self) {
        self.0.fetch_max(Self::since_epoch(), Ordering::Relaxed);
    }

    /// Nanoseconds since the first stamp of the process (monotonic, like `Instant`).
    fn since_epoch() -> u64 {
        static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        let nanos = EPOCH.get_or_init(Instant::now).elapsed().as_nanos();
        u64::try_from(nanos).unwrap_or(u64::MAX)
    }
}

/// Counters for the metrics endpoint.
#[derive(Debug, Default)]
pub struct CacheStats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub bypasses: AtomicU64,
    pub evictions: AtomicU64,
    pub invalidations: AtomicU64,
}

struct PerEntryTtl;

impl Expiry<CacheKey, Arc<CachedAnswer>> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _key: &CacheKey,
        value: &Arc<CachedAnswer>,
        _now: Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

#[derive(Clone)]
pub struct ReadCache {
    cache: Cache<CacheKey, Arc<CachedAnswer>>,
    stats: Arc<CacheStats>,
    ttl_override: Option<Duration>,
    /// With `[redis]`: invalidations also go to the other replicas.
    shared: Option<Arc<crate::shared::Shared>>,
}

/// How a call may use the cache, from its `cache-control` metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Freshness {
    #[default]
    Any,
    /// `no-cache`: always ask upstream (and store the fresh answer).
    NoCache,
    /// `max-age=N`: accept an entry at most this old.
    MaxAge(Duration),
}

impl Freshness {
    /// Parses `cache-control` (`no-cache`, `max-age=N`); anything else is ignored.
    pub fn parse(value: &str) -> Freshness {
        let mut out = Freshness::Any;
        for part in value.split(',').map(str::trim) {
            if part.eq_ignore_ascii_case("no-cache") || part.eq_ignore_ascii_case("no-store") {
                return Freshness::NoCache;
            }
            if let Some(n) = part
                .strip_prefix("max-age=")
                .and_then(|n| n.parse::<u64>().ok())
            {
                out = if n == 0 {
                    Freshness::NoCache
                } else {
                    Freshness::MaxAge(Duration::from_secs(n))
                };
            }
        }
        out
    }
}

/// How an answer was served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    Hit { age: Duration },
    Miss,
    Bypass,
}

impl Served {
    /// `hit`, `miss` or `bypass`: the `x-ack-cache` metadata and the spans' `ack.cache`.
    pub fn label(&self) -> &'static str {
        match self {
            Served::Hit { .. } => "hit",
            Served::Miss => "miss",
            Served::Bypass => "bypass",
        }
    }
}

// === impl ReadCache ===

impl ReadCache {
    pub fn new(
        max_bytes: u64,
        ttl_override: Option<Duration>,
        shared: Option<Arc<crate::shared::Shared>>,
    ) -> Self {
        let stats = Arc::new(CacheStats::default());
        let evictions = stats.clone();
        let cache = Cache::builder()
            .name("reads")
            .max_capacity(max_bytes)
            .weigher(|k: &CacheKey, v: &Arc<CachedAnswer>| {
                let size = v.message.len() + k.request.len() + k.scope.len() + 64;
                u32::try_from(size).unwrap_or(u32::MAX)
            })
            .expire_after(PerEntryTtl)
            .support_invalidation_closures()
            .eviction_listener(move |_k, _v, cause| {
                if cause == moka::notification::RemovalCause::Size {
                    evictions.evictions.fetch_add(1, Ordering::Relaxed);
                }
            })
            .build();
        ReadCache {
            cache,
            stats,
            ttl_override,
            shared,
        }
    }

    pub fn stats(&self) -> &CacheStats {
        &self.stats
    }

    /// Entries and their total weight (bytes), for metrics.
    pub fn size(&self) -> (u64, u64) {
        (self.cache.entry_count(), self.cache.weighted_size())
    }

    pub fn ttl_for(&self, op_ttl: Duration) -> Duration {
        self.ttl_override.unwrap_or(op_ttl)
    }

    /// A cached answer fresh enough for `freshness`, if there is one (the fast path of a hit).
    pub async fn fresh(
        &self,
        key: &CacheKey,
        freshness: Freshness,
    ) -> Option<(Arc<CachedAnswer>, Served)> {
        let max_age = match freshness {
            Freshness::NoCache => return None,
            Freshness::MaxAge(max) => Some(max),
            Freshness::Any => None,
        };
        let entry = self.cache.get(key).await?;
        let age = entry.stored_at.elapsed();
        if max_age.is_some_and(|max| age > max) {
            return None;
        }
        self.stats.hits.fetch_add(1, Ordering::Relaxed);
        Some((entry, Served::Hit { age }))
    }

    /// The cached answer, or `fetch`'s, with concurrent identical misses coalesced.
    pub async fn get_or_fetch<E, F>(
        &self,
        key: CacheKey,
        freshness: Freshness,
        fetch: F,
    ) -> Result<(Arc<CachedAnswer>, Served), Arc<E>>
    where
        E: Send + Sync + 'static,
        F: std::future::Future<Output = Result<CachedAnswer, E>>,
    {
        match freshness {
            Freshness::NoCache => {
                self.stats.bypasses.fetch_add(1, Ordering::Relaxed);
                let entry = Arc::new(fetch.await.map_err(Arc::new)?);
                // The fresh answer is stored. When it equals the stored one (the common case
                // for a hot read) only the stored answer's age is reset: a cache write, with
                // the upkeep it triggers, costs more than the rest of a cache hit.
                match self.cache.get(&key).await {
                    Some(stored)
                        if stored.message == entry.message && stored.tags == entry.tags =>
                    {
                        stored.stored_at.reset();
                    }
                    _ => self.cache.insert(key, entry.clone()).await,
                }
                return Ok((entry, Served::Bypass));
            }
            Freshness::MaxAge(max) => {
                if let Some(e) = self.cache.get(&key).await {
                    if e.stored_at.elapsed() > max {
                        self.cache.invalidate(&key).await;
                    }
                }
            }
            Freshness::Any => {}
        }
        let mut fetched = false;
        let entry = self
            .cache
            .try_get_with(key, async {
                fetched = true;
                fetch.await.map(Arc::new)
            })
            .await?;
        if fetched {
            self.stats.misses.fetch_add(1, Ordering::Relaxed);
            Ok((entry, Served::Miss))
        } else {
            self.stats.hits.fetch_add(1, Ordering::Relaxed);
            let age = entry.stored_at.elapsed();
            Ok((entry, Served::Hit { age }))
        }
    }

    /// Drops every entry carrying one of `tags`.
    pub fn invalidate(&self, tags: Vec<String>) {
        if let Some(shared) = &self.shared {
            shared.publish_invalidation(tags.clone());
        }
        self.invalidate_local(tags);
    }

    /// Drops entries filed under `tags` here only (what another replica's mutation made stale).
    pub fn invalidate_local(&self, tags: Vec<String>) {
        if tags.is_empty() {
            return;
        }
        self.stats.invalidations.fetch_add(1, Ordering::Relaxed);
        // Lazily removed, but never served again once this returns.
        let _ = self
            .cache
            .invalidate_entries_if(move |_k, v| v.tags.iter().any(|t| tags.contains(t)));
    }

    /// Drops every entry (invalidations from other replicas may have been missed).
    pub fn clear(&self) {
        self.cache.invalidate_all();
    }
}

#[cfg(test)]
mod tests;
