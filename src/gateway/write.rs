//! The write path: every call of an operation that changes the cloud.
//!
//! ```text
//! idempotency-key? ─► claim the key ─┬─ new ──────────────► send (detached) ─► record ─► journal
//!                                    ├─ same request, done ─► replay the recorded answer
//!                                    ├─ same request, in flight ─► wait for it (caller's deadline)
//!                                    ├─ sent, no answer ─► client token: send again (the cloud
//!                                    │                     drops the duplicate); outcome check:
//!                                    │                     ask the read, answer from it or send;
//!                                    │                     else ABORTED (OUTCOME_UNKNOWN)
//!                                    └─ another request ─► INVALID_ARGUMENT (idempotency-key)
//! ```
//! Once a write may have reached the cloud, its caller leaving (cancellation, deadline) no
//! longer stops it: it runs in a task of its own, bounded by the upstream timeout, and records
//! and journals how it ended; the caller's retry with the same key gets that answer.
//!
//! Invariant: a write is sent a second time only when the cloud provably did not apply the
//! first (the connection was never made, the upstream refused its time, a read says so), or the
//! cloud drops the duplicate itself (a client token derived from the key).

use super::attempts::{Attempts, Detached};
use super::policy::{message_of, response_field, scope_field};
use super::{Gateway, Reply};
use crate::cache::Freshness;
use crate::config::writes::WhenBusy;
use crate::error::{GatewayError, UpstreamError};
use crate::table::{Operation, OperationRef};
use crate::translate::{self, InvalidField};
use crate::writes::journal::{Entry, Phase};
use crate::writes::keys::{KeyScope, Placement, Record, Recorded, State, IDEMPOTENCY_KEY};
use bytes::Bytes;
use prost_reflect::{DynamicMessage, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument as _;

/// How often a call waiting on a key in flight on another replica reads it again.
const KEY_POLL: Duration = Duration::from_millis(50);
/// A write that waited this long for its turn at a busy cluster counts as queued.
const QUEUED_AFTER: Duration = Duration::from_millis(5);
/// How long past the upstream timeout a key in flight is presumed abandoned (its replica died).
const LEASE_MARGIN: Duration = Duration::from_secs(2);

/// What a write call brings: who, where, which request, until when.
pub(super) struct WriteCall<'a> {
    pub op: &'a Operation,
    pub ctx: &'a super::CallContext,
    pub msg: DynamicMessage,
    pub profile: Arc<crate::vault::Profile>,
    pub region: String,
    pub target: String,
    pub deadline: Instant,
    pub budget: Duration,
}

/// How one sending of a write ended.
enum Sent {
    /// Answered OK.
    Answered(Reply),
    /// The cloud refused; `stable` when asking again would be refused again.
    Refused { error: GatewayError, stable: bool },
    /// Nothing reached the cloud.
    Unsent(GatewayError),
    /// It may have reached the cloud, and no answer came.
    Unknown(GatewayError),
}

impl Gateway {
    /// Serves a write: through its idempotency key when it has one; journaled either way.
    pub(super) async fn write(self: &Arc<Self>, w: WriteCall<'_>) -> Result<Reply, GatewayError> {
        let started = Instant::now();
        let mut entry = Entry {
            id: uuid::Uuid::new_v4().simple().to_string(),
            started_us: crate::writes::unix_us(),
            caller: w.ctx.caller.clone(),
            profile: w.ctx.profile.clone(),
            region: w.region.clone(),
            operation: w.op.name.clone(),
            cluster_id: scope_field(w.op, &w.msg, "cluster").unwrap_or_default(),
            nodepool_id: scope_field(w.op, &w.msg, "nodepool").unwrap_or_default(),
            idempotency_key: w.ctx.idempotency_key.clone().unwrap_or_default(),
            ..Entry::default()
        };
        // The entry is written as the write is sent (`send_detached`), and its end after it (in
        // the background, when the write outlives its caller); a call answered without sending
        // (a replay, a refusal) is written once, ended.
        let (result, ending) = match w.ctx.idempotency_key.clone() {
            None => self.send_detached(&w, None, &entry).await,
            Some(key) => {
                let scope = KeyScope {
                    caller: w.ctx.caller.clone(),
                    profile: w.ctx.profile.clone(),
                    key,
                };
                self.keyed(&w, &scope, &entry).await
            }
        };
        if let Ok(reply) = &result {
            entry.replay = reply.replay;
        }
        ending.journal(self, &result, entry, started);
        result
    }

    /// A keyed write: claim the key, then send, replay, wait or resolve as its record says.
    async fn keyed(
        self: &Arc<Self>,
        w: &WriteCall<'_>,
        scope: &KeyScope,
        entry: &Entry,
    ) -> (Result<Reply, GatewayError>, Ending) {
        let fingerprint = fingerprint(w.op, &w.msg);
        let placement = if w.op.policy.secrets {
            Placement::Local
        } else {
            Placement::Shared
        };
        let lease = self.request_timeout + LEASE_MARGIN;
        loop {
            let mine = Record::in_flight(&fingerprint, lease);
            let Some(found) = self.keys.claim(scope, &mine, placement).await else {
                let record = KeyRecord {
                    scope: scope.clone(),
                    fingerprint: fingerprint.clone(),
                    placement,
                };
                return self.send_detached(w, Some(record), entry).await;
            };
            if found.fingerprint != fingerprint {
                return (
                    Err(InvalidField::new(
                        IDEMPOTENCY_KEY,
                        format!(
                            "this key was used for a different request (another operation or other fields); use a new key for {}",
                            w.op.name
                        ),
                    )
                    .into()),
                    Finished::nothing().into(),
                );
            }
            match &found.state {
                State::Done { answer } => {
                    return (replay(answer), Finished::replayed(answer).into())
                }
                State::InFlight { .. } if !found.abandoned() => {
                    if Instant::now() >= w.deadline {
                        return (
                            Err(UpstreamError::Timeout {
                                host: "the same write in flight".into(),
                                timeout: w.budget,
                            }
                            .into()),
                            Finished::nothing().into(),
                        );
                    }
                    let left = w.deadline.saturating_duration_since(Instant::now());
                    self.keys.changed(KEY_POLL.min(left)).await;
                }
                // Sent without an answer (or its replica died while sending).
                _ => {
                    let resolvable =
                        w.op.policy.client_token.is_some() || w.op.policy.outcome_check.is_some();
                    if !resolvable {
                        return (Err(outcome_unknown(w)), Finished::nothing().into());
                    }
                    if !self.keys.take_over(scope, &found, &mine, placement).await {
                        continue;
                    }
                    let record = KeyRecord {
                        scope: scope.clone(),
                        fingerprint: fingerprint.clone(),
                        placement,
                    };
                    if w.op.policy.client_token.is_some() {
                        // The token derived from the key makes the cloud drop a duplicate.
                        return self.send_detached(w, Some(record), entry).await;
                    }
                    return self.resolve_by_reading(w, record, entry).await;
                }
            }
        }
    }

    /// A write whose earlier sending got no answer, with an outcome check: the read says
    /// whether it was applied; if so the answer is made from the read, if not it is sent.
    async fn resolve_by_reading(
        self: &Arc<Self>,
        w: &WriteCall<'_>,
        record: KeyRecord,
        entry: &Entry,
    ) -> (Result<Reply, GatewayError>, Ending) {
        match self.outcome_check(w).await {
            Ok(Some(reply)) => {
                let answer = Recorded::answer(&reply.message, None, Some(check_name(w.op)));
                self.keys
                    .finish(
                        &record.scope,
                        Some(Record {
                            fingerprint: record.fingerprint.clone(),
                            state: State::Done {
                                answer: answer.clone(),
                            },
                        }),
                        record.placement,
                    )
                    .await;
                let task_id =
                    response_field(w.op, self.service_of(w.op).ok(), &reply.message, "task_id");
                (
                    Ok(reply),
                    Finished {
                        phase: Phase::Succeeded,
                        code: "OK".into(),
                        reason: format!("applied (from {})", check_name(w.op)),
                        task_id,
                        ..Finished::nothing()
                    }
                    .into(),
                )
            }
            Ok(None) => self.send_detached(w, Some(record), entry).await,
            Err(e) => {
                // The read failed: the outcome stays unknown, and a later retry asks again.
                self.keys
                    .finish(
                        &record.scope,
                        Some(Record {
                            fingerprint: record.fingerprint,
                            state: State::Unknown,
                        }),
                        record.placement,
                    )
                    .await;
                (
                    Err(GatewayError::Overloaded(format!(
                        "could not tell whether an earlier {} was applied ({}): retry with the same idempotency-key",
                        w.op.name,
                        e.kind()
                    ))),
                    Finished::nothing().into(),
                )
            }
        }
    }

    /// Sends the write in a task of its own: the caller waits for it until its deadline, and
    /// leaving stops it only before it was sent. The task records the key (if any) and
    /// invalidates the cache; the returned `Finished` journals it.
    async fn send_detached(
        self: &Arc<Self>,
        w: &WriteCall<'_>,
        record: Option<KeyRecord>,
        entry: &Entry,
    ) -> (Result<Reply, GatewayError>, Ending) {
        let mut msg = w.msg.clone();
        if let (Some(field), Some(record)) = (&w.op.policy.client_token, &record) {
            set_client_token(&mut msg, field, &record.scope);
        }
        let call = match translate::build_call(w.op, &msg, &self.limits) {
            Ok(call) => call,
            Err(e) => {
                if let Some(r) = &record {
                    self.keys.finish(&r.scope, None, r.placement).await;
                }
                let e = GatewayError::from(e);
                let f = Finished::failed(&e);
                return (Err(e), f.into());
            }
        };
        let Some(op) = OperationRef::find(&self.table, &w.op.service, &w.op.name) else {
            return (
                Err(GatewayError::Internal(format!(
                    "no operation {}",
                    w.op.name
                ))),
                Finished::nothing().into(),
            );
        };
        let tags = super::cache_tags(w.op, &msg, w.profile.identity(), &w.region);
        self.journal.put(entry.clone()).await;
        let gone = Arc::new(AtomicBool::new(false));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let wait_when_busy = w.ctx.when_busy.unwrap_or(self.when_busy) == WhenBusy::Wait;
        let queue = scope_field(w.op, &msg, "cluster").map(|cluster| {
            (
                format!(
                    "{}|{}|{cluster}",
                    crate::shared::digest(&[w.profile.identity()]),
                    w.region
                ),
                cluster,
            )
        });
        let task = {
            let g = self.clone();
            let profile = w.profile.clone();
            let region = w.region.clone();
            let deadline = w.deadline;
            let gone = gone.clone();
            let mut entry = entry.clone();
            async move {
                let sent = AtomicBool::new(false);
                let token = op.policy.client_token.is_some() && record.is_some();
                let run = || async {
                    let service = g.service_of(&op)?;
                    Attempts {
                        clock_corrected: AtomicBool::new(false),
                        gateway: &g,
                        op: &op,
                        service,
                        call: &call,
                        profile: &profile,
                        region: &region,
                        deadline,
                        bucket: g.limiter.upstream_bucket(profile.identity(), &op.name),
                        cache: None,
                        detached: Some(Detached {
                            gone: &gone,
                            sent: &sent,
                            token,
                        }),
                    }
                    .run()
                    .await
                };
                // Writes that wait out a busy cluster take turns from the start (first come,
                // first sent: a newcomer never overtakes one already waiting), and keep the turn
                // until they have an answer that is not "busy".
                let waits = match (wait_when_busy, &queue, g.cluster_states.get()) {
                    (true, Some((queue, cluster)), Some(states)) => Some((queue, cluster, states)),
                    _ => None,
                };
                let mut queued_since = None;
                let mut turn = None;
                if let Some((queue, _, _)) = waits {
                    let asked = Instant::now();
                    let _waiting = g.busy.wait();
                    turn = g.busy.turn(queue, deadline).await;
                    if asked.elapsed() >= QUEUED_AFTER {
                        queued_since = Some(asked);
                    }
                }
                let mut outcome = match (&waits, &turn) {
                    // The deadline passed in the queue: nothing was sent.
                    (Some(_), None) => Err(GatewayError::Upstream(UpstreamError::Timeout {
                        host: "the busy cluster's queue".into(),
                        timeout: deadline.saturating_duration_since(Instant::now()),
                    })),
                    _ => run().await,
                };
                while let (Some((_, cluster, states)), Some(_)) = (&waits, &turn) {
                    if !is_busy_refusal(&outcome) || gone.load(Ordering::Relaxed) {
                        break;
                    }
                    queued_since.get_or_insert_with(Instant::now);
                    if entry.phase != Phase::Queued {
                        entry.phase = Phase::Queued;
                        g.journal.put(entry.clone()).await;
                    }
                    let _waiting = g.busy.wait();
                    let running = tokio::time::timeout_at(
                        deadline.into(),
                        states.until_running(&entry.profile, &region, cluster),
                    )
                    .await;
                    if !matches!(running, Ok(Ok(()))) {
                        break;
                    }
                    outcome = run().await;
                }
                drop(turn);
                if let Some(since) = queued_since {
                    g.metrics.queued(&op.name, since.elapsed());
                }
                let sent = classify(outcome, sent.load(Ordering::Relaxed));
                if let Sent::Answered(_) = &sent {
                    g.cache.invalidate(tags);
                }
                if let Some(r) = &record {
                    g.keys.finish(&r.scope, r.after(&sent), r.placement).await;
                }
                let mut finished = Finished::from_sent(&g, &op, &sent);
                finished.queued_ms = queued_since.map_or(0, |s| s.elapsed().as_millis() as u64);
                let result = match sent {
                    Sent::Answered(reply) => Ok(reply),
                    Sent::Refused { error, .. } | Sent::Unsent(error) | Sent::Unknown(error) => {
                        Err(error)
                    }
                };
                let _ = tx.send((result.clone(), finished.clone()));
                (result, finished)
            }
        };
        // The attempts' spans stay children of the call's span, however long the write runs.
        let handle = tokio::spawn(task.instrument(tracing::Span::current()));
        // The caller leaving before the request was sent stops it; after, it runs on.
        let guard = GoneGuard(gone);
        let budget = w.deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(budget, rx).await {
            Ok(Ok((result, finished))) => {
                std::mem::forget(guard);
                (result, finished.into())
            }
            Ok(Err(_)) => (
                Err(GatewayError::Internal(format!(
                    "the {} task ended without an answer",
                    w.op.name
                ))),
                Finished::nothing().into(),
            ),
            // The caller's deadline passed: the write goes on by itself and is journaled when
            // it ends.
            Err(_) => (
                Err(UpstreamError::Timeout {
                    host: "the caller's deadline".into(),
                    timeout: w.budget,
                }
                .into()),
                Ending::Later(handle),
            ),
        }
    }

    /// Asks an outcome check's read: `Some(answer)` when it says the write was applied, `None`
    /// when it says it was not.
    async fn outcome_check(
        self: &Arc<Self>,
        w: &WriteCall<'_>,
    ) -> Result<Option<Reply>, GatewayError> {
        let check =
            w.op.policy
                .outcome_check
                .as_ref()
                .ok_or_else(|| GatewayError::Internal("no outcome check".into()))?;
        let request = json_of(&w.msg)?;
        let mut read_request = serde_json::Map::new();
        for (read_field, write_field) in &check.request {
            if let Some(v) = super::outcome::at_path(&request, write_field).first() {
                read_request.insert(read_field.clone(), (*v).clone());
            }
        }
        let ctx = super::CallContext {
            caller: w.ctx.caller.clone(),
            profile: w.ctx.profile.clone(),
            region: Some(w.region.clone()),
            deadline: Some(w.deadline.saturating_duration_since(Instant::now())),
            cache_control: Freshness::NoCache,
            watcher_poll: true,
            ..super::CallContext::default()
        };
        let answer = match self
            .call_json(
                &w.op.service,
                &check.read,
                &ctx,
                serde_json::Value::Object(read_request),
            )
            .await
        {
            Ok((answer, _)) => Some(answer),
            Err(GatewayError::Upstream(e)) if e.code() == tonic::Code::NotFound => None,
            Err(e) => return Err(e),
        };
        let Some(made) = super::outcome::applied(check, &request, answer.as_ref()) else {
            return Ok(None);
        };
        let service = self.service_of(w.op)?;
        let message = DynamicMessage::deserialize(message_of(service, w.op, "Response")?, made)
            .map_err(|e| GatewayError::Internal(format!("an answer from {}: {e}", check.read)))?;
        use prost::Message as _;
        Ok(Some(Reply {
            message: Bytes::from(message.encode_to_vec()),
            request_id: None,
            cache: None,
            replay: false,
        }))
    }
}

/// The key a sending records its outcome under.
struct KeyRecord {
    scope: KeyScope,
    fingerprint: String,
    placement: Placement,
}

impl KeyRecord {
    /// What the key holds after a sending: the answer or a stable refusal; `Unknown` when it
    /// may have been applied without an answer; nothing when nothing was applied and asking
    /// again may be answered differently.
    fn after(&self, sent: &Sent) -> Option<Record> {
        let state = match sent {
            Sent::Answered(reply) => State::Done {
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
            } => State::Done {
                answer: Recorded::Refusal {
                    host: host.clone(),
                    status: *status,
                    code: code.clone(),
                    message: message.to_string(),
                    request_id: request_id.clone(),
                },
            },
            Sent::Refused { .. } | Sent::Unsent(_) => return None,
            Sent::Unknown(_) => State::Unknown,
        };
        Some(Record {
            fingerprint: self.fingerprint.clone(),
            state,
        })
    }
}

/// Sets the caller's request-wide flag when dropped: the caller left before the answer.
struct GoneGuard(Arc<AtomicBool>);

impl Drop for GoneGuard {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Whether the cloud refused because the cluster is busy with other work.
fn is_busy_refusal(outcome: &Result<Reply, GatewayError>) -> bool {
    matches!(
        outcome,
        Err(GatewayError::Upstream(UpstreamError::Api { code, message, .. }))
            if crate::error::is_busy(code, message)
    )
}

/// How a sending ended, from the attempts' result and whether the request was sent.
fn classify(outcome: Result<Reply, GatewayError>, sent: bool) -> Sent {
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
fn replay(answer: &Recorded) -> Result<Reply, GatewayError> {
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
fn outcome_unknown(w: &WriteCall<'_>) -> GatewayError {
    let mut check = Vec::new();
    if w.op.policy.scope.contains_key("nodepool") {
        check.push("the node pool (DescribeClusterNodePoolDetail)");
    }
    if w.op.policy.scope.contains_key("cluster") {
        check.push("the cluster (DescribeClusterDetail) and its tasks (DescribeTasks)");
    }
    if check.is_empty() {
        check.push("the resources it changes");
    }
    GatewayError::OutcomeUnknown {
        operation: w.op.name.clone(),
        target: w.target.clone(),
        check: check.join(" and "),
    }
}

/// The name of an operation's outcome check read.
fn check_name(op: &Operation) -> String {
    op.policy
        .outcome_check
        .as_ref()
        .map_or_else(String::new, |c| c.read.clone())
}

/// The request as JSON (proto field names, keys sorted): what fingerprints and checks read.
fn json_of(msg: &DynamicMessage) -> Result<serde_json::Value, GatewayError> {
    msg.serialize_with_options(
        serde_json::value::Serializer,
        &prost_reflect::SerializeOptions::new()
            .use_proto_field_name(true)
            .stringify_64_bit_integers(false),
    )
    .map_err(|e| GatewayError::Internal(format!("serializing a request: {e}")))
}

/// The request's fingerprint: the operation and the request's fields (as sorted JSON, so two
/// encodings of the same message agree).
pub(super) fn fingerprint(op: &Operation, msg: &DynamicMessage) -> String {
    let json = json_of(msg).map(|v| v.to_string()).unwrap_or_default();
    crate::shared::digest(&[&op.service, &op.name, &json])
}

/// Sets the request's client token from the key, unless the caller set one: the same key
/// (caller, profile, key) gives the same token, so the cloud drops a resend.
fn set_client_token(msg: &mut DynamicMessage, field: &str, scope: &KeyScope) {
    let set = msg
        .get_field_by_name(field)
        .is_some_and(|v| v.as_str().is_some_and(|s| !s.is_empty()));
    if !set {
        let token = format!(
            "ackgw-{}",
            crate::shared::digest(&[&scope.caller, &scope.profile, &scope.key])
        );
        msg.set_field_by_name(field, Value::String(token));
    }
}

/// How a write ended, for its journal entry.
#[derive(Clone, Default)]
struct Finished {
    phase: Phase,
    code: String,
    reason: String,
    message: String,
    request_id: String,
    task_id: String,
    replay: bool,
    /// How long it waited for its busy cluster.
    queued_ms: u64,
}

/// When a write's end is known: now, or when its detached task ends (its caller left first).
enum Ending {
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
    fn nothing() -> Finished {
        Finished::default()
    }

    fn failed(e: &GatewayError) -> Finished {
        Finished {
            phase: Phase::Failed,
            code: crate::error::code_name(e.clone().into_status().code()).into(),
            reason: e.kind().into(),
            message: e.to_string(),
            ..Finished::default()
        }
    }

    fn replayed(answer: &Recorded) -> Finished {
        let mut f = match answer {
            Recorded::Answer { request_id, .. } => Finished {
                phase: Phase::Succeeded,
                code: "OK".into(),
                request_id: request_id.clone().unwrap_or_default(),
                ..Finished::default()
            },
            Recorded::Refusal {
                code, request_id, ..
            } => Finished {
                phase: Phase::Failed,
                code: "REFUSED".into(),
                reason: code.clone(),
                request_id: request_id.clone().unwrap_or_default(),
                ..Finished::default()
            },
        };
        f.replay = true;
        f
    }

    fn from_sent(g: &Gateway, op: &Operation, sent: &Sent) -> Finished {
        match sent {
            Sent::Answered(reply) => {
                let task_id = response_field(op, g.service_of(op).ok(), &reply.message, "task_id");
                Finished {
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
    fn or_error(self, result: &Result<Reply, GatewayError>) -> Finished {
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
    fn journal(
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
            entry.replay |= f.replay;
            entry.queued_ms = f.queued_ms;
            journal.put(entry).await;
        });
    }
}
