//! How one sending of a write ended, and what follows from it: the outcome's class (answered,
//! refused, not sent, unknown), what the key's record becomes, a recorded answer replayed, and
//! the OUTCOME_UNKNOWN error.

use super::super::Reply;
use crate::error::{GatewayError, UpstreamError};
use crate::table::Operation;
use crate::writes::keys::{KeyScope, Placement, Record, RecordState, Recorded};
use bytes::Bytes;

/// How one sending of a write ended.
pub(super) enum Sent {
    /// Answered OK.
    Answered(Reply),
    /// The cloud refused; `stable` when asking again would be refused again.
    Refused { error: GatewayError, stable: bool },
    /// Nothing reached the cloud.
    Unsent(GatewayError),
    /// It may have reached the cloud, and no answer came.
    Unknown(GatewayError),
}

/// The key a sending records its outcome under.
pub(super) struct KeyRecord {
    pub(super) scope: KeyScope,
    pub(super) fingerprint: String,
    pub(super) placement: Placement,
}

impl KeyRecord {
    /// What the key holds after a sending: the answer or a stable refusal; `Unknown` when it
    /// may have been applied without an answer; nothing when nothing was applied and asking
    /// again may be answered differently.
    pub(super) fn after(&self, sent: &Sent) -> Option<Record> {
        let state = match sent {
            Sent::Answered(reply) => RecordState::Done {
                answer: Recorded::answer(&reply.message, reply.request_id.clone(), None),
            },
            Sent::Refused {
                error:
                    GatewayError::Upstream(UpstreamError::Api {
                        host,
                        status,
                        code,
                        message,
                        request_id,
                        ..
                    }),
                stable: true,
            } => RecordState::Done {
                answer: Recorded::Refusal {
                    host: host.clone(),
                    status: *status,
                    code: code.clone(),
                    message: message.to_string(),
                    request_id: request_id.clone(),
                },
            },
            Sent::Refused { .. } | Sent::Unsent(_) => return None,
            Sent::Unknown(_) => RecordState::Unknown,
        };
        Some(Record {
            fingerprint: self.fingerprint.clone(),
            state,
        })
    }
}

/// Whether the cloud refused because the cluster is busy with other work.
pub(super) fn is_busy_refusal(outcome: &Result<Reply, GatewayError>) -> bool {
    matches!(
        outcome,
        Err(GatewayError::Upstream(UpstreamError::Api { code, message, .. }))
            if crate::error::is_busy(code, message)
    )
}

/// How a sending ended, from the attempts' result and whether the request was sent.
pub(super) fn classify(outcome: Result<Reply, GatewayError>, sent: bool) -> Sent {
    match outcome {
        Ok(reply) => Sent::Answered(reply),
        Err(error @ GatewayError::Upstream(UpstreamError::Api { .. })) => {
            let stable = match &error {
                GatewayError::Upstream(e @ UpstreamError::Api { code, message, .. }) => {
                    !crate::error::is_busy(code, message)
                        && matches!(
                            e.code(),
                            tonic::Code::InvalidArgument
                                | tonic::Code::NotFound
                                | tonic::Code::AlreadyExists
                                | tonic::Code::OutOfRange
                        )
                }
                _ => false,
            };
            Sent::Refused { error, stable }
        }
        Err(
            error @ GatewayError::Upstream(
                UpstreamError::Timeout { .. }
                | UpstreamError::Transport { .. }
                | UpstreamError::TooLarge { .. },
            ),
        )
        | Err(error @ GatewayError::BadResponse(_))
            if sent =>
        {
            Sent::Unknown(error)
        }
        Err(error) => Sent::Unsent(error),
    }
}

/// The recorded answer, replayed: an answer, or the refusal the cloud gave.
pub(super) fn replay(answer: &Recorded) -> Result<Reply, GatewayError> {
    match answer {
        Recorded::Answer { request_id, .. } => Ok(Reply {
            message: Bytes::from(answer.message().unwrap_or_default()),
            request_id: request_id.clone(),
            cache: None,
            replay: true,
        }),
        Recorded::Refusal {
            host,
            status,
            code,
            message,
            request_id,
        } => Err(GatewayError::Replayed(Box::new(GatewayError::Upstream(
            UpstreamError::Api {
                host: host.clone(),
                status: *status,
                code: code.clone(),
                message: message.clone().into_boxed_str(),
                request_id: request_id.clone(),
                retry_after: None,
                diagnosis: None,
            },
        )))),
    }
}

/// ABORTED with `OUTCOME_UNKNOWN`: an earlier sending got no answer, and nothing can tell
/// whether it was applied.
pub(super) fn outcome_unknown(op: &Operation, target: &str) -> GatewayError {
    let mut check = Vec::new();
    if op.policy.scope.contains_key("nodepool") {
        check.push("the node pool (DescribeClusterNodePoolDetail)");
    }
    if op.policy.scope.contains_key("cluster") {
        check.push("the cluster (DescribeClusterDetail) and its tasks (DescribeTasks)");
    }
    if check.is_empty() {
        check.push("the resources it changes");
    }
    GatewayError::OutcomeUnknown {
        operation: op.name.clone(),
        target: target.to_string(),
        check: check.join(" and "),
    }
}
