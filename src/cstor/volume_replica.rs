//! CStorVolumeReplica (`cstorvolumereplicas`, short `cvr`): one replica zvol of a volume on
//! one pool, created by the cvc-operator and realised by that pool's pool manager.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Extra, VersionDetails, custom_resource, string_enum};

custom_resource! {
    /// A CStorVolumeReplica.
    pub struct CStorVolumeReplica {
        group: "cstor.openebs.io",
        version: "v1",
        plural: "cstorvolumereplicas",
        singular: "cstorvolumereplica",
        short_names: ["cvr"],
        categories: [],
        schema_required: ["spec"],
        printer_columns: [
            ("Allocated", "string", ".status.capacity.total", "The amount of disk space consumed by a dataset and all its descendents", None),
            ("Used", "string", ".status.capacity.used", "The amount of space that is logically consumed by this dataset", None),
            ("Status", "string", ".status.phase", "Identifies the current state of the replicas", None),
            ("Age", "date", ".metadata.creationTimestamp", "Age of CStorVolumeReplica", None),
        ],
        spec: CStorVolumeReplicaSpec,
        defaulted: {},
        optional: {
            /// Observed state, written by the pool manager.
            status: CStorVolumeReplicaStatus = "status",
            /// Version gating (see [`VersionDetails`]).
            version_details: VersionDetails = "versionDetails",
        },
    }
}

/// `spec` of a CStorVolumeReplica.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CStorVolumeReplicaSpec {
    /// Target Service ClusterIP (zvol property `io.openebs:targetip`).
    #[serde(rename = "targetIP", default, skip_serializing_if = "Option::is_none")]
    pub target_ip: Option<String>,
    /// zvol size, e.g. `5Gi` (a trailing `i` is stripped for `zfs create -V`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<String>,
    /// zvol worker threads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zvol_workers: Option<String>,
    /// Replica ID (JSON key `replicaid`, lowercase, as upstream).
    #[serde(rename = "replicaid", default, skip_serializing_if = "Option::is_none")]
    pub replica_id: Option<String>,
    /// Not used by the operators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<String>,
    /// Not used by the operators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_size: Option<u32>,
    /// Fields this version does not model.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

/// `status` of a CStorVolumeReplica.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CStorVolumeReplicaStatus {
    /// Replica state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<CStorVolumeReplicaPhase>,
    /// zvol space figures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<CStorVolumeReplicaCapacityDetails>,
    /// Last phase change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    /// Last update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<Time>,
    /// Human-readable message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Snapshots present on this replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshots: Option<BTreeMap<String, CStorSnapshotInfo>>,
    /// Snapshots of peer replicas still to be rebuilt here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_snapshots: Option<BTreeMap<String, CStorSnapshotInfo>>,
    /// Fields this version does not model.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

/// `status.capacity` of a CStorVolumeReplica (ZFS human-readable sizes such as `6K`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CStorVolumeReplicaCapacityDetails {
    /// `zfs get used`.
    pub total: String,
    /// `zfs get logicalreferenced`.
    pub used: String,
    /// Fields this version does not model.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

/// A snapshot entry of a CVR's status.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CStorSnapshotInfo {
    /// `logicalreferenced` of the snapshot in bytes.
    pub logical_referenced: u64,
    /// Fields this version does not model.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

string_enum! {
    schema = open;
    /// `status.phase` of a CStorVolumeReplica.
    #[derive(Default)]
    pub enum CStorVolumeReplicaPhase {
        /// Fresh object, nothing done yet.
        #[default]
        Empty = "",
        /// Object created, zvol not yet.
        Init = "Init",
        /// The replica must be re-created empty (pool re-created or scale-up).
        Recreate = "Recreate",
        /// Connected and healthy.
        Healthy = "Healthy",
        /// Created but not connected to the target.
        Offline = "Offline",
        /// Connected, quorum member, degraded.
        Degraded = "Degraded",
        /// Connected, non-quorum, degraded.
        NewReplicaDegraded = "NewReplicaDegraded",
        /// Connected, quorum member, rebuilding.
        Rebuilding = "Rebuilding",
        /// Connected, non-quorum, rebuilding.
        ReconstructingNewReplica = "ReconstructingNewReplica",
        /// Error.
        Error = "Error",
        /// `zfs destroy` failed.
        DeletionFailed = "DeletionFailed",
        /// Invalid.
        Invalid = "Invalid",
    }
}
