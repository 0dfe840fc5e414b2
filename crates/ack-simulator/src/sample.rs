//! Plausible answers for operations the simulator keeps no state for, built from the operation
//! table's response schema, so every operation answers in its real shape.

use crate::table::{Field, FieldType, Operation, ResponseKind};
use serde_json::{json, Map, Value};

/// A sample body for the operation, or `None` when it answers with no body.
pub fn response(op: &Operation, request_id: &str) -> Option<Value> {
    let r = &op.response;
    match r.kind {
        ResponseKind::Object => {
            let mut obj = object(r.fields.as_deref().unwrap_or_default(), 0);
            for key in ["request_id", "requestId", "RequestId"] {
                if obj.contains_key(key) {
                    obj.insert(key.to_string(), json!(request_id));
                }
            }
            Some(Value::Object(obj))
        }
        ResponseKind::Array => Some(json!([value(r.items.as_deref()?, "item", 0)])),
        ResponseKind::Map => Some(json!({ "sample": value(r.values.as_deref()?, "sample", 0) })),
        ResponseKind::String => Some(json!("#!/bin/bash\necho 'simulated script'\n")),
        ResponseKind::None => None,
    }
}

fn object(fields: &[Field], depth: usize) -> Map<String, Value> {
    fields
        .iter()
        .map(|f| {
            (
                f.json_key().to_string(),
                value(f, f.proto_name(), depth + 1),
            )
        })
        .collect()
}

fn value(f: &Field, name: &str, depth: usize) -> Value {
    match f.ty {
        FieldType::String => json!(string_for(name)),
        FieldType::Integer | FieldType::Int64 => json!(1),
        FieldType::Boolean => json!(true),
        FieldType::Number => json!(1.5),
        FieldType::Any => json!("sample"),
        FieldType::Object if depth > 6 => json!({}),
        FieldType::Object => Value::Object(object(f.fields.as_deref().unwrap_or_default(), depth)),
        FieldType::Array => match &f.items {
            Some(items) if depth <= 6 => json!([value(items, name, depth + 1)]),
            _ => json!([]),
        },
        FieldType::Map => match &f.values {
            Some(v) if depth <= 6 => json!({ "key": value(v, name, depth + 1) }),
            _ => json!({}),
        },
    }
}

fn string_for(name: &str) -> String {
    let n = name.to_ascii_lowercase();
    if n == "created" || n == "updated" || n.ends_with("_time") || n.ends_with("time") {
        "2026-11-22T06:00:00Z".into()
    } else if n == "state" || n == "status" {
        "running".into()
    } else if n.ends_with("_id") || n == "id" {
        format!("sim-{}", name.trim_end_matches("_id"))
    } else {
        format!("sample-{name}")
    }
}
