//! Traces, metrics and the admin endpoints, end to end: spans reach an in-memory OpenTelemetry
//! exporter with their attributes and parent/child links (the caller's `traceparent` included,
//! and passed on to the upstream); `/metrics` shows the scenario's series; `/readyz` and gRPC
//! health follow whether the vault can sign.

use crate::support::*;
use ack_gateway::simulator::Fault;
use opentelemetry::trace::{SpanId, SpanKind, TraceId, TracerProvider as _};
use opentelemetry::Value;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;
use tracing_subscriber::layer::SubscriberExt;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN_ID: &str = "00f067aa0ba902b7";

/// A subscriber that sends the gateway's spans to an in-memory exporter, for this thread.
pub fn collect_spans() -> (
    InMemorySpanExporter,
    SdkTracerProvider,
    (tracing::subscriber::DefaultGuard, tracing::Dispatch),
) {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(ack_gateway::telemetry::span_layer(provider.tracer("test")));
    (exporter, provider, scoped_subscriber(subscriber))
}

pub fn attr<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

fn text(span: &SpanData, key: &str) -> String {
    match attr(span, key) {
        Some(v) => v.as_str().to_string(),
        None => panic!("span {} has no {key}: {:?}", span.name, span.attributes),
    }
}

fn int(span: &SpanData, key: &str) -> i64 {
    match attr(span, key) {
        Some(Value::I64(n)) => *n,
        other => panic!("span {} {key}: {other:?}", span.name),
    }
}

fn server_spans<'a>(spans: &'a [SpanData], op: &str) -> Vec<&'a SpanData> {
    let name = format!("{CS_SERVICE}/{op}");
    spans
        .iter()
        .filter(|s| s.span_kind == SpanKind::Server && s.name == name)
        .collect()
}

fn children<'a>(spans: &'a [SpanData], parent: &SpanData) -> Vec<&'a SpanData> {
    spans
        .iter()
        .filter(|s| s.parent_span_id == parent.span_context.span_id())
        .collect()
}

/// A cacheable read twice (a miss, then a hit), one that fails upstream (bypassing the cache),
/// and one refused for its region.
async fn reads(h: &Harness, cluster_id: &str) {
    for _ in 0..2 {
        h.call(
            CS_SERVICE,
            "DescribeClusterDetail",
            json!({"cluster_id": cluster_id}),
            &[("cache-control", "max-age=60")],
            None,
        )
        .await
        .expect("detail");
    }
    let missing = h
        .cs("DescribeClusterDetail", json!({"cluster_id": "c-missing"}))
        .await
        .expect_err("not found");
    assert_eq!(missing.code(), tonic::Code::NotFound);
    // Refused before the request is read (no such region): the span still names the target.
    let refused = h
        .call(
            CS_SERVICE,
            "DescribeClusterDetail",
            json!({"cluster_id": cluster_id}),
            &[("x-ack-region", "not a region")],
            None,
        )
        .await
        .expect_err("bad region");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
}

// A current-thread runtime: the gateway and the simulator run on this thread, under the
// collecting subscriber.
#[tokio::test(flavor = "current_thread")]
async fn spans_carry_attributes_parent_links_and_the_callers_traceparent() {
    let (exporter, provider, _guard) = collect_spans();
    let h = Harness::embedded().await;
    let traceparent = format!("00-{TRACE_ID}-{CALLER_SPAN_ID}-01");

    // A mutation under the caller's trace.
    let (created, md) = h
        .call(
            CS_SERVICE,
            "CreateCluster",
            json!({"name": "traced", "region_id": "cn-hangzhou"}),
            &[("traceparent", traceparent.as_str())],
            None,
        )
        .await
        .expect("created");
    let cluster_id = created["cluster_id"].as_str().expect("id").to_string();
    let request_id = md
        .get("x-acs-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("request id")
        .to_string();
    reads(&h, &cluster_id).await;

    provider.force_flush().expect("flushed");
    let spans = exporter.get_finished_spans().expect("spans");

    // The server span continues the caller's trace.
    let created_spans = server_spans(&spans, "CreateCluster");
    assert_eq!(created_spans.len(), 1, "{spans:#?}");
    let server = created_spans[0];
    let trace_id = TraceId::from_hex(TRACE_ID).expect("trace id");
    assert_eq!(server.span_context.trace_id(), trace_id);
    assert_eq!(
        server.parent_span_id,
        SpanId::from_hex(CALLER_SPAN_ID).expect("span id")
    );
    assert!(server.parent_span_is_remote);
    assert_eq!(text(server, "rpc.system"), "grpc");
    assert_eq!(text(server, "rpc.service"), CS_SERVICE);
    assert_eq!(text(server, "rpc.method"), "CreateCluster");
    assert_eq!(text(server, "ack.caller"), "local");
    assert_eq!(text(server, "ack.profile"), "default");
    assert_eq!(text(server, "ack.operation"), "CreateCluster");
    assert_eq!(text(server, "ack.region"), "cn-hangzhou");
    assert_eq!(text(server, "ack.request_id"), request_id);
    assert_eq!(int(server, "rpc.grpc.status_code"), 0);

    // One client span per upstream attempt, a child of the server span.
    let attempts = children(&spans, server);
    assert_eq!(attempts.len(), 1, "{attempts:#?}");
    let client = attempts[0];
    assert_eq!(client.span_kind, SpanKind::Client);
    assert_eq!(client.span_context.trace_id(), trace_id);
    assert_eq!(client.name, "POST /clusters");
    assert_eq!(text(client, "http.request.method"), "POST");
    assert_eq!(text(client, "url.template"), "/clusters");
    assert_eq!(text(client, "ack.operation"), "CreateCluster");
    assert_eq!(int(client, "ack.attempt"), 1);
    assert_eq!(int(client, "http.response.status_code"), 200);
    assert_eq!(text(client, "ack.request_id"), request_id);
    assert!(attr(client, "ack.rate_limit_wait_ms").is_some());
    assert!(
        attr(client, "ack.cache").is_none(),
        "mutations do not use the cache"
    );

    // The upstream received the client span's context.
    let recorded = h.sim().requests_for("CreateCluster");
    let sent = recorded[0]
        .headers
        .get("traceparent")
        .expect("traceparent sent upstream");
    assert_eq!(
        sent,
        &format!("00-{TRACE_ID}-{}-01", client.span_context.span_id())
    );

    // The read: a miss with one attempt whose route is the template, then a hit with none.
    let reads = server_spans(&spans, "DescribeClusterDetail");
    assert_eq!(reads.len(), 4);
    let (miss, hit, failed, refused) = (reads[0], reads[1], reads[2], reads[3]);
    assert_eq!(text(miss, "ack.target"), cluster_id);
    assert_eq!(text(miss, "ack.cache"), "miss");
    assert_ne!(
        miss.span_context.trace_id(),
        trace_id,
        "a call without traceparent starts its own trace"
    );
    assert_eq!(miss.parent_span_id, SpanId::INVALID);
    let miss_attempts = children(&spans, miss);
    assert_eq!(miss_attempts.len(), 1);
    assert_eq!(
        text(miss_attempts[0], "url.template"),
        "/clusters/{cluster_id}"
    );
    assert_eq!(text(miss_attempts[0], "ack.cache"), "miss");
    assert_eq!(text(hit, "ack.cache"), "hit");
    assert_eq!(
        text(hit, "ack.target"),
        cluster_id,
        "a hit names its target"
    );
    assert!(
        children(&spans, hit).is_empty(),
        "a hit has no upstream attempt"
    );

    // The failure: NOT_FOUND on the server span, 404 on the attempt.
    assert_eq!(
        int(failed, "rpc.grpc.status_code"),
        tonic::Code::NotFound as i64
    );
    assert_eq!(text(failed, "ack.target"), "c-missing");
    let failed_attempts = children(&spans, failed);
    assert_eq!(failed_attempts.len(), 1);
    assert_eq!(int(failed_attempts[0], "http.response.status_code"), 404);
    assert_eq!(text(failed_attempts[0], "error.type"), "404");
    assert_eq!(text(failed_attempts[0], "ack.cache"), "bypass");

    // A call refused before its request was read still names its target.
    assert_eq!(
        int(refused, "rpc.grpc.status_code"),
        tonic::Code::InvalidArgument as i64
    );
    assert_eq!(text(refused, "ack.target"), cluster_id);
    assert!(children(&spans, refused).is_empty());
}

/// The admin listener's answer to `GET path`.
pub async fn admin_get(h: &Harness, path: &str) -> (u16, String, String) {
    let resp = reqwest::get(format!("http://{}{path}", h.running.admin_addr))
        .await
        .expect("admin answers");
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (status, content_type, resp.text().await.expect("body"))
}

/// Sample lines by series (`name{labels}`), checking the text format on the way: every sample
/// belongs to a metric with `# HELP` and `# TYPE`, and its value is a number.
pub fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    let mut typed = std::collections::BTreeSet::new();
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let name = parts.next().expect("name");
            let kind = parts.next().expect("kind");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            typed.insert(name.to_string());
            continue;
        }
        if line.starts_with("# HELP ") || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample line");
        let name = series.split('{').next().expect("name");
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| typed.contains(*f)))
            .unwrap_or(name);
        assert!(typed.contains(family), "no # TYPE for {line}");
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("value of {line}"));
        samples.insert(normalized(series), value);
    }
    samples
}

/// A series with its labels in name order (`a{y="1",x="2"}` → `a{x="2",y="1"}`), as the map
/// `parse_metrics` returns is keyed: the text format does not fix their order.
pub fn normalized(series: &str) -> String {
    let Some((name, labels)) = series.split_once('{') else {
        return series.to_string();
    };
    let labels = labels.strip_suffix('}').unwrap_or(labels);
    // Label values here never hold `",` (operation names, codes, statuses, profile names).
    let mut pairs: Vec<&str> = labels
        .split("\",")
        .map(|p| p.trim_end_matches('"'))
        .collect();
    pairs.sort_unstable();
    let pairs: Vec<String> = pairs.iter().map(|p| format!("{p}\"")).collect();
    format!("{name}{{{}}}", pairs.join(","))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_after_a_scenario_show_its_series() {
    let h = Harness::embedded_unfollowed().await;
    let (created, _) = h
        .cs(
            "CreateCluster",
            json!({"name": "metered", "region_id": "cn-hangzhou"}),
        )
        .await
        .expect("created");
    let cluster_id = created["cluster_id"].as_str().expect("id").to_string();
    reads(&h, &cluster_id).await;
    // One 503, then the retry succeeds.
    h.sim().inject(Fault {
        operation: Some("DescribeClustersV1".into()),
        status: 503,
        code: "ServiceUnavailable".into(),
        message: "injected".into(),
        times: 1,
        delay_ms: 0,
        headers: BTreeMap::new(),
        ..Default::default()
    });
    h.cs("DescribeClustersV1", json!({}))
        .await
        .expect("retried");

    let (status, content_type, body) = admin_get(&h, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let m = parse_metrics(&body);
    let get = |series: &str| -> f64 {
        *m.get(&normalized(series))
            .unwrap_or_else(|| panic!("no {series} in\n{body}"))
    };
    assert_eq!(
        get(r#"ack_gateway_rpcs_total{operation="CreateCluster",code="OK"}"#),
        1.0
    );
    assert_eq!(
        get(r#"ack_gateway_rpcs_total{operation="DescribeClusterDetail",code="OK"}"#),
        2.0
    );
    assert_eq!(
        get(r#"ack_gateway_rpcs_total{operation="DescribeClusterDetail",code="NOT_FOUND"}"#),
        1.0
    );
    assert_eq!(
        get(
            r#"ack_gateway_rpc_duration_seconds_bucket{operation="CreateCluster",code="OK",le="+Inf"}"#
        ),
        1.0
    );
    assert_eq!(
        get(r#"ack_gateway_rpc_duration_seconds_count{operation="DescribeClustersV1",code="OK"}"#),
        1.0
    );
    assert!(
        get(r#"ack_gateway_rpc_duration_seconds_sum{operation="CreateCluster",code="OK"}"#) > 0.0
    );
    // Upstream: the hit never went upstream; the 503 and its retry are both there.
    assert_eq!(
        get(
            r#"ack_gateway_upstream_requests_total{operation="DescribeClusterDetail",status="200"}"#
        ),
        1.0
    );
    assert_eq!(
        get(
            r#"ack_gateway_upstream_requests_total{operation="DescribeClusterDetail",status="404"}"#
        ),
        1.0
    );
    assert_eq!(
        get(r#"ack_gateway_upstream_requests_total{operation="DescribeClustersV1",status="503"}"#),
        1.0
    );
    assert_eq!(
        get(
            r#"ack_gateway_upstream_duration_seconds_count{operation="DescribeClustersV1",status="200"}"#
        ),
        1.0
    );
    assert_eq!(get("ack_gateway_upstream_retries_total"), 1.0);
    assert_eq!(get("ack_gateway_cache_hits_total"), 1.0);
    assert_eq!(get("ack_gateway_cache_misses_total"), 1.0);
    assert!(get("ack_gateway_cache_bypasses_total") >= 2.0);
    assert!(get("ack_gateway_cache_invalidations_total") >= 1.0);
    assert!(m.contains_key("ack_gateway_cache_evictions_total"));
    assert!(m.contains_key("ack_gateway_cache_entries"));
    assert!(m.contains_key("ack_gateway_cache_bytes"));
    assert_eq!(get("ack_gateway_rate_limit_rejections_total"), 0.0);
    assert!(m.contains_key("ack_gateway_rate_limit_waits_total"));
    assert_eq!(get("ack_gateway_watch_streams"), 0.0);
    assert_eq!(get("ack_gateway_watch_pollers"), 0.0);
    assert!(m.contains_key("ack_gateway_watch_polls_total"));
    assert_eq!(
        get(&format!(
            r#"ack_gateway_build_info{{version="{}"}}"#,
            env!("CARGO_PKG_VERSION")
        )),
        1.0
    );
    // Bounded cardinality: no resource id is a label value.
    assert!(!body.contains(&cluster_id), "a cluster id became a label");
    assert!(!body.contains("c-missing"), "a request's id became a label");

    let (status, _, body) = admin_get(&h, "/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, _, body) = admin_get(&h, "/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("default"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_while_no_profile_can_sign() {
    let toml = r#"
[simulator]
mode = "never"
[auth]
mode = "insecure_local"
[profiles.stale]
type = "sts"
access_key_id = "STS.stale"
access_key_secret = "s"
security_token = "t"
expiration = "2020-01-01T00:00:00Z"
region = "cn-hangzhou"
"#;
    let h = Harness::with_config(toml, env(&[])).await;
    let (status, _, body) = admin_get(&h, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("stale") && body.contains("expired"), "{body}");
    // Liveness stays up; the API service reports NOT_SERVING once readiness has been checked.
    let (status, _, _) = admin_get(&h, "/healthz").await;
    assert_eq!(status, 200);

    let mut health = tonic_health::pb::health_client::HealthClient::new(h.channel.clone());
    let check = |service: &str| tonic_health::pb::HealthCheckRequest {
        service: service.to_string(),
    };
    let overall = health.check(check("")).await.expect("overall").into_inner();
    assert_eq!(
        overall.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    let mut status = 0;
    for _ in 0..100 {
        status = health
            .check(check(CS_SERVICE))
            .await
            .expect("cs health")
            .into_inner()
            .status;
        if status == tonic_health::pb::health_check_response::ServingStatus::NotServing as i32 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::NotServing as i32
    );
}
