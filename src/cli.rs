//! Command-line interface.

pub mod watch;

use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "ack-gateway",
    version,
    about = "gRPC gateway for the Alibaba Cloud ACK OpenAPI"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, global = true, env = "ACK_GATEWAY_CONFIG")]
    pub config: Option<PathBuf>,
    /// gRPC listen address (overrides the config file and ACK_GATEWAY_LISTEN).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, clap::Args)]
pub struct SimulatorArgs {
    /// HTTP listen address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Seconds a simulated task takes.
    #[arg(long, default_value_t = 3)]
    pub task_seconds: u64,
    /// Serve HTTPS with this certificate chain (PEM, leaf first).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve gRPC (the default).
    Serve(ServeArgs),
    /// Run the embedded ACK simulator alone, for other projects' tests.
    Simulator(SimulatorArgs),
    /// Validate a configuration file and print what it resolves to, without secrets.
    CheckConfig,
    /// Follow long-running work on a running gateway, with live progress.
    Watch(WatchArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct WatchArgs {
    #[command(subcommand)]
    pub target: WatchTarget,
    /// The gateway's address.
    #[arg(long, global = true, default_value = "http://127.0.0.1:50051")]
    pub addr: String,
    /// Credential profile (`x-ack-profile`); default the gateway's `default`.
    #[arg(long, global = true)]
    pub profile: Option<String>,
    /// Region (`x-ack-region`); default the profile's.
    #[arg(long, global = true)]
    pub region: Option<String>,
    /// Bearer token, when the gateway authenticates callers.
    #[arg(long, global = true, env = "ACK_GATEWAY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum WatchTarget {
    /// A task, e.g. the one CreateCluster or ScaleClusterNodePool returned.
    Task { task_id: String },
    /// A cluster upgrade; with --task-id, the task UpgradeCluster returned.
    ClusterUpgrade {
        cluster_id: String,
        #[arg(long)]
        task_id: Option<String>,
    },
    /// The upgrade of one or more add-ons.
    AddonUpgrade {
        cluster_id: String,
        #[arg(required = true)]
        addons: Vec<String>,
    },
    /// A cluster, until it reaches a target state (default running; repeat --target).
    Cluster {
        cluster_id: String,
        #[arg(long)]
        target: Vec<String>,
    },
    /// A node pool, until it reaches a target state (default active; repeat --target), with
    /// its node counts.
    NodePool {
        cluster_id: String,
        nodepool_id: String,
        #[arg(long)]
        target: Vec<String>,
    },
}
