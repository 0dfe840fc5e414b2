//! What makes writes safe to retry and visible afterwards: idempotency records (`keys`), the
//! operations journal (`journal`) and the queues of writes waiting for a busy cluster (`busy`).
//! Each keeps its state on this replica, or in Redis (through `shared`) when configured, behind
//! the same type, so the request path does not care which.
//!
//! Invariant: nothing here holds a secret. Idempotency records hold a request's fingerprint (a
//! hash) and the answer a replay needs; an answer whose operation's policy marks secrets is
//! kept on this replica only, never in Redis. Journal entries hold names, ids and outcomes.

pub mod busy;
mod clock;
pub mod journal;
pub mod keys;

pub use clock::{unix_ms, unix_us};
