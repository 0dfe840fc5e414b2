//! Fits upstream JSON to a message's schema before decoding, so that the API's loose typing
//! (numbers sent as strings and back, `"true"` for booleans, nested JSON sent as text, a single
//! value where a list is declared) never fails a whole response. Unknown keys are left for the
//! decoder to skip; values that cannot be represented are dropped rather than failing the call.

use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{Map, Value};

/// Well-known types whose JSON form is free-form and passes through unchanged.
fn is_free_form(desc: &MessageDescriptor) -> bool {
    matches!(
        desc.full_name(),
        "google.protobuf.Struct" | "google.protobuf.Value" | "google.protobuf.ListValue"
    )
}

pub fn fit_message(desc: &MessageDescriptor, value: Value) -> Value {
    let Value::Object(map) = value else {
        return Value::Null;
    };
    let mut out = Map::with_capacity(map.len());
    for (key, v) in map {
        let field = desc
            .get_field_by_json_name(&key)
            .or_else(|| desc.get_field_by_name(&key));
        let Some(field) = field else {
            out.insert(key, v); // unknown: the decoder skips it
            continue;
        };
        let fitted = fit_field(&field, v);
        if !fitted.is_null() {
            out.insert(key, fitted);
        }
    }
    Value::Object(out)
}

fn fit_field(field: &FieldDescriptor, v: Value) -> Value {
    if v.is_null() {
        return Value::Null;
    }
    if field.is_map() {
        let Kind::Message(entry) = field.kind() else {
            return Value::Null;
        };
        let value_field = entry.map_entry_value_field();
        return match v {
            Value::Object(m) => Value::Object(
                m.into_iter()
                    .map(|(k, x)| (k, fit_single(&value_field.kind(), x)))
                    .filter(|(_, x)| !x.is_null())
                    .collect(),
            ),
            _ => Value::Null,
        };
    }
    if field.is_list() {
        let items = match v {
            Value::Array(a) => a,
            single => vec![single],
        };
        return Value::Array(
            items
                .into_iter()
                .map(|x| fit_single(&field.kind(), x))
                .filter(|x| !x.is_null())
                .collect(),
        );
    }
    fit_single(&field.kind(), v)
}

fn fit_single(kind: &Kind, v: Value) -> Value {
    match kind {
        Kind::Message(desc) if is_free_form(desc) => v,
        Kind::Message(desc) => match v {
            Value::Object(_) => fit_message(desc, v),
            // Nested JSON sent as text.
            Value::String(s) => match serde_json::from_str::<Value>(&s) {
                Ok(parsed @ Value::Object(_)) => fit_message(desc, parsed),
                _ => Value::Null,
            },
            _ => Value::Null,
        },
        Kind::String => match v {
            Value::String(_) => v,
            Value::Bool(b) => Value::String(b.to_string()),
            Value::Number(n) => Value::String(n.to_string()),
            other => Value::String(other.to_string()),
        },
        Kind::Bool => match v {
            Value::Bool(_) => v,
            Value::String(s) => match s.to_ascii_lowercase().as_str() {
                "true" | "1" => Value::Bool(true),
                "false" | "0" => Value::Bool(false),
                _ => Value::Null,
            },
            Value::Number(n) => Value::Bool(n.as_f64().is_some_and(|x| x != 0.0)),
            _ => Value::Null,
        },
        Kind::Int32
        | Kind::Int64
        | Kind::Sint32
        | Kind::Sint64
        | Kind::Sfixed32
        | Kind::Sfixed64
        | Kind::Uint32
        | Kind::Uint64
        | Kind::Fixed32
        | Kind::Fixed64 => match v {
            Value::Number(ref n) if n.is_i64() || n.is_u64() => v,
            Value::Number(n) => n
                .as_f64()
                .filter(|x| x.fract() == 0.0)
                .map(|x| Value::from(x as i64))
                .unwrap_or(Value::Null),
            Value::String(s) => s
                .trim()
                .parse::<i64>()
                .map(Value::from)
                .unwrap_or(Value::Null),
            Value::Bool(b) => Value::from(i64::from(b)),
            _ => Value::Null,
        },
        Kind::Float | Kind::Double => match v {
            Value::Number(_) => v,
            Value::String(s) => s
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(|x| serde_json::Number::from_f64(x).map(Value::Number))
                .unwrap_or(Value::Null),
            _ => Value::Null,
        },
        Kind::Bytes | Kind::Enum(_) => v,
    }
}
