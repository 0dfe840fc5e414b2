//! The admin HTTP listener (`ACK_GATEWAY_ADMIN_LISTEN`, `[admin] listen`):
//!
//! - `GET /metrics`: Prometheus text format (see `metrics`);
//! - `GET /healthz`: 200 while the process serves (liveness);
//! - `GET /readyz`: 200 once the vault can sign, i.e. some profile resolves a credential;
//!   503 naming why not (readiness).
//!
//! Kubernetes probes the gRPC port with `grpc.health.v1` instead, so [`spawn_readiness`] mirrors
//! the same readiness into the health status of the API services (the overall `""` service stays
//! SERVING: it is the liveness answer, and a cloud outage must not restart the pods).
//!
//! Nothing here reveals a secret: metrics carry counts, readiness names profiles and the
//! vault's errors, which never hold key material.

use crate::gateway::Gateway;
use crate::metrics::Scrape;
use crate::watch::Watcher;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// The longest a readiness check may take (a role profile may have to call STS).
const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// How often the gRPC health of the API services is brought in line with readiness.
pub const READINESS_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Clone)]
struct Admin {
    gateway: Arc<Gateway>,
    watcher: Arc<Watcher>,
}

/// The admin routes.
pub fn router(gateway: Arc<Gateway>, watcher: Arc<Watcher>) -> axum::Router {
    axum::Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(Admin { gateway, watcher })
}

async fn metrics(State(admin): State<Admin>) -> impl IntoResponse {
    let text = render(&admin.gateway, &admin.watcher);
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text)
}

/// Every metric: what the request path recorded, and the counters the cache, limiter, vault,
/// shared state and watchers keep, read now.
pub fn render(gateway: &Gateway, watcher: &Watcher) -> String {
    use std::sync::atomic::Ordering::Relaxed;
    let mut out = Scrape::new(gateway.metrics());
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
            value.load(Relaxed),
        );
    }
    out.gauge(
        "ack_gateway_busy_queue_writes",
        "Writes waiting for their busy cluster (x-ack-when-busy: wait) on this replica.",
        gateway.busy().waiting() as f64,
    );
    let (entries, bytes) = cache.size();
    out.gauge(
        "ack_gateway_cache_entries",
        "Entries in the read cache.",
        entries as f64,
    );
    out.gauge(
        "ack_gateway_cache_bytes",
        "Approximate bytes held by the read cache.",
        bytes as f64,
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
        out.counter(name, help, value.load(Relaxed));
    }
    out.gauge(
        "ack_gateway_upstream_clock_offset_seconds",
        "The upstream's clock minus this host's, estimated from answers' Date; requests are signed with the corrected time.",
        gateway.upstream().clock().offset_seconds(),
    );

    if let Some(shared) = gateway.shared() {
        out.gauge(
            "ack_gateway_shared_state",
            "1 while state is shared through Redis, 0 while degraded to local state.",
            if shared.is_shared() { 1.0 } else { 0.0 },
        );
        out.gauge(
            "ack_gateway_shared_replicas",
            "Replicas sharing the budgets (heard from through Redis, or configured).",
            shared.replicas() as f64,
        );
        out.counter(
            "ack_gateway_redis_commands_total",
            "Commands and scripts sent to Redis.",
            shared.commands(),
        );
    }

    let refresh = gateway.snapshot().vault.refresh_stats();
    out.labelled_counter(
        "ack_gateway_credential_refreshes_total",
        "STS role assumptions that succeeded, by profile.",
        "profile",
        refresh.iter().map(|(p, s)| (p.as_str(), s.refreshes)),
    );
    out.labelled_counter(
        "ack_gateway_credential_refresh_failures_total",
        "STS role assumptions that failed, by profile.",
        "profile",
        refresh.iter().map(|(p, s)| (p.as_str(), s.failures)),
    );

    out.gauge(
        "ack_gateway_watch_streams",
        "Open watch streams.",
        watcher.open_streams() as f64,
    );
    out.gauge(
        "ack_gateway_watch_pollers",
        "Pollers running (one per watched target, shared by its streams).",
        watcher.active_pollers() as f64,
    );
    out.counter(
        "ack_gateway_watch_polls_total",
        "Upstream polls made by watchers.",
        watcher.polls(),
    );
    out.render()
}

async fn readyz(State(admin): State<Admin>) -> (StatusCode, String) {
    // Whether state is shared is detail: a replica on local state still serves correctly.
    let sharing = match admin.gateway.shared() {
        None => String::new(),
        Some(s) if s.is_shared() => format!(
            "state: shared through Redis ({} replicas)\n",
            s.replicas()
        ),
        Some(s) => format!(
            "state: degraded (Redis unavailable): local cache, this replica's share (1/{}) of each budget, local pollers\n",
            s.replicas()
        ),
    };
    match readiness(&admin.gateway).await {
        Ok(profile) => (
            StatusCode::OK,
            format!("ready: profile `{profile}` resolves a credential\n{sharing}"),
        ),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n{sharing}"),
        ),
    }
}

/// Whether the vault can sign: the first profile that resolves a credential, or why none does.
pub async fn readiness(gateway: &Gateway) -> Result<String, String> {
    let snapshot = gateway.snapshot();
    let vault = &snapshot.vault;
    // Profiles with a static key first: they answer without calling STS, so readiness costs
    // an AssumeRole only when no static profile can sign.
    let roles: Vec<String> = vault.refresh_stats().into_iter().map(|(n, _)| n).collect();
    let mut names: Vec<&str> = vault.profile_names().collect();
    names.sort_by_key(|n| roles.iter().any(|r| r == n));
    let check = async {
        let mut reasons = Vec::new();
        for name in names {
            let outcome = match vault.profile(name) {
                Ok(profile) => profile.credential(Duration::ZERO).await.map(|_| ()),
                Err(e) => Err(e),
            };
            match outcome {
                Ok(()) => return Ok(name.to_string()),
                Err(e) => reasons.push(e.to_string()),
            }
        }
        if reasons.is_empty() {
            Err("no credential profile is configured".to_string())
        } else {
            Err(reasons.join("; "))
        }
    };
    tokio::time::timeout(READY_TIMEOUT, check)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "resolving a credential took longer than {}s",
                READY_TIMEOUT.as_secs()
            ))
        })
}

/// Keeps the gRPC health of `services` in line with [`readiness`] until the gateway is dropped:
/// SERVING when the vault can sign, NOT_SERVING otherwise. Logs each change.
pub fn spawn_readiness(
    gateway: &Arc<Gateway>,
    health: tonic_health::server::HealthReporter,
    services: Vec<String>,
    interval: Duration,
) -> tokio::task::JoinHandle<()> {
    let weak: Weak<Gateway> = Arc::downgrade(gateway);
    tokio::spawn(async move {
        let mut was_ready = None;
        loop {
            let Some(gateway) = weak.upgrade() else {
                return;
            };
            let outcome = readiness(&gateway).await;
            drop(gateway);
            let ready = outcome.is_ok();
            if was_ready != Some(ready) {
                match &outcome {
                    Ok(profile) => tracing::info!(%profile, "ready: the vault can sign"),
                    Err(reason) => {
                        tracing::warn!(%reason, "not ready: no profile resolves a credential")
                    }
                }
                let status = if ready {
                    tonic_health::ServingStatus::Serving
                } else {
                    tonic_health::ServingStatus::NotServing
                };
                for service in &services {
                    health.set_service_status(service, status).await;
                }
                was_ready = Some(ready);
            }
            tokio::time::sleep(interval).await;
        }
    })
}
