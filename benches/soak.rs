//! Soak benchmark (a bench binary, `cargo bench --bench soak`): the real gateway and the ACK
//! simulator in this process, over loopback, under a mixed load for `ACK_SOAK_SECONDS`
//! (default 60):
//!
//! - cached reads (`DescribeClusterDetail`) and uncached ones (`DescribeClustersV1` with
//!   `cache-control: no-cache`), through an AccessKey profile and a `ram_role_arn` profile whose
//!   STS triples the simulator issues for 6 s only, so they are refreshed all along;
//! - mutations: `ScaleClusterNodePool` on two node pools, each followed to its end by a
//!   `WatchTask` stream, and `CreateCluster` / `DeleteCluster` pairs;
//! - `WatchCluster` streams opened and dropped after a random while;
//! - a fault injected every 250 ms: a 503, throttling (with its rate-limit header), or a delay;
//! - a configuration reload half-way (the file is rewritten with a new profile, which the
//!   gateway's reload loop picks up; the probe calls through the new profile until it answers).
//!
//! Every call's outcome is classified: OK, or a code that the injected faults explain
//! (`UNAVAILABLE` for a 503, `RESOURCE_EXHAUSTED` for throttling and the slow-down after it),
//! or unexpected (anything else: must be 0). It prints calls by outcome, p50/p99 latency of the
//! unary calls, and the gateway's resident memory, open file descriptors and tokio tasks after a
//! warm-up (with the load stopped) and at the end (load stopped, streams closed).
//!
//! Three processes, so that the figures are the gateway's alone: this one (the load and the
//! report), and two children started from this same binary: the gateway (`app::start`, reading
//! its configuration file, answering `tasks` on its standard input with its count of tokio
//! tasks) and the ACK simulator (faults injected over its HTTP `/__simulator/faults`; it keeps
//! every nonce for its 15-minute replay window and every task it ran, so its memory grows with
//! the calls it serves). The gateway talks to it as to the cloud (`[simulator] mode = "never"`
//! with `[endpoints]`): a reload is ignored while the gateway serves its embedded simulator.
//! Each child exits when its standard input closes, that is when this process ends.

use ack_gateway::app;
use ack_gateway::config::Config;
use ack_gateway::proto;
use ack_gateway::proto::gateway::watch_service_client::WatchServiceClient;
use ack_gateway::proto::gateway::WatchEventKind as Kind;
use ack_gateway::proto::gateway::{WatchClusterRequest, WatchTaskRequest};
use ack_gateway::server::codec::RawCodec;
use ack_gateway::simulator::{Fault, Simulator, SimulatorOptions};
use bytes::Bytes;
use prost::Message as _;
use prost_reflect::DynamicMessage;
use rand::Rng;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::transport::Channel;
use tonic::Code;

const CS: &str = "alibabacloud.cs.v20151215.ContainerService";
const ROLE_ARN: &str = "acs:ram::1000000000000001:role/soak";
/// How long the simulator's STS triples live.
const STS_LIFETIME: Duration = Duration::from_secs(6);
/// Every unary call's deadline; through the role profile, shorter than the part of the
/// triples' lifetime left when the gateway refreshes them (a fifth of 6 s), since a call is
/// never signed with a credential that expires within its deadline.
const DEADLINE: Duration = Duration::from_secs(10);
const ROLE_DEADLINE: Duration = Duration::from_millis(800);
const FAULT_EVERY: Duration = Duration::from_millis(250);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Latency buckets of 10 µs up to 1 s (the last bucket holds slower calls): fixed memory, so the
/// load generator's own bookkeeping does not grow the process.
const BUCKET_US: u64 = 10;
const BUCKETS: usize = 100_000;

/// The outcomes and latencies the workers record.
struct Tally {
    outcomes: BTreeMap<String, u64>,
    unexpected: Vec<String>,
    latencies: Vec<u64>,
    calls: u64,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            outcomes: BTreeMap::new(),
            unexpected: Vec::with_capacity(20),
            latencies: vec![0; BUCKETS],
            calls: 0,
        }
    }
}

impl Tally {
    /// The latency below which a fraction `p` of the calls took, in ms.
    fn percentile(&self, p: f64) -> f64 {
        let target = (self.calls as f64 * p).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.latencies.iter().enumerate() {
            seen += n;
            if seen >= target {
                return ((i as u64 + 1) * BUCKET_US) as f64 / 1000.0;
            }
        }
        0.0
    }
}

#[derive(Clone)]
struct Load {
    channel: Channel,
    tally: Arc<Mutex<Tally>>,
    running: Arc<AtomicBool>,
}

impl Load {
    fn on(&self) -> bool {
        self.running.load(Ordering::Relaxed)
    }

    fn record(&self, what: &str, outcome: Result<(), &tonic::Status>, took: Option<Duration>) {
        let mut t = self.tally.lock().expect("tally");
        if let Some(took) = took {
            let bucket = (took.as_micros() as u64 / BUCKET_US) as usize;
            t.latencies[bucket.min(BUCKETS - 1)] += 1;
            t.calls += 1;
        }
        let label = match outcome {
            Ok(()) => format!("{what} OK"),
            Err(s) if expected(s) => format!("{what} {:?} (injected fault)", s.code()),
            Err(s) => {
                if t.unexpected.len() < 20 {
                    t.unexpected
                        .push(format!("{what}: {:?}: {}", s.code(), s.message()));
                }
                format!("{what} {:?} UNEXPECTED", s.code())
            }
        };
        *t.outcomes.entry(label).or_default() += 1;
    }

    /// One unary call through the gateway: the answer, decoded.
    async fn call(
        &self,
        what: &str,
        operation: &str,
        request: serde_json::Value,
        metadata: &[(&'static str, &str)],
    ) -> Result<DynamicMessage, tonic::Status> {
        let desc = |suffix: &str| {
            proto::message(&format!("alibabacloud.cs.v20151215.{operation}{suffix}"))
                .expect("the operation's messages")
        };
        let msg = DynamicMessage::deserialize(desc("Request"), request).expect("a request");
        let mut req = tonic::Request::new(Bytes::from(msg.encode_to_vec()));
        let role = metadata.contains(&("x-ack-profile", "role"));
        req.set_timeout(if role { ROLE_DEADLINE } else { DEADLINE });
        for (k, v) in metadata {
            req.metadata_mut().insert(*k, v.parse().expect("metadata"));
        }
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        let started = Instant::now();
        let answer = async {
            grpc.ready()
                .await
                .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
            grpc.unary(
                req,
                format!("/{CS}/{operation}").parse().expect("path"),
                RawCodec,
            )
            .await
        }
        .await;
        let took = started.elapsed();
        let answer = answer.and_then(|a| {
            DynamicMessage::decode(desc("Response"), a.into_inner())
                .map_err(|e| tonic::Status::internal(format!("undecodable answer: {e}")))
        });
        self.record(what, answer.as_ref().map(|_| ()), Some(took));
        answer
    }

    /// Follows a task to its end on a `WatchTask` stream (bounded).
    async fn watch_task(&self, task_id: &str) {
        let mut client = WatchServiceClient::new(self.channel.clone());
        let mut req = tonic::Request::new(WatchTaskRequest {
            task_id: task_id.to_string(),
        });
        req.set_timeout(Duration::from_secs(30));
        let outcome = async {
            let mut stream = client.watch_task(req).await?.into_inner();
            while let Some(event) = stream.message().await? {
                if event.kind() == Kind::Final {
                    break;
                }
            }
            Ok::<(), tonic::Status>(())
        }
        .await;
        self.record("WatchTask stream", outcome.as_ref().map(|_| ()), None);
    }
}

/// What the injected faults explain: a 503 (retried, then `UNAVAILABLE`), throttling (and the
/// gateway's own slow-down after it).
fn expected(s: &tonic::Status) -> bool {
    match s.code() {
        Code::Unavailable => s.message().contains("ServiceUnavailable"),
        Code::ResourceExhausted => true,
        _ => false,
    }
}

fn text_field(msg: &DynamicMessage, name: &str) -> Option<String> {
    msg.get_field_by_name(name)
        .and_then(|v| v.as_str().map(str::to_string))
}

/// One `kB` line of a process's `/proc/<pid>/status` (`VmRSS`).
fn status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// The environment variable that makes this binary one of the soak's children.
const ROLE_ENV: &str = "ACK_SOAK_ROLE";
/// The gateway child's configuration file.
const CONFIG_ENV: &str = "ACK_SOAK_CONFIG";

/// A child process started from this binary: its first line of output says what it serves;
/// it answers lines written to its standard input and exits when that closes.
struct ChildProcess {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl ChildProcess {
    fn start(role: &str, env: &[(&str, &std::path::Path)]) -> Result<Self, BoxError> {
        let mut command = std::process::Command::new(std::env::current_exe()?);
        command
            .env(ROLE_ENV, role)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn()?;
        let stdin = child.stdin.take().ok_or("child stdin")?;
        let stdout = std::io::BufReader::new(child.stdout.take().ok_or("child stdout")?);
        Ok(ChildProcess {
            child,
            stdin,
            stdout,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next line the child prints, split into words after the first (its tag).
    fn line(&mut self, tag: &str) -> Result<Vec<String>, BoxError> {
        use std::io::BufRead as _;
        let mut line = String::new();
        tokio::task::block_in_place(|| self.stdout.read_line(&mut line))?;
        let mut words = line.split_whitespace();
        if words.next() != Some(tag) {
            return Err(format!("the {tag} child said {line:?}").into());
        }
        Ok(words.map(str::to_string).collect())
    }

    /// The gateway child's count of alive tokio tasks.
    fn tasks(&mut self) -> Result<usize, BoxError> {
        use std::io::Write as _;
        writeln!(self.stdin, "tasks")?;
        let words = self.line("tasks")?;
        Ok(words.first().ok_or("no task count")?.parse()?)
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        // Its standard input closes with this handle; a child that lingers is ended.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads the child's standard input until it closes (the parent ended or let go of it),
/// answering `tasks` with the number of alive tokio tasks when asked.
async fn serve_stdin(answer_tasks: bool) {
    let handle = tokio::runtime::Handle::current();
    let _ = tokio::task::spawn_blocking(move || {
        use std::io::BufRead as _;
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if answer_tasks && line.trim() == "tasks" {
                println!("tasks {}", handle.metrics().num_alive_tasks());
            }
        }
    })
    .await;
}

/// The simulator child: prints `simulator <endpoint> <key id> <secret>`.
async fn simulator_child() -> Result<(), BoxError> {
    let sim = Simulator::start(SimulatorOptions {
        sts_duration: Some(STS_LIFETIME),
        task_duration: Duration::from_millis(500),
        ..Default::default()
    })
    .await?;
    let (id, secret) = sim.root_key();
    println!("simulator {} {id} {}", sim.endpoint(), secret.expose());
    serve_stdin(false).await;
    sim.shutdown().await;
    Ok(())
}

/// The gateway child: serves the configuration file `ACK_SOAK_CONFIG` (reloaded as it
/// changes); prints `gateway <address>`.
async fn gateway_child() -> Result<(), BoxError> {
    let file = std::path::PathBuf::from(std::env::var(CONFIG_ENV)?);
    let mut config = Config::load(
        Some(&std::fs::read_to_string(&file)?),
        &HashMap::<String, String>::new(),
    )?;
    config.listen = "127.0.0.1:0".parse()?;
    config.admin_listen = "127.0.0.1:0".parse()?;
    config.source_file = Some(file);
    config.reload_interval = Duration::from_millis(500);
    let running = app::start(config).await?;
    println!("gateway {}", running.addr);
    serve_stdin(true).await;
    running.shutdown().await
}

fn config_text(endpoint: &str, id: &str, secret: &str, extra_profile: bool) -> String {
    let extra = if extra_profile {
        format!(
            "[profiles.extra]\ntype = \"access_key\"\naccess_key_id = \"{id}\"\naccess_key_secret = \"{secret}\"\nregion = \"cn-hangzhou\"\n"
        )
    } else {
        String::new()
    };
    // `ACK_SOAK_CACHE_BYTES` bounds the read cache (default 64 MiB), to tell its memory apart.
    let cache = std::env::var("ACK_SOAK_CACHE_BYTES").unwrap_or_else(|_| "67108864".into());
    format!(
        r#"
[simulator]
mode = "never"
[auth]
mode = "insecure_local"
[cache]
max_bytes = {cache}
[endpoints]
cs = "{endpoint}"
sts = "{endpoint}"
[rate_limit]
upstream = {{ rate = 100000.0, burst = 100000 }}
[watch]
initial_interval = "200ms"
max_interval = "1s"
heartbeat_interval = "500ms"
retry_initial = "50ms"
retry_max = "500ms"
[profiles.default]
type = "access_key"
access_key_id = "{id}"
access_key_secret = "{secret}"
region = "cn-hangzhou"
[profiles.role]
type = "ram_role_arn"
source_profile = "default"
role_arn = "{ROLE_ARN}"
role_session_name = "soak"
duration_seconds = 900
region = "cn-hangzhou"
{extra}"#
    )
}

/// Runs every worker until `running` is cleared; returns their handles.
fn start_load(load: &Load, cluster: &str, pools: &[String]) -> Vec<tokio::task::JoinHandle<()>> {
    let mut handles = Vec::new();
    // Cached reads.
    for _ in 0..4 {
        let (l, cluster) = (load.clone(), cluster.to_string());
        handles.push(tokio::spawn(async move {
            while l.on() {
                let _ = l
                    .call(
                        "cached DescribeClusterDetail",
                        "DescribeClusterDetail",
                        serde_json::json!({ "cluster_id": cluster }),
                        &[],
                    )
                    .await;
            }
        }));
    }
    // Uncached reads, through the AccessKey and the role profile.
    for profile in ["default", "default", "role", "role"] {
        let l = load.clone();
        handles.push(tokio::spawn(async move {
            let what = format!("uncached DescribeClustersV1 ({profile})");
            while l.on() {
                let _ = l
                    .call(
                        &what,
                        "DescribeClustersV1",
                        serde_json::json!({ "page_size": 10 }),
                        &[("cache-control", "no-cache"), ("x-ack-profile", profile)],
                    )
                    .await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    // Scaling, each task followed on a WatchTask stream.
    for pool in pools {
        let (l, cluster, pool) = (load.clone(), cluster.to_string(), pool.clone());
        handles.push(tokio::spawn(async move {
            while l.on() {
                let answer = l
                    .call(
                        "ScaleClusterNodePool",
                        "ScaleClusterNodePool",
                        serde_json::json!({ "cluster_id": cluster, "nodepool_id": pool, "count": 1 }),
                        &[],
                    )
                    .await;
                match answer.ok().and_then(|a| text_field(&a, "task_id")) {
                    Some(task) => l.watch_task(&task).await,
                    None => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        }));
    }
    // Clusters created and deleted.
    {
        let l = load.clone();
        handles.push(tokio::spawn(async move {
            let mut n = 0u64;
            while l.on() {
                n += 1;
                let created = l
                    .call(
                        "CreateCluster",
                        "CreateCluster",
                        serde_json::json!({ "name": format!("soak-{n}"), "region_id": "cn-hangzhou", "cluster_type": "ManagedKubernetes" }),
                        &[],
                    )
                    .await;
                let Ok(created) = created else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                if let Some(task) = text_field(&created, "task_id") {
                    l.watch_task(&task).await;
                }
                let Some(id) = text_field(&created, "cluster_id") else {
                    continue;
                };
                // Deleted even after the load stops, so clusters do not pile up.
                for _ in 0..20 {
                    let deleted = l
                        .call(
                            "DeleteCluster",
                            "DeleteCluster",
                            serde_json::json!({ "cluster_id": id }),
                            &[],
                        )
                        .await;
                    if deleted.is_ok() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }));
    }
    // Watch streams opened and dropped.
    for _ in 0..3 {
        let (l, cluster) = (load.clone(), cluster.to_string());
        handles.push(tokio::spawn(async move {
            while l.on() {
                let hold = Duration::from_millis(rand::rng().random_range(200..1500));
                let mut client = WatchServiceClient::new(l.channel.clone());
                let outcome = async {
                    let mut stream = client
                        .watch_cluster(WatchClusterRequest {
                            cluster_id: cluster.clone(),
                            target_states: vec!["deleted".to_string()],
                        })
                        .await?
                        .into_inner();
                    let until = tokio::time::sleep(hold);
                    tokio::pin!(until);
                    loop {
                        tokio::select! {
                            _ = &mut until => return Ok::<(), tonic::Status>(()),
                            m = stream.message() => if m?.is_none() { return Ok(()) },
                        }
                    }
                }
                .await;
                l.record("WatchCluster stream", outcome.as_ref().map(|_| ()), None);
            }
        }));
    }
    handles
}

/// A fault every `FAULT_EVERY`, in turn: a 503, throttling, a delay.
fn start_faults(endpoint: &str, running: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    let url = format!("{endpoint}/__simulator/faults");
    tokio::spawn(async move {
        let http = reqwest::Client::new();
        let mut n = 0u64;
        let ops = [
            "DescribeClustersV1",
            "DescribeClusterDetail",
            "ScaleClusterNodePool",
            "CreateCluster",
        ];
        while running.load(Ordering::Relaxed) {
            let op = ops[(n as usize / 3) % ops.len()];
            let fault = match n % 3 {
                0 => Fault {
                    operation: Some(op.to_string()),
                    status: 503,
                    code: "ServiceUnavailable".into(),
                    message: "The service is temporarily unavailable.".into(),
                    times: 2,
                    delay_ms: 0,
                    headers: BTreeMap::new(),
                    ..Fault::default()
                },
                1 => Fault {
                    operation: Some(op.to_string()),
                    status: 400,
                    code: "Throttling.User".into(),
                    message: "Request was denied due to user flow control.".into(),
                    times: 1,
                    delay_ms: 0,
                    headers: BTreeMap::from([(
                        "x-ratelimit-user-api".to_string(),
                        "Limit:10,Remain:0,TimeLeft:300,Reset:0".to_string(),
                    )]),
                    ..Fault::default()
                },
                _ => Fault {
                    operation: Some(op.to_string()),
                    status: 0,
                    code: String::new(),
                    message: String::new(),
                    times: 2,
                    delay_ms: 300,
                    headers: BTreeMap::new(),
                    ..Fault::default()
                },
            };
            match http.post(&url).json(&fault).send().await {
                Ok(r) if r.status().is_success() => n += 1,
                Ok(r) => eprintln!("soak: the simulator refused a fault: {}", r.status()),
                Err(e) => eprintln!("soak: cannot inject a fault: {e}"),
            }
            tokio::time::sleep(FAULT_EVERY).await;
        }
        n
    })
}

async fn stop(running: &AtomicBool, handles: Vec<tokio::task::JoinHandle<()>>) {
    running.store(false, Ordering::Relaxed);
    for h in handles {
        let _ = tokio::time::timeout(Duration::from_secs(60), h).await;
    }
}

fn main() -> Result<(), BoxError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match std::env::var(ROLE_ENV).as_deref() {
        Ok("simulator") => runtime.block_on(simulator_child()),
        Ok("gateway") => runtime.block_on(gateway_child()),
        _ => runtime.block_on(soak()),
    }
}

async fn soak() -> Result<(), BoxError> {
    let seconds: u64 = std::env::var("ACK_SOAK_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let duration = Duration::from_secs(seconds);
    let warm_up = Duration::from_secs((seconds / 4).clamp(15, 60));

    let mut sim = ChildProcess::start("simulator", &[])?;
    let (endpoint, id, secret) = match sim.line("simulator")?.as_slice() {
        [endpoint, id, secret] => (endpoint.clone(), id.clone(), secret.clone()),
        other => return Err(format!("the simulator child said {other:?}").into()),
    };
    let dir = std::env::temp_dir().join(format!("ack-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("gateway.toml");
    std::fs::write(&file, config_text(&endpoint, &id, &secret, false))?;
    let mut gw = ChildProcess::start("gateway", &[(CONFIG_ENV, file.as_path())])?;
    let addr = gw
        .line("gateway")?
        .first()
        .cloned()
        .ok_or("no gateway address")?;
    let pid = gw.pid();
    let channel = Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;

    // The cluster the reads and watches use, and two node pools to scale.
    let setup = Load {
        channel: channel.clone(),
        tally: Arc::default(),
        running: Arc::new(AtomicBool::new(true)),
    };
    let created = setup
        .call(
            "setup",
            "CreateCluster",
            serde_json::json!({ "name": "soak", "region_id": "cn-hangzhou", "cluster_type": "ManagedKubernetes" }),
            &[],
        )
        .await?;
    let cluster = text_field(&created, "cluster_id").ok_or("no cluster id")?;
    if let Some(task) = text_field(&created, "task_id") {
        setup.watch_task(&task).await;
    }
    let mut pools = Vec::new();
    for name in ["soak-a", "soak-b"] {
        let pool = setup
            .call(
                "setup",
                "CreateClusterNodePool",
                serde_json::json!({ "cluster_id": cluster, "nodepool_info": { "name": name }, "count": 1 }),
                &[],
            )
            .await?;
        pools.push(text_field(&pool, "nodepool_id").ok_or("no node pool id")?);
        if let Some(task) = text_field(&pool, "task_id") {
            setup.watch_task(&task).await;
        }
    }

    // Warm-up: the same load, then quiet, then the baseline.
    let warm = Load {
        channel: channel.clone(),
        tally: Arc::default(),
        running: Arc::new(AtomicBool::new(true)),
    };
    let handles = start_load(&warm, &cluster, &pools);
    let faults = start_faults(&endpoint, warm.running.clone());
    tokio::time::sleep(warm_up).await;
    stop(&warm.running, handles).await;
    let _ = faults.await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (rss0, fds0, tasks0) = (status_kib(pid, "VmRSS"), open_fds(pid), gw.tasks()?);
    let sim_rss0 = status_kib(sim.pid(), "VmRSS");

    // The soak.
    let load = Load {
        channel: channel.clone(),
        tally: Arc::default(),
        running: Arc::new(AtomicBool::new(true)),
    };
    let started = Instant::now();
    let handles = start_load(&load, &cluster, &pools);
    // Resident memory every tenth of the run, to tell growth from a plateau.
    let rss_series = {
        let running = load.running.clone();
        let every = (duration / 10).max(Duration::from_secs(1));
        tokio::spawn(async move {
            let mut series = Vec::new();
            while running.load(Ordering::Relaxed) {
                tokio::time::sleep(every).await;
                series.push(status_kib(pid, "VmRSS"));
            }
            series
        })
    };
    let faults = start_faults(&endpoint, load.running.clone());
    tokio::time::sleep(duration / 2).await;
    std::fs::write(&file, config_text(&endpoint, &id, &secret, true))?;
    let written = Instant::now();
    let mut reload = None;
    while written.elapsed() < Duration::from_secs(15) {
        let probe = Load {
            channel: channel.clone(),
            tally: Arc::default(),
            running: load.running.clone(),
        };
        let answer = probe
            .call(
                "probe",
                "DescribeClustersV1",
                serde_json::json!({ "page_size": 1 }),
                &[("x-ack-profile", "extra"), ("cache-control", "no-cache")],
            )
            .await;
        match answer {
            Ok(_) => {
                reload = Some(written.elapsed());
                break;
            }
            // A 503 or throttling fault on the probe: the profile is known, the call unlucky.
            Err(s) if expected(&s) => {
                reload = Some(written.elapsed());
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    {
        let mut t = load.tally.lock().expect("tally");
        match reload {
            Some(_) => *t.outcomes.entry("reload picked up".into()).or_default() += 1,
            None => {
                *t.outcomes
                    .entry("reload UNEXPECTED: not picked up in 15 s".into())
                    .or_default() += 1;
                t.unexpected
                    .push("the reloaded profile never answered".into());
            }
        }
    }
    // The new profile in use for the rest of the run.
    let extra_user = {
        let l = load.clone();
        tokio::spawn(async move {
            while l.on() {
                let _ = l
                    .call(
                        "uncached DescribeClustersV1 (extra, after reload)",
                        "DescribeClustersV1",
                        serde_json::json!({ "page_size": 10 }),
                        &[("cache-control", "no-cache"), ("x-ack-profile", "extra")],
                    )
                    .await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let left = duration.saturating_sub(started.elapsed());
    tokio::time::sleep(left).await;
    let elapsed = started.elapsed();
    let mut all = handles;
    all.push(extra_user);
    stop(&load.running, all).await;
    let faults_injected = faults.await.unwrap_or(0);
    let rss_loaded = status_kib(pid, "VmRSS");
    let rss_series = rss_series.await.unwrap_or_default();
    let load_stopped = Instant::now();

    // Quiet: streams closed, pollers retired.
    let quiet = Instant::now();
    while gw.tasks()? > tasks0 && quiet.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss1, fds1, tasks1) = (status_kib(pid, "VmRSS"), open_fds(pid), gw.tasks()?);
    let sim_rss1 = status_kib(sim.pid(), "VmRSS");
    // Different counts may be idle upstream connections (a task and a descriptor each):
    // measured again once the pool's 90 s idle timeout has closed them.
    let after_idle = if (fds1, tasks1) != (fds0, tasks0) {
        tokio::time::sleep(Duration::from_secs(95).saturating_sub(load_stopped.elapsed())).await;
        Some((open_fds(pid), gw.tasks()?))
    } else {
        None
    };

    let t = load.tally.lock().expect("tally");
    let total: u64 = t
        .outcomes
        .iter()
        .filter(|(k, _)| !k.starts_with("reload"))
        .map(|(_, n)| n)
        .sum();
    let unexpected: u64 = t
        .outcomes
        .iter()
        .filter(|(k, _)| k.contains("UNEXPECTED"))
        .map(|(_, n)| n)
        .sum();
    println!(
        "soak: {:.0} s of load after {} s of warm-up; {faults_injected} faults injected (503 / throttling / 300 ms delay in turn, every {} ms); STS triples live {} s",
        elapsed.as_secs_f64(),
        warm_up.as_secs(),
        FAULT_EVERY.as_millis(),
        STS_LIFETIME.as_secs()
    );
    println!("calls and streams by outcome:");
    for (k, n) in &t.outcomes {
        println!("  {n:>8}  {k}");
    }
    println!("  {total:>8}  in all; unexpected: {unexpected}");
    for u in &t.unexpected {
        println!("  unexpected: {u}");
    }
    if let Some(r) = reload {
        println!(
            "reload: the new profile answered {:.1} s after the file was written",
            r.as_secs_f64()
        );
    }
    println!(
        "unary latency: p50 {:.2} ms, p99 {:.2} ms over {} calls ({:.0} calls/s)",
        t.percentile(0.50),
        t.percentile(0.99),
        t.calls,
        t.calls as f64 / elapsed.as_secs_f64()
    );
    let growth = (rss1 as f64 - rss0 as f64) / rss0.max(1) as f64 * 100.0;
    println!(
        "gateway RSS: {:.1} MiB after warm-up, {:.1} MiB at the end of the load, {:.1} MiB quiet at the end ({growth:+.1} %)",
        rss0 as f64 / 1024.0,
        rss_loaded as f64 / 1024.0,
        rss1 as f64 / 1024.0
    );
    println!(
        "gateway RSS during the load (MiB, every tenth): {}",
        rss_series
            .iter()
            .map(|k| format!("{:.1}", *k as f64 / 1024.0))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "simulator RSS (its own process, for comparison): {:.1} MiB after warm-up, {:.1} MiB at the end ({:+.1} %)",
        sim_rss0 as f64 / 1024.0,
        sim_rss1 as f64 / 1024.0,
        (sim_rss1 as f64 - sim_rss0 as f64) / sim_rss0.max(1) as f64 * 100.0
    );
    println!("gateway open file descriptors: {fds0} after warm-up, {fds1} at the end");
    println!("gateway tokio tasks alive: {tasks0} after warm-up, {tasks1} at the end");
    if let Some((fds2, tasks2)) = after_idle {
        println!(
            "after the upstream pool's idle timeout (95 s after the load): {fds2} file descriptors, {tasks2} tasks"
        );
    }
    drop(t);
    let _ = std::fs::remove_dir_all(&dir);
    if unexpected > 0 {
        return Err(format!("{unexpected} unexpected outcomes").into());
    }
    Ok(())
}
