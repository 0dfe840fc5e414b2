//! The simulator verifies signatures the way the cloud does: the clock window, nonce replay,
//! Content-MD5, unknown keys. Requests are signed here with the project's signer and sent with
//! a plain HTTP client.

use crate::support::*;
use ack_gateway::secret::Secret;
use ack_gateway::signer::{roa, SigningKey};
use ack_gateway::simulator::SimulatorOptions;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

struct Signed {
    headers: BTreeMap<String, String>,
}

fn sign(
    key: &SigningKey,
    method: &str,
    path: &str,
    date: SystemTime,
    nonce: &str,
    body: Option<&[u8]>,
) -> Signed {
    let date = httpdate::fmt_http_date(date);
    let no_extra = BTreeMap::new();
    let borrowed = roa::base_headers(
        "2015-12-15",
        "cn-hangzhou",
        &date,
        nonce,
        body,
        key,
        &no_extra,
    );
    let auth = roa::authorization(
        &roa::RoaRequest {
            method,
            path,
            query: &[],
            headers: &borrowed,
        },
        key,
    );
    let mut headers: BTreeMap<String, String> = borrowed
        .into_iter()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    headers.insert("authorization".into(), auth);
    Signed { headers }
}

async fn send(
    base: &str,
    method: reqwest::Method,
    path: &str,
    s: &Signed,
    body: Option<&[u8]>,
) -> (u16, serde_json::Value) {
    let mut req = reqwest::Client::new().request(method, format!("{base}{path}"));
    for (k, v) in &s.headers {
        req = req.header(k, v);
    }
    if let Some(b) = body {
        req = req.body(b.to_vec());
    }
    let resp = req.send().await.expect("sent");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or_default())
}

async fn setup() -> (ack_gateway::simulator::Simulator, SigningKey) {
    let sim = simulator(SimulatorOptions::default()).await;
    let (id, secret) = sim.root_key();
    let key = SigningKey::new(id, secret, None);
    (sim, key)
}

#[tokio::test]
async fn a_correct_signature_is_accepted_once_per_nonce() {
    let (sim, key) = setup().await;
    let s = sign(
        &key,
        "GET",
        "/api/v1/clusters",
        SystemTime::now(),
        "nonce-a",
        None,
    );
    let (status, _) = send(
        &sim.endpoint(),
        reqwest::Method::GET,
        "/api/v1/clusters",
        &s,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = send(
        &sim.endpoint(),
        reqwest::Method::GET,
        "/api/v1/clusters",
        &s,
        None,
    )
    .await;
    assert_eq!(status, 400, "a replayed nonce is refused");
    assert_eq!(body["code"], "SignatureNonceUsed");
}

#[tokio::test]
async fn a_date_more_than_fifteen_minutes_off_is_refused() {
    let (sim, key) = setup().await;
    for offset in [Duration::from_secs(16 * 60)] {
        let past = sign(
            &key,
            "GET",
            "/api/v1/clusters",
            SystemTime::now() - offset,
            "n-past",
            None,
        );
        let (status, body) = send(
            &sim.endpoint(),
            reqwest::Method::GET,
            "/api/v1/clusters",
            &past,
            None,
        )
        .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("InvalidTimeStamp.Expired"))
        );
        let future = sign(
            &key,
            "GET",
            "/api/v1/clusters",
            SystemTime::now() + offset,
            "n-future",
            None,
        );
        let (status, _) = send(
            &sim.endpoint(),
            reqwest::Method::GET,
            "/api/v1/clusters",
            &future,
            None,
        )
        .await;
        assert_eq!(status, 400);
    }
    let near = sign(
        &key,
        "GET",
        "/api/v1/clusters",
        SystemTime::now() - Duration::from_secs(14 * 60),
        "n-near",
        None,
    );
    let (status, _) = send(
        &sim.endpoint(),
        reqwest::Method::GET,
        "/api/v1/clusters",
        &near,
        None,
    )
    .await;
    assert_eq!(status, 200, "within the window is fine");
}

#[tokio::test]
async fn wrong_secret_tampered_body_and_unknown_key_are_refused() {
    let (sim, key) = setup().await;
    let wrong = SigningKey::new(key.access_key_id(), Secret::new("wrong"), None);
    let s = sign(
        &wrong,
        "GET",
        "/api/v1/clusters",
        SystemTime::now(),
        "n1",
        None,
    );
    let (status, body) = send(
        &sim.endpoint(),
        reqwest::Method::GET,
        "/api/v1/clusters",
        &s,
        None,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("SignatureDoesNotMatch"))
    );

    let body_bytes = br#"{"name":"x","region_id":"cn-hangzhou"}"#;
    let s = sign(
        &key,
        "POST",
        "/clusters",
        SystemTime::now(),
        "n2",
        Some(body_bytes),
    );
    let tampered = br#"{"name":"y","region_id":"cn-hangzhou"}"#;
    let (status, body) = send(
        &sim.endpoint(),
        reqwest::Method::POST,
        "/clusters",
        &s,
        Some(tampered),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("InvalidContentMD5"))
    );

    let stranger = SigningKey::new("LTAIunknown", key.access_key_secret().clone(), None);
    let s = sign(
        &stranger,
        "GET",
        "/api/v1/clusters",
        SystemTime::now(),
        "n3",
        None,
    );
    let (status, body) = send(
        &sim.endpoint(),
        reqwest::Method::GET,
        "/api/v1/clusters",
        &s,
        None,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("InvalidAccessKeyId.NotFound"))
    );
}

#[tokio::test]
async fn health_checking_reports_serving() {
    let h = Harness::embedded().await;
    let mut client = tonic_health::pb::health_client::HealthClient::new(h.channel.clone());
    for service in [
        "",
        "alibabacloud.cs.v20151215.ContainerService",
        "alibabacloud.sts.v20150401.Sts",
    ] {
        let resp = client
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("health answers")
            .into_inner();
        assert_eq!(
            resp.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{service}"
        );
    }
}

#[tokio::test]
async fn shutdown_drains_calls_in_flight() {
    let h = Harness::embedded().await;
    h.sim().inject(ack_gateway::simulator::Fault {
        operation: Some("DescribeClustersV1".into()),
        status: 0,
        delay_ms: 500,
        times: 1,
        code: String::new(),
        message: String::new(),
        headers: Default::default(),
        ..Default::default()
    });
    let channel = h.channel.clone();
    let in_flight = tokio::spawn(async move {
        call(
            &channel,
            CS_SERVICE,
            "DescribeClustersV1",
            serde_json::json!({}),
            &[],
            None,
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let Harness { running, .. } = h;
    let shutdown = tokio::spawn(running.shutdown());
    let answer = in_flight.await.expect("joined");
    assert!(answer.is_ok(), "the in-flight call completed: {answer:?}");
    shutdown.await.expect("joined").expect("clean shutdown");
}
