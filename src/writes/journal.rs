//! The operations journal: one entry per write, keyed or not, written when the write starts and
//! rewritten when it ends (and when the task it started ends). Bounded by count and age, on this
//! replica or in Redis (an index ordered by start time, each entry under its own expiring key,
//! every change announced to the replicas), so `ListOperations` sees every replica's writes and
//! `WatchOperations` hears of them as they happen.
//!
//! Invariant: an entry holds names, ids, times and outcomes (codes and the scrubbed upstream
//! message), never a request body, a credential or an answer.

use crate::shared::Shared;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;

/// Where a write stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Sent (or about to be), no answer yet.
    #[default]
    Running,
    /// Waiting in its cluster's queue for the cluster to be running.
    Queued,
    /// Answered OK; the task it started (if any) still runs.
    TaskRunning,
    /// Answered OK and, when it started a task, the task succeeded.
    Succeeded,
    /// Refused, or its task failed.
    Failed,
    /// Sent without an answer: it may or may not have been applied.
    Unknown,
}

impl Phase {
    /// The phase as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Running => "running",
            Phase::Queued => "queued",
            Phase::TaskRunning => "task_running",
            Phase::Succeeded => "succeeded",
            Phase::Failed => "failed",
            Phase::Unknown => "unknown",
        }
    }

    /// Whether the write (and its task) is over.
    pub fn is_final(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed | Phase::Unknown)
    }
}

/// One write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Entry {
    /// Unique (random) id.
    pub id: String,
    /// When the write started, in Unix microseconds: the journal's order.
    pub started_us: u64,
    /// How long the call took, once answered.
    pub duration_ms: u64,
    pub caller: String,
    pub profile: String,
    pub region: String,
    pub operation: String,
    pub cluster_id: String,
    pub nodepool_id: String,
    pub idempotency_key: String,
    /// The upstream request id of the answer.
    pub request_id: String,
    /// The task the answer started, if it names one.
    pub task_id: String,
    pub phase: Phase,
    /// The call's gRPC code name (`OK`, `NOT_FOUND`…) once answered.
    pub code: String,
    /// The upstream error code (or the gateway's reason, e.g. `OUTCOME_UNKNOWN`).
    pub reason: String,
    /// The error message (scrubbed as every error message is), or the task's error.
    pub message: String,
    /// Answered from an idempotency record, without sending anything.
    pub replay: bool,
    /// How long it waited for a busy cluster.
    pub queued_ms: u64,
    /// The replica that made the write.
    pub replica: String,
}

/// Which entries a listing wants; empty fields match everything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub caller: Option<String>,
    pub cluster_id: Option<String>,
    pub operation: Option<String>,
    /// A phase (`running`, `failed`…) or a code name (`OK`, `NOT_FOUND`…).
    pub outcome: Option<String>,
    /// Started at or after (Unix µs).
    pub since_us: Option<u64>,
    /// Started before (Unix µs).
    pub until_us: Option<u64>,
}

impl Filter {
    pub fn matches(&self, e: &Entry) -> bool {
        let eq = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        eq(&self.caller, &e.caller)
            && eq(&self.cluster_id, &e.cluster_id)
            && eq(&self.operation, &e.operation)
            && self
                .outcome
                .as_deref()
                .is_none_or(|o| o == e.phase.as_str() || o == e.code)
            && self.since_us.is_none_or(|s| e.started_us >= s)
            && self.until_us.is_none_or(|u| e.started_us < u)
    }
}

/// This replica's entries, newest first, and their ids.
#[derive(Default)]
struct LocalJournal {
    entries: VecDeque<Entry>,
    ids: std::collections::HashSet<String>,
}

/// How many entries one Redis read brings when listing.
const SCAN_BATCH: usize = 256;
/// How many batches one listing reads at most (filters that match little stop there; the page
/// token lets the caller go on).
const SCAN_BATCHES: usize = 16;

pub struct Journal {
    local: Mutex<LocalJournal>,
    events: broadcast::Sender<Entry>,
    shared: Option<Arc<Shared>>,
    max_entries: usize,
    max_age: Duration,
    replica: String,
}

impl Journal {
    pub fn new(shared: Option<Arc<Shared>>, max_entries: usize, max_age: Duration) -> Arc<Journal> {
        let replica = shared
            .as_ref()
            .map_or_else(|| "local".to_string(), |s| s.replica().to_string());
        let journal = Arc::new(Journal {
            local: Mutex::new(LocalJournal::default()),
            events: broadcast::channel(1024).0,
            shared: shared.clone(),
            max_entries,
            max_age,
            replica,
        });
        if let Some(shared) = shared {
            // Other replicas' entries, as Redis announces them (this replica's own are
            // announced locally when written).
            let weak = Arc::downgrade(&journal);
            shared.on_journal(move |bytes| {
                let Some(journal) = weak.upgrade() else {
                    return;
                };
                if let Ok(entry) = serde_json::from_slice::<Entry>(&bytes) {
                    if entry.replica != journal.replica {
                        let _ = journal.events.send(entry);
                    }
                }
            });
        }
        journal
    }

    /// The name entries of this replica carry.
    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// Writes (or rewrites) an entry and announces it.
    pub async fn put(&self, mut entry: Entry) {
        entry.replica.clone_from(&self.replica);
        {
            let mut local = self.local.lock().expect("journal lock");
            // Newest first: a write that started earlier may be written later. A rewrite is of a
            // recent entry, found near the front.
            let LocalJournal { entries, ids } = &mut *local;
            if ids.contains(&entry.id) {
                if let Some(e) = entries.iter_mut().find(|e| e.id == entry.id) {
                    *e = entry.clone();
                }
            } else {
                let at = entries
                    .iter()
                    .position(|e| e.started_us <= entry.started_us)
                    .unwrap_or(entries.len());
                entries.insert(at, entry.clone());
                ids.insert(entry.id.clone());
            }
            let oldest =
                (super::clock::unix_ms() * 1000).saturating_sub(self.max_age.as_micros() as u64);
            while entries.len() > self.max_entries
                || entries.back().is_some_and(|e| e.started_us < oldest)
            {
                if let Some(gone) = entries.pop_back() {
                    ids.remove(&gone.id);
                }
            }
        }
        if let Some(shared) = &self.shared {
            let bytes = serde_json::to_vec(&entry).expect("an entry serialises");
            if let Err(e) = shared
                .put_journal_entry(
                    &entry.id,
                    entry.started_us,
                    bytes,
                    self.max_entries,
                    self.max_age,
                )
                .await
            {
                tracing::debug!(error = %e, "journal entry kept on this replica: Redis did not answer");
            }
        }
        let _ = self.events.send(entry);
    }

    /// Entries as they are written or rewritten, on any replica.
    pub fn subscribe(&self) -> broadcast::Receiver<Entry> {
        self.events.subscribe()
    }

    /// Up to `limit` entries matching `filter` that started before `before_us`, newest first;
    /// and where the next page starts, when there may be more.
    pub async fn list(
        &self,
        filter: &Filter,
        before_us: Option<u64>,
        limit: usize,
    ) -> (Vec<Entry>, Option<u64>) {
        let before = before_us.unwrap_or(u64::MAX);
        if let Some(shared) = &self.shared {
            match self.list_shared(shared, filter, before, limit).await {
                Ok(found) => return found,
                Err(e) => {
                    tracing::debug!(error = %e, "listing this replica's journal: Redis did not answer")
                }
            }
        }
        let local = self.local.lock().expect("journal lock");
        let mut found: Vec<Entry> = local
            .entries
            .iter()
            .filter(|e| e.started_us < before && filter.matches(e))
            .take(limit + 1)
            .cloned()
            .collect();
        let next = (found.len() > limit).then(|| {
            found.truncate(limit);
            found.last().map_or(0, |e| e.started_us)
        });
        (found, next)
    }

    async fn list_shared(
        &self,
        shared: &Shared,
        filter: &Filter,
        mut before: u64,
        limit: usize,
    ) -> Result<(Vec<Entry>, Option<u64>), crate::shared::SharedError> {
        let mut found = Vec::new();
        for _ in 0..SCAN_BATCHES {
            let batch = shared.journal_entries(before, SCAN_BATCH).await?;
            let exhausted = batch.len() < SCAN_BATCH;
            for bytes in batch {
                let Ok(e) = serde_json::from_slice::<Entry>(&bytes) else {
                    continue;
                };
                before = before.min(e.started_us);
                if filter.matches(&e) {
                    if found.len() == limit {
                        // One more matches: the next page starts after the last one shown.
                        let next = found.last().map(|e: &Entry| e.started_us);
                        return Ok((found, next));
                    }
                    found.push(e);
                }
            }
            if exhausted {
                return Ok((found, None));
            }
        }
        // Stopped scanning with a page not full: the caller may go on from here.
        Ok((found, Some(before)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, started_us: u64, caller: &str) -> Entry {
        Entry {
            id: id.into(),
            started_us,
            caller: caller.into(),
            operation: "ModifyCluster".into(),
            ..Entry::default()
        }
    }

    #[tokio::test]
    async fn entries_list_newest_first_with_filters_and_pages() {
        let now = crate::writes::unix_ms() * 1000;
        let journal = Journal::new(None, 100, Duration::from_secs(3600));
        let mut events = journal.subscribe();
        for i in 0..5 {
            let caller = if i % 2 == 0 { "alice" } else { "bob" };
            journal.put(entry(&format!("e{i}"), now + i, caller)).await;
        }
        assert_eq!(events.recv().await.expect("event").id, "e0");
        let (page, next) = journal.list(&Filter::default(), None, 2).await;
        assert_eq!(
            page.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
            ["e4", "e3"]
        );
        let (page, next) = journal.list(&Filter::default(), next, 2).await;
        assert_eq!(
            page.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
            ["e2", "e1"]
        );
        let (page, next) = journal.list(&Filter::default(), next, 2).await;
        assert_eq!(
            page.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
            ["e0"]
        );
        assert_eq!(next, None);
        let alice = Filter {
            caller: Some("alice".into()),
            ..Filter::default()
        };
        let (page, _) = journal.list(&alice, None, 10).await;
        assert_eq!(page.len(), 3);
        // Rewriting an entry replaces it.
        let mut done = entry("e4", now + 4, "alice");
        done.phase = Phase::Succeeded;
        journal.put(done).await;
        let ok = Filter {
            outcome: Some("succeeded".into()),
            ..Filter::default()
        };
        assert_eq!(journal.list(&ok, None, 10).await.0.len(), 1);
    }

    #[tokio::test]
    async fn the_journal_keeps_its_bound() {
        let now = crate::writes::unix_ms() * 1000;
        let journal = Journal::new(None, 3, Duration::from_secs(3600));
        for i in 0..10 {
            journal.put(entry(&format!("e{i}"), now + i, "a")).await;
        }
        assert_eq!(journal.list(&Filter::default(), None, 100).await.0.len(), 3);
        // Too old to keep.
        journal.put(entry("old", 1, "a")).await;
        let (all, _) = journal.list(&Filter::default(), None, 100).await;
        assert!(all.iter().all(|e| e.id != "old"));
    }
}
