//! Turns an unsigned HTTP call into a signed request for the service's style.

use crate::error::GatewayError;
use crate::signer::{new_nonce, roa, rpc, SigningKey};
use crate::table::Operation;
use crate::translate::{HttpCall, InvalidField};
use crate::upstream::{encode_query, SignedRequest};
use std::collections::BTreeMap;

fn header_map<'h>(
    headers: impl IntoIterator<Item = (&'h str, &'h str)>,
) -> Result<http::HeaderMap, GatewayError> {
    let mut map = http::HeaderMap::with_capacity(16);
    for (k, v) in headers {
        let name = http::HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| InvalidField::new(k, "not a valid header name"))?;
        let value = http::HeaderValue::from_str(v)
            .map_err(|_| InvalidField::new(k, "not a valid header value"))?;
        map.insert(name, value);
    }
    Ok(map)
}

/// The host of a base URL, for error messages and `google.rpc.ErrorInfo.domain`.
///
/// Base URLs are the gateway's own (a configured endpoint already normalized by `url`, or a
/// default `https://{host}`), so the host is cut out of the authority without parsing the URL
/// again on every attempt; anything without a scheme is returned whole.
pub(super) fn host_of(base: &str) -> String {
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
        .map_err(|_| GatewayError::Unimplemented(format!("HTTP method {m}")))
}

/// ROA: headers signed over the path (prefix included) and the sorted query.
pub fn roa(
    base: &str,
    prefix: &str,
    call: &HttpCall,
    version: &str,
    region: &str,
    key: &SigningKey,
    acs_headers: &BTreeMap<String, String>,
) -> Result<SignedRequest, GatewayError> {
    let date = httpdate::fmt_http_date(std::time::SystemTime::now());
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
    let authorization = roa::authorization(
        &roa::RoaRequest {
            method: &call.method,
            path: &signed_path,
            query: &call.query,
            headers: &headers,
        },
        key,
    );
    let base_without_prefix = base.strip_suffix(prefix).unwrap_or(base);
    let mut url = format!("{base_without_prefix}{prefix}{}", call.encoded_path);
    if !call.query.is_empty() {
        url.push('?');
        url.push_str(&encode_query(&call.query));
    }
    Ok(SignedRequest {
        method: method(&call.method)?,
        url,
        host: host_of(base),
        headers: header_map(
            headers
                .iter()
                .map(|(k, v)| (k.as_ref(), v.as_ref()))
                .chain([("authorization", authorization.as_str())]),
        )?,
        body: call.body.clone(),
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
) -> Result<SignedRequest, GatewayError> {
    let timestamp = time::OffsetDateTime::now_utc()
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
    })
}

#[cfg(test)]
mod tests {
    use super::host_of;

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
