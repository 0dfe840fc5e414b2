//! Request message → HTTP call.

use super::limits::{encoded_len, RequestLimits};
use super::InvalidField;
use crate::signer::rpc::RFC3986;
use crate::table::{BodyKind, Field, FieldType, Location, Operation};
use percent_encoding::utf8_percent_encode;
use prost_reflect::{DynamicMessage, SerializeOptions};
use serde_json::{Map, Value};

/// An unsigned upstream call.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpCall {
    pub method: String,
    /// The path as sent: every parameter value percent-encoded, so no value can change it.
    pub encoded_path: String,
    /// The path with the raw parameter values, as signed (the canonical resource).
    pub decoded_path: String,
    /// Decoded query parameters, in table order.
    pub query: Vec<(String, String)>,
    /// The JSON body, when the operation has one.
    pub body: Option<Vec<u8>>,
}

/// Proto JSON as the upstream expects it: wire names, numbers as numbers, unset fields absent
/// (every scalar has presence, so a field set to 0/false/"" is present).
const WIRE_JSON: SerializeOptions = SerializeOptions::new()
    .stringify_64_bit_integers(false)
    .skip_default_fields(true)
    .use_proto_field_name(false);

/// Maps a request message to the HTTP call the operation's table entry describes, within
/// `limits` (a request outside them is refused, never shortened).
pub fn build_call(
    op: &Operation,
    msg: &DynamicMessage,
    limits: &RequestLimits,
) -> Result<HttpCall, InvalidField> {
    let mut values = match msg
        .serialize_with_options(serde_json::value::Serializer, &WIRE_JSON)
        .map_err(|e| InvalidField::new("request", e.to_string()))?
    {
        Value::Object(map) => map,
        _ => Map::new(),
    };

    let mut path_values: Vec<(&str, String)> = Vec::new();
    let mut query = Vec::new();
    let mut body_object = Map::new();
    let mut whole_body: Option<Value> = None;
    // Each path or query field's share of the URL, percent-encoded.
    let mut url_parts: Vec<(&str, usize)> = Vec::new();

    for field in &op.fields {
        let name = field.proto_name();
        let value = values.remove(field.json_key());
        let present = value.as_ref().is_some_and(|v| !is_empty_repeated(v));
        if !present && (field.required || field.location == Some(Location::Path)) {
            return Err(InvalidField::new(name, "is required"));
        }
        let Some(value) = value else { continue };
        limits.shape(name, &value)?;
        match field.location {
            Some(Location::Path) => {
                if let Some(body_key) = &field.body_wire_name {
                    body_object.insert(body_key.clone(), value.clone());
                }
                let v = path_value(name, &value)?;
                limits.path_value(name, &v)?;
                url_parts.push((name, encoded_len(&v)));
                path_values.push((name, v));
            }
            Some(Location::Query) => {
                let first = query.len();
                query_values(field, value, &mut query)?;
                let mut share = 0;
                for (k, v) in &query[first..] {
                    limits.query_value(name, v)?;
                    // `k=v` and a separator.
                    share += encoded_len(k) + encoded_len(v) + 2;
                }
                url_parts.push((name, share));
            }
            Some(Location::Body) if field.whole_body => whole_body = Some(value),
            Some(Location::Body) => {
                body_object.insert(field.json_key().to_string(), value);
            }
            None => return Err(InvalidField::new(name, "has no location in the table")),
        }
    }
    for group in &op.required_one_of {
        let any_set = group.iter().any(|name| {
            op.fields
                .iter()
                .find(|f| f.proto_name() == name)
                .is_some_and(|f| msg.has_field_by_name(f.proto_name()))
        });
        if !any_set {
            return Err(InvalidField::new(
                group.join("|"),
                format!("one of {} is required", group.join(", ")),
            ));
        }
    }

    // The template's own characters, and `?`.
    limits.url(&url_parts, op.path.len() + 1)?;
    let (encoded_path, decoded_path) = fill_path(&op.path, &path_values);
    let body = match op.body {
        BodyKind::None => None,
        BodyKind::Object => Some(Value::Object(body_object)),
        BodyKind::Array => Some(whole_body.unwrap_or_else(|| Value::Array(Vec::new()))),
    }
    .map(|v| serde_json::to_vec(&v).expect("JSON values always serialize"));

    Ok(HttpCall {
        method: op.method.clone(),
        encoded_path,
        decoded_path,
        query,
        body,
    })
}

fn is_empty_repeated(v: &Value) -> bool {
    matches!(v, Value::Array(a) if a.is_empty())
}

/// A path parameter: a non-empty string that is not a dot segment (which URL normalisation
/// would resolve away, changing the path).
fn path_value(name: &str, value: &Value) -> Result<String, InvalidField> {
    let s = scalar_string(value).ok_or_else(|| InvalidField::new(name, "must be a string"))?;
    if s.is_empty() {
        return Err(InvalidField::new(name, "is required"));
    }
    if s == "." || s == ".." {
        return Err(InvalidField::new(name, "must not be `.` or `..`"));
    }
    Ok(s)
}

/// The path as sent (values percent-encoded) and as signed (values as given), filled in one pass
/// over the template, so a value is never read as a placeholder of a later parameter.
fn fill_path(template: &str, values: &[(&str, String)]) -> (String, String) {
    let mut encoded = String::with_capacity(template.len() + 32);
    let mut decoded = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some((open, close)) = rest
        .find('{')
        .and_then(|open| Some((open, open + rest[open..].find('}')?)))
    {
        let (literal, placeholder) = (&rest[..open], &rest[open..=close]);
        encoded.push_str(literal);
        decoded.push_str(literal);
        match values
            .iter()
            .find(|(name, _)| *name == &placeholder[1..placeholder.len() - 1])
        {
            Some((_, value)) => {
                encoded.extend(utf8_percent_encode(value, RFC3986));
                decoded.push_str(value);
            }
            None => {
                encoded.push_str(placeholder);
                decoded.push_str(placeholder);
            }
        }
        rest = &rest[close + 1..];
    }
    encoded.push_str(rest);
    decoded.push_str(rest);
    (encoded, decoded)
}

/// Appends a query field's parameters, serialised as the table says.
fn query_values(
    field: &Field,
    value: Value,
    out: &mut Vec<(String, String)>,
) -> Result<(), InvalidField> {
    let key = field.json_key().to_string();
    let name = field.proto_name();
    match (field.ty, field.serialization.as_deref()) {
        (FieldType::Array, Some("simple")) => {
            let items = as_array(name, value)?;
            let parts: Result<Vec<String>, InvalidField> = items
                .iter()
                .map(|v| {
                    scalar_string(v).ok_or_else(|| InvalidField::new(name, "items must be scalars"))
                })
                .collect();
            out.push((key, parts?.join(",")));
        }
        (FieldType::Array, Some(s)) if s.starts_with("repeat_list:") => {
            let sub = &s["repeat_list:".len()..];
            for (i, item) in as_array(name, value)?.iter().enumerate() {
                let v = scalar_string(item)
                    .ok_or_else(|| InvalidField::new(name, "items must be scalars"))?;
                out.push((format!("{key}.{}.{sub}", i + 1), v));
            }
        }
        // JSON-encoded arrays (`json` style), and any structured value.
        (FieldType::Array | FieldType::Object | FieldType::Map | FieldType::Any, _) => {
            out.push((key, value.to_string()));
        }
        _ => {
            let v =
                scalar_string(&value).ok_or_else(|| InvalidField::new(name, "must be a scalar"))?;
            out.push((key, v));
        }
    }
    Ok(())
}

fn as_array(name: &str, value: Value) -> Result<Vec<Value>, InvalidField> {
    match value {
        Value::Array(a) => Ok(a),
        _ => Err(InvalidField::new(name, "must be a list")),
    }
}

/// A scalar as the upstream expects it in a query or path: booleans lowercase, numbers decimal.
fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(if *b { "true" } else { "false" }.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}
