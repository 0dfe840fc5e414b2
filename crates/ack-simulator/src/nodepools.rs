//! Node pools: created, modified, scaled and deleted through tasks (each keeps the cluster busy,
//! `updating` or `scaling`, until it ends), listed and described in the API's shape. A pool
//! echoes the spec it was given (minus the login password, which the API never returns) with
//! its `nodepool_info` and `status` filled in by the simulator: the state (`initial` → `active`,
//! `scaling`, `removing` (a smaller `desired_size`), `updating`, `deleting`, or `failed` when it
//! never came up), node counts that move while the task runs (created, then serving; drained,
//! then released), failed nodes after a failed scale-out, and conditions saying why.

use super::handlers::{body_json, require_running, start_task, visible, visible_mut, Answer};
use super::state::{new_id, Cluster, Effect, NodeChange, NodePool, Resources, Task};
use super::{ApiError, Request, SimSettings};
use serde_json::{json, Value};
use time::OffsetDateTime;

fn not_found(id: &str) -> ApiError {
    ApiError::new(
        404,
        "ErrorNodePoolNotFound",
        format!("node pool {id} not found"),
    )
}

fn pool<'a>(cluster: &'a Cluster, id: &str) -> Result<&'a NodePool, ApiError> {
    cluster.nodepools.get(id).ok_or_else(|| not_found(id))
}

fn require_active(np: &NodePool) -> Result<(), ApiError> {
    if np.state != "active" {
        return Err(ApiError::new(
            400,
            "ErrorNodePoolState",
            format!("node pool {} is {}, not active", np.id, np.state),
        ));
    }
    Ok(())
}

/// The spec as stored: the body without the path parameter and without secrets.
fn spec_of(mut body: Value) -> Value {
    if let Some(obj) = body.as_object_mut() {
        obj.remove("count");
        if let Some(sg) = obj.get_mut("scaling_group").and_then(Value::as_object_mut) {
            sg.remove("login_password");
        }
    }
    body
}

/// Merges `patch` into `base`: objects merge key by key, anything else replaces.
fn merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, p) => *b = p.clone(),
    }
}

pub fn create(state: &mut Resources, req: &Request, s: &SimSettings) -> Answer {
    let cluster_id = req.path_param("cluster_id").to_string();
    require_running(visible(state, req, &cluster_id)?)?;
    let body = body_json(req)?;
    let name = body["nodepool_info"]["name"]
        .as_str()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            ApiError::new(
                400,
                "MissingParameter.NodepoolInfoName",
                "nodepool_info.name is mandatory",
            )
        })?
        .to_string();
    let size = body["scaling_group"]["desired_size"]
        .as_i64()
        .or_else(|| body["count"].as_i64())
        .unwrap_or(0);
    if size < 0 {
        return Err(ApiError::new(
            400,
            "InvalidParameter.DesiredSize",
            "desired_size must not be negative",
        ));
    }
    let id = new_id("np");
    let now = OffsetDateTime::now_utc();
    let cluster = visible_mut(state, req, &cluster_id)?;
    let mut np = NodePool::new(id.clone(), name, spec_of(body), now);
    np.desired_size = size;
    cluster.nodepools.insert(id.clone(), np);
    state.occupy(&cluster_id, "updating");
    let task = start_task(
        state,
        req,
        s,
        "CreateClusterNodePool",
        "nodepool_create",
        &cluster_id,
        vec!["CreateScalingGroup", "CreateInstances", "JoinNodes"],
        Effect::NodePoolReady {
            nodepool_id: id.clone(),
            grows_by: size,
        },
    );
    changing(state, &cluster_id, &id, &task, size);
    Ok(Some(
        json!({"nodepool_id": id, "request_id": req.request_id, "task_id": task}),
    ))
}

/// Notes that `task` moves `nodes` nodes of the pool (none: its configuration only).
fn changing(state: &mut Resources, cluster_id: &str, id: &str, task: &str, nodes: i64) {
    if let Some(np) = state
        .clusters
        .get_mut(cluster_id)
        .and_then(|c| c.nodepools.get_mut(id))
    {
        np.change = Some(NodeChange {
            task_id: task.to_string(),
            nodes,
        });
    }
}

/// The task changing the pool's nodes, if one runs.
fn task_of<'a>(state: &'a Resources, np: &NodePool) -> Option<&'a Task> {
    np.change.as_ref().and_then(|c| state.tasks.get(&c.task_id))
}

pub fn list(state: &mut Resources, req: &Request) -> Answer {
    let cluster = visible(state, req, req.path_param("cluster_id"))?;
    let name = req.query_param("NodepoolName");
    let pools: Vec<Value> = cluster
        .nodepools
        .values()
        .filter(|np| name.is_none_or(|n| np.name == n))
        .map(|np| np.to_json(&cluster.region_id, task_of(state, np)))
        .collect();
    Ok(Some(json!({ "nodepools": pools })))
}

/// `DescribeClusterNodes`: the nodes of the cluster's node pools as their counts say (serving
/// nodes `running`, new ones `initial`, failed ones `failed`, leaving ones `removing`), in the
/// API's shape, filtered by `nodepool_id` and `state` and paged by `pageSize` (at most 100, as
/// the API) and `pageNumber`.
pub fn nodes(state: &mut Resources, req: &Request) -> Answer {
    let cluster = visible(state, req, req.path_param("cluster_id"))?;
    let only_pool = req.query_param("nodepool_id").filter(|p| !p.is_empty());
    let wanted_state = req
        .query_param("state")
        .filter(|s| !s.is_empty() && *s != "all");
    let (page_size, page_number) = req.page("pageSize", "pageNumber");
    let mut all = Vec::new();
    for (p, np) in cluster.nodepools.values().enumerate() {
        if only_pool.is_some_and(|id| id != np.id) {
            continue;
        }
        let n = np.counts(task_of(state, np));
        let states = [
            ("running", n.serving),
            ("removing", n.removing),
            ("initial", n.initial),
            ("failed", n.failed),
        ];
        let mut index = 0;
        for (node_state, count) in states {
            for _ in 0..count.max(0) {
                if wanted_state.is_none_or(|w| w == node_state) {
                    all.push(node_json(cluster, np, p, index, node_state));
                }
                index += 1;
            }
        }
    }
    let total = all.len();
    let page: Vec<Value> = all
        .into_iter()
        .skip((page_number - 1) * page_size)
        .take(page_size)
        .collect();
    Ok(Some(json!({
        "nodes": page,
        "page": {"page_number": page_number, "page_size": page_size, "total_count": total},
    })))
}

/// One node of a pool, with ids and addresses derived from its position.
fn node_json(cluster: &Cluster, np: &NodePool, pool: usize, n: i64, state: &str) -> Value {
    let suffix = format!("{:02x}{:04x}", pool % 256, n);
    let ip = format!("10.{}.{}.{}", pool % 256, n / 250, n % 250 + 2);
    let zone = format!(
        "{}-{}",
        cluster.region_id,
        ["a", "b", "c"][(n % 3) as usize]
    );
    let created = crate::state::rfc3339(np.created);
    json!({
        "creation_time": created,
        "expired_time": "2099-12-31T15:59:00+08:00",
        "host_name": format!("{}.{ip}", cluster.region_id),
        "image_id": "aliyun_3_x64_20G_alibase_20240819.vhd",
        "instance_charge_type": "PostPaid",
        "instance_id": format!("i-sim{}{suffix}", &cluster.id[1..9.min(cluster.id.len())]),
        "instance_name": format!("worker-k8s-for-cs-{}", cluster.id),
        "instance_role": "Worker",
        "instance_status": match state {
            "running" | "removing" => "Running",
            "failed" => "Stopped",
            _ => "Starting",
        },
        "instance_type": "ecs.g7.xlarge",
        "instance_type_family": "ecs.g7",
        "ip_address": [ip.clone()],
        "is_aliyun_node": true,
        "node_name": format!("{}.{ip}", cluster.region_id),
        "node_status": if state == "running" { "Ready" } else { "NotReady" },
        "error_message": if state == "failed" {
            np.last_error.as_ref().map(|(_, m, _)| m.clone()).unwrap_or_default()
        } else {
            String::new()
        },
        "nodepool_id": np.id,
        "source": "ess_attach",
        "spot_strategy": "NoSpot",
        "state": state,
        "zone_id": zone,
    })
}

pub fn detail(state: &mut Resources, req: &Request) -> Answer {
    let cluster = visible(state, req, req.path_param("cluster_id"))?;
    let np = pool(cluster, req.path_param("nodepool_id"))?;
    Ok(Some(np.to_json(&cluster.region_id, task_of(state, np))))
}

pub fn modify(state: &mut Resources, req: &Request, s: &SimSettings) -> Answer {
    let cluster_id = req.path_param("cluster_id").to_string();
    let id = req.path_param("nodepool_id").to_string();
    let body = body_json(req)?;
    let cluster = visible_mut(state, req, &cluster_id)?;
    let np = cluster
        .nodepools
        .get_mut(&id)
        .ok_or_else(|| not_found(&id))?;
    require_active(np)?;
    let patch = spec_of(body);
    let resize = patch["scaling_group"]["desired_size"]
        .as_i64()
        .map(|n| n - np.desired_size);
    if let Some(name) = patch["nodepool_info"]["name"].as_str() {
        np.name = name.to_string();
    }
    merge(&mut np.spec, &patch);
    let delta = resize.unwrap_or(0);
    np.set_state(match delta {
        d if d > 0 => "scaling",
        d if d < 0 => "removing",
        _ => "updating",
    });
    np.desired_size += delta;
    np.updated = OffsetDateTime::now_utc();
    let effect = match delta {
        0 => Effect::NodePoolUpdated(id.clone()),
        _ => Effect::NodePoolReady {
            nodepool_id: id.clone(),
            grows_by: delta,
        },
    };
    state.occupy(&cluster_id, "updating");
    let task = start_task(
        state,
        req,
        s,
        "ModifyClusterNodePool",
        "nodepool_update",
        &cluster_id,
        vec!["UpdateScalingGroup", "UpdateNodes"],
        effect,
    );
    changing(state, &cluster_id, &id, &task, delta);
    Ok(Some(
        json!({"nodepool_id": id, "request_id": req.request_id, "task_id": task}),
    ))
}

pub fn scale(state: &mut Resources, req: &Request, s: &SimSettings) -> Answer {
    let cluster_id = req.path_param("cluster_id").to_string();
    let id = req.path_param("nodepool_id").to_string();
    let body = body_json(req)?;
    let count = body["count"].as_i64().filter(|n| *n > 0).ok_or_else(|| {
        ApiError::new(
            400,
            "InvalidParameter.Count",
            "count must be a positive integer",
        )
    })?;
    let cluster = visible_mut(state, req, &cluster_id)?;
    require_running(cluster)?;
    let np = cluster
        .nodepools
        .get_mut(&id)
        .ok_or_else(|| not_found(&id))?;
    require_active(np)?;
    np.set_state("scaling");
    np.desired_size += count;
    state.occupy(&cluster_id, "scaling");
    let task = start_task(
        state,
        req,
        s,
        "ScaleClusterNodePool",
        "nodepool_scaleout",
        &cluster_id,
        vec!["CreateInstances", "JoinNodes"],
        Effect::NodePoolReady {
            nodepool_id: id.clone(),
            grows_by: count,
        },
    );
    changing(state, &cluster_id, &id, &task, count);
    Ok(Some(json!({ "task_id": task })))
}

pub fn delete(state: &mut Resources, req: &Request, s: &SimSettings) -> Answer {
    let cluster_id = req.path_param("cluster_id").to_string();
    let id = req.path_param("nodepool_id").to_string();
    let cluster = visible_mut(state, req, &cluster_id)?;
    let np = cluster
        .nodepools
        .get_mut(&id)
        .ok_or_else(|| not_found(&id))?;
    if np.state == "deleting" {
        return Err(ApiError::new(
            400,
            "ErrorNodePoolState",
            format!("node pool {id} is already being deleted"),
        ));
    }
    np.set_state("deleting");
    let nodes = np.serving + np.failed;
    state.occupy(&cluster_id, "updating");
    let task = start_task(
        state,
        req,
        s,
        "DeleteClusterNodepool",
        "nodepool_delete",
        &cluster_id,
        vec!["DrainNodes", "ReleaseInstances", "DeleteScalingGroup"],
        Effect::NodePoolDeleted(id.clone()),
    );
    changing(state, &cluster_id, &id, &task, -nodes);
    Ok(Some(json!({"request_id": req.request_id, "task_id": task})))
}
