//! A full scenario with known secrets at the most verbose log level, traced: no captured log
//! line, span attribute, metric or error message contains a secret, a token or a signature.

use crate::credentials::ROLE_ARN;
use crate::support::*;
use ack_gateway::access::token_hash;
use ack_gateway::simulator::{Fault, SimulatorOptions};
use serde_json::json;
use std::io::Write;
use std::sync::{Arc, Mutex};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;

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
    use opentelemetry::trace::TracerProvider as _;
    let capture = Capture::default();
    let exporter = opentelemetry_sdk::trace::InMemorySpanExporter::default();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(capture.clone())
                .with_ansi(false),
        )
        .with(ack_gateway::telemetry::span_layer(provider.tracer("test")));
    let _guard = scoped_subscriber(subscriber);

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
secret_operations = ["*"]
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
        ..Default::default()
    });
    errors.push(
        run("DescribeClustersV1", json!({}), "root")
            .await
            .expect_err("fails")
            .message()
            .to_string(),
    );
    // The cloud quoting the call's own credential encoded, or in part: percent-encoded,
    // base64 (standard, URL-safe), hex, a 12-character piece.
    let role_token = sim
        .issued_sts_credentials()
        .last()
        .map(|(_, _, t)| t.expose().to_string())
        .expect("the role's triple");
    for (profile, value) in [("root", secret.expose().to_string()), ("role", role_token)] {
        for form in encoded_forms(&value) {
            sim.inject(Fault {
                operation: Some("DescribeClustersV1".into()),
                status: 400,
                code: "SignatureDoesNotMatch".into(),
                message: format!("The request signed with {form} was refused."),
                times: 1,
                ..Default::default()
            });
            errors.push(
                run("DescribeClustersV1", json!({}), profile)
                    .await
                    .expect_err("fails")
                    .message()
                    .to_string(),
            );
        }
    }
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
        ack_gateway::proto::gateway::credential_broker_service_client::CredentialBrokerServiceClient::new(
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

    // ExplainCall with the role's STS triple: its answer shows the request, never the secret,
    // the token or the signature.
    let mut explain =
        ack_gateway::proto::gateway::explain_service_client::ExplainServiceClient::new(
            h.channel.clone(),
        );
    let mut fields = std::collections::BTreeMap::new();
    fields.insert(
        "cluster_id".to_string(),
        prost_types::Value {
            kind: Some(prost_types::value::Kind::StringValue(cluster_id.clone())),
        },
    );
    let mut req = tonic::Request::new(ack_gateway::proto::gateway::ExplainCallRequest {
        operation: "DescribeClusterDetail".into(),
        request: Some(prost_types::Struct { fields }),
        profile: "role".into(),
        ..Default::default()
    });
    req.metadata_mut()
        .insert("authorization", bearer.parse().expect("v"));
    let explained = explain
        .explain_call(req)
        .await
        .expect("explained")
        .into_inner();
    assert!(explained
        .string_to_sign
        .contains("x-acs-security-token:<redacted>"));
    errors.push(format!("{explained:?}"));

    let (status, _, metrics) = crate::observability::admin_get(&h, "/metrics").await;
    assert_eq!(status, 200);
    let refreshes = crate::observability::parse_metrics(&metrics);
    assert!(
        refreshes
            .get(r#"ack_gateway_credential_refreshes_total{profile="role"}"#)
            .is_some_and(|n| *n >= 1.0),
        "the role's refresh is counted:\n{metrics}"
    );
    let (_, _, readiness) = crate::observability::admin_get(&h, "/readyz").await;

    provider.force_flush().expect("flushed");
    let spans = exporter.get_finished_spans().expect("spans");
    assert!(
        spans.iter().any(|s| s.name.ends_with("/CreateCluster")),
        "the scenario was traced"
    );
    // Everything a span carries, as text.
    let mut span_text = String::new();
    for s in &spans {
        span_text.push_str(&format!("{} {:?}\n", s.name, s.status));
        for kv in &s.attributes {
            span_text.push_str(&format!("{}={}\n", kv.key, kv.value));
        }
        for e in s.events.iter() {
            span_text.push_str(&format!("{} {:?}\n", e.name, e.attributes));
        }
    }
    assert!(span_text.contains("ack.caller=ops"), "{span_text}");

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
    assert!(
        logs.contains("trace_id="),
        "audit lines of traced calls carry the trace id"
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
        // The secret itself, and (for credentials, not the kubeconfig's text) every encoded
        // form and piece the scrubber withholds.
        let forms = if s.len() > 200 {
            vec![s.clone()]
        } else {
            encoded_forms(s)
        };
        for form in &forms {
            assert!(
                !logs.contains(form.as_str()),
                "a secret reached the logs: {}…",
                &s[..4]
            );
            for (what, text) in [
                ("a span", &span_text),
                ("the metrics", &metrics),
                ("readiness", &readiness),
            ] {
                assert!(
                    !text.contains(form.as_str()),
                    "a secret reached {what}: {}…",
                    &s[..4]
                );
            }
            for e in &errors {
                assert!(
                    !e.contains(form.as_str()),
                    "a secret reached an error message: {e}"
                );
            }
        }
    }
    // Signatures: no Authorization header value or RPC Signature parameter is logged or traced.
    for text in [&logs, &span_text] {
        assert!(
            !text.contains(&format!("acs {id}:")),
            "an Authorization header reached the logs or a span"
        );
        assert!(
            !text.contains("Signature="),
            "an RPC signature was recorded"
        );
    }
}

/// A secret as it is, and as an upstream message might quote it: percent-encoded, base64
/// (standard and URL-safe), hex, and its first and last 12 characters.
fn encoded_forms(s: &str) -> Vec<String> {
    use base64::Engine as _;
    let percent =
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string();
    let mut forms = vec![
        s.to_string(),
        base64::engine::general_purpose::STANDARD.encode(s),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s),
        s.bytes().map(|b| format!("{b:02x}")).collect(),
    ];
    if percent != s {
        forms.push(percent);
    }
    if s.len() >= 16 {
        forms.push(s[..12].to_string());
        forms.push(s[s.len() - 12..].to_string());
    }
    forms
}
