//! CSI conformance of the Identity and Controller services, driven over the real unix socket
//! with a tonic client: the spec's rules for every RPC this service implements (required
//! fields, error codes, idempotency, pagination, advertised capabilities).

mod common;

use common::*;
use cstor_api::proto::csi::v1::{
    CapacityRange, ControllerExpandVolumeRequest, ControllerGetCapabilitiesRequest,
    ControllerGetVolumeRequest, ControllerModifyVolumeRequest, ControllerPublishVolumeRequest,
    ControllerUnpublishVolumeRequest, CreateSnapshotRequest, DeleteSnapshotRequest,
    DeleteVolumeRequest, GetCapacityRequest, GetPluginCapabilitiesRequest, GetPluginInfoRequest,
    GetSnapshotRequest, ListSnapshotsRequest, ListVolumesRequest, ProbeRequest,
    ValidateVolumeCapabilitiesRequest,
    controller_service_capability::{Type as CapType, rpc::Type as Rpc},
    plugin_capability::{self, service, volume_expansion},
};
use tonic::Code;

#[tokio::test]
async fn identity_follows_the_spec() {
    let mut h = Harness::start().await;
    let info = h
        .identity
        .get_plugin_info(GetPluginInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.name, "cstor.csi.openebs.io");
    let re_ok = info.name.len() <= 63
        && info.name.starts_with(|c: char| c.is_ascii_alphabetic())
        && info
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c));
    assert!(re_ok, "driver name must match the spec's pattern");
    assert!(!info.vendor_version.is_empty());
    let caps = h
        .identity
        .get_plugin_capabilities(GetPluginCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner()
        .capabilities;
    let services: Vec<i32> = caps
        .iter()
        .filter_map(|c| match &c.r#type {
            Some(plugin_capability::Type::Service(s)) => Some(s.r#type),
            _ => None,
        })
        .collect();
    assert_eq!(
        services,
        vec![
            service::Type::ControllerService as i32,
            service::Type::VolumeAccessibilityConstraints as i32
        ]
    );
    assert!(caps.iter().any(|c| matches!(&c.r#type, Some(plugin_capability::Type::VolumeExpansion(e)) if e.r#type == volume_expansion::Type::Online as i32)));
    let probe = h
        .identity
        .probe(ProbeRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(probe.ready, Some(true));
    h.cleanup().await;
}

#[tokio::test]
async fn advertised_capabilities_are_exactly_the_implemented_rpcs() {
    let mut h = Harness::start().await;
    let caps = h
        .controller
        .controller_get_capabilities(ControllerGetCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner();
    let mut got: Vec<Rpc> = caps
        .capabilities
        .iter()
        .map(|c| match &c.r#type {
            Some(CapType::Rpc(r)) => Rpc::try_from(r.r#type).unwrap(),
            None => panic!("capability without type"),
        })
        .collect();
    got.sort();
    let mut want = vec![
        Rpc::CreateDeleteVolume,
        Rpc::ListVolumes,
        Rpc::GetCapacity,
        Rpc::CreateDeleteSnapshot,
        Rpc::ListSnapshots,
        Rpc::CloneVolume,
        Rpc::ExpandVolume,
        Rpc::VolumeCondition,
        Rpc::GetVolume,
        Rpc::SingleNodeMultiWriter,
        Rpc::GetSnapshot,
    ];
    want.sort();
    assert_eq!(got, want);
    // every advertised RPC answers (no UNIMPLEMENTED), the others are UNIMPLEMENTED
    let c = &mut h.controller;
    assert!(c.list_volumes(ListVolumesRequest::default()).await.is_ok());
    assert!(c.get_capacity(GetCapacityRequest::default()).await.is_ok());
    assert!(
        c.list_snapshots(ListSnapshotsRequest::default())
            .await
            .is_ok()
    );
    assert_eq!(
        c.get_snapshot(GetSnapshotRequest {
            snapshot_id: "v@s".into(),
            ..Default::default()
        })
        .await
        .unwrap_err()
        .code(),
        Code::NotFound
    );
    assert_eq!(
        c.controller_publish_volume(ControllerPublishVolumeRequest::default())
            .await
            .unwrap_err()
            .code(),
        Code::Unimplemented
    );
    assert_eq!(
        c.controller_unpublish_volume(ControllerUnpublishVolumeRequest::default())
            .await
            .unwrap_err()
            .code(),
        Code::Unimplemented
    );
    assert_eq!(
        c.controller_modify_volume(ControllerModifyVolumeRequest::default())
            .await
            .unwrap_err()
            .code(),
        Code::Unimplemented
    );
    h.cleanup().await;
}

#[tokio::test]
async fn required_fields_are_enforced_with_invalid_argument() {
    let mut h = Harness::start().await;
    let c = &mut h.controller;
    let mut no_name = create_req("", GIB);
    no_name.name.clear();
    assert_eq!(
        c.create_volume(no_name).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let mut no_caps = create_req(&pv_name(), GIB);
    no_caps.volume_capabilities.clear();
    assert_eq!(
        c.create_volume(no_caps).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    assert_eq!(
        c.delete_volume(DeleteVolumeRequest::default())
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    assert_eq!(
        c.validate_volume_capabilities(ValidateVolumeCapabilitiesRequest::default())
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    let no_caps = ValidateVolumeCapabilitiesRequest {
        volume_id: pv_name(),
        ..Default::default()
    };
    assert_eq!(
        c.validate_volume_capabilities(no_caps)
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    assert_eq!(
        c.controller_get_volume(ControllerGetVolumeRequest::default())
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    assert_eq!(
        c.controller_expand_volume(ControllerExpandVolumeRequest::default())
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    let no_range = ControllerExpandVolumeRequest {
        volume_id: pv_name(),
        ..Default::default()
    };
    assert_eq!(
        c.controller_expand_volume(no_range)
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    assert_eq!(
        c.create_snapshot(CreateSnapshotRequest::default())
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    let no_src = CreateSnapshotRequest {
        name: "s".into(),
        ..Default::default()
    };
    assert_eq!(
        c.create_snapshot(no_src).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    assert_eq!(
        c.delete_snapshot(DeleteSnapshotRequest::default())
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    assert_eq!(
        c.get_snapshot(GetSnapshotRequest::default())
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    h.cleanup().await;
}

#[tokio::test]
async fn not_found_and_idempotent_deletes_follow_the_spec() {
    let mut h = Harness::start().await;
    let c = &mut h.controller;
    let ghost = pv_name();
    c.delete_volume(DeleteVolumeRequest {
        volume_id: ghost.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    c.delete_snapshot(DeleteSnapshotRequest {
        snapshot_id: format!("{ghost}@s"),
        ..Default::default()
    })
    .await
    .unwrap();
    let vvc = ValidateVolumeCapabilitiesRequest {
        volume_id: ghost.clone(),
        volume_capabilities: vec![mount_cap("ext4")],
        ..Default::default()
    };
    assert_eq!(
        c.validate_volume_capabilities(vvc)
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    assert_eq!(
        c.controller_get_volume(ControllerGetVolumeRequest {
            volume_id: ghost.clone()
        })
        .await
        .unwrap_err()
        .code(),
        Code::NotFound
    );
    let expand = ControllerExpandVolumeRequest {
        volume_id: ghost.clone(),
        capacity_range: Some(CapacityRange {
            required_bytes: GIB,
            limit_bytes: 0,
        }),
        ..Default::default()
    };
    assert_eq!(
        c.controller_expand_volume(expand).await.unwrap_err().code(),
        Code::NotFound
    );
    let snap = CreateSnapshotRequest {
        source_volume_id: ghost.clone(),
        name: "s".into(),
        ..Default::default()
    };
    assert_eq!(
        c.create_snapshot(snap).await.unwrap_err().code(),
        Code::NotFound
    );
    let listed = c
        .list_snapshots(ListSnapshotsRequest {
            snapshot_id: format!("{ghost}@s"),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        listed.into_inner().entries.is_empty(),
        "ListSnapshots of an unknown id is empty, not an error"
    );
    h.cleanup().await;
}

#[tokio::test]
async fn full_volume_lifecycle_over_the_socket() {
    let mut h = Harness::start().await;
    let name = pv_name();
    let vol = h
        .controller
        .create_volume(create_req(&name, 2 * GIB))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(vol.volume_id, name);
    assert!(vol.capacity_bytes >= 2 * GIB, "capacity covers the request");
    h.bind_volume(&name, Some("Healthy"), "2Gi").await;

    let got = h
        .controller
        .controller_get_volume(ControllerGetVolumeRequest {
            volume_id: name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.volume.unwrap().volume_id, name);
    assert!(!got.status.unwrap().volume_condition.unwrap().abnormal);

    let listed = h
        .controller
        .list_volumes(ListVolumesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(
        listed
            .entries
            .iter()
            .any(|e| e.volume.as_ref().unwrap().volume_id == name)
    );

    let vvc = ValidateVolumeCapabilitiesRequest {
        volume_id: name.clone(),
        volume_capabilities: vec![mount_cap("ext4")],
        ..Default::default()
    };
    assert!(
        h.controller
            .validate_volume_capabilities(vvc)
            .await
            .unwrap()
            .into_inner()
            .confirmed
            .is_some()
    );

    let expand = ControllerExpandVolumeRequest {
        volume_id: name.clone(),
        capacity_range: Some(CapacityRange {
            required_bytes: 4 * GIB,
            limit_bytes: 0,
        }),
        volume_capability: Some(mount_cap("ext4")),
        ..Default::default()
    };
    let r = h
        .controller
        .controller_expand_volume(expand.clone())
        .await
        .unwrap()
        .into_inner();
    assert!(r.capacity_bytes >= 4 * GIB && r.node_expansion_required);
    assert_eq!(
        h.controller
            .controller_expand_volume(expand)
            .await
            .unwrap()
            .into_inner()
            .capacity_bytes,
        r.capacity_bytes
    );

    let snap_req = CreateSnapshotRequest {
        source_volume_id: name.clone(),
        name: "snapshot-a".into(),
        ..Default::default()
    };
    let snap = h
        .controller
        .create_snapshot(snap_req.clone())
        .await
        .unwrap()
        .into_inner()
        .snapshot
        .unwrap();
    assert!(snap.ready_to_use && snap.creation_time.is_some() && snap.source_volume_id == name);
    assert_eq!(
        h.controller
            .create_snapshot(snap_req)
            .await
            .unwrap()
            .into_inner()
            .snapshot
            .unwrap(),
        snap
    );
    let got = h
        .controller
        .get_snapshot(GetSnapshotRequest {
            snapshot_id: snap.snapshot_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(got.into_inner().snapshot.unwrap(), snap);
    let by_id = h
        .controller
        .list_snapshots(ListSnapshotsRequest {
            snapshot_id: snap.snapshot_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_id.into_inner().entries.len(), 1);

    let del_snap = DeleteSnapshotRequest {
        snapshot_id: snap.snapshot_id.clone(),
        ..Default::default()
    };
    h.controller
        .delete_snapshot(del_snap.clone())
        .await
        .unwrap();
    h.controller.delete_snapshot(del_snap).await.unwrap();
    let del = DeleteVolumeRequest {
        volume_id: name.clone(),
        ..Default::default()
    };
    h.controller.delete_volume(del.clone()).await.unwrap();
    h.controller.delete_volume(del).await.unwrap();
    h.cleanup().await;
}

#[tokio::test]
async fn list_volumes_tokens_and_limits_follow_the_spec() {
    let mut h = Harness::start().await;
    for _ in 0..3 {
        h.controller
            .create_volume(create_req(&pv_name(), GIB))
            .await
            .unwrap();
    }
    let first = h
        .controller
        .list_volumes(ListVolumesRequest {
            max_entries: 2,
            starting_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.entries.len(), 2);
    assert!(
        !first.next_token.is_empty(),
        "more entries: a token is returned"
    );
    // a volume deleted between pages does not break the token
    let gone = first.entries[1].volume.as_ref().unwrap().volume_id.clone();
    h.controller
        .delete_volume(DeleteVolumeRequest {
            volume_id: gone,
            ..Default::default()
        })
        .await
        .unwrap();
    let rest = h
        .controller
        .list_volumes(ListVolumesRequest {
            max_entries: 2,
            starting_token: first.next_token,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.entries.len(), 1);
    assert!(rest.next_token.is_empty());
    let e = h
        .controller
        .list_volumes(ListVolumesRequest {
            max_entries: 0,
            starting_token: "invalid-token".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Aborted);
    h.cleanup().await;
}
