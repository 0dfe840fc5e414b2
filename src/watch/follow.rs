//! What the write path learns from the shared pollers the watch RPCs use:
//! - the journal follows each write's task to its end: an entry written by this replica whose
//!   write started a task (`task_running`) is rewritten when the task ends (`succeeded`, or
//!   `failed` with the task's error);
//! - a write queued behind a busy cluster learns when the cluster is running again
//!   (`ClusterStates`, handed to the gateway at start).

use super::{End, Target, Watcher};
use crate::gateway::CallContext;
use crate::writes::journal::{Entry, Phase};
use std::sync::Arc;
use std::time::Duration;

/// How long a task is followed at most (the journal says it is still running after that).
const LONGEST: Duration = Duration::from_secs(6 * 3600);

/// Follows, until the process ends, the tasks of the writes this replica journals.
pub fn journal_tasks(hub: Arc<Watcher>) {
    let journal = hub.gateway.journal().clone();
    let mut entries = journal.subscribe();
    let weak = Arc::downgrade(&hub);
    drop(hub);
    tokio::spawn(async move {
        loop {
            let entry = match entries.recv().await {
                Ok(e) => e,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "the journal's task follower fell behind");
                    continue;
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            };
            if entry.phase != Phase::TaskRunning
                || entry.task_id.is_empty()
                || entry.replica != journal.replica()
            {
                continue;
            }
            let Some(hub) = weak.upgrade() else { return };
            tokio::spawn(follow(hub, entry));
        }
    });
}

/// Waits for the entry's task to end and rewrites the entry.
async fn follow(hub: Arc<Watcher>, mut entry: Entry) {
    let target = match Target::task(&entry.task_id) {
        Ok(t) => t,
        Err(_) => return,
    };
    let ctx = CallContext {
        caller: super::POLL_CALLER.to_string(),
        profile: entry.profile.clone(),
        region: Some(entry.region.clone()),
        watcher_poll: true,
        ..CallContext::default()
    };
    let journal = hub.gateway.journal().clone();
    // The gateway shutting down ends the following too (its poller then stops, and another
    // replica's takes over the watchers' target).
    let closed = hub.closed();
    let Ok(mut rx) = hub.join(&ctx, target) else {
        return;
    };
    drop(hub);
    let ended = tokio::time::timeout(LONGEST, async {
        loop {
            if let Some(end) = rx.borrow_and_update().end.clone() {
                return Some(end);
            }
            if rx.changed().await.is_err() {
                return None;
            }
        }
    });
    let end = tokio::select! {
        ended = ended => ended,
        () = closed => return,
    };
    let Ok(Some(end)) = end else { return };
    match end {
        End::Work(Ok(())) => entry.phase = Phase::Succeeded,
        End::Work(Err(status)) => {
            use tonic_types::StatusExt as _;
            entry.phase = Phase::Failed;
            entry.code = crate::error::code_name(status.code()).to_string();
            if let Some(info) = status.get_details_error_info() {
                entry.reason = info.reason;
            }
            entry.message = status.message().chars().take(300).collect();
        }
        // The task cannot be read (gone, or no access): the write's own outcome stands.
        End::Poll(_) => return,
    }
    journal.put(entry).await;
}

/// The hub as the write path's view of cluster states.
pub struct HubClusterStates(pub std::sync::Weak<Watcher>);

impl crate::writes::busy::ClusterStates for HubClusterStates {
    fn until_running<'a>(
        &'a self,
        profile: &'a str,
        region: &'a str,
        cluster_id: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + 'a>> {
        Box::pin(async move {
            let hub = self.0.upgrade().ok_or("the gateway is stopping")?;
            let target = Target::cluster(cluster_id, &["running".to_string()])
                .map_err(|s| s.message().to_string())?;
            let ctx = CallContext {
                caller: super::POLL_CALLER.to_string(),
                profile: profile.to_string(),
                region: Some(region.to_string()),
                watcher_poll: true,
                ..CallContext::default()
            };
            let closed = hub.closed();
            let mut rx = hub
                .join(&ctx, target)
                .map_err(|s| s.message().to_string())?;
            drop(hub);
            tokio::pin!(closed);
            loop {
                let end = rx.borrow_and_update().end.clone();
                match end {
                    Some(End::Work(Ok(()))) => return Ok(()),
                    Some(End::Work(Err(s)) | End::Poll(s)) => return Err(s.message().to_string()),
                    None => {}
                }
                tokio::select! {
                    changed = rx.changed() => {
                        if changed.is_err() {
                            return Err("the cluster's poller stopped".into());
                        }
                    }
                    () = &mut closed => return Err("the gateway is stopping".into()),
                }
            }
        })
    }
}
