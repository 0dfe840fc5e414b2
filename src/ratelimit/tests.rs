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

#[test]
fn backoff_doubles_to_its_maximum_honours_a_hint_and_resets() {
    let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(500));
    let waits: Vec<u128> = (0..5).map(|_| b.failed(None).0.as_millis()).collect();
    assert_eq!(waits, [100, 200, 400, 500, 500]);
    b.succeeded();
    assert_eq!(
        b.failed(Some(Duration::from_secs(2))),
        (Duration::from_secs(2), 1)
    );
    let w = Duration::from_secs(10);
    assert_eq!(full_jitter(w, 0.0), Duration::ZERO);
    assert_eq!(full_jitter(w, 0.5), Duration::from_secs(5));
    assert_eq!(Backoff::spread(w, 0.5, 0.0), Duration::from_millis(7500));
    assert_eq!(Backoff::spread(w, 0.5, 0.5), w);
}

#[test]
fn a_bucket_refuses_without_taking_and_refills_up_to_its_burst() {
    let t0 = std::time::Instant::now();
    let b = TokenBucket::full_at(
        Rate {
            per_second: 2.0,
            burst: 2.0,
        },
        t0,
    );
    assert_eq!(b.try_take_at(t0), Ok(()));
    assert_eq!(b.try_take_at(t0), Ok(()));
    assert_eq!(b.try_take_at(t0), Err(Duration::from_millis(500)));
    assert_eq!(
        b.try_take_at(t0),
        Err(Duration::from_millis(500)),
        "nothing was taken"
    );
    assert_eq!(b.try_take_at(t0 + Duration::from_millis(500)), Ok(()));
}
