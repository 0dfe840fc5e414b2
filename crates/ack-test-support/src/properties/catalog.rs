//! Every operation of the built-in table with its request and response messages, by index:
//! what the request and response properties pick from.

use ack_gateway::proto;
use ack_gateway::table::{self, Operation, OperationTable};
use prost_reflect::MessageDescriptor;
use std::sync::{Arc, OnceLock};

/// Every operation of the built-in table with its request and response messages, by index.
pub struct Ops {
    table: Arc<OperationTable>,
    messages: Vec<(MessageDescriptor, MessageDescriptor)>,
}

impl Ops {
    pub fn count(&self) -> usize {
        self.messages.len()
    }

    /// The operation at `i` (taken modulo the number of operations).
    pub fn get(&self, i: usize) -> (&Operation, &MessageDescriptor, &MessageDescriptor) {
        let i = i % self.count();
        let op = &self.table.table.operations[i];
        let (req, resp) = &self.messages[i];
        (op, req, resp)
    }

    pub fn index_of(&self, service: &str, name: &str) -> Option<usize> {
        self.table
            .table
            .operations
            .iter()
            .position(|op| op.service == service && op.name == name)
    }
}

/// The operations, built once.
pub fn ops() -> &'static Ops {
    static OPS: OnceLock<Ops> = OnceLock::new();
    OPS.get_or_init(|| {
        let table = table::builtin();
        let messages = table
            .table
            .operations
            .iter()
            .map(|op| {
                let package = &table.table.services[&op.service].package;
                let message = |suffix: &str| {
                    proto::message(&format!("{package}.{}{suffix}", op.name))
                        .expect("every operation has its messages")
                };
                (message("Request"), message("Response"))
            })
            .collect();
        Ops { table, messages }
    })
}
