//! Idempotency records: for each key (scoped to caller and profile), the fingerprint of the
//! request that first used it, its state (in flight, sent without an answer, finished) and, once
//! finished, what a replay needs: the encoded response message and its upstream request id, or
//! the cloud's refusal (HTTP status, code, message, request id). Nothing else is kept.
//!
//! Records live `ttl` on this replica (at most `max_entries`, the oldest dropped first), or in
//! Redis when configured, so a retry landing on another replica finds them. When Redis does not
//! answer, this replica's records stand in.

use crate::shared::Shared;
use crate::translate::InvalidField;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// The request metadata (or HTTP header) carrying the key, as the IETF httpapi draft names it.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 255;

/// Checks a key: 1 to 255 printable ASCII bytes.
pub fn check_key(key: &str) -> Result<(), InvalidField> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(InvalidField::new(
            IDEMPOTENCY_KEY,
            format!("must be 1 to {MAX_KEY_BYTES} bytes, got {}", key.len()),
        ));
    }
    if !key.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        return Err(InvalidField::new(
            IDEMPOTENCY_KEY,
            "must be printable ASCII",
        ));
    }
    Ok(())
}

/// One key's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The hash of the operation and request that first used the key.
    pub fingerprint: String,
    pub state: RecordState,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum RecordState {
    /// Being sent; past `lease_until_ms` (Unix ms) its sender is presumed gone (a replica that
    /// died mid-write) and the outcome unknown.
    InFlight { lease_until_ms: u64 },
    /// Sent, and no answer came: the cloud may or may not have applied it.
    Unknown,
    /// Finished with an answer a replay returns.
    Done { answer: Recorded },
}

/// What a replay returns. Its `Debug` shows an answer's size, never its bytes (an answer may
/// carry a credential: STS `AssumeRole`'s).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Recorded {
    /// The response message (base64 of its encoding) and the upstream request id; `from`
    /// names the read that established it when the answer was lost (an outcome check).
    Answer {
        message: String,
        request_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<String>,
    },
    /// A refusal that asking again would get again (an invalid parameter, a missing resource).
    Refusal {
        host: String,
        status: u16,
        code: String,
        message: String,
        request_id: Option<String>,
    },
}

impl std::fmt::Debug for Recorded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Recorded::Answer {
                message,
                request_id,
                from,
            } => f
                .debug_struct("Answer")
                .field(
                    "message",
                    &format_args!("<{} base64 characters>", message.len()),
                )
                .field("request_id", request_id)
                .field("from", from)
                .finish(),
            Recorded::Refusal {
                status,
                code,
                request_id,
                ..
            } => f
                .debug_struct("Refusal")
                .field("status", status)
                .field("code", code)
                .field("request_id", request_id)
                .finish_non_exhaustive(),
        }
    }
}

impl Recorded {
    /// An answer from its encoded message.
    pub fn answer(message: &[u8], request_id: Option<String>, from: Option<String>) -> Self {
        Recorded::Answer {
            message: base64::engine::general_purpose::STANDARD.encode(message),
            request_id,
            from,
        }
    }

    /// The encoded message of an answer.
    pub fn message(&self) -> Option<Vec<u8>> {
        match self {
            Recorded::Answer { message, .. } => base64::engine::general_purpose::STANDARD
                .decode(message)
                .ok(),
            Recorded::Refusal { .. } => None,
        }
    }
}

impl Record {
    pub fn in_flight(fingerprint: &str, lease: Duration) -> Record {
        Record {
            fingerprint: fingerprint.to_string(),
            state: RecordState::InFlight {
                lease_until_ms: super::clock::unix_ms() + lease.as_millis() as u64,
            },
        }
    }

    /// Whether its sender is presumed gone: in flight past its lease.
    pub fn abandoned(&self) -> bool {
        matches!(self.state, RecordState::InFlight { lease_until_ms } if lease_until_ms <= super::clock::unix_ms())
    }

    fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a record serialises")
    }

    fn from_bytes(bytes: &[u8]) -> Option<Record> {
        serde_json::from_slice(bytes).ok()
    }
}

/// Who a key belongs to: the caller, the profile and the key itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyScope {
    pub caller: String,
    pub profile: String,
    pub key: String,
}

impl KeyScope {
    fn parts(&self) -> [&str; 3] {
        [&self.caller, &self.profile, &self.key]
    }
}

/// Where a record is kept: `Shared` only for answers that may leave the replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// In Redis when configured (else here).
    Shared,
    /// On this replica only (the operation's answer carries secrets).
    Local,
}

/// The records: local, or in Redis.
pub struct Keys {
    local: Mutex<LocalRecords>,
    /// Wakes the calls waiting on a key that changed on this replica.
    changed: Notify,
    shared: Option<Arc<Shared>>,
    ttl: Duration,
    max_entries: usize,
}

#[derive(Default)]
struct LocalRecords {
    records: HashMap<KeyScope, (Record, Instant)>,
    /// Insertion order, for dropping the oldest past the bound.
    order: VecDeque<KeyScope>,
}

/// The Redis record kind.
const KIND: &str = "idem";

impl Keys {
    pub fn new(shared: Option<Arc<Shared>>, ttl: Duration, max_entries: usize) -> Keys {
        Keys {
            local: Mutex::new(LocalRecords::default()),
            changed: Notify::new(),
            shared,
            ttl,
            max_entries,
        }
    }

    fn redis(&self, placement: Placement) -> Option<&Arc<Shared>> {
        self.shared
            .as_ref()
            .filter(|_| placement == Placement::Shared)
    }

    /// Claims `scope` for a new write: stores `record` (in flight) unless the key has a record,
    /// and returns that record if it has one.
    pub async fn claim(
        &self,
        scope: &KeyScope,
        record: &Record,
        placement: Placement,
    ) -> Option<Record> {
        if let Some(shared) = self.redis(placement) {
            match shared
                .put_record_if_absent(KIND, &scope.parts(), record.to_bytes(), self.ttl)
                .await
            {
                Ok(existing) => return existing.as_deref().and_then(Record::from_bytes),
                Err(e) => {
                    tracing::warn!(error = %e, "idempotency record kept on this replica: Redis did not answer")
                }
            }
        }
        let mut local = self.local.lock().expect("keys lock");
        if let Some(existing) = local.get(scope) {
            return Some(existing);
        }
        local.insert(scope.clone(), record.clone(), self.ttl, self.max_entries);
        None
    }

    /// Replaces `old` with `new` if the key still holds `old`; true if replaced (this call
    /// now owns the key).
    pub async fn take_over(
        &self,
        scope: &KeyScope,
        old: &Record,
        new: &Record,
        placement: Placement,
    ) -> bool {
        if let Some(shared) = self.redis(placement) {
            match shared
                .replace_record_if(
                    KIND,
                    &scope.parts(),
                    old.to_bytes(),
                    new.to_bytes(),
                    self.ttl,
                )
                .await
            {
                Ok(replaced) => return replaced,
                Err(e) => {
                    tracing::warn!(error = %e, "idempotency record kept on this replica: Redis did not answer")
                }
            }
        }
        let mut local = self.local.lock().expect("keys lock");
        if local.get(scope).as_ref() != Some(old) {
            return false;
        }
        local.insert(scope.clone(), new.clone(), self.ttl, self.max_entries);
        true
    }

    /// The key's record, if any.
    pub async fn get(&self, scope: &KeyScope, placement: Placement) -> Option<Record> {
        if let Some(shared) = self.redis(placement) {
            match shared.record(KIND, &scope.parts()).await {
                Ok(found) => return found.as_deref().and_then(Record::from_bytes),
                Err(e) => tracing::debug!(error = %e, "reading an idempotency record locally"),
            }
        }
        self.local.lock().expect("keys lock").get(scope)
    }

    /// Stores how the write ended (`Some`), or forgets the key (`None`: nothing was applied
    /// and asking again may be answered differently), and wakes the calls waiting on it.
    pub async fn finish(&self, scope: &KeyScope, record: Option<Record>, placement: Placement) {
        let mut stored = false;
        if let Some(shared) = self.redis(placement) {
            let result = match &record {
                Some(r) => {
                    shared
                        .put_record(KIND, &scope.parts(), r.to_bytes(), self.ttl)
                        .await
                }
                None => shared.delete_record(KIND, &scope.parts()).await,
            };
            match result {
                Ok(()) => stored = true,
                Err(e) => {
                    tracing::warn!(error = %e, "idempotency record kept on this replica: Redis did not answer")
                }
            }
        }
        {
            let mut local = self.local.lock().expect("keys lock");
            match record {
                // Also kept here when Redis has it: a replay on this replica needs no round trip
                // only if Redis is away, and then this copy stands in.
                Some(r) if !stored || local.records.contains_key(scope) => {
                    local.insert(scope.clone(), r, self.ttl, self.max_entries)
                }
                Some(_) => {}
                None => {
                    local.records.remove(scope);
                }
            }
        }
        self.changed.notify_waiters();
    }

    /// Waits until the key's record may have changed: woken by this replica's `finish`, and
    /// at most `poll` (a change made by another replica is seen by reading again).
    pub async fn changed(&self, poll: Duration) {
        let _ = tokio::time::timeout(poll, self.changed.notified()).await;
    }

    /// How many records this replica holds.
    pub fn local_len(&self) -> usize {
        self.local.lock().expect("keys lock").records.len()
    }
}

impl LocalRecords {
    fn get(&mut self, scope: &KeyScope) -> Option<Record> {
        match self.records.get(scope) {
            Some((r, expires)) if *expires > Instant::now() => Some(r.clone()),
            Some(_) => {
                self.records.remove(scope);
                None
            }
            None => None,
        }
    }

    fn insert(&mut self, scope: KeyScope, record: Record, ttl: Duration, max_entries: usize) {
        if self
            .records
            .insert(scope.clone(), (record, Instant::now() + ttl))
            .is_none()
        {
            self.order.push_back(scope);
        }
        while self.records.len() > max_entries {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            self.records.remove(&oldest);
        }
        // Keys forgotten or expired leave stale names in `order`: drop them when it grows.
        if self.order.len() > 2 * max_entries.max(16) {
            let records = &self.records;
            self.order.retain(|k| records.contains_key(k));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(key: &str) -> KeyScope {
        KeyScope {
            caller: "alice".into(),
            profile: "default".into(),
            key: key.into(),
        }
    }

    #[test]
    fn keys_are_one_to_255_printable_ascii_bytes() {
        assert!(check_key("a").is_ok());
        assert!(check_key(&"k".repeat(255)).is_ok());
        assert!(check_key("with space and ~").is_ok());
        for bad in ["", &"k".repeat(256), "tab\there", "é", "nul\0"] {
            let e = check_key(bad).expect_err(bad);
            assert_eq!(e.field, IDEMPOTENCY_KEY);
        }
    }

    #[tokio::test]
    async fn a_claimed_key_is_held_until_finished_and_only_one_takes_it_over() {
        let keys = Keys::new(None, Duration::from_secs(60), 10);
        let s = scope("k1");
        let mine = Record::in_flight("fp", Duration::from_secs(30));
        assert_eq!(keys.claim(&s, &mine, Placement::Shared).await, None);
        assert_eq!(
            keys.claim(&s, &mine, Placement::Shared).await,
            Some(mine.clone())
        );
        let unknown = Record {
            fingerprint: "fp".into(),
            state: RecordState::Unknown,
        };
        keys.finish(&s, Some(unknown.clone()), Placement::Shared)
            .await;
        let next = Record::in_flight("fp", Duration::from_secs(30));
        assert!(keys.take_over(&s, &unknown, &next, Placement::Shared).await);
        assert!(!keys.take_over(&s, &unknown, &next, Placement::Shared).await);
        keys.finish(&s, None, Placement::Shared).await;
        assert_eq!(keys.get(&s, Placement::Shared).await, None);
    }

    #[tokio::test]
    async fn the_oldest_records_go_past_the_bound_and_expired_ones_are_gone() {
        let keys = Keys::new(None, Duration::from_secs(60), 3);
        for i in 0..5 {
            let r = Record::in_flight("fp", Duration::from_secs(30));
            keys.claim(&scope(&format!("k{i}")), &r, Placement::Local)
                .await;
        }
        assert_eq!(keys.local_len(), 3);
        assert!(keys.get(&scope("k0"), Placement::Local).await.is_none());
        assert!(keys.get(&scope("k4"), Placement::Local).await.is_some());

        let short = Keys::new(None, Duration::from_millis(1), 3);
        let r = Record::in_flight("fp", Duration::from_secs(30));
        short.claim(&scope("k"), &r, Placement::Local).await;
        std::thread::sleep(Duration::from_millis(5));
        assert!(short.get(&scope("k"), Placement::Local).await.is_none());
    }

    #[test]
    fn an_answer_keeps_its_message_bytes_and_debug_shows_none_of_them() {
        let r = Recorded::answer(&[0, 1, 2, 255], Some("req".into()), None);
        assert_eq!(r.message(), Some(vec![0, 1, 2, 255]));
        let text = serde_json::to_string(&r).expect("json");
        assert!(!text.contains("from"), "{text}");
        let secret = Recorded::answer(b"AccessKeySecret=s3cr3t", None, None);
        let shown = format!("{secret:?}");
        let encoded = base64::engine::general_purpose::STANDARD.encode(b"AccessKeySecret=s3cr3t");
        assert!(
            !shown.contains(&encoded) && !shown.contains("s3cr3t"),
            "{shown}"
        );
    }
}
