//! What a watch follows, the upstream read that polls it, and how that read's answer becomes a
//! [`WatchStatus`]: one normalisation per kind (its reader in `task.rs`, `upgrade.rs`,
//! `cluster.rs`, `nodepool.rs`, `wait.rs` or `events.rs`), so subscribers and the CLI see the
//! same shape whatever the operation behind it; what every kind shares (the end, the failure,
//! the history of events and stages) is here.

use super::answer::Node;
use crate::error::GatewayError;
use crate::proto::gateway::{Phase, Stage, TaskEvent, WatchStatus, WorkError};
use prost_reflect::{DynamicMessage, ReflectMessage as _, Value as PValue};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// Events kept per target; older ones stay, later ones are dropped past this (a bound on memory
/// for pathological tasks, far above what a task reports). A cluster's events, which never
/// end, keep the newest this many instead.
pub(super) const MAX_EVENTS: usize = 1000;

/// The domain of the `ErrorInfo` carried by a failed watch: the error codes are the ACK API's.
pub const ERROR_DOMAIN: &str = "cs.aliyuncs.com";

/// The thing a poller follows. Part of the poller key, so equal targets share one poller.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    Task {
        task_id: String,
    },
    ClusterUpgrade {
        cluster_id: String,
    },
    /// Add-on names sorted and deduplicated, so the same set shares a poller.
    AddonUpgrade {
        cluster_id: String,
        addons: Vec<String>,
    },
    /// Target states sorted and deduplicated.
    Cluster {
        cluster_id: String,
        targets: Vec<String>,
    },
    /// Target states sorted and deduplicated.
    NodePool {
        cluster_id: String,
        nodepool_id: String,
        targets: Vec<String>,
    },
    /// A cluster's events; levels and times are each subscriber's own filter, so every
    /// subscriber of the cluster shares the poller.
    ClusterEvents {
        cluster_id: String,
    },
    /// A wait on any read (`WaitFor`).
    Wait(Box<super::wait::WaitSpec>),
}

/// How a poll's answer ends the watch, if it does.
#[derive(Debug, Clone)]
pub enum End {
    /// The work finished: OK, or ABORTED carrying the upstream error.
    Work(Result<(), Status>),
    /// The target cannot be polled (unknown id, no access, nothing to watch).
    Poll(Status),
}

/// What one successful poll says.
#[derive(Debug)]
pub struct Reading {
    pub status: WatchStatus,
    pub end: Option<End>,
}

/// What polls of one target have seen so far: events (append-only) and the stages observed.
#[derive(Debug, Default)]
pub struct History {
    pub events: Vec<TaskEvent>,
    /// Distinct stage values in the order seen, for reads that have no stage list.
    steps: Vec<String>,
    /// Whether any poll has succeeded (an error after one means something else than before).
    pub seen: bool,
    /// The most nodes a watched node pool had, to measure a shrink's progress.
    pub peak_nodes: i64,
    /// Events dropped from the front of `events` (a cluster's, past `MAX_EVENTS`).
    pub dropped: u64,
}

// === impl Target ===

impl Target {
    pub fn cluster_events(cluster_id: &str) -> Result<Target, Status> {
        Ok(Target::ClusterEvents {
            cluster_id: non_empty("cluster_id", cluster_id)?,
        })
    }

    pub fn task(task_id: &str) -> Result<Target, Status> {
        Ok(Target::Task {
            task_id: non_empty("task_id", task_id)?,
        })
    }

    pub fn cluster_upgrade(cluster_id: &str) -> Result<Target, Status> {
        Ok(Target::ClusterUpgrade {
            cluster_id: non_empty("cluster_id", cluster_id)?,
        })
    }

    pub fn addon_upgrade(cluster_id: &str, addons: &[String]) -> Result<Target, Status> {
        let mut addons: Vec<String> = addons
            .iter()
            .map(|a| a.trim().to_string())
            .filter(|a| !a.is_empty())
            .collect();
        addons.sort();
        addons.dedup();
        if addons.is_empty() {
            return Err(Status::invalid_argument("addons: name at least one add-on"));
        }
        Ok(Target::AddonUpgrade {
            cluster_id: non_empty("cluster_id", cluster_id)?,
            addons,
        })
    }

    pub fn cluster(cluster_id: &str, targets: &[String]) -> Result<Target, Status> {
        Ok(Target::Cluster {
            cluster_id: non_empty("cluster_id", cluster_id)?,
            targets: states(targets, "running"),
        })
    }

    pub fn nodepool(
        cluster_id: &str,
        nodepool_id: &str,
        targets: &[String],
    ) -> Result<Target, Status> {
        Ok(Target::NodePool {
            cluster_id: non_empty("cluster_id", cluster_id)?,
            nodepool_id: non_empty("nodepool_id", nodepool_id)?,
            targets: states(targets, "active"),
        })
    }

    /// `task`, `cluster_upgrade`, `addon_upgrade`, `cluster` or `nodepool`.
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Task { .. } => "task",
            Target::ClusterUpgrade { .. } => "cluster_upgrade",
            Target::AddonUpgrade { .. } => "addon_upgrade",
            Target::Cluster { .. } => "cluster",
            Target::NodePool { .. } => "nodepool",
            Target::Wait(_) => "wait",
            Target::ClusterEvents { .. } => "cluster_events",
        }
    }

    pub fn id(&self) -> &str {
        match self {
            Target::Task { task_id } => task_id,
            Target::ClusterUpgrade { cluster_id }
            | Target::AddonUpgrade { cluster_id, .. }
            | Target::Cluster { cluster_id, .. }
            | Target::ClusterEvents { cluster_id } => cluster_id,
            Target::NodePool { nodepool_id, .. } => nodepool_id,
            Target::Wait(spec) => &spec.operation,
        }
    }

    /// The table's service key of the operation that reads the target.
    pub fn service(&self) -> &str {
        match self {
            Target::Wait(spec) => &spec.service,
            _ => super::poller::SERVICE,
        }
    }

    /// The upstream operation that reads the target (what the caller must be allowed).
    pub fn operation(&self) -> &str {
        match self {
            Target::Task { .. } => "DescribeTaskInfo",
            Target::ClusterUpgrade { .. } => "GetUpgradeStatus",
            Target::AddonUpgrade { .. } => "DescribeClusterAddonsUpgradeStatus",
            Target::Cluster { .. } => "DescribeClusterDetail",
            Target::NodePool { .. } => "DescribeClusterNodePoolDetail",
            Target::Wait(spec) => &spec.operation,
            Target::ClusterEvents { .. } => super::events::OPERATION,
        }
    }

    /// The poll's request: `empty` (the operation's request message, from
    /// `Gateway::request_message`) with the target's fields set. Made once per poller.
    pub fn request(&self, mut empty: DynamicMessage) -> Result<DynamicMessage, GatewayError> {
        let text = |s: &str| PValue::String(s.to_string());
        let fields: Vec<(&str, PValue)> = match self {
            Target::Task { task_id } => vec![("task_id", text(task_id))],
            Target::AddonUpgrade { cluster_id, addons } => vec![
                ("cluster_id", text(cluster_id)),
                (
                    "component_ids",
                    PValue::List(addons.iter().map(|a| text(a)).collect()),
                ),
            ],
            Target::ClusterUpgrade { cluster_id }
            | Target::Cluster { cluster_id, .. }
            | Target::ClusterEvents { cluster_id } => vec![("cluster_id", text(cluster_id))],
            Target::NodePool {
                cluster_id,
                nodepool_id,
                ..
            } => vec![
                ("cluster_id", text(cluster_id)),
                ("nodepool_id", text(nodepool_id)),
            ],
            // Checked against the message when the wait was made.
            Target::Wait(spec) => {
                return DynamicMessage::deserialize(empty.descriptor(), spec.request()).map_err(
                    |e| GatewayError::Internal(format!("the request of {}: {e}", spec.operation)),
                )
            }
        };
        for (name, value) in fields {
            empty.try_set_field_by_name(name, value).map_err(|e| {
                GatewayError::Internal(format!("the request of {}: {e}", self.operation()))
            })?;
        }
        Ok(empty)
    }

    /// A status with nothing read yet.
    pub fn pending(&self) -> WatchStatus {
        WatchStatus {
            target_kind: self.kind().into(),
            target_id: self.id().into(),
            phase: Phase::Pending as i32,
            ..Default::default()
        }
    }

    /// Reads a poll's answer.
    pub fn read(&self, answer: &DynamicMessage, history: &mut History) -> Reading {
        let answer = Node::of(answer);
        let answer = &answer;
        let mut status = self.pending();
        let unwatchable = match self {
            Target::Task { .. } => super::task::read(answer, history, &mut status),
            Target::ClusterUpgrade { .. } => {
                super::upgrade::read_cluster(answer, history, &mut status)
            }
            Target::AddonUpgrade { addons, .. } => {
                super::upgrade::read_addons(addons, answer, history, &mut status)
            }
            Target::Cluster { targets, .. } => {
                super::cluster::read(targets, answer, history, &mut status)
            }
            Target::NodePool { targets, .. } => {
                super::nodepool::read(targets, answer, history, &mut status)
            }
            Target::Wait(spec) => super::wait::read(spec, answer, history, &mut status),
            Target::ClusterEvents { .. } => super::events::read(answer, history, &mut status),
        };
        if let Some(e) = unwatchable {
            return Reading {
                status: self.pending(),
                end: Some(End::Poll(e)),
            };
        }
        history.seen = true;
        settle_last_stage(&mut status);
        let end = self.end_of(&status);
        Reading { status, end }
    }

    /// What a poll that found nothing means: for a cluster or node pool already seen, that it
    /// was deleted (a success when `deleted` is a target state; otherwise a cluster's failure,
    /// and a node pool's NOT_FOUND); for a wait, done when `done_when_gone` is set; otherwise
    /// that the id is unknown.
    pub fn gone(&self, not_found: Status, history: &mut History) -> Reading {
        let mut status = self.pending();
        let targets = match self {
            Target::Wait(spec) if spec.done_when_gone => {
                super::wait::gone(spec, &mut status);
                return Reading {
                    status,
                    end: Some(End::Work(Ok(()))),
                };
            }
            Target::Cluster { targets, .. } | Target::NodePool { targets, .. } => targets,
            _ => {
                return Reading {
                    status,
                    end: Some(End::Poll(not_found)),
                }
            }
        };
        if !history.seen {
            return Reading {
                status,
                end: Some(End::Poll(not_found)),
            };
        }
        status.state = "deleted".into();
        status.stage = "deleted".into();
        status.stages = history.step("deleted");
        let end = if targets.iter().any(|t| t == "deleted") {
            status.phase = Phase::Succeeded as i32;
            status.progress_percent = Some(100);
            status.message = format!("{} {} was deleted", self.kind(), self.id());
            Ok(())
        } else if let Target::NodePool { .. } = self {
            status.phase = Phase::Failed as i32;
            status.message = format!("node pool {} was deleted", self.id());
            Err(not_found)
        } else {
            status.phase = Phase::Failed as i32;
            let error = WorkError {
                code: "ErrorClusterNotFound".into(),
                message: format!("cluster {} was deleted", self.id()),
            };
            let failure = self.failure(&status, &error);
            status.message = error.message.clone();
            status.error = Some(error);
            Err(failure)
        };
        if let Target::NodePool { .. } = self {
            settle_last_stage(&mut status);
        }
        Reading {
            status,
            end: Some(End::Work(end)),
        }
    }

    /// The ABORTED status a failed or canceled piece of work ends its streams with.
    pub fn failure(&self, status: &WatchStatus, error: &WorkError) -> Status {
        let mut meta = std::collections::HashMap::new();
        meta.insert("target_kind".to_string(), self.kind().to_string());
        meta.insert("target_id".to_string(), self.id().to_string());
        meta.insert("state".to_string(), status.state.clone());
        Status::with_error_details(
            Code::Aborted,
            format!(
                "{} {} ended {}: {}: {}",
                self.kind(),
                self.id(),
                status.state,
                error.code,
                error.message
            ),
            ErrorDetails::with_error_info(error.code.clone(), ERROR_DOMAIN, meta),
        )
    }

    /// The end for a status whose phase is final, if it is.
    fn end_of(&self, status: &WatchStatus) -> Option<End> {
        match Phase::try_from(status.phase).unwrap_or(Phase::Unspecified) {
            Phase::Succeeded => Some(End::Work(Ok(()))),
            Phase::Failed | Phase::Canceled => {
                let error = status.error.clone().unwrap_or_else(|| WorkError {
                    code: status.state.clone(),
                    message: status.message.clone(),
                });
                Some(End::Work(Err(self.failure(status, &error))))
            }
            _ => None,
        }
    }
}

/// Target states as a key: trimmed, lower-case, sorted, each once; `default` when none.
fn states(targets: &[String], default: &str) -> Vec<String> {
    let mut targets: Vec<String> = targets
        .iter()
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    if targets.is_empty() {
        targets.push(default.into());
    }
    targets.sort();
    targets.dedup();
    targets
}

pub(super) fn non_empty(field: &str, value: &str) -> Result<String, Status> {
    let v = value.trim();
    if v.is_empty() {
        return Err(Status::invalid_argument(format!("{field} is required")));
    }
    Ok(v.to_string())
}

/// The normalised phase of an upstream state word. Words the gateway does not know are taken
/// as work in progress, so an unfamiliar state never ends a watch early.
pub fn phase_of(state: &str) -> Phase {
    match state.to_ascii_lowercase().as_str() {
        "success" | "succeeded" | "successful" | "completed" | "done" => Phase::Succeeded,
        "failed" | "fail" | "failure" | "error" => Phase::Failed,
        "canceled" | "cancelled" => Phase::Canceled,
        "paused" | "pause" => Phase::Paused,
        _ => Phase::Running,
    }
}

/// A `{code, message}` object as a work error, when it says anything.
pub(super) fn error_of(v: &Node) -> Option<WorkError> {
    let code = v.get("code").text();
    let message = v.get("message").text();
    (!code.is_empty() || !message.is_empty()).then_some(WorkError { code, message })
}

// === impl History ===

impl History {
    /// Adds the events not seen before, keeping their order.
    pub(super) fn add_events(&mut self, events: &[Node]) {
        for e in events {
            if self.events.len() >= MAX_EVENTS {
                return;
            }
            let event = TaskEvent {
                timestamp: e.get("timestamp").text(),
                level: e.get("level").text(),
                reason: e.get("reason").text(),
                message: e.get("message").text(),
                action: e.get("action").text(),
                source: e.get("source").text(),
                ..Default::default()
            };
            if !self.events.contains(&event) {
                self.events.push(event);
            }
        }
    }

    /// Records `current` as the latest step and returns the steps as stages: earlier ones done,
    /// the latest one in progress.
    pub(super) fn step(&mut self, current: &str) -> Vec<Stage> {
        if !current.is_empty() && self.steps.last().map(String::as_str) != Some(current) {
            self.steps.push(current.to_string());
        }
        let last = self.steps.len().saturating_sub(1);
        self.steps
            .iter()
            .enumerate()
            .map(|(i, name)| Stage {
                name: name.clone(),
                state: if i < last { "success" } else { "running" }.into(),
                ..Default::default()
            })
            .collect()
    }
}

/// Once the work has ended so has its last stage: one still `running` takes the outcome.
pub(super) fn settle_last_stage(status: &mut WatchStatus) {
    let outcome = match Phase::try_from(status.phase) {
        Ok(Phase::Succeeded) => "success",
        Ok(Phase::Failed) => "failed",
        Ok(Phase::Canceled) => "canceled",
        _ => return,
    };
    if let Some(last) = status.stages.last_mut() {
        if last.state == "running" {
            last.state = outcome.into();
        }
    }
}
