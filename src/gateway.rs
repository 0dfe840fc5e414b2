//! The request path of a unary call, one step per line:
//!
//! ```text
//! decode request ─► map to HTTP (table) ─► profile + region ─► credential (vault)
//!   ─► sign ─► send (deadline-bounded) ─► map error / decode response ─► encode reply
//! ```
//! Reading `Gateway::unary` tells the whole story; each step lives in its own module.

pub(crate) mod prepare;

use crate::access::Access;
use crate::cache::{CacheKey, Entry, Freshness, ReadCache, Served};
use crate::config::is_valid_region;
use crate::config::traffic::TrafficConfig;
use crate::error::GatewayError;
use crate::error::UpstreamError;
use crate::proto;
use crate::ratelimit::{Limiter, TokenBucket};
use crate::table::{Operation, OperationTable, Style};
use crate::translate::{self, InvalidField};
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
    cache: ReadCache,
    limiter: Limiter,
    calls: Semaphore,
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
    max_inflight_per_host: usize,
    max_attempts: u32,
    retry_base: Duration,
    retry_max_backoff: Duration,
    retries: AtomicU64,
}

// === impl Gateway ===

impl Gateway {
    pub fn new(
        table: Arc<OperationTable>,
        snapshot: Snapshot,
        upstream: Upstream,
        request_timeout: Duration,
        traffic: &TrafficConfig,
    ) -> Self {
        Gateway {
            table,
            snapshot: RwLock::new(Arc::new(snapshot)),
            upstream,
            request_timeout,
            cache: ReadCache::new(traffic.cache_max_bytes, traffic.cache_ttl),
            limiter: Limiter::new(traffic.caller_rate, traffic.upstream_rate, traffic.max_wait),
            calls: Semaphore::new(traffic.max_concurrent_calls),
            hosts: Mutex::new(HashMap::new()),
            max_inflight_per_host: traffic.max_inflight_per_host,
            max_attempts: traffic.max_attempts,
            retry_base: traffic.retry_base,
            retry_max_backoff: traffic.retry_max_backoff,
            retries: AtomicU64::new(0),
        }
    }

    pub fn table(&self) -> &Arc<OperationTable> {
        &self.table
    }

    pub fn upstream(&self) -> &Upstream {
        &self.upstream
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
            .ok_or_else(|| GatewayError::Unimplemented(format!("{service_key}.{operation}")))?
            .clone();
        let package = &self
            .table
            .service(service_key)
            .ok_or_else(|| GatewayError::Unimplemented(service_key.to_string()))?
            .package;
        let req_desc = proto::message(&format!("{package}.{operation}Request"))
            .ok_or_else(|| GatewayError::Unimplemented(operation.to_string()))?;
        let msg = DynamicMessage::deserialize(req_desc, request)
            .map_err(|e| InvalidField::new("request", e.to_string()))?;
        let reply = self
            .unary(&op, ctx, Bytes::from(msg.encode_to_vec()))
            .await?;
        let resp_desc = proto::message(&format!("{package}.{operation}Response"))
            .ok_or_else(|| GatewayError::Unimplemented(operation.to_string()))?;
        let decoded = DynamicMessage::decode(resp_desc, reply.message)
            .map_err(|e| GatewayError::Unimplemented(format!("re-decoding {operation}: {e}")))?;
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
        let result = self.unary_inner(op, ctx, request, &mut target).await;
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        match &result {
            Ok(reply) => tracing::info!(
                caller = %ctx.caller, profile = %ctx.profile, operation = %op.name, target = %target,
                outcome = "ok", request_id = reply.request_id.as_deref().unwrap_or(""), elapsed_ms,
                "call"
            ),
            Err(e) => tracing::info!(
                caller = %ctx.caller, profile = %ctx.profile, operation = %op.name, target = %target,
                outcome = e.kind(), request_id = e.request_id().unwrap_or(""), elapsed_ms, error = %e,
                "call"
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
        snapshot
            .access
            .authorize(&ctx.caller, &ctx.profile, &op.name)?;
        // Bounded concurrency: shed load rather than queue without bound.
        let _permit = self
            .calls
            .try_acquire()
            .map_err(|_| GatewayError::Overloaded("calls in flight".into()))?;
        let service = self
            .table
            .service(&op.service)
            .ok_or_else(|| GatewayError::Unimplemented(format!("no service {}", op.service)))?;
        let package = &service.package;

        // Decode the request and map it to HTTP (table-driven).
        let req_desc = proto::message(&format!("{package}.{}Request", op.name))
            .ok_or_else(|| GatewayError::Unimplemented(op.name.clone()))?;
        let msg = DynamicMessage::decode(req_desc, request)
            .map_err(|e| InvalidField::new("request", format!("malformed message: {e}")))?;
        let call = translate::build_call(op, &msg)?;
        *target = target_of(op, &msg);

        // Resolve the profile and region.
        let profile = snapshot.vault.profile(&ctx.profile)?;
        let region = ctx
            .region
            .clone()
            .or_else(|| profile.region.clone())
            .ok_or_else(|| {
                InvalidField::new("x-ack-region", "no region given and the profile has none")
            })?;
        if !is_valid_region(&region) {
            return Err(InvalidField::new(
                "x-ack-region",
                format!("`{region}` is not a region id"),
            )
            .into());
        }

        // The whole call, retries included, is bounded by the caller's deadline and the
        // configured timeout.
        let budget = match ctx.deadline {
            Some(d) => d.saturating_sub(DEADLINE_MARGIN).min(self.request_timeout),
            None => self.request_timeout,
        };
        let deadline = started + budget;

        // The caller's own rate.
        self.limiter.caller(&ctx.caller, Some(budget)).await?;

        let identity = profile.identity();
        let tags = cache_tags(op, &msg, &identity, &region);
        let upstream = Attempts {
            gateway: self,
            op,
            service,
            call: &call,
            profile: &profile,
            region: &region,
            deadline,
            bucket: self.limiter.upstream_bucket(&identity, &op.name),
        };

        // Cacheable reads go through the cache (coalescing identical misses); the rest upstream.
        let cache_ttl = op
            .policy
            .cache_ttl_ms
            .filter(|_| op.policy.read && !op.policy.secrets);
        if let Some(ttl_ms) = cache_ttl {
            let key = CacheKey {
                identity,
                region: region.clone(),
                service: op.service.clone(),
                operation: op.name.clone(),
                request: canonical_request(&call),
            };
            let ttl = self.cache.ttl_for(Duration::from_millis(ttl_ms));
            let fetch = async {
                let reply = upstream.run(package).await?;
                Ok::<_, GatewayError>(Entry {
                    message: reply.message,
                    request_id: reply.request_id,
                    stored_at: Instant::now(),
                    ttl,
                    tags,
                })
            };
            let (entry, served) = self
                .cache
                .get_or_fetch(key, ctx.cache_control, fetch)
                .await
                .map_err(|e| (*e).clone())?;
            return Ok(Reply {
                message: entry.message.clone(),
                request_id: entry.request_id.clone(),
                cache: Some(served),
            });
        }
        let reply = upstream.run(package).await?;
        if !op.policy.read {
            // A successful mutation makes the reads of the same resources stale.
            self.cache.invalidate(tags);
        }
        Ok(reply)
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

    /// The semaphore bounding upstream requests in flight to one host.
    fn host_slots(&self, host: &str) -> Arc<Semaphore> {
        let mut hosts = self.hosts.lock().expect("hosts lock");
        hosts
            .entry(host.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(self.max_inflight_per_host)))
            .clone()
    }
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
}

impl Attempts<'_> {
    async fn run(&self, package: &str) -> Result<Reply, GatewayError> {
        let g = self.gateway;
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let remaining = self.deadline.saturating_duration_since(Instant::now());
            let host_base = g
                .upstream
                .base_url(&self.op.service, self.service, self.region);
            if remaining.is_zero() {
                return Err(UpstreamError::Timeout {
                    host: host_of(&host_base),
                    timeout: Duration::ZERO,
                }
                .into());
            }
            // The account's upstream budget, then a credential valid for the rest of the call.
            g.limiter
                .upstream(self.bucket.as_ref(), Some(remaining))
                .await?;
            let remaining = self.deadline.saturating_duration_since(Instant::now());
            let credential = self.profile.credential(remaining).await?;
            let key = &credential.key;
            // A fresh nonce and Date for every attempt.
            let signed = match self.op.style {
                Style::Roa => prepare::roa(
                    &host_base,
                    &g.upstream.path_prefix(&self.op.service),
                    self.call,
                    &self.service.version,
                    self.region,
                    key,
                    &self.profile.acs_headers,
                ),
                Style::Rpc => prepare::rpc(
                    &host_base,
                    self.op,
                    self.call,
                    self.op.version.as_deref().unwrap_or(&self.service.version),
                    self.region,
                    key,
                ),
            }?;
            let host = signed.host.clone();
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
                Some(key.access_key_secret.expose()),
                key.security_token.as_ref().map(|t| t.expose()),
            ]
            .into_iter()
            .flatten()
            .collect();
            let error = match g.upstream.send(signed, remaining).await {
                Ok(resp) if (200..300).contains(&resp.status) => {
                    if let Some(wait) = upstream::exhausted_budget(&resp.headers) {
                        g.limiter.throttled(self.bucket.as_ref(), Some(wait));
                    } else if let Some(b) = &self.bucket {
                        b.succeeded();
                    }
                    let request_id = upstream::request_id(&resp.headers, &resp.body);
                    let resp_desc = proto::message(&format!("{package}.{}Response", self.op.name))
                        .ok_or_else(|| GatewayError::Unimplemented(self.op.name.clone()))?;
                    let decoded = translate::decode_response(self.op, &resp_desc, &resp.body)?;
                    return Ok(Reply {
                        message: Bytes::from(decoded.encode_to_vec()),
                        request_id,
                        cache: None,
                    });
                }
                Ok(resp) => upstream::api_error(&host, &resp, &secrets),
                Err(e) => e,
            };
            if error.code() == tonic::Code::ResourceExhausted {
                let retry_after = match &error {
                    UpstreamError::Api { retry_after, .. } => *retry_after,
                    _ => None,
                };
                g.limiter.throttled(self.bucket.as_ref(), retry_after);
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
}

/// Reads are retried on throttling, 5xx, timeouts and connection errors; a mutation only when
/// the request provably never left (the connection was never made).
fn may_retry(read: bool, e: &UpstreamError) -> bool {
    match e {
        UpstreamError::Connect { .. } => true,
        _ if !read => false,
        UpstreamError::Timeout { .. } | UpstreamError::Transport { .. } => true,
        UpstreamError::Api { .. } => matches!(
            e.code(),
            tonic::Code::ResourceExhausted | tonic::Code::Unavailable
        ),
    }
}

fn host_of(base: &str) -> String {
    url::Url::parse(base)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_default()
}

/// The exact upstream request, as the cache key's last part.
fn canonical_request(call: &translate::HttpCall) -> String {
    let mut query = call.query.clone();
    query.sort();
    let mut s = format!("{} {}", call.method, call.encoded_path);
    for (k, v) in query {
        s.push('\n');
        s.push_str(&k);
        s.push('=');
        s.push_str(&v);
    }
    if let Some(body) = &call.body {
        s.push('\n');
        s.push_str(&String::from_utf8_lossy(body));
    }
    s
}

/// The tags a read is filed under and a mutation invalidates: the resources it names (cluster,
/// node pool, template) and, for reads, the collection it lists; for mutations, the collections
/// it makes stale.
fn cache_tags(op: &Operation, msg: &DynamicMessage, identity: &str, region: &str) -> Vec<String> {
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

/// The id of the resource a call concerns (its first path parameter), for the audit log.
fn target_of(op: &Operation, msg: &DynamicMessage) -> String {
    op.fields
        .iter()
        .filter(|f| f.location == Some(crate::table::Location::Path))
        .filter_map(|f| msg.get_field_by_name(f.proto_name()))
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect::<Vec<_>>()
        .join("/")
}
