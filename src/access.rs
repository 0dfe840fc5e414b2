//! Caller authentication and authorization.
//!
//! A caller proves who it is with a bearer token (stored as a SHA-256 hash in the config) or a
//! client certificate (mutual TLS; its subject common name or a SAN names it). Authorization is
//! deny by default: per caller, the profiles it may use, the operations it may call (exact names
//! or `*` patterns such as `Describe*`) and the profiles it may broker credentials for.
//! An explicit insecure local mode (`local` caller, everything allowed) exists for development.

use crate::config::access::CallerConfig;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};

/// The caller name used in insecure local mode.
pub const LOCAL_CALLER: &str = "local";

pub use crate::config::access::{pattern_matches as matches, LocalMode};
pub use crate::error::AccessError;

/// The local access rule in force: `LocalMode` with the generated token's hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalAccess {
    Off,
    Insecure,
    /// SHA-256 (hex) of the generated local token.
    Token(String),
}

#[derive(Debug, Clone, Default)]
pub struct Access {
    insecure_local: bool,
    /// `[broker] max_duration`: the longest credential a caller may obtain, brokered or by a
    /// direct STS AssumeRole.
    broker_max_duration: Option<std::time::Duration>,
    callers: BTreeMap<String, CallerConfig>,
    by_token_hash: HashMap<String, String>,
    by_tls_name: HashMap<String, String>,
}

// === impl Access ===

impl Access {
    pub fn new(local: &LocalAccess, callers: &BTreeMap<String, CallerConfig>) -> Self {
        // Configured callers always mean enforcement, whatever the local rule (a reload that
        // adds callers ends insecure local mode too).
        let insecure_local = *local == LocalAccess::Insecure && callers.is_empty();
        let mut callers = callers.clone();
        if let LocalAccess::Token(hash) = local {
            // Only while no caller is configured: configuring one (e.g. by a reload) ends it.
            if callers.is_empty() {
                let all = vec!["*".to_string()];
                callers.insert(
                    LOCAL_CALLER.to_string(),
                    CallerConfig {
                        name: LOCAL_CALLER.to_string(),
                        token_sha256: vec![hash.clone()],
                        tls_names: Vec::new(),
                        profiles: all.clone(),
                        operations: all.clone(),
                        secret_operations: all.clone(),
                        broker: all,
                        journal_all: true,
                    },
                );
            }
        }
        let mut by_token_hash = HashMap::new();
        let mut by_tls_name = HashMap::new();
        for c in callers.values() {
            for h in &c.token_sha256 {
                by_token_hash.insert(h.clone(), c.name.clone());
            }
            for n in &c.tls_names {
                by_tls_name.insert(n.clone(), c.name.clone());
            }
        }
        Access {
            insecure_local,
            broker_max_duration: None,
            callers,
            by_token_hash,
            by_tls_name,
        }
    }

    /// The same rules with `[broker] max_duration` as the longest credential a caller may
    /// obtain (brokered, or by a direct STS AssumeRole).
    pub fn with_broker_max_duration(mut self, max: std::time::Duration) -> Self {
        self.broker_max_duration = Some(max);
        self
    }

    pub fn broker_max_duration(&self) -> std::time::Duration {
        self.broker_max_duration
            .unwrap_or(crate::config::access::DEFAULT_BROKER_MAX_DURATION)
    }

    pub fn insecure_local(&self) -> bool {
        self.insecure_local
    }

    /// Who is calling: from a bearer token (the `authorization` value) or client-certificate
    /// names. A presented token that is unknown is refused even if a certificate would match.
    pub fn authenticate(
        &self,
        authorization: Option<&str>,
        tls_names: &[String],
    ) -> Result<String, AccessError> {
        if self.insecure_local {
            return Ok(LOCAL_CALLER.to_string());
        }
        if let Some(value) = authorization {
            let token = value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
                .ok_or_else(|| {
                    AccessError::Unauthenticated("authorization must be `Bearer <token>`".into())
                })?;
            let hash = token_hash(token.trim());
            return self
                .by_token_hash
                .get(&hash)
                .cloned()
                .ok_or_else(|| AccessError::Unauthenticated("unknown bearer token".into()));
        }
        tls_names
            .iter()
            .find_map(|n| self.by_tls_name.get(n).cloned())
            .ok_or_else(|| {
                AccessError::Unauthenticated(if tls_names.is_empty() {
                    "no credentials: present a bearer token or a client certificate".into()
                } else {
                    format!("client certificate names {tls_names:?} are not a known caller")
                })
            })
    }

    /// May `caller` call `operation` with `profile`? `secrets`: the operation's answer carries
    /// secrets, so only an exact grant reaches it (`CallerConfig::grants`).
    pub fn authorize(
        &self,
        caller: &str,
        profile: &str,
        operation: &str,
        secrets: bool,
    ) -> Result<(), AccessError> {
        if self.insecure_local {
            return Ok(());
        }
        let allowed = self.callers.get(caller).is_some_and(|c| {
            c.profiles.iter().any(|p| p == "*" || p == profile) && c.grants(operation, secrets)
        });
        if allowed {
            Ok(())
        } else {
            Err(AccessError::Denied {
                caller: caller.to_string(),
                profile: profile.to_string(),
                operation: operation.to_string(),
            })
        }
    }

    /// Does `caller` see every caller's journal entries (`journal = "all"`), or only its own?
    pub fn sees_all_operations(&self, caller: &str) -> bool {
        self.insecure_local || self.callers.get(caller).is_some_and(|c| c.journal_all)
    }

    /// May `caller` obtain temporary credentials of `profile`?
    pub fn authorize_broker(&self, caller: &str, profile: &str) -> Result<(), AccessError> {
        if self.insecure_local {
            return Ok(());
        }
        if self
            .callers
            .get(caller)
            .is_some_and(|c| c.broker.iter().any(|p| p == "*" || p == profile))
        {
            Ok(())
        } else {
            Err(AccessError::BrokerDenied {
                caller: caller.to_string(),
                profile: profile.to_string(),
            })
        }
    }
}

/// Hex SHA-256 of a bearer token, as stored in `callers.NAME.token_sha256`.
pub fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests;
