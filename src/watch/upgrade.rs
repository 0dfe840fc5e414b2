//! How upgrades become a [`WatchStatus`]: a cluster's (`GetUpgradeStatus`: its steps as stages)
//! and add-ons' (`DescribeClusterAddonsUpgradeStatus`: each named add-on's state, progress as
//! the share of them finished).

use super::answer::Node;
use super::target::{error_of, phase_of, History};
use crate::proto::gateway::{AddonStatus, Phase, WatchStatus, WorkError};
use tonic::Status;

/// A cluster upgrade (`GetUpgradeStatus`).
pub(super) fn read_cluster(
    v: &Node,
    history: &mut History,
    status: &mut WatchStatus,
) -> Option<Status> {
    status.state = v.get("status").text();
    status.stage = v.get("upgrade_step").text();
    if !history.seen && status.state.is_empty() && status.stage == "not_start" {
        return Some(Status::failed_precondition(format!(
            "cluster {} has no upgrade to watch",
            status.target_id
        )));
    }
    status.phase = phase_of(&status.state) as i32;
    status.stages = history.step(&status.stage);
    let task = &v.get("upgrade_task");
    status.message = task.get("message").text();
    let task_state = task.get("status").text();
    if !task_state.is_empty() {
        status
            .attributes
            .insert("upgrade_task_status".into(), task_state);
    }
    let report = v.get("precheck_report_id").text();
    if !report.is_empty() {
        status
            .attributes
            .insert("precheck_report_id".into(), report);
    }
    let error_message = v.get("error_message").text();
    let phase = phase_of(&status.state);
    if matches!(phase, Phase::Failed | Phase::Canceled) {
        // GetUpgradeStatus has no error code; its status word is the most precise one there is.
        status.error = Some(WorkError {
            code: status.state.clone(),
            message: if error_message.is_empty() {
                status.message.clone()
            } else {
                error_message
            },
        });
    }
    if phase == Phase::Succeeded {
        status.progress_percent = Some(100);
    }
    None
}

/// Add-on upgrades (`DescribeClusterAddonsUpgradeStatus`): done when every named add-on is.
pub(super) fn read_addons(
    wanted: &[String],
    v: &Node,
    history: &mut History,
    status: &mut WatchStatus,
) -> Option<Status> {
    let entries = v.get("entries");
    let mut statuses = Vec::new();
    for name in wanted {
        let entry = entries.get(name);
        if entry.is_absent() {
            return Some(Status::not_found(format!(
                "add-on {name} is not installed in cluster {}",
                status.target_id
            )));
        };
        let tasks = &entry.get("tasks");
        let state = tasks.get("status").text();
        let error_node = tasks.get("error");
        let error = match error_node.as_str() {
            _ if error_node.is_object() => error_of(&error_node),
            Some(m) if !m.is_empty() => Some(WorkError {
                code: state.clone(),
                message: m.to_string(),
            }),
            _ => None,
        };
        let message = tasks.get("message").text();
        statuses.push((
            AddonStatus {
                name: name.clone(),
                phase: if state.is_empty() {
                    // Never upgraded: nothing in progress.
                    Phase::Succeeded
                } else {
                    phase_of(&state)
                } as i32,
                state,
                version: entry.get("addon_info").get("version").text(),
                target_version: tasks.get("target_version").text(),
                message,
            },
            error,
        ));
    }
    if !history.seen && statuses.iter().all(|(a, _)| a.state.is_empty()) {
        return Some(Status::failed_precondition(format!(
            "no upgrade of {} in cluster {} to watch",
            wanted.join(", "),
            status.target_id
        )));
    }
    let phases: Vec<Phase> = statuses
        .iter()
        .map(|(a, _)| Phase::try_from(a.phase).unwrap_or(Phase::Running))
        .collect();
    let finished = phases
        .iter()
        .filter(|p| matches!(p, Phase::Succeeded | Phase::Failed | Phase::Canceled))
        .count();
    let phase = if finished < phases.len() {
        if phases.contains(&Phase::Running) {
            Phase::Running
        } else {
            Phase::Paused
        }
    } else if phases.contains(&Phase::Failed) {
        Phase::Failed
    } else if phases.contains(&Phase::Canceled) {
        Phase::Canceled
    } else {
        Phase::Succeeded
    };
    status.phase = phase as i32;
    status.state = match phase {
        Phase::Succeeded => "success",
        Phase::Failed => "failed",
        Phase::Canceled => "canceled",
        Phase::Paused => "paused",
        _ => "running",
    }
    .into();
    status.progress_percent = Some((finished * 100 / phases.len().max(1)) as u32);
    status.stage = if let [(only, _)] = statuses.as_slice() {
        only.message.clone()
    } else {
        format!("{finished}/{} add-ons finished", phases.len())
    };
    status.stages = history.step(&status.stage);
    status.error = statuses.iter().find_map(|(a, e)| {
        matches!(
            Phase::try_from(a.phase),
            Ok(Phase::Failed | Phase::Canceled)
        )
        .then(|| {
            e.clone().unwrap_or_else(|| WorkError {
                code: a.state.clone(),
                message: a.message.clone(),
            })
        })
    });
    status.message = match &status.error {
        Some(e) => e.message.clone(),
        None => status.stage.clone(),
    };
    status.addons = statuses.into_iter().map(|(a, _)| a).collect();
    None
}
