//! How a node pool's `DescribeClusterNodePoolDetail` answer becomes a [`WatchStatus`]: its state
//! (the stage, each state a stage), its node counts and conditions, a progress computed from
//! the counts, and whether the watch is over.
//!
//! - A target state is reached when the pool's state is one; `active` also needs its serving
//!   nodes to be as many as desired (right after a scale-out is asked for, the pool may still
//!   say `active` with fewer).
//! - A `failed` (or `*_failed`) state, or failed nodes, fail the watch (unless `deleted` is the
//!   aim: a pool being deleted takes its failed nodes with it), with the cloud's error: the
//!   reason and message of a condition that is not `True` (the `Ready` one first).
//! - Progress: serving nodes out of desired while the pool grows; nodes released out of those
//!   leaving while it shrinks or is deleted (measured from the most nodes seen).

use super::answer::Node;
use super::cluster::is_failure_state;
use super::target::History;
use crate::proto::gateway::{Condition, NodeCounts, Phase, WatchStatus, WorkError};
use tonic::Status;

pub(super) fn read(
    targets: &[String],
    v: &Node,
    history: &mut History,
    status: &mut WatchStatus,
) -> Option<Status> {
    let s = &v.get("status");
    status.state = s.get("state").text();
    status.stage = status.state.clone();
    status.stages = history.step(&status.state);
    let counts = NodeCounts {
        desired: v.get("scaling_group").get("desired_size").int(),
        total: s.get("total_nodes").int(),
        serving: s.get("serving_nodes").int(),
        healthy: s.get("healthy_nodes").int(),
        failed: s.get("failed_nodes").int(),
        removing: s.get("removing_nodes").int(),
        initial: s.get("initial_nodes").int(),
        offline: s.get("offline_nodes").int(),
    };
    history.peak_nodes = history.peak_nodes.max(counts.total);
    status.conditions = s
        .get("conditions")
        .items()
        .iter()
        .map(|c| Condition {
            r#type: c.get("type").text(),
            status: c.get("status").text(),
            reason: c.get("reason").text(),
            message: c.get("message").text(),
            last_transition_time: c.get("last_transition_time").text(),
        })
        .collect();
    let name = v.get("nodepool_info").get("name").text();
    if !name.is_empty() {
        status.attributes.insert("name".into(), name);
    }
    let state = status.state.to_ascii_lowercase();
    let settled = state != "active" || counts.serving >= counts.desired;
    let deleting = targets.iter().any(|t| t == "deleted");
    let phase = if targets.contains(&state) && settled {
        Phase::Succeeded
    } else if is_failure_state(&state) || (counts.failed > 0 && !deleting) {
        Phase::Failed
    } else {
        Phase::Running
    };
    status.phase = phase as i32;
    status.progress_percent = match phase {
        Phase::Succeeded => Some(100),
        _ => progress(&state, &counts, history.peak_nodes),
    };
    let mut message = format!("{} of {} nodes serving", counts.serving, counts.desired);
    for (n, what) in [
        (counts.initial, "joining"),
        (counts.removing, "removing"),
        (counts.failed, "failed"),
    ] {
        if n > 0 {
            message.push_str(&format!(", {n} {what}"));
        }
    }
    if phase == Phase::Failed {
        let error = cloud_error(status, &counts);
        status.message = error.message.clone();
        status.error = Some(error);
    } else {
        status.message = message;
    }
    status.node_counts = Some(counts);
    None
}

/// The percentage of a change of the pool's nodes, when one is going on.
fn progress(state: &str, n: &NodeCounts, peak: i64) -> Option<u32> {
    let target = if state == "deleting" { 0 } else { n.desired };
    let percent = if n.total > target && peak > target {
        (peak - n.total) * 100 / (peak - target)
    } else if n.serving < target {
        n.serving * 100 / target
    } else {
        return None;
    };
    // Not done until the state says so.
    Some(percent.clamp(0, 99) as u32)
}

/// The cloud's error for a failed pool: a condition that is not `True` (`Ready` first), or
/// else the state and the failed nodes.
fn cloud_error(status: &WatchStatus, n: &NodeCounts) -> WorkError {
    let failing = status
        .conditions
        .iter()
        .filter(|c| !c.status.eq_ignore_ascii_case("true") && !c.reason.is_empty())
        .min_by_key(|c| c.r#type != "Ready");
    match failing {
        Some(c) => WorkError {
            code: c.reason.clone(),
            message: if c.message.is_empty() {
                format!("node pool {} is {}", status.target_id, status.state)
            } else {
                c.message.clone()
            },
        },
        None if n.failed > 0 => WorkError {
            code: "FailedNodes".into(),
            message: format!(
                "node pool {} has {} failed nodes",
                status.target_id, n.failed
            ),
        },
        None => WorkError {
            code: status.state.clone(),
            message: format!("node pool {} is {}", status.target_id, status.state),
        },
    }
}
