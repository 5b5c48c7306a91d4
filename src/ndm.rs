//! NDM kinds (`openebs.io/v1alpha1`): BlockDevice and BlockDeviceClaim, owned by the
//! node-disk-manager; cStor reads BlockDevices and creates/binds BlockDeviceClaims.
//!
//! Same conventions as [`crate::cstor`]: upstream JSON names, `Option` for what upstream may
//! omit, `extra` maps for unknown fields, tolerant string enums. The CRD schemas repeat the
//! enums NDM's CRD declares.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::ObjectReference,
    apimachinery::pkg::{api::resource::Quantity, apis::meta::v1::LabelSelector},
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::cstor::{Extra, custom_resource, string_enum};

/// API group of the NDM kinds.
pub const GROUP: &str = "openebs.io";
/// API version of the NDM kinds.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` of the NDM kinds.
pub const API_VERSION: &str = "openebs.io/v1alpha1";

custom_resource! {
    /// A BlockDevice discovered by NDM.
    pub struct BlockDevice {
        group: "openebs.io",
        version: "v1alpha1",
        plural: "blockdevices",
        singular: "blockdevice",
        short_names: ["bd"],
        categories: [],
        schema_required: [],
        printer_columns: [
            ("NodeName", "string", ".spec.nodeAttributes.nodeName", "", None),
            ("Path", "string", ".spec.path", "", Some(1)),
            ("FSType", "string", ".spec.filesystem.fsType", "", Some(1)),
            ("Size", "string", ".spec.capacity.storage", "", None),
            ("ClaimState", "string", ".status.claimState", "", None),
            ("Status", "string", ".status.state", "", None),
            ("Age", "date", ".metadata.creationTimestamp", "", None),
        ],
        spec: BlockDeviceSpec,
        defaulted: {},
        optional: {
            /// Claim and presence state.
            status: BlockDeviceStatus = "status",
        },
    }
}

/// `spec` of a BlockDevice.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlockDeviceSpec {
    /// Where the device is attached.
    pub node_attributes: NodeAttribute,
    /// Device path (`/dev/sdb`) or sparse file path.
    pub path: String,
    /// Size and sector sizes.
    pub capacity: DeviceCapacity,
    /// Hardware details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<DeviceDetails>,
    /// The BlockDeviceClaim bound to this device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_ref: Option<ObjectReference>,
    /// Stable links (`by-id`, `by-path`) to the device.
    pub devlinks: Vec<DeviceDevLink>,
    /// Filesystem found on the device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filesystem: Option<FileSystemInfo>,
    /// `Yes` if the device has partitions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitioned: Option<Partitioned>,
    /// Parent device of a partition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_device: Option<String>,
    /// Aggregate (dm/md) device this device is part of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregate_device: Option<String>,
    /// Fields this version does not model.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

impl BlockDeviceSpec {
    /// Candidate vdev paths in the order the pool manager tries them: every devlink (by-id
    /// first as NDM writes them, then by-path), then `spec.path`.
    pub fn candidate_paths(&self) -> Vec<&str> {
        self.devlinks
            .iter()
            .flat_map(|l| l.links.as_deref().unwrap_or_default())
            .map(String::as_str)
            .chain(std::iter::once(self.path.as_str()))
            .collect()
    }
}

/// `spec.nodeAttributes` of a BlockDevice.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeAttribute {
    /// Node name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// Fields this version does not model.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

/// `spec.capacity` of a BlockDevice.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceCapacity {
    /// Size in bytes.
    pub storage: u64,
    /// Physical sector size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub physical_sector_size: Option<u32>,
    /// Logical sector size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logical_sector_size: Option<u32>,
    /// Fields this version does not model.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

/// `spec.details` of a BlockDevice.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceDetails {
    /// Device type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_type: Option<DeviceType>,
    /// Drive type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drive_type: Option<DriveType>,
    /// Logical block size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logical_block_size: Option<u32>,
    /// Physical block size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub physical_block_size: Option<u32>,
    /// Hardware sector size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardware_sector_size: Option<u32>,
    /// Model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Compliance (e.g. SPC-4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compliance: Option<String>,
    /// Serial number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// Vendor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    /// Firmware revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware_revision: Option<String>,
    /// Fields this version does not model.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

string_enum! {
    schema = closed;
    /// `spec.details.deviceType` of a BlockDevice.
    pub enum DeviceType {
        /// Whole disk.
        Disk = "disk",
        /// Partition.
        Partition = "partition",
        /// Sparse file.
        Sparse = "sparse",
        /// Loop device.
        Loop = "loop",
        /// LVM volume.
        Lvm = "lvm",
        /// dm-crypt device.
        Crypt = "crypt",
        /// Device-mapper device.
        Dm = "dm",
        /// Multipath device.
        Mpath = "mpath",
    }
}

string_enum! {
    schema = closed;
    /// `spec.details.driveType` of a BlockDevice.
    pub enum DriveType {
        /// Rotational.
        Hdd = "HDD",
        /// Solid state.
        Ssd = "SSD",
        /// Unknown.
        Unknown = "Unknown",
        /// Not reported.
        Empty = "",
    }
}

/// An entry of `spec.devlinks`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceDevLink {
    /// `by-id` or `by-path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<DevLinkKind>,
    /// The links.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub links: Option<Vec<String>>,
    /// Fields this version does not model.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

string_enum! {
    schema = closed;
    /// `kind` of a devlink.
    pub enum DevLinkKind {
        /// `/dev/disk/by-id/...`.
        ById = "by-id",
        /// `/dev/disk/by-path/...`.
        ByPath = "by-path",
    }
}

string_enum! {
    schema = closed;
    /// `spec.partitioned` of a BlockDevice.
    pub enum Partitioned {
        /// Has partitions.
        Yes = "Yes",
        /// No partitions.
        No = "No",
    }
}

/// `spec.filesystem` of a BlockDevice.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileSystemInfo {
    /// Filesystem type found on the device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fs_type: Option<String>,
    /// Where it is mounted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_point: Option<String>,
    /// Fields this version does not model.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

/// `status` of a BlockDevice.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlockDeviceStatus {
    /// Claim state.
    pub claim_state: DeviceClaimState,
    /// Presence state.
    pub state: BlockDeviceState,
    /// Fields this version does not model.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

string_enum! {
    schema = closed;
    /// `status.claimState` of a BlockDevice.
    #[derive(Default)]
    pub enum DeviceClaimState {
        /// Bound to a claim.
        Claimed = "Claimed",
        /// Free.
        #[default]
        Unclaimed = "Unclaimed",
        /// Claim deleted, device being cleaned up.
        Released = "Released",
    }
}

string_enum! {
    schema = closed;
    /// `status.state` of a BlockDevice.
    #[derive(Default)]
    pub enum BlockDeviceState {
        /// Present.
        Active = "Active",
        /// Gone.
        Inactive = "Inactive",
        /// Unknown.
        #[default]
        Unknown = "Unknown",
    }
}

custom_resource! {
    /// A BlockDeviceClaim.
    pub struct BlockDeviceClaim {
        group: "openebs.io",
        version: "v1alpha1",
        plural: "blockdeviceclaims",
        singular: "blockdeviceclaim",
        short_names: ["bdc"],
        categories: [],
        schema_required: [],
        printer_columns: [
            ("BlockDeviceName", "string", ".spec.blockDeviceName", "", None),
            ("Phase", "string", ".status.phase", "", None),
            ("Age", "date", ".metadata.creationTimestamp", "", None),
        ],
        spec: DeviceClaimSpec,
        defaulted: {},
        optional: {
            /// Binding phase, written by the NDM operator.
            status: DeviceClaimStatus = "status",
        },
    }
}

/// `spec` of a BlockDeviceClaim.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceClaimSpec {
    /// Label selector of eligible devices (`openebs.io/block-device-tag`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// Requested capacity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<DeviceClaimResources>,
    /// Requested device type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_type: Option<String>,
    /// Requested host (deprecated in favour of `blockDeviceNodeAttributes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_name: Option<String>,
    /// Requested device properties.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_claim_details: Option<DeviceClaimDetails>,
    /// Name of the claimed BlockDevice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_device_name: Option<String>,
    /// Node of the claimed device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_device_node_attributes: Option<BlockDeviceNodeAttributes>,
    /// Fields this version does not model.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

/// `spec.resources` of a BlockDeviceClaim.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceClaimResources {
    /// Requested resources (`storage`).
    pub requests: BTreeMap<String, Quantity>,
    /// Fields this version does not model.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

/// `spec.deviceClaimDetails` of a BlockDeviceClaim.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceClaimDetails {
    /// `Block` or `FileSystem`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_volume_mode: Option<String>,
    /// Filesystem to format with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format_type: Option<String>,
    /// Whether a partitioned device may be claimed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_partition: Option<bool>,
    /// Fields this version does not model.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

/// `spec.blockDeviceNodeAttributes` of a BlockDeviceClaim.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlockDeviceNodeAttributes {
    /// Node name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// `kubernetes.io/hostname` of the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_name: Option<String>,
    /// Fields this version does not model.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

/// `status` of a BlockDeviceClaim.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceClaimStatus {
    /// Binding phase.
    pub phase: DeviceClaimPhase,
    /// Fields this version does not model.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

string_enum! {
    schema = open;
    /// `status.phase` of a BlockDeviceClaim.
    #[derive(Default)]
    pub enum DeviceClaimPhase {
        /// Not processed yet.
        #[default]
        Empty = "",
        /// Waiting for a matching device.
        Pending = "Pending",
        /// The requested capacity is invalid.
        InvalidCapacityRequest = "Invalid Capacity Request",
        /// Bound to a device.
        Bound = "Bound",
    }
}
