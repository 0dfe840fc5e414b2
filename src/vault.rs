//! The credential vault: resolves a profile name to a credential that is valid for the whole
//! call. Callers name profiles; they never hold keys.
//!
//! Invariant: no module but the vault and the signer reads secret bytes.

use crate::config::{CredentialConfig, ProfileConfig};
use crate::signer::SigningKey;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

/// Why the vault cannot give a credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VaultError {
    #[error("unknown credential profile `{0}`")]
    UnknownProfile(String),
    #[error("profile `{profile}`: its STS credential expired at {expired_at}")]
    Expired { profile: String, expired_at: String },
    #[error("profile `{profile}`: its STS credential expires at {expires_at}, before the call's deadline")]
    ExpiresWithinDeadline { profile: String, expires_at: String },
}

/// A profile as the request path sees it: how to sign, and the profile's defaults.
#[derive(Debug, Clone)]
pub struct Profile {
    pub name: String,
    pub region: Option<String>,
    pub acs_headers: BTreeMap<String, String>,
    credential: CredentialConfig,
}

#[derive(Debug, Clone, Default)]
pub struct Vault {
    profiles: BTreeMap<String, Arc<Profile>>,
}

// === impl Vault ===

impl Vault {
    pub fn new(profiles: impl IntoIterator<Item = ProfileConfig>) -> Self {
        Vault {
            profiles: profiles
                .into_iter()
                .map(|p| {
                    (
                        p.name.clone(),
                        Arc::new(Profile {
                            name: p.name,
                            region: p.region,
                            acs_headers: p.acs_headers,
                            credential: p.credential,
                        }),
                    )
                })
                .collect(),
        }
    }

    pub fn profile(&self, name: &str) -> Result<Arc<Profile>, VaultError> {
        self.profiles
            .get(name)
            .cloned()
            .ok_or_else(|| VaultError::UnknownProfile(name.to_string()))
    }

    pub fn profile_names(&self) -> impl Iterator<Item = &str> {
        self.profiles.keys().map(String::as_str)
    }

    /// A key valid for at least `valid_for` from now.
    pub fn signing_key(
        &self,
        profile: &Profile,
        valid_for: Duration,
    ) -> Result<SigningKey, VaultError> {
        match &profile.credential {
            CredentialConfig::AccessKey {
                access_key_id,
                access_key_secret,
            } => Ok(SigningKey {
                access_key_id: access_key_id.clone(),
                access_key_secret: access_key_secret.clone(),
                security_token: None,
            }),
            CredentialConfig::Sts {
                access_key_id,
                access_key_secret,
                security_token,
                expiration,
            } => {
                if let Some(exp) = expiration {
                    let now = OffsetDateTime::now_utc();
                    let shown = exp
                        .format(&time::format_description::well_known::Rfc3339)
                        .unwrap_or_default();
                    if *exp <= now {
                        return Err(VaultError::Expired {
                            profile: profile.name.clone(),
                            expired_at: shown,
                        });
                    }
                    if *exp <= now + valid_for {
                        return Err(VaultError::ExpiresWithinDeadline {
                            profile: profile.name.clone(),
                            expires_at: shown,
                        });
                    }
                }
                Ok(SigningKey {
                    access_key_id: access_key_id.clone(),
                    access_key_secret: access_key_secret.clone(),
                    security_token: Some(security_token.clone()),
                })
            }
        }
    }
}
