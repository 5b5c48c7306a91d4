//! A simulated open-iscsi `iscsiadm` for tests, behind the command-runner seam.
//!
//! [`FakeIscsiadm`] implements [`Runner`] and answers the command lines [`crate::Iscsiadm`]
//! runs with open-iscsi 2.1's outputs and exit codes, over in-memory node records, discovery
//! records and sessions. What a LUN *is* differs per test suite, so that part is a hook:
//!
//! * [`FakeIscsiadm::on_login`] makes the LUN of a new session appear and returns the device the
//!   by-path link ([`by_path_name`] under the device root) points at, `None` for a session whose
//!   LUN never shows up, or the `Output` of a failed login;
//! * [`FakeIscsiadm::on_logout`] releases that device when the session ends (also for sessions
//!   still open when the last clone of the fake is dropped);
//! * [`FakeIscsiadm::on_rescan`] re-reads the device (`-m session -r <sid> --rescan`,
//!   `-m node ... --rescan`); a rescan also recreates a missing by-path link, as udev would;
//! * [`FakeIscsiadm::on_discovery`] answers SendTargets discovery of a portal.
//!
//! Every target exposes one LUN, [`LUN`]. Commands of other programs go to the fallback runner
//! ([`FakeIscsiadm::with_fallback`]); an `iscsiadm` command line the simulation does not know is
//! [`ExecError::NotRecorded`], so a test never runs something unexpected.
//!
//! Hooks run while the simulation's state is locked: they must not call back into the fake.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard},
};

use async_trait::async_trait;
use cstor_exec::{Cmd, ExecError, Output, Runner};

use crate::{
    device::by_path_name,
    target::{DEFAULT_IFACE, Portal, Target},
};

/// The LUN number every simulated target exposes.
pub const LUN: u64 = 0;

/// The `# BEGIN RECORD` version `-o show` reports.
const RECORD_VERSION: &str = "2.1.8";

/// Makes the LUN of a new session appear: the device its by-path link points at, `None` when
/// the LUN never shows up, `Err` with what iscsiadm answers when the login fails.
pub type LoginHook = dyn Fn(&Target, u64) -> Result<Option<PathBuf>, Output> + Send + Sync;
/// Releases the device of a session that ended.
pub type LogoutHook = dyn Fn(&Target, u64, &Path) + Send + Sync;
/// Re-reads the device of a session; `Err` with what iscsiadm answers when that fails.
pub type RescanHook = dyn Fn(&Target, u64, &Path) -> Result<(), Output> + Send + Sync;
/// The target names a portal reports to SendTargets discovery, or what iscsiadm answers when
/// discovery fails.
pub type DiscoveryHook = dyn Fn(&Portal) -> Result<Vec<String>, Output> + Send + Sync;

/// A node record: target, portal and iface as given on the command line, and its settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeRecord {
    pub iqn: String,
    pub portal: String,
    pub iface: String,
    pub settings: BTreeMap<String, String>,
}

/// An open session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeSession {
    pub sid: u32,
    pub target: Target,
    /// The device the login hook returned; `None` when the LUN never appeared.
    pub device: Option<PathBuf>,
}

/// (iqn, portal, iface) exactly as given on the command line.
type Key = (String, String, String);

struct Hooks {
    login: Box<LoginHook>,
    logout: Box<LogoutHook>,
    rescan: Box<RescanHook>,
    discovery: Box<DiscoveryHook>,
}

impl Default for Hooks {
    fn default() -> Self {
        Self {
            login: Box::new(|_, _| Ok(None)),
            logout: Box::new(|_, _, _| {}),
            rescan: Box::new(|_, _, _| Ok(())),
            discovery: Box::new(|_| Err(Output::fail(21, "iscsiadm: No portals found\n"))),
        }
    }
}

struct State {
    dev_root: PathBuf,
    records: BTreeMap<Key, BTreeMap<String, String>>,
    /// sid -> (record key, session)
    sessions: BTreeMap<u32, (Key, FakeSession)>,
    discovery: BTreeSet<String>,
    next_sid: u32,
    logins: u32,
    hooks: Hooks,
}

impl State {
    fn link(&self, target: &Target) -> PathBuf {
        self.dev_root
            .join(by_path_name(&target.portal, &target.iqn, LUN))
    }

    fn sid_of(&self, key: &Key) -> Option<u32> {
        self.sessions
            .iter()
            .find(|(_, (k, _))| k == key)
            .map(|(sid, _)| *sid)
    }

    /// Runs the rescan hook and puts back a missing by-path link, as udev does after a rescan.
    fn rescan(&self, sid: u32) -> Result<(), Output> {
        let Some((_, s)) = self.sessions.get(&sid) else {
            return Ok(());
        };
        let Some(dev) = &s.device else {
            return Ok(());
        };
        (self.hooks.rescan)(&s.target, LUN, dev)?;
        let link = self.link(&s.target);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(dev, &link)
                .map_err(|e| Output::fail(1, format!("iscsiadm: {}: {e}\n", link.display())))?;
        }
        Ok(())
    }
}

impl Drop for State {
    fn drop(&mut self) {
        for (_, (_, s)) in std::mem::take(&mut self.sessions) {
            if let Some(dev) = &s.device {
                let _ = std::fs::remove_file(self.link(&s.target));
                (self.hooks.logout)(&s.target, LUN, dev);
            }
        }
    }
}

/// The simulated `iscsiadm`; clones share one state. See the [module docs](self).
#[derive(Clone)]
pub struct FakeIscsiadm {
    program: String,
    state: Arc<Mutex<State>>,
    fallback: Option<Arc<dyn Runner>>,
}

impl fmt::Debug for FakeIscsiadm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.lock();
        f.debug_struct("FakeIscsiadm")
            .field("program", &self.program)
            .field("dev_root", &s.dev_root)
            .field("records", &s.records.len())
            .field("sessions", &s.sessions.len())
            .field("fallback", &self.fallback)
            .finish()
    }
}

impl FakeIscsiadm {
    /// A simulation without records or sessions whose by-path links go under `dev_root`. Until
    /// hooks are set, a login succeeds without a device and discovery finds nothing.
    pub fn new(dev_root: impl Into<PathBuf>) -> Self {
        Self {
            program: "iscsiadm".into(),
            state: Arc::new(Mutex::new(State {
                dev_root: dev_root.into(),
                records: BTreeMap::new(),
                sessions: BTreeMap::new(),
                discovery: BTreeSet::new(),
                next_sid: 1,
                logins: 0,
                hooks: Hooks::default(),
            })),
            fallback: None,
        }
    }

    /// The program name answered here (`iscsiadm` by default).
    pub fn with_program(mut self, program: impl Into<String>) -> Self {
        self.program = program.into();
        self
    }

    /// Commands of other programs run on `runner` (without one they are `NotRecorded`).
    pub fn with_fallback(mut self, runner: Arc<dyn Runner>) -> Self {
        self.fallback = Some(runner);
        self
    }

    pub fn on_login<F>(self, f: F) -> Self
    where
        F: Fn(&Target, u64) -> Result<Option<PathBuf>, Output> + Send + Sync + 'static,
    {
        self.lock().hooks.login = Box::new(f);
        self
    }

    pub fn on_logout<F>(self, f: F) -> Self
    where
        F: Fn(&Target, u64, &Path) + Send + Sync + 'static,
    {
        self.lock().hooks.logout = Box::new(f);
        self
    }

    pub fn on_rescan<F>(self, f: F) -> Self
    where
        F: Fn(&Target, u64, &Path) -> Result<(), Output> + Send + Sync + 'static,
    {
        self.lock().hooks.rescan = Box::new(f);
        self
    }

    pub fn on_discovery<F>(self, f: F) -> Self
    where
        F: Fn(&Portal) -> Result<Vec<String>, Output> + Send + Sync + 'static,
    {
        self.lock().hooks.discovery = Box::new(f);
        self
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where the by-path links go.
    pub fn dev_root(&self) -> PathBuf {
        self.lock().dev_root.clone()
    }

    /// Successful logins so far.
    pub fn logins(&self) -> u32 {
        self.lock().logins
    }

    /// Open sessions, by sid.
    pub fn sessions(&self) -> Vec<FakeSession> {
        self.lock()
            .sessions
            .values()
            .map(|(_, s)| s.clone())
            .collect()
    }

    /// The device of the (first) session to `iqn`.
    pub fn session_device(&self, iqn: &str) -> Option<PathBuf> {
        self.lock()
            .sessions
            .values()
            .find(|(k, _)| k.0 == iqn)
            .and_then(|(_, s)| s.device.clone())
    }

    /// Node records.
    pub fn records(&self) -> Vec<FakeRecord> {
        self.lock()
            .records
            .iter()
            .map(|((iqn, portal, iface), settings)| FakeRecord {
                iqn: iqn.clone(),
                portal: portal.clone(),
                iface: iface.clone(),
                settings: settings.clone(),
            })
            .collect()
    }

    /// Whether a node record for `iqn` exists (any portal, any iface).
    pub fn has_record(&self, iqn: &str) -> bool {
        self.lock().records.keys().any(|k| k.0 == iqn)
    }

    /// Portals with a SendTargets discovery record.
    pub fn discovery_records(&self) -> BTreeSet<String> {
        self.lock().discovery.clone()
    }

    /// open-iscsi's answer to `args`; `None` for a command line the simulation does not know.
    fn answer(&self, args: &[String]) -> Option<Output> {
        let flag = |name: &str| {
            args.iter()
                .position(|a| a == name)
                .and_then(|i| args.get(i + 1))
                .map(String::as_str)
        };
        let has = |name: &str| args.iter().any(|a| a == name);
        let mut st = self.lock();
        match flag("-m")? {
            "session" => {
                if let Some(sid) = flag("-r") {
                    if !has("--rescan") {
                        return None;
                    }
                    return Some(session_rescan(&st, sid));
                }
                if args.len() != 2 {
                    return None;
                }
                if st.sessions.is_empty() {
                    return Some(Output::fail(21, "iscsiadm: No active sessions.\n"));
                }
                Some(Output::ok(
                    st.sessions
                        .iter()
                        .map(|(sid, ((iqn, portal, _), _))| {
                            format!("tcp: [{sid}] {portal},1 {iqn} (non-flash)\n")
                        })
                        .collect::<String>(),
                ))
            }
            "discovery" => {
                if flag("-t") != Some("sendtargets") {
                    return None;
                }
                let portal = flag("-p")?.to_string();
                let parsed = match Portal::parse(&portal) {
                    Ok(p) => p,
                    Err(e) => return Some(Output::fail(7, format!("iscsiadm: {e}\n"))),
                };
                st.discovery.insert(portal.clone());
                match (st.hooks.discovery)(&parsed) {
                    Err(out) => Some(out),
                    Ok(iqns) => {
                        let mut text = String::new();
                        for iqn in iqns {
                            st.records
                                .entry((iqn.clone(), portal.clone(), DEFAULT_IFACE.into()))
                                .or_default();
                            text.push_str(&format!("{portal},1 {iqn}\n"));
                        }
                        Some(Output::ok(text))
                    }
                }
            }
            "discoverydb" => {
                let portal = flag("-p")?;
                if flag("-o") != Some("delete") {
                    return None;
                }
                Some(if st.discovery.remove(portal) {
                    Output::ok("")
                } else {
                    Output::fail(
                        6,
                        format!("iscsiadm: Discovery record [{portal}] not found.\n"),
                    )
                })
            }
            "node" => {
                let Some(iqn) = flag("-T") else {
                    return (args.len() == 2).then(|| list_records(&st));
                };
                let key: Key = (
                    iqn.to_string(),
                    flag("-p")?.to_string(),
                    flag("-I").unwrap_or(DEFAULT_IFACE).to_string(),
                );
                let target = match Target::new(&key.0, &key.1, &key.2) {
                    Ok(t) => t,
                    Err(e) => return Some(Output::fail(7, format!("iscsiadm: {e}\n"))),
                };
                if has("--login") {
                    Some(login(&mut st, key, target))
                } else if has("--logout") {
                    Some(logout(&mut st, &key, &target))
                } else if has("--rescan") {
                    Some(match st.sid_of(&key) {
                        Some(sid) => session_rescan(&st, &sid.to_string()),
                        None => Output::fail(21, "iscsiadm: No session found.\n"),
                    })
                } else {
                    node_op(&mut st, key, flag("-o")?, flag("-n"), flag("-v"))
                }
            }
            _ => None,
        }
    }
}

/// How open-iscsi prints a portal in login/logout/rescan messages: `ip,port`.
fn portal_words(t: &Target) -> String {
    format!("{},{}", t.portal.address(), t.portal.port)
}

fn session_rescan(st: &State, sid: &str) -> Output {
    let found = sid
        .parse::<u32>()
        .ok()
        .and_then(|n| st.sessions.get(&n).map(|(_, s)| (n, s.target.clone())));
    let Some((sid, target)) = found else {
        return Output::fail(
            22,
            format!(
                "iscsiadm: could not read session targetname: 5\niscsiadm: Could not get session info for sid {sid}\n"
            ),
        );
    };
    match st.rescan(sid) {
        Ok(()) => Output::ok(format!(
            "Rescanning session [sid: {sid}, target: {}, portal: {}]\n",
            target.iqn,
            portal_words(&target)
        )),
        Err(out) => out,
    }
}

fn list_records(st: &State) -> Output {
    if st.records.is_empty() {
        return Output::fail(21, "iscsiadm: No records found\n");
    }
    Output::ok(
        st.records
            .keys()
            .map(|(iqn, portal, _)| format!("{portal},1 {iqn}\n"))
            .collect::<String>(),
    )
}

fn login(st: &mut State, key: Key, target: Target) -> Output {
    if !st.records.contains_key(&key) {
        return Output::fail(21, "iscsiadm: No records found\n");
    }
    if st.sid_of(&key).is_some() {
        return Output::fail(
            15,
            format!(
                "iscsiadm: {}: 1 session requested, but 1 already present.\n",
                key.2
            ),
        );
    }
    let device = match (st.hooks.login)(&target, LUN) {
        Ok(d) => d,
        Err(out) => return out,
    };
    if let Some(dev) = &device {
        let link = st.link(&target);
        let _ = std::fs::remove_file(&link);
        if let Err(e) = std::os::unix::fs::symlink(dev, &link) {
            (st.hooks.logout)(&target, LUN, dev);
            return Output::fail(8, format!("iscsiadm: {}: {e}\n", link.display()));
        }
    }
    let sid = st.next_sid;
    st.next_sid += 1;
    st.logins += 1;
    let words = format!(
        "[iface: {}, target: {}, portal: {}]",
        target.iface,
        target.iqn,
        portal_words(&target)
    );
    st.sessions.insert(
        sid,
        (
            key,
            FakeSession {
                sid,
                target,
                device,
            },
        ),
    );
    Output::ok(format!(
        "Logging in to {words}\nLogin to {words} successful.\n"
    ))
}

fn logout(st: &mut State, key: &Key, target: &Target) -> Output {
    let Some(sid) = st.sid_of(key) else {
        return Output::fail(21, "iscsiadm: No matching sessions found\n");
    };
    let (_, session) = st.sessions.remove(&sid).expect("sid just found");
    let _ = std::fs::remove_file(st.link(target));
    if let Some(dev) = &session.device {
        (st.hooks.logout)(target, LUN, dev);
    }
    let words = format!(
        "[sid: {sid}, target: {}, portal: {}]",
        target.iqn,
        portal_words(target)
    );
    Output::ok(format!(
        "Logging out of session {words}\nLogout of {words} successful.\n"
    ))
}

/// Whether open-iscsi knows `name` as a node record setting that `-o update` may change.
fn settable(name: &str) -> bool {
    name == "node.startup"
        || name == "node.leading_login"
        || name.starts_with("node.session.")
        || name.starts_with("node.conn[")
        || name.starts_with("iface.")
}

fn node_op(
    st: &mut State,
    key: Key,
    op: &str,
    name: Option<&str>,
    value: Option<&str>,
) -> Option<Output> {
    let no_records = || Output::fail(21, "iscsiadm: No records found\n");
    Some(match op {
        "new" => {
            let text = format!(
                "New iSCSI node [tcp:[hw=,ip=,net_if=,iscsi_if={}] {},-1 {}] added\n",
                key.2, key.1, key.0
            );
            // An existing record is reset to the defaults, as open-iscsi does.
            st.records.insert(key, BTreeMap::new());
            Output::ok(text)
        }
        "update" => {
            let (name, value) = (name?, value?);
            let Some(record) = st.records.get_mut(&key) else {
                return Some(no_records());
            };
            if !settable(name) {
                return Some(Output::fail(
                    7,
                    format!(
                        "iscsiadm: Cannot modify {name}. Invalid param name.\niscsiadm: Could not execute operation on all records: invalid parameter\n"
                    ),
                ));
            }
            record.insert(name.to_string(), value.to_string());
            Output::ok("")
        }
        "delete" => {
            if st.records.remove(&key).is_some() {
                Output::ok("")
            } else {
                no_records()
            }
        }
        "show" => match st.records.get(&key) {
            None => no_records(),
            Some(record) => Output::ok(
                std::iter::once(format!(
                    "# BEGIN RECORD {RECORD_VERSION}\nnode.name = {}\n",
                    key.0
                ))
                .chain(record.iter().map(|(k, v)| format!("{k} = {v}\n")))
                .chain(std::iter::once("# END RECORD\n".to_string()))
                .collect::<String>(),
            ),
        },
        _ => return None,
    })
}

#[async_trait]
impl Runner for FakeIscsiadm {
    async fn run(&self, cmd: &Cmd) -> Result<Output, ExecError> {
        if cmd.program != self.program {
            return match &self.fallback {
                Some(f) => f.run(cmd).await,
                None => Err(ExecError::NotRecorded {
                    command: cmd.line(),
                }),
            };
        }
        self.answer(&cmd.args)
            .ok_or_else(|| ExecError::NotRecorded {
                command: cmd.line(),
            })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use cstor_exec::ScriptedRunner;

    use super::*;

    const IQN: &str = "iqn.2016-09.com.openebs.cstor:pvc-1";

    fn node(args: &str) -> Cmd {
        Cmd::new("iscsiadm")
            .args([
                "-m",
                "node",
                "-T",
                IQN,
                "-p",
                "127.0.0.1:3260",
                "-I",
                "default",
            ])
            .args(args.split_whitespace())
    }

    #[tokio::test]
    async fn records_list_and_unknown_lines_are_not_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let fake = FakeIscsiadm::new(dir.path());
        let list = Cmd::new("iscsiadm").args(["-m", "node"]);
        assert_eq!(fake.run(&list).await.unwrap().code, Some(21));
        assert!(fake.run(&node("-o new")).await.unwrap().success());
        assert_eq!(
            fake.run(&list).await.unwrap().stdout,
            format!("127.0.0.1:3260,1 {IQN}\n")
        );
        assert!(fake.has_record(IQN));
        let unknown = Cmd::new("iscsiadm").args(["-m", "session", "-P", "3"]);
        assert!(matches!(
            fake.run(&unknown).await,
            Err(ExecError::NotRecorded { .. })
        ));
        assert!(matches!(
            fake.run(&Cmd::new("mkfs.ext4")).await,
            Err(ExecError::NotRecorded { .. })
        ));
        let other = ScriptedRunner::new();
        other.on_line("mkfs.ext4", Output::ok("formatted"));
        let fake = fake.with_fallback(Arc::new(other));
        assert_eq!(
            fake.run(&Cmd::new("mkfs.ext4")).await.unwrap().stdout,
            "formatted"
        );
    }

    #[tokio::test]
    async fn login_links_the_device_and_drop_releases_open_sessions() {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("sdx");
        std::fs::write(&disk, b"x").unwrap();
        let released = Arc::new(AtomicU32::new(0));
        let seen = released.clone();
        let dev = disk.clone();
        let fake = FakeIscsiadm::new(dir.path())
            .on_login(move |_, lun| {
                assert_eq!(lun, LUN);
                Ok(Some(dev.clone()))
            })
            .on_logout(move |_, _, _| {
                seen.fetch_add(1, Ordering::SeqCst);
            });
        assert_eq!(fake.run(&node("--login")).await.unwrap().code, Some(21));
        fake.run(&node("-o new")).await.unwrap();
        let out = fake.run(&node("--login")).await.unwrap();
        assert_eq!(
            out.stdout,
            format!(
                "Logging in to [iface: default, target: {IQN}, portal: 127.0.0.1,3260]\n\
                 Login to [iface: default, target: {IQN}, portal: 127.0.0.1,3260] successful.\n"
            )
        );
        let link = dir
            .path()
            .join(format!("ip-127.0.0.1:3260-iscsi-{IQN}-lun-0"));
        assert_eq!(std::fs::read_link(&link).unwrap(), disk);
        assert_eq!(fake.run(&node("--login")).await.unwrap().code, Some(15));
        assert_eq!(fake.session_device(IQN), Some(disk));
        assert_eq!(fake.logins(), 1);
        assert_eq!(released.load(Ordering::SeqCst), 0);
        drop(fake);
        assert_eq!(released.load(Ordering::SeqCst), 1);
        assert!(std::fs::symlink_metadata(&link).is_err());
    }
}
