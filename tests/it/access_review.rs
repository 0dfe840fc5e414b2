//! What an adversarial review of access found, one test per finding, over real sockets and
//! through every protocol where it applies: authentication that a configuration switched off,
//! a cache shared across differently scoped profiles, connections held by bodies that never
//! come, wildcards that reached kubeconfigs, stale brokered triples after a reload, dispatch on
//! the last path segment, bare-LF heads and a profile name that reached the logs raw.

use crate::credentials::ROLE_ARN;
use crate::http_clients::{connect_json, grpc_status, grpc_web};
use crate::support::*;
use ack_gateway::access::token_hash;
use ack_gateway::config::Config;
use ack_gateway::simulator::{Simulator, SimulatorOptions};
use serde_json::json;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tonic::Code;

const ALICE: &str = "alice-token-0123456789";

/// A TCP connection to `addr` from the loopback address `from` (127.0.0.N), so that tests can
/// play several peers.
async fn connect_from(from: [u8; 4], addr: SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::from((from, 0)))
        .expect("bind a loopback source");
    socket.connect(addr).await.expect("connects")
}

/// What the gateway sends on `stream` within `wait`, until it closes or stops sending.
async fn read_some(stream: &mut TcpStream, wait: Duration) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (out, true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (out, false),
        }
    }
}

fn profile(name: &str, id: &str, secret: &str, extra: &str) -> String {
    format!(
        "[profiles.{name}]\ntype = \"access_key\"\naccess_key_id = \"{id}\"\n\
         access_key_secret = \"{secret}\"\nregion = \"cn-hangzhou\"\n{extra}"
    )
}

/// Finding 1. Before: `auth.mode = auto` was insecure whenever the embedded simulator ran on
/// loopback, so with `[simulator] mode = "always"`, a real profile and callers, an
/// unauthenticated DeleteCluster reached the upstream and the broker issued credentials with no
/// token.
#[tokio::test]
async fn a_configuration_that_asks_for_protection_is_never_served_unauthenticated() {
    let text = format!(
        "[simulator]\nmode = \"always\"\ntask_duration = \"100ms\"\n[broker]\nlisten = \"127.0.0.1:0\"\n\
         {}[callers.alice]\ntoken_sha256 = [\"{}\"]\nprofiles = [\"dev\"]\noperations = [\"*\"]\n",
        profile("prod", "LTAIprodkey", "prod-secret-0123456789", "")
            + &profile("dev", "LTAIdevkey", "dev-secret-0123456789", ""),
        token_hash(ALICE)
    );
    let h = Harness::with_config(&text, env(&[])).await;
    assert!(!h.running.gateway.snapshot().access.insecure_local());

    // gRPC and Connect: no token, no call; alice's token, not for `prod`.
    let delete = json!({"cluster_id": "c-prod"});
    let anonymous = h
        .call(
            CS_SERVICE,
            "DeleteCluster",
            delete.clone(),
            &[("x-ack-profile", "prod")],
            None,
        )
        .await
        .expect_err("unauthenticated");
    assert_eq!(anonymous.code(), Code::Unauthenticated);
    let over_connect = connect_json(
        &h,
        CS_SERVICE,
        "DeleteCluster",
        &delete.to_string(),
        &[("x-ack-profile", "prod")],
    )
    .await;
    assert_eq!(over_connect.status, 401, "{}", over_connect.json);
    let bearer = format!("Bearer {ALICE}");
    let md = [
        ("authorization", bearer.as_str()),
        ("x-ack-profile", "prod"),
    ];
    let denied = h
        .call(CS_SERVICE, "DeleteCluster", delete, &md, None)
        .await
        .expect_err("not alice's profile");
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert!(h.sim().requests_for("DeleteCluster").is_empty());

    // The broker's HTTP endpoint wants a token too.
    let broker = h.running.broker_addr.expect("broker listens");
    let resp = reqwest::get(format!("http://{broker}/v1/credentials/prod"))
        .await
        .expect("answered");
    assert_eq!(resp.status().as_u16(), 401);
    assert_eq!(h.sim().count("AssumeRole"), 0);

    // With nothing that asks for protection, the mode is still the local one, and it says so.
    let plain = Config::load(None, &env(&[])).expect("valid");
    assert!(plain.insecure_local());
    assert!(plain
        .summary()
        .to_string()
        .contains("AUTHENTICATION IS OFF"));
    let protected = Config::load(Some(&text), &env(&[])).expect("valid");
    assert!(!protected
        .summary()
        .to_string()
        .contains("AUTHENTICATION IS OFF"));
}

/// Finding 1, the configurations `check-config` refuses: an explicit `insecure_local` with
/// callers, or outside loopback (the gRPC port or the broker).
#[test]
fn insecure_local_with_callers_or_off_loopback_is_a_configuration_error() {
    let callers = format!(
        "[callers.alice]\ntoken_sha256 = [\"{}\"]\nprofiles = [\"*\"]\noperations = [\"*\"]\n",
        token_hash(ALICE)
    );
    for (text, named) in [
        (
            format!("[auth]\nmode = \"insecure_local\"\n{callers}"),
            "callers",
        ),
        (
            "listen = \"0.0.0.0:50051\"\n[auth]\nmode = \"insecure_local\"\n".to_string(),
            "0.0.0.0:50051",
        ),
        (
            "[auth]\nmode = \"insecure_local\"\n[broker]\nlisten = \"0.0.0.0:9465\"\n".to_string(),
            "broker.listen",
        ),
    ] {
        let err = Config::load(Some(&text), &env(&[])).expect_err("refused");
        let err = err.to_string();
        assert!(
            err.contains("auth.mode") && err.contains(named),
            "{named}: {err}"
        );
    }
    // Each thing that asks for protection ends the automatic insecure mode.
    for text in [
        callers.clone(),
        "[broker]\nlisten = \"127.0.0.1:9465\"\n".to_string(),
        profile("prod", "LTAIprodkey", "prod-secret", ""),
        "listen = \"0.0.0.0:50051\"\n".to_string(),
    ] {
        let text = format!("{text}[simulator]\nmode = \"always\"\n");
        let c = Config::load(Some(&text), &env(&[])).expect("valid");
        assert!(!c.insecure_local(), "{text}");
    }
}

/// Finding 2. Before: the cache was keyed by the AccessKey id or role ARN alone, so `orgb`
/// (`x-acs-organizationid = 2`) was answered from `orga`'s entry (`x-ack-cache: hit`), and a
/// deny-all session policy from the unrestricted role's.
#[tokio::test]
async fn profiles_scoped_differently_never_share_a_cached_answer() {
    let sim = simulator(SimulatorOptions::default()).await;
    let (id, secret) = sim.root_key();
    let secret = secret.expose();
    let role = |name: &str, extra: &str| {
        format!(
            "[profiles.{name}]\ntype = \"ram_role_arn\"\nsource_profile = \"base\"\n\
             role_arn = \"{ROLE_ARN}\"\nregion = \"cn-hangzhou\"\n{extra}"
        )
    };
    let text = [
        format!(
            "[simulator]\nmode = \"never\"\n[auth]\nmode = \"insecure_local\"\n\
             [endpoints]\ncs = \"{ep}\"\nsts = \"{ep}\"\n",
            ep = sim.endpoint()
        ),
        profile("base", &id, secret, ""),
        profile("orga", &id, secret, "[profiles.orga.acs_headers]\nx-acs-organizationid = \"1\"\n"),
        profile("orgb", &id, secret, "[profiles.orgb.acs_headers]\nx-acs-organizationid = \"2\"\n"),
        profile("rg", &id, secret, "[profiles.rg.acs_headers]\nx-acs-organizationid = \"1\"\nx-acs-resourcegroupid = \"rg-1\"\n"),
        role("dev", ""),
        role("devnarrow", "policy = '{\"Version\":\"1\",\"Statement\":[{\"Effect\":\"Deny\",\"Action\":\"*\",\"Resource\":\"*\"}]}'\n"),
        role("devext", "external_id = \"ext-1\"\n"),
        role("devsession", "role_session_name = \"other-session\"\n"),
    ]
    .concat();
    let h = Harness::with_config(&text, env(&[])).await;
    // A request of its own for each pair, so that no pair meets another's entries.
    let cached = |name: &'static str, pair: usize| {
        let h = &h;
        async move {
            let (_, md) = h
                .call(
                    CS_SERVICE,
                    "DescribeClustersV1",
                    json!({"name": format!("pair-{pair}")}),
                    &[("x-ack-profile", name), ("cache-control", "max-age=300")],
                    None,
                )
                .await
                .unwrap_or_else(|e| panic!("{name}: {e:?}"));
            md.get("x-ack-cache")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        }
    };
    // Each pair differs in one attribute: organization, resource group, session policy,
    // external id, session name; and an AccessKey profile against a role.
    for pair in [
        ("orga", "orgb"),
        ("base", "orga"),
        ("orga", "rg"),
        ("dev", "devnarrow"),
        ("dev", "devext"),
        ("dev", "devsession"),
        ("base", "dev"),
    ]
    .into_iter()
    .enumerate()
    {
        let (first, second) = pair.1;
        let pair = pair.0;
        assert_eq!(cached(first, pair).await, "miss", "{first} first");
        assert_eq!(cached(first, pair).await, "hit", "{first} is cached");
        assert_eq!(cached(second, pair).await, "miss", "{second} after {first}");
        assert_eq!(
            cached(second, pair).await,
            "hit",
            "{second} has its own entry"
        );
    }
    // The same over Connect.
    let orgb = connect_json(
        &h,
        CS_SERVICE,
        "DescribeClustersV1",
        "{\"name\":\"pair-0\"}",
        &[("x-ack-profile", "orgb"), ("cache-control", "max-age=300")],
    )
    .await;
    assert_eq!(orgb.header("x-ack-cache"), Some("hit"), "orgb's own entry");
    let devext = connect_json(
        &h,
        CS_SERVICE,
        "DescribeClustersV1",
        "{\"name\":\"pair-4\"}",
        &[
            ("x-ack-profile", "devext"),
            ("cache-control", "max-age=300"),
        ],
    )
    .await;
    assert_eq!(devext.header("x-ack-cache"), Some("hit"));
    let rg_after = connect_json(
        &h,
        CS_SERVICE,
        "DescribeClusterDetail",
        "{\"cluster_id\":\"c-none\"}",
        &[("x-ack-profile", "rg")],
    )
    .await;
    assert_eq!(rg_after.status, 404, "reaches the upstream");
}

/// A gateway that enforces callers (alice), with small connection limits.
async fn enforcing(limits: &str) -> (Harness, Simulator) {
    let sim = simulator(SimulatorOptions::default()).await;
    let (id, secret) = sim.root_key();
    let text = format!(
        "[simulator]\nmode = \"never\"\n[auth]\nmode = \"enforce\"\n[endpoints]\ncs = \"{}\"\n{}\
         [callers.alice]\ntoken_sha256 = [\"{}\"]\nprofiles = [\"*\"]\noperations = [\"*\"]\n\
         [limits]\n{limits}\n",
        sim.endpoint(),
        profile("default", &id, secret.expose(), ""),
        token_hash(ALICE)
    );
    (Harness::with_config(&text, env(&[])).await, sim)
}

/// A Connect request head that announces a body it never sends.
fn head_without_body(token: Option<&str>) -> String {
    let auth = token.map_or(String::new(), |t| format!("authorization: Bearer {t}\r\n"));
    format!(
        "POST /{CS_SERVICE}/DescribeClustersV1 HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         {auth}content-length: 100\r\n\r\n"
    )
}

/// A valid call, timed.
async fn served_within(h: &Harness, limit: Duration) {
    let started = Instant::now();
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", h.running.addr))
        .expect("uri")
        .connect_timeout(limit)
        .connect()
        .await
        .expect("a fresh connection is accepted");
    let bearer = format!("Bearer {ALICE}");
    call(
        &channel,
        CS_SERVICE,
        "DescribeClustersV1",
        json!({}),
        &[("authorization", bearer.as_str())],
        Some(limit),
    )
    .await
    .expect("a valid call is served");
    assert!(
        started.elapsed() < limit,
        "served in {:?}",
        started.elapsed()
    );
}

/// Finding 3, unauthenticated: before, Connect read the body before authenticating and nothing
/// timed a body out, so 20 heads announcing bodies held all 20 places of a
/// `grpc_max_connections = 20` gateway for 50 s and more. Now each is answered from its head.
#[tokio::test]
async fn unauthenticated_heads_are_answered_before_their_bodies_and_hold_no_place() {
    const N: u8 = 20;
    let (h, _sim) =
        enforcing("grpc_max_connections = 20\ngrpc_request_body_timeout = \"30s\"").await;
    let addr = h.running.addr;
    let mut held = Vec::new();
    for i in 0..N {
        // One peer address each: the per-peer cap plays no part here.
        let mut s = connect_from([127, 0, 1, 10 + i], addr).await;
        s.write_all(head_without_body(None).as_bytes())
            .await
            .expect("head sent");
        held.push(s);
    }
    for s in &mut held {
        let (answer, _) = read_some(s, Duration::from_secs(2)).await;
        let text = String::from_utf8_lossy(&answer);
        assert!(
            text.starts_with("HTTP/1.1 401"),
            "answered from its head: {text}"
        );
    }
    served_within(&h, Duration::from_secs(1)).await;
}

/// Finding 3, authenticated: a body that never comes fails its call at the body timeout (HTTP/1
/// closes the connection), over Connect, gRPC-Web and HTTP/2 gRPC alike.
#[tokio::test]
async fn bodies_that_never_come_time_out_over_every_protocol() {
    let (h, sim) =
        enforcing("grpc_request_body_timeout = \"300ms\"\ngrpc_request_body_min_rate = 1000").await;
    let addr = h.running.addr;
    let heads = [
        head_without_body(Some(ALICE)),
        head_without_body(Some(ALICE)).replace("application/json", "application/grpc-web+proto"),
    ];
    for head in heads {
        let started = Instant::now();
        let mut s = connect_from([127, 0, 2, 1], addr).await;
        s.write_all(head.as_bytes()).await.expect("head sent");
        let (answer, closed) = read_some(&mut s, Duration::from_secs(3)).await;
        let text = String::from_utf8_lossy(&answer);
        assert!(closed, "the connection is closed: {text}");
        assert!(
            started.elapsed() >= Duration::from_millis(250)
                && started.elapsed() < Duration::from_secs(2),
            "after the body timeout: {:?} {text}",
            started.elapsed()
        );
        assert!(
            text.contains("504") || text.contains("grpc-status: 4") || text.is_empty(),
            "{text}"
        );
    }
    // HTTP/2: a gRPC call whose message never comes.
    let mut grpc = tonic::client::Grpc::new(h.channel.clone());
    grpc.ready().await.expect("ready");
    let mut request = tonic::Request::new(futures_util::stream::pending::<bytes::Bytes>());
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {ALICE}").parse().expect("value"),
    );
    let started = Instant::now();
    let status = grpc
        .client_streaming(
            request,
            format!("/{CS_SERVICE}/DescribeClustersV1")
                .parse()
                .expect("path"),
            ack_gateway::server::codec::RawCodec,
        )
        .await
        .expect_err("no message");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(sim.requests_for("DescribeClustersV1").is_empty());
    served_within(&h, Duration::from_secs(1)).await;
}

/// Finding 3, one client's share: with `grpc_max_connections_per_peer = 5`, the sixth and later
/// connections from one address are closed at once and another peer is still served.
#[tokio::test]
async fn one_peer_address_cannot_take_every_connection() {
    let (h, _sim) = enforcing("grpc_max_connections = 8\ngrpc_max_connections_per_peer = 5").await;
    let addr = h.running.addr;
    let mut held = Vec::new();
    for _ in 0..8 {
        let mut s = connect_from([127, 0, 3, 1], addr).await;
        // The HTTP/2 preface: a connection that stays open, waiting.
        let _ = s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
        held.push(s);
    }
    let mut closed = 0;
    for s in &mut held {
        let (_, was_closed) = read_some(s, Duration::from_millis(300)).await;
        closed += usize::from(was_closed);
    }
    assert_eq!(
        closed, 3,
        "the connections over the peer's share are closed"
    );
    let (_, _, metrics) = crate::observability::admin_get(&h, "/metrics").await;
    let values = crate::observability::parse_metrics(&metrics);
    assert!(
        values
            .get(r#"ack_gateway_grpc_connections_closed_total{reason="too_many_from_peer"}"#)
            .is_some_and(|n| *n >= 3.0),
        "{metrics}"
    );
    served_within(&h, Duration::from_secs(1)).await;
}

/// Finding 4. Before: `Describe*`, `List*`, `Get*` reached every kubeconfig and attach script.
#[tokio::test]
async fn wildcards_never_reach_an_answer_that_carries_secrets() {
    let sim = simulator(SimulatorOptions::default()).await;
    let (id, secret) = sim.root_key();
    let grant = |name: &str, token: &str, ops: &str, secrets: &str| {
        format!(
            "[callers.{name}]\ntoken_sha256 = [\"{}\"]\nprofiles = [\"*\"]\noperations = {ops}\n\
             secret_operations = {secrets}\n",
            token_hash(token)
        )
    };
    let text = format!(
        "[simulator]\nmode = \"never\"\n[auth]\nmode = \"enforce\"\n[endpoints]\ncs = \"{}\"\n{}{}{}{}",
        sim.endpoint(),
        profile("default", &id, secret.expose(), ""),
        grant("reader", "reader-token-1", r#"["Describe*", "List*", "Get*"]"#, "[]"),
        grant("wide", "wide-token-2", r#"["*"]"#, "[]"),
        grant("kube", "kube-token-3", r#"["Describe*", "DescribeClusterUserKubeconfig"]"#, "[]"),
    );
    let h = Harness::with_config(&text, env(&[])).await;
    let auth = |token: &'static str| [("authorization", format!("Bearer {token}"))];
    let (created, _) = h
        .call(
            CS_SERVICE,
            "CreateCluster",
            json!({"name": "secrets", "region_id": "cn-hangzhou", "cluster_type": "ManagedKubernetes"}),
            &[("authorization", "Bearer wide-token-2")],
            None,
        )
        .await
        .expect("created");
    let cluster = created["cluster_id"].as_str().expect("id").to_string();
    let secret_reads = [
        (
            "DescribeClusterUserKubeconfig",
            json!({"cluster_id": cluster}),
        ),
        (
            "DescribeClusterV2UserKubeconfig",
            json!({"cluster_id": cluster}),
        ),
        (
            "DescribeClusterAttachScripts",
            json!({"cluster_id": cluster}),
        ),
        ("DescribeExternalAgent", json!({"cluster_id": cluster})),
        (
            "DescribeSubaccountK8sClusterUserConfig",
            json!({"cluster_id": cluster, "uid": "1"}),
        ),
    ];
    for token in ["reader-token-1", "wide-token-2"] {
        let md = auth(token);
        let md: Vec<(&str, &str)> = md.iter().map(|(k, v)| (*k, v.as_str())).collect();
        for (op, req) in &secret_reads {
            let err = h
                .call(CS_SERVICE, op, req.clone(), &md, None)
                .await
                .expect_err("denied");
            assert_eq!(err.code(), Code::PermissionDenied, "{token} {op}");
            let connect = connect_json(&h, CS_SERVICE, op, &req.to_string(), &md).await;
            assert_eq!(connect.status, 403, "{token} {op} over Connect");
            let (_, trailers) = grpc_web(&h, CS_SERVICE, op, req.clone(), &md, false).await;
            assert_eq!(
                grpc_status(&trailers),
                Some("7"),
                "{token} {op} over gRPC-Web"
            );
        }
    }
    for op in [
        "DescribeClusterUserKubeconfig",
        "DescribeClusterAttachScripts",
    ] {
        assert!(sim.requests_for(op).is_empty(), "{op} was never sent");
    }
    // The reader still reads; an exact grant reaches the one it names, sent `no-store`.
    let reader = [("authorization", "Bearer reader-token-1")];
    h.call(
        CS_SERVICE,
        "DescribeClusterDetail",
        json!({"cluster_id": cluster}),
        &reader,
        None,
    )
    .await
    .expect("a read");
    let kube = [("authorization", "Bearer kube-token-3")];
    let body = json!({"cluster_id": cluster}).to_string();
    let answer = connect_json(
        &h,
        CS_SERVICE,
        "DescribeClusterUserKubeconfig",
        &body,
        &kube,
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.json);
    assert_eq!(answer.header("cache-control"), Some("no-store"));
    let (_, md) = h
        .call(
            CS_SERVICE,
            "DescribeClusterUserKubeconfig",
            json!({"cluster_id": cluster}),
            &kube,
            None,
        )
        .await
        .expect("exact grant");
    assert_eq!(
        md.get("cache-control").and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    let err = connect_json(
        &h,
        CS_SERVICE,
        "DescribeClusterV2UserKubeconfig",
        &body,
        &kube,
    )
    .await;
    assert_eq!(err.status, 403);

    // check-config shows what each caller reaches, secret-bearing operations by name.
    let summary = Config::load(Some(&text), &env(&[]))
        .expect("valid")
        .summary()
        .to_string();
    let reach = |caller: &str| {
        let at = summary
            .find(&format!("  {caller}: "))
            .expect("caller listed");
        summary[at..]
            .lines()
            .find(|l| l.contains("reaches"))
            .expect("a reach line")
            .to_string()
    };
    assert!(
        reach("reader").contains("0 whose answers carry secrets"),
        "{summary}"
    );
    assert!(
        reach("wide").contains("0 whose answers carry secrets"),
        "{summary}"
    );
    assert!(
        reach("kube").contains("1 whose answers carry secrets: DescribeClusterUserKubeconfig"),
        "{summary}"
    );
}

/// Finding 6. Before: after `role_arn` of a brokered profile changed in a reloaded
/// configuration, `GET /v1/credentials/<profile>` kept answering the old role's triple.
#[tokio::test]
async fn a_reload_that_changes_a_brokered_profile_drops_its_triples() {
    const OTHER_ROLE: &str = "acs:ram::1000000000000001:role/other";
    let sim = simulator(SimulatorOptions::default()).await;
    let (id, secret) = sim.root_key();
    let dir = scratch_dir("broker-reload");
    let file = dir.join("gateway.toml");
    let text = |role_arn: &str| {
        format!(
            "[simulator]\nmode = \"never\"\n[auth]\nmode = \"enforce\"\n[endpoints]\ncs = \"{ep}\"\nsts = \"{ep}\"\n\
             [broker]\nlisten = \"127.0.0.1:0\"\n{}\
             [profiles.role]\ntype = \"ram_role_arn\"\nsource_profile = \"root\"\nrole_arn = \"{role_arn}\"\nregion = \"cn-hangzhou\"\n\
             [callers.svc]\ntoken_sha256 = [\"{}\"]\nprofiles = [\"*\"]\noperations = [\"*\"]\nbroker = [\"role\"]\n",
            profile("root", &id, secret.expose(), ""),
            token_hash(ALICE),
            ep = sim.endpoint(),
        )
    };
    std::fs::write(&file, text(ROLE_ARN)).expect("config");
    let mut config = Config::load(Some(&text(ROLE_ARN)), &env(&[])).expect("valid");
    config.listen = "127.0.0.1:0".parse().expect("addr");
    config.admin_listen = "127.0.0.1:0".parse().expect("addr");
    config.source_file = Some(file.clone());
    config.reload_interval = Duration::from_millis(100);
    let running = ack_gateway::app::start(config).await.expect("starts");
    let url = format!(
        "http://{}/v1/credentials/role",
        running.broker_addr.expect("broker")
    );
    let get = || async {
        let resp = reqwest::Client::new()
            .get(&url)
            .bearer_auth(ALICE)
            .send()
            .await
            .expect("answered");
        assert_eq!(resp.status().as_u16(), 200);
        assert_eq!(
            resp.headers()
                .get("cache-control")
                .and_then(|v| v.to_str().ok()),
            Some("no-store")
        );
        let json: serde_json::Value = resp.json().await.expect("json");
        json["AccessKeyId"].as_str().expect("key id").to_string()
    };
    let first = get().await;
    assert_eq!(get().await, first, "reused while the profile is unchanged");
    let role_of_last_assume = || {
        sim.requests_for("AssumeRole").last().and_then(|r| {
            r.query
                .iter()
                .find(|(k, _)| k == "RoleArn")
                .map(|(_, v)| v.clone())
        })
    };
    assert_eq!(role_of_last_assume().as_deref(), Some(ROLE_ARN));

    std::fs::write(&file, text(OTHER_ROLE)).expect("rewrite");
    let deadline = Instant::now() + Duration::from_secs(5);
    let second = loop {
        let key = get().await;
        if key != first {
            break key;
        }
        assert!(
            Instant::now() < deadline,
            "the reload dropped the old triple"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(role_of_last_assume().as_deref(), Some(OTHER_ROLE));
    assert!(sim
        .issued_sts_credentials()
        .iter()
        .any(|(k, _, _)| *k == second));
    running.shutdown().await.expect("stops");
}

/// Finding 7. Before: `/…ContainerService/DescribeClusterDetail/DeleteCluster` ran
/// DeleteCluster over gRPC and gRPC-Web.
#[tokio::test]
async fn only_the_exact_package_service_method_path_dispatches() {
    let h = Harness::embedded().await;
    let (cluster, _) = create_cluster(&h, "paths").await;
    let deep = format!("{CS_SERVICE}/DescribeClusterDetail");
    let err = h
        .call(
            &deep,
            "DeleteCluster",
            json!({"cluster_id": cluster}),
            &[],
            None,
        )
        .await;
    // The support client builds the request from the last segment's messages; the gateway
    // must refuse the path itself.
    let err = err.expect_err("not a method");
    assert_eq!(err.code(), Code::Unimplemented, "{err:?}");
    // gRPC-Web: a frame holding the DeleteCluster request, to the deep path.
    let message = {
        use prost::Message as _;
        let desc = ack_gateway::proto::message("alibabacloud.cs.v20151215.DeleteClusterRequest")
            .expect("message");
        prost_reflect::DynamicMessage::deserialize(desc, json!({"cluster_id": cluster}))
            .expect("request")
            .encode_to_vec()
    };
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(&message);
    let resp = reqwest::Client::new()
        .post(format!("http://{}/{deep}/DeleteCluster", h.running.addr))
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .body(frame)
        .send()
        .await
        .expect("answered");
    let status = resp
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = resp.bytes().await.expect("body");
    let in_body = String::from_utf8_lossy(&body).contains("grpc-status:12");
    assert!(
        status.as_deref() == Some("12") || in_body,
        "{status:?} {body:?}"
    );
    let resp = reqwest::Client::new()
        .post(format!("http://{}/{deep}/DeleteCluster", h.running.addr))
        .header("content-type", "application/json")
        .body(json!({"cluster_id": cluster}).to_string())
        .send()
        .await
        .expect("answered");
    assert_eq!(resp.status().as_u16(), 404);
    assert!(h.sim().requests_for("DeleteCluster").is_empty());
    h.cs("DescribeClusterDetail", json!({"cluster_id": cluster}))
        .await
        .expect("the cluster is still there");
}

/// Finding 8: a profile name outside its alphabet is refused before it is logged; a bare LF
/// ends no HTTP/1 line; `check-config | head` exits quietly.
#[tokio::test]
async fn profile_names_bare_lf_heads_and_a_closed_pipe() {
    let h = Harness::embedded().await;
    for bad in ["a\tb", "prod\u{7f}", "x".repeat(65).as_str(), "a b"] {
        let Ok(value) = tonic::metadata::MetadataValue::try_from(bad) else {
            continue;
        };
        let mut req = tonic::Request::new(bytes::Bytes::new());
        req.metadata_mut().insert("x-ack-profile", value);
        let mut grpc = tonic::client::Grpc::new(h.channel.clone());
        grpc.ready().await.expect("ready");
        let err = grpc
            .unary(
                req,
                format!("/{CS_SERVICE}/DescribeClustersV1")
                    .parse()
                    .expect("path"),
                ack_gateway::server::codec::RawCodec,
            )
            .await
            .expect_err("refused");
        assert_eq!(err.code(), Code::InvalidArgument, "{bad:?}");
        assert!(err.message().contains("x-ack-profile"), "{}", err.message());
    }

    // HTTP/1: CRLF heads are served; a bare LF closes the connection unanswered, even after a
    // request with a body on the same connection.
    let addr = h.running.addr;
    let mut ok = TcpStream::connect(addr).await.expect("connects");
    ok.write_all(b"GET /ui/ HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .expect("sent");
    let (answer, _) = read_some(&mut ok, Duration::from_secs(2)).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    for bytes in [
        b"GET /ui/ HTTP/1.1\nhost: x\n\n".to_vec(),
        b"GET /ui/ HTTP/1.1\r\nhost: x\nx-smuggled: 1\r\n\r\n".to_vec(),
        format!(
            "POST /{CS_SERVICE}/DescribeClustersV1 HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
             content-length: 2\r\n\r\n{{}}GET /ui/ HTTP/1.1\nhost: x\n\n"
        )
        .into_bytes(),
    ] {
        let mut s = TcpStream::connect(addr).await.expect("connects");
        s.write_all(&bytes).await.expect("sent");
        let (answer, closed) = read_some(&mut s, Duration::from_secs(2)).await;
        let text = String::from_utf8_lossy(&answer);
        assert!(closed, "closed: {text}");
        assert!(!text.contains("text/html"), "the page was not served: {text}");
    }

    // `check-config | head`: a reader that goes away is no panic.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ack-gateway"))
        .arg("check-config")
        .env_remove("ALIBABA_CLOUD_ACCESS_KEY_ID")
        .env_remove("ALIBABA_CLOUD_ROLE_ARN")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("runs");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.status.success(), "{stderr}");
}
