//! Connect errors: the error JSON (code, message, the `google.rpc` details with their JSON form),
//! the Connect names of the codes and the HTTP statuses the specification gives them.

use crate::proto;
use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::Full;
use prost::Message as _;
use prost_reflect::DynamicMessage;
use tonic::body::Body;
use tonic::{Code, Status};

/// A Connect error answer (unary), JSON.
pub fn error_response(http: StatusCode, status: &Status) -> Response<Body> {
    let body = serde_json::to_vec(&error_json(status)).unwrap_or_default();
    let mut response = Response::new(Body::new(Full::new(Bytes::from(body))));
    *response.status_mut() = http;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The Connect error JSON: code, message and the `google.rpc` details of the status, each with
/// its type, its bytes (base64) and, for readers without the schema, its JSON form (`debug`).
pub fn error_json(status: &Status) -> serde_json::Value {
    use base64::Engine as _;
    let mut error = serde_json::Map::new();
    error.insert("code".into(), connect_code(status.code()).into());
    if !status.message().is_empty() {
        error.insert("message".into(), status.message().into());
    }
    let details = tonic_types::pb::Status::decode(status.details())
        .map(|s| s.details)
        .unwrap_or_default();
    if !details.is_empty() {
        let details: Vec<serde_json::Value> = details
            .iter()
            .map(|any| {
                let type_name = any.type_url.rsplit('/').next().unwrap_or_default();
                let mut detail = serde_json::json!({
                    "type": type_name,
                    "value": base64::engine::general_purpose::STANDARD_NO_PAD.encode(&any.value),
                });
                if let Some(debug) = debug_json(type_name, &any.value) {
                    detail["debug"] = debug;
                }
                detail
            })
            .collect();
        error.insert("details".into(), details.into());
    }
    error.into()
}

fn debug_json(type_name: &str, value: &[u8]) -> Option<serde_json::Value> {
    let desc = proto::pool().get_message_by_name(type_name)?;
    let message = DynamicMessage::decode(desc, value).ok()?;
    serde_json::to_value(&message).ok()
}

/// The Connect name of a code.
pub fn connect_code(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "canceled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

/// The HTTP status the Connect specification gives a code.
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}
