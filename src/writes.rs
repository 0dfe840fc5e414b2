//! What makes writes safe to retry and visible afterwards: idempotency records (`keys`), the
//! operations journal (`journal`) and the queues of writes waiting for a busy cluster (`busy`).
//! Each keeps its state on this replica, or in Redis (through `shared`) when configured, behind
//! the same type, so the request path does not care which.
//!
//! Invariant: nothing here holds a secret. Idempotency records hold a request's fingerprint (a
//! hash) and the answer a replay needs; an answer whose operation's policy marks secrets is
//! kept on this replica only, never in Redis. Journal entries hold names, ids and outcomes.

pub mod busy;
pub mod journal;
pub mod keys;

/// Milliseconds since the Unix epoch (records and entries outlive processes).
pub fn unix_ms() -> u64 {
    unix_us() / 1000
}

/// Microseconds since the Unix epoch: the journal's order.
pub fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}
