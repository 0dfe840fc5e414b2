//! Timing of polls: the adaptive interval (fast while things change, backing off while they do
//! not), the backoff after failed polls, jitter, and the rate budget every poller shares.
//! Pure arithmetic over explicit clocks and random draws, so it is tested without waiting.

use crate::config::WatchConfig;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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
/// never shorter than the upstream asked for.
#[derive(Debug, Clone)]
pub struct Retry {
    next: Duration,
    initial: Duration,
    max: Duration,
    attempts: u32,
}

impl Retry {
    pub fn new(config: &WatchConfig) -> Self {
        Retry {
            next: config.retry_initial,
            initial: config.retry_initial,
            max: config.retry_max,
            attempts: 0,
        }
    }

    /// Records a failed poll; returns the wait before the next one and the attempt number.
    pub fn failed(&mut self, asked: Option<Duration>) -> (Duration, u32) {
        self.attempts += 1;
        let wait = self.next.max(asked.unwrap_or_default());
        self.next = self.next.saturating_mul(2).min(self.max);
        (wait, self.attempts)
    }

    pub fn succeeded(&mut self) {
        self.next = self.initial;
        self.attempts = 0;
    }
}

/// `wait` lengthened by up to `jitter` of itself; `draw` is uniform in [0, 1). Never shorter
/// than `wait`, so jitter never makes a poller poll faster than its interval.
pub fn jittered(wait: Duration, jitter: f64, draw: f64) -> Duration {
    wait + wait.mul_f64((jitter * draw).clamp(0.0, 1.0))
}

/// A token bucket shared by every poller: at most `rate` polls per second on average, with
/// bursts up to one second's worth.
#[derive(Debug)]
pub struct RateBudget {
    rate: f64,
    burst: f64,
    /// (tokens left, when last refilled).
    state: Mutex<(f64, Instant)>,
}

impl RateBudget {
    pub fn new(rate: f64, now: Instant) -> Self {
        let burst = rate.max(1.0);
        RateBudget {
            rate,
            burst,
            state: Mutex::new((burst, now)),
        }
    }

    /// Takes a token if one is there, or says how long until one is.
    pub fn try_take(&self, now: Instant) -> Result<(), Duration> {
        let mut state = self.state.lock().expect("budget lock");
        let (tokens, last) = *state;
        let refilled = (tokens + now.saturating_duration_since(last).as_secs_f64() * self.rate)
            .min(self.burst);
        if refilled >= 1.0 {
            *state = (refilled - 1.0, now);
            Ok(())
        } else {
            *state = (refilled, now);
            Err(Duration::from_secs_f64((1.0 - refilled) / self.rate))
        }
    }

    /// Waits for a token.
    pub async fn take(&self) {
        // Bounded: each miss waits for the refill it computed; a few rounds at most under
        // contention.
        loop {
            match self.try_take(Instant::now()) {
                Ok(()) => return,
                Err(wait) => tokio::time::sleep(wait).await,
            }
        }
    }
}
