//! An inspection report (`RunClusterInspect`), as its cluster keeps it; the report's contents are
//! read from its task when asked for.

use time::OffsetDateTime;

/// An inspection report: running while its task runs, then `completed` (or `failed`).
#[derive(Debug, Clone)]
pub struct Inspection {
    pub report_id: String,
    pub task_id: String,
    pub started: OffsetDateTime,
}
