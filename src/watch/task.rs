//! How a task's `DescribeTaskInfo` answer becomes a [`WatchStatus`]: its state and stages as
//! the cloud reports them, its events (each once), and its error.

use super::answer::Node;
use super::target::{error_of, phase_of, History};
use crate::proto::gateway::{Phase, Stage, WatchStatus};
use tonic::Status;

/// A task (`DescribeTaskInfo`); like every reader, it fills `status` from an answer, or says
/// why the target cannot be watched.
pub(super) fn read(v: &Node, history: &mut History, status: &mut WatchStatus) -> Option<Status> {
    status.state = v.get("state").text();
    let phase = phase_of(&status.state);
    status.phase = phase as i32;
    status.stage = v.get("current_stage").text();
    status.stages = v
        .get("stages")
        .items()
        .iter()
        .map(|s| Stage {
            name: s.get("message").text(),
            state: s.get("state").text(),
            start_time: s.get("start_time").text(),
            end_time: s.get("end_time").text(),
        })
        .collect();
    history.add_events(&v.get("events").items());
    status.error = error_of(&v.get("error"));
    status.message = match &status.error {
        Some(e) => e.message.clone(),
        None => status.stage.clone(),
    };
    if phase == Phase::Succeeded {
        status.progress_percent = Some(100);
    }
    // Not `updated`: it changes on every read, and would make every poll look like a change.
    for key in ["task_type", "cluster_id", "created"] {
        let value = v.get(key).text();
        if !value.is_empty() {
            status.attributes.insert(key.to_string(), value);
        }
    }
    None
}
