//! Configuration: a TOML file plus the official SDKs' environment variables, parsed once into
//! typed settings. Parsing takes its environment through [`Env`], so it is tested without
//! touching the process environment, and reports every problem (naming the key) before failing.

mod duration;

use crate::secret::Secret;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use duration::parse_duration;

/// The environment variables the gateway reads.
pub mod env {
    pub const ACCESS_KEY_ID: &str = "ALIBABA_CLOUD_ACCESS_KEY_ID";
    pub const ACCESS_KEY_SECRET: &str = "ALIBABA_CLOUD_ACCESS_KEY_SECRET";
    pub const SECURITY_TOKEN: &str = "ALIBABA_CLOUD_SECURITY_TOKEN";
    pub const REGION_ID: &str = "ALIBABA_CLOUD_REGION_ID";
    pub const LISTEN: &str = "ACK_GATEWAY_LISTEN";
    pub const CS_ENDPOINT: &str = "ACK_GATEWAY_CS_ENDPOINT";
    pub const STS_ENDPOINT: &str = "ACK_GATEWAY_STS_ENDPOINT";
    pub const EHPC_ENDPOINT: &str = "ACK_GATEWAY_EHPC_ENDPOINT";
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";
pub const DEFAULT_PROFILE: &str = "default";

/// Where configuration values come from besides the file.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
    fn read_file(&self, path: &std::path::Path) -> std::io::Result<String> {
        std::fs::read_to_string(path)
    }
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

impl Env for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub upstream: UpstreamConfig,
    /// Endpoint overrides by service key (`cs`, `sts`, `ehpc`).
    pub endpoints: BTreeMap<String, url::Url>,
    pub profiles: BTreeMap<String, ProfileConfig>,
    pub simulator: SimulatorConfig,
    pub limits: Limits,
}

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest gRPC request message accepted.
    pub max_request_bytes: usize,
}

#[derive(Debug, Clone)]
pub struct SimulatorConfig {
    pub mode: SimulatorMode,
    pub listen: SocketAddr,
    /// How long a simulated task runs before it succeeds.
    pub task_duration: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SimulatorMode {
    /// Start the embedded simulator when no credentials are configured.
    Auto,
    Always,
    Never,
}

/// A credential profile.
#[derive(Debug, Clone)]
pub struct ProfileConfig {
    pub name: String,
    pub credential: CredentialConfig,
    /// Default region for calls that name none.
    pub region: Option<String>,
    /// Extra `x-acs-*` headers sent and signed on every ROA call (Apsara Stack).
    pub acs_headers: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub enum CredentialConfig {
    AccessKey {
        access_key_id: String,
        access_key_secret: Secret,
    },
    Sts {
        access_key_id: String,
        access_key_secret: Secret,
        security_token: Secret,
        expiration: Option<time::OffsetDateTime>,
    },
}

/// Every problem found, each naming its key.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid configuration:\n  {}", .0.join("\n  "))]
pub struct ConfigError(pub Vec<String>);

// --- The file format ---

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    #[serde(default)]
    upstream: FileUpstream,
    #[serde(default)]
    endpoints: BTreeMap<String, String>,
    #[serde(default)]
    profiles: BTreeMap<String, FileProfile>,
    #[serde(default)]
    simulator: FileSimulator,
    #[serde(default)]
    limits: FileLimits,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileUpstream {
    connect_timeout: Option<String>,
    request_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLimits {
    max_request_bytes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSimulator {
    mode: Option<SimulatorMode>,
    listen: Option<String>,
    task_duration: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum FileProfile {
    AccessKey {
        access_key_id: String,
        access_key_secret: SecretSource,
        region: Option<String>,
        #[serde(default)]
        acs_headers: BTreeMap<String, String>,
    },
    Sts {
        access_key_id: String,
        access_key_secret: SecretSource,
        security_token: SecretSource,
        expiration: Option<String>,
        region: Option<String>,
        #[serde(default)]
        acs_headers: BTreeMap<String, String>,
    },
}

/// A secret given inline, by environment variable, or by file (e.g. a Kubernetes secret mount).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum SecretSource {
    Inline(String),
    Env { env: String },
    File { file: PathBuf },
}

// === impl Config ===

impl Config {
    /// Parses the file (if any) and the environment; environment variables win.
    pub fn load(file_text: Option<&str>, env: &impl Env) -> Result<Config, ConfigError> {
        let mut errors = Vec::new();
        let file: FileConfig = match file_text {
            Some(text) => match toml::from_str(text) {
                Ok(f) => f,
                Err(e) => return Err(ConfigError(vec![describe_toml_error(&e)])),
            },
            None => FileConfig::default(),
        };

        let listen_text = env
            .var(env::LISTEN)
            .map(|v| (env::LISTEN, v))
            .or(file.listen.map(|v| ("listen", v)))
            .unwrap_or(("listen", DEFAULT_LISTEN.to_string()));
        let listen = parse_addr(listen_text.0, &listen_text.1, &mut errors);

        let upstream = UpstreamConfig {
            connect_timeout: duration_or(
                "upstream.connect_timeout",
                file.upstream.connect_timeout.as_deref(),
                Duration::from_secs(5),
                &mut errors,
            ),
            request_timeout: duration_or(
                "upstream.request_timeout",
                file.upstream.request_timeout.as_deref(),
                Duration::from_secs(30),
                &mut errors,
            ),
        };

        let mut endpoints = BTreeMap::new();
        for (key, value) in &file.endpoints {
            if !["cs", "sts", "ehpc"].contains(&key.as_str()) {
                errors.push(format!(
                    "endpoints.{key}: unknown service (expected cs, sts or ehpc)"
                ));
                continue;
            }
            if let Some(url) = parse_endpoint(&format!("endpoints.{key}"), value, &mut errors) {
                endpoints.insert(key.clone(), url);
            }
        }
        for (key, var) in [
            ("cs", env::CS_ENDPOINT),
            ("sts", env::STS_ENDPOINT),
            ("ehpc", env::EHPC_ENDPOINT),
        ] {
            if let Some(value) = env.var(var) {
                if let Some(url) = parse_endpoint(var, &value, &mut errors) {
                    endpoints.insert(key.to_string(), url);
                }
            }
        }

        let mut profiles = BTreeMap::new();
        for (name, p) in file.profiles {
            if let Some(profile) = resolve_profile(&name, p, env, &mut errors) {
                profiles.insert(name, profile);
            }
        }
        if let Some(profile) = env_profile(env, &mut errors) {
            profiles.insert(DEFAULT_PROFILE.to_string(), profile);
        }

        let simulator = SimulatorConfig {
            mode: file.simulator.mode.unwrap_or(SimulatorMode::Auto),
            listen: parse_addr(
                "simulator.listen",
                file.simulator.listen.as_deref().unwrap_or("127.0.0.1:0"),
                &mut errors,
            ),
            task_duration: duration_or(
                "simulator.task_duration",
                file.simulator.task_duration.as_deref(),
                Duration::from_secs(3),
                &mut errors,
            ),
        };
        let limits = Limits {
            max_request_bytes: file.limits.max_request_bytes.unwrap_or(4 * 1024 * 1024),
        };
        if limits.max_request_bytes == 0 {
            errors.push("limits.max_request_bytes: must be greater than 0".into());
        }

        if !errors.is_empty() {
            return Err(ConfigError(errors));
        }
        Ok(Config {
            listen,
            upstream,
            endpoints,
            profiles,
            simulator,
            limits,
        })
    }

    /// Whether `serve` starts the embedded simulator and points the `default` profile at it.
    pub fn wants_simulator(&self) -> bool {
        match self.simulator.mode {
            SimulatorMode::Always => true,
            SimulatorMode::Never => false,
            SimulatorMode::Auto => self.profiles.is_empty(),
        }
    }
}

fn describe_toml_error(e: &toml::de::Error) -> String {
    // toml's message already names the key and the line; keep it on one line.
    e.to_string()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn parse_addr(key: &str, value: &str, errors: &mut Vec<String>) -> SocketAddr {
    value.parse().unwrap_or_else(|_| {
        errors.push(format!(
            "{key}: `{value}` is not a socket address (expected e.g. 127.0.0.1:50051)"
        ));
        SocketAddr::from(([127, 0, 0, 1], 0))
    })
}

fn duration_or(
    key: &str,
    value: Option<&str>,
    default: Duration,
    errors: &mut Vec<String>,
) -> Duration {
    match value {
        None => default,
        Some(v) => parse_duration(v).unwrap_or_else(|e| {
            errors.push(format!("{key}: {e}"));
            default
        }),
    }
}

fn parse_endpoint(key: &str, value: &str, errors: &mut Vec<String>) -> Option<url::Url> {
    match url::Url::parse(value) {
        Ok(u) if (u.scheme() == "http" || u.scheme() == "https") && u.host().is_some() => {
            if u.query().is_some() || u.fragment().is_some() {
                errors.push(format!(
                    "{key}: `{value}` must not have a query or fragment"
                ));
                return None;
            }
            Some(u)
        }
        _ => {
            errors.push(format!(
                "{key}: `{value}` is not a base URL (expected scheme://host[:port][/prefix])"
            ));
            None
        }
    }
}

fn resolve_secret(
    key: &str,
    source: SecretSource,
    env: &impl Env,
    errors: &mut Vec<String>,
) -> Secret {
    match source {
        SecretSource::Inline(v) => Secret::new(v),
        SecretSource::Env { env: var } => match env.var(&var) {
            Some(v) => Secret::new(v),
            None => {
                errors.push(format!("{key}: environment variable {var} is not set"));
                Secret::new("")
            }
        },
        SecretSource::File { file } => match env.read_file(&file) {
            Ok(v) => Secret::new(v.trim_end_matches(['\r', '\n'])),
            Err(e) => {
                errors.push(format!("{key}: cannot read {}: {e}", file.display()));
                Secret::new("")
            }
        },
    }
}

fn check_region(key: &str, region: &Option<String>, errors: &mut Vec<String>) {
    if let Some(r) = region {
        if !is_valid_region(r) {
            errors.push(format!(
                "{key}: `{r}` is not a region id (e.g. cn-hangzhou)"
            ));
        }
    }
}

/// Region ids go into host names: lower-case letters, digits and dashes only.
pub fn is_valid_region(r: &str) -> bool {
    !r.is_empty()
        && r.len() <= 64
        && r.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn check_acs_headers(key: &str, headers: &BTreeMap<String, String>, errors: &mut Vec<String>) {
    for (name, value) in headers {
        let lower = name.to_ascii_lowercase();
        if !lower.starts_with("x-acs-") {
            errors.push(format!(
                "{key}.acs_headers.{name}: only x-acs-* headers can be set"
            ));
        }
        if lower.starts_with("x-acs-signature")
            || lower == "x-acs-security-token"
            || lower == "x-acs-accesskey-id"
            || lower == "x-acs-version"
            || lower == "x-acs-region-id"
        {
            errors.push(format!(
                "{key}.acs_headers.{name}: set by the gateway, not configurable"
            ));
        }
        if http::HeaderValue::from_str(value).is_err() {
            errors.push(format!(
                "{key}.acs_headers.{name}: not a valid header value"
            ));
        }
    }
}

fn resolve_profile(
    name: &str,
    p: FileProfile,
    env: &impl Env,
    errors: &mut Vec<String>,
) -> Option<ProfileConfig> {
    let key = format!("profiles.{name}");
    let (credential, region, acs_headers) = match p {
        FileProfile::AccessKey {
            access_key_id,
            access_key_secret,
            region,
            acs_headers,
        } => (
            CredentialConfig::AccessKey {
                access_key_id,
                access_key_secret: resolve_secret(
                    &format!("{key}.access_key_secret"),
                    access_key_secret,
                    env,
                    errors,
                ),
            },
            region,
            acs_headers,
        ),
        FileProfile::Sts {
            access_key_id,
            access_key_secret,
            security_token,
            expiration,
            region,
            acs_headers,
        } => {
            let expiration = expiration.and_then(|e| {
                time::OffsetDateTime::parse(&e, &time::format_description::well_known::Rfc3339)
                    .map_err(|_| {
                        errors.push(format!("{key}.expiration: `{e}` is not an RFC 3339 time"))
                    })
                    .ok()
            });
            (
                CredentialConfig::Sts {
                    access_key_id,
                    access_key_secret: resolve_secret(
                        &format!("{key}.access_key_secret"),
                        access_key_secret,
                        env,
                        errors,
                    ),
                    security_token: resolve_secret(
                        &format!("{key}.security_token"),
                        security_token,
                        env,
                        errors,
                    ),
                    expiration,
                },
                region,
                acs_headers,
            )
        }
    };
    check_region(&format!("{key}.region"), &region, errors);
    check_acs_headers(&key, &acs_headers, errors);
    Some(ProfileConfig {
        name: name.to_string(),
        credential,
        region,
        acs_headers,
    })
}

/// The `default` profile from the official SDKs' environment variables.
fn env_profile(env: &impl Env, errors: &mut Vec<String>) -> Option<ProfileConfig> {
    let id = env.var(env::ACCESS_KEY_ID)?;
    let Some(secret) = env.var(env::ACCESS_KEY_SECRET) else {
        errors.push(format!(
            "{}: set, but {} is not",
            env::ACCESS_KEY_ID,
            env::ACCESS_KEY_SECRET
        ));
        return None;
    };
    let region = env.var(env::REGION_ID);
    check_region(env::REGION_ID, &region, errors);
    let credential = match env.var(env::SECURITY_TOKEN) {
        Some(token) => CredentialConfig::Sts {
            access_key_id: id,
            access_key_secret: Secret::new(secret),
            security_token: Secret::new(token),
            expiration: None,
        },
        None => CredentialConfig::AccessKey {
            access_key_id: id,
            access_key_secret: Secret::new(secret),
        },
    };
    Some(ProfileConfig {
        name: DEFAULT_PROFILE.to_string(),
        credential,
        region,
        acs_headers: BTreeMap::new(),
    })
}

#[cfg(test)]
mod tests;
