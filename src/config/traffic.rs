//! Configuration of traffic control: the read cache, rate limits, retries and overload limits.

use super::limits::positive;
use super::parse::duration_or;
use serde::Deserialize;
use std::time::Duration;

/// A token bucket's rate (tokens per second) and burst (`ratelimit`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: f64,
}

#[derive(Debug, Clone)]
pub struct TrafficConfig {
    /// Upper bound of the cache's total size in bytes.
    pub cache_max_bytes: u64,
    /// A TTL replacing every operation's own (the table's `cache_ttl_ms`).
    pub cache_ttl: Option<Duration>,
    /// Per caller; `None`: unlimited.
    pub caller_rate: Option<Rate>,
    /// Per (account, operation): the upstream budget; `None`: unlimited.
    pub upstream_rate: Option<Rate>,
    /// How long a call over budget may wait for a token.
    pub max_wait: Duration,
    /// Attempts per call, the first included (reads; mutations retry only unsent requests).
    pub max_attempts: u32,
    pub retry_base: Duration,
    pub retry_max_backoff: Duration,
    /// Calls served at once; more are shed with `UNAVAILABLE`.
    pub max_concurrent_calls: usize,
    /// Upstream requests in flight per host.
    pub max_inflight_per_host: usize,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileCache {
    max_bytes: Option<u64>,
    ttl: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileRateLimit {
    caller: Option<FileRate>,
    upstream: Option<FileRate>,
    max_wait: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRate {
    rate: f64,
    burst: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileRetry {
    max_attempts: Option<u32>,
    base: Option<String>,
    max_backoff: Option<String>,
}

/// Defaults: a 64 MiB cache, no caller limit, 100 calls/s (burst 200) per account and operation.
pub(super) fn resolve(
    cache: &FileCache,
    rate: &FileRateLimit,
    retry: &FileRetry,
    max_concurrent_calls: Option<usize>,
    max_inflight_per_host: Option<usize>,
    errors: &mut Vec<String>,
) -> TrafficConfig {
    let mut to_rate = |key: &str, r: &Option<FileRate>, default: Option<Rate>| match r {
        None => default,
        Some(r) if r.rate > 0.0 && r.burst.is_none_or(|b| b >= 1.0) => Some(Rate {
            per_second: r.rate,
            burst: r.burst.unwrap_or(r.rate.max(1.0)),
        }),
        Some(_) => {
            errors.push(format!("rate_limit.{key}: rate must be > 0 and burst >= 1"));
            default
        }
    };
    let caller_rate = to_rate("caller", &rate.caller, None);
    let upstream_rate = to_rate(
        "upstream",
        &rate.upstream,
        Some(Rate {
            per_second: 100.0,
            burst: 200.0,
        }),
    );
    let max_attempts = retry.max_attempts.unwrap_or(3);
    if max_attempts == 0 {
        errors.push("retry.max_attempts: must be at least 1".into());
    }
    TrafficConfig {
        cache_max_bytes: cache.max_bytes.unwrap_or(64 * 1024 * 1024),
        cache_ttl: cache
            .ttl
            .as_deref()
            .map(|t| duration_or("cache.ttl", Some(t), Duration::ZERO, errors)),
        caller_rate,
        upstream_rate,
        max_wait: duration_or(
            "rate_limit.max_wait",
            rate.max_wait.as_deref(),
            Duration::from_secs(1),
            errors,
        ),
        max_attempts: max_attempts.max(1),
        retry_base: duration_or(
            "retry.base",
            retry.base.as_deref(),
            Duration::from_millis(100),
            errors,
        ),
        retry_max_backoff: duration_or(
            "retry.max_backoff",
            retry.max_backoff.as_deref(),
            Duration::from_secs(2),
            errors,
        ),
        max_concurrent_calls: positive("max_concurrent_calls", max_concurrent_calls, 4096, errors),
        max_inflight_per_host: positive(
            "max_inflight_per_host",
            max_inflight_per_host,
            512,
            errors,
        ),
    }
}
