//! Response body → response message.

use super::{coerce, UndecodableResponse};
use crate::table::{Operation, ResponseKind};
use prost_reflect::{DeserializeOptions, DynamicMessage, MessageDescriptor};
use serde_json::{Map, Value};

/// Unknown upstream fields are tolerated: the API adds fields faster than the table follows.
const LENIENT: DeserializeOptions = DeserializeOptions::new().deny_unknown_fields(false);

/// Decodes a successful response body into the operation's response message.
///
/// An object answer typed as the message declares decodes straight from its bytes. Any other
/// (loose typing the decoder refuses, a wrapped array or map, text, no body) is parsed to JSON
/// and fitted to the message first (`coerce`); its errors are the ones reported.
pub fn decode_response(
    op: &Operation,
    desc: &MessageDescriptor,
    body: &[u8],
) -> Result<DynamicMessage, UndecodableResponse> {
    if op.response.kind == ResponseKind::Object {
        if let Some(message) = decode_well_typed(desc, body) {
            return Ok(message);
        }
    }
    decode_fitted(op, desc, body)
}

/// The body decoded by the protobuf JSON mapping as it is, if it decodes: no JSON tree is built
/// and nothing is fitted (for a typical answer, a third of the work of the fitting path).
pub(super) fn decode_well_typed(desc: &MessageDescriptor, body: &[u8]) -> Option<DynamicMessage> {
    let mut json = serde_json::Deserializer::from_slice(body);
    let message =
        DynamicMessage::deserialize_with_options(desc.clone(), &mut json, &LENIENT).ok()?;
    json.end().ok()?;
    Some(message)
}

/// The body parsed to JSON, wrapped for the response kind and fitted to the message.
pub(super) fn decode_fitted(
    op: &Operation,
    desc: &MessageDescriptor,
    body: &[u8],
) -> Result<DynamicMessage, UndecodableResponse> {
    let fail = |reason: String| UndecodableResponse {
        message: desc.full_name().to_string(),
        reason,
    };
    let json = |body: &[u8]| -> Result<Value, UndecodableResponse> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(body).map_err(|e| fail(format!("invalid JSON: {e}")))
    };
    let wrapped = match op.response.kind {
        ResponseKind::Object => match json(body)? {
            Value::Object(map) => Value::Object(map),
            Value::Null => Value::Object(Map::new()),
            other => {
                return Err(fail(format!(
                    "expected a JSON object, got {}",
                    kind(&other)
                )))
            }
        },
        ResponseKind::Array => match json(body)? {
            Value::Array(items) => wrap("items", Value::Array(items)),
            Value::Null => Value::Object(Map::new()),
            other => return Err(fail(format!("expected a JSON array, got {}", kind(&other)))),
        },
        ResponseKind::Map => match json(body)? {
            Value::Object(map) => wrap("entries", Value::Object(map)),
            Value::Null => Value::Object(Map::new()),
            other => {
                return Err(fail(format!(
                    "expected a JSON object, got {}",
                    kind(&other)
                )))
            }
        },
        ResponseKind::String => wrap(
            "body",
            Value::String(String::from_utf8_lossy(body).into_owned()),
        ),
        ResponseKind::None => Value::Object(Map::new()),
    };
    let fitted = coerce::fit_message(desc, wrapped);
    DynamicMessage::deserialize_with_options(desc.clone(), fitted, &LENIENT)
        .map_err(|e| fail(e.to_string()))
}

fn wrap(key: &str, value: Value) -> Value {
    let mut m = Map::new();
    m.insert(key.to_string(), value);
    Value::Object(m)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
