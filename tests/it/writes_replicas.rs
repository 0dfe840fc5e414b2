//! Writes safe to retry across replicas sharing a real `redis-server`: a retry on another
//! replica replays the answer or waits for the write in flight, one journal for all, busy
//! queues taken in turn, and a replica killed in the middle of a write (a separate gateway
//! process, SIGKILLed) whose write is applied once.

use crate::replicas::{replica, until_shared};
use crate::support::*;
use ack_gateway::simulator::{Fault, Simulator, SimulatorOptions};
use ack_test_support::redis::{RedisServer, WhenMissing};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tonic::Code;

const OPERATIONS: &str = "ackgateway.v1.OperationsService";

fn keyed(key: &str) -> [(&str, &str); 1] {
    [("idempotency-key", key)]
}

fn replayed(a: &Answer) -> bool {
    a.as_ref()
        .ok()
        .and_then(|(_, md)| md.get("x-ack-idempotent-replay"))
        .is_some_and(|v| v == "true")
}

async fn two_replicas(sim: &Simulator, redis: &RedisServer) -> (Harness, Harness) {
    let a = replica(sim, &redis.url(), "").await;
    let b = replica(sim, &redis.url(), "").await;
    until_shared(&[&a, &b]).await;
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_on_another_replica_replays_or_waits_for_the_first() {
    let Some(redis) = RedisServer::start(WhenMissing::SkipOutsideCi) else {
        return;
    };
    let sim = simulator(SimulatorOptions::default()).await;
    let (a, b) = two_replicas(&sim, &redis).await;
    let request = json!({"name": "shared-key", "region_id": "cn-hangzhou"});
    let first = a
        .call(
            CS_SERVICE,
            "CreateCluster",
            request.clone(),
            &keyed("k1"),
            None,
        )
        .await;
    let (created, _) = first.as_ref().expect("created");
    let again = b
        .call(
            CS_SERVICE,
            "CreateCluster",
            request.clone(),
            &keyed("k1"),
            None,
        )
        .await;
    assert!(replayed(&again), "replayed on the other replica");
    assert_eq!(
        again.expect("replay").0["cluster_id"],
        created["cluster_id"]
    );
    let err = b
        .call(
            CS_SERVICE,
            "CreateCluster",
            json!({"name": "another", "region_id": "cn-hangzhou"}),
            &keyed("k1"),
            None,
        )
        .await
        .expect_err("another request");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(sim.applied_for("CreateCluster").len(), 1);

    // In flight on a: b waits for it and answers the same.
    sim.inject(Fault {
        operation: Some("CreateCluster".into()),
        answer_delay_ms: 600,
        ..Fault::default()
    });
    let request = json!({"name": "in-flight", "region_id": "cn-hangzhou"});
    let k2 = keyed("k2");
    let on_a = a.call(CS_SERVICE, "CreateCluster", request.clone(), &k2, None);
    let on_b = async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        b.call(CS_SERVICE, "CreateCluster", request.clone(), &k2, None)
            .await
    };
    let (on_a, on_b) = tokio::join!(on_a, on_b);
    assert_eq!(
        on_a.expect("a").0["cluster_id"],
        on_b.as_ref().expect("b").0["cluster_id"]
    );
    assert!(replayed(&on_b));
    assert_eq!(sim.applied_for("CreateCluster").len(), 2);
    assert_eq!(sim.requests_for("CreateCluster").len(), 2);

    // Nothing in Redis names the key, the caller or the request in clear.
    let mut c = redis::Client::open(redis.url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connected");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut c)
        .await
        .expect("keys");
    for k in &keys {
        assert!(!k.contains("k1") && !k.contains("in-flight"), "{k}");
    }
    assert!(keys.iter().any(|k| k.contains("idem:")), "{keys:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_journal_for_every_replica_listed_and_watched() {
    use ack_gateway::proto::gateway::operations_service_client::OperationsServiceClient;
    use ack_gateway::proto::gateway::{OperationsFilter, WatchOperationsRequest};
    let Some(redis) = RedisServer::start(WhenMissing::SkipOutsideCi) else {
        return;
    };
    let sim = simulator(SimulatorOptions::default()).await;
    let (a, b) = two_replicas(&sim, &redis).await;
    let mut stream = OperationsServiceClient::new(b.channel.clone())
        .watch_operations(WatchOperationsRequest {
            filter: Some(OperationsFilter {
                operation: "CreateCluster".into(),
                ..OperationsFilter::default()
            }),
            ..WatchOperationsRequest::default()
        })
        .await
        .expect("watching")
        .into_inner();
    a.call(
        CS_SERVICE,
        "CreateCluster",
        json!({"name": "journaled", "region_id": "cn-hangzhou"}),
        &[],
        None,
    )
    .await
    .expect("created");
    // b hears of a's write as it starts and as it is answered.
    let mut codes = Vec::new();
    while !codes.iter().any(|c: &String| c == "OK") {
        let next = tokio::time::timeout(Duration::from_secs(5), stream.message())
            .await
            .expect("in time")
            .expect("stream")
            .expect("open");
        codes.push(next.operation.expect("entry").code);
    }
    assert_eq!(codes.first().map(String::as_str), Some(""), "{codes:?}");
    let (list, _) = b
        .call(OPERATIONS, "ListOperations", json!({}), &[], None)
        .await
        .expect("listed");
    let ops = list["operations"].as_array().expect("entries");
    assert_eq!(ops.len(), 1, "{list}");
    assert_eq!(ops[0]["operation"], "CreateCluster");
}

/// A gateway process of its own (the built binary), sharing `redis`, against `sim`.
struct Process {
    child: std::process::Child,
    channel: tonic::transport::Channel,
    _dir: std::path::PathBuf,
}

impl Process {
    async fn start(sim: &Simulator, redis: &RedisServer, name: &str) -> Process {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("free port")
            .local_addr()
            .expect("addr")
            .port();
        let (id, secret) = sim.root_key();
        let dir = scratch_dir(name);
        let config = dir.join("gateway.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:{port}\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
                 [simulator]\nmode = \"never\"\n[auth]\nmode = \"insecure_local\"\n\
                 [endpoints]\ncs = \"{}\"\n[upstream]\nrequest_timeout = \"1s\"\n\
                 [profiles.default]\ntype = \"access_key\"\naccess_key_id = \"{id}\"\n\
                 access_key_secret = \"{}\"\nregion = \"cn-hangzhou\"\n\
                 [redis]\nurl = \"{}\"\ncommand_timeout = \"100ms\"\n",
                sim.endpoint(),
                secret.expose(),
                redis.url()
            ),
        )
        .expect("config written");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_ack-gateway"))
            .arg("--config")
            .arg(&config)
            .env_remove("ALIBABA_CLOUD_ACCESS_KEY_ID")
            .env_remove("ALIBABA_CLOUD_ROLE_ARN")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.join("stderr.log")).expect("log file"))
            .spawn()
            .expect("the gateway starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        let channel = loop {
            let connected =
                tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{port}"))
                    .expect("uri")
                    .connect()
                    .await;
            match connected {
                Ok(c) => break c,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => panic!("the gateway process did not listen: {e}"),
            }
        };
        Process {
            child,
            channel,
            _dir: dir,
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The write `request` of `op`, keyed `key`, sent to a gateway process that is SIGKILLed while
/// the cloud holds its answer; then retried with the same key on replica `b` until answered.
async fn killed_mid_write(
    sim: &Simulator,
    redis: &RedisServer,
    b: &Harness,
    op: &str,
    request: Value,
    key: &str,
) -> Value {
    let process = Process::start(sim, redis, &format!("killed-{key}")).await;
    sim.inject(Fault {
        operation: Some(op.into()),
        answer_delay_ms: 3000,
        ..Fault::default()
    });
    let before = sim.applied_for(op).len();
    let sending = {
        let channel = process.channel.clone();
        let request = request.clone();
        let op = op.to_string();
        let key = key.to_string();
        tokio::spawn(async move {
            call(
                &channel,
                CS_SERVICE,
                &op,
                request,
                &[("idempotency-key", &key)],
                None,
            )
            .await
        })
    };
    // Killed once the cloud has the request (and has applied it).
    let deadline = Instant::now() + Duration::from_secs(10);
    while sim.applied_for(op).len() == before {
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(process._dir.join("stderr.log")).unwrap_or_default();
            panic!("the write never reached the cloud; the process said:\n{log}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(process);
    let sent = sending.await;
    eprintln!("{op} on the killed process: {sent:?}");
    // The other replica waits out the dead one's lease, then makes the outcome known.
    let started = Instant::now();
    loop {
        match b
            .call(
                CS_SERVICE,
                op,
                request.clone(),
                &[("idempotency-key", key)],
                None,
            )
            .await
        {
            Ok((answer, _)) => {
                eprintln!(
                    "{op}: answered on the other replica {:?} after the kill",
                    started.elapsed()
                );
                return answer;
            }
            Err(s) if s.code() == Code::DeadlineExceeded || s.code() == Code::Unavailable => {
                assert!(started.elapsed() < Duration::from_secs(15), "{s:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(s) => panic!("{op}: {s:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_write_leaves_it_applied_once() {
    let Some(redis) = RedisServer::start(WhenMissing::SkipOutsideCi) else {
        return;
    };
    let sim = simulator(SimulatorOptions {
        task_duration: Duration::from_millis(200),
        ..SimulatorOptions::default()
    })
    .await;
    let b = replica(&sim, &redis.url(), "[upstream]\nrequest_timeout = \"5s\"\n").await;
    until_shared(&[&b]).await;

    // With a client token: resent, and the cloud drops the duplicate.
    let created = killed_mid_write(
        &sim,
        &redis,
        &b,
        "CreateCluster",
        json!({"name": "survivor", "region_id": "cn-hangzhou"}),
        "kill-create",
    )
    .await;
    assert_eq!(sim.applied_for("CreateCluster").len(), 1);
    let cluster = created["cluster_id"].as_str().expect("id").to_string();
    let task = created["task_id"].as_str().expect("task").to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (t, _) = b
            .cs("DescribeTaskInfo", json!({"task_id": task}))
            .await
            .expect("task");
        if t["state"] != "running" {
            break;
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // With an outcome check: the other replica reads the node pool back.
    let pool = killed_mid_write(
        &sim,
        &redis,
        &b,
        "CreateClusterNodePool",
        json!({"cluster_id": cluster, "nodepool_info": {"name": "survivor-pool"}}),
        "kill-pool",
    )
    .await;
    assert!(
        pool["nodepool_id"].as_str().is_some_and(|s| !s.is_empty()),
        "{pool}"
    );
    assert_eq!(sim.applied_for("CreateClusterNodePool").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_answer_carrying_secrets_is_recorded_on_its_replica_only() {
    let Some(redis) = RedisServer::start(WhenMissing::SkipOutsideCi) else {
        return;
    };
    let sim = simulator(SimulatorOptions::default()).await;
    let (id, secret) = sim.root_key();
    let h = Harness::with_config(
        &format!(
            "[simulator]\nmode = \"never\"\n[auth]\nmode = \"insecure_local\"\n\
             [endpoints]\ncs = \"{0}\"\nsts = \"{0}\"\n\
             [profiles.default]\ntype = \"access_key\"\naccess_key_id = \"{id}\"\n\
             access_key_secret = \"{1}\"\nregion = \"cn-hangzhou\"\n\
             [redis]\nurl = \"{2}\"\ncommand_timeout = \"100ms\"\n",
            sim.endpoint(),
            secret.expose(),
            redis.url()
        ),
        std::collections::HashMap::new(),
    )
    .await;
    until_shared(&[&h]).await;
    let assume = || {
        h.call(
            "alibabacloud.sts.v20150401.Sts",
            "AssumeRole",
            json!({"role_arn": "acs:ram::1000000000000001:role/admin", "role_session_name": "keyed", "duration_seconds": 900}),
            &[("idempotency-key", "assume-1")],
            None,
        )
    };
    let first = assume().await;
    let second = assume().await;
    assert!(replayed(&second), "replayed on this replica");
    let credential = |a: &Answer| {
        a.as_ref().expect("assumed").0["credentials"]["access_key_secret"]
            .as_str()
            .expect("secret")
            .to_string()
    };
    let issued = credential(&first);
    assert_eq!(credential(&second), issued);
    assert_eq!(sim.sts_issued(), 1);
    // Nothing of it in Redis: no record, and the secret in no key or value.
    let mut c = redis::Client::open(redis.url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connected");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut c)
        .await
        .expect("keys");
    assert!(!keys.iter().any(|k| k.contains("idem:")), "{keys:?}");
    for k in &keys {
        let kind: String = redis::cmd("TYPE")
            .arg(k)
            .query_async(&mut c)
            .await
            .expect("type");
        if kind == "string" {
            let v: Vec<u8> = redis::cmd("GET")
                .arg(k)
                .query_async(&mut c)
                .await
                .expect("value");
            assert!(
                !String::from_utf8_lossy(&v).contains(&issued),
                "{k} holds the issued secret"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_queued_for_a_busy_cluster_on_two_replicas_take_turns() {
    let Some(redis) = RedisServer::start(WhenMissing::SkipOutsideCi) else {
        return;
    };
    let sim = simulator(SimulatorOptions {
        task_duration: Duration::from_millis(300),
        ..SimulatorOptions::default()
    })
    .await;
    let (a, b) = two_replicas(&sim, &redis).await;
    let (created, _) = a
        .call(
            CS_SERVICE,
            "CreateCluster",
            json!({"name": "queued", "region_id": "cn-hangzhou"}),
            &[],
            None,
        )
        .await
        .expect("created");
    let cluster = created["cluster_id"].as_str().expect("id").to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (detail, _) = a
            .cs("DescribeClusterDetail", json!({"cluster_id": cluster}))
            .await
            .expect("detail");
        if detail["state"] == "running" {
            break;
        }
        assert!(Instant::now() < deadline, "the cluster never ran");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pool = |name: &str| json!({"cluster_id": cluster, "nodepool_info": {"name": name}});
    a.cs("CreateClusterNodePool", pool("first"))
        .await
        .expect("the cluster is busy with it");
    let wait = [("x-ack-when-busy", "wait")];
    let timeout = Some(Duration::from_secs(20));
    let calls = [
        (&b, "b1", 0),
        (&a, "a1", 100),
        (&b, "b2", 200),
        (&a, "a2", 300),
    ]
    .map(|(h, name, after_ms)| {
        let request = pool(name);
        async move {
            tokio::time::sleep(Duration::from_millis(after_ms)).await;
            h.call(CS_SERVICE, "CreateClusterNodePool", request, &wait, timeout)
                .await
        }
    });
    for answer in futures_util::future::join_all(calls).await {
        answer.expect("applied after waiting its turn");
    }
    let names = applied_pool_names(&sim);
    assert_eq!(names, ["first", "b1", "a1", "b2", "a2"]);
}
