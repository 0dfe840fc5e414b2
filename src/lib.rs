//! ack-gateway: a gRPC gateway in front of the Alibaba Cloud ACK OpenAPI.
pub mod secret;
pub mod signer;
pub mod table;
