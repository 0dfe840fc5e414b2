//! Every operation of the table, end to end: a fully populated request goes through the gateway
//! to the simulator, which must receive exactly the method, path, query and body the table
//! prescribes (computed here independently of the gateway's mapping code), and the answer must
//! come back with no field lost.

use crate::support::*;
use ack_gateway::proto;
use ack_gateway::signer::SignatureVersion;
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
pub(crate) fn populate(desc: &MessageDescriptor, depth: usize, salt: &mut u32) -> Value {
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
        Kind::Bool => json!(salt.is_multiple_of(2)),
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

/// The resources the stateful operations act on, created before the run.
struct Fixture {
    cluster_id: String,
    task_id: String,
    nodepool_id: String,
    template_id: String,
}

/// A default add-on every simulated cluster has; upgraded and queried by the run.
const ADDON: &str = "coredns";
/// Installed by the fixture so that the run can uninstall them.
const REMOVABLE: [&str; 2] = ["ack-node-problem-detector", "arms-prometheus"];

async fn fixture(h: &Harness) -> Fixture {
    let (created, _) = h
        .cs(
            "CreateCluster",
            json!({"name": "every-op", "region_id": "cn-hangzhou"}),
        )
        .await
        .expect("created");
    let cluster_id = created["cluster_id"].as_str().expect("id").to_string();
    let task_id = created["task_id"].as_str().expect("task").to_string();
    assert_eq!(wait_task(h, &task_id).await, "success");
    let (pool, _) = h
        .cs(
            "CreateClusterNodePool",
            json!({"cluster_id": cluster_id, "nodepool_info": {"name": "every-op-pool"},
                   "scaling_group": {"desired_size": 1, "instance_types": ["ecs.g7.xlarge"],
                                     "instance_charge_type": "PostPaid"}}),
        )
        .await
        .expect("node pool created");
    assert_eq!(
        wait_task(h, pool["task_id"].as_str().expect("task")).await,
        "success"
    );
    let (template, _) = h
        .cs(
            "CreateTemplate",
            json!({"name": "every-op", "template": "apiVersion: v1\nkind: Namespace"}),
        )
        .await
        .expect("template created");
    let (installed, _) = h
        .cs(
            "InstallClusterAddons",
            json!({"cluster_id": cluster_id,
                   "body": REMOVABLE.iter().map(|n| json!({"name": n, "version": "v1.0.0"})).collect::<Vec<_>>()}),
        )
        .await
        .expect("add-ons installed");
    assert_eq!(
        wait_task(h, installed["task_id"].as_str().expect("task")).await,
        "success"
    );
    Fixture {
        cluster_id,
        task_id,
        nodepool_id: pool["nodepool_id"].as_str().expect("pool id").to_string(),
        template_id: template["template_id"]
            .as_str()
            .expect("template id")
            .to_string(),
    }
}

/// Points a populated request at the fixture's resources, as a caller would: ids in the path,
/// and the names the stateful operations look up in their bodies and queries.
fn fit_to_fixture(op: &Operation, request: &mut Value, f: &Fixture) {
    if op.style != Style::Roa {
        return;
    }
    for (key, value) in [
        ("cluster_id", f.cluster_id.as_str()),
        ("task_id", f.task_id.as_str()),
        ("nodepool_id", f.nodepool_id.as_str()),
        ("template_id", f.template_id.as_str()),
        ("component_id", ADDON),
        ("instance_name", ADDON),
    ] {
        if request.get(key).is_some() {
            request[key] = json!(value);
        }
    }
    match op.name.as_str() {
        "UnInstallClusterAddons" => {
            request["addons"] = json!(REMOVABLE
                .iter()
                .map(|n| json!({"name": n, "cleanup_cloud_resources": true}))
                .collect::<Vec<_>>());
        }
        "UpgradeClusterAddons" => {
            for (item, name) in request["body"]
                .as_array_mut()
                .expect("body list")
                .iter_mut()
                .zip([ADDON, "csi-plugin"])
            {
                item["component_name"] = json!(name);
            }
        }
        "DescribeClusterAddonsUpgradeStatus" => {
            request["component_ids"] = json!([ADDON, "csi-plugin"]);
        }
        "TagResources" | "UntagResources" | "ListTagResources" => {
            request["resource_type"] = json!("CLUSTER");
            request["resource_ids"] = json!([f.cluster_id]);
            request["region_id"] = json!("cn-hangzhou");
        }
        _ => {}
    }
}

/// The operations whose tasks the simulator runs (the others answer with a sample task id).
const STARTS_TASKS: &[&str] = &[
    "AttachInstances",
    "CreateClusterNodePool",
    "ModifyClusterNodePool",
    "ScaleClusterNodePool",
    "ScaleOutCluster",
    "InstallClusterAddons",
    "UpgradeClusterAddons",
];

/// Puts the cluster's upgrade in the state the operation acts on.
async fn prepare(h: &Harness, op: &Operation, f: &Fixture) {
    let upgrade = || async {
        h.cs(
            "UpgradeCluster",
            json!({"cluster_id": f.cluster_id, "next_version": "1.32.1-aliyun.1"}),
        )
        .await
        .expect("upgrade started");
    };
    match op.name.as_str() {
        "PauseClusterUpgrade" | "CancelClusterUpgrade" => upgrade().await,
        "ResumeUpgradeCluster" => {
            upgrade().await;
            h.cs("PauseClusterUpgrade", json!({"cluster_id": f.cluster_id}))
                .await
                .expect("paused");
        }
        _ => {}
    }
}

/// Leaves the cluster ready for the next operation: started work finished, no upgrade going on.
async fn settle(h: &Harness, op: &Operation, response: &Value, f: &Fixture) {
    let (status, _) = h
        .cs("GetUpgradeStatus", json!({"cluster_id": f.cluster_id}))
        .await
        .unwrap_or_else(|e| panic!("after {}: upgrade status: {e:?}", op.name));
    if matches!(status["status"].as_str(), Some("running" | "pause")) {
        h.cs("CancelClusterUpgrade", json!({"cluster_id": f.cluster_id}))
            .await
            .unwrap_or_else(|e| panic!("after {}: cancel: {e:?}", op.name));
    } else if let Some(task) = response.get("task_id").and_then(Value::as_str) {
        if STARTS_TASKS.contains(&op.name.as_str()) {
            let state = wait_task(h, task).await;
            assert_eq!(state, "success", "{}: task {task}", op.name);
        }
    }
}

#[tokio::test]
async fn every_operation_maps_exactly_and_loses_no_response_field() {
    every_operation(Harness::embedded_unfollowed().await, SignatureVersion::V1).await;
}

#[tokio::test]
async fn every_operation_maps_exactly_signed_v3() {
    let h = Harness::with_config(
        &format!("[simulator]\nmode = \"always\"\ntask_duration = \"300ms\"\n{UNFOLLOWED}"),
        env(&[("ACK_GATEWAY_SIGNATURE", "v3")]),
    )
    .await;
    every_operation(h, SignatureVersion::V3).await;
}

async fn every_operation(h: Harness, signature: SignatureVersion) {
    let table = table::builtin();
    // Upgrades run long enough to be paused, resumed and canceled; the run cancels them.
    h.sim()
        .set_task_duration("UpgradeCluster", std::time::Duration::from_secs(60));
    let f = fixture(&h).await;
    // Deletions go last, the cluster's very last, so what they delete exists for the others.
    let mut ops: Vec<&Operation> = table.operations().collect();
    ops.sort_by_key(|o| match o.name.as_str() {
        "DeleteCluster" => 2,
        "DeleteClusterNodepool" | "DeleteTemplate" | "UnInstallClusterAddons" => 1,
        _ => 0,
    });
    let mut checked = 0;
    for op in ops {
        let info = table.service(&op.service).expect("service");
        let service = format!("{}.{}", info.package, info.service);
        let desc =
            proto::message(&format!("{}.{}Request", info.package, op.name)).expect("request");
        let mut salt = 0;
        let mut request = populate(&desc, 0, &mut salt);
        fit_to_fixture(op, &mut request, &f);
        if op.name == "AssumeRole" {
            request["duration_seconds"] = json!(900); // STS accepts 900 to 43200
        }
        prepare(&h, op, &f).await;

        h.sim().clear_requests();
        let answer = h.call(&service, &op.name, request.clone(), &[], None).await;
        let (response, _) = answer.unwrap_or_else(|e| panic!("{}: {e:?}", op.name));
        let seen = h.sim().requests();
        assert_eq!(seen.len(), 1, "{}: one upstream request", op.name);
        let got = &seen[0];
        assert_eq!(got.operation, op.name);
        if op.style == Style::Roa {
            // The signature version shows in the headers sent: V3 hashes the payload and
            // sends no Date; V1 sends Date and names its method.
            let v3 = got.headers.contains_key("x-acs-content-sha256");
            assert_eq!(
                v3,
                signature == SignatureVersion::V3,
                "{}: signed {signature:?}",
                op.name
            );
            assert_eq!(got.headers.contains_key("date"), !v3, "{}", op.name);
            assert_eq!(
                got.headers.contains_key("x-acs-signature-method"),
                !v3,
                "{}",
                op.name
            );
        }

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
        if op.name != "DeleteCluster" {
            settle(&h, op, &response, &f).await;
        }
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
    let field = |ty,
                 fields: Option<Vec<Field>>,
                 items: Option<Box<Field>>,
                 values: Option<Box<Field>>| Field {
        fields,
        ..Field::synthetic(None, ty, items.map(|b| *b), values.map(|b| *b))
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
