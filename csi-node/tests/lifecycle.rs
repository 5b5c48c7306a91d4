//! Stage → publish → write → unpublish → unstage → stage again → data still there, on real loop
//! devices and real mkfs/mount, each test in its own mount namespace. The iSCSI login is a
//! recorded iscsiadm that attaches the LUN image as a loop device.

mod common;

use std::{os::unix::fs::FileTypeExt, path::Path};

use common::*;
use cstor_csi_node::{kube::AccessType as CvaAccess, mount_table::MountTable};
use tonic::Code;

fn write_file(dir: &Path, name: &str, data: &[u8]) {
    std::fs::write(dir.join(name), data).unwrap();
    nix::unistd::sync();
}

async fn cycle_fs(fs: &str) {
    let h = Harness::new();
    let pv = format!("pvc-{fs}-cycle");
    h.add_volume(&pv, 320 * MIB);
    let staging = h.mkdir("staging/globalmount");
    h.mkdir("pod");
    let target = h.path("pod/mount");
    let cap = mount_cap(fs);

    h.driver
        .stage(stage_req(&pv, &staging, cap.clone()))
        .await
        .unwrap();
    let table = h.mounts();
    let m = table.at(&staging).expect("staged");
    assert_eq!(m.fs_type, fs);
    assert_eq!(h.commands(&format!("mkfs.{fs}")).len(), 1, "formatted once");
    let cva = h.api.attachments().pop().expect("CVA");
    assert_eq!(cva.name, format!("{pv}-{NODE}"));
    assert_eq!(cva.finalizers, vec![NODE.to_string()]);
    assert_eq!(cva.staging_target_path, staging.display().to_string());
    assert_eq!(cva.access_type, CvaAccess::Mount);
    assert_eq!(cva.fs_type, fs);
    assert!(
        cva.device_path.starts_with(h.dev_root.to_str().unwrap()),
        "{}",
        cva.device_path
    );
    assert_eq!(cva.iqn, cstor_api::naming::iqn(&pv));

    // A second stage of a staged volume succeeds without formatting or mounting again.
    h.driver
        .stage(stage_req(&pv, &staging, cap.clone()))
        .await
        .unwrap();
    assert_eq!(h.commands(&format!("mkfs.{fs}")).len(), 1);
    assert_eq!(h.mounts().all_at(&staging).len(), 1);

    h.driver
        .publish(publish_req(&pv, &staging, &target, cap.clone(), false))
        .await
        .unwrap();
    // Publishing twice is fine and stacks nothing.
    h.driver
        .publish(publish_req(&pv, &staging, &target, cap.clone(), false))
        .await
        .unwrap();
    assert_eq!(h.mounts().all_at(&target).len(), 1);
    assert_eq!(
        h.api.attachments()[0].target_path,
        target.display().to_string()
    );
    write_file(&target, "data.txt", b"survives unstage");

    // The same target read-only is a different publication.
    let err = h
        .driver
        .publish(publish_req(&pv, &staging, &target, cap.clone(), true))
        .await
        .unwrap_err();
    assert_eq!(tonic::Status::from(err).code(), Code::AlreadyExists);

    // Unstage while published is refused.
    let err = h
        .driver
        .unstage(unstage_req(&pv, &staging))
        .await
        .unwrap_err();
    assert_eq!(tonic::Status::from(err).code(), Code::FailedPrecondition);
    assert!(h.mounts().is_mount_point(&staging));

    h.driver
        .unpublish(unpublish_req(&pv, &target))
        .await
        .unwrap();
    assert!(!target.exists(), "unpublish removes the target it created");
    h.driver
        .unpublish(unpublish_req(&pv, &target))
        .await
        .unwrap();
    h.driver.unstage(unstage_req(&pv, &staging)).await.unwrap();
    h.driver.unstage(unstage_req(&pv, &staging)).await.unwrap();
    assert!(h.our_mounts().is_empty(), "{:?}", h.our_mounts());
    assert!(h.api.attachments().is_empty(), "CVA deleted");
    assert!(
        h.iscsi
            .session_device(&cstor_api::naming::iqn(&pv))
            .is_none(),
        "logged out"
    );
    assert!(
        !h.iscsi.has_record(&cstor_api::naming::iqn(&pv)),
        "node record deleted"
    );

    // Stage again: the filesystem is found, checked, not reformatted; the data is there.
    h.driver
        .stage(stage_req(&pv, &staging, cap.clone()))
        .await
        .unwrap();
    assert_eq!(
        h.commands(&format!("mkfs.{fs}")).len(),
        1,
        "never reformatted"
    );
    assert!(h.commands("fsck").iter().any(|l| l.starts_with("fsck -a")));
    h.driver
        .publish(publish_req(&pv, &staging, &target, cap.clone(), true))
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(target.join("data.txt")).unwrap(),
        b"survives unstage"
    );
    assert!(
        std::fs::write(target.join("x"), b"x").is_err(),
        "read-only publish"
    );
    h.driver
        .unpublish(unpublish_req(&pv, &target))
        .await
        .unwrap();
    h.driver.unstage(unstage_req(&pv, &staging)).await.unwrap();
    assert!(h.our_mounts().is_empty());
}

#[test]
fn ext4_full_cycle_keeps_data() {
    in_mount_ns(|| cycle_fs("ext4"));
}

#[test]
fn xfs_full_cycle_keeps_data() {
    in_mount_ns(|| cycle_fs("xfs"));
}

#[test]
fn block_full_cycle_keeps_data() {
    in_mount_ns(|| async {
        let h = Harness::new();
        let pv = "pvc-block-cycle";
        h.add_volume(pv, 64 * MIB);
        let staging = h.mkdir("staging/globalmount");
        h.mkdir("pod/dev");
        let target = h.path("pod/dev/vol");
        h.driver
            .stage(stage_req(pv, &staging, block_cap()))
            .await
            .unwrap();
        assert!(h.commands("mkfs.ext4").is_empty() && h.commands("mkfs.xfs").is_empty());
        assert!(
            !h.mounts().is_mount_point(&staging),
            "block volumes are not mounted at staging"
        );
        h.driver
            .publish(publish_req(pv, &staging, &target, block_cap(), false))
            .await
            .unwrap();
        h.driver
            .publish(publish_req(pv, &staging, &target, block_cap(), false))
            .await
            .unwrap();
        assert_eq!(h.mounts().all_at(&target).len(), 1);
        assert!(
            std::fs::metadata(&target)
                .unwrap()
                .file_type()
                .is_block_device()
        );
        {
            use std::io::{Seek, SeekFrom, Write};
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .open(&target)
                .unwrap();
            f.seek(SeekFrom::Start(4096)).unwrap();
            f.write_all(b"raw block data").unwrap();
            f.sync_all().unwrap();
        }
        let stats = h.driver.stats(stats_req(pv, &target)).await.unwrap();
        assert_eq!(stats.usage[0].total, (64 * MIB) as i64);
        h.driver
            .unpublish(unpublish_req(pv, &target))
            .await
            .unwrap();
        assert!(!target.exists(), "block target file removed");
        h.driver.unstage(unstage_req(pv, &staging)).await.unwrap();
        assert!(
            h.iscsi
                .session_device(&cstor_api::naming::iqn(pv))
                .is_none()
        );

        h.driver
            .stage(stage_req(pv, &staging, block_cap()))
            .await
            .unwrap();
        h.driver
            .publish(publish_req(pv, &staging, &target, block_cap(), true))
            .await
            .unwrap();
        {
            use std::io::{Read, Seek, SeekFrom};
            let mut f = std::fs::File::open(&target).unwrap();
            f.seek(SeekFrom::Start(4096)).unwrap();
            let mut buf = [0u8; 14];
            f.read_exact(&mut buf).unwrap();
            assert_eq!(&buf, b"raw block data");
        }
        {
            use std::io::Write;
            let written = std::fs::OpenOptions::new()
                .write(true)
                .open(&target)
                .and_then(|mut f| f.write_all(&[0u8; 4096]).and_then(|_| f.sync_all()));
            assert!(
                written.is_err(),
                "read-only block publish must refuse writes"
            );
        }
        h.driver
            .unpublish(unpublish_req(pv, &target))
            .await
            .unwrap();
        h.driver.unstage(unstage_req(pv, &staging)).await.unwrap();
        assert!(h.our_mounts().is_empty());
    });
}

#[test]
fn existing_filesystem_of_another_type_is_never_overwritten() {
    in_mount_ns(|| async {
        let h = Harness::new();
        let pv = "pvc-other-fs";
        let image = h.add_volume(pv, 320 * MIB);
        // Someone put xfs on the volume.
        {
            let dev = LoopDevice::new(&image, 320 * MIB);
            let out = std::process::Command::new("mkfs.xfs")
                .arg("-q")
                .arg(&dev.path)
                .output()
                .unwrap();
            assert!(out.status.success());
        }
        let before = std::fs::read(&image).unwrap()[..1 << 16].to_vec();
        let staging = h.mkdir("staging/globalmount");
        let err = h
            .driver
            .stage(stage_req(pv, &staging, mount_cap("ext4")))
            .await
            .unwrap_err();
        let status = tonic::Status::from(err);
        assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
        assert!(
            status.message().contains("holds a xfs filesystem"),
            "{}",
            status.message()
        );
        assert!(
            status.message().contains("never reformatted"),
            "{}",
            status.message()
        );
        assert!(h.commands("mkfs.ext4").is_empty());
        assert!(!h.mounts().is_mount_point(&staging));
        assert_eq!(
            std::fs::read(&image).unwrap()[..1 << 16],
            before[..],
            "device untouched"
        );
        // The failed stage left no session and released the attachment.
        assert!(
            h.iscsi
                .session_device(&cstor_api::naming::iqn(pv))
                .is_none()
        );
        assert!(h.api.attachments().iter().all(|a| a.finalizers.is_empty()));
        // With the right type it stages and keeps the filesystem.
        h.driver
            .stage(stage_req(pv, &staging, mount_cap("xfs")))
            .await
            .unwrap();
        assert!(h.commands("mkfs.xfs").is_empty());
        h.driver.unstage(unstage_req(pv, &staging)).await.unwrap();
    });
}

#[test]
fn mount_table_sees_the_namespace_of_the_thread() {
    let outside = tempfile::tempdir().unwrap();
    let d = outside.path().join("tmpfs");
    std::fs::create_dir(&d).unwrap();
    let inner = d.clone();
    in_mount_ns(move || async move {
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "none"])
            .arg(&inner)
            .output()
            .unwrap();
        assert!(out.status.success());
        assert!(MountTable::read().unwrap().is_mount_point(&inner));
    });
    // Outside the test's namespace the mount was never visible.
    assert!(!MountTable::read().unwrap().is_mount_point(&d));
}
