//! Keyed writes benchmark (`cargo bench --bench writes`): real gRPC over loopback against the
//! embedded simulator, side by side in alternating rounds of one run:
//! - a write (`ModifyClusterTags`) without an idempotency key, and the same write with a fresh
//!   key per call (claim, send, record, journal);
//! - a replay (the same key and request again: nothing sent) next to an uncached read
//!   (`DescribeClusterDetail` with `cache-control: no-cache`);
//!
//! first on one gateway (records and journal on the replica), then, when `redis-server` is on
//! PATH, on a gateway sharing them through Redis, with the Redis commands per call.
//! `ACK_BENCH_ROUND_MS` sets the round length (default 1000).

use ack_gateway::app;
use ack_gateway::config::Config;
use ack_gateway::proto;
use ack_gateway::server::codec::RawCodec;
use bytes::Bytes;
use prost::Message as _;
use prost_reflect::DynamicMessage;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

const CS: &str = "alibabacloud.cs.v20151215.ContainerService";
const ROUNDS: usize = 3;

/// Latencies (µs) of successful calls, and the failures.
#[derive(Default)]
struct Sample {
    latencies_us: Vec<u32>,
    errors: u64,
}

impl Sample {
    fn pct(&mut self, p: f64) -> f64 {
        self.latencies_us.sort_unstable();
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        f64::from(self.latencies_us[i])
    }
}

fn encode(message: &str, json: serde_json::Value) -> Bytes {
    let desc = proto::message(&format!("alibabacloud.cs.v20151215.{message}")).expect("message");
    Bytes::from(
        DynamicMessage::deserialize(desc, json)
            .expect("request")
            .encode_to_vec(),
    )
}

async fn call(
    channel: &Channel,
    op: &str,
    body: Bytes,
    md: &[(&str, String)],
) -> Result<Bytes, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let mut req = tonic::Request::new(body);
    for (k, v) in md {
        req.metadata_mut().insert(
            tonic::metadata::MetadataKey::from_bytes(k.as_bytes()).expect("key"),
            v.parse().expect("value"),
        );
    }
    grpc.unary(req, format!("/{CS}/{op}").parse().expect("path"), RawCodec)
        .await
        .map(tonic::Response::into_inner)
}

/// What one round sends.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    Unkeyed,
    Keyed,
    Replay,
    UncachedRead,
}

/// One round of `part` calls, one at a time, for `length`.
async fn round(
    channel: &Channel,
    part: Part,
    cluster: &str,
    length: Duration,
    next_key: &AtomicU64,
) -> Sample {
    let tags = encode(
        "ModifyClusterTagsRequest",
        serde_json::json!({"cluster_id": cluster, "body": [{"key": "bench", "value": "v"}]}),
    );
    let read = encode(
        "DescribeClusterDetailRequest",
        serde_json::json!({"cluster_id": cluster}),
    );
    let mut sample = Sample::default();
    let started = Instant::now();
    while started.elapsed() < length {
        let (op, body, md) = match part {
            Part::Unkeyed => ("ModifyClusterTags", tags.clone(), vec![]),
            Part::Keyed => (
                "ModifyClusterTags",
                tags.clone(),
                vec![(
                    "idempotency-key",
                    format!("bench-{}", next_key.fetch_add(1, Ordering::Relaxed)),
                )],
            ),
            Part::Replay => (
                "ModifyClusterTags",
                tags.clone(),
                vec![("idempotency-key", "bench-replayed".to_string())],
            ),
            Part::UncachedRead => (
                "DescribeClusterDetail",
                read.clone(),
                vec![("cache-control", "no-cache".to_string())],
            ),
        };
        let t = Instant::now();
        match call(channel, op, body, &md).await {
            Ok(_) => sample
                .latencies_us
                .push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32),
            Err(_) => sample.errors += 1,
        }
    }
    sample
}

async fn start(toml: &str) -> app::Running {
    let mut config = Config::load(
        Some(toml),
        &std::collections::HashMap::<String, String>::new(),
    )
    .expect("config");
    config.listen = "127.0.0.1:0".parse().expect("addr");
    config.admin_listen = "127.0.0.1:0".parse().expect("addr");
    app::start(config).await.expect("gateway")
}

/// The four parts, alternating rounds, on one gateway: a table row each.
async fn measure(label: &str, running: &app::Running, length: Duration) {
    let channel = Channel::from_shared(format!("http://{}", running.addr))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let created = call(
        &channel,
        "CreateCluster",
        encode(
            "CreateClusterRequest",
            serde_json::json!({"name": "bench", "region_id": "cn-hangzhou"}),
        ),
        &[],
    )
    .await
    .expect("created");
    let created = DynamicMessage::decode(
        proto::message("alibabacloud.cs.v20151215.CreateClusterResponse").expect("desc"),
        created,
    )
    .expect("decode");
    let cluster = created
        .get_field_by_name("cluster_id")
        .and_then(|v| v.as_str().map(str::to_string))
        .expect("id");
    // Wait out the creation task (the cluster takes writes once running).
    tokio::time::sleep(Duration::from_millis(400)).await;
    let keys = Arc::new(AtomicU64::new(0));
    // The replayed key's first (real) write.
    let _ = round(
        &channel,
        Part::Replay,
        &cluster,
        Duration::from_millis(1),
        &keys,
    )
    .await;
    let commands = || running.gateway.shared().map_or(0, |s| s.commands());
    let parts = [
        (Part::Unkeyed, "write, no key"),
        (Part::Keyed, "write, fresh key"),
        (Part::Replay, "replay (same key)"),
        (Part::UncachedRead, "uncached read"),
    ];
    let mut samples: Vec<(Sample, u64)> = parts.iter().map(|_| (Sample::default(), 0)).collect();
    for _ in 0..ROUNDS {
        for (i, (part, _)) in parts.iter().enumerate() {
            let before = commands();
            let mut s = round(&channel, *part, &cluster, length, &keys).await;
            samples[i].1 += commands() - before;
            samples[i].0.latencies_us.append(&mut s.latencies_us);
            samples[i].0.errors += s.errors;
        }
    }
    let unkeyed_p50 = samples[0].0.pct(0.5);
    let unkeyed_p99 = samples[0].0.pct(0.99);
    for ((_, name), (sample, commands)) in parts.iter().zip(samples.iter_mut()) {
        let calls = sample.latencies_us.len();
        let (p50, p99) = (sample.pct(0.5), sample.pct(0.99));
        let per_call = if running.gateway.shared().is_some() {
            format!("{:.2}", *commands as f64 / calls.max(1) as f64)
        } else {
            "–".into()
        };
        println!(
            "| {label} | {name} | {calls} | {:.0} | {p50:.0} / {p99:.0} | {:+.0} / {:+.0} | {per_call} | {} |",
            calls as f64 / (length.as_secs_f64() * ROUNDS as f64),
            p50 - unkeyed_p50,
            p99 - unkeyed_p99,
            sample.errors
        );
    }
}

#[tokio::main]
async fn main() {
    let length = Duration::from_millis(
        std::env::var("ACK_BENCH_ROUND_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000),
    );
    let base = "[simulator]\nmode = \"always\"\ntask_duration = \"100ms\"\n\
                [rate_limit]\nupstream = { rate = 1000000.0, burst = 1000000 }\n";
    println!(
        "{ROUNDS} alternating rounds of {} ms per part, one call in flight:\n",
        length.as_millis()
    );
    println!("| state | calls | n | calls/s | p50 / p99 µs | vs no key p50 / p99 µs | Redis commands per call | errors |");
    println!("|---|---|---|---|---|---|---|---|");
    let local = start(base).await;
    measure("local", &local, length).await;
    local.shutdown().await.expect("shutdown");

    use ack_test_support::redis::{RedisServer, WhenMissing};
    let Some(server) = RedisServer::start(WhenMissing::Skip) else {
        println!("\nRedis: not run (no redis-server)");
        return;
    };
    let shared = start(&format!("{base}[redis]\nurl = \"{}\"\n", server.url())).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !shared.gateway.shared().is_some_and(|s| s.is_shared()) {
        assert!(Instant::now() < deadline, "Redis never answered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    measure("Redis", &shared, length).await;
    shared.shutdown().await.expect("shutdown");
}
