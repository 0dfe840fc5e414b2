//! The simulator's in-memory cloud: clusters with their node pools, add-ons, tags and upgrades,
//! deployment templates, and the tasks that change them. Tasks advance with wall-clock time
//! (minus the time they spend paused); their effects apply when a request next looks at the
//! state, so nothing runs in the background.
//!
//! This file holds [`Resources`], all the simulator keeps, and how tasks start and end on it and
//! keep their cluster busy; each kind of resource is in a module of its own under `state/`.

mod addons;
mod clusters;
mod effects;
mod events;
mod format;
mod inspections;
mod nodepools;
mod tasks;
mod templates;

pub use addons::{Addon, DEFAULT_ADDONS};
pub use clusters::Cluster;
pub use effects::Effect;
pub use events::ClusterEvent;
pub use format::{new_id, rfc3339};
pub use inspections::Inspection;
pub use nodepools::{NodeChange, NodePool};
pub use tasks::{Task, TaskSpec};
pub use templates::{Template, TemplateVersion};

use clusters::BUSY_STATES;
use std::collections::BTreeMap;
use tasks::TaskEnd;
use time::OffsetDateTime;

#[derive(Default)]
pub struct Resources {
    pub clusters: BTreeMap<String, Cluster>,
    pub tasks: BTreeMap<String, Task>,
    pub templates: BTreeMap<String, Template>,
}

impl Resources {
    /// Applies the effects of every task that has finished since last looked at, in the order
    /// they ended, and records what happened in their clusters' events.
    pub fn tick(&mut self) {
        let mut finished = Vec::new();
        for task in self.tasks.values_mut() {
            if !task.applied && task.is_finished() {
                task.applied = true;
                finished.push(TaskEnd {
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
        let task = Task::new(id.clone(), spec);
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

#[cfg(test)]
mod busy_tests {
    use super::*;
    use std::time::Duration;

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
