//! When traces are exported, and the W3C header round trip.

use super::*;
use std::collections::HashMap;

fn wanted(pairs: &[(&str, &str)]) -> Result<bool, TelemetryError> {
    let env: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    traces_wanted(|k| env.get(k).cloned())
}

#[test]
fn traces_are_off_unless_an_endpoint_or_the_exporter_is_set() {
    assert!(!wanted(&[]).expect("valid"));
    assert!(!wanted(&[("OTEL_SERVICE_NAME", "gw")]).expect("valid"));
    assert!(wanted(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317")]).expect("valid"));
    assert!(wanted(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4317")]).expect("valid"));
    assert!(wanted(&[("OTEL_TRACES_EXPORTER", "otlp")]).expect("valid"));
}

#[test]
fn traces_can_be_switched_off_explicitly() {
    let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317");
    assert!(!wanted(&[endpoint, ("OTEL_SDK_DISABLED", "true")]).expect("valid"));
    assert!(!wanted(&[endpoint, ("OTEL_TRACES_EXPORTER", "none")]).expect("valid"));
}

#[test]
fn unsupported_exporters_and_protocols_are_errors() {
    let err = wanted(&[("OTEL_TRACES_EXPORTER", "zipkin")]).expect_err("zipkin");
    assert!(err.to_string().contains("OTEL_TRACES_EXPORTER"), "{err}");
    let err = wanted(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
    ])
    .expect_err("http");
    assert!(err.to_string().contains("http/protobuf"), "{err}");
    // Without an endpoint the protocol does not matter: nothing is exported.
    assert!(!wanted(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")]).expect("valid"));
}

#[test]
fn untraced_spans_neither_adopt_nor_inject_context() {
    let mut headers = http::HeaderMap::new();
    headers.insert(
        "traceparent",
        http::HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    );
    let span = tracing::Span::none();
    set_parent(&span, &headers);
    let mut out = http::HeaderMap::new();
    inject(&span, &mut out);
    assert!(out.is_empty());
    assert_eq!(trace_id(&span), None);
}
