//! A full scenario with known secrets at the most verbose log level: no captured log line and no
//! error message contains a secret, a token or a signature.

use crate::credentials::ROLE_ARN;
use crate::support::*;
use ack_gateway::access::token_hash;
use ack_gateway::simulator::{Fault, SimulatorOptions};
use serde_json::json;
use std::io::Write;
use std::sync::{Arc, Mutex};
use tracing_subscriber::fmt::MakeWriter;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("capture lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

const TOKEN: &str = "caller-bearer-token-0123456789";
const PASSWORD: &str = "NodePassw0rd!-never-logged";

// A current-thread runtime: every task of the gateway and the simulator runs on this thread,
// under the capturing subscriber.
#[tokio::test(flavor = "current_thread")]
async fn no_secret_reaches_a_log_line_or_an_error_at_trace_level() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(capture.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let sim = simulator(SimulatorOptions::default()).await;
    let (id, secret) = sim.root_key();
    let toml = format!(
        r#"
[simulator]
mode = "never"
[auth]
mode = "enforce"
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
region = "cn-hangzhou"
[profiles.wrong]
type = "access_key"
access_key_id = "{id}"
access_key_secret = "definitely-the-wrong-secret"
region = "cn-hangzhou"
[callers.ops]
token_sha256 = ["{hash}"]
profiles = ["*"]
operations = ["*"]
broker = ["role"]
"#,
        ep = sim.endpoint(),
        secret = secret.expose(),
        hash = token_hash(TOKEN),
    );
    let h = Harness::with_config(&toml, env(&[])).await;
    let bearer = format!("Bearer {TOKEN}");
    let mut errors = Vec::new();
    let md = |profile: &'static str| {
        vec![
            ("authorization", bearer.clone()),
            ("x-ack-profile", profile.to_string()),
        ]
    };
    let run = |op: &'static str, req: serde_json::Value, profile: &'static str| {
        let md = md(profile);
        let channel = h.channel.clone();
        async move {
            let md: Vec<(&str, &str)> = md.iter().map(|(k, v)| (*k, v.as_str())).collect();
            call(&channel, CS_SERVICE, op, req, &md, None).await
        }
    };

    let (created, _) = run(
        "CreateCluster",
        json!({"name": "secret-scan", "region_id": "cn-hangzhou", "login_password": PASSWORD}),
        "role",
    )
    .await
    .expect("created");
    let cluster_id = created["cluster_id"].as_str().expect("id").to_string();
    run(
        "DescribeClusterDetail",
        json!({"cluster_id": cluster_id}),
        "role",
    )
    .await
    .expect("detail");
    let (kubeconfig, _) = run(
        "DescribeClusterUserKubeconfig",
        json!({"cluster_id": cluster_id}),
        "root",
    )
    .await
    .expect("kubeconfig");
    let kube_text = kubeconfig["config"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    for (op, req, profile) in [
        (
            "DescribeClusterDetail",
            json!({"cluster_id": "c-missing"}),
            "root",
        ),
        ("DescribeClustersV1", json!({}), "wrong"),
    ] {
        errors.push(
            run(op, req, profile)
                .await
                .expect_err("fails")
                .message()
                .to_string(),
        );
    }
    sim.inject(Fault {
        operation: Some("DescribeClustersV1".into()),
        status: 400,
        code: "InvalidSecurityToken.Expired".into(),
        message: format!(
            "token {} is expired; server string to sign is: GET\n...",
            secret.expose()
        ),
        times: 1,
        delay_ms: 0,
        headers: Default::default(),
    });
    errors.push(
        run("DescribeClustersV1", json!({}), "root")
            .await
            .expect_err("fails")
            .message()
            .to_string(),
    );
    let wrong_token = [("authorization", "Bearer not-the-token-at-all")];
    errors.push(
        call(
            &h.channel,
            CS_SERVICE,
            "DescribeClustersV1",
            json!({}),
            &wrong_token,
            None,
        )
        .await
        .expect_err("unauthenticated")
        .message()
        .to_string(),
    );

    let mut broker =
        ack_gateway::proto::gateway::credential_broker_client::CredentialBrokerClient::new(
            h.channel.clone(),
        );
    let mut req = tonic::Request::new(ack_gateway::proto::gateway::IssueCredentialRequest {
        profile: "role".into(),
        duration_seconds: Some(900),
        policy: None,
    });
    req.metadata_mut()
        .insert("authorization", bearer.parse().expect("v"));
    broker.issue_credential(req).await.expect("brokered");

    let logs = String::from_utf8(capture.0.lock().expect("capture").clone()).expect("utf8");
    assert!(
        logs.len() > 10_000,
        "trace logging captured the scenario ({} bytes)",
        logs.len()
    );
    assert!(
        logs.contains("operation=CreateCluster"),
        "audit lines are there"
    );

    let mut secrets: Vec<String> = vec![
        secret.expose().to_string(),
        "definitely-the-wrong-secret".into(),
        TOKEN.into(),
        PASSWORD.into(),
    ];
    if kube_text.len() > 16 {
        secrets.push(kube_text);
    }
    let issued = sim.issued_sts_credentials();
    assert!(
        issued.len() >= 2,
        "the role and the broker each got a triple"
    );
    for (_, s, t) in issued {
        secrets.push(s.expose().to_string());
        secrets.push(t.expose().to_string());
    }
    for s in &secrets {
        assert!(
            !logs.contains(s.as_str()),
            "a secret reached the logs: {}…",
            &s[..4]
        );
        for e in &errors {
            assert!(
                !e.contains(s.as_str()),
                "a secret reached an error message: {e}"
            );
        }
    }
    // Signatures: no Authorization header value or RPC Signature parameter is logged.
    assert!(
        !logs.contains(&format!("acs {id}:")),
        "an Authorization header reached the logs"
    );
    assert!(
        !logs.contains("Signature="),
        "an RPC signature reached the logs"
    );
}
