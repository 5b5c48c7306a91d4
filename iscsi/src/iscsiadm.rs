//! The typed `iscsiadm` wrapper: node records, login/logout, sessions, rescans, discovery, and the
//! idempotent [`Iscsiadm::attach`] / [`Iscsiadm::detach`] built from them.

use std::{collections::BTreeMap, fmt, path::PathBuf, sync::Arc, time::Duration};

use cstor_exec::{Cmd, Output, Runner};

use crate::{
    Error,
    device::DeviceWaiter,
    error::code,
    parse::{
        PortalTarget, Session, SessionDetail, parse_portal_targets, parse_record,
        parse_session_details, parse_sessions,
    },
    target::{Portal, Target},
};

/// Default per-call deadline for one `iscsiadm` run. A login to an unreachable portal can take
/// `node.session.initial_login_retry_max` × `node.conn[0].timeo.login_timeout` (8 × 15 s with
/// open-iscsi's defaults); lower those settings through [`AttachOptions::settings`] or raise
/// this with [`Iscsiadm::with_timeout`].
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// How often a node-record command that failed with exit 6 (record database) is tried in all.
pub const RECORD_DB_ATTEMPTS: u32 = 5;
const RECORD_DB_RETRY_DELAY: Duration = Duration::from_millis(25);

/// One node-record database command at a time in this process (see `exec_record_db`).
static RECORD_DB_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Default time [`Iscsiadm::attach`] waits for the by-path link after a login.
pub const DEFAULT_DEVICE_TIMEOUT: Duration = Duration::from_secs(20);

/// CHAP credentials written into the node record (`node.session.auth.*`).
#[derive(Clone, PartialEq, Eq)]
pub struct Chap {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Chap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chap")
            .field("username", &self.username)
            .field("password", &"***")
            .finish()
    }
}

/// How [`Iscsiadm::attach`] sets up the node record and how long it waits for the device.
#[derive(Clone, Debug)]
pub struct AttachOptions {
    /// One-way CHAP; `None` leaves the record's `authmethod` at `None`.
    pub chap: Option<Chap>,
    /// Extra `node.*` settings applied (in order) after `node.startup = manual`, e.g.
    /// `("node.session.timeo.replacement_timeout", "120")`.
    pub settings: Vec<(String, String)>,
    /// How long to wait for `/dev/disk/by-path/...-lun-<n>` after the login.
    pub device_timeout: Duration,
}

impl Default for AttachOptions {
    fn default() -> Self {
        Self {
            chap: None,
            settings: Vec::new(),
            device_timeout: DEFAULT_DEVICE_TIMEOUT,
        }
    }
}

/// What [`Iscsiadm::attach`] returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachedDevice {
    pub target: Target,
    pub lun: u64,
    /// The udev link, e.g. `/dev/disk/by-path/ip-10.0.0.5:3260-iscsi-iqn...-lun-0`.
    pub by_path: PathBuf,
    /// The link resolved with `canonicalize`, e.g. `/dev/sdb`.
    pub device: PathBuf,
    /// `true` when this call logged in; `false` when an existing session was reused.
    pub logged_in: bool,
    /// The session id, when the session already existed.
    pub sid: Option<u32>,
}

/// Result of [`Iscsiadm::login`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Login {
    LoggedIn,
    /// iscsiadm answered 15 (session exists): nothing was done.
    AlreadyLoggedIn,
}

/// Result of [`Iscsiadm::logout`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logout {
    LoggedOut,
    /// iscsiadm answered 21 or 2 (no matching session): nothing was done.
    NotLoggedIn,
}

/// What [`Iscsiadm::detach`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Detached {
    /// A session was logged out.
    pub logged_out: bool,
    /// A node record was deleted.
    pub record_deleted: bool,
}

/// Typed `iscsiadm`, run through the shared command-runner seam with a per-call timeout.
#[derive(Clone, Debug)]
pub struct Iscsiadm {
    runner: Arc<dyn Runner>,
    timeout: Duration,
    program: String,
    devices: DeviceWaiter,
}

impl Iscsiadm {
    /// `iscsiadm` from `PATH`, [`DEFAULT_CALL_TIMEOUT`] per call, devices under
    /// `/dev/disk/by-path`.
    pub fn new(runner: Arc<dyn Runner>) -> Self {
        Self {
            runner,
            timeout: DEFAULT_CALL_TIMEOUT,
            program: "iscsiadm".to_string(),
            devices: DeviceWaiter::default(),
        }
    }

    /// Deadline for each single `iscsiadm` run; the process is killed when it passes.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The program to run (a path, or a name the runner maps, e.g. a chroot wrapper).
    pub fn with_program(mut self, program: impl Into<String>) -> Self {
        self.program = program.into();
        self
    }

    /// Where [`attach`](Self::attach) looks for by-path links (tests use a temporary root).
    pub fn with_device_waiter(mut self, devices: DeviceWaiter) -> Self {
        self.devices = devices;
        self
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn program(&self) -> &str {
        &self.program
    }

    pub fn device_waiter(&self) -> &DeviceWaiter {
        &self.devices
    }

    fn cmd<I, S>(&self, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Cmd::new(self.program.clone())
            .args(args)
            .timeout(self.timeout)
    }

    fn node_cmd(&self, target: &Target) -> Cmd {
        self.cmd([
            "-m",
            "node",
            "-T",
            target.iqn.as_str(),
            "-p",
            &target.portal.to_string(),
            "-I",
            &target.iface,
        ])
    }

    /// Runs `cmd`; the `Output` comes back whatever the exit code, runner failures are typed.
    async fn exec(&self, cmd: &Cmd) -> Result<Output, Error> {
        self.runner
            .run(cmd)
            .await
            .map_err(|e| Error::from_exec(cmd, e))
    }

    /// Runs a command that reads or writes the node record database (`-o new|update|delete|show`
    /// and the record list). iscsiadm walks every record directory for these, so a record that
    /// another iscsiadm deletes meanwhile makes it fail with exit 6 ("could not stat"). Calls
    /// from this process are serialised by one lock; other processes are outlived by retrying
    /// exit 6 a bounded number of times ([`RECORD_DB_ATTEMPTS`]).
    async fn exec_record_db(&self, cmd: &Cmd) -> Result<Output, Error> {
        let mut attempt = 1;
        loop {
            let out = {
                let _db = RECORD_DB_LOCK.lock().await;
                self.exec(cmd).await?
            };
            if out.success() {
                return Ok(out);
            }
            if out.code != Some(code::IDBM) || attempt >= RECORD_DB_ATTEMPTS {
                return Err(Error::from_output(cmd, &out));
            }
            tracing::debug!(command = %cmd, attempt, "iscsiadm record database busy (exit 6): retrying");
            tokio::time::sleep(RECORD_DB_RETRY_DELAY * attempt).await;
            attempt += 1;
        }
    }

    /// Runs `cmd` and turns a non-zero exit into the typed error for its code.
    async fn exec_ok(&self, cmd: &Cmd) -> Result<Output, Error> {
        let out = self.exec(cmd).await?;
        if out.success() {
            Ok(out)
        } else {
            Err(Error::from_output(cmd, &out))
        }
    }

    /// SendTargets discovery: `iscsiadm -m discovery -t sendtargets -p <portal>`. Returns the
    /// targets the portal reported (iscsiadm also records them as node records). On failure the
    /// discovery record iscsiadm leaves behind is deleted again.
    pub async fn discover(&self, portal: &Portal) -> Result<Vec<PortalTarget>, Error> {
        let p = portal.to_string();
        let cmd = self.cmd(["-m", "discovery", "-t", "sendtargets", "-p", &p]);
        match self.exec_ok(&cmd).await {
            Ok(out) => Ok(parse_portal_targets(&out.stdout)),
            Err(err) => {
                let cleanup = self.cmd([
                    "-m",
                    "discoverydb",
                    "-t",
                    "sendtargets",
                    "-p",
                    &p,
                    "-o",
                    "delete",
                ]);
                match self.exec(&cleanup).await {
                    Ok(out) if out.success() => {
                        tracing::debug!(portal = %p, "deleted the discovery record of a failed discovery");
                    }
                    // 6 / 21: iscsiadm left no record behind.
                    Ok(out) if matches!(out.code, Some(code::IDBM | code::NO_OBJECTS)) => {}
                    Ok(out) => {
                        tracing::warn!(portal = %p, error = %Error::from_output(&cleanup, &out), "cannot delete the discovery record after a failed discovery")
                    }
                    Err(e) => {
                        tracing::warn!(portal = %p, error = %e, "cannot delete the discovery record after a failed discovery")
                    }
                }
                Err(err)
            }
        }
    }

    /// Creates the node record (`-o new`). iscsiadm answers 0 also when the record exists, and
    /// then resets it to the defaults of iscsid.conf: apply settings after creating.
    pub async fn node_create(&self, target: &Target) -> Result<(), Error> {
        let cmd = self.node_cmd(target).args(["-o", "new"]);
        self.exec_record_db(&cmd).await.map(drop)
    }

    /// Sets one setting of the node record (`-o update -n <key> -v <value>`); 21 if there is no
    /// record. Values of keys containing `password` are masked in errors.
    pub async fn node_update(&self, target: &Target, key: &str, value: &str) -> Result<(), Error> {
        validate_setting(key, value)?;
        let cmd = self
            .node_cmd(target)
            .args(["-o", "update", "-n", key, "-v"]);
        // Passwords are passed to iscsiadm but never shown in logs or errors.
        let cmd = if key.to_ascii_lowercase().contains("password") {
            cmd.secret_arg(value)
        } else {
            cmd.arg(value)
        };
        self.exec_record_db(&cmd).await.map(drop)
    }

    /// Deletes the node record; `Ok(false)` when there was none (exit 21).
    pub async fn node_delete(&self, target: &Target) -> Result<bool, Error> {
        let cmd = self.node_cmd(target).args(["-o", "delete"]);
        match self.exec_record_db(&cmd).await {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some(code::NO_OBJECTS) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The node record's settings (`-o show`), `None` when there is no record (exit 21).
    pub async fn node_record(
        &self,
        target: &Target,
    ) -> Result<Option<BTreeMap<String, String>>, Error> {
        let cmd = self.node_cmd(target).args(["-o", "show"]);
        match self.exec_record_db(&cmd).await {
            Ok(out) => Ok(Some(parse_record(&out.stdout))),
            Err(e) if e.code() == Some(code::NO_OBJECTS) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// All node records (`-m node`); empty when there are none (exit 21).
    pub async fn nodes(&self) -> Result<Vec<PortalTarget>, Error> {
        let cmd = self.cmd(["-m", "node"]);
        match self.exec_record_db(&cmd).await {
            Ok(out) => Ok(parse_portal_targets(&out.stdout)),
            Err(e) if e.code() == Some(code::NO_OBJECTS) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// Logs in through the node record (`--login`); exit 15 (session exists) is
    /// [`Login::AlreadyLoggedIn`].
    pub async fn login(&self, target: &Target) -> Result<Login, Error> {
        let cmd = self.node_cmd(target).arg("--login");
        let out = self.exec(&cmd).await?;
        match out.code {
            Some(0) => {
                tracing::info!(target = %target, "iSCSI login done");
                Ok(Login::LoggedIn)
            }
            Some(code::SESSION_EXISTS) => Ok(Login::AlreadyLoggedIn),
            _ => Err(Error::from_output(&cmd, &out)),
        }
    }

    /// Logs out (`--logout`); exit 21 or 2 (no such session) is [`Logout::NotLoggedIn`].
    pub async fn logout(&self, target: &Target) -> Result<Logout, Error> {
        let cmd = self.node_cmd(target).arg("--logout");
        let out = self.exec(&cmd).await?;
        match out.code {
            Some(0) => {
                tracing::info!(target = %target, "iSCSI logout done");
                Ok(Logout::LoggedOut)
            }
            Some(code::NO_OBJECTS | code::SESSION_NOT_FOUND) => Ok(Logout::NotLoggedIn),
            _ => Err(Error::from_output(&cmd, &out)),
        }
    }

    /// Active sessions (`-m session`); exit 21 (no sessions) is an empty list.
    pub async fn sessions(&self) -> Result<Vec<Session>, Error> {
        let cmd = self.cmd(["-m", "session"]);
        match self.exec_ok(&cmd).await {
            Ok(out) => Ok(parse_sessions(&out.stdout)),
            Err(e) if e.code() == Some(code::NO_OBJECTS) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// Active sessions with states and attached disks (`-m session -P 3`); exit 21 is empty.
    pub async fn session_details(&self) -> Result<Vec<SessionDetail>, Error> {
        let cmd = self.cmd(["-m", "session", "-P", "3"]);
        match self.exec_ok(&cmd).await {
            Ok(out) => Ok(parse_session_details(&out.stdout)),
            Err(e) if e.code() == Some(code::NO_OBJECTS) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// The session to `target`'s IQN through its portal, if any.
    pub async fn session_for(&self, target: &Target) -> Result<Option<Session>, Error> {
        Ok(self
            .sessions()
            .await?
            .into_iter()
            .find(|s| s.is_for(target)))
    }

    /// Rescans one session's LUNs (`-m session -r <sid> --rescan`), e.g. after the volume grew.
    pub async fn rescan(&self, session: &Session) -> Result<(), Error> {
        let sid = session.sid.to_string();
        let cmd = self.cmd(["-m", "session", "-r", &sid, "--rescan"]);
        self.exec_ok(&cmd).await.map(drop)
    }

    /// Rescans the session of exactly this target, portal and iface
    /// (`-m node -T <iqn> -p <portal> -I <iface> --rescan`); [`Error::NotFound`] without one.
    pub async fn rescan_target(&self, target: &Target) -> Result<(), Error> {
        let cmd = self.node_cmd(target).arg("--rescan");
        self.exec_ok(&cmd).await.map(drop)
    }

    /// Makes LUN `lun` of `target` available as a block device and returns it. Idempotent:
    ///
    /// 1. if a session to the target exists and the by-path link resolves, returns it without
    ///    any other command (if the link is missing, the session is rescanned and waited for);
    /// 2. otherwise creates the node record and sets `node.startup = manual`, CHAP and
    ///    [`AttachOptions::settings`];
    /// 3. logs in (exit 15 counts as logged in); on failure the node record is deleted again
    ///    (after a timed-out login the session is also logged out, in case iscsid completes it);
    /// 4. waits for `<device root>/ip-<ip>:<port>-iscsi-<iqn>-lun-<lun>` and resolves it; if it
    ///    does not appear, a login made by this call is undone (logout, record deleted) and
    ///    [`Error::DeviceTimeout`] is returned.
    pub async fn attach(
        &self,
        target: &Target,
        lun: u64,
        opts: &AttachOptions,
    ) -> Result<AttachedDevice, Error> {
        for (k, v) in &opts.settings {
            validate_setting(k, v)?;
        }
        let link = self.devices.link_path(target, lun);
        let done = |device: PathBuf, logged_in: bool, sid: Option<u32>| AttachedDevice {
            target: target.clone(),
            lun,
            by_path: link.clone(),
            device,
            logged_in,
            sid,
        };

        if let Some(session) = self.session_for(target).await? {
            if let Some(dev) = self.devices.resolve(&link).await? {
                tracing::debug!(target = %target, device = %dev.display(), "already attached");
                return Ok(done(dev, false, Some(session.sid)));
            }
            tracing::info!(target = %target, sid = session.sid, "session exists but {} is missing: rescanning", link.display());
            self.rescan(&session).await?;
            let dev = self.devices.wait(&link, opts.device_timeout).await?;
            return Ok(done(dev, false, Some(session.sid)));
        }

        if let Err(e) = self.prepare_node(target, opts).await {
            self.delete_record_after_failure(target).await;
            return Err(e);
        }
        let login = match self.login(target).await {
            Ok(l) => l,
            Err(e) => {
                if matches!(e, Error::Timeout { .. }) {
                    self.logout_after_failure(target).await;
                }
                self.delete_record_after_failure(target).await;
                return Err(e);
            }
        };
        match self.devices.wait(&link, opts.device_timeout).await {
            Ok(dev) => Ok(done(dev, login == Login::LoggedIn, None)),
            Err(e) => {
                if login == Login::LoggedIn {
                    self.logout_after_failure(target).await;
                    self.delete_record_after_failure(target).await;
                }
                Err(e)
            }
        }
    }

    async fn prepare_node(&self, target: &Target, opts: &AttachOptions) -> Result<(), Error> {
        self.node_create(target).await?;
        self.node_update(target, "node.startup", "manual").await?;
        if let Some(chap) = &opts.chap {
            self.node_update(target, "node.session.auth.authmethod", "CHAP")
                .await?;
            self.node_update(target, "node.session.auth.username", &chap.username)
                .await?;
            self.node_update(target, "node.session.auth.password", &chap.password)
                .await?;
        }
        for (k, v) in &opts.settings {
            self.node_update(target, k, v).await?;
        }
        Ok(())
    }

    async fn delete_record_after_failure(&self, target: &Target) {
        if let Err(e) = self.node_delete(target).await {
            tracing::warn!(target = %target, error = %e, "cannot delete the node record after a failed attach");
        }
    }

    async fn logout_after_failure(&self, target: &Target) {
        if let Err(e) = self.logout(target).await {
            tracing::warn!(target = %target, error = %e, "cannot log out after a failed attach");
        }
    }

    /// Logs out of `target` and deletes its node record. Idempotent: no session (21/2) and no
    /// record (21) are success. The record is kept when the logout fails, so it can be retried.
    pub async fn detach(&self, target: &Target) -> Result<Detached, Error> {
        let logged_out = self.logout(target).await? == Logout::LoggedOut;
        let record_deleted = self.node_delete(target).await?;
        Ok(Detached {
            logged_out,
            record_deleted,
        })
    }
}

/// Node-record keys are `node.xxx[.yyy]` words (`node.conn[0].timeo.login_timeout`); values are
/// one line.
fn validate_setting(key: &str, value: &str) -> Result<(), Error> {
    let key_ok = key.starts_with("node.")
        && key.len() > 5
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '[' | ']' | '-'));
    if !key_ok {
        return Err(Error::Invalid {
            field: "setting",
            value: key.to_string(),
            reason: "node record keys look like node.session.timeo.replacement_timeout (see `iscsiadm -m node -o show`)".into(),
        });
    }
    if value.contains(['\n', '\r', '\0']) {
        let shown = if key.to_ascii_lowercase().contains("password") {
            "***".to_string()
        } else {
            value.to_string()
        };
        return Err(Error::Invalid {
            field: "setting value",
            value: shown,
            reason: format!("the value of {key} must be a single line"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_validated() {
        validate_setting("node.conn[0].timeo.login_timeout", "5").unwrap();
        validate_setting("node.session.auth.username", "").unwrap();
        for bad in ["", "node.", "session.x", "node.a b", "node.x;rm"] {
            let e = validate_setting(bad, "1").unwrap_err();
            assert!(
                matches!(
                    e,
                    Error::Invalid {
                        field: "setting",
                        ..
                    }
                ),
                "{bad}: {e}"
            );
        }
        let e = validate_setting("node.session.auth.password", "a\nb").unwrap_err();
        assert!(!e.to_string().contains("a\nb"), "{e}");
    }

    #[test]
    fn chap_debug_hides_the_password() {
        let c = Chap {
            username: "u".into(),
            password: "topsecret".into(),
        };
        assert!(!format!("{c:?}").contains("topsecret"));
    }
}
