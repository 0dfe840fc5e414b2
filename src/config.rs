//! Configuration: a TOML file plus the official SDKs' environment variables, parsed once into
//! typed settings. Parsing takes its environment through [`Env`], so it is tested without
//! touching the process environment, and reports every problem (naming the key) before failing.

pub mod access;
mod duration;
pub mod limits;
mod parse;
mod profiles;
pub mod redis;
mod summary;
pub mod traffic;
mod watch;
pub mod writes;

use crate::secret::Secret;
use crate::signer::SignatureVersion;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use duration::parse_duration;
pub use parse::{is_valid_profile_name, is_valid_region, PROFILE_NAME_RULE};
pub use profiles::env_signature;

pub use limits::Limits;
use parse::{
    ca_bundle, describe_toml_error, duration_or, origin_problem, parse_addr, parse_endpoint,
};
use profiles::{env_profile, resolve_profile, source_cycle, FileProfile};
pub use watch::WatchConfig;

/// The environment variables the gateway reads.
pub mod env {
    pub const ACCESS_KEY_ID: &str = "ALIBABA_CLOUD_ACCESS_KEY_ID";
    pub const ACCESS_KEY_SECRET: &str = "ALIBABA_CLOUD_ACCESS_KEY_SECRET";
    pub const SECURITY_TOKEN: &str = "ALIBABA_CLOUD_SECURITY_TOKEN";
    pub const REGION_ID: &str = "ALIBABA_CLOUD_REGION_ID";
    pub const LISTEN: &str = "ACK_GATEWAY_LISTEN";
    /// The admin HTTP listener (metrics and health).
    pub const ADMIN_LISTEN: &str = "ACK_GATEWAY_ADMIN_LISTEN";
    pub const CS_ENDPOINT: &str = "ACK_GATEWAY_CS_ENDPOINT";
    pub const STS_ENDPOINT: &str = "ACK_GATEWAY_STS_ENDPOINT";
    pub const EHPC_ENDPOINT: &str = "ACK_GATEWAY_EHPC_ENDPOINT";
    /// ACK RRSA: a gateway running inside ACK gets its own credentials from these.
    pub const ROLE_ARN: &str = "ALIBABA_CLOUD_ROLE_ARN";
    pub const OIDC_PROVIDER_ARN: &str = "ALIBABA_CLOUD_OIDC_PROVIDER_ARN";
    pub const OIDC_TOKEN_FILE: &str = "ALIBABA_CLOUD_OIDC_TOKEN_FILE";
    pub const ROLE_SESSION_NAME: &str = "ALIBABA_CLOUD_ROLE_SESSION_NAME";
    /// `v1` or `v3`: the signature of the profile the environment defines.
    pub const SIGNATURE: &str = "ACK_GATEWAY_SIGNATURE";
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9464";
pub const DEFAULT_PROFILE: &str = "default";
/// How often the configuration file (and the files it names) is checked for changes.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(2);
/// `[upstream] max_response_bytes`: 16 MiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

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
    /// The admin HTTP listener: `/metrics`, `/healthz`, `/readyz`.
    pub admin_listen: SocketAddr,
    pub upstream: UpstreamConfig,
    /// Endpoint overrides by service key (`cs`, `sts`, `ehpc`).
    pub endpoints: BTreeMap<String, url::Url>,
    pub profiles: BTreeMap<String, ProfileConfig>,
    pub simulator: SimulatorConfig,
    pub limits: Limits,
    pub watch: WatchConfig,
    pub traffic: traffic::TrafficConfig,
    /// Idempotency records and the operations journal.
    pub writes: writes::WritesConfig,
    pub auth: access::AuthConfig,
    pub callers: BTreeMap<String, access::CallerConfig>,
    pub broker: access::BrokerConfig,
    /// The HTTP side of the gRPC port (gRPC-Web, Connect, the progress page).
    pub http: HttpConfig,
    /// Where replicas share budgets, cache invalidations and pollers; `None`: state is local.
    pub redis: Option<redis::RedisConfig>,
    /// The secret and token files the configuration read, watched for hot reload.
    pub watched_files: Vec<PathBuf>,
    /// The file the configuration came from (set by the caller of `load`); enables hot reload.
    pub source_file: Option<PathBuf>,
    /// How often the files are checked for changes.
    pub reload_interval: Duration,
}

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// The largest answer body read; a larger one fails the call (INTERNAL).
    pub max_response_bytes: usize,
    /// Certificate authorities trusted for the upstream's certificates besides the built-in
    /// roots (`ca_file`: Apsara Stack and other private clouds use private CAs).
    pub ca: Option<CaBundle>,
}

/// The certificates of a CA bundle file, DER-encoded, each already accepted as a trust anchor.
#[derive(Clone)]
pub struct CaBundle {
    pub path: PathBuf,
    pub certs: Vec<Vec<u8>>,
}

impl std::fmt::Debug for CaBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CaBundle({}, {} certificates)",
            self.path.display(),
            self.certs.len()
        )
    }
}

#[derive(Debug, Clone, Default)]
pub struct HttpConfig {
    /// Origins (`scheme://host[:port]`) whose pages may call the gateway cross-origin.
    pub cors_origins: Vec<String>,
    /// Answers to clients that accept gzip are compressed from this many bytes of one message
    /// on (`compress_min_bytes`, default 1024); `None`: never (`compression = "off"`).
    pub compress_min_bytes: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct SimulatorConfig {
    pub mode: SimulatorMode,
    pub listen: SocketAddr,
    /// How long a simulated task runs before it succeeds.
    pub task_duration: Duration,
    /// How the embedded simulator's `default` profile signs (`ACK_GATEWAY_SIGNATURE`).
    pub signature: SignatureVersion,
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
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileConfig {
    pub name: String,
    pub credential: CredentialConfig,
    /// Default region for calls that name none.
    pub region: Option<String>,
    /// Extra `x-acs-*` headers sent and signed on every ROA call (Apsara Stack).
    pub acs_headers: BTreeMap<String, String>,
    /// How ROA calls are signed.
    pub signature: SignatureVersion,
    /// What a write refused because its cluster is busy does with this profile, unless the
    /// call says (`x-ack-when-busy`); `None`: `[idempotency] when_busy`.
    pub when_busy: Option<writes::WhenBusy>,
}

#[derive(Debug, Clone, PartialEq)]
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
    /// STS AssumeRole with a source profile's credential.
    RamRoleArn(RoleConfig),
    /// STS AssumeRoleWithOIDC with a token file (ACK RRSA).
    OidcRoleArn {
        role: RoleConfig,
        oidc_provider_arn: String,
        oidc_token_file: PathBuf,
    },
}

/// What an STS role assumption asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleConfig {
    /// The profile whose credential signs AssumeRole (empty for OIDC).
    pub source_profile: String,
    pub role_arn: String,
    pub role_session_name: String,
    pub duration: Duration,
    pub policy: Option<String>,
    pub external_id: Option<String>,
    /// Refresh once this much lifetime remains (or at 80 % of short lifetimes).
    pub refresh_before: Duration,
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
    admin: FileAdmin,
    #[serde(default)]
    upstream: FileUpstream,
    #[serde(default)]
    endpoints: BTreeMap<String, String>,
    #[serde(default)]
    profiles: BTreeMap<String, FileProfile>,
    #[serde(default)]
    simulator: FileSimulator,
    #[serde(default)]
    limits: limits::FileLimits,
    #[serde(default)]
    watch: watch::FileWatch,
    #[serde(default)]
    cache: traffic::FileCache,
    #[serde(default)]
    rate_limit: traffic::FileRateLimit,
    #[serde(default)]
    retry: traffic::FileRetry,
    #[serde(default)]
    idempotency: writes::FileIdempotency,
    #[serde(default)]
    journal: writes::FileJournal,
    #[serde(default)]
    auth: access::FileAuth,
    #[serde(default)]
    callers: BTreeMap<String, access::FileCaller>,
    #[serde(default)]
    broker: access::FileBroker,
    #[serde(default)]
    http: FileHttp,
    #[serde(default)]
    redis: redis::FileRedis,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileHttp {
    #[serde(default)]
    cors_origins: Vec<String>,
    compression: Option<String>,
    compress_min_bytes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAdmin {
    listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileUpstream {
    connect_timeout: Option<String>,
    request_timeout: Option<String>,
    max_response_bytes: Option<usize>,
    ca_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSimulator {
    mode: Option<SimulatorMode>,
    listen: Option<String>,
    task_duration: Option<String>,
}

// === impl Config ===

impl Config {
    /// Parses the file (if any) and the environment; environment variables win.
    pub fn load(file_text: Option<&str>, env: &impl Env) -> Result<Config, ConfigError> {
        let mut errors = Vec::new();
        let file: FileConfig = match file_text {
            Some(text) => match toml::from_str(text) {
                Ok(f) => f,
                Err(e) => return Err(ConfigError(vec![describe_toml_error(&e, text)])),
            },
            None => FileConfig::default(),
        };

        let listen_text = env
            .var(env::LISTEN)
            .map(|v| (env::LISTEN, v))
            .or(file.listen.map(|v| ("listen", v)))
            .unwrap_or(("listen", DEFAULT_LISTEN.to_string()));
        let listen = parse_addr(listen_text.0, &listen_text.1, &mut errors);
        let admin_text = env
            .var(env::ADMIN_LISTEN)
            .map(|v| (env::ADMIN_LISTEN, v))
            .or(file.admin.listen.map(|v| ("admin.listen", v)))
            .unwrap_or(("admin.listen", DEFAULT_ADMIN_LISTEN.to_string()));
        let admin_listen = parse_addr(admin_text.0, &admin_text.1, &mut errors);

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
            max_response_bytes: match file.upstream.max_response_bytes {
                Some(0) => {
                    errors.push("upstream.max_response_bytes: must be greater than 0".into());
                    DEFAULT_MAX_RESPONSE_BYTES
                }
                Some(n) => n,
                None => DEFAULT_MAX_RESPONSE_BYTES,
            },
            ca: file
                .upstream
                .ca_file
                .as_ref()
                .and_then(|path| ca_bundle("upstream.ca_file", path, env, &mut errors)),
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
        let mut watched_files = Vec::new();
        for (name, p) in file.profiles {
            if !is_valid_profile_name(&name) {
                errors.push(format!(
                    "profiles.{}: a profile name is 1 to 64 letters, digits, `-`, `_` or `.`",
                    name.escape_debug()
                ));
            }
            if let Some(profile) = resolve_profile(&name, p, env, &mut errors, &mut watched_files) {
                profiles.insert(name, profile);
            }
        }
        if let Some(profile) = env_profile(env, &mut errors) {
            profiles.insert(DEFAULT_PROFILE.to_string(), profile);
        }
        for p in profiles.values() {
            if let CredentialConfig::RamRoleArn(role) = &p.credential {
                if !profiles.contains_key(&role.source_profile) {
                    errors.push(format!(
                        "profiles.{}.source_profile: no profile named `{}`",
                        p.name, role.source_profile
                    ));
                }
            }
        }
        if let Some(cycle) = source_cycle(&profiles) {
            errors.push(format!(
                "profiles.{cycle}.source_profile: the source profiles form a cycle"
            ));
        }
        let auth = access::resolve_auth(file.auth, &mut errors);
        let callers = access::resolve_callers(file.callers, &profiles, &mut errors);
        let broker = access::resolve_broker(file.broker, &mut errors);

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
            signature: env_signature(env, &mut errors),
        };
        let watch = watch::resolve(&file.watch, &mut errors);
        let traffic = traffic::resolve(
            &file.cache,
            &file.rate_limit,
            &file.retry,
            file.limits.max_concurrent_calls,
            file.limits.max_inflight_per_host,
            &mut errors,
        );
        let writes = writes::resolve(&file.idempotency, &file.journal, &mut errors);
        let limits = limits::resolve(&file.limits, &mut errors);
        for p in profiles.values() {
            limits::check_acs_headers_fit(
                &format!("profiles.{}", p.name),
                &p.acs_headers,
                &limits,
                &mut errors,
            );
        }

        let compress_min_bytes = match file.http.compression.as_deref() {
            None | Some("gzip") => Some(file.http.compress_min_bytes.unwrap_or(1024)),
            Some("off") => None,
            Some(other) => {
                errors.push(format!(
                    "http.compression: `{}` is not offered (gzip or off)",
                    other.escape_debug()
                ));
                None
            }
        };
        let http = HttpConfig {
            cors_origins: file.http.cors_origins,
            compress_min_bytes,
        };
        let redis = redis::resolve(file.redis, env, &mut errors, &mut watched_files);
        for (i, origin) in http.cors_origins.iter().enumerate() {
            if let Some(problem) = origin_problem(origin) {
                errors.push(format!("http.cors_origins[{i}]: {problem}"));
            }
        }

        if !errors.is_empty() {
            return Err(ConfigError(errors));
        }
        let config = Config {
            listen,
            admin_listen,
            upstream,
            endpoints,
            profiles,
            simulator,
            limits,
            watch,
            traffic,
            writes,
            auth,
            callers,
            broker,
            http,
            redis,
            watched_files,
            source_file: None,
            reload_interval: DEFAULT_RELOAD_INTERVAL,
        };
        let problems = config.auth_problems();
        if !problems.is_empty() {
            return Err(ConfigError(problems));
        }
        Ok(config)
    }

    /// Whether calls are served without caller authentication: only when asked for
    /// (`insecure_local`, which `check-config` refuses with callers or off loopback), or by
    /// default (`auto`) when nothing in the configuration asks for protection (see
    /// [`Config::unprotected`]).
    pub fn insecure_local(&self) -> bool {
        match self.auth.mode {
            access::AuthMode::InsecureLocal => true,
            access::AuthMode::Enforce => false,
            access::AuthMode::Auto => self.unprotected(),
        }
    }

    /// Whether nothing in the configuration asks for protection: the embedded simulator serves
    /// the only profile (no profile configured), no caller is configured, no broker listens,
    /// and the gRPC port is on a loopback address.
    pub fn unprotected(&self) -> bool {
        self.wants_simulator()
            && self.profiles.is_empty()
            && self.callers.is_empty()
            && self.broker.listen.is_none()
            && self.listen.ip().is_loopback()
    }

    /// What makes an explicit `insecure_local` unsafe, as `check-config` errors: configured
    /// callers (they always mean enforcement) and listeners outside loopback. Checked by `load`
    /// and again once the command line has overridden the listener.
    pub fn auth_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.auth.mode != access::AuthMode::InsecureLocal {
            return problems;
        }
        if !self.callers.is_empty() {
            problems.push(
                "auth.mode: `insecure_local` turns authentication off, but [callers] are configured; \
                 configured callers are always enforced: use mode = \"enforce\" (or \"auto\")"
                    .to_string(),
            );
        }
        for (key, addr) in [
            ("listen", Some(self.listen)),
            ("broker.listen", self.broker.listen),
        ] {
            if let Some(addr) = addr.filter(|a| !a.ip().is_loopback()) {
                problems.push(format!(
                    "auth.mode: `insecure_local` serves without authentication, so {key} must be a \
                     loopback address, not {addr}"
                ));
            }
        }
        problems
    }

    /// How callers are authenticated when no rule says otherwise (see `access::LocalMode`):
    /// `auto` is insecure local mode when serving the embedded simulator on a loopback address,
    /// and a generated local token when serving real credentials on a loopback address with no
    /// callers configured; otherwise callers are enforced.
    pub fn local_mode(&self) -> access::LocalMode {
        use access::LocalMode;
        if self.insecure_local() {
            return LocalMode::Insecure;
        }
        let loopback = self.listen.ip().is_loopback();
        if self.auth.mode == access::AuthMode::Auto && loopback && self.callers.is_empty() {
            LocalMode::Token
        } else {
            LocalMode::Off
        }
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

#[cfg(test)]
mod tests;
