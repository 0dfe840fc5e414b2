//! Hostile connections: half-sent HTTP requests on the admin and broker listeners are dropped
//! after the header read timeout, connections over the limit are closed at once, and on the
//! gRPC port: connections over its limit are closed at once, a connection that does not send
//! its first bytes (or finish its TLS handshake) in time is closed, HTTP/2 peers that ignore
//! keepalive pings are dropped, old connections are sent away, and HTTP/2 is bounded in streams
//! per connection and header bytes per call.

use crate::support::*;
use ack_gateway::proto::gateway::watch_service_client::WatchServiceClient;
use ack_gateway::proto::gateway::WatchTaskRequest;
use ack_gateway::simulator::Fault;
use serde_json::json;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

async fn harness(limits: &str) -> Harness {
    Harness::with_config(
        &format!(
            "[simulator]\nmode = \"always\"\ntask_duration = \"30s\"\n\
             [auth]\nmode = \"insecure_local\"\n[broker]\nlisten = \"127.0.0.1:0\"\n[limits]\n{limits}\n"
        ),
        Default::default(),
    )
    .await
}

/// A client that sends part of a request head and then nothing.
async fn slowloris(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .expect("writes");
    stream
}

/// How long until the server closes the connection (bounded: `None` if still open at `within`).
async fn closed_after(
    stream: &mut TcpStream,
    since: Instant,
    within: Duration,
) -> Option<Duration> {
    let mut buf = [0u8; 256];
    let read = tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                // hyper may answer 408 before closing: read to the end.
                Ok(_) => continue,
            }
        }
    })
    .await;
    read.ok().map(|()| since.elapsed())
}

async fn healthz(addr: SocketAddr) -> reqwest::Result<reqwest::StatusCode> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    Ok(client
        .get(format!("http://{addr}/healthz"))
        .send()
        .await?
        .status())
}

#[tokio::test]
async fn half_sent_requests_are_dropped_after_the_header_read_timeout() {
    let h = harness("http_header_read_timeout = \"300ms\"").await;
    let admin = h.running.admin_addr;
    let broker = h.running.broker_addr.expect("broker listener");
    for addr in [admin, broker] {
        let since = Instant::now();
        let mut stalled = slowloris(addr).await;
        let after = closed_after(&mut stalled, since, Duration::from_secs(5))
            .await
            .expect("the half-sent request's connection is closed");
        eprintln!("{addr}: half-sent request dropped after {after:?}");
        assert!(after >= Duration::from_millis(250), "{after:?}");
        assert!(after < Duration::from_secs(2), "{after:?}");
    }
    // A connection that sends nothing at all, and an idle keep-alive connection after its
    // answer, go the same way.
    let since = Instant::now();
    let mut silent = TcpStream::connect(admin).await.expect("connects");
    let after = closed_after(&mut silent, since, Duration::from_secs(5))
        .await
        .expect("the silent connection is closed");
    assert!(after < Duration::from_secs(2), "{after:?}");
    let mut idle = TcpStream::connect(admin).await.expect("connects");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("writes");
    let since = Instant::now();
    let after = closed_after(&mut idle, since, Duration::from_secs(5))
        .await
        .expect("the idle connection is closed");
    eprintln!("idle keep-alive connection closed after {after:?}");
    assert!(after < Duration::from_secs(2), "{after:?}");
    // Whole requests are served as before.
    assert_eq!(healthz(admin).await.expect("answers"), 200);
}

#[tokio::test]
async fn connections_over_the_limit_are_closed_at_once_and_a_freed_place_is_reused() {
    let h = harness("http_header_read_timeout = \"10s\"\nhttp_max_connections = 3").await;
    let admin = h.running.admin_addr;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(slowloris(admin).await);
    }
    // Let the listener accept them all before the next one comes.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let since = Instant::now();
    let mut over = slowloris(admin).await;
    let after = closed_after(&mut over, since, Duration::from_secs(2))
        .await
        .expect("the connection over the limit is closed");
    eprintln!("connection over the limit closed after {after:?}");
    assert!(healthz(admin).await.is_err(), "no place for a fourth");
    // The held connections stay open (the timeout is 10 s).
    let since = Instant::now();
    assert_eq!(
        closed_after(&mut held[0], since, Duration::from_millis(200)).await,
        None
    );
    drop(held.pop());
    let status = served_within(Duration::from_secs(3), || healthz(admin)).await;
    assert_eq!(status, 200);
}

/// Retries `attempt` until it succeeds (a freed place is taken by the next connection), for at
/// most `within`; its answer.
async fn served_within<T, E: std::fmt::Display, F: std::future::Future<Output = Result<T, E>>>(
    within: Duration,
    attempt: impl Fn() -> F,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        match attempt().await {
            Ok(answer) => return answer,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("a freed place is not reused: {e}"),
        }
    }
}

#[tokio::test]
async fn grpc_metadata_over_the_limit_is_invalid_argument_naming_it_and_smaller_calls_go_on() {
    let h = harness("grpc_max_header_list_bytes = 4096").await;
    let request = || json!({"region_id": "cn-hangzhou"});
    let small = "s".repeat(1024);
    h.call(
        CS_SERVICE,
        "DescribeClustersV1",
        request(),
        &[("x-note", &small)],
        None,
    )
    .await
    .expect("a call with 1 KiB of metadata is served");
    let big = "b".repeat(8 * 1024);
    let err = h
        .call(
            CS_SERVICE,
            "DescribeClustersV1",
            request(),
            &[("x-note", &big)],
            None,
        )
        .await
        .expect_err("8 KiB of metadata is over the limit");
    eprintln!(
        "8 KiB of metadata over a 4 KiB limit: {:?} {}",
        err.code(),
        err.message()
    );
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("`x-note`"), "{}", err.message());
    assert!(
        err.message().contains("grpc_max_header_list_bytes"),
        "{}",
        err.message()
    );
    assert!(!err.message().contains("bbbb"), "the value is not quoted");
    let details = tonic_types::StatusExt::get_details_bad_request(&err).expect("BadRequest");
    assert_eq!(details.field_violations[0].field, "x-note");
    // Far over the limit, and over what HTTP/2 itself accepts: refused too, never served.
    let huge = "h".repeat(300 * 1024);
    let err = h
        .call(
            CS_SERVICE,
            "DescribeClustersV1",
            request(),
            &[("x-note", &huge)],
            None,
        )
        .await
        .expect_err("300 KiB of metadata is refused");
    eprintln!("300 KiB of metadata: {:?} {}", err.code(), err.message());
    assert_ne!(err.code(), tonic::Code::Ok);
    assert_eq!(h.sim().requests_for("DescribeClustersV1").len(), 1);
    // The limit is per call: the next call is served (on a fresh connection if need be).
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", h.running.addr))
        .expect("uri")
        .connect()
        .await
        .expect("connects");
    call(
        &channel,
        CS_SERVICE,
        "DescribeClustersV1",
        request(),
        &[],
        None,
    )
    .await
    .expect("served");
    // Connect over HTTP/1.1: the same refusal, as the Connect error JSON.
    let answer = reqwest::Client::new()
        .post(format!(
            "http://{}/{CS_SERVICE}/DescribeClustersV1",
            h.running.addr
        ))
        .header("content-type", "application/json")
        .header("x-note", &big)
        .body("{}")
        .send()
        .await
        .expect("answers");
    assert_eq!(answer.status(), 400);
    let body: serde_json::Value = answer.json().await.expect("JSON");
    assert_eq!(body["code"], "invalid_argument", "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("`x-note`"),
        "{body}"
    );
    // Only the first call went upstream (the fresh connection's call was a cache hit).
    assert_eq!(h.sim().requests_for("DescribeClustersV1").len(), 1);
}

/// The HTTP/2 client preface.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame.
const SETTINGS: [u8; 9] = [0, 0, 0, 4, 0, 0, 0, 0, 0];
const PING: u8 = 6;
const GOAWAY: u8 = 7;

/// An HTTP/2 client by hand: sends the preface and empty settings, then reads frames.
async fn h2_client(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    stream.write_all(PREFACE).await.expect("preface");
    stream.write_all(&SETTINGS).await.expect("settings");
    stream
}

/// The next frame: (type, flags, payload); `None` once the connection is closed.
async fn frame(stream: &mut TcpStream) -> Option<(u8, u8, Vec<u8>)> {
    let mut head = [0u8; 9];
    stream.read_exact(&mut head).await.ok()?;
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).await.ok()?;
    Some((head[3], head[4], payload))
}

/// Reads frames for at most `within`, acknowledging the server's settings, and its pings when
/// `answer_pings`; returns the frame types seen and whether the server closed the connection
/// (and when).
async fn frames_until_closed(
    stream: &mut TcpStream,
    answer_pings: bool,
    within: Duration,
) -> (Vec<u8>, Option<Duration>) {
    let since = Instant::now();
    let mut seen = Vec::new();
    let outcome = tokio::time::timeout(within, async {
        while let Some((kind, flags, payload)) = frame(stream).await {
            seen.push(kind);
            if kind == SETTINGS[3] && flags & 1 == 0 {
                let ack = [0, 0, 0, SETTINGS[3], 1, 0, 0, 0, 0];
                if stream.write_all(&ack).await.is_err() {
                    break;
                }
            }
            if kind == PING && flags & 1 == 0 && answer_pings {
                let mut ack = vec![0, 0, 8, PING, 1, 0, 0, 0, 0];
                ack.extend_from_slice(&payload);
                if stream.write_all(&ack).await.is_err() {
                    break;
                }
            }
        }
    })
    .await;
    (seen, outcome.ok().map(|()| since.elapsed()))
}

#[tokio::test]
async fn grpc_connections_over_the_limit_are_closed_at_once_and_a_freed_place_is_reused() {
    // The harness's own channel holds one of the three places.
    let h = harness("grpc_max_connections = 3").await;
    let addr = h.running.addr;
    h.cs("DescribeClustersV1", json!({}))
        .await
        .expect("the harness's connection is served");
    let mut held = vec![h2_client(addr).await, h2_client(addr).await];
    tokio::time::sleep(Duration::from_millis(100)).await;
    let since = Instant::now();
    let mut over = h2_client(addr).await;
    let after = closed_after(&mut over, since, Duration::from_secs(2))
        .await
        .expect("the connection over the limit is closed");
    eprintln!("gRPC connection over the limit closed after {after:?}");
    assert!(after < Duration::from_secs(1), "{after:?}");
    let metrics = reqwest::get(format!("http://{}/metrics", h.running.admin_addr))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains(
            "ack_gateway_grpc_connections_closed_total{reason=\"too_many_connections\"} 1"
        ),
        "{metrics}"
    );
    // The held connections stay open, and so does the harness's.
    let (_, closed) = frames_until_closed(&mut held[0], true, Duration::from_millis(300)).await;
    assert_eq!(closed, None);
    h.cs("DescribeClustersV1", json!({}))
        .await
        .expect("an open connection is still served");
    drop(held.pop());
    served_within(Duration::from_secs(3), || async {
        let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
            .expect("uri")
            .connect()
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        call(
            &channel,
            CS_SERVICE,
            "DescribeClustersV1",
            json!({}),
            &[],
            None,
        )
        .await
        .map(|_| ())
    })
    .await;
}

#[tokio::test]
async fn grpc_connections_that_do_not_send_their_first_bytes_in_time_are_closed() {
    let h = harness("grpc_handshake_timeout = \"300ms\"").await;
    let addr = h.running.addr;
    // Nothing at all, and half of the HTTP/2 preface.
    for sent in [&b""[..], &PREFACE[..10]] {
        let since = Instant::now();
        let mut stream = TcpStream::connect(addr).await.expect("connects");
        stream.write_all(sent).await.expect("writes");
        let after = closed_after(&mut stream, since, Duration::from_secs(5))
            .await
            .expect("the silent connection is closed");
        eprintln!("{} bytes sent: closed after {after:?}", sent.len());
        assert!(after >= Duration::from_millis(250), "{after:?}");
        assert!(after < Duration::from_secs(2), "{after:?}");
    }
    // The whole preface in time: the connection stays, past the timeout.
    let mut stream = h2_client(addr).await;
    let (_, closed) = frames_until_closed(&mut stream, true, Duration::from_millis(800)).await;
    assert_eq!(
        closed, None,
        "a connection that sent its preface stays open"
    );
    // And the timeout never touches calls.
    h.cs("DescribeClustersV1", json!({})).await.expect("served");
}

#[tokio::test]
async fn http2_peers_that_ignore_keepalive_pings_are_dropped_and_those_that_answer_stay() {
    let h =
        harness("grpc_keepalive_interval = \"200ms\"\ngrpc_keepalive_timeout = \"200ms\"").await;
    let addr = h.running.addr;
    let mut deaf = h2_client(addr).await;
    let (seen, closed) = frames_until_closed(&mut deaf, false, Duration::from_secs(5)).await;
    let closed = closed.expect("a peer that ignores pings is dropped");
    eprintln!("frames before the drop: {seen:?}; closed after {closed:?}");
    assert!(seen.contains(&PING), "the server pinged: {seen:?}");
    assert!(closed < Duration::from_secs(3), "{closed:?}");
    let mut live = h2_client(addr).await;
    let (seen, closed) = frames_until_closed(&mut live, true, Duration::from_millis(1500)).await;
    assert!(
        seen.iter().filter(|k| **k == PING).count() >= 2,
        "pinged every interval: {seen:?}"
    );
    assert_eq!(closed, None, "a peer that answers pings stays");
}

#[tokio::test]
async fn old_connections_are_sent_away_their_calls_finish_and_clients_reconnect() {
    let h = harness("grpc_max_connection_age = \"300ms\"").await;
    let addr = h.running.addr;
    let mut old = h2_client(addr).await;
    let (seen, closed) = frames_until_closed(&mut old, true, Duration::from_secs(5)).await;
    eprintln!("frames: {seen:?}; closed after {closed:?}");
    assert!(seen.contains(&GOAWAY), "sent away: {seen:?}");
    let closed = closed.expect("an old connection without calls is closed");
    assert!(closed >= Duration::from_millis(250), "{closed:?}");
    assert!(closed < Duration::from_secs(3), "{closed:?}");
    // A stream open when its connection is sent away goes on (its task takes 30 s).
    let (_, task) = create_cluster(&h, "aged").await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connects");
    let mut watch = WatchServiceClient::new(channel.clone())
        .watch_task(WatchTaskRequest { task_id: task })
        .await
        .expect("watch opens")
        .into_inner();
    watch.message().await.expect("INITIAL").expect("a message");
    let quiet = tokio::time::timeout(Duration::from_secs(1), watch.message()).await;
    assert!(
        matches!(quiet, Err(_) | Ok(Ok(Some(_)))),
        "the stream goes on past its connection's age: {quiet:?}"
    );
    // New connections are served. (tonic's own Channel keeps sending new calls on a connection
    // sent away while one of its streams lasts, and they fail: clients that honour GOAWAY open
    // a new connection, as this one does.)
    let fresh = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connects");
    call(
        &fresh,
        CS_SERVICE,
        "DescribeClustersV1",
        json!({}),
        &[],
        None,
    )
    .await
    .expect("served after the age");
    drop(watch);
}

/// One Connect unary call over an HTTP/1.1 connection of its own, kept alive: the answer's
/// status line.
async fn connect_call_on(stream: &mut TcpStream) -> String {
    let body = "{}";
    let request = format!(
        "POST /{CS_SERVICE}/DescribeClustersV1 HTTP/1.1\r\nHost: gateway\r\n\
         Content-Type: application/json\r\nCache-Control: no-cache\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("writes");
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await.expect("reads");
        assert!(
            n > 0,
            "closed before the answer: {}",
            String::from_utf8_lossy(&answer)
        );
        answer.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&answer).to_string();
        if let Some((head, rest)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap_or(0))
                })
                .unwrap_or(0);
            if rest.len() >= length {
                return head.lines().next().unwrap_or_default().to_string();
            }
        }
    }
}

#[tokio::test]
async fn idle_connections_are_closed_and_a_call_in_flight_keeps_its_connection() {
    let h = harness("grpc_max_connection_idle = \"300ms\"").await;
    let addr = h.running.addr;
    // An HTTP/2 connection that opens no call.
    let mut idle = h2_client(addr).await;
    let (_, closed) = frames_until_closed(&mut idle, true, Duration::from_secs(5)).await;
    let closed = closed.expect("an idle connection is closed");
    eprintln!("HTTP/2 connection without calls closed after {closed:?}");
    assert!(closed >= Duration::from_millis(250), "{closed:?}");
    assert!(closed < Duration::from_secs(2), "{closed:?}");
    // A call that takes longer than the idle timeout keeps its connection.
    h.sim().inject(Fault {
        operation: Some("DescribeClustersV1".into()),
        delay_ms: 900,
        times: 1,
        ..Default::default()
    });
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    let since = Instant::now();
    let status = connect_call_on(&mut stream).await;
    eprintln!("a 900 ms call: {status} after {:?}", since.elapsed());
    assert!(status.contains(" 200 "), "{status}");
    assert!(since.elapsed() >= Duration::from_millis(850));
    // Then the connection is idle: a second call within the timeout is served on it, and once
    // that one ends it is closed after the timeout.
    let status = connect_call_on(&mut stream).await;
    assert!(status.contains(" 200 "), "{status}");
    let since = Instant::now();
    let after = closed_after(&mut stream, since, Duration::from_secs(5))
        .await
        .expect("closed once idle");
    eprintln!("HTTP/1.1 connection closed {after:?} after its last call");
    assert!(after >= Duration::from_millis(250), "{after:?}");
    assert!(after < Duration::from_secs(2), "{after:?}");
    // The harness's own channel reconnects for its next call.
    h.cs("DescribeClustersV1", json!({}))
        .await
        .expect("served on a new connection");
}

#[tokio::test]
async fn a_connection_holds_at_most_the_configured_concurrent_streams() {
    let h = harness("grpc_max_concurrent_streams = 1").await;
    let (_, task) = create_cluster(&h, "streams").await;
    let mut watch = WatchServiceClient::new(h.channel.clone())
        .watch_task(WatchTaskRequest {
            task_id: task.clone(),
        })
        .await
        .expect("watch opens")
        .into_inner();
    watch.message().await.expect("INITIAL").expect("a message");
    // The only stream of the connection is taken: a unary call on it waits.
    let waiting = tokio::time::timeout(
        Duration::from_millis(500),
        h.cs("DescribeTaskInfo", json!({"task_id": task})),
    )
    .await;
    assert!(waiting.is_err(), "a second stream had to wait: {waiting:?}");
    drop(watch);
    tokio::time::timeout(
        Duration::from_secs(5),
        h.cs("DescribeTaskInfo", json!({"task_id": task})),
    )
    .await
    .expect("served once the stream closed")
    .expect("answered");
}
