//! The Watch service over real sockets against the simulator, with millisecond intervals: each
//! watcher follows a run to success and to failure and ends with the documented status; pollers
//! are shared, stop when their subscribers leave, report transient errors in-stream, and send
//! heartbeats while nothing changes.

use crate::support::*;
use ack_gateway::proto::gateway::watch_service_client::WatchServiceClient;
use ack_gateway::proto::gateway::WatchEventKind as Kind;
use ack_gateway::proto::gateway::{
    Phase, WatchAddonUpgradeRequest, WatchClusterRequest, WatchClusterUpgradeRequest, WatchEvent,
    WatchTaskRequest,
};
use ack_gateway::simulator::Fault;
use serde_json::json;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tonic::transport::Channel;
use tonic::{Code, Status, Streaming};
use tonic_types::StatusExt;

/// The polling intervals of these tests: fast, so runs take a second or two.
const INITIAL_MS: u64 = 50;
const WATCH: &str = "[watch]\ninitial_interval = \"50ms\"\nmax_interval = \"200ms\"\n\
                     heartbeat_interval = \"100ms\"\nmax_duration = \"30s\"\nretry_initial = \"20ms\"\n\
                     retry_max = \"100ms\"\njitter = 0.1\nmax_polls_per_second = 1000.0\n";

async fn harness(task_duration: &str) -> Harness {
    harness_with(task_duration, "").await
}

async fn harness_with(task_duration: &str, extra: &str) -> Harness {
    Harness::with_config(
        &format!(
            "[simulator]\nmode = \"always\"\ntask_duration = \"{task_duration}\"\n{UNFOLLOWED}{WATCH}{extra}"
        ),
        HashMap::new(),
    )
    .await
}

fn client(h: &Harness) -> WatchServiceClient<Channel> {
    WatchServiceClient::new(h.channel.clone())
}

/// A stream of any of the four watch RPCs, read as `WatchEvent`s (each has its fields).
struct Events(
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<WatchEvent, Status>> + Send>>,
);

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Events")
    }
}

impl Events {
    fn of<T: Into<WatchEvent> + Send + 'static>(stream: Streaming<T>) -> Self {
        use futures_util::StreamExt as _;
        Events(Box::pin(stream.map(|item| item.map(Into::into))))
    }

    async fn message(&mut self) -> Result<Option<WatchEvent>, Status> {
        use futures_util::StreamExt as _;
        self.0.next().await.transpose()
    }
}

/// Reads a stream to its end (bounded in time): its messages and how it ended.
async fn drain(mut stream: Events) -> (Vec<WatchEvent>, Result<(), Status>) {
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

/// Reads messages until one satisfies `pred` (bounded), returning it.
async fn until(stream: &mut Events, pred: impl Fn(&WatchEvent) -> bool) -> WatchEvent {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let m = stream
                .message()
                .await
                .expect("stream goes on")
                .expect("a message");
            if pred(&m) {
                return m;
            }
        }
    })
    .await
    .expect("the awaited message came in time")
}

fn kind(m: &WatchEvent) -> Kind {
    Kind::try_from(m.kind).unwrap_or(Kind::Unspecified)
}

fn phase(m: &WatchEvent) -> Phase {
    m.status
        .as_ref()
        .and_then(|s| Phase::try_from(s.phase).ok())
        .unwrap_or(Phase::Unspecified)
}

/// The stream's shape: INITIAL first, FINAL last, nothing else FINAL or INITIAL.
fn assert_well_formed(messages: &[WatchEvent]) {
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

async fn watch_task(h: &Harness, task_id: &str) -> Result<Events, Status> {
    client(h)
        .watch_task(WatchTaskRequest {
            task_id: task_id.into(),
        })
        .await
        .map(|r| Events::of(r.into_inner()))
}

async fn watch_upgrade(
    h: &Harness,
    cluster: &str,
    task_id: Option<String>,
) -> Result<Events, Status> {
    client(h)
        .watch_cluster_upgrade(WatchClusterUpgradeRequest {
            cluster_id: cluster.into(),
            task_id,
        })
        .await
        .map(|r| Events::of(r.into_inner()))
}

async fn watch_addons(h: &Harness, cluster: &str, addons: &[&str]) -> Result<Events, Status> {
    client(h)
        .watch_addon_upgrade(WatchAddonUpgradeRequest {
            cluster_id: cluster.into(),
            addons: addons.iter().map(|a| a.to_string()).collect(),
        })
        .await
        .map(|r| Events::of(r.into_inner()))
}

async fn watch_cluster(h: &Harness, cluster: &str, targets: &[&str]) -> Result<Events, Status> {
    client(h)
        .watch_cluster(WatchClusterRequest {
            cluster_id: cluster.into(),
            target_states: targets.iter().map(|t| t.to_string()).collect(),
        })
        .await
        .map(|r| Events::of(r.into_inner()))
}

#[tokio::test]
async fn watch_task_follows_a_run_to_success() {
    let h = harness("600ms").await;
    let (_, task) = create_cluster(&h, "watched").await;
    let (messages, end) = drain(watch_task(&h, &task).await.expect("opened")).await;
    assert!(end.is_ok(), "{end:?}");
    assert_well_formed(&messages);
    assert_eq!(phase(&messages[0]), Phase::Running);
    let last = messages.last().expect("final");
    assert_eq!(phase(last), Phase::Succeeded);
    let status = last.status.as_ref().expect("status");
    assert_eq!(status.state, "success");
    assert_eq!(status.progress_percent, Some(100));
    assert_eq!(
        status.attributes.get("task_type").map(String::as_str),
        Some("cluster_create")
    );
    // Every stage's event arrives exactly once, in order, across the messages.
    let events: Vec<String> = messages
        .iter()
        .flat_map(|m| m.new_events.iter().map(|e| e.message.clone()))
        .collect();
    assert_eq!(
        events,
        [
            "stage 1 started: CreateVPC",
            "stage 2 started: CreateControlPlane",
            "stage 3 started: InstallAddons",
            "stage 4 started: CreateNodes",
        ]
    );
    let sequences: Vec<u64> = messages
        .iter()
        .filter(|m| kind(m) == Kind::Change)
        .map(|m| m.sequence)
        .collect();
    assert!(
        sequences.windows(2).all(|w| w[0] < w[1]),
        "one message per change: {sequences:?}"
    );
    assert!(!sequences.is_empty(), "the stage changes were reported");
}

#[tokio::test]
async fn watch_task_ends_aborted_with_the_upstream_error() {
    let h = harness("300ms").await;
    h.sim().fail_next_task(
        "CreateCluster",
        "ErrorVpcQuotaExceeded",
        "no VPC quota left",
    );
    let (_, task) = create_cluster(&h, "doomed").await;
    let (messages, end) = drain(watch_task(&h, &task).await.expect("opened")).await;
    assert_well_formed(&messages);
    let last = messages.last().expect("final");
    assert_eq!(phase(last), Phase::Failed);
    let error = last
        .status
        .as_ref()
        .and_then(|s| s.error.clone())
        .expect("error");
    assert_eq!(error.code, "ErrorVpcQuotaExceeded");
    let status = end.expect_err("a failed task fails the stream");
    assert_eq!(status.code(), Code::Aborted);
    assert!(status.message().contains("no VPC quota left"), "{status:?}");
    let info = status.get_details_error_info().expect("error info");
    assert_eq!(info.reason, "ErrorVpcQuotaExceeded");
    assert_eq!(info.metadata.get("target_id"), Some(&task));
}

#[tokio::test]
async fn unknown_or_unwatchable_targets_are_refused_before_any_message() {
    let h = harness("100ms").await;
    let err = watch_task(&h, "T-does-not-exist")
        .await
        .expect_err("unknown");
    assert_eq!(err.code(), Code::NotFound);
    let err = watch_task(&h, " ").await.expect_err("empty");
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = watch_cluster(&h, "c-does-not-exist", &[])
        .await
        .expect_err("unknown cluster");
    assert_eq!(err.code(), Code::NotFound);

    let (cluster, task) = create_cluster(&h, "quiet").await;
    wait_task(&h, &task).await;
    let err = watch_upgrade(&h, &cluster, None)
        .await
        .expect_err("no upgrade going on");
    assert_eq!(err.code(), Code::FailedPrecondition);
    let err = watch_addons(&h, &cluster, &["not-installed"])
        .await
        .expect_err("unknown add-on");
    assert_eq!(err.code(), Code::NotFound);
    let err = watch_addons(&h, &cluster, &["coredns"])
        .await
        .expect_err("never upgraded");
    assert_eq!(err.code(), Code::FailedPrecondition);
    let err = watch_upgrade(&h, "c-other", Some(task))
        .await
        .expect_err("the task is another cluster's");
    assert_eq!(err.code(), Code::InvalidArgument);
}

async fn start_upgrade(h: &Harness, cluster: &str, version: &str) -> String {
    let (started, _) = h
        .cs(
            "UpgradeCluster",
            json!({"cluster_id": cluster, "next_version": version}),
        )
        .await
        .expect("upgrade started");
    started["task_id"].as_str().expect("task").to_string()
}

#[tokio::test]
async fn watch_cluster_upgrade_reports_a_pause_and_follows_to_success() {
    let h = harness("200ms").await;
    let (cluster, task) = create_cluster(&h, "upgraded").await;
    wait_task(&h, &task).await;
    h.sim()
        .set_task_duration("UpgradeCluster", Duration::from_millis(1200));
    start_upgrade(&h, &cluster, "1.32.1-aliyun.1").await;
    let mut stream = watch_upgrade(&h, &cluster, None).await.expect("opened");
    let first = until(&mut stream, |_| true).await;
    assert_eq!(kind(&first), Kind::Initial);
    assert_eq!(phase(&first), Phase::Running);
    h.cs("PauseClusterUpgrade", json!({"cluster_id": cluster}))
        .await
        .expect("paused");
    let paused = until(&mut stream, |m| phase(m) == Phase::Paused).await;
    assert_eq!(
        paused.status.as_ref().map(|s| s.stage.as_str()),
        Some("pause")
    );
    // Paused is not finished: the stream goes on with heartbeats, the upgrade does not move.
    let heartbeat = until(&mut stream, |m| kind(m) == Kind::Heartbeat).await;
    assert_eq!(phase(&heartbeat), Phase::Paused);
    h.cs("ResumeUpgradeCluster", json!({"cluster_id": cluster}))
        .await
        .expect("resumed");
    let (rest, end) = drain(stream).await;
    assert!(end.is_ok(), "{end:?}");
    let last = rest.last().expect("final");
    assert_eq!(kind(last), Kind::Final);
    assert_eq!(phase(last), Phase::Succeeded);
    let stages: Vec<&str> = last
        .status
        .as_ref()
        .map(|s| s.stages.iter().map(|st| st.name.as_str()).collect())
        .unwrap_or_default();
    assert!(
        stages.contains(&"pause") && stages.last() == Some(&"success"),
        "{stages:?}"
    );
}

#[tokio::test]
async fn watch_cluster_upgrade_by_task_and_its_failures() {
    let h = harness("200ms").await;
    let (cluster, task) = create_cluster(&h, "upgrade-fails").await;
    wait_task(&h, &task).await;
    h.sim()
        .set_task_duration("UpgradeCluster", Duration::from_millis(400));
    // Following the task UpgradeCluster returned.
    let upgrade = start_upgrade(&h, &cluster, "1.32.1-aliyun.1").await;
    let stream = watch_upgrade(&h, &cluster, Some(upgrade))
        .await
        .expect("opened");
    let (messages, end) = drain(stream).await;
    assert!(end.is_ok(), "{end:?}");
    assert_well_formed(&messages);
    assert_eq!(
        messages
            .last()
            .and_then(|m| m.status.as_ref())
            .map(|s| s.target_kind.as_str()),
        Some("task")
    );

    // A failed upgrade, followed through GetUpgradeStatus.
    h.sim().fail_next_task(
        "UpgradeCluster",
        "UpgradeMasterFailed",
        "control plane not ready",
    );
    start_upgrade(&h, &cluster, "1.33.1-aliyun.1").await;
    let stream = watch_upgrade(&h, &cluster, None).await.expect("opened");
    let (messages, end) = drain(stream).await;
    assert_well_formed(&messages);
    assert_eq!(phase(messages.last().expect("final")), Phase::Failed);
    let status = end.expect_err("failed");
    assert_eq!(status.code(), Code::Aborted);
    assert!(
        status.message().contains("control plane not ready"),
        "{status:?}"
    );

    // A canceled upgrade ends the same way, as canceled.
    h.sim()
        .set_task_duration("UpgradeCluster", Duration::from_secs(30));
    start_upgrade(&h, &cluster, "1.34.1-aliyun.1").await;
    let mut stream = watch_upgrade(&h, &cluster, None).await.expect("opened");
    until(&mut stream, |m| kind(m) == Kind::Initial).await;
    h.cs("CancelClusterUpgrade", json!({"cluster_id": cluster}))
        .await
        .expect("canceled");
    let (messages, end) = drain(stream).await;
    assert_eq!(phase(messages.last().expect("final")), Phase::Canceled);
    assert_eq!(end.expect_err("canceled").code(), Code::Aborted);
}

#[tokio::test]
async fn watch_addon_upgrade_to_success_and_to_failure() {
    let h = harness("200ms").await;
    let (cluster, task) = create_cluster(&h, "addons").await;
    wait_task(&h, &task).await;
    h.sim()
        .set_task_duration("UpgradeClusterAddons", Duration::from_millis(500));
    let upgrade = |name: &'static str, version: &'static str| {
        h.cs(
            "UpgradeClusterAddons",
            json!({"cluster_id": cluster, "body": [{"component_name": name, "next_version": version}]}),
        )
    };
    upgrade("coredns", "v1.12.0").await.expect("upgrading");
    upgrade("csi-plugin", "v1.31.0").await.expect("upgrading");
    let open = |addons: &'static [&'static str]| watch_addons(&h, &cluster, addons);
    let (messages, end) = drain(open(&["coredns", "csi-plugin"]).await.expect("opened")).await;
    assert!(end.is_ok(), "{end:?}");
    assert_well_formed(&messages);
    let last = messages
        .last()
        .and_then(|m| m.status.clone())
        .expect("status");
    assert_eq!(last.progress_percent, Some(100));
    let versions: Vec<(&str, &str)> = last
        .addons
        .iter()
        .map(|a| (a.name.as_str(), a.version.as_str()))
        .collect();
    assert_eq!(
        versions,
        [("coredns", "v1.12.0"), ("csi-plugin", "v1.31.0")]
    );

    h.sim().fail_next_task(
        "UpgradeClusterAddons",
        "AddonUpgradeFailed",
        "pods crash-looping",
    );
    upgrade("metrics-server", "v0.4.0")
        .await
        .expect("upgrading");
    let (messages, end) = drain(open(&["metrics-server"]).await.expect("opened")).await;
    assert_well_formed(&messages);
    let last = messages.last().expect("final");
    assert_eq!(phase(last), Phase::Failed);
    let status = end.expect_err("failed");
    assert_eq!(status.code(), Code::Aborted);
    assert_eq!(
        status.get_details_error_info().map(|i| i.reason),
        Some("AddonUpgradeFailed".to_string())
    );
}

#[tokio::test]
async fn watch_cluster_until_running_failed_or_deleted() {
    let h = harness("400ms").await;
    let (cluster, _) = create_cluster(&h, "state").await;
    let (messages, end) = drain(watch_cluster(&h, &cluster, &[]).await.expect("opened")).await;
    assert!(end.is_ok(), "{end:?}");
    assert_eq!(
        messages[0].status.as_ref().map(|s| s.state.as_str()),
        Some("initial")
    );
    assert_eq!(
        messages
            .last()
            .and_then(|m| m.status.as_ref())
            .map(|s| s.state.as_str()),
        Some("running")
    );

    h.cs("DeleteCluster", json!({"cluster_id": cluster}))
        .await
        .expect("deleting");
    let (messages, end) = drain(
        watch_cluster(&h, &cluster, &["deleted"])
            .await
            .expect("opened"),
    )
    .await;
    assert!(end.is_ok(), "{end:?}");
    assert_eq!(
        messages
            .last()
            .and_then(|m| m.status.as_ref())
            .map(|s| s.state.as_str()),
        Some("deleted")
    );

    h.sim()
        .fail_next_task("CreateCluster", "ErrorCreatingNodes", "no capacity");
    let (failing, _) = create_cluster(&h, "fails").await;
    let stream = watch_cluster(&h, &failing, &["running"])
        .await
        .expect("opened");
    let (messages, end) = drain(stream).await;
    assert_eq!(phase(messages.last().expect("final")), Phase::Failed);
    assert_eq!(end.expect_err("failed").code(), Code::Aborted);
}

#[tokio::test]
async fn heartbeats_appear_while_nothing_changes() {
    let h = harness("100ms").await;
    h.sim()
        .set_task_duration("CreateCluster", Duration::from_secs(60));
    let (_, task) = create_cluster(&h, "slow").await;
    let mut stream = watch_task(&h, &task).await.expect("opened");
    let mut heartbeats = 0;
    let started = Instant::now();
    // The first stage lasts 15 s: only heartbeats can come in the next second.
    while heartbeats < 3 && started.elapsed() < Duration::from_secs(5) {
        let m = until(&mut stream, |_| true).await;
        if kind(&m) == Kind::Heartbeat {
            heartbeats += 1;
            assert_eq!(phase(&m), Phase::Running, "a heartbeat carries the status");
        }
    }
    assert_eq!(heartbeats, 3);
}

#[tokio::test]
async fn transient_poll_errors_are_reported_in_stream_and_retried() {
    // The gateway's own retries would hide the failures; the watch's are what is tested here.
    let h = harness_with("800ms", "[retry]\nmax_attempts = 1\n").await;
    let (_, task) = create_cluster(&h, "flaky").await;
    let mut stream = watch_task(&h, &task).await.expect("opened");
    until(&mut stream, |m| kind(m) == Kind::Initial).await;
    h.sim().inject(Fault {
        operation: Some("DescribeTaskInfo".into()),
        status: 503,
        code: "ServiceUnavailable".into(),
        message: "try again".into(),
        times: 2,
        delay_ms: 0,
        headers: Default::default(),
        ..Default::default()
    });
    let failed = until(&mut stream, |m| kind(m) == Kind::PollError).await;
    let error = failed.poll_error.expect("poll error");
    assert_eq!(error.code, "UNAVAILABLE");
    assert!(error.attempt >= 1);
    assert!(error.retry_in.is_some());
    let (rest, end) = drain(stream).await;
    assert!(end.is_ok(), "the stream survived the failed polls: {end:?}");
    assert!(rest.last().is_some_and(|m| m.poll_error.is_none()));
}

#[tokio::test]
async fn a_thousand_subscribers_on_ten_tasks_cost_one_poll_per_task_per_interval() {
    // Every subscriber is the caller `local` here, so its quota must allow them all.
    let h = harness_with("300ms", "max_streams_per_caller = 1000\n").await;
    h.sim()
        .set_task_duration("CreateCluster", Duration::from_millis(1500));
    let mut tasks = Vec::new();
    for i in 0..10 {
        tasks.push(create_cluster(&h, &format!("shared-{i}")).await.1);
    }
    h.sim().clear_requests();
    // Five connections, as many UIs would come over several: 200 streams each, the default
    // most per connection.
    let mut channels = Vec::new();
    for _ in 0..5 {
        channels.push(
            Channel::from_shared(format!("http://{}", h.running.addr))
                .expect("uri")
                .connect()
                .await
                .expect("connects"),
        );
    }
    let started = Instant::now();
    let mut subscribers = Vec::new();
    for i in 0..1000 {
        let mut c = WatchServiceClient::new(channels[i % channels.len()].clone());
        let task_id = tasks[i % tasks.len()].clone();
        subscribers.push(tokio::spawn(async move {
            let stream = c
                .watch_task(WatchTaskRequest { task_id })
                .await
                .expect("opened")
                .into_inner();
            drain(Events::of(stream)).await
        }));
    }
    for s in subscribers {
        let (messages, end) = s.await.expect("joined");
        assert!(end.is_ok(), "{end:?}");
        assert_eq!(phase(messages.last().expect("final")), Phase::Succeeded);
    }
    let elapsed = started.elapsed();
    // Intervals are never shorter than the initial one, so a task's poller polls at most once
    // per initial interval (plus the first poll).
    let ceiling = (elapsed.as_millis() as u64 / INITIAL_MS) as usize + 1;
    let polls = h.sim().requests_for("DescribeTaskInfo");
    for task in &tasks {
        let n = polls
            .iter()
            .filter(|r| r.raw_path.ends_with(task.as_str()))
            .count();
        assert!(
            n >= 1 && n <= ceiling,
            "task {task}: {n} polls in {elapsed:?} (at most {ceiling})"
        );
    }
    assert!(polls.len() <= 10 * ceiling, "{} polls", polls.len());
    assert_eq!(
        h.running.watcher.active_pollers(),
        0,
        "every poller stopped"
    );
}

#[tokio::test]
async fn a_late_subscriber_gets_the_current_status_at_once() {
    let h = harness("100ms").await;
    h.sim()
        .set_task_duration("CreateCluster", Duration::from_millis(1200));
    let (_, task) = create_cluster(&h, "late").await;
    let mut early = watch_task(&h, &task).await.expect("opened");
    let changed = until(&mut early, |m| {
        kind(m) == Kind::Change && !m.new_events.is_empty()
    })
    .await;
    let polls_before = h.running.watcher.polls();
    let mut late = watch_task(&h, &task).await.expect("opened");
    let first = until(&mut late, |_| true).await;
    assert_eq!(kind(&first), Kind::Initial);
    assert!(
        first.sequence >= changed.sequence,
        "the latest status, not a stale one"
    );
    assert!(
        first.new_events.len() >= 2,
        "every event so far: {:?}",
        first.new_events
    );
    assert!(
        h.running.watcher.polls() <= polls_before + 1,
        "joining did not cost a poll of its own"
    );
}

#[tokio::test]
async fn cancelling_every_subscriber_stops_the_polling() {
    let h = harness("100ms").await;
    h.sim()
        .set_task_duration("CreateCluster", Duration::from_secs(60));
    let (_, task) = create_cluster(&h, "abandoned").await;
    let mut streams = Vec::new();
    for _ in 0..20 {
        let mut s = watch_task(&h, &task).await.expect("opened");
        until(&mut s, |m| kind(m) == Kind::Initial).await;
        streams.push(s);
    }
    assert_eq!(
        h.running.watcher.active_pollers(),
        1,
        "one poller for them all"
    );
    drop(streams);
    let deadline = Instant::now() + Duration::from_secs(5);
    while h.running.watcher.active_pollers() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(h.running.watcher.active_pollers(), 0, "the poller stopped");
    let count = h.sim().count("DescribeTaskInfo");
    // Several of the longest intervals: a running poller would have polled again.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        h.sim().count("DescribeTaskInfo"),
        count,
        "no poll after the last left"
    );
}

#[tokio::test]
async fn the_callers_deadline_ends_its_watch() {
    let h = harness("100ms").await;
    h.sim()
        .set_task_duration("CreateCluster", Duration::from_secs(60));
    let (_, task) = create_cluster(&h, "deadline").await;
    let mut request = tonic::Request::new(WatchTaskRequest { task_id: task });
    request.set_timeout(Duration::from_millis(400));
    let started = Instant::now();
    let result = client(&h).watch_task(request).await;
    let end = match result {
        Ok(stream) => drain(Events::of(stream.into_inner())).await.1,
        Err(e) => Err(e),
    };
    assert_eq!(end.expect_err("deadline").code(), Code::DeadlineExceeded);
    assert!(started.elapsed() < Duration::from_secs(10));
    let deadline = Instant::now() + Duration::from_secs(5);
    while h.running.watcher.active_pollers() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        h.running.watcher.active_pollers(),
        0,
        "its poller stopped with it"
    );
}

#[tokio::test]
async fn the_cli_renders_a_run_and_its_outcome() {
    use ack_gateway::cli::watch::{self as client, ClientError, Renderer};
    use ack_gateway::cli::{Cli, Command};
    use clap::Parser;
    let h = harness("400ms").await;
    let addr = format!("http://{}", h.running.addr);
    let args = |task: &str| {
        let cli = Cli::try_parse_from(["ack-gateway", "watch", "task", task, "--addr", &addr])
            .expect("the command line parses");
        match cli.command {
            Some(Command::Watch(args)) => args,
            other => panic!("not a watch command: {other:?}"),
        }
    };
    let (_, task) = create_cluster(&h, "cli").await;
    // A hidden bar prints plain lines, as when the output is not a terminal.
    let mut renderer = Renderer::new(indicatif::ProgressBar::hidden(), Vec::new());
    client::watch(&args(&task), &mut renderer)
        .await
        .expect("the task succeeded");
    let out = String::from_utf8(renderer.into_output()).expect("text");
    assert!(out.contains(&format!("watching task {task}")), "{out}");
    assert!(out.contains("✓ CreateVPC"), "{out}");
    assert!(out.contains("stage 4 started: CreateNodes"), "{out}");
    assert!(
        out.contains(&format!("done: task {task} is success")),
        "{out}"
    );

    h.sim().fail_next_task(
        "CreateCluster",
        "ErrorVpcQuotaExceeded",
        "no VPC quota left",
    );
    let (_, failing) = create_cluster(&h, "cli-fails").await;
    let mut renderer = Renderer::new(indicatif::ProgressBar::hidden(), Vec::new());
    let err = client::watch(&args(&failing), &mut renderer)
        .await
        .expect_err("the task failed");
    assert!(
        matches!(&err, ClientError::Status(s) if s.code() == Code::Aborted),
        "{err}"
    );
    let out = String::from_utf8(renderer.into_output()).expect("text");
    assert!(out.contains("failed: task"), "{out}");
    assert!(out.contains("no VPC quota left"), "{out}");
}

/// The shared poll serves every subscriber, not the caller that started it: a reload revoking
/// that caller ends its stream only (PERMISSION_DENIED, no further status), while the others
/// follow the run to its end.
#[tokio::test]
async fn revoking_the_first_subscriber_ends_its_stream_only() {
    use ack_gateway::access::token_hash;
    let sim = simulator(ack_gateway::simulator::SimulatorOptions {
        task_duration: Duration::from_secs(2),
        ..Default::default()
    })
    .await;
    let (id, secret) = sim.root_key();
    let dir = std::env::temp_dir().join(format!("ackgw-watch-revoke-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("gateway.toml");
    let config_text = |alice_operations: &str| {
        format!(
            "[simulator]\nmode = \"never\"\n[auth]\nmode = \"enforce\"\n[endpoints]\ncs = \"{}\"\n\
             [profiles.default]\ntype = \"access_key\"\naccess_key_id = \"{id}\"\n\
             access_key_secret = \"{}\"\nregion = \"cn-hangzhou\"\n{WATCH}\
             [callers.alice]\ntoken_sha256 = [\"{}\"]\nprofiles = [\"default\"]\noperations = {alice_operations}\n\
             [callers.bob]\ntoken_sha256 = [\"{}\"]\nprofiles = [\"default\"]\noperations = [\"*\"]\n",
            sim.endpoint(),
            secret.expose(),
            token_hash("alice-token"),
            token_hash("bob-token"),
        )
    };
    let first = config_text(r#"["*"]"#);
    std::fs::write(&file, &first).expect("config");
    let mut config = ack_gateway::config::Config::load(Some(&first), &env(&[])).expect("valid");
    config.listen = "127.0.0.1:0".parse().expect("addr");
    config.admin_listen = "127.0.0.1:0".parse().expect("addr");
    config.source_file = Some(file.clone());
    config.reload_interval = Duration::from_millis(100);
    let running = ack_gateway::app::start(config).await.expect("starts");
    let channel = Channel::from_shared(format!("http://{}", running.addr))
        .expect("uri")
        .connect()
        .await
        .expect("connects");
    let as_caller = |token: &str| {
        [
            ("authorization", format!("Bearer {token}")),
            ("x-ack-profile", "default".to_string()),
        ]
    };
    let bob = as_caller("bob-token");
    let bob_md: Vec<(&str, &str)> = bob.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (created, _) = call(
        &channel,
        CS_SERVICE,
        "CreateCluster",
        json!({"name": "revoked", "region_id": "cn-hangzhou"}),
        &bob_md,
        None,
    )
    .await
    .expect("created");
    let task = created["task_id"].as_str().expect("task").to_string();
    let subscribe = |token: &str| {
        let mut request = tonic::Request::new(WatchTaskRequest {
            task_id: task.clone(),
        });
        for (k, v) in as_caller(token) {
            request
                .metadata_mut()
                .insert(k, v.parse().expect("metadata"));
        }
        let mut client = WatchServiceClient::new(channel.clone());
        async move {
            client
                .watch_task(request)
                .await
                .map(tonic::Response::into_inner)
        }
    };
    // Alice's subscription starts the poller; Bob's joins it.
    let mut alice = subscribe("alice-token").await.expect("alice watches");
    let first_alice = alice.message().await.expect("message").expect("initial");
    assert_eq!(kind(&first_alice.clone().into()), Kind::Initial);
    let bob_stream = subscribe("bob-token").await.expect("bob watches");

    // Alice may no longer read tasks.
    std::fs::write(&file, config_text(r#"["CreateCluster"]"#)).expect("rewrite");
    let (alice_messages, alice_end) = drain(Events::of(alice)).await;
    let refused = alice_end.expect_err("alice's stream is refused");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(
        alice_messages.iter().all(|m| kind(m) != Kind::Final),
        "no final status for a revoked caller: {alice_messages:?}"
    );

    // Bob follows the run to its end on the same poller.
    let (bob_messages, bob_end) = drain(Events::of(bob_stream)).await;
    bob_end.expect("bob's watch ends cleanly");
    assert_well_formed(&bob_messages);
    assert_eq!(
        phase(bob_messages.last().expect("final")),
        Phase::Succeeded,
        "{bob_messages:?}"
    );
    running.shutdown().await.expect("shutdown");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_caller_holds_at_most_max_streams_per_caller_and_closing_one_frees_a_place() {
    let h = harness_with("30s", "max_streams_per_caller = 2\n").await;
    let (_, task) = create_cluster(&h, "quota").await;
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut stream = watch_task(&h, &task).await.expect("within the quota");
        until(&mut stream, |m| kind(m) == Kind::Initial).await;
        open.push(stream);
    }
    let err = watch_task(&h, &task).await.expect_err("over the quota");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(
        err.message().contains("already has 2 watch streams open"),
        "{}",
        err.message()
    );
    // Closing one frees its place (once the gateway sees the stream go).
    drop(open.pop());
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut reopened = loop {
        match watch_task(&h, &task).await {
            Ok(stream) => break stream,
            Err(e) if e.code() == Code::ResourceExhausted && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("the freed place is not reused: {e:?}"),
        }
    };
    until(&mut reopened, |m| kind(m) == Kind::Initial).await;
}
