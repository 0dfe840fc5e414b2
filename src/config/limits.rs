//! The `[limits]` section: how large a request may be, and what a request must fit in to be
//! sent upstream (`translate::RequestLimits`). The overload limits of the same section
//! (`max_concurrent_calls`, `max_inflight_per_host`) are resolved with the traffic settings.

use crate::translate::{RequestLimits, OWN_HEADERS_BYTES, URI_MAX_BYTES};
use serde::Deserialize;

#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest gRPC request message accepted.
    pub max_request_bytes: usize,
    /// What a request must fit in to be sent.
    pub request: RequestLimits,
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
}

/// The section's settings, every problem pushed to `errors` with its key.
pub(super) fn resolve(file: &FileLimits, errors: &mut Vec<String>) -> Limits {
    let d = RequestLimits::default();
    let mut positive =
        |key: &str, v: Option<usize>, default: usize| positive(key, v, default, errors);
    let limits = Limits {
        max_request_bytes: positive("max_request_bytes", file.max_request_bytes, 4 * 1024 * 1024),
        request: RequestLimits {
            max_path_param_bytes: positive(
                "max_path_param_bytes",
                file.max_path_param_bytes,
                d.max_path_param_bytes,
            ),
            max_query_value_bytes: positive(
                "max_query_value_bytes",
                file.max_query_value_bytes,
                d.max_query_value_bytes,
            ),
            max_url_bytes: positive("max_url_bytes", file.max_url_bytes, d.max_url_bytes),
            max_header_bytes: positive(
                "max_header_bytes",
                file.max_header_bytes,
                d.max_header_bytes,
            ),
            max_repeated_items: positive(
                "max_repeated_items",
                file.max_repeated_items,
                d.max_repeated_items,
            ),
            max_json_depth: positive("max_json_depth", file.max_json_depth, d.max_json_depth),
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
pub(super) fn check_acs_headers<'a>(
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
