//! Which method a Connect path names, and whether the request's protocol may call it.

use super::errors::http_status;
use super::Kind;
use crate::proto;
use http::StatusCode;
use prost_reflect::MethodDescriptor;
use tonic::Status;

/// The HTTP status for a path that names no method: a `/package.Service/Method` path of an
/// unknown method is `unimplemented` (501, as the specification maps it); any other path is not
/// a procedure at all, and is not found (404), as for any HTTP route.
pub(super) fn no_method_status(path: &str, status: &Status) -> StatusCode {
    if path.matches('/').count() == 2 {
        http_status(status.code())
    } else {
        StatusCode::NOT_FOUND
    }
}

/// The method a path names: `/package.Service/Method`.
pub(super) fn find_method(path: &str) -> Result<MethodDescriptor, Status> {
    let not_found = || Status::unimplemented(format!("no method {path}"));
    let (service, name) = path
        .strip_prefix('/')
        .and_then(|p| p.split_once('/'))
        .ok_or_else(not_found)?;
    proto::pool()
        .get_service_by_name(service)
        .and_then(|s| s.methods().find(|m| m.name() == name))
        .ok_or_else(not_found)
}

pub(super) fn check_kind(
    kind: Kind,
    method: &MethodDescriptor,
    version: http::Version,
) -> Result<(), Status> {
    let name = method.full_name();
    let bidi = method.is_client_streaming() && method.is_server_streaming();
    if bidi && version < http::Version::HTTP_2 {
        return Err(Status::unimplemented(format!(
            "{name} is a bidirectional stream, which the Connect protocol serves over HTTP/2 \
             only (HTTP/1.1 cannot send the request while the answer streams): call it over \
             HTTP/2 (h2c with prior knowledge, or h2 over TLS)"
        )));
    }
    let streams = method.is_client_streaming() || method.is_server_streaming();
    match (kind, streams) {
        (Kind::Unary(_), true) => Err(Status::invalid_argument(format!(
            "{name} is a streaming method: send application/connect+json or application/connect+proto"
        ))),
        (Kind::Stream(_), false) => Err(Status::invalid_argument(format!(
            "{name} is unary: send application/json or application/proto"
        ))),
        _ => Ok(()),
    }
}
