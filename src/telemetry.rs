//! Logging and tracing.
//!
//! - Logs: `tracing` to stderr, filtered by `RUST_LOG` (default `info`), as JSON when
//!   `ACK_GATEWAY_LOG_FORMAT=json`.
//! - Traces: OpenTelemetry spans exported over OTLP/gRPC, configured by the standard `OTEL_*`
//!   variables (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER`, …).
//!   Off unless an OTLP endpoint (or `OTEL_TRACES_EXPORTER=otlp`) is set.
//!
//! The gateway's spans (a server span per RPC, a client span per upstream attempt) use the
//! target [`SPAN_TARGET`], which only the OpenTelemetry layer listens to: the log output is the
//! same with tracing on or off, and with tracing off no subscriber is interested in them, so
//! `tracing` does not even build them (the callsite is disabled once and for all).
//!
//! W3C trace context: [`set_parent`] adopts the caller's `traceparent`; [`inject`] writes the
//! upstream attempt's into the outgoing request (outside the signed headers).

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The target of the gateway's trace spans.
pub const SPAN_TARGET: &str = "ack_gateway::trace";

/// The service name spans carry unless `OTEL_SERVICE_NAME` or `OTEL_RESOURCE_ATTRIBUTES` says.
pub const SERVICE_NAME: &str = "ack-gateway";

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("{var}: `{value}` is not supported (only `grpc` OTLP export is built in)")]
    UnsupportedProtocol { var: &'static str, value: String },
    #[error("{var}: `{value}` is not supported (expected `otlp` or `none`)")]
    UnsupportedExporter { var: &'static str, value: String },
    #[error("OTLP trace exporter: {0}")]
    Build(String),
}

/// What `init` set up; [`Telemetry::shutdown`] flushes the spans still queued.
#[must_use]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn tracing(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports the spans still queued (bounded by `OTEL_BSP_EXPORT_TIMEOUT`).
    pub fn shutdown(self) {
        if let Some(provider) = self.provider {
            if let Err(e) = provider.shutdown() {
                tracing::warn!(error = %e, "flushing spans at exit failed");
            }
        }
    }
}

/// Installs the global subscriber: logs, and traces when `OTEL_*` asks for them. Must run inside
/// the Tokio runtime (the OTLP exporter's channel lives there).
pub fn init() -> Result<Telemetry, TelemetryError> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let json = env("ACK_GATEWAY_LOG_FORMAT").is_some_and(|v| v == "json");
    let provider = if traces_wanted(env)? {
        Some(otlp_provider(env)?)
    } else {
        None
    };
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = if json {
        fmt.json().with_filter(log_filter()).boxed()
    } else {
        fmt.with_filter(log_filter()).boxed()
    };
    let otel = provider
        .as_ref()
        .map(|p| span_layer(p.tracer(SERVICE_NAME)));
    let _ = tracing_subscriber::registry()
        .with(fmt)
        .with(otel)
        .try_init();
    if provider.is_some() {
        tracing::info!("exporting traces over OTLP");
    }
    Ok(Telemetry { provider })
}

/// `RUST_LOG` (default `info`), never the trace spans.
fn log_filter() -> EnvFilter {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    match format!("{SPAN_TARGET}=off").parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    }
}

/// The OpenTelemetry layer for a tracer: it sees the gateway's spans and nothing else. Tests
/// build their subscriber with it and an in-memory exporter.
pub fn span_layer<S>(tracer: opentelemetry_sdk::trace::Tracer) -> impl Layer<S>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_threads(false)
        .with_location(false)
        .with_filter(Targets::new().with_target(SPAN_TARGET, tracing::Level::TRACE))
}

/// Traces are exported when an OTLP endpoint is configured or `OTEL_TRACES_EXPORTER=otlp`, and
/// not when `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`.
fn traces_wanted(env: impl Fn(&str) -> Option<String>) -> Result<bool, TelemetryError> {
    if env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Ok(false);
    }
    let explicit = match env("OTEL_TRACES_EXPORTER") {
        None => false,
        Some(v) if v == "none" => return Ok(false),
        Some(v) if v == "otlp" => true,
        Some(value) => {
            return Err(TelemetryError::UnsupportedExporter {
                var: "OTEL_TRACES_EXPORTER",
                value,
            })
        }
    };
    let wanted = explicit
        || env("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
        || env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some();
    if wanted {
        for var in [
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ] {
            if let Some(value) = env(var).filter(|v| v != "grpc") {
                return Err(TelemetryError::UnsupportedProtocol { var, value });
            }
        }
    }
    Ok(wanted)
}

/// A batching OTLP/gRPC pipeline. The exporter reads the endpoint, headers, timeout and
/// compression from `OTEL_EXPORTER_OTLP_*`; the provider reads the sampler and span limits
/// (`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`, …) and the batch settings (`OTEL_BSP_*`);
/// the resource reads `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`.
fn otlp_provider(
    env: impl Fn(&str) -> Option<String>,
) -> Result<SdkTracerProvider, TelemetryError> {
    use opentelemetry_otlp::WithTonicConfig as _;
    let endpoint =
        env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| env("OTEL_EXPORTER_OTLP_ENDPOINT"));
    let mut builder = opentelemetry_otlp::SpanExporter::builder().with_tonic();
    if endpoint.is_some_and(|e| e.starts_with("https://")) {
        // A collector behind TLS is verified against the Mozilla roots shipped in the binary
        // (the image has no CA bundle).
        builder =
            builder.with_tls_config(tonic::transport::ClientTlsConfig::new().with_webpki_roots());
    }
    let exporter = builder
        .build()
        .map_err(|e| TelemetryError::Build(e.to_string()))?;
    let named = env("OTEL_SERVICE_NAME").is_some()
        || env("OTEL_RESOURCE_ATTRIBUTES").is_some_and(|a| a.contains("service.name="));
    let mut resource = opentelemetry_sdk::Resource::builder().with_attribute(
        opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
    );
    if !named {
        resource = resource.with_service_name(SERVICE_NAME);
    }
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build())
}

/// Makes the caller's W3C trace context (`traceparent`, `tracestate` in `headers`) the parent
/// of `span`. Nothing happens when the span is not traced or the caller sent no context.
pub fn set_parent(span: &tracing::Span, headers: &http::HeaderMap) {
    if span.is_disabled() || !headers.contains_key("traceparent") {
        return;
    }
    let parent = TraceContextPropagator::new().extract(&HeaderCarrier(headers));
    let _ = span.set_parent(parent);
}

/// Writes `span`'s W3C trace context into an outgoing request's headers.
pub fn inject(span: &tracing::Span, headers: &mut http::HeaderMap) {
    if span.is_disabled() {
        return;
    }
    TraceContextPropagator::new().inject_context(&span.context(), &mut HeaderCarrierMut(headers));
}

/// The trace id of `span`, for log lines, when it is traced.
pub fn trace_id(span: &tracing::Span) -> Option<String> {
    use opentelemetry::trace::TraceContextExt as _;
    if span.is_disabled() {
        return None;
    }
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

struct HeaderCarrier<'a>(&'a http::HeaderMap);

impl Extractor for HeaderCarrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct HeaderCarrierMut<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderCarrierMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests;
