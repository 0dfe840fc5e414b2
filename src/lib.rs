//! ack-gateway: a gRPC gateway in front of the Alibaba Cloud ACK OpenAPI.
pub mod app;
pub mod cli;
pub mod config;
pub mod error;
pub mod gateway;
pub mod proto;
pub mod secret;
pub mod server;
pub mod signer;
pub mod simulator;
pub mod table;
pub mod telemetry;
pub mod translate;
pub mod upstream;
pub mod vault;
