//! A cluster's add-ons (components), and the ones every new cluster starts with.

use serde_json::{json, Value};

/// An installed add-on (component).
#[derive(Debug, Clone)]
pub struct Addon {
    pub name: String,
    pub version: String,
    pub config: String,
    /// `installing`, `active`, `upgrading`, `deleting` or `failed`.
    pub state: String,
    /// The task of the latest upgrade of this add-on, if any.
    pub upgrade_task: Option<String>,
    /// The version the latest upgrade moves to.
    pub target_version: Option<String>,
}

/// The add-ons every new cluster starts with, as ACK installs its system components.
pub const DEFAULT_ADDONS: &[(&str, &str)] = &[
    ("coredns", "v1.11.3.2-f57ea7ed6-aliyun"),
    ("csi-plugin", "v1.30.3-921e63a-aliyun"),
    ("metrics-server", "v0.3.9.4-ff225cd-aliyun"),
];

impl Addon {
    pub fn to_json(&self) -> Value {
        json!({"name": self.name, "version": self.version, "state": self.state})
    }
}
