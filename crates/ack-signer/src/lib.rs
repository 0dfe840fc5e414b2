//! Request signing: pure functions of (request parts, credential, time, nonce), with no I/O, so
//! they are tested against the official SDKs' known-answer vectors.
//!
//! Invariant: nothing here logs; signatures and secrets leave only in the returned headers or
//! query parameters.

pub mod diagnosis;
pub mod roa;
pub mod rpc;
pub mod secret;
pub mod v3;

use crate::secret::Secret;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::Sha256;

/// The credential a request is signed with. Immutable: the ROA MAC keyed with the secret is
/// computed once here rather than once per request, so it must never outlive a change of
/// secret.
#[derive(Clone)]
pub struct SigningKey {
    access_key_id: String,
    access_key_secret: Secret,
    /// Present for STS triples: sent as `x-acs-security-token` / `SecurityToken`.
    security_token: Option<Secret>,
    /// HMAC-SHA1 keyed with `access_key_secret`, before any data: the ROA signature's key.
    /// Secret-equivalent, so it appears in no `Debug` output.
    roa_mac: Box<HmacSha1>,
    /// HMAC-SHA256 keyed with `access_key_secret`: the V3 signature's key. Secret-equivalent.
    v3_mac: Box<HmacSha256>,
}

/// The signature version of ROA requests: V1 (HMAC-SHA1 over headers, the documented
/// algorithm, which Apsara Stack accepts) or V3 (`ACS3-HMAC-SHA256` over a canonical request,
/// today's SDKs' default). RPC-style calls (STS, E-HPC) are signed RPC-style either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignatureVersion {
    #[default]
    V1,
    V3,
}

impl SignatureVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureVersion::V1 => "v1",
            SignatureVersion::V3 => "v3",
        }
    }

    /// `v1` or `v3`.
    pub fn parse(text: &str) -> Option<SignatureVersion> {
        match text {
            "v1" => Some(SignatureVersion::V1),
            "v3" => Some(SignatureVersion::V3),
            _ => None,
        }
    }
}

impl SigningKey {
    pub fn new(
        access_key_id: impl Into<String>,
        access_key_secret: Secret,
        security_token: Option<Secret>,
    ) -> SigningKey {
        let roa_mac = HmacSha1::new_from_slice(access_key_secret.expose().as_bytes())
            .expect("HMAC takes keys of any length");
        let v3_mac = HmacSha256::new_from_slice(access_key_secret.expose().as_bytes())
            .expect("HMAC takes keys of any length");
        SigningKey {
            access_key_id: access_key_id.into(),
            access_key_secret,
            security_token,
            roa_mac: Box::new(roa_mac),
            v3_mac: Box::new(v3_mac),
        }
    }

    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }

    pub fn access_key_secret(&self) -> &Secret {
        &self.access_key_secret
    }

    pub fn security_token(&self) -> Option<&Secret> {
        self.security_token.as_ref()
    }

    /// A fresh HMAC-SHA1 keyed with the secret, ready for the ROA string to sign.
    pub(crate) fn roa_mac(&self) -> HmacSha1 {
        HmacSha1::clone(&self.roa_mac)
    }

    /// A fresh HMAC-SHA256 keyed with the secret, ready for the V3 string to sign.
    pub(crate) fn v3_mac(&self) -> HmacSha256 {
        HmacSha256::clone(&self.v3_mac)
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("access_key_id", &self.access_key_id)
            .field("access_key_secret", &self.access_key_secret)
            .field("security_token", &self.security_token)
            .finish_non_exhaustive()
    }
}

/// HMAC-SHA1, the MAC of both signature styles.
pub(crate) type HmacSha1 = Hmac<Sha1>;
/// HMAC-SHA256, the MAC of V3.
pub(crate) type HmacSha256 = Hmac<Sha256>;

/// Base64 of HMAC-SHA1(key, data).
pub fn hmac_sha1_base64(key: &[u8], data: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = HmacSha1::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// A fresh signature nonce (a random UUID, as the official SDKs send).
pub fn new_nonce() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signing_key_debugs_without_its_secret_token_or_mac() {
        let key = SigningKey::new(
            "LTAIdebug",
            Secret::new("the-secret-value"),
            Some(Secret::new("the-token-value")),
        );
        let shown = format!("{key:?}");
        assert!(shown.contains("LTAIdebug"), "{shown}");
        assert!(!shown.contains("the-secret-value"), "{shown}");
        assert!(!shown.contains("the-token-value"), "{shown}");
        assert!(!shown.contains("roa_mac"), "{shown}");
    }

    #[test]
    fn the_cached_mac_is_keyed_with_the_secret() {
        // The precomputed key schedule gives what a MAC keyed afresh gives.
        let key = SigningKey::new("id", Secret::new("s3cr3t"), None);
        let mut cached = key.roa_mac();
        cached.update(b"data");
        let cached =
            base64::engine::general_purpose::STANDARD.encode(cached.finalize().into_bytes());
        assert_eq!(cached, hmac_sha1_base64(b"s3cr3t", b"data"));
    }
}
