//! ack-gateway: a gRPC gateway in front of the Alibaba Cloud ACK OpenAPI.
pub mod access;
pub mod admin;
pub mod app;
pub mod broker;
pub mod cache;
pub mod cli;
pub mod config;
pub mod edge;
pub mod error;
pub mod gateway;
pub mod listener;
pub mod metrics;
pub mod proto;
pub mod ratelimit;
pub mod reload;
pub mod server;
pub mod shared;
pub mod telemetry;
pub mod translate;
pub mod upstream;
pub mod vault;
pub mod watch;
pub mod writes;

// The workspace's other crates, under the names the gateway's modules use.
pub use ack_signer as signer;
pub use ack_signer::secret;
pub use ack_simulator as simulator;
pub use ack_table as table;
