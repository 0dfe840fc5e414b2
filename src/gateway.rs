//! The request path of a unary call, one step per line:
//!
//! ```text
//! authorize ─► profile + region ─► caller rate ─► cache hit? ─► decode request
//!   ─► map to HTTP (table) ─► credential (vault) ─► sign ─► send (deadline-bounded)
//!   ─► map error / decode response ─► encode reply
//! ```
//! Reading `Gateway::unary` tells the whole story; each step lives in its own module.

mod assume_role;
mod attempts;
pub mod explain;
mod outcome;
mod own_calls;
mod policy;
mod sign;
mod write;

use attempts::Attempts;
use policy::{cache_tags, message_of, region_for, target_of};

use crate::access::Access;
use crate::cache::{CacheKey, CachedAnswer, Freshness, ReadCache, Served, Stamp};
use crate::config::traffic::TrafficConfig;
use crate::error::GatewayError;
use crate::error::UpstreamError;
use crate::metrics::Metrics;
use crate::ratelimit::Limiter;
use crate::table::{Operation, OperationTable};
use crate::translate::{self, InvalidField, RequestLimits};
use crate::upstream::prepare;
use crate::upstream::Upstream;
use crate::vault::Vault;
use crate::writes::journal::Journal;
use crate::writes::keys::Keys;
use bytes::Bytes;
use prost_reflect::DynamicMessage;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::RwLock;
use std::time::Duration;
use std::time::Instant;
use tokio::sync::Semaphore;

/// Time kept back from the caller's deadline to answer before it passes.
const DEADLINE_MARGIN: Duration = Duration::from_millis(20);

/// Per-call inputs taken from gRPC metadata.
#[derive(Debug, Clone, Default)]
pub struct CallContext {
    /// The authenticated caller's name (`local` in insecure local mode).
    pub caller: String,
    /// `x-ack-profile`, default `default`.
    pub profile: String,
    /// `x-ack-region`, default the profile's.
    pub region: Option<String>,
    /// Time left until the caller's deadline (`grpc-timeout`).
    pub deadline: Option<Duration>,
    /// `cache-control`: how stale a cached answer may be.
    pub cache_control: Freshness,
    /// Set only by the gateway's own reads, never from metadata: the watch hub's shared polls
    /// (a poll serves every subscriber of its target, each authorized when it joined and again
    /// before every message it is sent, `watch::Subscriber`) and a write's outcome check (the
    /// caller was authorized for the write). Such a read skips the caller's authorization and
    /// rate (the hub's poll budget and the upstream budget still apply).
    pub watcher_poll: bool,
    /// `idempotency-key`: makes a write safe to retry (`gateway::write`); ignored on reads.
    pub idempotency_key: Option<String>,
    /// `x-ack-when-busy`: what a write refused because its cluster is busy does (default
    /// `[idempotency] when_busy`).
    pub when_busy: Option<crate::config::writes::WhenBusy>,
}

/// A successful call: the encoded response message and the upstream request id.
#[derive(Debug, Clone)]
pub struct Reply {
    pub message: Bytes,
    pub request_id: Option<String>,
    /// How the cache served it, for cacheable operations.
    pub cache: Option<Served>,
    /// Answered from an idempotency record, without sending anything.
    pub replay: bool,
}

/// What a configuration reload replaces: credentials and access rules. A call holds the
/// snapshot it started with, so a reload never fails a call in flight.
pub struct Snapshot {
    pub vault: Vault,
    pub access: Access,
}

pub struct Gateway {
    table: Arc<OperationTable>,
    snapshot: RwLock<Arc<Snapshot>>,
    upstream: Upstream,
    request_timeout: Duration,
    /// What a request must fit in to be sent.
    limits: RequestLimits,
    cache: ReadCache,
    limiter: Limiter,
    calls: Semaphore,
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
    max_inflight_per_host: usize,
    max_attempts: u32,
    retry_base: Duration,
    retry_max_backoff: Duration,
    retries: AtomicU64,
    metrics: Metrics,
    shared: Option<Arc<crate::shared::Shared>>,
    /// Idempotency records of keyed writes.
    keys: Keys,
    /// Every write, as it starts and ends.
    journal: Arc<Journal>,
    /// Writes waiting for a busy cluster (`x-ack-when-busy: wait`).
    busy: crate::writes::busy::BusyQueues,
    /// How queued writes learn their cluster runs again (set once at start: the watch hub).
    cluster_states: std::sync::OnceLock<Arc<dyn crate::writes::busy::ClusterStates>>,
    /// `[idempotency] when_busy`: what a busy-cluster refusal does when the call does not say.
    when_busy: crate::config::writes::WhenBusy,
}

// === impl Gateway ===

impl Gateway {
    pub fn new(
        table: Arc<OperationTable>,
        snapshot: Snapshot,
        upstream: Upstream,
        settings: Settings<'_>,
        shared: Option<Arc<crate::shared::Shared>>,
    ) -> Self {
        let Settings {
            request_timeout,
            limits,
            traffic,
            writes,
        } = settings;
        Gateway {
            keys: Keys::new(
                shared.clone(),
                writes.idempotency_ttl,
                writes.idempotency_max_entries,
            ),
            journal: Journal::new(
                shared.clone(),
                writes.journal_max_entries,
                writes.journal_max_age,
            ),
            busy: crate::writes::busy::BusyQueues::new(shared.clone()),
            cluster_states: std::sync::OnceLock::new(),
            when_busy: writes.when_busy,
            table,
            snapshot: RwLock::new(Arc::new(snapshot)),
            upstream,
            request_timeout,
            limits,
            cache: ReadCache::new(traffic.cache_max_bytes, traffic.cache_ttl, shared.clone()),
            limiter: Limiter::new(
                traffic.caller_rate,
                traffic.upstream_rate,
                traffic.max_wait,
                shared.clone(),
            ),
            shared,
            calls: Semaphore::new(traffic.max_concurrent_calls),
            hosts: Mutex::new(HashMap::new()),
            max_inflight_per_host: traffic.max_inflight_per_host,
            max_attempts: traffic.max_attempts,
            retry_base: traffic.retry_base,
            retry_max_backoff: traffic.retry_max_backoff,
            retries: AtomicU64::new(0),
            metrics: Metrics::default(),
        }
    }

    /// The state shared with other replicas, when `[redis]` is configured.
    pub fn shared(&self) -> Option<&Arc<crate::shared::Shared>> {
        self.shared.as_ref()
    }

    /// The operations journal.
    pub fn journal(&self) -> &Arc<Journal> {
        &self.journal
    }

    /// Writes waiting for a busy cluster.
    pub fn busy(&self) -> &crate::writes::busy::BusyQueues {
        &self.busy
    }

    /// Gives queued writes a way to learn that their cluster is running again (once, at
    /// start; without it, `x-ack-when-busy: wait` cannot wait and the refusal passes through).
    pub fn set_cluster_states(&self, states: Arc<dyn crate::writes::busy::ClusterStates>) {
        let _ = self.cluster_states.set(states);
    }

    pub fn table(&self) -> &Arc<OperationTable> {
        &self.table
    }

    pub fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    /// Whether the answer of `service_key`'s `operation` carries secrets (the table's policy);
    /// an unknown operation is treated as if it did.
    pub fn carries_secrets(&self, service_key: &str, operation: &str) -> bool {
        self.table
            .operation(service_key, operation)
            .is_none_or(|op| op.policy.secrets)
    }

    /// The current credentials and access rules.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.read().expect("snapshot lock").clone()
    }

    /// Replaces credentials and access rules (hot reload).
    pub fn replace_snapshot(&self, snapshot: Snapshot) {
        *self.snapshot.write().expect("snapshot lock") = Arc::new(snapshot);
    }

    /// Serves one unary call of an upstream operation, and writes its audit line.
    pub async fn unary(
        self: &Arc<Self>,
        op: &Operation,
        ctx: &CallContext,
        request: Bytes,
    ) -> Result<Reply, GatewayError> {
        let started = std::time::Instant::now();
        let mut target = String::new();
        let result = self
            .unary_inner(op, ctx, request.clone(), &mut target)
            .await;
        if result.is_err() && target.is_empty() {
            // Refused before its request was read (authorization, region, rate): the audit line
            // still names the target when the request decodes.
            if let Ok(msg) = self.decode_request(op, request) {
                target = target_of(op, &msg);
            }
        }
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        // The server span the edge opened for this call, if it is traced.
        let span = tracing::Span::current();
        let trace_id = crate::telemetry::trace_id(&span);
        let request_id = match &result {
            Ok(reply) => reply.request_id.as_deref(),
            Err(e) => e.request_id(),
        };
        span.record("ack.target", target.as_str());
        if let Some(id) = request_id {
            span.record("ack.request_id", id);
        }
        if let Ok(Reply {
            cache: Some(served),
            ..
        }) = &result
        {
            span.record("ack.cache", served.label());
        }
        match &result {
            Ok(_) => tracing::info!(
                caller = %ctx.caller, profile = %ctx.profile, operation = %op.name, target = %target,
                outcome = "ok", request_id = request_id.unwrap_or(""), elapsed_ms, trace_id = trace_id.as_deref(),
                "call"
            ),
            Err(e) => tracing::info!(
                caller = %ctx.caller, profile = %ctx.profile, operation = %op.name, target = %target,
                outcome = e.kind(), request_id = request_id.unwrap_or(""), elapsed_ms, trace_id = trace_id.as_deref(),
                error = %e, "call"
            ),
        }
        result
    }

    async fn unary_inner(
        self: &Arc<Self>,
        op: &Operation,
        ctx: &CallContext,
        request: Bytes,
        target: &mut String,
    ) -> Result<Reply, GatewayError> {
        let started = Instant::now();
        let Front {
            service,
            profile,
            region,
        } = self.front(op, ctx, Path::Call(&request))?;
        // Bounded concurrency: shed load rather than queue without bound.
        let _permit = self
            .calls
            .try_acquire()
            .map_err(|_| GatewayError::Overloaded("calls in flight".into()))?;

        // The whole call, retries included, is bounded by the caller's deadline and the
        // configured timeout.
        let budget = match ctx.deadline {
            Some(d) => d.saturating_sub(DEADLINE_MARGIN).min(self.request_timeout),
            None => self.request_timeout,
        };
        let deadline = started + budget;

        let span = tracing::Span::current();
        span.record("ack.region", region.as_str());

        // The caller's own rate.
        let waiting = Instant::now();
        if !ctx.watcher_poll {
            self.limiter.caller(&ctx.caller, Some(budget)).await?;
        }
        span.record(
            "ack.caller_rate_limit_wait_ms",
            waiting.elapsed().as_secs_f64() * 1000.0,
        );

        let identity = profile.identity().to_string();
        let cache_ttl = op
            .policy
            .cache_ttl_ms
            .filter(|_| op.policy.read && !op.policy.secrets);
        // The cache key's request part is the request message as received: a hit needs no
        // mapping to HTTP at all.
        let key = CacheKey {
            // Every profile attribute that can change the answer (`Profile::cache_scope`).
            scope: profile.cache_scope().to_string(),
            region: region.clone(),
            service: op.service.clone(),
            operation: op.name.clone(),
            request,
        };
        if cache_ttl.is_some() {
            if let Some((entry, served)) = self.cache.fresh(&key, ctx.cache_control).await {
                // A hit is a request identical to one decoded and answered before: it needs
                // no decoding, and its target is the stored one.
                target.clone_from(&entry.target);
                return Ok(Reply {
                    message: entry.message.clone(),
                    request_id: entry.request_id.clone(),
                    cache: Some(served),
                    replay: false,
                });
            }
        }

        // Decode the request (the audit line names its target).
        let msg = self.decode_request(op, key.request.clone())?;
        *target = target_of(op, &msg);

        // A write: idempotency, detached sending, the journal (`write`).
        if !op.policy.read {
            return Box::pin(self.write(write::WriteCall {
                op,
                ctx,
                msg,
                profile,
                region,
                target: target.clone(),
                deadline,
                budget,
            }))
            .await;
        }

        // The upstream part is a future of its own, boxed: it holds the HTTP client's state
        // (kilobytes), which a cache hit should neither build nor move.
        Box::pin(self.through_upstream(
            op,
            service,
            ctx,
            &msg,
            key,
            UpstreamScope {
                target,
                profile: &profile,
                identity: &identity,
                region: &region,
                deadline,
                budget,
                cache_ttl,
            },
        ))
        .await
    }

    /// The front half of every path through the gateway (unary calls, the watchers' polls,
    /// ExplainCall): authorization first, before anything else is looked at (the cache
    /// included), then the service, the profile and the region. What a path skips is skipped
    /// here, and only here:
    /// - a watcher's shared poll skips the caller's authorization: each subscriber was
    ///   authorized when it joined and is again before every message (`CallContext::watcher_poll`);
    /// - ExplainCall skips the broker rules of STS `AssumeRole`: it sends nothing and hands out
    ///   no credential (and, after the front half, it is neither shed, rate-limited nor cached).
    fn front(
        &self,
        op: &Operation,
        ctx: &CallContext,
        path: Path<'_>,
    ) -> Result<Front<'_>, GatewayError> {
        let snapshot = self.snapshot();
        if !ctx.watcher_poll {
            snapshot
                .access
                .authorize(&ctx.caller, &ctx.profile, &op.name, op.policy.secrets)?;
        }
        // Calling STS AssumeRole hands out a credential: it is held to the broker's rules.
        if let (Path::Call(request), "sts") = (path, op.service.as_str()) {
            let msg = self.decode_request(op, request.clone())?;
            assume_role::authorize(&snapshot, &ctx.caller, &ctx.profile, &msg)?;
        }
        let service = self.service_of(op)?;
        let profile = snapshot.vault.profile(&ctx.profile)?;
        let region = region_for(ctx.region.as_deref(), &profile)?;
        Ok(Front {
            service,
            profile,
            region,
        })
    }

    /// The caller's request message, or INVALID_ARGUMENT when it does not decode.
    fn decode_request(
        &self,
        op: &Operation,
        request: Bytes,
    ) -> Result<DynamicMessage, GatewayError> {
        let service = self.service_of(op)?;
        DynamicMessage::decode(message_of(service, op, "Request")?, request)
            .map_err(|e| InvalidField::new("request", format!("malformed message: {e}")).into())
    }

    /// The part of a read that goes upstream: map to HTTP, then retrying attempts, through the
    /// cache (coalescing identical misses) when it is cacheable.
    async fn through_upstream(
        &self,
        op: &Operation,
        service: &crate::table::ServiceInfo,
        ctx: &CallContext,
        msg: &DynamicMessage,
        key: CacheKey,
        scope: UpstreamScope<'_>,
    ) -> Result<Reply, GatewayError> {
        let UpstreamScope {
            target,
            profile,
            identity,
            region,
            deadline,
            budget,
            cache_ttl,
        } = scope;
        // Map the request to HTTP (table-driven).
        let call = translate::build_call(op, msg, &self.limits)?;
        let tags = cache_tags(op, msg, identity, region);
        let upstream = Attempts {
            clock_corrected: std::sync::atomic::AtomicBool::new(false),
            gateway: self,
            op,
            service,
            call: &call,
            profile,
            region,
            deadline,
            bucket: self.limiter.upstream_bucket(identity, &op.name),
            cache: cache_ttl.map(|_| match ctx.cache_control {
                Freshness::NoCache => "bypass",
                _ => "miss",
            }),
            detached: None,
        };

        // Cacheable reads go through the cache (coalescing identical misses); the rest upstream.
        if let Some(ttl_ms) = cache_ttl {
            let ttl = self.cache.ttl_for(Duration::from_millis(ttl_ms));
            let fetch = async {
                let reply = upstream.run().await?;
                Ok::<_, GatewayError>(CachedAnswer {
                    message: reply.message,
                    request_id: reply.request_id,
                    target: target.to_string(),
                    stored_at: Stamp::now(),
                    ttl,
                    tags,
                })
            };
            // A call coalesced onto another's fetch still answers by its own deadline.
            let coalesced = self.cache.get_or_fetch(key, ctx.cache_control, fetch);
            let (entry, served) = tokio::time::timeout_at(deadline.into(), coalesced)
                .await
                .map_err(|_| UpstreamError::Timeout {
                    host: prepare::host_of(&self.upstream.base_url(&op.service, service, region)),
                    timeout: budget,
                })?
                .map_err(|e| (*e).clone())?;
            return Ok(Reply {
                message: entry.message.clone(),
                request_id: entry.request_id.clone(),
                cache: Some(served),
                replay: false,
            });
        }
        upstream.run().await
    }

    /// The service an operation belongs to.
    fn service_of(&self, op: &Operation) -> Result<&crate::table::ServiceInfo, GatewayError> {
        self.table
            .service(&op.service)
            .ok_or_else(|| GatewayError::Internal(format!("no service {}", op.service)))
    }

    /// Counters for the metrics endpoint.
    pub fn cache(&self) -> &ReadCache {
        &self.cache
    }

    pub fn limiter(&self) -> &Limiter {
        &self.limiter
    }

    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// RPC and upstream latencies, recorded on the request path.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The semaphore bounding upstream requests in flight to one host.
    fn host_slots(&self, host: &str) -> Arc<Semaphore> {
        let mut hosts = self.hosts.lock().expect("hosts lock");
        hosts
            .entry(host.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(self.max_inflight_per_host)))
            .clone()
    }
}

/// What the gateway is configured with, besides its table, credentials and upstream.
pub struct Settings<'a> {
    /// `[upstream] request_timeout`: the longest a call (or a detached write) waits upstream.
    pub request_timeout: Duration,
    /// What a request must fit in to be sent.
    pub limits: RequestLimits,
    pub traffic: &'a TrafficConfig,
    pub writes: &'a crate::config::writes::WritesConfig,
}

/// Which path goes through `Gateway::front`.
#[derive(Clone, Copy)]
pub(crate) enum Path<'a> {
    /// A unary call (or a watcher's poll), with its request as received.
    Call(&'a Bytes),
    /// ExplainCall: nothing is sent.
    Explain,
}

/// What the front half resolved: the operation's service, the profile, the region.
pub(crate) struct Front<'g> {
    pub service: &'g crate::table::ServiceInfo,
    pub profile: Arc<crate::vault::Profile>,
    pub region: String,
}

/// What the upstream part of a call works within: which resource, whose credential, where,
/// until when, and how long its answer may be cached.
struct UpstreamScope<'a> {
    /// The resource the request concerns (`target_of`), kept with a cached answer.
    target: &'a str,
    profile: &'a crate::vault::Profile,
    identity: &'a str,
    region: &'a str,
    deadline: Instant,
    budget: Duration,
    cache_ttl: Option<u64>,
}
