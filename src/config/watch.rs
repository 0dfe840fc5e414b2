//! The `[watch]` section: how the streaming watchers poll. Every interval is configurable so that
//! tests run on milliseconds and production on seconds.

use super::parse::duration_or;
use serde::Deserialize;
use std::time::Duration;

/// How watchers poll the upstream.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchConfig {
    /// The first polls' interval, and the interval again after every change.
    pub initial_interval: Duration,
    /// The longest interval, reached by backing off while nothing changes.
    pub max_interval: Duration,
    /// The interval grows by this factor after each poll that saw no change.
    pub backoff_factor: f64,
    /// Each wait is lengthened by a random fraction up to this, so pollers started together
    /// spread out; a wait is never shorter than its interval.
    pub jitter: f64,
    /// A subscriber that received nothing for this long gets a heartbeat.
    pub heartbeat_interval: Duration,
    /// A watch stream ends with DEADLINE_EXCEEDED after this long.
    pub max_duration: Duration,
    /// First wait after a transiently failed poll; doubles per failure up to `retry_max`.
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// Upstream polls per second across all watchers (the upstream rate budget they share).
    pub max_polls_per_second: f64,
    /// Watch streams one caller may hold open at once; one more is RESOURCE_EXHAUSTED.
    pub max_streams_per_caller: usize,
}

impl Default for WatchConfig {
    fn default() -> Self {
        WatchConfig {
            initial_interval: Duration::from_secs(2),
            max_interval: Duration::from_secs(30),
            backoff_factor: 1.5,
            jitter: 0.2,
            heartbeat_interval: Duration::from_secs(15),
            max_duration: Duration::from_secs(2 * 3600),
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(30),
            max_polls_per_second: 20.0,
            max_streams_per_caller: 100,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileWatch {
    initial_interval: Option<String>,
    max_interval: Option<String>,
    backoff_factor: Option<f64>,
    jitter: Option<f64>,
    heartbeat_interval: Option<String>,
    max_duration: Option<String>,
    retry_initial: Option<String>,
    retry_max: Option<String>,
    max_polls_per_second: Option<f64>,
    max_streams_per_caller: Option<usize>,
}

/// The section's settings, every problem pushed to `errors` with its key.
pub(super) fn resolve(file: &FileWatch, errors: &mut Vec<String>) -> WatchConfig {
    let d = WatchConfig::default();
    let mut duration = |key: &str, value: &Option<String>, default: Duration| {
        let v = duration_or(&format!("watch.{key}"), value.as_deref(), default, errors);
        if v.is_zero() {
            errors.push(format!("watch.{key}: must be greater than 0"));
        }
        v
    };
    let c = WatchConfig {
        initial_interval: duration(
            "initial_interval",
            &file.initial_interval,
            d.initial_interval,
        ),
        max_interval: duration("max_interval", &file.max_interval, d.max_interval),
        heartbeat_interval: duration(
            "heartbeat_interval",
            &file.heartbeat_interval,
            d.heartbeat_interval,
        ),
        max_duration: duration("max_duration", &file.max_duration, d.max_duration),
        retry_initial: duration("retry_initial", &file.retry_initial, d.retry_initial),
        retry_max: duration("retry_max", &file.retry_max, d.retry_max),
        backoff_factor: file.backoff_factor.unwrap_or(d.backoff_factor),
        jitter: file.jitter.unwrap_or(d.jitter),
        max_polls_per_second: file.max_polls_per_second.unwrap_or(d.max_polls_per_second),
        max_streams_per_caller: file
            .max_streams_per_caller
            .unwrap_or(d.max_streams_per_caller),
    };
    if c.max_streams_per_caller == 0 {
        errors.push("watch.max_streams_per_caller: must be greater than 0".into());
    }
    if c.max_interval < c.initial_interval {
        errors.push("watch.max_interval: must not be shorter than watch.initial_interval".into());
    }
    if c.retry_max < c.retry_initial {
        errors.push("watch.retry_max: must not be shorter than watch.retry_initial".into());
    }
    if !(1.0..=10.0).contains(&c.backoff_factor) {
        errors.push("watch.backoff_factor: must be between 1 and 10".into());
    }
    if !(0.0..=1.0).contains(&c.jitter) {
        errors.push("watch.jitter: must be between 0 and 1".into());
    }
    if !(c.max_polls_per_second > 0.0 && c.max_polls_per_second.is_finite()) {
        errors.push("watch.max_polls_per_second: must be greater than 0".into());
    }
    c
}

#[cfg(test)]
mod tests;
