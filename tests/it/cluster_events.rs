//! WatchClusterEvents over real sockets, gRPC and Connect, against the simulator's cluster
//! events: new events streamed once each, from now or from a time, filtered by level per
//! subscriber while one poller serves them all, paging inside the poller, the cluster gone
//! (NOT_FOUND), refusals, and the caller's deadline.

use crate::http_clients::connect_stream;
use crate::support::*;
use crate::watch_nodepool::{
    client, drain, harness, kind, running_cluster, until, Events, INITIAL_MS,
};
use ack_gateway::proto::gateway::WatchEventKind as Kind;
use ack_gateway::proto::gateway::{TaskEvent, WatchClusterEventsRequest, WatchEvent};
use serde_json::json;
use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime};
use tonic::{Code, Status};

async fn watch_events(
    h: &Harness,
    cluster: &str,
    levels: &[&str],
    since: Option<SystemTime>,
    timeout: Option<Duration>,
) -> Result<Events, Status> {
    let mut request = tonic::Request::new(WatchClusterEventsRequest {
        cluster_id: cluster.into(),
        levels: levels.iter().map(|l| l.to_string()).collect(),
        since: since.map(prost_types::Timestamp::from),
    });
    if let Some(t) = timeout {
        request.set_timeout(t);
    }
    client(h)
        .watch_cluster_events(request)
        .await
        .map(|r| Events::of(r.into_inner()))
}

fn events(messages: &[WatchEvent]) -> Vec<&TaskEvent> {
    messages.iter().flat_map(|m| m.new_events.iter()).collect()
}

fn reasons(messages: &[WatchEvent]) -> Vec<&str> {
    events(messages).iter().map(|e| e.reason.as_str()).collect()
}

/// Starts a node pool's creation; its id.
async fn create_pool(h: &Harness, cluster: &str, name: &str) -> String {
    let (created, _) = h
        .cs(
            "CreateClusterNodePool",
            json!({"cluster_id": cluster, "nodepool_info": {"name": name},
                   "scaling_group": {"desired_size": 1}}),
        )
        .await
        .expect("node pool creation accepted");
    created["nodepool_id"].as_str().expect("id").to_string()
}

fn has(reason: &'static str) -> impl Fn(&WatchEvent) -> bool {
    move |m| m.new_events.iter().any(|e| e.reason == reason)
}

#[tokio::test]
async fn new_events_are_streamed_once_each_from_when_the_stream_opens() {
    let h = harness("300ms", "").await;
    let cluster = running_cluster(&h, "events").await;
    let mut stream = watch_events(&h, &cluster, &[], None, None)
        .await
        .expect("opened");
    let first = until(&mut stream, |_| true).await;
    assert_eq!(kind(&first[0]), Kind::Initial);
    assert!(
        first[0].new_events.is_empty(),
        "the cluster's earlier events are not new: {first:?}"
    );
    let status = first[0].status.as_ref().expect("status");
    assert_eq!(
        (status.target_kind.as_str(), status.target_id.as_str()),
        ("cluster_events", cluster.as_str())
    );
    let pool = create_pool(&h, &cluster, "p").await;
    let mut read = until(&mut stream, has("NodePoolCreated")).await;
    assert_eq!(
        reasons(&read),
        ["TaskStarted", "TaskSucceeded", "NodePoolCreated"],
        "oldest first, each once"
    );
    let created = events(&read)[2];
    assert_eq!(created.r#type, "nodepool_create");
    assert_eq!(created.subject, pool);
    assert_eq!(created.level, "info");
    assert!(created.event_id.starts_with("evt-"), "{created:?}");
    assert!(!created.timestamp.is_empty());
    // Nothing more arrives but heartbeats while nothing happens.
    let quiet = tokio::time::timeout(Duration::from_millis(600), async {
        loop {
            let Ok(Some(m)) = stream.message().await else {
                return;
            };
            read.push(m);
        }
    })
    .await;
    assert!(quiet.is_err(), "the stream goes on");
    let ids: Vec<&str> = events(&read).iter().map(|e| e.event_id.as_str()).collect();
    let distinct: BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(ids.len(), distinct.len(), "no event twice: {ids:?}");
    assert!(read
        .iter()
        .skip(1)
        .all(|m| matches!(kind(m), Kind::Change | Kind::Heartbeat)));
}

#[tokio::test]
async fn each_subscriber_filters_by_level_and_time_while_one_poller_serves_them_all() {
    const CROWD: usize = 100;
    let h = harness("300ms", "max_streams_per_caller = 200\n").await;
    let before = SystemTime::now() - Duration::from_secs(5);
    let cluster = running_cluster(&h, "filters").await;
    let pool = create_pool(&h, &cluster, "p").await;
    h.sim().clear_requests();
    let started = Instant::now();
    let mut errors = watch_events(&h, &cluster, &["ERROR"], None, None)
        .await
        .expect("opened");
    let mut history = watch_events(&h, &cluster, &[], Some(before), None)
        .await
        .expect("opened");
    let mut recent = watch_events(
        &h,
        &cluster,
        &["info", "warning"],
        Some(SystemTime::now() + Duration::from_secs(3600)),
        None,
    )
    .await
    .expect("opened");
    // And a hundred more, as many pages would open: still the one poller.
    let mut crowd = Vec::new();
    for _ in 0..CROWD {
        let mut s = watch_events(&h, &cluster, &[], None, None)
            .await
            .expect("opened");
        until(&mut s, |_| true).await;
        crowd.push(s);
    }
    // The node pool comes up, then a scale-out fails.
    let first = until(&mut history, has("NodePoolCreated")).await;
    assert_eq!(kind(&first[0]), Kind::Initial);
    assert!(
        reasons(&first[..1]).contains(&"ClusterCreated"),
        "since a time: what came before, in the first message: {first:?}"
    );
    h.sim()
        .fail_next_task("ScaleClusterNodePool", "InstanceStockOut", "no stock");
    h.cs(
        "ScaleClusterNodePool",
        json!({"cluster_id": cluster, "nodepool_id": pool, "count": 1}),
    )
    .await
    .expect("scale-out accepted");
    let got = until(&mut errors, has("TaskFailed")).await;
    let seen = events(&got);
    assert_eq!(seen.len(), 1, "only the error: {got:?}");
    assert_eq!(seen[0].level, "error");
    assert!(
        seen[0].message.contains("InstanceStockOut"),
        "{:?}",
        seen[0]
    );
    // Info events made no message for this subscriber: only INITIAL, heartbeats and the error.
    assert!(got
        .iter()
        .all(|m| kind(m) != Kind::Change || !m.new_events.is_empty()));
    let all = until(&mut history, has("TaskFailed")).await;
    assert_eq!(reasons(&all), ["TaskStarted", "TaskFailed"]);
    let levels = until(&mut recent, has("TaskStarted")).await;
    assert!(events(&levels[..1]).is_empty(), "nothing since the future");
    assert!(events(&levels).iter().all(|e| e.level != "error"));
    // One poller for them all: at most one read per interval (plus the first).
    for s in &mut crowd {
        until(s, has("TaskFailed")).await;
    }
    let elapsed = started.elapsed();
    let intervals = elapsed.as_millis() as u64 / INITIAL_MS;
    let polls = h.sim().requests_for("DescribeClusterEvents").len();
    eprintln!(
        "WatchClusterEvents: {} subscribers, 1 cluster: {polls} polls in {elapsed:?} ({:.2} per {INITIAL_MS} ms interval)",
        CROWD + 3,
        polls as f64 / intervals.max(1) as f64
    );
    assert!(
        (1..=intervals as usize + 1).contains(&polls),
        "{polls} polls in {elapsed:?}"
    );
}

#[tokio::test]
async fn the_poller_pages_through_many_events() {
    let h = harness("300ms", "").await;
    let cluster = running_cluster(&h, "many").await;
    h.sim()
        .set_task_duration("RunClusterInspect", Duration::from_millis(100));
    for _ in 0..60 {
        h.cs("RunClusterInspect", json!({"cluster_id": cluster}))
            .await
            .expect("inspection started");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    h.sim().clear_requests();
    let mut stream = watch_events(&h, &cluster, &[], Some(SystemTime::UNIX_EPOCH), None)
        .await
        .expect("opened");
    let first = until(&mut stream, |_| true).await;
    let initial = &first[0].new_events;
    let completed = initial
        .iter()
        .filter(|e| e.reason == "InspectionCompleted")
        .count();
    assert_eq!(completed, 60, "every inspection's end, across pages");
    assert!(initial.len() > 180, "{} events", initial.len());
    let ids: BTreeSet<&str> = initial.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids.len(), initial.len(), "each once");
    let times: Vec<&str> = initial.iter().map(|e| e.timestamp.as_str()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "oldest first");
    let pages = h.sim().requests_for("DescribeClusterEvents");
    assert!(pages.len() >= 2, "{} reads", pages.len());
    assert!(
        pages.iter().skip(1).any(|r| r
            .query
            .iter()
            .any(|(k, v)| k == "next_token" && !v.is_empty())),
        "the next page by its token"
    );
    // New events after the pages: one page is enough.
    h.cs("RunClusterInspect", json!({"cluster_id": cluster}))
        .await
        .expect("inspection started");
    let later = until(&mut stream, has("InspectionCompleted")).await;
    assert_eq!(
        reasons(&later),
        ["TaskStarted", "TaskSucceeded", "InspectionCompleted"]
    );
}

#[tokio::test]
async fn a_deleted_cluster_ends_the_stream_not_found_and_bad_requests_are_refused() {
    let h = harness("300ms", "").await;
    let cluster = running_cluster(&h, "deleted").await;
    let stream = watch_events(&h, &cluster, &[], None, None)
        .await
        .expect("opened");
    h.cs("DeleteCluster", json!({"cluster_id": cluster}))
        .await
        .expect("deletion started");
    let (messages, end) = drain(stream).await;
    assert_eq!(end.expect_err("gone").code(), Code::NotFound);
    assert_eq!(kind(messages.last().expect("final")), Kind::Final);
    assert!(reasons(&messages).contains(&"TaskStarted"), "{messages:?}");
    let err = watch_events(&h, "c-nope", &[], None, None)
        .await
        .err()
        .expect("refused before any message");
    assert_eq!(err.code(), Code::NotFound);
    for (cluster, levels, field) in [("", &[][..], "cluster_id"), ("c", &["debug"][..], "levels")] {
        let err = watch_events(&h, cluster, levels, None, None)
            .await
            .err()
            .expect("refused");
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains(field), "{err:?}");
    }
}

#[tokio::test]
async fn the_callers_deadline_ends_an_events_stream() {
    let h = harness("300ms", "").await;
    let cluster = running_cluster(&h, "deadline").await;
    let started = Instant::now();
    let stream = watch_events(&h, &cluster, &[], None, Some(Duration::from_millis(500)))
        .await
        .expect("opened");
    let (messages, end) = drain(stream).await;
    assert_eq!(end.expect_err("deadline").code(), Code::DeadlineExceeded);
    assert_eq!(kind(messages.last().expect("final")), Kind::Final);
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn watch_cluster_events_over_connect() {
    let h = harness("300ms", "").await;
    let cluster = running_cluster(&h, "connect").await;
    let watched = connect_stream(
        &h,
        "WatchClusterEvents",
        json!({"clusterId": cluster, "levels": ["info"]}),
        &[("connect-timeout-ms", "2000")],
    );
    let write = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        create_pool(&h, &cluster, "c").await
    };
    let ((messages, _, end), pool) = tokio::join!(watched, write);
    assert_eq!(end["error"]["code"], "deadline_exceeded", "{end}");
    let first = &messages.first().expect("initial").1;
    assert_eq!(first["kind"], "WATCH_EVENT_KIND_INITIAL");
    assert!(first.get("newEvents").is_none(), "nothing old: {first}");
    let created: Vec<&serde_json::Value> = messages
        .iter()
        .filter_map(|(_, m)| m["newEvents"].as_array())
        .flatten()
        .filter(|e| e["reason"] == "NodePoolCreated")
        .collect();
    assert_eq!(created.len(), 1, "{messages:?}");
    assert_eq!(created[0]["subject"], pool.as_str());
    assert_eq!(created[0]["type"], "nodepool_create");
    assert!(created[0]["eventId"]
        .as_str()
        .is_some_and(|id| id.starts_with("evt-")));
}
