//! A simulated cluster: what it holds, how a new one starts (`initial`, its default add-ons
//! installing), its tags, and its shape in `DescribeClusterDetail` answers.

use super::addons::{Addon, DEFAULT_ADDONS};
use super::events::EventLog;
use super::format::rfc3339;
use super::inspections::Inspection;
use super::nodepools::NodePool;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use time::OffsetDateTime;

#[derive(Debug, Clone)]
pub struct Cluster {
    pub id: String,
    pub name: String,
    pub region_id: String,
    pub cluster_type: String,
    pub version: String,
    /// `initial` (being created), `running`, busy (`scaling`, `updating`: see
    /// [`BUSY_STATES`]), `updating_failed`, `failed`, `deleting` or `delete_failed`.
    pub state: String,
    pub size: i64,
    pub vpc_id: String,
    pub deletion_protection: bool,
    pub tags: Vec<Value>,
    pub created: OffsetDateTime,
    pub updated: OffsetDateTime,
    /// Credential owner (account) that created it; other accounts do not see it.
    pub owner: String,
    pub nodepools: BTreeMap<String, NodePool>,
    pub addons: BTreeMap<String, Addon>,
    /// The task of the latest cluster upgrade, if the cluster was ever upgraded.
    pub upgrade_task: Option<String>,
    /// What happened to the cluster, oldest first (`DescribeClusterEvents`).
    pub events: EventLog,
    /// Inspection reports (`RunClusterInspect`), oldest first.
    pub inspections: Vec<Inspection>,
}

/// The states of a cluster some task is working on, which it leaves for `running` when the
/// last such task ends: `scaling` (nodes being added: ScaleOutCluster, AttachInstances,
/// ScaleClusterNodePool) and `updating` (its configuration changing: node pools created,
/// modified or deleted, add-ons installed, upgraded or removed, the cluster upgraded).
pub const BUSY_STATES: &[&str] = &["scaling", "updating"];

impl Cluster {
    /// A new cluster in state `initial`, with the default add-ons being installed.
    pub fn new(id: String, owner: String, now: OffsetDateTime) -> Cluster {
        let addons = DEFAULT_ADDONS
            .iter()
            .map(|(name, version)| {
                (
                    name.to_string(),
                    Addon {
                        name: name.to_string(),
                        version: version.to_string(),
                        config: String::new(),
                        state: "installing".into(),
                        upgrade_task: None,
                        target_version: None,
                    },
                )
            })
            .collect();
        Cluster {
            id,
            name: String::new(),
            region_id: String::new(),
            cluster_type: "ManagedKubernetes".into(),
            version: "1.31.1-aliyun.1".into(),
            state: "initial".into(),
            size: 0,
            vpc_id: "vpc-simulated0001".into(),
            deletion_protection: false,
            tags: Vec::new(),
            created: now,
            updated: now,
            owner,
            nodepools: BTreeMap::new(),
            addons,
            upgrade_task: None,
            events: EventLog::default(),
            inspections: Vec::new(),
        }
    }

    /// The cluster in the shape of `DescribeClusterDetail` and `DescribeClustersV1` items.
    pub fn to_json(&self) -> Value {
        json!({
            "cluster_id": self.id,
            "name": self.name,
            "region_id": self.region_id,
            "zone_id": format!("{}-a", self.region_id),
            "cluster_type": self.cluster_type,
            "cluster_spec": "ack.pro.small",
            "profile": "Default",
            "current_version": self.version,
            "init_version": self.version,
            "state": self.state,
            "size": self.size,
            "vpc_id": self.vpc_id,
            "vswitch_ids": ["vsw-simulated0001"],
            "security_group_id": "sg-simulated0001",
            "network_mode": "vpc",
            "container_cidr": "172.20.0.0/16",
            "service_cidr": "172.21.0.0/20",
            "proxy_mode": "ipvs",
            "deletion_protection": self.deletion_protection,
            "resource_group_id": "rg-default",
            "tags": self.tags,
            "created": rfc3339(self.created),
            "updated": rfc3339(self.updated),
            "master_url": "{}",
            "cluster_domain": "cluster.local",
            "timezone": "Asia/Shanghai",
        })
    }

    /// Sets tags: a key already present takes the new value, a new key is added.
    pub fn set_tags(&mut self, tags: &[Value]) {
        for tag in tags {
            let Some(key) = tag["key"].as_str() else {
                continue;
            };
            let value = tag["value"].clone();
            match self.tags.iter_mut().find(|t| t["key"] == key) {
                Some(existing) => existing["value"] = value,
                None => self.tags.push(json!({"key": key, "value": value})),
            }
        }
        self.updated = OffsetDateTime::now_utc();
    }
}
