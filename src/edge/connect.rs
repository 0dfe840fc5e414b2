//! The Connect protocol (connectrpc.com, "Connect protocol" specification) over the gRPC routes.
//!
//! A Connect call is translated into the gRPC call it means and handed to the same routes a
//! native gRPC call takes, so it is authenticated, authorized, cached, limited and mapped to
//! errors exactly as one; the gRPC answer is translated back:
//!
//! - unary (`application/json`, `application/proto`): the body is the bare message; the answer
//!   is the bare message with status 200, or the Connect error JSON with the HTTP status the
//!   specification maps its code to; response metadata are headers, trailing metadata
//!   `trailer-`-prefixed headers;
//! - streams (`application/connect+json`, `application/connect+proto`): enveloped messages (a
//!   flags byte and a 4-byte big-endian length), each sent as soon as the gRPC stream yields
//!   it, then the end-of-stream message (flag `0x02`, JSON) carrying the error, if any, and the
//!   trailing metadata. Client and bidirectional streams (server reflection) pass their request
//!   envelopes on as gRPC frames as they arrive (`request_stream.rs`); a bidirectional stream
//!   needs HTTP/2, as the specification says.
//!
//! JSON is the protobuf JSON mapping of the method's messages (requests accept both proto field
//! names and JSON names; an unknown field is INVALID_ARGUMENT naming it). Request headers carry
//! the meaning of gRPC metadata; `connect-timeout-ms` becomes `grpc-timeout`. gzip is accepted
//! and offered as the specification negotiates it (`compression`).

mod codec;
mod envelope;
mod errors;
mod get;
mod method;
mod request_stream;

pub use errors::{connect_code, error_json, error_response, http_status};

use codec::{convert, json_to_proto};
use envelope::{envelope, frame, single_envelope, take_frame, COMPRESSED, END_STREAM};
use method::{check_kind, find_method, no_method_status};

use super::compression::{self, Compression};
use bytes::{Bytes, BytesMut};
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full, Limited};
use prost_reflect::{MessageDescriptor, MethodDescriptor};
use tonic::body::Body;
use tonic::service::Routes;
use tonic::{Code, Status};
use tower::ServiceExt as _;

/// How a message is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Json,
    Proto,
}

/// A Connect request: unary or streaming, and its codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Unary(Codec),
    Stream(Codec),
}

impl Kind {
    /// The Connect kind a `content-type` names, if any.
    pub fn of(content_type: &str) -> Option<Kind> {
        let essence = content_type.split(';').next().unwrap_or_default().trim();
        let is = |name: &str| essence.eq_ignore_ascii_case(name);
        if is("application/json") {
            Some(Kind::Unary(Codec::Json))
        } else if is("application/proto") {
            Some(Kind::Unary(Codec::Proto))
        } else if is("application/connect+json") {
            Some(Kind::Stream(Codec::Json))
        } else if is("application/connect+proto") {
            Some(Kind::Stream(Codec::Proto))
        } else {
            None
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Kind::Unary(Codec::Json) => "application/json",
            Kind::Unary(Codec::Proto) => "application/proto",
            Kind::Stream(Codec::Json) => "application/connect+json",
            Kind::Stream(Codec::Proto) => "application/connect+proto",
        }
    }
}

/// Request headers that belong to the Connect protocol (or to the HTTP message) and are not
/// passed on as gRPC metadata.
const CONNECT_HEADERS: [&str; 9] = [
    "content-type",
    "content-length",
    "content-encoding",
    "accept-encoding",
    "accept",
    "connect-protocol-version",
    "connect-timeout-ms",
    "connect-content-encoding",
    "connect-accept-encoding",
];

/// Translates Connect calls into gRPC calls on the routes.
#[derive(Clone)]
pub struct Connect {
    routes: Routes,
    max_request_bytes: usize,
    compression: Compression,
}

impl Connect {
    pub fn new(routes: Routes, max_request_bytes: usize, compression: Compression) -> Self {
        Connect {
            routes,
            max_request_bytes,
            compression,
        }
    }

    /// Serves one Connect request.
    pub async fn call(&self, kind: Kind, req: Request<Body>) -> Response<Body> {
        if let (Kind::Unary(_), Err(status)) = (kind, find_method(req.uri().path())) {
            return error_response(no_method_status(req.uri().path(), &status), &status);
        }
        match self.translate(kind, req).await {
            Ok(response) => response,
            Err(status) => refusal(kind, &status),
        }
    }

    async fn translate(&self, kind: Kind, req: Request<Body>) -> Result<Response<Body>, Status> {
        let (mut parts, body) = req.into_parts();
        if parts.method != Method::POST {
            return Err(Status::unimplemented(format!(
                "{} is not served: Connect calls are POST requests",
                parts.method
            )));
        }
        let method = find_method(parts.uri.path())?;
        check_kind(kind, &method, parts.version)?;
        check_headers(&parts.headers)?;
        let timeout = grpc_timeout(&parts.headers)?;
        let limit = self.max_request_bytes;
        let (codec, encoding, accept) = match kind {
            Kind::Unary(codec) => (codec, "content-encoding", "accept-encoding"),
            Kind::Stream(codec) => (codec, "connect-content-encoding", "connect-accept-encoding"),
        };
        let gzipped = compression::request_is_gzip(&parts.headers, encoding)?;
        // Answers are compressed for a client that accepts gzip, message by message.
        let compress = self
            .compression
            .min_bytes
            .filter(|_| compression::accepts_gzip(parts.headers.get(accept)));
        let grpc_body = if method.is_client_streaming() {
            Body::new(request_stream::envelopes(
                body,
                codec,
                method.input(),
                gzipped,
                limit,
            ))
        } else {
            let bytes = collect(body, limit).await?;
            let message = match kind {
                Kind::Unary(_) if gzipped => compression::gunzip(&bytes, limit)?,
                Kind::Unary(_) => bytes,
                Kind::Stream(_) => single_envelope(bytes, gzipped, limit)?,
            };
            let message = match codec {
                Codec::Json => json_to_proto(&method.input(), &message)?,
                Codec::Proto => message,
            };
            Body::new(Full::new(frame(&message)))
        };

        // The gRPC call this means: same path, same metadata, same extensions (a client
        // certificate stays with the call).
        for name in CONNECT_HEADERS {
            parts.headers.remove(name);
        }
        let headers = &mut parts.headers;
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
        if let Some(timeout) = timeout {
            headers.insert("grpc-timeout", timeout);
        }
        parts.version = http::Version::HTTP_2;
        let grpc = Request::from_parts(parts, grpc_body);
        let response = match self.routes.clone().oneshot(grpc).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        match kind {
            Kind::Unary(codec) => unary_answer(codec, &method, response, compress).await,
            Kind::Stream(codec) => Ok(stream_answer(codec, method, response, compress)),
        }
    }
}

/// A request body whole, bounded by the request limit (plus an envelope's prefix).
async fn collect(body: Body, limit: usize) -> Result<Bytes, Status> {
    Ok(Limited::new(body, limit.saturating_add(5))
        .collect()
        .await
        .map_err(|e| match e.downcast::<Status>() {
            // The body itself failed (it did not arrive in time): its own status.
            Ok(status) => *status,
            Err(e) => Status::resource_exhausted(format!(
                "request body: {e} (the limit is {limit} bytes, [limits] max_request_bytes)"
            )),
        })?
        .to_bytes())
}

/// A Connect call refused before it was made, answered as its kind is: a unary call with the
/// error JSON and its HTTP status, a stream with HTTP 200 and the error in its end-of-stream
/// message.
pub fn refusal(kind: Kind, status: &Status) -> Response<Body> {
    match kind {
        Kind::Unary(_) => error_response(http_status(status.code()), status),
        Kind::Stream(codec) => {
            let end = end_of_stream(status, &HeaderMap::new());
            stream_head(codec, HeaderMap::new())
                .body(Body::new(Full::new(end)))
                .unwrap_or_else(|_| Status::internal("response").into_http())
        }
    }
}

fn check_headers(headers: &HeaderMap) -> Result<(), Status> {
    if let Some(v) = headers.get("connect-protocol-version") {
        if v != "1" {
            return Err(Status::invalid_argument(format!(
                "connect-protocol-version: {v:?} is not supported (1 is)"
            )));
        }
    }
    Ok(())
}

/// `connect-timeout-ms` (at most 10 digits) as a `grpc-timeout` value (at most 8 digits).
fn grpc_timeout(headers: &HeaderMap) -> Result<Option<HeaderValue>, Status> {
    let Some(value) = headers.get("connect-timeout-ms") else {
        return Ok(None);
    };
    let invalid = || {
        Status::invalid_argument(format!(
            "connect-timeout-ms: {value:?} is not a number of milliseconds (1 to 10 digits)"
        ))
    };
    let text = value.to_str().map_err(|_| invalid())?;
    if text.is_empty() || text.len() > 10 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let ms: u64 = text.parse().map_err(|_| invalid())?;
    let grpc = if ms <= 99_999_999 {
        format!("{ms}m")
    } else {
        format!("{}S", ms / 1000)
    };
    Ok(Some(HeaderValue::from_str(&grpc).map_err(|_| invalid())?))
}

/// A unary gRPC answer as a Connect answer.
async fn unary_answer(
    codec: Codec,
    method: &MethodDescriptor,
    response: Response<Body>,
    compress: Option<usize>,
) -> Result<Response<Body>, Status> {
    let (parts, body) = response.into_parts();
    let collected = body.collect().await?;
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let mut data = BytesMut::from(collected.to_bytes());
    let status = Status::from_header_map(&parts.headers)
        .or_else(|| Status::from_header_map(&trailers))
        .ok_or_else(|| Status::internal("the call ended without a status"))?;
    let mut headers = metadata(&parts.headers);
    if status.code() != Code::Ok {
        headers.extend(metadata(&trailers));
        let mut response = error_response(http_status(status.code()), &status);
        response.headers_mut().extend(headers);
        return Ok(response);
    }
    let message = take_frame(&mut data)?
        .ok_or_else(|| Status::internal("the call ended without an answer"))?;
    let mut body = convert(codec, &method.output(), message)?;
    let compressed = compress.is_some_and(|min| body.len() >= min);
    if compressed {
        body = compression::gzip(&body);
    }
    for (name, value) in metadata(&trailers) {
        if let Some(name) = name {
            if let Ok(prefixed) = HeaderName::try_from(format!("trailer-{name}")) {
                headers.append(prefixed, value);
            }
        }
    }
    let mut response = Response::new(Body::new(Full::new(body)));
    *response.headers_mut() = headers;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(Kind::Unary(codec).content_type()),
    );
    let headers = response.headers_mut();
    headers.insert(
        header::ACCEPT_ENCODING,
        HeaderValue::from_static(compression::ACCEPTED),
    );
    if compressed {
        headers.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static(compression::GZIP),
        );
    }
    Ok(response)
}

fn stream_head(codec: Codec, headers: HeaderMap) -> http::response::Builder {
    let mut builder = Response::builder().status(StatusCode::OK).header(
        header::CONTENT_TYPE,
        HeaderValue::from_static(Kind::Stream(codec).content_type()),
    );
    if let Some(h) = builder.headers_mut() {
        h.extend(headers);
    }
    builder
}

/// A server-streaming gRPC answer as a Connect stream: each message is re-enveloped as soon as
/// it arrives, then the end-of-stream message.
fn stream_answer(
    codec: Codec,
    method: MethodDescriptor,
    response: Response<Body>,
    compress: Option<usize>,
) -> Response<Body> {
    let (parts, body) = response.into_parts();
    // A trailers-only answer (an error before any message) has its status in the headers.
    let early = Status::from_header_map(&parts.headers);
    let state = StreamState {
        body,
        buf: BytesMut::new(),
        codec,
        output: method.output(),
        early,
        done: false,
        compress,
    };
    let stream = futures_util::stream::unfold(state, |mut state| async move {
        let bytes = state.next().await?;
        Some((
            Ok::<_, std::convert::Infallible>(http_body::Frame::data(bytes)),
            state,
        ))
    });
    let mut headers = metadata(&parts.headers);
    headers.insert(
        "connect-accept-encoding",
        HeaderValue::from_static(compression::ACCEPTED),
    );
    if compress.is_some() {
        headers.insert(
            "connect-content-encoding",
            HeaderValue::from_static(compression::GZIP),
        );
    }
    stream_head(codec, headers)
        .body(Body::new(http_body_util::StreamBody::new(stream)))
        .unwrap_or_else(|_| Status::internal("response").into_http())
}

struct StreamState {
    body: Body,
    buf: BytesMut,
    codec: Codec,
    output: MessageDescriptor,
    early: Option<Status>,
    done: bool,
    /// Messages of at least this many bytes are sent gzipped.
    compress: Option<usize>,
}

impl StreamState {
    /// The next envelope to send, or `None` after the end-of-stream message.
    async fn next(&mut self) -> Option<Bytes> {
        if self.done {
            return None;
        }
        loop {
            match take_frame(&mut self.buf) {
                Ok(Some(message)) => {
                    return Some(match convert(self.codec, &self.output, message) {
                        Ok(m) if self.compress.is_some_and(|min| m.len() >= min) => {
                            envelope(COMPRESSED, &compression::gzip(&m))
                        }
                        Ok(m) => envelope(0, &m),
                        Err(status) => self.end(&status, &HeaderMap::new()),
                    });
                }
                Ok(None) => {}
                Err(status) => return Some(self.end(&status, &HeaderMap::new())),
            }
            match self.body.frame().await {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => self.buf.extend_from_slice(&data),
                    Err(frame) => {
                        let trailers = frame.into_trailers().unwrap_or_default();
                        let status = Status::from_header_map(&trailers).unwrap_or_else(|| {
                            Status::internal("the stream ended without a status")
                        });
                        return Some(self.end(&status, &trailers));
                    }
                },
                Some(Err(status)) => return Some(self.end(&status, &HeaderMap::new())),
                None => {
                    let status = self
                        .early
                        .take()
                        .unwrap_or_else(|| Status::internal("the stream ended without a status"));
                    return Some(self.end(&status, &HeaderMap::new()));
                }
            }
        }
    }

    fn end(&mut self, status: &Status, trailers: &HeaderMap) -> Bytes {
        self.done = true;
        end_of_stream(status, trailers)
    }
}

/// The end-of-stream message: `{}` after success, else `{"error": …}`, with the trailing
/// metadata.
fn end_of_stream(status: &Status, trailers: &HeaderMap) -> Bytes {
    let mut end = serde_json::Map::new();
    if status.code() != Code::Ok {
        end.insert("error".into(), error_json(status));
    }
    let mut md = serde_json::Map::new();
    for (name, value) in metadata(trailers).iter() {
        let entry = md
            .entry(name.as_str().to_string())
            .or_insert_with(|| serde_json::Value::Array(Vec::new()));
        if let (serde_json::Value::Array(values), Ok(v)) = (entry, value.to_str()) {
            values.push(v.into());
        }
    }
    if !md.is_empty() {
        end.insert("metadata".into(), md.into());
    }
    let json = serde_json::to_vec(&end).unwrap_or_else(|_| b"{}".to_vec());
    envelope(END_STREAM, &json)
}

/// The headers of a gRPC answer that are metadata (not the protocol's own).
fn metadata(headers: &HeaderMap) -> HeaderMap {
    headers
        .iter()
        .filter(|(name, _)| {
            let n = name.as_str();
            !n.starts_with("grpc-") && n != "content-type" && n != "content-length" && n != "te"
        })
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests;
