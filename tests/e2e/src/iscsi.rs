//! The recorded `iscsiadm`: sessions live in memory; `--login` attaches the volume's LUN image
//! (from the [`DataPlane`]) with `losetup -f --show` and creates the by-path link under a test
//! device root, as udev would; `--logout` removes the link and detaches the loop device;
//! `--rescan` is `losetup -c` (the kernel re-reads the LUN size). Every other command runs for
//! real.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
};

use cstor_api::exec::{HostRunner, Output, ScriptedRunner};
use cstor_iscsi::fake;

use crate::dataplane::DataPlane;

/// `losetup -f --show <image>`.
pub fn losetup(image: &Path) -> Result<PathBuf, String> {
    let out = Command::new("losetup")
        .args(["-f", "--show"])
        .arg(image)
        .output()
        .map_err(|e| format!("run losetup: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "losetup -f --show {}: {}",
            image.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// `losetup -d`, after clearing a read-only flag a block publish may have left.
pub fn losetup_detach(dev: &Path) {
    let _ = Command::new("blockdev").arg("--setrw").arg(dev).output();
    let _ = Command::new("losetup").arg("-d").arg(dev).output();
}

/// Loop devices attached to `image` (`losetup -j`).
pub fn loops_of(image: &Path) -> Vec<String> {
    Command::new("losetup")
        .arg("-j")
        .arg(image)
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter_map(|l| l.split(':').next())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// The recorded iscsiadm (`cstor_iscsi::fake`) over the data plane's LUN images; loop devices
/// of open sessions are detached when the last clone drops.
#[derive(Clone, Debug)]
pub struct FakeIscsiadm {
    sim: fake::FakeIscsiadm,
}

impl FakeIscsiadm {
    pub fn new(plane: Arc<DataPlane>, dev_root: &Path) -> Self {
        let sim = fake::FakeIscsiadm::new(dev_root)
            .with_fallback(Arc::new(HostRunner::new()))
            .on_login(move |t, _lun| {
                let pv = t.iqn.as_str().rsplit(':').next().unwrap_or_default();
                let Some(image) = plane.lun(pv) else {
                    return Err(Output::fail(24, "iscsiadm: Login failed: target not found"));
                };
                losetup(&image).map(Some).map_err(|e| Output::fail(8, e))
            })
            .on_logout(|_, _, dev| losetup_detach(dev))
            .on_rescan(
                |_, _, dev| match Command::new("losetup").arg("-c").arg(dev).output() {
                    Ok(o) if o.status.success() => Ok(()),
                    Ok(o) => Err(Output::fail(1, String::from_utf8_lossy(&o.stderr))),
                    Err(e) => Err(Output::fail(1, e.to_string())),
                },
            );
        Self { sim }
    }

    pub fn logins(&self) -> u32 {
        self.sim.logins()
    }

    /// Loop devices of the open sessions.
    pub fn session_devices(&self) -> Vec<PathBuf> {
        self.sim
            .sessions()
            .into_iter()
            .filter_map(|s| s.device)
            .collect()
    }

    /// The loop device of the session to `iqn`.
    pub fn session_device(&self, iqn: &str) -> Option<PathBuf> {
        self.sim.session_device(iqn)
    }

    /// A runner: iscsiadm answered here, every other command run for real.
    pub fn runner(&self) -> ScriptedRunner {
        ScriptedRunner::new().with_fallback(Arc::new(self.sim.clone()))
    }
}
