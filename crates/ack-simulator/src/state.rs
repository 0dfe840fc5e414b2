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
}

/// A node pool: its spec is what the caller sent (minus secrets), echoed back as the API does.
#[derive(Debug, Clone)]
pub struct NodePool {
    pub id: String,
    pub name: String,
    /// `initial`, `active`, `scaling`, `updating`, `removing` or `failed`.
    pub state: String,
    pub desired_size: i64,
    pub spec: Value,
    pub created: OffsetDateTime,
    pub updated: OffsetDateTime,
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
    NodePoolReady { nodepool_id: String, grows_by: i64 },
    NodePoolUpdated(String),
    NodePoolDeleted(String),
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
    /// Applies the effects of every task that has finished since last looked at.
    pub fn tick(&mut self) {
        let mut finished = Vec::new();
        for task in self.tasks.values_mut() {
            if !task.applied && task.is_finished() {
                task.applied = true;
                finished.push((
                    task.cluster_id.clone(),
                    task.effect.clone(),
                    task.state() == "success",
                ));
            }
        }
        for (cluster_id, effect, success) in finished {
            if let Effect::IsDeleted = effect {
                if success {
                    self.clusters.remove(&cluster_id);
                    continue;
                }
            }
            if let Some(c) = self.clusters.get_mut(&cluster_id) {
                c.apply(effect, success);
            }
            self.release(&cluster_id);
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
            .any(|t| t.cluster_id == cluster_id && !t.applied);
        if working {
            return;
        }
        if let Some(c) = self.clusters.get_mut(cluster_id) {
            if BUSY_STATES.contains(&c.state.as_str()) {
                c.state = "running".into();
            }
        }
    }

    pub fn start_task(&mut self, spec: TaskSpec) -> String {
        let id = format!("T-{}", &new_id("")[..24]);
        self.tasks.insert(
            id.clone(),
            Task {
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
                paused: None,
                pauses: Vec::new(),
                canceled: None,
                notes: Vec::new(),
            },
        );
        id
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
        }
    }

    /// What a finished task leaves behind.
    fn apply(&mut self, effect: Effect, success: bool) {
        self.updated = OffsetDateTime::now_utc();
        match effect {
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
                    if success {
                        np.desired_size += grows_by;
                        self.size += grows_by;
                        np.state = "active".into();
                    } else {
                        // A pool that never came up stays failed; a failed scale-out leaves it as it was.
                        np.state = if np.state == "initial" {
                            "failed"
                        } else {
                            "active"
                        }
                        .into();
                    }
                    np.updated = OffsetDateTime::now_utc();
                }
            }
            Effect::NodePoolUpdated(id) => {
                if let Some(np) = self.nodepools.get_mut(&id) {
                    np.state = "active".into();
                    np.updated = OffsetDateTime::now_utc();
                }
            }
            Effect::NodePoolDeleted(id) => {
                if success {
                    if let Some(np) = self.nodepools.remove(&id) {
                        self.size = (self.size - np.desired_size).max(0);
                    }
                } else if let Some(np) = self.nodepools.get_mut(&id) {
                    np.state = "active".into();
                }
            }
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
    /// The node pool in the shape of `DescribeClusterNodePoolDetail` and list items.
    pub fn to_json(&self, region_id: &str) -> Value {
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
        let serving = if self.state == "active" {
            self.desired_size
        } else {
            0
        };
        v["status"] = json!({
            "state": self.state,
            "total_nodes": self.desired_size,
            "healthy_nodes": serving,
            "serving_nodes": serving,
            "initial_nodes": self.desired_size - serving,
            "failed_nodes": 0,
            "offline_nodes": 0,
            "removing_nodes": 0,
        });
        v
    }
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
