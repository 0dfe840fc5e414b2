//! The `[limits]` section: how large a request may be, what a request must fit in to be sent
//! upstream (`translate::RequestLimits`), and what the listeners grant one client (HTTP/2 on
//! the gRPC port, connections and header timeouts on the admin and broker HTTP listeners). The
//! overload limits of the same section (`max_concurrent_calls`, `max_inflight_per_host`) are
//! resolved with the traffic settings.

use super::parse::duration_or;
use crate::translate::{RequestLimits, OWN_HEADERS_BYTES, URI_MAX_BYTES};
use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest gRPC request message accepted.
    pub max_request_bytes: usize,
    /// What a request must fit in to be sent.
    pub request: RequestLimits,
    /// The admin and broker HTTP listeners.
    pub http: HttpLimits,
    /// HTTP/2 on the gRPC port.
    pub grpc: GrpcLimits,
}

/// What an HTTP/1 listener (admin, broker) grants its clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// A connection that has not sent a whole request head this long after it opened (or after
    /// its previous answer) is closed.
    pub header_read_timeout: Duration,
    /// Connections served at once; more are closed as soon as they are accepted.
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 1024,
        }
    }
}

/// What the gRPC port grants one HTTP/2 connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrpcLimits {
    /// Streams (calls, watches included) open at once on one connection (HTTP/2
    /// `SETTINGS_MAX_CONCURRENT_STREAMS`); a client waits for a free one.
    pub max_concurrent_streams: u32,
    /// Bytes of one call's headers (HTTP/2 `SETTINGS_MAX_HEADER_LIST_SIZE`).
    pub max_header_list_bytes: u32,
    /// How often an idle connection is pinged, and how long the answer may take before the
    /// connection is closed as dead.
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    /// After this long a connection is asked to go away (GOAWAY; calls in flight finish), so
    /// that clients spread over new replicas; `None`: connections live as long as their clients.
    pub max_connection_age: Option<Duration>,
    /// Connections open at once; more are closed as soon as they are accepted.
    pub max_connections: usize,
    /// From its acceptance, how long a connection has to finish its TLS handshake and send its
    /// first bytes (`server::incoming`).
    pub handshake_timeout: Duration,
    /// A connection with no call open this long is closed; `None`: never.
    pub max_connection_idle: Option<Duration>,
    /// Connections open at once from one peer address; more are closed as soon as they are
    /// accepted, so one client cannot take every place of `max_connections`.
    pub max_connections_per_peer: usize,
    /// A request's body must have arrived this long after its head, plus one second per
    /// `request_body_min_rate` bytes received (a slow body fails its call; on HTTP/1.1 the
    /// connection is closed).
    pub request_body_timeout: Duration,
    pub request_body_min_rate: usize,
}

impl Default for GrpcLimits {
    fn default() -> Self {
        GrpcLimits {
            max_concurrent_streams: 200,
            max_header_list_bytes: 16 * 1024,
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(20),
            max_connection_age: None,
            max_connections: 4096,
            handshake_timeout: Duration::from_secs(10),
            max_connection_idle: Some(Duration::from_secs(3600)),
            max_connections_per_peer: 256,
            request_body_timeout: Duration::from_secs(10),
            request_body_min_rate: 1024,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileLimits {
    max_request_bytes: Option<usize>,
    pub(super) max_concurrent_calls: Option<usize>,
    pub(super) max_inflight_per_host: Option<usize>,
    max_path_param_bytes: Option<usize>,
    max_query_value_bytes: Option<usize>,
    max_url_bytes: Option<usize>,
    max_header_bytes: Option<usize>,
    max_repeated_items: Option<usize>,
    max_json_depth: Option<usize>,
    http_header_read_timeout: Option<String>,
    http_max_connections: Option<usize>,
    grpc_max_concurrent_streams: Option<u32>,
    grpc_max_header_list_bytes: Option<u32>,
    grpc_keepalive_interval: Option<String>,
    grpc_keepalive_timeout: Option<String>,
    grpc_max_connection_age: Option<String>,
    grpc_max_connections: Option<usize>,
    grpc_handshake_timeout: Option<String>,
    grpc_max_connection_idle: Option<String>,
    grpc_max_connections_per_peer: Option<usize>,
    grpc_request_body_timeout: Option<String>,
    grpc_request_body_min_rate: Option<usize>,
}

/// The section's settings, every problem pushed to `errors` with its key.
pub(super) fn resolve(file: &FileLimits, errors: &mut Vec<String>) -> Limits {
    let (d, h, g) = (
        RequestLimits::default(),
        HttpLimits::default(),
        GrpcLimits::default(),
    );
    let mut count = |key: &str, v: Option<usize>, default: usize| positive(key, v, default, errors);
    let request = RequestLimits {
        max_path_param_bytes: count(
            "max_path_param_bytes",
            file.max_path_param_bytes,
            d.max_path_param_bytes,
        ),
        max_query_value_bytes: count(
            "max_query_value_bytes",
            file.max_query_value_bytes,
            d.max_query_value_bytes,
        ),
        max_url_bytes: count("max_url_bytes", file.max_url_bytes, d.max_url_bytes),
        max_header_bytes: count(
            "max_header_bytes",
            file.max_header_bytes,
            d.max_header_bytes,
        ),
        max_repeated_items: count(
            "max_repeated_items",
            file.max_repeated_items,
            d.max_repeated_items,
        ),
        max_json_depth: count("max_json_depth", file.max_json_depth, d.max_json_depth),
    };
    let max_request_bytes = count("max_request_bytes", file.max_request_bytes, 4 * 1024 * 1024);
    let max_connections = count(
        "http_max_connections",
        file.http_max_connections,
        h.max_connections,
    );
    let grpc_max_connections = count(
        "grpc_max_connections",
        file.grpc_max_connections,
        g.max_connections,
    );
    let max_connections_per_peer = count(
        "grpc_max_connections_per_peer",
        file.grpc_max_connections_per_peer,
        g.max_connections_per_peer,
    );
    let request_body_min_rate = count(
        "grpc_request_body_min_rate",
        file.grpc_request_body_min_rate,
        g.request_body_min_rate,
    );
    let mut count32 = |key: &str, v: Option<u32>, default: u32| {
        let n = positive(key, v.map(|n| n as usize), default as usize, errors);
        u32::try_from(n).unwrap_or(default)
    };
    let max_concurrent_streams = count32(
        "grpc_max_concurrent_streams",
        file.grpc_max_concurrent_streams,
        g.max_concurrent_streams,
    );
    let max_header_list_bytes = count32(
        "grpc_max_header_list_bytes",
        file.grpc_max_header_list_bytes,
        g.max_header_list_bytes,
    );
    let mut duration = |key: &str, value: &Option<String>, default: Duration| {
        let v = duration_or(&format!("limits.{key}"), value.as_deref(), default, errors);
        if v.is_zero() {
            errors.push(format!("limits.{key}: must be greater than 0"));
        }
        v
    };
    let limits = Limits {
        max_request_bytes,
        request,
        http: HttpLimits {
            header_read_timeout: duration(
                "http_header_read_timeout",
                &file.http_header_read_timeout,
                h.header_read_timeout,
            ),
            max_connections,
        },
        grpc: GrpcLimits {
            max_concurrent_streams,
            max_header_list_bytes,
            keepalive_interval: duration(
                "grpc_keepalive_interval",
                &file.grpc_keepalive_interval,
                g.keepalive_interval,
            ),
            keepalive_timeout: duration(
                "grpc_keepalive_timeout",
                &file.grpc_keepalive_timeout,
                g.keepalive_timeout,
            ),
            max_connection_age: file.grpc_max_connection_age.as_ref().map(|_| {
                duration(
                    "grpc_max_connection_age",
                    &file.grpc_max_connection_age,
                    Duration::ZERO,
                )
            }),
            max_connections: grpc_max_connections,
            handshake_timeout: duration(
                "grpc_handshake_timeout",
                &file.grpc_handshake_timeout,
                g.handshake_timeout,
            ),
            // "off" keeps idle connections for as long as their clients do.
            max_connection_idle: match file.grpc_max_connection_idle.as_deref() {
                Some("off") => None,
                value => Some(duration(
                    "grpc_max_connection_idle",
                    &value.map(str::to_string),
                    g.max_connection_idle.unwrap_or_default(),
                )),
            },
            max_connections_per_peer,
            request_body_timeout: duration(
                "grpc_request_body_timeout",
                &file.grpc_request_body_timeout,
                g.request_body_timeout,
            ),
            request_body_min_rate,
        },
    };
    if limits.request.max_url_bytes > URI_MAX_BYTES {
        errors.push(format!(
            "limits.max_url_bytes: must be at most {URI_MAX_BYTES} (the longest URI the HTTP client sends)"
        ));
    }
    if limits.request.max_header_bytes <= OWN_HEADERS_BYTES {
        errors.push(format!(
            "limits.max_header_bytes: must be more than {OWN_HEADERS_BYTES} (the gateway's own headers take up to that)"
        ));
    }
    limits
}

/// `limits.{key}`: the value, or the default when unset; 0 is refused.
pub(super) fn positive(
    key: &str,
    v: Option<usize>,
    default: usize,
    errors: &mut Vec<String>,
) -> usize {
    match v {
        Some(0) => {
            errors.push(format!("limits.{key}: must be greater than 0"));
            default
        }
        Some(n) => n,
        None => default,
    }
}

/// A profile's `acs_headers` leave room for the gateway's own headers in `max_header_bytes`.
pub(super) fn check_acs_headers_fit<'a>(
    key: &str,
    headers: impl IntoIterator<Item = (&'a String, &'a String)>,
    limits: &Limits,
    errors: &mut Vec<String>,
) {
    let bytes = crate::translate::header_bytes(headers);
    let room = limits
        .request
        .max_header_bytes
        .saturating_sub(OWN_HEADERS_BYTES);
    if bytes > room {
        errors.push(format!(
            "{key}.acs_headers: {bytes} bytes of headers, over the {room} that limits.max_header_bytes leaves after the gateway's own"
        ));
    }
}
