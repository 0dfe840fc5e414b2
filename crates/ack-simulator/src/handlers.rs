//! Stateful answers for clusters, tasks, STS and E-HPC, and the helpers every stateful handler
//! shares (body parsing, visibility, starting tasks).

use super::state::{new_id, Cluster, Effect, Resources, TaskSpec};
use super::{ApiError, Request, SimSettings};
use crate::secret::Secret;
use serde_json::{json, Value};
use std::time::Duration;
use time::OffsetDateTime;

/// The answer to a request: a JSON body (or none).
pub type Answer = Result<Option<Value>, ApiError>;

fn not_found(cluster_id: &str) -> ApiError {
    ApiError::new(
        404,
        "ErrorClusterNotFound",
        format!("cluster {cluster_id} not found"),
    )
}

pub fn body_json(req: &Request) -> Result<Value, ApiError> {
    if req.body.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(&req.body).map_err(|e| {
        ApiError::new(
            400,
            "InvalidParameter.Body",
            format!("the body is not JSON: {e}"),
        )
    })
}

pub fn visible<'a>(state: &'a Resources, req: &Request, id: &str) -> Result<&'a Cluster, ApiError> {
    state
        .clusters
        .get(id)
        .filter(|c| c.owner == req.account)
        .ok_or_else(|| not_found(id))
}

/// The cluster, for changing it; the same visibility rule.
pub fn visible_mut<'a>(
    state: &'a mut Resources,
    req: &Request,
    id: &str,
) -> Result<&'a mut Cluster, ApiError> {
    state
        .clusters
        .get_mut(id)
        .filter(|c| c.owner == req.account)
        .ok_or_else(|| not_found(id))
}

/// The cluster must be `running` for the operation.
pub fn require_running(cluster: &Cluster) -> Result<(), ApiError> {
    if cluster.state != "running" {
        return Err(ApiError::new(
            400,
            "ErrorClusterState",
            format!("cluster {} is {}, not running", cluster.id, cluster.state),
        ));
    }
    Ok(())
}

/// Starts a task for `operation`: its duration and any queued failure are the operation's.
/// A task that works on a serving cluster marks it busy first (`Resources::occupy`); the
/// cluster is `running` again when its last task ends.
#[allow(clippy::too_many_arguments)]
pub fn start_task(
    state: &mut Resources,
    req: &Request,
    s: &SimSettings,
    operation: &str,
    task_type: &'static str,
    cluster_id: &str,
    stages: Vec<&'static str>,
    effect: Effect,
) -> String {
    state.start_task(TaskSpec {
        task_type,
        cluster_id: cluster_id.to_string(),
        duration: s.duration_for(operation),
        stages,
        effect,
        fails_with: s.take_failure(operation),
        owner: req.account.clone(),
        keeps_busy: true,
    })
}

/// A string list given as a JSON array (`["a","b"]`) or comma-joined (`a,b`) in the query.
pub fn query_list(req: &Request, name: &str) -> Vec<String> {
    let Some(raw) = req.query_param(name) else {
        return Vec::new();
    };
    match serde_json::from_str::<Vec<String>>(raw) {
        Ok(list) => list,
        Err(_) => raw
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
    }
}

/// A body field that must be a non-empty string.
pub fn required_str<'a>(v: &'a Value, key: &str, code: &str) -> Result<&'a str, ApiError> {
    v[key]
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::new(400, code, format!("{key} is mandatory")))
}

pub fn create_cluster(state: &mut Resources, req: &Request, s: &SimSettings) -> Answer {
    let body = body_json(req)?;
    let name = body["name"].as_str().filter(|n| !n.is_empty());
    let Some(name) = name else {
        return Err(ApiError::new(
            400,
            "MissingParameter.Name",
            "name is mandatory",
        ));
    };
    let region = body["region_id"]
        .as_str()
        .ok_or_else(|| ApiError::new(400, "MissingParameter.RegionId", "region_id is mandatory"))?;
    let id = new_id("c");
    let now = OffsetDateTime::now_utc();
    let size = body["num_of_nodes"].as_i64().unwrap_or(0)
        + body["nodepools"]
            .as_array()
            .map(|a| a.len() as i64)
            .unwrap_or(0);
    let mut cluster = Cluster::new(id.clone(), req.account.clone(), now);
    cluster.name = name.to_string();
    cluster.region_id = region.to_string();
    if let Some(t) = body["cluster_type"].as_str() {
        cluster.cluster_type = t.to_string();
    }
    if let Some(v) = body["kubernetes_version"].as_str() {
        cluster.version = v.to_string();
    }
    if let Some(v) = body["vpcid"].as_str() {
        cluster.vpc_id = v.to_string();
    }
    cluster.size = size;
    cluster.deletion_protection = body["deletion_protection"].as_bool().unwrap_or(false);
    cluster.tags = body["tags"].as_array().cloned().unwrap_or_default();
    state.clusters.insert(id.clone(), cluster);
    let task = start_task(
        state,
        req,
        s,
        "CreateCluster",
        "cluster_create",
        &id,
        vec![
            "CreateVPC",
            "CreateControlPlane",
            "InstallAddons",
            "CreateNodes",
        ],
        Effect::BecomesRunning,
    );
    Ok(Some(
        json!({"cluster_id": id, "request_id": req.request_id, "task_id": task}),
    ))
}

pub fn describe_cluster_detail(state: &mut Resources, req: &Request) -> Answer {
    let id = req.path_param("cluster_id");
    Ok(Some(visible(state, req, id)?.to_json()))
}

pub fn describe_clusters_v1(state: &mut Resources, req: &Request) -> Answer {
    let name = req.query_param("name");
    let cluster_type = req.query_param("cluster_type");
    let (page_size, page_number) = req.page("page_size", "page_number");
    let matching: Vec<Value> = state
        .clusters
        .values()
        .filter(|c| c.owner == req.account)
        .filter(|c| name.is_none_or(|n| c.name.contains(n)))
        .filter(|c| cluster_type.is_none_or(|t| c.cluster_type == t))
        .map(Cluster::to_json)
        .collect();
    let total = matching.len();
    let page: Vec<Value> = matching
        .into_iter()
        .skip((page_number - 1) * page_size)
        .take(page_size)
        .collect();
    Ok(Some(json!({
        "clusters": page,
        "page_info": {"page_number": page_number, "page_size": page_size, "total_count": total},
    })))
}

pub fn delete_cluster(state: &mut Resources, req: &Request, s: &SimSettings) -> Answer {
    let id = req.path_param("cluster_id").to_string();
    let cluster = visible(state, req, &id)?;
    if cluster.deletion_protection {
        return Err(ApiError::new(
            400,
            "ErrorDeletionProtection",
            "deletion protection is enabled for the cluster",
        ));
    }
    if let Some(c) = state.clusters.get_mut(&id) {
        c.state = "deleting".into();
    }
    let task = start_task(
        state,
        req,
        s,
        "DeleteCluster",
        "cluster_delete",
        &id,
        vec!["DeleteNodes", "DeleteControlPlane", "ReleaseResources"],
        Effect::IsDeleted,
    );
    Ok(Some(
        json!({"cluster_id": id, "request_id": req.request_id, "task_id": task}),
    ))
}

pub fn scale_out_cluster(state: &mut Resources, req: &Request, s: &SimSettings) -> Answer {
    let id = req.path_param("cluster_id").to_string();
    require_running(visible(state, req, &id)?)?;
    let body = body_json(req)?;
    let count = body["count"].as_i64().filter(|n| *n > 0).ok_or_else(|| {
        ApiError::new(
            400,
            "InvalidParameter.Count",
            "count must be a positive integer",
        )
    })?;
    state.occupy(&id, "scaling");
    let task = start_task(
        state,
        req,
        s,
        "ScaleOutCluster",
        "cluster_scaleout",
        &id,
        vec!["CreateInstances", "JoinNodes"],
        Effect::GrowsBy(count),
    );
    Ok(Some(
        json!({"cluster_id": id, "request_id": req.request_id, "task_id": task}),
    ))
}

pub fn attach_instances(state: &mut Resources, req: &Request, s: &SimSettings) -> Answer {
    let id = req.path_param("cluster_id").to_string();
    visible(state, req, &id)?;
    let body = body_json(req)?;
    let instances: Vec<String> = body["instances"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if instances.is_empty() {
        return Err(ApiError::new(
            400,
            "InvalidParameter.Instances",
            "instances must list at least one instance",
        ));
    }
    let list: Vec<Value> = instances
        .iter()
        .map(|i| json!({"code": "200", "instanceId": i, "message": "successful"}))
        .collect();
    state.occupy(&id, "scaling");
    let task = start_task(
        state,
        req,
        s,
        "AttachInstances",
        "cluster_attach",
        &id,
        vec!["CheckInstances", "InitNodes", "JoinNodes"],
        Effect::GrowsBy(instances.len() as i64),
    );
    Ok(Some(
        json!({"list": list, "task_id": task, "request_id": req.request_id}),
    ))
}

pub fn describe_task_info(state: &mut Resources, req: &Request) -> Answer {
    let id = req.path_param("task_id");
    let task = state
        .tasks
        .get(id)
        .filter(|t| t.owner == req.account)
        .ok_or_else(|| ApiError::new(404, "ErrorTaskNotFound", format!("task {id} not found")))?;
    Ok(Some(task.to_json(&req.request_id)))
}

/// STS AssumeRole: issues a short-lived triple that the simulator then accepts.
pub fn assume_role(req: &Request, s: &SimSettings) -> Answer {
    let role_arn = req.query_param("RoleArn").ok_or_else(|| {
        ApiError::new(
            400,
            "MissingRoleArn",
            "RoleArn is mandatory for this action.",
        )
    })?;
    req.query_param("RoleSessionName").ok_or_else(|| {
        ApiError::new(
            400,
            "MissingRoleSessionName",
            "RoleSessionName is mandatory for this action.",
        )
    })?;
    let requested = match req.query_param("DurationSeconds") {
        None => 3600,
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|d| (900..=43200).contains(d))
            .ok_or_else(|| {
                ApiError::new(
                    400,
                    "InvalidParameter.DurationSeconds",
                    "DurationSeconds must be 900 to 43200.",
                )
            })?,
    };
    let lifetime = s.sts_duration.unwrap_or(Duration::from_secs(requested));
    let expiration = OffsetDateTime::now_utc() + lifetime;
    let id = format!("STS.{}", &new_id("")[..20]);
    let secret = new_id("");
    let token = format!("CAIS{}{}", new_id(""), new_id(""));
    s.keys.add(
        id.clone(),
        super::auth::KnownKey {
            secret: Secret::new(secret.clone()),
            account: req.account.clone(),
            sts: Some((Secret::new(token.clone()), expiration)),
        },
    );
    s.count_sts_issue();
    let session = req.query_param("RoleSessionName").unwrap_or_default();
    Ok(Some(json!({
        "RequestId": req.request_id,
        "AssumedRoleUser": {"Arn": format!("{role_arn}/{session}"), "AssumedRoleId": format!("3{}:{session}", &new_id("")[..12])},
        "Credentials": {
            "AccessKeyId": id,
            "AccessKeySecret": secret,
            "SecurityToken": token,
            "Expiration": super::state::rfc3339(expiration.replace_nanosecond(0).unwrap_or(expiration)),
        },
    })))
}

/// E-HPC AddExistedNodes.
pub fn add_existed_nodes(req: &Request) -> Answer {
    for k in ["ClusterId", "ImageId", "ImageOwnerAlias", "Instance.1.Id"] {
        if req.query_param(k).is_none() {
            return Err(ApiError::new(
                400,
                "MissingParameter",
                format!("{k} is mandatory for this action."),
            ));
        }
    }
    Ok(Some(
        json!({"RequestId": req.request_id, "TaskId": new_id("task-")}),
    ))
}

/// `ModifyCluster` on a cluster the simulator keeps: renames it when asked, and answers with a
/// task that reports the change (the cluster keeps serving); `None` for a cluster it does not
/// know (the catalogue's sample answers).
pub fn modify_cluster(state: &mut Resources, req: &Request, s: &SimSettings) -> Option<Answer> {
    let id = req.path_param("cluster_id").to_string();
    visible(state, req, &id).ok()?;
    let body = match body_json(req) {
        Ok(b) => b,
        Err(e) => return Some(Err(e)),
    };
    let task = state.start_task(TaskSpec {
        task_type: "cluster_modify",
        cluster_id: id.clone(),
        duration: s.duration_for("ModifyCluster"),
        stages: vec!["ModifyCluster"],
        effect: Effect::Modified,
        fails_with: s.take_failure("ModifyCluster"),
        owner: req.account.clone(),
        keeps_busy: false,
    });
    let cluster = visible_mut(state, req, &id).ok()?;
    if let Some(name) = body["cluster_name"].as_str().filter(|n| !n.is_empty()) {
        cluster.name = name.to_string();
    }
    Some(Ok(Some(json!({
        "cluster_id": id,
        "task_id": task,
        "request_id": req.request_id,
    }))))
}
