use crate::config::{Config, WatchConfig};
use std::collections::HashMap;
use std::time::Duration;

fn load(text: &str) -> Result<Config, crate::config::ConfigError> {
    Config::load(Some(text), &HashMap::<String, String>::new())
}

#[test]
fn the_watch_section_is_optional_and_has_production_defaults() {
    let c = load("").expect("valid");
    assert_eq!(c.watch, WatchConfig::default());
    assert_eq!(c.watch.initial_interval, Duration::from_secs(2));
    assert_eq!(c.watch.max_interval, Duration::from_secs(30));
}

#[test]
fn every_watch_key_is_read() {
    let c = load(
        "[watch]\ninitial_interval = \"50ms\"\nmax_interval = \"400ms\"\nbackoff_factor = 2.0\n\
         jitter = 0.0\nheartbeat_interval = \"100ms\"\nmax_duration = \"5s\"\n\
         retry_initial = \"20ms\"\nretry_max = \"80ms\"\nmax_polls_per_second = 500.0\n\
         max_streams_per_caller = 7\n",
    )
    .expect("valid");
    assert_eq!(
        c.watch,
        WatchConfig {
            initial_interval: Duration::from_millis(50),
            max_interval: Duration::from_millis(400),
            backoff_factor: 2.0,
            jitter: 0.0,
            heartbeat_interval: Duration::from_millis(100),
            max_duration: Duration::from_secs(5),
            retry_initial: Duration::from_millis(20),
            retry_max: Duration::from_millis(80),
            max_polls_per_second: 500.0,
            max_streams_per_caller: 7,
        }
    );
}

#[test]
fn unknown_and_invalid_watch_keys_are_named() {
    let err = load("[watch]\ninitial_intervall = \"1s\"\n").expect_err("unknown key");
    assert!(err.to_string().contains("initial_intervall"), "{err}");
    let err = load(
        "[watch]\ninitial_interval = \"10s\"\nmax_interval = \"1s\"\njitter = 2.0\n\
         heartbeat_interval = \"0ms\"\nmax_polls_per_second = 0.0\n",
    )
    .expect_err("invalid");
    let msg = err.to_string();
    for key in [
        "watch.max_interval",
        "watch.jitter",
        "watch.heartbeat_interval",
        "watch.max_polls_per_second",
    ] {
        assert!(msg.contains(key), "{key} in {msg}");
    }
}
