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

fn key() -> CacheKey {
    CacheKey {
        scope: "ak:LTAIexample".into(),
        region: "cn-hangzhou".into(),
        service: "cs".into(),
        operation: "DescribeClusterDetail".into(),
        request: Bytes::from_static(b"\x0a\x02c1"),
    }
}

fn answer(message: &'static [u8], request_id: &str) -> CachedAnswer {
    CachedAnswer {
        message: Bytes::from_static(message),
        request_id: Some(request_id.into()),
        target: "c1".into(),
        stored_at: Stamp::now(),
        ttl: Duration::from_secs(60),
        tags: vec!["ak:LTAIexample|cn-hangzhou|cluster:c1".into()],
    }
}

async fn served(
    cache: &ReadCache,
    freshness: Freshness,
    entry: CachedAnswer,
) -> (Arc<CachedAnswer>, Served) {
    cache
        .get_or_fetch(key(), freshness, async { Ok::<_, ()>(entry) })
        .await
        .expect("answered")
}

#[tokio::test]
async fn a_bypassing_call_stores_its_answer_or_confirms_an_identical_one() {
    let cache = ReadCache::new(1 << 20, None, None);
    let (_, how) = served(&cache, Freshness::Any, answer(b"v1", "r1")).await;
    assert_eq!(how, Served::Miss);
    tokio::time::sleep(Duration::from_millis(30)).await;

    // Same answer: the stored entry is kept, its age reset; the caller gets its own request id.
    let (fresh, how) = served(&cache, Freshness::NoCache, answer(b"v1", "r2")).await;
    assert_eq!(
        (how, fresh.request_id.as_deref()),
        (Served::Bypass, Some("r2"))
    );
    let (hit, how) = served(&cache, Freshness::Any, answer(b"never", "r-")).await;
    let Served::Hit { age } = how else {
        panic!("expected a hit, got {how:?}");
    };
    assert!(age < Duration::from_millis(30), "age was reset: {age:?}");
    assert_eq!(hit.message, Bytes::from_static(b"v1"));

    // A different answer replaces the stored one.
    served(&cache, Freshness::NoCache, answer(b"v2", "r3")).await;
    let (hit, how) = served(&cache, Freshness::Any, answer(b"never", "r-")).await;
    assert!(matches!(how, Served::Hit { .. }), "{how:?}");
    assert_eq!(hit.message, Bytes::from_static(b"v2"));
    assert_eq!(hit.request_id.as_deref(), Some("r3"));
}
