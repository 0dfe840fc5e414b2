//! The request path of a unary call, one step per line:
//!
//! ```text
//! authorize ─► profile + region ─► caller rate ─► cache hit? ─► decode request
//!   ─► map to HTTP (table) ─► credential (vault) ─► sign ─► send (deadline-bounded)
//!   ─► map error / decode response ─► encode reply
//! ```
//! Reading `Gateway::unary` tells the whole story; each step lives in its own module.

mod assume_role;
pub mod explain;

use crate::access::Access;
use crate::cache::{CacheKey, Entry, Freshness, ReadCache, Served, Stamp};
use crate::config::is_valid_region;
use crate::config::traffic::TrafficConfig;
use crate::error::GatewayError;
use crate::error::UpstreamError;
use crate::metrics::Metrics;
use crate::proto;
use crate::ratelimit::{Limiter, TokenBucket};
use crate::table::{Operation, OperationTable, Style};
use crate::translate::{self, InvalidField, RequestLimits};
use crate::upstream::prepare;
use crate::upstream::{self, Upstream};
use crate::vault::Vault;
use bytes::Bytes;
use prost::Message as _;
use prost_reflect::DynamicMessage;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::RwLock;
use std::time::Duration;
use std::time::Instant;
use tokio::sync::Semaphore;
use tracing::Instrument as _;

/// How long a call may wait for a free upstream slot to its host before being shed.
const HOST_SLOT_WAIT: Duration = Duration::from_millis(100);

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
    /// Set only by the watch hub for its shared polls, never from metadata: a poll serves every
    /// subscriber of its target, each authorized when it joined and again before every message
    /// it is sent (`watch::Subscriber`), so the poll itself skips the caller's authorization and
    /// rate (the hub's poll budget and the upstream budget still apply).
    pub watcher_poll: bool,
}

/// A successful call: the encoded response message and the upstream request id.
#[derive(Debug, Clone)]
pub struct Reply {
    pub message: Bytes,
    pub request_id: Option<String>,
    /// How the cache served it, for cacheable operations.
    pub cache: Option<Served>,
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
}

// === impl Gateway ===

impl Gateway {
    pub fn new(
        table: Arc<OperationTable>,
        snapshot: Snapshot,
        upstream: Upstream,
        request_timeout: Duration,
        limits: RequestLimits,
        traffic: &TrafficConfig,
        shared: Option<Arc<crate::shared::Shared>>,
    ) -> Self {
        Gateway {
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

    /// Calls an operation with a JSON request (proto field names) and returns the response as
    /// JSON (proto field names): the same path as a gRPC call, for the gateway's own services
    /// (the watchers poll through it, so they share authorization, caching and rate limits).
    pub async fn call_json(
        &self,
        service_key: &str,
        operation: &str,
        ctx: &CallContext,
        request: serde_json::Value,
    ) -> Result<(serde_json::Value, Option<String>), GatewayError> {
        let op = self
            .table
            .operation(service_key, operation)
            .ok_or_else(|| GatewayError::Unimplemented(format!("{service_key}.{operation}")))?;
        let service = self
            .table
            .service(service_key)
            .ok_or_else(|| GatewayError::Unimplemented(service_key.to_string()))?;
        let msg = DynamicMessage::deserialize(message_of(service, op, "Request")?, request)
            .map_err(|e| InvalidField::new("request", e.to_string()))?;
        let reply = self
            .unary(op, ctx, Bytes::from(msg.encode_to_vec()))
            .await?;
        let decoded = DynamicMessage::decode(message_of(service, op, "Response")?, reply.message)
            .map_err(|e| {
            GatewayError::Unimplemented(format!("re-decoding {operation}: {e}"))
        })?;
        let json = decoded
            .serialize_with_options(
                serde_json::value::Serializer,
                &prost_reflect::SerializeOptions::new()
                    .use_proto_field_name(true)
                    .stringify_64_bit_integers(false),
            )
            .map_err(|e| GatewayError::Unimplemented(format!("serializing {operation}: {e}")))?;
        Ok((json, reply.request_id))
    }

    /// Serves one unary call of an upstream operation, and writes its audit line.
    pub async fn unary(
        &self,
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
        &self,
        op: &Operation,
        ctx: &CallContext,
        request: Bytes,
        target: &mut String,
    ) -> Result<Reply, GatewayError> {
        let started = Instant::now();
        // Authorization comes first, before anything else is looked at (the cache included).
        let snapshot = self.snapshot();
        if !ctx.watcher_poll {
            snapshot
                .access
                .authorize(&ctx.caller, &ctx.profile, &op.name, op.policy.secrets)?;
        }
        // Calling STS AssumeRole hands out a credential: it is held to the broker's rules.
        if op.service == "sts" {
            let msg = self.decode_request(op, request.clone())?;
            assume_role::authorize(&snapshot, &ctx.caller, &ctx.profile, &msg)?;
        }
        // Bounded concurrency: shed load rather than queue without bound.
        let _permit = self
            .calls
            .try_acquire()
            .map_err(|_| GatewayError::Overloaded("calls in flight".into()))?;
        let service = self.service_of(op)?;

        // Resolve the profile and region.
        let profile = snapshot.vault.profile(&ctx.profile)?;
        let region = region_for(ctx.region.as_deref(), &profile)?;

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
                });
            }
        }

        // Decode the request (the audit line names its target).
        let msg = self.decode_request(op, key.request.clone())?;
        *target = target_of(op, &msg);

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

    /// The part of a call that goes upstream: map to HTTP, then retrying attempts, through the
    /// cache (coalescing identical misses) for cacheable reads; a successful mutation
    /// invalidates the reads it makes stale.
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
        };

        // Cacheable reads go through the cache (coalescing identical misses); the rest upstream.
        if let Some(ttl_ms) = cache_ttl {
            let ttl = self.cache.ttl_for(Duration::from_millis(ttl_ms));
            let fetch = async {
                let reply = upstream.run().await?;
                Ok::<_, GatewayError>(Entry {
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
            });
        }
        let reply = upstream.run().await?;
        if !op.policy.read {
            // A successful mutation makes the reads of the same resources stale.
            self.cache.invalidate(tags);
        }
        Ok(reply)
    }

    /// The service an operation belongs to.
    fn service_of(&self, op: &Operation) -> Result<&crate::table::ServiceInfo, GatewayError> {
        self.table
            .service(&op.service)
            .ok_or_else(|| GatewayError::Unimplemented(format!("no service {}", op.service)))
    }

    /// Signs a mapped call as the operation's style and the profile's signature version say,
    /// with a fresh nonce and the upstream's estimated time.
    fn sign(
        &self,
        op: &Operation,
        service: &crate::table::ServiceInfo,
        call: &translate::HttpCall,
        profile: &crate::vault::Profile,
        region: &str,
        key: &crate::signer::SigningKey,
    ) -> Result<upstream::SignedRequest, GatewayError> {
        let base = self.upstream.base_url(&op.service, service, region);
        let now = self.upstream.clock().now();
        let signed = match op.style {
            Style::Roa => prepare::roa(
                &prepare::RoaCall {
                    base: &base,
                    prefix: &self.upstream.path_prefix(&op.service),
                    call,
                    action: &op.name,
                    version: &service.version,
                    region,
                    acs_headers: &profile.acs_headers,
                    signature: profile.signature,
                },
                key,
                now,
            ),
            Style::Rpc => prepare::rpc(
                &base,
                op,
                call,
                op.version.as_deref().unwrap_or(&service.version),
                region,
                key,
                now,
            ),
        }?;
        // What the endpoint and the signature added must fit.
        self.limits.signed(signed.url.len(), &signed.headers)?;
        Ok(signed)
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

/// Upstream attempts of one call: sign afresh, send, classify, retry what is safe to retry.
struct Attempts<'a> {
    gateway: &'a Gateway,
    op: &'a Operation,
    service: &'a crate::table::ServiceInfo,
    call: &'a translate::HttpCall,
    profile: &'a crate::vault::Profile,
    region: &'a str,
    deadline: Instant,
    bucket: Option<Arc<TokenBucket>>,
    /// For a cacheable read, what the cache did (`miss` or `bypass`): an attempt means no hit.
    cache: Option<&'static str>,
    /// Set by an attempt whose time the upstream refused, once the clock was corrected from
    /// that answer: the request was not executed, so it is sent again once, even a mutation.
    clock_corrected: std::sync::atomic::AtomicBool,
}

impl Attempts<'_> {
    async fn run(&self) -> Result<Reply, GatewayError> {
        let g = self.gateway;
        let mut attempt: u32 = 0;
        let mut resent_for_time = false;
        loop {
            attempt += 1;
            let span = self.span(attempt);
            // Outer error: final; inner error: the upstream failed, perhaps worth a retry.
            let outcome = self.once(&span).instrument(span.clone()).await;
            let error = match outcome {
                Ok(Ok(reply)) => return Ok(reply),
                Ok(Err(error)) => error,
                Err(e) => {
                    span.record("error.type", e.kind());
                    return Err(e);
                }
            };
            if error.code() == tonic::Code::ResourceExhausted {
                let retry_after = match &error {
                    UpstreamError::Api { retry_after, .. } => *retry_after,
                    _ => None,
                };
                g.limiter.throttled(self.bucket.as_ref(), retry_after);
            }
            if !resent_for_time && self.clock_corrected.swap(false, Ordering::Relaxed) {
                resent_for_time = true;
                g.retries.fetch_add(1, Ordering::Relaxed);
                tracing::info!(operation = %self.op.name, error = %error, "resending once with the corrected clock");
                continue;
            }
            if attempt >= g.max_attempts || !may_retry(self.op.policy.read, &error) {
                return Err(error.into());
            }
            // Exponential backoff with full jitter, never past the deadline.
            let cap = g
                .retry_max_backoff
                .min(g.retry_base.saturating_mul(1 << (attempt - 1).min(16)));
            let mut backoff = cap.mul_f64(rand::random::<f64>());
            if let UpstreamError::Api {
                retry_after: Some(after),
                ..
            } = &error
            {
                backoff = backoff.max(*after);
            }
            if Instant::now() + backoff >= self.deadline {
                return Err(error.into());
            }
            g.retries.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(operation = %self.op.name, attempt, error = %error, backoff_ms = backoff.as_millis() as u64, "retrying");
            tokio::time::sleep(backoff).await;
        }
    }

    /// The client span of one attempt (see `telemetry`); the route is the table's path
    /// template, never the path with its ids.
    fn span(&self, attempt: u32) -> tracing::Span {
        use tracing::field::Empty;
        tracing::info_span!(
            target: crate::telemetry::SPAN_TARGET,
            "upstream",
            otel.name = %format_args!("{} {}", self.call.method, self.op.path),
            otel.kind = "client",
            otel.status_description = Empty,
            http.request.method = %self.call.method,
            url.template = %self.op.path,
            server.address = Empty,
            http.response.status_code = Empty,
            error.type = Empty,
            ack.operation = %self.op.name,
            // Integers as i64: OpenTelemetry has no unsigned attributes.
            ack.attempt = i64::from(attempt),
            ack.cache = self.cache,
            ack.request_id = Empty,
            ack.rate_limit_wait_ms = Empty,
        )
    }

    /// One attempt: the account's budget, a credential, signing, a host slot, the request.
    async fn once(
        &self,
        span: &tracing::Span,
    ) -> Result<Result<Reply, UpstreamError>, GatewayError> {
        let g = self.gateway;
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        let host_base = g
            .upstream
            .base_url(&self.op.service, self.service, self.region);
        if remaining.is_zero() {
            return Err(UpstreamError::Timeout {
                host: prepare::host_of(&host_base),
                timeout: Duration::ZERO,
            }
            .into());
        }
        // The account's upstream budget, then a credential valid for the rest of the call.
        let waiting = Instant::now();
        g.limiter
            .upstream(self.bucket.as_ref(), Some(remaining))
            .await?;
        span.record(
            "ack.rate_limit_wait_ms",
            waiting.elapsed().as_secs_f64() * 1000.0,
        );
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        let credential = self.profile.credential(remaining).await?;
        let key = &credential.key;
        // A fresh nonce and Date for every attempt.
        let mut signed = g.sign(
            self.op,
            self.service,
            self.call,
            self.profile,
            self.region,
            key,
        )?;
        // Trace context travels outside the signed headers: it changes nothing the API checks.
        crate::telemetry::inject(span, &mut signed.headers);
        // What the trace context added must fit too: a request the HTTP stack would refuse is
        // the caller's to fix, never a transport failure.
        g.limits.signed(signed.url.len(), &signed.headers)?;
        let signed_over = signed.signed_over.take();
        let host = signed.host.clone();
        span.record("server.address", host.as_str());
        let slots = g.host_slots(&host);
        let wait = remaining.min(HOST_SLOT_WAIT);
        let _slot = match tokio::time::timeout(wait, slots.acquire_owned()).await {
            Ok(Ok(slot)) => slot,
            _ => {
                return Err(GatewayError::Overloaded(format!(
                    "upstream requests in flight to {host}"
                )))
            }
        };
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        let secrets: Vec<&str> = [
            Some(key.access_key_secret().expose()),
            key.security_token().map(|t| t.expose()),
        ]
        .into_iter()
        .flatten()
        .collect();
        let sent = Instant::now();
        let response = g.upstream.send(signed, remaining).await;
        let status = match &response {
            Ok(resp) => resp.status.to_string(),
            Err(e) => transport_failure(e).to_string(),
        };
        g.metrics.upstream(&self.op.name, &status, sent.elapsed());
        let error = match response {
            Ok(resp) if (200..300).contains(&resp.status) => {
                span.record("http.response.status_code", i64::from(resp.status));
                if let Some(wait) = upstream::exhausted_budget(&resp.headers) {
                    g.limiter.throttled(self.bucket.as_ref(), Some(wait));
                } else if let Some(b) = &self.bucket {
                    b.succeeded();
                }
                let request_id = upstream::request_id(&resp.headers, &resp.body);
                if let Some(id) = &request_id {
                    span.record("ack.request_id", id.as_str());
                }
                let resp_desc = message_of(self.service, self.op, "Response")?;
                let decoded = translate::decode_response(self.op, &resp_desc, &resp.body)?;
                return Ok(Ok(Reply {
                    message: Bytes::from(decoded.encode_to_vec()),
                    request_id,
                    cache: None,
                }));
            }
            Ok(resp) => {
                span.record("http.response.status_code", i64::from(resp.status));
                let mut error = upstream::api_error(&host, &resp, &secrets);
                if let UpstreamError::Api {
                    code, diagnosis, ..
                } = &mut error
                {
                    if code == "SignatureDoesNotMatch" {
                        let found = self.diagnose(signed_over.as_ref(), &resp, key);
                        g.metrics.signature_diagnosis(found.label);
                        *diagnosis = Some(Box::new(found));
                    } else if upstream::clock::time_refused(code)
                        && g.upstream
                            .clock()
                            .correct(&resp.headers, std::time::SystemTime::now())
                    {
                        self.clock_corrected.store(true, Ordering::Relaxed);
                    }
                }
                error
            }
            Err(e) => e,
        };
        if let UpstreamError::Api {
            request_id: Some(id),
            ..
        } = &error
        {
            span.record("ack.request_id", id.as_str());
        }
        span.record("error.type", status.as_str());
        span.record("otel.status_description", error.to_string().as_str());
        Ok(Err(error))
    }
}

impl Attempts<'_> {
    /// Why the upstream refused the signature: what it quotes as signed, compared with what
    /// was signed here. The explanation names the profile and the AccessKey id, never a secret.
    fn diagnose(
        &self,
        signed_over: Option<&upstream::SignedOver>,
        resp: &upstream::RawResponse,
        key: &crate::signer::SigningKey,
    ) -> crate::error::SignatureDiagnosis {
        use crate::signer::diagnosis::{diagnose, Diagnosis, Signed};
        let (_, message) = upstream::error_code_and_message(resp);
        let found = match signed_over {
            Some(s) => diagnose(
                &Signed {
                    version: s.version,
                    string_to_sign: s.string_to_sign.expose(),
                    canonical_request: s.canonical_request.as_ref().map(|c| c.expose()),
                },
                &message,
            ),
            None => Diagnosis::Unknown,
        };
        let (profile, id) = (&self.profile.name, key.access_key_id());
        let explanation = match &found {
            Diagnosis::SecretMismatch => format!(
                "the upstream signed exactly what the gateway signed, so the AccessKey secret of profile `{profile}` does not belong to AccessKey id `{id}`: check the secret configured for the profile"
            ),
            Diagnosis::Canonicalization { part } => format!(
                "the upstream signed a different request than the gateway sent with profile `{profile}`: {part} differs (something between the gateway and the API, such as a proxy, may alter requests)"
            ),
            Diagnosis::Unknown => format!(
                "the upstream did not say what it signed; check the AccessKey pair of profile `{profile}` (AccessKey id `{id}`)"
            ),
        };
        crate::error::SignatureDiagnosis {
            label: found.label(),
            explanation,
        }
    }
}

/// The call's region (`x-ack-region`), else the profile's; it must be a region id.
fn region_for(
    requested: Option<&str>,
    profile: &crate::vault::Profile,
) -> Result<String, GatewayError> {
    let region = requested
        .map(str::to_string)
        .or_else(|| profile.region.clone())
        .ok_or_else(|| {
            InvalidField::new("x-ack-region", "no region given and the profile has none")
        })?;
    if !is_valid_region(&region) {
        return Err(
            InvalidField::new("x-ack-region", format!("`{region}` is not a region id")).into(),
        );
    }
    Ok(region)
}

/// The `{Operation}Request` or `{Operation}Response` message (`suffix`) of an operation.
fn message_of(
    service: &crate::table::ServiceInfo,
    op: &Operation,
    suffix: &str,
) -> Result<prost_reflect::MessageDescriptor, GatewayError> {
    proto::message(&format!("{}.{}{suffix}", service.package, op.name))
        .ok_or_else(|| GatewayError::Unimplemented(format!("no message {}{suffix}", op.name)))
}

/// The status label of an upstream request that got no HTTP answer.
fn transport_failure(e: &UpstreamError) -> &'static str {
    match e {
        UpstreamError::Timeout { .. } => "timeout",
        UpstreamError::Connect { .. } => "connect",
        UpstreamError::Tls { .. } => "tls",
        UpstreamError::TooLarge { .. } => "too_large",
        UpstreamError::Transport { .. } | UpstreamError::Api { .. } => "transport",
    }
}

/// Reads are retried on throttling, 5xx, timeouts and connection errors; a mutation only when
/// the request provably never left (the connection was never made). A failed TLS handshake is
/// never retried.
fn may_retry(read: bool, e: &UpstreamError) -> bool {
    match e {
        UpstreamError::Connect { .. } => true,
        // The request never left, so a retry would be safe, but it would meet the same
        // certificate and the same trusted roots: the answer cannot change.
        UpstreamError::Tls { .. } => false,
        // The same request gets the same answer, as large.
        UpstreamError::TooLarge { .. } => false,
        _ if !read => false,
        UpstreamError::Timeout { .. } | UpstreamError::Transport { .. } => true,
        UpstreamError::Api { .. } => matches!(
            e.code(),
            tonic::Code::ResourceExhausted | tonic::Code::Unavailable
        ),
    }
}

/// The tags a read is filed under and a mutation invalidates: the resources it names (cluster,
/// node pool, template) and, for reads, the collection it lists; for mutations, the collections
/// it makes stale.
fn cache_tags(op: &Operation, msg: &DynamicMessage, identity: &str, region: &str) -> Vec<String> {
    // Tags travel to other replicas (through Redis): they name the account by a hash only.
    let identity = &crate::shared::digest(&[identity]);
    let mut tags: Vec<String> = op
        .policy
        .scope
        .iter()
        .filter_map(|(kind, field)| {
            let v = msg.get_field_by_name(field)?;
            let id = v.as_str()?.to_string();
            Some(format!("{identity}|{region}|{kind}:{id}"))
        })
        .collect();
    let collections = if op.policy.read {
        op.policy.collection.iter().cloned().collect::<Vec<_>>()
    } else {
        op.policy.invalidates.clone()
    };
    tags.extend(
        collections
            .into_iter()
            .map(|c| format!("{identity}|{region}|collection:{c}")),
    );
    tags
}

/// The longest target an audit line shows: ids are short, and a request refused for an
/// oversized id must not write it whole into the log.
const TARGET_MAX_CHARS: usize = 128;

/// The id of the resource a call concerns (its path parameters), for the audit log: control
/// characters escaped, cut after `TARGET_MAX_CHARS` with `…`.
fn target_of(op: &Operation, msg: &DynamicMessage) -> String {
    let ids = op
        .fields
        .iter()
        .filter(|f| f.location == Some(crate::table::Location::Path))
        .filter_map(|f| msg.get_field_by_name(f.proto_name()))
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect::<Vec<_>>()
        .join("/");
    let mut target = String::new();
    for (i, c) in ids.chars().enumerate() {
        if i == TARGET_MAX_CHARS {
            target.push('…');
            break;
        }
        if c.is_control() {
            target.extend(c.escape_default());
        } else {
            target.push(c);
        }
    }
    target
}
