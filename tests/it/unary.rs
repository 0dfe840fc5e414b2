//! The first RPCs end to end through the gateway and the simulator, and the error mapping.

use crate::support::*;
use ack_gateway::simulator::{Fault, SimulatorOptions};
use serde_json::json;
use std::time::Duration;
use tonic::Code;
use tonic_types::StatusExt;

#[tokio::test]
async fn cluster_lifecycle_through_the_first_rpcs() {
    let h = Harness::embedded().await;

    let (created, md) = h
        .cs(
            "CreateCluster",
            json!({"name": "lifecycle", "region_id": "cn-hangzhou", "cluster_type": "ManagedKubernetes",
                   "kubernetes_version": "1.31.1-aliyun.1", "num_of_nodes": 2}),
        )
        .await
        .expect("created");
    let cluster_id = created["cluster_id"]
        .as_str()
        .expect("cluster id")
        .to_string();
    let task_id = created["task_id"].as_str().expect("task id").to_string();
    assert!(
        md.get("x-acs-request-id").is_some(),
        "request id returned as metadata"
    );
    assert_eq!(
        created["request_id"].as_str(),
        md.get("x-acs-request-id").and_then(|v| v.to_str().ok())
    );

    let (detail, _) = h
        .cs("DescribeClusterDetail", json!({"cluster_id": cluster_id}))
        .await
        .expect("detail");
    assert_eq!(detail["name"], "lifecycle");
    assert_eq!(detail["region_id"], "cn-hangzhou");

    let (list, _) = h
        .cs(
            "DescribeClustersV1",
            json!({"name": "lifecycle", "page_size": 10, "page_number": 1}),
        )
        .await
        .expect("list");
    assert_eq!(list["clusters"].as_array().map(Vec::len), Some(1));
    assert_eq!(list["page_info"]["total_count"], 1);

    assert_eq!(wait_task(&h, &task_id).await, "success");
    let (detail, _) = h
        .cs("DescribeClusterDetail", json!({"cluster_id": cluster_id}))
        .await
        .expect("detail");
    assert_eq!(detail["state"], "running");
    assert_eq!(detail["size"], 2);

    let (scaled, _) = h
        .cs(
            "ScaleOutCluster",
            json!({"cluster_id": cluster_id, "count": 1, "key_pair": "kp", "vswitch_ids": ["vsw-1"],
                   "worker_instance_types": ["ecs.c5.xlarge"], "worker_system_disk_category": "cloud_essd",
                   "worker_system_disk_size": 120}),
        )
        .await
        .expect("scaled");
    assert_eq!(
        wait_task(&h, scaled["task_id"].as_str().expect("task")).await,
        "success"
    );

    let (attached, _) = h
        .cs("AttachInstances", json!({"cluster_id": cluster_id, "instances": ["i-1", "i-2"], "password": "Hello1234!"}))
        .await
        .expect("attached");
    assert_eq!(attached["list"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        wait_task(&h, attached["task_id"].as_str().expect("task")).await,
        "success"
    );
    let (detail, _) = h
        .cs("DescribeClusterDetail", json!({"cluster_id": cluster_id}))
        .await
        .expect("detail");
    assert_eq!(detail["size"], 5);

    let (deleted, _) = h
        .cs("DeleteCluster", json!({"cluster_id": cluster_id}))
        .await
        .expect("deleted");
    assert_eq!(
        wait_task(&h, deleted["task_id"].as_str().expect("task")).await,
        "success"
    );
    let gone = h
        .cs("DescribeClusterDetail", json!({"cluster_id": cluster_id}))
        .await
        .expect_err("gone");
    assert_eq!(gone.code(), Code::NotFound);
}

#[tokio::test]
async fn unknown_cluster_is_not_found_with_error_info() {
    let h = Harness::embedded().await;
    let err = h
        .cs(
            "DescribeClusterDetail",
            json!({"cluster_id": "c-does-not-exist"}),
        )
        .await
        .expect_err("unknown");
    assert_eq!(err.code(), Code::NotFound);
    let info = err.get_details_error_info().expect("error info");
    assert_eq!(info.reason, "ErrorClusterNotFound");
    assert_eq!(
        info.metadata.get("http_status").map(String::as_str),
        Some("404")
    );
    let request_id = err
        .metadata()
        .get("x-acs-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("request id");
    assert_eq!(
        info.metadata.get("request_id").map(String::as_str),
        Some(request_id)
    );
}

#[tokio::test]
async fn upstream_error_classes_map_as_documented() {
    // One attempt per call: each injected answer is the one mapped (retries have their own tests).
    let h = Harness::with_config(
        "[simulator]\nmode = \"always\"\n[retry]\nmax_attempts = 1\n",
        std::collections::HashMap::new(),
    )
    .await;
    let cases = [
        (400, "InvalidParameter.Name", Code::InvalidArgument),
        (403, "Forbidden.RAM", Code::PermissionDenied),
        (403, "SignatureDoesNotMatch", Code::Unauthenticated),
        (404, "ErrorClusterNotFound", Code::NotFound),
        (409, "ErrorClusterStatus", Code::FailedPrecondition),
        (500, "ServerError", Code::Unavailable),
        (503, "ServiceUnavailable", Code::Unavailable),
        // Last: throttling also slows the account's bucket down (see the rate-limit tests).
        (400, "Throttling.User", Code::ResourceExhausted),
    ];
    for (status, code, want) in cases {
        h.sim().inject(Fault {
            operation: Some("DescribeClustersV1".into()),
            status,
            code: code.into(),
            message: format!("injected {code}"),
            times: 1,
            delay_ms: 0,
            headers: Default::default(),
            ..Default::default()
        });
        let err = h
            .cs("DescribeClustersV1", json!({}))
            .await
            .expect_err("injected");
        assert_eq!(err.code(), want, "{status} {code}: {}", err.message());
        assert_eq!(err.get_details_error_info().expect("info").reason, code);
        assert!(err.message().contains(&format!("injected {code}")));
        if want == Code::ResourceExhausted {
            assert!(
                err.get_details_retry_info().is_some(),
                "throttling carries RetryInfo"
            );
        }
    }
}

#[tokio::test]
async fn missing_path_parameter_is_invalid_argument_naming_the_field() {
    let h = Harness::embedded().await;
    let err = h
        .cs("DescribeClusterDetail", json!({}))
        .await
        .expect_err("invalid");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("cluster_id"), "{}", err.message());
    let bad = err.get_details_bad_request().expect("bad request details");
    assert_eq!(bad.field_violations[0].field, "cluster_id");
    assert_eq!(h.sim().requests().len(), 0, "nothing reached the upstream");
}

#[tokio::test]
async fn path_parameters_are_percent_encoded_and_never_change_the_path() {
    let h = Harness::embedded().await;
    for (id, encoded) in [
        ("a/b", "a%2Fb"),
        ("x?y=1", "x%3Fy%3D1"),
        ("frag#ment", "frag%23ment"),
        ("../../quota", "..%2F..%2Fquota"),
        ("with space", "with%20space"),
    ] {
        h.sim().clear_requests();
        let err = h
            .cs("DescribeClusterDetail", json!({"cluster_id": id}))
            .await
            .expect_err("no such cluster");
        assert_eq!(err.code(), Code::NotFound, "{id}: {}", err.message());
        let seen = h.sim().requests();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].operation, "DescribeClusterDetail");
        assert_eq!(seen[0].raw_path, format!("/clusters/{encoded}"));
    }
    let err = h
        .cs("DescribeClusterDetail", json!({"cluster_id": ".."}))
        .await
        .expect_err("dot segment");
    assert_eq!(err.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn deadline_shorter_than_a_slow_upstream_is_deadline_exceeded() {
    let h = Harness::embedded().await;
    h.sim().inject(Fault {
        operation: Some("DescribeClustersV1".into()),
        status: 0,
        delay_ms: 3_000,
        times: 1,
        code: String::new(),
        message: String::new(),
        headers: Default::default(),
        ..Default::default()
    });
    let started = std::time::Instant::now();
    let err = h
        .call(
            CS_SERVICE,
            "DescribeClustersV1",
            json!({}),
            &[],
            Some(Duration::from_millis(400)),
        )
        .await
        .expect_err("too slow");
    assert_eq!(err.code(), Code::DeadlineExceeded, "{}", err.message());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the deadline bounded the call"
    );
}

#[tokio::test]
async fn wrong_secret_is_rejected_by_the_simulator_and_unauthenticated() {
    let sim = simulator(SimulatorOptions::default()).await;
    let (id, _) = sim.root_key();
    let h = Harness::with_config(
        "[simulator]\nmode = \"never\"\n[auth]\nmode = \"insecure_local\"\n",
        env(&[
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", &id),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "not-the-secret"),
            ("ALIBABA_CLOUD_REGION_ID", "cn-beijing"),
            ("ACK_GATEWAY_CS_ENDPOINT", &sim.endpoint()),
        ]),
    )
    .await;
    let err = h
        .cs("DescribeClustersV1", json!({}))
        .await
        .expect_err("wrong secret");
    assert_eq!(err.code(), Code::Unauthenticated, "{}", err.message());
    assert_eq!(
        err.get_details_error_info().expect("info").reason,
        "SignatureDoesNotMatch"
    );
    assert!(!err.message().contains("not-the-secret"));
}

#[tokio::test]
async fn keys_from_the_environment_and_an_endpoint_with_a_path_prefix() {
    let sim = simulator(SimulatorOptions {
        path_prefix: "/roa".into(),
        keys: vec![(
            "LTAIenvkey".into(),
            "env-secret-value".into(),
            "2000".into(),
        )],
        ..Default::default()
    })
    .await;
    let h = Harness::with_config(
        "[simulator]\nmode = \"never\"\n[auth]\nmode = \"insecure_local\"\n",
        env(&[
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAIenvkey"),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "env-secret-value"),
            ("ALIBABA_CLOUD_REGION_ID", "cn-beijing"),
            ("ACK_GATEWAY_CS_ENDPOINT", &sim.endpoint()),
        ]),
    )
    .await;
    h.cs("DescribeClustersV1", json!({"page_size": 5}))
        .await
        .expect("signed and accepted");
    let seen = sim.requests_for("DescribeClustersV1");
    assert_eq!(seen[0].raw_path, "/roa/api/v1/clusters");
    assert_eq!(seen[0].headers["x-acs-region-id"], "cn-beijing");
    assert_eq!(
        seen[0].query,
        vec![("page_size".to_string(), "5".to_string())]
    );
}

#[tokio::test]
async fn apsara_stack_headers_are_sent_and_signed() {
    let sim = simulator(SimulatorOptions::default()).await;
    let (id, secret) = sim.root_key();
    let toml = format!(
        "[simulator]\nmode = \"never\"\n[auth]\nmode = \"insecure_local\"\n[endpoints]\ncs = \"{}\"\n[profiles.default]\ntype = \"access_key\"\naccess_key_id = \"{id}\"\naccess_key_secret = \"{}\"\nregion = \"cn-qingdao-env66-d01\"\n[profiles.default.acs_headers]\nx-acs-organizationid = \"3\"\nx-acs-resourcegroupid = \"rg-1\"\n",
        sim.endpoint(),
        secret.expose()
    );
    let h = Harness::with_config(&toml, env(&[])).await;
    h.cs("DescribeClustersV1", json!({}))
        .await
        .expect("accepted");
    let seen = sim.requests_for("DescribeClustersV1");
    assert_eq!(seen[0].headers["x-acs-organizationid"], "3");
    assert_eq!(seen[0].headers["x-acs-resourcegroupid"], "rg-1");
}

#[tokio::test]
async fn sts_triples_from_assume_role_are_accepted_and_need_their_token() {
    let h = Harness::embedded().await;
    let (resp, _) = h
        .call(
            "alibabacloud.sts.v20150401.Sts",
            "AssumeRole",
            json!({"role_arn": "acs:ram::1000000000000001:role/admin", "role_session_name": "it", "duration_seconds": 900}),
            &[],
            None,
        )
        .await
        .expect("assumed");
    let creds = &resp["credentials"];
    let id = creds["access_key_id"].as_str().expect("id");
    let secret = creds["access_key_secret"].as_str().expect("secret");
    let token = creds["security_token"].as_str().expect("token");
    let endpoint = h.sim().endpoint();

    let with_token = Harness::with_config(
        "[simulator]\nmode = \"never\"\n[auth]\nmode = \"insecure_local\"\n",
        env(&[
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", id),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", secret),
            ("ALIBABA_CLOUD_SECURITY_TOKEN", token),
            ("ALIBABA_CLOUD_REGION_ID", "cn-hangzhou"),
            ("ACK_GATEWAY_CS_ENDPOINT", &endpoint),
        ]),
    )
    .await;
    with_token
        .cs("DescribeClustersV1", json!({}))
        .await
        .expect("STS triple accepted");
    let seen = h.sim().requests_for("DescribeClustersV1");
    assert_eq!(
        seen.last()
            .expect("seen")
            .headers
            .get("x-acs-accesskey-id")
            .map(String::as_str),
        Some(id)
    );

    let without_token = Harness::with_config(
        "[simulator]\nmode = \"never\"\n[auth]\nmode = \"insecure_local\"\n",
        env(&[
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", id),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", secret),
            ("ALIBABA_CLOUD_REGION_ID", "cn-hangzhou"),
            ("ACK_GATEWAY_CS_ENDPOINT", &endpoint),
        ]),
    )
    .await;
    let err = without_token
        .cs("DescribeClustersV1", json!({}))
        .await
        .expect_err("token missing");
    assert_eq!(err.code(), Code::Unauthenticated, "{}", err.message());
}

#[tokio::test]
async fn ehpc_add_existed_nodes_flattens_instance_ids() {
    let h = Harness::embedded().await;
    let (resp, _) = h
        .call(
            "alibabacloud.ehpc.v20180412.Ehpc",
            "AddExistedNodes",
            json!({"cluster_id": "ehpc-hz-1", "image_id": "centos_7", "image_owner_alias": "system",
                   "instance_ids": ["i-1", "i-2"], "job_queue": "workq"}),
            &[],
            None,
        )
        .await
        .expect("added");
    assert!(resp["task_id"].as_str().is_some());
    let seen = h.sim().requests_for("AddExistedNodes");
    let q = &seen[0].query;
    assert!(q.contains(&("Instance.1.Id".to_string(), "i-1".to_string())));
    assert!(q.contains(&("Instance.2.Id".to_string(), "i-2".to_string())));
    assert!(q.contains(&("Action".to_string(), "AddExistedNodes".to_string())));
    assert_eq!(seen[0].method, "GET");
}

#[tokio::test]
async fn oversized_requests_are_rejected_before_any_upstream_call() {
    let h = Harness::with_config(
        "[simulator]\nmode = \"always\"\n[limits]\nmax_request_bytes = 1024\n",
        std::collections::HashMap::new(),
    )
    .await;
    let big = "x".repeat(4096);
    let err = h
        .cs(
            "CreateCluster",
            json!({"name": big, "region_id": "cn-hangzhou"}),
        )
        .await
        .expect_err("too large");
    assert!(
        matches!(
            err.code(),
            Code::OutOfRange | Code::ResourceExhausted | Code::InvalidArgument
        ),
        "{err:?}"
    );
    assert!(err.message().contains("1024"), "{}", err.message());
    assert_eq!(h.sim().requests().len(), 0);
    h.cs(
        "CreateCluster",
        json!({"name": "small", "region_id": "cn-hangzhou"}),
    )
    .await
    .expect("a small one passes");
}

#[tokio::test]
async fn unset_fields_stay_absent_and_zero_values_are_sent_upstream() {
    let h = Harness::embedded().await;
    let (c, _) = h
        .cs(
            "CreateCluster",
            json!({"name": "presence", "region_id": "cn-hangzhou"}),
        )
        .await
        .expect("created");
    let id = c["cluster_id"].as_str().expect("id");
    h.sim().clear_requests();
    // count 0 is refused by the API, but what matters is what reached it.
    let _ = h
        .cs(
            "ScaleOutCluster",
            json!({"cluster_id": id, "count": 0, "cloud_monitor_flags": false, "key_pair": "",
                   "vswitch_ids": ["vsw-1"], "worker_instance_types": ["ecs.g7.large"],
                   "worker_system_disk_category": "cloud_essd", "worker_system_disk_size": 40}),
        )
        .await;
    let seen = h.sim().requests_for("ScaleOutCluster");
    let body: serde_json::Value = serde_json::from_str(&seen[0].body).expect("json");
    assert_eq!(body["count"], json!(0), "zero is sent");
    assert_eq!(body["cloud_monitor_flags"], json!(false), "false is sent");
    assert_eq!(body["key_pair"], json!(""), "empty string is sent");
    for absent in [
        "cpu_policy",
        "login_password",
        "worker_data_disks",
        "tags",
        "runtime",
        "image_id",
    ] {
        assert!(
            body.get(absent).is_none(),
            "{absent} was not set and is not sent"
        );
    }
}
