//! The request path's policies and small decisions, each a pure function: which region a call
//! goes to, which messages an operation has, what is safe to retry, which cache tags a call
//! files under or invalidates, and what its audit line names as its target.

use crate::config::is_valid_region;
use crate::error::{GatewayError, UpstreamError};
use crate::proto;
use crate::table::Operation;
use crate::translate::InvalidField;
use prost_reflect::DynamicMessage;

/// The call's region (`x-ack-region`), else the profile's; it must be a region id.
pub(super) fn region_for(
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
pub(super) fn message_of(
    service: &crate::table::ServiceInfo,
    op: &Operation,
    suffix: &str,
) -> Result<prost_reflect::MessageDescriptor, GatewayError> {
    proto::message(&format!("{}.{}{suffix}", service.package, op.name))
        .ok_or_else(|| GatewayError::Internal(format!("no message {}{suffix}", op.name)))
}

/// The status label of an upstream request that got no HTTP answer.
pub(super) fn transport_failure(e: &UpstreamError) -> &'static str {
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
pub(super) fn may_retry(read: bool, e: &UpstreamError) -> bool {
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
pub(super) fn cache_tags(
    op: &Operation,
    msg: &DynamicMessage,
    identity: &str,
    region: &str,
) -> Vec<String> {
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
pub(super) fn target_of(op: &Operation, msg: &DynamicMessage) -> String {
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

/// The id a write names for a resource kind of its scope (`cluster`, `nodepool`), if set.
pub(super) fn scope_field(op: &Operation, msg: &DynamicMessage, kind: &str) -> Option<String> {
    let field = op.policy.scope.get(kind)?;
    let v = msg.get_field_by_name(field)?;
    v.as_str().filter(|s| !s.is_empty()).map(str::to_string)
}

/// String fields of an encoded response message (`task_id`, `cluster_id`…), each empty when
/// absent; the message is decoded once.
pub(super) fn response_fields<const N: usize>(
    op: &Operation,
    service: Option<&crate::table::ServiceInfo>,
    message: &[u8],
    fields: [&str; N],
) -> [String; N] {
    let decoded = service
        .and_then(|s| message_of(s, op, "Response").ok())
        .and_then(|desc| DynamicMessage::decode(desc, message).ok());
    fields.map(|field| {
        decoded
            .as_ref()
            .and_then(|m| m.get_field_by_name(field))
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    })
}

/// A message as JSON in the form the gateway's own readers use: proto field names, 64-bit
/// integers as numbers, keys sorted (serde_json's map).
pub(super) fn message_json(
    msg: &DynamicMessage,
    what: &str,
) -> Result<serde_json::Value, GatewayError> {
    msg.serialize_with_options(
        serde_json::value::Serializer,
        &prost_reflect::SerializeOptions::new()
            .use_proto_field_name(true)
            .stringify_64_bit_integers(false),
    )
    .map_err(|e| GatewayError::Internal(format!("serializing {what}: {e}")))
}
