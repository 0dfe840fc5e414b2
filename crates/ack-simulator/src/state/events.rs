//! A cluster's events (`DescribeClusterEvents`): the bounded log that keeps them, and the events
//! recorded when a task ends.

use super::clusters::Cluster;
use super::effects::Effect;
use super::format::new_id;
use super::tasks::TaskEnd;
use time::OffsetDateTime;

/// One event of a cluster, in the shape of `DescribeClusterEvents` items.
#[derive(Debug, Clone)]
pub struct ClusterEvent {
    pub id: String,
    pub time: OffsetDateTime,
    /// The API's `type`: the task type (`cluster_create`, `nodepool_scaleout`, ...).
    pub kind: String,
    /// `info`, `warning` or `error`.
    pub level: &'static str,
    pub reason: String,
    pub message: String,
    /// The object concerned: the node pool, the add-ons, or the cluster.
    pub subject: String,
    pub task_id: String,
}

/// A cluster's events, oldest first, the latest `MAX_CLUSTER_EVENTS` of them.
#[derive(Debug, Clone, Default)]
pub struct EventLog {
    pub events: std::collections::VecDeque<ClusterEvent>,
    next: u64,
}

/// Events kept per cluster; older ones are forgotten first.
pub const MAX_CLUSTER_EVENTS: usize = 10_000;

impl EventLog {
    /// Appends an event, giving it the next id; forgets the oldest past the limit.
    pub fn record(&mut self, mut event: ClusterEvent) {
        self.next += 1;
        event.id = format!("evt-{:08}-{}", self.next, &new_id("")[..8]);
        self.events.push_back(event);
        while self.events.len() > MAX_CLUSTER_EVENTS {
            self.events.pop_front();
        }
    }
}

impl Cluster {
    /// Records how a task ended: a task event, and what it did to a node pool or the cluster.
    pub(super) fn record_end(&mut self, f: &TaskEnd) {
        let subject = f.effect.subject(&self.id);
        let mut event = |level, reason: &str, message: String| {
            self.events.record(ClusterEvent {
                id: String::new(),
                time: f.at,
                kind: f.task_type.clone(),
                level,
                reason: reason.into(),
                message,
                subject: subject.clone(),
                task_id: f.task_id.clone(),
            });
        };
        match (f.state, &f.error) {
            ("success", _) => event(
                "info",
                "TaskSucceeded",
                format!("{} task {} succeeded", f.task_type, f.task_id),
            ),
            ("canceled", _) => event(
                "warning",
                "TaskCanceled",
                format!("{} task {} was canceled", f.task_type, f.task_id),
            ),
            (_, error) => {
                let (code, message) = error.clone().unwrap_or_default();
                event(
                    "error",
                    "TaskFailed",
                    format!(
                        "{} task {} failed: {code}: {message}",
                        f.task_type, f.task_id
                    ),
                );
            }
        }
        if f.state != "success" {
            return;
        }
        let what = match &f.effect {
            Effect::NodePoolReady {
                nodepool_id,
                grows_by,
            } => self.nodepools.get(nodepool_id).map(|np| {
                let (from, to) = (np.serving, np.serving + grows_by);
                if np.state == "initial" {
                    (
                        "NodePoolCreated",
                        format!("node pool {nodepool_id} created with {to} nodes"),
                    )
                } else {
                    (
                        "NodePoolScaled",
                        format!("node pool {nodepool_id} scaled from {from} to {to} nodes"),
                    )
                }
            }),
            Effect::NodePoolDeleted(id) => {
                Some(("NodePoolDeleted", format!("node pool {id} deleted")))
            }
            Effect::NodePoolUpdated(id) => {
                Some(("NodePoolUpdated", format!("node pool {id} updated")))
            }
            Effect::ClusterUpgraded(version) => Some((
                "ClusterUpgraded",
                format!("cluster {} upgraded to {version}", self.id),
            )),
            Effect::BecomesRunning => {
                Some(("ClusterCreated", format!("cluster {} is running", self.id)))
            }
            Effect::Inspected(report) => Some((
                "InspectionCompleted",
                format!("inspection report {report} completed"),
            )),
            Effect::Modified => Some(("ClusterModified", format!("cluster {} modified", self.id))),
            _ => None,
        };
        if let Some((reason, message)) = what {
            event("info", reason, message);
        }
    }
}
