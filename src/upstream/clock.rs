//! The upstream's clock, as the gateway estimates it from the `Date` of its answers.
//!
//! The API refuses a request whose time is more than 15 minutes from its own
//! (`InvalidTimeStamp.Expired`), so a host with a wrong clock fails every call. The gateway
//! keeps a smoothed estimate of the offset between the upstream's clock and its own and signs
//! with the corrected time; an answer refusing the request's time replaces the estimate at once
//! (the gateway then retries that request once: a request refused for its time was not
//! executed).

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The weight of a new observation in the smoothed offset.
const SMOOTHING: f64 = 0.125;

#[derive(Debug, Default)]
pub struct UpstreamClock {
    /// Upstream time minus local time, in milliseconds.
    offset_ms: AtomicI64,
    observed: AtomicBool,
}

impl UpstreamClock {
    /// The upstream's time now, as estimated.
    pub fn now(&self) -> SystemTime {
        shift(SystemTime::now(), self.offset_ms.load(Ordering::Relaxed))
    }

    /// The estimated offset (upstream minus local) in seconds.
    pub fn offset_seconds(&self) -> f64 {
        self.offset_ms.load(Ordering::Relaxed) as f64 / 1000.0
    }

    /// Folds in the offset an answer's `Date` shows (received at `received`, local time).
    pub fn observe(&self, headers: &http::HeaderMap, received: SystemTime) {
        let Some(sample) = sample(headers, received) else {
            return;
        };
        if !self.observed.swap(true, Ordering::Relaxed) {
            self.offset_ms.store(sample, Ordering::Relaxed);
            return;
        }
        let old = self.offset_ms.load(Ordering::Relaxed);
        let new = old as f64 + (sample - old) as f64 * SMOOTHING;
        self.offset_ms.store(new.round() as i64, Ordering::Relaxed);
    }

    /// Replaces the estimate with what this answer's `Date` shows; false when it has none.
    pub fn correct(&self, headers: &http::HeaderMap, received: SystemTime) -> bool {
        let Some(sample) = sample(headers, received) else {
            return false;
        };
        self.observed.store(true, Ordering::Relaxed);
        self.offset_ms.store(sample, Ordering::Relaxed);
        tracing::warn!(
            offset_seconds = sample as f64 / 1000.0,
            "the upstream refused the request time: signing with its clock from now on"
        );
        true
    }
}

/// Whether an error code means the request's time was refused (it was not executed).
pub fn time_refused(code: &str) -> bool {
    matches!(
        code,
        "InvalidTimeStamp" | "InvalidTimeStamp.Expired" | "RequestTimeTooSkewed"
    )
}

/// The offset (ms) a `Date` header shows. `Date` has a resolution of one second and is
/// truncated, so the upstream's time at receipt is taken as the middle of that second.
fn sample(headers: &http::HeaderMap, received: SystemTime) -> Option<i64> {
    let date = headers.get(http::header::DATE)?.to_str().ok()?;
    let server = httpdate::parse_http_date(date).ok()? + Duration::from_millis(500);
    Some(millis(server) - millis(received))
}

fn millis(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

fn shift(t: SystemTime, offset_ms: i64) -> SystemTime {
    let by = Duration::from_millis(offset_ms.unsigned_abs());
    if offset_ms >= 0 {
        t + by
    } else {
        t - by
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(t: SystemTime) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::DATE,
            httpdate::fmt_http_date(t).parse().expect("date"),
        );
        h
    }

    #[test]
    fn the_first_date_sets_the_offset_and_later_ones_are_smoothed() {
        let clock = UpstreamClock::default();
        let local = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert_eq!(clock.offset_seconds(), 0.0);
        clock.observe(&date(local + Duration::from_secs(1200)), local);
        assert!((clock.offset_seconds() - 1200.5).abs() < 0.01);
        // One odd answer moves the estimate by an eighth of its difference only.
        clock.observe(&date(local), local);
        let moved = clock.offset_seconds();
        assert!((moved - (1200.5 - 1200.0 / 8.0)).abs() < 0.01, "{moved}");
        // A refusal replaces the estimate.
        assert!(clock.correct(&date(local - Duration::from_secs(60)), local));
        assert!((clock.offset_seconds() + 59.5).abs() < 0.01);
        assert!(!clock.correct(&http::HeaderMap::new(), local));
    }

    #[test]
    fn now_is_shifted_by_the_offset() {
        let clock = UpstreamClock::default();
        let local = SystemTime::now();
        clock.observe(&date(local - Duration::from_secs(3600)), local);
        let behind = SystemTime::now()
            .duration_since(clock.now())
            .expect("the upstream is behind");
        assert!(behind > Duration::from_secs(3598) && behind < Duration::from_secs(3601));
    }

    #[test]
    fn answers_without_a_usable_date_change_nothing() {
        let clock = UpstreamClock::default();
        let mut h = http::HeaderMap::new();
        h.insert(http::header::DATE, "yesterday".parse().expect("value"));
        clock.observe(&h, SystemTime::now());
        clock.observe(&http::HeaderMap::new(), SystemTime::now());
        assert_eq!(clock.offset_seconds(), 0.0);
    }
}
