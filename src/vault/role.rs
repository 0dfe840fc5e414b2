//! STS triples that the vault obtains and keeps fresh itself.
//!
//! - The triple is cached and refreshed in the background well before expiry: once
//!   `refresh_before` (default 15 minutes) remains, or at 80 % of the lifetime when the lifetime
//!   is short.
//! - Exactly one AssumeRole is in flight per profile, however many calls wait (`refresh_lock`).
//! - When a refresh fails, the still-valid triple keeps being used and the refresh is retried
//!   with backoff; calls fail only once no triple is valid for their deadline.
//! - A call is never signed with a triple that expires within its deadline.

use super::sts::{AssumeRequest, IssuedTriple, StsClient};
use super::{Credential, Profile, VaultError};
use crate::config::RoleConfig;
use crate::ratelimit::Backoff;
use crate::signer::SigningKey;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use time::OffsetDateTime;

/// Kept back from a triple's expiry: clocks differ and requests take time to arrive.
const EXPIRY_MARGIN: Duration = Duration::from_secs(2);
/// After a failed AssumeRole, waiting calls get the same error for this long instead of each
/// calling STS again.
const FAILURE_MEMO: Duration = Duration::from_millis(500);
const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(30);

/// A temporary credential and when it was issued.
#[derive(Debug, Clone)]
pub struct Triple {
    pub key: SigningKey,
    pub issued: OffsetDateTime,
    pub expiration: OffsetDateTime,
}

/// Refresh counters of one profile.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RefreshStats {
    pub refreshes: u64,
    pub failures: u64,
}

#[derive(Debug)]
enum RoleSource {
    /// AssumeRole signed by another profile's credential.
    Profile(Arc<Profile>),
    /// AssumeRoleWithOIDC with a token file.
    Oidc {
        provider_arn: String,
        token_file: PathBuf,
    },
}

#[derive(Debug)]
pub struct RoleProvider {
    profile: String,
    role: RoleConfig,
    source: RoleSource,
    region: Option<String>,
    sts: StsClient,
    current: Mutex<Option<Triple>>,
    refresh_lock: tokio::sync::Mutex<()>,
    last_failure: Mutex<Option<(Instant, String)>>,
    refresher_started: std::sync::Once,
    refreshes: AtomicU64,
    failures: AtomicU64,
}

// === impl RoleProvider ===

impl RoleProvider {
    pub fn assume_role(
        profile: String,
        role: RoleConfig,
        source: Arc<Profile>,
        region: Option<String>,
        sts: StsClient,
    ) -> Arc<Self> {
        Self::new(profile, role, RoleSource::Profile(source), region, sts)
    }

    pub fn assume_role_with_oidc(
        profile: String,
        role: RoleConfig,
        provider_arn: String,
        token_file: PathBuf,
        region: Option<String>,
        sts: StsClient,
    ) -> Arc<Self> {
        Self::new(
            profile,
            role,
            RoleSource::Oidc {
                provider_arn,
                token_file,
            },
            region,
            sts,
        )
    }

    fn new(
        profile: String,
        role: RoleConfig,
        source: RoleSource,
        region: Option<String>,
        sts: StsClient,
    ) -> Arc<Self> {
        Arc::new(RoleProvider {
            profile,
            role,
            source,
            region,
            sts,
            current: Mutex::new(None),
            refresh_lock: tokio::sync::Mutex::new(()),
            last_failure: Mutex::new(None),
            refresher_started: std::sync::Once::new(),
            refreshes: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        })
    }

    /// Whether this provider assumes its role with `source`'s credential.
    pub fn source_is(&self, source: &Arc<Profile>) -> bool {
        match &self.source {
            RoleSource::Profile(p) => Arc::ptr_eq(p, source),
            RoleSource::Oidc { .. } => false,
        }
    }

    pub fn stats(&self) -> RefreshStats {
        RefreshStats {
            refreshes: self.refreshes.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
        }
    }

    fn identity(&self) -> String {
        format!("role:{}", self.role.role_arn)
    }

    fn current(&self) -> Option<Triple> {
        self.current.lock().expect("triple lock").clone()
    }

    fn usable_for(t: &Triple, valid_for: Duration) -> bool {
        t.expiration > OffsetDateTime::now_utc() + valid_for + EXPIRY_MARGIN
    }

    fn credential_from(&self, t: Triple) -> Credential {
        Credential {
            key: t.key,
            identity: self.identity(),
            expiration: Some(t.expiration),
        }
    }

    /// A triple valid for at least `valid_for`, assuming the role if none is.
    pub async fn credential(
        self: &Arc<Self>,
        valid_for: Duration,
    ) -> Result<Credential, VaultError> {
        if let Some(t) = self.current().filter(|t| Self::usable_for(t, valid_for)) {
            return Ok(self.credential_from(t));
        }
        // Single flight: whoever holds the lock assumes the role; the others find its triple.
        let _guard = self.refresh_lock.lock().await;
        if let Some(t) = self.current().filter(|t| Self::usable_for(t, valid_for)) {
            return Ok(self.credential_from(t));
        }
        if let Some((at, reason)) = self.last_failure.lock().expect("failure lock").clone() {
            if at.elapsed() < FAILURE_MEMO {
                return Err(self.refresh_failed(reason));
            }
        }
        match self.refresh_now().await {
            Ok(t) if Self::usable_for(&t, valid_for) => Ok(self.credential_from(t)),
            Ok(t) => Err(VaultError::ExpiresWithinDeadline {
                profile: self.profile.clone(),
                expires_at: rfc3339(t.expiration),
            }),
            Err(reason) => Err(self.refresh_failed(reason)),
        }
    }

    fn refresh_failed(&self, reason: String) -> VaultError {
        VaultError::RefreshFailed {
            profile: self.profile.clone(),
            reason,
        }
    }

    /// Assumes the role and stores the triple; the caller holds `refresh_lock`.
    async fn refresh_now(self: &Arc<Self>) -> Result<Triple, String> {
        let result = self
            .assume(self.role.duration, self.role.policy.as_deref())
            .await;
        match result {
            Ok(t) => {
                self.refreshes.fetch_add(1, Ordering::Relaxed);
                *self.current.lock().expect("triple lock") = Some(t.clone());
                *self.last_failure.lock().expect("failure lock") = None;
                tracing::info!(profile = %self.profile, expires = %rfc3339(t.expiration), "assumed role");
                self.start_refresher();
                Ok(t)
            }
            Err(reason) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                *self.last_failure.lock().expect("failure lock") =
                    Some((Instant::now(), reason.clone()));
                tracing::warn!(profile = %self.profile, error = %reason, "assuming role failed");
                Err(reason)
            }
        }
    }

    /// One AssumeRole (or AssumeRoleWithOIDC) call.
    async fn assume(&self, duration: Duration, policy: Option<&str>) -> Result<Triple, String> {
        let req = AssumeRequest {
            role_arn: &self.role.role_arn,
            role_session_name: &self.role.role_session_name,
            duration,
            policy,
            external_id: self.role.external_id.as_deref(),
            region: self.region.as_deref(),
        };
        let issued_at = OffsetDateTime::now_utc();
        let issued: IssuedTriple = match &self.source {
            RoleSource::Profile(source) => {
                let cred = Box::pin(source.credential(Duration::from_secs(10)))
                    .await
                    .map_err(|e| e.to_string())?;
                self.sts
                    .assume_role(&cred.key, &req)
                    .await
                    .map_err(|e| e.to_string())?
            }
            RoleSource::Oidc {
                provider_arn,
                token_file,
            } => self
                .sts
                .assume_role_with_oidc(provider_arn, token_file, &req)
                .await
                .map_err(|e| e.to_string())?,
        };
        Ok(Triple {
            key: SigningKey::new(
                issued.access_key_id,
                issued.access_key_secret,
                Some(issued.security_token),
            ),
            issued: issued_at,
            expiration: issued.expiration,
        })
    }

    /// A separate triple for the broker: narrowed by `policy`, no longer than `duration`.
    pub async fn issue(
        &self,
        duration: Duration,
        policy: Option<&str>,
    ) -> Result<Triple, VaultError> {
        let duration = duration
            .min(self.role.duration)
            .max(Duration::from_secs(900));
        self.assume(duration, policy)
            .await
            .map_err(|reason| self.refresh_failed(reason))
    }

    /// When the background refresher should renew a triple.
    pub fn refresh_at(&self, t: &Triple) -> OffsetDateTime {
        refresh_at(t, self.role.refresh_before)
    }

    /// Starts, once, the task that renews the triple before it expires. It holds only a weak
    /// reference, so it ends when the profile is dropped (e.g. removed by a reload).
    fn start_refresher(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        self.refresher_started.call_once(|| {
            tokio::spawn(refresh_loop(weak));
        });
    }
}

/// Renew once `before` remains, or at 80 % of the lifetime when half of it would already be
/// past that point (short lifetimes).
pub fn refresh_at(t: &Triple, before: Duration) -> OffsetDateTime {
    let lifetime = t.expiration - t.issued;
    let by_remaining = t.expiration - before;
    if by_remaining > t.issued + lifetime / 2 {
        by_remaining
    } else {
        t.issued + lifetime * 0.8
    }
}

async fn refresh_loop(weak: Weak<RoleProvider>) {
    let mut backoff = Backoff::new(Duration::from_millis(250), MAX_RETRY_BACKOFF);
    loop {
        let wait = {
            let Some(p) = weak.upgrade() else { return };
            match p.current() {
                Some(t) => {
                    let until = p.refresh_at(&t) - OffsetDateTime::now_utc();
                    until.try_into().unwrap_or(Duration::ZERO)
                }
                None => Duration::ZERO,
            }
        };
        tokio::time::sleep(wait).await;
        let Some(p) = weak.upgrade() else { return };
        let due = p
            .current()
            .is_none_or(|t| OffsetDateTime::now_utc() >= p.refresh_at(&t));
        if !due {
            continue;
        }
        let outcome = {
            let _guard = p.refresh_lock.lock().await;
            // Someone else may have refreshed while we waited for the lock.
            if p.current()
                .is_some_and(|t| OffsetDateTime::now_utc() < p.refresh_at(&t))
            {
                Ok(())
            } else {
                p.refresh_now().await.map(|_| ())
            }
        };
        match outcome {
            Ok(()) => backoff.succeeded(),
            Err(_) => {
                // Keep the still-valid triple; retry with jittered exponential backoff.
                let (wait, _) = backoff.failed(None);
                let remaining = p
                    .current()
                    .map(|t| {
                        (t.expiration - OffsetDateTime::now_utc())
                            .try_into()
                            .unwrap_or(Duration::ZERO)
                    })
                    .unwrap_or(MAX_RETRY_BACKOFF);
                let sleep = Backoff::spread(wait, 0.5, rand::random::<f64>())
                    .min(MAX_RETRY_BACKOFF)
                    .min((remaining / 4).max(Duration::from_millis(100)));
                drop(p);
                tokio::time::sleep(sleep).await;
            }
        }
    }
}

/// A time as RFC 3339 (how expiries are shown and handed out).
pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
