//! Cluster add-ons (components): installed, uninstalled and upgraded through tasks, which keep
//! the cluster `updating` until they end. An upgrade moves through `Running` to `Success` or
//! `Failed` over the task's time, visible through the upgrade-status operations, while the
//! add-on instance reports `upgrading` and then the new version.

use super::handlers::{body_json, query_list, require_running, start_task, visible, Answer};
use super::state::{rfc3339, Addon, Cluster, Effect, Resources, Task};
use super::{ApiError, Request, SimSettings};
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;

/// The version an add-on is installed at when the request names none.
const DEFAULT_VERSION: &str = "v1.0.0-aliyun";

fn not_found(name: &str) -> ApiError {
    ApiError::new(
        404,
        "AddonNotFound",
        format!("add-on {name} is not installed"),
    )
}

fn installed<'a>(cluster: &'a Cluster, name: &str) -> Result<&'a Addon, ApiError> {
    cluster.addons.get(name).ok_or_else(|| not_found(name))
}

/// The names in a body list, each once; a repeated or missing name is refused.
fn names(items: &[Value], key: &str) -> Result<Vec<String>, ApiError> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for item in items {
        let name = item[key]
            .as_str()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| ApiError::new(400, "MissingParameter", format!("{key} is mandatory")))?;
        if !seen.insert(name) {
            return Err(ApiError::new(
                400,
                "InvalidParameter",
                format!("add-on {name} is named twice"),
            ));
        }
        out.push(name.to_string());
    }
    if out.is_empty() {
        return Err(ApiError::new(
            400,
            "MissingParameter",
            "the body must list at least one add-on",
        ));
    }
    Ok(out)
}

fn body_list(req: &Request) -> Result<Vec<Value>, ApiError> {
    Ok(body_json(req)?.as_array().cloned().unwrap_or_default())
}

fn require_active(addon: &Addon) -> Result<(), ApiError> {
    if addon.state != "active" {
        return Err(ApiError::new(
            400,
            "ErrorAddonState",
            format!("add-on {} is {}, not active", addon.name, addon.state),
        ));
    }
    Ok(())
}

pub fn install(state: &mut Resources, req: &Request, s: &SimSettings) -> Answer {
    let cluster_id = req.path_param("cluster_id").to_string();
    let items = body_list(req)?;
    let wanted = names(&items, "name")?;
    let cluster = visible(state, req, &cluster_id)?;
    require_running(cluster)?;
    for name in &wanted {
        if cluster
            .addons
            .get(name)
            .is_some_and(|a| a.state != "failed")
        {
            return Err(ApiError::new(
                400,
                "AddonAlreadyExist",
                format!("add-on {name} is already installed"),
            ));
        }
    }
    if let Some(c) = state.clusters.get_mut(&cluster_id) {
        for item in &items {
            let name = item["name"].as_str().unwrap_or_default().to_string();
            let version = item["version"]
                .as_str()
                .filter(|v| !v.is_empty())
                .unwrap_or(DEFAULT_VERSION);
            c.addons.insert(
                name.clone(),
                Addon {
                    name,
                    version: version.to_string(),
                    config: item["config"].as_str().unwrap_or_default().to_string(),
                    state: "installing".into(),
                    upgrade_task: None,
                    target_version: None,
                },
            );
        }
    }
    state.occupy(&cluster_id, "updating");
    let task = start_task(
        state,
        req,
        s,
        "InstallClusterAddons",
        "addon_install",
        &cluster_id,
        vec!["RenderManifests", "ApplyManifests", "WaitReady"],
        Effect::AddonsInstalled(wanted),
    );
    Ok(Some(
        json!({"cluster_id": cluster_id, "request_id": req.request_id, "task_id": task}),
    ))
}

pub fn uninstall(state: &mut Resources, req: &Request, s: &SimSettings) -> Answer {
    let cluster_id = req.path_param("cluster_id").to_string();
    let wanted = names(&body_list(req)?, "name")?;
    let cluster = visible(state, req, &cluster_id)?;
    for name in &wanted {
        let addon = installed(cluster, name)?;
        if matches!(
            addon.state.as_str(),
            "deleting" | "upgrading" | "installing"
        ) {
            return Err(ApiError::new(
                400,
                "ErrorAddonState",
                format!("add-on {name} is {}", addon.state),
            ));
        }
    }
    if let Some(c) = state.clusters.get_mut(&cluster_id) {
        for name in &wanted {
            if let Some(a) = c.addons.get_mut(name) {
                a.state = "deleting".into();
            }
        }
    }
    state.occupy(&cluster_id, "updating");
    let task = start_task(
        state,
        req,
        s,
        "UnInstallClusterAddons",
        "addon_uninstall",
        &cluster_id,
        vec!["DeleteManifests", "CleanUp"],
        Effect::AddonsRemoved(wanted),
    );
    Ok(Some(
        json!({"cluster_id": cluster_id, "request_id": req.request_id, "task_id": task}),
    ))
}

pub fn upgrade(state: &mut Resources, req: &Request, s: &SimSettings) -> Answer {
    let cluster_id = req.path_param("cluster_id").to_string();
    let items = body_list(req)?;
    let wanted = names(&items, "component_name")?;
    let cluster = visible(state, req, &cluster_id)?;
    let mut targets = Vec::new();
    for (name, item) in wanted.iter().zip(&items) {
        require_active(installed(cluster, name)?)?;
        let next = item["next_version"]
            .as_str()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                ApiError::new(
                    400,
                    "MissingParameter.NextVersion",
                    "next_version is mandatory",
                )
            })?;
        targets.push((name.clone(), next.to_string()));
    }
    state.occupy(&cluster_id, "updating");
    let task = start_task(
        state,
        req,
        s,
        "UpgradeClusterAddons",
        "addon_upgrade",
        &cluster_id,
        vec!["PreCheck", "UpgradeComponents", "PostCheck"],
        Effect::AddonsUpgraded(targets.clone()),
    );
    if let Some(c) = state.clusters.get_mut(&cluster_id) {
        for (name, next) in targets {
            if let Some(a) = c.addons.get_mut(&name) {
                a.state = "upgrading".into();
                a.upgrade_task = Some(task.clone());
                a.target_version = Some(next);
            }
        }
    }
    Ok(Some(
        json!({"cluster_id": cluster_id, "request_id": req.request_id, "task_id": task}),
    ))
}

pub fn versions(state: &mut Resources, req: &Request) -> Answer {
    let cluster = visible(state, req, req.path_param("cluster_id"))?;
    let map: Map<String, Value> = cluster
        .addons
        .values()
        .map(|a| {
            (
                a.name.clone(),
                json!({
                    "component_name": a.name, "version": a.version, "exist": true,
                    "required": super::state::DEFAULT_ADDONS.iter().any(|(n, _)| *n == a.name),
                    // The simulator keeps no catalogue of newer versions.
                    "can_upgrade": false, "next_version": "", "ready_to_upgrade": "false",
                    "changed": "false", "policy": "overwrite", "message": "", "template": "",
                    "value": a.config,
                }),
            )
        })
        .collect();
    Ok(Some(Value::Object(map)))
}

/// The latest upgrade of an add-on, in the shape of the upgrade-status operations' `tasks`.
fn upgrade_task_json(addon: &Addon, task: Option<&Task>) -> Value {
    let Some(task) = task else {
        return json!({});
    };
    let status = match task.state() {
        "running" => "Running",
        "paused" => "Paused",
        "success" => "Success",
        "canceled" => "Canceled",
        _ => "Failed",
    };
    let mut v = json!({
        "status": status,
        "current_version": addon.version,
        "target_version": addon.target_version,
        "created_at": rfc3339(task.started_at),
        "message": task.current_stage(),
    });
    if task.is_finished() {
        v["finished_at"] = json!(rfc3339(task.started_at + task.duration));
    }
    if let Some((code, message)) = task.error() {
        v["message"] = json!(message);
        v["error"] = json!({"code": code, "message": message});
    }
    v
}

fn addon_status(state: &Resources, addon: &Addon, name_key: &str) -> Value {
    let task = addon
        .upgrade_task
        .as_ref()
        .and_then(|id| state.tasks.get(id));
    json!({
        "template": "",
        "can_upgrade": false,
        "addon_info": {
            name_key: addon.name, "version": addon.version, "category": "", "message": "",
            "yaml": "",
        },
        "tasks": upgrade_task_json(addon, task),
    })
}

pub fn upgrade_status(state: &mut Resources, req: &Request) -> Answer {
    let cluster = visible(state, req, req.path_param("cluster_id"))?;
    let addon = installed(cluster, req.path_param("component_id"))?;
    Ok(Some(addon_status(state, addon, "component_name")))
}

pub fn upgrade_statuses(state: &mut Resources, req: &Request) -> Answer {
    let cluster = visible(state, req, req.path_param("cluster_id"))?;
    let wanted = query_list(req, "componentIds");
    // Names that are not installed are left out, as the API does.
    let map: Map<String, Value> = wanted
        .iter()
        .filter_map(|n| cluster.addons.get(n))
        .map(|a| (a.name.clone(), addon_status(state, a, "name")))
        .collect();
    Ok(Some(Value::Object(map)))
}

pub fn instance(state: &mut Resources, req: &Request) -> Answer {
    let cluster = visible(state, req, req.path_param("cluster_id"))?;
    let a = installed(cluster, req.path_param("instance_name"))?;
    Ok(Some(json!({
        "name": a.name, "version": a.version, "state": a.state, "config": a.config,
        "logging": {"capable": false, "enabled": false, "log_project": "", "logstore": ""},
    })))
}

pub fn instances(state: &mut Resources, req: &Request) -> Answer {
    let cluster = visible(state, req, req.path_param("cluster_id"))?;
    let addons: Vec<Value> = cluster.addons.values().map(Addon::to_json).collect();
    Ok(Some(json!({ "addons": addons })))
}
