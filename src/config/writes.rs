//! Configuration of write safety: idempotency records (`[idempotency]`) and the operations
//! journal (`[journal]`).

use super::parse::duration_or;
use serde::Deserialize;
use std::time::Duration;

/// What a write refused because its cluster is busy does (`x-ack-when-busy`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WhenBusy {
    /// The refusal reaches the caller (`FAILED_PRECONDITION` with the upstream code).
    #[default]
    Fail,
    /// The write waits in its cluster's queue and is sent again once the cluster is running.
    Wait,
}

impl WhenBusy {
    /// `fail` or `wait` (the header's and the configuration's words).
    pub fn parse(text: &str) -> Option<WhenBusy> {
        match text {
            "fail" => Some(WhenBusy::Fail),
            "wait" => Some(WhenBusy::Wait),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct WritesConfig {
    /// How long an idempotency record is kept.
    pub idempotency_ttl: Duration,
    /// How many records this replica keeps at most (the oldest go first).
    pub idempotency_max_entries: usize,
    /// What a busy-cluster refusal does when the call does not say.
    pub when_busy: WhenBusy,
    /// How many journal entries are kept (on this replica, or in Redis).
    pub journal_max_entries: usize,
    /// How long a journal entry is kept.
    pub journal_max_age: Duration,
    /// Whether the journal follows each write's task to its end (one shared task poller per
    /// task while it runs).
    pub journal_follow_tasks: bool,
}

impl Default for WritesConfig {
    fn default() -> Self {
        WritesConfig {
            idempotency_ttl: Duration::from_secs(24 * 3600),
            idempotency_max_entries: 100_000,
            when_busy: WhenBusy::Fail,
            journal_max_entries: 10_000,
            journal_max_age: Duration::from_secs(7 * 24 * 3600),
            journal_follow_tasks: true,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileIdempotency {
    ttl: Option<String>,
    max_entries: Option<usize>,
    when_busy: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileJournal {
    max_entries: Option<usize>,
    max_age: Option<String>,
    follow_tasks: Option<bool>,
}

pub(super) fn resolve(
    idempotency: &FileIdempotency,
    journal: &FileJournal,
    errors: &mut Vec<String>,
) -> WritesConfig {
    let d = WritesConfig::default();
    let when_busy = match idempotency.when_busy.as_deref() {
        None => d.when_busy,
        Some(text) => WhenBusy::parse(text).unwrap_or_else(|| {
            errors.push(format!(
                "idempotency.when_busy: `{}` is neither `fail` nor `wait`",
                text.escape_debug()
            ));
            d.when_busy
        }),
    };
    let at_least_one =
        |key: &str, v: Option<usize>, default: usize, errors: &mut Vec<String>| match v {
            Some(0) => {
                errors.push(format!("{key}: must be at least 1"));
                default
            }
            Some(n) => n,
            None => default,
        };
    WritesConfig {
        idempotency_ttl: duration_or(
            "idempotency.ttl",
            idempotency.ttl.as_deref(),
            d.idempotency_ttl,
            errors,
        ),
        idempotency_max_entries: at_least_one(
            "idempotency.max_entries",
            idempotency.max_entries,
            d.idempotency_max_entries,
            errors,
        ),
        when_busy,
        journal_max_entries: at_least_one(
            "journal.max_entries",
            journal.max_entries,
            d.journal_max_entries,
            errors,
        ),
        journal_max_age: duration_or(
            "journal.max_age",
            journal.max_age.as_deref(),
            d.journal_max_age,
            errors,
        ),
        journal_follow_tasks: journal.follow_tasks.unwrap_or(d.journal_follow_tasks),
    }
}
