//! The operation table: one committed data file (`ops/operations.json`) that drives the protos,
//! the request mapping, the simulator's routes and the gateway's policies.
//!
//! Invariant: adding an operation is a change to the table (via `ops/derive.py`), never code.

pub mod model;
pub mod protogen;

pub use model::{
    BodyKind, Field, FieldType, Location, NotFoundMeans, Operation, OutcomeCheck, Policy,
    ResponseKind, ServiceInfo, Style,
};

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

/// The table as shipped in the binary: `ops/operations.json` without the API documentation
/// (operation summaries, field descriptions), which only the generated protos need (build.rs).
const TABLE_JSON: &str = include_str!(concat!(env!("OUT_DIR"), "/operations_runtime.json"));

/// The loaded table, indexed for lookups by gRPC method.
#[derive(Debug)]
pub struct OperationTable {
    pub table: model::Table,
    /// Service key → operation name → index into `table.operations` (nested, so a lookup by
    /// two `&str` allocates nothing: it runs on every call).
    by_name: HashMap<String, HashMap<String, usize>>,
}

/// The table shipped in this binary, parsed once.
pub fn builtin() -> Arc<OperationTable> {
    static TABLE: OnceLock<Arc<OperationTable>> = OnceLock::new();
    TABLE
        .get_or_init(|| {
            let table: model::Table =
                serde_json::from_str(TABLE_JSON).expect("the built-in operation table parses");
            Arc::new(OperationTable::new(table))
        })
        .clone()
}

/// The table with its API documentation, as the protos are generated from it: `text` is
/// `ops/operations.json` (the gateway's build script reads it; tests include it).
pub fn documented(text: &str) -> Result<OperationTable, serde_json::Error> {
    Ok(OperationTable::new(serde_json::from_str(text)?))
}

/// One operation of a shared table, held by its position: a call carries its operation from
/// the edge to the gateway without copying it or looking it up a second time.
#[derive(Debug, Clone)]
pub struct OperationRef {
    table: Arc<OperationTable>,
    index: usize,
}

impl OperationRef {
    /// The operation `name` of the service `service`, if the table has it.
    pub fn find(table: &Arc<OperationTable>, service: &str, name: &str) -> Option<Self> {
        let index = table.index_of(service, name)?;
        Some(OperationRef {
            table: table.clone(),
            index,
        })
    }
}

impl std::ops::Deref for OperationRef {
    type Target = Operation;

    fn deref(&self) -> &Operation {
        &self.table.table.operations[self.index]
    }
}

// === impl OperationTable ===

impl OperationTable {
    pub fn new(table: model::Table) -> Self {
        let mut by_name: HashMap<String, HashMap<String, usize>> = HashMap::new();
        for (i, op) in table.operations.iter().enumerate() {
            by_name
                .entry(op.service.clone())
                .or_default()
                .insert(op.name.clone(), i);
        }
        OperationTable { table, by_name }
    }

    pub fn operation(&self, service: &str, name: &str) -> Option<&Operation> {
        self.index_of(service, name)
            .map(|i| &self.table.operations[i])
    }

    fn index_of(&self, service: &str, name: &str) -> Option<usize> {
        self.by_name.get(service)?.get(name).copied()
    }

    pub fn service(&self, key: &str) -> Option<&ServiceInfo> {
        self.table.services.get(key)
    }

    pub fn operations(&self) -> impl Iterator<Item = &Operation> {
        self.table.operations.iter()
    }

    /// The fully-qualified gRPC service name, e.g. `alibabacloud.cs.v20151215.ContainerService`.
    pub fn grpc_service_name(&self, key: &str) -> Option<String> {
        self.service(key)
            .map(|s| format!("{}.{}", s.package, s.service))
    }
}

#[cfg(test)]
mod tests;
