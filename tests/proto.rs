//! Wire-level checks of the generated gRPC bindings.
//!
//! * The embedded descriptor set is compared against the published CSI v1.12.0 interface
//!   (service/method names, field numbers and types, enum values, custom options) and the
//!   upstream cStor snapshot service (`v1alpha1.RunSnapCommand`).
//! * Generated messages are encoded and compared with hand-computed protobuf bytes.
//! * Live tonic round trips: CSI Identity over a unix socket, the snapshot service over
//!   127.0.0.1, including a call by the raw upstream method path.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cstor_api::proto::csi::v1 as csi;
use cstor_api::proto::snapshot::v1alpha1 as snap;
use cstor_api::proto::{CSI_SPEC_VERSION, FILE_DESCRIPTOR_SET};
use prost::Message as _;
use prost_reflect::{DescriptorPool, Kind, MessageDescriptor, Value};
use prost_types::FileDescriptorSet;
use tonic::{Request, Response, Status};

/// Upper bound for every network step of the round-trip tests.
const DEADLINE: Duration = Duration::from_secs(20);

fn descriptor_set() -> FileDescriptorSet {
    FileDescriptorSet::decode(FILE_DESCRIPTOR_SET)
        .expect("FILE_DESCRIPTOR_SET must decode as google.protobuf.FileDescriptorSet")
}

fn pool() -> DescriptorPool {
    DescriptorPool::decode(FILE_DESCRIPTOR_SET)
        .expect("FILE_DESCRIPTOR_SET must decode into a prost-reflect DescriptorPool")
}

fn message(pool: &DescriptorPool, name: &str) -> MessageDescriptor {
    pool.get_message_by_name(name)
        .unwrap_or_else(|| panic!("message {name} missing from the descriptor set"))
}

/// Type of a field as written in a .proto file (`repeated`, `map<..>` and `oneof` spelled out).
fn type_name(kind: &Kind) -> String {
    match kind {
        Kind::Double => "double".into(),
        Kind::Float => "float".into(),
        Kind::Int32 => "int32".into(),
        Kind::Int64 => "int64".into(),
        Kind::Uint32 => "uint32".into(),
        Kind::Uint64 => "uint64".into(),
        Kind::Sint32 => "sint32".into(),
        Kind::Sint64 => "sint64".into(),
        Kind::Fixed32 => "fixed32".into(),
        Kind::Fixed64 => "fixed64".into(),
        Kind::Sfixed32 => "sfixed32".into(),
        Kind::Sfixed64 => "sfixed64".into(),
        Kind::Bool => "bool".into(),
        Kind::String => "string".into(),
        Kind::Bytes => "bytes".into(),
        Kind::Message(m) => m.full_name().to_string(),
        Kind::Enum(e) => format!("enum {}", e.full_name()),
    }
}

/// `"<number> <name> <type>"` for every field of `name`, in field-number order.
fn fields(pool: &DescriptorPool, name: &str) -> Vec<String> {
    let mut out: Vec<(u32, String)> = message(pool, name)
        .fields()
        .map(|f| {
            let ty = if f.is_map() {
                let Kind::Message(entry) = f.kind() else {
                    unreachable!("map fields are messages")
                };
                let k = entry.map_entry_key_field().kind();
                let v = entry.map_entry_value_field().kind();
                format!("map<{},{}>", type_name(&k), type_name(&v))
            } else if f.is_list() {
                format!("repeated {}", type_name(&f.kind()))
            } else {
                type_name(&f.kind())
            };
            let oneof = f
                .containing_oneof()
                .map(|o| format!(" oneof {}", o.name()))
                .unwrap_or_default();
            (
                f.number(),
                format!("{} {} {ty}{oneof}", f.number(), f.name()),
            )
        })
        .collect();
    out.sort();
    out.into_iter().map(|(_, s)| s).collect()
}

/// `"<NAME>=<number>"` for every value of enum `name`, in declaration order.
fn enum_values(pool: &DescriptorPool, name: &str) -> Vec<String> {
    pool.get_enum_by_name(name)
        .unwrap_or_else(|| panic!("enum {name} missing from the descriptor set"))
        .values()
        .map(|v| format!("{}={}", v.name(), v.number()))
        .collect()
}

fn assert_fields(pool: &DescriptorPool, name: &str, expected: &[&str]) {
    assert_eq!(
        fields(pool, name),
        expected,
        "fields of {name} differ from CSI v1.12.0"
    );
}

#[test]
fn descriptor_set_holds_both_files_with_the_spec_imports() {
    let set = descriptor_set();
    let csi_file = set
        .file
        .iter()
        .find(|f| f.name() == "csi.proto")
        .expect("csi.proto missing from the descriptor set");
    assert_eq!(csi_file.package(), "csi.v1");
    assert_eq!(csi_file.syntax(), "proto3");
    assert_eq!(
        csi_file.dependency,
        [
            "google/protobuf/descriptor.proto",
            "google/protobuf/timestamp.proto",
            "google/protobuf/wrappers.proto",
        ]
    );
    let snap_file = set
        .file
        .iter()
        .find(|f| f.name() == "cstorvolume.proto")
        .expect("cstorvolume.proto missing from the descriptor set");
    assert_eq!(snap_file.package(), "v1alpha1");
    assert!(snap_file.dependency.is_empty());
    // Imports are embedded so reflection clients can resolve every type.
    for import in &csi_file.dependency {
        assert!(
            set.file.iter().any(|f| f.name() == import),
            "import {import} is not embedded in FILE_DESCRIPTOR_SET"
        );
    }
    assert_eq!(CSI_SPEC_VERSION, "1.12.0");
}

#[test]
fn csi_services_and_methods_match_the_spec() {
    let set = descriptor_set();
    let csi_file = set.file.iter().find(|f| f.name() == "csi.proto").unwrap();
    let expected: &[(&str, &[&str])] = &[
        (
            "Identity",
            &["GetPluginInfo", "GetPluginCapabilities", "Probe"],
        ),
        (
            "Controller",
            &[
                "CreateVolume",
                "DeleteVolume",
                "ControllerPublishVolume",
                "ControllerUnpublishVolume",
                "ValidateVolumeCapabilities",
                "ListVolumes",
                "GetCapacity",
                "ControllerGetCapabilities",
                "CreateSnapshot",
                "DeleteSnapshot",
                "ListSnapshots",
                "GetSnapshot",
                "ControllerExpandVolume",
                "ControllerGetVolume",
                "ControllerModifyVolume",
            ],
        ),
        (
            "GroupController",
            &[
                "GroupControllerGetCapabilities",
                "CreateVolumeGroupSnapshot",
                "DeleteVolumeGroupSnapshot",
                "GetVolumeGroupSnapshot",
            ],
        ),
        (
            "SnapshotMetadata",
            &["GetMetadataAllocated", "GetMetadataDelta"],
        ),
        (
            "Node",
            &[
                "NodeStageVolume",
                "NodeUnstageVolume",
                "NodePublishVolume",
                "NodeUnpublishVolume",
                "NodeGetVolumeStats",
                "NodeExpandVolume",
                "NodeGetCapabilities",
                "NodeGetInfo",
            ],
        ),
    ];
    let services: Vec<&str> = csi_file.service.iter().map(|s| s.name()).collect();
    let expected_services: Vec<&str> = expected.iter().map(|(s, _)| *s).collect();
    assert_eq!(services, expected_services, "csi.v1 services");

    for (service, methods) in expected {
        let desc = csi_file
            .service
            .iter()
            .find(|s| s.name() == *service)
            .unwrap();
        let names: Vec<&str> = desc.method.iter().map(|m| m.name()).collect();
        assert_eq!(&names, methods, "methods of csi.v1.{service}");
        for m in &desc.method {
            assert_eq!(
                m.input_type(),
                format!(".csi.v1.{}Request", m.name()),
                "input of {service}.{}",
                m.name()
            );
            assert_eq!(
                m.output_type(),
                format!(".csi.v1.{}Response", m.name()),
                "output of {service}.{}",
                m.name()
            );
            assert!(
                !m.client_streaming(),
                "{service}.{} client streaming",
                m.name()
            );
            assert_eq!(
                m.server_streaming(),
                *service == "SnapshotMetadata",
                "only SnapshotMetadata RPCs stream responses ({service}.{})",
                m.name()
            );
        }
    }
}

#[test]
fn csi_message_fields_match_the_spec() {
    let p = pool();
    let map = "map<string,string>";
    assert_fields(
        &p,
        "csi.v1.CreateVolumeRequest",
        &[
            "1 name string",
            "2 capacity_range csi.v1.CapacityRange",
            "3 volume_capabilities repeated csi.v1.VolumeCapability",
            &format!("4 parameters {map}"),
            &format!("5 secrets {map}"),
            "6 volume_content_source csi.v1.VolumeContentSource",
            "7 accessibility_requirements csi.v1.TopologyRequirement",
            &format!("8 mutable_parameters {map}"),
        ],
    );
    assert_fields(
        &p,
        "csi.v1.VolumeContentSource",
        &[
            "1 snapshot csi.v1.VolumeContentSource.SnapshotSource oneof type",
            "2 volume csi.v1.VolumeContentSource.VolumeSource oneof type",
        ],
    );
    assert_fields(
        &p,
        "csi.v1.Volume",
        &[
            "1 capacity_bytes int64",
            "2 volume_id string",
            &format!("3 volume_context {map}"),
            "4 content_source csi.v1.VolumeContentSource",
            "5 accessible_topology repeated csi.v1.Topology",
        ],
    );
    assert_fields(
        &p,
        "csi.v1.VolumeCapability",
        &[
            "1 block csi.v1.VolumeCapability.BlockVolume oneof access_type",
            "2 mount csi.v1.VolumeCapability.MountVolume oneof access_type",
            "3 access_mode csi.v1.VolumeCapability.AccessMode",
        ],
    );
    assert_fields(
        &p,
        "csi.v1.VolumeCapability.MountVolume",
        &[
            "1 fs_type string",
            "2 mount_flags repeated string",
            "3 volume_mount_group string",
        ],
    );
    assert_fields(&p, "csi.v1.VolumeCapability.BlockVolume", &[]);
    assert_fields(
        &p,
        "csi.v1.VolumeCapability.AccessMode",
        &["1 mode enum csi.v1.VolumeCapability.AccessMode.Mode"],
    );
    assert_fields(
        &p,
        "csi.v1.CapacityRange",
        &["1 required_bytes int64", "2 limit_bytes int64"],
    );
    assert_fields(
        &p,
        "csi.v1.ControllerPublishVolumeRequest",
        &[
            "1 volume_id string",
            "2 node_id string",
            "3 volume_capability csi.v1.VolumeCapability",
            "4 readonly bool",
            &format!("5 secrets {map}"),
            &format!("6 volume_context {map}"),
        ],
    );
    assert_fields(
        &p,
        "csi.v1.ControllerPublishVolumeResponse",
        &[&format!("1 publish_context {map}")],
    );
    assert_fields(
        &p,
        "csi.v1.ValidateVolumeCapabilitiesResponse.Confirmed",
        &[
            &format!("1 volume_context {map}"),
            "2 volume_capabilities repeated csi.v1.VolumeCapability",
            &format!("3 parameters {map}"),
            &format!("4 mutable_parameters {map}"),
        ],
    );
    assert_fields(
        &p,
        "csi.v1.GetCapacityResponse",
        &[
            "1 available_capacity int64",
            "2 maximum_volume_size google.protobuf.Int64Value",
            "3 minimum_volume_size google.protobuf.Int64Value",
        ],
    );
    assert_fields(
        &p,
        "csi.v1.ProbeResponse",
        &["1 ready google.protobuf.BoolValue"],
    );
    assert_fields(
        &p,
        "csi.v1.PluginCapability",
        &[
            "1 service csi.v1.PluginCapability.Service oneof type",
            "2 volume_expansion csi.v1.PluginCapability.VolumeExpansion oneof type",
        ],
    );
    assert_fields(
        &p,
        "csi.v1.CreateSnapshotRequest",
        &[
            "1 source_volume_id string",
            "2 name string",
            &format!("3 secrets {map}"),
            &format!("4 parameters {map}"),
        ],
    );
    assert_fields(
        &p,
        "csi.v1.CreateSnapshotResponse",
        &["1 snapshot csi.v1.Snapshot"],
    );
    assert_fields(
        &p,
        "csi.v1.Snapshot",
        &[
            "1 size_bytes int64",
            "2 snapshot_id string",
            "3 source_volume_id string",
            "4 creation_time google.protobuf.Timestamp",
            "5 ready_to_use bool",
            "6 group_snapshot_id string",
        ],
    );
    assert_fields(
        &p,
        "csi.v1.ListSnapshotsRequest",
        &[
            "1 max_entries int32",
            "2 starting_token string",
            "3 source_volume_id string",
            "4 snapshot_id string",
            &format!("5 secrets {map}"),
        ],
    );
    assert_fields(
        &p,
        "csi.v1.GetSnapshotRequest",
        &["1 snapshot_id string", &format!("2 secrets {map}")],
    );
    assert_fields(
        &p,
        "csi.v1.ControllerExpandVolumeResponse",
        &["1 capacity_bytes int64", "2 node_expansion_required bool"],
    );
    assert_fields(
        &p,
        "csi.v1.ControllerModifyVolumeRequest",
        &[
            "1 volume_id string",
            &format!("2 secrets {map}"),
            &format!("3 mutable_parameters {map}"),
        ],
    );
    assert_fields(&p, "csi.v1.ControllerModifyVolumeResponse", &[]);
    assert_fields(
        &p,
        "csi.v1.ListVolumesResponse.VolumeStatus",
        &[
            "1 published_node_ids repeated string",
            "2 volume_condition csi.v1.VolumeCondition",
        ],
    );
    assert_fields(
        &p,
        "csi.v1.NodeStageVolumeRequest",
        &[
            "1 volume_id string",
            &format!("2 publish_context {map}"),
            "3 staging_target_path string",
            "4 volume_capability csi.v1.VolumeCapability",
            &format!("5 secrets {map}"),
            &format!("6 volume_context {map}"),
        ],
    );
    assert_fields(
        &p,
        "csi.v1.NodeUnstageVolumeRequest",
        &["1 volume_id string", "2 staging_target_path string"],
    );
    assert_fields(
        &p,
        "csi.v1.NodePublishVolumeRequest",
        &[
            "1 volume_id string",
            &format!("2 publish_context {map}"),
            "3 staging_target_path string",
            "4 target_path string",
            "5 volume_capability csi.v1.VolumeCapability",
            "6 readonly bool",
            &format!("7 secrets {map}"),
            &format!("8 volume_context {map}"),
        ],
    );
    assert_fields(
        &p,
        "csi.v1.NodeGetVolumeStatsRequest",
        &[
            "1 volume_id string",
            "2 volume_path string",
            "3 staging_target_path string",
        ],
    );
    assert_fields(
        &p,
        "csi.v1.NodeGetVolumeStatsResponse",
        &[
            "1 usage repeated csi.v1.VolumeUsage",
            "2 volume_condition csi.v1.VolumeCondition",
        ],
    );
    assert_fields(
        &p,
        "csi.v1.VolumeUsage",
        &[
            "1 available int64",
            "2 total int64",
            "3 used int64",
            "4 unit enum csi.v1.VolumeUsage.Unit",
        ],
    );
    assert_fields(
        &p,
        "csi.v1.VolumeCondition",
        &["1 abnormal bool", "2 message string"],
    );
    assert_fields(
        &p,
        "csi.v1.NodeExpandVolumeRequest",
        &[
            "1 volume_id string",
            "2 volume_path string",
            "3 capacity_range csi.v1.CapacityRange",
            "4 staging_target_path string",
            "5 volume_capability csi.v1.VolumeCapability",
            &format!("6 secrets {map}"),
        ],
    );
    assert_fields(
        &p,
        "csi.v1.NodeGetInfoResponse",
        &[
            "1 node_id string",
            "2 max_volumes_per_node int64",
            "3 accessible_topology csi.v1.Topology",
        ],
    );
    assert_fields(
        &p,
        "csi.v1.VolumeGroupSnapshot",
        &[
            "1 group_snapshot_id string",
            "2 snapshots repeated csi.v1.Snapshot",
            "3 creation_time google.protobuf.Timestamp",
            "4 ready_to_use bool",
        ],
    );
    assert_fields(
        &p,
        "csi.v1.GetMetadataDeltaRequest",
        &[
            "1 base_snapshot_id string",
            "2 target_snapshot_id string",
            "3 starting_offset int64",
            "4 max_results int32",
            &format!("5 secrets {map}"),
        ],
    );
    assert_fields(
        &p,
        "csi.v1.GetMetadataAllocatedResponse",
        &[
            "1 block_metadata_type enum csi.v1.BlockMetadataType",
            "2 volume_capacity_bytes int64",
            "3 block_metadata repeated csi.v1.BlockMetadata",
        ],
    );
}

#[test]
fn csi_enum_values_match_the_spec() {
    let p = pool();
    assert_eq!(
        enum_values(&p, "csi.v1.VolumeCapability.AccessMode.Mode"),
        [
            "UNKNOWN=0",
            "SINGLE_NODE_WRITER=1",
            "SINGLE_NODE_READER_ONLY=2",
            "MULTI_NODE_READER_ONLY=3",
            "MULTI_NODE_SINGLE_WRITER=4",
            "MULTI_NODE_MULTI_WRITER=5",
            "SINGLE_NODE_SINGLE_WRITER=6",
            "SINGLE_NODE_MULTI_WRITER=7",
        ]
    );
    assert_eq!(
        enum_values(&p, "csi.v1.PluginCapability.Service.Type"),
        [
            "UNKNOWN=0",
            "CONTROLLER_SERVICE=1",
            "VOLUME_ACCESSIBILITY_CONSTRAINTS=2",
            "GROUP_CONTROLLER_SERVICE=3",
            "SNAPSHOT_METADATA_SERVICE=4",
        ]
    );
    assert_eq!(
        enum_values(&p, "csi.v1.PluginCapability.VolumeExpansion.Type"),
        ["UNKNOWN=0", "ONLINE=1", "OFFLINE=2"]
    );
    assert_eq!(
        enum_values(&p, "csi.v1.ControllerServiceCapability.RPC.Type"),
        [
            "UNKNOWN=0",
            "CREATE_DELETE_VOLUME=1",
            "PUBLISH_UNPUBLISH_VOLUME=2",
            "LIST_VOLUMES=3",
            "GET_CAPACITY=4",
            "CREATE_DELETE_SNAPSHOT=5",
            "LIST_SNAPSHOTS=6",
            "CLONE_VOLUME=7",
            "PUBLISH_READONLY=8",
            "EXPAND_VOLUME=9",
            "LIST_VOLUMES_PUBLISHED_NODES=10",
            "VOLUME_CONDITION=11",
            "GET_VOLUME=12",
            "SINGLE_NODE_MULTI_WRITER=13",
            "MODIFY_VOLUME=14",
            "GET_SNAPSHOT=15",
        ]
    );
    assert_eq!(
        enum_values(&p, "csi.v1.NodeServiceCapability.RPC.Type"),
        [
            "UNKNOWN=0",
            "STAGE_UNSTAGE_VOLUME=1",
            "GET_VOLUME_STATS=2",
            "EXPAND_VOLUME=3",
            "VOLUME_CONDITION=4",
            "SINGLE_NODE_MULTI_WRITER=5",
            "VOLUME_MOUNT_GROUP=6",
        ]
    );
    assert_eq!(
        enum_values(&p, "csi.v1.GroupControllerServiceCapability.RPC.Type"),
        ["UNKNOWN=0", "CREATE_DELETE_GET_VOLUME_GROUP_SNAPSHOT=1"]
    );
    assert_eq!(
        enum_values(&p, "csi.v1.VolumeUsage.Unit"),
        ["UNKNOWN=0", "BYTES=1", "INODES=2"]
    );
    assert_eq!(
        enum_values(&p, "csi.v1.BlockMetadataType"),
        ["UNKNOWN=0", "FIXED_LENGTH=1", "VARIABLE_LENGTH=2"]
    );

    // The generated Rust enums carry the same numbers.
    use csi::volume_capability::access_mode::Mode;
    assert_eq!(Mode::SingleNodeSingleWriter as i32, 6);
    assert_eq!(Mode::SingleNodeMultiWriter as i32, 7);
    use csi::controller_service_capability::rpc::Type as CtrlCap;
    assert_eq!(CtrlCap::ModifyVolume as i32, 14);
    assert_eq!(CtrlCap::GetSnapshot as i32, 15);
}

#[test]
fn csi_custom_options_are_declared_and_applied_as_in_the_spec() {
    let p = pool();
    let extensions: BTreeSet<String> = p
        .all_extensions()
        .filter(|e| e.package_name() == "csi.v1")
        .map(|e| {
            format!(
                "{} {} {} on {}",
                e.name(),
                e.number(),
                type_name(&e.kind()),
                e.containing_message().full_name()
            )
        })
        .collect();
    let expected: BTreeSet<String> = [
        "csi_secret 1059 bool on google.protobuf.FieldOptions",
        "alpha_field 1060 bool on google.protobuf.FieldOptions",
        "alpha_enum 1060 bool on google.protobuf.EnumOptions",
        "alpha_enum_value 1060 bool on google.protobuf.EnumValueOptions",
        "alpha_message 1060 bool on google.protobuf.MessageOptions",
        "alpha_method 1060 bool on google.protobuf.MethodOptions",
        "alpha_service 1060 bool on google.protobuf.ServiceOptions",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(extensions, expected, "csi.v1 custom options");

    let ext = |name: &str| {
        p.get_extension_by_name(name)
            .unwrap_or_else(|| panic!("extension {name} missing"))
    };
    let is_set = |opts: &prost_reflect::DynamicMessage, name: &str| {
        let e = ext(name);
        opts.has_extension(&e) && opts.get_extension(&e).as_ref() == &Value::Bool(true)
    };

    // Every `secrets` field, and nothing else, is marked csi_secret.
    let mut secret_fields = BTreeSet::new();
    let mut alpha_fields = BTreeSet::new();
    let mut alpha_messages = BTreeSet::new();
    for m in p.all_messages().filter(|m| m.package_name() == "csi.v1") {
        if is_set(&m.options(), "csi.v1.alpha_message") {
            alpha_messages.insert(m.full_name().to_string());
        }
        for f in m.fields() {
            if is_set(&f.options(), "csi.v1.csi_secret") {
                assert_eq!(f.name(), "secrets", "csi_secret on {}", f.full_name());
                secret_fields.insert(m.name().to_string());
            }
            if is_set(&f.options(), "csi.v1.alpha_field") {
                alpha_fields.insert(f.full_name().to_string());
            }
        }
    }
    let expected_secret: BTreeSet<String> = [
        "CreateVolumeRequest",
        "DeleteVolumeRequest",
        "ControllerPublishVolumeRequest",
        "ControllerUnpublishVolumeRequest",
        "ValidateVolumeCapabilitiesRequest",
        "ControllerModifyVolumeRequest",
        "CreateSnapshotRequest",
        "DeleteSnapshotRequest",
        "ListSnapshotsRequest",
        "GetSnapshotRequest",
        "ControllerExpandVolumeRequest",
        "NodeStageVolumeRequest",
        "NodePublishVolumeRequest",
        "NodeExpandVolumeRequest",
        "CreateVolumeGroupSnapshotRequest",
        "DeleteVolumeGroupSnapshotRequest",
        "GetVolumeGroupSnapshotRequest",
        "GetMetadataAllocatedRequest",
        "GetMetadataDeltaRequest",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(secret_fields, expected_secret, "messages with csi_secret");
    assert_eq!(
        alpha_fields,
        BTreeSet::from([
            "csi.v1.ListVolumesResponse.VolumeStatus.volume_condition".to_string(),
            "csi.v1.NodeGetVolumeStatsResponse.volume_condition".to_string(),
        ]),
        "alpha fields"
    );
    assert_eq!(
        alpha_messages,
        BTreeSet::from([
            "csi.v1.ControllerGetVolumeRequest".to_string(),
            "csi.v1.ControllerGetVolumeResponse".to_string(),
            "csi.v1.GetSnapshotRequest".to_string(),
            "csi.v1.GetSnapshotResponse".to_string(),
            "csi.v1.VolumeCondition".to_string(),
        ]),
        "alpha messages"
    );

    // Alpha services / methods: SnapshotMetadata; GetSnapshot and ControllerGetVolume.
    // ControllerModifyVolume is GA as of v1.12.0.
    let mut alpha_services = BTreeSet::new();
    let mut alpha_methods = BTreeSet::new();
    for s in p.services().filter(|s| s.package_name() == "csi.v1") {
        if is_set(&s.options(), "csi.v1.alpha_service") {
            alpha_services.insert(s.name().to_string());
        }
        for m in s.methods() {
            if is_set(&m.options(), "csi.v1.alpha_method") {
                alpha_methods.insert(m.full_name().to_string());
            }
        }
    }
    assert_eq!(
        alpha_services,
        BTreeSet::from(["SnapshotMetadata".to_string()])
    );
    assert_eq!(
        alpha_methods,
        BTreeSet::from([
            "csi.v1.Controller.ControllerGetVolume".to_string(),
            "csi.v1.Controller.GetSnapshot".to_string(),
        ])
    );

    // Alpha enum values.
    let mut alpha_values = BTreeSet::new();
    for e in p.all_enums().filter(|e| e.package_name() == "csi.v1") {
        for v in e.values() {
            if is_set(&v.options(), "csi.v1.alpha_enum_value") {
                alpha_values.insert(format!("{}.{}", e.full_name(), v.name()));
            }
        }
    }
    let expected_alpha_values: BTreeSet<String> = [
        "csi.v1.PluginCapability.Service.Type.SNAPSHOT_METADATA_SERVICE",
        "csi.v1.VolumeCapability.AccessMode.Mode.SINGLE_NODE_SINGLE_WRITER",
        "csi.v1.VolumeCapability.AccessMode.Mode.SINGLE_NODE_MULTI_WRITER",
        "csi.v1.ControllerServiceCapability.RPC.Type.VOLUME_CONDITION",
        "csi.v1.ControllerServiceCapability.RPC.Type.GET_VOLUME",
        "csi.v1.ControllerServiceCapability.RPC.Type.SINGLE_NODE_MULTI_WRITER",
        "csi.v1.ControllerServiceCapability.RPC.Type.GET_SNAPSHOT",
        "csi.v1.NodeServiceCapability.RPC.Type.VOLUME_CONDITION",
        "csi.v1.NodeServiceCapability.RPC.Type.SINGLE_NODE_MULTI_WRITER",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(alpha_values, expected_alpha_values, "alpha enum values");
}

#[test]
fn generated_csi_messages_encode_to_spec_bytes() {
    use csi::volume_capability::access_mode::Mode;
    use csi::volume_capability::{AccessMode, AccessType, BlockVolume, MountVolume};

    // block {} (field 1, empty), access_mode { mode: 7 } (field 3).
    let block = csi::VolumeCapability {
        access_type: Some(AccessType::Block(BlockVolume {})),
        access_mode: Some(AccessMode {
            mode: Mode::SingleNodeMultiWriter as i32,
        }),
    };
    assert_eq!(block.encode_to_vec(), [0x0a, 0x00, 0x1a, 0x02, 0x08, 0x07]);

    // mount { fs_type: "xfs" (1), volume_mount_group: "2" (3) }, access_mode { mode: 1 }.
    let mount = csi::VolumeCapability {
        access_type: Some(AccessType::Mount(MountVolume {
            fs_type: "xfs".into(),
            mount_flags: vec![],
            volume_mount_group: "2".into(),
        })),
        access_mode: Some(AccessMode {
            mode: Mode::SingleNodeWriter as i32,
        }),
    };
    assert_eq!(
        mount.encode_to_vec(),
        [
            0x12, 0x08, 0x0a, 0x03, b'x', b'f', b's', 0x1a, 0x01, b'2', 0x1a, 0x02, 0x08, 0x01
        ]
    );

    // ControllerModifyVolumeRequest: volume_id (1), mutable_parameters (3) map entry {1: k, 2: v}.
    let modify = csi::ControllerModifyVolumeRequest {
        volume_id: "v".into(),
        secrets: Default::default(),
        mutable_parameters: [("k".to_string(), "x".to_string())].into(),
    };
    assert_eq!(
        modify.encode_to_vec(),
        [
            0x0a, 0x01, b'v', 0x1a, 0x06, 0x0a, 0x01, b'k', 0x12, 0x01, b'x'
        ]
    );

    // Snapshot.creation_time is google.protobuf.Timestamp at field 4, ready_to_use bool at 5.
    let snapshot = csi::Snapshot {
        size_bytes: 0,
        snapshot_id: String::new(),
        source_volume_id: String::new(),
        creation_time: Some(prost_types::Timestamp {
            seconds: 1,
            nanos: 0,
        }),
        ready_to_use: true,
        group_snapshot_id: String::new(),
    };
    assert_eq!(
        snapshot.encode_to_vec(),
        [0x22, 0x02, 0x08, 0x01, 0x28, 0x01]
    );
}

#[test]
fn snapshot_service_descriptor_matches_upstream() {
    let set = descriptor_set();
    let file = set
        .file
        .iter()
        .find(|f| f.name() == "cstorvolume.proto")
        .unwrap();
    assert_eq!(file.service.len(), 1);
    let service = &file.service[0];
    assert_eq!(service.name(), "RunSnapCommand");
    let methods: Vec<(&str, &str, &str)> = service
        .method
        .iter()
        .map(|m| (m.name(), m.input_type(), m.output_type()))
        .collect();
    assert_eq!(
        methods,
        [
            (
                "RunVolumeSnapCreateCommand",
                ".v1alpha1.VolumeSnapCreateRequest",
                ".v1alpha1.VolumeSnapCreateResponse"
            ),
            (
                "RunVolumeSnapDeleteCommand",
                ".v1alpha1.VolumeSnapDeleteRequest",
                ".v1alpha1.VolumeSnapDeleteResponse"
            ),
        ]
    );
    let p = pool();
    for req in ["VolumeSnapCreateRequest", "VolumeSnapDeleteRequest"] {
        assert_eq!(
            fields(&p, &format!("v1alpha1.{req}")),
            ["1 version int32", "2 volume string", "3 snapname string"],
            "fields of v1alpha1.{req}"
        );
    }
    for resp in ["VolumeSnapCreateResponse", "VolumeSnapDeleteResponse"] {
        assert_eq!(
            fields(&p, &format!("v1alpha1.{resp}")),
            ["1 version int32", "2 status bytes"],
            "fields of v1alpha1.{resp}"
        );
    }
}

#[test]
fn snapshot_messages_encode_to_hand_computed_bytes() {
    let req = snap::VolumeSnapCreateRequest {
        version: 1,
        volume: "pvc-1".into(),
        snapname: "snap-1".into(),
    };
    let mut expected = vec![0x08, 0x01, 0x12, 0x05];
    expected.extend_from_slice(b"pvc-1");
    expected.extend_from_slice(&[0x1a, 0x06]);
    expected.extend_from_slice(b"snap-1");
    assert_eq!(req.encode_to_vec(), expected);

    // The delete request shares the layout: decode the same bytes.
    let del = snap::VolumeSnapDeleteRequest::decode(expected.as_slice()).unwrap();
    assert_eq!(
        (del.version, del.volume.as_str(), del.snapname.as_str()),
        (1, "pvc-1", "snap-1")
    );

    let status = br#"{"response":"OK SNAPCREATE"}"#;
    let resp = snap::VolumeSnapCreateResponse {
        version: 1,
        status: status.to_vec(),
    };
    let mut expected = vec![0x08, 0x01, 0x12, status.len() as u8];
    expected.extend_from_slice(status);
    assert_eq!(resp.encode_to_vec(), expected);
}

/// Runs `fut` under [`DEADLINE`], naming `what` on timeout.
async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, fut)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {DEADLINE:?}"))
}

struct TestIdentity;

#[tonic::async_trait]
impl csi::identity_server::Identity for TestIdentity {
    async fn get_plugin_info(
        &self,
        _request: Request<csi::GetPluginInfoRequest>,
    ) -> Result<Response<csi::GetPluginInfoResponse>, Status> {
        Ok(Response::new(csi::GetPluginInfoResponse {
            name: "cstor.csi.openebs.io".into(),
            vendor_version: "test-1".into(),
            manifest: [("engine".to_string(), "cstor".to_string())].into(),
        }))
    }

    async fn get_plugin_capabilities(
        &self,
        _request: Request<csi::GetPluginCapabilitiesRequest>,
    ) -> Result<Response<csi::GetPluginCapabilitiesResponse>, Status> {
        use csi::plugin_capability::{Service, Type, service};
        Ok(Response::new(csi::GetPluginCapabilitiesResponse {
            capabilities: vec![csi::PluginCapability {
                r#type: Some(Type::Service(Service {
                    r#type: service::Type::ControllerService as i32,
                })),
            }],
        }))
    }

    async fn probe(
        &self,
        _request: Request<csi::ProbeRequest>,
    ) -> Result<Response<csi::ProbeResponse>, Status> {
        Ok(Response::new(csi::ProbeResponse { ready: Some(true) }))
    }
}

#[tokio::test]
async fn csi_identity_round_trip_over_unix_socket() {
    let dir = tempfile::tempdir().expect("create tempdir for the CSI socket");
    let socket = dir.path().join("csi.sock");
    let listener = tokio::net::UnixListener::bind(&socket)
        .unwrap_or_else(|e| panic!("bind unix socket {}: {e}", socket.display()));
    let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(csi::identity_server::IdentityServer::new(TestIdentity))
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stop_rx.await;
            }),
    );

    // The listener is bound before the client dials, so the connection is queued.
    let endpoint = tonic::transport::Endpoint::try_from(format!("unix://{}", socket.display()))
        .expect("unix endpoint URI");
    let channel = within("connect over unix socket", endpoint.connect())
        .await
        .expect("connect to the Identity server over the unix socket");
    let mut client = csi::identity_client::IdentityClient::new(channel.clone());

    let info = within(
        "GetPluginInfo",
        client.get_plugin_info(csi::GetPluginInfoRequest {}),
    )
    .await
    .expect("GetPluginInfo")
    .into_inner();
    assert_eq!(info.name, "cstor.csi.openebs.io");
    assert_eq!(info.vendor_version, "test-1");
    assert_eq!(
        info.manifest.get("engine").map(String::as_str),
        Some("cstor")
    );

    let caps = within(
        "GetPluginCapabilities",
        client.get_plugin_capabilities(csi::GetPluginCapabilitiesRequest {}),
    )
    .await
    .expect("GetPluginCapabilities")
    .into_inner();
    assert_eq!(caps.capabilities.len(), 1);

    let probe = within("Probe", client.probe(csi::ProbeRequest {}))
        .await
        .expect("Probe")
        .into_inner();
    assert_eq!(probe.ready, Some(true));

    // A service that is not registered answers UNIMPLEMENTED, as the spec requires.
    let mut controller = csi::controller_client::ControllerClient::new(channel);
    let err = within(
        "ControllerGetCapabilities on an unregistered service",
        controller.controller_get_capabilities(csi::ControllerGetCapabilitiesRequest {}),
    )
    .await
    .expect_err("Controller service is not registered on this server");
    assert_eq!(err.code(), tonic::Code::Unimplemented);

    stop_tx.send(()).expect("server still running");
    within("server shutdown", server)
        .await
        .expect("server task joined")
        .expect("server exited cleanly");
}

#[derive(Default)]
struct TestTarget {
    seen: Arc<Mutex<Vec<String>>>,
}

fn status_json(reply: &str) -> Vec<u8> {
    serde_json::json!({ "response": reply })
        .to_string()
        .into_bytes()
}

#[tonic::async_trait]
impl snap::run_snap_command_server::RunSnapCommand for TestTarget {
    async fn run_volume_snap_create_command(
        &self,
        request: Request<snap::VolumeSnapCreateRequest>,
    ) -> Result<Response<snap::VolumeSnapCreateResponse>, Status> {
        let r = request.into_inner();
        self.seen
            .lock()
            .unwrap()
            .push(format!("create v{} {}@{}", r.version, r.volume, r.snapname));
        Ok(Response::new(snap::VolumeSnapCreateResponse {
            version: r.version,
            status: status_json("OK SNAPCREATE"),
        }))
    }

    async fn run_volume_snap_delete_command(
        &self,
        request: Request<snap::VolumeSnapDeleteRequest>,
    ) -> Result<Response<snap::VolumeSnapDeleteResponse>, Status> {
        let r = request.into_inner();
        self.seen
            .lock()
            .unwrap()
            .push(format!("delete v{} {}@{}", r.version, r.volume, r.snapname));
        Ok(Response::new(snap::VolumeSnapDeleteResponse {
            version: r.version,
            status: status_json("ERR volume is not healthy"),
        }))
    }
}

#[tokio::test]
async fn snapshot_service_round_trip_over_tcp() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().unwrap();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let target = TestTarget::default();
    let seen = Arc::clone(&target.seen);

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(snap::run_snap_command_server::RunSnapCommandServer::new(
                target,
            ))
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stop_rx.await;
            }),
    );

    let channel = within(
        "connect to the snapshot service",
        tonic::transport::Endpoint::try_from(format!("http://{addr}"))
            .unwrap()
            .connect(),
    )
    .await
    .expect("connect to the snapshot service over 127.0.0.1");

    let mut client = snap::run_snap_command_client::RunSnapCommandClient::new(channel.clone());
    let created = within(
        "RunVolumeSnapCreateCommand",
        client.run_volume_snap_create_command(snap::VolumeSnapCreateRequest {
            version: 1,
            volume: "pvc-1".into(),
            snapname: "snap-1".into(),
        }),
    )
    .await
    .expect("RunVolumeSnapCreateCommand")
    .into_inner();
    assert_eq!(created.version, 1);
    let status: serde_json::Value = serde_json::from_slice(&created.status).unwrap();
    assert_eq!(status["response"], "OK SNAPCREATE");

    // Call by the raw method path an upstream Go client uses, proving the route matches.
    let mut raw = tonic::client::Grpc::new(channel);
    within("raw channel ready", raw.ready())
        .await
        .expect("channel ready");
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(
        "/v1alpha1.RunSnapCommand/RunVolumeSnapDeleteCommand",
    );
    let deleted: snap::VolumeSnapDeleteResponse = within(
        "raw RunVolumeSnapDeleteCommand",
        raw.unary(
            Request::new(snap::VolumeSnapDeleteRequest {
                version: 1,
                volume: "pvc-1".into(),
                snapname: "snap-1".into(),
            }),
            path,
            tonic_prost::ProstCodec::default(),
        ),
    )
    .await
    .expect("RunVolumeSnapDeleteCommand by raw path")
    .into_inner();
    let status: serde_json::Value = serde_json::from_slice(&deleted.status).unwrap();
    assert_eq!(status["response"], "ERR volume is not healthy");

    assert_eq!(
        *seen.lock().unwrap(),
        ["create v1 pvc-1@snap-1", "delete v1 pvc-1@snap-1"]
    );

    stop_tx.send(()).expect("server still running");
    within("server shutdown", server)
        .await
        .expect("server task joined")
        .expect("server exited cleanly");
}
