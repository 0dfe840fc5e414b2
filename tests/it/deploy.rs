//! The example configuration in `deploy/` stays valid.

use ack_gateway::config::Config;
use std::collections::HashMap;

#[test]
fn example_config_parses() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/config.example.toml"
    ))
    .expect("example config exists");
    let mut env: HashMap<String, String> = HashMap::new();
    env.insert("TEMP_ACCESS_KEY_SECRET".into(), "s".into());
    env.insert("TEMP_SECURITY_TOKEN".into(), "t".into());
    env.insert("APSARA_SECRET".into(), "a".into());
    let err =
        Config::load(Some(&text), &env).expect_err("the mounted secret file does not exist here");
    let msg = err.to_string();
    assert!(msg.contains("profiles.default.access_key_secret"), "{msg}");
    assert_eq!(
        err.0.len(),
        1,
        "only the missing secret file is reported: {msg}"
    );
}
