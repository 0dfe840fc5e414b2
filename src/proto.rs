//! Generated code and descriptors, quarantined here.
//!
//! The upstream APIs' messages are served dynamically from the descriptor set (one generic path
//! for every operation); the gateway's own services have typed bindings.

pub mod codec;

use prost_reflect::{DescriptorPool, MessageDescriptor};
use std::sync::OnceLock;

/// Every compiled file (upstream APIs, the gateway's own, and their imports), encoded, with
/// their documentation (for reflection).
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptor.bin"));

/// The same files without documentation comments: what the request path needs, at a fraction
/// of the memory once decoded.
const LEAN_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptor_lean.bin"));

/// The gateway's own services.
pub mod gateway {
    #![allow(clippy::all, clippy::pedantic, clippy::unwrap_used)]
    tonic::include_proto!("ackgateway.v1");

    /// Each watch RPC's response has `WatchEvent`'s fields: conversions both ways.
    macro_rules! like_watch_event {
        ($($response:ident),*) => {$(
            impl From<WatchEvent> for $response {
                fn from(e: WatchEvent) -> Self {
                    $response {
                        kind: e.kind,
                        status: e.status,
                        new_events: e.new_events,
                        poll_error: e.poll_error,
                        observed_at: e.observed_at,
                        sequence: e.sequence,
                    }
                }
            }

            impl From<$response> for WatchEvent {
                fn from(r: $response) -> Self {
                    WatchEvent {
                        kind: r.kind,
                        status: r.status,
                        new_events: r.new_events,
                        poll_error: r.poll_error,
                        observed_at: r.observed_at,
                        sequence: r.sequence,
                    }
                }
            }
        )*};
    }

    like_watch_event!(
        WatchTaskResponse,
        WatchClusterUpgradeResponse,
        WatchAddonUpgradeResponse,
        WatchClusterResponse,
        WatchNodePoolResponse,
        WaitForResponse,
        WatchClusterEventsResponse
    );
}

/// The descriptor pool of every message, without documentation comments; with gRPC health and
/// server reflection (served over Connect too) and the `google.rpc` error details (rendered in
/// Connect errors).
pub fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        let mut pool = DescriptorPool::decode(LEAN_DESCRIPTOR_SET)
            .expect("the built-in descriptor set decodes");
        for set in [
            tonic_health::pb::FILE_DESCRIPTOR_SET,
            tonic_types::pb::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
        ] {
            pool.decode_file_descriptor_set(set)
                .expect("the health, reflection and error-detail descriptor sets decode");
        }
        pool
    })
}

/// A message descriptor by its fully-qualified name.
pub fn message(full_name: &str) -> Option<MessageDescriptor> {
    pool().get_message_by_name(full_name)
}

/// A `google.protobuf.Struct` as JSON. Numbers that are whole (and fit an `i64`) become JSON
/// integers, so that `{"page_size": 10}` fits an integer field and compares equal to the `10`
/// of an answer.
pub fn struct_to_json(s: &prost_types::Struct) -> serde_json::Value {
    serde_json::Value::Object(
        s.fields
            .iter()
            .map(|(k, v)| (k.clone(), value_to_json(v)))
            .collect(),
    )
}

/// JSON as a `google.protobuf.Struct` (the inverse of [`struct_to_json`]; anything but an
/// object is the empty struct).
pub fn json_to_struct(v: &serde_json::Value) -> prost_types::Struct {
    prost_types::Struct {
        fields: v
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), json_to_value(v)))
            .collect(),
    }
}

/// JSON as a `google.protobuf.Value`.
pub fn json_to_value(v: &serde_json::Value) -> prost_types::Value {
    use prost_types::value::Kind;
    use serde_json::Value;
    prost_types::Value {
        kind: Some(match v {
            Value::Null => Kind::NullValue(0),
            Value::Bool(b) => Kind::BoolValue(*b),
            Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
            Value::String(s) => Kind::StringValue(s.clone()),
            Value::Array(a) => Kind::ListValue(prost_types::ListValue {
                values: a.iter().map(json_to_value).collect(),
            }),
            Value::Object(_) => Kind::StructValue(json_to_struct(v)),
        }),
    }
}

/// A `google.protobuf.Value` as JSON (see [`struct_to_json`] for numbers).
pub fn value_to_json(v: &prost_types::Value) -> serde_json::Value {
    use prost_types::value::Kind;
    use serde_json::Value;
    match &v.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::NumberValue(n)) => {
            if n.fract() == 0.0 && n.abs() < 9.0e15 {
                Value::from(*n as i64)
            } else {
                serde_json::Number::from_f64(*n).map_or(Value::Null, Value::Number)
            }
        }
        Some(Kind::StringValue(s)) => Value::String(s.clone()),
        Some(Kind::BoolValue(b)) => Value::Bool(*b),
        Some(Kind::StructValue(s)) => struct_to_json(s),
        Some(Kind::ListValue(l)) => Value::Array(l.values.iter().map(value_to_json).collect()),
    }
}
