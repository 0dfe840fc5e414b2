//! Cache, rate limits, retries and overload protection, over real sockets.

use crate::support::*;
use ack_gateway::simulator::{Fault, SimulatorOptions};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};
use tonic::Code;
use tonic_types::StatusExt;

fn fault(op: &str, status: u16, code: &str, times: usize, delay_ms: u64) -> Fault {
    Fault {
        operation: Some(op.into()),
        status,
        code: code.into(),
        message: format!("injected {code}"),
        times,
        delay_ms,
        headers: BTreeMap::new(),
        ..Default::default()
    }
}

/// Calls with the cache in use (no `cache-control`).
async fn cached(h: &Harness, op: &str, req: serde_json::Value, md: &[(&str, &str)]) -> Answer {
    call(&h.channel, CS_SERVICE, op, req, md, None).await
}

fn cache_state(md: &tonic::metadata::MetadataMap) -> &str {
    md.get("x-ack-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("none")
}

async fn cluster(h: &Harness, name: &str) -> String {
    let (c, _) = h
        .cs(
            "CreateCluster",
            json!({"name": name, "region_id": "cn-hangzhou"}),
        )
        .await
        .expect("created");
    c["cluster_id"].as_str().expect("id").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_identical_reads_reach_the_upstream_once() {
    let h = Harness::embedded().await;
    let id = cluster(&h, "coalesce").await;
    h.sim().clear_requests();
    h.sim()
        .inject(fault("DescribeClusterDetail", 0, "", 1, 300));
    let mut calls = Vec::new();
    for _ in 0..100 {
        let channel = h.channel.clone();
        let id = id.clone();
        calls.push(tokio::spawn(async move {
            call(
                &channel,
                CS_SERVICE,
                "DescribeClusterDetail",
                json!({"cluster_id": id}),
                &[],
                None,
            )
            .await
        }));
    }
    let mut states = HashMap::new();
    for c in calls {
        let (detail, md) = c.await.expect("joined").expect("answered");
        assert_eq!(detail["name"], "coalesce");
        *states.entry(cache_state(&md).to_string()).or_insert(0) += 1;
    }
    assert_eq!(
        h.sim().count("DescribeClusterDetail"),
        1,
        "100 identical calls, one upstream call: {states:?}"
    );
    tokio::time::sleep(Duration::from_millis(60)).await;
    let (_, md) = cached(&h, "DescribeClusterDetail", json!({"cluster_id": id}), &[])
        .await
        .expect("hit");
    assert_eq!(cache_state(&md), "hit");
    let age: u64 = md
        .get("x-ack-cache-age-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("age");
    assert!(
        (60..5_000).contains(&age),
        "the entry's age is reported: {age} ms"
    );
}

#[tokio::test]
async fn a_write_invalidates_the_reads_of_the_same_cluster_only() {
    let h = Harness::embedded().await;
    let a = cluster(&h, "a").await;
    let b = cluster(&h, "b").await;
    for id in [&a, &b] {
        cached(&h, "DescribeClusterDetail", json!({"cluster_id": id}), &[])
            .await
            .expect("miss");
    }
    cached(&h, "DescribeClustersV1", json!({}), &[])
        .await
        .expect("list miss");
    h.sim().clear_requests();
    let (_, md) = cached(&h, "DescribeClusterDetail", json!({"cluster_id": a}), &[])
        .await
        .expect("hit");
    assert_eq!(cache_state(&md), "hit");

    cached(
        &h,
        "ModifyCluster",
        json!({"cluster_id": a, "deletion_protection": true}),
        &[],
    )
    .await
    .expect("modified");
    let (detail, md) = cached(&h, "DescribeClusterDetail", json!({"cluster_id": a}), &[])
        .await
        .expect("fresh");
    assert_eq!(cache_state(&md), "miss", "the write made a's detail stale");
    assert_eq!(detail["cluster_id"], a.as_str());
    let (_, md) = cached(&h, "DescribeClusterDetail", json!({"cluster_id": b}), &[])
        .await
        .expect("still cached");
    assert_eq!(cache_state(&md), "hit", "b is untouched");

    // A cluster's write also makes the account's cluster list stale (it shows the cluster).
    let (_, md) = cached(&h, "DescribeClustersV1", json!({}), &[])
        .await
        .expect("list");
    assert_eq!(cache_state(&md), "miss");
    let (_, md) = cached(&h, "DescribeClustersV1", json!({}), &[])
        .await
        .expect("list");
    assert_eq!(cache_state(&md), "hit");
    cached(&h, "DeleteCluster", json!({"cluster_id": b}), &[])
        .await
        .expect("deleted");
    let (_, md) = cached(&h, "DescribeClustersV1", json!({}), &[])
        .await
        .expect("list");
    assert_eq!(cache_state(&md), "miss");
}

#[tokio::test]
async fn profiles_of_different_accounts_never_share_an_entry() {
    let sim = simulator(SimulatorOptions::default()).await;
    let (id, secret) = sim.root_key();
    sim.add_key("LTAIotheraccount", "other-secret", "2000000000000002");
    let toml = format!(
        "[simulator]\nmode = \"never\"\n[auth]\nmode = \"insecure_local\"\n[endpoints]\ncs = \"{}\"\n[profiles.one]\ntype = \"access_key\"\naccess_key_id = \"{id}\"\naccess_key_secret = \"{}\"\nregion = \"cn-hangzhou\"\n[profiles.two]\ntype = \"access_key\"\naccess_key_id = \"LTAIotheraccount\"\naccess_key_secret = \"other-secret\"\nregion = \"cn-hangzhou\"\n",
        sim.endpoint(),
        secret.expose()
    );
    let h = Harness::with_config(&toml, env(&[])).await;
    let (_, md1) = cached(
        &h,
        "DescribeClustersV1",
        json!({}),
        &[("x-ack-profile", "one")],
    )
    .await
    .expect("one");
    let (_, md2) = cached(
        &h,
        "DescribeClustersV1",
        json!({}),
        &[("x-ack-profile", "two")],
    )
    .await
    .expect("two");
    assert_eq!((cache_state(&md1), cache_state(&md2)), ("miss", "miss"));
    assert_eq!(sim.count("DescribeClustersV1"), 2);
    let (_, md) = cached(
        &h,
        "DescribeClustersV1",
        json!({}),
        &[("x-ack-profile", "two")],
    )
    .await
    .expect("two again");
    assert_eq!(cache_state(&md), "hit");
}

#[tokio::test]
async fn kubeconfigs_are_never_cached_and_cache_control_is_honoured() {
    let h = Harness::embedded().await;
    let id = cluster(&h, "kube").await;
    for _ in 0..2 {
        let (_, md) = cached(
            &h,
            "DescribeClusterUserKubeconfig",
            json!({"cluster_id": id}),
            &[],
        )
        .await
        .expect("kubeconfig");
        assert_eq!(
            cache_state(&md),
            "none",
            "secret-bearing answers bypass the cache entirely"
        );
    }
    assert_eq!(h.sim().count("DescribeClusterUserKubeconfig"), 2);

    cached(&h, "DescribeClusterDetail", json!({"cluster_id": id}), &[])
        .await
        .expect("miss");
    let (_, md) = cached(
        &h,
        "DescribeClusterDetail",
        json!({"cluster_id": id}),
        &[("cache-control", "no-cache")],
    )
    .await
    .expect("bypass");
    assert_eq!(cache_state(&md), "bypass");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (_, md) = cached(
        &h,
        "DescribeClusterDetail",
        json!({"cluster_id": id}),
        &[("cache-control", "max-age=1")],
    )
    .await
    .expect("refetched");
    assert_eq!(
        cache_state(&md),
        "miss",
        "an entry older than max-age is not served"
    );
    let (_, md) = cached(
        &h,
        "DescribeClusterDetail",
        json!({"cluster_id": id}),
        &[("cache-control", "max-age=5")],
    )
    .await
    .expect("hit");
    assert_eq!(cache_state(&md), "hit");
}

#[tokio::test]
async fn a_caller_over_its_rate_gets_resource_exhausted_with_retry_info() {
    let h = Harness::with_config(
        "[simulator]\nmode = \"always\"\n[rate_limit]\ncaller = { rate = 1.0, burst = 2 }\nmax_wait = \"50ms\"\n",
        HashMap::new(),
    )
    .await;
    h.cs("DescribeClustersV1", json!({}))
        .await
        .expect("within the burst");
    h.cs("DescribeClustersV1", json!({}))
        .await
        .expect("within the burst");
    let err = h
        .cs("DescribeClustersV1", json!({}))
        .await
        .expect_err("over the rate");
    assert_eq!(err.code(), Code::ResourceExhausted);
    let retry = err
        .get_details_retry_info()
        .expect("RetryInfo")
        .retry_delay
        .expect("delay");
    assert!(
        retry > Duration::from_millis(500) && retry <= Duration::from_secs(1),
        "{retry:?}"
    );
}

#[tokio::test]
async fn throttled_and_unavailable_reads_are_retried_and_succeed() {
    let h = Harness::embedded().await;
    let mut throttle = fault("DescribeClustersV1", 400, "Throttling.User", 1, 0);
    throttle.headers.insert(
        "x-ratelimit-user-api".into(),
        "Limit:1,Remain:0,TimeLeft:150,Reset:1".into(),
    );
    h.sim().inject(throttle);
    let started = Instant::now();
    h.cs("DescribeClustersV1", json!({}))
        .await
        .expect("retried after throttling");
    assert!(
        started.elapsed() >= Duration::from_millis(140),
        "waited for TimeLeft"
    );
    assert_eq!(h.sim().count("DescribeClustersV1"), 2);

    h.sim().clear_requests();
    h.sim()
        .inject(fault("DescribeRegions", 503, "ServiceUnavailable", 2, 0));
    h.cs("DescribeRegions", json!({}))
        .await
        .expect("third attempt succeeds");
    let seen = h.sim().requests_for("DescribeRegions");
    assert_eq!(seen.len(), 3);
    let nonces: std::collections::HashSet<_> = seen
        .iter()
        .map(|r| r.headers["x-acs-signature-nonce"].clone())
        .collect();
    assert_eq!(nonces.len(), 3, "every attempt is signed afresh");
}

#[tokio::test]
async fn a_mutating_call_that_got_a_503_is_not_retried() {
    let h = Harness::embedded().await;
    let id = cluster(&h, "no-retry").await;
    h.sim().clear_requests();
    h.sim()
        .inject(fault("ModifyCluster", 503, "ServiceUnavailable", 5, 0));
    let err = h
        .cs(
            "ModifyCluster",
            json!({"cluster_id": id, "deletion_protection": true}),
        )
        .await
        .expect_err("503");
    assert_eq!(err.code(), Code::Unavailable);
    assert_eq!(
        h.sim().count("ModifyCluster"),
        1,
        "a mutation is never repeated once sent"
    );
}

#[tokio::test]
async fn the_deadline_bounds_all_retrying() {
    let h = Harness::with_config(
        "[simulator]\nmode = \"always\"\n[retry]\nmax_attempts = 50\nbase = \"100ms\"\nmax_backoff = \"400ms\"\n",
        HashMap::new(),
    )
    .await;
    h.sim()
        .inject(fault("DescribeRegions", 503, "ServiceUnavailable", 1000, 0));
    let started = Instant::now();
    let err = h
        .call(
            CS_SERVICE,
            "DescribeRegions",
            json!({}),
            &[],
            Some(Duration::from_millis(700)),
        )
        .await
        .expect_err("never succeeds");
    let elapsed = started.elapsed();
    assert!(
        matches!(err.code(), Code::Unavailable | Code::DeadlineExceeded),
        "{err:?}"
    );
    assert!(
        elapsed < Duration::from_millis(900),
        "retries stopped at the deadline: {elapsed:?}"
    );
    let attempts = h.sim().count("DescribeRegions");
    assert!(
        (2..50).contains(&attempts),
        "{attempts} attempts within the deadline"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_beyond_the_concurrency_bound_is_shed_with_unavailable() {
    let h = Harness::with_config(
        "[simulator]\nmode = \"always\"\n[limits]\nmax_concurrent_calls = 2\n",
        HashMap::new(),
    )
    .await;
    h.sim().inject(fault("DescribeRegions", 0, "", 2, 400));
    let mut calls = Vec::new();
    for _ in 0..2 {
        let channel = h.channel.clone();
        calls.push(tokio::spawn(async move {
            call(
                &channel,
                CS_SERVICE,
                "DescribeRegions",
                json!({}),
                &[("cache-control", "no-cache")],
                None,
            )
            .await
        }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let shed = h
        .cs("DescribeRegions", json!({}))
        .await
        .expect_err("over the bound");
    assert_eq!(shed.code(), Code::Unavailable);
    assert!(shed.message().contains("overloaded"), "{}", shed.message());
    for c in calls {
        c.await
            .expect("joined")
            .expect("the admitted calls complete");
    }
}

/// A redirect is never followed: the signed request was made for its own host and path.
#[tokio::test]
async fn an_upstream_redirect_is_not_followed() {
    let h = Harness::embedded().await;
    let id = cluster(&h, "redirected").await;
    let elsewhere = format!("{}/clusters", h.sim().endpoint());
    let mut redirect = fault("DescribeClusterDetail", 302, "", 1, 0);
    redirect.headers.insert("location".into(), elsewhere);
    h.sim().clear_requests();
    h.sim().inject(redirect);
    let err = h
        .call(
            CS_SERVICE,
            "DescribeClusterDetail",
            json!({"cluster_id": id}),
            &[("cache-control", "no-cache")],
            None,
        )
        .await
        .expect_err("a redirect is an error");
    assert_eq!(err.code(), Code::Internal, "{err:?}");
    assert_eq!(h.sim().requests_for("DescribeClusterDetail").len(), 1);
    assert!(
        h.sim().requests_for("DescribeClustersV1").is_empty()
            && h.sim().requests_for("DescribeClusters").is_empty(),
        "the Location was not requested"
    );
}

/// The cloud's `x-acs-retry-after` (milliseconds): a retry is not sent before it, the account's
/// budget slows down, and a final error carries it as `RetryInfo`.
#[tokio::test]
async fn the_clouds_retry_after_hint_paces_retries_and_reaches_retry_info() {
    let h = Harness::embedded().await;
    let hinted = |op: &str, times: usize| {
        let mut f = fault(op, 503, "ServiceUnavailable", times, 0);
        f.headers.insert("x-acs-retry-after".into(), "400".into());
        f
    };
    // A read: retried once the hint has passed (the default backoff alone is under 100 ms).
    h.sim().inject(hinted("DescribeClustersV1", 1));
    let started = Instant::now();
    h.cs("DescribeClustersV1", json!({}))
        .await
        .expect("retried after the hint");
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "the retry waited for the hint: {:?}",
        started.elapsed()
    );
    assert_eq!(h.sim().requests_for("DescribeClustersV1").len(), 2);
    // A write is not retried; its error says when to come back.
    h.sim().inject(hinted("CreateCluster", 1));
    let err = h
        .cs(
            "CreateCluster",
            json!({"name": "hinted", "region_id": "cn-hangzhou"}),
        )
        .await
        .expect_err("refused");
    assert_eq!(err.code(), Code::Unavailable);
    let retry = err
        .get_details_retry_info()
        .expect("RetryInfo from the hint")
        .retry_delay
        .expect("delay");
    assert_eq!(retry, Duration::from_millis(400));
    assert_eq!(h.sim().requests_for("CreateCluster").len(), 1);
}
