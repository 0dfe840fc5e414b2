//! Node pools: created, modified, scaled and deleted through tasks, listed and described in the
//! API's shape. A pool echoes the spec it was given (minus the login password, which the API
//! never returns) with its `nodepool_info` and `status` filled in by the simulator.

use super::handlers::{body_json, require_running, start_task, visible, visible_mut, Answer};
use super::state::{new_id, Cluster, Effect, NodePool, State};
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

pub fn create(state: &mut State, req: &Request, s: &SimSettings) -> Answer {
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
    cluster.nodepools.insert(
        id.clone(),
        NodePool {
            id: id.clone(),
            name,
            state: "initial".into(),
            desired_size: 0,
            spec: spec_of(body),
            created: now,
            updated: now,
        },
    );
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
    Ok(Some(
        json!({"nodepool_id": id, "request_id": req.request_id, "task_id": task}),
    ))
}

pub fn list(state: &mut State, req: &Request) -> Answer {
    let cluster = visible(state, req, req.path_param("cluster_id"))?;
    let name = req.query_param("NodepoolName");
    let pools: Vec<Value> = cluster
        .nodepools
        .values()
        .filter(|np| name.is_none_or(|n| np.name == n))
        .map(|np| np.to_json(&cluster.region_id))
        .collect();
    Ok(Some(json!({ "nodepools": pools })))
}

pub fn detail(state: &mut State, req: &Request) -> Answer {
    let cluster = visible(state, req, req.path_param("cluster_id"))?;
    let np = pool(cluster, req.path_param("nodepool_id"))?;
    Ok(Some(np.to_json(&cluster.region_id)))
}

pub fn modify(state: &mut State, req: &Request, s: &SimSettings) -> Answer {
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
    np.state = "updating".into();
    np.updated = OffsetDateTime::now_utc();
    let effect = match resize {
        Some(delta) if delta != 0 => Effect::NodePoolReady {
            nodepool_id: id.clone(),
            grows_by: delta,
        },
        _ => Effect::NodePoolUpdated(id.clone()),
    };
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
    Ok(Some(
        json!({"nodepool_id": id, "request_id": req.request_id, "task_id": task}),
    ))
}

pub fn scale(state: &mut State, req: &Request, s: &SimSettings) -> Answer {
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
    np.state = "scaling".into();
    let task = start_task(
        state,
        req,
        s,
        "ScaleClusterNodePool",
        "nodepool_scaleout",
        &cluster_id,
        vec!["CreateInstances", "JoinNodes"],
        Effect::NodePoolReady {
            nodepool_id: id,
            grows_by: count,
        },
    );
    Ok(Some(json!({ "task_id": task })))
}

pub fn delete(state: &mut State, req: &Request, s: &SimSettings) -> Answer {
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
    np.state = "deleting".into();
    let task = start_task(
        state,
        req,
        s,
        "DeleteClusterNodepool",
        "nodepool_delete",
        &cluster_id,
        vec!["DrainNodes", "ReleaseInstances", "DeleteScalingGroup"],
        Effect::NodePoolDeleted(id),
    );
    Ok(Some(json!({"request_id": req.request_id, "task_id": task})))
}
