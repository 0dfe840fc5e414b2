//! ROA (REST) signature V1, HMAC-SHA1, as the CS API and the official SDKs compute it:
//!
//! ```text
//! StringToSign = VERB \n Accept \n Content-MD5 \n Content-Type \n Date \n
//!                CanonicalizedHeaders CanonicalizedResource
//! Authorization: acs <AccessKeyId>:base64(HMAC-SHA1(secret, StringToSign))
//! ```
//! CanonicalizedHeaders: every `x-acs-*` header, name lower-cased, value trimmed, sorted by
//! name, each as `name:value\n`. CanonicalizedResource: the decoded path, then `?` and the
//! decoded query sorted by key, `k=v` joined by `&`, a bare `k` for an empty value.

use super::{hmac_sha1_base64, SigningKey};
use base64::Engine as _;
use md5::{Digest, Md5};
use std::collections::BTreeMap;

pub const ACCEPT: &str = "application/json";
pub const JSON_CONTENT_TYPE: &str = "application/json; charset=utf-8";

/// What a ROA request is signed over.
#[derive(Debug, Clone)]
pub struct RoaRequest<'a> {
    pub method: &'a str,
    /// The decoded path, e.g. `/clusters/c1`.
    pub path: &'a str,
    /// Decoded query parameters.
    pub query: &'a [(String, String)],
    /// Every header to send, lower-case names; must hold `accept`, `date`, and for a body
    /// `content-type` and `content-md5`.
    pub headers: &'a BTreeMap<String, String>,
}

/// The common headers of a signed ROA request, before the signature.
#[allow(clippy::too_many_arguments)]
pub fn base_headers(
    api_version: &str,
    region: &str,
    date: &str,
    nonce: &str,
    body: Option<&[u8]>,
    key: &SigningKey,
    extra_acs_headers: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut h = BTreeMap::new();
    h.insert("accept".into(), ACCEPT.into());
    h.insert("date".into(), date.into());
    h.insert("x-acs-version".into(), api_version.into());
    h.insert("x-acs-region-id".into(), region.into());
    h.insert("x-acs-signature-method".into(), "HMAC-SHA1".into());
    h.insert("x-acs-signature-version".into(), "1.0".into());
    h.insert("x-acs-signature-nonce".into(), nonce.into());
    if let Some(body) = body {
        h.insert("content-type".into(), JSON_CONTENT_TYPE.into());
        h.insert("content-md5".into(), content_md5(body));
    }
    if let Some(token) = &key.security_token {
        h.insert("x-acs-accesskey-id".into(), key.access_key_id.clone());
        h.insert("x-acs-security-token".into(), token.expose().to_string());
    }
    for (k, v) in extra_acs_headers {
        h.insert(k.to_ascii_lowercase(), v.clone());
    }
    h
}

/// Base64 of the MD5 of the exact body bytes.
pub fn content_md5(body: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Md5::digest(body))
}

/// The string the signature is computed over.
pub fn string_to_sign(req: &RoaRequest<'_>) -> String {
    let header = |name: &str| req.headers.get(name).map(String::as_str).unwrap_or("");
    let mut s = String::with_capacity(512);
    s.push_str(req.method);
    s.push('\n');
    for name in ["accept", "content-md5", "content-type", "date"] {
        s.push_str(header(name));
        s.push('\n');
    }
    write_canonicalized_headers(&mut s, req.headers);
    write_canonicalized_resource(&mut s, req.path, req.query);
    s
}

/// Every `x-acs-*` header, lower-cased and sorted, `name:value\n` each.
pub fn canonicalized_headers(headers: &BTreeMap<String, String>) -> String {
    let mut s = String::new();
    write_canonicalized_headers(&mut s, headers);
    s
}

fn write_canonicalized_headers(s: &mut String, headers: &BTreeMap<String, String>) {
    // The common case (every name already lower-case, as `base_headers` builds them) needs no
    // copy: the map is sorted, and the `x-acs-` names are one contiguous range of it.
    if headers
        .keys()
        .all(|k| !k.bytes().any(|b| b.is_ascii_uppercase()))
    {
        let from = (
            std::ops::Bound::Included("x-acs-"),
            std::ops::Bound::Unbounded,
        );
        for (k, v) in headers.range::<str, _>(from) {
            if !k.starts_with("x-acs-") {
                break;
            }
            s.push_str(k);
            s.push(':');
            push_clean_value(s, v);
            s.push('\n');
        }
        return;
    }
    let mut acs: Vec<(String, &String)> = headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .filter(|(k, _)| k.starts_with("x-acs-"))
        .collect();
    acs.sort();
    for (k, v) in acs {
        s.push_str(&k);
        s.push(':');
        push_clean_value(s, v);
        s.push('\n');
    }
}

/// Header values are trimmed and their `\t \n \r \f` replaced by spaces before signing.
fn push_clean_value(s: &mut String, v: &str) {
    let v = v.trim_matches(|c: char| c.is_ascii_whitespace());
    if v.bytes()
        .any(|b| matches!(b, b'\t' | b'\n' | b'\r' | b'\x0c'))
    {
        s.push_str(v.replace(['\t', '\n', '\r', '\x0c'], " ").trim());
    } else {
        s.push_str(v);
    }
}

/// The decoded path, then `?` and the query sorted by key (`k=v`, or a bare `k` if empty).
pub fn canonicalized_resource(path: &str, query: &[(String, String)]) -> String {
    let mut s = String::with_capacity(path.len() + 64);
    write_canonicalized_resource(&mut s, path, query);
    s
}

fn write_canonicalized_resource(s: &mut String, path: &str, query: &[(String, String)]) {
    s.push_str(path);
    if query.is_empty() {
        return;
    }
    let mut sorted: Vec<&(String, String)> = query.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    s.push('?');
    for (i, (k, v)) in sorted.into_iter().enumerate() {
        if i > 0 {
            s.push('&');
        }
        s.push_str(k);
        if !v.is_empty() {
            s.push('=');
            s.push_str(v);
        }
    }
}

/// The signature: base64 HMAC-SHA1 of the string to sign with the AccessKey secret.
pub fn signature(req: &RoaRequest<'_>, key: &SigningKey) -> String {
    hmac_sha1_base64(
        key.access_key_secret.expose().as_bytes(),
        string_to_sign(req).as_bytes(),
    )
}

/// The `Authorization` header value: `acs <AccessKeyId>:<signature>`.
pub fn authorization(req: &RoaRequest<'_>, key: &SigningKey) -> String {
    format!("acs {}:{}", key.access_key_id, signature(req, key))
}

#[cfg(test)]
mod tests;
