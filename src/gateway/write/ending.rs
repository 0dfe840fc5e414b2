//! How a write ended, for its journal entry (`Finished`), and when that is known (`Ending`):
//! now, or when its detached task ends because its caller left first. The entry's end is written
//! in the background.

use super::super::policy::response_fields;
use super::super::{Gateway, Reply};
use super::sent::Sent;
use crate::error::{GatewayError, UpstreamError};
use crate::table::Operation;
use crate::writes::journal::{Entry, Phase};
use crate::writes::keys::Recorded;
use std::time::Instant;

/// How a write ended, for its journal entry.
#[derive(Clone, Default)]
pub(super) struct Finished {
    phase: Phase,
    code: String,
    reason: String,
    message: String,
    request_id: String,
    task_id: String,
    replay: bool,
    /// How long it waited for its busy cluster.
    pub(super) queued_ms: u64,
    /// The cluster and node pool the answer names (what a create made).
    cluster_id: String,
    nodepool_id: String,
}

/// When a write's end is known: now, or when its detached task ends (its caller left first).
pub(super) enum Ending {
    Now(Finished),
    Later(tokio::task::JoinHandle<(Result<Reply, GatewayError>, Finished)>),
}

impl From<Finished> for Ending {
    fn from(f: Finished) -> Ending {
        Ending::Now(f)
    }
}

impl Finished {
    /// Nothing happened beyond the call's own error (filled in from it when journaled).
    pub(super) fn nothing() -> Finished {
        Finished::default()
    }

    /// A lost answer an outcome check's `read` found applied.
    pub(super) fn applied_per(read: &str, task_id: String) -> Finished {
        Finished {
            phase: Phase::Succeeded,
            code: "OK".into(),
            reason: format!("applied (from {read})"),
            task_id,
            ..Finished::default()
        }
    }

    pub(super) fn failed(e: &GatewayError) -> Finished {
        Finished {
            phase: Phase::Failed,
            code: crate::error::code_name(e.clone().into_status().code()).into(),
            reason: e.kind().into(),
            message: e.to_string(),
            ..Finished::default()
        }
    }

    /// A call answered from its key's record: what the recorded answer says (and names).
    pub(super) fn replayed(g: &Gateway, op: &Operation, answer: &Recorded) -> Finished {
        let mut f = match answer {
            Recorded::Answer { request_id, .. } => {
                let message = answer.message().unwrap_or_default();
                let [task_id, cluster_id, nodepool_id] = response_fields(
                    op,
                    g.service_of(op).ok(),
                    &message,
                    ["task_id", "cluster_id", "nodepool_id"],
                );
                Finished {
                    phase: Phase::Succeeded,
                    code: "OK".into(),
                    request_id: request_id.clone().unwrap_or_default(),
                    task_id,
                    cluster_id,
                    nodepool_id,
                    ..Finished::default()
                }
            }
            Recorded::Refusal {
                status,
                code,
                request_id,
                ..
            } => Finished {
                phase: Phase::Failed,
                code: crate::error::code_name(crate::error::classify(*status, code)).into(),
                reason: code.clone(),
                request_id: request_id.clone().unwrap_or_default(),
                ..Finished::default()
            },
        };
        f.replay = true;
        f
    }

    pub(super) fn from_sent(g: &Gateway, op: &Operation, sent: &Sent) -> Finished {
        match sent {
            Sent::Answered(reply) => {
                let [task_id, cluster_id, nodepool_id] = response_fields(
                    op,
                    g.service_of(op).ok(),
                    &reply.message,
                    ["task_id", "cluster_id", "nodepool_id"],
                );
                Finished {
                    cluster_id,
                    nodepool_id,
                    phase: if task_id.is_empty() {
                        Phase::Succeeded
                    } else {
                        Phase::TaskRunning
                    },
                    code: "OK".into(),
                    request_id: reply.request_id.clone().unwrap_or_default(),
                    task_id,
                    ..Finished::default()
                }
            }
            Sent::Refused { error, .. } | Sent::Unsent(error) => {
                let mut f = Finished::failed(error);
                if let GatewayError::Upstream(UpstreamError::Api {
                    code, request_id, ..
                }) = error
                {
                    f.reason.clone_from(code);
                    f.request_id = request_id.clone().unwrap_or_default();
                }
                f
            }
            Sent::Unknown(error) => Finished {
                phase: Phase::Unknown,
                reason: "OUTCOME_UNKNOWN".into(),
                ..Finished::failed(error)
            },
        }
    }

    /// What the call's own error says, when nothing else was learnt.
    pub(super) fn or_error(self, result: &Result<Reply, GatewayError>) -> Finished {
        match result {
            Err(e) if self.code.is_empty() => match e {
                GatewayError::OutcomeUnknown { .. } => Finished {
                    phase: Phase::Unknown,
                    reason: "OUTCOME_UNKNOWN".into(),
                    ..Finished::failed(e)
                },
                _ => Finished::failed(e),
            },
            _ => self,
        }
    }
}

impl Ending {
    /// Writes the entry's end, after its start, in the background (a write whose caller left
    /// is journaled when it ends).
    pub(super) fn journal(
        self,
        g: &Gateway,
        result: &Result<Reply, GatewayError>,
        mut entry: Entry,
        started: Instant,
    ) {
        let journal = g.journal.clone();
        let now = match self {
            Ending::Now(f) => Ok(f.or_error(result)),
            Ending::Later(handle) => Err(handle),
        };
        tokio::spawn(async move {
            let f = match now {
                Ok(f) => f,
                Err(handle) => match handle.await {
                    Ok((result, f)) => {
                        tracing::info!(operation = %entry.operation, phase = f.phase.as_str(), "a write whose caller left has ended");
                        f.or_error(&result)
                    }
                    Err(_) => return,
                },
            };
            entry.duration_ms = started.elapsed().as_millis() as u64;
            entry.phase = f.phase;
            entry.code = f.code;
            entry.reason = f.reason;
            entry.message = f.message.chars().take(300).collect();
            entry.request_id = f.request_id;
            entry.task_id = f.task_id;
            // What a create made, when the request could not name it.
            if entry.cluster_id.is_empty() {
                entry.cluster_id = f.cluster_id;
            }
            if entry.nodepool_id.is_empty() {
                entry.nodepool_id = f.nodepool_id;
            }
            entry.replay |= f.replay;
            entry.queued_ms = f.queued_ms;
            journal.put(entry).await;
        });
    }
}
