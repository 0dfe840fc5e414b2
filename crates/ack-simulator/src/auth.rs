//! Signature verification as the cloud does it: ROA (`Authorization: acs AK:Sig` over the
//! canonical headers and resource) and RPC (`Signature` over the sorted parameters), with the
//! 15-minute clock window, nonce replay protection, Content-MD5, and STS tokens.

use super::ApiError;
use crate::secret::Secret;
use crate::signer::{roa, rpc, v3, SigningKey};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use time::OffsetDateTime;

/// How far a request's clock may be from ours.
pub const CLOCK_WINDOW: Duration = Duration::from_secs(15 * 60);

/// A key the simulator accepts.
#[derive(Clone, Debug)]
pub struct KnownKey {
    pub secret: Secret,
    /// The account (UID) the key belongs to; resources are visible to their account only.
    pub account: String,
    /// For STS keys: the token that must accompany them, and when they stop working.
    pub sts: Option<(Secret, OffsetDateTime)>,
}

/// Nonces seen within the clock window, oldest first, so expiry costs O(1) per request.
#[derive(Default)]
struct Nonces {
    seen: std::collections::HashSet<String>,
    order: std::collections::VecDeque<(Instant, String)>,
}

impl Nonces {
    /// Records a nonce; false if it was seen within the clock window.
    fn fresh(&mut self, nonce: &str, now: Instant) -> bool {
        while let Some((at, _)) = self.order.front() {
            if now.duration_since(*at) < CLOCK_WINDOW {
                break;
            }
            if let Some((_, old)) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        if !self.seen.insert(nonce.to_string()) {
            return false;
        }
        self.order.push_back((now, nonce.to_string()));
        true
    }
}

#[derive(Default)]
pub struct KeyStore {
    /// Each key with its signing key, built once (its MAC key schedule included), not per
    /// request verified.
    keys: Mutex<HashMap<String, (KnownKey, SigningKey)>>,
    nonces: Mutex<Nonces>,
}

impl KeyStore {
    pub fn add(&self, id: String, key: KnownKey) {
        let signing = SigningKey::new(id.clone(), key.secret.clone(), None);
        self.keys
            .lock()
            .expect("key store lock")
            .insert(id, (key, signing));
    }

    /// Every STS triple issued: (AccessKeyId, secret, token). For tests that check no
    /// credential leaks.
    pub fn issued_sts(&self) -> Vec<(String, Secret, Secret)> {
        self.keys
            .lock()
            .expect("key store lock")
            .iter()
            .filter_map(|(id, (k, _))| {
                k.sts
                    .as_ref()
                    .map(|(token, _)| (id.clone(), k.secret.clone(), token.clone()))
            })
            .collect()
    }

    fn lookup(&self, id: &str) -> Option<(KnownKey, SigningKey)> {
        self.keys.lock().expect("key store lock").get(id).cloned()
    }

    /// Records a nonce; false if it was seen within the clock window.
    fn fresh_nonce(&self, nonce: &str) -> bool {
        self.nonces
            .lock()
            .expect("nonce lock")
            .fresh(nonce, Instant::now())
    }

    /// A ROA request's nonce must not have been seen within the clock window.
    fn check_nonce(&self, nonce: &str) -> Result<(), ApiError> {
        if self.fresh_nonce(nonce) {
            Ok(())
        } else {
            Err(ApiError::new(
                400,
                "SignatureNonceUsed",
                "The signature nonce has been used.",
            ))
        }
    }

    /// Resolves the access key, checking an STS key's token and expiry.
    fn key_for(&self, id: &str, token: Option<&str>) -> Result<(SigningKey, String), ApiError> {
        let (known, key) = self.lookup(id).ok_or_else(|| {
            ApiError::new(
                404,
                "InvalidAccessKeyId.NotFound",
                "Specified access key is not found.",
            )
        })?;
        if let Some((expected, expires)) = &known.sts {
            let Some(token) = token else {
                return Err(ApiError::new(
                    400,
                    "InvalidSecurityToken.MissingParameter",
                    "The security token is required for an STS access key.",
                ));
            };
            if token != expected.expose() {
                return Err(ApiError::new(
                    400,
                    "InvalidSecurityToken.Mismatch",
                    "The security token does not match the access key.",
                ));
            }
            if *expires <= OffsetDateTime::now_utc() {
                return Err(ApiError::new(
                    400,
                    "InvalidSecurityToken.Expired",
                    "The security token has expired.",
                ));
            }
        }
        Ok((key, known.account))
    }

    /// Verifies a ROA request, V1 or V3 by its `Authorization`, and returns the caller's
    /// account. `raw_path` is the path as received (prefix and percent-encoding included);
    /// `now` is the simulator's clock.
    pub fn verify_roa(
        &self,
        method: &str,
        raw_path: &str,
        query: &[(String, String)],
        headers: &BTreeMap<String, String>,
        body: &[u8],
        now: OffsetDateTime,
    ) -> Result<String, ApiError> {
        if headers
            .get("authorization")
            .is_some_and(|a| a.starts_with(v3::ALGORITHM))
        {
            return self.verify_v3(method, raw_path, query, headers, body, now);
        }
        let path = super::routes::decode(raw_path);
        let path = path.as_str();
        let auth = headers.get("authorization").ok_or_else(|| {
            ApiError::new(
                400,
                "IncompleteSignature",
                "The Authorization header is missing.",
            )
        })?;
        let (id, sig) = auth
            .strip_prefix("acs ")
            .and_then(|rest| rest.rsplit_once(':'))
            .ok_or_else(|| {
                ApiError::new(
                    400,
                    "IncompleteSignature",
                    "The Authorization header is malformed.",
                )
            })?;
        for (name, want) in [
            ("x-acs-signature-method", Some("HMAC-SHA1")),
            ("x-acs-signature-version", Some("1.0")),
            ("x-acs-signature-nonce", None),
            ("x-acs-version", None),
            ("date", None),
        ] {
            match (headers.get(name), want) {
                (None, _) => {
                    return Err(ApiError::new(
                        400,
                        "MissingParameter",
                        format!("The header {name} is required."),
                    ))
                }
                (Some(v), Some(want)) if v != want => {
                    return Err(ApiError::new(
                        400,
                        "InvalidParameter",
                        format!("The header {name} must be {want}."),
                    ))
                }
                _ => {}
            }
        }
        check_clock_rfc1123(&headers["date"], now)?;
        if !body.is_empty() {
            let want = roa::content_md5(body);
            if headers.get("content-md5") != Some(&want) {
                return Err(ApiError::new(
                    400,
                    "InvalidContentMD5",
                    "Content-MD5 does not match the body.",
                ));
            }
        }
        let (key, account) =
            self.key_for(id, headers.get("x-acs-security-token").map(String::as_str))?;
        let pairs: Vec<(&String, &String)> = headers.iter().collect();
        let (expected, string_to_sign) = roa::sign(
            &roa::RoaRequest {
                method,
                path,
                query,
                headers: &pairs,
            },
            &key,
        );
        if expected.rsplit_once(':').map(|(_, s)| s) != Some(sig) {
            return Err(signature_mismatch(&format!(
                " server string to sign is:{string_to_sign}"
            )));
        }
        self.check_nonce(&headers["x-acs-signature-nonce"])?;
        Ok(account)
    }

    /// Verifies a V3 (`ACS3-HMAC-SHA256`) request: the payload hash, `x-acs-date` within the
    /// clock window, every header that must be signed in `SignedHeaders`, the STS token, the
    /// signature over the canonical request, and the nonce.
    fn verify_v3(
        &self,
        method: &str,
        raw_path: &str,
        query: &[(String, String)],
        headers: &BTreeMap<String, String>,
        body: &[u8],
        now: OffsetDateTime,
    ) -> Result<String, ApiError> {
        let incomplete = |m: String| ApiError::new(400, "IncompleteSignature", m);
        let auth = v3::parse_authorization(&headers["authorization"])
            .ok_or_else(|| incomplete("The Authorization header is malformed.".into()))?;
        for name in [
            "host",
            "x-acs-action",
            "x-acs-version",
            "x-acs-date",
            "x-acs-signature-nonce",
            "x-acs-content-sha256",
        ] {
            if !headers.contains_key(name) {
                return Err(ApiError::new(
                    400,
                    "MissingParameter",
                    format!("The header {name} is required."),
                ));
            }
        }
        let date = time::PrimitiveDateTime::parse(
            &headers["x-acs-date"],
            &time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z"),
        )
        .map_err(|_| {
            ApiError::new(
                400,
                "InvalidTimeStamp.Format",
                "x-acs-date must be YYYY-MM-DDTHH:MM:SSZ.",
            )
        })?;
        check_clock(date.assume_utc(), now)?;
        if v3::sha256_hex(body) != headers["x-acs-content-sha256"] {
            return Err(ApiError::new(
                400,
                "InvalidParameter.ContentSHA256",
                "x-acs-content-sha256 does not match the body.",
            ));
        }
        for name in headers.keys().filter(|n| v3::is_signed(n)) {
            if !auth.signed_headers.contains(&name.as_str()) {
                return Err(incomplete(format!("The header {name} is not signed.")));
            }
        }
        let mut signed = Vec::with_capacity(auth.signed_headers.len());
        for name in &auth.signed_headers {
            let value = headers.get(*name).ok_or_else(|| {
                incomplete(format!("The signed header {name} is not in the request."))
            })?;
            signed.push((name.to_string(), value.clone()));
        }
        let (key, account) = self.key_for(
            auth.credential,
            headers.get("x-acs-security-token").map(String::as_str),
        )?;
        let canonical = v3::canonical_request(&v3::V3Request {
            method,
            path: raw_path,
            query,
            headers: &signed,
        });
        let string_to_sign = v3::string_to_sign(&canonical);
        if v3::signature(&string_to_sign, &key) != auth.signature {
            return Err(signature_mismatch(&format!(
                " server string to sign is:{string_to_sign} server canonical request is:{canonical}"
            )));
        }
        self.check_nonce(&headers["x-acs-signature-nonce"])?;
        Ok(account)
    }

    /// Verifies an RPC request from all its parameters.
    pub fn verify_rpc(
        &self,
        method: &str,
        params: &[(String, String)],
        now: OffsetDateTime,
    ) -> Result<String, ApiError> {
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let require = |k: &str| {
            get(k).ok_or_else(|| {
                ApiError::new(
                    400,
                    "MissingParameter",
                    format!("{k} is mandatory for this action."),
                )
            })
        };
        let sig = require("Signature")?;
        let id = require("AccessKeyId")?;
        if require("SignatureMethod")? != "HMAC-SHA1" {
            return Err(ApiError::new(
                400,
                "InvalidParameter",
                "SignatureMethod must be HMAC-SHA1.",
            ));
        }
        require("SignatureVersion")?;
        let nonce = require("SignatureNonce")?;
        let ts = require("Timestamp")?;
        let when = OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339)
            .map_err(|_| {
                ApiError::new(
                    400,
                    "InvalidTimeStamp.Format",
                    "Timestamp must be ISO 8601 UTC.",
                )
            })?;
        check_clock(when, now)?;
        let (key, account) = self.key_for(id, get("SecurityToken"))?;
        if rpc::signature(method, params, &key) != sig {
            return Err(signature_mismatch(""));
        }
        if !self.fresh_nonce(nonce) {
            return Err(ApiError::new(
                400,
                "SignatureNonceUsed",
                "The request signature nonce has been used.",
            ));
        }
        Ok(account)
    }
}

/// `SignatureDoesNotMatch`, quoting what the server signed as the cloud does (`quote`).
fn signature_mismatch(quote: &str) -> ApiError {
    ApiError::new(
        403,
        "SignatureDoesNotMatch",
        format!("The request signature does not conform to Aliyun standards.{quote}"),
    )
}

fn check_clock_rfc1123(date: &str, now: OffsetDateTime) -> Result<(), ApiError> {
    let t = httpdate::parse_http_date(date).map_err(|_| {
        ApiError::new(
            400,
            "InvalidTimeStamp.Format",
            "Date must be an RFC 1123 GMT date.",
        )
    })?;
    check_clock(OffsetDateTime::from(t), now)
}

fn check_clock(when: OffsetDateTime, now: OffsetDateTime) -> Result<(), ApiError> {
    let skew = (now - when).unsigned_abs();
    if skew > CLOCK_WINDOW {
        return Err(ApiError::new(
            400,
            "InvalidTimeStamp.Expired",
            "The request time is more than 15 minutes away from the server time.",
        ));
    }
    Ok(())
}
