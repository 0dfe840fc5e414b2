//! Credential profiles: the file's `[profiles.*]` and the official SDKs' environment variables
//! resolved into `ProfileConfig`s, secrets read from where they are given (inline, an
//! environment variable, a file), every problem pushed with its key.

use super::parse::{duration_or, is_valid_region};
use super::writes::WhenBusy;
use super::{env, CredentialConfig, Env, ProfileConfig, RoleConfig, DEFAULT_PROFILE};
use crate::secret::Secret;
use crate::signer::SignatureVersion;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub(super) enum FileProfile {
    AccessKey {
        access_key_id: String,
        access_key_secret: SecretSource,
        region: Option<String>,
        #[serde(default)]
        acs_headers: BTreeMap<String, String>,
        signature: Option<SignatureVersion>,
        /// What a write refused because its cluster is busy does with this profile: `wait` or
        /// `fail` (a call's `x-ack-when-busy` wins; default `[idempotency] when_busy`).
        when_busy: Option<String>,
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
        /// What a write refused because its cluster is busy does with this profile: `wait` or
        /// `fail` (a call's `x-ack-when-busy` wins; default `[idempotency] when_busy`).
        when_busy: Option<String>,
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
        /// What a write refused because its cluster is busy does with this profile: `wait` or
        /// `fail` (a call's `x-ack-when-busy` wins; default `[idempotency] when_busy`).
        when_busy: Option<String>,
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
        /// What a write refused because its cluster is busy does with this profile: `wait` or
        /// `fail` (a call's `x-ack-when-busy` wins; default `[idempotency] when_busy`).
        when_busy: Option<String>,
    },
}

/// A secret given inline, by environment variable, or by file (e.g. a Kubernetes secret mount).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum SecretSource {
    Inline(String),
    Env { env: String },
    File { file: PathBuf },
}

pub(super) fn resolve_secret(
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

pub(super) fn check_region(key: &str, region: &Option<String>, errors: &mut Vec<String>) {
    if let Some(r) = region {
        if !is_valid_region(r) {
            errors.push(format!(
                "{key}: `{r}` is not a region id (e.g. cn-hangzhou)"
            ));
        }
    }
}

pub(super) fn check_acs_header_names(
    key: &str,
    headers: &BTreeMap<String, String>,
    errors: &mut Vec<String>,
) {
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

pub(super) fn resolve_profile(
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
    let (credential, region, acs_headers, signature, when_busy) = match p {
        FileProfile::AccessKey {
            access_key_id,
            access_key_secret,
            region,
            acs_headers,
            signature,
            when_busy,
        } => (
            CredentialConfig::AccessKey {
                access_key_id,
                access_key_secret: secret("access_key_secret", access_key_secret, errors),
            },
            region,
            acs_headers,
            signature,
            when_busy,
        ),
        FileProfile::Sts {
            access_key_id,
            access_key_secret,
            security_token,
            expiration,
            region,
            acs_headers,
            signature,
            when_busy,
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
                when_busy,
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
            when_busy,
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
            when_busy,
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
            when_busy,
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
                when_busy,
            )
        }
    };
    check_region(&format!("{key}.region"), &region, errors);
    check_acs_header_names(&key, &acs_headers, errors);
    let when_busy = when_busy.and_then(|v| {
        let parsed = WhenBusy::parse(&v);
        if parsed.is_none() {
            errors.push(format!("{key}.when_busy: `{v}` is not `wait` or `fail`"));
        }
        parsed
    });
    Some(ProfileConfig {
        name: name.to_string(),
        credential,
        region,
        acs_headers,
        signature: signature.unwrap_or_default(),
        when_busy,
    })
}

pub const DEFAULT_ROLE_SESSION_NAME: &str = "ack-gateway";
pub const DEFAULT_ROLE_DURATION: Duration = Duration::from_secs(3600);

#[allow(clippy::too_many_arguments)]
pub(super) fn role_config(
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
pub(super) fn source_cycle(profiles: &BTreeMap<String, ProfileConfig>) -> Option<String> {
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
pub(super) fn env_profile(env: &impl Env, errors: &mut Vec<String>) -> Option<ProfileConfig> {
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
        when_busy: None,
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
pub(super) fn env_oidc_profile(env: &impl Env, errors: &mut Vec<String>) -> Option<ProfileConfig> {
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
        when_busy: None,
    })
}
