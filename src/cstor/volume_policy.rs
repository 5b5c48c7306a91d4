//! CStorVolumePolicy (`cstorvolumepolicies`, short `cvp`): per-volume tuning, named by the
//! StorageClass and copied into the CVC's `spec.policy` when it binds.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PodAffinity, ResourceRequirements, Toleration};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Extra, custom_resource};

custom_resource! {
    /// A CStorVolumePolicy.
    pub struct CStorVolumePolicy {
        group: "cstor.openebs.io",
        version: "v1",
        plural: "cstorvolumepolicies",
        singular: "cstorvolumepolicy",
        short_names: ["cvp"],
        categories: [],
        schema_required: ["spec"],
        printer_columns: [],
        spec: CStorVolumePolicySpec,
        defaulted: {},
        optional: {
            /// Status (unused by the operators).
            status: CStorVolumePolicyStatus = "status",
        },
    }
}

/// `spec` of a CStorVolumePolicy, also embedded as a CVC's `spec.policy`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CStorVolumePolicySpec {
    /// Provisioning options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provision: Option<PolicyProvision>,
    /// Options of the target pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<TargetSpec>,
    /// Options of the replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<ReplicaSpec>,
    /// The pools the replicas should live on (edited to scale replicas up or down).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica_pool_info: Option<Vec<ReplicaPoolInfo>>,
    /// Fields this version does not model.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

impl CStorVolumePolicySpec {
    /// `replicaPoolInfo`, empty when unset.
    pub fn replica_pool_info(&self) -> &[ReplicaPoolInfo] {
        self.replica_pool_info.as_deref().unwrap_or_default()
    }

    /// `provision.replicaAffinity`, false when unset.
    pub fn replica_affinity(&self) -> bool {
        self.provision.as_ref().is_some_and(|p| p.replica_affinity)
    }
}

/// `provision` of a volume policy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyProvision {
    /// Prefer the pool on the CVC's `publish.nodeId` for the first replica.
    pub replica_affinity: bool,
    /// Block size (not used by the operators).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_size: Option<u32>,
    /// Fields this version does not model.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

/// `target` of a volume policy: the target (istgt) pod.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetSpec {
    /// iSCSI queue depth (env `QueueDepth`, default "32").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_depth: Option<String>,
    /// Logical-unit worker threads (env `Luworkers`, default 6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lu_workers: Option<i64>,
    /// Not used (the exporter sidecar is always added).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor: Option<bool>,
    /// Not used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_factor: Option<i64>,
    /// Resources of the `cstor-istgt` container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Resources of the sidecars.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aux_resources: Option<ResourceRequirements>,
    /// Tolerations of the target pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,
    /// Pod affinity of the target pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<PodAffinity>,
    /// Node selector of the target pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    /// Priority class of the target pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// Fields this version does not model.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

/// `replica` of a volume policy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaSpec {
    /// zvol worker threads (copied to CVR `spec.zvolWorkers`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zvol_workers: Option<String>,
    /// Not used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<String>,
    /// Fields this version does not model.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

/// One entry of `replicaPoolInfo`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaPoolInfo {
    /// CSPI name.
    pub pool_name: String,
    /// Fields this version does not model.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

impl ReplicaPoolInfo {
    /// An entry naming `pool`.
    pub fn named(pool: impl Into<String>) -> Self {
        Self {
            pool_name: pool.into(),
            ..Default::default()
        }
    }
}

/// `status` of a CStorVolumePolicy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CStorVolumePolicyStatus {
    /// Unused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Fields this version does not model.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}
