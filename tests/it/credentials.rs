//! Credential profiles and the broker, over real sockets: AssumeRole triples refreshed once per
//! refresh under load, an STS outage, the broker's gRPC and credentials-URI endpoints, and a
//! hot reload that adds a profile.

use crate::support::*;
use ack_gateway::access::token_hash;
use ack_gateway::simulator::{Fault, Simulator, SimulatorOptions};
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::Code;

pub const ROLE_ARN: &str = "acs:ram::1000000000000001:role/platform";

/// A simulator issuing triples that live `lifetime`, and a gateway whose `role` profile assumes
/// a role with the `root` AccessKey.
pub async fn role_setup(lifetime: Duration, extra_toml: &str) -> (Simulator, Harness) {
    let sim = simulator(SimulatorOptions {
        sts_duration: Some(lifetime),
        ..Default::default()
    })
    .await;
    let (id, secret) = sim.root_key();
    let toml = format!(
        r#"
[simulator]
mode = "never"
[auth]
mode = "insecure_local"
[endpoints]
cs = "{ep}"
sts = "{ep}"
[profiles.root]
type = "access_key"
access_key_id = "{id}"
access_key_secret = "{secret}"
region = "cn-hangzhou"
[profiles.role]
type = "ram_role_arn"
source_profile = "root"
role_arn = "{ROLE_ARN}"
role_session_name = "gateway-test"
duration_seconds = 900
region = "cn-hangzhou"
{extra_toml}
"#,
        ep = sim.endpoint(),
        secret = secret.expose(),
    );
    let h = Harness::with_config(&toml, env(&[])).await;
    (sim, h)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_triples_refresh_once_per_refresh_under_thousands_of_concurrent_calls() {
    let lifetime = Duration::from_secs(6);
    let (sim, h) = role_setup(
        lifetime,
        "[rate_limit]\nupstream = { rate = 100000.0, burst = 100000 }\n",
    )
    .await;
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let run_for = Duration::from_secs(13);
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..64 {
        let channel = h.channel.clone();
        let (ok, failed) = (ok.clone(), failed.clone());
        workers.push(tokio::spawn(async move {
            while started.elapsed() < run_for {
                let r = call(
                    &channel,
                    CS_SERVICE,
                    "DescribeClustersV1",
                    json!({}),
                    // Every call goes upstream, so every call needs a valid triple.
                    &[("x-ack-profile", "role"), ("cache-control", "no-cache")],
                    Some(Duration::from_secs(1)),
                )
                .await;
                match r {
                    Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        eprintln!("call failed: {e:?}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    for w in workers {
        w.await.expect("worker");
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    let assumed = sim.count("AssumeRole");
    let stats = h.running.gateway.snapshot().vault.refresh_stats();
    let refreshes = stats
        .iter()
        .find(|(p, _)| p == "role")
        .map(|(_, s)| s.refreshes)
        .expect("role stats");
    eprintln!("{ok} calls, {failed} failed, {assumed} AssumeRole, {refreshes} refreshes");
    assert!(ok >= 1000, "thousands of calls ran: {ok}");
    assert_eq!(failed, 0, "no call failed across refreshes");
    assert_eq!(
        assumed as u64, refreshes,
        "one AssumeRole per refresh, not one per waiting call"
    );
    // 13 s of 6 s triples renewed before their last 3 s (a 1 s deadline plus the 2 s margin):
    // several refreshes, never one per call.
    assert!((3..=6).contains(&assumed), "{assumed} AssumeRole calls");
    // Every STS triple that signed a call was one the simulator issued.
    assert_eq!(sim.sts_issued(), assumed as u64);
}

#[tokio::test]
async fn an_sts_outage_is_ridden_out_until_expiry_then_unavailable() {
    let lifetime = Duration::from_secs(5);
    let (sim, h) = role_setup(lifetime, "").await;
    let profile = [("x-ack-profile", "role")];
    h.call(
        CS_SERVICE,
        "DescribeClustersV1",
        json!({}),
        &profile,
        Some(Duration::from_millis(500)),
    )
    .await
    .expect("first call assumes the role");
    sim.inject(Fault {
        operation: Some("AssumeRole".into()),
        status: 503,
        code: "ServiceUnavailable".into(),
        message: "STS is down".into(),
        times: 10_000,
        delay_ms: 0,
        headers: Default::default(),
        ..Default::default()
    });
    // The triple still has ~5 s; calls needing 0.5 s + margin keep working for a while.
    let until = Instant::now() + Duration::from_millis(1500);
    let mut during = 0;
    while Instant::now() < until {
        h.call(
            CS_SERVICE,
            "DescribeClustersV1",
            json!({}),
            &profile,
            Some(Duration::from_millis(500)),
        )
        .await
        .expect("calls keep working during the outage while the triple is valid");
        during += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(during > 5);
    // Once no triple is valid for the call, it fails clearly.
    let deadline = Instant::now() + Duration::from_secs(8);
    let err = loop {
        match h
            .call(
                CS_SERVICE,
                "DescribeClustersV1",
                json!({}),
                &profile,
                Some(Duration::from_millis(500)),
            )
            .await
        {
            Ok(_) => {
                assert!(
                    Instant::now() < deadline,
                    "the triple should have expired by now"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => break e,
        }
    };
    assert_eq!(err.code(), Code::Unavailable, "{}", err.message());
    assert!(
        err.message().contains("profile `role`") && err.message().contains("STS"),
        "{}",
        err.message()
    );
}

fn caller_toml(name: &str, token: &str, profiles: &str, operations: &str, broker: &str) -> String {
    format!(
        "[callers.{name}]\ntoken_sha256 = [\"{}\"]\nprofiles = {profiles}\noperations = {operations}\nbroker = {broker}\n",
        token_hash(token)
    )
}

#[tokio::test]
async fn callers_are_authenticated_and_denied_what_they_may_not_do() {
    let callers = caller_toml(
        "dashboard",
        "dash-token-123",
        r#"["root"]"#,
        r#"["Describe*"]"#,
        "[]",
    );
    let (sim2, enforced) = {
        let sim = simulator(SimulatorOptions::default()).await;
        let (id, secret) = sim.root_key();
        let text = format!(
            "[simulator]\nmode = \"never\"\n[auth]\nmode = \"enforce\"\n[endpoints]\ncs = \"{}\"\n[profiles.root]\ntype = \"access_key\"\naccess_key_id = \"{id}\"\naccess_key_secret = \"{}\"\nregion = \"cn-hangzhou\"\n[profiles.other]\ntype = \"access_key\"\naccess_key_id = \"{id}\"\naccess_key_secret = \"{}\"\nregion = \"cn-hangzhou\"\n{callers}",
            sim.endpoint(),
            secret.expose(),
            secret.expose()
        );
        let h = Harness::with_config(&text, env(&[])).await;
        (sim, h)
    };
    let auth = [
        ("authorization", "Bearer dash-token-123"),
        ("x-ack-profile", "root"),
    ];
    enforced
        .call(CS_SERVICE, "DescribeClustersV1", json!({}), &auth, None)
        .await
        .expect("allowed");

    let err = enforced
        .call(
            CS_SERVICE,
            "DeleteCluster",
            json!({"cluster_id": "c1"}),
            &auth,
            None,
        )
        .await
        .expect_err("operation denied");
    assert_eq!(err.code(), Code::PermissionDenied);
    for part in ["dashboard", "root", "DeleteCluster"] {
        assert!(err.message().contains(part), "{}", err.message());
    }
    let other = [
        ("authorization", "Bearer dash-token-123"),
        ("x-ack-profile", "other"),
    ];
    let err = enforced
        .call(CS_SERVICE, "DescribeClustersV1", json!({}), &other, None)
        .await
        .expect_err("profile denied");
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("other"));

    let err = enforced
        .call(CS_SERVICE, "DescribeClustersV1", json!({}), &[], None)
        .await
        .expect_err("no token");
    assert_eq!(err.code(), Code::Unauthenticated);
    let bad = [("authorization", "Bearer wrong-token")];
    let err = enforced
        .call(CS_SERVICE, "DescribeClustersV1", json!({}), &bad, None)
        .await
        .expect_err("bad token");
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(
        !err.message().contains("wrong-token"),
        "the token is not echoed"
    );
    assert_eq!(
        sim2.count("DeleteCluster"),
        0,
        "denied calls never reach the upstream"
    );
}

#[tokio::test]
async fn the_broker_issues_narrowed_triples_over_grpc_and_the_credentials_uri() {
    let callers = caller_toml("ci", "ci-token-456", "[]", "[]", r#"["role"]"#)
        + &caller_toml(
            "reader",
            "reader-token-789",
            r#"["root"]"#,
            r#"["Describe*"]"#,
            "[]",
        );
    let sim = simulator(SimulatorOptions::default()).await;
    let (id, secret) = sim.root_key();
    let text = format!(
        "[simulator]\nmode = \"never\"\n[auth]\nmode = \"enforce\"\n[broker]\nlisten = \"127.0.0.1:0\"\nmax_duration = \"30m\"\n[endpoints]\ncs = \"{ep}\"\nsts = \"{ep}\"\n[profiles.root]\ntype = \"access_key\"\naccess_key_id = \"{id}\"\naccess_key_secret = \"{}\"\nregion = \"cn-hangzhou\"\n[profiles.role]\ntype = \"ram_role_arn\"\nsource_profile = \"root\"\nrole_arn = \"{ROLE_ARN}\"\nregion = \"cn-hangzhou\"\n{callers}",
        secret.expose(),
        ep = sim.endpoint(),
    );
    let h = Harness::with_config(&text, env(&[])).await;

    // gRPC: issued, narrowed by a policy and a shorter duration.
    let mut client =
        ack_gateway::proto::gateway::credential_broker_service_client::CredentialBrokerServiceClient::new(
            h.channel.clone(),
        );
    let mut req = tonic::Request::new(ack_gateway::proto::gateway::IssueCredentialRequest {
        profile: "role".into(),
        duration_seconds: Some(900),
        policy: Some(r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":["cs:Describe*"],"Resource":["*"]}]}"#.into()),
    });
    req.metadata_mut()
        .insert("authorization", "Bearer ci-token-456".parse().expect("v"));
    let issued = client
        .issue_credential(req)
        .await
        .expect("issued")
        .into_inner();
    assert!(issued.access_key_id.starts_with("STS."));
    assert!(!issued.security_token.is_empty());
    let assume = sim.requests_for("AssumeRole");
    let last = &assume.last().expect("assumed").query;
    assert!(last.contains(&("DurationSeconds".to_string(), "900".to_string())));
    assert!(last
        .iter()
        .any(|(k, v)| k == "Policy" && v.contains("cs:Describe*")));

    // The issued triple works against the API.
    let with_triple = Harness::with_config(
        "[simulator]\nmode = \"never\"\n[auth]\nmode = \"insecure_local\"\n",
        env(&[
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", &issued.access_key_id),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", &issued.access_key_secret),
            ("ALIBABA_CLOUD_SECURITY_TOKEN", &issued.security_token),
            ("ALIBABA_CLOUD_REGION_ID", "cn-hangzhou"),
            ("ACK_GATEWAY_CS_ENDPOINT", &sim.endpoint()),
        ]),
    )
    .await;
    with_triple
        .cs("DescribeClustersV1", json!({}))
        .await
        .expect("brokered triple accepted");

    // A caller without broker rights is refused.
    let mut req = tonic::Request::new(ack_gateway::proto::gateway::IssueCredentialRequest {
        profile: "role".into(),
        duration_seconds: None,
        policy: None,
    });
    req.metadata_mut().insert(
        "authorization",
        "Bearer reader-token-789".parse().expect("v"),
    );
    let err = client
        .issue_credential(req)
        .await
        .expect_err("not a broker");
    assert_eq!(err.code(), Code::PermissionDenied);

    // The credentials URI, read the way the official providers read it: GET, JSON with
    // AccessKeyId, AccessKeySecret, SecurityToken, Expiration (and Code = Success).
    let base = format!("http://{}", h.running.broker_addr.expect("broker listener"));
    let http = reqwest::Client::new();
    let v: serde_json::Value = http
        .get(format!("{base}/v1/credentials/role"))
        .header("authorization", "Bearer ci-token-456")
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(v["Code"], "Success");
    for k in [
        "AccessKeyId",
        "AccessKeySecret",
        "SecurityToken",
        "Expiration",
    ] {
        assert!(v[k].as_str().is_some_and(|s| !s.is_empty()), "{k} in {v}");
    }
    let before = sim.count("AssumeRole");
    let again: serde_json::Value = http
        .get(format!("{base}/v1/credentials/role?token=ci-token-456"))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(
        again["AccessKeyId"], v["AccessKeyId"],
        "polling providers reuse the triple"
    );
    assert_eq!(sim.count("AssumeRole"), before);
    let denied = http
        .get(format!("{base}/v1/credentials/role"))
        .header("authorization", "Bearer reader-token-789")
        .send()
        .await
        .expect("sent");
    assert_eq!(denied.status().as_u16(), 403);
    let anonymous = http
        .get(format!("{base}/v1/credentials/role"))
        .send()
        .await
        .expect("sent");
    assert_eq!(anonymous.status().as_u16(), 401);
}

#[tokio::test]
async fn a_hot_reload_adds_a_profile_without_a_restart() {
    let sim = simulator(SimulatorOptions::default()).await;
    let (id, secret) = sim.root_key();
    let dir = std::env::temp_dir().join(format!("ackgw-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("gateway.toml");
    let secret_file = dir.join("secret");
    std::fs::write(&secret_file, secret.expose()).expect("secret file");
    let base = format!(
        "[simulator]\nmode = \"never\"\n[auth]\nmode = \"insecure_local\"\n[endpoints]\ncs = \"{}\"\n[profiles.first]\ntype = \"access_key\"\naccess_key_id = \"{id}\"\naccess_key_secret = {{ file = \"{}\" }}\nregion = \"cn-hangzhou\"\n",
        sim.endpoint(),
        secret_file.display()
    );
    std::fs::write(&file, &base).expect("config");
    let mut config = ack_gateway::config::Config::load(Some(&base), &env(&[])).expect("valid");
    config.listen = "127.0.0.1:0".parse().expect("addr");
    config.source_file = Some(file.clone());
    config.reload_interval = Duration::from_millis(100);
    let running = ack_gateway::app::start(config).await.expect("starts");
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", running.addr))
        .expect("uri")
        .connect()
        .await
        .expect("connects");
    let second = [("x-ack-profile", "second")];
    let err = call(
        &channel,
        CS_SERVICE,
        "DescribeClustersV1",
        json!({}),
        &second,
        None,
    )
    .await
    .expect_err("not yet");
    assert_eq!(err.code(), Code::InvalidArgument);

    // Calls keep flowing on the first profile while the file changes.
    std::fs::write(
        &file,
        format!("{base}[profiles.second]\ntype = \"access_key\"\naccess_key_id = \"{id}\"\naccess_key_secret = {{ file = \"{}\" }}\nregion = \"cn-beijing\"\n", secret_file.display()),
    )
    .expect("rewrite");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        call(
            &channel,
            CS_SERVICE,
            "DescribeClustersV1",
            json!({}),
            &[("x-ack-profile", "first")],
            None,
        )
        .await
        .expect("first keeps working");
        if call(
            &channel,
            CS_SERVICE,
            "DescribeClustersV1",
            json!({}),
            &second,
            None,
        )
        .await
        .is_ok()
        {
            break;
        }
        assert!(Instant::now() < deadline, "the reload took effect");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seen = sim.requests_for("DescribeClustersV1");
    assert_eq!(
        seen.last().expect("seen").headers["x-acs-region-id"],
        "cn-beijing"
    );

    // An invalid configuration is ignored.
    std::fs::write(&file, "this is = = not toml").expect("rewrite");
    tokio::time::sleep(Duration::from_millis(300)).await;
    call(
        &channel,
        CS_SERVICE,
        "DescribeClustersV1",
        json!({}),
        &second,
        None,
    )
    .await
    .expect("the last valid configuration stays");
    running.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn an_oidc_role_profile_gets_its_credentials_from_the_token_file() {
    let sim = simulator(SimulatorOptions::default()).await;
    let provider = "acs:ram::1000000000000001:oidc-provider/ack-rrsa-c1";
    sim.add_oidc_token(provider, "eyJhbGciOi.rrsa-token.sig", "1000000000000001");
    let dir = std::env::temp_dir().join(format!("ackgw-oidc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let token_file = dir.join("token");
    std::fs::write(&token_file, "eyJhbGciOi.rrsa-token.sig\n").expect("token");
    // The official RRSA environment variables define the `default` profile.
    let h = Harness::with_config(
        "[simulator]\nmode = \"never\"\n[auth]\nmode = \"insecure_local\"\n",
        env(&[
            ("ALIBABA_CLOUD_ROLE_ARN", ROLE_ARN),
            ("ALIBABA_CLOUD_OIDC_PROVIDER_ARN", provider),
            (
                "ALIBABA_CLOUD_OIDC_TOKEN_FILE",
                token_file.to_str().expect("utf8"),
            ),
            ("ALIBABA_CLOUD_REGION_ID", "cn-hangzhou"),
            ("ACK_GATEWAY_CS_ENDPOINT", &sim.endpoint()),
            ("ACK_GATEWAY_STS_ENDPOINT", &sim.endpoint()),
        ]),
    )
    .await;
    h.cs("DescribeClustersV1", json!({}))
        .await
        .expect("signed with the OIDC-assumed triple");
    h.cs("DescribeClustersV1", json!({}))
        .await
        .expect("and again, from the cache");
    assert_eq!(sim.sts_issued(), 1, "one AssumeRoleWithOIDC");
    let seen = sim.requests_for("DescribeClustersV1");
    assert!(seen[0].headers["x-acs-accesskey-id"].starts_with("STS."));

    // A token the provider did not issue is refused, clearly.
    std::fs::write(&token_file, "forged").expect("token");
    let forged = Harness::with_config(
        "[simulator]\nmode = \"never\"\n[auth]\nmode = \"insecure_local\"\n",
        env(&[
            ("ALIBABA_CLOUD_ROLE_ARN", ROLE_ARN),
            ("ALIBABA_CLOUD_OIDC_PROVIDER_ARN", provider),
            (
                "ALIBABA_CLOUD_OIDC_TOKEN_FILE",
                token_file.to_str().expect("utf8"),
            ),
            ("ALIBABA_CLOUD_REGION_ID", "cn-hangzhou"),
            ("ACK_GATEWAY_CS_ENDPOINT", &sim.endpoint()),
            ("ACK_GATEWAY_STS_ENDPOINT", &sim.endpoint()),
        ]),
    )
    .await;
    let err = forged
        .cs("DescribeClustersV1", json!({}))
        .await
        .expect_err("forged token");
    assert_eq!(err.code(), Code::Unavailable);
    assert!(err.message().contains("OIDCToken"), "{}", err.message());
    assert!(!err.message().contains("forged"), "the token is not echoed");
}

/// A direct STS AssumeRole hands out a credential, so it is held to the broker's rules: granted
/// by exact name (never by a wildcard), for a role the caller may broker (a ram_role_arn
/// profile of that role signed by the profile the call uses), no longer than `[broker]
/// max_duration`. Before the fix, a caller with `*` got 12-hour credentials of any role.
#[tokio::test]
async fn calling_sts_assume_role_is_held_to_the_brokers_rules() {
    let callers = caller_toml("ops", "ops-token-1", r#"["root"]"#, r#"["*"]"#, "[]")
        + "secret_operations = [\"*\"]\n"
        + &caller_toml(
            "platform",
            "platform-token-2",
            r#"["root"]"#,
            r#"["AssumeRole"]"#,
            r#"["role"]"#,
        )
        + &caller_toml(
            "wild",
            "wild-token-3",
            r#"["root"]"#,
            r#"["*"]"#,
            r#"["role"]"#,
        );
    let sim = simulator(SimulatorOptions::default()).await;
    let (id, secret) = sim.root_key();
    let text = format!(
        "[simulator]\nmode = \"never\"\n[auth]\nmode = \"enforce\"\n[broker]\nmax_duration = \"30m\"\n\
         [endpoints]\nsts = \"{}\"\n[profiles.root]\ntype = \"access_key\"\naccess_key_id = \"{id}\"\n\
         access_key_secret = \"{}\"\nregion = \"cn-hangzhou\"\n\
         [profiles.role]\ntype = \"ram_role_arn\"\nsource_profile = \"root\"\nrole_arn = \"{ROLE_ARN}\"\n\
         region = \"cn-hangzhou\"\n{callers}",
        sim.endpoint(),
        secret.expose()
    );
    let h = Harness::with_config(&text, env(&[])).await;
    let sts = "alibabacloud.sts.v20150401.Sts";
    let assume = |token: &'static str, req: serde_json::Value| {
        let h = &h;
        async move {
            let bearer = format!("Bearer {token}");
            h.call(
                sts,
                "AssumeRole",
                req,
                &[
                    ("authorization", bearer.as_str()),
                    ("x-ack-profile", "root"),
                ],
                None,
            )
            .await
        }
    };
    let req = json!({"role_arn": ROLE_ARN, "role_session_name": "x", "duration_seconds": 900});

    // `*` alone does not reach it; `*` with a secret grant and no broker right does not either.
    let err = assume("wild-token-3", req.clone())
        .await
        .expect_err("wildcard");
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("AssumeRole"), "{}", err.message());
    let err = assume("ops-token-1", req.clone())
        .await
        .expect_err("no broker right");
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("broker"), "{}", err.message());

    // A caller that may broker `role`: only that role, only within max_duration.
    let other_role = json!({"role_arn": "acs:ram::1:role/other", "role_session_name": "x", "duration_seconds": 900});
    let err = assume("platform-token-2", other_role)
        .await
        .expect_err("other role");
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(
        err.message().contains("acs:ram::1:role/other"),
        "{}",
        err.message()
    );
    for (duration, shown) in [(Some(43200), "43200"), (None, "3600")] {
        let mut long = json!({"role_arn": ROLE_ARN, "role_session_name": "x"});
        if let Some(d) = duration {
            long["duration_seconds"] = json!(d);
        }
        let err = assume("platform-token-2", long)
            .await
            .expect_err("too long");
        assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());
        assert!(
            err.message().contains("duration_seconds") && err.message().contains(shown),
            "{}",
            err.message()
        );
    }
    assert_eq!(sim.count("AssumeRole"), 0, "nothing refused was sent");
    assume("platform-token-2", req).await.expect("a broker may");
    assert_eq!(sim.count("AssumeRole"), 1);
}
