//! Records other modules keep in Redis as opaque bytes under a hashed name (idempotency
//! records): read, store if absent, replace if unchanged, store, delete; and the journal's
//! entries, ordered by start time, announced to every replica as they change.

use super::{scripts, Shared, SharedError};
use std::time::Duration;

impl Shared {
    /// The record `kind` of `parts` (hashed into its key), if any.
    pub async fn record(&self, kind: &str, parts: &[&str]) -> Result<Option<Vec<u8>>, SharedError> {
        let key = self.key(kind, parts);
        self.run(|mut c| async move { redis::cmd("GET").arg(key).query_async(&mut c).await })
            .await
    }

    /// Stores `value` unless a record exists; returns the existing one, or `None` when stored.
    pub async fn put_record_if_absent(
        &self,
        kind: &str,
        parts: &[&str],
        value: Vec<u8>,
        ttl: Duration,
    ) -> Result<Option<Vec<u8>>, SharedError> {
        let key = self.key(kind, parts);
        self.run(|mut c| async move {
            scripts::PUT_IF_ABSENT
                .key(key)
                .arg(value)
                .arg(ttl.as_millis().max(1) as u64)
                .invoke_async(&mut c)
                .await
        })
        .await
    }

    /// Replaces the record with `new` if it still holds `old`; true if replaced.
    pub async fn replace_record_if(
        &self,
        kind: &str,
        parts: &[&str],
        old: Vec<u8>,
        new: Vec<u8>,
        ttl: Duration,
    ) -> Result<bool, SharedError> {
        let key = self.key(kind, parts);
        let replaced: i64 = self
            .run(|mut c| async move {
                scripts::REPLACE_IF
                    .key(key)
                    .arg(old)
                    .arg(new)
                    .arg(ttl.as_millis().max(1) as u64)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(replaced == 1)
    }

    /// Stores the record, replacing any.
    pub async fn put_record(
        &self,
        kind: &str,
        parts: &[&str],
        value: Vec<u8>,
        ttl: Duration,
    ) -> Result<(), SharedError> {
        let key = self.key(kind, parts);
        let ttl = ttl.as_millis().max(1) as u64;
        self.run(|mut c| async move {
            redis::cmd("SET")
                .arg(key)
                .arg(value)
                .arg("PX")
                .arg(ttl)
                .query_async::<()>(&mut c)
                .await
        })
        .await
    }

    /// Removes the record.
    pub async fn delete_record(&self, kind: &str, parts: &[&str]) -> Result<(), SharedError> {
        let key = self.key(kind, parts);
        self.run(|mut c| async move { redis::cmd("DEL").arg(key).query_async::<()>(&mut c).await })
            .await
    }

    fn journal_index(&self) -> String {
        format!("{}journal", self.prefix)
    }

    fn journal_entry(&self, id: &str) -> String {
        format!("{}journal:e:{id}", self.prefix)
    }

    /// The channel journal entries are announced on.
    pub(super) fn journal_channel(&self) -> String {
        format!("{}journal", self.prefix)
    }

    /// Writes (or rewrites) journal entry `id`, started at `started_ms`, and announces it;
    /// the journal keeps at most `max_entries` entries younger than `max_age`.
    pub async fn put_journal_entry(
        &self,
        id: &str,
        started_ms: u64,
        entry: Vec<u8>,
        max_entries: usize,
        max_age: Duration,
    ) -> Result<(), SharedError> {
        let (index, key, channel) = (
            self.journal_index(),
            self.journal_entry(id),
            self.journal_channel(),
        );
        let id = id.to_string();
        let _: i64 = self
            .run(|mut c| async move {
                scripts::JOURNAL_PUT
                    .key(index)
                    .key(key)
                    .arg(id)
                    .arg(started_ms)
                    .arg(entry)
                    .arg(max_age.as_millis().max(1) as u64)
                    .arg(max_entries)
                    .arg(channel)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(())
    }

    /// Up to `count` journal entries that started before `before_ms` (exclusive), newest
    /// first.
    pub async fn journal_entries(
        &self,
        before_ms: u64,
        count: usize,
    ) -> Result<Vec<Vec<u8>>, SharedError> {
        let index = self.journal_index();
        let ids: Vec<String> = self
            .run(|mut c| async move {
                redis::cmd("ZREVRANGEBYSCORE")
                    .arg(index)
                    .arg(format!("({before_ms}"))
                    .arg("-inf")
                    .arg("LIMIT")
                    .arg(0)
                    .arg(count)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids.iter().map(|id| self.journal_entry(id)).collect();
        let values: Vec<Option<Vec<u8>>> = self
            .run(|mut c| async move { redis::cmd("MGET").arg(keys).query_async(&mut c).await })
            .await?;
        Ok(values.into_iter().flatten().collect())
    }
}

impl Shared {
    /// Whether `ticket` is at the head of the queue `parts` (hashed), joining its tail if it
    /// is not in it; expired tickets at the head are dropped.
    pub async fn queue_turn(
        &self,
        parts: &[&str],
        ticket: &str,
        ttl: Duration,
    ) -> Result<bool, SharedError> {
        let key = self.key("queue", parts);
        let ticket = ticket.to_string();
        let turn: i64 = self
            .run(|mut c| async move {
                scripts::QUEUE_TURN
                    .key(key)
                    .arg(ticket)
                    .arg(ttl.as_millis().max(1) as u64)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(turn == 1)
    }

    /// Leaves the queue `parts`.
    pub async fn queue_leave(&self, parts: &[&str], ticket: &str) -> Result<(), SharedError> {
        let key = self.key("queue", parts);
        let ticket = ticket.to_string();
        self.run(|mut c| async move {
            redis::cmd("LREM")
                .arg(key)
                .arg(0)
                .arg(ticket)
                .query_async::<()>(&mut c)
                .await
        })
        .await
    }
}
