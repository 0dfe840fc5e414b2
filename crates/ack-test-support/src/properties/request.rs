//! Request message → HTTP call (`translate::build_call`).
//!
//! Input: an operation index byte, a limits byte, then the bytes of that operation's request
//! message (inputs whose bytes do not decode are skipped). Property: no panic; a call keeps the
//! operation's method and its path template (same segments, literal ones unchanged, a value
//! segment never empty, `.` or `..`, no `?`, `#` or space in the path), its decoded path is the
//! sent path percent-decoded, it fits the URL limit, and its body is JSON exactly when the
//! operation has one; a refusal names a field of the operation (or the request).

use super::catalog::ops;
use super::inputs::string;
use super::Unstructured;
use ack_gateway::table::{BodyKind, Operation};
use ack_gateway::translate::{build_call, HttpCall, InvalidField, RequestLimits};
use ack_gateway::upstream::encode_query;
use percent_encoding::percent_decode_str;
use prost::Message as _;
use prost_reflect::{DynamicMessage, Kind, MapKey, MessageDescriptor, Value};
use std::collections::HashMap;

/// The gateway's default limits, or (one input in four) tight ones, so that every refusal path
/// is reached by small inputs.
pub fn limits(selector: u8) -> RequestLimits {
    if selector.is_multiple_of(4) {
        RequestLimits {
            max_path_param_bytes: 16,
            max_query_value_bytes: 32,
            max_url_bytes: 256,
            max_header_bytes: 4096,
            max_repeated_items: 4,
            max_json_depth: 3,
        }
    } else {
        RequestLimits::default()
    }
}

pub fn check(data: &[u8]) {
    let [op_index, limits_selector, message @ ..] = data else {
        return;
    };
    let (op, desc, _) = ops().get(usize::from(*op_index));
    let Ok(msg) = DynamicMessage::decode(desc.clone(), message) else {
        return;
    };
    let limits = limits(*limits_selector);
    match build_call(op, &msg, &limits) {
        Ok(call) => check_call(op, &call, &limits),
        Err(refusal) => check_refusal(op, &refusal),
    }
}

fn check_call(op: &Operation, call: &HttpCall, limits: &RequestLimits) {
    assert_eq!(call.method, op.method);
    let literal = &op.path[..op.path.find('{').unwrap_or(op.path.len())];
    assert!(
        call.encoded_path.starts_with(literal) && call.decoded_path.starts_with(literal),
        "{} left its template {}",
        call.encoded_path,
        op.path
    );
    assert!(
        !call.encoded_path.contains(['?', '#', ' ']) && call.encoded_path.is_ascii(),
        "unencoded characters in {}",
        call.encoded_path
    );
    let template: Vec<&str> = op.path.split('/').collect();
    let sent: Vec<&str> = call.encoded_path.split('/').collect();
    assert_eq!(
        template.len(),
        sent.len(),
        "{} has other segments than {}",
        call.encoded_path,
        op.path
    );
    for (t, s) in template.iter().zip(&sent) {
        if t.contains('{') {
            assert!(
                !matches!(*s, "" | "." | ".."),
                "value segment `{s}` in {}",
                call.encoded_path
            );
        } else {
            assert_eq!(t, s, "literal segment changed in {}", call.encoded_path);
        }
    }
    let decoded = percent_decode_str(&call.encoded_path).decode_utf8_lossy();
    assert_eq!(
        decoded, call.decoded_path,
        "the signed path is not the sent one"
    );
    let url = call.encoded_path.len() + 1 + encode_query(&call.query).len();
    assert!(
        url <= limits.max_url_bytes,
        "{url} bytes of URL over {}",
        limits.max_url_bytes
    );
    match (&op.body, &call.body) {
        (BodyKind::None, None) => {}
        (BodyKind::None, Some(_)) => panic!("a body for {}", op.name),
        (_, None) => panic!("no body for {}", op.name),
        (_, Some(body)) => {
            serde_json::from_slice::<serde_json::Value>(body).expect("the body is JSON");
        }
    }
}

fn check_refusal(op: &Operation, refusal: &InvalidField) {
    assert!(!refusal.reason.is_empty());
    let names_fields = refusal
        .field
        .split('|')
        .all(|name| op.fields.iter().any(|f| f.proto_name() == name));
    assert!(
        refusal.field == "request" || names_fields,
        "`{}` is not a field of {}: {refusal}",
        refusal.field,
        op.name
    );
}

/// One input per sample request in `tests/fixtures/seed_samples`, and one generated request
/// per operation (so every operation has a seed).
pub fn seeds() -> Vec<Vec<u8>> {
    let ops = ops();
    let mut out = Vec::new();
    let dir = super::inputs::repo_root().join("tests/fixtures/seed_samples");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("seed samples")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    for path in files {
        let text = std::fs::read_to_string(&path).expect("sample");
        let sample: serde_json::Value = serde_json::from_str(&text).expect("JSON sample");
        let (Some(service), Some(name)) =
            (sample["service"].as_str(), sample["operation"].as_str())
        else {
            continue;
        };
        let Some(i) = ops.index_of(service, name) else {
            continue;
        };
        let (_, desc, _) = ops.get(i);
        let Ok(msg) = DynamicMessage::deserialize(desc.clone(), &sample["grpc_request"]) else {
            continue;
        };
        for selector in [1, 0] {
            let mut input = vec![i as u8, selector];
            input.extend(msg.encode_to_vec());
            out.push(input);
        }
    }
    for i in 0..ops.count() {
        let bytes: Vec<u8> = (0..4096u32)
            .map(|n| (n.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let mut u = Unstructured::new(&bytes);
        if let Ok(input) = generate_for(&mut u, i) {
            out.push(input);
        }
    }
    out
}

/// A structured input: an operation, limits, and a request message with fields set to
/// arbitrary (often hostile) values.
pub fn generate(u: &mut Unstructured<'_>) -> arbitrary::Result<Vec<u8>> {
    let i = u.int_in_range(0..=ops().count() - 1)?;
    generate_for(u, i)
}

fn generate_for(u: &mut Unstructured<'_>, i: usize) -> arbitrary::Result<Vec<u8>> {
    let (_, desc, _) = ops().get(i);
    let msg = message(u, desc, 0)?;
    let mut input = vec![i as u8, u.arbitrary()?];
    input.extend(msg.encode_to_vec());
    Ok(input)
}

fn message(
    u: &mut Unstructured<'_>,
    desc: &MessageDescriptor,
    depth: usize,
) -> arbitrary::Result<DynamicMessage> {
    let mut msg = DynamicMessage::new(desc.clone());
    for field in desc.fields() {
        // Required fields are set more often than not, so most requests get past them.
        if u.ratio(1, 3)? {
            continue;
        }
        let value = if field.is_map() {
            let Kind::Message(entry) = field.kind() else {
                continue;
            };
            let key_kind = entry.map_entry_key_field().kind();
            let value_kind = entry.map_entry_value_field().kind();
            let mut map = HashMap::new();
            for _ in 0..u.int_in_range(0..=5)? {
                let Some(key) = map_key(u, &key_kind)? else {
                    continue;
                };
                map.insert(key, single(u, &value_kind, depth)?);
            }
            Value::Map(map)
        } else if field.is_list() {
            let n = u.int_in_range(0..=6)?;
            let items = (0..n)
                .map(|_| single(u, &field.kind(), depth))
                .collect::<arbitrary::Result<Vec<_>>>()?;
            Value::List(items)
        } else {
            single(u, &field.kind(), depth)?
        };
        msg.set_field(&field, value);
    }
    Ok(msg)
}

fn map_key(u: &mut Unstructured<'_>, kind: &Kind) -> arbitrary::Result<Option<MapKey>> {
    Ok(Some(match kind {
        Kind::String => MapKey::String(string(u)?),
        Kind::Bool => MapKey::Bool(u.arbitrary()?),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => MapKey::I32(u.arbitrary()?),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => MapKey::I64(u.arbitrary()?),
        Kind::Uint32 | Kind::Fixed32 => MapKey::U32(u.arbitrary()?),
        Kind::Uint64 | Kind::Fixed64 => MapKey::U64(u.arbitrary()?),
        _ => return Ok(None),
    }))
}

fn single(u: &mut Unstructured<'_>, kind: &Kind, depth: usize) -> arbitrary::Result<Value> {
    Ok(match kind {
        Kind::String => Value::String(string(u)?),
        Kind::Bytes => Value::Bytes(u.arbitrary::<Vec<u8>>()?.into()),
        Kind::Bool => Value::Bool(u.arbitrary()?),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Value::I32(u.arbitrary()?),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Value::I64(u.arbitrary()?),
        Kind::Uint32 | Kind::Fixed32 => Value::U32(u.arbitrary()?),
        Kind::Uint64 | Kind::Fixed64 => Value::U64(u.arbitrary()?),
        Kind::Float => Value::F32(u.arbitrary()?),
        Kind::Double => Value::F64(u.arbitrary()?),
        Kind::Enum(e) => Value::EnumNumber(
            e.values()
                .map(|v| v.number())
                .nth(u.int_in_range(0..=3)?)
                .unwrap_or(u.arbitrary()?),
        ),
        Kind::Message(m) if depth < 6 => Value::Message(message(u, m, depth + 1)?),
        Kind::Message(m) => Value::Message(DynamicMessage::new(m.clone())),
    })
}
