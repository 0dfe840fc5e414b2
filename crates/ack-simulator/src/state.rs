//! The simulator's in-memory cloud: clusters with their node pools, add-ons, tags and upgrades,
//! deployment templates, and the tasks that change them. Tasks advance with wall-clock time
//! (minus the time they spend paused); their effects apply when a request next looks at the
//! state, so nothing runs in the background.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use time::OffsetDateTime;

#[derive(Debug, Clone)]
pub struct Cluster {
    pub id: String,
    pub name: String,
    pub region_id: String,
    pub cluster_type: String,
    pub version: String,
    /// `initial` (being created), `running`, busy (`scaling`, `updating`: see
    /// [`BUSY_STATES`]), `updating_failed`, `failed`, `deleting` or `delete_failed`.
    pub state: String,
    pub size: i64,
    pub vpc_id: String,
    pub deletion_protection: bool,
    pub tags: Vec<Value>,
    pub created: OffsetDateTime,
    pub updated: OffsetDateTime,
    /// Credential owner (account) that created it; other accounts do not see it.
    pub owner: String,
    pub nodepools: BTreeMap<String, NodePool>,
    pub addons: BTreeMap<String, Addon>,
    /// The task of the latest cluster upgrade, if the cluster was ever upgraded.
    pub upgrade_task: Option<String>,
    /// What happened to the cluster, oldest first (`DescribeClusterEvents`).
    pub events: EventLog,
    /// Inspection reports (`RunClusterInspect`), oldest first.
    pub inspections: Vec<Inspection>,
}

/// A node pool: its spec is what the caller sent (minus secrets), echoed back as the API does.
/// Its nodes move while a task works on it: new nodes are created, then join (serving); nodes
/// leaving are drained, then released. At rest `desired_size` is `serving + failed`.
#[derive(Debug, Clone)]
pub struct NodePool {
    pub id: String,
    pub name: String,
    /// `initial`, `active`, `scaling`, `removing`, `updating`, `deleting` or `failed`.
    pub state: String,
    /// The size the pool is asked to have (`scaling_group.desired_size`), set when a change
    /// starts.
    pub desired_size: i64,
    /// Nodes that joined and serve.
    pub serving: i64,
    /// Nodes that failed to join (a failed scale-out's), until the pool is deleted.
    pub failed: i64,
    pub spec: Value,
    pub created: OffsetDateTime,
    pub updated: OffsetDateTime,
    /// The task moving the pool's nodes, while it runs.
    pub change: Option<NodeChange>,
    /// The error of the pool's latest failed task: code, message and when.
    pub last_error: Option<(String, String, OffsetDateTime)>,
    /// When `state` last changed (the conditions' transition time).
    pub since: OffsetDateTime,
}

/// A change of a node pool's nodes, made by a task.
#[derive(Debug, Clone)]
pub struct NodeChange {
    pub task_id: String,
    /// Nodes added (positive) or removed (negative); a deletion removes every node.
    pub nodes: i64,
}

/// A node pool's node counts, as `status` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NodeCounts {
    pub total: i64,
    pub serving: i64,
    pub initial: i64,
    pub failed: i64,
    pub removing: i64,
}

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

/// An inspection report: running while its task runs, then `completed` (or `failed`).
#[derive(Debug, Clone)]
pub struct Inspection {
    pub report_id: String,
    pub task_id: String,
    pub started: OffsetDateTime,
}

/// An installed add-on (component).
#[derive(Debug, Clone)]
pub struct Addon {
    pub name: String,
    pub version: String,
    pub config: String,
    /// `installing`, `active`, `upgrading`, `deleting` or `failed`.
    pub state: String,
    /// The task of the latest upgrade of this add-on, if any.
    pub upgrade_task: Option<String>,
    /// The version the latest upgrade moves to.
    pub target_version: Option<String>,
}

/// An application deployment template; every update keeps the previous version.
#[derive(Debug, Clone)]
pub struct Template {
    pub id: String,
    pub owner: String,
    /// Newest first.
    pub versions: Vec<TemplateVersion>,
}

#[derive(Debug, Clone)]
pub struct TemplateVersion {
    pub name: String,
    pub template: String,
    pub template_type: String,
    pub description: String,
    pub tags: String,
    pub created: OffsetDateTime,
    pub updated: OffsetDateTime,
    pub hist_id: String,
}

/// What a finished task does to the state, and what a failed one leaves behind.
#[derive(Debug, Clone)]
pub enum Effect {
    BecomesRunning,
    IsDeleted,
    GrowsBy(i64),
    NodePoolReady {
        nodepool_id: String,
        grows_by: i64,
    },
    NodePoolUpdated(String),
    NodePoolDeleted(String),
    /// An inspection's report is read from its task: nothing to apply.
    Inspected(String),
    /// `ModifyCluster`: the change is made when asked; the task only reports it.
    Modified,
    AddonsInstalled(Vec<String>),
    AddonsRemoved(Vec<String>),
    AddonsUpgraded(Vec<(String, String)>),
    ClusterUpgraded(String),
}

/// What starts a task.
pub struct TaskSpec {
    pub task_type: &'static str,
    pub cluster_id: String,
    pub duration: Duration,
    pub stages: Vec<&'static str>,
    pub effect: Effect,
    /// Ends in failure with this error (code, message) instead of success.
    pub fails_with: Option<(String, String)>,
    pub owner: String,
    /// Whether the cluster is busy while the task runs (`Resources::release` waits for it);
    /// an inspection, say, is not.
    pub keeps_busy: bool,
}

#[derive(Debug, Clone)]
pub struct Task {
    pub id: String,
    pub task_type: String,
    pub cluster_id: String,
    pub started: Instant,
    pub started_at: OffsetDateTime,
    pub duration: Duration,
    pub stages: Vec<&'static str>,
    pub fails_with: Option<(String, String)>,
    pub effect: Effect,
    pub applied: bool,
    pub owner: String,
    pub keeps_busy: bool,
    /// Set while paused: when, and how far the task had got.
    paused: Option<(Instant, Duration)>,
    /// Pauses so far: (progress when paused, wall-clock length), to date stages correctly.
    pauses: Vec<(Duration, Duration)>,
    canceled: Option<Instant>,
    /// Pause, resume and cancel events, in order.
    notes: Vec<(OffsetDateTime, &'static str, String)>,
}

#[derive(Default)]
pub struct Resources {
    pub clusters: BTreeMap<String, Cluster>,
    pub tasks: BTreeMap<String, Task>,
    pub templates: BTreeMap<String, Template>,
}

pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

pub fn new_id(prefix: &str) -> String {
    let raw = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}{raw}")
}

/// The states of a cluster some task is working on, which it leaves for `running` when the
/// last such task ends: `scaling` (nodes being added: ScaleOutCluster, AttachInstances,
/// ScaleClusterNodePool) and `updating` (its configuration changing: node pools created,
/// modified or deleted, add-ons installed, upgraded or removed, the cluster upgraded).
pub const BUSY_STATES: &[&str] = &["scaling", "updating"];

/// The add-ons every new cluster starts with, as ACK installs its system components.
pub const DEFAULT_ADDONS: &[(&str, &str)] = &[
    ("coredns", "v1.11.3.2-f57ea7ed6-aliyun"),
    ("csi-plugin", "v1.30.3-921e63a-aliyun"),
    ("metrics-server", "v0.3.9.4-ff225cd-aliyun"),
];

// === impl Task ===

impl Task {
    /// How far the task has got: wall-clock time since it started, minus time spent paused.
    fn progress(&self) -> Duration {
        let now = match (self.paused, self.canceled) {
            (_, Some(at)) => at,
            (Some((at, _)), None) => at,
            (None, None) => Instant::now(),
        };
        let paused_for: Duration = self.pauses.iter().map(|(_, len)| *len).sum();
        now.saturating_duration_since(self.started)
            .saturating_sub(paused_for)
    }

    /// `running`, `paused`, `success`, `failed` or `canceled`.
    pub fn state(&self) -> &'static str {
        if self.canceled.is_some() {
            "canceled"
        } else if self.progress() < self.duration {
            if self.paused.is_some() {
                "paused"
            } else {
                "running"
            }
        } else if self.fails_with.is_some() {
            "failed"
        } else {
            "success"
        }
    }

    pub fn is_finished(&self) -> bool {
        !matches!(self.state(), "running" | "paused")
    }

    /// How far the task has got, from 0 to 1.
    pub fn fraction(&self) -> f64 {
        if self.duration.is_zero() {
            return 1.0;
        }
        (self.progress().as_secs_f64() / self.duration.as_secs_f64()).clamp(0.0, 1.0)
    }

    /// When the task ended (or will end, at its pace so far).
    pub fn ended_at(&self) -> OffsetDateTime {
        match self.canceled {
            Some(at) => self.started_at + at.saturating_duration_since(self.started),
            None => self.wall_time(self.duration),
        }
    }

    pub fn pause(&mut self) {
        if self.paused.is_none() && !self.is_finished() {
            self.paused = Some((Instant::now(), self.progress()));
            self.note("Paused", "the task was paused");
        }
    }

    pub fn resume(&mut self) {
        if let Some((at, progress)) = self.paused.take() {
            self.pauses.push((progress, at.elapsed()));
            self.note("Resumed", "the task was resumed");
        }
    }

    pub fn cancel(&mut self) {
        if !self.is_finished() {
            if let Some((at, progress)) = self.paused.take() {
                self.pauses.push((progress, at.elapsed()));
            }
            self.canceled = Some(Instant::now());
            self.applied = true;
            self.note("Canceled", "the task was canceled");
        }
    }

    fn note(&mut self, reason: &'static str, message: &str) {
        self.notes
            .push((OffsetDateTime::now_utc(), reason, message.to_string()));
    }

    /// The stage the task is in (the last one once finished).
    pub fn stage_index(&self) -> usize {
        if self.stages.is_empty() {
            return 0;
        }
        let frac = self.progress().as_secs_f64() / self.duration.as_secs_f64().max(1e-3);
        ((frac * self.stages.len() as f64) as usize).min(self.stages.len() - 1)
    }

    pub fn current_stage(&self) -> &'static str {
        self.stages.get(self.stage_index()).copied().unwrap_or("")
    }

    /// The error of a failed or canceled task.
    pub fn error(&self) -> Option<(String, String)> {
        match self.state() {
            "failed" => self.fails_with.clone(),
            "canceled" => Some(("TaskCanceled".into(), "the task was canceled".into())),
            _ => None,
        }
    }

    /// Wall-clock time at which the task had made `progress`, pauses included.
    fn wall_time(&self, progress: Duration) -> OffsetDateTime {
        let paused: Duration = self
            .pauses
            .iter()
            .filter(|(at, _)| *at <= progress)
            .map(|(_, len)| *len)
            .sum();
        self.started_at + progress + paused
    }

    /// The task in the shape of `DescribeTaskInfo`.
    pub fn to_json(&self, request_id: &str) -> Value {
        let state = self.state();
        let current = self.stage_index();
        let stage_len = self.duration / (self.stages.len().max(1) as u32);
        let stages: Vec<Value> = self
            .stages
            .iter()
            .enumerate()
            .filter(|(i, _)| *i <= current)
            .map(|(i, name)| {
                let start = self.wall_time(stage_len * i as u32);
                let stage_state = if i < current || state == "success" {
                    "success"
                } else {
                    state
                };
                let mut s = json!({
                    "state": stage_state,
                    "message": name,
                    "start_time": rfc3339(start),
                });
                if !matches!(stage_state, "running" | "paused") {
                    s["end_time"] = json!(rfc3339(self.wall_time(stage_len * (i as u32 + 1))));
                }
                s
            })
            .collect();
        // Stage starts and pause/resume/cancel notes, in time order, so the list only grows.
        let mut events: Vec<(OffsetDateTime, Value)> = self
            .stages
            .iter()
            .take(current + 1)
            .enumerate()
            .map(|(i, name)| {
                let at = self.wall_time(stage_len * i as u32);
                (
                    at,
                    json!({
                        "action": "Stage", "level": "Normal", "reason": "Started", "source": "simulator",
                        "message": format!("stage {} started: {name}", i + 1),
                        "timestamp": rfc3339(at),
                    }),
                )
            })
            .collect();
        for (at, reason, message) in &self.notes {
            events.push((
                *at,
                json!({"action": "Task", "level": "Normal", "reason": reason, "source": "simulator",
                       "message": message, "timestamp": rfc3339(*at)}),
            ));
        }
        events.sort_by_key(|(at, _)| *at);
        let mut v = json!({
            "task_id": self.id,
            "cluster_id": self.cluster_id,
            "task_type": self.task_type,
            "state": state,
            "created": rfc3339(self.started_at),
            "updated": rfc3339(OffsetDateTime::now_utc()),
            "current_stage": self.current_stage(),
            "stages": stages,
            "events": events.into_iter().map(|(_, e)| e).collect::<Vec<_>>(),
            "target": {"id": self.cluster_id, "type": "cluster"},
            "task_result": [],
            "request_id": request_id,
        });
        if let Some((code, message)) = self.error() {
            v["error"] = json!({"code": code, "message": message});
        }
        if state == "success" {
            v["task_result"] = json!([{"data": self.cluster_id, "status": "success"}]);
        }
        v
    }
}

// === impl Resources ===

impl Resources {
    /// Applies the effects of every task that has finished since last looked at, in the order
    /// they ended, and records what happened in their clusters' events.
    pub fn tick(&mut self) {
        let mut finished = Vec::new();
        for task in self.tasks.values_mut() {
            if !task.applied && task.is_finished() {
                task.applied = true;
                finished.push(Finished {
                    task_id: task.id.clone(),
                    task_type: task.task_type.clone(),
                    cluster_id: task.cluster_id.clone(),
                    effect: task.effect.clone(),
                    state: task.state(),
                    error: task.error(),
                    at: task.ended_at(),
                });
            }
        }
        finished.sort_by_key(|f| f.at);
        for f in finished {
            if let Some(c) = self.clusters.get_mut(&f.cluster_id) {
                c.record_end(&f);
            }
            if let (Effect::IsDeleted, "success") = (&f.effect, f.state) {
                self.clusters.remove(&f.cluster_id);
                continue;
            }
            if let Some(c) = self.clusters.get_mut(&f.cluster_id) {
                c.apply(&f);
            }
            self.release(&f.cluster_id);
        }
    }

    /// Marks the cluster busy (`scaling`, `updating`) for a task starting on it now, so that
    /// writes that need it `running` are refused until the task ends, as the cloud refuses
    /// them. A cluster that is not serving (being created or deleted, failed) keeps its state:
    /// that says more than "busy", and the task that set it brings it back.
    pub fn occupy(&mut self, cluster_id: &str, busy: &'static str) {
        if let Some(c) = self.clusters.get_mut(cluster_id) {
            if c.state == "running" || BUSY_STATES.contains(&c.state.as_str()) {
                c.state = busy.into();
            }
        }
    }

    /// A busy cluster is `running` again once no task works on it any more, whether its tasks
    /// succeeded or failed (what failed is the node pool's or add-on's to show). One task
    /// ending while another still runs leaves the cluster busy.
    pub fn release(&mut self, cluster_id: &str) {
        let working = self
            .tasks
            .values()
            .any(|t| t.cluster_id == cluster_id && t.keeps_busy && !t.applied);
        if working {
            return;
        }
        if let Some(c) = self.clusters.get_mut(cluster_id) {
            if BUSY_STATES.contains(&c.state.as_str()) {
                c.state = "running".into();
            }
        }
    }

    /// Starts a task, and records its start in its cluster's events.
    pub fn start_task(&mut self, spec: TaskSpec) -> String {
        let id = format!("T-{}", &new_id("")[..24]);
        let task = Task {
            id: id.clone(),
            task_type: spec.task_type.into(),
            cluster_id: spec.cluster_id,
            started: Instant::now(),
            started_at: OffsetDateTime::now_utc(),
            duration: spec.duration,
            stages: spec.stages,
            fails_with: spec.fails_with,
            effect: spec.effect,
            applied: false,
            owner: spec.owner,
            keeps_busy: spec.keeps_busy,
            paused: None,
            pauses: Vec::new(),
            canceled: None,
            notes: Vec::new(),
        };
        if let Some(c) = self.clusters.get_mut(&task.cluster_id) {
            c.events.record(ClusterEvent {
                id: String::new(),
                time: task.started_at,
                kind: task.task_type.clone(),
                level: "info",
                reason: "TaskStarted".into(),
                message: format!("{} task {id} started", task.task_type),
                subject: task.effect.subject(&task.cluster_id),
                task_id: id.clone(),
            });
        }
        self.tasks.insert(id.clone(), task);
        id
    }

    /// Records an event of `task_id`'s in its cluster, now (a pause, a resume).
    pub fn note(&mut self, task_id: &str, level: &'static str, reason: &str, message: String) {
        let Some(task) = self.tasks.get(task_id) else {
            return;
        };
        let (kind, subject) = (
            task.task_type.clone(),
            task.effect.subject(&task.cluster_id),
        );
        if let Some(c) = self.clusters.get_mut(&task.cluster_id) {
            c.events.record(ClusterEvent {
                id: String::new(),
                time: OffsetDateTime::now_utc(),
                kind,
                level,
                reason: reason.into(),
                message,
                subject,
                task_id: task_id.into(),
            });
        }
    }
}

/// A task that has just ended, as `tick` applies it.
struct Finished {
    task_id: String,
    task_type: String,
    cluster_id: String,
    effect: Effect,
    /// `success`, `failed` or `canceled`.
    state: &'static str,
    error: Option<(String, String)>,
    at: OffsetDateTime,
}

// === impl Effect ===

impl Effect {
    /// What the task works on, as the events' `subject`.
    pub fn subject(&self, cluster_id: &str) -> String {
        match self {
            Effect::NodePoolReady {
                nodepool_id: id, ..
            }
            | Effect::NodePoolUpdated(id)
            | Effect::NodePoolDeleted(id)
            | Effect::Inspected(id) => id.clone(),
            Effect::AddonsInstalled(names) | Effect::AddonsRemoved(names) => names.join(","),
            Effect::AddonsUpgraded(targets) => targets
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(","),
            _ => cluster_id.to_string(),
        }
    }
}

// === impl EventLog ===

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

// === impl Cluster ===

impl Cluster {
    /// A new cluster in state `initial`, with the default add-ons being installed.
    pub fn new(id: String, owner: String, now: OffsetDateTime) -> Cluster {
        let addons = DEFAULT_ADDONS
            .iter()
            .map(|(name, version)| {
                (
                    name.to_string(),
                    Addon {
                        name: name.to_string(),
                        version: version.to_string(),
                        config: String::new(),
                        state: "installing".into(),
                        upgrade_task: None,
                        target_version: None,
                    },
                )
            })
            .collect();
        Cluster {
            id,
            name: String::new(),
            region_id: String::new(),
            cluster_type: "ManagedKubernetes".into(),
            version: "1.31.1-aliyun.1".into(),
            state: "initial".into(),
            size: 0,
            vpc_id: "vpc-simulated0001".into(),
            deletion_protection: false,
            tags: Vec::new(),
            created: now,
            updated: now,
            owner,
            nodepools: BTreeMap::new(),
            addons,
            upgrade_task: None,
            events: EventLog::default(),
            inspections: Vec::new(),
        }
    }

    /// Records how a task ended: a task event, and what it did to a node pool or the cluster.
    fn record_end(&mut self, f: &Finished) {
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

    /// What a finished task leaves behind.
    fn apply(&mut self, f: &Finished) {
        let success = f.state == "success";
        self.updated = OffsetDateTime::now_utc();
        match f.effect.clone() {
            Effect::BecomesRunning => {
                self.state = if success { "running" } else { "failed" }.into();
                let addon_state = if success { "active" } else { "failed" };
                for a in self.addons.values_mut() {
                    a.state = addon_state.into();
                }
            }
            Effect::IsDeleted => self.state = "delete_failed".into(),
            // The cluster returns to `running` when no task works on it (`release`).
            Effect::GrowsBy(n) => {
                if success {
                    self.size += n;
                }
            }
            Effect::NodePoolReady {
                nodepool_id,
                grows_by,
            } => {
                if let Some(np) = self.nodepools.get_mut(&nodepool_id) {
                    np.change = None;
                    np.updated = OffsetDateTime::now_utc();
                    let state = if success {
                        np.serving += grows_by;
                        self.size += grows_by;
                        "active"
                    } else {
                        np.last_error = f.error.clone().map(|(c, m)| (c, m, f.at));
                        if grows_by > 0 {
                            // The new nodes never joined: they stay, failed.
                            np.failed += grows_by;
                        } else {
                            // Nothing was removed: the pool keeps its size.
                            np.desired_size = np.serving + np.failed;
                        }
                        // A pool that never came up is failed; otherwise it serves on.
                        if np.state == "initial" {
                            "failed"
                        } else {
                            "active"
                        }
                    };
                    np.set_state(state);
                }
            }
            Effect::NodePoolUpdated(id) => {
                if let Some(np) = self.nodepools.get_mut(&id) {
                    np.change = None;
                    if !success {
                        np.last_error = f.error.clone().map(|(c, m)| (c, m, f.at));
                    }
                    np.set_state("active");
                    np.updated = OffsetDateTime::now_utc();
                }
            }
            Effect::NodePoolDeleted(id) => {
                if success {
                    if let Some(np) = self.nodepools.remove(&id) {
                        self.size = (self.size - np.serving).max(0);
                    }
                } else if let Some(np) = self.nodepools.get_mut(&id) {
                    np.change = None;
                    np.last_error = f.error.clone().map(|(c, m)| (c, m, f.at));
                    np.set_state("active");
                }
            }
            Effect::Inspected(_) | Effect::Modified => {}
            Effect::AddonsInstalled(names) => {
                for n in names {
                    if let Some(a) = self.addons.get_mut(&n) {
                        a.state = if success { "active" } else { "failed" }.into();
                    }
                }
            }
            Effect::AddonsRemoved(names) => {
                for n in names {
                    if success {
                        self.addons.remove(&n);
                    } else if let Some(a) = self.addons.get_mut(&n) {
                        a.state = "active".into();
                    }
                }
            }
            Effect::AddonsUpgraded(targets) => {
                for (n, version) in targets {
                    if let Some(a) = self.addons.get_mut(&n) {
                        if success {
                            a.version = version;
                        }
                        a.state = "active".into();
                    }
                }
            }
            Effect::ClusterUpgraded(version) => {
                if success {
                    self.version = version;
                } else {
                    self.state = "updating_failed".into();
                }
            }
        }
    }

    /// The cluster in the shape of `DescribeClusterDetail` and `DescribeClustersV1` items.
    pub fn to_json(&self) -> Value {
        json!({
            "cluster_id": self.id,
            "name": self.name,
            "region_id": self.region_id,
            "zone_id": format!("{}-a", self.region_id),
            "cluster_type": self.cluster_type,
            "cluster_spec": "ack.pro.small",
            "profile": "Default",
            "current_version": self.version,
            "init_version": self.version,
            "state": self.state,
            "size": self.size,
            "vpc_id": self.vpc_id,
            "vswitch_ids": ["vsw-simulated0001"],
            "security_group_id": "sg-simulated0001",
            "network_mode": "vpc",
            "container_cidr": "172.20.0.0/16",
            "service_cidr": "172.21.0.0/20",
            "proxy_mode": "ipvs",
            "deletion_protection": self.deletion_protection,
            "resource_group_id": "rg-default",
            "tags": self.tags,
            "created": rfc3339(self.created),
            "updated": rfc3339(self.updated),
            "master_url": "{}",
            "cluster_domain": "cluster.local",
            "timezone": "Asia/Shanghai",
        })
    }

    /// Sets tags: a key already present takes the new value, a new key is added.
    pub fn set_tags(&mut self, tags: &[Value]) {
        for tag in tags {
            let Some(key) = tag["key"].as_str() else {
                continue;
            };
            let value = tag["value"].clone();
            match self.tags.iter_mut().find(|t| t["key"] == key) {
                Some(existing) => existing["value"] = value,
                None => self.tags.push(json!({"key": key, "value": value})),
            }
        }
        self.updated = OffsetDateTime::now_utc();
    }
}

// === impl NodePool ===

impl NodePool {
    /// A pool being created: `initial`, no nodes yet.
    pub fn new(id: String, name: String, spec: Value, now: OffsetDateTime) -> NodePool {
        NodePool {
            id,
            name,
            state: "initial".into(),
            desired_size: 0,
            serving: 0,
            failed: 0,
            spec,
            created: now,
            updated: now,
            change: None,
            last_error: None,
            since: now,
        }
    }

    pub fn set_state(&mut self, state: &str) {
        if self.state != state {
            self.state = state.into();
            self.since = OffsetDateTime::now_utc();
        }
    }

    /// The node counts with `task` (the change's, if one runs) this far: new nodes are created
    /// over the first half of the task and join over the second; leaving nodes are drained at
    /// once and released over the task.
    pub fn counts(&self, task: Option<&Task>) -> NodeCounts {
        let at_rest = NodeCounts {
            total: self.serving + self.failed,
            serving: self.serving,
            initial: 0,
            failed: self.failed,
            removing: 0,
        };
        let (Some(change), Some(task)) = (&self.change, task) else {
            return at_rest;
        };
        let done = task.fraction();
        let part = |n: i64, f: f64| (n as f64 * f.clamp(0.0, 1.0)).floor() as i64;
        if change.nodes > 0 {
            let created = part(change.nodes, done * 2.0);
            let joined = part(change.nodes, done * 2.0 - 1.0);
            NodeCounts {
                total: at_rest.total + created,
                serving: self.serving + joined,
                initial: created - joined,
                ..at_rest
            }
        } else if self.state == "deleting" {
            let removed = part(at_rest.total, done);
            NodeCounts {
                total: at_rest.total - removed,
                serving: 0,
                initial: 0,
                failed: (self.failed - removed).max(0),
                removing: at_rest.total - removed,
            }
        } else {
            let leaving = (-change.nodes).min(self.serving);
            let removed = part(leaving, done);
            NodeCounts {
                total: at_rest.total - removed,
                serving: self.serving - leaving,
                removing: leaving - removed,
                ..at_rest
            }
        }
    }

    /// The node pool in the shape of `DescribeClusterNodePoolDetail` and list items; `task` is
    /// the one changing its nodes, if any.
    pub fn to_json(&self, region_id: &str, task: Option<&Task>) -> Value {
        let mut v = match &self.spec {
            Value::Object(_) => self.spec.clone(),
            _ => json!({}),
        };
        let info = v["nodepool_info"].as_object().cloned().unwrap_or_default();
        let mut info = Value::Object(info);
        info["nodepool_id"] = json!(self.id);
        info["name"] = json!(self.name);
        info["region_id"] = json!(region_id);
        info["is_default"] = json!(false);
        info["created"] = json!(rfc3339(self.created));
        info["updated"] = json!(rfc3339(self.updated));
        if info.get("type").is_none() {
            info["type"] = json!("ess");
        }
        v["nodepool_info"] = info;
        if !v["scaling_group"].is_object() {
            v["scaling_group"] = json!({});
        }
        v["scaling_group"]["desired_size"] = json!(self.desired_size);
        let n = self.counts(task);
        v["status"] = json!({
            "state": self.state,
            "total_nodes": n.total,
            "healthy_nodes": n.serving,
            "serving_nodes": n.serving,
            "initial_nodes": n.initial,
            "failed_nodes": n.failed,
            "offline_nodes": 0,
            "removing_nodes": n.removing,
            "conditions": self.conditions(&n, task),
        });
        v
    }

    /// Kubernetes-style conditions: `Ready` (true when active with no failed node; otherwise
    /// why not, the latest failure's code and message first), and `Progressing` while a task
    /// works on the pool.
    fn conditions(&self, n: &NodeCounts, task: Option<&Task>) -> Value {
        let since = rfc3339(self.since);
        let ready = if self.state == "active" && n.failed == 0 {
            json!({"type": "Ready", "status": "True", "reason": "NodePoolReady",
                   "message": format!("{} of {} nodes serving", n.serving, self.desired_size),
                   "last_transition_time": since})
        } else if let (Some((code, message, at)), true) =
            (&self.last_error, n.failed > 0 || self.state == "failed")
        {
            json!({"type": "Ready", "status": "False", "reason": code,
                   "message": format!("{message} ({} nodes failed)", n.failed),
                   "last_transition_time": rfc3339(*at)})
        } else {
            json!({"type": "Ready", "status": "False", "reason": capitalized(&self.state),
                   "message": format!("node pool is {}", self.state),
                   "last_transition_time": since})
        };
        let mut conditions = vec![ready];
        if let (Some(_), Some(task)) = (&self.change, task) {
            conditions.push(json!({
                "type": "Progressing", "status": "True", "reason": task.current_stage(),
                "message": format!("{} of {} nodes serving ({} task {})", n.serving,
                                   self.desired_size, task.task_type, task.id),
                "last_transition_time": rfc3339(task.started_at),
            }));
        }
        Value::Array(conditions)
    }
}

fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

// === impl Addon ===

impl Addon {
    pub fn to_json(&self) -> Value {
        json!({"name": self.name, "version": self.version, "state": self.state})
    }
}

// === impl Template ===

impl Template {
    pub fn current(&self) -> Option<&TemplateVersion> {
        self.versions.first()
    }

    pub fn version_json(&self, v: &TemplateVersion) -> Value {
        json!({
            "id": self.id,
            "acl": "private",
            "name": v.name,
            "template": v.template,
            "template_type": v.template_type,
            "description": v.description,
            "tags": v.tags,
            "template_with_hist_id": v.hist_id,
            "created": rfc3339(v.created),
            "updated": rfc3339(v.updated),
        })
    }
}

#[cfg(test)]
mod busy_tests {
    use super::*;

    fn running(state: &mut Resources, id: &str) {
        let mut c = Cluster::new(id.into(), "acct".into(), OffsetDateTime::now_utc());
        c.state = "running".into();
        state.clusters.insert(id.into(), c);
    }

    fn task(state: &mut Resources, id: &str, duration: Duration, effect: Effect) -> String {
        state.start_task(TaskSpec {
            task_type: "test",
            cluster_id: id.into(),
            duration,
            stages: vec!["Work"],
            effect,
            fails_with: None,
            owner: "acct".into(),
            keeps_busy: true,
        })
    }

    fn state_of(state: &Resources, id: &str) -> String {
        state.clusters[id].state.clone()
    }

    #[test]
    fn a_cluster_stays_busy_until_its_last_task_ends() {
        let mut s = Resources::default();
        running(&mut s, "c");
        s.occupy("c", "updating");
        let long = task(
            &mut s,
            "c",
            Duration::from_secs(3600),
            Effect::BecomesRunning,
        );
        s.occupy("c", "scaling");
        task(&mut s, "c", Duration::ZERO, Effect::GrowsBy(2));
        s.tick();
        assert_eq!(
            state_of(&s, "c"),
            "scaling",
            "the long task still works on it"
        );
        assert_eq!(s.clusters["c"].size, 2, "the short one's effect applied");
        if let Some(t) = s.tasks.get_mut(&long) {
            t.cancel();
        }
        s.release("c");
        assert_eq!(state_of(&s, "c"), "running");
    }

    #[test]
    fn a_cluster_that_is_not_serving_keeps_its_state() {
        let mut s = Resources::default();
        running(&mut s, "c");
        for state in ["initial", "deleting", "failed", "updating_failed"] {
            if let Some(c) = s.clusters.get_mut("c") {
                c.state = state.into();
            }
            s.occupy("c", "scaling");
            task(&mut s, "c", Duration::ZERO, Effect::GrowsBy(1));
            s.tick();
            assert_eq!(state_of(&s, "c"), state);
        }
    }
}
