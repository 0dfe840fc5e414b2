//! The API contract for clients in other languages: Connect client and bidirectional streams
//! (server reflection over Connect on HTTP/2, and the HTTP/1.1 refusal), gzip both ways over
//! gRPC, gRPC-Web and Connect (unary, streams, GET), the inflation limit, and `buf curl
//! --protocol connect --reflect` against a running gateway.

use crate::support::*;
use bytes::{Buf as _, Bytes, BytesMut};
use http_body_util::BodyExt as _;
use prost::Message as _;
use serde_json::{json, Value};
use std::io::{Read as _, Write as _};
use std::time::Duration;
use tonic::codec::CompressionEncoding;
use tonic_reflection::pb::v1::{
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    ServerReflectionRequest, ServerReflectionResponse,
};
use tower::ServiceExt as _;

const REFLECTION: &str = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo";

/// The embedded gateway, answers compressed from 64 bytes on, requests up to 64 KiB.
async fn gateway() -> Harness {
    Harness::with_config(
        "[simulator]\nmode = \"always\"\ntask_duration = \"300ms\"\n\
         [http]\ncompress_min_bytes = 64\n[limits]\nmax_request_bytes = 65536\n",
        Default::default(),
    )
    .await
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .expect("gzip answer");
    out
}

/// A length-prefixed message (gRPC frame, Connect envelope).
fn framed(flags: u8, message: &[u8]) -> Vec<u8> {
    let mut out = vec![flags];
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out
}

/// The length-prefixed messages of a body: (flags, message).
fn unframe(mut body: Bytes) -> Vec<(u8, Bytes)> {
    let mut out = Vec::new();
    while body.len() >= 5 {
        let flags = body.get_u8();
        let len = body.get_u32() as usize;
        out.push((flags, body.split_to(len)));
    }
    assert!(body.is_empty(), "no partial frame");
    out
}

/// A request message's binary form.
fn encode(message: &str, request: Value) -> Vec<u8> {
    let desc = ack_gateway::proto::message(message).expect("message");
    prost_reflect::DynamicMessage::deserialize(desc, request)
        .expect("request")
        .encode_to_vec()
}

/// A raw HTTP/2 exchange over the harness's channel: head, body, trailers.
async fn h2(
    h: &Harness,
    path: &str,
    headers: &[(&str, &str)],
    body: tonic::body::Body,
) -> (http::response::Parts, Bytes, http::HeaderMap) {
    let mut req = http::Request::builder()
        .method("POST")
        .uri(format!("http://{}{path}", h.running.addr));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let response = h
        .channel
        .clone()
        .oneshot(req.body(body).expect("request"))
        .await
        .expect("answered");
    let (parts, body) = response.into_parts();
    let collected = body.collect().await.expect("body");
    let trailers = collected.trailers().cloned().unwrap_or_default();
    (parts, collected.to_bytes(), trailers)
}

fn full(bytes: Vec<u8>) -> tonic::body::Body {
    tonic::body::Body::new(
        http_body_util::Full::new(Bytes::from(bytes))
            .map_err(|never: std::convert::Infallible| -> tonic::Status { match never {} }),
    )
}

fn header<'a>(map: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    map.get(name).and_then(|v| v.to_str().ok())
}

/// A reflection request as a Connect (proto) envelope.
fn reflection_envelope(request: MessageRequest) -> Vec<u8> {
    let message = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    }
    .encode_to_vec();
    framed(0, &message)
}

/// The next envelope of a streaming answer, as it arrives.
async fn next_envelope(body: &mut tonic::body::Body, buf: &mut BytesMut) -> (u8, Bytes) {
    loop {
        if buf.len() >= 5 {
            let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
            if buf.len() >= 5 + len {
                let flags = buf[0];
                buf.advance(5);
                return (flags, buf.split_to(len).freeze());
            }
        }
        let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .expect("in time")
            .expect("more")
            .expect("data");
        if let Ok(data) = frame.into_data() {
            buf.extend_from_slice(&data);
        }
    }
}

#[tokio::test]
async fn server_reflection_is_a_connect_bidi_stream_over_http2() {
    let h = gateway().await;
    // The request stream stays open: the first answer arrives before the second question.
    let (mut tx, body) = http_body_util::channel::Channel::<Bytes, tonic::Status>::new(4);
    let request = http::Request::builder()
        .method("POST")
        .uri(format!("http://{}{REFLECTION}", h.running.addr))
        .header("content-type", "application/connect+proto")
        .header("connect-protocol-version", "1")
        .body(tonic::body::Body::new(body))
        .expect("request");
    tx.send_data(Bytes::from(reflection_envelope(
        MessageRequest::ListServices(String::new()),
    )))
    .await
    .expect("sent");
    let response = h.channel.clone().oneshot(request).await.expect("answered");
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(response.headers(), "content-type"),
        Some("application/connect+proto")
    );
    let mut body = response.into_body();
    let mut buf = BytesMut::new();
    let (flags, first) = next_envelope(&mut body, &mut buf).await;
    assert_eq!(flags, 0);
    let listed = ServerReflectionResponse::decode(first).expect("reflection answer");
    let Some(MessageResponse::ListServicesResponse(list)) = listed.message_response else {
        panic!("a service list: {listed:?}");
    };
    let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&CS_SERVICE), "{names:?}");

    tx.send_data(Bytes::from(reflection_envelope(
        MessageRequest::FileContainingSymbol(format!("{CS_SERVICE}.ScaleOutCluster")),
    )))
    .await
    .expect("second question");
    let (_, second) = next_envelope(&mut body, &mut buf).await;
    let described = ServerReflectionResponse::decode(second).expect("reflection answer");
    let Some(MessageResponse::FileDescriptorResponse(files)) = described.message_response else {
        panic!("file descriptors: {described:?}");
    };
    assert!(!files.file_descriptor_proto.is_empty());
    drop(tx);
    let (flags, end) = next_envelope(&mut body, &mut buf).await;
    assert_eq!(flags, 0x02, "the end-of-stream message");
    assert_eq!(
        serde_json::from_slice::<Value>(&end).expect("json"),
        json!({})
    );
}

#[tokio::test]
async fn a_connect_bidi_stream_over_http1_is_refused_naming_http2() {
    let h = gateway().await;
    let resp = reqwest::Client::new()
        .post(format!("http://{}{REFLECTION}", h.running.addr))
        .header("content-type", "application/connect+proto")
        .body(reflection_envelope(MessageRequest::ListServices(
            String::new(),
        )))
        .send()
        .await
        .expect("answered");
    assert_eq!(
        resp.status().as_u16(),
        200,
        "errors of streams end the stream"
    );
    let frames = unframe(resp.bytes().await.expect("body"));
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].0, 0x02);
    let end: Value = serde_json::from_slice(&frames[0].1).expect("json");
    assert_eq!(end["error"]["code"], "unimplemented", "{end}");
    let message = end["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("bidirectional") && message.contains("HTTP/2"),
        "{message}"
    );
}

#[tokio::test]
async fn grpc_messages_are_gzipped_both_ways_when_negotiated() {
    let h = gateway().await;
    let (cluster, _) = create_cluster(&h, "gzip-grpc").await;
    // A real gRPC client (tonic) that sends gzip and accepts it.
    let mut grpc = tonic::client::Grpc::new(h.channel.clone())
        .send_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Gzip);
    grpc.ready().await.expect("ready");
    let request = encode(
        "alibabacloud.cs.v20151215.DescribeClusterDetailRequest",
        json!({"cluster_id": cluster}),
    );
    let answer = grpc
        .unary(
            tonic::Request::new(Bytes::from(request.clone())),
            format!("/{CS_SERVICE}/DescribeClusterDetail")
                .parse()
                .expect("path"),
            ack_gateway::server::codec::RawCodec,
        )
        .await
        .expect("served");
    assert!(answer.get_ref().len() > 64);
    // An error (a trailers-only answer) to a client that accepts gzip is a clean status.
    let missing = encode(
        "alibabacloud.cs.v20151215.DescribeClusterDetailRequest",
        json!({"cluster_id": "c-missing"}),
    );
    grpc.ready().await.expect("ready");
    let status = grpc
        .unary::<_, Bytes, _>(
            tonic::Request::new(Bytes::from(missing)),
            format!("/{CS_SERVICE}/DescribeClusterDetail")
                .parse()
                .expect("path"),
            ack_gateway::server::codec::RawCodec,
        )
        .await
        .expect_err("not found");
    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");

    // On the wire: a compressed request frame in, a compressed answer frame out.
    let path = format!("/{CS_SERVICE}/DescribeClusterDetail");
    let headers = [
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        ("grpc-encoding", "gzip"),
        ("grpc-accept-encoding", "gzip"),
    ];
    let (parts, body, trailers) = h2(&h, &path, &headers, full(framed(1, &gzip(&request)))).await;
    assert_eq!(header(&trailers, "grpc-status"), Some("0"), "{trailers:?}");
    assert_eq!(header(&parts.headers, "grpc-encoding"), Some("gzip"));
    let frames = unframe(body);
    assert_eq!(frames[0].0, 1, "compressed");
    assert_eq!(Bytes::from(gunzip(&frames[0].1)), answer.into_inner());

    // A client that does not accept gzip gets none.
    let (parts, body, _) = h2(&h, &path, &headers[..2], full(framed(0, &request))).await;
    assert_eq!(header(&parts.headers, "grpc-encoding"), None);
    assert_eq!(header(&parts.headers, "grpc-accept-encoding"), None);
    assert_eq!(unframe(body)[0].0, 0);

    // An encoding not offered is UNIMPLEMENTED, saying what is.
    let (parts, _, trailers) = h2(
        &h,
        &path,
        &[
            ("content-type", "application/grpc"),
            ("te", "trailers"),
            ("grpc-encoding", "snappy"),
        ],
        full(framed(1, b"x")),
    )
    .await;
    let status = header(&parts.headers, "grpc-status").or(header(&trailers, "grpc-status"));
    assert_eq!(status, Some("12"));
    assert_eq!(
        header(&parts.headers, "grpc-accept-encoding"),
        Some("gzip,identity"),
        "a refused encoding is answered with the ones accepted"
    );
}

#[tokio::test]
async fn grpc_web_frames_are_gzipped_both_ways_and_the_trailer_frame_is_not() {
    let h = gateway().await;
    let (cluster, _) = create_cluster(&h, "gzip-web").await;
    let request = encode(
        "alibabacloud.cs.v20151215.DescribeClusterDetailRequest",
        json!({"cluster_id": cluster}),
    );
    for accept in [true, false] {
        let mut req = reqwest::Client::new()
            .post(format!(
                "http://{}/{CS_SERVICE}/DescribeClusterDetail",
                h.running.addr
            ))
            .header("content-type", "application/grpc-web+proto")
            .header("x-grpc-web", "1")
            .header("grpc-encoding", "gzip")
            .body(framed(1, &gzip(&request)));
        if accept {
            req = req.header("grpc-accept-encoding", "gzip");
        }
        let resp = req.send().await.expect("answered");
        assert_eq!(resp.status().as_u16(), 200);
        let encoding = resp
            .headers()
            .get("grpc-encoding")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let frames = unframe(resp.bytes().await.expect("body"));
        let trailer = frames.last().expect("trailer frame");
        assert_eq!(trailer.0, 0x80);
        assert!(String::from_utf8_lossy(&trailer.1).contains("grpc-status:0"));
        let (flags, message) = &frames[0];
        if accept {
            assert_eq!(encoding.as_deref(), Some("gzip"));
            assert_eq!(*flags, 1);
            let detail = gunzip(message);
            assert!(String::from_utf8_lossy(&detail).contains(&cluster));
        } else {
            assert_eq!(encoding, None);
            assert_eq!(*flags, 0);
        }
    }
}

#[tokio::test]
async fn connect_unary_streams_and_get_are_gzipped_both_ways_when_negotiated() {
    let h = gateway().await;
    let (cluster, task) = create_cluster(&h, "gzip-connect").await;
    let base = format!("http://{}", h.running.addr);
    let body = json!({"cluster_id": cluster}).to_string();

    // Unary: Content-Encoding in, Accept-Encoding out.
    for accept in [true, false] {
        let mut req = reqwest::Client::new()
            .post(format!("{base}/{CS_SERVICE}/DescribeClusterDetail"))
            .header("content-type", "application/json")
            .header("content-encoding", "gzip")
            .body(gzip(body.as_bytes()));
        if accept {
            req = req.header("accept-encoding", "gzip");
        }
        let resp = req.send().await.expect("answered");
        assert_eq!(resp.status().as_u16(), 200);
        let encoding = resp
            .headers()
            .get("content-encoding")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = resp.bytes().await.expect("body");
        let text = if accept {
            assert_eq!(encoding.as_deref(), Some("gzip"));
            gunzip(&bytes)
        } else {
            assert_eq!(encoding, None);
            bytes.to_vec()
        };
        let detail: Value = serde_json::from_slice(&text).expect("json");
        assert_eq!(detail["cluster_id"], cluster.as_str());
    }

    // A server stream: a compressed request envelope, compressed answer envelopes.
    let envelope = framed(1, &gzip(json!({"task_id": task}).to_string().as_bytes()));
    let resp = reqwest::Client::new()
        .post(format!("{base}/ackgateway.v1.WatchService/WatchTask"))
        .header("content-type", "application/connect+json")
        .header("connect-content-encoding", "gzip")
        .header("connect-accept-encoding", "gzip")
        .body(envelope)
        .send()
        .await
        .expect("answered");
    assert_eq!(
        resp.headers()
            .get("connect-content-encoding")
            .and_then(|v| v.to_str().ok()),
        Some("gzip")
    );
    let frames = unframe(resp.bytes().await.expect("body"));
    let (end_flags, end) = frames.last().expect("end");
    assert_eq!(*end_flags, 0x02);
    assert_eq!(
        serde_json::from_slice::<Value>(end).expect("json"),
        json!({})
    );
    let events: Vec<Value> = frames[..frames.len() - 1]
        .iter()
        .map(|(flags, m)| {
            let text = if flags & 1 != 0 {
                gunzip(m)
            } else {
                m.to_vec()
            };
            serde_json::from_slice(&text).expect("event")
        })
        .collect();
    assert!(frames[..frames.len() - 1].iter().any(|(f, _)| f & 1 != 0));
    assert_eq!(
        events.last().expect("final")["kind"],
        "WATCH_EVENT_KIND_FINAL"
    );

    // GET with `compression=gzip`: the message is the base64url of the gzip of the JSON.
    use base64::Engine as _;
    let message = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(gzip(body.as_bytes()));
    let resp = reqwest::Client::new()
        .get(format!(
            "{base}/{CS_SERVICE}/DescribeClusterDetail?encoding=json&base64=1&compression=gzip&message={message}"
        ))
        .send()
        .await
        .expect("answered");
    assert_eq!(resp.status().as_u16(), 200);
    let detail: Value = resp.json().await.expect("json");
    assert_eq!(detail["cluster_id"], cluster.as_str());
}

#[tokio::test]
async fn a_small_request_that_inflates_past_the_limit_is_resource_exhausted() {
    let h = gateway().await;
    // 2 MiB of zeros in a JSON string: about 2 KiB compressed, 32 times the 64 KiB limit.
    let huge = format!("{{\"cluster_id\":\"{}\"}}", "0".repeat(2 << 20));
    let packed = gzip(huge.as_bytes());
    assert!(packed.len() < 16 * 1024);
    let base = format!("http://{}", h.running.addr);

    let resp = reqwest::Client::new()
        .post(format!("{base}/{CS_SERVICE}/DescribeClusterDetail"))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(packed.clone())
        .send()
        .await
        .expect("answered");
    assert_eq!(resp.status().as_u16(), 429);
    let error: Value = resp.json().await.expect("json");
    assert_eq!(error["code"], "resource_exhausted", "{error}");

    let proto = encode(
        "alibabacloud.cs.v20151215.DescribeClusterDetailRequest",
        json!({"cluster_id": "0".repeat(2 << 20)}),
    );
    let (parts, _, trailers) = h2(
        &h,
        &format!("/{CS_SERVICE}/DescribeClusterDetail"),
        &[
            ("content-type", "application/grpc"),
            ("te", "trailers"),
            ("grpc-encoding", "gzip"),
        ],
        full(framed(1, &gzip(&proto))),
    )
    .await;
    let status = header(&parts.headers, "grpc-status").or(header(&trailers, "grpc-status"));
    assert_eq!(
        status,
        Some("8"),
        "RESOURCE_EXHAUSTED: {parts:?} {trailers:?}"
    );

    let resp = reqwest::Client::new()
        .post(format!("{base}/{CS_SERVICE}/DescribeClusterDetail"))
        .header("content-type", "application/grpc-web+proto")
        .header("grpc-encoding", "gzip")
        .body(framed(1, &gzip(&proto)))
        .send()
        .await
        .expect("answered");
    let in_headers = resp
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = resp.bytes().await.expect("body");
    assert!(
        in_headers.as_deref() == Some("8")
            || String::from_utf8_lossy(&body).contains("grpc-status:8"),
        "{in_headers:?} {body:?}"
    );
    assert!(h.sim().requests_for("DescribeClusterDetail").is_empty());
}

/// `buf curl --protocol connect --http2-prior-knowledge --reflect` lists and calls the API. buf
/// comes from the npm package `@bufbuild/buf` (installed by `.ci/run` under
/// `clients/typescript`).
#[tokio::test]
async fn buf_curl_lists_and_calls_the_api_over_connect_with_reflection() {
    let buf = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("clients/typescript/node_modules/.bin/buf");
    if !buf.exists() {
        assert!(
            std::env::var("CI").is_err(),
            "buf is missing in CI: {} (npm ci in clients/typescript)",
            buf.display()
        );
        println!(
            "skipped: buf not installed at {} (npm ci --prefix clients/typescript)",
            buf.display()
        );
        return;
    }
    let h = gateway().await;
    let (cluster, _) = create_cluster(&h, "buf-curl").await;
    let url = |method: &str| format!("http://{}/{method}", h.running.addr);
    let run = |args: Vec<String>| {
        let buf = buf.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                std::process::Command::new(buf)
                    .args(["curl", "--protocol", "connect", "--http2-prior-knowledge"])
                    .args(args)
                    .output()
                    .expect("buf runs")
            })
            .await
            .expect("joined")
        }
    };
    let listed = run(vec!["--list-methods".into(), url("")]).await;
    let stdout = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.status.success() && stdout.contains(&format!("{CS_SERVICE}/DescribeClusterDetail")),
        "{stdout}\n{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let called = run(vec![
        "--reflect".into(),
        "-d".into(),
        json!({"cluster_id": cluster}).to_string(),
        url(&format!("{CS_SERVICE}/DescribeClusterDetail")),
    ])
    .await;
    let stdout = String::from_utf8_lossy(&called.stdout);
    assert!(
        called.status.success() && stdout.contains(&cluster),
        "{stdout}\n{}",
        String::from_utf8_lossy(&called.stderr)
    );
}
