//! CStorVolumeConfig (`cstorvolumeconfigs`, short `cvc`): created by the CSI controller for
//! every volume; the cvc-operator turns it into a CStorVolume, target and replicas.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::ObjectReference,
    apimachinery::pkg::{api::resource::Quantity, apis::meta::v1::Time},
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{CStorVolumePolicySpec, Extra, VersionDetails, custom_resource, string_enum};

/// A Kubernetes `ResourceList` (`storage: 5Gi`, ...).
pub type ResourceList = BTreeMap<String, Quantity>;

custom_resource! {
    /// A CStorVolumeConfig. Upstream requires `status` and `versionDetails`, so both are always
    /// written (an absent one reads as empty).
    pub struct CStorVolumeConfig {
        group: "cstor.openebs.io",
        version: "v1",
        plural: "cstorvolumeconfigs",
        singular: "cstorvolumeconfig",
        short_names: ["cvc"],
        categories: [],
        schema_required: ["spec", "status", "versionDetails"],
        printer_columns: [
            ("Capacity", "string", ".status.capacity.storage", "Identifies the volume capacity", None),
            ("Status", "string", ".status.phase", "Identifies the volume provisioning status", None),
            ("Age", "date", ".metadata.creationTimestamp", "Age of CStorVolumeReplica", None),
        ],
        spec: CStorVolumeConfigSpec,
        defaulted: {
            /// Observed state (`Pending` until the cvc-operator binds the volume).
            status: CStorVolumeConfigStatus = "status",
            /// Version gating (see [`VersionDetails`]).
            version_details: VersionDetails = "versionDetails",
        },
        optional: {
            /// Publish information written by the CSI controller.
            publish: CStorVolumeConfigPublish = "publish",
        },
    }
}

/// `spec` of a CStorVolumeConfig.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CStorVolumeConfigSpec {
    /// Desired size (`storage`); raised by the CSI controller on expansion.
    pub capacity: ResourceList,
    /// Reference to the CStorVolume, set when the CVC binds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cstor_volume_ref: Option<ObjectReference>,
    /// `<source PV>@<snapshot>` for clones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cstor_volume_source: Option<String>,
    /// What was provisioned (immutable).
    pub provision: VolumeProvision,
    /// Policy copied from the CStorVolumePolicy when the CVC binds; editable afterwards.
    pub policy: CStorVolumePolicySpec,
    /// Fields this version does not model.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

/// `spec.provision` of a CStorVolumeConfig.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeProvision {
    /// Provisioned size (`storage`).
    pub capacity: ResourceList,
    /// Number of replicas.
    pub replica_count: i64,
    /// Fields this version does not model.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

/// `publish` of a CStorVolumeConfig.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CStorVolumeConfigPublish {
    /// Node the volume is preferably used from (from the CSI topology requirement).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// Fields this version does not model.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

/// `status` of a CStorVolumeConfig.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CStorVolumeConfigStatus {
    /// `Pending`, `Bound` or `Failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<CStorVolumeConfigPhase>,
    /// Names of the pools (CSPIs) currently holding a replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_info: Option<Vec<String>>,
    /// Current size (`storage`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<ResourceList>,
    /// Conditions. The JSON key is `condition` (singular), as upstream.
    #[serde(rename = "condition", default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<CStorVolumeConfigCondition>>,
    /// Fields this version does not model.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

impl CStorVolumeConfigStatus {
    /// `poolInfo`, empty when unset.
    pub fn pool_info(&self) -> &[String] {
        self.pool_info.as_deref().unwrap_or_default()
    }

    /// `condition`, empty when unset.
    pub fn conditions(&self) -> &[CStorVolumeConfigCondition] {
        self.conditions.as_deref().unwrap_or_default()
    }
}

string_enum! {
    schema = open;
    /// `status.phase` of a CStorVolumeConfig.
    pub enum CStorVolumeConfigPhase {
        /// Created, not provisioned yet.
        Pending = "Pending",
        /// CV, target and replicas exist.
        Bound = "Bound",
        /// Never set by the operators.
        Failed = "Failed",
    }
}

/// An entry of a CVC's `status.condition`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CStorVolumeConfigCondition {
    /// `Resizing`, `VolumeResizeFailed`, `VolumeResizeSuccessful` or `VolumeResizePending`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Last time the condition was probed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_probe_time: Option<Time>,
    /// Last time the condition changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    /// Machine-readable reason.
    pub reason: String,
    /// Human-readable message.
    pub message: String,
    /// Fields this version does not model.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

/// Condition types of a CVC.
pub mod volume_config_conditions {
    /// A resize is in progress (the only type upstream writes).
    pub const RESIZING: &str = "Resizing";
    /// A resize failed.
    pub const VOLUME_RESIZE_FAILED: &str = "VolumeResizeFailed";
    /// A resize succeeded.
    pub const VOLUME_RESIZE_SUCCESSFUL: &str = "VolumeResizeSuccessful";
    /// A resize is pending.
    pub const VOLUME_RESIZE_PENDING: &str = "VolumeResizePending";
}
