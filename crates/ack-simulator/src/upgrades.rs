//! Cluster upgrades: `UpgradeCluster` starts a task that moves through pre-check, control plane
//! and node pools; `GetUpgradeStatus` reports it in the API's (older) shape; pause, resume and
//! cancel act on the task (each an event of the cluster's), and a paused upgrade does not
//! progress.

use super::handlers::{body_json, start_task, visible, visible_mut, Answer};
use super::state::{Effect, Resources, Task};
use super::{ApiError, Request, SimSettings};
use serde_json::json;

fn state_error(message: String) -> ApiError {
    ApiError::new(400, "ErrorClusterUpgradeState", message)
}

/// The cluster's latest upgrade task, if it has one.
fn upgrade_task<'a>(
    state: &'a mut Resources,
    req: &Request,
) -> Result<Option<&'a mut Task>, ApiError> {
    let cluster = visible(state, req, req.path_param("cluster_id"))?;
    let id = cluster.upgrade_task.clone();
    Ok(id.and_then(move |id| state.tasks.get_mut(&id)))
}

pub fn upgrade(state: &mut Resources, req: &Request, s: &SimSettings) -> Answer {
    let cluster_id = req.path_param("cluster_id").to_string();
    let body = body_json(req)?;
    let target = ["next_version", "version"]
        .iter()
        .find_map(|k| body[*k].as_str().filter(|v| !v.is_empty()))
        .ok_or_else(|| {
            ApiError::new(
                400,
                "MissingParameter.NextVersion",
                "next_version is mandatory",
            )
        })?
        .to_string();
    if let Some(t) = upgrade_task(state, req)? {
        if !t.is_finished() {
            return Err(state_error(format!(
                "an upgrade of cluster {cluster_id} is already {}",
                t.state()
            )));
        }
    }
    let cluster = visible(state, req, &cluster_id)?;
    if !matches!(cluster.state.as_str(), "running" | "updating_failed") {
        return Err(ApiError::new(
            400,
            "ErrorClusterState",
            format!("cluster {cluster_id} is {}, not running", cluster.state),
        ));
    }
    if cluster.version == target {
        return Err(ApiError::new(
            400,
            "ErrorClusterVersion",
            format!("cluster {cluster_id} already runs {target}"),
        ));
    }
    let mut stages = vec!["PreCheck", "UpgradeControlPlane"];
    if body["master_only"].as_bool() != Some(true) {
        stages.push("UpgradeNodePools");
    }
    let task = start_task(
        state,
        req,
        s,
        "UpgradeCluster",
        "cluster_upgrade",
        &cluster_id,
        stages,
        Effect::ClusterUpgraded(target),
    );
    let cluster = visible_mut(state, req, &cluster_id)?;
    cluster.state = "updating".into();
    cluster.upgrade_task = Some(task.clone());
    Ok(Some(
        json!({"cluster_id": cluster_id, "request_id": req.request_id, "task_id": task}),
    ))
}

pub fn status(state: &mut Resources, req: &Request) -> Answer {
    let Some(task) = upgrade_task(state, req)? else {
        return Ok(Some(json!({
            "status": "", "upgrade_step": "not_start", "error_message": "",
            "precheck_report_id": "", "upgrade_task": {"status": "", "message": ""},
        })));
    };
    let task_state = task.state();
    let status = match task_state {
        "paused" => "pause",
        other => other,
    };
    let in_stage = if task.stage_index() == 0 {
        "prechecking"
    } else {
        "upgrading"
    };
    let step = match task_state {
        "paused" => "pause",
        "success" => "success",
        _ => in_stage,
    };
    let (error_message, message) = match task.error() {
        Some((_, m)) => (m.clone(), m),
        None => (String::new(), task.current_stage().to_string()),
    };
    Ok(Some(json!({
        "status": status,
        "upgrade_step": step,
        "error_message": error_message,
        "precheck_report_id": format!("pr-{}", task.id.trim_start_matches("T-")),
        "upgrade_task": {"status": status, "message": message},
    })))
}

pub fn pause(state: &mut Resources, req: &Request) -> Answer {
    match upgrade_task(state, req)? {
        Some(t) if t.state() == "running" => {
            t.pause();
            let id = t.id.clone();
            state.note(
                &id,
                "info",
                "UpgradePaused",
                format!("upgrade task {id} paused"),
            );
            Ok(None)
        }
        Some(t) => Err(state_error(format!(
            "the upgrade is {}, not running",
            t.state()
        ))),
        None => Err(state_error("the cluster has no upgrade to pause".into())),
    }
}

pub fn resume(state: &mut Resources, req: &Request) -> Answer {
    match upgrade_task(state, req)? {
        Some(t) if t.state() == "paused" => {
            t.resume();
            let id = t.id.clone();
            state.note(
                &id,
                "info",
                "UpgradeResumed",
                format!("upgrade task {id} resumed"),
            );
            Ok(None)
        }
        Some(t) => Err(state_error(format!(
            "the upgrade is {}, not paused",
            t.state()
        ))),
        None => Err(state_error("the cluster has no upgrade to resume".into())),
    }
}

pub fn cancel(state: &mut Resources, req: &Request) -> Answer {
    let canceled = match upgrade_task(state, req)? {
        Some(t) if !t.is_finished() => {
            t.cancel();
            t.id.clone()
        }
        Some(t) => {
            return Err(state_error(format!(
                "the upgrade is {}, nothing to cancel",
                t.state()
            )))
        }
        None => return Err(state_error("the cluster has no upgrade to cancel".into())),
    };
    // A canceled task is never applied, so its end is recorded here.
    state.note(
        &canceled,
        "warning",
        "TaskCanceled",
        format!("upgrade task {canceled} was canceled"),
    );
    // The control plane stays at its version; the cluster serves again (once no other task
    // works on it).
    let cluster_id = visible(state, req, req.path_param("cluster_id"))?
        .id
        .clone();
    state.release(&cluster_id);
    Ok(None)
}
