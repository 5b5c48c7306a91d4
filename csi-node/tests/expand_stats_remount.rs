//! NodeExpandVolume (xfs online for real; ext4 through a recorded resize2fs because this
//! machine lacks CAP_SYS_RESOURCE for an online ext4 grow; block reports the new size),
//! NodeGetVolumeStats with its VolumeCondition, and the read-only remount monitor.

mod common;

use std::sync::Arc;

use common::*;
use cstor_api::{
    exec::{Output, RecordingRunner, Runner},
    proto::csi::v1::volume_usage::Unit,
};
use cstor_csi_node::{
    NodeConfig, NodeDriver, iscsi::IscsiAttacher, kube::VolumeApi, remount::PassOutcome,
};

fn grow_image(image: &std::path::Path, size: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(image)
        .unwrap()
        .set_len(size)
        .unwrap();
}

#[test]
fn xfs_grows_online_and_stats_follow() {
    in_mount_ns(|| async {
        let h = Harness::new();
        let pv = "pvc-grow-xfs";
        let image = h.add_volume(pv, 320 * MIB);
        let staging = h.mkdir("staging");
        h.mkdir("pod");
        let target = h.path("pod/mount");
        h.driver
            .stage(stage_req(pv, &staging, mount_cap("xfs")))
            .await
            .unwrap();
        h.driver
            .publish(publish_req(pv, &staging, &target, mount_cap("xfs"), false))
            .await
            .unwrap();
        let before = h.driver.stats(stats_req(pv, &target)).await.unwrap();
        let bytes = before
            .usage
            .iter()
            .find(|u| u.unit == Unit::Bytes as i32)
            .unwrap();
        let inodes = before
            .usage
            .iter()
            .find(|u| u.unit == Unit::Inodes as i32)
            .unwrap();
        assert!(
            bytes.total > 250 * MIB as i64 && bytes.total <= 320 * MIB as i64,
            "{bytes:?}"
        );
        assert!(
            bytes.used > 0 && bytes.available > 0 && bytes.used + bytes.available <= bytes.total
        );
        assert!(inodes.total > 0 && inodes.used > 0);
        assert!(!before.volume_condition.as_ref().unwrap().abnormal);

        // The CO asks for 640 MiB before the target has grown the LUN: the node must not grow
        // the filesystem or report success, but ask to be retried.
        let mut early = expand_req(pv, &target);
        early.capacity_range = Some(cstor_api::proto::csi::v1::CapacityRange {
            required_bytes: (640 * MIB) as i64,
            limit_bytes: 0,
        });
        let err = h.driver.expand(early.clone()).await.unwrap_err();
        let status = tonic::Status::from(err);
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        assert!(
            status.message().contains("smaller than the requested"),
            "{status:?}"
        );
        assert!(h.commands("xfs_growfs").is_empty(), "nothing grown early");

        grow_image(&image, 640 * MIB);
        let resp = h.driver.expand(early).await.unwrap();
        assert_eq!(
            resp.capacity_bytes,
            (640 * MIB) as i64,
            "device size after the rescan"
        );
        assert!(
            h.commands("xfs_growfs")
                .iter()
                .any(|l| l.ends_with(&target.display().to_string()))
        );
        let after = h.driver.stats(stats_req(pv, &target)).await.unwrap();
        let grown = after
            .usage
            .iter()
            .find(|u| u.unit == Unit::Bytes as i32)
            .unwrap();
        assert!(grown.total > 560 * MIB as i64, "filesystem grew: {grown:?}");

        h.driver
            .unpublish(unpublish_req(pv, &target))
            .await
            .unwrap();
        h.driver.unstage(unstage_req(pv, &staging)).await.unwrap();
    });
}

#[test]
fn ext4_grow_runs_resize2fs_on_the_device_and_block_reports_size() {
    in_mount_ns(|| async {
        let h = Harness::new();
        // resize2fs of a mounted ext4 needs CAP_SYS_RESOURCE, which this machine lacks: record it.
        let scripted = h.iscsi.runner();
        scripted.on(|cmd| {
            (cmd.program == "resize2fs")
                .then(|| Ok(Output::ok("The filesystem is now 1 blocks long.\n")))
        });
        let rec = RecordingRunner::new(Arc::new(scripted));
        let runner: Arc<dyn Runner> = Arc::new(rec.clone());
        let mut cfg = NodeConfig::new(NODE, NS);
        cfg.waits = short_waits();
        let api: Arc<dyn VolumeApi> = Arc::new(h.api.clone());
        let d = NodeDriver::new(
            cfg,
            runner.clone(),
            api,
            Arc::new(IscsiAttacher::new(runner, &h.dev_root)),
        );

        let pv = "pvc-grow-ext4";
        let image = h.add_volume(pv, 64 * MIB);
        let staging = h.mkdir("staging");
        h.mkdir("pod");
        let target = h.path("pod/mount");
        d.stage(stage_req(pv, &staging, mount_cap("ext4")))
            .await
            .unwrap();
        d.publish(publish_req(pv, &staging, &target, mount_cap("ext4"), false))
            .await
            .unwrap();
        grow_image(&image, 96 * MIB);
        let resp = d.expand(expand_req(pv, &target)).await.unwrap();
        assert_eq!(resp.capacity_bytes, (96 * MIB) as i64);
        let dev = h.iscsi.session_device(&cstor_api::naming::iqn(pv)).unwrap();
        let lines = rec.lines();
        let rescan = lines
            .iter()
            .position(|l| l.contains("--rescan"))
            .expect("rescan");
        let resize = lines
            .iter()
            .position(|l| *l == format!("resize2fs {}", dev.display()))
            .expect("resize2fs <device>");
        assert!(rescan < resize, "rescan first: {lines:?}");
        d.unpublish(unpublish_req(pv, &target)).await.unwrap();
        d.unstage(unstage_req(pv, &staging)).await.unwrap();

        // Block: the new size is reported, nothing to grow.
        let pvb = "pvc-grow-block";
        let imageb = h.add_volume(pvb, 32 * MIB);
        let t = h.path("pod/blk");
        d.stage(stage_req(pvb, &staging, block_cap()))
            .await
            .unwrap();
        d.publish(publish_req(pvb, &staging, &t, block_cap(), false))
            .await
            .unwrap();
        grow_image(&imageb, 48 * MIB);
        let resp = d.expand(expand_req(pvb, &t)).await.unwrap();
        assert_eq!(resp.capacity_bytes, (48 * MIB) as i64);
        d.unpublish(unpublish_req(pvb, &t)).await.unwrap();
        d.unstage(unstage_req(pvb, &staging)).await.unwrap();
        assert!(h.our_mounts().is_empty());
    });
}

#[test]
fn read_only_filesystem_is_reported_and_remounted_once_the_volume_is_back() {
    in_mount_ns(|| async {
        let h = Harness::new();
        let pv = "pvc-remount";
        h.add_volume(pv, 64 * MIB);
        let staging = h.mkdir("staging");
        h.mkdir("pod");
        let target = h.path("pod/mount");
        h.driver
            .stage(stage_req(pv, &staging, mount_cap("ext4")))
            .await
            .unwrap();
        h.driver
            .publish(publish_req(pv, &staging, &target, mount_cap("ext4"), false))
            .await
            .unwrap();
        std::fs::write(target.join("before"), b"1").unwrap();

        // Healthy: a pass does nothing.
        assert!(h.driver.remount_pass().await.unwrap().is_empty());

        // The target went away and the filesystem went read-only.
        let out = std::process::Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(&staging)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(std::fs::write(target.join("x"), b"x").is_err());
        let st = h.driver.stats(stats_req(pv, &target)).await.unwrap();
        let cond = st.volume_condition.unwrap();
        assert!(
            cond.abnormal && cond.message.contains("read-only"),
            "{cond:?}"
        );

        // While the volume is not Healthy/Degraded the monitor waits.
        h.api.set_volume_phase(pv, "Offline");
        let out = h.driver.remount_pass().await.unwrap();
        assert!(
            matches!(&out[..], [PassOutcome::Deferred { reason, .. }] if reason.contains("is not ready")),
            "{out:?}"
        );
        assert!(h.mounts().at(&staging).unwrap().is_read_only());

        // The volume is back: the monitor remounts read-write and binds the target again.
        h.api.set_volume_phase(pv, "Degraded");
        let out = h.driver.remount_pass().await.unwrap();
        assert_eq!(out, vec![PassOutcome::Remounted { volume: pv.into() }]);
        let table = h.mounts();
        assert!(!table.at(&staging).unwrap().is_read_only());
        assert!(!table.at(&target).unwrap().is_read_only());
        assert_eq!(table.all_at(&target).len(), 1);
        std::fs::write(target.join("after"), b"2").unwrap();
        assert_eq!(std::fs::read(target.join("before")).unwrap(), b"1");
        assert!(
            !h.driver
                .stats(stats_req(pv, &target))
                .await
                .unwrap()
                .volume_condition
                .unwrap()
                .abnormal
        );

        // A vanished mount is abnormal too.
        h.driver
            .unpublish(unpublish_req(pv, &target))
            .await
            .unwrap();
        std::fs::create_dir(&target).unwrap();
        let cond = h
            .driver
            .stats(stats_req(pv, &target))
            .await
            .unwrap()
            .volume_condition
            .unwrap();
        assert!(
            cond.abnormal && cond.message.contains("is not mounted"),
            "{cond:?}"
        );
        std::fs::remove_dir(&target).unwrap();
        h.driver.unstage(unstage_req(pv, &staging)).await.unwrap();
    });
}

#[test]
fn start_up_cleanup_detaches_attachments_being_deleted() {
    in_mount_ns(|| async {
        let mut h = Harness::new();
        let pv = "pvc-cleanup";
        h.add_volume(pv, 64 * MIB);
        let staging = h.mkdir("staging");
        h.driver
            .stage(stage_req(pv, &staging, mount_cap("ext4")))
            .await
            .unwrap();
        // Another node's NodeStage deleted our attachment while we were down.
        h.api
            .delete_attachment(&format!("{pv}-{NODE}"))
            .await
            .unwrap();
        assert!(h.api.attachments()[0].deleting);
        h.restart();
        let out = h.driver.cleanup().await.unwrap();
        assert_eq!(out, vec![PassOutcome::CleanedUp { volume: pv.into() }]);
        assert!(!h.mounts().is_mount_point(&staging));
        assert!(
            h.iscsi
                .session_device(&cstor_api::naming::iqn(pv))
                .is_none()
        );
        assert!(
            h.api.attachments().is_empty(),
            "finalizer released, deletion completed"
        );
    });
}
