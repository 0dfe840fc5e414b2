//! The wall clock that idempotency records and journal entries are stamped with (they outlive
//! processes, so they cannot use a monotonic clock).

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
