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

use super::SigningKey;
use base64::Engine as _;
use hmac::Mac as _;
use md5::{Digest, Md5};
use std::borrow::Cow;
use std::collections::BTreeMap;

pub const ACCEPT: &str = "application/json";
pub const JSON_CONTENT_TYPE: &str = "application/json; charset=utf-8";

/// What a ROA request is signed over.
#[derive(Debug, Clone)]
pub struct RoaRequest<'a, K = String, V = String> {
    pub method: &'a str,
    /// The decoded path, e.g. `/clusters/c1`.
    pub path: &'a str,
    /// Decoded query parameters.
    pub query: &'a [(String, String)],
    /// Every header to send, as `(name, value)` pairs; must hold `accept`, `date`, and for a
    /// body `content-type` and `content-md5`. Lower-case names sorted by name (as
    /// [`base_headers`] and a `BTreeMap` give them) are signed without copying; any other
    /// order or case is normalised first.
    pub headers: &'a [(K, V)],
}

/// The headers of a ROA request the gateway signs, sorted by (lower-case) name. Names and most
/// values are borrowed, so building them costs one vector and the Content-MD5 rather than two
/// strings per header.
pub type Headers<'a> = Vec<(Cow<'a, str>, Cow<'a, str>)>;

/// The common headers of a signed ROA request, before the signature, sorted by name.
/// `extra_acs_headers` (a profile's fixed `x-acs-*` headers) are added, replacing a common
/// header of the same name.
#[allow(clippy::too_many_arguments)]
pub fn base_headers<'a>(
    api_version: &'a str,
    region: &'a str,
    date: &'a str,
    nonce: &'a str,
    body: Option<&[u8]>,
    key: &'a SigningKey,
    extra_acs_headers: &'a BTreeMap<String, String>,
) -> Headers<'a> {
    let mut h: Headers<'a> = Vec::with_capacity(11 + extra_acs_headers.len());
    let mut put = |name: &'static str, value: Cow<'a, str>| h.push((Cow::Borrowed(name), value));
    // In name order, so no sorting is needed.
    put("accept", Cow::Borrowed(ACCEPT));
    if let Some(body) = body {
        put("content-md5", Cow::Owned(content_md5(body)));
        put("content-type", Cow::Borrowed(JSON_CONTENT_TYPE));
    }
    put("date", Cow::Borrowed(date));
    let token = key.security_token.as_ref();
    if token.is_some() {
        put("x-acs-accesskey-id", Cow::Borrowed(&key.access_key_id));
    }
    put("x-acs-region-id", Cow::Borrowed(region));
    if let Some(token) = token {
        put("x-acs-security-token", Cow::Borrowed(token.expose()));
    }
    put("x-acs-signature-method", Cow::Borrowed("HMAC-SHA1"));
    put("x-acs-signature-nonce", Cow::Borrowed(nonce));
    put("x-acs-signature-version", Cow::Borrowed("1.0"));
    put("x-acs-version", Cow::Borrowed(api_version));
    for (k, v) in extra_acs_headers {
        let name = if k.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(k.to_ascii_lowercase())
        } else {
            Cow::Borrowed(k.as_str())
        };
        match h.binary_search_by(|(n, _)| n.as_ref().cmp(&name)) {
            Ok(i) => h[i].1 = Cow::Borrowed(v.as_str()),
            Err(i) => h.insert(i, (name, Cow::Borrowed(v.as_str()))),
        }
    }
    h
}

/// Base64 of the MD5 of the exact body bytes.
pub fn content_md5(body: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Md5::digest(body))
}

/// The string the signature is computed over.
pub fn string_to_sign<K, V>(req: &RoaRequest<'_, K, V>) -> String
where
    K: AsRef<str>,
    V: AsRef<str>,
{
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|(k, _)| k.as_ref().eq_ignore_ascii_case(name))
            .map_or("", |(_, v)| v.as_ref())
    };
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
pub fn canonicalized_headers<K, V>(headers: &[(K, V)]) -> String
where
    K: AsRef<str>,
    V: AsRef<str>,
{
    let mut s = String::new();
    write_canonicalized_headers(&mut s, headers);
    s
}

fn write_canonicalized_headers<K, V>(s: &mut String, headers: &[(K, V)])
where
    K: AsRef<str>,
    V: AsRef<str>,
{
    // The common case (lower-case names in order, as `base_headers` builds them) is written in
    // one pass; anything else is undone and normalised below.
    let start = s.len();
    let mut previous = "";
    let in_order = headers.iter().all(|(k, v)| {
        let k = k.as_ref();
        if k < previous || k.bytes().any(|b| b.is_ascii_uppercase()) {
            return false;
        }
        previous = k;
        if k.starts_with("x-acs-") {
            s.push_str(k);
            s.push(':');
            push_clean_value(s, v.as_ref());
            s.push('\n');
        }
        true
    });
    if in_order {
        return;
    }
    s.truncate(start);
    let mut acs: Vec<(String, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_ref().to_ascii_lowercase(), v.as_ref()))
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
    // Nearly every value has no space or control byte at all: one scan, no trimming.
    if !v.bytes().any(|b| b <= b' ') {
        s.push_str(v);
        return;
    }
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
pub fn signature<K, V>(req: &RoaRequest<'_, K, V>, key: &SigningKey) -> String
where
    K: AsRef<str>,
    V: AsRef<str>,
{
    let mut out = String::with_capacity(28);
    write_signature(&mut out, req, key);
    out
}

/// The `Authorization` header value: `acs <AccessKeyId>:<signature>`, written into one buffer.
pub fn authorization<K, V>(req: &RoaRequest<'_, K, V>, key: &SigningKey) -> String
where
    K: AsRef<str>,
    V: AsRef<str>,
{
    let mut out = String::with_capacity(4 + key.access_key_id.len() + 1 + 28);
    out.push_str("acs ");
    out.push_str(&key.access_key_id);
    out.push(':');
    write_signature(&mut out, req, key);
    out
}

/// The `Authorization` header value and the string to sign it was computed over.
pub fn sign<K, V>(req: &RoaRequest<'_, K, V>, key: &SigningKey) -> (String, String)
where
    K: AsRef<str>,
    V: AsRef<str>,
{
    let string_to_sign = string_to_sign(req);
    let mut out = String::with_capacity(4 + key.access_key_id.len() + 1 + 28);
    out.push_str("acs ");
    out.push_str(&key.access_key_id);
    out.push(':');
    write_signature_of(&mut out, &string_to_sign, key);
    (out, string_to_sign)
}

fn write_signature<K, V>(out: &mut String, req: &RoaRequest<'_, K, V>, key: &SigningKey)
where
    K: AsRef<str>,
    V: AsRef<str>,
{
    write_signature_of(out, &string_to_sign(req), key);
}

fn write_signature_of(out: &mut String, string_to_sign: &str, key: &SigningKey) {
    let mut mac = key.roa_mac();
    mac.update(string_to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode_string(mac.finalize().into_bytes(), out);
}

#[cfg(test)]
mod tests;
