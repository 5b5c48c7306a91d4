//! CStorVolumeAttachment (`cstorvolumeattachments`, short `cva`): the CSI node plugin's record
//! of a volume staged on a node (multi-attach lock and restart state). No operator watches it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Extra, custom_resource, string_enum};

custom_resource! {
    /// A CStorVolumeAttachment, named `<pv>-<node>`.
    pub struct CStorVolumeAttachment {
        group: "cstor.openebs.io",
        version: "v1",
        plural: "cstorvolumeattachments",
        singular: "cstorvolumeattachment",
        short_names: ["cva"],
        categories: [],
        schema_required: ["spec"],
        printer_columns: [],
        spec: CStorVolumeAttachmentSpec,
        defaulted: {},
        optional: {
            /// A bare string (never written by the upstream driver).
            status: CStorVolumeAttachmentStatus = "status",
        },
    }
}

/// `spec` of a CStorVolumeAttachment.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CStorVolumeAttachmentSpec {
    /// The volume and where it is staged/published.
    pub volume: VolumeInfo,
    /// How the volume's iSCSI target is reached.
    pub iscsi: IscsiInfo,
    /// Fields this version does not model.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

/// `spec.volume` of a CStorVolumeAttachment.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeInfo {
    /// PV name.
    pub name: String,
    /// Volume size (unused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<String>,
    /// Node the volume is staged on.
    #[serde(rename = "ownerNodeID")]
    pub owner_node_id: String,
    /// Filesystem type (`""` for block volumes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fs_type: Option<String>,
    /// Access modes (unused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_modes: Option<Vec<String>>,
    /// `mount` or `block`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_type: Option<String>,
    /// CSI staging path (set before login, cleared on unstage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staging_target_path: Option<String>,
    /// CSI publish path (set on publish, cleared on unpublish).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_path: Option<String>,
    /// Always false upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    /// Mount options (unused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_options: Option<Vec<String>>,
    /// `/dev/disk/by-path/ip-<portal>-iscsi-<iqn>-lun-0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_path: Option<String>,
    /// Fields this version does not model.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

/// `spec.iscsi` of a CStorVolumeAttachment.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IscsiInfo {
    /// Target IQN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iqn: Option<String>,
    /// `<ip>:3260`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_portal: Option<String>,
    /// iSCSI interface (`default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iscsi_interface: Option<String>,
    /// LUN (`"0"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lun: Option<String>,
    /// Fields this version does not model.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

string_enum! {
    schema = open;
    /// `status` of a CStorVolumeAttachment: a bare string.
    #[derive(Default)]
    pub enum CStorVolumeAttachmentStatus {
        /// Uninitialized.
        #[default]
        Empty = "",
        /// Staging in progress.
        MountUnderProgress = "MountUnderProgress",
        /// Staged.
        Mounted = "Mounted",
        /// Unstaged.
        Unmounted = "Unmounted",
        /// Raw block.
        Raw = "Raw",
        /// Expansion in progress.
        ResizeInProgress = "ResizeInProgress",
        /// Staging failed.
        MountFailed = "MountFailed",
        /// Unstaging in progress.
        UnmountUnderProgress = "UnmountUnderProgress",
        /// Waiting for the CVC to bind.
        WaitingForCvcBound = "WaitingForCVCBound",
        /// Waiting for the CV to become ready.
        WaitingForVolumeToBeReady = "WaitingForVolumeToBeReady",
        /// Read-only remount in progress.
        RemountUnderProgress = "RemountUnderProgress",
    }
}
