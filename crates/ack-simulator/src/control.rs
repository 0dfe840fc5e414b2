//! The control API under `/__simulator/`: the recorded requests, the applied writes, faults to
//! inject, tasks to fail.

use super::*;

pub(crate) async fn list_requests(AxumState(shared): AxumState<Arc<Core>>) -> Response {
    let all: Vec<RecordedRequest> = shared
        .recorded
        .lock()
        .expect("record lock")
        .iter()
        .cloned()
        .collect();
    axum::Json(all).into_response()
}

/// `GET /__simulator/applied`: `{"count": N, "writes": [...]}` (see `AppliedWrites`).
pub(crate) async fn list_applied(AxumState(shared): AxumState<Arc<Core>>) -> Response {
    let applied = shared.applied.lock().expect("applied lock").snapshot(None);
    axum::Json(applied).into_response()
}

pub(crate) async fn add_fault(
    AxumState(shared): AxumState<Arc<Core>>,
    axum::Json(fault): axum::Json<Fault>,
) -> Response {
    shared.faults.lock().expect("faults lock").push_back(fault);
    http::StatusCode::NO_CONTENT.into_response()
}

/// The next task `operation` starts fails with this code and message.
#[derive(Debug, Deserialize)]
pub(crate) struct TaskFailure {
    pub(crate) operation: String,
    pub(crate) code: String,
    #[serde(default)]
    pub(crate) message: String,
}

pub(crate) async fn add_task_failure(
    AxumState(shared): AxumState<Arc<Core>>,
    axum::Json(failure): axum::Json<TaskFailure>,
) -> Response {
    shared
        .settings
        .queue_failure(&failure.operation, failure.code, failure.message);
    http::StatusCode::NO_CONTENT.into_response()
}
