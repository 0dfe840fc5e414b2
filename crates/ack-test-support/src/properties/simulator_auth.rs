//! The simulator's signature verification (`simulator::KeyStore::verify_roa` for V1 and V3
//! `Authorization`, and `verify_rpc`).
//!
//! Input: a mode, then either any request (method, path, query, headers drawn from the ones
//! verification reads, body, clock) or the parts of a request that is signed as the gateway
//! signs it and then possibly altered. Properties: no panic; a request signed with a known key
//! at the simulator's time verifies, in each style and signature version.

use super::inputs::{short_bytes, short_text, string, word, ALNUM, LOWER_ALNUM};
use super::Unstructured;
use ack_gateway::secret::Secret;
use ack_gateway::signer::rpc::RFC3986;
use ack_gateway::signer::{roa, rpc, v3, SigningKey};
use ack_gateway::simulator::{KeyStore, KnownKey};
use percent_encoding::utf8_percent_encode;
use std::collections::BTreeMap;
use time::OffsetDateTime;

const KEY_ID: &str = "LTAIfuzzKey0001";
const STS_KEY_ID: &str = "STS.fuzzKey0002";
const SECRET: &str = "fuzz-secret-0123456789";
const TOKEN: &str = "fuzz-token-0123456789";
const ACCOUNT: &str = "1000000000000001";

const HEADERS: &[&str] = &[
    "authorization",
    "date",
    "content-md5",
    "content-type",
    "host",
    "x-acs-signature-method",
    "x-acs-signature-version",
    "x-acs-signature-nonce",
    "x-acs-version",
    "x-acs-security-token",
    "x-acs-action",
    "x-acs-date",
    "x-acs-content-sha256",
    "x-acs-region-id",
];

const PARAMS: &[&str] = &[
    "Signature",
    "AccessKeyId",
    "SignatureMethod",
    "SignatureVersion",
    "SignatureNonce",
    "Timestamp",
    "SecurityToken",
    "Action",
];

fn keys() -> KeyStore {
    let keys = KeyStore::default();
    keys.add(
        KEY_ID.to_string(),
        KnownKey {
            secret: Secret::new(SECRET),
            account: ACCOUNT.to_string(),
            sts: None,
        },
    );
    keys.add(
        STS_KEY_ID.to_string(),
        KnownKey {
            secret: Secret::new(SECRET),
            account: ACCOUNT.to_string(),
            sts: Some((
                Secret::new(TOKEN),
                OffsetDateTime::now_utc() + time::Duration::days(365),
            )),
        },
    );
    keys
}

pub fn check(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let _ = check_unstructured(&mut u);
}

fn check_unstructured(u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    let now = OffsetDateTime::from_unix_timestamp(1_450_268_418 + i64::from(u.arbitrary::<u32>()?))
        .expect("a time");
    match u.arbitrary::<u8>()? % 4 {
        0 => any_request(u, now),
        1 => signed_roa(u, now, false),
        2 => signed_roa(u, now, true),
        _ => signed_rpc(u, now),
    }
}

/// Anything: no panic.
fn any_request(u: &mut Unstructured<'_>, now: OffsetDateTime) -> arbitrary::Result<()> {
    let keys = keys();
    let method = short_text(u)?;
    let path = string(u)?;
    let mut query = Vec::new();
    for _ in 0..u.arbitrary::<u8>()? % 4 {
        query.push((short_text(u)?, short_text(u)?));
    }
    let mut headers = BTreeMap::new();
    for _ in 0..u.arbitrary::<u8>()? % 12 {
        let name = HEADERS[usize::from(u.arbitrary::<u8>()?) % HEADERS.len()];
        let value = match (name, u.arbitrary::<u8>()? % 4) {
            ("authorization", 0) => format!("acs {}:{}", KEY_ID, short_text(u)?),
            ("authorization", 1) => format!(
                "ACS3-HMAC-SHA256 Credential={},SignedHeaders={},Signature={}",
                STS_KEY_ID,
                short_text(u)?,
                short_text(u)?
            ),
            _ => short_text(u)?,
        };
        headers.insert(name.to_string(), value);
    }
    let body = short_bytes(u)?;
    let _ = keys.verify_roa(&method, &path, &query, &headers, body, now);
    let mut params = Vec::new();
    for _ in 0..u.arbitrary::<u8>()? % 10 {
        let name = PARAMS[usize::from(u.arbitrary::<u8>()?) % PARAMS.len()];
        let value = match (name, u.arbitrary::<u8>()? % 2) {
            ("AccessKeyId", 0) => KEY_ID.to_string(),
            ("SignatureMethod", 0) => "HMAC-SHA1".to_string(),
            _ => short_text(u)?,
        };
        params.push((name.to_string(), value));
    }
    let _ = keys.verify_rpc(&method, &params, now);
    Ok(())
}

fn key(sts: bool) -> SigningKey {
    if sts {
        SigningKey::new(STS_KEY_ID, Secret::new(SECRET), Some(Secret::new(TOKEN)))
    } else {
        SigningKey::new(KEY_ID, Secret::new(SECRET), None)
    }
}

/// A ROA request signed V1 or V3 at `now`: it verifies; altered, it does not panic.
fn signed_roa(
    u: &mut Unstructured<'_>,
    now: OffsetDateTime,
    v3_signed: bool,
) -> arbitrary::Result<()> {
    let keys = keys();
    let key = key(u.arbitrary::<bool>()?);
    let method = *u.choose(&["GET", "POST", "PUT", "DELETE"])?;
    let path = format!("/{}", string(u)?);
    let raw_path = utf8_percent_encode(&path, RFC3986).to_string();
    let mut query: Vec<(String, String)> = Vec::new();
    for _ in 0..u.arbitrary::<u8>()? % 4 {
        let k = string(u)?;
        if !query.iter().any(|(q, _)| *q == k) {
            query.push((k, string(u)?));
        }
    }
    let body = if u.arbitrary::<bool>()? {
        Some(short_bytes(u)?.to_vec())
    } else {
        None
    };
    let nonce = word(u, ALNUM, 1, 36)?;
    let mut extra = BTreeMap::new();
    for _ in 0..u.arbitrary::<u8>()? % 3 {
        extra.insert(
            format!("x-acs-{}", word(u, LOWER_ALNUM, 1, 10)?),
            short_text(u)?,
        );
    }
    let no_extra = BTreeMap::new();
    let mut headers: BTreeMap<String, String> = if v3_signed {
        let date = now
            .format(time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
            ))
            .expect("a date");
        let inputs = v3::HeaderInputs {
            host: "cs.cn-hangzhou.aliyuncs.com",
            action: "DescribeClustersV1",
            version: "2015-12-15",
            date: &date,
            nonce: &nonce,
            body: body.as_deref(),
        };
        // Extra headers may not replace the ones verification checks.
        let base = v3::base_headers(inputs, &key, &no_extra);
        extra.retain(|k, _| !base.iter().any(|(n, _)| n == k));
        let headers = v3::base_headers(inputs, &key, &extra);
        let signed = v3::sign(
            &v3::V3Request {
                method,
                path: &raw_path,
                query: &query,
                headers: &headers,
            },
            &key,
        );
        let mut headers: BTreeMap<String, String> = headers.into_iter().collect();
        headers.insert("authorization".into(), signed.authorization);
        headers
    } else {
        let date = httpdate::fmt_http_date(now.into());
        let headers = |extra| {
            roa::base_headers(
                "2015-12-15",
                "cn-hangzhou",
                &date,
                &nonce,
                body.as_deref(),
                &key,
                extra,
            )
        };
        let base = headers(&no_extra);
        extra.retain(|k, _| !base.iter().any(|(n, _)| n == k));
        let headers = headers(&extra);
        let req = roa::RoaRequest {
            method,
            path: &path,
            query: &query,
            headers: &headers,
        };
        let authorization = roa::authorization(&req, &key);
        let mut headers: BTreeMap<String, String> = headers
            .into_iter()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        headers.insert("authorization".into(), authorization);
        headers
    };
    let body = body.unwrap_or_default();
    // Altered: a header's value replaced, a header dropped, or the body changed.
    if u.arbitrary::<bool>()? {
        let names: Vec<String> = headers.keys().cloned().collect();
        let name = u.choose(&names)?.clone();
        match u.arbitrary::<u8>()? % 3 {
            0 => {
                headers.insert(name, short_text(u)?);
            }
            1 => {
                headers.remove(&name);
            }
            _ => {
                let other = short_bytes(u)?;
                let _ = keys.verify_roa(method, &raw_path, &query, &headers, other, now);
                return Ok(());
            }
        }
        let _ = keys.verify_roa(method, &raw_path, &query, &headers, &body, now);
        return Ok(());
    }
    let verified = keys.verify_roa(method, &raw_path, &query, &headers, &body, now);
    assert_eq!(
        verified.as_ref().map_err(|e| (&e.code, &e.message)),
        Ok(&ACCOUNT.to_string()),
        "a request signed {} was refused",
        if v3_signed { "V3" } else { "V1" }
    );
    Ok(())
}

/// An RPC request signed at `now` verifies; altered, it does not panic.
fn signed_rpc(u: &mut Unstructured<'_>, now: OffsetDateTime) -> arbitrary::Result<()> {
    let keys = keys();
    let key = key(u.arbitrary::<bool>()?);
    let method = *u.choose(&["GET", "POST"])?;
    let timestamp = now
        .format(&time::format_description::well_known::Rfc3339)
        .expect("a time");
    let nonce = word(u, ALNUM, 1, 36)?;
    let mut params = rpc::common_params("AssumeRole", "2015-04-01", &timestamp, &nonce, &key);
    for _ in 0..u.arbitrary::<u8>()? % 4 {
        let k = string(u)?;
        if k != "Signature" && !params.iter().any(|(n, _)| *n == k) {
            params.push((k, string(u)?));
        }
    }
    let signature = rpc::signature(method, &params, &key);
    params.push(("Signature".to_string(), signature));
    if u.arbitrary::<bool>()? {
        let i = u.choose_index(params.len())?;
        params[i].1 = short_text(u)?;
        let _ = keys.verify_rpc(method, &params, now);
        return Ok(());
    }
    let verified = keys.verify_rpc(method, &params, now);
    assert_eq!(
        verified.as_ref().map_err(|e| (&e.code, &e.message)),
        Ok(&ACCOUNT.to_string()),
        "a request signed RPC-style was refused"
    );
    Ok(())
}

/// A signed request of each kind, and each header listed with an empty value.
pub fn seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for mode in 0..4u8 {
        for sts in 0..2u8 {
            out.push(vec![
                0, 0, 0, 0, mode, sts, 0, 0, 1, 1, 0, 0, 4, b'n', b'o', b'n', b'c',
            ]);
        }
    }
    let mut all = vec![0, 0, 0, 0, 0, 3, b'G', b'E', b'T', 0, 1, 0, 11];
    for i in 0..11u8 {
        all.extend([i, 2, 0]);
    }
    out.push(all);
    out
}
