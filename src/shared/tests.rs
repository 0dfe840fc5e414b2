use super::*;

fn config() -> RedisConfig {
    RedisConfig {
        url: crate::secret::Secret::new("redis://127.0.0.1:1"),
        password: None,
        key_prefix: "test:".into(),
        command_timeout: Duration::from_millis(50),
        replicas: Some(3),
        lease: Duration::from_secs(1),
    }
}

#[test]
fn keys_are_prefixed_hashes_that_name_no_account() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _guard = rt.enter();
    let shared = Shared::new(&config()).expect("lazy");
    let key = shared.key("upstream", &["ak:LTAIsecretish", "DescribeClustersV1"]);
    assert!(key.starts_with("test:upstream:"), "{key}");
    assert!(!key.contains("LTAI") && !key.contains("Describe"), "{key}");
    assert_eq!(key.len(), "test:upstream:".len() + 24);
    // Parts are separated: ("ab", "c") and ("a", "bc") are different budgets.
    assert_ne!(shared.key("k", &["ab", "c"]), shared.key("k", &["a", "bc"]));
    assert_eq!(
        shared.replicas(),
        3,
        "the configured number until replicas are heard from"
    );
}

#[test]
fn an_unreachable_redis_fails_fast_then_stops_being_asked() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let shared = Shared::new(&config()).expect("lazy");
        let started = std::time::Instant::now();
        let first = shared.lease("x").await;
        assert!(first.is_err());
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        // The breaker is open: the next command is refused without trying.
        assert!(matches!(shared.lease("x").await, Err(SharedError::Open)));
        assert!(!shared.is_shared());
    });
}
