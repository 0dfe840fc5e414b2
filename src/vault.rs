//! The credential vault: resolves a profile name to a credential that is valid for the whole
//! call. Callers name profiles; they never hold keys. AccessKey pairs and static STS triples are
//! used as configured; `ram_role_arn` and `oidc_role_arn` profiles hold STS triples that the vault
//! obtains and refreshes itself (`role.rs`), one AssumeRole at a time per profile.
//!
//! Invariant: no module but the vault and the signer reads secret bytes.

mod role;

pub(crate) use role::rfc3339;
pub mod sts;

use crate::config::{CredentialConfig, ProfileConfig};
use crate::signer::SigningKey;
use role::RoleProvider;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use sts::StsClient;
use time::OffsetDateTime;

pub use role::{RefreshStats, Triple};

pub use crate::error::VaultError;

/// A credential for one call.
#[derive(Debug, Clone)]
pub struct Credential {
    pub key: SigningKey,
    /// Stable identity of whom the credential acts as (the AccessKey id, or the role ARN of
    /// rotating triples): the scope of cached answers.
    pub identity: String,
    pub expiration: Option<OffsetDateTime>,
}

/// A profile as the request path sees it: how to sign, and the profile's defaults.
#[derive(Debug)]
pub struct Profile {
    pub name: String,
    pub region: Option<String>,
    pub acs_headers: BTreeMap<String, String>,
    /// How ROA calls with this profile are signed.
    pub signature: crate::signer::SignatureVersion,
    /// See `identity`: computed once, as every cacheable call needs it.
    identity: String,
    /// See `cache_scope`.
    cache_scope: String,
    config: ProfileConfig,
    source: Source,
}

#[derive(Debug)]
enum Source {
    Static {
        key: SigningKey,
        expiration: Option<OffsetDateTime>,
    },
    Role(Arc<RoleProvider>),
}

#[derive(Debug, Clone, Default)]
pub struct Vault {
    profiles: BTreeMap<String, Arc<Profile>>,
}

// === impl Vault ===

impl Vault {
    /// Builds the vault; profiles whose configuration (and source) did not change keep their
    /// entry from `previous`, so a reload does not discard live STS triples.
    pub fn build(
        configs: impl IntoIterator<Item = ProfileConfig>,
        sts: &StsClient,
        previous: Option<&Vault>,
    ) -> Vault {
        let configs: BTreeMap<String, ProfileConfig> =
            configs.into_iter().map(|p| (p.name.clone(), p)).collect();
        let mut profiles: BTreeMap<String, Arc<Profile>> = BTreeMap::new();
        // Resolve in dependency order: a role profile after its source profile.
        let mut pending: Vec<&ProfileConfig> = configs.values().collect();
        while !pending.is_empty() {
            let before = pending.len();
            pending.retain(|cfg| {
                let source_name = match &cfg.credential {
                    CredentialConfig::RamRoleArn(role) => Some(role.source_profile.as_str()),
                    _ => None,
                };
                let source = match source_name {
                    Some(name) => match profiles.get(name) {
                        Some(p) => Some(p.clone()),
                        None => return true, // wait for the source
                    },
                    None => None,
                };
                let reused = previous
                    .and_then(|v| v.profiles.get(&cfg.name))
                    .filter(|old| {
                        old.config == **cfg
                            && match (&old.source, &source) {
                                (Source::Role(r), Some(src)) => r.source_is(src),
                                _ => true,
                            }
                    });
                let entry = match reused {
                    Some(old) => old.clone(),
                    None => Arc::new(Profile::new(cfg, source, sts)),
                };
                profiles.insert(cfg.name.clone(), entry);
                false
            });
            if pending.len() == before {
                // Unknown sources and cycles are rejected by the configuration; never loop.
                break;
            }
        }
        Vault { profiles }
    }

    pub fn profile(&self, name: &str) -> Result<Arc<Profile>, VaultError> {
        self.profiles
            .get(name)
            .cloned()
            .ok_or_else(|| VaultError::UnknownProfile(name.to_string()))
    }

    /// The `ram_role_arn` profiles: name and role (who may broker them is the access rules').
    pub fn role_profiles(&self) -> impl Iterator<Item = (&str, &crate::config::RoleConfig)> {
        self.profiles
            .values()
            .filter_map(|p| match &p.config.credential {
                CredentialConfig::RamRoleArn(role) => Some((p.name.as_str(), role)),
                _ => None,
            })
    }

    pub fn profile_names(&self) -> impl Iterator<Item = &str> {
        self.profiles.keys().map(String::as_str)
    }

    /// Refresh counters of every role profile.
    pub fn refresh_stats(&self) -> Vec<(String, RefreshStats)> {
        self.profiles
            .values()
            .filter_map(|p| match &p.source {
                Source::Role(r) => Some((p.name.clone(), r.stats())),
                Source::Static { .. } => None,
            })
            .collect()
    }
}

// === impl Profile ===

impl Profile {
    fn new(cfg: &ProfileConfig, source: Option<Arc<Profile>>, sts: &StsClient) -> Profile {
        let source = match &cfg.credential {
            CredentialConfig::AccessKey {
                access_key_id,
                access_key_secret,
            } => Source::Static {
                key: SigningKey::new(access_key_id.clone(), access_key_secret.clone(), None),
                expiration: None,
            },
            CredentialConfig::Sts {
                access_key_id,
                access_key_secret,
                security_token,
                expiration,
            } => Source::Static {
                key: SigningKey::new(
                    access_key_id.clone(),
                    access_key_secret.clone(),
                    Some(security_token.clone()),
                ),
                expiration: *expiration,
            },
            CredentialConfig::RamRoleArn(role) => Source::Role(RoleProvider::assume_role(
                cfg.name.clone(),
                role.clone(),
                source.expect("a role profile is built after its source"),
                cfg.region.clone(),
                sts.clone(),
            )),
            CredentialConfig::OidcRoleArn {
                role,
                oidc_provider_arn,
                oidc_token_file,
            } => Source::Role(RoleProvider::assume_role_with_oidc(
                cfg.name.clone(),
                role.clone(),
                oidc_provider_arn.clone(),
                oidc_token_file.clone(),
                cfg.region.clone(),
                sts.clone(),
            )),
        };
        let identity = match &cfg.credential {
            CredentialConfig::AccessKey { access_key_id, .. }
            | CredentialConfig::Sts { access_key_id, .. } => format!("ak:{access_key_id}"),
            CredentialConfig::RamRoleArn(role) | CredentialConfig::OidcRoleArn { role, .. } => {
                format!("role:{}", role.role_arn)
            }
        };
        Profile {
            name: cfg.name.clone(),
            region: cfg.region.clone(),
            acs_headers: cfg.acs_headers.clone(),
            signature: cfg.signature,
            cache_scope: cache_scope(&identity, cfg),
            identity,
            config: cfg.clone(),
            source,
        }
    }

    /// Whom this profile's credentials act as, known without fetching them: the AccessKey id,
    /// or the role ARN for rotating triples. Cached answers are scoped by it.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Everything about this profile that can change what the cloud answers, as one string:
    /// the identity, and a digest of the role session's scope (session policy, external id,
    /// session name, OIDC provider) and of the headers sent with every call (Apsara Stack
    /// organization, resource group, …). Cached answers are shared only within one scope (the
    /// region and the request are the rest of the cache key).
    pub fn cache_scope(&self) -> &str {
        &self.cache_scope
    }

    /// What a write refused because its cluster is busy does with this profile, when set
    /// (`[profiles.*] when_busy`).
    pub fn when_busy(&self) -> Option<crate::config::writes::WhenBusy> {
        self.config.when_busy
    }

    /// A credential valid for at least `valid_for` from now.
    pub async fn credential(&self, valid_for: Duration) -> Result<Credential, VaultError> {
        match &self.source {
            Source::Static { key, expiration } => {
                if let Some(exp) = expiration {
                    let now = OffsetDateTime::now_utc();
                    let shown = rfc3339(*exp);
                    if *exp <= now {
                        return Err(VaultError::Expired {
                            profile: self.name.clone(),
                            expired_at: shown,
                        });
                    }
                    if *exp <= now + valid_for {
                        return Err(VaultError::ExpiresWithinDeadline {
                            profile: self.name.clone(),
                            expires_at: shown,
                        });
                    }
                }
                Ok(Credential {
                    key: key.clone(),
                    identity: format!("ak:{}", key.access_key_id()),
                    expiration: *expiration,
                })
            }
            Source::Role(provider) => provider.credential(valid_for).await,
        }
    }

    /// A new temporary credential for a caller, narrowed by `policy` and no longer than
    /// `duration`: a fresh AssumeRole of this profile's role (the broker).
    pub async fn broker(
        &self,
        duration: Duration,
        policy: Option<&str>,
    ) -> Result<Triple, VaultError> {
        match &self.source {
            Source::Role(provider) => provider.issue(duration, policy).await,
            Source::Static { .. } => Err(VaultError::NotBrokerable {
                profile: self.name.clone(),
                reason: "only ram_role_arn and oidc_role_arn profiles can broker credentials"
                    .into(),
            }),
        }
    }
}

/// See `Profile::cache_scope`. The parts are length-prefixed, so no two scopes collide by
/// where one value ends and the next begins.
fn cache_scope(identity: &str, cfg: &ProfileConfig) -> String {
    use sha2::{Digest, Sha256};
    let mut parts: Vec<(&str, &str)> = Vec::new();
    let role = match &cfg.credential {
        CredentialConfig::RamRoleArn(role) => Some((role, None)),
        CredentialConfig::OidcRoleArn {
            role,
            oidc_provider_arn,
            ..
        } => Some((role, Some(oidc_provider_arn.as_str()))),
        _ => None,
    };
    if let Some((role, provider)) = role {
        parts.push(("session", &role.role_session_name));
        parts.extend(role.policy.as_deref().map(|p| ("policy", p)));
        parts.extend(role.external_id.as_deref().map(|e| ("external_id", e)));
        parts.extend(provider.map(|p| ("oidc_provider", p)));
    }
    for (name, value) in &cfg.acs_headers {
        parts.push((name.as_str(), value.as_str()));
    }
    if parts.is_empty() {
        return identity.to_string();
    }
    let mut hash = Sha256::new();
    for (name, value) in parts {
        for text in [name, value] {
            hash.update((text.len() as u64).to_be_bytes());
            hash.update(text.as_bytes());
        }
    }
    let digest: String = hash.finalize()[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{identity}#{digest}")
}

#[cfg(test)]
mod tests;
