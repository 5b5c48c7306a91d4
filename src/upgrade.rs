//! UpgradeTask (`openebs.io/v1alpha1`): the record of one `cstor-migrate upgrade` run on one
//! resource (a pool instance, a pool cluster or a volume), with a status per step. Same shape
//! as upstream's, so `kubectl get upgradetask` and upstream's tooling read ours.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::cstor::{Extra, custom_resource};
/// One step of an upgrade run: the same record as a migration's step.
pub use crate::migration::{
    MigrationPhase as UpgradePhase, MigrationStepStatus as UpgradeStepStatus, StepPhase,
};

custom_resource! {
    /// One upgrade of one resource and how far it got.
    pub struct UpgradeTask {
        group: "openebs.io",
        version: "v1alpha1",
        plural: "upgradetasks",
        singular: "upgradetask",
        short_names: [],
        categories: [],
        schema_required: ["spec"],
        printer_columns: [],
        spec: UpgradeTaskSpec,
        defaulted: {},
        optional: {
            /// Overall phase and the steps.
            status: UpgradeTaskStatus = "status",
        },
    }
}

/// `spec` of an UpgradeTask: the versions and exactly one resource.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeTaskSpec {
    /// The version the resource is at.
    pub from_version: String,
    /// The version to upgrade it to (the control plane's).
    pub to_version: String,
    /// Registry/organisation prefix of the new images (default: the old images' own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_prefix: Option<String>,
    /// Tag of the new images (default: `toVersion`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_tag: Option<String>,
    /// Options of the whole upgrade.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<UpgradeOptions>,
    /// A pool instance (CSPI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cstor_pool_instance: Option<UpgradeCStorPoolInstance>,
    /// A pool cluster (CSPC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cstor_pool_cluster: Option<UpgradeCStorPoolCluster>,
    /// A cStor volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cstor_volume: Option<UpgradeVolume>,
    /// A Jiva volume (kept for upstream's objects; this tool does not upgrade Jiva).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jiva_volume: Option<UpgradeVolume>,
    /// A legacy cStor pool (kept for upstream's objects).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cstor_pool: Option<UpgradeLegacyPool>,
    /// A legacy StoragePoolClaim (kept for upstream's objects).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_pool_claim: Option<UpgradeStoragePoolClaim>,
    /// Fields this version does not model.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

/// `spec.options`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeOptions {
    /// Seconds to wait at a step (recorded; the tool's own deadline flag applies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
}

/// Options of one resource.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceOptions {
    /// Steps whose failure is ignored (recorded, not acted on, as upstream).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore_steps_on_error: Vec<String>,
}

/// `spec.cstorPoolInstance`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeCStorPoolInstance {
    /// The CSPI (JSON key `cspiName`).
    #[serde(rename = "cspiName", default)]
    pub cspi_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<ResourceOptions>,
}

/// `spec.cstorPoolCluster`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeCStorPoolCluster {
    /// The CSPC (JSON key `cspcName`).
    #[serde(rename = "cspcName", default)]
    pub cspc_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<ResourceOptions>,
}

/// `spec.cstorVolume` / `spec.jivaVolume`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeVolume {
    /// The PV.
    #[serde(default)]
    pub pv_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<ResourceOptions>,
}

/// `spec.cstorPool` (legacy).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeLegacyPool {
    #[serde(default)]
    pub pool_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<ResourceOptions>,
}

/// `spec.storagePoolClaim` (legacy).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeStoragePoolClaim {
    /// JSON key `spcName`.
    #[serde(rename = "spcName", default)]
    pub spc_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<ResourceOptions>,
}

/// Step names (upstream's).
pub mod step {
    pub const PRE_UPGRADE: &str = "PRE_UPGRADE";
    pub const REPLICA_UPGRADE: &str = "REPLICA_UPGRADE";
    pub const TARGET_UPGRADE: &str = "TARGET_UPGRADE";
    pub const POOL_INSTANCE_UPGRADE: &str = "POOL_INSTANCE_UPGRADE";
    pub const VERIFY: &str = "VERIFY";
    pub const ROLLBACK: &str = "ROLLBACK";
}

/// `status` of an UpgradeTask.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeTaskStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<UpgradePhase>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_time: Option<Time>,
    /// Runs that failed so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<i64>,
    /// One entry per step of the last run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upgrade_detailed_statuses: Vec<UpgradeStepStatus>,
    /// Fields this version does not model.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_example_task_reads_and_writes_back() {
        let text = r#"
apiVersion: openebs.io/v1alpha1
kind: UpgradeTask
metadata:
  name: upgrade-cstor-csi-volume-pvc-1
  namespace: openebs
spec:
  fromVersion: 3.5.0
  toVersion: 3.6.0
  imagePrefix: quay.io/openebs/
  cstorVolume:
    pvName: pvc-1
status:
  phase: Started
  retries: 1
  upgradeDetailedStatuses:
  - step: PRE_UPGRADE
    phase: Completed
    message: Pre-upgrade steps were successful
"#;
        let task: UpgradeTask = serde_yaml::from_str(text).unwrap();
        assert_eq!(task.spec.from_version, "3.5.0");
        assert_eq!(task.spec.cstor_volume.as_ref().unwrap().pv_name, "pvc-1");
        let st = task.status.clone().unwrap();
        assert_eq!(st.phase, Some(UpgradePhase::Started));
        assert_eq!(
            st.upgrade_detailed_statuses[0].phase,
            Some(StepPhase::Completed)
        );
        let back = serde_json::to_value(&task).unwrap();
        assert_eq!(back["spec"]["cstorVolume"]["pvName"], "pvc-1");
        assert_eq!(back["spec"]["imagePrefix"], "quay.io/openebs/");
        assert!(back["spec"].get("cstorPoolCluster").is_none());
    }
}
