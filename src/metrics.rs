//! Metrics in the Prometheus text format, with the `prometheus` crate: the families the request
//! path records (RPCs by operation and code, upstream attempts by operation and status, refused
//! signatures by diagnosis, connections the gRPC port closed unserved), and a [`Scrape`] that
//! adds the values other modules keep (cache, limiter, vault, watchers), read when `/metrics` is
//! scraped (`admin` reads them: this module knows nothing of the gateway).
//!
//! Invariant: label values are operation names (from the table), gRPC code names, HTTP
//! statuses, transport-failure kinds and profile names (from the configuration): bounded sets.
//! No id, caller-supplied text or secret is ever a label.

use prometheus::{
    Encoder as _, Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use std::sync::LazyLock;
use std::time::Duration;

/// Upper bounds (seconds) of the latency buckets: from a cache hit to a slow upstream call.
const BUCKETS: [f64; 13] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Why the gRPC port closed a connection before (or instead of) serving it.
const CONNECTION_CLOSE_REASONS: [&str; 5] = [
    "too_many_connections",
    "handshake_timeout",
    "too_many_from_peer",
    "malformed_http1",
    "request_body_timeout",
];

/// Connections the gRPC port closed before serving them (process-wide: there is one gRPC
/// listener per process).
static CONNECTIONS_CLOSED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    let family = counter_vec(
        "ack_gateway_grpc_connections_closed_total",
        "Connections the gRPC port closed before serving them, by reason.",
        &["reason"],
    );
    for reason in CONNECTION_CLOSE_REASONS {
        family.with_label_values(&[reason]);
    }
    family
});

/// Counts a connection closed for `CONNECTION_CLOSE_REASONS[reason]`.
fn closed(reason: usize) {
    CONNECTIONS_CLOSED
        .with_label_values(&[CONNECTION_CLOSE_REASONS[reason]])
        .inc();
}

/// The gRPC port closed a connection as soon as it was accepted: too many were open.
pub fn connection_refused() {
    closed(0);
}

/// The gRPC port closed a connection as soon as it was accepted: its peer address had too many
/// open already.
pub fn peer_connection_refused() {
    closed(2);
}

/// The gRPC port closed an HTTP/1 connection whose request head was malformed (a bare LF).
pub fn malformed_http1() {
    closed(3);
}

/// A request's body did not arrive within the body timeout (its stream, or its HTTP/1
/// connection, is closed).
pub fn request_body_timed_out() {
    closed(4);
}

/// The gRPC port closed a connection that did not finish its handshake in time.
pub fn handshake_timed_out() {
    closed(1);
}

// The names and label sets below are constants, valid by construction.
#[allow(clippy::expect_used)]
fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("a valid counter family")
}

#[allow(clippy::expect_used)]
fn histogram_vec(name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    HistogramVec::new(
        HistogramOpts::new(name, help).buckets(BUCKETS.to_vec()),
        labels,
    )
    .expect("a valid histogram family")
}

/// What the request path records. Cloning shares the families.
#[derive(Debug, Clone)]
pub struct Metrics {
    rpcs: IntCounterVec,
    rpc_seconds: HistogramVec,
    upstream: IntCounterVec,
    upstream_seconds: HistogramVec,
    signature_diagnoses: IntCounterVec,
    queued_seconds: HistogramVec,
}

impl Default for Metrics {
    fn default() -> Self {
        let signature_diagnoses = counter_vec(
            "ack_gateway_signature_diagnoses_total",
            "SignatureDoesNotMatch answers, by what comparing the signed texts showed.",
            &["diagnosis"],
        );
        for label in crate::signer::diagnosis::Diagnosis::LABELS {
            signature_diagnoses.with_label_values(&[label]);
        }
        Metrics {
            rpcs: counter_vec(
                "ack_gateway_rpcs_total",
                "gRPC calls of upstream operations, by operation and status code.",
                &["operation", "code"],
            ),
            rpc_seconds: histogram_vec(
                "ack_gateway_rpc_duration_seconds",
                "Latency of gRPC calls of upstream operations, by operation and status code.",
                &["operation", "code"],
            ),
            upstream: counter_vec(
                "ack_gateway_upstream_requests_total",
                "Upstream HTTP attempts, by operation and HTTP status (or timeout, connect, transport).",
                &["operation", "status"],
            ),
            upstream_seconds: histogram_vec(
                "ack_gateway_upstream_duration_seconds",
                "Latency of upstream HTTP attempts, by operation and HTTP status.",
                &["operation", "status"],
            ),
            signature_diagnoses,
            queued_seconds: histogram_vec(
                "ack_gateway_busy_queue_duration_seconds",
                "How long writes waited for their busy cluster (x-ack-when-busy: wait), by operation.",
                &["operation"],
            ),
        }
    }
}

impl Metrics {
    /// One gRPC call of an upstream operation ended with the code named `code`.
    pub fn rpc(&self, operation: &str, code: &str, elapsed: Duration) {
        let labels = [operation, code];
        self.rpcs.with_label_values(&labels).inc();
        self.rpc_seconds
            .with_label_values(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// One upstream HTTP attempt ended with `status` (`200`, `503`, or `timeout`, `connect`,
    /// `transport` when no answer came).
    pub fn upstream(&self, operation: &str, status: &str, elapsed: Duration) {
        let labels = [operation, status];
        self.upstream.with_label_values(&labels).inc();
        self.upstream_seconds
            .with_label_values(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// A write waited `elapsed` in its busy cluster's queue before being sent again.
    pub fn queued(&self, operation: &str, elapsed: Duration) {
        self.queued_seconds
            .with_label_values(&[operation])
            .observe(elapsed.as_secs_f64());
    }

    /// Counts a refused signature's diagnosis (one of `Diagnosis::LABELS`).
    pub fn signature_diagnosis(&self, label: &str) {
        if crate::signer::diagnosis::Diagnosis::LABELS.contains(&label) {
            self.signature_diagnoses.with_label_values(&[label]).inc();
        }
    }
}

/// One scrape: the recorded families, plus the values read now, rendered together.
pub struct Scrape {
    registry: Registry,
}

impl Scrape {
    /// A scrape of `metrics` and the process-wide families.
    pub fn new(metrics: &Metrics) -> Scrape {
        let mut scrape = Scrape {
            registry: Registry::new(),
        };
        let build = IntGaugeVec::new(
            Opts::new("ack_gateway_build_info", "The running version (always 1)."),
            &["version"],
        );
        if let Ok(build) = build {
            build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
            scrape.register(build);
        }
        let m = metrics.clone();
        scrape.register(m.rpcs);
        scrape.register(m.rpc_seconds);
        scrape.register(m.upstream);
        scrape.register(m.upstream_seconds);
        scrape.register(m.signature_diagnoses);
        scrape.register(m.queued_seconds);
        scrape.register(CONNECTIONS_CLOSED.clone());
        scrape
    }

    fn register(&mut self, collector: impl prometheus::core::Collector + 'static) {
        if let Err(e) = self.registry.register(Box::new(collector)) {
            tracing::warn!(error = %e, "a metric family could not be registered");
        }
    }

    /// A counter whose value another module keeps.
    pub fn counter(&mut self, name: &str, help: &str, value: u64) {
        if let Ok(c) = IntCounter::new(name, help) {
            c.inc_by(value);
            self.register(c);
        }
    }

    /// A counter with one label, whose values another module keeps.
    pub fn labelled_counter<'a>(
        &mut self,
        name: &str,
        help: &str,
        label: &str,
        values: impl IntoIterator<Item = (&'a str, u64)>,
    ) {
        if let Ok(family) = IntCounterVec::new(Opts::new(name, help), &[label]) {
            for (v, n) in values {
                family.with_label_values(&[v]).inc_by(n);
            }
            self.register(family);
        }
    }

    /// A gauge read now.
    pub fn gauge(&mut self, name: &str, help: &str, value: f64) {
        if let Ok(g) = Gauge::new(name, help) {
            g.set(value);
            self.register(g);
        }
    }

    /// The text format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "metrics could not be encoded");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// The content type of [`Scrape::render`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[cfg(test)]
mod tests;
