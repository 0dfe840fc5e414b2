//! Request signing: pure functions of (request parts, credential, time, nonce), with no I/O, so
//! they are tested against the official SDKs' known-answer vectors.
//!
//! Invariant: nothing here logs; signatures and secrets leave only in the returned headers or
//! query parameters.

pub mod roa;
pub mod rpc;

use crate::secret::Secret;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// The credential a request is signed with.
#[derive(Clone, Debug)]
pub struct SigningKey {
    pub access_key_id: String,
    pub access_key_secret: Secret,
    /// Present for STS triples: sent as `x-acs-security-token` / `SecurityToken`.
    pub security_token: Option<Secret>,
}

/// Base64 of HMAC-SHA1(key, data).
pub fn hmac_sha1_base64(key: &[u8], data: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// A fresh signature nonce (a random UUID, as the official SDKs send).
pub fn new_nonce() -> String {
    uuid::Uuid::new_v4().to_string()
}
