//! Who is calling and what the call asks for: the caller authenticated from its bearer token
//! or client certificate (or by the edge), and the call's context from its metadata (profile,
//! region, deadline, cache control, idempotency key, busy-cluster choice).

use super::tls;
use super::{CACHE_CONTROL_METADATA, PROFILE_METADATA, REGION_METADATA, WHEN_BUSY_METADATA};
use crate::cache::Freshness;
use crate::config::DEFAULT_PROFILE;
use crate::gateway::{CallContext, Gateway};
use std::sync::Arc;
use std::time::Duration;
use tonic::{Request, Status};

/// The caller's name: the one the edge authenticated (`edge::Caller`), or else from its
/// bearer token or client certificate.
pub fn authenticate<T>(gateway: &Gateway, request: &Request<T>) -> Result<String, Status> {
    if let Some(crate::edge::Caller(caller)) = request.extensions().get() {
        return Ok(caller.clone());
    }
    authenticate_parts(gateway, request.metadata().as_ref(), request.extensions())
}

/// The edge's authenticator: a call's caller from its headers and connection alone; `None` in
/// insecure local mode, where there is nobody to tell apart (the services name the caller
/// `local` themselves).
pub fn edge_authenticator(gateway: Arc<Gateway>) -> crate::edge::Authenticator {
    Arc::new(move |headers, extensions| {
        if gateway.snapshot().access.insecure_local() {
            return Ok(None);
        }
        authenticate_parts(&gateway, headers, extensions).map(Some)
    })
}

/// Who calls, from the `authorization` header and the connection's client certificate.
fn authenticate_parts(
    gateway: &Gateway,
    headers: &http::HeaderMap,
    extensions: &http::Extensions,
) -> Result<String, Status> {
    let snapshot = gateway.snapshot();
    if snapshot.access.insecure_local() {
        return Ok(crate::access::LOCAL_CALLER.to_string());
    }
    let authorization = headers
        .get("authorization")
        .map(|v| {
            v.to_str()
                .map_err(|_| Status::unauthenticated("authorization: not valid ASCII"))
        })
        .transpose()?;
    let names = tls::peer_names_in(extensions);
    snapshot
        .access
        .authenticate(authorization, &names)
        .map_err(|e| {
            tracing::warn!(tls_names = ?names, error = %e, "unauthenticated call refused");
            crate::error::GatewayError::from(e).into_status()
        })
}

/// Profile, region, deadline and cache control from the call's metadata (the caller is set
/// by authentication). Public so that the metadata properties (`ack_test_support::properties`) and its
/// fuzz target drive it directly.
pub fn call_context(md: &tonic::metadata::MetadataMap) -> Result<CallContext, Status> {
    let text = |key: &str| -> Result<Option<String>, Status> {
        match md.get(key) {
            None => Ok(None),
            Some(v) => v
                .to_str()
                .map(|s| Some(s.to_string()))
                .map_err(|_| Status::invalid_argument(format!("{key}: not valid ASCII"))),
        }
    };
    let profile = text(PROFILE_METADATA)?.unwrap_or_else(|| DEFAULT_PROFILE.to_string());
    if !crate::config::is_valid_profile_name(&profile) {
        // Refused before it is logged anywhere: a profile name is never escaped on the way.
        return Err(
            crate::error::GatewayError::from(crate::translate::InvalidField::new(
                PROFILE_METADATA,
                crate::config::PROFILE_NAME_RULE,
            ))
            .into_status(),
        );
    }
    Ok(CallContext {
        caller: "local".to_string(),
        profile,
        region: text(REGION_METADATA)?,
        deadline: text("grpc-timeout")?
            .as_deref()
            .and_then(parse_grpc_timeout),
        cache_control: text(CACHE_CONTROL_METADATA)?
            .as_deref()
            .map(Freshness::parse)
            .unwrap_or_default(),
        watcher_poll: false,
        when_busy: match text(WHEN_BUSY_METADATA)? {
            Some(v) => Some(crate::config::writes::WhenBusy::parse(&v).ok_or_else(|| {
                crate::error::GatewayError::from(crate::translate::InvalidField::new(
                    WHEN_BUSY_METADATA,
                    "must be `wait` or `fail`",
                ))
                .into_status()
            })?),
            None => None,
        },
        idempotency_key: match text(crate::writes::keys::IDEMPOTENCY_KEY)? {
            Some(key) => {
                crate::writes::keys::check_key(&key)
                    .map_err(|e| crate::error::GatewayError::from(e).into_status())?;
                Some(key)
            }
            None => None,
        },
    })
}

/// Parses a `grpc-timeout` value as the gRPC protocol defines it: 1 to 8 ASCII digits and a
/// unit (`H` hours, `M` minutes, `S` seconds, `m` milliseconds, `u` microseconds, `n`
/// nanoseconds). Anything else (a sign, more digits, another unit, other characters) is no
/// deadline, never a panic: 8 digits of hours fit a `u64` of seconds.
pub fn parse_grpc_timeout(v: &str) -> Option<Duration> {
    let (digits, unit) = v.split_at_checked(v.len().checked_sub(1)?)?;
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}
