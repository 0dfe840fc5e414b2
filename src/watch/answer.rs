//! A read-only view of a poll's typed answer (a `DynamicMessage`), by proto field name, that
//! means what the answer's canonical JSON would mean, so the readers can be written against the
//! API reference's field names without a JSON round trip:
//!
//! - a proto3 field that is unset (or holds its default), a missing map key or list element,
//!   and `null` are all [`Node::Absent`];
//! - `google.protobuf.Struct`, `Value` and `ListValue` read as the JSON object, value or array
//!   they carry (an add-on's `entries` is a `Struct`);
//! - [`Node::text`] gives a string as itself, an enum by its name, and anything else as its
//!   JSON; [`Node::to_json`] converts one value (`WaitFor` compares leaves as JSON).

use base64::Engine as _;
use prost_reflect::{DynamicMessage, Kind, MapKey, ReflectMessage, Value};
use std::borrow::Cow;
use std::collections::HashMap;

const STRUCT: &str = "google.protobuf.Struct";
const VALUE: &str = "google.protobuf.Value";
const LIST_VALUE: &str = "google.protobuf.ListValue";

/// One place in an answer.
#[derive(Clone)]
pub enum Node<'a> {
    /// Not in the answer: an unset field, a missing key or element, or `null`.
    Absent,
    Message(&'a DynamicMessage),
    /// A repeated field, with its elements' kind.
    List(&'a [Value], Kind),
    /// A map field, with its values' kind.
    Map(&'a HashMap<MapKey, Value>, Kind),
    Scalar(&'a Value, Kind),
}

impl<'a> Node<'a> {
    /// A message, with the well-known JSON types resolved to what they carry.
    pub fn of(message: &'a DynamicMessage) -> Node<'a> {
        match message.descriptor().full_name() {
            VALUE => match message.fields().next() {
                // The `kind` oneof: at most one field is set.
                Some((field, value)) if field.name() != "null_value" => {
                    Node::value(value, field.kind())
                }
                _ => Node::Absent,
            },
            LIST_VALUE => {
                let values = message.descriptor().get_field_by_name("values");
                match (values, message.get_field_by_name("values")) {
                    (Some(field), Some(Cow::Borrowed(Value::List(items)))) => {
                        Node::List(items, field.kind())
                    }
                    // `[]`: the list's default, not an absence.
                    (Some(field), Some(Cow::Owned(_))) => Node::List(&[], field.kind()),
                    _ => Node::Absent,
                }
            }
            _ => Node::Message(message),
        }
    }

    fn value(value: &'a Value, kind: Kind) -> Node<'a> {
        match value {
            Value::Message(m) => Node::of(m),
            Value::List(items) => Node::List(items, kind),
            Value::Map(map) => Node::Map(map, kind),
            other => Node::Scalar(other, kind),
        }
    }

    /// A message's field by its proto name, or a map's (or `Struct`'s) value by its key.
    pub fn get(&self, name: &str) -> Node<'a> {
        match self {
            Node::Message(m) if m.descriptor().full_name() == STRUCT => {
                match m.get_field_by_name("fields") {
                    Some(Cow::Borrowed(Value::Map(map))) => map
                        .get(&MapKey::String(name.to_string()))
                        .map_or(Node::Absent, |v| match v {
                            Value::Message(m) => Node::of(m),
                            _ => Node::Absent,
                        }),
                    _ => Node::Absent,
                }
            }
            Node::Message(m) => {
                let Some(field) = m.descriptor().get_field_by_name(name) else {
                    return Node::Absent;
                };
                if !m.has_field(&field) {
                    return Node::Absent;
                }
                let kind = match field.kind() {
                    Kind::Message(entry) if field.is_map() => entry.map_entry_value_field().kind(),
                    kind => kind,
                };
                match m.get_field(&field) {
                    Cow::Borrowed(v) => Node::value(v, kind),
                    // Only a default comes back owned, and a set field is not one.
                    Cow::Owned(_) => Node::Absent,
                }
            }
            Node::Map(map, kind) => map
                .iter()
                .find(|(k, _)| key_text(k) == name)
                .map_or(Node::Absent, |(_, v)| Node::value(v, kind.clone())),
            _ => Node::Absent,
        }
    }

    /// A list's elements (none for anything else).
    pub fn items(&self) -> Vec<Node<'a>> {
        match self {
            Node::List(items, kind) => items.iter().map(|v| Node::value(v, kind.clone())).collect(),
            _ => Vec::new(),
        }
    }

    /// A list's element by position.
    pub fn index(&self, n: usize) -> Node<'a> {
        match self {
            Node::List(items, kind) => items
                .get(n)
                .map_or(Node::Absent, |v| Node::value(v, kind.clone())),
            _ => Node::Absent,
        }
    }

    pub fn is_absent(&self) -> bool {
        matches!(self, Node::Absent)
    }

    /// Whether this is a message or a map (a JSON object).
    pub fn is_object(&self) -> bool {
        matches!(self, Node::Message(_) | Node::Map(..))
    }

    /// A string's value; `None` for anything that is not a string.
    pub fn as_str(&self) -> Option<&'a str> {
        match self {
            Node::Scalar(Value::String(s), _) => Some(s),
            _ => None,
        }
    }

    /// A string as itself, an enum by name, nothing as empty, anything else as its JSON.
    pub fn text(&self) -> String {
        match self {
            Node::Absent => String::new(),
            Node::Scalar(Value::String(s), _) => s.clone(),
            other => match other.to_json() {
                serde_json::Value::String(s) => s,
                json => json.to_string(),
            },
        }
    }

    /// A number, or a string holding one; 0 otherwise.
    pub fn int(&self) -> i64 {
        match self {
            Node::Scalar(v, _) => match v {
                Value::I32(n) => i64::from(*n),
                Value::I64(n) => *n,
                Value::U32(n) => i64::from(*n),
                Value::U64(n) => i64::try_from(*n).unwrap_or(i64::MAX),
                Value::F32(n) => *n as i64,
                Value::F64(n) => *n as i64,
                Value::String(s) => s.trim().parse().unwrap_or_default(),
                _ => 0,
            },
            _ => 0,
        }
    }

    /// The value as the proto3 JSON mapping writes it (proto field names, 64-bit integers as
    /// numbers); `null` when absent.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Node::Absent => J::Null,
            Node::Message(m) => m
                .serialize_with_options(
                    serde_json::value::Serializer,
                    &prost_reflect::SerializeOptions::new()
                        .use_proto_field_name(true)
                        .stringify_64_bit_integers(false),
                )
                .unwrap_or(J::Null),
            Node::List(..) => J::Array(self.items().iter().map(Node::to_json).collect()),
            Node::Map(map, kind) => J::Object(
                map.iter()
                    .map(|(k, v)| (key_text(k), Node::value(v, kind.clone()).to_json()))
                    .collect(),
            ),
            Node::Scalar(v, kind) => scalar_json(v, kind),
        }
    }
}

fn scalar_json(v: &Value, kind: &Kind) -> serde_json::Value {
    use serde_json::Value as J;
    let float = |f: f64| {
        if f.is_nan() {
            J::from("NaN")
        } else if f.is_infinite() {
            J::from(if f > 0.0 { "Infinity" } else { "-Infinity" })
        } else {
            J::from(f)
        }
    };
    match v {
        Value::Bool(b) => J::from(*b),
        Value::I32(n) => J::from(*n),
        Value::I64(n) => J::from(*n),
        Value::U32(n) => J::from(*n),
        Value::U64(n) => J::from(*n),
        Value::F32(f) => float(f64::from(*f)),
        Value::F64(f) => float(*f),
        Value::String(s) => J::from(s.as_str()),
        Value::Bytes(b) => J::from(base64::engine::general_purpose::STANDARD.encode(b)),
        Value::EnumNumber(n) => match kind {
            Kind::Enum(e) => e
                .get_value(*n)
                .map_or(J::from(*n), |value| J::from(value.name())),
            _ => J::from(*n),
        },
        // Messages, lists and maps are nodes of their own.
        Value::Message(_) | Value::List(_) | Value::Map(_) => J::Null,
    }
}

/// A map key as the JSON mapping writes it.
fn key_text(key: &MapKey) -> String {
    match key {
        MapKey::Bool(b) => b.to_string(),
        MapKey::I32(n) => n.to_string(),
        MapKey::I64(n) => n.to_string(),
        MapKey::U32(n) => n.to_string(),
        MapKey::U64(n) => n.to_string(),
        MapKey::String(s) => s.clone(),
    }
}

/// An ACK API operation's answer from its JSON (proto names; fields the message does not have
/// are ignored, as the gateway ignores them in the cloud's answers): the readers' fixtures.
#[cfg(test)]
pub(super) fn fixture(operation: &str, json: &serde_json::Value) -> DynamicMessage {
    let name = format!("alibabacloud.cs.v20151215.{operation}Response");
    let desc = crate::proto::message(&name).unwrap_or_else(|| panic!("no message {name}"));
    DynamicMessage::deserialize_with_options(
        desc,
        json,
        &prost_reflect::DeserializeOptions::new().deny_unknown_fields(false),
    )
    .unwrap_or_else(|e| panic!("{json} does not fit {name}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A message of the ACK API deserialised from its JSON (proto names).
    fn message(name: &str, json: serde_json::Value) -> DynamicMessage {
        let desc = crate::proto::message(name).expect("message");
        DynamicMessage::deserialize(desc, json).expect("fits")
    }

    #[test]
    fn the_view_means_what_the_json_would() {
        let m = message(
            "alibabacloud.cs.v20151215.DescribeClusterNodePoolDetailResponse",
            json!({
                "status": {"state": "active", "total_nodes": 3, "conditions": [{"type": "Ready"}]},
                "scaling_group": {"desired_size": 4}
            }),
        );
        let node = Node::of(&m);
        let status = node.get("status");
        assert_eq!(status.get("state").text(), "active");
        assert_eq!(status.get("total_nodes").int(), 3);
        // Unset and unknown fields are absent alike, as in the JSON.
        assert!(status.get("failed_nodes").is_absent());
        assert!(status.get("no_such_field").is_absent());
        assert_eq!(status.get("failed_nodes").to_json(), json!(null));
        assert_eq!(
            node.get("scaling_group").get("desired_size").to_json(),
            json!(4)
        );
        let conditions = status.get("conditions");
        assert_eq!(conditions.items().len(), 1);
        assert_eq!(conditions.index(0).get("type").text(), "Ready");
        assert!(conditions.index(1).is_absent());
        // A message's text is its JSON.
        assert_eq!(
            node.get("scaling_group").text(),
            json!({"desired_size": 4}).to_string()
        );
    }

    #[test]
    fn a_struct_reads_as_the_json_object_it_carries() {
        let m = message(
            "alibabacloud.cs.v20151215.DescribeClusterAddonsUpgradeStatusResponse",
            json!({"entries": {"metrics-server": {
                "tasks": {"status": "running", "error": "boom", "n": 2.0},
                "list": [1, "a", null, {"k": true}]
            }}}),
        );
        let entry = Node::of(&m).get("entries").get("metrics-server");
        assert!(entry.is_object());
        assert!(Node::of(&m).get("entries").get("other").is_absent());
        let tasks = entry.get("tasks");
        assert_eq!(tasks.get("status").as_str(), Some("running"));
        assert_eq!(tasks.get("error").text(), "boom");
        assert!(!tasks.get("error").is_object());
        assert_eq!(tasks.get("n").int(), 2);
        let list = entry.get("list");
        assert_eq!(list.items().len(), 4);
        assert!(list.index(2).is_absent());
        assert_eq!(list.index(3).get("k").to_json(), json!(true));
        assert_eq!(list.to_json(), json!([1.0, "a", null, {"k": true}]));
        let empty = message(
            "alibabacloud.cs.v20151215.DescribeClusterAddonsUpgradeStatusResponse",
            json!({"entries": {"a": {"list": []}}}),
        );
        let empty = Node::of(&empty).get("entries").get("a").get("list");
        assert_eq!(empty.to_json(), json!([]), "an empty array is not null");
        assert!(empty.items().is_empty());
        assert_eq!(
            tasks.to_json(),
            json!({"status": "running", "error": "boom", "n": 2.0})
        );
    }

    /// Every place of every operation's answer (the simulator's sample body, decoded as the
    /// gateway decodes the cloud's) reads through the view as the answer's JSON says: the same
    /// value, the same text for strings, the same number of elements, absent where it is null.
    #[test]
    fn every_answer_reads_through_the_view_as_its_json_says() {
        let table = crate::table::builtin();
        let mut places = 0;
        for op in &table.table.operations {
            let Some(body) = crate::simulator::sample::response(op, "request-id") else {
                continue;
            };
            let body = match body {
                serde_json::Value::String(text) => text.into_bytes(),
                other => other.to_string().into_bytes(),
            };
            let package = &table.table.services[&op.service].package;
            let name = format!("{package}.{}Response", op.name);
            let desc = crate::proto::message(&name).expect("every operation has its response");
            let answer = crate::translate::decode_response(op, &desc, &body)
                .unwrap_or_else(|e| panic!("{}: {e}", op.name));
            let node = Node::of(&answer);
            walk(&node, &node.to_json(), &op.name, &mut places);
        }
        assert!(places > 1000, "places read: {places}");
    }

    fn walk(node: &Node, json: &serde_json::Value, at: &str, places: &mut usize) {
        use serde_json::Value as J;
        *places += 1;
        assert_eq!(node.to_json(), *json, "{at}");
        match json {
            J::Object(fields) => {
                assert!(node.is_object(), "{at}");
                for (key, value) in fields {
                    walk(&node.get(key), value, &format!("{at}.{key}"), places);
                }
            }
            J::Array(items) => {
                assert_eq!(node.items().len(), items.len(), "{at}");
                for (i, value) in items.iter().enumerate() {
                    walk(&node.index(i), value, &format!("{at}[{i}]"), places);
                }
            }
            J::String(text) => assert_eq!(node.text(), *text, "{at}"),
            J::Null => assert!(node.is_absent(), "{at}"),
            J::Number(n) if n.is_i64() => assert_eq!(node.int(), n.as_i64().unwrap_or(0), "{at}"),
            _ => {}
        }
    }
}
