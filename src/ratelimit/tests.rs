use super::*;

fn rate(per_second: f64, burst: f64) -> Rate {
    Rate { per_second, burst }
}

#[test]
fn a_burst_is_free_then_calls_wait_for_tokens() {
    let b = TokenBucket::new(rate(10.0, 3.0));
    for _ in 0..3 {
        assert_eq!(b.reserve(Duration::ZERO), Ok(Duration::ZERO));
    }
    let wait = b.reserve(Duration::from_secs(1)).expect("within the bound");
    assert!(
        wait > Duration::from_millis(50) && wait <= Duration::from_millis(110),
        "{wait:?}"
    );
    // Past the bound: refused with how long to wait, and nothing taken.
    let err = b
        .reserve(Duration::from_millis(1))
        .expect_err("over budget");
    assert!(err > Duration::from_millis(100), "{err:?}");
}

#[test]
fn throttling_pauses_and_halves_then_successes_recover() {
    let b = TokenBucket::new(rate(10.0, 10.0));
    b.throttled(Some(Duration::from_secs(2)));
    assert_eq!(b.current_rate(), 5.0);
    let wait = b.reserve(Duration::from_secs(5)).expect("waits");
    assert!(wait >= Duration::from_millis(1900), "paused: {wait:?}");
    for _ in 0..20 {
        b.succeeded();
    }
    assert_eq!(b.current_rate(), 10.0);
}
