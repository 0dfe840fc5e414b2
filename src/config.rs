//! Configuration: a TOML file plus the official SDKs' environment variables, parsed once into
//! typed settings. Parsing takes its environment through [`Env`], so it is tested without
//! touching the process environment, and reports every problem (naming the key) before failing.

pub mod access;
mod duration;
pub mod limits;
pub mod redis;
mod summary;
pub mod traffic;
mod watch;

use crate::secret::Secret;
use crate::signer::SignatureVersion;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use duration::parse_duration;
pub use limits::Limits;
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

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum FileProfile {
    AccessKey {
        access_key_id: String,
        access_key_secret: SecretSource,
        region: Option<String>,
        #[serde(default)]
        acs_headers: BTreeMap<String, String>,
        signature: Option<SignatureVersion>,
    },
    Sts {
        access_key_id: String,
        access_key_secret: SecretSource,
        security_token: SecretSource,
        expiration: Option<String>,
        region: Option<String>,
        #[serde(default)]
        acs_headers: BTreeMap<String, String>,
        signature: Option<SignatureVersion>,
    },
    RamRoleArn {
        source_profile: String,
        role_arn: String,
        role_session_name: Option<String>,
        duration_seconds: Option<u64>,
        policy: Option<String>,
        external_id: Option<String>,
        refresh_before: Option<String>,
        region: Option<String>,
        #[serde(default)]
        acs_headers: BTreeMap<String, String>,
        signature: Option<SignatureVersion>,
    },
    OidcRoleArn {
        role_arn: String,
        oidc_provider_arn: String,
        oidc_token_file: PathBuf,
        role_session_name: Option<String>,
        duration_seconds: Option<u64>,
        policy: Option<String>,
        refresh_before: Option<String>,
        region: Option<String>,
        #[serde(default)]
        acs_headers: BTreeMap<String, String>,
        signature: Option<SignatureVersion>,
    },
}

/// A secret given inline, by environment variable, or by file (e.g. a Kubernetes secret mount).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum SecretSource {
    Inline(String),
    Env { env: String },
    File { file: PathBuf },
}

/// Reads a PEM bundle of CA certificates (one or more `CERTIFICATE` blocks; anything else in
/// the file is ignored), checking that each one can serve as a trust anchor.
fn ca_bundle(
    key: &str,
    path: &std::path::Path,
    env: &impl Env,
    errors: &mut Vec<String>,
) -> Option<CaBundle> {
    use tokio_rustls::rustls::pki_types::{pem::PemObject, CertificateDer};
    let shown = path.display();
    let text = match env.read_file(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            errors.push(format!(
                "{key}: {shown} is not PEM text (binary DER? convert it with `openssl x509 -inform der`)"
            ));
            return None;
        }
        Err(e) => {
            errors.push(format!("{key}: cannot read {shown}: {e}"));
            return None;
        }
    };
    let certs = match CertificateDer::pem_slice_iter(text.as_bytes()).collect::<Result<Vec<_>, _>>()
    {
        Ok(certs) => certs,
        Err(e) => {
            errors.push(format!("{key}: {shown} is not a valid PEM file: {e}"));
            return None;
        }
    };
    if certs.is_empty() {
        errors.push(format!(
            "{key}: {shown} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
        ));
        return None;
    }
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    for (i, cert) in certs.iter().enumerate() {
        if let Err(e) = roots.add(cert.clone()) {
            errors.push(format!(
                "{key}: certificate {} of {shown} cannot be used as a CA: {e}",
                i + 1
            ));
            return None;
        }
    }
    Some(CaBundle {
        path: path.to_path_buf(),
        certs: certs.into_iter().map(|c| c.to_vec()).collect(),
    })
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
        let limits = limits::resolve(&file.limits, &mut errors);
        for p in profiles.values() {
            limits::check_acs_headers(
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

/// What is wrong with a CORS origin, if anything: it must be `scheme://host[:port]` exactly as
/// a browser sends it in `Origin` (no path, no trailing slash, no wildcard).
fn origin_problem(origin: &str) -> Option<String> {
    let Ok(url) = url::Url::parse(origin) else {
        return Some(format!(
            "{origin:?} is not an origin (scheme://host[:port])"
        ));
    };
    let serialized = url.origin().ascii_serialization();
    if !matches!(url.scheme(), "http" | "https") || serialized != origin {
        return Some(format!(
            "{origin:?} is not an origin as browsers send it (expected {serialized:?}: scheme://host[:port], no path)"
        ));
    }
    None
}

/// toml's message and where it is, on one line, without quoting the offending line or any
/// value: a secret may be on that line, or be the value a type error names (an
/// `access_key_secret` in the wrong table is "invalid type: string \"…\""), and the error is
/// printed and logged.
fn describe_toml_error(e: &toml::de::Error, text: &str) -> String {
    let message = e
        .message()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let message = without_quoted_values(&message);
    let Some(before) = e.span().and_then(|span| text.get(..span.start)) else {
        return format!("TOML parse error: {message}");
    };
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("TOML parse error at line {line}, column {column}: {message}")
}

/// serde's message with the values it quotes left out: every `"…"` string, and the name after
/// "unknown variant" (keys and the expected names, in backticks, stay).
fn without_quoted_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    loop {
        let quote = rest.find('"');
        let variant = rest
            .find("unknown variant `")
            .map(|i| i + "unknown variant ".len());
        let (start, close) = match (quote, variant) {
            (Some(q), Some(v)) if v < q => (v, '`'),
            (Some(q), _) => (q, '"'),
            (None, Some(v)) => (v, '`'),
            (None, None) => break,
        };
        out.push_str(&rest[..start]);
        out.push(close);
        out.push('…');
        out.push(close);
        // The end of the quoted value: the next unescaped closing mark (or the end).
        let body = &rest[start + 1..];
        let mut end = body.len();
        let mut escaped = false;
        for (i, c) in body.char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                c if c == close && !escaped => {
                    end = i + 1;
                    break;
                }
                _ => escaped = false,
            }
        }
        rest = &body[end.min(body.len())..];
    }
    out.push_str(rest);
    out
}

fn parse_addr(key: &str, value: &str, errors: &mut Vec<String>) -> SocketAddr {
    value.parse().unwrap_or_else(|_| {
        errors.push(format!(
            "{key}: `{value}` is not a socket address (expected e.g. 127.0.0.1:50051)"
        ));
        SocketAddr::from(([127, 0, 0, 1], 0))
    })
}

pub(crate) fn duration_or(
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

pub(crate) fn resolve_secret(
    key: &str,
    source: SecretSource,
    env: &impl Env,
    errors: &mut Vec<String>,
    files: &mut Vec<PathBuf>,
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
        SecretSource::File { file } => {
            match env.read_file(&file).inspect(|_| files.push(file.clone())) {
                Ok(v) => Secret::new(v.trim_end_matches(['\r', '\n'])),
                Err(e) => {
                    errors.push(format!("{key}: cannot read {}: {e}", file.display()));
                    Secret::new("")
                }
            }
        }
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

/// What a profile name that breaks [`is_valid_profile_name`] is told.
pub const PROFILE_NAME_RULE: &str = "not a profile name (1 to 64 letters, digits, `-`, `_` or `.`)";

/// Profile names travel in `x-ack-profile` and appear in audit lines and metrics: 1 to 64
/// ASCII letters, digits, `-`, `_` and `.`.
pub fn is_valid_profile_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
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
    files: &mut Vec<PathBuf>,
) -> Option<ProfileConfig> {
    let key = format!("profiles.{name}");
    let mut secret = |field: &str, source: SecretSource, errors: &mut Vec<String>| {
        resolve_secret(&format!("{key}.{field}"), source, env, errors, files)
    };
    let (credential, region, acs_headers, signature) = match p {
        FileProfile::AccessKey {
            access_key_id,
            access_key_secret,
            region,
            acs_headers,
            signature,
        } => (
            CredentialConfig::AccessKey {
                access_key_id,
                access_key_secret: secret("access_key_secret", access_key_secret, errors),
            },
            region,
            acs_headers,
            signature,
        ),
        FileProfile::Sts {
            access_key_id,
            access_key_secret,
            security_token,
            expiration,
            region,
            acs_headers,
            signature,
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
                    access_key_secret: secret("access_key_secret", access_key_secret, errors),
                    security_token: secret("security_token", security_token, errors),
                    expiration,
                },
                region,
                acs_headers,
                signature,
            )
        }
        FileProfile::RamRoleArn {
            source_profile,
            role_arn,
            role_session_name,
            duration_seconds,
            policy,
            external_id,
            refresh_before,
            region,
            acs_headers,
            signature,
        } => (
            CredentialConfig::RamRoleArn(role_config(
                &key,
                source_profile,
                role_arn,
                role_session_name,
                duration_seconds,
                policy,
                external_id,
                refresh_before,
                errors,
            )),
            region,
            acs_headers,
            signature,
        ),
        FileProfile::OidcRoleArn {
            role_arn,
            oidc_provider_arn,
            oidc_token_file,
            role_session_name,
            duration_seconds,
            policy,
            refresh_before,
            region,
            acs_headers,
            signature,
        } => {
            files.push(oidc_token_file.clone());
            (
                CredentialConfig::OidcRoleArn {
                    role: role_config(
                        &key,
                        String::new(),
                        role_arn,
                        role_session_name,
                        duration_seconds,
                        policy,
                        None,
                        refresh_before,
                        errors,
                    ),
                    oidc_provider_arn,
                    oidc_token_file,
                },
                region,
                acs_headers,
                signature,
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
        signature: signature.unwrap_or_default(),
    })
}

pub const DEFAULT_ROLE_SESSION_NAME: &str = "ack-gateway";
pub const DEFAULT_ROLE_DURATION: Duration = Duration::from_secs(3600);

#[allow(clippy::too_many_arguments)]
fn role_config(
    key: &str,
    source_profile: String,
    role_arn: String,
    role_session_name: Option<String>,
    duration_seconds: Option<u64>,
    policy: Option<String>,
    external_id: Option<String>,
    refresh_before: Option<String>,
    errors: &mut Vec<String>,
) -> RoleConfig {
    let duration = match duration_seconds {
        None => DEFAULT_ROLE_DURATION,
        Some(d) if (900..=43200).contains(&d) => Duration::from_secs(d),
        Some(d) => {
            errors.push(format!(
                "{key}.duration_seconds: {d} is outside 900 to 43200"
            ));
            DEFAULT_ROLE_DURATION
        }
    };
    if !role_arn.starts_with("acs:ram::") {
        errors.push(format!(
            "{key}.role_arn: `{role_arn}` is not a RAM role ARN (acs:ram::<account>:role/<name>)"
        ));
    }
    let session = role_session_name.unwrap_or_else(|| DEFAULT_ROLE_SESSION_NAME.to_string());
    if !(2..=64).contains(&session.len())
        || !session
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b))
    {
        errors.push(format!(
            "{key}.role_session_name: 2 to 64 letters, digits, or . @ - _"
        ));
    }
    RoleConfig {
        source_profile,
        role_arn,
        role_session_name: session,
        duration,
        policy,
        external_id,
        refresh_before: duration_or(
            &format!("{key}.refresh_before"),
            refresh_before.as_deref(),
            Duration::from_secs(15 * 60),
            errors,
        ),
    }
}

/// The first profile on a cycle of `source_profile` references, if any.
fn source_cycle(profiles: &BTreeMap<String, ProfileConfig>) -> Option<String> {
    for start in profiles.keys() {
        let mut seen = std::collections::BTreeSet::new();
        let mut cur = start.clone();
        while let Some(CredentialConfig::RamRoleArn(role)) =
            profiles.get(&cur).map(|p| &p.credential)
        {
            if !seen.insert(cur.clone()) {
                return Some(start.clone());
            }
            cur = role.source_profile.clone();
        }
    }
    None
}

/// The `default` profile from the official SDKs' environment variables.
fn env_profile(env: &impl Env, errors: &mut Vec<String>) -> Option<ProfileConfig> {
    let Some(id) = env.var(env::ACCESS_KEY_ID) else {
        return env_oidc_profile(env, errors);
    };
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
        signature: env_signature(env, errors),
    })
}

/// `ACK_GATEWAY_SIGNATURE`: the signature version of the profile the environment defines (and
/// of the embedded simulator's).
pub fn env_signature(env: &impl Env, errors: &mut Vec<String>) -> SignatureVersion {
    match env.var(env::SIGNATURE) {
        None => SignatureVersion::default(),
        Some(v) => SignatureVersion::parse(&v).unwrap_or_else(|| {
            errors.push(format!("{}: `{v}` is not v1 or v3", env::SIGNATURE));
            SignatureVersion::default()
        }),
    }
}

/// The `default` profile from ACK RRSA's environment variables, when no AccessKey is set.
fn env_oidc_profile(env: &impl Env, errors: &mut Vec<String>) -> Option<ProfileConfig> {
    let role_arn = env.var(env::ROLE_ARN)?;
    let (Some(provider), Some(token_file)) = (
        env.var(env::OIDC_PROVIDER_ARN),
        env.var(env::OIDC_TOKEN_FILE),
    ) else {
        errors.push(format!(
            "{}: set, but {} and {} are not both set",
            env::ROLE_ARN,
            env::OIDC_PROVIDER_ARN,
            env::OIDC_TOKEN_FILE
        ));
        return None;
    };
    let region = env.var(env::REGION_ID);
    check_region(env::REGION_ID, &region, errors);
    let role = role_config(
        env::ROLE_ARN,
        String::new(),
        role_arn,
        env.var(env::ROLE_SESSION_NAME),
        None,
        None,
        None,
        None,
        errors,
    );
    Some(ProfileConfig {
        name: DEFAULT_PROFILE.to_string(),
        credential: CredentialConfig::OidcRoleArn {
            role,
            oidc_provider_arn: provider,
            oidc_token_file: PathBuf::from(token_file),
        },
        region,
        acs_headers: BTreeMap::new(),
        signature: env_signature(env, errors),
    })
}

#[cfg(test)]
mod tests;
