//! The simulator's stateful resources through the gateway: node pools, templates, add-ons,
//! tags and cluster upgrades go through their lifecycles, report realistic states on the way,
//! and are visible to their own account only.

use crate::support::*;
use serde_json::{json, Value};
use std::time::Duration;
use tonic::Code;

/// A running cluster (its creation task waited for).
async fn running_cluster(h: &Harness, name: &str) -> String {
    let (id, task) = create_cluster(h, name).await;
    assert_eq!(wait_task(h, &task).await, "success");
    id
}

fn task_of(v: &Value) -> &str {
    v["task_id"].as_str().expect("a task id")
}

async fn detail(h: &Harness, cluster_id: &str) -> Value {
    h.cs("DescribeClusterDetail", json!({"cluster_id": cluster_id}))
        .await
        .expect("detail")
        .0
}

#[tokio::test]
async fn node_pool_lifecycle() {
    let h = Harness::embedded().await;
    let c = running_cluster(&h, "pools").await;
    // Long enough that the in-between states are seen before the work finishes.
    for op in [
        "CreateClusterNodePool",
        "ModifyClusterNodePool",
        "ScaleClusterNodePool",
    ] {
        h.sim().set_task_duration(op, Duration::from_secs(1));
    }
    let (created, _) = h
        .cs(
            "CreateClusterNodePool",
            json!({"cluster_id": c, "nodepool_info": {"name": "workers"},
                   "kubernetes_config": {"labels": [{"key": "tier", "value": "web"}]},
                   "scaling_group": {"desired_size": 2, "instance_types": ["ecs.g7.xlarge"],
                                     "instance_charge_type": "PostPaid", "login_password": "Hello1234!"}}),
        )
        .await
        .expect("created");
    let np = created["nodepool_id"]
        .as_str()
        .expect("pool id")
        .to_string();
    let describe = || {
        h.cs(
            "DescribeClusterNodePoolDetail",
            json!({"cluster_id": c, "nodepool_id": np}),
        )
    };
    let (pool, _) = describe().await.expect("detail while creating");
    assert_eq!(pool["status"]["state"], "initial");
    assert_eq!(pool["nodepool_info"]["name"], "workers");
    assert!(
        pool["scaling_group"].get("login_password").is_none(),
        "the password is never returned"
    );
    // A pool that is still being created cannot be scaled.
    let busy = h
        .cs(
            "ScaleClusterNodePool",
            json!({"cluster_id": c, "nodepool_id": np, "count": 1}),
        )
        .await
        .expect_err("not active yet");
    // The cluster is busy with the pool's creation: a state to wait for, not a bad request.
    assert_eq!(busy.code(), Code::FailedPrecondition);
    assert_eq!(wait_task(&h, task_of(&created)).await, "success");
    let (pool, _) = describe().await.expect("detail");
    assert_eq!(pool["status"]["state"], "active");
    assert_eq!(pool["status"]["total_nodes"], 2);
    assert_eq!(pool["kubernetes_config"]["labels"][0]["value"], "web");
    assert_eq!(detail(&h, &c).await["size"], 2);

    let (listed, _) = h
        .cs(
            "DescribeClusterNodePools",
            json!({"cluster_id": c, "nodepool_name": "workers"}),
        )
        .await
        .expect("list");
    assert_eq!(listed["nodepools"].as_array().map(Vec::len), Some(1));
    let (none, _) = h
        .cs(
            "DescribeClusterNodePools",
            json!({"cluster_id": c, "nodepool_name": "other"}),
        )
        .await
        .expect("list");
    assert_eq!(none["nodepools"].as_array().map(Vec::len).unwrap_or(0), 0);

    let (modified, _) = h
        .cs(
            "ModifyClusterNodePool",
            json!({"cluster_id": c, "nodepool_id": np, "nodepool_info": {"name": "frontends"},
                   "management": {"enable": true}}),
        )
        .await
        .expect("modified");
    assert_eq!(
        describe().await.expect("detail").0["status"]["state"],
        "updating"
    );
    assert_eq!(wait_task(&h, task_of(&modified)).await, "success");
    let (pool, _) = describe().await.expect("detail");
    assert_eq!(pool["nodepool_info"]["name"], "frontends");
    assert_eq!(pool["management"]["enable"], true);
    assert_eq!(
        pool["kubernetes_config"]["labels"][0]["key"], "tier",
        "kept"
    );

    let (scaled, _) = h
        .cs(
            "ScaleClusterNodePool",
            json!({"cluster_id": c, "nodepool_id": np, "count": 3}),
        )
        .await
        .expect("scaled");
    assert_eq!(
        describe().await.expect("detail").0["status"]["state"],
        "scaling"
    );
    assert_eq!(wait_task(&h, task_of(&scaled)).await, "success");
    assert_eq!(
        describe().await.expect("detail").0["status"]["total_nodes"],
        5
    );
    assert_eq!(detail(&h, &c).await["size"], 5);

    let (deleted, _) = h
        .cs(
            "DeleteClusterNodepool",
            json!({"cluster_id": c, "nodepool_id": np}),
        )
        .await
        .expect("deleted");
    assert_eq!(wait_task(&h, task_of(&deleted)).await, "success");
    assert_eq!(describe().await.expect_err("gone").code(), Code::NotFound);
    assert_eq!(detail(&h, &c).await["size"], 0);
}

#[tokio::test]
async fn a_failed_node_pool_task_reports_its_error() {
    let h = Harness::embedded().await;
    let c = running_cluster(&h, "pool-fails").await;
    h.sim().fail_next_task(
        "CreateClusterNodePool",
        "QuotaExceeded.Instances",
        "no instances left",
    );
    let (created, _) = h
        .cs(
            "CreateClusterNodePool",
            json!({"cluster_id": c, "nodepool_info": {"name": "doomed"},
                   "scaling_group": {"desired_size": 1}}),
        )
        .await
        .expect("accepted");
    assert_eq!(wait_task(&h, task_of(&created)).await, "failed");
    let (task, _) = h
        .cs("DescribeTaskInfo", json!({"task_id": task_of(&created)}))
        .await
        .expect("task");
    assert_eq!(task["error"]["code"], "QuotaExceeded.Instances");
    let (pool, _) = h
        .cs(
            "DescribeClusterNodePoolDetail",
            json!({"cluster_id": c, "nodepool_id": created["nodepool_id"]}),
        )
        .await
        .expect("detail");
    assert_eq!(pool["status"]["state"], "failed");
}

#[tokio::test]
async fn template_lifecycle() {
    let h = Harness::embedded().await;
    let (created, _) = h
        .cs(
            "CreateTemplate",
            json!({"name": "web", "template": "kind: Deployment", "tags": "team:a",
                   "description": "first"}),
        )
        .await
        .expect("created");
    let id = created["template_id"].as_str().expect("id").to_string();
    let (listed, _) = h
        .cs("DescribeTemplates", json!({"page_num": 1, "page_size": 10}))
        .await
        .expect("list");
    assert_eq!(listed["page_info"]["total_count"], 1);
    assert_eq!(listed["templates"][0]["name"], "web");
    assert_eq!(listed["templates"][0]["template_type"], "kubernetes");

    h.cs(
        "UpdateTemplate",
        json!({"template_id": id, "template": "kind: StatefulSet", "description": "second"}),
    )
    .await
    .expect("updated");
    let (versions, _) = h
        .cs("DescribeTemplateAttribute", json!({"template_id": id}))
        .await
        .expect("attribute");
    let versions = versions["items"].as_array().expect("versions").clone();
    assert_eq!(versions.len(), 2, "the previous version is kept");
    assert_eq!(versions[0]["template"], "kind: StatefulSet");
    assert_eq!(versions[0]["name"], "web", "unchanged fields carry over");
    assert_eq!(versions[1]["description"], "first");

    let missing = h
        .cs("CreateTemplate", json!({"name": "no-body"}))
        .await
        .expect_err("template is mandatory");
    assert_eq!(missing.code(), Code::InvalidArgument);

    h.cs("DeleteTemplate", json!({"template_id": id}))
        .await
        .expect("deleted");
    let gone = h
        .cs("DescribeTemplateAttribute", json!({"template_id": id}))
        .await
        .expect_err("gone");
    assert_eq!(gone.code(), Code::NotFound);
}

#[tokio::test]
async fn addon_install_upgrade_and_uninstall() {
    let h = Harness::embedded().await;
    let c = running_cluster(&h, "addons").await;
    for op in [
        "InstallClusterAddons",
        "UpgradeClusterAddons",
        "UnInstallClusterAddons",
    ] {
        h.sim().set_task_duration(op, Duration::from_secs(1));
    }
    let (listed, _) = h
        .cs("ListClusterAddonInstances", json!({"cluster_id": c}))
        .await
        .expect("list");
    let names: Vec<&str> = listed["addons"]
        .as_array()
        .expect("addons")
        .iter()
        .filter_map(|a| a["name"].as_str())
        .collect();
    assert!(names.contains(&"coredns"), "default add-ons: {names:?}");

    let (installed, _) = h
        .cs(
            "InstallClusterAddons",
            json!({"cluster_id": c, "body": [{"name": "ack-node-problem-detector", "version": "1.2.1"}]}),
        )
        .await
        .expect("installing");
    let instance = || {
        h.cs(
            "GetClusterAddonInstance",
            json!({"cluster_id": c, "instance_name": "ack-node-problem-detector"}),
        )
    };
    assert_eq!(instance().await.expect("instance").0["state"], "installing");
    assert_eq!(wait_task(&h, task_of(&installed)).await, "success");
    assert_eq!(instance().await.expect("instance").0["state"], "active");
    let again = h
        .cs(
            "InstallClusterAddons",
            json!({"cluster_id": c, "body": [{"name": "ack-node-problem-detector"}]}),
        )
        .await
        .expect_err("already installed");
    assert_eq!(again.code(), Code::InvalidArgument);

    // An upgrade moves through Running to Success; the instance reports upgrading meanwhile.
    let (upgrading, _) = h
        .cs(
            "UpgradeClusterAddons",
            json!({"cluster_id": c, "body": [{"component_name": "ack-node-problem-detector",
                                              "next_version": "1.2.2"}]}),
        )
        .await
        .expect("upgrading");
    let status = || {
        h.cs(
            "DescribeClusterAddonUpgradeStatus",
            json!({"cluster_id": c, "component_id": "ack-node-problem-detector"}),
        )
    };
    let (s, _) = status().await.expect("status");
    assert_eq!(s["entries"]["tasks"]["status"], "Running");
    assert_eq!(instance().await.expect("instance").0["state"], "upgrading");
    assert_eq!(wait_task(&h, task_of(&upgrading)).await, "success");
    let (s, _) = status().await.expect("status");
    assert_eq!(s["entries"]["tasks"]["status"], "Success");
    assert_eq!(s["entries"]["addon_info"]["version"], "1.2.2");
    let (versions, _) = h
        .cs("DescribeClusterAddonsVersion", json!({"cluster_id": c}))
        .await
        .expect("versions");
    assert_eq!(
        versions["entries"]["ack-node-problem-detector"]["version"],
        "1.2.2"
    );

    // A failed upgrade leaves the old version and says why.
    h.sim().fail_next_task(
        "UpgradeClusterAddons",
        "AddonUpgradeFailed",
        "the new version crashed",
    );
    let (failing, _) = h
        .cs(
            "UpgradeClusterAddons",
            json!({"cluster_id": c, "body": [{"component_name": "coredns", "next_version": "v9"}]}),
        )
        .await
        .expect("upgrading");
    assert_eq!(wait_task(&h, task_of(&failing)).await, "failed");
    let (all, _) = h
        .cs(
            "DescribeClusterAddonsUpgradeStatus",
            json!({"cluster_id": c, "component_ids": ["coredns", "not-installed"]}),
        )
        .await
        .expect("statuses");
    assert_eq!(all["entries"]["coredns"]["tasks"]["status"], "Failed");
    assert_eq!(
        all["entries"]["coredns"]["tasks"]["message"],
        "the new version crashed"
    );
    assert!(all["entries"].get("not-installed").is_none());
    let (core, _) = h
        .cs(
            "GetClusterAddonInstance",
            json!({"cluster_id": c, "instance_name": "coredns"}),
        )
        .await
        .expect("instance");
    assert_eq!(core["version"], "v1.11.3.2-f57ea7ed6-aliyun");
    assert_eq!(core["state"], "active");

    let (removed, _) = h
        .cs(
            "UnInstallClusterAddons",
            json!({"cluster_id": c, "addons": [{"name": "ack-node-problem-detector"}]}),
        )
        .await
        .expect("uninstalling");
    assert_eq!(instance().await.expect("instance").0["state"], "deleting");
    assert_eq!(wait_task(&h, task_of(&removed)).await, "success");
    assert_eq!(instance().await.expect_err("gone").code(), Code::NotFound);
}

#[tokio::test]
async fn tags_are_shared_by_every_tag_operation() {
    let h = Harness::embedded().await;
    let c = running_cluster(&h, "tagged").await;
    h.cs(
        "ModifyClusterTags",
        json!({"cluster_id": c, "body": [{"key": "env", "value": "dev"}]}),
    )
    .await
    .expect("modified");
    h.cs(
        "TagResources",
        json!({"region_id": "cn-hangzhou", "resource_type": "CLUSTER", "resource_ids": [c],
               "tags": [{"key": "env", "value": "prod"}, {"key": "team", "value": "a"}]}),
    )
    .await
    .expect("tagged");
    let tags = detail(&h, &c).await["tags"].clone();
    assert_eq!(
        tags,
        json!([{"key": "env", "value": "prod"}, {"key": "team", "value": "a"}])
    );
    let list = |filter: Value| {
        let mut req = json!({"region_id": "cn-hangzhou", "resource_type": "CLUSTER",
                             "resource_ids": [c]});
        if !filter.is_null() {
            req["tags"] = filter;
        }
        h.cs("ListTagResources", req)
    };
    let (listed, _) = list(Value::Null).await.expect("listed");
    let rows = listed["tag_resources"]["tag_resource"]
        .as_array()
        .expect("rows");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["resource_type"], "ALIYUN::CS::CLUSTER");
    let (filtered, _) = list(json!([{"key": "team", "value": "b"}]))
        .await
        .expect("listed");
    assert_eq!(
        filtered["tag_resources"]["tag_resource"]
            .as_array()
            .map(Vec::len)
            .unwrap_or(0),
        0
    );

    h.cs(
        "UntagResources",
        json!({"region_id": "cn-hangzhou", "resource_type": "CLUSTER", "resource_ids": [c],
               "tag_keys": ["env"]}),
    )
    .await
    .expect("untagged");
    assert_eq!(
        detail(&h, &c).await["tags"],
        json!([{"key": "team", "value": "a"}])
    );

    let wrong_type = h
        .cs(
            "TagResources",
            json!({"region_id": "cn-hangzhou", "resource_type": "INSTANCE", "resource_ids": [c],
                   "tags": [{"key": "k", "value": "v"}]}),
        )
        .await
        .expect_err("only clusters");
    assert_eq!(wrong_type.code(), Code::InvalidArgument);
    let unknown = h
        .cs(
            "TagResources",
            json!({"region_id": "cn-hangzhou", "resource_type": "CLUSTER",
                   "resource_ids": ["c-unknown"], "tags": [{"key": "k", "value": "v"}]}),
        )
        .await
        .expect_err("unknown cluster");
    assert_eq!(unknown.code(), Code::NotFound);
}

async fn upgrade_status(h: &Harness, c: &str) -> Value {
    h.cs("GetUpgradeStatus", json!({"cluster_id": c}))
        .await
        .expect("upgrade status")
        .0
}

#[tokio::test]
async fn cluster_upgrade_moves_through_stages_and_pauses() {
    let h = Harness::embedded().await;
    let c = running_cluster(&h, "upgrade").await;
    assert_eq!(upgrade_status(&h, &c).await["upgrade_step"], "not_start");
    h.sim()
        .set_task_duration("UpgradeCluster", Duration::from_millis(1500));
    let (started, _) = h
        .cs(
            "UpgradeCluster",
            json!({"cluster_id": c, "next_version": "1.32.1-aliyun.1"}),
        )
        .await
        .expect("started");
    let task = task_of(&started).to_string();
    let s = upgrade_status(&h, &c).await;
    assert_eq!(s["status"], "running");
    assert_eq!(s["upgrade_task"]["status"], "running");
    assert_eq!(detail(&h, &c).await["state"], "updating");
    let twice = h
        .cs(
            "UpgradeCluster",
            json!({"cluster_id": c, "next_version": "1.33.0-aliyun.1"}),
        )
        .await
        .expect_err("one upgrade at a time");
    assert_eq!(twice.code(), Code::InvalidArgument);

    h.cs("PauseClusterUpgrade", json!({"cluster_id": c}))
        .await
        .expect("paused");
    let paused = upgrade_status(&h, &c).await;
    assert_eq!(paused["status"], "pause");
    assert_eq!(paused["upgrade_step"], "pause");
    let (info, _) = h
        .cs("DescribeTaskInfo", json!({"task_id": task}))
        .await
        .expect("task");
    assert_eq!(info["state"], "paused");
    // A paused upgrade does not progress, however long it waits.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let (info, _) = h
        .cs("DescribeTaskInfo", json!({"task_id": task}))
        .await
        .expect("task");
    assert_eq!(info["state"], "paused");
    assert_eq!(upgrade_status(&h, &c).await["status"], "pause");

    h.cs("ResumeUpgradeCluster", json!({"cluster_id": c}))
        .await
        .expect("resumed");
    assert_eq!(upgrade_status(&h, &c).await["status"], "running");
    assert_eq!(wait_task(&h, &task).await, "success");
    let done = upgrade_status(&h, &c).await;
    assert_eq!(
        (done["status"].as_str(), done["upgrade_step"].as_str()),
        (Some("success"), Some("success"))
    );
    let d = detail(&h, &c).await;
    assert_eq!(d["current_version"], "1.32.1-aliyun.1");
    assert_eq!(d["state"], "running");
    let (info, _) = h
        .cs("DescribeTaskInfo", json!({"task_id": task}))
        .await
        .expect("task");
    let reasons: Vec<&str> = info["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["reason"].as_str())
        .collect();
    assert!(
        reasons.contains(&"Paused") && reasons.contains(&"Resumed"),
        "{reasons:?}"
    );
    assert_eq!(info["stages"].as_array().map(Vec::len), Some(3));

    let nothing = h
        .cs("PauseClusterUpgrade", json!({"cluster_id": c}))
        .await
        .expect_err("nothing to pause");
    assert_eq!(nothing.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn cluster_upgrade_cancel_and_failure() {
    let h = Harness::embedded().await;
    let c = running_cluster(&h, "upgrade-ends").await;
    h.sim()
        .set_task_duration("UpgradeCluster", Duration::from_secs(30));
    h.cs(
        "UpgradeCluster",
        json!({"cluster_id": c, "next_version": "1.32.1-aliyun.1"}),
    )
    .await
    .expect("started");
    h.cs("CancelClusterUpgrade", json!({"cluster_id": c}))
        .await
        .expect("canceled");
    let s = upgrade_status(&h, &c).await;
    assert_eq!(s["status"], "canceled");
    assert_ne!(s["error_message"], "");
    let d = detail(&h, &c).await;
    assert_eq!(
        (d["state"].as_str(), d["current_version"].as_str()),
        (Some("running"), Some("1.31.1-aliyun.1"))
    );

    h.sim()
        .set_task_duration("UpgradeCluster", Duration::from_millis(200));
    h.sim().fail_next_task(
        "UpgradeCluster",
        "UpgradeMasterFailed",
        "control plane did not become ready",
    );
    let (started, _) = h
        .cs(
            "UpgradeCluster",
            json!({"cluster_id": c, "next_version": "1.32.1-aliyun.1"}),
        )
        .await
        .expect("started");
    assert_eq!(wait_task(&h, task_of(&started)).await, "failed");
    let s = upgrade_status(&h, &c).await;
    assert_eq!(s["status"], "failed");
    assert_eq!(s["error_message"], "control plane did not become ready");
    assert_eq!(s["upgrade_task"]["status"], "failed");
    assert_eq!(detail(&h, &c).await["state"], "updating_failed");
}

#[tokio::test]
async fn resources_are_visible_to_their_own_account_only() {
    let h = Harness::with_config(
        "[simulator]\nmode = \"always\"\ntask_duration = \"100ms\"\n\
         [auth]\nmode = \"insecure_local\"\n\
         [profiles.other]\ntype = \"access_key\"\naccess_key_id = \"LTAIotheraccount\"\n\
         access_key_secret = \"other-secret\"\nregion = \"cn-hangzhou\"\n",
        Default::default(),
    )
    .await;
    h.sim()
        .add_key("LTAIotheraccount", "other-secret", "2000000000000002");
    let c = running_cluster(&h, "mine").await;
    let (template, _) = h
        .cs(
            "CreateTemplate",
            json!({"name": "mine", "template": "kind: Pod"}),
        )
        .await
        .expect("template");
    let other = [("x-ack-profile", "other")];
    let as_other = |op: &'static str, req: Value| h.call(CS_SERVICE, op, req, &other, None);
    for (op, req) in [
        ("DescribeClusterNodePools", json!({"cluster_id": c})),
        ("ListClusterAddonInstances", json!({"cluster_id": c})),
        ("GetUpgradeStatus", json!({"cluster_id": c})),
        (
            "DescribeTemplateAttribute",
            json!({"template_id": template["template_id"]}),
        ),
    ] {
        let err = as_other(op, req).await.expect_err("not visible");
        assert_eq!(err.code(), Code::NotFound, "{op}");
    }
    let (theirs, _) = as_other("DescribeTemplates", json!({}))
        .await
        .expect("their templates");
    assert_eq!(theirs["page_info"]["total_count"], 0);
    let (tags, _) = as_other(
        "ListTagResources",
        json!({"resource_type": "CLUSTER", "region_id": "cn-hangzhou"}),
    )
    .await
    .expect("their tags");
    assert_eq!(
        tags["tag_resources"]["tag_resource"]
            .as_array()
            .map(Vec::len)
            .unwrap_or(0),
        0
    );
}

#[tokio::test]
async fn cluster_nodes_are_the_node_pools_nodes_paged_as_the_api_pages() {
    let h = Harness::embedded().await;
    let c = running_cluster(&h, "nodes").await;
    let mut pools = Vec::new();
    for (name, size) in [("big", 230), ("small", 3)] {
        let (created, _) = h
            .cs(
                "CreateClusterNodePool",
                json!({"cluster_id": c, "nodepool_info": {"name": name},
                       "scaling_group": {"desired_size": size, "instance_types": ["ecs.g7.xlarge"]}}),
            )
            .await
            .expect("created");
        assert_eq!(
            wait_task(&h, created["task_id"].as_str().expect("task")).await,
            "success"
        );
        pools.push(created["nodepool_id"].as_str().expect("id").to_string());
    }
    let page = |extra: Value| {
        let mut request = json!({"cluster_id": c});
        if let (Some(r), Some(e)) = (request.as_object_mut(), extra.as_object()) {
            r.extend(e.clone());
        }
        h.cs("DescribeClusterNodes", request)
    };
    let (first, _) = page(json!({"page_size": "1000"})).await.expect("nodes");
    let nodes = first["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 100, "a page holds at most 100");
    assert_eq!(first["page"]["total_count"], 233);
    let (last, _) = page(json!({"page_size": "100", "page_number": "3"}))
        .await
        .expect("page 3");
    assert_eq!(last["nodes"].as_array().map(Vec::len), Some(33));
    let (small, _) = page(json!({"nodepool_id": pools[1]}))
        .await
        .expect("one pool");
    let small = small["nodes"].as_array().expect("nodes");
    assert_eq!(small.len(), 3);
    assert!(small.iter().all(|n| n["nodepool_id"] == pools[1].as_str()));
    let ids: std::collections::BTreeSet<&str> = nodes
        .iter()
        .filter_map(|n| n["instance_id"].as_str())
        .collect();
    assert_eq!(ids.len(), 100, "every node has its own instance id");
    let err = h
        .cs("DescribeClusterNodes", json!({"cluster_id": "c-missing"}))
        .await
        .expect_err("unknown cluster");
    assert_eq!(err.code(), Code::NotFound);
}
