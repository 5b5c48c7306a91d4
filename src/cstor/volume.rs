//! CStorVolume (`cstorvolumes`, short `cv`): the iSCSI target of a volume, created by the
//! cvc-operator and kept up to date by the volume manager in the target pod.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::{api::resource::Quantity, apis::meta::v1::Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Extra, VersionDetails, custom_resource, string_enum};

custom_resource! {
    /// A CStorVolume.
    pub struct CStorVolume {
        group: "cstor.openebs.io",
        version: "v1",
        plural: "cstorvolumes",
        singular: "cstorvolume",
        short_names: ["cv"],
        categories: [],
        schema_required: ["spec"],
        printer_columns: [
            ("Capacity", "string", ".status.capacity", "Current volume capacity", None),
            ("Status", "string", ".status.phase", "Identifies the current health of the volume", None),
            ("Age", "date", ".metadata.creationTimestamp", "Age of CStorVolume", None),
        ],
        spec: CStorVolumeSpec,
        defaulted: {},
        optional: {
            /// Observed state, written by the volume manager.
            status: CStorVolumeStatus = "status",
            /// Version gating (see [`VersionDetails`]).
            version_details: VersionDetails = "versionDetails",
        },
    }
}

/// `spec` of a CStorVolume.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CStorVolumeSpec {
    /// Volume size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<Quantity>,
    /// ClusterIP of the target Service.
    #[serde(rename = "targetIP", default, skip_serializing_if = "Option::is_none")]
    pub target_ip: Option<String>,
    /// iSCSI port (`"3260"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<String>,
    /// Target IQN (`iqn.2016-09.com.openebs.cstor:<pv>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iqn: Option<String>,
    /// `<targetIP>:3260`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_portal: Option<String>,
    /// Number of replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_factor: Option<i64>,
    /// Replicas needed for quorum (`replicationFactor / 2 + 1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency_factor: Option<i64>,
    /// Replication factor the target should converge to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_replication_factor: Option<i64>,
    /// Replicas the target trusts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica_details: Option<CStorVolumeReplicaDetails>,
    /// Fields this version does not model.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

/// `replicaDetails` of a CStorVolume spec or status.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CStorVolumeReplicaDetails {
    /// Replica ID → zvol GUID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_replicas: Option<BTreeMap<String, String>>,
    /// Fields this version does not model.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

/// `status` of a CStorVolume.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CStorVolumeStatus {
    /// Volume health.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<CStorVolumePhase>,
    /// Per-replica state as reported by the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica_statuses: Option<Vec<ReplicaStatus>>,
    /// Current size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<Quantity>,
    /// Last phase change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    /// Last update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<Time>,
    /// Human-readable message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Conditions (type `Resizing`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<CStorVolumeCondition>>,
    /// Replicas the target has seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica_details: Option<CStorVolumeReplicaDetails>,
    /// Fields this version does not model.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

impl CStorVolumeStatus {
    /// `replicaStatuses`, empty when unset.
    pub fn replica_statuses(&self) -> &[ReplicaStatus] {
        self.replica_statuses.as_deref().unwrap_or_default()
    }
}

string_enum! {
    schema = open;
    /// `status.phase` of a CStorVolume.
    pub enum CStorVolumePhase {
        /// Target starting.
        Init = "Init",
        /// All replicas healthy.
        Healthy = "Healthy",
        /// Quorum available, some replicas not healthy.
        Degraded = "Degraded",
        /// No quorum.
        Offline = "Offline",
        /// Error.
        Error = "Error",
        /// Invalid.
        Invalid = "Invalid",
    }
}

/// The state of one replica as reported by the target (all fields required upstream).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaStatus {
    /// Replica ID.
    pub replica_id: String,
    /// `Healthy`, `Degraded`...
    pub mode: String,
    /// Checkpointed IO sequence number.
    #[serde(rename = "checkpointedIOSeq")]
    pub checkpointed_io_seq: String,
    /// Reads in flight.
    pub inflight_read: String,
    /// Writes in flight.
    pub inflight_write: String,
    /// Syncs in flight.
    pub inflight_sync: String,
    /// Seconds since the replica connected.
    pub up_time: i64,
    /// `"1"`: holds the data (quorum member); `"0"`: non-quorum, data may be missing.
    pub quorum: String,
    /// Fields this version does not model.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

/// A condition of a CStorVolume.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CStorVolumeCondition {
    /// Condition type (`Resizing`).
    #[serde(rename = "type")]
    pub type_: String,
    /// `InProgress` or `Success` for `Resizing`.
    pub status: String,
    /// Last time the condition was probed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_probe_time: Option<Time>,
    /// Last time the condition changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    /// Machine-readable reason.
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
