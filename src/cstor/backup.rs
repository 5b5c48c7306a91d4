//! Backup kinds: CStorBackup (`cbackup`), CStorRestore (`crestore`) and CStorCompletedBackup
//! (`ccompletedbackup`), used by the velero plugin through the cvc-operator's REST server and
//! executed by the pool manager.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Extra, custom_resource, string_enum};

custom_resource! {
    /// A CStorBackup: one `zfs send` of a snapshot of a replica.
    pub struct CStorBackup {
        group: "cstor.openebs.io",
        version: "v1",
        plural: "cstorbackups",
        singular: "cstorbackup",
        short_names: ["cbackup"],
        categories: [],
        schema_required: ["spec"],
        printer_columns: [
            ("Volume", "string", ".spec.volumeName", "Name of the volume for which this backup is destined", None),
            ("Backup/Schedule", "string", ".spec.backupName", "Name of the backup or scheduled backup", None),
            ("Status", "string", ".status", "Identifies the phase of the backup", None),
        ],
        spec: CStorBackupSpec,
        defaulted: {},
        optional: {
            /// A bare string.
            status: CStorBackupStatus = "status",
        },
    }
}

/// `spec` of a CStorBackup.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CStorBackupSpec {
    /// Backup (or schedule) name.
    pub backup_name: String,
    /// PV name.
    pub volume_name: String,
    /// Snapshot to send.
    pub snap_name: String,
    /// Previous snapshot, for an incremental send.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_snap_name: Option<String>,
    /// `ip:port` the stream is sent to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_dest: Option<String>,
    /// Snapshot only, no send.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_snap: Option<bool>,
    /// Fields this version does not model.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

string_enum! {
    schema = open;
    /// `status` of a CStorBackup or CStorRestore: a bare string.
    #[derive(Default)]
    pub enum CStorBackupStatus {
        /// Unset.
        #[default]
        Empty = "",
        /// Finished.
        Done = "Done",
        /// Failed.
        Failed = "Failed",
        /// Picked up by the pool manager.
        Init = "Init",
        /// Created, not picked up yet.
        Pending = "Pending",
        /// Transfer running.
        InProgress = "InProgress",
        /// Not processable.
        Invalid = "Invalid",
    }
}

/// `status` of a CStorRestore (same values as a backup's).
pub type CStorRestoreStatus = CStorBackupStatus;

custom_resource! {
    /// A CStorRestore: one `zfs recv` into a replica.
    pub struct CStorRestore {
        group: "cstor.openebs.io",
        version: "v1",
        plural: "cstorrestores",
        singular: "cstorrestore",
        short_names: ["crestore"],
        categories: [],
        schema_required: ["spec"],
        printer_columns: [
            ("Backup", "string", ".spec.restoreName", "Name of the snapshot which is restored", None),
            ("Volume", "string", ".spec.volumeName", "Volume on which restore is performed", None),
            ("Status", "string", ".status", "Identifies the state of the restore", None),
        ],
        spec: CStorRestoreSpec,
        defaulted: {},
        optional: {
            /// A bare string.
            status: CStorRestoreStatus = "status",
        },
    }
}

/// `spec` of a CStorRestore.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CStorRestoreSpec {
    /// Snapshot (backup) name being restored.
    pub restore_name: String,
    /// PV name restored into.
    pub volume_name: String,
    /// `ip:port` the stream comes from.
    pub restore_src: String,
    /// Maximum retries (JSON key `maxretrycount`).
    #[serde(
        rename = "maxretrycount",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub max_retry_count: Option<i64>,
    /// Retries so far (JSON key `retrycount`).
    #[serde(
        rename = "retrycount",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub retry_count: Option<i64>,
    /// StorageClass of the restored volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    /// Size of the restored volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<Quantity>,
    /// Restore from a local snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_restore: Option<bool>,
    /// Fields this version does not model.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

custom_resource! {
    /// A CStorCompletedBackup: the last two snapshots sent for a backup schedule.
    pub struct CStorCompletedBackup {
        group: "cstor.openebs.io",
        version: "v1",
        plural: "cstorcompletedbackups",
        singular: "cstorcompletedbackup",
        short_names: ["ccompletedbackup"],
        categories: [],
        schema_required: ["spec"],
        printer_columns: [
            ("Volume", "string", ".spec.volumeName", "Volume name on which backup is performed", None),
            ("Backup/Schedule", "string", ".spec.backupName", "Name of the backup or scheduled backup", None),
            ("LastSnap", "string", ".spec.lastSnapName", "Last successfully backup snapshot", None),
        ],
        spec: CStorCompletedBackupSpec,
        defaulted: {},
        optional: {},
    }
}

/// `spec` of a CStorCompletedBackup.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CStorCompletedBackupSpec {
    /// Backup (or schedule) name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_name: Option<String>,
    /// PV name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_name: Option<String>,
    /// The snapshot sent before the last one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub second_last_snap_name: Option<String>,
    /// The last snapshot sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_snap_name: Option<String>,
    /// Fields this version does not model.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}
