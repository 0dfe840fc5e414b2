//! The gRPC edge: one generic service per upstream API (routes are built from the table, so
//! every operation is served by the same code), gRPC health checking, server reflection, and
//! graceful shutdown.
//!
//! Boundary: the only module that reads gRPC metadata and turns errors into statuses.

mod caller;
pub mod codec;
pub mod explain;
mod http1_framing;
pub mod incoming;
pub mod on_first_call;
pub mod operations;
pub mod tls;

pub use caller::{authenticate, call_context, edge_authenticator, parse_grpc_timeout};

use crate::cache::Served;
use crate::config::limits::GrpcLimits;
use crate::gateway::Gateway;
use crate::proto;
use crate::table::{Operation, OperationRef};
use bytes::Bytes;
use codec::RawCodec;
use on_first_call::BuiltOnFirstCall;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tonic::body::Body;
use tonic::server::{Grpc, UnaryService};
use tonic::service::Routes;
use tonic::{Request, Response, Status};
use tracing::Instrument as _;

/// Metadata key selecting the credential profile.
pub const PROFILE_METADATA: &str = "x-ack-profile";
/// Metadata key selecting the region.
pub const REGION_METADATA: &str = "x-ack-region";
/// Response metadata: `hit`, `miss` or `bypass` for cacheable operations.
pub const CACHE_METADATA: &str = "x-ack-cache";
/// Response metadata: the age of a cached answer in milliseconds.
pub const CACHE_AGE_METADATA: &str = "x-ack-cache-age-ms";
/// Request metadata bounding staleness: `no-cache` or `max-age=N`.
pub const CACHE_CONTROL_METADATA: &str = "cache-control";
/// Response metadata on answers that carry a secret (kubeconfigs, attach scripts,
/// credentials): over HTTP no cache may keep them.
pub const NO_STORE: (&str, &str) = ("cache-control", "no-store");
/// Request metadata: `wait` holds a write refused because its cluster is busy until the
/// cluster is running again; `fail` passes the refusal through.
pub const WHEN_BUSY_METADATA: &str = "x-ack-when-busy";
/// Response metadata carrying the upstream request id.
pub const REQUEST_ID_METADATA: &str = "x-acs-request-id";

/// Serves one upstream API's operations: `/{package}.{Service}/{Operation}`.
#[derive(Clone)]
pub struct ApiService {
    gateway: Arc<Gateway>,
    service_key: Arc<str>,
    max_request_bytes: usize,
}

impl tower::Service<http::Request<axum::body::Body>> for ApiService {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<axum::body::Body>) -> Self::Future {
        let req = req.map(Body::new);
        let this = self.clone();
        Box::pin(async move {
            // Exactly `/package.Service/Method`: a deeper path names no method (a proxy's path
            // rule in front of the gateway must mean what it says).
            let path = req.uri().path();
            let name = path
                .strip_prefix('/')
                .and_then(|p| p.split_once('/'))
                .map_or("", |(_, method)| method);
            let found = (!name.contains('/'))
                .then(|| OperationRef::find(this.gateway.table(), &this.service_key, name))
                .flatten();
            let Some(op) = found else {
                let shown: String = path.escape_debug().take(200).collect();
                return Ok(Status::unimplemented(format!("unknown method {shown}")).into_http());
            };
            let span = rpc_span(req.uri().path(), &op.name);
            crate::telemetry::set_parent(&span, req.headers());
            let handler = Unary {
                gateway: this.gateway.clone(),
                op,
                span: span.clone(),
            };
            let mut grpc = Grpc::new(RawCodec).max_decoding_message_size(this.max_request_bytes);
            Ok(grpc.unary(handler, req).instrument(span).await)
        })
    }
}

/// The server span of one call (see `telemetry`). Fields are filled in as the call learns
/// them: here the caller, profile and status; in the gateway the region, target, cache result
/// and upstream request id.
fn rpc_span(path: &str, operation: &str) -> tracing::Span {
    use tracing::field::Empty;
    let method = path.trim_start_matches('/');
    let service = method.split('/').next().unwrap_or_default();
    tracing::info_span!(
        target: crate::telemetry::SPAN_TARGET,
        "rpc",
        otel.name = method,
        otel.kind = "server",
        otel.status_description = Empty,
        rpc.system = "grpc",
        rpc.service = service,
        rpc.method = operation,
        rpc.grpc.status_code = Empty,
        ack.caller = Empty,
        ack.profile = Empty,
        ack.operation = operation,
        ack.region = Empty,
        ack.target = Empty,
        ack.cache = Empty,
        ack.request_id = Empty,
        ack.caller_rate_limit_wait_ms = Empty,
    )
}

/// Records how a call ended on its span. As OpenTelemetry's gRPC conventions say, only codes
/// that mean the server failed mark a server span as an error.
fn record_status(span: &tracing::Span, result: &Result<Response<Bytes>, Status>) {
    let Err(status) = result else {
        span.record("rpc.grpc.status_code", 0);
        return;
    };
    span.record("rpc.grpc.status_code", status.code() as i32);
    use tonic::Code::*;
    if matches!(
        status.code(),
        Unknown | DeadlineExceeded | Unimplemented | Internal | Unavailable | DataLoss
    ) {
        span.record("otel.status_description", status.message());
    }
}

struct Unary {
    gateway: Arc<Gateway>,
    op: OperationRef,
    span: tracing::Span,
}

impl UnaryService<Bytes> for Unary {
    type Response = Bytes;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Bytes>, Status>> + Send>>;

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        let gateway = self.gateway.clone();
        let op = self.op.clone();
        let span = self.span.clone();
        Box::pin(async move {
            let started = std::time::Instant::now();
            let result = serve_unary(&gateway, &op, &span, request).await;
            let code = result.as_ref().err().map_or(tonic::Code::Ok, Status::code);
            gateway
                .metrics()
                .rpc(&op.name, crate::error::code_name(code), started.elapsed());
            record_status(&span, &result);
            result
        })
    }
}

/// One unary call: who calls, with which profile, then the gateway's request path.
async fn serve_unary(
    gateway: &Arc<Gateway>,
    op: &Operation,
    span: &tracing::Span,
    request: Request<Bytes>,
) -> Result<Response<Bytes>, Status> {
    let mut ctx = call_context(request.metadata())?;
    ctx.caller = authenticate(gateway, &request)?;
    span.record("ack.caller", ctx.caller.as_str());
    span.record("ack.profile", ctx.profile.as_str());
    let reply = gateway
        .unary(op, &ctx, request.into_inner())
        .await
        .map_err(|e| e.into_status())?;
    let mut response = Response::new(reply.message);
    if let Some(id) = reply.request_id.and_then(|id| id.parse().ok()) {
        response.metadata_mut().insert(REQUEST_ID_METADATA, id);
    }
    if reply.replay {
        response.metadata_mut().insert(
            crate::error::IDEMPOTENT_REPLAY,
            tonic::metadata::MetadataValue::from_static("true"),
        );
    }
    if op.policy.secrets {
        // A kubeconfig, an attach script or a credential: over HTTP (gRPC-Web, Connect) no
        // cache may keep it.
        let (name, value) = NO_STORE;
        response
            .metadata_mut()
            .insert(name, tonic::metadata::MetadataValue::from_static(value));
    }
    if let Some(served) = reply.cache {
        let age = match served {
            Served::Hit { age } => age,
            Served::Miss | Served::Bypass => Duration::ZERO,
        };
        let md = response.metadata_mut();
        md.insert(
            CACHE_METADATA,
            tonic::metadata::MetadataValue::from_static(served.label()),
        );
        // The age differs in nearly every answer: sent as a literal never indexed, it does not
        // churn the HPACK tables of both ends (which keep the headers that do repeat).
        let mut age = tonic::metadata::MetadataValue::from(age.as_millis() as u64);
        age.set_sensitive(true);
        md.insert(CACHE_AGE_METADATA, age);
    }
    Ok(response)
}

/// The gRPC routes: every upstream API, health, and reflection (v1 and v1alpha); and the
/// health reporter, which readiness (`admin`) keeps up to date.
pub async fn routes(
    gateway: Arc<Gateway>,
    max_request_bytes: usize,
) -> Result<(Routes, tonic_health::server::HealthReporter), Box<dyn std::error::Error + Send + Sync>>
{
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    let mut router = axum::Router::new();
    let service_keys: Vec<String> = gateway.table().table.services.keys().cloned().collect();
    for key in service_keys {
        let name = gateway
            .table()
            .grpc_service_name(&key)
            .ok_or("service without a name")?;
        let svc = ApiService {
            gateway: gateway.clone(),
            service_key: key.into(),
            max_request_bytes,
        };
        router = router.route_service(&format!("/{name}/{{*rest}}"), svc);
        health_reporter
            .set_service_status(&name, tonic_health::ServingStatus::Serving)
            .await;
    }
    // Reflection describes every service served here, health and reflection included.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
    };
    // Built by their first call (see `on_first_call`): idle gateways never hold them.
    let reflection_v1 = BuiltOnFirstCall::new(move || reflection().build_v1());
    let reflection_v1alpha = BuiltOnFirstCall::new(move || reflection().build_v1alpha());
    health_reporter
        .set_service_status(explain::SERVICE_NAME, tonic_health::ServingStatus::Serving)
        .await;
    let routes = Routes::from(router)
        .add_service(explain::ExplainApi::server(gateway.clone()))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);
    Ok((routes, health_reporter))
}

/// Serves the routes (behind the HTTP edge) on a bound listener until `shutdown` resolves, then
/// drains in-flight calls. `limits` bound the connections (`incoming`) and what one HTTP/2
/// connection may hold (tonic's own default is no limit on concurrent streams).
pub async fn serve(
    listener: tokio::net::TcpListener,
    routes: Routes,
    edge: crate::edge::EdgeConfig,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    limits: GrpcLimits,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let mut builder = tonic::transport::Server::builder();
    if let Some(age) = limits.max_connection_age {
        builder = builder.max_connection_age(age);
    }
    // No grace: with one, tonic 0.14 closes the connection at age + grace without ever sending
    // GOAWAY, cutting its calls with no warning.
    // HTTP/2 refuses header lists over this with HTTP 431, which gRPC clients cannot read;
    // the edge answers those up to it with INVALID_ARGUMENT naming the metadata.
    let hard_header_limit = crate::edge::hard_header_limit(limits.max_header_list_bytes);
    let builder = builder
        .accept_http1(true)
        .max_concurrent_streams(limits.max_concurrent_streams)
        .http2_max_header_list_size(hard_header_limit)
        .http2_keepalive_interval(Some(limits.keepalive_interval))
        .http2_keepalive_timeout(Some(limits.keepalive_timeout));
    // Calls are counted per connection only when idle connections are closed.
    let counted = limits
        .max_connection_idle
        .map(|_| Arc::new(crate::edge::activity::Connections::default()));
    // HTTP/1.1 too: gRPC-Web, Connect and the progress page (see `edge`).
    let edge = crate::edge::edge(routes, &edge, counted.clone());
    let connections = incoming::ConnectionLimits {
        max_connections: limits.max_connections,
        max_per_peer: limits.max_connections_per_peer,
        handshake_timeout: limits.handshake_timeout,
        idle: limits.max_connection_idle.zip(counted),
    };
    match tls {
        None => {
            builder
                .serve_with_incoming_shutdown(
                    edge,
                    incoming::plain(listener, connections),
                    shutdown,
                )
                .await
        }
        Some(tls) => {
            builder
                .serve_with_incoming_shutdown(
                    edge,
                    incoming::tls(listener, connections, tls),
                    shutdown,
                )
                .await
        }
    }
}

/// Binds a listener, reporting the address in the error.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
}

#[cfg(test)]
mod tests;
