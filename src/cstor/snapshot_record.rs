//! CStorSnapshotRecord (`cstorsnapshotrecords`, short `csnap`): ours, not upstream's. The CSI
//! controller's record of one snapshot it took (or is taking): one small object per snapshot,
//! labelled with its volume, so that a volume can hold any number of snapshots, a snapshot is
//! recorded without rewriting the volume's CVC, and ListSnapshots pages through them. Upstream's
//! operators neither read nor write it (it is owned by the source CVC, so it goes with it).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Extra, custom_resource};

custom_resource! {
    /// A CStorSnapshotRecord, named `<volume>.<32 hex digits of the snapshot name>`.
    pub struct CStorSnapshotRecord {
        group: "cstor.openebs.io",
        version: "v1",
        plural: "cstorsnapshotrecords",
        singular: "cstorsnapshotrecord",
        short_names: ["csnap"],
        categories: [],
        schema_required: ["spec"],
        printer_columns: [],
        spec: CStorSnapshotRecordSpec,
        defaulted: {},
        optional: {},
    }
}

/// `spec` of a CStorSnapshotRecord.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CStorSnapshotRecordSpec {
    /// The source volume (CVC name).
    pub volume: String,
    /// The snapshot's name on the replicas (the part after `@` in the snapshot id).
    pub snapshot: String,
    /// The CSI name, when the snapshot carries a name derived from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csi_name: Option<String>,
    /// When CreateSnapshot first asked for it (whole seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_time: Option<Time>,
    /// Size of the source volume when the snapshot was taken (the smallest restore).
    pub size_bytes: i64,
    /// `false` while the target has not confirmed the snapshot.
    #[serde(default)]
    pub ready: bool,
    /// For the internal snapshot a clone is made from: the clone volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clone_for: Option<String>,
    /// Fields this version does not model.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}
