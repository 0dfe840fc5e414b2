//! Browsers and plain HTTP clients on the gRPC port: the Connect protocol (unary and server
//! streaming, JSON and proto), gRPC-Web (binary and text), CORS, the progress page, the
//! local-token mode and shutdown, over real HTTP/1.1 connections.

use crate::support::*;
use ack_gateway::access::token_hash;
use ack_gateway::simulator::{Fault, SimulatorOptions};
use base64::Engine as _;
use bytes::{Buf as _, BufMut as _, Bytes, BytesMut};
use prost::Message as _;
use prost_reflect::DynamicMessage;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

const WATCH_SERVICE: &str = "ackgateway.v1.WatchService";
const FAST_WATCH: &str = "[watch]\ninitial_interval = \"50ms\"\nmax_interval = \"200ms\"\n\
     heartbeat_interval = \"200ms\"\nretry_initial = \"20ms\"\nretry_max = \"100ms\"\n\
     max_polls_per_second = 1000.0\n[retry]\nmax_attempts = 1\n";

async fn embedded(task_duration: &str, extra: &str) -> Harness {
    Harness::with_config(
        &format!(
            "[simulator]\nmode = \"always\"\ntask_duration = \"{task_duration}\"\n{FAST_WATCH}{extra}"
        ),
        HashMap::new(),
    )
    .await
}

fn url(h: &Harness, service: &str, method: &str) -> String {
    format!("http://{}/{service}/{method}", h.running.addr)
}

/// An HTTP/1.1 client (reqwest speaks HTTP/1.1 to `http://` URLs).
fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .http1_only()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

fn fault(op: &str, status: u16, code: &str, delay_ms: u64) -> Fault {
    Fault {
        operation: Some(op.into()),
        status,
        code: code.into(),
        message: format!("injected {code}"),
        times: 1,
        delay_ms,
        headers: BTreeMap::new(),
        ..Default::default()
    }
}

pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: reqwest::header::HeaderMap,
    pub(crate) json: Value,
}

impl Answer {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn detail(&self, type_name: &str) -> Option<&Value> {
        self.json["details"]
            .as_array()?
            .iter()
            .find(|d| d["type"] == type_name)
    }
}

/// A Connect unary call with a JSON body.
pub(crate) async fn connect_json(
    h: &Harness,
    service: &str,
    method: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> Answer {
    let mut req = http()
        .post(url(h, service, method))
        .header("content-type", "application/json")
        .body(body.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("answered");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("body");
    let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("JSON answer ({e}): {text}"));
    Answer {
        status,
        headers,
        json,
    }
}

fn envelope(flags: u8, message: &[u8]) -> Vec<u8> {
    let mut out = vec![flags];
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out
}

/// Splits complete envelopes (or gRPC-Web frames) off the front of `buf`.
fn take_envelopes(buf: &mut BytesMut) -> Vec<(u8, Bytes)> {
    let mut out = Vec::new();
    while buf.len() >= 5 {
        let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
        if buf.len() < 5 + len {
            break;
        }
        let flags = buf[0];
        buf.advance(5);
        out.push((flags, buf.split_to(len).freeze()));
    }
    out
}

/// Reads a streaming answer envelope by envelope, noting when each arrived.
async fn read_envelopes(mut resp: reqwest::Response) -> Vec<(Instant, u8, Bytes)> {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while let Some(chunk) = tokio::time::timeout_at(deadline.into(), resp.chunk())
        .await
        .expect("the stream ends in time")
        .expect("body chunk")
    {
        buf.put_slice(&chunk);
        let now = Instant::now();
        out.extend(
            take_envelopes(&mut buf)
                .into_iter()
                .map(|(f, m)| (now, f, m)),
        );
    }
    assert!(buf.is_empty(), "no partial envelope is left at the end");
    out
}

/// A Connect server-streaming call (JSON): each message with its arrival time, and the
/// end-of-stream message.
pub(crate) async fn connect_stream(
    h: &Harness,
    method: &str,
    request: Value,
    headers: &[(&str, &str)],
) -> (Vec<(Instant, Value)>, Instant, Value) {
    let mut req = http()
        .post(url(h, WATCH_SERVICE, method))
        .header("content-type", "application/connect+json")
        .header("connect-protocol-version", "1")
        .body(envelope(0, request.to_string().as_bytes()));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("answered");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers()["content-type"].to_str().ok(),
        Some("application/connect+json")
    );
    let mut messages = Vec::new();
    let mut end = None;
    for (at, flags, body) in read_envelopes(resp).await {
        let json: Value = serde_json::from_slice(&body).expect("JSON envelope");
        if flags & 0x02 != 0 {
            assert!(end.is_none(), "one end-of-stream message");
            end = Some((at, json));
        } else {
            assert!(end.is_none(), "nothing after the end-of-stream message");
            messages.push((at, json));
        }
    }
    let (end_at, end) = end.expect("an end-of-stream message");
    (messages, end_at, end)
}

async fn create(h: &Harness, name: &str) -> (String, String) {
    let a = connect_json(
        h,
        CS_SERVICE,
        "CreateCluster",
        &json!({"name": name, "region_id": "cn-hangzhou", "cluster_type": "ManagedKubernetes"})
            .to_string(),
        &[],
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.json);
    (
        a.json["cluster_id"]
            .as_str()
            .expect("cluster id")
            .to_string(),
        a.json["task_id"].as_str().expect("task id").to_string(),
    )
}

#[tokio::test]
async fn connect_unary_json_and_proto_give_the_same_answer_with_the_grpc_metadata() {
    let h = embedded("300ms", "").await;
    let (cluster, _) = create(&h, "connect-unary").await;
    let request = json!({"cluster_id": cluster}).to_string();

    let first = connect_json(&h, CS_SERVICE, "DescribeClusterDetail", &request, &[]).await;
    assert_eq!(first.status, 200, "{}", first.json);
    assert_eq!(first.header("content-type"), Some("application/json"));
    assert_eq!(first.json["cluster_id"], cluster.as_str());
    assert_eq!(first.json["name"], "connect-unary");
    assert!(first
        .header("x-acs-request-id")
        .is_some_and(|id| !id.is_empty()));
    assert_eq!(first.header("x-ack-cache"), Some("miss"));
    let again = connect_json(&h, CS_SERVICE, "DescribeClusterDetail", &request, &[]).await;
    assert_eq!(again.header("x-ack-cache"), Some("hit"));
    assert!(again.header("x-ack-cache-age-ms").is_some());
    let bypass = connect_json(
        &h,
        CS_SERVICE,
        "DescribeClusterDetail",
        &request,
        &[("cache-control", "no-cache")],
    )
    .await;
    assert_eq!(bypass.header("x-ack-cache"), Some("bypass"));

    // The same call as application/proto.
    let pool = ack_gateway::proto::pool();
    let req_desc = pool
        .get_message_by_name("alibabacloud.cs.v20151215.DescribeClusterDetailRequest")
        .expect("request descriptor");
    let resp_desc = pool
        .get_message_by_name("alibabacloud.cs.v20151215.DescribeClusterDetailResponse")
        .expect("response descriptor");
    let message = DynamicMessage::deserialize(req_desc, json!({"cluster_id": cluster}))
        .expect("request")
        .encode_to_vec();
    let resp = http()
        .post(url(&h, CS_SERVICE, "DescribeClusterDetail"))
        .header("content-type", "application/proto")
        .body(message)
        .send()
        .await
        .expect("answered");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers()["content-type"].to_str().ok(),
        Some("application/proto")
    );
    let body = resp.bytes().await.expect("body");
    let decoded = DynamicMessage::decode(resp_desc, body).expect("a proto answer");
    let as_json = serde_json::to_value(&decoded).expect("JSON");
    assert_eq!(as_json["cluster_id"], first.json["cluster_id"]);
    assert_eq!(as_json["name"], first.json["name"]);

    // JSON names are accepted as well as proto field names (gateway messages use camelCase).
    let (_, task) = create(&h, "connect-names").await;
    let by_json_name = connect_json(
        &h,
        CS_SERVICE,
        "DescribeTaskInfo",
        &json!({"task_id": task}).to_string(),
        &[],
    )
    .await;
    assert_eq!(by_json_name.status, 200, "{}", by_json_name.json);
}

/// A Connect unary GET of `method` with `query`: status, headers and body.
async fn connect_get(
    h: &Harness,
    query: Vec<(&str, String)>,
    method: &str,
) -> (u16, reqwest::header::HeaderMap, Bytes) {
    let resp = http()
        .get(url(h, CS_SERVICE, method))
        .query(&query)
        .send()
        .await
        .expect("answered");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.bytes().await.expect("body"))
}

#[tokio::test]
async fn connect_get_serves_reads_without_secrets_and_refuses_the_rest() {
    let h = embedded("300ms", "").await;
    let (cluster, _) = create(&h, "connect-get").await;
    // JSON, percent-encoded, as `curl --get --data-urlencode` sends it.
    let message = json!({"cluster_id": cluster}).to_string();
    let (status, headers, body) = connect_get(
        &h,
        vec![
            ("connect", "v1".into()),
            ("encoding", "json".into()),
            ("message", message),
        ],
        "DescribeClusterDetail",
    )
    .await;
    let json: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(status, 200, "{json}");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(json["cluster_id"], cluster.as_str());
    assert!(headers.contains_key("x-acs-request-id"));
    assert_eq!(headers["x-ack-cache"], "miss");

    // Proto, base64url without padding.
    let pool = ack_gateway::proto::pool();
    let req_desc = pool
        .get_message_by_name("alibabacloud.cs.v20151215.DescribeClusterDetailRequest")
        .expect("request descriptor");
    let resp_desc = pool
        .get_message_by_name("alibabacloud.cs.v20151215.DescribeClusterDetailResponse")
        .expect("response descriptor");
    let proto = DynamicMessage::deserialize(req_desc, json!({"cluster_id": cluster}))
        .expect("request")
        .encode_to_vec();
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(proto);
    let (status, headers, body) = connect_get(
        &h,
        vec![
            ("encoding", "proto".into()),
            ("base64", "1".into()),
            ("message", encoded),
        ],
        "DescribeClusterDetail",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/proto");
    assert_eq!(headers["x-ack-cache"], "hit");
    let decoded = DynamicMessage::decode(resp_desc, body).expect("a proto answer");
    assert_eq!(
        serde_json::to_value(&decoded).expect("JSON")["name"],
        "connect-get"
    );

    // A mutation, and a read whose answer is a secret (a kubeconfig), are refused: 405, Allow:
    // POST, and nothing reaches the upstream.
    for (method, request) in [
        ("DeleteCluster", json!({"cluster_id": cluster})),
        (
            "DescribeClusterUserKubeconfig",
            json!({"cluster_id": cluster}),
        ),
    ] {
        let before = h.sim().requests_for(method).len();
        let (status, headers, body) = connect_get(
            &h,
            vec![
                ("encoding", "json".into()),
                ("message", request.to_string()),
            ],
            method,
        )
        .await;
        let json: Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(status, 405, "{method}: {json}");
        assert_eq!(headers["allow"], "POST");
        assert_eq!(json["code"], "unimplemented", "{json}");
        assert_eq!(h.sim().requests_for(method).len(), before, "{method}");
    }

    // A GET without its encoding, or with a compression not served, names what is wrong.
    for (query, code, names) in [
        (
            vec![("message", "{}".to_string())],
            "invalid_argument",
            "encoding",
        ),
        (
            vec![
                ("encoding", "json".into()),
                ("compression", "br".into()),
                ("message", "{}".into()),
            ],
            "unimplemented",
            "compression",
        ),
        (
            vec![
                ("encoding", "json".into()),
                ("message", "{\"nope\": 1}".into()),
            ],
            "invalid_argument",
            "nope",
        ),
    ] {
        let (status, _, body) = connect_get(&h, query, "DescribeClustersV1").await;
        let json: Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(json["code"], code, "{json}");
        assert!(
            json["message"].as_str().unwrap_or_default().contains(names),
            "{json}"
        );
        assert!((400..500).contains(&status) || status == 501, "{status}");
    }
}

#[tokio::test]
async fn connect_errors_carry_the_specified_code_http_status_and_details() {
    let h = embedded("300ms", "").await;
    let post = |method: &'static str, body: &'static str| {
        let h = &h;
        async move { connect_json(h, CS_SERVICE, method, body, &[]).await }
    };

    let missing = post("DescribeClusterDetail", r#"{"cluster_id":"c-missing"}"#).await;
    assert_eq!(
        (missing.status, missing.json["code"].as_str()),
        (404, Some("not_found"))
    );
    let info = missing.detail("google.rpc.ErrorInfo").expect("ErrorInfo");
    assert_eq!(info["debug"]["reason"], "ErrorClusterNotFound");
    assert_eq!(
        info["debug"]["metadata"]["request_id"].as_str(),
        missing.header("x-acs-request-id"),
        "the upstream request id, in the details and the header"
    );
    assert!(info["value"].as_str().is_some_and(|v| !v.is_empty()));

    let no_id = post("DescribeClusterDetail", "{}").await;
    assert_eq!(
        (no_id.status, no_id.json["code"].as_str()),
        (400, Some("invalid_argument"))
    );
    let bad_request = no_id.detail("google.rpc.BadRequest").expect("BadRequest");
    assert_eq!(
        bad_request["debug"]["fieldViolations"][0]["field"],
        "cluster_id"
    );

    let unknown = post("DescribeClusterDetail", r#"{"cluster":"c-1"}"#).await;
    assert_eq!(unknown.status, 400);
    assert!(
        unknown.json["message"]
            .as_str()
            .is_some_and(|m| m.contains("'cluster'")),
        "{}",
        unknown.json
    );
    let broken = post("DescribeClusterDetail", r#"{"cluster_id":"#).await;
    assert_eq!(
        (broken.status, broken.json["code"].as_str()),
        (400, Some("invalid_argument"))
    );

    let no_method = post("NoSuchOperation", "{}").await;
    assert_eq!(
        (no_method.status, no_method.json["code"].as_str()),
        (501, Some("unimplemented"))
    );
    let streaming_as_unary = connect_json(&h, WATCH_SERVICE, "WatchTask", "{}", &[]).await;
    assert_eq!(streaming_as_unary.status, 400);

    h.sim()
        .inject(fault("DescribeClustersV1", 503, "ServiceUnavailable", 0));
    let down = post("DescribeClustersV1", "{}").await;
    assert_eq!(
        (down.status, down.json["code"].as_str()),
        (503, Some("unavailable"))
    );
    h.sim()
        .inject(fault("DescribeClustersV1", 403, "Forbidden.RAM", 0));
    let forbidden = post("DescribeClustersV1", "{}").await;
    assert_eq!(
        (forbidden.status, forbidden.json["code"].as_str()),
        (403, Some("permission_denied"))
    );
    // Last: a throttling answer also pauses the account's budget for the operation.
    h.sim()
        .inject(fault("DescribeClustersV1", 400, "Throttling.User", 0));
    let throttled = post("DescribeClustersV1", "{}").await;
    assert_eq!(
        (throttled.status, throttled.json["code"].as_str()),
        (429, Some("resource_exhausted")),
        "{}",
        throttled.json
    );

    // Outside the Connect and gRPC content types, HTTP/1.1 requests get a clear refusal.
    let resp = http()
        .post(url(&h, CS_SERVICE, "DescribeClustersV1"))
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .expect("answered");
    assert_eq!(resp.status().as_u16(), 415);
}

#[tokio::test]
async fn deadlines_come_from_connect_timeout_ms_and_grpc_timeout() {
    let h = embedded("300ms", "").await;
    h.sim().inject(fault("DescribeClustersV1", 0, "", 3000));
    let started = Instant::now();
    let late = connect_json(
        &h,
        CS_SERVICE,
        "DescribeClustersV1",
        "{}",
        &[("connect-timeout-ms", "300")],
    )
    .await;
    assert_eq!(
        (late.status, late.json["code"].as_str()),
        (504, Some("deadline_exceeded"))
    );
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );

    let bad = connect_json(
        &h,
        CS_SERVICE,
        "DescribeClustersV1",
        "{}",
        &[("connect-timeout-ms", "soon")],
    )
    .await;
    assert_eq!(bad.status, 400);
    assert!(bad.json["message"]
        .as_str()
        .is_some_and(|m| m.contains("connect-timeout-ms")));

    h.sim().inject(fault("DescribeClustersV1", 0, "", 3000));
    let started = Instant::now();
    let (_, trailers) = grpc_web(
        &h,
        CS_SERVICE,
        "DescribeClustersV1",
        json!({}),
        &[("grpc-timeout", "300m")],
        false,
    )
    .await;
    assert_eq!(grpc_status(&trailers), Some("4"), "{trailers:?}");
    assert!(started.elapsed() < Duration::from_millis(2500));
}

/// A gRPC-Web call (binary or text mode) over HTTP/1.1: the messages (as JSON, proto names)
/// with their arrival times, and the trailers.
pub(crate) async fn grpc_web_stream(
    h: &Harness,
    service: &str,
    method: &str,
    request: Value,
    headers: &[(&str, &str)],
    text: bool,
) -> (Vec<(Instant, Value)>, HashMap<String, String>) {
    let pool = ack_gateway::proto::pool();
    let svc = pool.get_service_by_name(service).expect("service");
    let m = svc.methods().find(|m| m.name() == method).expect("method");
    let message = DynamicMessage::deserialize(m.input(), request)
        .expect("request")
        .encode_to_vec();
    let mut frame = envelope(0, &message);
    let content_type = if text {
        frame = base64::engine::general_purpose::STANDARD
            .encode(&frame)
            .into_bytes();
        "application/grpc-web-text"
    } else {
        "application/grpc-web+proto"
    };
    let mut req = http()
        .post(url(h, service, method))
        .header("content-type", content_type)
        .header("accept", content_type)
        .header("x-grpc-web", "1")
        .body(frame);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("answered");
    assert_eq!(resp.status().as_u16(), 200);
    let mut trailers = HashMap::new();
    // A trailers-only answer carries the status in the headers.
    for (k, v) in resp.headers() {
        if k.as_str().starts_with("grpc-") {
            trailers.insert(
                k.as_str().to_string(),
                v.to_str().unwrap_or_default().to_string(),
            );
        }
    }
    let mut messages = Vec::new();
    let envelopes = if text {
        let mut resp = resp;
        let mut encoded = Vec::new();
        while let Some(chunk) = resp.chunk().await.expect("chunk") {
            encoded.extend_from_slice(&chunk);
        }
        // Each 4-character group decodes on its own (the encoder pads each chunk it writes).
        let mut decoded = BytesMut::new();
        for group in encoded.chunks(4) {
            decoded.put_slice(
                &base64::engine::general_purpose::STANDARD
                    .decode(group)
                    .expect("base64"),
            );
        }
        let now = Instant::now();
        take_envelopes(&mut decoded)
            .into_iter()
            .map(|(f, b)| (now, f, b))
            .collect()
    } else {
        read_envelopes(resp).await
    };
    for (at, flags, body) in envelopes {
        if flags & 0x80 != 0 {
            for line in String::from_utf8_lossy(&body).split("\r\n") {
                if let Some((k, v)) = line.split_once(':') {
                    trailers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                }
            }
        } else {
            let decoded = DynamicMessage::decode(m.output(), body).expect("message decodes");
            let json = decoded
                .serialize_with_options(
                    serde_json::value::Serializer,
                    &prost_reflect::SerializeOptions::new().use_proto_field_name(true),
                )
                .expect("JSON");
            messages.push((at, json));
        }
    }
    (messages, trailers)
}

pub(crate) fn grpc_status(trailers: &HashMap<String, String>) -> Option<&str> {
    trailers.get("grpc-status").map(String::as_str)
}

pub(crate) async fn grpc_web(
    h: &Harness,
    service: &str,
    method: &str,
    request: Value,
    headers: &[(&str, &str)],
    text: bool,
) -> (Option<Value>, HashMap<String, String>) {
    let (messages, trailers) = grpc_web_stream(h, service, method, request, headers, text).await;
    (messages.into_iter().next().map(|(_, m)| m), trailers)
}

#[tokio::test]
async fn streams_deliver_each_message_as_it_happens_over_connect_and_grpc_web() {
    let h = embedded("1500ms", "").await;
    let (_, task) = create(&h, "streamed").await;

    let connect = async {
        let (messages, end_at, end) =
            connect_stream(&h, "WatchTask", json!({"taskId": task}), &[]).await;
        assert_eq!(
            end,
            json!({}),
            "success ends with an empty end-of-stream message"
        );
        let kinds: Vec<&str> = messages
            .iter()
            .filter_map(|(_, m)| m["kind"].as_str())
            .collect();
        assert_eq!(
            kinds.first(),
            Some(&"WATCH_EVENT_KIND_INITIAL"),
            "{kinds:?}"
        );
        assert_eq!(kinds.last(), Some(&"WATCH_EVENT_KIND_FINAL"), "{kinds:?}");
        let (last_at, last) = messages.last().expect("messages");
        assert_eq!(last["status"]["phase"], "PHASE_SUCCEEDED");
        assert_eq!(last["status"]["progressPercent"], 100);
        let (first_at, _) = messages[0];
        assert!(
            end_at.duration_since(first_at) >= Duration::from_millis(700),
            "the first message arrived {:?} before the end: not buffered",
            end_at.duration_since(first_at)
        );
        assert!(end_at >= *last_at);
    };
    let web = async {
        let (messages, trailers) = grpc_web_stream(
            &h,
            WATCH_SERVICE,
            "WatchTask",
            json!({"task_id": task}),
            &[],
            false,
        )
        .await;
        assert_eq!(grpc_status(&trailers), Some("0"), "{trailers:?}");
        let (first_at, first) = &messages[0];
        let (last_at, last) = messages.last().expect("messages");
        assert_eq!(first["kind"], "WATCH_EVENT_KIND_INITIAL");
        assert_eq!(last["kind"], "WATCH_EVENT_KIND_FINAL");
        assert!(
            last_at.duration_since(*first_at) >= Duration::from_millis(700),
            "gRPC-Web messages arrive one by one over HTTP/1.1"
        );
    };
    tokio::join!(connect, web);
}

#[tokio::test]
async fn a_failed_task_ends_the_connect_stream_with_aborted_and_its_details() {
    let h = embedded("300ms", "").await;
    h.sim().fail_next_task(
        "CreateCluster",
        "ErrorVpcQuotaExceeded",
        "no VPC quota left",
    );
    let (_, task) = create(&h, "doomed").await;
    let (messages, _, end) = connect_stream(&h, "WatchTask", json!({"task_id": task}), &[]).await;
    let last = &messages.last().expect("final").1;
    assert_eq!(last["kind"], "WATCH_EVENT_KIND_FINAL");
    assert_eq!(last["status"]["phase"], "PHASE_FAILED");
    assert_eq!(last["status"]["error"]["code"], "ErrorVpcQuotaExceeded");
    assert_eq!(end["error"]["code"], "aborted", "{end}");
    assert!(end["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("no VPC quota left")));
    let info = end["error"]["details"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["type"] == "google.rpc.ErrorInfo"))
        .expect("ErrorInfo");
    assert_eq!(info["debug"]["reason"], "ErrorVpcQuotaExceeded");

    // An unknown task fails before any message, in the end-of-stream message.
    let (messages, _, end) =
        connect_stream(&h, "WatchTask", json!({"task_id": "T-nope"}), &[]).await;
    assert!(messages.is_empty());
    assert_eq!(end["error"]["code"], "not_found", "{end}");
}

#[tokio::test]
async fn grpc_web_text_mode_and_binary_mode_answer_unary_calls() {
    let h = embedded("300ms", "").await;
    let (cluster, _) = create(&h, "web-text").await;
    for text in [false, true] {
        let (message, trailers) = grpc_web(
            &h,
            CS_SERVICE,
            "DescribeClusterDetail",
            json!({"cluster_id": cluster}),
            &[],
            text,
        )
        .await;
        assert_eq!(
            grpc_status(&trailers),
            Some("0"),
            "text={text} {trailers:?}"
        );
        assert_eq!(message.expect("answer")["cluster_id"], cluster.as_str());
    }
    let (message, trailers) = grpc_web(
        &h,
        CS_SERVICE,
        "DescribeClusterDetail",
        json!({"cluster_id": "c-missing"}),
        &[],
        true,
    )
    .await;
    assert!(message.is_none());
    assert_eq!(grpc_status(&trailers), Some("5"));
    assert!(trailers.contains_key("grpc-status-details-bin"));
}

#[tokio::test]
async fn callers_are_authenticated_and_authorized_alike_over_connect_and_grpc_web() {
    let sim = simulator(SimulatorOptions::default()).await;
    let (id, secret) = sim.root_key();
    let h = Harness::with_config(
        &format!(
            "[simulator]\nmode = \"never\"\n[auth]\nmode = \"enforce\"\n[endpoints]\ncs = \"{}\"\n\
             [profiles.root]\ntype = \"access_key\"\naccess_key_id = \"{id}\"\n\
             access_key_secret = \"{}\"\nregion = \"cn-hangzhou\"\n\
             [callers.dashboard]\ntoken_sha256 = [\"{}\"]\nprofiles = [\"root\"]\n\
             operations = [\"Describe*\"]\n",
            sim.endpoint(),
            secret.expose(),
            token_hash("dash-token-123")
        ),
        env(&[]),
    )
    .await;
    let auth = [
        ("authorization", "Bearer dash-token-123"),
        ("x-ack-profile", "root"),
    ];
    let allowed = connect_json(&h, CS_SERVICE, "DescribeClustersV1", "{}", &auth).await;
    assert_eq!(allowed.status, 200, "{}", allowed.json);
    let (_, trailers) = grpc_web(
        &h,
        CS_SERVICE,
        "DescribeClustersV1",
        json!({}),
        &auth,
        false,
    )
    .await;
    assert_eq!(grpc_status(&trailers), Some("0"));

    let anonymous = connect_json(&h, CS_SERVICE, "DescribeClustersV1", "{}", &[]).await;
    assert_eq!(
        (anonymous.status, anonymous.json["code"].as_str()),
        (401, Some("unauthenticated"))
    );
    let (_, trailers) = grpc_web(&h, CS_SERVICE, "DescribeClustersV1", json!({}), &[], false).await;
    assert_eq!(grpc_status(&trailers), Some("16"));

    let body = json!({"name": "x", "region_id": "cn-hangzhou"});
    let denied = connect_json(&h, CS_SERVICE, "CreateCluster", &body.to_string(), &auth).await;
    assert_eq!(
        (denied.status, denied.json["code"].as_str()),
        (403, Some("permission_denied"))
    );
    let grpc_denied = h
        .call(CS_SERVICE, "CreateCluster", body.clone(), &auth, None)
        .await
        .expect_err("denied over gRPC");
    assert_eq!(denied.json["message"].as_str(), Some(grpc_denied.message()));
    let (_, trailers) = grpc_web(&h, CS_SERVICE, "CreateCluster", body, &auth, false).await;
    assert_eq!(grpc_status(&trailers), Some("7"));
    // A Connect stream is refused the same way, in its end-of-stream message.
    let (messages, _, end) = connect_stream(&h, "WatchTask", json!({"task_id": "T-1"}), &[]).await;
    assert!(messages.is_empty());
    assert_eq!(end["error"]["code"], "unauthenticated");
    assert!(sim
        .requests()
        .iter()
        .all(|r| r.operation != "CreateCluster"));
}

#[tokio::test]
async fn a_loopback_gateway_with_real_keys_and_no_callers_accepts_one_generated_token() {
    let sim = simulator(SimulatorOptions::default()).await;
    let (id, secret) = sim.root_key();
    let profile = format!(
        "[simulator]\nmode = \"never\"\n[endpoints]\ncs = \"{}\"\n[profiles.default]\n\
         type = \"access_key\"\naccess_key_id = \"{id}\"\naccess_key_secret = \"{}\"\n\
         region = \"cn-hangzhou\"\n",
        sim.endpoint(),
        secret.expose()
    );
    let h = Harness::with_config(&profile, env(&[])).await;
    let token = h
        .running
        .local_token
        .as_ref()
        .expect("a local token on loopback")
        .expose()
        .to_string();
    assert!(token.len() >= 40, "32 random bytes");
    let bearer = format!("Bearer {token}");
    let ok = connect_json(
        &h,
        CS_SERVICE,
        "DescribeClustersV1",
        "{}",
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.json);
    let (_, grpc_md) = h
        .call(
            CS_SERVICE,
            "DescribeClustersV1",
            json!({}),
            &[("authorization", &bearer)],
            None,
        )
        .await
        .expect("gRPC with the token");
    assert!(grpc_md.get("x-acs-request-id").is_some());
    let none = connect_json(&h, CS_SERVICE, "DescribeClustersV1", "{}", &[]).await;
    assert_eq!(none.status, 401);
    let wrong = connect_json(
        &h,
        CS_SERVICE,
        "DescribeClustersV1",
        "{}",
        &[("authorization", "Bearer nope")],
    )
    .await;
    assert_eq!(wrong.status, 401);
    assert!(!wrong.json.to_string().contains(&token));

    // Another gateway gets another token.
    let other = Harness::with_config(&profile, env(&[])).await;
    let other_token = other.running.local_token.as_ref().expect("token").expose();
    assert_ne!(other_token, token);

    // Configured callers, or a listener that is not loopback, mean no local token.
    let with_callers = Harness::with_config(
        &format!(
            "{profile}[callers.ci]\ntoken_sha256 = [\"{}\"]\nprofiles = [\"*\"]\noperations = [\"*\"]\n",
            token_hash("ci-token")
        ),
        env(&[]),
    )
    .await;
    assert!(with_callers.running.local_token.is_none());
    let mut remote = ack_gateway::config::Config::load(Some(&profile), &env(&[])).expect("config");
    remote.listen = "0.0.0.0:0".parse().expect("addr");
    remote.admin_listen = "127.0.0.1:0".parse().expect("addr");
    let remote = ack_gateway::app::start(remote).await.expect("starts");
    assert!(
        remote.local_token.is_none(),
        "remote listeners keep enforcing"
    );
    let refused = http()
        .post(format!(
            "http://127.0.0.1:{}/{CS_SERVICE}/DescribeClustersV1",
            remote.addr.port()
        ))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("answered");
    assert_eq!(refused.status().as_u16(), 401);
    remote.shutdown().await.expect("stops");
}

#[tokio::test]
async fn cors_preflights_are_answered_for_configured_origins_only() {
    let h = embedded("300ms", "[http]\ncors_origins = [\"https://ui.example\"]\n").await;
    let preflight = |origin: &'static str| {
        http()
            .request(
                reqwest::Method::OPTIONS,
                url(&h, CS_SERVICE, "DescribeClustersV1"),
            )
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "content-type,x-grpc-web,authorization",
            )
            .send()
    };
    let ok = preflight("https://ui.example").await.expect("answered");
    assert!(ok.status().is_success());
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "https://ui.example"
    );
    let allowed = ok.headers()["access-control-allow-headers"]
        .to_str()
        .expect("ascii");
    assert!(
        allowed.contains("x-grpc-web") && allowed.contains("authorization"),
        "{allowed}"
    );
    let other = preflight("https://evil.example").await.expect("answered");
    assert!(other.headers().get("access-control-allow-origin").is_none());

    let call = http()
        .post(url(&h, CS_SERVICE, "DescribeClustersV1"))
        .header("origin", "https://ui.example")
        .header("content-type", "application/grpc-web+proto")
        .body(envelope(0, &[]))
        .send()
        .await
        .expect("answered");
    let exposed = call.headers()["access-control-expose-headers"]
        .to_str()
        .expect("ascii");
    for name in [
        "grpc-status",
        "grpc-message",
        "grpc-status-details-bin",
        "x-acs-request-id",
    ] {
        assert!(exposed.contains(name), "{name} exposed: {exposed}");
    }

    // Without configured origins, no cross-origin access at all.
    let plain = embedded("300ms", "").await;
    let resp = http()
        .request(
            reqwest::Method::OPTIONS,
            url(&plain, CS_SERVICE, "DescribeClustersV1"),
        )
        .header("origin", "https://ui.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .expect("answered");
    assert!(resp.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn the_progress_page_is_served_from_the_binary_with_a_strict_policy() {
    let h = embedded("300ms", "").await;
    let base = format!("http://{}", h.running.addr);
    let page = http()
        .get(format!("{base}/ui/"))
        .send()
        .await
        .expect("page");
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.headers()["content-type"]
        .to_str()
        .is_ok_and(|v| v.starts_with("text/html")));
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .expect("csp")
        .to_string();
    assert!(
        csp.contains("connect-src 'self'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    let html = page.text().await.expect("html");
    assert!(html.contains("progress.js") && html.contains("progress.css"));
    for (file, content_type) in [
        ("progress.js", "text/javascript"),
        ("progress.css", "text/css"),
    ] {
        let resp = http()
            .get(format!("{base}/ui/{file}"))
            .send()
            .await
            .expect("file");
        assert_eq!(resp.status().as_u16(), 200, "{file}");
        assert!(resp.headers()["content-type"]
            .to_str()
            .is_ok_and(|v| v.starts_with(content_type)));
    }
    let redirect = http()
        .get(format!("{base}/ui?task=T-1"))
        .send()
        .await
        .expect("redirect");
    assert_eq!(redirect.status().as_u16(), 308);
    assert_eq!(redirect.headers()["location"], "/ui/?task=T-1");
    let missing = http()
        .get(format!("{base}/ui/../Cargo.toml"))
        .send()
        .await
        .expect("404");
    assert_eq!(missing.status().as_u16(), 404);
    assert_eq!(
        ack_gateway::edge::ui::embedded_size(),
        html.len()
            + include_str!("../../ui/progress.js").len()
            + include_str!("../../ui/progress.css").len()
    );
}

#[tokio::test]
async fn shutdown_ends_open_watch_streams_with_unavailable() {
    let h = embedded("60s", "").await;
    let (_, task) = create(&h, "long").await;
    let stream = tokio::spawn({
        let h_url = url(&h, WATCH_SERVICE, "WatchTask");
        async move {
            let resp = http()
                .post(h_url)
                .header("content-type", "application/connect+json")
                .body(envelope(0, json!({"task_id": task}).to_string().as_bytes()))
                .send()
                .await
                .expect("answered");
            read_envelopes(resp).await
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), h.running.shutdown())
        .await
        .expect("the drain does not wait for the stream")
        .expect("stops");
    assert!(started.elapsed() < Duration::from_secs(5));
    let envelopes = stream.await.expect("stream task");
    let (_, flags, end) = envelopes.last().expect("end of stream");
    assert_eq!(*flags, 0x02);
    let end: Value = serde_json::from_slice(end).expect("JSON");
    assert_eq!(end["error"]["code"], "unavailable", "{end}");
}
