//! Bad requests: every required field missing, relative or nonexistent paths, unsupported fs
//! type and access mode. Each is a clear error and nothing is mounted, attached or changed.

mod common;

use common::*;
use cstor_api::proto::csi::v1::{
    NodeExpandVolumeRequest, NodeGetVolumeStatsRequest, NodePublishVolumeRequest,
    NodeStageVolumeRequest, NodeUnpublishVolumeRequest, NodeUnstageVolumeRequest,
    volume_capability::{AccessMode, AccessType, MountVolume, access_mode::Mode},
};
use cstor_csi_node::NodeError;
use tonic::Code;

fn status(e: NodeError) -> tonic::Status {
    tonic::Status::from(e)
}

fn expect(res: Result<impl std::fmt::Debug, NodeError>, code: Code, needle: &str) {
    let s = status(res.expect_err("must fail"));
    assert_eq!(s.code(), code, "{s:?}");
    assert!(
        s.message().contains(needle),
        "{needle:?} not in {:?}",
        s.message()
    );
}

#[test]
fn bad_requests_are_refused_and_change_nothing() {
    in_mount_ns(|| async {
        let h = Harness::new();
        let pv = "pvc-bad";
        h.add_volume(pv, 64 * MIB);
        let staging = h.mkdir("staging");
        let target = h.path("target");
        let d = &h.driver;
        let ok = stage_req(pv, &staging, mount_cap("ext4"));

        // NodeStageVolume
        expect(
            d.stage(NodeStageVolumeRequest {
                volume_id: String::new(),
                ..ok.clone()
            })
            .await,
            Code::InvalidArgument,
            "volume_id is missing",
        );
        expect(
            d.stage(NodeStageVolumeRequest {
                staging_target_path: String::new(),
                ..ok.clone()
            })
            .await,
            Code::InvalidArgument,
            "staging_target_path is missing",
        );
        expect(
            d.stage(NodeStageVolumeRequest {
                volume_capability: None,
                ..ok.clone()
            })
            .await,
            Code::InvalidArgument,
            "volume_capability is missing",
        );
        expect(
            d.stage(NodeStageVolumeRequest {
                staging_target_path: "rel/path".into(),
                ..ok.clone()
            })
            .await,
            Code::InvalidArgument,
            "absolute",
        );
        expect(
            d.stage(NodeStageVolumeRequest {
                staging_target_path: format!("{}/../x", staging.display()),
                ..ok.clone()
            })
            .await,
            Code::InvalidArgument,
            "absolute",
        );
        expect(
            d.stage(stage_req(pv, &h.path("nope"), mount_cap("ext4")))
                .await,
            Code::InvalidArgument,
            "does not exist",
        );
        expect(
            d.stage(stage_req(pv, &staging, mount_cap("btrfs"))).await,
            Code::InvalidArgument,
            "fs_type \"btrfs\" is not supported",
        );
        for mode in [
            Mode::MultiNodeMultiWriter,
            Mode::MultiNodeReaderOnly,
            Mode::MultiNodeSingleWriter,
        ] {
            let mut cap = mount_cap("ext4");
            cap.access_mode = Some(AccessMode { mode: mode as i32 });
            expect(
                d.stage(stage_req(pv, &staging, cap)).await,
                Code::InvalidArgument,
                "is not supported",
            );
        }
        let mut cap = mount_cap("ext4");
        cap.access_mode = None;
        expect(
            d.stage(stage_req(pv, &staging, cap)).await,
            Code::InvalidArgument,
            "access_mode is missing",
        );
        let mut cap = mount_cap("ext4");
        cap.access_type = None;
        expect(
            d.stage(stage_req(pv, &staging, cap)).await,
            Code::InvalidArgument,
            "neither mount nor block",
        );
        let mut cap = mount_cap("ext4");
        cap.access_type = Some(AccessType::Mount(MountVolume {
            fs_type: "ext4".into(),
            mount_flags: vec![],
            volume_mount_group: "1000".into(),
        }));
        expect(
            d.stage(stage_req(pv, &staging, cap)).await,
            Code::InvalidArgument,
            "volume_mount_group",
        );
        expect(
            d.stage(stage_req("pvc-unknown", &staging, mount_cap("ext4")))
                .await,
            Code::NotFound,
            "no CStorVolumeConfig pvc-unknown",
        );

        // NodeUnstageVolume
        expect(
            d.unstage(NodeUnstageVolumeRequest {
                volume_id: String::new(),
                staging_target_path: staging.display().to_string(),
            })
            .await,
            Code::InvalidArgument,
            "volume_id",
        );
        expect(
            d.unstage(NodeUnstageVolumeRequest {
                volume_id: pv.into(),
                staging_target_path: String::new(),
            })
            .await,
            Code::InvalidArgument,
            "staging_target_path",
        );
        expect(
            d.unstage(NodeUnstageVolumeRequest {
                volume_id: pv.into(),
                staging_target_path: "x".into(),
            })
            .await,
            Code::InvalidArgument,
            "absolute",
        );

        // NodePublishVolume
        let pub_ok = publish_req(pv, &staging, &target, mount_cap("ext4"), false);
        expect(
            d.publish(NodePublishVolumeRequest {
                volume_id: String::new(),
                ..pub_ok.clone()
            })
            .await,
            Code::InvalidArgument,
            "volume_id",
        );
        expect(
            d.publish(NodePublishVolumeRequest {
                target_path: String::new(),
                ..pub_ok.clone()
            })
            .await,
            Code::InvalidArgument,
            "target_path is missing",
        );
        expect(
            d.publish(NodePublishVolumeRequest {
                staging_target_path: String::new(),
                ..pub_ok.clone()
            })
            .await,
            Code::FailedPrecondition,
            "call NodeStageVolume first",
        );
        expect(
            d.publish(NodePublishVolumeRequest {
                volume_capability: None,
                ..pub_ok.clone()
            })
            .await,
            Code::InvalidArgument,
            "volume_capability",
        );
        expect(
            d.publish(NodePublishVolumeRequest {
                target_path: "pod/mount".into(),
                ..pub_ok.clone()
            })
            .await,
            Code::InvalidArgument,
            "absolute",
        );
        expect(
            d.publish(publish_req(
                pv,
                &staging,
                &h.path("no/such/dir/t"),
                mount_cap("ext4"),
                false,
            ))
            .await,
            Code::InvalidArgument,
            "parent directory",
        );
        expect(
            d.publish(publish_req(pv, &staging, &target, mount_cap("vfat"), false))
                .await,
            Code::InvalidArgument,
            "not supported",
        );
        // Not staged.
        expect(
            d.publish(pub_ok.clone()).await,
            Code::FailedPrecondition,
            "is not staged",
        );

        // NodeUnpublishVolume
        expect(
            d.unpublish(NodeUnpublishVolumeRequest {
                volume_id: String::new(),
                target_path: target.display().to_string(),
            })
            .await,
            Code::InvalidArgument,
            "volume_id",
        );
        expect(
            d.unpublish(NodeUnpublishVolumeRequest {
                volume_id: pv.into(),
                target_path: String::new(),
            })
            .await,
            Code::InvalidArgument,
            "target_path",
        );

        // NodeExpandVolume / NodeGetVolumeStats
        expect(
            d.expand(NodeExpandVolumeRequest {
                volume_id: String::new(),
                volume_path: staging.display().to_string(),
                ..Default::default()
            })
            .await,
            Code::InvalidArgument,
            "volume_id",
        );
        expect(
            d.expand(NodeExpandVolumeRequest {
                volume_id: pv.into(),
                volume_path: String::new(),
                ..Default::default()
            })
            .await,
            Code::InvalidArgument,
            "volume_path",
        );
        expect(
            d.expand(expand_req(pv, &h.path("gone"))).await,
            Code::NotFound,
            "does not exist",
        );
        expect(
            d.expand(expand_req(pv, &staging)).await,
            Code::NotFound,
            "is not staged",
        );
        expect(
            d.stats(NodeGetVolumeStatsRequest {
                volume_id: String::new(),
                volume_path: staging.display().to_string(),
                ..Default::default()
            })
            .await,
            Code::InvalidArgument,
            "volume_id",
        );
        expect(
            d.stats(NodeGetVolumeStatsRequest {
                volume_id: pv.into(),
                volume_path: String::new(),
                ..Default::default()
            })
            .await,
            Code::InvalidArgument,
            "volume_path",
        );
        expect(
            d.stats(stats_req(pv, &h.path("gone"))).await,
            Code::NotFound,
            "does not exist",
        );

        // Nothing happened: no command ran, no mount, no attachment.
        assert!(h.rec.lines().is_empty(), "{:?}", h.rec.lines());
        assert!(h.our_mounts().is_empty());
        assert!(h.api.attachments().is_empty());
        assert!(!target.exists());
    });
}
