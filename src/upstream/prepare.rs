//! Turns an unsigned HTTP call into a signed request for the service's style.

use super::{SignedOver, SignedRequest};
use crate::error::GatewayError;
use crate::secret::Secret;
use crate::signer::rpc::RFC3986;
use crate::signer::{new_nonce, roa, rpc, v3, SignatureVersion, SigningKey};
use crate::table::Operation;
use crate::translate::{HttpCall, InvalidField};
use percent_encoding::utf8_percent_encode;
use std::collections::BTreeMap;
use std::time::SystemTime;

/// Header values that carry a credential: hidden from `Debug` and never indexed by HPACK.
const SENSITIVE: [&str; 2] = ["authorization", "x-acs-security-token"];

fn header_map<'h>(
    headers: impl IntoIterator<Item = (&'h str, &'h str)>,
) -> Result<http::HeaderMap, GatewayError> {
    let mut map = http::HeaderMap::with_capacity(16);
    for (k, v) in headers {
        let name = http::HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| InvalidField::new(k, "not a valid header name"))?;
        let mut value = http::HeaderValue::from_str(v)
            .map_err(|_| InvalidField::new(k, "not a valid header value"))?;
        value.set_sensitive(SENSITIVE.contains(&k));
        map.insert(name, value);
    }
    Ok(map)
}

/// The host of a base URL, for error messages and `google.rpc.ErrorInfo.domain`.
///
/// Base URLs are the gateway's own (a configured endpoint already normalized by `url`, or a
/// default `https://{host}`), so the host is cut out of the authority without parsing the URL
/// again on every attempt; anything without a scheme is returned whole.
pub(crate) fn host_of(base: &str) -> String {
    let Some((_, rest)) = base.split_once("://") else {
        return base.to_string();
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if host_port.starts_with('[') {
        // An IPv6 literal keeps its brackets, as `url::Url::host_str` shows it.
        host_port.split_inclusive(']').next().unwrap_or(host_port)
    } else {
        host_port.split(':').next().unwrap_or(host_port)
    };
    host.to_string()
}

fn method(m: &str) -> Result<http::Method, GatewayError> {
    http::Method::from_bytes(m.as_bytes())
        .map_err(|_| GatewayError::Internal(format!("the table's HTTP method {m}")))
}

/// The authority (`host[:port]`) of a base URL as an HTTP client sends it in `Host`: without
/// user info, and without the scheme's default port.
pub(crate) fn authority_of(base: &str) -> String {
    let (scheme, rest) = base.split_once("://").unwrap_or(("https", base));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let default_port = if scheme.eq_ignore_ascii_case("http") {
        ":80"
    } else {
        ":443"
    };
    authority
        .strip_suffix(default_port)
        .unwrap_or(authority)
        .to_ascii_lowercase()
}

/// What a ROA call is: its endpoint, its parts and how it is signed.
pub struct RoaCall<'a> {
    pub base: &'a str,
    pub prefix: &'a str,
    pub call: &'a HttpCall,
    pub action: &'a str,
    pub version: &'a str,
    pub region: &'a str,
    pub acs_headers: &'a BTreeMap<String, String>,
    pub signature: SignatureVersion,
}

/// ROA, signed V1 or V3 as the profile says, at `now` (the upstream's clock as the gateway
/// estimates it).
pub fn roa(
    c: &RoaCall<'_>,
    key: &SigningKey,
    now: SystemTime,
) -> Result<SignedRequest, GatewayError> {
    match c.signature {
        SignatureVersion::V1 => roa_v1(
            c.base,
            c.prefix,
            c.call,
            c.version,
            c.region,
            key,
            c.acs_headers,
            now,
        ),
        SignatureVersion::V3 => roa_v3(c, key, now),
    }
}

/// The URL of a ROA call: base, prefix, the encoded path and the query.
fn roa_url(base: &str, prefix: &str, call: &HttpCall) -> String {
    let base_without_prefix = base.strip_suffix(prefix).unwrap_or(base);
    let mut url = format!("{base_without_prefix}{prefix}{}", call.encoded_path);
    if !call.query.is_empty() {
        url.push('?');
        url.push_str(&encode_query(&call.query));
    }
    url
}

/// ROA V3: `ACS3-HMAC-SHA256` over the canonical request (the path as sent).
fn roa_v3(
    c: &RoaCall<'_>,
    key: &SigningKey,
    now: SystemTime,
) -> Result<SignedRequest, GatewayError> {
    let date = time::OffsetDateTime::from(now)
        .format(&time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
        ))
        .expect("timestamps always format");
    let nonce = new_nonce();
    let host = authority_of(c.base);
    let headers = v3::base_headers(
        v3::HeaderInputs {
            host: &host,
            action: c.action,
            version: c.version,
            date: &date,
            nonce: &nonce,
            body: c.call.body.as_deref(),
        },
        key,
        c.acs_headers,
    );
    let signed_path = format!("{}{}", c.prefix, c.call.encoded_path);
    let signed = v3::sign(
        &v3::V3Request {
            method: &c.call.method,
            path: &signed_path,
            query: &c.call.query,
            headers: &headers,
        },
        key,
    );
    Ok(SignedRequest {
        method: method(&c.call.method)?,
        url: roa_url(c.base, c.prefix, c.call),
        host: host_of(c.base),
        headers: header_map(
            headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .chain([("authorization", signed.authorization.as_str())]),
        )?,
        body: c.call.body.clone(),
        signed_over: Some(SignedOver {
            version: SignatureVersion::V3,
            canonical_request: Some(Secret::new(signed.canonical_request)),
            string_to_sign: Secret::new(signed.string_to_sign),
        }),
    })
}

/// ROA V1: headers signed over the path (prefix included) and the sorted query.
#[allow(clippy::too_many_arguments)]
fn roa_v1(
    base: &str,
    prefix: &str,
    call: &HttpCall,
    version: &str,
    region: &str,
    key: &SigningKey,
    acs_headers: &BTreeMap<String, String>,
    now: SystemTime,
) -> Result<SignedRequest, GatewayError> {
    let date = httpdate::fmt_http_date(now);
    let nonce = new_nonce();
    let headers = roa::base_headers(
        version,
        region,
        &date,
        &nonce,
        call.body.as_deref(),
        key,
        acs_headers,
    );
    let signed_path = format!("{prefix}{}", call.decoded_path);
    let (authorization, string_to_sign) = roa::sign(
        &roa::RoaRequest {
            method: &call.method,
            path: &signed_path,
            query: &call.query,
            headers: &headers,
        },
        key,
    );
    Ok(SignedRequest {
        method: method(&call.method)?,
        url: roa_url(base, prefix, call),
        host: host_of(base),
        headers: header_map(
            headers
                .iter()
                .map(|(k, v)| (k.as_ref(), v.as_ref()))
                .chain([("authorization", authorization.as_str())]),
        )?,
        body: call.body.clone(),
        signed_over: Some(SignedOver {
            version: SignatureVersion::V1,
            canonical_request: None,
            string_to_sign: Secret::new(string_to_sign),
        }),
    })
}

/// RPC: every parameter in the query, plus `Signature`.
pub fn rpc(
    base: &str,
    op: &Operation,
    call: &HttpCall,
    version: &str,
    region: &str,
    key: &SigningKey,
    now: SystemTime,
) -> Result<SignedRequest, GatewayError> {
    let timestamp = time::OffsetDateTime::from(now)
        .format(&time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
        ))
        .expect("timestamps always format");
    let mut params = rpc::common_params(&op.name, version, &timestamp, &new_nonce(), key);
    params.push(("RegionId".to_string(), region.to_string()));
    params.extend(call.query.iter().cloned());
    let signature = rpc::signature(&call.method, &params, key);
    params.push(("Signature".to_string(), signature));
    let url = format!("{base}/?{}", encode_query(&params));
    Ok(SignedRequest {
        method: method(&call.method)?,
        url,
        host: host_of(base),
        headers: header_map([("accept", "application/json")])?,
        body: None,
        signed_over: None,
    })
}

/// `k=v&k=v` with every key and value percent-encoded.
pub fn encode_query(query: &[(String, String)]) -> String {
    query
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                utf8_percent_encode(k, RFC3986),
                utf8_percent_encode(v, RFC3986)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::{authority_of, host_of};

    #[test]
    fn the_authority_is_what_an_http_client_sends_as_host() {
        for (base, host) in [
            (
                "https://cs.cn-hangzhou.aliyuncs.com",
                "cs.cn-hangzhou.aliyuncs.com",
            ),
            (
                "https://cs.cn-hangzhou.aliyuncs.com:443/roa",
                "cs.cn-hangzhou.aliyuncs.com",
            ),
            ("http://127.0.0.1:8080/roa", "127.0.0.1:8080"),
            ("http://127.0.0.1:80", "127.0.0.1"),
            ("https://user:pw@Example.COM:8443?x=1", "example.com:8443"),
            ("http://[::1]:9000/p", "[::1]:9000"),
        ] {
            assert_eq!(authority_of(base), host, "{base}");
        }
    }

    #[test]
    fn the_host_of_a_base_url_is_the_one_url_parsing_finds() {
        for base in [
            "https://cs.cn-hangzhou.aliyuncs.com",
            "http://127.0.0.1:8080/roa",
            "http://[::1]:9000/prefix/deeper",
            "https://user:pw@sts.aliyuncs.com:443?x=1",
            "http://localhost",
            "https://ehpc.cn-beijing.aliyuncs.com/#frag",
        ] {
            let parsed = url::Url::parse(base).expect("url");
            assert_eq!(host_of(base), parsed.host_str().expect("host"), "{base}");
        }
        assert_eq!(host_of("not a url"), "not a url");
    }
}
