//! What a finished task does: the effect a task carries, the object it works on (the events'
//! `subject`), and what its end, in success or failure, leaves in its cluster.

use super::clusters::Cluster;
use super::tasks::TaskEnd;
use time::OffsetDateTime;

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

impl Cluster {
    /// What a finished task leaves behind.
    pub(super) fn apply(&mut self, f: &TaskEnd) {
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
}
