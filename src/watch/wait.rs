//! `WaitFor`: a wait on any read operation of the table. [`WaitSpec`] is the wait as a poll
//! key (everything that decides what is polled and when it is over, in one canonical form, so
//! identical waits share a poller); [`read`] turns an answer into a [`WatchStatus`]: the value
//! at the path, whether it means done or failed.
//!
//! The path is checked against the operation's response message when the wait is made, so a
//! field that does not exist is INVALID_ARGUMENT naming `path` before anything is polled.

use super::answer::Node;
use super::target::History;
use crate::error::GatewayError;
use crate::proto::gateway::{Phase, WaitForMatch, WaitForRequest, WatchStatus, WorkError};
use crate::table::OperationTable;
use crate::translate::InvalidField;
use prost_reflect::{DynamicMessage, Kind, MessageDescriptor};
use serde_json::Value;
use tonic::Status;

/// The longest path accepted, and the most values.
const MAX_PATH: usize = 512;
const MAX_VALUES: usize = 64;
/// An ErrorInfo reason is at most this long.
const MAX_REASON: usize = 63;

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathStep {
    /// A message's field (its proto name), or a map's key.
    Field(String),
    /// A list's element.
    Index(usize),
    /// Every element of a list.
    All,
}

/// A wait, as the poll key: identical waits (operation, request, path, match, values) share a
/// poller. The request and the values are canonical JSON (keys sorted).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WaitSpec {
    /// The table's service key.
    pub service: String,
    pub operation: String,
    pub request: String,
    /// The path as given (without a leading `$.`).
    pub path: String,
    steps: Vec<PathStep>,
    /// `[*]` matches only when every element is done.
    pub all: bool,
    /// Sorted, each once.
    done: Vec<String>,
    failed: Vec<String>,
    pub done_when_gone: bool,
}

fn invalid(field: &str, reason: impl Into<String>) -> Status {
    GatewayError::from(InvalidField::new(field, reason)).into_status()
}

impl WaitSpec {
    /// The wait a request asks for, checked against the table: a read, without secrets, whose
    /// request fits its message and whose answer has the path.
    pub fn new(table: &OperationTable, r: &WaitForRequest) -> Result<WaitSpec, Status> {
        let name = r.operation.trim();
        if name.is_empty() {
            return Err(invalid("operation", "name a read operation of the table"));
        }
        let wanted = match r.service.trim() {
            "" => super::poller::SERVICE,
            s => s,
        };
        let key = table
            .table
            .services
            .keys()
            .find(|k| k.as_str() == wanted || table.grpc_service_name(k).as_deref() == Some(wanted))
            .cloned()
            .ok_or_else(|| invalid("service", format!("no service `{wanted}`")))?;
        let op = table
            .operation(&key, name)
            .ok_or_else(|| invalid("operation", format!("no operation `{name}` in `{key}`")))?;
        if !op.policy.read {
            return Err(invalid(
                "operation",
                format!("`{name}` is not a read: WaitFor polls reads only"),
            ));
        }
        if op.policy.secrets {
            return Err(invalid(
                "operation",
                format!("answers of `{name}` carry secrets: WaitFor does not follow them"),
            ));
        }
        let info = table
            .service(&key)
            .ok_or_else(|| invalid("service", format!("no service `{key}`")))?;
        let message = |suffix: &str| {
            crate::proto::message(&format!("{}.{}{suffix}", info.package, op.name))
                .ok_or_else(|| Status::internal(format!("no message {}{suffix}", op.name)))
        };
        let request = r.request.as_ref().map_or_else(
            || Value::Object(Default::default()),
            crate::proto::struct_to_json,
        );
        DynamicMessage::deserialize(message("Request")?, request.clone())
            .map_err(|e| invalid("request", e.to_string()))?;
        let raw = r.path.trim();
        let raw = raw.strip_prefix("$.").unwrap_or(raw);
        let steps = parse(raw).map_err(|e| invalid("path", e))?;
        let steps = check(&message("Response")?, steps).map_err(|e| invalid("path", e))?;
        let values = |field: &str, list: &[prost_types::Value]| -> Result<Vec<String>, Status> {
            if list.len() > MAX_VALUES {
                return Err(invalid(field, format!("at most {MAX_VALUES} values")));
            }
            let mut out: Vec<String> = list
                .iter()
                .map(|v| crate::proto::value_to_json(v).to_string())
                .collect();
            out.sort();
            out.dedup();
            Ok(out)
        };
        let done = values("done_values", &r.done_values)?;
        let failed = values("failed_values", &r.failed_values)?;
        if done.is_empty() && !r.done_when_gone {
            return Err(invalid(
                "done_values",
                "name at least one value that means done (or set done_when_gone)",
            ));
        }
        if let Some(both) = done.iter().find(|d| failed.contains(d)) {
            return Err(invalid(
                "failed_values",
                format!("{both} is also a done value"),
            ));
        }
        Ok(WaitSpec {
            service: key,
            operation: op.name.clone(),
            request: request.to_string(),
            path: raw.to_string(),
            steps,
            all: r.r#match() == WaitForMatch::All,
            done,
            failed,
            done_when_gone: r.done_when_gone,
        })
    }

    /// The poll's request (proto field names).
    pub fn request(&self) -> Value {
        serde_json::from_str(&self.request).unwrap_or_default()
    }

    fn many(&self) -> bool {
        self.steps.contains(&PathStep::All)
    }
}

/// Parses `a.b[0].c[*]`: field names (any characters but `.`, `[` and `]`, so map keys such as
/// `csi-plugin` are fields too), each followed by any number of `[n]` or `[*]`.
fn parse(path: &str) -> Result<Vec<PathStep>, String> {
    if path.is_empty() {
        return Err(
            "name the value to wait on, e.g. `state` or `nodepools[*].status.state`".into(),
        );
    }
    if path.len() > MAX_PATH {
        return Err(format!("at most {MAX_PATH} characters"));
    }
    let mut steps = Vec::new();
    for segment in path.split('.') {
        let (name, mut rest) = match segment.find('[') {
            Some(i) => (&segment[..i], &segment[i..]),
            None => (segment, ""),
        };
        if name.is_empty() || name.contains(']') {
            return Err(format!(
                "`{segment}` in `{path}`: each part starts with a field name"
            ));
        }
        steps.push(PathStep::Field(name.to_string()));
        // Bounded: every pass consumes at least `[]`.
        while !rest.is_empty() {
            let close = rest
                .find(']')
                .filter(|_| rest.starts_with('['))
                .ok_or_else(|| format!("`{segment}` in `{path}`: `[` without its `]`"))?;
            let inside = &rest[1..close];
            steps.push(match inside {
                "*" => PathStep::All,
                n => PathStep::Index(
                    n.parse()
                        .map_err(|_| format!("`[{n}]` in `{path}`: an index is a number or `*`"))?,
                ),
            });
            rest = &rest[close + 1..];
        }
    }
    Ok(steps)
}

/// Where a path has got to in the response message.
enum At {
    Message(MessageDescriptor),
    List(Kind),
    Map(Kind),
    Scalar(String),
    /// Inside `google.protobuf.Struct`/`Value`/`ListValue`: anything goes.
    Free,
}

fn single(kind: Kind, name: &str) -> At {
    match kind {
        Kind::Message(m)
            if matches!(
                m.full_name(),
                "google.protobuf.Struct" | "google.protobuf.Value" | "google.protobuf.ListValue"
            ) =>
        {
            At::Free
        }
        Kind::Message(m) => At::Message(m),
        _ => At::Scalar(name.to_string()),
    }
}

/// Checks the path against the response message; fields named by their JSON name become
/// their proto name (the answer's JSON uses proto names).
fn check(response: &MessageDescriptor, steps: Vec<PathStep>) -> Result<Vec<PathStep>, String> {
    let mut at = At::Message(response.clone());
    let mut out = Vec::with_capacity(steps.len());
    for step in steps {
        let (next, step) = match (at, step) {
            (At::Free, step) => (At::Free, step),
            (At::Message(m), PathStep::Field(name)) => {
                let f = m
                    .get_field_by_name(&name)
                    .or_else(|| m.get_field_by_json_name(&name))
                    .ok_or_else(|| {
                        let fields: Vec<String> =
                            m.fields().map(|f| f.name().to_string()).collect();
                        format!(
                            "{} has no field `{name}` (it has {})",
                            m.name(),
                            fields.join(", ")
                        )
                    })?;
                let next = match f.kind() {
                    Kind::Message(entry) if f.is_map() => {
                        At::Map(entry.map_entry_value_field().kind())
                    }
                    kind if f.is_list() => At::List(kind),
                    kind => single(kind, f.name()),
                };
                (next, PathStep::Field(f.name().to_string()))
            }
            (At::Map(kind), PathStep::Field(key)) => (single(kind, &key), PathStep::Field(key)),
            (At::List(kind), step @ (PathStep::Index(_) | PathStep::All)) => {
                (single(kind, "an element"), step)
            }
            (At::List(_), PathStep::Field(name)) => {
                return Err(format!(
                    "`{name}` follows a list: take an element first (`[n]` or `[*]`)"
                ))
            }
            (At::Map(_), _) => return Err("a map is indexed by its key as a field".into()),
            (At::Scalar(name), _) => return Err(format!("`{name}` is a value, not a message")),
            (At::Message(m), _) => return Err(format!("{} is a message, not a list", m.name())),
        };
        at = next;
        out.push(step);
    }
    Ok(out)
}

/// The values at the path (as JSON, to compare with the wait's values): one, or every
/// element a `[*]` reaches.
fn select(steps: &[PathStep], answer: &Node) -> Vec<Value> {
    let mut current = vec![answer.clone()];
    for step in steps {
        let mut next = Vec::new();
        for v in current {
            match step {
                PathStep::Field(name) => next.push(v.get(name)),
                PathStep::Index(n) => next.push(v.index(*n)),
                PathStep::All => next.extend(v.items()),
            }
        }
        current = next;
    }
    current.iter().map(Node::to_json).collect()
}

/// JSON equality with numbers compared as numbers (`1` is `1.0`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// A value as people read it: a string as itself, anything else as JSON.
fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub(super) fn read(
    spec: &WaitSpec,
    answer: &Node,
    _history: &mut History,
    status: &mut WatchStatus,
) -> Option<Status> {
    let values = select(&spec.steps, answer);
    let parse = |list: &[String]| -> Vec<Value> {
        list.iter()
            .filter_map(|v| serde_json::from_str(v).ok())
            .collect()
    };
    let (done, failed) = (parse(&spec.done), parse(&spec.failed));
    let is = |set: &[Value], v: &Value| set.iter().any(|d| same(d, v));
    let observed = if spec.many() {
        Value::Array(values.clone())
    } else {
        values.first().cloned().unwrap_or(Value::Null)
    };
    status.state = shown(&observed);
    status.stage = status.state.clone();
    status
        .attributes
        .insert("value".into(), observed.to_string());
    status.attributes.insert("path".into(), spec.path.clone());
    let finished = values.iter().filter(|v| is(&done, v)).count();
    let failure = values.iter().find(|v| is(&failed, v));
    let is_done = if spec.all {
        !values.is_empty() && finished == values.len()
    } else {
        finished > 0
    };
    let phase = if failure.is_some() {
        Phase::Failed
    } else if is_done {
        Phase::Succeeded
    } else {
        Phase::Running
    };
    status.phase = phase as i32;
    status.progress_percent = match phase {
        Phase::Succeeded => Some(100),
        _ if spec.many() && spec.all && !values.is_empty() => {
            Some((finished * 100 / values.len()) as u32)
        }
        _ => None,
    };
    status.message = format!("{} is {}", spec.path, status.state);
    if let Some(value) = failure {
        let word = shown(value);
        let error = WorkError {
            code: word.chars().take(MAX_REASON).collect(),
            message: format!(
                "{} {} is {word}, a value that means failure",
                spec.operation, spec.path
            ),
        };
        status.message = error.message.clone();
        status.error = Some(error);
    }
    None
}

/// The status of a wait whose read answered NOT_FOUND and `done_when_gone` is set.
pub(super) fn gone(spec: &WaitSpec, status: &mut WatchStatus) {
    status.state = "gone".into();
    status.stage = "gone".into();
    status.phase = Phase::Succeeded as i32;
    status.progress_percent = Some(100);
    status.attributes.insert("path".into(), spec.path.clone());
    status.message = format!("{} answers NOT_FOUND", spec.operation);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{json_to_struct, json_to_value};
    use serde_json::json;

    fn table() -> std::sync::Arc<OperationTable> {
        crate::table::builtin()
    }

    fn request(op: &str, req: Value, path: &str, done: &[Value]) -> WaitForRequest {
        WaitForRequest {
            operation: op.into(),
            request: Some(json_to_struct(&req)),
            path: path.into(),
            done_values: done.iter().map(json_to_value).collect(),
            ..Default::default()
        }
    }

    fn refused(r: WaitForRequest) -> String {
        let status = WaitSpec::new(&table(), &r).expect_err("refused");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        status.message().to_string()
    }

    #[test]
    fn paths_are_parsed_and_checked_against_the_answer() {
        assert_eq!(
            parse("nodepools[*].status.state").expect("parses"),
            [
                PathStep::Field("nodepools".into()),
                PathStep::All,
                PathStep::Field("status".into()),
                PathStep::Field("state".into()),
            ]
        );
        assert_eq!(
            parse("a[0][12]").expect("parses"),
            [
                PathStep::Field("a".into()),
                PathStep::Index(0),
                PathStep::Index(12)
            ]
        );
        for bad in ["", "a..b", "a[", "a[x]", "[0]", "a]b", ".a"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let ok = WaitSpec::new(
            &table(),
            &request(
                "DescribeClusterNodePools",
                json!({"cluster_id": "c"}),
                "$.nodepools[*].status.state",
                &[json!("active")],
            ),
        )
        .expect("a fitting path");
        assert_eq!(ok.path, "nodepools[*].status.state");
        for (path, says) in [
            ("nodepools.status", "take an element first"),
            ("nodepools[*].status.stat", "has no field `stat`"),
            ("nodepools[0].status.state.x", "is a value"),
            ("nodepools[0][1]", "not a list"),
        ] {
            let message = refused(request(
                "DescribeClusterNodePools",
                json!({"cluster_id": "c"}),
                path,
                &[json!("active")],
            ));
            assert!(message.starts_with("path: "), "{message}");
            assert!(message.contains(says), "{path}: {message}");
        }
    }

    #[test]
    fn only_reads_without_secrets_with_fitting_requests_are_waited_on() {
        let m = refused(request("NoSuchOperation", json!({}), "state", &[json!(1)]));
        assert!(m.starts_with("operation: "), "{m}");
        let m = refused(request("DeleteCluster", json!({}), "task_id", &[json!(1)]));
        assert!(
            m.starts_with("operation: ") && m.contains("not a read"),
            "{m}"
        );
        let m = refused(request(
            "DescribeClusterUserKubeconfig",
            json!({}),
            "config",
            &[json!(1)],
        ));
        assert!(m.contains("secrets"), "{m}");
        let m = refused(request(
            "DescribeClusterDetail",
            json!({"no_such_field": 1}),
            "state",
            &[json!("running")],
        ));
        assert!(m.starts_with("request: "), "{m}");
        let m = refused(request(
            "DescribeClusterDetail",
            json!({"cluster_id": "c"}),
            "state",
            &[],
        ));
        assert!(m.starts_with("done_values: "), "{m}");
        let mut both = request(
            "DescribeClusterDetail",
            json!({"cluster_id": "c"}),
            "state",
            &[json!("running")],
        );
        both.failed_values = both.done_values.clone();
        assert!(refused(both).starts_with("failed_values: "));
        let mut unknown = request("DescribeClusterDetail", json!({}), "state", &[json!(1)]);
        unknown.service = "nope".into();
        assert!(refused(unknown).starts_with("service: "));
    }

    #[test]
    fn identical_waits_are_one_key_whatever_the_order_of_keys_and_values() {
        let a = request(
            "DescribeClusterNodePools",
            json!({"cluster_id": "c", "nodepool_name": "n"}),
            "nodepools[*].status.state",
            &[json!("active"), json!("removing")],
        );
        let mut b = request(
            "DescribeClusterNodePools",
            json!({"nodepool_name": "n", "cluster_id": "c"}),
            "$.nodepools[*].status.state",
            &[json!("removing"), json!("active"), json!("active")],
        );
        let spec = |r: &WaitForRequest| WaitSpec::new(&table(), r).expect("valid");
        assert_eq!(spec(&a), spec(&b));
        b.request = Some(json_to_struct(&json!({"cluster_id": "other"})));
        assert_ne!(spec(&a), spec(&b), "the whole request is part of the key");
    }

    #[test]
    fn values_are_matched_one_any_or_all() {
        let mut r = request(
            "DescribeClusterNodePools",
            json!({"cluster_id": "c"}),
            "nodepools[*].status.state",
            &[json!("active")],
        );
        r.failed_values = vec![json_to_value(&json!("failed"))];
        let answer = |states: &[&str]| json!({"nodepools": states.iter().map(|s| json!({"status": {"state": s}})).collect::<Vec<_>>()});
        let phase_of = |r: &WaitForRequest, a: &Value| {
            let spec = WaitSpec::new(&table(), r).expect("valid");
            let mut status = WatchStatus::default();
            let answer = super::super::answer::fixture(&spec.operation, a);
            read(
                &spec,
                &Node::of(&answer),
                &mut History::default(),
                &mut status,
            );
            (Phase::try_from(status.phase).expect("phase"), status)
        };
        let mixed = answer(&["active", "scaling"]);
        assert_eq!(phase_of(&r, &mixed).0, Phase::Succeeded, "any");
        r.r#match = WaitForMatch::All as i32;
        let (phase, status) = phase_of(&r, &mixed);
        assert_eq!(phase, Phase::Running, "all");
        assert_eq!(status.progress_percent, Some(50));
        assert_eq!(status.state, r#"["active","scaling"]"#);
        assert_eq!(
            phase_of(&r, &answer(&[])).0,
            Phase::Running,
            "none is not all"
        );
        assert_eq!(
            phase_of(&r, &answer(&["active", "active"])).0,
            Phase::Succeeded
        );
        let (phase, status) = phase_of(&r, &answer(&["active", "failed"]));
        assert_eq!(phase, Phase::Failed);
        assert_eq!(status.error.expect("error").code, "failed");
        // One value, numbers compared as numbers, an absent field as null.
        let one = request(
            "DescribeClusterDetail",
            json!({"cluster_id": "c"}),
            "size",
            &[json!(3), json!(null)],
        );
        assert_eq!(phase_of(&one, &json!({"size": 3.0})).0, Phase::Succeeded);
        assert_eq!(phase_of(&one, &json!({})).0, Phase::Succeeded);
        assert_eq!(phase_of(&one, &json!({"size": 2})).0, Phase::Running);
    }
}
