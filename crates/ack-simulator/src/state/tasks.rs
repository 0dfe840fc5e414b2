//! Tasks: what starts one, how it advances with wall-clock time (minus its pauses), pauses,
//! resumes and is canceled, how it ended, and its shape in `DescribeTaskInfo` answers.

use super::effects::Effect;
use super::format::rfc3339;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use time::OffsetDateTime;

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

impl Task {
    /// A task starting now, as `spec` says.
    pub(super) fn new(id: String, spec: TaskSpec) -> Task {
        Task {
            id,
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
        }
    }

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

/// A task that has just ended, as `tick` applies it.
pub(super) struct TaskEnd {
    pub(super) task_id: String,
    pub(super) task_type: String,
    pub(super) cluster_id: String,
    pub(super) effect: Effect,
    /// `success`, `failed` or `canceled`.
    pub(super) state: &'static str,
    pub(super) error: Option<(String, String)>,
    pub(super) at: OffsetDateTime,
}
