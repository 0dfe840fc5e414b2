//! Gateway benchmark (a bench binary, `cargo bench --bench gateway`): real gRPC over loopback.
//!
//! 1. ROA signing time without a body and with a 1 KB body.
//! 2. Cached `DescribeClusterDetail` through the gateway vs a trivial tonic echo server that
//!    returns a message of the same size, at 1, 64 and 256 calls in flight, in alternating rounds
//!    so both see the same machine state.
//! 3. Uncached calls through the gateway (`cache-control: no-cache`) vs direct, signed reqwest
//!    calls to the simulator, at 1 and 64 in flight.
//!
//! Everything (load generator, gateway, simulator, echo server) runs in this one process on the
//! machine's cores; the figures are for this machine, printed as a Markdown table.
//!
//! For profiling one part, environment variables narrow the run: `ACK_BENCH_ONLY=sign|cached|
//! uncached`, `ACK_BENCH_SIDE=gateway|reference` (the reference is the echo server for cached
//! rounds and direct calls for uncached ones), `ACK_BENCH_IN_FLIGHT=1,64` and
//! `ACK_BENCH_ROUND_MS=2000`. `benches/instructions_per_call.sh` uses them to count the
//! instructions of one call, a figure that, unlike calls/s, barely moves between runs.
//! `ACK_BENCH_CONNECTION_IDLE=off` turns the gateway's per-connection call count off.

use ack_gateway::app;
use ack_gateway::config::Config;
use ack_gateway::proto;
use ack_gateway::secret::Secret;
use ack_gateway::server::codec::RawCodec;
use ack_gateway::signer::{roa, v3, SigningKey};
use bytes::Bytes;
use prost::Message as _;
use prost_reflect::DynamicMessage;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

const ROUND: Duration = Duration::from_secs(2);
const ROUNDS: usize = 3;

/// Which parts of the benchmark run (see the module comment).
struct Knobs {
    only: String,
    side: Option<String>,
    in_flight: Option<Vec<usize>>,
    round: Duration,
}

impl Knobs {
    fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Knobs {
            only: var("ACK_BENCH_ONLY").unwrap_or_default(),
            side: var("ACK_BENCH_SIDE"),
            in_flight: var("ACK_BENCH_IN_FLIGHT").map(|v| {
                v.split(',')
                    .map(|n| n.trim().parse().expect("ACK_BENCH_IN_FLIGHT: numbers"))
                    .collect()
            }),
            round: var("ACK_BENCH_ROUND_MS")
                .map(|ms| Duration::from_millis(ms.parse().expect("ACK_BENCH_ROUND_MS: a number")))
                .unwrap_or(ROUND),
        }
    }

    /// Whether the rounds of `part` (`sign`, `cached`, `uncached`, `redis`) run.
    fn runs(&self, part: &str) -> bool {
        self.only.is_empty() || self.only == part
    }

    /// Whether `side` (`gateway` or `reference`) runs.
    fn side(&self, side: &str) -> bool {
        self.side.as_deref().is_none_or(|s| s == side)
    }

    /// With one side chosen (a profiling run), the exact number of calls made, which
    /// `instructions_per_call.sh` divides by.
    fn report_calls(&self, in_flight: usize, reference: &Sample, gateway: &Sample) {
        if self.side.is_some() {
            println!(
                "calls at {in_flight} in flight: reference {}, gateway {}",
                reference.calls + reference.errors,
                gateway.calls + gateway.errors
            );
        }
    }

    fn levels(&self, default: &[usize]) -> Vec<usize> {
        self.in_flight.clone().unwrap_or_else(|| default.to_vec())
    }
}
const CS: &str = "alibabacloud.cs.v20151215.ContainerService";
const DESCRIBE_PATH: &str = "/alibabacloud.cs.v20151215.ContainerService/DescribeClusterDetail";

#[derive(Default, Clone)]
struct Sample {
    calls: u64,
    elapsed: Duration,
    latencies_us: Vec<u32>,
    errors: u64,
}

impl Sample {
    fn merge(&mut self, other: Sample) {
        self.calls += other.calls;
        self.elapsed += other.elapsed;
        self.latencies_us.extend(other.latencies_us);
        self.errors += other.errors;
    }
    fn rate(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64()
    }
    fn pct(&mut self, p: f64) -> f64 {
        self.latencies_us.sort_unstable();
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        self.latencies_us[i] as f64
    }
}

/// Runs `in_flight` workers calling `f` for `length`.
async fn round<F, Fut>(length: Duration, in_flight: usize, f: F) -> Sample
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = bool> + Send,
{
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..in_flight {
        let f = f.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = Sample::default();
            while started.elapsed() < length {
                let t = Instant::now();
                let ok = f(w).await;
                s.latencies_us
                    .push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                if ok {
                    s.calls += 1;
                } else {
                    s.errors += 1;
                }
            }
            s
        }));
    }
    let mut total = Sample::default();
    for t in tasks {
        total.merge(t.await.expect("worker"));
    }
    total.elapsed = started.elapsed();
    total
}

/// One round of `DescribeClusterDetail` calls through the gateway, spread over its channels.
async fn describe_round(
    length: Duration,
    channels: &[Channel],
    describe: &Bytes,
    in_flight: usize,
    md: &'static [(&'static str, &'static str)],
) -> Sample {
    let channels = channels.to_vec();
    let body = describe.clone();
    round(length, in_flight, move |w| {
        unary(
            channels[w % channels.len()].clone(),
            DESCRIBE_PATH,
            body.clone(),
            md,
        )
    })
    .await
}

async fn unary(
    channel: Channel,
    path: &'static str,
    body: Bytes,
    md: &'static [(&'static str, &'static str)],
) -> bool {
    let mut grpc = tonic::client::Grpc::new(channel);
    if grpc.ready().await.is_err() {
        return false;
    }
    let mut req = tonic::Request::new(body);
    for (k, v) in md {
        req.metadata_mut().insert(*k, v.parse().expect("metadata"));
    }
    grpc.unary(req, path.parse().expect("path"), RawCodec)
        .await
        .is_ok()
}

/// A trivial gRPC server answering every call with the same bytes.
#[derive(Clone)]
struct Echo(Bytes);

impl tower::Service<http::Request<tonic::body::Body>> for Echo {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let reply = self.0.clone();
        Box::pin(async move {
            struct Handler(Bytes);
            impl tonic::server::UnaryService<Bytes> for Handler {
                type Response = Bytes;
                type Future = Pin<
                    Box<dyn Future<Output = Result<tonic::Response<Bytes>, tonic::Status>> + Send>,
                >;
                fn call(&mut self, _req: tonic::Request<Bytes>) -> Self::Future {
                    let r = self.0.clone();
                    Box::pin(async move { Ok(tonic::Response::new(r)) })
                }
            }
            Ok(tonic::server::Grpc::new(RawCodec)
                .unary(Handler(reply), req)
                .await)
        })
    }
}

impl tonic::server::NamedService for Echo {
    const NAME: &'static str = "bench.Echo";
}

async fn channels(addr: std::net::SocketAddr, n: usize) -> Vec<Channel> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(
            Channel::from_shared(format!("http://{addr}"))
                .expect("uri")
                .connect()
                .await
                .expect("connect"),
        );
    }
    out
}

/// Nanoseconds per call of `f`: the best of 5 runs of 200,000 calls.
fn best_of(mut f: impl FnMut(u32)) -> f64 {
    let n = 200_000u32;
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t = Instant::now();
        for i in 0..n {
            f(i);
        }
        best = best.min(t.elapsed().as_nanos() as f64 / f64::from(n));
    }
    best
}

/// ROA signing (the common headers, the string to sign, the MAC and the `Authorization`
/// value) without and with a 1 KB body, and the body's Content-MD5 alone.
fn sign_bench() -> (f64, f64, f64) {
    let key = SigningKey::new("LTAIbench", Secret::new("bench-secret-0123456789"), None);
    let query = vec![("page_size".to_string(), "10".to_string())];
    let body = vec![b'x'; 1024];
    let no_extra = BTreeMap::new();
    let sign = |body: Option<&[u8]>, i: u32| {
        let headers = roa::base_headers(
            "2015-12-15",
            "cn-hangzhou",
            "Wed, 16 Dec 2015 12:20:18 GMT",
            "fbf6909a-93a5-45d3-8b1c-3e03a7916799",
            body,
            &key,
            &no_extra,
        );
        let auth = roa::authorization(
            &roa::RoaRequest {
                method: if body.is_some() { "POST" } else { "GET" },
                path: "/api/v1/clusters",
                query: &query,
                headers: &headers,
            },
            &key,
        );
        std::hint::black_box((auth, i));
    };
    let plain = best_of(|i| sign(None, i));
    let with_body = best_of(|i| sign(Some(&body), i));
    let md5 = best_of(|i| {
        std::hint::black_box((roa::content_md5(std::hint::black_box(&body)), i));
    });
    (plain, with_body, md5)
}

/// V3 signing (the headers with the payload hash, the canonical request, its hash, the MAC
/// and the `Authorization` value), measured like V1's: without and with a 1 KB body.
fn sign_v3_bench() -> (f64, f64, f64) {
    let key = SigningKey::new("LTAIbench", Secret::new("bench-secret-0123456789"), None);
    let query = vec![("page_size".to_string(), "10".to_string())];
    let body = vec![b'x'; 1024];
    let no_extra = BTreeMap::new();
    let sign = |body: Option<&[u8]>, i: u32| {
        let headers = v3::base_headers(
            v3::HeaderInputs {
                host: "cs.cn-hangzhou.aliyuncs.com",
                action: "DescribeClustersV1",
                version: "2015-12-15",
                date: "2015-12-16T12:20:18Z",
                nonce: "fbf6909a-93a5-45d3-8b1c-3e03a7916799",
                body,
            },
            &key,
            &no_extra,
        );
        let signed = v3::sign(
            &v3::V3Request {
                method: if body.is_some() { "POST" } else { "GET" },
                path: "/api/v1/clusters",
                query: &query,
                headers: &headers,
            },
            &key,
        );
        std::hint::black_box((signed.authorization, i));
    };
    let plain = best_of(|i| sign(None, i));
    let with_body = best_of(|i| sign(Some(&body), i));
    let sha = best_of(|i| {
        std::hint::black_box((v3::sha256_hex(std::hint::black_box(&body)), i));
    });
    (plain, with_body, sha)
}

#[tokio::main]
async fn main() {
    let knobs = Knobs::from_env();
    let signing = if knobs.runs("sign") {
        let (sign_plain, sign_body, md5) = sign_bench();
        let (v3_plain, v3_body, sha) = sign_v3_bench();
        format!("ROA signing V1: {sign_plain:.0} ns without a body, {sign_body:.0} ns with a 1 KB body, of which {md5:.0} ns is the body's Content-MD5 (best of 5 × 200,000)\nROA signing V3: {v3_plain:.0} ns without a body, {v3_body:.0} ns with a 1 KB body, of which {sha:.0} ns is the body's SHA-256 (best of 5 × 200,000)")
    } else {
        "ROA signing: not run (`ACK_BENCH_ONLY`)".to_string()
    };
    if knobs.only == "sign" {
        println!("{signing}");
        return;
    }
    let length = knobs.round;

    // The gateway and its simulator, with budgets out of the way. `ACK_BENCH_CONNECTION_IDLE`
    // sets `[limits] grpc_max_connection_idle` (e.g. `off`, which counts no calls per
    // connection), to measure what counting them costs.
    let idle = std::env::var("ACK_BENCH_CONNECTION_IDLE")
        .map(|v| format!("[limits]\ngrpc_max_connection_idle = \"{v}\"\n"))
        .unwrap_or_default();
    let toml = format!("[simulator]\nmode = \"always\"\n[rate_limit]\nupstream = {{ rate = 1000000.0, burst = 1000000 }}\n[cache]\nttl = \"10m\"\n{idle}");
    let mut config = Config::load(
        Some(&toml),
        &std::collections::HashMap::<String, String>::new(),
    )
    .expect("config");
    config.listen = "127.0.0.1:0".parse().expect("addr");
    let running = app::start(config).await.expect("gateway");
    let gw = channels(running.addr, 4).await;
    let sim = running.simulator.as_ref().expect("simulator");

    // A cluster to describe, and the size of its answer.
    let create = DynamicMessage::deserialize(
        proto::message("alibabacloud.cs.v20151215.CreateClusterRequest").expect("desc"),
        serde_json::json!({"name": "bench", "region_id": "cn-hangzhou"}),
    )
    .expect("request");
    let mut grpc = tonic::client::Grpc::new(gw[0].clone());
    grpc.ready().await.expect("ready");
    let created = grpc
        .unary(
            tonic::Request::new(Bytes::from(create.encode_to_vec())),
            format!("/{CS}/CreateCluster").parse().expect("path"),
            RawCodec,
        )
        .await
        .expect("created")
        .into_inner();
    let created = DynamicMessage::decode(
        proto::message("alibabacloud.cs.v20151215.CreateClusterResponse").expect("desc"),
        created,
    )
    .expect("decode");
    let cluster_id = created
        .get_field_by_name("cluster_id")
        .and_then(|v| v.as_str().map(str::to_string))
        .expect("id");
    let describe = DynamicMessage::deserialize(
        proto::message("alibabacloud.cs.v20151215.DescribeClusterDetailRequest").expect("desc"),
        serde_json::json!({"cluster_id": cluster_id}),
    )
    .expect("request");
    let describe = Bytes::from(describe.encode_to_vec());
    let mut grpc = tonic::client::Grpc::new(gw[0].clone());
    grpc.ready().await.expect("ready");
    let answer = grpc
        .unary(
            tonic::Request::new(describe.clone()),
            format!("/{CS}/DescribeClusterDetail")
                .parse()
                .expect("path"),
            RawCodec,
        )
        .await
        .expect("warm the cache")
        .into_inner();

    // The echo server answering with a message of the same size.
    let echo_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let echo_addr = echo_listener.local_addr().expect("addr");
    let echo = Echo(answer.clone());
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(echo)
            .serve_with_incoming(
                tonic::transport::server::TcpIncoming::from(echo_listener).with_nodelay(Some(true)),
            )
            .await
            .expect("echo server");
    });
    let echo_channels = channels(echo_addr, 4).await;

    println!("# ack-gateway benchmark\n");
    println!("{signing}\n");
    println!(
        "Cached DescribeClusterDetail ({} byte answer) vs echo, {ROUNDS} alternating rounds of {} ms:\n",
        answer.len(),
        length.as_millis()
    );
    println!("| in flight | echo calls/s | gateway calls/s | ratio | echo p50/p99 µs | gateway p50/p99 µs | p99 ratio |");
    println!("|---|---|---|---|---|---|---|");
    let cached_levels = if knobs.runs("cached") {
        knobs.levels(&[1, 64, 256])
    } else {
        Vec::new()
    };
    for in_flight in cached_levels {
        let mut echo = Sample::default();
        let mut gateway = Sample::default();
        for _ in 0..ROUNDS {
            let chans = echo_channels.clone();
            let body = describe.clone();
            if knobs.side("reference") {
                echo.merge(
                    round(length, in_flight, move |w| {
                        unary(
                            chans[w % chans.len()].clone(),
                            "/bench.Echo/Call",
                            body.clone(),
                            &[],
                        )
                    })
                    .await,
                );
            }
            if knobs.side("gateway") {
                gateway.merge(describe_round(length, &gw, &describe, in_flight, &[]).await);
            }
        }
        knobs.report_calls(in_flight, &echo, &gateway);
        let (ep50, ep99, gp50, gp99) = (
            echo.pct(0.5),
            echo.pct(0.99),
            gateway.pct(0.5),
            gateway.pct(0.99),
        );
        println!(
            "| {in_flight} | {:.0} | {:.0} | {:.0} % | {ep50:.0} / {ep99:.0} | {gp50:.0} / {gp99:.0} | {:.2}× |{}",
            echo.rate(),
            gateway.rate(),
            100.0 * gateway.rate() / echo.rate(),
            gp99 / ep99,
            if gateway.errors + echo.errors > 0 { format!(" errors: {} / {}", echo.errors, gateway.errors) } else { String::new() }
        );
    }

    // Uncached: through the gateway to the simulator vs direct signed reqwest calls.
    let (key_id, secret) = sim.root_key();
    let key = Arc::new(SigningKey::new(key_id, secret, None));
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(512)
        .build()
        .expect("client");
    let sim_base = sim.endpoint();
    let path = format!("/clusters/{cluster_id}");
    println!("\nUncached DescribeClusterDetail (`cache-control: no-cache`) vs direct signed reqwest calls to the simulator, {ROUNDS} alternating rounds of {} ms:\n", length.as_millis());
    println!(
        "| in flight | direct calls/s | gateway calls/s | direct p50/p99 µs | gateway p50/p99 µs |"
    );
    println!("|---|---|---|---|---|");
    let uncached_levels = if knobs.runs("uncached") {
        knobs.levels(&[1, 64])
    } else {
        Vec::new()
    };
    for in_flight in uncached_levels {
        let mut direct = Sample::default();
        let mut gateway = Sample::default();
        for _ in 0..ROUNDS {
            let (http, key, base, path) =
                (http.clone(), key.clone(), sim_base.clone(), path.clone());
            if knobs.side("reference") {
                direct.merge(
                    round(length, in_flight, move |_| {
                        let (http, key, base, path) =
                            (http.clone(), key.clone(), base.clone(), path.clone());
                        async move {
                            let nonce = ack_gateway::signer::new_nonce();
                            let date = httpdate::fmt_http_date(std::time::SystemTime::now());
                            let no_extra = BTreeMap::new();
                            let headers = roa::base_headers(
                                "2015-12-15",
                                "cn-hangzhou",
                                &date,
                                &nonce,
                                None,
                                &key,
                                &no_extra,
                            );
                            let auth = roa::authorization(
                                &roa::RoaRequest {
                                    method: "GET",
                                    path: &path,
                                    query: &[],
                                    headers: &headers,
                                },
                                &key,
                            );
                            let mut req = http
                                .get(format!("{base}{path}"))
                                .header("authorization", auth);
                            for (k, v) in &headers {
                                req = req.header(k.as_ref(), v.as_ref());
                            }
                            match req.send().await {
                                Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                                Err(_) => false,
                            }
                        }
                    })
                    .await,
                );
            }
            if knobs.side("gateway") {
                gateway.merge(
                    describe_round(
                        length,
                        &gw,
                        &describe,
                        in_flight,
                        &[("cache-control", "no-cache")],
                    )
                    .await,
                );
            }
        }
        knobs.report_calls(in_flight, &direct, &gateway);
        let (dp50, dp99, gp50, gp99) = (
            direct.pct(0.5),
            direct.pct(0.99),
            gateway.pct(0.5),
            gateway.pct(0.99),
        );
        println!(
            "| {in_flight} | {:.0} | {:.0} | {dp50:.0} / {dp99:.0} | {gp50:.0} / {gp99:.0} |{}",
            direct.rate(),
            gateway.rate(),
            if gateway.errors + direct.errors > 0 {
                format!(" errors: {} / {}", direct.errors, gateway.errors)
            } else {
                String::new()
            }
        );
    }
    if knobs.runs("redis") {
        redis_rounds(&knobs, &running, &gw, &describe).await;
    }
    running.shutdown().await.expect("shutdown");
}

/// Request metadata of a benchmark call.
type Metadata = &'static [(&'static str, &'static str)];

/// The same calls through a gateway sharing state in a real `redis-server` (started here; the
/// part is skipped without one), side by side with the gateway above: cached hits (which must
/// not touch Redis) and uncached calls (one budget round trip each), and Redis commands per call
/// from `INFO commandstats`.
async fn redis_rounds(knobs: &Knobs, running: &app::Running, local: &[Channel], describe: &Bytes) {
    use ack_test_support::redis::{RedisServer, WhenMissing};
    let Some(server) = RedisServer::start(WhenMissing::Skip) else {
        println!("\nRedis: not run (no redis-server)");
        return;
    };
    let port = server.port();
    let sim = running.simulator.as_ref().expect("simulator");
    let (id, secret) = sim.root_key();
    let toml = format!(
        "[simulator]\nmode = \"never\"\n[auth]\nmode = \"insecure_local\"\n[endpoints]\ncs = \"{}\"\n\
         [profiles.default]\ntype = \"access_key\"\naccess_key_id = \"{id}\"\naccess_key_secret = \"{}\"\n\
         region = \"cn-hangzhou\"\n[rate_limit]\nupstream = {{ rate = 1000000.0, burst = 1000000 }}\n\
         [cache]\nttl = \"10m\"\n[redis]\nurl = \"redis://127.0.0.1:{port}\"\n",
        sim.endpoint(),
        secret.expose()
    );
    let mut config = Config::load(
        Some(&toml),
        &std::collections::HashMap::<String, String>::new(),
    )
    .expect("config");
    config.listen = "127.0.0.1:0".parse().expect("addr");
    config.admin_listen = "127.0.0.1:0".parse().expect("addr");
    let shared = app::start(config).await.expect("shared gateway");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !shared.gateway.shared().is_some_and(|s| s.is_shared()) {
        assert!(Instant::now() < deadline, "Redis never answered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let remote = channels(shared.addr, 4).await;
    // Warm the shared gateway's cache.
    let _ = describe_round(Duration::from_millis(200), &remote, describe, 1, &[]).await;
    let commands = |s: &app::Running| s.gateway.shared().map_or(0, |s| s.commands());
    let length = knobs.round;
    println!("\nWith Redis (`[redis]`, a local redis-server) vs without, {ROUNDS} alternating rounds of {} ms:\n", length.as_millis());
    println!("| calls | in flight | local calls/s | shared calls/s | local p50/p99 µs | shared p50/p99 µs | Redis commands per call |");
    println!("|---|---|---|---|---|---|---|");
    let parts: [(&str, Metadata, usize); 4] = [
        ("cached", &[], 1),
        ("cached", &[], 64),
        ("uncached", &[("cache-control", "no-cache")], 1),
        ("uncached", &[("cache-control", "no-cache")], 64),
    ];
    for (name, md, in_flight) in parts {
        let (mut without, mut with) = (Sample::default(), Sample::default());
        let before = commands(&shared);
        for _ in 0..ROUNDS {
            without.merge(describe_round(length, local, describe, in_flight, md).await);
            with.merge(describe_round(length, &remote, describe, in_flight, md).await);
        }
        let per_call = (commands(&shared) - before) as f64 / with.calls.max(1) as f64;
        let (lp50, lp99, sp50, sp99) = (
            without.pct(0.5),
            without.pct(0.99),
            with.pct(0.5),
            with.pct(0.99),
        );
        println!(
            "| {name} | {in_flight} | {:.0} | {:.0} | {lp50:.0} / {lp99:.0} | {sp50:.0} / {sp99:.0} | {per_call:.3} |",
            without.rate(),
            with.rate()
        );
    }
    // What Redis itself counted, all parts together.
    if let Ok(out) = std::process::Command::new("redis-cli")
        .args(["-p", &port.to_string(), "INFO", "commandstats"])
        .output()
    {
        let text = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("cmdstat_")).collect();
        println!("\nINFO commandstats: {}", lines.join("; "));
    }
    shared.shutdown().await.expect("shutdown");
    drop(server);
}
