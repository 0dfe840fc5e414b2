//! The HTTP edge of the gRPC port: one listener, three protocols over the same services, chosen
//! by content type, plus the progress page.
//!
//! - `application/grpc*`: native gRPC, straight to the routes (`server`);
//! - `application/grpc-web*`: gRPC-Web (tonic-web's translation), over HTTP/1.1 or HTTP/2;
//! - `application/json`, `application/proto` (unary) and `application/connect+json`,
//!   `application/connect+proto` (server streaming): the Connect protocol (`connect`);
//! - `GET /ui/…`: the embedded live progress page (`ui`).
//!
//! Every protocol ends in the same gRPC routes, so authentication, authorization, deadlines, the
//! cache and error mapping are the gRPC path's, unchanged. Cross-origin browser UIs are allowed
//! only for the configured origins (`[http] cors_origins`); preflights are answered here, before
//! any protocol translation.
//!
//! Before any protocol sees it, a request whose metadata is over `[limits]
//! grpc_max_header_list_bytes` is refused with `INVALID_ARGUMENT` naming its largest entry; a
//! call is authenticated from its headers alone (the caller travels on as a [`Caller`]
//! extension), so an unauthenticated client is answered before a byte of its body is read;
//! its body must then arrive in time (`body_timeout`); and, with an idle timeout, each call
//! counts as open on its connection (`activity`).

pub mod activity;
pub mod body_timeout;
pub mod compression;
pub mod connect;
pub mod ui;

pub use body_timeout::BodyTimeout;
pub use compression::Compression;

use http::{HeaderValue, Method, Request, Response};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tonic::body::Body;
use tonic::service::Routes;
use tower::{Service, ServiceExt as _};

/// Response headers a cross-origin browser client may read.
const EXPOSED_HEADERS: [&str; 9] = [
    "grpc-status",
    "grpc-message",
    "grpc-status-details-bin",
    "x-acs-request-id",
    "x-ack-cache",
    "x-ack-cache-age-ms",
    "x-ack-idempotent-replay",
    "connect-protocol-version",
    "content-type",
];

/// Request headers a cross-origin browser client may send.
const ALLOWED_HEADERS: [&str; 14] = [
    "content-type",
    "authorization",
    "x-grpc-web",
    "x-user-agent",
    "grpc-timeout",
    "connect-protocol-version",
    "connect-timeout-ms",
    "x-ack-profile",
    "x-ack-region",
    "cache-control",
    "idempotency-key",
    "x-ack-when-busy",
    "traceparent",
    "tracestate",
];

/// Who is calling, from a request's headers and connection (bearer token, client
/// certificate); `None` when there is nobody to tell apart (insecure local mode); the error is
/// the status to answer with.
pub type Authenticator = std::sync::Arc<
    dyn Fn(&http::HeaderMap, &http::Extensions) -> Result<Option<String>, tonic::Status>
        + Send
        + Sync,
>;

/// The authenticated caller of a request, set by the edge before any service sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller(pub String);

/// Whether a path is served without a caller: health checking and server reflection, which
/// describe the service and hold nothing of the cloud's.
fn served_to_anyone(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.Health/") || path.starts_with("/grpc.reflection.")
}

/// How the edge is set up.
#[derive(Clone, Default)]
pub struct EdgeConfig {
    /// Largest request message accepted (the gRPC limit, applied to Connect bodies too).
    pub max_request_bytes: usize,
    /// Largest request metadata (headers) accepted, counted as HTTP/2 counts a header list;
    /// 0: no check here.
    pub max_header_list_bytes: usize,
    /// Origins allowed to call cross-origin (exact `scheme://host[:port]`); none by default.
    pub cors_origins: Vec<String>,
    /// How long a request's body may take to arrive.
    pub body_timeout: Option<BodyTimeout>,
    /// gzip both ways (`compression`).
    pub compression: Compression,
    /// Authenticates calls from their headers; `None`: the services do it themselves.
    pub authenticate: Option<Authenticator>,
}

/// The protocol a request speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Grpc,
    GrpcWeb,
    Connect(connect::Kind),
    /// A Connect unary call sent as a GET (`/package.Service/Method?encoding=…&message=…`).
    ConnectGet,
    Page,
    Other,
}

fn protocol<B>(req: &Request<B>) -> Protocol {
    let content_type = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if content_type.starts_with("application/grpc-web") {
        Protocol::GrpcWeb
    } else if content_type.starts_with("application/grpc") {
        Protocol::Grpc
    } else if let Some(kind) = connect::Kind::of(content_type) {
        Protocol::Connect(kind)
    } else if req.method() == Method::GET
        && req.uri().query().is_some_and(|q| q.contains("message="))
        && !req.uri().path().starts_with("/ui")
    {
        Protocol::ConnectGet
    } else if matches!(*req.method(), Method::GET | Method::HEAD) {
        Protocol::Page
    } else {
        Protocol::Other
    }
}

/// The service behind the gRPC port: the dispatch, behind the CORS policy when origins are
/// configured.
pub type Edge = tower::util::Either<tower_http::cors::Cors<Dispatch>, Dispatch>;

/// The header list size HTTP/2 itself refuses (with HTTP 431, which gRPC clients report as
/// `UNKNOWN`): well above the configured limit, so that the edge answers everything between
/// with a status naming the metadata.
pub fn hard_header_limit(max_header_list_bytes: u32) -> u32 {
    max_header_list_bytes.saturating_mul(4).max(64 * 1024)
}

/// Request metadata over `max` bytes (each entry counts its name, its value and 32, as HTTP/2
/// counts a header list): `INVALID_ARGUMENT` naming the largest entry, never its value.
fn oversized_metadata(headers: &http::HeaderMap, max: usize) -> Option<tonic::Status> {
    if max == 0 {
        return None;
    }
    let size = |(k, v): (&http::HeaderName, &HeaderValue)| k.as_str().len() + v.len() + 32;
    let total: usize = headers.iter().map(size).sum();
    if total <= max {
        return None;
    }
    let (largest, bytes) = headers
        .iter()
        .map(|e| (e.0.as_str(), size(e)))
        .max_by_key(|(_, n)| *n)?;
    let reason = format!(
        "the request's metadata is {total} bytes, over the limit of {max} \
         ([limits] grpc_max_header_list_bytes); its largest entry is `{largest}` ({bytes} bytes)"
    );
    Some(
        crate::error::GatewayError::InvalidArgument(crate::translate::InvalidField::new(
            largest, reason,
        ))
        .into_status(),
    )
}

/// Builds the edge over the gRPC routes; with `connections`, each call counts as open on its
/// connection (for the idle timeout).
pub fn edge(
    routes: Routes,
    config: &EdgeConfig,
    connections: Option<std::sync::Arc<activity::Connections>>,
) -> Edge {
    let grpc = GrpcFraming {
        routes: routes.clone(),
        body_timeout: config.body_timeout,
        compression: config.compression,
    };
    let dispatch = Dispatch {
        max_header_list_bytes: config.max_header_list_bytes,
        body_timeout: config.body_timeout,
        authenticate: config.authenticate.clone(),
        connections,
        // gRPC-Web's translation reads the body and would report its failure as INTERNAL: the
        // body is timed (and its frames inflated) behind it, on the translated request, so a
        // late body is DEADLINE_EXCEEDED there too.
        web: tower::Layer::layer(&tonic_web::GrpcWebLayer::new(), grpc.clone()),
        connect: connect::Connect::new(
            routes.clone(),
            config.max_request_bytes,
            config.compression,
        ),
        grpc,
        page: ui::Page::embedded(),
    };
    match cors_layer(&config.cors_origins) {
        Some(cors) => tower::util::Either::Left(tower::Layer::layer(&cors, dispatch)),
        None => tower::util::Either::Right(dispatch),
    }
}

/// The CORS policy for the configured origins; `None` when there are none (same origin only).
fn cors_layer(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    if origins.is_empty() {
        return None;
    }
    let header = |name: &&'static str| http::HeaderName::from_static(name);
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::POST, Method::GET])
            .allow_headers(ALLOWED_HEADERS.iter().map(header).collect::<Vec<_>>())
            .expose_headers(EXPOSED_HEADERS.iter().map(header).collect::<Vec<_>>())
            .max_age(Duration::from_secs(2 * 3600)),
    )
}

type EdgeFuture = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

/// Chooses the protocol's handler.
#[derive(Clone)]
pub struct Dispatch {
    max_header_list_bytes: usize,
    body_timeout: Option<BodyTimeout>,
    authenticate: Option<Authenticator>,
    /// The port's connections, when their calls are counted (`grpc_max_connection_idle`).
    connections: Option<std::sync::Arc<activity::Connections>>,
    grpc: GrpcFraming,
    web: tonic_web::GrpcWebService<GrpcFraming>,
    connect: connect::Connect,
    page: ui::Page,
}

impl Service<Request<Body>> for Dispatch {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = EdgeFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        let protocol = protocol(&req);
        if let Some(status) = oversized_metadata(req.headers(), self.max_header_list_bytes) {
            return Box::pin(std::future::ready(Ok(refusal(protocol, &req, &status))));
        }
        if protocol != Protocol::Page {
            // Authenticated from the head alone: a refused caller's body is never read.
            if let Some(authenticate) = self
                .authenticate
                .as_ref()
                .filter(|_| !served_to_anyone(req.uri().path()))
            {
                match authenticate(req.headers(), req.extensions()) {
                    Ok(Some(caller)) => {
                        req.extensions_mut().insert(Caller(caller));
                    }
                    Ok(None) => {}
                    Err(status) => {
                        return Box::pin(std::future::ready(Ok(refusal(protocol, &req, &status))))
                    }
                }
            }
            // gRPC and gRPC-Web bodies are timed with their framing (`GrpcFraming`).
            if !matches!(protocol, Protocol::Grpc | Protocol::GrpcWeb) {
                req = timed(req, self.body_timeout);
            }
        }
        // With an idle timeout, the call counts as open on its connection until its answer's
        // body is sent or dropped.
        let open = self.connections.as_ref().and_then(|c| c.call_started(&req));
        let answer = self.route(protocol, req);
        match open {
            None => answer,
            Some(call) => Box::pin(async move {
                let response = answer.await?;
                Ok(response.map(|body| activity::Counted::body(body, call)))
            }),
        }
    }
}

impl Dispatch {
    /// The protocol's handler for the request.
    fn route(&mut self, protocol: Protocol, req: Request<Body>) -> EdgeFuture {
        match protocol {
            Protocol::Grpc => {
                let grpc = self.grpc.clone();
                Box::pin(grpc.oneshot(req))
            }
            Protocol::GrpcWeb => {
                let web = self.web.clone();
                Box::pin(async move {
                    Ok(match web.oneshot(req).await {
                        Ok(response) => response,
                        Err(e) => {
                            tracing::debug!(error = %e, "gRPC-Web request failed");
                            tonic::Status::internal("gRPC-Web translation failed").into_http()
                        }
                    })
                })
            }
            Protocol::Connect(kind) => {
                let connect = self.connect.clone();
                Box::pin(async move { Ok(connect.call(kind, req).await) })
            }
            Protocol::ConnectGet => {
                let connect = self.connect.clone();
                Box::pin(async move { Ok(connect.call_get(req).await) })
            }
            Protocol::Page => {
                let page = self.page.clone();
                Box::pin(async move { Ok(page.serve(&req)) })
            }
            Protocol::Other if req.version() == http::Version::HTTP_2 => {
                // Let the gRPC routes answer (and log) whatever this is.
                let grpc = self.grpc.clone();
                Box::pin(grpc.oneshot(req))
            }
            Protocol::Other => Box::pin(async move {
                Ok(connect::error_response(
                    http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    &tonic::Status::invalid_argument(
                        "unsupported content-type: send application/json or application/proto \
                         (Connect unary), application/connect+json or application/connect+proto \
                         (Connect streams), application/grpc-web (gRPC-Web) or application/grpc",
                    ),
                ))
            }),
        }
    }
}

/// The request with its body timed: client streams (reflection) may pause between messages,
/// every other call's body is one message, which must arrive in time.
fn timed(req: Request<Body>, limits: Option<BodyTimeout>) -> Request<Body> {
    match limits.filter(|_| !req.uri().path().starts_with("/grpc.reflection.")) {
        Some(limits) => req.map(|body| Body::new(body_timeout::TimedBody::new(body, limits))),
        None => req,
    }
}

/// The gRPC routes as gRPC and gRPC-Web clients reach them: each request's body timed, its
/// compressed frames inflated, and the answer's large frames compressed for clients that accept
/// gzip (`compression`).
#[derive(Clone)]
pub struct GrpcFraming {
    routes: Routes,
    body_timeout: Option<BodyTimeout>,
    compression: Compression,
}

impl Service<Request<Body>> for GrpcFraming {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = EdgeFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let settings = self.compression;
        let (req, compress) = match compression::grpc_request(req, settings) {
            Ok(ready) => ready,
            Err(status) => {
                let refused = compression::grpc_response(
                    status.into_http(),
                    compression::Negotiated {
                        compress: false,
                        advertise: true,
                    },
                    settings,
                );
                return Box::pin(std::future::ready(Ok(refused)));
            }
        };
        let answer = self.routes.clone().oneshot(timed(req, self.body_timeout));
        if !compress.compress && !compress.advertise {
            // Nothing to change in the answer: no second future around the first.
            return Box::pin(answer);
        }
        Box::pin(async move {
            let response = answer.await?;
            Ok(compression::grpc_response(response, compress, settings))
        })
    }
}

/// A call refused before any service saw it, answered in its protocol's way: gRPC and
/// gRPC-Web (and other HTTP/2 requests, which the gRPC routes would answer) get a trailers-only
/// answer in the request's content type, everything else the Connect error JSON.
fn refusal<B>(protocol: Protocol, req: &Request<B>, status: &tonic::Status) -> Response<Body> {
    let grpc = matches!(protocol, Protocol::Grpc | Protocol::GrpcWeb)
        || (protocol == Protocol::Other && req.version() == http::Version::HTTP_2);
    if let Protocol::Connect(kind) = protocol {
        return connect::refusal(kind, status);
    }
    if !grpc {
        return connect::error_response(connect::http_status(status.code()), status);
    }
    let mut response = status.clone().into_http();
    if let Some(content_type) = req.headers().get(http::header::CONTENT_TYPE) {
        response
            .headers_mut()
            .insert(http::header::CONTENT_TYPE, content_type.clone());
    }
    response
}

#[cfg(test)]
mod tests;
