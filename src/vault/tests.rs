use super::role::{refresh_at, Triple};
use crate::secret::Secret;
use crate::signer::SigningKey;
use std::time::Duration;
use time::OffsetDateTime;

fn triple(lifetime: Duration) -> Triple {
    let issued = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("time");
    Triple {
        key: SigningKey::new("STS.x", Secret::new("s"), Some(Secret::new("t"))),
        issued,
        expiration: issued + lifetime,
    }
}

#[test]
fn long_lifetimes_refresh_when_fifteen_minutes_remain() {
    let t = triple(Duration::from_secs(3600));
    assert_eq!(
        refresh_at(&t, Duration::from_secs(900)),
        t.expiration - Duration::from_secs(900)
    );
}

#[test]
fn short_lifetimes_refresh_at_eighty_percent() {
    for secs in [10, 900, 1200] {
        let t = triple(Duration::from_secs(secs));
        let at = refresh_at(&t, Duration::from_secs(900));
        assert_eq!(
            at - t.issued,
            Duration::from_secs(secs).mul_f64(0.8),
            "{secs}s"
        );
    }
}
