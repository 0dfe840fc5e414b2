//! Memory of idle watch streams: runs the gateway in this process and, in a child process, the
//! ACK simulator it talks to and a client that opens 10,000 `WatchTask` streams over loopback.
//! The split keeps the client's and the simulator's memory out of the gateway's figures. It
//! reports the gateway's resident memory when idle and per idle subscriber, and the upstream
//! polls per interval while the streams idle.
//!
//! Run: `cargo bench --bench watch_memory`. Bounded: about a minute; the child exits when told
//! to, when the parent goes away, or after five minutes.

use ack_gateway::app;
use ack_gateway::config::Config;
use ack_gateway::proto::gateway::watch_service_client::WatchServiceClient;
use ack_gateway::proto::gateway::WatchTaskRequest;
use ack_gateway::simulator::{Simulator, SimulatorOptions};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

const SUBSCRIBERS: usize = 10_000;
const TARGETS: usize = 100;
// 200 streams per connection: the default most (`[limits] grpc_max_concurrent_streams`).
const CONNECTIONS: usize = 50;
/// How long the polls are counted while every stream idles.
const WINDOW: Duration = Duration::from_secs(20);
/// The intervals of this run: production's shape, shortened so the window sees the backoff
/// reach its maximum.
const INITIAL_INTERVAL: &str = "1s";
const MAX_INTERVAL_SECS: u64 = 5;
const CHILD_ENV: &str = "WATCH_MEMORY_CHILD";

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), BoxError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if std::env::var_os(CHILD_ENV).is_some() {
        runtime.block_on(child())
    } else {
        runtime.block_on(parent())
    }
}

/// Resident memory of this process in KiB, from `/proc/self/status`.
fn rss_kib() -> Result<u64, BoxError> {
    status_kib("VmRSS")
}

/// One `kB` line of `/proc/self/status`: `VmRSS`, or its parts `RssAnon` (heap, stacks) and
/// `RssFile` (the binary's pages in use).
fn status_kib(key: &str) -> Result<u64, BoxError> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("no {key} in /proc/self/status").into())
}

/// `RssAnon` and `RssFile` in MiB, for the report.
fn parts() -> Result<String, BoxError> {
    Ok(format!(
        "(anonymous {:.1}, file-backed {:.1})",
        mib(status_kib("RssAnon")?),
        mib(status_kib("RssFile")?)
    ))
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Reads one line from the child (blocking, off the runtime).
async fn read_line(
    reader: &mut Option<BufReader<std::process::ChildStdout>>,
) -> Result<String, BoxError> {
    let mut r = reader.take().ok_or("child output")?;
    let (r, line) = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        let result = r.read_line(&mut line).map(|_| line);
        (r, result)
    })
    .await?;
    *reader = Some(r);
    Ok(line?)
}

async fn parent() -> Result<(), BoxError> {
    let mut child = Command::new(std::env::current_exe()?)
        .env(CHILD_ENV, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().ok_or("child stdin")?;
    let mut reader = Some(BufReader::new(child.stdout.take().ok_or("child stdout")?));
    let sim = read_line(&mut reader).await?;
    let mut words = sim.split_whitespace().skip(1);
    let (Some(endpoint), Some(key_id), Some(secret)) = (words.next(), words.next(), words.next())
    else {
        return Err(format!("the child did not start the simulator: {sim:?}").into());
    };

    let before = rss_kib()?;
    let toml = format!(
        "[simulator]\nmode = \"never\"\n[auth]\nmode = \"insecure_local\"\n\
         [endpoints]\ncs = \"{endpoint}\"\n\
         [profiles.default]\ntype = \"access_key\"\naccess_key_id = \"{key_id}\"\n\
         access_key_secret = \"{secret}\"\nregion = \"cn-hangzhou\"\n\
         [watch]\ninitial_interval = \"{INITIAL_INTERVAL}\"\nmax_interval = \"{MAX_INTERVAL_SECS}s\"\n\
         heartbeat_interval = \"10m\"\nmax_duration = \"1h\"\nmax_polls_per_second = 1000.0\n\
         max_streams_per_caller = {SUBSCRIBERS}\n"
    );
    let mut config = Config::load(Some(&toml), &HashMap::<String, String>::new())?;
    config.listen = "127.0.0.1:0".parse()?;
    let running = app::start(config).await?;
    let addr = format!("http://{}", running.addr);
    let started = rss_kib()?;
    let started_parts = parts()?;

    // Targets: tasks that run for an hour, so nothing changes while the streams idle. Creating
    // them also warms the gateway up (descriptors decoded, connections pooled) as serving does.
    let channel = Channel::from_shared(addr.clone())?.connect().await?;
    let mut tasks = Vec::new();
    for i in 0..TARGETS {
        tasks.push(create_cluster(&channel, i).await?);
    }
    drop(channel);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = rss_kib()?;
    let idle_parts = parts()?;

    writeln!(stdin, "OPEN {addr} {}", tasks.join(","))?;
    stdin.flush()?;
    let opened_at = Instant::now();
    let ready = read_line(&mut reader).await?;
    if !ready.starts_with("READY") {
        return Err(format!("the client did not open its streams: {ready:?}").into());
    }
    let open_secs = opened_at.elapsed().as_secs_f64();
    // Let the pollers back off to their maximum interval before measuring and counting.
    tokio::time::sleep(Duration::from_secs(MAX_INTERVAL_SECS * 3)).await;
    let busy = rss_kib()?;
    let pollers = running.watcher.active_pollers();
    let polls_before = running.watcher.polls();
    tokio::time::sleep(WINDOW).await;
    let polls = running.watcher.polls() - polls_before;
    let end = rss_kib()?;
    // Last, as it is not idle state: what server reflection costs once a client (grpcurl, a
    // UI) has used it — it is built by its first call.
    describe_by_reflection(&addr).await?;
    let reflected = rss_kib()?;
    writeln!(stdin, "STOP")?;
    drop(stdin);
    let status = child.wait()?;

    let per_subscriber = (busy.saturating_sub(idle) as f64 * 1024.0) / SUBSCRIBERS as f64;
    let intervals = WINDOW.as_secs_f64() / MAX_INTERVAL_SECS as f64;
    println!("watch_memory: {SUBSCRIBERS} idle WatchTask streams on {TARGETS} tasks over {CONNECTIONS} loopback connections");
    println!("  gateway RSS before start          {:.1} MiB", mib(before));
    println!(
        "  gateway RSS after start           {:.1} MiB {started_parts}",
        mib(started)
    );
    println!(
        "  idle gateway RSS (served {TARGETS} calls) {:.1} MiB {idle_parts}",
        mib(idle)
    );
    println!("  streams opened in                 {open_secs:.1} s");
    println!("  gateway RSS with the streams      {:.1} MiB", mib(busy));
    println!(
        "  memory per idle subscriber        {:.2} KiB",
        per_subscriber / 1024.0
    );
    println!("  active pollers                    {pollers}");
    println!(
        "  upstream polls in {:.0} s             {polls} ({:.2} per task per {MAX_INTERVAL_SECS} s interval)",
        WINDOW.as_secs_f64(),
        polls as f64 / TARGETS as f64 / intervals
    );
    println!("  gateway RSS after the window      {:.1} MiB", mib(end));
    println!(
        "  ... after a reflection client described the API {:.1} MiB",
        mib(reflected)
    );
    if !status.success() {
        return Err(format!("the client exited with {status}").into());
    }
    running.shutdown().await?;
    Ok(())
}

/// Asks server reflection (v1) for the file that defines `DescribeClusterDetail`.
async fn describe_by_reflection(addr: &str) -> Result<(), BoxError> {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    let channel = Channel::from_shared(addr.to_string())?.connect().await?;
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::FileContainingSymbol(
            "alibabacloud.cs.v20151215.ContainerService.DescribeClusterDetail".into(),
        )),
    };
    let mut answers = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::iter([request]))
        .await?
        .into_inner();
    answers.message().await?.ok_or("no reflection answer")?;
    Ok(())
}

async fn create_cluster(channel: &Channel, i: usize) -> Result<String, BoxError> {
    use ack_gateway::proto;
    use prost::Message as _;
    let desc = proto::message("alibabacloud.cs.v20151215.CreateClusterRequest")
        .ok_or("CreateClusterRequest")?;
    let resp_desc = proto::message("alibabacloud.cs.v20151215.CreateClusterResponse")
        .ok_or("CreateClusterResponse")?;
    let msg = prost_reflect::DynamicMessage::deserialize(
        desc,
        serde_json::json!({"name": format!("bench-{i}"), "region_id": "cn-hangzhou"}),
    )?;
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await?;
    let path = "/alibabacloud.cs.v20151215.ContainerService/CreateCluster".parse()?;
    let resp = grpc
        .unary(
            tonic::Request::new(bytes::Bytes::from(msg.encode_to_vec())),
            path,
            ack_gateway::server::codec::RawCodec,
        )
        .await?;
    let decoded = prost_reflect::DynamicMessage::decode(resp_desc, resp.into_inner())?;
    decoded
        .get_field_by_name("task_id")
        .and_then(|v| v.as_str().map(str::to_string))
        .ok_or_else(|| "no task id".into())
}

/// The child: serves the simulator, then on `OPEN addr tasks` opens the streams, reads each
/// one's first message, says READY, and holds them until `STOP` (or end of input, or a fixed
/// time).
async fn child() -> Result<(), BoxError> {
    let sim = Simulator::start(SimulatorOptions {
        task_duration: Duration::from_secs(3600),
        ..SimulatorOptions::default()
    })
    .await?;
    let (id, secret) = sim.root_key();
    println!("SIM {} {id} {}", sim.endpoint(), secret.expose());
    std::io::stdout().flush()?;
    let mut lines = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    })
    .await??;
    let spec = lines
        .trim()
        .strip_prefix("OPEN ")
        .ok_or("expected OPEN")?
        .to_string();
    let (addr, tasks) = spec.split_once(' ').ok_or("OPEN addr tasks")?;
    let tasks: Vec<String> = tasks.split(',').map(str::to_string).collect();
    let mut channels = Vec::new();
    for _ in 0..CONNECTIONS {
        channels.push(Channel::from_shared(addr.to_string())?.connect().await?);
    }
    let mut streams = Vec::with_capacity(SUBSCRIBERS);
    for batch in (0..SUBSCRIBERS).collect::<Vec<_>>().chunks(500) {
        let opened = futures_util::future::join_all(batch.iter().map(|&i| {
            let mut client = WatchServiceClient::new(channels[i % CONNECTIONS].clone());
            let task_id = tasks[i % tasks.len()].clone();
            async move {
                let mut stream = client
                    .watch_task(WatchTaskRequest { task_id })
                    .await?
                    .into_inner();
                stream.message().await?;
                Ok::<_, tonic::Status>(stream)
            }
        }))
        .await;
        for s in opened {
            streams.push(s?);
        }
    }
    println!("READY {}", streams.len());
    std::io::stdout().flush()?;
    let stop = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
    });
    let _ = tokio::time::timeout(Duration::from_secs(300), stop).await;
    lines.clear();
    drop(streams);
    sim.shutdown().await;
    Ok(())
}
