//! Timing of polls: the adaptive interval (fast while things change, backing off while they do
//! not), the backoff after failed polls, and jitter. (The rate budget every poller shares is a
//! `ratelimit::TokenBucket`.)
//! Pure arithmetic over explicit clocks and random draws, so it is tested without waiting.

use crate::config::WatchConfig;
use std::time::Duration;

/// The interval between successful polls of one target.
#[derive(Debug, Clone)]
pub struct Interval {
    current: Duration,
    initial: Duration,
    max: Duration,
    factor: f64,
}

impl Interval {
    pub fn new(config: &WatchConfig) -> Self {
        Interval {
            current: config.initial_interval,
            initial: config.initial_interval,
            max: config.max_interval,
            factor: config.backoff_factor,
        }
    }

    pub fn current(&self) -> Duration {
        self.current
    }

    /// Something changed: poll fast again, the next change is likely close.
    pub fn changed(&mut self) {
        self.current = self.initial;
    }

    /// Nothing changed: wait longer next time, up to the maximum.
    pub fn unchanged(&mut self) {
        self.current = self.current.mul_f64(self.factor).min(self.max);
    }
}

/// The wait after consecutive failed polls: doubles from `retry_initial` up to `retry_max`, and
/// never shorter than the upstream asked for (the shared `ratelimit::Backoff`).
pub fn retry(config: &WatchConfig) -> crate::ratelimit::Backoff {
    crate::ratelimit::Backoff::new(config.retry_initial, config.retry_max)
}

/// `wait` lengthened by up to `jitter` of itself; `draw` is uniform in [0, 1). Never shorter
/// than `wait`, so jitter never makes a poller poll faster than its interval.
pub fn jittered(wait: Duration, jitter: f64, draw: f64) -> Duration {
    wait + wait.mul_f64((jitter * draw).clamp(0.0, 1.0))
}
