//! The `ack-gateway watch` command: a client of the WatchService that renders what a UI would
//! get, in a terminal — a progress bar with the current state and stage, a line per finished
//! stage, per event, per change of a node pool's counts and per failed poll, and the outcome.
//! When the output is not a terminal the bar is hidden and the lines are printed plainly, so
//! the command also works in scripts and CI.

use crate::cli::{WatchArgs, WatchTarget};
use crate::proto::gateway::watch_service_client::WatchServiceClient;
use crate::proto::gateway::WatchEventKind as Kind;
use crate::proto::gateway::{
    Phase, WatchAddonUpgradeRequest, WatchClusterRequest, WatchClusterUpgradeRequest, WatchEvent,
    WatchNodePoolRequest, WatchStatus, WatchTaskRequest,
};
use crate::server::{PROFILE_METADATA, REGION_METADATA};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::Write;
use std::time::Duration;
use tonic::transport::Channel;
use tonic::{Code, Status, Streaming};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid gateway address `{0}`")]
    Address(String),
    #[error("cannot connect to the gateway: {0}")]
    Connect(#[from] tonic::transport::Error),
    #[error("invalid {0}: not valid in gRPC metadata")]
    Metadata(&'static str),
    #[error("{}: {}", crate::watch::code_name(.0.code()), .0.message())]
    Status(#[from] Status),
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

/// Connects, follows the target and renders it on the terminal; returns how the watch ended.
pub async fn run(args: &WatchArgs) -> Result<(), ClientError> {
    let bar = ProgressBar::with_draw_target(Some(100), ProgressDrawTarget::stderr());
    bar.enable_steady_tick(Duration::from_millis(120));
    let mut renderer = Renderer::new(bar, std::io::stdout());
    watch(args, &mut renderer).await
}

/// Follows the target, rendering every message with `renderer`.
pub async fn watch<W: Write>(
    args: &WatchArgs,
    renderer: &mut Renderer<W>,
) -> Result<(), ClientError> {
    let channel = Channel::from_shared(args.addr.clone())
        .map_err(|_| ClientError::Address(args.addr.clone()))?
        .connect()
        .await?;
    let mut client = WatchServiceClient::new(channel);
    let end = match &args.target {
        WatchTarget::Task { task_id } => {
            let r = request(
                args,
                WatchTaskRequest {
                    task_id: task_id.clone(),
                },
            )?;
            follow_opened(client.watch_task(r).await, renderer).await
        }
        WatchTarget::ClusterUpgrade {
            cluster_id,
            task_id,
        } => {
            let r = request(
                args,
                WatchClusterUpgradeRequest {
                    cluster_id: cluster_id.clone(),
                    task_id: task_id.clone(),
                },
            )?;
            follow_opened(client.watch_cluster_upgrade(r).await, renderer).await
        }
        WatchTarget::AddonUpgrade { cluster_id, addons } => {
            let r = request(
                args,
                WatchAddonUpgradeRequest {
                    cluster_id: cluster_id.clone(),
                    addons: addons.clone(),
                },
            )?;
            follow_opened(client.watch_addon_upgrade(r).await, renderer).await
        }
        WatchTarget::Cluster { cluster_id, target } => {
            let r = request(
                args,
                WatchClusterRequest {
                    cluster_id: cluster_id.clone(),
                    target_states: target.clone(),
                },
            )?;
            follow_opened(client.watch_cluster(r).await, renderer).await
        }
        WatchTarget::NodePool {
            cluster_id,
            nodepool_id,
            target,
        } => {
            let r = request(
                args,
                WatchNodePoolRequest {
                    cluster_id: cluster_id.clone(),
                    nodepool_id: nodepool_id.clone(),
                    target_states: target.clone(),
                },
            )?;
            follow_opened(client.watch_node_pool(r).await, renderer).await
        }
    };
    renderer.finish(&end)?;
    Ok(end?)
}

/// A request with the profile, region and bearer token as metadata.
fn request<T>(args: &WatchArgs, message: T) -> Result<tonic::Request<T>, ClientError> {
    let mut r = tonic::Request::new(message);
    let md = r.metadata_mut();
    if let Some(p) = &args.profile {
        md.insert(
            PROFILE_METADATA,
            p.parse().map_err(|_| ClientError::Metadata("profile"))?,
        );
    }
    if let Some(region) = &args.region {
        md.insert(
            REGION_METADATA,
            region
                .parse()
                .map_err(|_| ClientError::Metadata("region"))?,
        );
    }
    if let Some(token) = &args.token {
        md.insert(
            "authorization",
            format!("Bearer {token}")
                .parse()
                .map_err(|_| ClientError::Metadata("token"))?,
        );
    }
    Ok(r)
}

/// Renders an opened watch's messages until it ends; returns its end.
async fn follow_opened<T: Into<WatchEvent>, W: Write>(
    opened: Result<tonic::Response<Streaming<T>>, Status>,
    renderer: &mut Renderer<W>,
) -> Result<(), Status> {
    follow(opened?.into_inner(), renderer).await
}

/// Renders every message until the stream ends; returns its end. Every watch RPC's message
/// has `WatchEvent`'s fields.
pub async fn follow<T: Into<WatchEvent>, W: Write>(
    mut stream: Streaming<T>,
    renderer: &mut Renderer<W>,
) -> Result<(), Status> {
    // Bounded by the stream: the gateway ends every watch (its maximum duration at the latest).
    loop {
        match stream.message().await {
            Ok(Some(m)) => renderer
                .show(&m.into())
                .map_err(|e| Status::internal(e.to_string()))?,
            Ok(None) => return Ok(()),
            Err(status) => return Err(status),
        }
    }
}

/// Draws the bar and prints the lines.
pub struct Renderer<W: Write> {
    bar: ProgressBar,
    out: W,
    /// Stages already printed as finished.
    printed_stages: usize,
    last: Option<WatchStatus>,
}

impl<W: Write> Renderer<W> {
    pub fn new(bar: ProgressBar, out: W) -> Self {
        if let Ok(style) =
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos:>3}% {msg}")
        {
            bar.set_style(style);
        }
        Renderer {
            bar,
            out,
            printed_stages: 0,
            last: None,
        }
    }

    /// The output, once done (for tests).
    pub fn into_output(self) -> W {
        self.out
    }

    fn line(&mut self, text: String) -> std::io::Result<()> {
        if self.bar.is_hidden() {
            writeln!(self.out, "{text}")
        } else {
            self.bar.println(text);
            Ok(())
        }
    }

    pub fn show(&mut self, m: &WatchEvent) -> std::io::Result<()> {
        let kind = Kind::try_from(m.kind).unwrap_or(Kind::Unspecified);
        if let Some(status) = &m.status {
            if kind == Kind::Initial {
                self.line(format!(
                    "watching {} {}",
                    status.target_kind, status.target_id
                ))?;
            }
            // Stages before the last one are finished; print each once.
            let finished = status.stages.len().saturating_sub(1);
            let finished = if is_final(status) {
                status.stages.len()
            } else {
                finished
            };
            for stage in status
                .stages
                .iter()
                .take(finished)
                .skip(self.printed_stages)
            {
                let mark = if stage.state.eq_ignore_ascii_case("failed") {
                    "✗"
                } else {
                    "✓"
                };
                self.line(format!("  {mark} {}", stage.name))?;
            }
            self.printed_stages = self.printed_stages.max(finished);
            for addon in &status.addons {
                let changed = self
                    .last
                    .as_ref()
                    .and_then(|l| l.addons.iter().find(|a| a.name == addon.name))
                    .is_none_or(|a| a.state != addon.state || a.version != addon.version);
                if changed {
                    self.line(format!(
                        "  {} {} {}",
                        addon.name,
                        addon.version,
                        if addon.state.is_empty() {
                            "-"
                        } else {
                            &addon.state
                        }
                    ))?;
                }
            }
            // A node pool's counts: a line whenever they change.
            if let Some(counts) = &status.node_counts {
                let changed = self
                    .last
                    .as_ref()
                    .is_none_or(|l| l.node_counts.as_ref() != Some(counts));
                if changed && status.error.is_none() {
                    self.line(format!("  nodes: {}", status.message))?;
                }
            }
            self.bar.set_position(u64::from(
                status
                    .progress_percent
                    .unwrap_or_else(|| stage_progress(status)),
            ));
            self.bar.set_message(format!(
                "{} {}",
                if status.state.is_empty() {
                    "pending"
                } else {
                    &status.state
                },
                status.stage
            ));
            self.last = Some(status.clone());
        }
        for e in &m.new_events {
            self.line(format!("  {} {}: {}", e.timestamp, e.reason, e.message))?;
        }
        if let Some(p) = &m.poll_error {
            let retry = p
                .retry_in
                .as_ref()
                .map(|d| format!("{}.{:03}s", d.seconds, d.nanos / 1_000_000))
                .unwrap_or_default();
            self.line(format!(
                "  ! poll failed ({}): {}; retry {} in {retry}",
                p.code, p.message, p.attempt
            ))?;
        }
        Ok(())
    }

    /// Prints the outcome and clears the bar.
    pub fn finish(&mut self, end: &Result<(), Status>) -> std::io::Result<()> {
        let line = match end {
            Ok(()) => match self.last.as_ref() {
                Some(s) => format!("done: {} {} is {}", s.target_kind, s.target_id, s.state),
                None => "done".to_string(),
            },
            Err(s) if s.code() == Code::Aborted => format!("failed: {}", s.message()),
            Err(s) => format!(
                "ended: {}: {}",
                crate::watch::code_name(s.code()),
                s.message()
            ),
        };
        self.bar.finish_and_clear();
        writeln!(self.out, "{line}")
    }
}

fn is_final(status: &WatchStatus) -> bool {
    matches!(
        Phase::try_from(status.phase),
        Ok(Phase::Succeeded | Phase::Failed | Phase::Canceled)
    )
}

/// A rough position when the upstream gives no progress: finished stages over known ones.
fn stage_progress(status: &WatchStatus) -> u32 {
    let n = status.stages.len();
    if n == 0 {
        return 0;
    }
    let done = status
        .stages
        .iter()
        .filter(|s| s.state.eq_ignore_ascii_case("success"))
        .count();
    (done * 100 / n) as u32
}
