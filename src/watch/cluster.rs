//! How a cluster's `DescribeClusterDetail` answer becomes a [`WatchStatus`]: its state (each
//! state a stage), done at a target state, failed at a failure state.

use super::answer::Node;
use super::target::History;
use crate::proto::gateway::{Phase, WatchStatus, WorkError};
use std::collections::BTreeMap;
use tonic::Status;

/// Cluster states that mean the cluster's last operation failed.
pub(super) fn is_failure_state(state: &str) -> bool {
    state == "failed" || state.ends_with("_failed")
}

pub(super) fn read(
    targets: &[String],
    v: &Node,
    history: &mut History,
    status: &mut WatchStatus,
) -> Option<Status> {
    status.state = v.get("state").text();
    status.stage = status.state.clone();
    status.stages = history.step(&status.state);
    let state = status.state.to_ascii_lowercase();
    let phase = if targets.contains(&state) {
        Phase::Succeeded
    } else if is_failure_state(&state) {
        Phase::Failed
    } else {
        Phase::Running
    };
    status.phase = phase as i32;
    let mut attributes = BTreeMap::new();
    for key in [
        "name",
        "current_version",
        "size",
        "cluster_type",
        "region_id",
    ] {
        let value = v.get(key).text();
        if !value.is_empty() {
            attributes.insert(key.to_string(), value);
        }
    }
    status.attributes = attributes.into_iter().collect();
    match phase {
        Phase::Succeeded => status.progress_percent = Some(100),
        Phase::Failed => {
            status.error = Some(WorkError {
                code: status.state.clone(),
                message: format!("cluster {} is {}", status.target_id, status.state),
            });
            status.message = format!("cluster {} is {}", status.target_id, status.state);
        }
        _ => status.message = format!("cluster is {}", status.state),
    }
    None
}
