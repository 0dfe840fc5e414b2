//! A cluster's node pools: their nodes as a task creates, joins, drains and releases them, the
//! counts and conditions their `status` reports, and their shape in node pool answers.

use super::format::rfc3339;
use super::tasks::Task;
use serde_json::{json, Value};
use time::OffsetDateTime;

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
