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
    exec::{Cmd, ExecError, HostRunner, Output, RecordingRunner, Runner, ScriptedRunner},
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

/// A recorded `iscsiadm`: sessions live in memory; `--login` attaches the LUN's image with
/// `losetup -f --show` and links it under the device root as udev would; `--logout` detaches.
#[derive(Clone, Debug, Default)]
pub struct FakeIscsi {
    inner: Arc<Mutex<FakeState>>,
}

#[derive(Debug, Default)]
struct FakeState {
    dev_root: PathBuf,
    luns: BTreeMap<String, PathBuf>,
    records: BTreeMap<(String, String), ()>,
    /// (iqn, portal) → (sid, loop device)
    sessions: BTreeMap<(String, String), (u32, PathBuf)>,
    next_sid: u32,
    logins: u32,
}

impl FakeIscsi {
    pub fn new(dev_root: &Path) -> Self {
        let f = Self::default();
        f.inner.lock().unwrap().dev_root = dev_root.to_path_buf();
        f.inner.lock().unwrap().next_sid = 1;
        f
    }

    /// The image file that `--login` to `iqn` attaches.
    pub fn add_lun(&self, iqn: &str, image: &Path) {
        self.inner
            .lock()
            .unwrap()
            .luns
            .insert(iqn.into(), image.into());
    }

    pub fn logins(&self) -> u32 {
        self.inner.lock().unwrap().logins
    }

    pub fn session_device(&self, iqn: &str) -> Option<PathBuf> {
        self.inner
            .lock()
            .unwrap()
            .sessions
            .iter()
            .find(|((i, _), _)| i == iqn)
            .map(|(_, (_, d))| d.clone())
    }

    pub fn has_record(&self, iqn: &str) -> bool {
        self.inner
            .lock()
            .unwrap()
            .records
            .keys()
            .any(|(i, _)| i == iqn)
    }

    /// Answers the iscsiadm command lines `cstor-iscsi` runs; `None` for anything else.
    fn answer(&self, cmd: &Cmd) -> Option<Result<Output, ExecError>> {
        if cmd.program != "iscsiadm" {
            return None;
        }
        let a: Vec<&str> = cmd.args.iter().map(String::as_str).collect();
        let mut s = self.inner.lock().unwrap();
        let arg = |k: &str| {
            a.iter()
                .position(|x| *x == k)
                .and_then(|i| a.get(i + 1))
                .map(|v| v.to_string())
        };
        Some(Ok(match a.as_slice() {
            ["-m", "session"] => {
                if s.sessions.is_empty() {
                    Output::fail(21, "iscsiadm: No active sessions.")
                } else {
                    Output::ok(
                        s.sessions
                            .iter()
                            .map(|((iqn, portal), (sid, _))| {
                                format!("tcp: [{sid}] {portal},1 {iqn} (non-flash)\n")
                            })
                            .collect::<String>(),
                    )
                }
            }
            ["-m", "session", "-r", sid, "--rescan"] => {
                let sid: u32 = sid.parse().unwrap();
                match s.sessions.values().find(|(x, _)| *x == sid) {
                    Some((_, dev)) => {
                        let out = Command::new("losetup").arg("-c").arg(dev).output().unwrap();
                        assert!(out.status.success(), "losetup -c");
                        Output::ok("Rescanning session [sid: 1]\n")
                    }
                    None => Output::fail(21, "iscsiadm: No session found."),
                }
            }
            ["-m", "node", "-T", _, "-p", _, "-I", _, rest @ ..] => {
                let key = (arg("-T").unwrap(), arg("-p").unwrap());
                match rest {
                    ["-o", "new"] => {
                        s.records.insert(key, ());
                        Output::ok("New iSCSI node added")
                    }
                    ["-o", "update", ..] => {
                        if s.records.contains_key(&key) {
                            Output::ok("")
                        } else {
                            Output::fail(21, "iscsiadm: No records found")
                        }
                    }
                    ["-o", "delete"] => {
                        if s.records.remove(&key).is_some() {
                            Output::ok("")
                        } else {
                            Output::fail(21, "iscsiadm: No records found")
                        }
                    }
                    ["--login"] => {
                        if !s.records.contains_key(&key) {
                            Output::fail(21, "iscsiadm: No records found")
                        } else if s.sessions.contains_key(&key) {
                            Output::fail(
                                15,
                                "iscsiadm: default: 1 session requested, but 1 already present.",
                            )
                        } else {
                            let Some(image) = s.luns.get(&key.0).cloned() else {
                                return Some(Ok(Output::fail(
                                    24,
                                    "iscsiadm: Login failed: target not found",
                                )));
                            };
                            let dev = losetup(&image);
                            let link = s
                                .dev_root
                                .join(format!("ip-{}-iscsi-{}-lun-0", key.1, key.0));
                            let _ = std::fs::remove_file(&link);
                            std::os::unix::fs::symlink(&dev, &link).unwrap();
                            let sid = s.next_sid;
                            s.next_sid += 1;
                            s.logins += 1;
                            s.sessions.insert(key, (sid, dev));
                            Output::ok("Login successful.")
                        }
                    }
                    ["--logout"] => match s.sessions.remove(&key) {
                        Some((_, dev)) => {
                            let link = s
                                .dev_root
                                .join(format!("ip-{}-iscsi-{}-lun-0", key.1, key.0));
                            let _ = std::fs::remove_file(&link);
                            losetup_detach(&dev);
                            Output::ok("Logout successful.")
                        }
                        None => Output::fail(21, "iscsiadm: No matching sessions found"),
                    },
                    _ => return None,
                }
            }
            _ => return None,
        }))
    }

    /// A runner: iscsiadm answered here, every other command run for real.
    pub fn runner(&self) -> ScriptedRunner {
        let s = ScriptedRunner::new().with_fallback(Arc::new(HostRunner::new()));
        let me = self.clone();
        s.on(move |cmd| me.answer(cmd));
        s
    }
}

impl Drop for FakeState {
    fn drop(&mut self) {
        for (_, (_, dev)) in std::mem::take(&mut self.sessions) {
            losetup_detach(&dev);
        }
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
