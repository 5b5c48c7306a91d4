//! The volume lifecycle story of issue 7: apply a CSPC → pools online; CSI CreateVolume → CVC
//! Bound → NodeStage/NodePublish (a recorded iscsiadm attaches a loop device) → write →
//! ControllerExpandVolume + NodeExpandVolume → CreateSnapshot → restore into a new volume and
//! read the same data → scale replicas 1→3 → DeleteVolume → DeleteSnapshot → delete the CSPC →
//! nothing left in the API or on disk. See the crate docs for what is real and what is stood in.

use std::time::{Duration, Instant};

use cstor_api::{
    constants::label,
    cstor::{
        CStorPoolCluster, CStorPoolInstance, CStorPoolInstancePhase, CStorVolume,
        CStorVolumeAttachment, CStorVolumeConfig, CStorVolumePhase, CStorVolumeReplica,
        CStorVolumeReplicaPhase,
    },
    ndm::BlockDeviceClaim,
    proto::csi::v1::{
        ControllerExpandVolumeRequest, CreateSnapshotRequest, CreateVolumeRequest,
        DeleteSnapshotRequest, DeleteVolumeRequest, NodeExpandVolumeRequest, VolumeContentSource,
        volume_content_source::{SnapshotSource, Type as SourceType},
    },
};
use cstor_e2e::{DEADLINE, Harness, scenario::*};
use cstor_testkit::wait_until;
use k8s_openapi::api::{apps::v1::Deployment, core::v1::Service, policy::v1::PodDisruptionBudget};
use kube::{
    Api, ResourceExt,
    api::{ListParams, Patch, PatchParams},
};

async fn story(h: &Harness) {
    let t0 = Instant::now();
    let mut ctl = h.controller.clone();
    let mut node = h.node.clone();
    let cspis: Api<CStorPoolInstance> = h.api();
    let cvcs: Api<CStorVolumeConfig> = h.api();
    let cvs: Api<CStorVolume> = h.api();
    let cvrs: Api<CStorVolumeReplica> = h.api();

    // 1. CSPC → one pool per node, ONLINE, on zfs-fuse.
    h.create_cspc(CSPC).await;
    let by_cspc = ListParams::default().labels(&format!("{}={CSPC}", label::CSTOR_POOL_CLUSTER));
    let pools = wait("3 CSPIs ONLINE", || async {
        let l = cspis.list(&by_cspc).await.ok()?;
        let online = l.items.len() == h.nodes.len()
            && l.items.iter().all(|c| {
                c.status.as_ref().and_then(|s| s.phase.clone())
                    == Some(CStorPoolInstancePhase::Online)
            });
        online.then_some(l.items)
    })
    .await;
    let mut pool_names: Vec<String> = pools.iter().map(|c| c.name_any()).collect();
    pool_names.sort();
    for cspi in &pool_names {
        let zpool = h.pool_of(cspi).expect("a pool manager runs per CSPI");
        assert!(
            h.zpool_exists(&zpool).await,
            "zpool {zpool} of {cspi} exists"
        );
        assert!(
            h.pool_commands(cspi)
                .iter()
                .any(|l| l.starts_with("zpool create") && l.contains(&zpool)),
            "{cspi}: {:#?}",
            h.pool_commands(cspi)
        );
    }
    step(t0, "pools online");

    // 2. CreateVolume → CVC Bound, one Healthy replica, target running.
    let pv = format!("pvc-e2e-{}", &h.nodes[0][4..12]);
    let created = ctl
        .create_volume(CreateVolumeRequest {
            name: pv.clone(),
            capacity_range: range(GIB),
            volume_capabilities: vec![xfs(&[])],
            parameters: params("1"),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|s| panic!("CreateVolume: {s:?}"))
        .into_inner()
        .volume
        .expect("CreateVolume returns the volume");
    assert_eq!(created.volume_id, pv);
    assert_eq!(created.capacity_bytes, GIB);
    let cvc = cvc_bound(h, &pv).await;
    assert_eq!(cvc.status.pool_info.as_ref().map(Vec::len), Some(1));
    wait(&format!("CV {pv} Healthy"), || async {
        cvs.get_opt(&pv).await.ok().flatten().filter(|cv| {
            cv.status
                .as_ref()
                .is_some_and(|s| s.phase == Some(CStorVolumePhase::Healthy))
        })
    })
    .await;
    assert_eq!(h.plane.replicas_of(&pv).len(), 1, "one replica zvol");
    // Every component stamps the same version, upstream's: upstream's operators refuse to
    // reconcile an object whose versionDetails name another.
    let version = cstor_api::constants::version::OPENEBS_VERSION;
    let stamped =
        |kind: &str, meta: &kube::api::ObjectMeta, current: Option<&str>, labelled: bool| {
            if labelled {
                assert_eq!(
                    meta.labels
                        .as_ref()
                        .and_then(|l| l.get(label::VERSION))
                        .map(String::as_str),
                    Some(version),
                    "{kind} {:?}: label {}",
                    meta.name,
                    label::VERSION
                );
            }
            assert_eq!(
                current,
                Some(version),
                "{kind} {:?}: versionDetails",
                meta.name
            );
        };
    for cspi in cspis.list(&by_cspc).await.expect("CSPIs").items {
        stamped(
            "CSPI",
            &cspi.metadata,
            cspi.version_details.as_ref().map(|v| v.current()),
            true,
        );
    }
    let cvc = cvcs.get(&pv).await.expect("the CVC");
    stamped(
        "CVC",
        &cvc.metadata,
        Some(cvc.version_details.current()),
        false,
    );
    let cv = cvs.get(&pv).await.expect("the CV");
    stamped(
        "CV",
        &cv.metadata,
        cv.version_details.as_ref().map(|v| v.current()),
        true,
    );
    for cvr in cvrs.list(&ListParams::default()).await.expect("CVRs").items {
        stamped(
            "CVR",
            &cvr.metadata,
            cvr.version_details.as_ref().map(|v| v.current()),
            true,
        );
    }
    step(t0, "volume bound and healthy");

    // 3. NodeStage + NodePublish: login (loop device), mkfs.xfs, mount, bind mount; write.
    let (staging, target) = stage_and_publish(h, &pv, xfs(&[])).await;
    let iqn = cstor_api::naming::iqn(&pv);
    let dev = h
        .iscsiadm
        .session_device(&iqn)
        .expect("an iSCSI session to the volume");
    assert!(
        dev.to_string_lossy().starts_with("/dev/loop"),
        "{}",
        dev.display()
    );
    let cvas: Api<CStorVolumeAttachment> = h.api();
    let cva = cvas
        .get(&cstor_api::naming::cva_name(&pv, &h.nodes[0]))
        .await
        .expect("the CVA of the staged volume");
    assert_eq!(cva.spec.volume.name, pv);
    let before = pattern(7, 1 << 20);
    write_synced(&target.join("data.bin"), &before);
    let size0 = fs_size(&target);
    assert!(
        size0 > GIB as u64 * 9 / 10 && size0 <= GIB as u64,
        "xfs of ~1 GiB: {size0}"
    );
    step(t0, "staged, published, written");

    // 4. ControllerExpandVolume → RESIZE on the target; NodeExpandVolume → xfs_growfs online.
    let exp = ctl
        .controller_expand_volume(ControllerExpandVolumeRequest {
            volume_id: pv.clone(),
            capacity_range: range(2 * GIB),
            volume_capability: Some(xfs(&[])),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|s| panic!("ControllerExpandVolume: {s:?}"))
        .into_inner();
    assert!(exp.node_expansion_required);
    assert_eq!(exp.capacity_bytes, 2 * GIB);
    wait("CV capacity 2Gi in status", || async {
        cvs.get_opt(&pv).await.ok().flatten().filter(|cv| {
            cv.status
                .as_ref()
                .and_then(|s| s.capacity.as_ref())
                .is_some_and(|q| q.0 == "2Gi")
        })
    })
    .await;
    assert!(
        h.target_requests(&pv)
            .await
            .iter()
            .any(|r| r.starts_with(&format!("RESIZE {pv} 2Gi"))),
        "{:?}",
        h.target_requests(&pv).await
    );
    let nexp = node
        .node_expand_volume(NodeExpandVolumeRequest {
            volume_id: pv.clone(),
            volume_path: target.display().to_string(),
            capacity_range: range(2 * GIB),
            staging_target_path: staging.display().to_string(),
            volume_capability: Some(xfs(&[])),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|s| panic!("NodeExpandVolume: {s:?}"))
        .into_inner();
    assert!(nexp.capacity_bytes >= 2 * GIB, "{nexp:?}");
    let size1 = fs_size(&target);
    assert!(
        size1 > size0 + GIB as u64 * 9 / 10,
        "xfs grew online: {size0} -> {size1}"
    );
    assert!(
        h.node_commands
            .lines()
            .iter()
            .any(|l| l.starts_with("xfs_growfs")),
        "{:#?}",
        h.node_commands.lines()
    );
    wait("CVC capacity 2Gi in status", || async {
        cvcs.get_opt(&pv).await.ok().flatten().filter(|c| {
            c.status
                .capacity
                .as_ref()
                .and_then(|r| r.get("storage"))
                .is_some_and(|q| q.0 == "2Gi")
        })
    })
    .await;
    step(t0, "expanded");

    // 5. CreateSnapshot; then the volume changes (the snapshot must not).
    let snap = ctl
        .create_snapshot(CreateSnapshotRequest {
            source_volume_id: pv.clone(),
            name: "snap-1".into(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|s| panic!("CreateSnapshot: {s:?}"))
        .into_inner()
        .snapshot
        .expect("CreateSnapshot returns the snapshot");
    assert!(snap.ready_to_use);
    assert_eq!(snap.snapshot_id, format!("{pv}@snap-1"));
    assert_eq!(snap.size_bytes, 2 * GIB);
    assert!(
        h.plane
            .snapshots()
            .iter()
            .any(|s| s.ends_with(&format!("/{pv}@snap-1"))),
        "{:?}",
        h.plane.snapshots()
    );
    let after = pattern(99, 1 << 20);
    write_synced(&target.join("data.bin"), &after);
    step(t0, "snapshot taken, source overwritten");

    // 6. Restore into a new volume; it holds the data as of the snapshot.
    let restored = format!("{pv}-restore");
    ctl.create_volume(CreateVolumeRequest {
        name: restored.clone(),
        capacity_range: range(2 * GIB),
        volume_capabilities: vec![xfs(&[])],
        parameters: params("1"),
        volume_content_source: Some(VolumeContentSource {
            r#type: Some(SourceType::Snapshot(SnapshotSource {
                snapshot_id: snap.snapshot_id.clone(),
            })),
        }),
        ..Default::default()
    })
    .await
    .unwrap_or_else(|s| panic!("CreateVolume from snapshot: {s:?}"));
    cvc_bound(h, &restored).await;
    // Same xfs UUID as the source (block-level copy) while the source is mounted: nouuid.
    let (rstaging, rtarget) = stage_and_publish(h, &restored, xfs(&["nouuid"])).await;
    let read = std::fs::read(rtarget.join("data.bin")).expect("read the restored file");
    assert!(
        read == before,
        "the restored volume holds the data of the snapshot"
    );
    assert!(read != after);
    assert!(
        h.node_commands
            .lines()
            .iter()
            .filter(|l| l.starts_with("mkfs"))
            .count()
            == 1,
        "the restored volume is not reformatted: {:#?}",
        h.node_commands.lines()
    );
    step(t0, "restored and read back");

    // 7. Scale the source's replicas 1 → 3 through replicaPoolInfo.
    let infos: Vec<serde_json::Value> = pool_names
        .iter()
        .map(|p| serde_json::json!({ "poolName": p }))
        .collect();
    cvcs.patch(
        &pv,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"policy": {"replicaPoolInfo": infos}}})),
    )
    .await
    .expect("patch replicaPoolInfo");
    let by_pv = format!("{}={pv}", label::PERSISTENT_VOLUME);
    wait("3 Healthy replicas", || async {
        let l = cvrs
            .list(&ListParams::default().labels(&by_pv))
            .await
            .ok()?;
        (l.items.len() == 3
            && l.items.iter().all(|r| {
                r.status.as_ref().and_then(|s| s.phase.clone())
                    == Some(CStorVolumeReplicaPhase::Healthy)
            }))
        .then_some(())
    })
    .await;
    wait("CV reports 3 Healthy replicas", || async {
        cvs.get_opt(&pv).await.ok().flatten().filter(|cv| {
            cv.status.as_ref().is_some_and(|s| {
                s.phase == Some(CStorVolumePhase::Healthy)
                    && s.replica_statuses().len() == 3
                    && s.replica_statuses().iter().all(|r| r.mode == "Healthy")
            })
        })
    })
    .await;
    wait("CVC pool info lists 3 pools", || async {
        cvcs.get_opt(&pv).await.ok().flatten().filter(|c| {
            let mut p = c.status.pool_info.clone().unwrap_or_default();
            p.sort();
            p == pool_names
        })
    })
    .await;
    assert_eq!(h.plane.replicas_of(&pv).len(), 3, "three replica zvols");
    step(t0, "scaled to 3 replicas");

    // 8. Tear down: unpublish/unstage, DeleteVolume (restore), DeleteSnapshot, DeleteVolume.
    unpublish_and_unstage(h, &restored, &rstaging, &rtarget).await;
    unpublish_and_unstage(h, &pv, &staging, &target).await;
    assert!(
        h.iscsiadm.session_devices().is_empty(),
        "every session logged out"
    );
    assert!(mount_points_under(h.dir.path()).is_empty());
    ctl.delete_volume(DeleteVolumeRequest {
        volume_id: restored.clone(),
        ..Default::default()
    })
    .await
    .unwrap_or_else(|s| panic!("DeleteVolume {restored}: {s:?}"));
    wait(&format!("CVC {restored} gone"), || async {
        cvcs.get_opt(&restored)
            .await
            .ok()
            .map(|o| o.is_none())
            .filter(|g| *g)
    })
    .await;
    wait(&format!("CV {restored} gone"), || async {
        cvs.get_opt(&restored)
            .await
            .ok()
            .map(|o| o.is_none())
            .filter(|g| *g)
    })
    .await;
    let by_restored = format!("{}={restored}", label::PERSISTENT_VOLUME);
    wait_gone(&cvrs, "restored CVRs gone", Some(by_restored)).await;
    assert!(h.plane.replicas_of(&restored).is_empty());
    ctl.delete_snapshot(DeleteSnapshotRequest {
        snapshot_id: snap.snapshot_id.clone(),
        ..Default::default()
    })
    .await
    .unwrap_or_else(|s| panic!("DeleteSnapshot: {s:?}"));
    assert!(
        h.plane.snapshots().is_empty(),
        "SNAPDESTROY removed the snapshot on every replica: {:?}",
        h.plane.snapshots()
    );
    ctl.delete_volume(DeleteVolumeRequest {
        volume_id: pv.clone(),
        ..Default::default()
    })
    .await
    .unwrap_or_else(|s| panic!("DeleteVolume {pv}: {s:?}"));
    wait(&format!("CVC {pv} gone"), || async {
        cvcs.get_opt(&pv)
            .await
            .ok()
            .map(|o| o.is_none())
            .filter(|g| *g)
    })
    .await;
    wait_gone(&cvrs, "source CVRs gone", Some(by_pv)).await;
    // Both calls are idempotent once everything is gone.
    ctl.delete_snapshot(DeleteSnapshotRequest {
        snapshot_id: snap.snapshot_id.clone(),
        ..Default::default()
    })
    .await
    .unwrap_or_else(|s| panic!("DeleteSnapshot again: {s:?}"));
    ctl.delete_volume(DeleteVolumeRequest {
        volume_id: pv.clone(),
        ..Default::default()
    })
    .await
    .unwrap_or_else(|s| panic!("DeleteVolume again: {s:?}"));
    step(t0, "volumes and snapshot deleted");

    // 9. Delete the CSPC → CSPIs, pools and claims go.
    let cspcs: Api<CStorPoolCluster> = h.api();
    cspcs
        .delete(CSPC, &Default::default())
        .await
        .expect("delete CSPC");
    wait_gone(&cspcs, "CSPC gone", None).await;
    wait_gone(&cspis, "CSPIs gone", None).await;
    let bdcs: Api<BlockDeviceClaim> = h.api();
    wait_gone(&bdcs, "claims released", None).await;
    for zpool in h.pool_names() {
        let exists = wait_until(&format!("zpool {zpool} destroyed"), DEADLINE, || async {
            !h.zpool_exists(&zpool).await
        })
        .await;
        assert!(exists.is_ok(), "zpool {zpool} still exists");
    }
    step(t0, "CSPC deleted");

    // 10. Nothing left in the namespace or on disk.
    wait_gone(&cvcs, "no CVC", None).await;
    wait_gone(&cvs, "no CV", None).await;
    wait_gone(&cvrs, "no CVR", None).await;
    wait_gone(&cvas, "no CVA", None).await;
    wait_gone(&h.api::<Deployment>(), "no Deployment", None).await;
    wait_gone(&h.api::<Service>(), "no Service", None).await;
    wait_gone(&h.api::<PodDisruptionBudget>(), "no PDB", None).await;
    wait("no target running", || async {
        h.running_targets().await.is_empty().then_some(())
    })
    .await;
    assert!(
        h.plane.files_on_disk().is_empty(),
        "no zvol or snapshot image left: {:?}",
        h.plane.files_on_disk()
    );
    step(t0, "nothing left");

    // 11. deploy/'s RBAC allows every API call the components made on the way.
    if let Some(server) = h.cluster.server() {
        let calls = server.calls();
        let components: std::collections::BTreeSet<&str> =
            calls.iter().map(|c| c.component.as_str()).collect();
        for sa in [
            "openebs-cstor-cspc-operator",
            "openebs-cstor-pool-manager",
            "openebs-cstor-cvc-operator",
            "openebs-cstor-volume-manager",
            "openebs-cstor-csi-controller-sa",
            "openebs-cstor-csi-node-sa",
        ] {
            assert!(components.contains(sa), "no API call recorded for {sa}");
        }
        let denied = cstor_e2e::rbac::denied(&calls, &cstor_e2e::rbac::grants());
        assert!(
            denied.is_empty(),
            "deploy/base/rbac does not allow these calls the components made: {denied:#?}"
        );
    } else {
        println!("SKIPPED RBAC check: a real cluster does not record which component called");
    }
}

#[test]
fn volume_lifecycle_story() {
    run("volume_lifecycle_story", 3, Duration::from_secs(600), |h| {
        Box::pin(story(h))
    });
}
