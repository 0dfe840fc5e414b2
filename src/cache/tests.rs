use super::*;

#[test]
fn cache_control_parses() {
    assert_eq!(Freshness::parse("no-cache"), Freshness::NoCache);
    assert_eq!(
        Freshness::parse("max-age=5"),
        Freshness::MaxAge(Duration::from_secs(5))
    );
    assert_eq!(Freshness::parse("max-age=0"), Freshness::NoCache);
    assert_eq!(
        Freshness::parse("public, max-age=30"),
        Freshness::MaxAge(Duration::from_secs(30))
    );
    assert_eq!(Freshness::parse("whatever"), Freshness::Any);
}
