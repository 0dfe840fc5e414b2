//! The gateway's errors, classified once into gRPC statuses with `google.rpc` details: the
//! errors that cross module boundaries are defined here (their modules re-export them), so that
//! this module depends on none of the modules that raise them.
//!
//! Invariant: no message built here contains a secret, a token or a signature; upstream
//! messages are scrubbed of the call's own credential values before they reach a caller.

mod scrub;

pub use scrub::scrub;

use crate::translate::{InvalidField, UndecodableResponse};
use std::collections::HashMap;
use std::time::Duration;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    #[error("{0}")]
    Unauthenticated(String),
    #[error("caller `{caller}` may not use profile `{profile}` for operation {operation}")]
    Denied {
        caller: String,
        profile: String,
        operation: String,
    },
    #[error("caller `{caller}` may not broker credentials for profile `{profile}`")]
    BrokerDenied { caller: String, profile: String },
    #[error(
        "caller `{caller}` may not assume role {role_arn} with profile `{profile}`: a direct \
         AssumeRole needs broker rights on a ram_role_arn profile of that role whose source \
         profile is `{profile}`"
    )]
    AssumeRoleDenied {
        caller: String,
        profile: String,
        role_arn: String,
    },
}

/// Which budget refused a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    Caller,
    Upstream,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} rate limit exceeded; retry in {:.1}s", match .budget { Budget::Caller => "caller", Budget::Upstream => "upstream" }, .retry_after.as_secs_f64())]
pub struct OverBudget {
    pub budget: Budget,
    pub retry_after: Duration,
}

/// Why the vault cannot give a credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VaultError {
    #[error("unknown credential profile `{0}`")]
    UnknownProfile(String),
    #[error("profile `{profile}`: its STS credential expired at {expired_at}")]
    Expired { profile: String, expired_at: String },
    #[error("profile `{profile}`: its STS credential expires at {expires_at}, before the call's deadline")]
    ExpiresWithinDeadline { profile: String, expires_at: String },
    /// No valid credential and STS could not give a new one.
    #[error("profile `{profile}`: no valid credential and STS refresh failed: {reason}")]
    RefreshFailed { profile: String, reason: String },
    #[error("profile `{profile}`: {reason}")]
    NotBrokerable { profile: String, reason: String },
}

/// Response metadata on an answer replayed from an idempotency record.
pub const IDEMPOTENT_REPLAY: &str = "x-ack-idempotent-replay";

#[derive(Debug, Clone, thiserror::Error)]
pub enum GatewayError {
    /// Too much load: shed rather than queued.
    #[error("the gateway is overloaded ({0}); retry with backoff")]
    Overloaded(String),
    #[error("{0}")]
    OverBudget(#[from] OverBudget),
    #[error("{0}")]
    Access(#[from] AccessError),
    #[error("{0}")]
    InvalidArgument(#[from] InvalidField),
    #[error("{0}")]
    Credential(#[from] VaultError),
    #[error("{0}")]
    Upstream(#[from] UpstreamError),
    #[error("{0}")]
    BadResponse(#[from] UndecodableResponse),
    /// The gateway failed itself (a message it cannot build or re-encode): never the caller's
    /// fault, never retried.
    #[error("internal error: {0}")]
    Internal(String),
    /// An error recorded under an idempotency key, answered again without sending anything.
    #[error("{0}")]
    Replayed(Box<GatewayError>),
    /// An earlier sending of this write (same idempotency key) got no answer, and nothing can
    /// tell whether the cloud applied it: the caller must look before writing again.
    #[error("an earlier {operation} on `{target}` with this idempotency-key was sent and got no answer; it may or may not have been applied: check {check} before writing again with a new key")]
    OutcomeUnknown {
        operation: String,
        target: String,
        check: String,
    },
}

/// Whether an upstream refusal says the cluster is busy with other work (updating, scaling,
/// upgrading): the same write is accepted once it is running again.
pub fn is_busy(code: &str, message: &str) -> bool {
    code == "ErrorClusterState"
        || code.starts_with("InvalidStatus")
        || code == "ClusterStateNotRunning"
        || message.contains("cannot operate cluster where state is")
}

/// An upstream call that did not succeed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    /// The API answered with an error status.
    #[error("{host} answered HTTP {status}: {code}: {message}")]
    Api {
        host: String,
        status: u16,
        code: String,
        message: Box<str>,
        request_id: Option<String>,
        /// How long the API asked us to wait, from its rate-limit headers.
        retry_after: Option<Duration>,
        /// For a refused signature: what comparing the signed texts showed.
        diagnosis: Option<Box<SignatureDiagnosis>>,
    },
    /// The call's deadline or the configured timeout ran out.
    #[error("{host} did not answer within {timeout:?}")]
    Timeout { host: String, timeout: Duration },
    /// The connection could not be made: the request never left.
    #[error("cannot connect to {host}: {reason}")]
    Connect { host: String, reason: String },
    /// The TLS handshake failed (e.g. the certificate is not trusted, or not for the host):
    /// the request never left.
    #[error("TLS: {problem}")]
    Tls { host: String, problem: String },
    /// The answer's body is larger than `[upstream] max_response_bytes`; it was not read.
    #[error("{host} answered more than {limit} bytes (upstream.max_response_bytes); the answer was dropped")]
    TooLarge { host: String, limit: usize },
    /// The connection failed after the request may have been sent.
    #[error("transport error talking to {host}: {reason}")]
    Transport { host: String, reason: String },
}

/// Why the upstream refused a signature (`signer::diagnosis`), in words for the caller: it
/// names the profile, the AccessKey id and the part that differs, never a secret or a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureDiagnosis {
    /// `secret_mismatch`, `canonicalization_mismatch` or `unknown`.
    pub label: &'static str,
    pub explanation: String,
}

// === impl UpstreamError ===

impl UpstreamError {
    /// The gRPC code for an upstream error (the README documents this table).
    pub fn code(&self) -> Code {
        match self {
            UpstreamError::Timeout { .. } => Code::DeadlineExceeded,
            UpstreamError::Connect { .. }
            | UpstreamError::Tls { .. }
            | UpstreamError::Transport { .. } => Code::Unavailable,
            // Neither the caller's fault nor transient: asking again gets the same answer.
            UpstreamError::TooLarge { .. } => Code::Internal,
            UpstreamError::Api { status, code, .. } => classify(*status, code),
        }
    }
}

/// Maps an upstream HTTP status and error code to a gRPC code.
pub fn classify(status: u16, code: &str) -> Code {
    let starts = |p: &str| code.starts_with(p);
    if (300..400).contains(&status) {
        // A redirect is not followed (a signed request is bound to its host and path): the
        // endpoint is misconfigured, which neither the caller nor a retry can fix.
        Code::Internal
    } else if starts("Throttling") || status == 429 {
        Code::ResourceExhausted
    } else if code == "SignatureDoesNotMatch"
        || code == "IncompleteSignature"
        || code == "SignatureNonceUsed"
        || starts("InvalidAccessKeyId")
        || starts("InvalidSecurityToken")
        || starts("InvalidTimeStamp")
        || status == 401
    {
        Code::Unauthenticated
    } else if starts("Forbidden") || status == 403 {
        Code::PermissionDenied
    } else if status == 404 || code.contains("NotFound") {
        Code::NotFound
    } else if status == 409 || code == "ErrorClusterState" || starts("InvalidStatus") {
        // A conflict, or a cluster busy with other work: the request was valid, the state not.
        Code::FailedPrecondition
    } else if starts("InvalidParameter") || starts("MissingParameter") || status == 400 {
        Code::InvalidArgument
    } else if status >= 500 {
        Code::Unavailable
    } else {
        Code::FailedPrecondition
    }
}

// === impl GatewayError ===

impl GatewayError {
    /// The upstream request id, when the API gave one.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            GatewayError::Upstream(UpstreamError::Api { request_id, .. }) => request_id.as_deref(),
            GatewayError::Replayed(e) => e.request_id(),
            _ => None,
        }
    }

    /// A fixed-cardinality label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            GatewayError::Access(AccessError::Unauthenticated(_)) => "unauthenticated",
            GatewayError::Access(_) => "permission_denied",
            GatewayError::Overloaded(_) => "overloaded",
            GatewayError::OverBudget(_) => "rate_limited",
            GatewayError::InvalidArgument(_) => "invalid_argument",
            GatewayError::Credential(_) => "credential",
            GatewayError::Upstream(UpstreamError::Api { .. }) => "upstream_api",
            GatewayError::Upstream(UpstreamError::Timeout { .. }) => "upstream_timeout",
            GatewayError::Upstream(UpstreamError::Connect { .. }) => "upstream_connect",
            GatewayError::Upstream(UpstreamError::Tls { .. }) => "upstream_tls",
            GatewayError::Upstream(UpstreamError::TooLarge { .. }) => "upstream_too_large",
            GatewayError::Upstream(UpstreamError::Transport { .. }) => "upstream_transport",
            GatewayError::BadResponse(_) => "bad_response",
            GatewayError::Internal(_) => "internal",
            GatewayError::Replayed(e) => e.kind(),
            GatewayError::OutcomeUnknown { .. } => "outcome_unknown",
        }
    }

    pub fn into_status(self) -> Status {
        let mut status = match &self {
            GatewayError::Replayed(e) => {
                let mut status = (**e).clone().into_status();
                status.metadata_mut().insert(
                    IDEMPOTENT_REPLAY,
                    tonic::metadata::MetadataValue::from_static("true"),
                );
                return status;
            }
            GatewayError::OutcomeUnknown {
                operation, check, ..
            } => Status::with_error_details(
                Code::Aborted,
                self.to_string(),
                ErrorDetails::with_error_info(
                    "OUTCOME_UNKNOWN",
                    "ack-gateway",
                    HashMap::from([
                        ("operation".to_string(), operation.clone()),
                        ("check".to_string(), check.clone()),
                    ]),
                ),
            ),
            GatewayError::InvalidArgument(f) => Status::with_error_details(
                Code::InvalidArgument,
                f.to_string(),
                ErrorDetails::with_bad_request_violation(f.field.clone(), f.reason.clone()),
            ),
            GatewayError::Credential(VaultError::UnknownProfile(_)) => Status::with_error_details(
                Code::InvalidArgument,
                self.to_string(),
                ErrorDetails::with_bad_request_violation("x-ack-profile", self.to_string()),
            ),
            GatewayError::Access(AccessError::Unauthenticated(m)) => {
                Status::unauthenticated(m.clone())
            }
            GatewayError::Access(_) => Status::permission_denied(self.to_string()),
            GatewayError::Credential(VaultError::RefreshFailed { .. }) => {
                Status::unavailable(self.to_string())
            }
            GatewayError::Credential(_) => Status::failed_precondition(self.to_string()),
            GatewayError::Upstream(
                e @ UpstreamError::Api {
                    host,
                    status,
                    code,
                    message,
                    request_id,
                    retry_after,
                    diagnosis,
                },
            ) => {
                let mut meta = HashMap::new();
                meta.insert("http_status".to_string(), status.to_string());
                if let Some(d) = diagnosis {
                    meta.insert("diagnosis".to_string(), d.label.to_string());
                }
                if let Some(id) = request_id {
                    meta.insert("request_id".to_string(), id.clone());
                }
                let reason = if code.is_empty() {
                    format!("HTTP_{status}")
                } else {
                    code.clone()
                };
                let mut details = ErrorDetails::with_error_info(reason, host.clone(), meta);
                let grpc_code = e.code();
                // Throttling always says when to retry; any other answer does when the cloud
                // said so (`x-acs-retry-after`).
                if grpc_code == Code::ResourceExhausted || retry_after.is_some() {
                    details.set_retry_info(Some(retry_after.unwrap_or(Duration::from_secs(1))));
                }
                let code_text = if code.is_empty() {
                    String::new()
                } else {
                    format!(" {code}")
                };
                let mut text = match request_id {
                    Some(id) => format!("upstream {host} answered HTTP {status}{code_text}: {message} (request id {id})"),
                    None => format!("upstream {host} answered HTTP {status}{code_text}: {message}"),
                };
                if let Some(d) = diagnosis {
                    text.push_str("; diagnosis: ");
                    text.push_str(&d.explanation);
                }
                Status::with_error_details(grpc_code, text, details)
            }
            GatewayError::Upstream(e) => Status::new(e.code(), e.to_string()),
            GatewayError::BadResponse(e) => Status::internal(e.to_string()),
            GatewayError::Internal(_) => Status::internal(self.to_string()),
            GatewayError::Overloaded(_) => Status::unavailable(self.to_string()),
            GatewayError::OverBudget(e) => Status::with_error_details(
                Code::ResourceExhausted,
                self.to_string(),
                ErrorDetails::with_retry_info(Some(e.retry_after)),
            ),
        };
        if let Some(id) = self.request_id() {
            if let Ok(v) = id.parse() {
                status.metadata_mut().insert("x-acs-request-id", v);
            }
        }
        status
    }
}

/// The name gRPC clients print for a code (`NOT_FOUND`): metric labels and messages use it.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests;
