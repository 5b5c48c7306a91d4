//! Test harness of the node plugin: a private mount namespace per test, loop devices that are
//! always detached, a recorded `iscsiadm` whose login attaches a loop device and creates the
//! by-path link under a test device root, and request builders.
#![allow(dead_code)]

use std::{
    collections::BTreeMap,
    future::Future,
    net::TcpListener,
    path::{Path, PathBuf},
    process::Command,
    sync::{Arc, Mutex},
    time::Duration,
};

use cstor_api::{
    exec::{HostRunner, Output, RecordingRunner, Runner, ScriptedRunner},
    proto::csi::v1::{
        NodeExpandVolumeRequest, NodeGetVolumeStatsRequest, NodePublishVolumeRequest,
        NodeStageVolumeRequest, NodeUnpublishVolumeRequest, NodeUnstageVolumeRequest,
        VolumeCapability,
        volume_capability::{AccessMode, AccessType, BlockVolume, MountVolume, access_mode::Mode},
    },
};
use cstor_csi_node::{
    NodeConfig, NodeDriver, Waits,
    iscsi::IscsiAttacher,
    kube::{NodeInfo, VolumeApi},
    memory::MemoryVolumeApi,
    mount_table::MountTable,
};
use cstor_iscsi::fake::FakeIscsiadm;

pub const NODE: &str = "node-a";
pub const NS: &str = "openebs";

/// Runs `body` on a thread of its own in a new, private mount namespace, with a
/// current-thread runtime so that every child process (mount, mkfs, ...) is in it too.
/// Mounts made by the test vanish with the namespace.
pub fn in_mount_ns<F, Fut>(body: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let handle = std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
            .expect("unshare(CLONE_NEWNS): tests must run as root");
        nix::mount::mount(
            None::<&str>,
            "/",
            None::<&str>,
            nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .expect("make / rprivate");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(body());
    });
    if let Err(panic) = handle.join() {
        std::panic::resume_unwind(panic);
    }
}

/// `losetup -f --show` of a sparse file; detached on drop.
#[derive(Debug)]
pub struct LoopDevice {
    pub path: PathBuf,
    pub image: PathBuf,
}

pub fn sparse_file(path: &Path, size: u64) {
    let f = std::fs::File::create(path).expect("create image");
    f.set_len(size).expect("size image");
}

pub fn losetup(image: &Path) -> PathBuf {
    let out = Command::new("losetup")
        .args(["-f", "--show"])
        .arg(image)
        .output()
        .expect("run losetup");
    assert!(
        out.status.success(),
        "losetup -f --show: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

pub fn losetup_detach(dev: &Path) {
    // A read-only flag set by a read-only block publish would outlive the attachment.
    let _ = Command::new("blockdev").arg("--setrw").arg(dev).output();
    let _ = Command::new("losetup").arg("-d").arg(dev).output();
}

impl LoopDevice {
    pub fn new(image: &Path, size: u64) -> Self {
        sparse_file(image, size);
        Self {
            path: losetup(image),
            image: image.to_path_buf(),
        }
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        losetup_detach(&self.path);
    }
}

/// A recorded `iscsiadm` (`cstor_iscsi::fake`): sessions live in memory; `--login` attaches the
/// LUN's image with `losetup -f --show` and links it under the device root as udev would;
/// `--rescan` is `losetup -c`; `--logout` detaches.
#[derive(Clone, Debug)]
pub struct FakeIscsi {
    sim: FakeIscsiadm,
    /// iqn → image file of its LUN
    luns: Arc<Mutex<BTreeMap<String, PathBuf>>>,
}

impl FakeIscsi {
    pub fn new(dev_root: &Path) -> Self {
        let luns: Arc<Mutex<BTreeMap<String, PathBuf>>> = Arc::default();
        let images = luns.clone();
        let sim = FakeIscsiadm::new(dev_root)
            .with_fallback(Arc::new(HostRunner::new()))
            .on_login(move |t, _lun| {
                let image = images.lock().unwrap().get(t.iqn.as_str()).cloned();
                match image {
                    Some(image) => Ok(Some(losetup(&image))),
                    None => Err(Output::fail(24, "iscsiadm: Login failed: target not found")),
                }
            })
            .on_logout(|_, _, dev| losetup_detach(dev))
            .on_rescan(|_, _, dev| {
                let out = Command::new("losetup").arg("-c").arg(dev).output().unwrap();
                assert!(out.status.success(), "losetup -c");
                Ok(())
            });
        Self { sim, luns }
    }

    /// The image file that `--login` to `iqn` attaches.
    pub fn add_lun(&self, iqn: &str, image: &Path) {
        self.luns.lock().unwrap().insert(iqn.into(), image.into());
    }

    pub fn logins(&self) -> u32 {
        self.sim.logins()
    }

    pub fn session_device(&self, iqn: &str) -> Option<PathBuf> {
        self.sim.session_device(iqn)
    }

    pub fn has_record(&self, iqn: &str) -> bool {
        self.sim.has_record(iqn)
    }

    /// A runner: iscsiadm answered here, every other command run for real; rules added to it
    /// are tried first.
    pub fn runner(&self) -> ScriptedRunner {
        ScriptedRunner::new().with_fallback(Arc::new(self.sim.clone()))
    }
}

/// One node plugin with a fake iSCSI and an in-memory API, in a temporary directory.
pub struct Harness {
    pub dir: tempfile::TempDir,
    pub dev_root: PathBuf,
    pub api: MemoryVolumeApi,
    pub iscsi: FakeIscsi,
    pub rec: RecordingRunner,
    pub driver: NodeDriver,
    /// Answers TCP connects on the portal.
    pub portal_listener: TcpListener,
    pub portal: String,
}

pub fn short_waits() -> Waits {
    Waits {
        cvc_bound: Duration::from_millis(300),
        volume_ready: Duration::from_millis(300),
        portal_reachable: Duration::from_millis(300),
        device_resize: Duration::from_millis(300),
        poll: Duration::from_millis(50),
    }
}

impl Harness {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let dev_root = dir.path().join("by-path");
        std::fs::create_dir(&dev_root).unwrap();
        let api = MemoryVolumeApi::new();
        api.set_node(NodeInfo {
            name: NODE.into(),
            uid: "uid-node-a".into(),
            ready: true,
            zone: None,
        });
        let iscsi = FakeIscsi::new(&dev_root);
        let rec = RecordingRunner::new(Arc::new(iscsi.runner()));
        let portal_listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let portal = portal_listener.local_addr().unwrap().to_string();
        let driver = Self::driver_with(&rec, &api, &dev_root);
        Self {
            dir,
            dev_root,
            api,
            iscsi,
            rec,
            driver,
            portal_listener,
            portal,
        }
    }

    pub fn driver_with(
        rec: &RecordingRunner,
        api: &MemoryVolumeApi,
        dev_root: &Path,
    ) -> NodeDriver {
        let mut cfg = NodeConfig::new(NODE, NS);
        cfg.waits = short_waits();
        let runner: Arc<dyn Runner> = Arc::new(rec.clone());
        let attacher = IscsiAttacher::new(runner.clone(), dev_root)
            .with_device_timeout(Duration::from_secs(5));
        let api: Arc<dyn VolumeApi> = Arc::new(api.clone());
        NodeDriver::new(cfg, runner, api, Arc::new(attacher))
    }

    /// A new driver over the same API, iSCSI and runner: the plugin restarted.
    pub fn restart(&mut self) {
        self.driver = Self::driver_with(&self.rec, &self.api, &self.dev_root);
    }

    /// A ready volume whose LUN is a sparse image of `size` bytes.
    pub fn add_volume(&self, pv: &str, size: u64) -> PathBuf {
        let image = self.dir.path().join(format!("{pv}.img"));
        sparse_file(&image, size);
        self.api.add_ready_volume(pv, &self.portal);
        self.iscsi.add_lun(&cstor_api::naming::iqn(pv), &image);
        image
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// A directory under the harness (the CO's staging dir, a pod's volume dir, ...).
    pub fn mkdir(&self, rel: &str) -> PathBuf {
        let p = self.path(rel);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    pub fn mounts(&self) -> MountTable {
        MountTable::read().unwrap()
    }

    /// Mounts under the harness directory.
    pub fn our_mounts(&self) -> Vec<PathBuf> {
        self.mounts()
            .mounts
            .into_iter()
            .map(|m| m.mount_point)
            .filter(|p| p.starts_with(self.dir.path()))
            .collect()
    }

    pub fn commands(&self, program: &str) -> Vec<String> {
        self.rec
            .lines()
            .into_iter()
            .filter(|l| l.starts_with(&format!("{program} ")))
            .collect()
    }
}

pub fn mount_cap(fs: &str) -> VolumeCapability {
    VolumeCapability {
        access_mode: Some(AccessMode {
            mode: Mode::SingleNodeWriter as i32,
        }),
        access_type: Some(AccessType::Mount(MountVolume {
            fs_type: fs.into(),
            mount_flags: vec![],
            volume_mount_group: String::new(),
        })),
    }
}

pub fn block_cap() -> VolumeCapability {
    VolumeCapability {
        access_mode: Some(AccessMode {
            mode: Mode::SingleNodeWriter as i32,
        }),
        access_type: Some(AccessType::Block(BlockVolume {})),
    }
}

pub fn stage_req(pv: &str, staging: &Path, cap: VolumeCapability) -> NodeStageVolumeRequest {
    NodeStageVolumeRequest {
        volume_id: pv.into(),
        staging_target_path: staging.display().to_string(),
        volume_capability: Some(cap),
        ..Default::default()
    }
}

pub fn unstage_req(pv: &str, staging: &Path) -> NodeUnstageVolumeRequest {
    NodeUnstageVolumeRequest {
        volume_id: pv.into(),
        staging_target_path: staging.display().to_string(),
    }
}

pub fn publish_req(
    pv: &str,
    staging: &Path,
    target: &Path,
    cap: VolumeCapability,
    readonly: bool,
) -> NodePublishVolumeRequest {
    NodePublishVolumeRequest {
        volume_id: pv.into(),
        staging_target_path: staging.display().to_string(),
        target_path: target.display().to_string(),
        volume_capability: Some(cap),
        readonly,
        ..Default::default()
    }
}

pub fn unpublish_req(pv: &str, target: &Path) -> NodeUnpublishVolumeRequest {
    NodeUnpublishVolumeRequest {
        volume_id: pv.into(),
        target_path: target.display().to_string(),
    }
}

pub fn stats_req(pv: &str, path: &Path) -> NodeGetVolumeStatsRequest {
    NodeGetVolumeStatsRequest {
        volume_id: pv.into(),
        volume_path: path.display().to_string(),
        staging_target_path: String::new(),
    }
}

pub fn expand_req(pv: &str, path: &Path) -> NodeExpandVolumeRequest {
    NodeExpandVolumeRequest {
        volume_id: pv.into(),
        volume_path: path.display().to_string(),
        ..Default::default()
    }
}

pub const MIB: u64 = 1024 * 1024;
