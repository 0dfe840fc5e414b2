//! Several replicas against one simulator and a real `redis-server` (started here; skipped with
//! a notice when the program is missing, except under CI): one upstream budget, invalidation
//! across replicas, one poller per watched target with takeover (tasks, node pools, waits,
//! cluster events), Redis killed and stalled under load, and nothing secret in Redis.

use crate::support::*;
use ack_gateway::proto::gateway::watch_service_client::WatchServiceClient;
use ack_gateway::proto::gateway::{Phase, WatchEvent, WatchEventKind as Kind, WatchTaskRequest};
use ack_gateway::simulator::{Simulator, SimulatorOptions};
use ack_test_support::redis::{RedisServer, WhenMissing};
use serde_json::json;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A `redis-server` on a free loopback port, killed on drop (the test support's).
type Redis = RedisServer;

/// A connection to the server, for the tests that read Redis themselves.
async fn client(redis: &Redis) -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis.url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connected")
}

/// `[redis]` for `Shared` handles of the tests' own, with `extra` keys.
fn redis_config(redis: &Redis, extra: &str) -> ack_gateway::config::redis::RedisConfig {
    ack_gateway::config::Config::load(
        Some(&format!("[redis]\nurl = \"{}\"\n{extra}", redis.url())),
        &HashMap::new(),
    )
    .expect("config")
    .redis
    .expect("redis")
}

const FAST_WATCH: &str = "[watch]\ninitial_interval = \"100ms\"\nmax_interval = \"200ms\"\n\
     heartbeat_interval = \"500ms\"\nretry_initial = \"50ms\"\nretry_max = \"200ms\"\n\
     max_polls_per_second = 1000.0\n";

/// A replica: a gateway with shared state in `redis`, against `sim`.
pub(crate) async fn replica(sim: &Simulator, redis: &str, extra: &str) -> Harness {
    let (id, secret) = sim.root_key();
    Harness::with_config(
        &format!(
            "[simulator]\nmode = \"never\"\n[auth]\nmode = \"insecure_local\"\n[endpoints]\ncs = \"{}\"\n\
             [profiles.default]\ntype = \"access_key\"\naccess_key_id = \"{id}\"\n\
             access_key_secret = \"{}\"\nregion = \"cn-hangzhou\"\n\
             [redis]\nurl = \"{redis}\"\ncommand_timeout = \"100ms\"\nlease = \"1s\"\n{FAST_WATCH}{extra}",
            sim.endpoint(),
            secret.expose()
        ),
        HashMap::new(),
    )
    .await
}

/// Waits until every replica shares state (Redis answers, invalidations subscribed).
pub(crate) async fn until_shared(replicas: &[&Harness]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !replicas
        .iter()
        .all(|h| h.running.gateway.shared().is_some_and(|s| s.is_shared()))
    {
        assert!(Instant::now() < deadline, "replicas never shared state");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_under_load_spend_one_upstream_budget() {
    let Some(redis) = Redis::start(WhenMissing::SkipOutsideCi) else {
        return;
    };
    let sim = simulator(SimulatorOptions::default()).await;
    let budget = "[rate_limit]\nupstream = { rate = 20.0, burst = 5 }\nmax_wait = \"10ms\"\n";
    let a = replica(&sim, &redis.url(), budget).await;
    let b = replica(&sim, &redis.url(), budget).await;
    let c = replica(&sim, &redis.url(), budget).await;
    until_shared(&[&a, &b, &c]).await;
    sim.clear_requests();
    let window = Duration::from_millis(1500);
    let started = Instant::now();
    let load = |h: &Harness| {
        let channel = h.channel.clone();
        async move {
            let (mut ok, mut refused) = (0, 0);
            for _ in 0..2000 {
                if started.elapsed() >= window {
                    break;
                }
                let answer = call(
                    &channel,
                    CS_SERVICE,
                    "DescribeClustersV1",
                    json!({}),
                    &[("cache-control", "no-cache")],
                    None,
                )
                .await;
                match answer {
                    Ok(_) => ok += 1,
                    Err(s) if s.code() == tonic::Code::ResourceExhausted => refused += 1,
                    Err(s) => panic!("unexpected {s:?}"),
                }
            }
            (ok, refused)
        }
    };
    let results =
        futures_util::future::join_all([&a, &b, &c, &a, &b, &c].into_iter().map(load)).await;
    let elapsed = started.elapsed().as_secs_f64();
    let sent = sim.requests_for("DescribeClustersV1").len() as f64;
    let ok: usize = results.iter().map(|(o, _)| o).sum();
    let refused: usize = results.iter().map(|(_, r)| r).sum();
    let allowed = 5.0 + 20.0 * elapsed;
    eprintln!("one budget: {sent} upstream calls in {elapsed:.2} s (allowed {allowed:.1}); {ok} ok, {refused} refused");
    assert!(
        sent <= allowed + 4.0,
        "{sent} upstream calls > {allowed:.1}: budgets were not shared"
    );
    assert!(sent >= 10.0, "the budget let calls through ({sent})");
    assert!(refused > 0, "the load exceeded the budget");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_through_one_replica_invalidates_another_replicas_cached_read() {
    let Some(redis) = Redis::start(WhenMissing::SkipOutsideCi) else {
        return;
    };
    let sim = simulator(SimulatorOptions::default()).await;
    let a = replica(&sim, &redis.url(), "").await;
    let b = replica(&sim, &redis.url(), "").await;
    until_shared(&[&a, &b]).await;
    invalidation_crosses_replicas(&a, &b, "first").await;
}

/// `DescribeClusterDetail` of `cluster` through `h`, the cache allowed.
async fn read_detail(
    h: &Harness,
    cluster: &str,
) -> (serde_json::Value, tonic::metadata::MetadataMap) {
    call(
        &h.channel,
        CS_SERVICE,
        "DescribeClusterDetail",
        json!({"cluster_id": cluster}),
        &[],
        None,
    )
    .await
    .expect("read")
}

/// A read cached on `b`, a write through `a`: `b` asks upstream again; returns how long that took.
async fn invalidation_crosses_replicas(a: &Harness, b: &Harness, name: &str) -> Duration {
    let (cluster, _) = create_cluster(a, name).await;
    let state = |md: &tonic::metadata::MetadataMap| {
        md.get("x-ack-cache")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none")
            .to_string()
    };
    read_detail(b, &cluster).await;
    let (_, md) = read_detail(b, &cluster).await;
    assert_eq!(state(&md), "hit", "cached on b");
    a.cs(
        "ModifyClusterTags",
        json!({"cluster_id": cluster, "body": [{"key": "team", "value": "platform"}]}),
    )
    .await
    .expect("tags written through a");
    let written = Instant::now();
    let deadline = written + Duration::from_secs(2);
    loop {
        let (detail, md) = read_detail(b, &cluster).await;
        if state(&md) != "hit" {
            let tags = detail["tags"].to_string();
            assert!(tags.contains("platform"), "b answers the new tags: {tags}");
            return written.elapsed();
        }
        assert!(Instant::now() < deadline, "b kept serving the stale read");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Reads a watch stream to its end: its messages and how it ended.
async fn drain(
    channel: tonic::transport::Channel,
    task: String,
) -> (Vec<WatchEvent>, Result<(), tonic::Status>) {
    let mut stream = WatchServiceClient::new(channel)
        .watch_task(WatchTaskRequest { task_id: task })
        .await
        .expect("opened")
        .into_inner();
    let mut messages = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(20), stream.message()).await {
            Ok(Ok(Some(m))) => messages.push(m.into()),
            Ok(Ok(None)) => return (messages, Ok(())),
            Ok(Err(s)) => return (messages, Err(s)),
            Err(_) => panic!("the stream did not end"),
        }
    }
}

fn assert_succeeded(messages: &[WatchEvent], end: &Result<(), tonic::Status>) {
    assert!(end.is_ok(), "{end:?}");
    let last = messages.last().expect("messages");
    assert_eq!(last.kind, Kind::Final as i32);
    assert_eq!(
        last.status.as_ref().map(|s| s.phase),
        Some(Phase::Succeeded as i32)
    );
    // Heartbeats repeat the current status; every other message is news, in order.
    let sequences: Vec<u64> = messages
        .iter()
        .filter(|m| m.kind != Kind::Heartbeat as i32)
        .map(|m| m.sequence)
        .collect();
    assert!(
        sequences.windows(2).all(|w| w[0] < w[1]),
        "in order, none twice: {sequences:?}"
    );
}

fn polls(replicas: &[Option<Harness>]) -> Vec<u64> {
    replicas
        .iter()
        .map(|h| h.as_ref().map_or(0, |h| h.running.watcher.polls()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_on_three_replicas_cost_one_poller_and_survive_its_replica() {
    let Some(redis) = Redis::start(WhenMissing::SkipOutsideCi) else {
        return;
    };
    let sim = simulator(SimulatorOptions {
        task_duration: Duration::from_millis(2000),
        ..SimulatorOptions::default()
    })
    .await;
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(Some(replica(&sim, &redis.url(), "").await));
    }
    let all: Vec<&Harness> = replicas.iter().flatten().collect();
    until_shared(&all).await;

    // Two streams on each replica: one replica polls.
    let (_, task) = create_cluster(all[0], "watched").await;
    let streams = all
        .iter()
        .chain(all.iter())
        .map(|h| drain(h.channel.clone(), task.clone()));
    for (messages, end) in futures_util::future::join_all(streams).await {
        assert_succeeded(&messages, &end);
    }
    let counts = polls(&replicas);
    assert_eq!(
        counts.iter().filter(|p| **p > 0).count(),
        1,
        "one poller across replicas: {counts:?}"
    );

    // The polling replica stops mid-watch: another takes over, the others' streams go on.
    let (_, task) = create_cluster(all[0], "watched-twice").await;
    let before = polls(&replicas);
    let streams: Vec<_> = all
        .iter()
        .map(|h| tokio::spawn(drain(h.channel.clone(), task.clone())))
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = polls(&replicas);
    let leader = (0..3)
        .find(|i| started[*i] > before[*i])
        .expect("a replica polls");
    let stopped = replicas[leader].take().expect("leader");
    stopped.running.shutdown().await.expect("the leader stops");
    for (i, stream) in streams.into_iter().enumerate() {
        let (messages, end) = stream.await.expect("stream task");
        if i == leader {
            assert_eq!(
                end.expect_err("its replica stopped").code(),
                tonic::Code::Unavailable
            );
        } else {
            assert_succeeded(&messages, &end);
        }
    }
    let after = polls(&replicas);
    let took_over = (0..3)
        .filter(|i| *i != leader && after[*i] > started[*i])
        .count();
    assert_eq!(
        took_over, 1,
        "one replica took over: {started:?} → {after:?}"
    );
}

/// Mixed load on a replica until `stop`: cached and uncached reads, and now and then a
/// mutation; every call with a 5 s deadline. Returns (calls, failures, slowest call).
async fn mixed_load(
    channel: tonic::transport::Channel,
    cluster: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> (usize, Vec<tonic::Status>, Duration) {
    let (mut calls, mut failures, mut slowest) = (0, Vec::new(), Duration::ZERO);
    for i in 0..100_000u32 {
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            break;
        }
        let (op, request, md): (&str, serde_json::Value, &[(&str, &str)]) = match i % 10 {
            0 => (
                "ModifyClusterTags",
                json!({"cluster_id": cluster, "body": [{"key": "n", "value": i.to_string()}]}),
                &[],
            ),
            1..=4 => (
                "DescribeClustersV1",
                json!({}),
                &[("cache-control", "no-cache")],
            ),
            _ => ("DescribeClusterDetail", json!({"cluster_id": cluster}), &[]),
        };
        let started = Instant::now();
        let answer = call(
            &channel,
            CS_SERVICE,
            op,
            request,
            md,
            Some(Duration::from_secs(5)),
        )
        .await;
        slowest = slowest.max(started.elapsed());
        calls += 1;
        if let Err(s) = answer {
            failures.push(s);
        }
    }
    (calls, failures, slowest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_or_stalled_under_load_fails_no_call_and_sharing_resumes() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let Some(redis) = Redis::start(WhenMissing::SkipOutsideCi) else {
        return;
    };
    let sim = simulator(SimulatorOptions::default()).await;
    let generous = "[rate_limit]\nupstream = { rate = 5000.0, burst = 5000 }\n";
    let a = replica(&sim, &redis.url(), generous).await;
    let b = replica(&sim, &redis.url(), generous).await;
    until_shared(&[&a, &b]).await;
    let (cluster, _) = create_cluster(&a, "loaded").await;
    let stop = Arc::new(AtomicBool::new(false));
    let loads: Vec<_> = [&a, &b, &a, &b]
        .iter()
        .map(|h| tokio::spawn(mixed_load(h.channel.clone(), cluster.clone(), stop.clone())))
        .collect();
    let shared = |h: &Harness| h.running.gateway.shared().expect("shared").clone();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        shared(&a).replicas(),
        2,
        "replicas learned through heartbeats"
    );

    // Killed: both replicas go on alone, each with half of every budget.
    let port = redis.kill();
    let deadline = Instant::now() + Duration::from_secs(5);
    while shared(&a).is_shared() || shared(&b).is_shared() {
        assert!(
            Instant::now() < deadline,
            "the loss of Redis went unnoticed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let admin = reqwest::get(format!("http://{}/readyz", a.running.admin_addr))
        .await
        .expect("readyz");
    assert_eq!(
        admin.status().as_u16(),
        200,
        "readiness does not depend on Redis"
    );
    assert!(admin.text().await.expect("text").contains("degraded"));
    // While Redis is away, b caches a read and a writes what makes it stale: the invalidation
    // cannot be published now.
    read_detail(&b, &cluster).await;
    let (_, md) = read_detail(&b, &cluster).await;
    assert_eq!(
        md.get("x-ack-cache").and_then(|v| v.to_str().ok()),
        Some("hit"),
        "cached on b while Redis is away"
    );
    a.cs(
        "ModifyClusterTags",
        json!({"cluster_id": cluster, "body": [{"key": "written", "value": "while-away"}]}),
    )
    .await
    .expect("tags written through a while Redis is away");
    // Down long enough for the breaker's backoff to reach its longest (5 s).
    tokio::time::sleep(Duration::from_secs(6)).await;

    // Back: sharing resumes by itself, and settles: it stays shared (a subscription that is
    // dropped again every few seconds would flip it back, clearing the caches each time).
    let redis = Redis::start_on(port, WhenMissing::SkipOutsideCi).expect("restarted");
    until_shared(&[&a, &b]).await;
    let settled = Instant::now() + Duration::from_secs(6);
    while Instant::now() < settled {
        assert!(
            shared(&a).is_shared() && shared(&b).is_shared(),
            "sharing did not settle after the restart"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // The write made while Redis was away does not leave b serving the old read.
    let (after, _) = read_detail(&b, &cluster).await;
    assert!(
        after["tags"].to_string().contains("while-away"),
        "b answers the tags written while Redis was away: {}",
        after["tags"]
    );
    let took = invalidation_crosses_replicas(&a, &b, "after-restart").await;
    eprintln!("after the restart, a write through a reached b's cache in {took:?}");

    // Stalled: commands time out, the breaker opens, calls go on.
    redis.signal("-STOP");
    let deadline = Instant::now() + Duration::from_secs(5);
    while shared(&a).is_shared() {
        assert!(Instant::now() < deadline, "the stall went unnoticed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    redis.signal("-CONT");
    until_shared(&[&a, &b]).await;
    invalidation_crosses_replicas(&a, &b, "after-the-stall").await;

    stop.store(true, Ordering::Relaxed);
    let (mut calls, mut failures, mut slowest) = (0, Vec::new(), Duration::ZERO);
    for load in loads {
        let (c, f, s) = load.await.expect("load");
        calls += c;
        failures.extend(f);
        slowest = slowest.max(s);
    }
    eprintln!("mixed load through Redis killed, restarted, stalled: {calls} calls, {} failed, slowest {slowest:?}", failures.len());
    assert!(calls > 100, "the load ran ({calls} calls)");
    assert!(
        failures.is_empty(),
        "no call fails because of Redis: {failures:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_secret_reaches_redis() {
    use futures_util::StreamExt as _;
    let Some(redis) = Redis::start(WhenMissing::SkipOutsideCi) else {
        return;
    };
    let sim = simulator(SimulatorOptions::default()).await;
    let (id, secret) = sim.root_key();
    let budget = "[rate_limit]\nupstream = { rate = 100.0, burst = 100 }\ncaller = { rate = 100.0, burst = 100 }\n";
    let a = replica(&sim, &redis.url(), budget).await;
    let b = replica(&sim, &redis.url(), budget).await;
    until_shared(&[&a, &b]).await;
    // Everything published, captured as it goes by.
    let mut pubsub = redis::Client::open(redis.url())
        .expect("client")
        .get_async_pubsub()
        .await
        .expect("pubsub");
    pubsub.psubscribe("*").await.expect("psubscribe");
    let mut published = pubsub.into_on_message();
    // A scenario touching every shared thing: budgets, invalidations, a watched task.
    invalidation_crosses_replicas(&a, &b, "scanned").await;
    let (_, task) = create_cluster(&a, "scanned-watch").await;
    let (messages, end) = drain(b.channel.clone(), task).await;
    assert_succeeded(&messages, &end);

    let mut conn = client(&redis).await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .expect("keys");
    assert!(
        keys.len() >= 4,
        "budgets, leases, snapshots and heartbeats are there: {keys:?}"
    );
    let mut everything = keys.join("\n");
    for key in &keys {
        let kind: String = redis::cmd("TYPE")
            .arg(key)
            .query_async(&mut conn)
            .await
            .expect("type");
        let values: Vec<Vec<u8>> = match kind.as_str() {
            "string" => vec![redis::cmd("GET")
                .arg(key)
                .query_async(&mut conn)
                .await
                .expect("get")],
            "hash" => redis::cmd("HGETALL")
                .arg(key)
                .query_async(&mut conn)
                .await
                .expect("hgetall"),
            "zset" => redis::cmd("ZRANGE")
                .arg(key)
                .arg(0)
                .arg(-1)
                .query_async(&mut conn)
                .await
                .expect("zrange"),
            other => panic!("unexpected {other} at {key}"),
        };
        for v in values {
            everything.push('\n');
            everything.push_str(&String::from_utf8_lossy(&v));
            // Snapshots are JSON with base64 inside: look inside too.
            if let Ok(json) = serde_json::from_slice::<serde_json::Value>(&v) {
                if let Some(event) = json["event"].as_str() {
                    use base64::Engine as _;
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(event)
                        .expect("base64");
                    everything.push_str(&String::from_utf8_lossy(&bytes));
                }
            }
        }
    }
    while let Ok(Some(msg)) =
        tokio::time::timeout(Duration::from_millis(200), published.next()).await
    {
        everything.push('\n');
        everything.push_str(&msg.get_payload::<String>().unwrap_or_default());
    }
    assert!(
        everything.contains("invalidate") || everything.contains("tags"),
        "the scan saw the traffic"
    );
    assert!(!everything.contains(secret.expose()), "no secret in Redis");
    assert!(!everything.contains(&id), "no AccessKey id in Redis");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_throttling_burst_seen_by_every_replica_cuts_the_shared_rate_once() {
    use ack_gateway::shared::Shared;
    let Some(redis) = Redis::start(WhenMissing::SkipOutsideCi) else {
        return;
    };
    let config = redis_config(&redis, "key_prefix = \"cut:\"\n");
    let replicas: Vec<_> = (0..3)
        .map(|_| Shared::new(&config).expect("shared"))
        .collect();
    let budget = ["ak-hash", "DescribeClustersV1"];
    // All three replicas report the same burst at once.
    let reports = replicas
        .iter()
        .map(|r| r.throttled("upstream", &budget, Duration::from_millis(300)));
    for report in futures_util::future::join_all(reports).await {
        report.expect("reported");
    }
    let mut conn = client(&redis).await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("cut:upstream:*")
        .query_async(&mut conn)
        .await
        .expect("keys");
    assert_eq!(keys.len(), 1);
    let factor: f64 = redis::cmd("HGET")
        .arg(&keys[0])
        .arg("factor")
        .query_async(&mut conn)
        .await
        .expect("factor");
    assert!(
        (factor - 0.5).abs() < 1e-9,
        "halved once, not three times: {factor}"
    );
    // While paused, nobody gets a slot soon; afterwards the halved rate applies.
    let grant = replicas[0]
        .acquire("upstream", &budget, 100.0, 1.0, Duration::ZERO)
        .await
        .expect("answered");
    let ack_gateway::shared::Grant::Denied(retry) = grant else {
        panic!("paused: {grant:?}")
    };
    assert!(
        retry > Duration::from_millis(200) && retry <= Duration::from_millis(300),
        "{retry:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_each_replica_takes_its_share_of_the_budget() {
    let Some(redis) = Redis::start(WhenMissing::SkipOutsideCi) else {
        return;
    };
    let sim = simulator(SimulatorOptions::default()).await;
    let budget = "[rate_limit]\nupstream = { rate = 40.0, burst = 4 }\nmax_wait = \"10ms\"\n";
    let a = replica(&sim, &redis.url(), budget).await;
    let b = replica(&sim, &redis.url(), budget).await;
    until_shared(&[&a, &b]).await;
    // Two replicas heard from; then Redis goes away before any budget was taken.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(a.running.gateway.shared().expect("shared").replicas(), 2);
    drop(redis);
    tokio::time::sleep(Duration::from_millis(300)).await;
    sim.clear_requests();
    let window = Duration::from_millis(1000);
    let started = Instant::now();
    let mut sent_ok = 0;
    while started.elapsed() < window {
        let answer = call(
            &a.channel,
            CS_SERVICE,
            "DescribeClustersV1",
            json!({}),
            &[("cache-control", "no-cache")],
            None,
        )
        .await;
        if answer.is_ok() {
            sent_ok += 1;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let share = 2.0 + 20.0 * elapsed;
    eprintln!("alone, one replica sent {sent_ok} calls in {elapsed:.2} s (its share: {share:.1})");
    assert!(
        f64::from(sent_ok) <= share + 3.0,
        "{sent_ok} > its share {share:.1}"
    );
    assert!(f64::from(sent_ok) >= 10.0, "it kept serving ({sent_ok})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callers_rate_is_one_across_replicas() {
    let Some(redis) = Redis::start(WhenMissing::SkipOutsideCi) else {
        return;
    };
    let sim = simulator(SimulatorOptions::default()).await;
    let limit = "[rate_limit]\ncaller = { rate = 20.0, burst = 5 }\nmax_wait = \"10ms\"\n";
    let a = replica(&sim, &redis.url(), limit).await;
    let b = replica(&sim, &redis.url(), limit).await;
    until_shared(&[&a, &b]).await;
    // Cached reads: only the caller's rate limits them.
    call(
        &a.channel,
        CS_SERVICE,
        "DescribeClustersV1",
        json!({}),
        &[],
        None,
    )
    .await
    .expect("warm");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let window = Duration::from_millis(1000);
    let started = Instant::now();
    let load = |h: &Harness| {
        let channel = h.channel.clone();
        async move {
            let mut ok = 0u32;
            while started.elapsed() < window {
                if call(
                    &channel,
                    CS_SERVICE,
                    "DescribeClustersV1",
                    json!({}),
                    &[],
                    None,
                )
                .await
                .is_ok()
                {
                    ok += 1;
                }
            }
            ok
        }
    };
    let (on_a, on_b) = tokio::join!(load(&a), load(&b));
    let elapsed = started.elapsed().as_secs_f64();
    let allowed = 5.0 + 20.0 * elapsed;
    eprintln!("one caller on two replicas: {on_a} + {on_b} calls in {elapsed:.2} s (allowed {allowed:.1})");
    assert!(
        f64::from(on_a + on_b) <= allowed + 3.0,
        "the caller's rate was not shared"
    );
    assert!(on_a > 0 && on_b > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_whose_holder_died_passes_to_another_replica_once_it_runs_out() {
    use ack_gateway::shared::Shared;
    let Some(redis) = Redis::start(WhenMissing::SkipOutsideCi) else {
        return;
    };
    let config = redis_config(&redis, "lease = \"300ms\"\n");
    let (holder, other) = (
        Shared::new(&config).expect("a"),
        Shared::new(&config).expect("b"),
    );
    assert!(holder.lease("target").await.expect("taken"));
    assert!(holder.lease("target").await.expect("renewed"));
    assert!(
        !other.lease("target").await.expect("asked"),
        "held by the first"
    );
    assert!(holder
        .put_latest("target", b"snapshot".to_vec())
        .await
        .expect("stored"));
    assert!(
        !other
            .put_latest("target", b"forged".to_vec())
            .await
            .expect("asked"),
        "only the holder stores"
    );
    // The holder dies without releasing: the lease runs out, then the other takes it.
    drop(holder);
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(other.lease("target").await.expect("taken over"));
    assert_eq!(
        other.latest("target").await.expect("read").as_deref(),
        Some(&b"snapshot"[..])
    );
    other.release("target").await;
    let third = Shared::new(&config).expect("c");
    assert!(third.lease("target").await.expect("free after release"));
}

/// The node pool, wait and event watches across two replicas: each target is polled by the
/// replica that took its lease first, the other relays what it stores, and the streams on both
/// see the same outcome (each event once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_pool_wait_and_event_watches_on_two_replicas_poll_once_per_target() {
    use ack_gateway::proto::gateway::{
        WaitForMatch, WaitForRequest, WatchClusterEventsRequest, WatchNodePoolRequest,
    };
    let Some(redis) = Redis::start(WhenMissing::SkipOutsideCi) else {
        return;
    };
    let sim = simulator(SimulatorOptions {
        task_duration: Duration::from_millis(300),
        ..SimulatorOptions::default()
    })
    .await;
    let a = replica(&sim, &redis.url(), "").await;
    let b = replica(&sim, &redis.url(), "").await;
    until_shared(&[&a, &b]).await;
    let (cluster, task) = create_cluster(&a, "shared-kinds").await;
    assert_eq!(wait_task(&a, &task).await, "success");
    sim.set_task_duration("CreateClusterNodePool", Duration::from_millis(2000));
    let (created, _) = a
        .cs(
            "CreateClusterNodePool",
            json!({"cluster_id": cluster, "nodepool_info": {"name": "p"},
                   "scaling_group": {"desired_size": 2}}),
        )
        .await
        .expect("node pool creation accepted");
    let pool = created["nodepool_id"].as_str().expect("id").to_string();
    let all_active = WaitForRequest {
        operation: "DescribeClusterNodePools".into(),
        request: Some(prost_types::Struct {
            fields: [(
                "cluster_id".to_string(),
                prost_types::Value {
                    kind: Some(prost_types::value::Kind::StringValue(cluster.clone())),
                },
            )]
            .into(),
        }),
        path: "nodepools[*].status.state".into(),
        r#match: WaitForMatch::All as i32,
        done_values: vec![prost_types::Value {
            kind: Some(prost_types::value::Kind::StringValue("active".into())),
        }],
        ..Default::default()
    };
    // Reads a stream to its end (bounded): its messages and how it ended.
    async fn read_all<T: Into<WatchEvent>>(
        mut stream: tonic::Streaming<T>,
    ) -> (Vec<WatchEvent>, Result<(), tonic::Status>) {
        let mut messages = Vec::new();
        loop {
            match tokio::time::timeout(Duration::from_secs(20), stream.message()).await {
                Ok(Ok(Some(m))) => messages.push(m.into()),
                Ok(Ok(None)) => return (messages, Ok(())),
                Ok(Err(s)) => return (messages, Err(s)),
                Err(_) => panic!("the stream ended in time"),
            }
        }
    }
    // Opens the three watches on `h`, each after its first message (so the first replica to
    // open them holds the leases); the events stream lasts `events_for`.
    let open = |h: &Harness, events_for: Duration| {
        let mut c = WatchServiceClient::new(h.channel.clone());
        let (cluster, pool, wait) = (cluster.clone(), pool.clone(), all_active.clone());
        async move {
            let mut events = tonic::Request::new(WatchClusterEventsRequest {
                cluster_id: cluster.clone(),
                ..Default::default()
            });
            events.set_timeout(events_for);
            let mut streams = (
                c.watch_node_pool(WatchNodePoolRequest {
                    cluster_id: cluster.clone(),
                    nodepool_id: pool,
                    target_states: Vec::new(),
                })
                .await
                .expect("opened")
                .into_inner(),
                c.wait_for(wait).await.expect("opened").into_inner(),
                c.watch_cluster_events(events)
                    .await
                    .expect("opened")
                    .into_inner(),
            );
            let firsts: (WatchEvent, WatchEvent, WatchEvent) = (
                streams
                    .0
                    .message()
                    .await
                    .expect("ok")
                    .expect("initial")
                    .into(),
                streams
                    .1
                    .message()
                    .await
                    .expect("ok")
                    .expect("initial")
                    .into(),
                streams
                    .2
                    .message()
                    .await
                    .expect("ok")
                    .expect("initial")
                    .into(),
            );
            (firsts, streams)
        }
    };
    sim.clear_requests();
    let a_polls = a.running.watcher.polls();
    let b_polls = b.running.watcher.polls();
    let started = Instant::now();
    let (a_firsts, a_streams) = open(&a, Duration::from_secs(4)).await;
    let (b_firsts, b_streams) = open(&b, Duration::from_secs(3)).await;
    let ((a_pool, a_wait, a_events), (b_pool, b_wait, b_events)) = tokio::join!(
        async {
            tokio::join!(
                read_all(a_streams.0),
                read_all(a_streams.1),
                read_all(a_streams.2)
            )
        },
        async {
            tokio::join!(
                read_all(b_streams.0),
                read_all(b_streams.1),
                read_all(b_streams.2)
            )
        },
    );
    let elapsed = started.elapsed();
    for (first, (messages, end)) in [
        (&a_firsts.0, &a_pool),
        (&a_firsts.1, &a_wait),
        (&b_firsts.0, &b_pool),
        (&b_firsts.1, &b_wait),
    ] {
        let mut all = vec![first.clone()];
        all.extend(messages.iter().cloned());
        assert_succeeded(&all, end);
    }
    for (label, (messages, end)) in [("a", &a_events), ("b", &b_events)] {
        assert_eq!(
            end.as_ref().expect_err("deadline").code(),
            tonic::Code::DeadlineExceeded,
            "{label}"
        );
        let created: Vec<&str> = messages
            .iter()
            .flat_map(|m| m.new_events.iter())
            .filter(|e| e.reason == "NodePoolCreated")
            .map(|e| e.event_id.as_str())
            .collect();
        assert_eq!(
            created.len(),
            1,
            "{label}: the pool's creation, once: {messages:?}"
        );
    }
    let same_outcome = |x: &[WatchEvent], y: &[WatchEvent]| {
        let last = |m: &[WatchEvent]| m.last().and_then(|m| m.status.clone()).map(|s| s.state);
        assert_eq!(last(x), last(y));
    };
    same_outcome(&a_pool.0, &b_pool.0);
    same_outcome(&a_wait.0, &b_wait.0);
    assert!(
        a.running.watcher.polls() > a_polls,
        "the first replica polls"
    );
    assert_eq!(
        b.running.watcher.polls(),
        b_polls,
        "the other relays and never polls"
    );
    let ceiling = elapsed.as_millis() as usize / 100 + 1;
    for op in [
        "DescribeClusterNodePoolDetail",
        "DescribeClusterNodePools",
        "DescribeClusterEvents",
    ] {
        let n = sim.requests_for(op).len();
        eprintln!("two replicas, {op}: {n} polls in {elapsed:?} (one poller: at most {ceiling})");
        assert!((1..=ceiling).contains(&n), "{op}: {n} polls in {elapsed:?}");
    }
}
