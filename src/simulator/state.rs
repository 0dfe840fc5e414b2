//! The simulator's in-memory cloud: clusters and the tasks that change them. Tasks advance
//! with wall-clock time; their effects apply when a request next looks at the state.

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
    pub state: String,
    pub size: i64,
    pub vpc_id: String,
    pub deletion_protection: bool,
    pub tags: Vec<Value>,
    pub created: OffsetDateTime,
    pub updated: OffsetDateTime,
    /// Credential owner (account) that created it; other accounts do not see it.
    pub owner: String,
}

#[derive(Debug, Clone)]
/// What a finished task does to its cluster.
pub enum Effect {
    BecomesRunning,
    IsDeleted,
    GrowsBy(i64),
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
    /// Ends in failure with this error (code, message) instead of success.
    pub fails_with: Option<(String, String)>,
    pub effect: Effect,
    pub applied: bool,
    pub owner: String,
}

#[derive(Default)]
pub struct State {
    pub clusters: BTreeMap<String, Cluster>,
    pub tasks: BTreeMap<String, Task>,
}

pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

pub fn new_id(prefix: &str) -> String {
    let raw = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}{raw}")
}

// === impl Task ===

impl Task {
    /// `running`, `success` or `failed`, by elapsed time.
    pub fn state(&self) -> &'static str {
        if self.started.elapsed() < self.duration {
            "running"
        } else if self.fails_with.is_some() {
            "failed"
        } else {
            "success"
        }
    }

    fn stage_index(&self) -> usize {
        if self.stages.is_empty() {
            return 0;
        }
        let frac = self.started.elapsed().as_secs_f64() / self.duration.as_secs_f64().max(1e-3);
        ((frac * self.stages.len() as f64) as usize).min(self.stages.len() - 1)
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
                let start = self.started_at + stage_len * i as u32;
                let done = i < current || state != "running";
                let mut s = json!({
                    "state": if done { if state == "failed" && i == current { "failed" } else { "success" } } else { "running" },
                    "message": name,
                    "start_time": rfc3339(start),
                });
                if done {
                    s["end_time"] = json!(rfc3339(start + stage_len));
                }
                s
            })
            .collect();
        let events: Vec<Value> = self
            .stages
            .iter()
            .take(current + 1)
            .enumerate()
            .map(|(i, name)| {
                json!({
                    "action": "Stage", "level": "Normal", "reason": "Started", "source": "simulator",
                    "message": format!("stage {} started: {name}", i + 1),
                    "timestamp": rfc3339(self.started_at + stage_len * i as u32),
                })
            })
            .collect();
        let mut v = json!({
            "task_id": self.id,
            "cluster_id": self.cluster_id,
            "task_type": self.task_type,
            "state": state,
            "created": rfc3339(self.started_at),
            "updated": rfc3339(OffsetDateTime::now_utc()),
            "current_stage": self.stages.get(current).copied().unwrap_or(""),
            "stages": stages,
            "events": events,
            "target": {"id": self.cluster_id, "type": "cluster"},
            "task_result": [],
            "request_id": request_id,
        });
        if state == "failed" {
            if let Some((code, message)) = &self.fails_with {
                v["error"] = json!({"code": code, "message": message});
            }
        }
        if state == "success" {
            v["task_result"] = json!([{"data": self.cluster_id, "status": "success"}]);
        }
        v
    }
}

// === impl State ===

impl State {
    /// Applies the effects of every task that has finished since last looked at.
    pub fn tick(&mut self) {
        let mut effects = Vec::new();
        for task in self.tasks.values_mut() {
            if !task.applied && task.state() != "running" {
                task.applied = true;
                if task.state() == "success" {
                    effects.push((task.cluster_id.clone(), task.effect.clone()));
                } else if let Some(c) = self.clusters.get_mut(&task.cluster_id) {
                    c.state = "failed".into();
                }
            }
        }
        for (cluster_id, effect) in effects {
            match effect {
                Effect::BecomesRunning => {
                    if let Some(c) = self.clusters.get_mut(&cluster_id) {
                        c.state = "running".into();
                        c.updated = OffsetDateTime::now_utc();
                    }
                }
                Effect::IsDeleted => {
                    self.clusters.remove(&cluster_id);
                }
                Effect::GrowsBy(n) => {
                    if let Some(c) = self.clusters.get_mut(&cluster_id) {
                        c.size += n;
                        c.state = "running".into();
                        c.updated = OffsetDateTime::now_utc();
                    }
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn start_task(
        &mut self,
        task_type: &str,
        cluster_id: &str,
        duration: Duration,
        stages: Vec<&'static str>,
        effect: Effect,
        fails_with: Option<(String, String)>,
        owner: &str,
    ) -> String {
        let id = format!("T-{}", &new_id("")[..24]);
        self.tasks.insert(
            id.clone(),
            Task {
                id: id.clone(),
                task_type: task_type.into(),
                cluster_id: cluster_id.into(),
                started: Instant::now(),
                started_at: OffsetDateTime::now_utc(),
                duration,
                stages,
                fails_with,
                effect,
                applied: false,
                owner: owner.into(),
            },
        );
        id
    }
}

// === impl Cluster ===

impl Cluster {
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
}
