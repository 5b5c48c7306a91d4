//! Concurrency and crash recovery: the per-volume guard, a plugin killed between attach and
//! mount followed by a retried NodeStage, and the failure paths of the real iscsiadm.

mod common;

use std::{
    future::pending,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use common::*;
use cstor_api::exec::{Cmd, ExecError, HostRunner, Output, RecordingRunner, Runner};
use cstor_csi_node::{NodeConfig, NodeDriver, iscsi::IscsiAttacher, kube::VolumeApi};
use tokio::sync::Notify;
use tonic::Code;

/// Hangs the first `blkid` forever (the point right after the iSCSI attach) and tells the test.
#[derive(Debug)]
struct Gate {
    inner: Arc<dyn Runner>,
    armed: AtomicBool,
    reached: Notify,
}

#[async_trait]
impl Runner for Gate {
    async fn run(&self, cmd: &Cmd) -> Result<Output, ExecError> {
        if cmd.program == "blkid" && self.armed.swap(false, Ordering::SeqCst) {
            self.reached.notify_one();
            pending::<()>().await;
        }
        self.inner.run(cmd).await
    }
}

fn driver_over(runner: Arc<dyn Runner>, h: &Harness) -> NodeDriver {
    let mut cfg = NodeConfig::new(NODE, NS);
    cfg.waits = short_waits();
    let attacher =
        IscsiAttacher::new(runner.clone(), &h.dev_root).with_device_timeout(Duration::from_secs(5));
    let api: Arc<dyn VolumeApi> = Arc::new(h.api.clone());
    NodeDriver::new(cfg, runner, api, Arc::new(attacher))
}

#[test]
fn killed_between_attach_and_mount_then_retried_stage_converges() {
    in_mount_ns(|| async {
        let h = Harness::new();
        let pv = "pvc-restart";
        h.add_volume(pv, 64 * MIB);
        let staging = h.mkdir("staging");
        let gate = Arc::new(Gate {
            inner: Arc::new(h.rec.clone()),
            armed: AtomicBool::new(true),
            reached: Notify::new(),
        });
        let first = driver_over(gate.clone(), &h);
        let mut stage = Box::pin(first.stage(stage_req(pv, &staging, mount_cap("ext4"))));
        tokio::select! {
            r = &mut stage => panic!("stage finished past the gate: {r:?}"),
            _ = gate.reached.notified() => {}
        }
        // Meanwhile a second call for the same volume is refused with ABORTED...
        let busy = first
            .stage(stage_req(pv, &staging, mount_cap("ext4")))
            .await
            .unwrap_err();
        let busy = tonic::Status::from(busy);
        assert_eq!(busy.code(), Code::Aborted, "{busy:?}");
        assert!(
            busy.message().contains("busy with NodeStageVolume"),
            "{}",
            busy.message()
        );
        let busy = first.unstage(unstage_req(pv, &staging)).await.unwrap_err();
        assert_eq!(tonic::Status::from(busy).code(), Code::Aborted);

        // ...then the plugin dies: the in-flight call and all in-memory state are gone.
        drop(stage);
        drop(first);
        assert_eq!(h.iscsi.logins(), 1, "attached before the kill");
        assert!(
            !h.mounts().is_mount_point(&staging),
            "killed before the mount"
        );
        let cva = h.api.attachments().pop().unwrap();
        assert_eq!(
            cva.finalizers,
            vec![NODE.to_string()],
            "the attachment records the half-done stage"
        );

        // A new plugin process; the CO retries NodeStage.
        let second = driver_over(Arc::new(h.rec.clone()), &h);
        second
            .stage(stage_req(pv, &staging, mount_cap("ext4")))
            .await
            .unwrap();
        assert!(h.mounts().is_mount_point(&staging));
        assert_eq!(
            h.iscsi.logins(),
            1,
            "the existing session was reused, no second login"
        );
        assert_eq!(h.commands("mkfs.ext4").len(), 1);
        assert_eq!(h.api.attachments().len(), 1);
        second.unstage(unstage_req(pv, &staging)).await.unwrap();
        assert!(h.our_mounts().is_empty());
        assert!(h.api.attachments().is_empty());
    });
}

#[test]
fn real_iscsiadm_login_failure_is_reported_and_cleaned_up() {
    in_mount_ns(|| async {
        let h = Harness::new();
        let pv = "pvc-real-iscsiadm";
        h.add_volume(pv, 64 * MIB);
        let staging = h.mkdir("staging");
        let rec = RecordingRunner::new(Arc::new(HostRunner::new()));
        let d = driver_over(Arc::new(rec.clone()), &h);
        let err = d
            .stage(stage_req(pv, &staging, mount_cap("ext4")))
            .await
            .unwrap_err();
        let s = tonic::Status::from(err);
        assert_eq!(s.code(), Code::Internal, "{s:?}");
        assert!(
            s.message().contains(&format!("cannot attach volume {pv}")),
            "{}",
            s.message()
        );
        assert!(
            s.message().contains("iscsi"),
            "iscsiadm's own words are kept: {}",
            s.message()
        );
        let lines = rec.lines();
        assert!(lines.iter().any(|l| l.contains("--login")), "{lines:?}");
        // The node record made for the login was deleted again; nothing is mounted; the
        // attachment holds no finalizer.
        let iqn = cstor_api::naming::iqn(pv);
        let out = std::process::Command::new("iscsiadm")
            .args(["-m", "node"])
            .output()
            .unwrap();
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains(&iqn),
            "record left behind"
        );
        assert!(h.our_mounts().is_empty());
        assert!(h.api.attachments().iter().all(|a| a.finalizers.is_empty()));

        // Unstage of the never-staged volume succeeds: real logout/delete answer "nothing".
        d.unstage(unstage_req(pv, &staging)).await.unwrap();
        assert!(h.api.attachments().is_empty());
        assert!(rec.lines().iter().any(|l| l.contains("--logout")));
    });
}

#[test]
fn waits_end_with_upstream_messages() {
    in_mount_ns(|| async {
        let h = Harness::new();
        let staging = h.mkdir("staging");
        h.api.set_cvc_phase("pvc-pending", "Pending");
        let e = tonic::Status::from(
            h.driver
                .stage(stage_req("pvc-pending", &staging, mount_cap("ext4")))
                .await
                .unwrap_err(),
        );
        assert_eq!(e.code(), Code::Unavailable);
        assert!(
            e.message()
                .contains("Waiting for pvc-pending's CVC to be bound"),
            "{}",
            e.message()
        );

        h.add_volume("pvc-init", 16 * MIB);
        h.api.set_volume_phase("pvc-init", "Init");
        let e = tonic::Status::from(
            h.driver
                .stage(stage_req("pvc-init", &staging, mount_cap("ext4")))
                .await
                .unwrap_err(),
        );
        assert_eq!(e.code(), Code::Unavailable);
        assert!(
            e.message()
                .contains("Volume pvc-init is not ready: Replicas yet to connect to controller"),
            "{}",
            e.message()
        );

        // Target down: nothing listens on the portal.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let portal = closed.local_addr().unwrap().to_string();
        drop(closed);
        h.api.add_ready_volume("pvc-down", &portal);
        let e = tonic::Status::from(
            h.driver
                .stage(stage_req("pvc-down", &staging, mount_cap("ext4")))
                .await
                .unwrap_err(),
        );
        assert_eq!(e.code(), Code::Unavailable);
        assert!(
            e.message().contains(&format!(
                "iSCSI Target not reachable for pvc-down, TargetPortal {portal}"
            )),
            "{}",
            e.message()
        );
        assert!(
            h.api.attachments().iter().all(|a| a.finalizers.is_empty()),
            "finalizer released"
        );
        assert!(h.commands("iscsiadm").is_empty());

        // Another node that is Ready still has it: refused with the fix in the message.
        h.add_volume("pvc-elsewhere", 16 * MIB);
        h.api.set_node(cstor_csi_node::kube::NodeInfo {
            name: "node-b".into(),
            uid: "u-b".into(),
            ready: true,
            zone: None,
        });
        let target = h.api.volume_target("pvc-elsewhere").await.unwrap().unwrap();
        let mut other = cstor_csi_node::kube::Attachment::new(
            "pvc-elsewhere",
            "node-b",
            cstor_csi_node::kube::AccessType::Mount,
            "ext4",
            &target,
            String::new(),
        );
        other.finalizers = vec!["node-b".into()];
        h.api.put_attachment(other.clone());
        let e = tonic::Status::from(
            h.driver
                .stage(stage_req("pvc-elsewhere", &staging, mount_cap("ext4")))
                .await
                .unwrap_err(),
        );
        assert_eq!(e.code(), Code::FailedPrecondition);
        assert!(
            e.message()
                .contains("Volume pvc-elsewhere still mounted on node node-b"),
            "{}",
            e.message()
        );
        assert!(
            e.message()
                .contains("kubectl delete cva pvc-elsewhere-node-b -n openebs"),
            "{}",
            e.message()
        );
        // Once that node is gone, its stale attachment is removed and the stage goes ahead.
        h.api.set_node(cstor_csi_node::kube::NodeInfo {
            name: "node-b".into(),
            uid: "u-b".into(),
            ready: false,
            zone: None,
        });
        h.driver
            .stage(stage_req("pvc-elsewhere", &staging, mount_cap("ext4")))
            .await
            .unwrap();
        let cvas = h.api.attachments();
        let stale = cvas
            .iter()
            .find(|a| a.node == "node-b")
            .expect("kept until node-b's cleanup");
        assert!(stale.deleting, "marked for deletion");
        h.driver
            .unstage(unstage_req("pvc-elsewhere", &staging))
            .await
            .unwrap();
    });
}

/// An `umount` that reports success while the mount stays (a mount helper that lies, a mount
/// that something puts back at once) ends NodeUnpublishVolume with an error naming the path
/// after a bounded number of attempts; it used to loop for ever.
#[test]
fn unmount_loops_are_bounded() {
    in_mount_ns(|| async {
        let h = Harness::new();
        let lying = h.iscsi.runner();
        lying.on(|cmd| (cmd.program == "umount").then(|| Ok(Output::ok(""))));
        let rec = RecordingRunner::new(Arc::new(lying));
        let driver = Harness::driver_with(&rec, &h.api, &h.dev_root);
        let target = h.mkdir("pods/p1/volumes/pvc-1/mount");
        nix::mount::mount(
            Some("tmpfs"),
            &target,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .expect("mount tmpfs");
        let answer = tokio::time::timeout(
            Duration::from_secs(60),
            driver.unpublish(unpublish_req("pvc-1", &target)),
        )
        .await
        .expect("NodeUnpublishVolume must give up, not loop");
        let err = answer.expect_err("the target is still mounted");
        assert!(err.to_string().contains("still a mount point"), "{err}");
        assert!(
            err.to_string().contains(&target.display().to_string()),
            "{err}"
        );
        let umounts = rec
            .lines()
            .iter()
            .filter(|l| l.starts_with("umount"))
            .count();
        assert_eq!(
            umounts,
            cstor_csi_node::node::MAX_STACKED_MOUNTS,
            "{:?}",
            rec.lines()
        );
        nix::mount::umount(&target).expect("clean up");
    });
}
