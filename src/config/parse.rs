//! Reading values: socket addresses, durations, endpoint URLs, CORS origins, CA bundles,
//! region ids and profile names, each problem pushed with its key; and TOML errors told without
//! quoting a value.

use super::duration::parse_duration;
use super::{CaBundle, Env};
use std::net::SocketAddr;
use std::time::Duration;

/// What is wrong with a CORS origin, if anything: it must be `scheme://host[:port]` exactly as
/// a browser sends it in `Origin` (no path, no trailing slash, no wildcard).
pub(super) fn origin_problem(origin: &str) -> Option<String> {
    let Ok(url) = url::Url::parse(origin) else {
        return Some(format!(
            "{origin:?} is not an origin (scheme://host[:port])"
        ));
    };
    let serialized = url.origin().ascii_serialization();
    if !matches!(url.scheme(), "http" | "https") || serialized != origin {
        return Some(format!(
            "{origin:?} is not an origin as browsers send it (expected {serialized:?}: scheme://host[:port], no path)"
        ));
    }
    None
}

/// toml's message and where it is, on one line, without quoting the offending line or any
/// value: a secret may be on that line, or be the value a type error names (an
/// `access_key_secret` in the wrong table is "invalid type: string \"…\""), and the error is
/// printed and logged.
pub(super) fn describe_toml_error(e: &toml::de::Error, text: &str) -> String {
    let message = e
        .message()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let message = without_quoted_values(&message);
    let Some(before) = e.span().and_then(|span| text.get(..span.start)) else {
        return format!("TOML parse error: {message}");
    };
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("TOML parse error at line {line}, column {column}: {message}")
}

/// serde's message with the values it quotes left out: every `"…"` string, and the name after
/// "unknown variant" (keys and the expected names, in backticks, stay).
pub(super) fn without_quoted_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    loop {
        let quote = rest.find('"');
        let variant = rest
            .find("unknown variant `")
            .map(|i| i + "unknown variant ".len());
        let (start, close) = match (quote, variant) {
            (Some(q), Some(v)) if v < q => (v, '`'),
            (Some(q), _) => (q, '"'),
            (None, Some(v)) => (v, '`'),
            (None, None) => break,
        };
        out.push_str(&rest[..start]);
        out.push(close);
        out.push('…');
        out.push(close);
        // The end of the quoted value: the next unescaped closing mark (or the end).
        let body = &rest[start + 1..];
        let mut end = body.len();
        let mut escaped = false;
        for (i, c) in body.char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                c if c == close && !escaped => {
                    end = i + 1;
                    break;
                }
                _ => escaped = false,
            }
        }
        rest = &body[end.min(body.len())..];
    }
    out.push_str(rest);
    out
}

pub(super) fn parse_addr(key: &str, value: &str, errors: &mut Vec<String>) -> SocketAddr {
    value.parse().unwrap_or_else(|_| {
        errors.push(format!(
            "{key}: `{value}` is not a socket address (expected e.g. 127.0.0.1:50051)"
        ));
        SocketAddr::from(([127, 0, 0, 1], 0))
    })
}

pub(super) fn duration_or(
    key: &str,
    value: Option<&str>,
    default: Duration,
    errors: &mut Vec<String>,
) -> Duration {
    match value {
        None => default,
        Some(v) => parse_duration(v).unwrap_or_else(|e| {
            errors.push(format!("{key}: {e}"));
            default
        }),
    }
}

pub(super) fn parse_endpoint(key: &str, value: &str, errors: &mut Vec<String>) -> Option<url::Url> {
    match url::Url::parse(value) {
        Ok(u) if (u.scheme() == "http" || u.scheme() == "https") && u.host().is_some() => {
            if u.query().is_some() || u.fragment().is_some() {
                errors.push(format!(
                    "{key}: `{value}` must not have a query or fragment"
                ));
                return None;
            }
            Some(u)
        }
        _ => {
            errors.push(format!(
                "{key}: `{value}` is not a base URL (expected scheme://host[:port][/prefix])"
            ));
            None
        }
    }
}

/// Reads a PEM bundle of CA certificates (one or more `CERTIFICATE` blocks; anything else in
/// the file is ignored), checking that each one can serve as a trust anchor.
pub(super) fn ca_bundle(
    key: &str,
    path: &std::path::Path,
    env: &impl Env,
    errors: &mut Vec<String>,
) -> Option<CaBundle> {
    use tokio_rustls::rustls::pki_types::{pem::PemObject, CertificateDer};
    let shown = path.display();
    let text = match env.read_file(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            errors.push(format!(
                "{key}: {shown} is not PEM text (binary DER? convert it with `openssl x509 -inform der`)"
            ));
            return None;
        }
        Err(e) => {
            errors.push(format!("{key}: cannot read {shown}: {e}"));
            return None;
        }
    };
    let certs = match CertificateDer::pem_slice_iter(text.as_bytes()).collect::<Result<Vec<_>, _>>()
    {
        Ok(certs) => certs,
        Err(e) => {
            errors.push(format!("{key}: {shown} is not a valid PEM file: {e}"));
            return None;
        }
    };
    if certs.is_empty() {
        errors.push(format!(
            "{key}: {shown} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
        ));
        return None;
    }
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    for (i, cert) in certs.iter().enumerate() {
        if let Err(e) = roots.add(cert.clone()) {
            errors.push(format!(
                "{key}: certificate {} of {shown} cannot be used as a CA: {e}",
                i + 1
            ));
            return None;
        }
    }
    Some(CaBundle {
        path: path.to_path_buf(),
        certs: certs.into_iter().map(|c| c.to_vec()).collect(),
    })
}

/// What a profile name that breaks [`is_valid_profile_name`] is told.
pub const PROFILE_NAME_RULE: &str = "not a profile name (1 to 64 letters, digits, `-`, `_` or `.`)";

/// Profile names travel in `x-ack-profile` and appear in audit lines and metrics: 1 to 64
/// ASCII letters, digits, `-`, `_` and `.`.
pub fn is_valid_profile_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Region ids go into host names: lower-case letters, digits and dashes only.
pub fn is_valid_region(r: &str) -> bool {
    !r.is_empty()
        && r.len() <= 64
        && r.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}
