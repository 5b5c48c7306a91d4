//! Snapshots, restores and clones: the gRPC path to an in-test `RunSnapCommand` server on
//! 127.0.0.1 (the CStorVolume's targetIP) and the records ListSnapshots answers from.

mod common;

use common::*;
use cstor_api::{
    cstor::{CStorSnapshotRecord, CStorVolumeConfig},
    proto::csi::v1::{
        CreateSnapshotRequest, CreateVolumeRequest, DeleteSnapshotRequest, DeleteVolumeRequest,
        GetSnapshotRequest, ListSnapshotsRequest, VolumeContentSource,
        volume_content_source::{SnapshotSource, Type, VolumeSource},
    },
};
use kube::api::{DeleteParams, ListParams};
use tonic::Code;

fn snap_req(source: &str, name: &str) -> CreateSnapshotRequest {
    CreateSnapshotRequest {
        source_volume_id: source.into(),
        name: name.into(),
        ..Default::default()
    }
}

fn del_snap(id: &str) -> DeleteSnapshotRequest {
    DeleteSnapshotRequest {
        snapshot_id: id.into(),
        ..Default::default()
    }
}

fn list(id: &str, source: &str, max: i32, token: &str) -> ListSnapshotsRequest {
    ListSnapshotsRequest {
        max_entries: max,
        starting_token: token.into(),
        source_volume_id: source.into(),
        snapshot_id: id.into(),
        ..Default::default()
    }
}

fn from_snapshot(name: &str, bytes: i64, id: &str) -> CreateVolumeRequest {
    let mut r = create_req(name, bytes);
    r.volume_content_source = Some(VolumeContentSource {
        r#type: Some(Type::Snapshot(SnapshotSource {
            snapshot_id: id.into(),
        })),
    });
    r
}

fn from_volume(name: &str, bytes: i64, source: &str) -> CreateVolumeRequest {
    let mut r = create_req(name, bytes);
    r.volume_content_source = Some(VolumeContentSource {
        r#type: Some(Type::Volume(VolumeSource {
            volume_id: source.into(),
        })),
    });
    r
}

/// The snapshot record objects of volume `pv`.
async fn records_of(h: &Harness, pv: &str) -> Vec<CStorSnapshotRecord> {
    h.api::<CStorSnapshotRecord>()
        .list(&ListParams::default().labels(&format!("openebs.io/persistent-volume={pv}")))
        .await
        .unwrap()
        .items
}

async fn cvc(h: &Harness, name: &str) -> Option<CStorVolumeConfig> {
    h.api::<CStorVolumeConfig>().get_opt(name).await.unwrap()
}

async fn bound_volume(h: &mut Harness, gib: i64) -> String {
    let name = pv_name();
    h.controller
        .create_volume(create_req(&name, gib * GIB))
        .await
        .unwrap();
    h.bind_volume(&name, Some("Healthy"), &format!("{gib}Gi"))
        .await;
    name
}

#[tokio::test]
async fn create_snapshot_goes_through_the_target_and_is_idempotent() {
    let mut h = Harness::start().await;
    let pv = bound_volume(&mut h, 5).await;
    let snap = h
        .controller
        .create_snapshot(snap_req(&pv, "snapshot-1"))
        .await
        .unwrap()
        .into_inner()
        .snapshot
        .unwrap();
    assert_eq!(snap.snapshot_id, format!("{pv}@snapshot-1"));
    assert_eq!(snap.source_volume_id, pv);
    assert_eq!(snap.size_bytes, 5 * GIB, "restore size = the source's size");
    assert!(snap.ready_to_use && snap.creation_time.is_some());
    assert_eq!(
        h.target.calls(),
        vec![SnapCall::Create(pv.clone(), "snapshot-1".into())]
    );
    assert!(h.target.has(&snap.snapshot_id));
    let recs = records_of(&h, &pv).await;
    assert_eq!(recs.len(), 1, "one record object per snapshot");
    assert_eq!(recs[0].spec.snapshot, "snapshot-1");
    assert!(recs[0].spec.ready);
    assert_eq!(recs[0].spec.size_bytes, 5 * GIB);
    assert!(
        !cvc(&h, &pv)
            .await
            .unwrap()
            .metadata
            .annotations
            .unwrap_or_default()
            .contains_key("cstor.openebs.io/snapshots"),
        "the CVC is not rewritten per snapshot"
    );

    let again = h
        .controller
        .create_snapshot(snap_req(&pv, "snapshot-1"))
        .await
        .unwrap()
        .into_inner()
        .snapshot
        .unwrap();
    assert_eq!(again, snap, "same name, same source: the same snapshot");
    assert_eq!(h.target.calls().len(), 1, "the target is not asked twice");

    let other = bound_volume(&mut h, 1).await;
    let e = h
        .controller
        .create_snapshot(snap_req(&other, "snapshot-1"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");
    assert!(e.message().contains(&pv));

    // a name a replica reports for another volume (taken by upstream's driver) is taken too
    h.replica(&other, "pool-x", &["legacy-snap"]).await;
    assert_eq!(
        h.controller
            .create_snapshot(snap_req(&pv, "legacy-snap"))
            .await
            .unwrap_err()
            .code(),
        Code::AlreadyExists
    );
    h.cleanup().await;
}

#[tokio::test]
async fn create_snapshot_errors() {
    let mut h = Harness::start().await;
    let pv = bound_volume(&mut h, 1).await;
    for (req, code, text) in [
        (snap_req(&pv, ""), Code::InvalidArgument, "name"),
        (snap_req("", "s"), Code::InvalidArgument, "source_volume_id"),
        // (names with spaces or the clone prefix get derived names: tests/edges.rs)
        (
            snap_req(&pv, &"s".repeat(200)),
            Code::InvalidArgument,
            "200 characters",
        ),
        (snap_req(&pv_name(), "s"), Code::NotFound, "not found"),
    ] {
        let e = h.controller.create_snapshot(req).await.unwrap_err();
        assert_eq!(e.code(), code, "{e:?}");
        assert!(e.message().contains(text), "{text}: {}", e.message());
    }
    // not provisioned yet: no target to ask, nothing recorded
    let pending = pv_name();
    h.controller
        .create_volume(create_req(&pending, GIB))
        .await
        .unwrap();
    let e = h
        .controller
        .create_snapshot(snap_req(&pending, "s1"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert!(records_of(&h, &pending).await.is_empty());
    // the target refuses (volume not healthy): an error, and the snapshot is not listed
    *h.target.refuse.lock().unwrap() = true;
    let e = h
        .controller
        .create_snapshot(snap_req(&pv, "s2"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Internal);
    assert!(
        e.message().contains("ERR failed SNAPCREATE"),
        "{}",
        e.message()
    );
    let listed = h
        .controller
        .list_snapshots(list("", &pv, 0, ""))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.entries.is_empty());
    // once healthy, the retry completes the pending snapshot
    *h.target.refuse.lock().unwrap() = false;
    h.controller
        .create_snapshot(snap_req(&pv, "s2"))
        .await
        .unwrap();
    assert!(h.target.has(&format!("{pv}@s2")));
    h.cleanup().await;
}

#[tokio::test]
async fn the_target_port_is_unreachable_is_unavailable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = listener.local_addr().unwrap().port();
    drop(listener);
    let mut h = Harness::start_with(|c| c.snapshot_port = closed).await;
    let pv = bound_volume(&mut h, 1).await;
    let e = h
        .controller
        .create_snapshot(snap_req(&pv, "s1"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert!(
        e.message().contains(&format!("127.0.0.1:{closed}")),
        "{}",
        e.message()
    );
    h.cleanup().await;
}

#[tokio::test]
async fn list_snapshots_by_id_by_source_and_paginated() {
    let mut h = Harness::start().await;
    let a = bound_volume(&mut h, 1).await;
    let b = bound_volume(&mut h, 2).await;
    for (pv, s) in [(&a, "s1"), (&a, "s2"), (&b, "s3")] {
        h.controller.create_snapshot(snap_req(pv, s)).await.unwrap();
    }
    // upstream-created snapshot known only from the replicas; internal clone snapshots hidden
    h.replica(&b, "pool-1", &["s3", "legacy", "cstor-clone-pvc-x"])
        .await;

    let ids = |r: cstor_api::proto::csi::v1::ListSnapshotsResponse| -> Vec<String> {
        r.entries
            .into_iter()
            .map(|e| e.snapshot.unwrap().snapshot_id)
            .collect()
    };
    let mut want = vec![
        format!("{a}@s1"),
        format!("{a}@s2"),
        format!("{b}@legacy"),
        format!("{b}@s3"),
    ];
    want.sort();
    assert_eq!(
        ids(h
            .controller
            .list_snapshots(list("", "", 0, ""))
            .await
            .unwrap()
            .into_inner()),
        want
    );
    assert_eq!(
        ids(h
            .controller
            .list_snapshots(list("", &a, 0, ""))
            .await
            .unwrap()
            .into_inner()),
        vec![format!("{a}@s1"), format!("{a}@s2")]
    );
    assert_eq!(
        ids(h
            .controller
            .list_snapshots(list(&format!("{b}@legacy"), "", 0, ""))
            .await
            .unwrap()
            .into_inner()),
        vec![format!("{b}@legacy")]
    );
    assert!(
        ids(h
            .controller
            .list_snapshots(list(&format!("{b}@nope"), "", 0, ""))
            .await
            .unwrap()
            .into_inner())
        .is_empty()
    );
    assert!(
        ids(h
            .controller
            .list_snapshots(list(&format!("{a}@s1"), &b, 0, ""))
            .await
            .unwrap()
            .into_inner())
        .is_empty()
    );
    assert!(
        ids(h
            .controller
            .list_snapshots(list("garbage", "", 0, ""))
            .await
            .unwrap()
            .into_inner())
        .is_empty()
    );
    assert!(
        ids(h
            .controller
            .list_snapshots(list("", &pv_name(), 0, ""))
            .await
            .unwrap()
            .into_inner())
        .is_empty()
    );

    let mut got = Vec::new();
    let mut token = String::new();
    loop {
        let r = h
            .controller
            .list_snapshots(list("", "", 3, &token))
            .await
            .unwrap()
            .into_inner();
        assert!(r.entries.len() <= 3);
        token = r.next_token.clone();
        got.extend(ids(r));
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(got, want);
    assert_eq!(
        h.controller
            .list_snapshots(list("", "", 1, "xyz"))
            .await
            .unwrap_err()
            .code(),
        Code::Aborted
    );
    assert_eq!(
        h.controller
            .list_snapshots(list("", "", -2, ""))
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );

    let got = h
        .controller
        .get_snapshot(GetSnapshotRequest {
            snapshot_id: format!("{a}@s2"),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(got.into_inner().snapshot.unwrap().size_bytes, GIB);
    let e = h
        .controller
        .get_snapshot(GetSnapshotRequest {
            snapshot_id: format!("{a}@zz"),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    h.cleanup().await;
}

#[tokio::test]
async fn delete_snapshot_is_idempotent_and_refuses_snapshots_in_use() {
    let mut h = Harness::start().await;
    let pv = bound_volume(&mut h, 1).await;
    let id = format!("{pv}@s1");
    h.controller
        .create_snapshot(snap_req(&pv, "s1"))
        .await
        .unwrap();
    let restored = pv_name();
    h.controller
        .create_volume(from_snapshot(&restored, GIB, &id))
        .await
        .unwrap();
    let e = h
        .controller
        .delete_snapshot(del_snap(&id))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains(&restored), "{}", e.message());
    assert!(h.target.has(&id));

    let patch = serde_json::json!({"metadata": {"finalizers": null}});
    h.api::<CStorVolumeConfig>()
        .patch(
            &restored,
            &Default::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .unwrap();
    h.api::<CStorVolumeConfig>()
        .delete(&restored, &DeleteParams::default())
        .await
        .unwrap();
    h.controller.delete_snapshot(del_snap(&id)).await.unwrap();
    assert!(!h.target.has(&id));
    assert!(
        h.target
            .calls()
            .contains(&SnapCall::Delete(pv.clone(), "s1".into()))
    );
    assert!(
        h.controller
            .list_snapshots(list(&id, "", 0, ""))
            .await
            .unwrap()
            .into_inner()
            .entries
            .is_empty()
    );
    h.controller.delete_snapshot(del_snap(&id)).await.unwrap();
    h.controller
        .delete_snapshot(del_snap("no-at-sign"))
        .await
        .unwrap();
    h.controller
        .delete_snapshot(del_snap(&format!("{}@s1", pv_name())))
        .await
        .unwrap();
    assert_eq!(
        h.controller
            .delete_snapshot(del_snap(""))
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    h.cleanup().await;
}

#[tokio::test]
async fn restore_from_snapshot_writes_the_source_and_checks_sizes() {
    let mut h = Harness::start().await;
    let src = bound_volume(&mut h, 2).await;
    h.controller
        .create_snapshot(snap_req(&src, "s1"))
        .await
        .unwrap();
    let id = format!("{src}@s1");
    let name = pv_name();
    let vol = h
        .controller
        .create_volume(from_snapshot(&name, 2 * GIB, &id))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert!(
        matches!(vol.content_source.unwrap().r#type, Some(Type::Snapshot(s)) if s.snapshot_id == id)
    );
    let c = cvc(&h, &name).await.unwrap();
    assert_eq!(c.spec.cstor_volume_source.as_deref(), Some(id.as_str()));
    assert_eq!(c.metadata.labels.unwrap()["openebs.io/source-volume"], src);
    h.controller
        .create_volume(from_snapshot(&name, 2 * GIB, &id))
        .await
        .unwrap();
    let e = h
        .controller
        .create_volume(create_req(&name, 2 * GIB))
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Code::AlreadyExists,
        "same name without the source is another volume"
    );

    // a snapshot taken by upstream's driver, known from the replicas only
    h.replica(&src, "pool-1", &["legacy"]).await;
    h.controller
        .create_volume(from_snapshot(&pv_name(), 2 * GIB, &format!("{src}@legacy")))
        .await
        .unwrap();

    for (req, code, text) in [
        (
            from_snapshot(&pv_name(), GIB, &id),
            Code::OutOfRange,
            "at least as large",
        ),
        (
            from_snapshot(&pv_name(), 2 * GIB, &format!("{src}@nope")),
            Code::NotFound,
            "not found",
        ),
        (
            from_snapshot(&pv_name(), 2 * GIB, &format!("{}@s1", pv_name())),
            Code::NotFound,
            "not found",
        ),
        (
            from_snapshot(&pv_name(), 2 * GIB, "no-at"),
            Code::NotFound,
            "<volume>@<snapshot>",
        ),
        (
            from_snapshot(&pv_name(), 2 * GIB, ""),
            Code::InvalidArgument,
            "snapshot_id is empty",
        ),
        (
            {
                let mut r = from_snapshot(&pv_name(), 2 * GIB, &id);
                r.parameters = params(CSPC, "3");
                r
            },
            Code::InvalidArgument,
            "replicaCount 3",
        ),
        (
            {
                let mut r = from_snapshot(&pv_name(), 2 * GIB, &id);
                r.parameters = params("elsewhere", "1");
                r
            },
            Code::InvalidArgument,
            "cStorPoolCluster",
        ),
    ] {
        let name = req.name.clone();
        let e = h.controller.create_volume(req).await.unwrap_err();
        assert_eq!(e.code(), code, "{e:?}");
        assert!(e.message().contains(text), "{text}: {}", e.message());
        assert!(cvc(&h, &name).await.is_none());
    }

    let e = h
        .controller
        .delete_volume(DeleteVolumeRequest {
            volume_id: src.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(
        e.message().contains(&name) && e.message().contains("snapshot s1"),
        "{}",
        e.message()
    );
    h.cleanup().await;
}

#[tokio::test]
async fn clone_snapshots_the_source_and_cleans_up_after_the_clone() {
    let mut h = Harness::start().await;
    let src = bound_volume(&mut h, 3).await;
    let clone = pv_name();
    let internal = format!("{src}@cstor-clone-{clone}");
    let vol = h
        .controller
        .create_volume(from_volume(&clone, 3 * GIB, &src))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert!(
        matches!(vol.content_source.unwrap().r#type, Some(Type::Volume(v)) if v.volume_id == src)
    );
    assert_eq!(
        h.target.calls(),
        vec![SnapCall::Create(
            src.clone(),
            format!("cstor-clone-{clone}")
        )]
    );
    let c = cvc(&h, &clone).await.unwrap();
    assert_eq!(
        c.spec.cstor_volume_source.as_deref(),
        Some(internal.as_str())
    );
    assert_eq!(c.metadata.labels.unwrap()["openebs.io/source-volume"], src);

    h.controller
        .create_volume(from_volume(&clone, 3 * GIB, &src))
        .await
        .unwrap();
    assert_eq!(
        h.target.calls().len(),
        1,
        "a repeated clone call does not snapshot again"
    );
    let listed = h
        .controller
        .list_snapshots(list("", &src, 0, ""))
        .await
        .unwrap()
        .into_inner();
    assert!(
        listed.entries.is_empty(),
        "internal snapshots are not CSI snapshots: {listed:?}"
    );

    let e = h
        .controller
        .delete_volume(DeleteVolumeRequest {
            volume_id: src.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("a clone"), "{}", e.message());

    // the clone is deleted; its replica still exists (ZFS keeps the origin snapshot)
    h.replica(&clone, "pool-1", &[]).await;
    h.controller
        .delete_volume(DeleteVolumeRequest {
            volume_id: clone.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        h.target.has(&internal),
        "kept while the clone's replica exists"
    );
    assert_eq!(h.svc.sweep_clone_snapshots(None).await.unwrap(), 0);
    // the pool manager destroyed the clone's zvol
    h.api::<cstor_api::cstor::CStorVolumeReplica>()
        .delete(
            &cstor_api::naming::cvr_name(&clone, "pool-1"),
            &DeleteParams::default(),
        )
        .await
        .unwrap();
    assert_eq!(h.svc.sweep_clone_snapshots(None).await.unwrap(), 1);
    assert!(!h.target.has(&internal));
    assert!(
        !records_of(&h, &src)
            .await
            .iter()
            .any(|r| r.spec.clone_for.is_some()),
        "the clone's snapshot record is gone"
    );

    // without a replica left the clean-up happens in DeleteVolume itself
    let clone2 = pv_name();
    h.controller
        .create_volume(from_volume(&clone2, 3 * GIB, &src))
        .await
        .unwrap();
    let internal2 = format!("{src}@cstor-clone-{clone2}");
    assert!(h.target.has(&internal2));
    h.controller
        .delete_volume(DeleteVolumeRequest {
            volume_id: clone2.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!h.target.has(&internal2));
    h.cleanup().await;
}

#[tokio::test]
async fn clone_errors() {
    let mut h = Harness::start().await;
    let src = bound_volume(&mut h, 2).await;
    let unbound = pv_name();
    h.controller
        .create_volume(create_req(&unbound, GIB))
        .await
        .unwrap();
    for (req, code, text) in [
        (
            from_volume(&pv_name(), 2 * GIB, &pv_name()),
            Code::NotFound,
            "not found",
        ),
        (
            from_volume(&pv_name(), 2 * GIB, "Bad Name"),
            Code::NotFound,
            "not found",
        ),
        (
            from_volume(&pv_name(), 2 * GIB, ""),
            Code::InvalidArgument,
            "volume_id is empty",
        ),
        (
            from_volume(&pv_name(), GIB, &src),
            Code::OutOfRange,
            "at least as large",
        ),
        (
            from_volume(&pv_name(), GIB, &unbound),
            Code::Unavailable,
            "not provisioned yet",
        ),
    ] {
        let name = req.name.clone();
        let e = h.controller.create_volume(req).await.unwrap_err();
        assert_eq!(e.code(), code, "{e:?}");
        assert!(e.message().contains(text), "{text}: {}", e.message());
        assert!(cvc(&h, &name).await.is_none());
    }
    let selfie = pv_name();
    let e = h
        .controller
        .create_volume(from_volume(&selfie, GIB, &selfie))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(records_of(&h, &unbound).await.is_empty());
    assert!(h.target.calls().is_empty());
    h.cleanup().await;
}
