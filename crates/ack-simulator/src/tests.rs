//! Tests of the simulator over real sockets: requests signed as the gateway signs them (ROA V1)
//! and sent over plain HTTP/1.1 to a running simulator, so a fault that closes the connection
//! is seen as a caller sees it. They cover how a write's answer is lost (`reset_unapplied`,
//! `answer_delay_ms`, against the kinds that apply first), client tokens, the count of applied
//! writes, a cluster kept busy by its tasks, node pool counts while tasks run, cluster events
//! and inspection reports.

use super::*;
use crate::signer::{new_nonce, roa, SigningKey};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use std::time::{Instant, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a simulated task runs in most of these tests.
const TASK: Duration = Duration::from_millis(300);
/// How long it runs where a test acts while it runs: long enough for a few requests, even on a
/// busy machine.
const LONG_TASK: Duration = Duration::from_millis(1200);

/// What came back: status 0 when the connection closed before any answer.
#[derive(Debug)]
struct Reply {
    status: u16,
    request_id: String,
    body: Value,
    /// The whole body arrived (as long as announced, or its last chunk).
    whole: bool,
}

impl Reply {
    fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or_default()
    }

    fn text(&self, key: &str) -> String {
        self.body[key].as_str().unwrap_or_default().to_string()
    }
}

/// A caller with one access key.
#[derive(Clone)]
struct Client {
    addr: SocketAddr,
    key: SigningKey,
}

impl Client {
    fn root(sim: &Simulator) -> Client {
        let (id, secret) = sim.root_key();
        Client {
            addr: sim.addr(),
            key: SigningKey::new(id, secret, None),
        }
    }

    /// A caller of another account.
    fn other_account(sim: &Simulator) -> Client {
        sim.add_key("LTAIothertestkey", "other-secret", "2000000000000002");
        Client {
            addr: sim.addr(),
            key: SigningKey::new("LTAIothertestkey", Secret::new("other-secret"), None),
        }
    }

    /// Calls `operation` (ROA), its path filled from `params`, with `body` as JSON.
    async fn op(&self, operation: &str, params: &[(&str, &str)], body: Option<Value>) -> Reply {
        let table = table::builtin();
        let op = table
            .operations()
            .find(|o| o.name == operation && o.style == Style::Roa)
            .unwrap_or_else(|| panic!("{operation} is a ROA operation"));
        let mut path = op.path.clone();
        for (name, value) in params {
            path = path.replace(&format!("{{{name}}}"), value);
        }
        let body = body.map(|b| b.to_string().into_bytes());
        self.signed(&op.method, &path, &[], body).await
    }

    async fn signed(
        &self,
        method: &str,
        path: &str,
        query: &[(String, String)],
        body: Option<Vec<u8>>,
    ) -> Reply {
        let date = httpdate::fmt_http_date(SystemTime::now());
        let nonce = new_nonce();
        let extra = BTreeMap::new();
        let mut headers = roa::base_headers(
            "2015-12-15",
            DEFAULT_REGION,
            &date,
            &nonce,
            body.as_deref(),
            &self.key,
            &extra,
        );
        let authorization = roa::authorization(
            &roa::RoaRequest {
                method,
                path,
                query,
                headers: &headers,
            },
            &self.key,
        );
        headers.push(("authorization".into(), authorization.into()));
        let headers: Vec<(String, String)> = headers
            .into_iter()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        send(self.addr, method, path, query, &headers, body.as_deref()).await
    }
}

/// One HTTP/1.1 exchange on a fresh connection; what was read before the connection closed.
async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    query: &[(String, String)],
    headers: &[(String, String)],
    body: Option<&[u8]>,
) -> Reply {
    let mut target = path.to_string();
    if !query.is_empty() {
        let pairs: Vec<String> = query
            .iter()
            .map(|(k, v)| {
                format!(
                    "{}={}",
                    utf8_percent_encode(k, NON_ALPHANUMERIC),
                    utf8_percent_encode(v, NON_ALPHANUMERIC)
                )
            })
            .collect();
        target = format!("{target}?{}", pairs.join("&"));
    }
    let body = body.unwrap_or_default();
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("the simulator accepts");
    stream
        .write_all(head.as_bytes())
        .await
        .expect("request head sent");
    stream.write_all(body).await.expect("request body sent");
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let read = async {
        // A reset connection ends the answer like a closed one: what was read is all there is.
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
            raw.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("the simulator answers or closes in time");
    parse(&raw)
}

/// Status, request id and JSON body of an HTTP/1.1 answer, and whether all of it arrived.
fn parse(raw: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        assert!(raw.is_empty(), "a partial answer: {text}");
        return Reply {
            status: 0,
            request_id: String::new(),
            body: Value::Null,
            whole: false,
        };
    };
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let mut request_id = String::new();
    let mut announced = None;
    let mut chunked = false;
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            let (k, v) = (k.to_ascii_lowercase(), v.trim());
            match k.as_str() {
                "x-acs-request-id" => request_id = v.to_string(),
                "content-length" => announced = v.parse::<usize>().ok(),
                "transfer-encoding" => chunked = v.contains("chunked"),
                _ => {}
            }
        }
    }
    // A chunked body is only looked at for its end: these tests read whole answers, which the
    // simulator sends with a length.
    let whole = match (chunked, announced) {
        (true, _) => body.ends_with("0\r\n\r\n"),
        (false, Some(len)) => body.len() == len,
        (false, None) => true,
    };
    let body = if body.is_empty() || chunked {
        Value::Null
    } else {
        serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_string()))
    };
    Reply {
        status,
        request_id,
        body,
        whole,
    }
}

/// An unsigned call to the control API.
async fn control(sim: &Simulator, method: &str, path: &str, body: Option<Value>) -> Reply {
    let body = body.map(|b| b.to_string().into_bytes());
    let headers = [("content-type".to_string(), "application/json".to_string())];
    send(sim.addr(), method, path, &[], &headers, body.as_deref()).await
}

async fn simulator() -> Simulator {
    simulator_with(TASK).await
}

async fn simulator_with(task_duration: Duration) -> Simulator {
    Simulator::start(SimulatorOptions {
        task_duration,
        ..SimulatorOptions::default()
    })
    .await
    .expect("the simulator starts")
}

async fn cluster_count(c: &Client) -> usize {
    let list = c.op("DescribeClustersV1", &[], None).await;
    assert_eq!(list.status, 200, "{list:?}");
    list.body["clusters"].as_array().map_or(0, Vec::len)
}

async fn cluster_state(c: &Client, id: &str) -> String {
    let detail = c
        .op("DescribeClusterDetail", &[("cluster_id", id)], None)
        .await;
    assert_eq!(detail.status, 200, "{detail:?}");
    detail.text("state")
}

/// Waits for a task to end; its final state.
async fn wait_task(c: &Client, task: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info = c.op("DescribeTaskInfo", &[("task_id", task)], None).await;
        assert_eq!(info.status, 200, "{info:?}");
        let state = info.text("state");
        if !matches!(state.as_str(), "running" | "paused") {
            return state;
        }
        assert!(Instant::now() < deadline, "task {task} still {state}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A cluster created and running.
async fn running_cluster(c: &Client, name: &str) -> String {
    let created = create(c, name, None).await;
    assert_eq!(created.status, 200, "{created:?}");
    assert_eq!(wait_task(c, &created.text("task_id")).await, "success");
    created.text("cluster_id")
}

async fn create(c: &Client, name: &str, token: Option<&str>) -> Reply {
    let mut body = json!({"name": name, "region_id": DEFAULT_REGION});
    if let Some(token) = token {
        body["client_token"] = json!(token);
    }
    c.op("CreateCluster", &[], Some(body)).await
}

fn inject(sim: &Simulator, operation: &str, fault: Fault) {
    sim.inject(Fault {
        operation: Some(operation.to_string()),
        ..fault
    });
}

// --- Lost answers ---

#[tokio::test]
async fn reset_unapplied_closes_the_connection_before_the_write_is_applied() {
    let sim = simulator().await;
    let c = Client::root(&sim);
    // Injected as a caller of the control API would.
    let added = control(
        &sim,
        "POST",
        "/__simulator/faults",
        Some(json!({"operation": "CreateCluster", "kind": "reset_unapplied"})),
    )
    .await;
    assert_eq!(added.status, 204, "{added:?}");
    let lost = create(&c, "never", None).await;
    assert_eq!((lost.status, lost.whole), (0, false), "no answer: {lost:?}");
    assert_eq!(cluster_count(&c).await, 0, "nothing was created");
    assert_eq!(sim.applied().count, 0);
    let seen = sim.requests_for("CreateCluster");
    assert_eq!(
        (seen.len(), seen[0].status),
        (1, 0),
        "recorded as unanswered"
    );
    // The resend is the first application.
    let resent = create(&c, "never", None).await;
    assert_eq!(resent.status, 200, "{resent:?}");
    assert_eq!(cluster_count(&c).await, 1);
    assert_eq!(sim.applied().count, 1);
}

#[tokio::test]
async fn the_kinds_that_apply_first_lose_an_answer_after_the_write_took_effect() {
    for kind in [
        FaultKind::ResetBeforeHeaders,
        FaultKind::ResetAfterHeaders,
        FaultKind::TruncatedBody,
    ] {
        let sim = simulator().await;
        let c = Client::root(&sim);
        inject(
            &sim,
            "CreateCluster",
            Fault {
                kind,
                ..Fault::default()
            },
        );
        let lost = create(&c, "applied", None).await;
        assert!(!lost.whole, "{kind:?}: the answer is lost: {lost:?}");
        assert_eq!(cluster_count(&c).await, 1, "{kind:?}: created all the same");
        let applied = sim.applied();
        assert_eq!(applied.count, 1, "{kind:?}");
        assert_eq!(applied.writes[0].operation, "CreateCluster");
    }
}

#[tokio::test]
async fn answer_delay_holds_the_answer_of_a_write_already_applied() {
    let sim = simulator().await;
    let c = Client::root(&sim);
    let added = control(
        &sim,
        "POST",
        "/__simulator/faults",
        Some(json!({"operation": "CreateCluster", "answer_delay_ms": 1500})),
    )
    .await;
    assert_eq!(added.status, 204, "{added:?}");
    let started = Instant::now();
    let call = tokio::spawn({
        let c = c.clone();
        async move { create(&c, "late", None).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!call.is_finished(), "the answer is held");
    assert_eq!(
        cluster_count(&c).await,
        1,
        "applied before the answer is sent"
    );
    assert_eq!(sim.applied().count, 1);
    let answer = call.await.expect("the call ends");
    assert!(started.elapsed() >= Duration::from_millis(1500));
    assert!(
        answer.status == 200 && answer.whole,
        "the real answer: {answer:?}"
    );
    assert_eq!(sim.applied().writes[0].request_id, answer.request_id);
    // The answer names the cluster the held write created.
    let listed = c.op("DescribeClustersV1", &[], None).await;
    assert_eq!(
        listed.body["clusters"][0]["cluster_id"],
        answer.body["cluster_id"]
    );

    // `delay_ms`, by contrast, waits before applying.
    inject(
        &sim,
        "CreateCluster",
        Fault {
            delay_ms: 1500,
            ..Fault::default()
        },
    );
    let call = tokio::spawn({
        let c = c.clone();
        async move { create(&c, "slow", None).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(cluster_count(&c).await, 1, "not applied yet");
    assert_eq!(call.await.expect("the call ends").status, 200);
    assert_eq!(cluster_count(&c).await, 2);
}

#[tokio::test]
async fn error_answers_reads_and_refusals_are_not_applied_writes() {
    let sim = simulator().await;
    let c = Client::root(&sim);
    inject(
        &sim,
        "CreateCluster",
        Fault {
            status: 503,
            code: "ServiceUnavailable".into(),
            ..Fault::default()
        },
    );
    assert_eq!(create(&c, "refused", None).await.status, 503);
    inject(
        &sim,
        "CreateCluster",
        Fault {
            kind: FaultKind::HtmlError,
            ..Fault::default()
        },
    );
    assert_eq!(create(&c, "refused", None).await.status, 502);
    let invalid = c
        .op(
            "CreateCluster",
            &[],
            Some(json!({"region_id": "cn-hangzhou"})),
        )
        .await;
    assert_eq!(invalid.status, 400, "no name: {invalid:?}");
    assert_eq!(cluster_count(&c).await, 0);
    assert_eq!(sim.applied(), AppliedWrites::default());
    assert_eq!(sim.requests().len(), 4, "all of them were received");
}

#[tokio::test]
async fn applied_writes_are_listed_in_their_documented_shape() {
    let sim = simulator().await;
    let c = Client::root(&sim);
    let created = create(&c, "listed", Some("tok-listed")).await;
    assert_eq!(created.status, 200, "{created:?}");
    let id = created.text("cluster_id");
    let tags = json!([{"key": "env", "value": "dev"}]);
    let tagged = c
        .op(
            "ModifyClusterTags",
            &[("cluster_id", &id)],
            Some(tags.clone()),
        )
        .await;
    assert_eq!(tagged.status, 200, "{tagged:?}");
    let query = [("name".to_string(), "listed".to_string())];
    let listed = c.signed("GET", "/api/v1/clusters", &query, None).await;
    assert_eq!(listed.status, 200, "a read: {listed:?}");

    let got = control(&sim, "GET", "/__simulator/applied", None).await;
    assert_eq!(got.status, 200);
    assert_eq!(
        got.body,
        json!({"count": 2, "writes": [
            {"operation": "CreateCluster", "request_id": created.request_id,
             "path_params": {}, "query": [],
             "body": {"name": "listed", "region_id": DEFAULT_REGION, "client_token": "tok-listed"},
             "client_token": "tok-listed"},
            {"operation": "ModifyClusterTags", "request_id": tagged.request_id,
             "path_params": {"cluster_id": id}, "query": [], "body": tags,
             "client_token": null},
        ]})
    );
    assert_eq!(serde_json::to_value(sim.applied()).expect("json"), got.body);
    assert_eq!(sim.applied_for("ModifyClusterTags").len(), 1);
    // Cleared with the request log.
    sim.clear_requests();
    assert_eq!(sim.applied(), AppliedWrites::default());
}

// --- Client tokens ---

#[tokio::test]
async fn a_resent_client_token_gets_the_first_answer_and_applies_nothing() {
    let sim = simulator().await;
    let c = Client::root(&sim);
    let first = create(&c, "once", Some("tok-1")).await;
    assert_eq!(first.status, 200, "{first:?}");
    let again = create(&c, "once", Some("tok-1")).await;
    assert_eq!((again.status, &again.body), (200, &first.body));
    assert_eq!(cluster_count(&c).await, 1);
    let applied = sim.applied();
    assert_eq!(applied.count, 1, "the resend is not an applied write");
    assert_eq!(applied.writes[0].client_token.as_deref(), Some("tok-1"));
    assert_eq!(sim.requests_for("CreateCluster").len(), 2, "both received");

    // Another token, or none, is another write.
    let other = create(&c, "twice", Some("tok-2")).await;
    assert_ne!(other.text("cluster_id"), first.text("cluster_id"));
    create(&c, "untokened", None).await;
    create(&c, "untokened", None).await;
    assert_eq!(cluster_count(&c).await, 4);
    // Another account's token of the same value is its own.
    let stranger = Client::other_account(&sim);
    let theirs = create(&stranger, "theirs", Some("tok-1")).await;
    assert_eq!(theirs.status, 200, "{theirs:?}");
    assert_ne!(theirs.text("cluster_id"), first.text("cluster_id"));
    assert_eq!(cluster_count(&stranger).await, 1);
    assert_eq!(sim.applied().count, 5);
}

#[tokio::test]
async fn a_write_whose_answer_was_lost_is_applied_once_when_resent_with_its_token() {
    let sim = simulator().await;
    let c = Client::root(&sim);
    for kind in [FaultKind::ResetBeforeHeaders, FaultKind::ResetUnapplied] {
        let token = format!("tok-{kind:?}");
        inject(
            &sim,
            "CreateCluster",
            Fault {
                kind,
                ..Fault::default()
            },
        );
        let before = cluster_count(&c).await;
        assert_eq!(create(&c, "lost", Some(&token)).await.status, 0, "{kind:?}");
        let resent = create(&c, "lost", Some(&token)).await;
        assert_eq!(resent.status, 200, "{kind:?}: {resent:?}");
        assert_eq!(cluster_count(&c).await, before + 1, "{kind:?}: one cluster");
        let detail = c
            .op(
                "DescribeClusterDetail",
                &[("cluster_id", &resent.text("cluster_id"))],
                None,
            )
            .await;
        assert_eq!(detail.status, 200, "{kind:?}: the answer names it");
    }
    assert_eq!(sim.applied().count, 2);
}

#[tokio::test]
async fn a_refused_write_does_not_use_up_its_client_token() {
    let sim = simulator().await;
    let c = Client::root(&sim);
    let refused = c
        .op(
            "CreateCluster",
            &[],
            Some(json!({"region_id": DEFAULT_REGION, "client_token": "tok-r"})),
        )
        .await;
    assert_eq!(refused.status, 400, "{refused:?}");
    let applied = create(&c, "fixed", Some("tok-r")).await;
    assert_eq!(applied.status, 200, "judged afresh: {applied:?}");
    assert_eq!(cluster_count(&c).await, 1);
    assert_eq!(sim.applied().count, 1);
}

#[tokio::test]
async fn modify_cluster_and_run_cluster_inspect_honour_their_body_tokens() {
    let sim = simulator().await;
    let c = Client::root(&sim);
    let id = "c-anything";
    for (op, body) in [
        (
            "ModifyCluster",
            json!({"client_token": "tok-m", "cluster_name": "n"}),
        ),
        ("RunClusterInspect", json!({"clientToken": "tok-i"})),
    ] {
        let first = c.op(op, &[("cluster_id", id)], Some(body.clone())).await;
        assert_eq!(first.status, 200, "{op}: {first:?}");
        let again = c.op(op, &[("cluster_id", id)], Some(body)).await;
        assert_eq!(again.body, first.body, "{op}: the first answer");
        let applied = sim.applied_for(op);
        assert_eq!(applied.len(), 1, "{op}: applied once");
        assert!(applied[0].client_token.is_some(), "{op}");
    }
    // RunClusterInspect's token is `clientToken`: `client_token` is not it.
    let body = json!({"client_token": "tok-i"});
    c.op("RunClusterInspect", &[("cluster_id", id)], Some(body))
        .await;
    assert_eq!(sim.applied_for("RunClusterInspect").len(), 2);
}

// --- Busy clusters ---

/// A task-starting write: operation, path parameters, body (`null`: none), and the state it
/// keeps the cluster in while its task runs.
type Step<'a> = (&'a str, &'a [(&'a str, &'a str)], Value, &'a str);

#[tokio::test]
async fn a_cluster_is_busy_while_its_task_runs_and_refuses_writes_that_need_it_running() {
    let sim = simulator_with(LONG_TASK).await;
    let c = Client::root(&sim);
    let id = running_cluster(&c, "busy").await;
    let cluster = [("cluster_id", id.as_str())];
    let pool = c
        .op(
            "CreateClusterNodePool",
            &cluster,
            Some(json!({"nodepool_info": {"name": "p1"}, "scaling_group": {"desired_size": 1}})),
        )
        .await;
    assert_eq!(pool.status, 200, "{pool:?}");
    assert_eq!(wait_task(&c, &pool.text("task_id")).await, "success");
    let np = pool.text("nodepool_id");
    let in_pool = [("cluster_id", id.as_str()), ("nodepool_id", np.as_str())];
    let steps: Vec<Step> = vec![
        ("ScaleOutCluster", &cluster, json!({"count": 1}), "scaling"),
        (
            "AttachInstances",
            &cluster,
            json!({"instances": ["i-1"]}),
            "scaling",
        ),
        (
            "CreateClusterNodePool",
            &cluster,
            json!({"nodepool_info": {"name": "p2"}, "scaling_group": {"desired_size": 1}}),
            "updating",
        ),
        (
            "ModifyClusterNodePool",
            &in_pool,
            json!({"nodepool_info": {"name": "p1-renamed"}}),
            "updating",
        ),
        (
            "ScaleClusterNodePool",
            &in_pool,
            json!({"count": 1}),
            "scaling",
        ),
        (
            "InstallClusterAddons",
            &cluster,
            json!([{"name": "extra"}]),
            "updating",
        ),
        (
            "UpgradeClusterAddons",
            &cluster,
            json!([{"component_name": "coredns", "next_version": "v2"}]),
            "updating",
        ),
        (
            "UnInstallClusterAddons",
            &cluster,
            json!([{"name": "extra"}]),
            "updating",
        ),
        (
            "UpgradeCluster",
            &cluster,
            json!({"next_version": "1.32.1-aliyun.1"}),
            "updating",
        ),
        ("DeleteClusterNodepool", &in_pool, Value::Null, "updating"),
    ];
    for (op, params, body, busy) in steps {
        let body = (!body.is_null()).then_some(body);
        let started = c.op(op, params, body).await;
        assert_eq!(started.status, 200, "{op}: {started:?}");
        assert_eq!(cluster_state(&c, &id).await, busy, "{op}");
        let counted = sim.applied().count;
        // A write that needs the cluster running is refused meanwhile, and applies nothing.
        let probe = json!({"count": 1});
        let refused = c.op("ScaleOutCluster", &cluster, Some(probe.clone())).await;
        assert_eq!(
            (refused.status, refused.code()),
            (400, "ErrorClusterState"),
            "{op}: {refused:?}"
        );
        assert_eq!(sim.applied().count, counted, "{op}: refused, not applied");
        assert_eq!(
            wait_task(&c, &started.text("task_id")).await,
            "success",
            "{op}"
        );
        assert_eq!(cluster_state(&c, &id).await, "running", "after {op}");
        // The same write is applied once the task has ended.
        let scaled = c.op("ScaleOutCluster", &cluster, Some(probe)).await;
        assert_eq!(scaled.status, 200, "after {op}: {scaled:?}");
        assert_eq!(sim.applied().count, counted + 1, "after {op}");
        assert_eq!(wait_task(&c, &scaled.text("task_id")).await, "success");
    }
}

#[tokio::test]
async fn a_cluster_whose_task_failed_serves_again() {
    let sim = simulator_with(LONG_TASK).await;
    let c = Client::root(&sim);
    let id = running_cluster(&c, "failing").await;
    sim.fail_next_task("CreateClusterNodePool", "QuotaExceeded", "no instances");
    let pool = c
        .op(
            "CreateClusterNodePool",
            &[("cluster_id", &id)],
            Some(
                json!({"nodepool_info": {"name": "doomed"}, "scaling_group": {"desired_size": 1}}),
            ),
        )
        .await;
    assert_eq!(pool.status, 200, "{pool:?}");
    assert_eq!(cluster_state(&c, &id).await, "updating");
    assert_eq!(wait_task(&c, &pool.text("task_id")).await, "failed");
    assert_eq!(cluster_state(&c, &id).await, "running");
    // A failed upgrade, as before, leaves the cluster `updating_failed`.
    sim.fail_next_task("UpgradeCluster", "UpgradeFailed", "nodes did not drain");
    let upgrade = c
        .op(
            "UpgradeCluster",
            &[("cluster_id", &id)],
            Some(json!({"next_version": "1.32.1-aliyun.1"})),
        )
        .await;
    assert_eq!(wait_task(&c, &upgrade.text("task_id")).await, "failed");
    assert_eq!(cluster_state(&c, &id).await, "updating_failed");
}

// --- Node pools, events and inspections ---

impl Client {
    /// Calls a ROA `operation` with query parameters (wire names).
    async fn op_query(
        &self,
        operation: &str,
        params: &[(&str, &str)],
        query: &[(&str, &str)],
    ) -> Reply {
        let table = table::builtin();
        let op = table
            .operations()
            .find(|o| o.name == operation && o.style == Style::Roa)
            .unwrap_or_else(|| panic!("{operation} is a ROA operation"));
        let mut path = op.path.clone();
        for (name, value) in params {
            path = path.replace(&format!("{{{name}}}"), value);
        }
        let query: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.signed(&op.method, &path, &query, None).await
    }
}

/// A node pool's `status`.
async fn pool_status(c: &Client, cluster: &str, pool: &str) -> Value {
    let detail = c
        .op(
            "DescribeClusterNodePoolDetail",
            &[("cluster_id", cluster), ("nodepool_id", pool)],
            None,
        )
        .await;
    assert_eq!(detail.status, 200, "{detail:?}");
    detail.body["status"].clone()
}

fn count(status: &Value, key: &str) -> i64 {
    status[key].as_i64().unwrap_or(-1)
}

/// Reads the pool's status until its task ends (bounded), keeping every status seen.
async fn statuses_until_done(c: &Client, cluster: &str, pool: &str, task: &str) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    loop {
        let status = pool_status(c, cluster, pool).await;
        let info = c.op("DescribeTaskInfo", &[("task_id", task)], None).await;
        let running = matches!(info.text("state").as_str(), "running" | "paused");
        seen.push(status);
        if !running {
            seen.push(pool_status(c, cluster, pool).await);
            return seen;
        }
        assert!(Instant::now() < deadline, "task {task} never ended");
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
}

#[tokio::test]
async fn node_pool_counts_move_while_its_tasks_run() {
    let sim = simulator_with(LONG_TASK).await;
    let c = Client::root(&sim);
    let id = running_cluster(&c, "counts").await;
    let cluster = [("cluster_id", id.as_str())];
    let created = c
        .op(
            "CreateClusterNodePool",
            &cluster,
            Some(json!({"nodepool_info": {"name": "p"}, "scaling_group": {"desired_size": 4}})),
        )
        .await;
    assert_eq!(created.status, 200, "{created:?}");
    let np = created.text("nodepool_id");
    let seen = statuses_until_done(&c, &id, &np, &created.text("task_id")).await;
    assert_eq!(seen[0]["state"], "initial");
    // Nodes are created, then join: serving never goes down, and never passes the total.
    let serving: Vec<i64> = seen.iter().map(|s| count(s, "serving_nodes")).collect();
    assert!(serving.windows(2).all(|w| w[0] <= w[1]), "{serving:?}");
    assert!(seen
        .iter()
        .all(|s| count(s, "serving_nodes") <= count(s, "total_nodes")));
    assert!(
        seen.iter().any(|s| count(s, "initial_nodes") > 0),
        "new nodes are seen before they serve: {seen:?}"
    );
    let last = seen.last().expect("last");
    assert_eq!(last["state"], "active");
    assert_eq!(
        (count(last, "serving_nodes"), count(last, "total_nodes")),
        (4, 4)
    );
    assert_eq!(last["conditions"][0]["type"], "Ready");
    assert_eq!(last["conditions"][0]["status"], "True");

    // A smaller desired size removes nodes: `removing`, then back to active.
    let pool = [("cluster_id", id.as_str()), ("nodepool_id", np.as_str())];
    let shrunk = c
        .op(
            "ModifyClusterNodePool",
            &pool,
            Some(json!({"scaling_group": {"desired_size": 1}})),
        )
        .await;
    assert_eq!(shrunk.status, 200, "{shrunk:?}");
    let seen = statuses_until_done(&c, &id, &np, &shrunk.text("task_id")).await;
    assert_eq!(seen[0]["state"], "removing");
    assert_eq!(count(&seen[0], "removing_nodes"), 3);
    assert_eq!(seen[0]["conditions"][1]["type"], "Progressing");
    let last = seen.last().expect("last");
    assert_eq!(last["state"], "active");
    assert_eq!(
        (count(last, "total_nodes"), count(last, "removing_nodes")),
        (1, 0)
    );

    // A deletion drains every node, then the pool is gone.
    let deleted = c.op("DeleteClusterNodepool", &pool, None).await;
    assert_eq!(deleted.status, 200, "{deleted:?}");
    let first = pool_status(&c, &id, &np).await;
    assert_eq!(first["state"], "deleting");
    assert_eq!(count(&first, "serving_nodes"), 0);
    assert_eq!(
        count(&first, "removing_nodes"),
        count(&first, "total_nodes")
    );
    assert_eq!(wait_task(&c, &deleted.text("task_id")).await, "success");
    let gone = c.op("DescribeClusterNodePoolDetail", &pool, None).await;
    assert_eq!((gone.status, gone.code()), (404, "ErrorNodePoolNotFound"));
}

#[tokio::test]
async fn a_failed_scale_out_leaves_failed_nodes_and_says_why() {
    let sim = simulator_with(TASK).await;
    let c = Client::root(&sim);
    let id = running_cluster(&c, "failing-scale").await;
    let created = c
        .op(
            "CreateClusterNodePool",
            &[("cluster_id", &id)],
            Some(json!({"nodepool_info": {"name": "p"}, "scaling_group": {"desired_size": 1}})),
        )
        .await;
    assert_eq!(wait_task(&c, &created.text("task_id")).await, "success");
    let np = created.text("nodepool_id");
    sim.fail_next_task(
        "ScaleClusterNodePool",
        "InstanceStockOut",
        "no ecs.g7.xlarge left",
    );
    let scaled = c
        .op(
            "ScaleClusterNodePool",
            &[("cluster_id", &id), ("nodepool_id", &np)],
            Some(json!({"count": 2})),
        )
        .await;
    assert_eq!(scaled.status, 200, "{scaled:?}");
    assert_eq!(wait_task(&c, &scaled.text("task_id")).await, "failed");
    let status = pool_status(&c, &id, &np).await;
    assert_eq!(status["state"], "active");
    assert_eq!(
        (
            count(&status, "serving_nodes"),
            count(&status, "failed_nodes"),
            count(&status, "total_nodes")
        ),
        (1, 2, 3)
    );
    let ready = &status["conditions"][0];
    assert_eq!(
        (ready["status"].as_str(), ready["reason"].as_str()),
        (Some("False"), Some("InstanceStockOut"))
    );
    assert!(
        ready["message"]
            .as_str()
            .is_some_and(|m| m.contains("no ecs.g7.xlarge left")),
        "{ready}"
    );
    let nodes = c
        .op_query(
            "DescribeClusterNodes",
            &[("cluster_id", &id)],
            &[("nodepool_id", &np), ("state", "failed")],
        )
        .await;
    assert_eq!(
        nodes.body["nodes"].as_array().map(Vec::len),
        Some(2),
        "{nodes:?}"
    );
}

#[tokio::test]
async fn cluster_events_tell_what_happened_newest_first_and_page_as_the_api() {
    let sim = simulator_with(TASK).await;
    let c = Client::root(&sim);
    let id = running_cluster(&c, "events").await;
    let cluster = [("cluster_id", id.as_str())];
    let created = c
        .op(
            "CreateClusterNodePool",
            &cluster,
            Some(json!({"nodepool_info": {"name": "p"}, "scaling_group": {"desired_size": 1}})),
        )
        .await;
    assert_eq!(wait_task(&c, &created.text("task_id")).await, "success");
    let np = created.text("nodepool_id");
    let pool = [("cluster_id", id.as_str()), ("nodepool_id", np.as_str())];
    let scaled = c
        .op("ScaleClusterNodePool", &pool, Some(json!({"count": 2})))
        .await;
    assert_eq!(wait_task(&c, &scaled.text("task_id")).await, "success");
    sim.fail_next_task("ScaleClusterNodePool", "InstanceStockOut", "no stock");
    let failed = c
        .op("ScaleClusterNodePool", &pool, Some(json!({"count": 1})))
        .await;
    assert_eq!(wait_task(&c, &failed.text("task_id")).await, "failed");
    let deleted = c.op("DeleteClusterNodepool", &pool, None).await;
    assert_eq!(wait_task(&c, &deleted.text("task_id")).await, "success");

    let all = c
        .op_query("DescribeClusterEvents", &cluster, &[("page_size", "100")])
        .await;
    assert_eq!(all.status, 200, "{all:?}");
    let events = all.body["events"].as_array().expect("events").clone();
    let reasons: Vec<&str> = events
        .iter()
        .rev()
        .filter_map(|e| e["data"]["reason"].as_str())
        .collect();
    assert_eq!(
        reasons,
        [
            "TaskStarted",
            "TaskSucceeded",
            "ClusterCreated",
            "TaskStarted",
            "TaskSucceeded",
            "NodePoolCreated",
            "TaskStarted",
            "TaskSucceeded",
            "NodePoolScaled",
            "TaskStarted",
            "TaskFailed",
            "TaskStarted",
            "TaskSucceeded",
            "NodePoolDeleted",
        ],
        "oldest first once reversed"
    );
    let times: Vec<&str> = events.iter().filter_map(|e| e["time"].as_str()).collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {times:?}"
    );
    let failure = events
        .iter()
        .find(|e| e["data"]["reason"] == "TaskFailed")
        .expect("failure");
    assert_eq!(failure["data"]["level"], "error");
    assert_eq!(failure["subject"], np.as_str());
    assert_eq!(failure["type"], "nodepool_scaleout");
    assert!(failure["data"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("InstanceStockOut: no stock")));
    assert!(events
        .iter()
        .all(|e| e["cluster_id"] == id.as_str() && e["data"]["level"] != ""));
    let ids: std::collections::BTreeSet<&str> = events
        .iter()
        .filter_map(|e| e["event_id"].as_str())
        .collect();
    assert_eq!(ids.len(), events.len(), "every event has its own id");
    assert_eq!(all.body["page_info"]["total_count"], events.len());
    assert_eq!(all.body["next_token"], "");

    // Pages by number, and by token: the same events in the same order.
    let paged = c
        .op_query(
            "DescribeClusterEvents",
            &cluster,
            &[("page_size", "4"), ("page_number", "2")],
        )
        .await;
    assert_eq!(
        paged.body["events"].as_array().expect("page")[..],
        events[4..8]
    );
    assert_eq!(paged.body["page_info"]["page_number"], 2);
    let mut by_token = Vec::new();
    let mut token = String::new();
    for _ in 0..10 {
        let mut query = vec![("max_results", "5")];
        if !token.is_empty() {
            query.push(("next_token", token.as_str()));
        }
        let page = c.op_query("DescribeClusterEvents", &cluster, &query).await;
        by_token.extend(page.body["events"].as_array().expect("page").clone());
        token = page.text("next_token");
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(by_token, events);
    // A token the simulator never issued reads past the end; one task's events on their own.
    let past = c
        .op_query(
            "DescribeClusterEvents",
            &cluster,
            &[("next_token", "evt-nope")],
        )
        .await;
    assert_eq!(
        (past.status, past.body["events"].as_array().map(Vec::len)),
        (200, Some(0))
    );
    let task = scaled.text("task_id");
    let one = c
        .op_query("DescribeClusterEvents", &cluster, &[("task_id", &task)])
        .await;
    let one = one.body["events"].as_array().expect("events").clone();
    assert_eq!(one.len(), 3);
    assert!(one.iter().all(|e| e["data"]["level"] == "info"));
    let unknown = c
        .op_query("DescribeClusterEvents", &[("cluster_id", "c-nope")], &[])
        .await;
    assert_eq!(
        (unknown.status, unknown.code()),
        (404, "ErrorClusterNotFound")
    );
}

#[tokio::test]
async fn upgrades_are_events_too() {
    let sim = simulator_with(LONG_TASK).await;
    let c = Client::root(&sim);
    let id = running_cluster(&c, "upgraded").await;
    let cluster = [("cluster_id", id.as_str())];
    let upgrade = c
        .op(
            "UpgradeCluster",
            &cluster,
            Some(json!({"next_version": "1.32.1-aliyun.1"})),
        )
        .await;
    assert_eq!(upgrade.status, 200, "{upgrade:?}");
    assert_eq!(
        c.op("PauseClusterUpgrade", &cluster, None).await.status,
        200
    );
    assert_eq!(
        c.op("ResumeUpgradeCluster", &cluster, None).await.status,
        200
    );
    assert_eq!(
        c.op("CancelClusterUpgrade", &cluster, None).await.status,
        200
    );
    let again = c
        .op(
            "UpgradeCluster",
            &cluster,
            Some(json!({"next_version": "1.32.1-aliyun.1"})),
        )
        .await;
    assert_eq!(wait_task(&c, &again.text("task_id")).await, "success");
    let all = c.op_query("DescribeClusterEvents", &cluster, &[]).await;
    let reasons: Vec<&str> = all.body["events"]
        .as_array()
        .expect("events")
        .iter()
        .rev()
        .filter(|e| e["type"] == "cluster_upgrade")
        .filter_map(|e| e["data"]["reason"].as_str())
        .collect();
    assert_eq!(
        reasons,
        [
            "TaskStarted",
            "UpgradePaused",
            "UpgradeResumed",
            "TaskCanceled",
            "TaskStarted",
            "TaskSucceeded",
            "ClusterUpgraded"
        ]
    );
}

#[tokio::test]
async fn an_inspection_report_runs_then_completes_and_is_listed() {
    let sim = simulator_with(LONG_TASK).await;
    let c = Client::root(&sim);
    let id = running_cluster(&c, "inspected").await;
    let cluster = [("cluster_id", id.as_str())];
    let run = c.op("RunClusterInspect", &cluster, Some(json!({}))).await;
    assert_eq!(run.status, 200, "{run:?}");
    let report = run.text("reportId");
    assert!(report.starts_with("ir-"), "{run:?}");
    assert!(run.text("taskId").starts_with("T-"));
    assert_eq!(
        cluster_state(&c, &id).await,
        "running",
        "an inspection keeps no cluster busy"
    );
    let in_report = [("cluster_id", id.as_str()), ("report_id", report.as_str())];
    let running = c
        .op("GetClusterInspectReportDetail", &in_report, None)
        .await;
    assert_eq!(running.status, 200, "{running:?}");
    assert_eq!(running.text("status"), "running");
    assert_eq!(
        running.body["checkItemResults"].as_array().map(Vec::len),
        Some(0)
    );
    assert_eq!(wait_task(&c, &run.text("taskId")).await, "success");
    let done = c
        .op("GetClusterInspectReportDetail", &in_report, None)
        .await;
    assert_eq!(done.text("status"), "completed");
    assert!(!done.text("endTime").is_empty());
    let items = done.body["checkItemResults"]
        .as_array()
        .expect("items")
        .clone();
    assert_eq!(items.len(), 7);
    let summary = &done.body["summary"];
    let problems = items.iter().filter(|i| i["result"] == "true").count() as i64;
    let counted: i64 = ["adviceCount", "warnCount", "errorCount"]
        .iter()
        .map(|k| summary[k].as_i64().unwrap_or(0))
        .sum();
    assert_eq!(counted, problems);
    assert_eq!(
        summary["normalCount"].as_i64(),
        Some(items.len() as i64 - problems)
    );
    // Filters and pages, with the API's wire names.
    let security = c
        .op_query(
            "GetClusterInspectReportDetail",
            &in_report,
            &[("category", "security"), ("enableFilter", "true")],
        )
        .await;
    let security = security.body["checkItemResults"]
        .as_array()
        .expect("items")
        .clone();
    assert_eq!(security.len(), 1);
    assert_eq!(security[0]["checkItemUid"], "sec-apiserver-public");
    let first = c
        .op_query(
            "GetClusterInspectReportDetail",
            &in_report,
            &[("maxResults", "3")],
        )
        .await;
    assert_eq!(
        first.body["checkItemResults"].as_array().map(Vec::len),
        Some(3)
    );
    let token = first.text("nextToken");
    let second = c
        .op_query(
            "GetClusterInspectReportDetail",
            &in_report,
            &[("maxResults", "3"), ("nextToken", &token)],
        )
        .await;
    assert_eq!(second.body["checkItemResults"][0], items[3]);

    sim.fail_next_task(
        "RunClusterInspect",
        "InspectFailed",
        "the agent did not answer",
    );
    let failing = c.op("RunClusterInspect", &cluster, Some(json!({}))).await;
    assert_eq!(wait_task(&c, &failing.text("taskId")).await, "failed");
    let listed = c.op("ListClusterInspectReports", &cluster, None).await;
    let reports = listed.body["reports"].as_array().expect("reports").clone();
    let statuses: Vec<(&str, &str)> = reports
        .iter()
        .map(|r| {
            (
                r["reportId"].as_str().unwrap_or(""),
                r["status"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [
            (failing.text("reportId").as_str(), "failed"),
            (report.as_str(), "completed")
        ],
        "newest first"
    );
    assert_eq!(reports[0]["summary"]["code"], "InspectFailed");
    // A report the simulator never made is answered with the catalogue's sample, as before.
    let unknown = c
        .op(
            "GetClusterInspectReportDetail",
            &[("cluster_id", &id), ("report_id", "r-never")],
            None,
        )
        .await;
    assert_eq!(unknown.status, 200);
}
