//! A circuit breaker: after a failed command, Redis is not asked again for a while (doubling
//! up to a bound while it keeps failing), so that calls do not each wait for a timeout.

use std::sync::Mutex;
use std::time::{Duration, Instant};

const FIRST: Duration = Duration::from_millis(250);
const LONGEST: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
pub struct Breaker {
    state: Mutex<BreakerState>,
}

#[derive(Debug, Default)]
struct BreakerState {
    open_until: Option<Instant>,
    backoff: Option<Duration>,
}

impl Breaker {
    /// Open: do not ask Redis now.
    pub fn is_open(&self) -> bool {
        let s = self.state.lock().expect("breaker lock");
        s.open_until.is_some_and(|until| Instant::now() < until)
    }

    /// Redis answered; true when it had been failing (it answers again).
    pub fn succeeded(&self) -> bool {
        let mut s = self.state.lock().expect("breaker lock");
        let recovered = s.backoff.is_some();
        if recovered {
            tracing::info!("Redis answers again: state is shared");
        }
        *s = BreakerState::default();
        recovered
    }

    pub fn failed(&self) {
        let mut s = self.state.lock().expect("breaker lock");
        let backoff = s.backoff.map_or(FIRST, |b| (b * 2).min(LONGEST));
        if s.backoff.is_none() {
            tracing::warn!("Redis failed: using local state until it answers again");
        }
        s.backoff = Some(backoff);
        s.open_until = Some(Instant::now() + backoff);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_opens_it_for_a_while_and_a_success_closes_it() {
        let b = Breaker::default();
        assert!(!b.is_open());
        b.failed();
        assert!(b.is_open());
        b.succeeded();
        assert!(!b.is_open());
        b.failed();
        b.failed();
        let backoff = b.state.lock().expect("lock").backoff;
        assert_eq!(backoff, Some(FIRST * 2));
    }
}
