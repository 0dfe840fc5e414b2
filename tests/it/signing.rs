//! Signing against the simulator as the cloud checks it: V1 and V3, the diagnosis of a refused
//! signature (wrong secret, a request altered in flight), and a skewed upstream clock.

use crate::support::*;
use ack_gateway::secret::Secret;
use ack_gateway::simulator::SimulatorOptions;
use serde_json::json;
use std::collections::HashMap;
use std::net::SocketAddr;
use tonic::Code;
use tonic_types::StatusExt as _;

const VERSIONS: [&str; 2] = ["v1", "v3"];

/// A gateway whose `default` profile signs with `signature`, `secret` and `endpoint`.
async fn gateway(endpoint: &str, id: &str, secret: &str, signature: &str) -> Harness {
    Harness::with_config(
        &format!(
            "[simulator]\nmode = \"never\"\n[endpoints]\ncs = \"{endpoint}\"\n\
             [auth]\nmode = \"insecure_local\"\n[retry]\nmax_attempts = 1\n\
             [profiles.default]\ntype = \"access_key\"\naccess_key_id = \"{id}\"\n\
             access_key_secret = \"{secret}\"\nregion = \"cn-hangzhou\"\nsignature = \"{signature}\"\n"
        ),
        HashMap::new(),
    )
    .await
}

async fn metrics(h: &Harness) -> String {
    reqwest::get(format!("http://{}/metrics", h.running.admin_addr))
        .await
        .expect("scraped")
        .text()
        .await
        .expect("text")
}

fn diagnosis(status: &tonic::Status) -> Option<String> {
    status
        .get_details_error_info()
        .and_then(|i| i.metadata.get("diagnosis").cloned())
}

#[tokio::test]
async fn a_wrong_secret_is_diagnosed_as_such_for_both_signatures() {
    let sim = simulator(SimulatorOptions::default()).await;
    let (id, _) = sim.root_key();
    for version in VERSIONS {
        let h = gateway(&sim.endpoint(), &id, "not-the-secret-at-all", version).await;
        let err = h
            .cs("DescribeClustersV1", json!({}))
            .await
            .expect_err("refused");
        assert_eq!(err.code(), Code::Unauthenticated, "{version}: {err:?}");
        assert_eq!(
            diagnosis(&err).as_deref(),
            Some("secret_mismatch"),
            "{version}: {err:?}"
        );
        let message = err.message();
        assert!(message.contains("SignatureDoesNotMatch"), "{message}");
        assert!(
            message.contains("profile `default`") && message.contains(&id),
            "{message}"
        );
        assert!(!message.contains("not-the-secret-at-all"), "{message}");
        assert!(
            !message.contains("x-acs-signature-nonce"),
            "no echoed text: {message}"
        );
        let scraped = metrics(&h).await;
        assert!(
            scraped
                .contains("ack_gateway_signature_diagnoses_total{diagnosis=\"secret_mismatch\"} 1"),
            "{version}"
        );
        assert!(!scraped.contains("not-the-secret-at-all"));
    }
}

/// A proxy in front of the simulator that alters every request: sets `x-acs-region-id` to
/// another value and adds a query parameter.
async fn altering_proxy(upstream: SocketAddr) -> SocketAddr {
    let client = reqwest::Client::new();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let client = client.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, 1 << 20).await.expect("body");
            let query = parts
                .uri
                .query()
                .map_or("altered=1".to_string(), |q| format!("{q}&altered=1"));
            let url = format!("http://{upstream}{}?{query}", parts.uri.path());
            let mut headers = parts.headers.clone();
            headers.remove("host");
            if headers.contains_key("x-acs-region-id") {
                headers.insert("x-acs-region-id", "cn-elsewhere".parse().expect("value"));
            }
            let resp = client
                .request(parts.method, url)
                .headers(headers)
                .body(body)
                .send()
                .await
                .expect("forwarded");
            let status = resp.status();
            let headers = resp.headers().clone();
            let body = resp.bytes().await.expect("answer");
            let mut out = axum::response::Response::new(axum::body::Body::from(body));
            *out.status_mut() = status;
            *out.headers_mut() = headers;
            out
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test]
async fn a_request_altered_in_flight_is_diagnosed_naming_the_part() {
    let sim = simulator(SimulatorOptions::default()).await;
    let (id, secret) = sim.root_key();
    let proxy = altering_proxy(sim.addr()).await;
    for (version, part) in [
        ("v1", "the value of the header `x-acs-region-id`"),
        ("v3", "the query parameter `altered`"),
    ] {
        let h = gateway(&format!("http://{proxy}"), &id, secret.expose(), version).await;
        let err = h
            .cs("DescribeClustersV1", json!({}))
            .await
            .expect_err("refused");
        assert_eq!(err.code(), Code::Unauthenticated, "{version}: {err:?}");
        assert_eq!(
            diagnosis(&err).as_deref(),
            Some("canonicalization_mismatch"),
            "{version}: {err:?}"
        );
        assert!(err.message().contains(part), "{version}: {}", err.message());
        assert!(!err.message().contains(secret.expose()));
        assert!(
            !err.message().contains("cn-elsewhere"),
            "no value: {}",
            err.message()
        );
    }
}

#[tokio::test]
async fn an_upstream_twenty_minutes_ahead_is_followed_and_a_mutation_runs_once() {
    for version in VERSIONS {
        let sim = simulator(SimulatorOptions {
            clock_skew_seconds: 20 * 60,
            ..SimulatorOptions::default()
        })
        .await;
        let (id, secret) = sim.root_key();
        let h = gateway(&sim.endpoint(), &id, secret.expose(), version).await;
        // The very first call is a mutation: its time is refused, the clock corrected from
        // that answer, and the request sent once more.
        let (created, _) = h
            .cs(
                "CreateCluster",
                json!({"name": "skewed", "region_id": "cn-hangzhou"}),
            )
            .await
            .unwrap_or_else(|e| panic!("{version}: {e:?}"));
        assert!(created["cluster_id"].is_string());
        let attempts = sim.requests_for("CreateCluster");
        let executed: Vec<_> = attempts.iter().filter(|r| r.status == 200).collect();
        assert_eq!(executed.len(), 1, "{version}: executed exactly once");
        assert_eq!(
            attempts.len(),
            2,
            "{version}: refused once for its time, then sent again"
        );
        assert!(attempts[0].response.contains("InvalidTimeStamp.Expired"));
        // Reads now go through at the first attempt.
        sim.clear_requests();
        h.cs("DescribeClustersV1", json!({}))
            .await
            .expect("read with the corrected clock");
        assert_eq!(sim.requests().len(), 1);
        let (clusters, _) = h.cs("DescribeClustersV1", json!({})).await.expect("listed");
        assert_eq!(
            clusters["clusters"].as_array().map(Vec::len),
            Some(1),
            "{version}: {clusters}"
        );
        let scraped = metrics(&h).await;
        let offset: f64 = scraped
            .lines()
            .find_map(|l| l.strip_prefix("ack_gateway_upstream_clock_offset_seconds "))
            .and_then(|v| v.trim().parse().ok())
            .expect("offset gauge");
        assert!((offset - 1200.0).abs() < 5.0, "{version}: offset {offset}");
    }
}

/// Alters a request's headers or `Authorization` after signing.
type Tamper = dyn Fn(&mut Vec<(String, String)>, &mut String);

#[tokio::test]
async fn the_simulator_verifies_v3_as_the_cloud_does() {
    use ack_gateway::signer::{v3, SigningKey};
    let sim = simulator(SimulatorOptions::default()).await;
    let (id, secret) = sim.root_key();
    let key = SigningKey::new(id.clone(), Secret::new(secret.expose()), None);
    let host = sim.addr().to_string();
    let now = time::OffsetDateTime::now_utc();
    let date = |t: time::OffsetDateTime| {
        t.format(&time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
        ))
        .expect("formats")
    };
    // Sends DescribeClustersV1 signed V3, after `tamper` has had its way with the headers.
    let send = |nonce: &str, at: time::OffsetDateTime, tamper: &Tamper| {
        let mut headers = v3::base_headers(
            v3::HeaderInputs {
                host: &host,
                action: "DescribeClustersV1",
                version: "2015-12-15",
                date: &date(at),
                nonce,
                body: None,
            },
            &key,
            &Default::default(),
        );
        let signed = v3::sign(
            &v3::V3Request {
                method: "GET",
                path: "/api/v1/clusters",
                query: &[],
                headers: &headers,
            },
            &key,
        );
        let mut authorization = signed.authorization;
        tamper(&mut headers, &mut authorization);
        let mut req = reqwest::Client::new()
            .get(format!("http://{host}/api/v1/clusters"))
            .header("authorization", authorization);
        for (k, v) in &headers {
            req = req.header(k.as_str(), v.as_str());
        }
        async move {
            let resp = req.send().await.expect("answered");
            let status = resp.status().as_u16();
            let body: serde_json::Value = resp.json().await.expect("json");
            (
                status,
                body["code"].as_str().unwrap_or_default().to_string(),
            )
        }
    };
    let none = |_: &mut Vec<(String, String)>, _: &mut String| {};
    assert_eq!(send("n-1", now, &none).await.0, 200);
    assert_eq!(send("n-1", now, &none).await.1, "SignatureNonceUsed");
    assert_eq!(
        send("n-2", now - time::Duration::minutes(16), &none)
            .await
            .1,
        "InvalidTimeStamp.Expired"
    );
    let unsigned_header = |h: &mut Vec<(String, String)>, _: &mut String| {
        h.push(("x-acs-resourcegroupid".into(), "rg-1".into()));
    };
    assert_eq!(
        send("n-3", now, &unsigned_header).await.1,
        "IncompleteSignature"
    );
    let wrong_hash = |h: &mut Vec<(String, String)>, _: &mut String| {
        for (k, v) in h.iter_mut() {
            if k == "x-acs-content-sha256" {
                *v = v3::sha256_hex(b"something else");
            }
        }
    };
    assert_eq!(send("n-4", now, &wrong_hash).await.0, 400);
    let bad_signature = |_: &mut Vec<(String, String)>, a: &mut String| {
        *a = a.replace("Signature=", "Signature=00");
    };
    assert_eq!(
        send("n-5", now, &bad_signature).await.1,
        "SignatureDoesNotMatch"
    );
}

fn struct_of(json: serde_json::Value) -> prost_types::Struct {
    fn value(v: serde_json::Value) -> prost_types::Value {
        use prost_types::value::Kind;
        let kind = match v {
            serde_json::Value::Null => Kind::NullValue(0),
            serde_json::Value::Bool(b) => Kind::BoolValue(b),
            serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
            serde_json::Value::String(s) => Kind::StringValue(s),
            serde_json::Value::Array(a) => Kind::ListValue(prost_types::ListValue {
                values: a.into_iter().map(value).collect(),
            }),
            serde_json::Value::Object(_) => Kind::StructValue(struct_of(v)),
        };
        prost_types::Value { kind: Some(kind) }
    }
    match json {
        serde_json::Value::Object(m) => prost_types::Struct {
            fields: m.into_iter().map(|(k, v)| (k, value(v))).collect(),
        },
        _ => prost_types::Struct::default(),
    }
}

async fn explain(
    h: &Harness,
    operation: &str,
    request: serde_json::Value,
    token: Option<&str>,
) -> Result<ack_gateway::proto::gateway::ExplainCallResponse, tonic::Status> {
    use ack_gateway::proto::gateway::explain_service_client::ExplainServiceClient;
    let mut req = tonic::Request::new(ack_gateway::proto::gateway::ExplainCallRequest {
        operation: operation.into(),
        request: Some(struct_of(request)),
        ..Default::default()
    });
    if let Some(t) = token {
        req.metadata_mut().insert(
            "authorization",
            format!("Bearer {t}").parse().expect("value"),
        );
    }
    ExplainServiceClient::new(h.channel.clone())
        .explain_call(req)
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn explain_call_sends_nothing_and_its_request_signs_like_a_real_call() {
    use ack_gateway::signer::{hmac_sha1_base64, v3, SigningKey};
    let sim = simulator(SimulatorOptions::default()).await;
    let (id, secret) = sim.root_key();
    for version in VERSIONS {
        let h = gateway(&sim.endpoint(), &id, secret.expose(), version).await;
        sim.clear_requests();
        let request =
            json!({"name": "web prod", "cluster_type": "ManagedKubernetes", "page_size": 20});
        let explained = explain(&h, "DescribeClustersV1", request.clone(), None)
            .await
            .unwrap_or_else(|e| panic!("{version}: {e:?}"));
        assert!(
            sim.requests().is_empty(),
            "{version}: ExplainCall sends nothing"
        );
        assert_eq!(explained.signature_version, version);
        assert_eq!(explained.method, "GET");
        assert_eq!(explained.service, CS_SERVICE);
        assert_eq!(explained.region, "cn-hangzhou");
        assert_eq!(explained.canonical_request.is_empty(), version == "v1");
        let shown = format!("{explained:?}");
        assert!(!shown.contains(secret.expose()), "{version}: no secret");
        let authorization = explained
            .headers
            .iter()
            .find(|h| h.name == "authorization")
            .expect("authorization")
            .value
            .clone();
        assert!(authorization.ends_with("<redacted>"), "{authorization}");

        // Signed by hand over what it explains, the request is what the simulator accepts.
        let signature = match version {
            "v1" => hmac_sha1_base64(
                secret.expose().as_bytes(),
                explained.string_to_sign.as_bytes(),
            ),
            _ => v3::signature(
                &explained.string_to_sign,
                &SigningKey::new(id.clone(), Secret::new(secret.expose()), None),
            ),
        };
        let mut send = reqwest::Client::new().get(&explained.url);
        for header in &explained.headers {
            let value = match header.name.as_str() {
                "authorization" => authorization.replace("<redacted>", &signature),
                _ => header.value.clone(),
            };
            if header.name != "host" {
                send = send.header(header.name.as_str(), value);
            }
        }
        let resp = send.send().await.expect("answered");
        assert_eq!(
            resp.status().as_u16(),
            200,
            "{version}: {}",
            resp.text().await.unwrap_or_default()
        );
        let by_hand = sim.requests();
        assert_eq!(by_hand.len(), 1);

        // A real call sends the same path and query.
        h.cs("DescribeClustersV1", request)
            .await
            .expect("real call");
        let all = sim.requests();
        let real = all.last().expect("recorded");
        assert_eq!(real.raw_path, by_hand[0].raw_path, "{version}");
        assert_eq!(real.query, by_hand[0].query, "{version}");
    }
}

#[tokio::test]
async fn explain_call_needs_the_right_to_the_operation() {
    let sim = simulator(SimulatorOptions::default()).await;
    let (id, secret) = sim.root_key();
    let h = Harness::with_config(
        &format!(
            "[simulator]\nmode = \"never\"\n[auth]\nmode = \"enforce\"\n[endpoints]\ncs = \"{}\"\n\
             [profiles.default]\ntype = \"access_key\"\naccess_key_id = \"{id}\"\n\
             access_key_secret = \"{}\"\nregion = \"cn-hangzhou\"\n\
             [callers.reader]\ntoken_sha256 = [\"{}\"]\nprofiles = [\"*\"]\noperations = [\"Describe*\"]\n",
            sim.endpoint(),
            secret.expose(),
            ack_gateway::access::token_hash("reader-token")
        ),
        HashMap::new(),
    )
    .await;
    explain(&h, "DescribeClustersV1", json!({}), Some("reader-token"))
        .await
        .expect("allowed");
    let denied = explain(
        &h,
        "CreateCluster",
        json!({"name": "x"}),
        Some("reader-token"),
    )
    .await
    .expect_err("denied");
    assert_eq!(denied.code(), Code::PermissionDenied);
    let anonymous = explain(&h, "DescribeClustersV1", json!({}), None)
        .await
        .expect_err("unauthenticated");
    assert_eq!(anonymous.code(), Code::Unauthenticated);
    let unknown = explain(&h, "NoSuchThing", json!({}), Some("reader-token"))
        .await
        .expect_err("unknown");
    assert_eq!(unknown.code(), Code::InvalidArgument);
    let bad = explain(&h, "DescribeClusterDetail", json!({}), Some("reader-token"))
        .await
        .expect_err("missing path parameter");
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("cluster_id"), "{}", bad.message());
    assert!(sim.requests().is_empty(), "nothing was sent");
}
