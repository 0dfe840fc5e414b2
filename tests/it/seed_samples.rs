//! The documents' sample requests, written as gRPC requests (`tests/fixtures/seed_samples`),
//! reach the upstream as the samples show them: same method, path, query and body keys and values.
//! Values compare as text (the documents write `"size": 500` where the API's type is a string),
//! and an empty list is the same as an absent one (protobuf cannot tell them apart).

use crate::support::*;
use ack_gateway::table;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

#[derive(Deserialize)]
struct Sample {
    seed: String,
    line: u64,
    operation: String,
    service: String,
    grpc_request: Value,
    expected: Expected,
}

#[derive(Deserialize)]
struct Expected {
    method: String,
    path: String,
    query: BTreeMap<String, String>,
    body: Option<Value>,
}

fn as_text(v: &Value) -> Value {
    match v {
        Value::Number(n) => Value::String(match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
            _ => n.to_string(),
        }),
        Value::Bool(b) => Value::String(b.to_string()),
        Value::Array(a) => Value::Array(a.iter().map(as_text).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, x)| !matches!(x, Value::Array(a) if a.is_empty()))
                .map(|(k, x)| (k.clone(), as_text(x)))
                .collect::<Map<_, _>>(),
        ),
        other => other.clone(),
    }
}

#[tokio::test]
async fn documented_sample_requests_produce_the_documented_upstream_requests() {
    let h = Harness::embedded_unfollowed().await;
    let table = table::builtin();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/seed_samples");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("fixtures")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    assert!(files.len() >= 40, "the samples are there");
    for file in files {
        let sample: Sample = serde_json::from_str(&std::fs::read_to_string(&file).expect("read"))
            .expect("fixture parses");
        let what = format!(
            "{} line {} ({})",
            sample.seed, sample.line, sample.operation
        );
        let info = table.service(&sample.service).expect("service");
        let service = format!("{}.{}", info.package, info.service);
        h.sim().clear_requests();
        // The call may fail upstream (the samples name clusters that do not exist here); what
        // matters is the request the upstream received.
        let _ = h
            .call(
                &service,
                &sample.operation,
                sample.grpc_request.clone(),
                &[],
                None,
            )
            .await;
        let seen = h.sim().requests();
        assert_eq!(seen.len(), 1, "{what}: reached the upstream");
        let got = &seen[0];
        assert_eq!(got.method, sample.expected.method, "{what}: method");
        assert_eq!(got.raw_path, sample.expected.path, "{what}: path");

        let common = [
            "Action",
            "Version",
            "Format",
            "AccessKeyId",
            "SignatureMethod",
            "SignatureVersion",
            "SignatureNonce",
            "Timestamp",
            "RegionId",
        ];
        let query: BTreeMap<String, String> = got
            .query
            .iter()
            .filter(|(k, _)| sample.service == "cs" || !common.contains(&k.as_str()))
            .cloned()
            .collect();
        assert_eq!(query, sample.expected.query, "{what}: query");

        let body: Option<Value> = if got.body.is_empty() {
            None
        } else {
            Some(serde_json::from_str(&got.body).expect("JSON body"))
        };
        let want = sample.expected.body.as_ref().map(as_text);
        let have = body.as_ref().map(as_text);
        let empty_object = |v: &Option<Value>| matches!(v, Some(Value::Object(m)) if m.is_empty());
        if !(want.is_none() && empty_object(&have)) {
            assert_eq!(have, want, "{what}: body");
        }
    }
}
