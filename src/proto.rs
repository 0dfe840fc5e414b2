//! Generated code and descriptors, quarantined here.
//!
//! The upstream APIs' messages are served dynamically from the descriptor set (one generic path
//! for every operation); the gateway's own services have typed bindings.

use prost_reflect::{DescriptorPool, MessageDescriptor};
use std::sync::OnceLock;

/// Every compiled file (upstream APIs, the gateway's own, and their imports), encoded.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptor.bin"));

/// The gateway's own services.
pub mod gateway {
    #![allow(clippy::all, clippy::pedantic, clippy::unwrap_used)]
    tonic::include_proto!("ackgateway.v1");
}

/// The descriptor pool built from [`FILE_DESCRIPTOR_SET`].
pub fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(FILE_DESCRIPTOR_SET).expect("the built-in descriptor set decodes")
    })
}

/// A message descriptor by its fully-qualified name.
pub fn message(full_name: &str) -> Option<MessageDescriptor> {
    pool().get_message_by_name(full_name)
}
