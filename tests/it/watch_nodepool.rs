//! WatchNodePool over real sockets, gRPC and Connect, against the simulator's node pools: a
//! creation and a scale-out followed to `active` with their node counts, failed nodes ending
//! the stream ABORTED with the cloud's error, a deletion ending it NOT_FOUND (or OK when
//! `deleted` is the aim), the caller's deadline, one poller per node pool however many watch,
//! and the CLI. The stream helpers here serve the other new watch tests too (`wait_for`,
//! `cluster_events`).

use crate::http_clients::connect_stream;
use crate::support::*;
use ack_gateway::proto::gateway::watch_service_client::WatchServiceClient;
use ack_gateway::proto::gateway::WatchEventKind as Kind;
use ack_gateway::proto::gateway::{Phase, WatchEvent, WatchNodePoolRequest};
use serde_json::json;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tonic::transport::Channel;
use tonic::{Code, Status, Streaming};
use tonic_types::StatusExt;

/// The polling intervals of these tests: fast, so runs take a second or two.
pub(crate) const INITIAL_MS: u64 = 50;
pub(crate) const WATCH: &str = "[watch]\ninitial_interval = \"50ms\"\nmax_interval = \"200ms\"\n\
     heartbeat_interval = \"150ms\"\nmax_duration = \"30s\"\nretry_initial = \"20ms\"\n\
     retry_max = \"100ms\"\njitter = 0.1\nmax_polls_per_second = 1000.0\n";

/// The gateway with its simulator, tasks of `task_duration`, fast watches, and `extra` TOML.
pub(crate) async fn harness(task_duration: &str, extra: &str) -> Harness {
    Harness::with_config(
        &format!(
            "[simulator]\nmode = \"always\"\ntask_duration = \"{task_duration}\"\n{WATCH}{extra}"
        ),
        HashMap::new(),
    )
    .await
}

pub(crate) fn client(h: &Harness) -> WatchServiceClient<Channel> {
    WatchServiceClient::new(h.channel.clone())
}

/// A stream of any watch RPC, read as `WatchEvent`s (each has its fields).
pub(crate) struct Events(
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<WatchEvent, Status>> + Send>>,
);

impl Events {
    pub(crate) fn of<T: Into<WatchEvent> + Send + 'static>(stream: Streaming<T>) -> Self {
        use futures_util::StreamExt as _;
        Events(Box::pin(stream.map(|item| item.map(Into::into))))
    }

    pub(crate) async fn message(&mut self) -> Result<Option<WatchEvent>, Status> {
        use futures_util::StreamExt as _;
        self.0.next().await.transpose()
    }
}

/// Reads a stream to its end (bounded in time): its messages and how it ended.
pub(crate) async fn drain(mut stream: Events) -> (Vec<WatchEvent>, Result<(), Status>) {
    let mut messages = Vec::new();
    let end = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match stream.message().await {
                Ok(Some(m)) => messages.push(m),
                Ok(None) => return Ok(()),
                Err(s) => return Err(s),
            }
        }
    })
    .await
    .expect("the stream ends in time");
    (messages, end)
}

/// Reads messages until one satisfies `pred` (bounded), returning those read.
pub(crate) async fn until(
    stream: &mut Events,
    pred: impl Fn(&WatchEvent) -> bool,
) -> Vec<WatchEvent> {
    let mut read = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let m = stream
                .message()
                .await
                .expect("the stream goes on")
                .expect("a message");
            let done = pred(&m);
            read.push(m);
            if done {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the awaited message came in time: {read:?}"));
    read
}

pub(crate) fn kind(m: &WatchEvent) -> Kind {
    Kind::try_from(m.kind).unwrap_or(Kind::Unspecified)
}

pub(crate) fn phase(m: &WatchEvent) -> Phase {
    m.status
        .as_ref()
        .and_then(|s| Phase::try_from(s.phase).ok())
        .unwrap_or(Phase::Unspecified)
}

/// The stream's shape: INITIAL first, FINAL last, nothing else FINAL or INITIAL.
pub(crate) fn assert_well_formed(messages: &[WatchEvent]) {
    assert!(
        messages.len() >= 2,
        "at least INITIAL and FINAL: {messages:?}"
    );
    assert_eq!(kind(&messages[0]), Kind::Initial);
    assert_eq!(kind(messages.last().expect("last")), Kind::Final);
    for m in &messages[1..messages.len() - 1] {
        assert!(
            matches!(kind(m), Kind::Change | Kind::Heartbeat | Kind::PollError),
            "{m:?}"
        );
    }
}

/// A cluster created and running.
pub(crate) async fn running_cluster(h: &Harness, name: &str) -> String {
    let (id, task) = create_cluster(h, name).await;
    assert_eq!(wait_task(h, &task).await, "success");
    id
}

/// Starts the creation of a node pool of `size` nodes: its id and the task's.
async fn create_pool(h: &Harness, cluster: &str, name: &str, size: i64) -> (String, String) {
    let (created, _) = h
        .cs(
            "CreateClusterNodePool",
            json!({"cluster_id": cluster, "nodepool_info": {"name": name},
                   "scaling_group": {"desired_size": size}}),
        )
        .await
        .expect("node pool creation accepted");
    (
        created["nodepool_id"].as_str().expect("id").to_string(),
        created["task_id"].as_str().expect("task").to_string(),
    )
}

/// A node pool of `size` nodes, created and active.
async fn active_pool(h: &Harness, cluster: &str, name: &str, size: i64) -> String {
    let (id, task) = create_pool(h, cluster, name, size).await;
    assert_eq!(wait_task(h, &task).await, "success");
    id
}

async fn scale(h: &Harness, cluster: &str, pool: &str, count: i64) -> String {
    let (scaled, _) = h
        .cs(
            "ScaleClusterNodePool",
            json!({"cluster_id": cluster, "nodepool_id": pool, "count": count}),
        )
        .await
        .expect("scale-out accepted");
    scaled["task_id"].as_str().expect("task").to_string()
}

async fn watch_pool(
    h: &Harness,
    cluster: &str,
    pool: &str,
    targets: &[&str],
    timeout: Option<Duration>,
) -> Result<Events, Status> {
    let mut request = tonic::Request::new(WatchNodePoolRequest {
        cluster_id: cluster.into(),
        nodepool_id: pool.into(),
        target_states: targets.iter().map(|t| t.to_string()).collect(),
    });
    if let Some(t) = timeout {
        request.set_timeout(t);
    }
    client(h)
        .watch_node_pool(request)
        .await
        .map(|r| Events::of(r.into_inner()))
}

/// (serving, desired, total) of a message.
fn counts(m: &WatchEvent) -> (i64, i64, i64) {
    let n = m
        .status
        .as_ref()
        .and_then(|s| s.node_counts)
        .unwrap_or_default();
    (n.serving, n.desired, n.total)
}

fn state(m: &WatchEvent) -> &str {
    m.status.as_ref().map_or("", |s| s.state.as_str())
}

#[tokio::test]
async fn a_creation_and_a_scale_out_are_followed_to_active_with_their_counts() {
    let h = harness("1200ms", "").await;
    let cluster = running_cluster(&h, "pools").await;
    let (pool, _) = create_pool(&h, &cluster, "workers", 4).await;
    let (messages, end) = drain(
        watch_pool(&h, &cluster, &pool, &[], None)
            .await
            .expect("opened"),
    )
    .await;
    assert!(end.is_ok(), "{end:?}");
    assert_well_formed(&messages);
    assert_eq!(state(&messages[0]), "initial");
    assert_eq!(phase(&messages[0]), Phase::Running);
    let serving: Vec<i64> = messages.iter().map(|m| counts(m).0).collect();
    assert!(
        serving.windows(2).all(|w| w[0] <= w[1]),
        "serving only grows: {serving:?}"
    );
    assert!(
        messages.iter().any(|m| m
            .status
            .as_ref()
            .is_some_and(|s| s.node_counts.as_ref().is_some_and(|n| n.initial > 0))),
        "nodes joining are seen: {messages:?}"
    );
    let progress: Vec<u32> = messages
        .iter()
        .filter_map(|m| m.status.as_ref().and_then(|s| s.progress_percent))
        .collect();
    assert!(
        progress.windows(2).all(|w| w[0] <= w[1]),
        "progress only grows: {progress:?}"
    );
    let last = messages.last().expect("final");
    assert_eq!(phase(last), Phase::Succeeded);
    assert_eq!(state(last), "active");
    assert_eq!(counts(last), (4, 4, 4));
    let status = last.status.as_ref().expect("status");
    assert_eq!(status.target_kind, "nodepool");
    assert_eq!(status.target_id, pool);
    assert_eq!(status.progress_percent, Some(100));
    assert_eq!(
        status.attributes.get("name").map(String::as_str),
        Some("workers")
    );
    let stages: Vec<&str> = status.stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(stages, ["initial", "active"]);
    assert!(status
        .conditions
        .iter()
        .any(|c| c.r#type == "Ready" && c.status == "True"));

    // A scale-out: `scaling`, then active with the new count.
    scale(&h, &cluster, &pool, 3).await;
    let (messages, end) = drain(
        watch_pool(&h, &cluster, &pool, &["ACTIVE"], None)
            .await
            .expect("opened"),
    )
    .await;
    assert!(end.is_ok(), "{end:?}");
    assert_eq!(state(&messages[0]), "scaling");
    assert_eq!(counts(&messages[0]).1, 7, "desired at once");
    assert!(messages.iter().any(|m| {
        m.status
            .as_ref()
            .is_some_and(|s| s.conditions.iter().any(|c| c.r#type == "Progressing"))
    }));
    assert_eq!(counts(messages.last().expect("final")), (7, 7, 7));
}

#[tokio::test]
async fn failed_nodes_end_the_watch_aborted_with_the_clouds_error() {
    let h = harness("400ms", "").await;
    let cluster = running_cluster(&h, "failing").await;
    let pool = active_pool(&h, &cluster, "p", 1).await;
    h.sim().fail_next_task(
        "ScaleClusterNodePool",
        "InstanceStockOut",
        "no ecs.g7.xlarge left in the zone",
    );
    scale(&h, &cluster, &pool, 2).await;
    let (messages, end) = drain(
        watch_pool(&h, &cluster, &pool, &[], None)
            .await
            .expect("opened"),
    )
    .await;
    let status = end.expect_err("failed nodes end the watch");
    assert_eq!(status.code(), Code::Aborted, "{status:?}");
    assert!(
        status.message().contains("no ecs.g7.xlarge left"),
        "{status:?}"
    );
    let info = status.get_details_error_info().expect("ErrorInfo");
    assert_eq!(info.reason, "InstanceStockOut");
    assert_eq!(info.domain, "cs.aliyuncs.com");
    assert_eq!(
        info.metadata.get("target_kind").map(String::as_str),
        Some("nodepool")
    );
    let last = messages.last().expect("final");
    assert_eq!(kind(last), Kind::Final);
    assert_eq!(phase(last), Phase::Failed);
    let n = last
        .status
        .as_ref()
        .and_then(|s| s.node_counts)
        .expect("counts");
    assert_eq!((n.serving, n.failed, n.desired), (1, 2, 3));
    assert_eq!(
        last.status
            .as_ref()
            .and_then(|s| s.error.as_ref())
            .map(|e| e.code.as_str()),
        Some("InstanceStockOut")
    );

    // A pool that never came up: its state is `failed`.
    h.sim()
        .fail_next_task("CreateClusterNodePool", "QuotaExceeded", "no quota");
    let (doomed, _) = create_pool(&h, &cluster, "doomed", 2).await;
    let (_, end) = drain(
        watch_pool(&h, &cluster, &doomed, &[], None)
            .await
            .expect("opened"),
    )
    .await;
    let status = end.expect_err("failed");
    assert_eq!(status.code(), Code::Aborted);
    assert_eq!(
        status.get_details_error_info().expect("info").reason,
        "QuotaExceeded"
    );
}

#[tokio::test]
async fn a_deleted_node_pool_ends_not_found_or_ok_when_deletion_is_the_aim() {
    let h = harness("600ms", "").await;
    let cluster = running_cluster(&h, "deleting").await;
    let pool = active_pool(&h, &cluster, "p", 2).await;
    h.cs(
        "DeleteClusterNodepool",
        json!({"cluster_id": cluster, "nodepool_id": pool}),
    )
    .await
    .expect("deletion accepted");
    let until_active = watch_pool(&h, &cluster, &pool, &[], None)
        .await
        .expect("opened");
    let until_deleted = watch_pool(&h, &cluster, &pool, &["deleted"], None)
        .await
        .expect("opened");
    let ((kept, kept_end), (gone, gone_end)) =
        tokio::join!(drain(until_active), drain(until_deleted));
    assert_eq!(
        kept_end.expect_err("deleted").code(),
        Code::NotFound,
        "a deleted pool ends NOT_FOUND"
    );
    assert_eq!(state(kept.last().expect("final")), "deleted");
    assert!(gone_end.is_ok(), "{gone_end:?}");
    assert_well_formed(&gone);
    assert_eq!(state(&gone[0]), "deleting");
    let last = gone.last().expect("final");
    assert_eq!((state(last), phase(last)), ("deleted", Phase::Succeeded));
    // Nodes leave on the way: progress moves.
    assert!(
        gone.iter().any(|m| state(m) == "deleting"
            && m.status
                .as_ref()
                .and_then(|s| s.progress_percent)
                .is_some_and(|p| p > 0 && p < 100)),
        "{gone:?}"
    );

    // Unknown pools and clusters are NOT_FOUND before any message; ids are required.
    for (c, p) in [(cluster.as_str(), "np-nope"), ("c-nope", pool.as_str())] {
        let err = watch_pool(&h, c, p, &[], None)
            .await
            .err()
            .expect("refused before any message");
        assert_eq!(err.code(), Code::NotFound, "{c}/{p}: {err:?}");
    }
    let err = watch_pool(&h, &cluster, " ", &[], None)
        .await
        .err()
        .expect("refused");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("nodepool_id"), "{err:?}");
}

#[tokio::test]
async fn the_callers_deadline_ends_a_node_pool_watch() {
    let h = harness("300ms", "").await;
    let cluster = running_cluster(&h, "slow").await;
    h.sim()
        .set_task_duration("CreateClusterNodePool", Duration::from_secs(60));
    let (pool, _) = create_pool(&h, &cluster, "slow", 3).await;
    let started = Instant::now();
    let end = match watch_pool(&h, &cluster, &pool, &[], Some(Duration::from_millis(500))).await {
        Ok(stream) => drain(stream).await.1,
        Err(e) => Err(e),
    };
    assert_eq!(end.expect_err("deadline").code(), Code::DeadlineExceeded);
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// Node pool detail polls of `pool` recorded by the simulator.
fn polls_of(h: &Harness, pool: &str) -> usize {
    h.sim()
        .requests_for("DescribeClusterNodePoolDetail")
        .iter()
        .filter(|r| r.raw_path.ends_with(pool))
        .count()
}

#[tokio::test]
async fn watchers_of_a_node_pool_share_one_poller() {
    const POOLS: usize = 3;
    const PER_POOL: usize = 100;
    let h = harness("300ms", "max_streams_per_caller = 1000\n").await;
    let cluster = running_cluster(&h, "shared").await;
    h.sim()
        .set_task_duration("ModifyClusterNodePool", Duration::from_millis(1500));
    let mut pools = Vec::new();
    for i in 0..POOLS {
        pools.push(active_pool(&h, &cluster, &format!("p{i}"), 1).await);
    }
    // Grown by a larger desired size: a scale-out would wait for the cluster to be running.
    for pool in &pools {
        h.cs(
            "ModifyClusterNodePool",
            json!({"cluster_id": cluster, "nodepool_id": pool, "scaling_group": {"desired_size": 3}}),
        )
        .await
        .expect("grown");
    }
    h.sim().clear_requests();
    let started = Instant::now();
    let mut watchers = Vec::new();
    for i in 0..POOLS * PER_POOL {
        let mut c = client(&h);
        let request = WatchNodePoolRequest {
            cluster_id: cluster.clone(),
            nodepool_id: pools[i % POOLS].clone(),
            target_states: Vec::new(),
        };
        watchers.push(tokio::spawn(async move {
            let stream = c
                .watch_node_pool(request)
                .await
                .expect("opened")
                .into_inner();
            drain(Events::of(stream)).await
        }));
    }
    for w in watchers {
        let (messages, end) = w.await.expect("joined");
        assert!(end.is_ok(), "{end:?}");
        assert_eq!(counts(messages.last().expect("final")).0, 3);
    }
    let elapsed = started.elapsed();
    // A pool's poller polls at most once per initial interval (plus the first poll).
    let intervals = elapsed.as_millis() as u64 / INITIAL_MS;
    let ceiling = intervals as usize + 1;
    let mut total = 0;
    for pool in &pools {
        let n = polls_of(&h, pool);
        assert!(
            (1..=ceiling).contains(&n),
            "pool {pool}: {n} polls in {elapsed:?} (at most {ceiling})"
        );
        total += n;
    }
    eprintln!(
        "WatchNodePool: {} watchers on {POOLS} node pools: {total} polls in {elapsed:?} = {:.2} polls per {INITIAL_MS} ms interval (distinct targets: {POOLS})",
        POOLS * PER_POOL,
        total as f64 / intervals.max(1) as f64
    );
    assert!(
        total as f64 / intervals.max(1) as f64 <= POOLS as f64 + 0.5,
        "{total} polls in {intervals} intervals"
    );
}

#[tokio::test]
async fn watch_node_pool_over_connect() {
    let h = harness("800ms", "").await;
    let cluster = running_cluster(&h, "connect").await;
    let (pool, _) = create_pool(&h, &cluster, "c", 2).await;
    let (messages, _, end) = connect_stream(
        &h,
        "WatchNodePool",
        json!({"clusterId": cluster, "nodepoolId": pool}),
        &[],
    )
    .await;
    assert_eq!(
        end,
        json!({}),
        "success ends with an empty end-of-stream message"
    );
    let first = &messages.first().expect("initial").1;
    assert_eq!(first["kind"], "WATCH_EVENT_KIND_INITIAL");
    assert_eq!(first["status"]["targetKind"], "nodepool");
    let last = &messages.last().expect("final").1;
    assert_eq!(last["kind"], "WATCH_EVENT_KIND_FINAL");
    assert_eq!(last["status"]["phase"], "PHASE_SUCCEEDED");
    assert_eq!(
        last["status"]["nodeCounts"]["serving"], "2",
        "int64 as JSON strings"
    );
    assert_eq!(last["status"]["nodeCounts"]["desired"], "2");

    // A failure over Connect: the end-of-stream error with its details.
    h.sim()
        .fail_next_task("ScaleClusterNodePool", "InstanceStockOut", "no stock");
    scale(&h, &cluster, &pool, 1).await;
    let (messages, _, end) = connect_stream(
        &h,
        "WatchNodePool",
        json!({"cluster_id": cluster, "nodepool_id": pool}),
        &[],
    )
    .await;
    assert_eq!(end["error"]["code"], "aborted", "{end}");
    let info = end["error"]["details"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["type"] == "google.rpc.ErrorInfo"))
        .expect("ErrorInfo");
    assert_eq!(info["debug"]["reason"], "InstanceStockOut");
    assert_eq!(
        messages.last().expect("final").1["status"]["nodeCounts"]["failed"],
        "1"
    );
    // An unknown pool: no message, NOT_FOUND in the end-of-stream message.
    let (messages, _, end) = connect_stream(
        &h,
        "WatchNodePool",
        json!({"cluster_id": cluster, "nodepool_id": "np-nope"}),
        &[],
    )
    .await;
    assert!(messages.is_empty());
    assert_eq!(end["error"]["code"], "not_found", "{end}");
}

#[tokio::test]
async fn the_cli_follows_a_node_pool() {
    use ack_gateway::cli::watch::{self as cli, Renderer};
    use ack_gateway::cli::{Cli, Command};
    use clap::Parser;
    let h = harness("600ms", "").await;
    let cluster = running_cluster(&h, "cli").await;
    let (pool, _) = create_pool(&h, &cluster, "cli", 2).await;
    let addr = format!("http://{}", h.running.addr);
    let parsed = Cli::try_parse_from([
        "ack-gateway",
        "watch",
        "node-pool",
        &cluster,
        &pool,
        "--target",
        "active",
        "--addr",
        &addr,
    ])
    .expect("the command line parses");
    let Some(Command::Watch(args)) = parsed.command else {
        panic!("not a watch command")
    };
    let mut renderer = Renderer::new(indicatif::ProgressBar::hidden(), Vec::new());
    cli::watch(&args, &mut renderer)
        .await
        .expect("the pool became active");
    let out = String::from_utf8(renderer.into_output()).expect("text");
    assert!(out.contains(&format!("watching nodepool {pool}")), "{out}");
    assert!(out.contains("nodes: 0 of 2 nodes serving"), "{out}");
    assert!(out.contains("nodes: 2 of 2 nodes serving"), "{out}");
    assert!(out.contains("✓ initial"), "{out}");
    assert!(
        out.contains(&format!("done: nodepool {pool} is active")),
        "{out}"
    );
}
