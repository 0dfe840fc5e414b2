//! Test support: boots the real gateway (and simulator) on loopback ports and calls it over a
//! real gRPC connection with dynamic messages built from the served descriptors.

use ack_gateway::app::{self, Running};
use ack_gateway::config::Config;
use ack_gateway::proto;
use ack_gateway::server::codec::RawCodec;
use ack_gateway::simulator::{Simulator, SimulatorOptions};
use bytes::Bytes;
use prost::Message as _;
use prost_reflect::{DynamicMessage, SerializeOptions};
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;
use tonic::metadata::MetadataMap;
use tonic::transport::Channel;
use tonic::Status;

pub const CS_SERVICE: &str = "alibabacloud.cs.v20151215.ContainerService";

/// Configuration keeping the journal from following writes' tasks (each followed task is a
/// poller sending `DescribeTaskInfo`): for tests that count every upstream request or poller.
pub const UNFOLLOWED: &str = "[journal]\nfollow_tasks = false\n";

pub struct Harness {
    pub running: Running,
    pub channel: Channel,
}

/// An answer: the response as JSON with proto field names, and the response metadata.
pub type Answer = Result<(Value, MetadataMap), Status>;

impl Harness {
    /// The gateway with its embedded simulator (fast tasks).
    pub async fn embedded() -> Harness {
        Self::with_config(
            "[simulator]\nmode = \"always\"\ntask_duration = \"300ms\"\n",
            HashMap::new(),
        )
        .await
    }

    /// The gateway with its embedded simulator (fast tasks), whose journal does not follow the
    /// writes' tasks: for tests that count every upstream request or poller.
    pub async fn embedded_unfollowed() -> Harness {
        Self::with_config(
            &format!("[simulator]\nmode = \"always\"\ntask_duration = \"300ms\"\n{UNFOLLOWED}"),
            HashMap::new(),
        )
        .await
    }

    /// The gateway from a TOML text and an environment, listening on a free port.
    pub async fn with_config(toml: &str, env: HashMap<String, String>) -> Harness {
        let mut config = Config::load(Some(toml), &env).expect("test config is valid");
        config.listen = "127.0.0.1:0".parse().expect("addr");
        config.admin_listen = "127.0.0.1:0".parse().expect("addr");
        let running = app::start(config).await.expect("gateway starts");
        let channel = Channel::from_shared(format!("http://{}", running.addr))
            .expect("uri")
            .connect()
            .await
            .expect("connects");
        Harness { running, channel }
    }

    pub fn sim(&self) -> &Simulator {
        self.running.simulator.as_ref().expect("embedded simulator")
    }

    pub async fn cs(&self, op: &str, request: Value) -> Answer {
        self.call(CS_SERVICE, op, request, &[], None).await
    }

    /// Calls through the gateway. Unless the test sets `cache-control` itself, the call asks
    /// for a fresh answer: most tests follow state that changes in the simulator, and the
    /// cache's own tests set the metadata they mean.
    pub async fn call(
        &self,
        service: &str,
        op: &str,
        request: Value,
        metadata: &[(&str, &str)],
        timeout: Option<Duration>,
    ) -> Answer {
        let mut md: Vec<(&str, &str)> = metadata.to_vec();
        if !md.iter().any(|(k, _)| *k == "cache-control") {
            md.push(("cache-control", "no-cache"));
        }
        call(&self.channel, service, op, request, &md, timeout).await
    }
}

/// A unary call of `service/op` with a JSON request (proto field names).
pub async fn call(
    channel: &Channel,
    service: &str,
    op: &str,
    request: Value,
    metadata: &[(&str, &str)],
    timeout: Option<Duration>,
) -> Answer {
    let package = service
        .rsplit_once('.')
        .map(|(p, _)| p)
        .expect("qualified service");
    let req_desc = proto::message(&format!("{package}.{op}Request")).expect("request message");
    let resp_desc = proto::message(&format!("{package}.{op}Response")).expect("response message");
    let msg =
        DynamicMessage::deserialize(req_desc, request).expect("request JSON fits the message");
    let mut req = tonic::Request::new(Bytes::from(msg.encode_to_vec()));
    for (k, v) in metadata {
        let key = tonic::metadata::MetadataKey::from_bytes(k.as_bytes()).expect("metadata key");
        req.metadata_mut()
            .insert(key, v.parse().expect("metadata value"));
    }
    if let Some(t) = timeout {
        req.set_timeout(t);
    }
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.expect("channel ready");
    let path = format!("/{service}/{op}").parse().expect("path");
    let resp = grpc.unary(req, path, RawCodec).await?;
    let (md, body, _) = resp.into_parts();
    let decoded = DynamicMessage::decode(resp_desc, body).expect("response decodes");
    let json = decoded
        .serialize_with_options(
            serde_json::value::Serializer,
            &SerializeOptions::new()
                .use_proto_field_name(true)
                .stringify_64_bit_integers(false),
        )
        .expect("serializes");
    Ok((json, md))
}

/// A simulator on its own, for tests that configure the gateway against it explicitly.
pub async fn simulator(options: SimulatorOptions) -> Simulator {
    Simulator::start(options).await.expect("simulator starts")
}

/// An environment map.
pub fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Polls `DescribeTaskInfo` until the task leaves `running` (bounded).
pub async fn wait_task(h: &Harness, task_id: &str) -> String {
    for _ in 0..100 {
        let (t, _) = h
            .cs("DescribeTaskInfo", serde_json::json!({"task_id": task_id}))
            .await
            .expect("task readable");
        let state = t["state"].as_str().unwrap_or_default().to_string();
        if state != "running" {
            return state;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("task {task_id} did not finish");
}

/// `subscriber` as this thread's default until the guard drops. A second, silent dispatcher is
/// kept alive alongside: while only one dispatcher exists, `tracing` asks whichever thread first
/// reaches a callsite for its interest and caches the answer for every thread, so a concurrent
/// test without a subscriber could disable this test's spans and events once and for all.
pub fn scoped_subscriber(
    subscriber: impl tracing::Subscriber + Send + Sync + 'static,
) -> (tracing::subscriber::DefaultGuard, tracing::Dispatch) {
    let companion = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());
    (tracing::subscriber::set_default(subscriber), companion)
}

/// Creates a cluster in `cn-hangzhou`: its id and the id of its creation task.
pub async fn create_cluster(h: &Harness, name: &str) -> (String, String) {
    let (created, _) = h
        .cs(
            "CreateCluster",
            serde_json::json!({"name": name, "region_id": "cn-hangzhou"}),
        )
        .await
        .expect("created");
    (
        created["cluster_id"].as_str().expect("id").to_string(),
        created["task_id"].as_str().expect("task").to_string(),
    )
}

pub use ack_test_support::pki::Pki;

/// A fresh directory under the system's temporary directory, unique to this process and `name`.
pub fn scratch_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ackgw-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// The names of the node pools whose creation the simulator applied, in the order applied.
pub fn applied_pool_names(sim: &Simulator) -> Vec<String> {
    sim.applied_for("CreateClusterNodePool")
        .iter()
        .map(|w| {
            w.body.as_ref().expect("body")["nodepool_info"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}
