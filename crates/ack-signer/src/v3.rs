//! ROA signature V3, `ACS3-HMAC-SHA256`, as today's official SDKs compute it:
//!
//! ```text
//! CanonicalRequest = METHOD \n Path \n CanonicalQuery \n CanonicalHeaders \n
//!                    SignedHeaders \n hex(SHA-256(body))
//! StringToSign     = ACS3-HMAC-SHA256 \n hex(SHA-256(CanonicalRequest))
//! Authorization: ACS3-HMAC-SHA256 Credential=<AK>,SignedHeaders=<list>,Signature=<hex HMAC-SHA256>
//! ```
//! The path is signed as sent (path parameters already percent-encoded); the canonical query
//! is every parameter sorted by name, name and value percent-encoded RFC 3986 style, `k=` for an
//! empty value; the canonical headers are `host`, `content-type` and every `x-acs-*` header,
//! lower-case, trimmed, sorted, `name:value\n` each; the body's hash is also sent as
//! `x-acs-content-sha256`. No `Date` and no `Content-MD5`.

use super::rpc::percent_encode;
use super::SigningKey;
use hmac::Mac as _;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

pub const ALGORITHM: &str = "ACS3-HMAC-SHA256";
/// Hex SHA-256 of no bytes: the payload hash of a request without a body.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
pub const JSON_CONTENT_TYPE: &str = super::roa::JSON_CONTENT_TYPE;

/// What a V3 request is signed over.
#[derive(Debug, Clone)]
pub struct V3Request<'a, K = String, V = String> {
    pub method: &'a str,
    /// The path as sent, percent-encoding included.
    pub path: &'a str,
    /// Decoded query parameters.
    pub query: &'a [(String, String)],
    /// Every header to send (names in any case); `x-acs-content-sha256` must be among them.
    pub headers: &'a [(K, V)],
}

/// The inputs of the headers the gateway sends with a V3 request.
#[derive(Debug, Clone, Copy)]
pub struct HeaderInputs<'a> {
    pub host: &'a str,
    pub action: &'a str,
    pub version: &'a str,
    /// `YYYY-MM-DDTHH:MM:SSZ`.
    pub date: &'a str,
    pub nonce: &'a str,
    pub body: Option<&'a [u8]>,
}

/// The headers of a V3 request before its `Authorization`, sorted by name: `accept`, `host`,
/// `content-type` (with a body), `x-acs-action`, `x-acs-version`, `x-acs-date`,
/// `x-acs-signature-nonce`, `x-acs-content-sha256`, for STS triples `x-acs-accesskey-id` and
/// `x-acs-security-token`, and a profile's fixed `x-acs-*` headers.
pub fn base_headers(
    inputs: HeaderInputs<'_>,
    key: &SigningKey,
    extra_acs_headers: &BTreeMap<String, String>,
) -> Vec<(String, String)> {
    let mut h: BTreeMap<String, String> = BTreeMap::new();
    let mut put = |name: &str, value: &str| h.insert(name.to_string(), value.to_string());
    put("accept", super::roa::ACCEPT);
    put("host", inputs.host);
    if inputs.body.is_some() {
        put("content-type", JSON_CONTENT_TYPE);
    }
    put("x-acs-action", inputs.action);
    put("x-acs-version", inputs.version);
    put("x-acs-date", inputs.date);
    put("x-acs-signature-nonce", inputs.nonce);
    put(
        "x-acs-content-sha256",
        &inputs
            .body
            .map_or_else(|| EMPTY_SHA256.to_string(), sha256_hex),
    );
    if let Some(token) = key.security_token() {
        put("x-acs-accesskey-id", key.access_key_id());
        put("x-acs-security-token", token.expose());
    }
    for (k, v) in extra_acs_headers {
        put(&k.to_ascii_lowercase(), v);
    }
    h.into_iter().collect()
}

/// Hex SHA-256 of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    s
}

/// Whether a header is signed: `host`, `content-type` and every `x-acs-*`.
pub fn is_signed(lower_name: &str) -> bool {
    lower_name == "host" || lower_name == "content-type" || lower_name.starts_with("x-acs-")
}

/// The signed headers, lower-cased, values trimmed, sorted by name.
fn signed_headers<K: AsRef<str>, V: AsRef<str>>(headers: &[(K, V)]) -> Vec<(String, &str)> {
    let mut signed: Vec<(String, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_ref().to_ascii_lowercase(), v.as_ref().trim()))
        .filter(|(k, _)| is_signed(k))
        .collect();
    signed.sort();
    signed
}

/// The query sorted by name, RFC 3986 percent-encoded, `k=v` joined by `&` (`k=` when empty).
pub fn canonical_query(query: &[(String, String)]) -> String {
    let mut encoded: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| (percent_encode(k), percent_encode(v)))
        .collect();
    encoded.sort();
    let mut s = String::new();
    for (i, (k, v)) in encoded.iter().enumerate() {
        if i > 0 {
            s.push('&');
        }
        s.push_str(k);
        s.push('=');
        s.push_str(v);
    }
    s
}

/// The `SignedHeaders` list: the signed headers' names, sorted, joined by `;`.
pub fn signed_header_list<K: AsRef<str>, V: AsRef<str>>(headers: &[(K, V)]) -> String {
    signed_headers(headers)
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";")
}

/// The canonical request.
pub fn canonical_request<K: AsRef<str>, V: AsRef<str>>(req: &V3Request<'_, K, V>) -> String {
    let headers = signed_headers(req.headers);
    let payload = headers
        .iter()
        .find(|(k, _)| k == "x-acs-content-sha256")
        .map_or(EMPTY_SHA256, |(_, v)| v);
    let mut s = String::with_capacity(512);
    s.push_str(req.method);
    s.push('\n');
    s.push_str(req.path);
    s.push('\n');
    s.push_str(&canonical_query(req.query));
    s.push('\n');
    for (k, v) in &headers {
        s.push_str(k);
        s.push(':');
        s.push_str(v);
        s.push('\n');
    }
    s.push('\n');
    let names: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
    s.push_str(&names.join(";"));
    s.push('\n');
    s.push_str(payload);
    s
}

/// `ACS3-HMAC-SHA256\n` + hex SHA-256 of the canonical request.
pub fn string_to_sign(canonical_request: &str) -> String {
    format!("{ALGORITHM}\n{}", sha256_hex(canonical_request.as_bytes()))
}

/// Hex HMAC-SHA256 of the string to sign, keyed with the secret itself.
pub fn signature(string_to_sign: &str, key: &SigningKey) -> String {
    let mut mac = key.v3_mac();
    mac.update(string_to_sign.as_bytes());
    hex(&mac.finalize().into_bytes())
}

/// A signed V3 request: the `Authorization` value, and what it was computed over.
#[derive(Clone)]
pub struct V3Signature {
    pub authorization: String,
    pub canonical_request: String,
    pub string_to_sign: String,
}

/// Signs a request.
pub fn sign<K: AsRef<str>, V: AsRef<str>>(
    req: &V3Request<'_, K, V>,
    key: &SigningKey,
) -> V3Signature {
    let canonical_request = canonical_request(req);
    let string_to_sign = string_to_sign(&canonical_request);
    let authorization = format!(
        "{ALGORITHM} Credential={},SignedHeaders={},Signature={}",
        key.access_key_id(),
        signed_header_list(req.headers),
        signature(&string_to_sign, key)
    );
    V3Signature {
        authorization,
        canonical_request,
        string_to_sign,
    }
}

/// The parts of a V3 `Authorization` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization<'a> {
    pub credential: &'a str,
    pub signed_headers: Vec<&'a str>,
    pub signature: &'a str,
}

/// Parses `ACS3-HMAC-SHA256 Credential=…,SignedHeaders=…,Signature=…`.
pub fn parse_authorization(value: &str) -> Option<Authorization<'_>> {
    let rest = value.strip_prefix(ALGORITHM)?.strip_prefix(' ')?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=')?;
        match k {
            "Credential" => credential = Some(v),
            "SignedHeaders" => signed = Some(v),
            "Signature" => signature = Some(v),
            _ => return None,
        }
    }
    Some(Authorization {
        credential: credential?,
        signed_headers: signed?.split(';').collect(),
        signature: signature?,
    })
}

#[cfg(test)]
mod tests;
