//! RPC-style signature (STS, E-HPC), HMAC-SHA1, as the official SDKs compute it:
//!
//! ```text
//! StringToSign = METHOD & percentEncode("/") & percentEncode(CanonicalizedQueryString)
//! Signature    = base64(HMAC-SHA1(secret + "&", StringToSign))
//! ```
//! CanonicalizedQueryString: every parameter except `Signature`, sorted by name,
//! `percentEncode(name)=percentEncode(value)` joined by `&`, with RFC 3986 encoding
//! (space → `%20`, `*` → `%2A`, `~` kept).

use super::{hmac_sha1_base64, SigningKey};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// RFC 3986 unreserved characters are kept; everything else is encoded.
pub const RFC3986: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

pub fn percent_encode(s: &str) -> String {
    utf8_percent_encode(s, RFC3986).to_string()
}

/// The common parameters of a signed RPC request (all but `Signature`).
pub fn common_params(
    action: &str,
    version: &str,
    timestamp: &str,
    nonce: &str,
    key: &SigningKey,
) -> Vec<(String, String)> {
    let mut p = vec![
        ("Action".to_string(), action.to_string()),
        ("Version".to_string(), version.to_string()),
        ("Format".to_string(), "JSON".to_string()),
        ("AccessKeyId".to_string(), key.access_key_id().to_string()),
        ("SignatureMethod".to_string(), "HMAC-SHA1".to_string()),
        ("SignatureVersion".to_string(), "1.0".to_string()),
        ("SignatureNonce".to_string(), nonce.to_string()),
        ("Timestamp".to_string(), timestamp.to_string()),
    ];
    if let Some(token) = key.security_token() {
        p.push(("SecurityToken".to_string(), token.expose().to_string()));
    }
    p
}

/// The sorted, encoded parameters, `Signature` excluded.
pub fn canonicalized_query(params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> =
        params.iter().filter(|(k, _)| k != "Signature").collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    sorted
        .into_iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

pub fn string_to_sign(method: &str, params: &[(String, String)]) -> String {
    format!(
        "{}&{}&{}",
        method,
        percent_encode("/"),
        percent_encode(&canonicalized_query(params))
    )
}

/// The `Signature` parameter value.
pub fn signature(method: &str, params: &[(String, String)], key: &SigningKey) -> String {
    let mut k = zeroize::Zeroizing::new(String::with_capacity(
        key.access_key_secret().expose().len() + 1,
    ));
    k.push_str(key.access_key_secret().expose());
    k.push('&');
    hmac_sha1_base64(k.as_bytes(), string_to_sign(method, params).as_bytes())
}

#[cfg(test)]
mod tests;
