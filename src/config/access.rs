//! Configuration of caller authentication, authorization and the credential broker.

use super::ProfileConfig;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// Insecure local mode only when nothing asks for protection (the embedded simulator's
    /// profile alone, no callers, no broker, loopback: `Config::unprotected`); a generated
    /// local token with real profiles on loopback and no callers; otherwise enforced.
    Auto,
    /// Every call must authenticate (mutual TLS or a bearer token).
    Enforce,
    /// No authentication, everything allowed: for local development only.
    InsecureLocal,
}

#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub mode: AuthMode,
    pub tls: Option<TlsConfig>,
}

/// TLS on the gRPC listener; with `client_ca_file`, clients must present a certificate (mTLS).
#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_ca_file: Option<PathBuf>,
}

/// A caller: how it proves who it is, and what it may do.
#[derive(Debug, Clone)]
pub struct CallerConfig {
    pub name: String,
    /// SHA-256 (hex) of the bearer tokens it may present.
    pub token_sha256: Vec<String>,
    /// Client-certificate subject common names or SANs that identify it.
    pub tls_names: Vec<String>,
    /// Profiles it may use (`*` for all).
    pub profiles: Vec<String>,
    /// Operations it may call: exact names or patterns with `*` (e.g. `Describe*`). A pattern
    /// never matches an operation whose answer carries secrets (see `secret_operations`).
    pub operations: Vec<String>,
    /// Operations whose answers carry secrets (kubeconfigs, attach scripts, STS credentials)
    /// that it may call: exact names or patterns. An exact name in `operations` grants one too.
    pub secret_operations: Vec<String>,
    /// Profiles it may broker temporary credentials for.
    pub broker: Vec<String>,
    /// `journal = "all"`: it sees every caller's entries of the operations journal (by
    /// default, `"own"`: only its own).
    pub journal_all: bool,
}

#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// HTTP listener of the credentials-URI endpoint (`GET /v1/credentials/{profile}`).
    pub listen: Option<SocketAddr>,
    /// Longest lifetime a brokered credential may have.
    pub max_duration: Duration,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileAuth {
    mode: Option<AuthMode>,
    tls: Option<FileTls>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTls {
    cert_file: PathBuf,
    key_file: PathBuf,
    client_ca_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileCaller {
    #[serde(default)]
    token_sha256: Vec<String>,
    #[serde(default)]
    tls_names: Vec<String>,
    #[serde(default)]
    profiles: Vec<String>,
    #[serde(default)]
    operations: Vec<String>,
    #[serde(default)]
    secret_operations: Vec<String>,
    #[serde(default)]
    broker: Vec<String>,
    journal: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileBroker {
    listen: Option<String>,
    max_duration: Option<String>,
}

pub(super) fn resolve_auth(file: FileAuth, errors: &mut Vec<String>) -> AuthConfig {
    let tls = file.tls.map(|t| {
        for (k, path) in [
            ("cert_file", Some(&t.cert_file)),
            ("key_file", Some(&t.key_file)),
            ("client_ca_file", t.client_ca_file.as_ref()),
        ] {
            if let Some(path) = path {
                if !path.exists() {
                    errors.push(format!("auth.tls.{k}: {} does not exist", path.display()));
                }
            }
        }
        TlsConfig {
            cert_file: t.cert_file,
            key_file: t.key_file,
            client_ca_file: t.client_ca_file,
        }
    });
    AuthConfig {
        mode: file.mode.unwrap_or(AuthMode::Auto),
        tls,
    }
}

pub(super) fn resolve_callers(
    file: BTreeMap<String, FileCaller>,
    profiles: &BTreeMap<String, ProfileConfig>,
    errors: &mut Vec<String>,
) -> BTreeMap<String, CallerConfig> {
    let mut out = BTreeMap::new();
    for (name, c) in file {
        let key = format!("callers.{name}");
        if c.token_sha256.is_empty() && c.tls_names.is_empty() {
            errors.push(format!(
                "{key}: needs token_sha256 or tls_names to authenticate"
            ));
        }
        for h in &c.token_sha256 {
            if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                errors.push(format!(
                    "{key}.token_sha256: `{}…` is not a hex SHA-256",
                    &h.chars().take(8).collect::<String>()
                ));
            }
        }
        if let Some(j) = c
            .journal
            .as_deref()
            .filter(|j| !matches!(*j, "own" | "all"))
        {
            errors.push(format!(
                "{key}.journal: `{}` is neither `own` nor `all`",
                j.escape_debug()
            ));
        }
        for (field, list) in [("profiles", &c.profiles), ("broker", &c.broker)] {
            for p in list {
                if p != "*" && !profiles.contains_key(p) {
                    errors.push(format!("{key}.{field}: no profile named `{p}`"));
                }
            }
        }
        out.insert(
            name.clone(),
            CallerConfig {
                name,
                token_sha256: c
                    .token_sha256
                    .into_iter()
                    .map(|h| h.to_ascii_lowercase())
                    .collect(),
                tls_names: c.tls_names,
                profiles: c.profiles,
                operations: c.operations,
                secret_operations: c.secret_operations,
                broker: c.broker,
                journal_all: c.journal.as_deref() == Some("all"),
            },
        );
    }
    out
}

// === impl CallerConfig ===

impl CallerConfig {
    /// Whether the caller's grants reach `operation`: any pattern of `operations` for an
    /// ordinary one; for one whose answer carries secrets (`secrets`), only its exact name in
    /// `operations` or a pattern of `secret_operations`, so that `Describe*` never hands out a
    /// kubeconfig.
    pub fn grants(&self, operation: &str, secrets: bool) -> bool {
        if secrets {
            self.operations.iter().any(|p| p == operation)
                || self
                    .secret_operations
                    .iter()
                    .any(|p| pattern_matches(p, operation))
        } else {
            self.operations
                .iter()
                .any(|p| pattern_matches(p, operation))
        }
    }
}

/// `*` matches any run of characters; everything else matches itself.
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

pub(super) fn resolve_broker(file: FileBroker, errors: &mut Vec<String>) -> BrokerConfig {
    let listen = file.listen.and_then(|l| {
        l.parse()
            .map_err(|_| errors.push(format!("broker.listen: `{l}` is not a socket address")))
            .ok()
    });
    BrokerConfig {
        listen,
        max_duration: super::parse::duration_or(
            "broker.max_duration",
            file.max_duration.as_deref(),
            DEFAULT_BROKER_MAX_DURATION,
            errors,
        ),
    }
}

/// `[broker] max_duration` when not set.
pub const DEFAULT_BROKER_MAX_DURATION: Duration = Duration::from_secs(3600);

/// How calls are authenticated when no rule says otherwise (`[auth] mode` and where the
/// gateway listens decide it: `Config::local_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalMode {
    /// The configured callers, and nobody else.
    Off,
    /// No authentication, everything allowed (caller `local`).
    Insecure,
    /// While no caller is configured, one generated token is the `local` caller, allowed
    /// everything.
    Token,
}
