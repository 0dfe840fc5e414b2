//! The Connect protocol's unary `GET`: `?encoding=json|proto&message=…` (`base64=1`,
//! `compression=gzip`, `connect=v1`) for methods marked `idempotency_level = NO_SIDE_EFFECTS`,
//! turned into the POST it means.

use super::compression;
use super::errors::{error_response, http_status};
use super::method::{find_method, no_method_status};
use super::{Codec, Connect, Kind};
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use prost_reflect::MethodDescriptor;
use tonic::body::Body;
use tonic::Status;

impl Connect {
    /// Serves a Connect unary GET: `?encoding=json|proto&message=…` (`base64=1` for a base64url
    /// message, `connect=v1`, `compression=identity`), for methods marked
    /// `idempotency_level = NO_SIDE_EFFECTS` (reads whose answers carry no secret). It becomes
    /// the POST it means, so everything after is the unary path's.
    pub async fn call_get(&self, req: Request<Body>) -> Response<Body> {
        let (mut parts, _) = req.into_parts();
        let refused = |http: StatusCode, status: Status| error_response(http, &status);
        let method = match find_method(parts.uri.path()) {
            Ok(m) => m,
            Err(status) => {
                let http = no_method_status(parts.uri.path(), &status);
                return refused(http, status);
            }
        };
        if !without_side_effects(&method) {
            let mut response = refused(
                StatusCode::METHOD_NOT_ALLOWED,
                Status::unimplemented(format!(
                    "{} is not served with GET (it changes state, or its answer carries secrets): send a POST",
                    method.full_name()
                )),
            );
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
            return response;
        }
        let (codec, message, gzipped) = match get_message(parts.uri.query().unwrap_or_default()) {
            Ok(found) => found,
            Err(status) => return refused(http_status(status.code()), status),
        };
        // A compressed message is the POST's compressed body.
        parts.headers.remove(header::CONTENT_ENCODING);
        if gzipped {
            parts.headers.insert(
                header::CONTENT_ENCODING,
                HeaderValue::from_static(compression::GZIP),
            );
        }
        parts.method = Method::POST;
        parts.uri = match http::Uri::builder()
            .path_and_query(parts.uri.path())
            .build()
        {
            Ok(uri) => uri,
            Err(_) => return refused(StatusCode::BAD_REQUEST, Status::invalid_argument("path")),
        };
        let kind = Kind::Unary(codec);
        parts.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(kind.content_type()),
        );
        self.call(
            kind,
            Request::from_parts(parts, Body::new(Full::new(message))),
        )
        .await
    }
}

/// Whether the method is marked `idempotency_level = NO_SIDE_EFFECTS`.
pub(super) fn without_side_effects(method: &MethodDescriptor) -> bool {
    const NO_SIDE_EFFECTS: i32 = 1;
    method
        .options()
        .get_field_by_name("idempotency_level")
        .and_then(|v| v.as_enum_number())
        == Some(NO_SIDE_EFFECTS)
}

/// A GET's codec and message, from its query.
pub(super) fn get_message(query: &str) -> Result<(Codec, Bytes, bool), Status> {
    let mut encoding = None;
    let mut message = None;
    let mut base64 = false;
    let mut gzip = false;
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "encoding" => encoding = Some(value.into_owned()),
            "message" => message = Some(value.into_owned()),
            "base64" => base64 = value == "1",
            "connect" if value != "v1" => {
                return Err(Status::invalid_argument(format!(
                    "connect: {value:?} is not supported (v1 is)"
                )))
            }
            "compression" if value == compression::GZIP => gzip = true,
            "compression" if value != "identity" => {
                return Err(Status::unimplemented(format!(
                    "compression: {value:?} is not supported (gzip and identity are)"
                )))
            }
            _ => {}
        }
    }
    let codec = match encoding.as_deref() {
        Some("json") => Codec::Json,
        Some("proto") => Codec::Proto,
        Some(other) => {
            return Err(Status::invalid_argument(format!(
                "encoding: {other:?} is not served (json or proto are)"
            )))
        }
        None => {
            return Err(Status::invalid_argument(
                "encoding: missing (json or proto)",
            ))
        }
    };
    let message = message.ok_or_else(|| Status::invalid_argument("message: missing"))?;
    let bytes = if base64 {
        use base64::Engine as _;
        let trimmed = message.trim_end_matches('=');
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(trimmed)
            .map_err(|e| Status::invalid_argument(format!("message: not base64url: {e}")))?
    } else {
        message.into_bytes()
    };
    Ok((codec, Bytes::from(bytes), gzip))
}
