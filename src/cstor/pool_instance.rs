//! CStorPoolInstance (`cstorpoolinstances`, short `cspi`): one pool on one node, created by
//! the cspc-operator and managed by the pool manager running next to it.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    Extra, PoolCondition, PoolConfig, RaidGroup, VersionDetails, custom_resource, string_enum,
};

custom_resource! {
    /// A CStorPoolInstance: one zpool on one node.
    pub struct CStorPoolInstance {
        group: "cstor.openebs.io",
        version: "v1",
        plural: "cstorpoolinstances",
        singular: "cstorpoolinstance",
        short_names: ["cspi"],
        categories: [],
        schema_required: ["spec"],
        printer_columns: [
            ("HostName", "string", ".spec.hostName", "Host name where cstorpool instances scheduled", None),
            ("Allocated", "string", ".status.capacity.used", "The amount of storage space within the pool that has been physically allocated", Some(1)),
            ("Free", "string", ".status.capacity.free", "The amount of usable free space available in the pool", None),
            ("Capacity", "string", ".status.capacity.total", "Total amount of usable space in pool", None),
            ("ReadOnly", "boolean", ".status.readOnly", "Identifies the pool read only mode", None),
            ("ProvisionedReplicas", "integer", ".status.provisionedReplicas", "Represents no.of replicas present in the pool", None),
            ("HealthyReplicas", "integer", ".status.healthyReplicas", "Represents no.of healthy replicas present in the pool", None),
            ("Type", "string", ".spec.poolConfig.dataRaidGroupType", "Represents the type of the storage pool", Some(1)),
            ("Status", "string", ".status.phase", "Identifies the current health of the pool", None),
            ("Age", "date", ".metadata.creationTimestamp", "Age of CStorPoolInstance", None),
        ],
        spec: CStorPoolInstanceSpec,
        defaulted: {},
        optional: {
            /// Observed state, written by the pool manager.
            status: CStorPoolInstanceStatus = "status",
            /// Version gating (see [`VersionDetails`]).
            version_details: VersionDetails = "versionDetails",
        },
    }
}

/// `spec` of a CStorPoolInstance (a copy of the CSPC's pool entry plus the host name).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CStorPoolInstanceSpec {
    /// `kubernetes.io/hostname` label value of the pool's node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_name: Option<String>,
    /// Node labels selecting the pool's node.
    pub node_selector: BTreeMap<String, String>,
    /// Pool configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_config: Option<PoolConfig>,
    /// Raid groups holding the data.
    pub data_raid_groups: Vec<RaidGroup>,
    /// Raid groups used as write cache (ZFS log devices).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_cache_raid_groups: Option<Vec<RaidGroup>>,
    /// Fields this version does not model.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

impl CStorPoolInstanceSpec {
    /// `writeCacheRaidGroups`, empty when unset.
    pub fn write_cache_raid_groups(&self) -> &[RaidGroup] {
        self.write_cache_raid_groups.as_deref().unwrap_or_default()
    }

    /// Every block device name of the data and write-cache raid groups, in order.
    pub fn block_device_names(&self) -> impl Iterator<Item = &str> {
        self.data_raid_groups
            .iter()
            .chain(self.write_cache_raid_groups())
            .flat_map(|rg| rg.block_devices.iter())
            .map(|bd| bd.block_device_name.as_str())
    }
}

/// `status` of a CStorPoolInstance.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CStorPoolInstanceStatus {
    /// Conditions (`PoolExpansion`, `DiskReplacement`, `DiskUnavailable`, `PoolLost`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<PoolCondition>>,
    /// Pool health as reported by `zpool get health`, or an operator phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<CStorPoolInstancePhase>,
    /// Pool capacity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<CStorPoolInstanceCapacity>,
    /// Whether the pool was switched to read-only (used space over the threshold).
    pub read_only: bool,
    /// Number of replica zvols in the pool.
    pub provisioned_replicas: i32,
    /// Number of healthy replica zvols in the pool.
    pub healthy_replicas: i32,
    /// Fields this version does not model.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

/// `status.capacity` of a CStorPoolInstance.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CStorPoolInstanceCapacity {
    /// Space used (`zfs get used`).
    pub used: Quantity,
    /// Space available (`zfs get available`).
    pub free: Quantity,
    /// `used + free`.
    pub total: Quantity,
    /// ZFS-specific figures.
    pub zfs: ZfsCapacityAttributes,
    /// Fields this version does not model.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

/// `status.capacity.zfs` of a CStorPoolInstance.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ZfsCapacityAttributes {
    /// Logical space used before compression (`zfs get logicalused`).
    pub logical_used: Quantity,
    /// Fields this version does not model.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

string_enum! {
    schema = open;
    /// `status.phase` of a CStorPoolInstance. The pool manager mostly writes the raw
    /// `zpool get health` value.
    #[derive(Default)]
    pub enum CStorPoolInstancePhase {
        /// Not created yet: the pool manager creates the pool if import fails.
        #[default]
        Empty = "",
        /// Pool healthy.
        Online = "ONLINE",
        /// Pool offline (also written on pool-manager shutdown).
        Offline = "OFFLINE",
        /// Pool degraded.
        Degraded = "DEGRADED",
        /// Pool faulted.
        Faulted = "FAULTED",
        /// Pool removed.
        Removed = "REMOVED",
        /// Pool unavailable.
        Unavail = "UNAVAIL",
        /// Error.
        Error = "Error",
        /// `zpool destroy` failed.
        DeletionFailed = "DeletionFailed",
        /// Invalid.
        Invalid = "Invalid",
        /// Duplicate.
        ErrorDuplicate = "ErrorDuplicate",
        /// Creation allowed (never set by current upstream code).
        Pending = "Pending",
        /// Init.
        Init = "Init",
        /// Pool creation failed.
        PoolCreationFailed = "PoolCreationFailed",
    }
}
