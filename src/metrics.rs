//! Metrics in the Prometheus text format (version 0.0.4), written by hand: two labelled
//! latency histograms recorded on the request path, and counters the other modules already keep
//! (cache, limiter, retries, credential refreshes, watchers) read when `/metrics` is scraped.
//!
//! Invariant: label values are operation names (from the table), gRPC code names, HTTP
//! statuses, transport-failure kinds and profile names (from the configuration): bounded sets.
//! No id, caller-supplied text or secret is ever a label.

use crate::gateway::Gateway;
use crate::watch::Watcher;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Upper bounds (seconds) of the latency buckets: from a cache hit to a slow upstream call.
const BUCKETS: [f64; 13] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// One histogram series. Lock-free once created: every field is an atomic.
#[derive(Debug, Default)]
struct Histogram {
    /// Per-bucket counts (not cumulative; summed when rendered).
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    /// Sum in nanoseconds: integer additions need no compare-and-swap loop.
    sum_nanos: AtomicU64,
}

impl Histogram {
    fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| seconds <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

/// Histograms by (operation, outcome). Operation names are looked up without allocating; a new
/// series is created once, under the write lock.
#[derive(Debug, Default)]
struct HistogramVec {
    series: RwLock<HashMap<String, HashMap<String, Arc<Histogram>>>>,
}

impl HistogramVec {
    fn observe(&self, operation: &str, outcome: &str, elapsed: Duration) {
        let found = self
            .series
            .read()
            .ok()
            .and_then(|m| m.get(operation).and_then(|o| o.get(outcome)).cloned());
        let histogram = match found {
            Some(h) => h,
            None => {
                let Ok(mut m) = self.series.write() else {
                    return;
                };
                m.entry(operation.to_string())
                    .or_default()
                    .entry(outcome.to_string())
                    .or_default()
                    .clone()
            }
        };
        histogram.observe(elapsed);
    }

    /// A sorted copy for rendering: (operation, outcome) → (cumulative buckets, count, sum).
    fn snapshot(&self) -> BTreeMap<(String, String), (Vec<u64>, u64, f64)> {
        let mut out = BTreeMap::new();
        let Ok(m) = self.series.read() else {
            return out;
        };
        for (op, outcomes) in m.iter() {
            for (outcome, h) in outcomes {
                let mut cumulative = 0;
                let buckets = h
                    .buckets
                    .iter()
                    .map(|b| {
                        cumulative += b.load(Ordering::Relaxed);
                        cumulative
                    })
                    .collect();
                let count = h.count.load(Ordering::Relaxed);
                let sum = h.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
                out.insert((op.clone(), outcome.clone()), (buckets, count, sum));
            }
        }
        out
    }
}

/// What the request path records.
#[derive(Debug, Default)]
pub struct Metrics {
    rpcs: HistogramVec,
    upstream: HistogramVec,
    /// `SignatureDoesNotMatch` answers by diagnosis (`signer::diagnosis::Diagnosis::LABELS`).
    signature_diagnoses: [AtomicU64; 3],
}

impl Metrics {
    /// One gRPC call of an upstream operation ended with `code`.
    pub fn rpc(&self, operation: &str, code: tonic::Code, elapsed: Duration) {
        self.rpcs
            .observe(operation, crate::error::code_name(code), elapsed);
    }

    /// One upstream HTTP attempt ended with `status` (`200`, `503`, or `timeout`, `connect`,
    /// `transport` when no answer came).
    pub fn upstream(&self, operation: &str, status: &str, elapsed: Duration) {
        self.upstream.observe(operation, status, elapsed);
    }

    /// Counts a refused signature's diagnosis (one of `Diagnosis::LABELS`).
    pub fn signature_diagnosis(&self, label: &str) {
        if let Some(i) = crate::signer::diagnosis::Diagnosis::LABELS
            .iter()
            .position(|l| *l == label)
        {
            self.signature_diagnoses[i].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Renders every metric: the recorded histograms and the counters read now.
pub fn render(gateway: &Gateway, watcher: Option<&Watcher>) -> String {
    let mut out = Text::default();
    out.gauge(
        "ack_gateway_build_info",
        "The running version (always 1).",
        &[(&[("version", env!("CARGO_PKG_VERSION"))], 1.0)],
    );

    let metrics = gateway.metrics();
    let rpcs = metrics.rpcs.snapshot();
    out.counts(
        "ack_gateway_rpcs_total",
        "gRPC calls of upstream operations, by operation and status code.",
        ("operation", "code"),
        &rpcs,
    );
    out.histogram(
        "ack_gateway_rpc_duration_seconds",
        "Latency of gRPC calls of upstream operations, by operation and status code.",
        ("operation", "code"),
        &rpcs,
    );
    let upstream = metrics.upstream.snapshot();
    out.counts(
        "ack_gateway_upstream_requests_total",
        "Upstream HTTP attempts, by operation and HTTP status (or timeout, connect, transport).",
        ("operation", "status"),
        &upstream,
    );
    out.histogram(
        "ack_gateway_upstream_duration_seconds",
        "Latency of upstream HTTP attempts, by operation and HTTP status.",
        ("operation", "status"),
        &upstream,
    );
    out.counter(
        "ack_gateway_upstream_retries_total",
        "Upstream attempts that were retries.",
        gateway.retries(),
    );

    let cache = gateway.cache();
    let stats = cache.stats();
    for (name, help, value) in [
        ("hits", "Reads answered from the cache.", &stats.hits),
        ("misses", "Reads the cache fetched upstream.", &stats.misses),
        (
            "bypasses",
            "Reads that skipped the cache (cache-control: no-cache).",
            &stats.bypasses,
        ),
        (
            "evictions",
            "Entries evicted to stay within the size bound.",
            &stats.evictions,
        ),
        (
            "invalidations",
            "Mutations that invalidated cached reads.",
            &stats.invalidations,
        ),
    ] {
        out.counter(
            &format!("ack_gateway_cache_{name}_total"),
            help,
            value.load(Ordering::Relaxed),
        );
    }
    let (entries, bytes) = cache.size();
    out.gauge(
        "ack_gateway_cache_entries",
        "Entries in the read cache.",
        &[(&[], entries as f64)],
    );
    out.gauge(
        "ack_gateway_cache_bytes",
        "Approximate bytes held by the read cache.",
        &[(&[], bytes as f64)],
    );

    let limiter = &gateway.limiter().stats;
    for (name, help, value) in [
        (
            "ack_gateway_rate_limit_waits_total",
            "Calls that waited for a rate-limit token.",
            &limiter.waits,
        ),
        (
            "ack_gateway_rate_limit_rejections_total",
            "Calls refused because the wait for a token would have been too long.",
            &limiter.rejections,
        ),
        (
            "ack_gateway_upstream_throttled_total",
            "Upstream throttling signals (Throttling answers, exhausted x-ratelimit budgets).",
            &limiter.throttle_signals,
        ),
    ] {
        out.counter(name, help, value.load(Ordering::Relaxed));
    }

    let diagnoses: Vec<(String, f64)> = crate::signer::diagnosis::Diagnosis::LABELS
        .iter()
        .zip(&metrics.signature_diagnoses)
        .map(|(label, n)| (label.to_string(), n.load(Ordering::Relaxed) as f64))
        .collect();
    out.labelled_counter(
        "ack_gateway_signature_diagnoses_total",
        "SignatureDoesNotMatch answers, by what comparing the signed texts showed.",
        "diagnosis",
        &diagnoses,
    );
    out.gauge(
        "ack_gateway_upstream_clock_offset_seconds",
        "The upstream's clock minus this host's, estimated from answers' Date; requests are signed with the corrected time.",
        &[(&[], gateway.upstream().clock().offset_seconds())],
    );

    if let Some(shared) = gateway.shared() {
        out.gauge(
            "ack_gateway_shared_state",
            "1 while state is shared through Redis, 0 while degraded to local state.",
            &[(&[], if shared.is_shared() { 1.0 } else { 0.0 })],
        );
        out.gauge(
            "ack_gateway_shared_replicas",
            "Replicas sharing the budgets (heard from through Redis, or configured).",
            &[(&[], shared.replicas() as f64)],
        );
        out.counter(
            "ack_gateway_redis_commands_total",
            "Commands and scripts sent to Redis.",
            shared.commands(),
        );
    }

    let refresh = gateway.snapshot().vault.refresh_stats();
    let by_profile = |f: fn(&crate::vault::RefreshStats) -> u64| -> Vec<(String, f64)> {
        refresh
            .iter()
            .map(|(profile, s)| (profile.clone(), f(s) as f64))
            .collect()
    };
    out.labelled_counter(
        "ack_gateway_credential_refreshes_total",
        "STS role assumptions that succeeded, by profile.",
        "profile",
        &by_profile(|s| s.refreshes),
    );
    out.labelled_counter(
        "ack_gateway_credential_refresh_failures_total",
        "STS role assumptions that failed, by profile.",
        "profile",
        &by_profile(|s| s.failures),
    );

    if let Some(w) = watcher {
        out.gauge(
            "ack_gateway_watch_streams",
            "Open watch streams.",
            &[(&[], w.open_streams() as f64)],
        );
        out.gauge(
            "ack_gateway_watch_pollers",
            "Pollers running (one per watched target, shared by its streams).",
            &[(&[], w.active_pollers() as f64)],
        );
        out.counter(
            "ack_gateway_watch_polls_total",
            "Upstream polls made by watchers.",
            w.polls(),
        );
    }
    out.0
}

/// The text being written.
#[derive(Default)]
struct Text(String);

impl Text {
    fn header(&mut self, name: &str, help: &str, kind: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", escape(v));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.header(name, help, "counter");
        self.sample(name, &[], value as f64);
    }

    fn labelled_counter(&mut self, name: &str, help: &str, label: &str, values: &[(String, f64)]) {
        self.header(name, help, "counter");
        for (v, n) in values {
            self.sample(name, &[(label, v)], *n);
        }
    }

    fn gauge(&mut self, name: &str, help: &str, samples: &[(&[(&str, &str)], f64)]) {
        self.header(name, help, "gauge");
        for (labels, value) in samples {
            self.sample(name, labels, *value);
        }
    }

    /// The count of each histogram series, as a counter of its own.
    fn counts(
        &mut self,
        name: &str,
        help: &str,
        (a, b): (&str, &str),
        series: &BTreeMap<(String, String), (Vec<u64>, u64, f64)>,
    ) {
        self.header(name, help, "counter");
        for ((x, y), (_, count, _)) in series {
            self.sample(name, &[(a, x), (b, y)], *count as f64);
        }
    }

    fn histogram(
        &mut self,
        name: &str,
        help: &str,
        (a, b): (&str, &str),
        series: &BTreeMap<(String, String), (Vec<u64>, u64, f64)>,
    ) {
        self.header(name, help, "histogram");
        let bucket = format!("{name}_bucket");
        for ((x, y), (buckets, count, sum)) in series {
            for (le, n) in BUCKETS.iter().zip(buckets) {
                let le = le.to_string();
                self.sample(&bucket, &[(a, x), (b, y), ("le", &le)], *n as f64);
            }
            self.sample(&bucket, &[(a, x), (b, y), ("le", "+Inf")], *count as f64);
            self.sample(&format!("{name}_sum"), &[(a, x), (b, y)], *sum);
            self.sample(&format!("{name}_count"), &[(a, x), (b, y)], *count as f64);
        }
    }
}

/// Label values escape backslash, double quote and newline.
fn escape(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', r#"\""#)
        .replace('\n', r"\n")
}

#[cfg(test)]
mod tests;
