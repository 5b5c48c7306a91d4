//! CStorPoolCluster (`cstorpoolclusters`, short `cspc`): the user's pool layout, one entry
//! per node, from which the cspc-operator creates one CStorPoolInstance per pool.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::{ResourceRequirements, Toleration},
    apimachinery::pkg::apis::meta::v1::Time,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ConditionStatus, Extra, VersionDetails, custom_resource, string_enum};

custom_resource! {
    /// A CStorPoolCluster: the desired pools of a cluster.
    pub struct CStorPoolCluster {
        group: "cstor.openebs.io",
        version: "v1",
        plural: "cstorpoolclusters",
        singular: "cstorpoolcluster",
        short_names: ["cspc"],
        categories: [],
        schema_required: ["spec"],
        printer_columns: [
            ("HealthyInstances", "integer", ".status.healthyInstances", "The number of healthy cStorPoolInstances", None),
            ("ProvisionedInstances", "integer", ".status.provisionedInstances", "The number of provisioned cStorPoolInstances", None),
            ("DesiredInstances", "integer", ".status.desiredInstances", "The number of desired cStorPoolInstances", None),
            ("Age", "date", ".metadata.creationTimestamp", "Age of CStorPoolCluster", None),
        ],
        spec: CStorPoolClusterSpec,
        defaulted: {},
        optional: {
            /// Observed state, written by the cspc-operator.
            status: CStorPoolClusterStatus = "status",
            /// Version gating (see [`VersionDetails`]).
            version_details: VersionDetails = "versionDetails",
        },
    }
}

/// `spec` of a CStorPoolCluster.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CStorPoolClusterSpec {
    /// One pool per node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pools: Option<Vec<PoolSpec>>,
    /// Default resources of the `cstor-pool` container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Default resources of the pool pod's sidecars.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aux_resources: Option<ResourceRequirements>,
    /// Default tolerations of the pool pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,
    /// Default priority class of the pool pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// Fields this version does not model.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

impl CStorPoolClusterSpec {
    /// `pools`, empty when unset.
    pub fn pools(&self) -> &[PoolSpec] {
        self.pools.as_deref().unwrap_or_default()
    }
}

/// One pool of a CStorPoolCluster (upstream `PoolSpec`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PoolSpec {
    /// Node labels selecting exactly one node for this pool.
    pub node_selector: BTreeMap<String, String>,
    /// Raid groups holding the data.
    pub data_raid_groups: Vec<RaidGroup>,
    /// Raid groups used as write cache (ZFS log devices).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_cache_raid_groups: Option<Vec<RaidGroup>>,
    /// Pool configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_config: Option<PoolConfig>,
    /// Fields this version does not model.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

impl PoolSpec {
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

/// Pool configuration shared by CSPC pools and CSPIs (upstream `PoolConfig`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PoolConfig {
    /// Raid type of the data raid groups: `stripe`, `mirror`, `raidz` or `raidz2`.
    pub data_raid_group_type: RaidGroupType,
    /// Raid type of the write-cache raid groups; required when there are any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_cache_group_type: Option<RaidGroupType>,
    /// Not used by any operator (kept for compatibility).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thick_provision: Option<bool>,
    /// ZFS compression of the pool (`""`, `on`, `off`, `lzjb`, `gzip`, `zle`, `lz4`; default `lz4`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<String>,
    /// Resources of the `cstor-pool` container (overrides the CSPC default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Resources of the pool pod's sidecars (overrides the CSPC default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aux_resources: Option<ResourceRequirements>,
    /// Tolerations of the pool pod (overrides the CSPC default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,
    /// Priority class of the pool pod (overrides the CSPC default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// Used-space percentage (0..=100, default 85) at which the pool turns read-only; 100
    /// disables read-only switching.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ro_threshold_limit: Option<i64>,
    /// Fields this version does not model.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

impl PoolConfig {
    /// Default read-only threshold percentage.
    pub const DEFAULT_RO_THRESHOLD: i64 = 85;
    /// Default pool compression.
    pub const DEFAULT_COMPRESSION: &'static str = "lz4";

    /// `roThresholdLimit`, or the default (85) when unset.
    pub fn ro_threshold(&self) -> i64 {
        self.ro_threshold_limit
            .unwrap_or(Self::DEFAULT_RO_THRESHOLD)
    }

    /// `compression`, or `lz4` when unset or empty.
    pub fn compression_or_default(&self) -> &str {
        match self.compression.as_deref() {
            None | Some("") => Self::DEFAULT_COMPRESSION,
            Some(c) => c,
        }
    }
}

string_enum! {
    schema = open;
    /// Raid type of a raid group.
    #[derive(Default)]
    pub enum RaidGroupType {
        /// No redundancy (`zpool create <pool> <vdevs>`).
        #[default]
        Stripe = "stripe",
        /// Mirror.
        Mirror = "mirror",
        /// Single parity.
        Raidz = "raidz",
        /// Double parity.
        Raidz2 = "raidz2",
    }
}

impl RaidGroupType {
    /// The one disk-count rule of a raid group (upstream's, with its messages), used by the
    /// admission webhook, the cspc-operator and the pool-manager alike: a stripe takes any
    /// number of disks, a mirror an even number, raidz 2^n+1 (3, 5, 9, ...) and raidz2 2^n+2
    /// with n > 1 (6, 10, 18, ...). An unknown type is left to the type check.
    pub fn disk_count_error(&self, count: usize) -> Option<&'static str> {
        if count == 0 {
            return Some(
                "empty raid group: number of block devices honouring raid type should be specified",
            );
        }
        let power_of_two_at_least = |n: usize, min: usize| n >= min && n.is_power_of_two();
        match self {
            RaidGroupType::Mirror if !count.is_multiple_of(2) => {
                Some("mirror raid group should have disks in multiple of 2")
            }
            RaidGroupType::Raidz if !power_of_two_at_least(count - 1, 2) => {
                Some("raidz raid group should have disks of the order 2^n+1, where n>0")
            }
            RaidGroupType::Raidz2 if count < 2 || !power_of_two_at_least(count - 2, 4) => {
                Some("raidz raid group should have disks of the order 2^n+2, where n>1")
            }
            _ => None,
        }
    }
}

/// A raid group: the block devices of one top-level vdev (upstream `RaidGroup`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RaidGroup {
    /// The block devices of the group.
    pub block_devices: Vec<CStorPoolInstanceBlockDevice>,
    /// Fields this version does not model.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

/// A block device of a raid group (upstream `CStorPoolInstanceBlockDevice`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CStorPoolInstanceBlockDevice {
    /// Name of the BlockDevice object.
    pub block_device_name: String,
    /// Capacity in bytes (never written by the operators).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<u64>,
    /// Device path the pool actually uses (written by the pool manager into the CSPI copy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev_link: Option<String>,
    /// Fields this version does not model.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

impl CStorPoolInstanceBlockDevice {
    /// A block device entry naming `name`.
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            block_device_name: name.into(),
            ..Default::default()
        }
    }
}

/// `status` of a CStorPoolCluster.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CStorPoolClusterStatus {
    /// Number of CSPIs that exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioned_instances: Option<i32>,
    /// Number of pools in the spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_instances: Option<i32>,
    /// Number of CSPIs whose pool is ONLINE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy_instances: Option<i32>,
    /// Conditions (type `PoolManagerAvailable`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<PoolCondition>>,
    /// Fields this version does not model.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

/// A condition of a CSPC or CSPI (upstream `CStorPoolClusterCondition` /
/// `CStorPoolInstanceCondition`, which have the same shape).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PoolCondition {
    /// Condition type, e.g. `PoolManagerAvailable`, `PoolExpansion`, `DiskReplacement`,
    /// `DiskUnavailable`, `PoolLost`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: ConditionStatus,
    /// Last time the condition was updated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<Time>,
    /// Last time the status changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    /// Machine-readable reason of the last transition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human-readable message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Fields this version does not model.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

/// Condition types and reasons written on CSPCs and CSPIs.
pub mod pool_conditions {
    /// CSPC: whether every pool-manager Deployment has its minimum available pods.
    pub const POOL_MANAGER_AVAILABLE: &str = "PoolManagerAvailable";
    /// Reason of `PoolManagerAvailable=True`.
    pub const MINIMUM_POOL_MANAGERS_AVAILABLE: &str = "MinimumPoolManagersAvailable";
    /// Reason of `PoolManagerAvailable=False`.
    pub const MINIMUM_POOL_MANAGERS_UNAVAILABLE: &str = "MinimumPoolManagersUnAvailable";
    /// CSPI: a raid group or device is being added.
    pub const POOL_EXPANSION: &str = "PoolExpansion";
    /// Reason of `PoolExpansion=True`.
    pub const POOL_EXPANSION_IN_PROGRESS: &str = "PoolExpansionInProgress";
    /// Reason of `PoolExpansion=False`.
    pub const POOL_EXPANSION_SUCCESSFUL: &str = "PoolExpansionSuccessful";
    /// CSPI: a block device is being replaced.
    pub const DISK_REPLACEMENT: &str = "DiskReplacement";
    /// Reason of `DiskReplacement=True`.
    pub const BLOCK_DEVICE_REPLACEMENT_IN_PROGRESS: &str = "BlockDeviceReplacementInprogress";
    /// Reason of `DiskReplacement=False` (upstream spelling).
    pub const BLOCK_DEVICE_REPLACEMENT_SUCCEEDED: &str = "BlockDeviceReplacementSucceess";
    /// CSPI: some devices of the pool are not healthy.
    pub const DISK_UNAVAILABLE: &str = "DiskUnavailable";
    /// Reason of `DiskUnavailable=True`.
    pub const DISKS_ARE_UNAVAILABLE: &str = "DisksAreUnavailable";
    /// Reason of `DiskUnavailable=False`.
    pub const DISKS_ARE_AVAILABLE: &str = "DisksAreAvailable";
    /// CSPI: the pool could not be imported and is not re-created.
    pub const POOL_LOST: &str = "PoolLost";
}
