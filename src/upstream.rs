//! The upstream HTTP client: pooled connections (reqwest + rustls), timeouts, endpoint
//! resolution, and parsing of the API's error bodies.
//!
//! Certificates are always verified: against the Mozilla roots compiled into the binary
//! (webpki-roots, so a container image needs no CA package), plus the CAs of `[upstream]
//! ca_file`. There is no way to turn verification off.
//!
//! Boundary: the only module that does outbound HTTP.

pub mod clock;
pub(crate) mod prepare;

pub use prepare::encode_query;

use crate::error::{scrub, UpstreamError};
use crate::table::ServiceInfo;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::time::Duration;

/// A signed request ready to send. Its credential-bearing header values (`authorization`,
/// `x-acs-security-token`) are marked sensitive, so its `Debug` does not show them.
#[derive(Debug)]
pub struct SignedRequest {
    pub method: http::Method,
    /// Full URL, query included, every component percent-encoded.
    pub url: String,
    /// Host for error messages and `google.rpc.ErrorInfo.domain`.
    pub host: String,
    pub headers: http::HeaderMap,
    pub body: Option<Vec<u8>>,
    /// What the signature was computed over (ROA only), for diagnosing a refused signature
    /// and for explaining a call.
    pub signed_over: Option<SignedOver>,
}

/// What a ROA signature was computed over. Secret: V1's string to sign and V3's canonical
/// request both contain an STS triple's security token.
#[derive(Debug, Clone)]
pub struct SignedOver {
    pub version: crate::signer::SignatureVersion,
    /// V3 only.
    pub canonical_request: Option<crate::secret::Secret>,
    pub string_to_sign: crate::secret::Secret,
}

/// A response of any status.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

#[derive(Clone)]
pub struct Upstream {
    client: reqwest::Client,
    overrides: BTreeMap<String, url::Url>,
    /// The upstream's clock, learned from every answer's `Date`.
    clock: std::sync::Arc<clock::UpstreamClock>,
    /// `[upstream] max_response_bytes`.
    max_response_bytes: usize,
}

// === impl Upstream ===

impl Upstream {
    pub fn new(
        config: &crate::config::UpstreamConfig,
        overrides: BTreeMap<String, url::Url>,
    ) -> Result<Self, reqwest::Error> {
        let mut builder = reqwest::Client::builder();
        // Added to the built-in roots, which stay trusted.
        for der in config.ca.iter().flat_map(|ca| &ca.certs) {
            builder = builder.add_root_certificate(reqwest::Certificate::from_der(der)?);
        }
        let client = builder
            .connect_timeout(config.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            // The API never redirects, and a redirect must not be followed: the signature is
            // bound to the path and host it was made for. Not following also spares every
            // request the copy kept for a possible re-send.
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("ack-gateway/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Upstream {
            client,
            overrides,
            clock: Default::default(),
            max_response_bytes: config.max_response_bytes,
        })
    }

    /// The upstream's clock as estimated from its answers: what requests are signed with.
    pub fn clock(&self) -> &clock::UpstreamClock {
        &self.clock
    }

    /// The base URL for a service in a region: the configured override, or the service's
    /// default host over HTTPS. The result never ends with `/`.
    pub fn base_url(&self, service_key: &str, info: &ServiceInfo, region: &str) -> String {
        match self.overrides.get(service_key) {
            Some(u) => u.as_str().trim_end_matches('/').to_string(),
            None => format!("https://{}", info.endpoint.replace("{region}", region)),
        }
    }

    /// The path prefix of an overridden endpoint (e.g. `/roa`), which is part of the signed path.
    pub fn path_prefix(&self, service_key: &str) -> String {
        self.overrides
            .get(service_key)
            .map(|u| u.path().trim_end_matches('/').to_string())
            .unwrap_or_default()
    }

    pub async fn send(
        &self,
        req: SignedRequest,
        timeout: Duration,
    ) -> Result<RawResponse, UpstreamError> {
        let host = req.host.clone();
        let mut builder = self
            .client
            .request(req.method, &req.url)
            .headers(req.headers)
            .timeout(timeout);
        if let Some(body) = req.body {
            builder = builder.body(body);
        }
        let mut response = builder
            .send()
            .await
            .map_err(|e| transport_error(&host, timeout, &e))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        self.clock.observe(&headers, std::time::SystemTime::now());
        let limit = self.max_response_bytes;
        let too_large = || UpstreamError::TooLarge {
            host: host.clone(),
            limit,
        };
        // The request's timeout bounds the body too, so a body that trickles ends in time.
        let announced = response.content_length().unwrap_or(0);
        if announced > limit as u64 {
            return Err(too_large());
        }
        // Not more up front than a typical answer, whatever the header says.
        let mut body = bytes::BytesMut::with_capacity(announced.min(64 * 1024) as usize);
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| transport_error(&host, timeout, &e))?
        {
            if body.len() + chunk.len() > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        let body = body.freeze();
        Ok(RawResponse {
            status,
            headers,
            body,
        })
    }
}

fn transport_error(host: &str, timeout: Duration, e: &reqwest::Error) -> UpstreamError {
    // reqwest's messages carry the URL, which holds no secret (signatures travel in headers
    // for ROA; RPC-style signatures are in the query, so the URL is never shown).
    // Only a handshake failure: a TLS error after the connection was made (the request may
    // have left) stays a transport error.
    if let Some(problem) = e.is_connect().then(|| tls_problem(host, e)).flatten() {
        return UpstreamError::Tls {
            host: host.to_string(),
            problem,
        };
    }
    let reason = root_cause(e);
    if e.is_timeout() {
        UpstreamError::Timeout {
            host: host.to_string(),
            timeout,
        }
    } else if e.is_connect() {
        UpstreamError::Connect {
            host: host.to_string(),
            reason,
        }
    } else {
        UpstreamError::Transport {
            host: host.to_string(),
            reason,
        }
    }
}

/// What went wrong in the TLS handshake, when that is why the connection failed: a refused
/// certificate, or another handshake failure (e.g. an endpoint that does not speak TLS). The
/// request never left.
fn tls_problem(host: &str, e: &(dyn std::error::Error + 'static)) -> Option<String> {
    use tokio_rustls::rustls::{CertificateError, Error as TlsError};
    let tls = find_tls_error(e)?;
    let TlsError::InvalidCertificate(cert) = tls else {
        return Some(format!("the handshake with {host} failed: {tls}"));
    };
    let what = match cert {
        CertificateError::UnknownIssuer => {
            "is not trusted (unknown issuer; a private CA goes in [upstream] ca_file)".to_string()
        }
        CertificateError::NotValidForName => format!("is not valid for host {host}"),
        CertificateError::NotValidForNameContext { presented, .. } => format!(
            "is not valid for host {host} (it is for {})",
            presented
                .iter()
                .map(|name| presented_name(name))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            "has expired".to_string()
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "is not valid yet".to_string()
        }
        CertificateError::Revoked => "is revoked".to_string(),
        other => format!("was refused: {other}"),
    };
    Some(format!("the certificate of {host} {what}"))
}

/// A name as rustls presents it (`DnsName("cs.example")`, `IpAddress(10.0.0.1)`), bare.
fn presented_name(name: &str) -> &str {
    match (name.find('('), name.rfind(')')) {
        (Some(open), Some(close)) if open < close => name[open + 1..close].trim_matches('"'),
        _ => name,
    }
}

/// The rustls error somewhere in `e`'s chain. rustls' errors reach here inside `io::Error`s
/// (one per layer that wrapped them), whose `source` skips the error they wrap, so each
/// `io::Error` is opened too.
fn find_tls_error<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a tokio_rustls::rustls::Error> {
    if let Some(tls) = e.downcast_ref::<tokio_rustls::rustls::Error>() {
        return Some(tls);
    }
    let wrapped = e
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
        .and_then(|inner| find_tls_error(inner));
    wrapped.or_else(|| e.source().and_then(find_tls_error))
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    let text = cur.to_string();
    // rustls appends a link to its manual to some messages; the words are enough.
    match text.split_once(": https://") {
        Some((words, _)) => words.to_string(),
        None => text,
    }
}

/// The request id of a response: the `x-acs-request-id` header, else the body's.
pub fn request_id(headers: &http::HeaderMap, body: &[u8]) -> Option<String> {
    if let Some(v) = headers
        .get("x-acs-request-id")
        .and_then(|v| v.to_str().ok())
    {
        return Some(v.to_string());
    }
    let json: serde_json::Value = serde_json::from_slice(body).ok()?;
    ["request_id", "requestId", "RequestId"]
        .iter()
        .find_map(|k| json.get(k).and_then(|v| v.as_str()).map(str::to_string))
}

/// Builds the error for a non-2xx answer from its body and headers.
pub fn api_error(host: &str, resp: &RawResponse, secrets: &[&str]) -> UpstreamError {
    let (code, mut message) = error_code_and_message(resp);
    if (300..400).contains(&resp.status) {
        message = redirect_message(&resp.headers);
    }
    UpstreamError::Api {
        host: host.to_string(),
        status: resp.status,
        code,
        message: scrub(&message, secrets).into(),
        request_id: request_id(&resp.headers, &resp.body),
        retry_after: rate_limit_wait(&resp.headers),
        diagnosis: None,
    }
}

/// An error answer's code and message as the API wrote them: unscrubbed, so only for
/// comparing (e.g. a quoted string to sign), never for showing.
pub fn error_code_and_message(resp: &RawResponse) -> (String, String) {
    let json: serde_json::Value = serde_json::from_slice(&resp.body).unwrap_or_default();
    let field = |names: &[&str]| {
        names
            .iter()
            .find_map(|k| json.get(k).and_then(|v| v.as_str()).map(str::to_string))
    };
    let code = field(&["code", "Code"]).unwrap_or_default();
    let message = field(&["message", "Message"]).unwrap_or_else(|| not_json_message(resp));
    (code, message)
}

/// The longest excerpt of an answer that is not the API's JSON shown in a message.
const EXCERPT_CHARS: usize = 200;

/// What an answer that is not the API's JSON says, briefly: an HTML page (what proxies and load
/// balancers in front of the API answer) by its title, anything else by its first line.
fn not_json_message(resp: &RawResponse) -> String {
    let text = String::from_utf8_lossy(&resp.body);
    let is_html = resp
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.to_ascii_lowercase().starts_with("text/html"))
        || text.trim_start().starts_with('<');
    let excerpt = |s: &str| -> String {
        s.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(EXCERPT_CHARS)
            .collect::<String>()
            .trim()
            .to_string()
    };
    if !is_html {
        return excerpt(text.lines().find(|l| !l.trim().is_empty()).unwrap_or(""));
    }
    let lower = text.to_ascii_lowercase();
    let title = lower.find("<title>").and_then(|start| {
        let start = start + "<title>".len();
        let end = start + lower[start..].find("</title>")?;
        text.get(start..end)
    });
    match title.map(excerpt).filter(|t| !t.is_empty()) {
        Some(title) => format!("an HTML page ({title}), {} bytes", resp.body.len()),
        None => format!("an HTML page, {} bytes", resp.body.len()),
    }
}

/// A redirect, which is never followed: a signed request is bound to its host and path. The
/// target is shown without its query, which could echo a signature.
fn redirect_message(headers: &http::HeaderMap) -> String {
    let target = headers
        .get(http::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(|l| l.split(['?', '#']).next().unwrap_or_default())
        .map(|l| l.chars().take(EXCERPT_CHARS).collect::<String>());
    match target {
        Some(t) => format!("a redirect to {t}, not followed (check the endpoint)"),
        None => "a redirect, not followed (check the endpoint)".to_string(),
    }
}

/// When a successful answer says the budget is spent (`Remain:0` in `x-ratelimit-user-api` or
/// `x-ratelimit-user`), how long until it refills (`TimeLeft`, ms).
pub fn exhausted_budget(headers: &http::HeaderMap) -> Option<Duration> {
    for name in ["x-ratelimit-user-api", "x-ratelimit-user"] {
        let Some(v) = headers.get(name).and_then(|v| v.to_str().ok()) else {
            continue;
        };
        let fields: Vec<(&str, &str)> = v.split(',').filter_map(|kv| kv.split_once(':')).collect();
        let get = |key: &str| {
            fields
                .iter()
                .find(|(k, _)| k.trim().eq_ignore_ascii_case(key))
                .and_then(|(_, v)| v.trim().parse::<u64>().ok())
        };
        if get("Remain") == Some(0) {
            return Some(Duration::from_millis(get("TimeLeft").unwrap_or(1000)));
        }
    }
    None
}

/// How long the API asks us to wait: `x-acs-retry-after` (milliseconds), else `TimeLeft` (ms)
/// of `x-ratelimit-user-api` or `x-ratelimit-user` (`Limit:1,Remain:0,TimeLeft:2000,Reset:…`),
/// else `Retry-After` seconds.
pub fn rate_limit_wait(headers: &http::HeaderMap) -> Option<Duration> {
    // The cloud's own hint, in milliseconds, wins over the rate-limit headers.
    if let Some(ms) = headers
        .get("x-acs-retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        return Some(Duration::from_millis(ms));
    }
    for name in ["x-ratelimit-user-api", "x-ratelimit-user"] {
        if let Some(v) = headers.get(name).and_then(|v| v.to_str().ok()) {
            let parts = v.split(',').filter_map(|kv| kv.split_once(':'));
            for (k, val) in parts {
                if k.trim().eq_ignore_ascii_case("TimeLeft") {
                    if let Ok(ms) = val.trim().parse::<u64>() {
                        return Some(Duration::from_millis(ms));
                    }
                }
            }
        }
    }
    headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

#[cfg(test)]
mod tests;
