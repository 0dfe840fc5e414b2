//! Command-line interface.

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

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve gRPC (the default).
    Serve(ServeArgs),
    /// Run the embedded ACK simulator alone, for other projects' tests.
    Simulator {
        /// HTTP listen address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Seconds a simulated task takes.
        #[arg(long, default_value_t = 3)]
        task_seconds: u64,
    },
    /// Validate a configuration file and print what it resolves to, without secrets.
    CheckConfig,
}
