//! Compression benchmark (a bench binary, `cargo bench --bench compression`): bytes on the wire
//! and CPU per call for `DescribeClusterNodes` of a 1,000-node cluster, gzip vs identity, side by
//! side in one run.
//!
//! The simulator's cluster has one node pool of 1,000 nodes; the API pages its nodes (at most
//! 100 a page), so a client reads the whole cluster in 10 calls. Each round reads every page over
//! native gRPC (HTTP/2, the harness's channel used as a raw HTTP client, so the client neither
//! decodes nor inflates), once asking for gzip (`grpc-accept-encoding: gzip`) and once not. The
//! answers come from the gateway's cache after the first round, so the CPU measured is the
//! gateway's own work (and the client's framing, the same in both modes); the difference between
//! the modes is what compressing costs. CPU is the process's user + system time from
//! `/proc/self/stat` (clock ticks), over many calls; rounds alternate between the modes.

use ack_gateway::app;
use ack_gateway::config::Config;
use bytes::{Buf as _, Bytes};
use http_body_util::BodyExt as _;
use prost::Message as _;
use std::time::{Duration, Instant};
use tower::ServiceExt as _;

const NODES: i64 = 1000;
const PAGE: i64 = 100;
const ROUNDS: usize = 6;
const LISTINGS_PER_ROUND: usize = 60;

/// The process's CPU time so far (user + system), from `/proc/self/stat`.
fn cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // The kernel's USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

fn encode(message: &str, request: serde_json::Value) -> Vec<u8> {
    let desc = ack_gateway::proto::message(message).expect("message");
    prost_reflect::DynamicMessage::deserialize(desc, request)
        .expect("request")
        .encode_to_vec()
}

fn framed(message: &[u8]) -> Bytes {
    let mut out = vec![0u8];
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    Bytes::from(out)
}

struct Totals {
    calls: u64,
    wire_bytes: u64,
    message_bytes: u64,
    cpu: Duration,
    wall: Duration,
}

/// One call: the answer's body bytes as sent, and its message's size once inflated.
async fn call(
    channel: &tonic::transport::Channel,
    uri: &str,
    body: Bytes,
    gzip: bool,
) -> (u64, u64) {
    let mut req = http::Request::builder()
        .method("POST")
        .uri(uri)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("cache-control", "max-age=3600");
    if gzip {
        req = req.header("grpc-accept-encoding", "gzip");
    }
    let body = tonic::body::Body::new(
        http_body_util::Full::new(body)
            .map_err(|never: std::convert::Infallible| -> tonic::Status { match never {} }),
    );
    let response = channel
        .clone()
        .oneshot(req.body(body).expect("request"))
        .await
        .expect("answered");
    let collected = response.into_body().collect().await.expect("body");
    let status = collected
        .trailers()
        .and_then(|t| t.get("grpc-status"))
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    assert_eq!(status.as_deref(), Some("0"), "a successful call");
    let mut bytes = collected.to_bytes();
    let wire = bytes.len() as u64;
    let flags = bytes.get_u8();
    let len = bytes.get_u32() as usize;
    let message = if flags & 1 != 0 {
        use std::io::Read as _;
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&bytes[..len])
            .read_to_end(&mut out)
            .expect("gzip");
        out.len() as u64
    } else {
        len as u64
    };
    (wire, message)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut config = Config::load(
        Some("[simulator]\nmode = \"always\"\ntask_duration = \"100ms\"\n"),
        &std::collections::HashMap::<String, String>::new(),
    )
    .expect("config");
    config.listen = "127.0.0.1:0".parse().expect("addr");
    config.admin_listen = "127.0.0.1:0".parse().expect("addr");
    let running = app::start(config).await.expect("gateway starts");
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", running.addr))
        .expect("uri")
        .connect()
        .await
        .expect("connects");
    let addr = running.addr;
    let cs = "alibabacloud.cs.v20151215.ContainerService";

    // A cluster with one 1,000-node pool, its tasks waited for.
    let json_call = |op: &'static str, request: serde_json::Value| {
        let channel = channel.clone();
        async move {
            let bytes = framed(&encode(
                &format!("alibabacloud.cs.v20151215.{op}Request"),
                request,
            ));
            let req = http::Request::builder()
                .method("POST")
                .uri(format!("http://{addr}/{cs}/{op}"))
                .header("content-type", "application/grpc")
                .header("te", "trailers")
                .body(tonic::body::Body::new(
                    http_body_util::Full::new(bytes).map_err(
                        |never: std::convert::Infallible| -> tonic::Status { match never {} },
                    ),
                ))
                .expect("request");
            let response = channel.oneshot(req).await.expect("answered");
            let mut body = response
                .into_body()
                .collect()
                .await
                .expect("body")
                .to_bytes();
            body.advance(5);
            let desc =
                ack_gateway::proto::message(&format!("alibabacloud.cs.v20151215.{op}Response"))
                    .expect("response");
            let message = prost_reflect::DynamicMessage::decode(desc, body).expect("decodes");
            serde_json::to_value(&message).expect("json")
        }
    };
    let wait = |task: String| {
        let json_call = &json_call;
        async move {
            for _ in 0..200 {
                let info =
                    json_call("DescribeTaskInfo", serde_json::json!({"task_id": task})).await;
                if info["state"] == "success" {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("task {task} did not finish");
        }
    };
    let created = json_call(
        "CreateCluster",
        serde_json::json!({"name": "bench", "region_id": "cn-hangzhou", "cluster_type": "ManagedKubernetes"}),
    )
    .await;
    let cluster = created["cluster_id"]
        .as_str()
        .expect("cluster id")
        .to_string();
    wait(created["task_id"].as_str().expect("task").to_string()).await;
    let pool = json_call(
        "CreateClusterNodePool",
        serde_json::json!({"cluster_id": cluster, "nodepool_info": {"name": "big"},
                           "scaling_group": {"desired_size": NODES, "instance_types": ["ecs.g7.xlarge"]}}),
    )
    .await;
    wait(pool["task_id"].as_str().expect("task").to_string()).await;

    let pages: Vec<Bytes> = (1..=NODES / PAGE)
        .map(|n| {
            framed(&encode(
                "alibabacloud.cs.v20151215.DescribeClusterNodesRequest",
                serde_json::json!({"cluster_id": cluster, "page_size": PAGE.to_string(),
                                   "page_number": n.to_string()}),
            ))
        })
        .collect();
    let uri = format!("http://{addr}/{cs}/DescribeClusterNodes");
    // Warm the cache (and check the listing is whole).
    let mut nodes_bytes = 0;
    for page in &pages {
        nodes_bytes += call(&channel, &uri, page.clone(), false).await.1;
    }

    let mut totals = [false, true].map(|_| Totals {
        calls: 0,
        wire_bytes: 0,
        message_bytes: 0,
        cpu: Duration::ZERO,
        wall: Duration::ZERO,
    });
    for round in 0..ROUNDS {
        for gzip in if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        } {
            let t = &mut totals[usize::from(gzip)];
            let (cpu0, wall0) = (cpu(), Instant::now());
            for _ in 0..LISTINGS_PER_ROUND {
                for page in &pages {
                    let (wire, message) = call(&channel, &uri, page.clone(), gzip).await;
                    t.calls += 1;
                    t.wire_bytes += wire;
                    t.message_bytes += message;
                }
            }
            t.cpu += cpu() - cpu0;
            t.wall += wall0.elapsed();
        }
    }
    println!(
        "DescribeClusterNodes of a {NODES}-node cluster ({} pages of {PAGE}; {} message bytes in all), \
         cached answers, native gRPC over loopback, {ROUNDS} alternating rounds of {LISTINGS_PER_ROUND} listings per mode:\n",
        pages.len(),
        nodes_bytes
    );
    println!("| mode | calls | wire bytes per page | wire bytes per 1,000-node listing | ratio | CPU per call | wall per call |");
    println!("|---|---|---|---|---|---|---|");
    let identity_wire = totals[0].wire_bytes as f64 / totals[0].calls as f64;
    for (name, t) in [("identity", &totals[0]), ("gzip", &totals[1])] {
        let per_call = t.wire_bytes as f64 / t.calls as f64;
        println!(
            "| {name} | {} | {:.0} | {:.0} | {:.1} % | {:.0} µs | {:.0} µs |",
            t.calls,
            per_call,
            per_call * pages.len() as f64,
            100.0 * per_call / identity_wire,
            t.cpu.as_secs_f64() * 1e6 / t.calls as f64,
            t.wall.as_secs_f64() * 1e6 / t.calls as f64,
        );
        assert_eq!(
            t.message_bytes / t.calls,
            nodes_bytes / pages.len() as u64,
            "the same answers"
        );
    }
    running.shutdown().await.expect("stops");
}
