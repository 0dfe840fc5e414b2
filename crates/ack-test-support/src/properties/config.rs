//! Configuration text (`config::Config::load`).
//!
//! Input: the text of a configuration file (inputs that are not UTF-8 are skipped), loaded with
//! an environment that sets nothing and reads no file. Properties: no panic; every error is a
//! message that names its key (`key: …`, or where TOML stopped parsing); and no error contains
//! a secret given inline (`access_key_secret = "…"` / `security_token = "…"`, at least 8
//! bytes, found nowhere else in the text).

use ack_gateway::config::{Config, ConfigError, Env};
use std::path::Path;

/// An environment with no variables that refuses to read files.
struct NoEnv;

impl Env for NoEnv {
    fn var(&self, _name: &str) -> Option<String> {
        None
    }
    fn read_file(&self, path: &Path) -> std::io::Result<String> {
        Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{} is not readable here", path.display()),
        ))
    }
}

const SECRET_KEYS: [&str; 2] = ["access_key_secret", "security_token"];

/// The inline secrets: written as `key = "value"` on one line, and (when the text parses) the
/// value of such a key in the document.
fn inline_secrets(text: &str) -> Vec<String> {
    let parsed = toml::from_str::<toml::Table>(text).ok();
    let mut found = Vec::new();
    for line in text.lines() {
        for key in SECRET_KEYS {
            let Some(rest) = line.trim_start().strip_prefix(key) else {
                continue;
            };
            let Some(quoted) = rest.trim_start().strip_prefix('=') else {
                continue;
            };
            let Some(value) = quoted
                .trim_start()
                .strip_prefix('"')
                .and_then(|v| v.split_once('"'))
                .map(|(v, _)| v)
            else {
                continue;
            };
            if value.len() >= 8
                && !value.contains('\\')
                && text.matches(value).count() == 1
                && parsed.as_ref().is_none_or(|t| is_secret_value(t, value))
            {
                found.push(value.to_string());
            }
        }
    }
    found
}

fn is_secret_value(table: &toml::Table, value: &str) -> bool {
    table.iter().any(|(k, v)| match v {
        toml::Value::String(s) => SECRET_KEYS.contains(&k.as_str()) && s == value,
        toml::Value::Table(t) => is_secret_value(t, value),
        toml::Value::Array(items) => items.iter().any(|i| match i {
            toml::Value::Table(t) => is_secret_value(t, value),
            _ => false,
        }),
        _ => false,
    })
}

pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Err(ConfigError(errors)) = Config::load(Some(text), &NoEnv) else {
        return;
    };
    assert!(!errors.is_empty(), "an error without a message");
    for e in &errors {
        let names_key = e.starts_with("TOML parse error")
            || e.split_once(": ")
                .is_some_and(|(key, _)| !key.trim().is_empty());
        assert!(names_key, "an error naming no key: {e}");
    }
    for secret in inline_secrets(text) {
        for e in &errors {
            assert!(!e.contains(&secret), "the inline secret is in: {e}");
        }
    }
}

/// The example configuration, and configurations with inline secrets next to mistakes.
pub fn seeds() -> Vec<Vec<u8>> {
    let example =
        std::fs::read_to_string(super::inputs::repo_root().join("deploy/config.example.toml"))
            .expect("the example configuration");
    let mut out = vec![example.into_bytes()];
    for (before, after) in [
        ("", ""),
        ("listen = \"nowhere\"\n", ""),
        ("", "region = \"not a region\"\n"),
        ("", "acs_headers = { \"x-other\" = \"v\" }\n"),
        ("", "signature = \"v2\"\n"),
        ("", "unknown = 1\n"),
        ("[upstream]\nrequest_timeout = \"soon\"\n", ""),
        ("", "expiration = \"yesterday\"\n"),
        ("", "access_key_secret = \"twice-the-key\"\n"),
        (
            "",
            "[profiles.b]\ntype = \"ram_role_arn\"\nsource_profile = \"c\"\nrole_arn = \"x\"\n",
        ),
    ] {
        let text = format!(
            "{before}[profiles.a]\ntype = \"sts\"\naccess_key_id = \"LTAI-fuzz\"\naccess_key_secret = \"inline-secret-0123456789\"\nsecurity_token = \"inline-token-9876543210\"\n{after}"
        );
        out.push(text.into_bytes());
    }
    out
}
