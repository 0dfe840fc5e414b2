//! The request path of a unary call, one step per line:
//!
//! ```text
//! decode request ─► map to HTTP (table) ─► profile + region ─► credential (vault)
//!   ─► sign ─► send (deadline-bounded) ─► map error / decode response ─► encode reply
//! ```
//! Reading `Gateway::unary` tells the whole story; each step lives in its own module.

pub(crate) mod prepare;

use crate::access::Access;
use crate::config::is_valid_region;
use crate::error::GatewayError;
use crate::proto;
use crate::table::{Operation, OperationTable, Style};
use crate::translate::{self, InvalidField};
use crate::upstream::{self, Upstream};
use crate::vault::Vault;
use bytes::Bytes;
use prost::Message as _;
use prost_reflect::DynamicMessage;
use std::sync::Arc;
use std::sync::RwLock;
use std::time::Duration;

/// Time kept back from the caller's deadline to answer before it passes.
const DEADLINE_MARGIN: Duration = Duration::from_millis(20);

/// Per-call inputs taken from gRPC metadata.
#[derive(Debug, Clone)]
pub struct CallContext {
    /// The authenticated caller's name (`local` in insecure local mode).
    pub caller: String,
    /// `x-ack-profile`, default `default`.
    pub profile: String,
    /// `x-ack-region`, default the profile's.
    pub region: Option<String>,
    /// Time left until the caller's deadline (`grpc-timeout`).
    pub deadline: Option<Duration>,
}

/// A successful call: the encoded response message and the upstream request id.
#[derive(Debug, Clone)]
pub struct Reply {
    pub message: Bytes,
    pub request_id: Option<String>,
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
}

// === impl Gateway ===

impl Gateway {
    pub fn new(
        table: Arc<OperationTable>,
        snapshot: Snapshot,
        upstream: Upstream,
        request_timeout: Duration,
    ) -> Self {
        Gateway {
            table,
            snapshot: RwLock::new(Arc::new(snapshot)),
            upstream,
            request_timeout,
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
        // Authorization comes first, before anything else is looked at.
        let snapshot = self.snapshot();
        snapshot
            .access
            .authorize(&ctx.caller, &ctx.profile, &op.name)?;
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

        // The upstream call is bounded by the caller's deadline and the configured timeout.
        let budget = match ctx.deadline {
            Some(d) => d.saturating_sub(DEADLINE_MARGIN).min(self.request_timeout),
            None => self.request_timeout,
        };
        let host_base = self.upstream.base_url(&op.service, service, &region);

        // A credential valid for the whole call, then sign.
        let credential = profile.credential(budget).await?;
        let key = &credential.key;
        let signed = match op.style {
            Style::Roa => prepare::roa(
                &host_base,
                &self.upstream.path_prefix(&op.service),
                &call,
                &service.version,
                &region,
                key,
                &profile.acs_headers,
            ),
            Style::Rpc => prepare::rpc(
                &host_base,
                op,
                &call,
                op.version.as_deref().unwrap_or(&service.version),
                &region,
                key,
            ),
        }?;
        let host = signed.host.clone();

        if budget.is_zero() {
            return Err(crate::error::UpstreamError::Timeout {
                host,
                timeout: budget,
            }
            .into());
        }
        let resp = self.upstream.send(signed, budget).await?;

        // Map errors, or decode the response into the typed message.
        let secrets: Vec<&str> = [
            Some(key.access_key_secret.expose()),
            key.security_token.as_ref().map(|t| t.expose()),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !(200..300).contains(&resp.status) {
            return Err(upstream::api_error(&host, &resp, &secrets).into());
        }
        let request_id = upstream::request_id(&resp.headers, &resp.body);
        let resp_desc = proto::message(&format!("{package}.{}Response", op.name))
            .ok_or_else(|| GatewayError::Unimplemented(op.name.clone()))?;
        let decoded = translate::decode_response(op, &resp_desc, &resp.body)?;
        Ok(Reply {
            message: Bytes::from(decoded.encode_to_vec()),
            request_id,
        })
    }
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
