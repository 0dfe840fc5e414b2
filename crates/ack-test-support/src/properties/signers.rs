//! The signers (ROA V1, RPC, V3) and the signature diagnosis.
//!
//! Input: the parts of a request (key, method, path, query, `x-acs-*` headers, body, date,
//! nonce), then edits to what the server quotes. Properties: no panic; each signature is a
//! function of its input (the same twice; for ROA and V3 also whatever the headers' order and
//! case, for RPC and V3 whatever the parameters' order); the `Authorization` values agree with
//! the signatures and parse back (V3); and the diagnosis of a `SignatureDoesNotMatch` quoting
//! the gateway's own text is a secret mismatch, and no diagnosis ever contains the security
//! token, which is only in header values.

use super::inputs::{short_text, string, word, ALNUM, LOWER_ALNUM};
use super::Unstructured;
use ack_gateway::secret::Secret;
use ack_gateway::signer::diagnosis::{diagnose, Diagnosis, Signed};
use ack_gateway::signer::{roa, rpc, v3, SignatureVersion, SigningKey};
use std::collections::BTreeMap;

struct KeyParts {
    id: String,
    secret: String,
    token: Option<String>,
    method: String,
    path: String,
    query: Vec<(String, String)>,
    extra: BTreeMap<String, String>,
    body: Option<Vec<u8>>,
    date: String,
    nonce: String,
    region: String,
}

const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE"];
const HEADER_NAME: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-";

fn parts(u: &mut Unstructured<'_>) -> arbitrary::Result<KeyParts> {
    let id = word(u, ALNUM, 1, 24)?;
    let secret = string(u)?;
    let token = if u.ratio(1, 2)? {
        Some(word(u, ALNUM, 8, 40)?)
    } else {
        None
    };
    let method = if u.ratio(7, 8)? {
        u.choose(METHODS)?.to_string()
    } else {
        short_text(u)?
    };
    let path = string(u)?;
    let mut query = Vec::new();
    for _ in 0..u.int_in_range(0..=4)? {
        let key = string(u)?;
        if query.iter().any(|(k, _)| *k == key) {
            continue;
        }
        query.push((key, string(u)?));
    }
    let mut extra = BTreeMap::new();
    for _ in 0..u.int_in_range(0..=3)? {
        extra.insert(
            format!("x-acs-{}", word(u, HEADER_NAME, 1, 12)?),
            string(u)?,
        );
    }
    let body = if u.ratio(1, 2)? {
        Some(short_text(u)?.into_bytes())
    } else {
        None
    };
    Ok(KeyParts {
        id,
        secret,
        token,
        method,
        path,
        query,
        extra,
        body,
        date: short_text(u)?,
        nonce: short_text(u)?,
        region: short_text(u)?,
    })
}

pub fn check(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(p) = parts(&mut u) else {
        return;
    };
    let key = SigningKey::new(
        p.id.clone(),
        Secret::new(p.secret.clone()),
        p.token.clone().map(Secret::new),
    );
    check_roa(&p, &key);
    check_rpc(&p, &key);
    check_v3(&p, &key);
    let _ = check_diagnosis(&p, &mut u);
}

/// The headers the gateway signs a ROA V1 request with.
fn roa_headers<'a>(p: &'a KeyParts, key: &'a SigningKey) -> roa::Headers<'a> {
    roa::base_headers(
        "2015-12-15",
        &p.region,
        &p.date,
        &p.nonce,
        p.body.as_deref(),
        key,
        &p.extra,
    )
}

/// The headers the gateway signs a V3 request with.
fn v3_headers(p: &KeyParts, key: &SigningKey) -> Vec<(String, String)> {
    v3::base_headers(
        v3::HeaderInputs {
            host: "cs.cn-hangzhou.aliyuncs.com",
            action: "DescribeClustersV1",
            version: "2015-12-15",
            date: &p.date,
            nonce: &p.nonce,
            body: p.body.as_deref(),
        },
        key,
        &p.extra,
    )
}

/// The headers in reverse order with upper-case names: what a caller with its own header map
/// could pass.
fn scrambled<K: AsRef<str>, V: AsRef<str>>(headers: &[(K, V)]) -> Vec<(String, String)> {
    headers
        .iter()
        .rev()
        .map(|(k, v)| (k.as_ref().to_ascii_uppercase(), v.as_ref().to_string()))
        .collect()
}

fn check_roa(p: &KeyParts, key: &SigningKey) {
    let headers = roa_headers(p, key);
    let req = roa::RoaRequest {
        method: &p.method,
        path: &p.path,
        query: &p.query,
        headers: &headers,
    };
    let (authorization, string_to_sign) = roa::sign(&req, key);
    assert_eq!(
        roa::sign(&req, key),
        (authorization.clone(), string_to_sign.clone())
    );
    assert_eq!(roa::string_to_sign(&req), string_to_sign);
    assert_eq!(roa::authorization(&req, key), authorization);
    assert_eq!(
        format!("acs {}:{}", p.id, roa::signature(&req, key)),
        authorization
    );
    let other = scrambled(&headers);
    let req = roa::RoaRequest {
        method: &p.method,
        path: &p.path,
        query: &p.query,
        headers: &other,
    };
    assert_eq!(
        roa::string_to_sign(&req),
        string_to_sign,
        "header order or case changed the string to sign"
    );
}

fn check_rpc(p: &KeyParts, key: &SigningKey) {
    let mut params = rpc::common_params("AssumeRole", "2015-04-01", &p.date, &p.nonce, key);
    for (k, v) in &p.query {
        if k != "Signature" && !params.iter().any(|(n, _)| n == k) {
            params.push((k.clone(), v.clone()));
        }
    }
    let signature = rpc::signature(&p.method, &params, key);
    assert_eq!(rpc::signature(&p.method, &params, key), signature);
    let mut other = params.clone();
    other.reverse();
    other.push(("Signature".into(), signature.clone()));
    assert_eq!(
        rpc::signature(&p.method, &other, key),
        signature,
        "parameter order or the Signature parameter changed the signature"
    );
}

fn check_v3(p: &KeyParts, key: &SigningKey) {
    let headers = v3_headers(p, key);
    let req = v3::V3Request {
        method: &p.method,
        path: &p.path,
        query: &p.query,
        headers: &headers,
    };
    let signed = v3::sign(&req, key);
    let again = v3::sign(&req, key);
    assert_eq!(signed.authorization, again.authorization);
    assert_eq!(signed.canonical_request, again.canonical_request);
    assert_eq!(
        signed.string_to_sign,
        v3::string_to_sign(&signed.canonical_request)
    );
    let other_headers = scrambled(&headers);
    let mut other_query = p.query.clone();
    other_query.reverse();
    let other = v3::V3Request {
        method: &p.method,
        path: &p.path,
        query: &other_query,
        headers: &other_headers,
    };
    assert_eq!(
        v3::canonical_request(&other),
        signed.canonical_request,
        "header or parameter order or case changed the canonical request"
    );
    let parsed = v3::parse_authorization(&signed.authorization).expect("our own Authorization");
    assert_eq!(parsed.credential, p.id);
    assert_eq!(parsed.signature, v3::signature(&signed.string_to_sign, key));
    assert_eq!(
        parsed.signed_headers.join(";"),
        v3::signed_header_list(&headers)
    );
}

/// What the server quotes: the gateway's text with line edits (a header's value or a whole
/// line replaced, a line dropped, a header added, two lines swapped), or any text.
fn check_diagnosis(p: &KeyParts, u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    let token = p
        .token
        .clone()
        .unwrap_or_else(|| "STStoken0123456789".to_string());
    let key = SigningKey::new(
        p.id.clone(),
        Secret::new(p.secret.clone()),
        Some(Secret::new(token.clone())),
    );
    // The token must be in header values only (the method, path and query are the request's
    // own data, which a diagnosis may name).
    let in_request = [&p.method, &p.path]
        .into_iter()
        .chain(p.query.iter().flat_map(|(k, v)| [k, v]))
        .any(|s| s.contains(&token));
    if in_request {
        return Ok(());
    }
    let version = if u.ratio(1, 2)? {
        SignatureVersion::V1
    } else {
        SignatureVersion::V3
    };
    let (string_to_sign, canonical) = match version {
        SignatureVersion::V1 => {
            let headers = roa_headers(p, &key);
            let req = roa::RoaRequest {
                method: &p.method,
                path: &p.path,
                query: &p.query,
                headers: &headers,
            };
            (roa::string_to_sign(&req), None)
        }
        SignatureVersion::V3 => {
            let headers = v3_headers(p, &key);
            let signed = v3::sign(
                &v3::V3Request {
                    method: &p.method,
                    path: &p.path,
                    query: &p.query,
                    headers: &headers,
                },
                &key,
            );
            (signed.string_to_sign, Some(signed.canonical_request))
        }
    };
    let ours = Signed {
        version,
        string_to_sign: &string_to_sign,
        canonical_request: canonical.as_deref(),
    };
    let prefix = "The request signature does not conform to Aliyun standards.";
    let (message, edited) = if u.ratio(1, 8)? {
        (string(u)?, true)
    } else {
        let text = canonical.as_deref().unwrap_or(&string_to_sign);
        let mut lines: Vec<String> = text.split('\n').map(str::to_string).collect();
        let edits = u.int_in_range(0..=3)?;
        for _ in 0..edits {
            let i = u.choose_index(lines.len().max(1))?.min(lines.len());
            match u.int_in_range(0..=4)? {
                0 if i < lines.len() => {
                    let value = string(u)?;
                    let line = &mut lines[i];
                    match line.split_once(':') {
                        Some((name, _)) => *line = format!("{name}:{value}"),
                        None => *line = value,
                    }
                }
                1 if i < lines.len() => lines[i] = string(u)?,
                2 if i < lines.len() => {
                    lines.remove(i);
                }
                3 => lines.insert(
                    i,
                    format!("x-acs-{}:{}", word(u, LOWER_ALNUM, 1, 8)?, string(u)?),
                ),
                _ => {
                    let j = u.choose_index(lines.len().max(1))?;
                    if i < lines.len() && j < lines.len() {
                        lines.swap(i, j);
                    }
                }
            }
        }
        let theirs = lines.join("\n");
        let message = match &canonical {
            None => format!("{prefix} server string to sign is:{theirs}"),
            Some(_) => format!(
                "{prefix} server string to sign is:{} server canonical request is:{theirs}",
                v3::string_to_sign(&theirs)
            ),
        };
        (message, edits > 0)
    };
    // Whatever the edits wrote must not hold the token either.
    let ours_text = canonical.as_deref().unwrap_or(&string_to_sign);
    if message.matches(&token).count() > ours_text.matches(&token).count() {
        return Ok(());
    }
    let diagnosis = diagnose(&ours, &message);
    if !edited {
        assert_eq!(diagnosis, Diagnosis::SecretMismatch);
    }
    assert!(Diagnosis::LABELS.contains(&diagnosis.label()));
    assert!(
        !format!("{diagnosis:?}").contains(&token),
        "the token is in {diagnosis:?}"
    );
    Ok(())
}

/// One input per known-answer vector of `crates/ack-signer/vectors`: its strings (key, method,
/// path, query, headers, body) one after the other, for the fuzzer to recombine.
pub fn seeds() -> Vec<Vec<u8>> {
    let dir = super::inputs::repo_root().join("crates/ack-signer/vectors");
    let mut out = Vec::new();
    for file in ["roa-v1.json", "v3.json", "rpc.json"] {
        let text = std::fs::read_to_string(dir.join(file)).expect("vectors");
        let vectors: Vec<serde_json::Value> = serde_json::from_str(&text).expect("JSON");
        for v in vectors {
            let mut input = Vec::new();
            strings(&v, &mut input);
            out.push(input);
        }
    }
    out
}

fn strings(v: &serde_json::Value, out: &mut Vec<u8>) {
    match v {
        serde_json::Value::String(s) => {
            out.push(s.len().min(255) as u8);
            out.extend(s.bytes().take(255));
        }
        serde_json::Value::Array(items) => items.iter().for_each(|i| strings(i, out)),
        serde_json::Value::Object(map) => map.values().for_each(|i| strings(i, out)),
        _ => {}
    }
}
