//! MigrationTask (`openebs.io/v1alpha1`, `mtask`): the record of one `cstor-migrate` run, a pool
//! (StoragePoolClaim → CStorPoolCluster) or a volume, with a status per step. Same shape as
//! upstream's, so `kubectl get mtask` and upstream's tooling read ours.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::cstor::{Extra, custom_resource, string_enum};

custom_resource! {
    /// One migration and how far it got.
    pub struct MigrationTask {
        group: "openebs.io",
        version: "v1alpha1",
        plural: "migrationtasks",
        singular: "migrationtask",
        short_names: ["mtask"],
        categories: [],
        schema_required: ["spec"],
        printer_columns: [],
        spec: MigrationTaskSpec,
        defaulted: {},
        optional: {
            /// Overall phase and the steps.
            status: MigrationTaskStatus = "status",
        },
    }
}

/// `spec` of a MigrationTask: exactly one of the two.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MigrationTaskSpec {
    /// A pool migration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cstor_pool: Option<MigrateCStorPool>,
    /// A volume migration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cstor_volume: Option<MigrateCStorVolume>,
    /// Fields this version does not model.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

/// The pool of a migration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MigrateCStorPool {
    /// The StoragePoolClaim migrated (JSON key `spcName`).
    #[serde(rename = "spcName", default)]
    pub spc_name: String,
    /// The CStorPoolCluster's name when it differs from the SPC's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rename: Option<String>,
}

/// The volume of a migration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MigrateCStorVolume {
    /// The PV migrated.
    #[serde(default)]
    pub pv_name: String,
}

string_enum! {
    schema = open;
    /// Overall phase of a MigrationTask.
    #[derive(Default)]
    pub enum MigrationPhase {
        /// Unset.
        #[default]
        Empty = "",
        /// Running (or interrupted).
        Started = "Started",
        /// Done.
        Success = "Success",
        /// Given up.
        Error = "Error",
    }
}

string_enum! {
    schema = open;
    /// Phase of one step.
    #[derive(Default)]
    pub enum StepPhase {
        /// Unset.
        #[default]
        Empty = "",
        /// Running, or failed and to be retried (upstream never writes `Errored`).
        Waiting = "Waiting",
        /// Failed.
        Errored = "Errored",
        /// Done.
        Completed = "Completed",
    }
}

/// `status` of a MigrationTask.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MigrationTaskStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<MigrationPhase>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_time: Option<Time>,
    /// Runs that failed so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<i64>,
    /// One entry per step of the last run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub migration_detailed_statuses: Vec<MigrationStepStatus>,
    /// Fields this version does not model.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

/// One step of a run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MigrationStepStatus {
    /// The step: `Pre-migration` or `Migrate` of a migration; `PRE_UPGRADE`,
    /// `REPLICA_UPGRADE`, `TARGET_UPGRADE` or `POOL_INSTANCE_UPGRADE` of an upgrade.
    #[serde(default)]
    pub step: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<StepPhase>,
    /// What happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The error, when the step failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
