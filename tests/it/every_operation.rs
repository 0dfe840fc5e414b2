//! Every operation of the table, end to end: a fully populated request goes through the gateway
//! to the simulator, which must receive exactly the method, path, query and body the table
//! prescribes (computed here independently of the gateway's mapping code), and the answer must
//! come back with no field lost.

use crate::support::*;
use ack_gateway::proto;
use ack_gateway::table::{
    self, BodyKind, Field, FieldType, Location, Operation, ResponseKind, Style,
};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use prost_reflect::{Kind, MessageDescriptor};
use serde_json::{json, Map, Value};

const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A value for every field of the message (proto field names), recursively.
fn populate(desc: &MessageDescriptor, depth: usize, salt: &mut u32) -> Value {
    let mut obj = Map::new();
    for f in desc.fields() {
        let v = if f.is_map() {
            let Kind::Message(entry) = f.kind() else {
                unreachable!("map entries are messages")
            };
            json!({ "k1": single(&entry.map_entry_value_field().kind(), f.name(), depth, salt) })
        } else if f.is_list() {
            json!([
                single(&f.kind(), f.name(), depth, salt),
                single(&f.kind(), f.name(), depth, salt)
            ])
        } else {
            single(&f.kind(), f.name(), depth, salt)
        };
        if !v.is_null() {
            obj.insert(f.name().to_string(), v);
        }
    }
    Value::Object(obj)
}

fn single(kind: &Kind, name: &str, depth: usize, salt: &mut u32) -> Value {
    *salt += 1;
    match kind {
        Kind::String => json!(format!("{name}-{salt}")),
        Kind::Bool => json!(*salt % 2 == 0),
        Kind::Int32 | Kind::Int64 | Kind::Uint32 | Kind::Uint64 | Kind::Sint32 | Kind::Sint64 => {
            json!(*salt as i64)
        }
        Kind::Float | Kind::Double => json!(0.5),
        Kind::Message(m) if m.full_name() == "google.protobuf.Struct" => {
            json!({"free": "form", "n": 1})
        }
        Kind::Message(m) if m.full_name() == "google.protobuf.Value" => json!("any-value"),
        Kind::Message(m) if m.full_name() == "google.protobuf.ListValue" => json!(["a", 2]),
        Kind::Message(m) if depth < 5 => populate(m, depth + 1, salt),
        _ => Value::Null,
    }
}

/// The request in wire form: proto names → wire names, using the table's nested definitions.
fn to_wire(field: &Field, v: &Value) -> Value {
    match (field.ty, v) {
        (FieldType::Object, Value::Object(m)) => match &field.fields {
            Some(fields) => {
                let mut out = Map::new();
                for f in fields {
                    if let Some(x) = m.get(f.proto_name()) {
                        out.insert(f.json_key().to_string(), to_wire(f, x));
                    }
                }
                Value::Object(out)
            }
            None => v.clone(),
        },
        (FieldType::Array, Value::Array(items)) => match &field.items {
            Some(item) => Value::Array(items.iter().map(|x| to_wire(item, x)).collect()),
            None => v.clone(),
        },
        (FieldType::Map, Value::Object(m)) => match &field.values {
            Some(val) if val.ty != FieldType::Any => Value::Object(
                m.iter()
                    .map(|(k, x)| (k.clone(), to_wire(val, x)))
                    .collect(),
            ),
            _ => v.clone(),
        },
        _ => v.clone(),
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

struct Expected {
    method: String,
    path: String,
    query: Vec<(String, String)>,
    body: Option<Value>,
}

fn expected(op: &Operation, request: &Value) -> Expected {
    let mut path = op.path.clone();
    let mut query = Vec::new();
    let mut body = Map::new();
    let mut whole = None;
    for f in &op.fields {
        let Some(v) = request.get(f.proto_name()) else {
            continue;
        };
        let wire = to_wire(f, v);
        match f.location {
            Some(Location::Path) => {
                path = path.replace(
                    &format!("{{{}}}", f.proto_name()),
                    &utf8_percent_encode(&scalar(v), UNRESERVED).to_string(),
                );
                if let Some(b) = &f.body_wire_name {
                    body.insert(b.clone(), wire);
                }
            }
            Some(Location::Query) => match (&wire, f.serialization.as_deref()) {
                (Value::Array(items), Some("simple")) => query.push((
                    f.json_key().to_string(),
                    items.iter().map(scalar).collect::<Vec<_>>().join(","),
                )),
                (Value::Array(items), Some(s)) if s.starts_with("repeat_list:") => {
                    for (i, x) in items.iter().enumerate() {
                        query.push((
                            format!("{}.{}.{}", f.json_key(), i + 1, &s[12..]),
                            scalar(x),
                        ));
                    }
                }
                (Value::Array(_) | Value::Object(_), _) => {
                    query.push((f.json_key().to_string(), wire.to_string()))
                }
                _ => query.push((f.json_key().to_string(), scalar(&wire))),
            },
            Some(Location::Body) if f.whole_body => whole = Some(wire),
            Some(Location::Body) => {
                body.insert(f.json_key().to_string(), wire);
            }
            None => panic!("{}: field without location", op.name),
        }
    }
    query.sort();
    Expected {
        method: op.method.clone(),
        path,
        query,
        body: match op.body {
            BodyKind::None => None,
            BodyKind::Object => Some(Value::Object(body)),
            BodyKind::Array => Some(whole.unwrap_or_else(|| json!([]))),
        },
    }
}

/// RPC-style common parameters, which the per-operation comparison leaves out.
const RPC_COMMON: &[&str] = &[
    "Action",
    "Version",
    "Format",
    "AccessKeyId",
    "SignatureMethod",
    "SignatureVersion",
    "SignatureNonce",
    "Timestamp",
    "RegionId",
    "SecurityToken",
    "Signature",
];

/// Numbers compare by value (`1` and `1.0` are the same JSON number), and an empty list is the
/// same as an absent one (protobuf cannot tell them apart).
fn normalize(v: &Value) -> Value {
    match v {
        Value::Number(n) => json!(n.as_f64()),
        Value::Array(a) => Value::Array(a.iter().map(normalize).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, x)| !matches!(x, Value::Array(a) if a.is_empty()))
                .map(|(k, x)| (k.clone(), normalize(x)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[tokio::test]
async fn every_operation_maps_exactly_and_loses_no_response_field() {
    let h = Harness::embedded().await;
    let table = table::builtin();
    // The stateful operations act on a real cluster and task.
    let (created, _) = h
        .cs(
            "CreateCluster",
            json!({"name": "every-op", "region_id": "cn-hangzhou"}),
        )
        .await
        .expect("created");
    let cluster_id = created["cluster_id"].as_str().expect("id").to_string();
    let task_id = created["task_id"].as_str().expect("task").to_string();
    assert_eq!(wait_task(&h, &task_id).await, "success");
    // DeleteCluster goes last, so the cluster exists for every other operation.
    let mut ops: Vec<&Operation> = table.operations().collect();
    ops.sort_by_key(|o| o.name == "DeleteCluster");
    let mut checked = 0;
    for op in ops {
        let info = table.service(&op.service).expect("service");
        let service = format!("{}.{}", info.package, info.service);
        let desc =
            proto::message(&format!("{}.{}Request", info.package, op.name)).expect("request");
        let mut salt = 0;
        let mut request = populate(&desc, 0, &mut salt);
        if op.style == Style::Roa {
            for (key, value) in [("cluster_id", &cluster_id), ("task_id", &task_id)] {
                if request.get(key).is_some() {
                    request[key] = json!(value);
                }
            }
        }
        if op.name == "AssumeRole" {
            request["duration_seconds"] = json!(900); // STS accepts 900 to 43200
        }

        h.sim().clear_requests();
        let answer = h.call(&service, &op.name, request.clone(), &[], None).await;
        let (response, _) = answer.unwrap_or_else(|e| panic!("{}: {e:?}", op.name));
        let seen = h.sim().requests();
        assert_eq!(seen.len(), 1, "{}: one upstream request", op.name);
        let got = &seen[0];
        assert_eq!(got.operation, op.name);

        let want = expected(op, &request);
        assert_eq!(got.method, want.method, "{}: method", op.name);
        if op.style == Style::Roa {
            assert_eq!(got.raw_path, want.path, "{}: path", op.name);
        } else {
            assert_eq!(got.raw_path, "/", "{}: path", op.name);
        }
        let mut query: Vec<(String, String)> = got
            .query
            .iter()
            .filter(|(k, _)| op.style == Style::Roa || !RPC_COMMON.contains(&k.as_str()))
            .cloned()
            .collect();
        query.sort();
        assert_eq!(query, want.query, "{}: query", op.name);
        let body: Option<Value> = if got.body.is_empty() {
            None
        } else {
            Some(
                serde_json::from_str(&got.body)
                    .unwrap_or_else(|e| panic!("{}: body is JSON: {e}", op.name)),
            )
        };
        assert_eq!(
            body.as_ref().map(normalize),
            want.body.as_ref().map(normalize),
            "{}: body",
            op.name
        );

        // No field lost: what the simulator answered comes back field for field.
        if got.response.starts_with("(withheld") {
            checked += 1;
            continue;
        }
        let wire_response = response_in_wire_form(op, &response);
        let upstream: Value = match op.response.kind {
            ResponseKind::String => json!(got.response),
            ResponseKind::None => json!(null),
            _ => serde_json::from_str(&got.response).expect("simulator answers JSON"),
        };
        // Keys the schema does not know are tolerated and dropped; every known one must survive.
        let upstream = known_only(op, &upstream);
        assert_eq!(
            normalize(&wire_response),
            normalize(&upstream),
            "{}: response fields",
            op.name
        );
        checked += 1;
    }
    assert_eq!(checked, 150, "every operation was checked");
}

/// The upstream answer restricted to the keys the response schema declares.
fn known_only(op: &Operation, upstream: &Value) -> Value {
    fn keep(fields: &[Field], v: &Value) -> Value {
        let Value::Object(m) = v else {
            return v.clone();
        };
        let mut out = Map::new();
        for f in fields {
            if let Some(x) = m.get(f.json_key()) {
                out.insert(f.json_key().to_string(), keep_field(f, x));
            }
        }
        Value::Object(out)
    }
    fn keep_field(f: &Field, v: &Value) -> Value {
        match (f.ty, v) {
            (FieldType::Object, _) => match &f.fields {
                Some(fields) => keep(fields, v),
                None => v.clone(),
            },
            (FieldType::Array, Value::Array(items)) => match &f.items {
                Some(i) => Value::Array(items.iter().map(|x| keep_field(i, x)).collect()),
                None => v.clone(),
            },
            (FieldType::Map, Value::Object(m)) => match &f.values {
                Some(val) => Value::Object(
                    m.iter()
                        .map(|(k, x)| (k.clone(), keep_field(val, x)))
                        .collect(),
                ),
                None => v.clone(),
            },
            _ => v.clone(),
        }
    }
    match op.response.kind {
        ResponseKind::Object => keep(op.response.fields.as_deref().unwrap_or_default(), upstream),
        _ => upstream.clone(),
    }
}

/// The gateway's response (proto names) back in the upstream's wire form.
fn response_in_wire_form(op: &Operation, response: &Value) -> Value {
    let field = |ty, fields: Option<Vec<Field>>, items, values| Field {
        name: None,
        wire_name: None,
        location: None,
        ty,
        format: None,
        required: false,
        sdk_required: false,
        sensitive: false,
        whole_body: false,
        seed_only: false,
        body_wire_name: None,
        serialization: None,
        model: None,
        fields,
        items,
        values,
        description: None,
    };
    let r = &op.response;
    match r.kind {
        ResponseKind::Object => to_wire(
            &field(FieldType::Object, r.fields.clone(), None, None),
            response,
        ),
        ResponseKind::Array => to_wire(
            &field(FieldType::Array, None, r.items.clone(), None),
            response.get("items").unwrap_or(&json!([])),
        ),
        ResponseKind::Map => to_wire(
            &field(FieldType::Map, None, None, r.values.clone()),
            response.get("entries").unwrap_or(&json!({})),
        ),
        ResponseKind::String => response.get("body").cloned().unwrap_or(json!("")),
        ResponseKind::None => json!(null),
    }
}
