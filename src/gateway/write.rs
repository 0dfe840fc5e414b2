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

mod ending;
mod request;
mod sent;

use super::attempts::{Attempts, Detached};
use super::policy::{message_of, response_fields, scope_field};
use super::{Gateway, Reply};
use crate::cache::Freshness;
use crate::config::writes::WhenBusy;
use crate::error::{GatewayError, UpstreamError};
use crate::table::{Operation, OperationRef};
use crate::translate::{self, InvalidField};
use crate::writes::journal::{Entry, Phase};
use crate::writes::keys::{KeyScope, Placement, Record, RecordState, Recorded, IDEMPOTENCY_KEY};
use bytes::Bytes;
use ending::{Ending, Finished};
use prost_reflect::{DynamicMessage, ReflectMessage as _};
use request::{check_name, fingerprint, json_of, set_client_token};
use sent::{classify, is_busy_refusal, outcome_unknown, replay, KeyRecord, Sent};
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
                RecordState::Done { answer } => {
                    return (
                        replay(answer),
                        Finished::replayed(self, w.op, answer).into(),
                    )
                }
                RecordState::InFlight { .. } if !found.abandoned() => {
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
                        return (
                            Err(outcome_unknown(w.op, &w.target)),
                            Finished::nothing().into(),
                        );
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
                            state: RecordState::Done {
                                answer: answer.clone(),
                            },
                        }),
                        record.placement,
                    )
                    .await;
                let [task_id] = response_fields(
                    w.op,
                    self.service_of(w.op).ok(),
                    &reply.message,
                    ["task_id"],
                );
                let read = check_name(w.op);
                (Ok(reply), Finished::applied_per(&read, task_id).into())
            }
            Ok(None) => self.send_detached(w, Some(record), entry).await,
            Err(e) => {
                // The read failed: the outcome stays unknown, and a later retry asks again.
                self.keys
                    .finish(
                        &record.scope,
                        Some(Record {
                            fingerprint: record.fingerprint,
                            state: RecordState::Unknown,
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
        let gone = Arc::new(AtomicBool::new(false));
        let (tx, rx) = tokio::sync::oneshot::channel();
        // The call's header, else the profile's setting, else `[idempotency] when_busy`.
        let when_busy = w
            .ctx
            .when_busy
            .or(w.profile.when_busy())
            .unwrap_or(self.when_busy);
        let wait_when_busy = when_busy == WhenBusy::Wait;
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
                // Written by the task, not the caller: from the key's claim to here nothing
                // awaits, so a caller that leaves cannot strand a claimed key unsent.
                g.journal.put(entry.clone()).await;
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
        // The check maps fields between three messages by the table's paths: it works on their
        // JSON (proto names), converted here and only here.
        let read_request = DynamicMessage::deserialize(
            self.request_message(&w.op.service, &check.read)?
                .descriptor(),
            serde_json::Value::Object(read_request),
        )
        .map_err(|e| GatewayError::Internal(format!("the request of {}: {e}", check.read)))?;
        let answer = match self
            .call_message(&w.op.service, &check.read, &ctx, &read_request)
            .await
        {
            Ok((answer, _)) => Some(json_of(&answer)?),
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

/// Sets the caller's request-wide flag when dropped: the caller left before the answer.
struct GoneGuard(Arc<AtomicBool>);

impl Drop for GoneGuard {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}
