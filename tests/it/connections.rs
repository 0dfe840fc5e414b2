//! Hostile connections: half-sent HTTP requests on the admin and broker listeners are dropped
//! after the header read timeout, connections over the limit are closed at once, and HTTP/2 on
//! the gRPC port is bounded in streams per connection and header bytes per call.

use crate::support::*;
use ack_gateway::proto::gateway::watch_client::WatchClient;
use ack_gateway::proto::gateway::WatchTaskRequest;
use serde_json::json;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

async fn harness(limits: &str) -> Harness {
    Harness::with_config(
        &format!(
            "[simulator]\nmode = \"always\"\ntask_duration = \"30s\"\n\
             [broker]\nlisten = \"127.0.0.1:0\"\n[limits]\n{limits}\n"
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
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match healthz(admin).await {
            Ok(status) => {
                assert_eq!(status, 200);
                break;
            }
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("a freed place is not reused: {e}"),
        }
    }
}

#[tokio::test]
async fn grpc_headers_over_the_limit_are_refused_and_smaller_calls_go_on() {
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
}

#[tokio::test]
async fn a_connection_holds_at_most_the_configured_concurrent_streams() {
    let h = harness("grpc_max_concurrent_streams = 1").await;
    let (_, task) = create_cluster(&h, "streams").await;
    let mut watch = WatchClient::new(h.channel.clone())
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
