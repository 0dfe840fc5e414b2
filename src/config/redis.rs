//! `[redis]`: where replicas share their state (see `shared`).

use super::parse::duration_or;
use super::profiles::{resolve_secret, SecretSource};
use super::Env;
use crate::secret::Secret;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// The environment variable that sets (or overrides) `[redis] url`.
pub const URL_ENV: &str = "ACK_GATEWAY_REDIS_URL";

#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://`, `rediss://` (TLS) or `redis+unix://`; may hold a password, so it is secret.
    pub url: Secret,
    /// The password, when not in the URL.
    pub password: Option<Secret>,
    /// Every key and channel starts with it.
    pub key_prefix: String,
    /// The longest one command may take before the call goes on with local state.
    pub command_timeout: Duration,
    /// How many replicas share the budgets when Redis is unreachable and none were learned.
    pub replicas: Option<u32>,
    /// How long a poller's lease lasts unless renewed: the longest a dead poller's targets go
    /// unpolled.
    pub lease: Duration,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileRedis {
    url: Option<SecretSource>,
    password: Option<SecretSource>,
    key_prefix: Option<String>,
    command_timeout: Option<String>,
    replicas: Option<u32>,
    lease: Option<String>,
}

pub(super) fn resolve(
    file: FileRedis,
    env: &impl Env,
    errors: &mut Vec<String>,
    files: &mut Vec<PathBuf>,
) -> Option<RedisConfig> {
    let url = match (env.var(URL_ENV), file.url) {
        (Some(url), _) => Secret::new(url),
        (None, Some(source)) => resolve_secret("redis.url", source, env, errors, files),
        (None, None) => return None,
    };
    let key = if env.var(URL_ENV).is_some() {
        URL_ENV
    } else {
        "redis.url"
    };
    // The URL may carry a password: the message never quotes it.
    match url::Url::parse(url.expose()) {
        Ok(u) if matches!(u.scheme(), "redis" | "rediss" | "redis+unix" | "unix") => {}
        _ => errors.push(format!(
            "{key}: not a redis://, rediss:// or redis+unix:// URL"
        )),
    }
    let password = file
        .password
        .map(|p| resolve_secret("redis.password", p, env, errors, files));
    let command_timeout = duration_or(
        "redis.command_timeout",
        file.command_timeout.as_deref(),
        Duration::from_millis(100),
        errors,
    );
    if command_timeout.is_zero() {
        errors.push("redis.command_timeout: must be greater than 0".into());
    }
    let lease = duration_or(
        "redis.lease",
        file.lease.as_deref(),
        Duration::from_secs(5),
        errors,
    );
    if lease < Duration::from_millis(200) {
        errors.push("redis.lease: must be at least 200ms".into());
    }
    if file.replicas == Some(0) {
        errors.push("redis.replicas: must be at least 1".into());
    }
    Some(RedisConfig {
        url,
        password,
        key_prefix: file.key_prefix.unwrap_or_else(|| "ack-gateway:".into()),
        command_timeout,
        replicas: file.replicas,
        lease,
    })
}
