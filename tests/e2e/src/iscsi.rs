//! The recorded `iscsiadm`: sessions live in memory; `--login` attaches the volume's LUN image
//! (from the [`DataPlane`]) with `losetup -f --show` and creates the by-path link under a test
//! device root, as udev would; `--logout` removes the link and detaches the loop device;
//! `--rescan` is `losetup -c` (the kernel re-reads the LUN size). Every other command runs for
//! real.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
    sync::{Arc, Mutex},
};

use cstor_api::exec::{Cmd, ExecError, HostRunner, Output, ScriptedRunner};

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

#[derive(Debug, Default)]
struct State {
    dev_root: PathBuf,
    records: BTreeMap<(String, String), ()>,
    /// (iqn, portal) → (sid, loop device)
    sessions: BTreeMap<(String, String), (u32, PathBuf)>,
    next_sid: u32,
    logins: u32,
}

impl Drop for State {
    fn drop(&mut self) {
        for (_, (_, dev)) in std::mem::take(&mut self.sessions) {
            losetup_detach(&dev);
        }
    }
}

/// The recorded iscsiadm; loop devices of open sessions are detached when the last clone drops.
#[derive(Clone, Debug)]
pub struct FakeIscsiadm {
    plane: Arc<DataPlane>,
    inner: Arc<Mutex<State>>,
}

fn link_name(portal: &str, iqn: &str) -> String {
    format!("ip-{portal}-iscsi-{iqn}-lun-0")
}

impl FakeIscsiadm {
    pub fn new(plane: Arc<DataPlane>, dev_root: &Path) -> Self {
        Self {
            plane,
            inner: Arc::new(Mutex::new({
                let mut s = State::default();
                s.dev_root = dev_root.to_path_buf();
                s.next_sid = 1;
                s
            })),
        }
    }

    pub fn logins(&self) -> u32 {
        self.lock().logins
    }

    /// Loop devices of the open sessions.
    pub fn session_devices(&self) -> Vec<PathBuf> {
        self.lock()
            .sessions
            .values()
            .map(|(_, d)| d.clone())
            .collect()
    }

    /// The loop device of the session to `iqn`.
    pub fn session_device(&self, iqn: &str) -> Option<PathBuf> {
        self.lock()
            .sessions
            .iter()
            .find(|((i, _), _)| i == iqn)
            .map(|(_, (_, d))| d.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Answers the iscsiadm command lines `cstor-iscsi` runs; `None` for anything else.
    fn answer(&self, cmd: &Cmd) -> Option<Result<Output, ExecError>> {
        if cmd.program != "iscsiadm" {
            return None;
        }
        let a: Vec<&str> = cmd.args.iter().map(String::as_str).collect();
        let arg = |k: &str| {
            a.iter()
                .position(|x| *x == k)
                .and_then(|i| a.get(i + 1))
                .map(|v| v.to_string())
        };
        let mut s = self.lock();
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
                let sid: u32 = sid.parse().unwrap_or(0);
                match s.sessions.values().find(|(x, _)| *x == sid) {
                    Some((_, dev)) => match Command::new("losetup").arg("-c").arg(dev).output() {
                        Ok(o) if o.status.success() => {
                            Output::ok(format!("Rescanning session [sid: {sid}]\n"))
                        }
                        Ok(o) => Output::fail(1, String::from_utf8_lossy(&o.stderr)),
                        Err(e) => Output::fail(1, e.to_string()),
                    },
                    None => Output::fail(21, "iscsiadm: No session found."),
                }
            }
            ["-m", "node", "-T", _, "-p", _, "-I", _, rest @ ..] => {
                let key = (arg("-T")?, arg("-p")?);
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
                            let pv = key.0.rsplit(':').next().unwrap_or_default();
                            let Some(image) = self.plane.lun(pv) else {
                                return Some(Ok(Output::fail(
                                    24,
                                    "iscsiadm: Login failed: target not found",
                                )));
                            };
                            let dev = match losetup(&image) {
                                Ok(d) => d,
                                Err(e) => return Some(Ok(Output::fail(8, e))),
                            };
                            let link = s.dev_root.join(link_name(&key.1, &key.0));
                            let _ = std::fs::remove_file(&link);
                            if let Err(e) = std::os::unix::fs::symlink(&dev, &link) {
                                losetup_detach(&dev);
                                return Some(Ok(Output::fail(8, e.to_string())));
                            }
                            let sid = s.next_sid;
                            s.next_sid += 1;
                            s.logins += 1;
                            s.sessions.insert(key, (sid, dev));
                            Output::ok("Login successful.")
                        }
                    }
                    ["--logout"] => match s.sessions.remove(&key) {
                        Some((_, dev)) => {
                            let _ =
                                std::fs::remove_file(s.dev_root.join(link_name(&key.1, &key.0)));
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
