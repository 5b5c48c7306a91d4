//! Typed `iscsiadm` errors that keep the exit code and iscsiadm's own explanation.

use std::{fmt, path::PathBuf, time::Duration};

use cstor_exec::{Cmd, ExecError, Output};

/// open-iscsi exit codes (`ISCSI_ERR_*` in `iscsi_err.h`, listed in `man iscsiadm`) this crate
/// gives a meaning to.
pub mod code {
    /// ISCSI_ERR_SESS_NOT_FOUND: session could not be found.
    pub const SESSION_NOT_FOUND: i32 = 2;
    /// ISCSI_ERR_TRANS: connect problem caused the operation to fail.
    pub const TRANSPORT: i32 = 4;
    /// ISCSI_ERR_LOGIN: generic login failure.
    pub const LOGIN: i32 = 5;
    /// ISCSI_ERR_IDBM: error accessing the node/discovery database.
    pub const IDBM: i32 = 6;
    /// ISCSI_ERR_INVAL: invalid argument.
    pub const INVALID: i32 = 7;
    /// ISCSI_ERR_TRANS_TIMEOUT: connection timer expired while connecting.
    pub const TRANSPORT_TIMEOUT: i32 = 8;
    /// ISCSI_ERR_PDU_TIMEOUT: an iSCSI PDU timed out.
    pub const PDU_TIMEOUT: i32 = 11;
    /// ISCSI_ERR_TRANS_NOT_FOUND: transport module (iscsi_tcp) not loaded.
    pub const TRANSPORT_NOT_FOUND: i32 = 12;
    /// ISCSI_ERR_SESS_EXISTS: session already logged in.
    pub const SESSION_EXISTS: i32 = 15;
    /// ISCSI_ERR_ISCSID_COMM_ERR: a read/write to iscsid failed.
    pub const ISCSID_COMM: i32 = 18;
    /// ISCSI_ERR_FATAL_LOGIN: fatal login error.
    pub const FATAL_LOGIN: i32 = 19;
    /// ISCSI_ERR_ISCSID_NOTCONN: could not connect to iscsid.
    pub const ISCSID_NOT_CONNECTED: i32 = 20;
    /// ISCSI_ERR_NO_OBJS_FOUND: no records/targets/sessions/portals found.
    pub const NO_OBJECTS: i32 = 21;
    /// ISCSI_ERR_LOGIN_AUTH_FAILED: login failed due to an authorisation failure.
    pub const LOGIN_AUTH_FAILED: i32 = 24;
}

/// One failed `iscsiadm` run: the command (CHAP secrets masked), its exit code, the most useful
/// `iscsiadm:` line it printed, and its whole output for logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub command: String,
    /// `None` when the process was killed by a signal.
    pub code: Option<i32>,
    /// The line that explains the failure, e.g.
    /// `iscsiadm: initiator reported error (20 - could not connect to iscsid)`.
    pub message: String,
    /// stderr followed by stdout, trimmed.
    pub output: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.code {
            Some(c) => write!(
                f,
                "`{}` exited with code {c}: {}",
                self.command, self.message
            ),
            None => write!(
                f,
                "`{}` was killed by a signal: {}",
                self.command, self.message
            ),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An argument failed validation; `field` names it (`iqn`, `portal`, `iface`, `lun`, ...).
    #[error("invalid {field} `{value}`: {reason}")]
    Invalid {
        field: &'static str,
        value: String,
        reason: String,
    },
    /// Exit code 21 (no records/sessions/targets found) or 2 (session not found).
    #[error("{0} (nothing matched: the node record, session or target does not exist)")]
    NotFound(Failure),
    /// Exit code 20 (or 18): iscsiadm could not talk to iscsid.
    #[error(
        "{0} (iscsid is not running on this node or refuses connections: start iscsid, e.g. `systemctl enable --now iscsid`, and retry)"
    )]
    DaemonUnavailable(Failure),
    /// Exit code 12: the kernel transport (iscsi_tcp) is not loaded.
    #[error(
        "{0} (the iSCSI transport is not available in this kernel: load it with `modprobe iscsi_tcp` on the node and retry)"
    )]
    TransportMissing(Failure),
    /// Exit code 5 or 19: the target refused the login.
    #[error(
        "{0} (the target refused the login: check that the target exists on the portal and accepts this initiator)"
    )]
    LoginFailed(Failure),
    /// Exit code 24: CHAP authentication failed.
    #[error("{0} (the target rejected the credentials: check the CHAP user name and password)")]
    AuthFailed(Failure),
    /// Exit code 4, 8 or 11: the portal could not be reached or stopped answering.
    #[error(
        "{0} (the target portal did not answer: check that the target is running and reachable from this node)"
    )]
    Unreachable(Failure),
    /// Any other non-zero exit.
    #[error("{0}")]
    Failed(Failure),
    /// `iscsiadm` did not finish within the per-call timeout and was killed.
    #[error(
        "`{command}` did not finish within {after:?} and was killed (iscsid or the target may be hanging; raise the timeout if the network is slow)"
    )]
    Timeout { command: String, after: Duration },
    /// The by-path link of the LUN did not appear (or did not resolve) before the deadline.
    #[error("device {} did not appear within {after:?} (the login succeeded but the kernel exposed no disk for this LUN: check the LUN number and the node's udev)", path.display())]
    DeviceTimeout { path: PathBuf, after: Duration },
    /// The by-path link exists but could not be read.
    #[error("cannot resolve {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The runner could not start `iscsiadm` (not installed?) or, in tests, had no answer for it.
    #[error("{0} (is open-iscsi installed on this node?)")]
    Exec(ExecError),
}

impl Error {
    /// The iscsiadm exit code, for errors that come from a finished iscsiadm run.
    pub fn code(&self) -> Option<i32> {
        self.failure().and_then(|f| f.code)
    }

    /// iscsiadm's explanation, for errors that come from a finished iscsiadm run.
    pub fn message(&self) -> Option<&str> {
        self.failure().map(|f| f.message.as_str())
    }

    pub fn failure(&self) -> Option<&Failure> {
        match self {
            Error::NotFound(f)
            | Error::DaemonUnavailable(f)
            | Error::TransportMissing(f)
            | Error::LoginFailed(f)
            | Error::AuthFailed(f)
            | Error::Unreachable(f)
            | Error::Failed(f) => Some(f),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound(_))
    }

    /// Sorts a failed run into a variant by its exit code.
    pub(crate) fn from_output(cmd: &Cmd, out: &Output) -> Self {
        let f = Failure {
            command: redacted_line(cmd),
            code: out.code,
            message: iscsiadm_message(&out.stderr, &out.stdout),
            output: combined(&out.stderr, &out.stdout),
        };
        match out.code {
            Some(code::NO_OBJECTS | code::SESSION_NOT_FOUND) => Error::NotFound(f),
            Some(code::ISCSID_NOT_CONNECTED | code::ISCSID_COMM) => Error::DaemonUnavailable(f),
            Some(code::TRANSPORT_NOT_FOUND) => Error::TransportMissing(f),
            Some(code::LOGIN | code::FATAL_LOGIN) => Error::LoginFailed(f),
            Some(code::LOGIN_AUTH_FAILED) => Error::AuthFailed(f),
            Some(code::TRANSPORT | code::TRANSPORT_TIMEOUT | code::PDU_TIMEOUT) => {
                Error::Unreachable(f)
            }
            _ => Error::Failed(f),
        }
    }

    pub(crate) fn from_exec(cmd: &Cmd, e: ExecError) -> Self {
        match e {
            ExecError::Timeout { after, .. } => Error::Timeout {
                command: redacted_line(cmd),
                after,
            },
            ExecError::Failed {
                code,
                stdout,
                stderr,
                ..
            } => Error::from_output(
                cmd,
                &Output {
                    code,
                    stdout,
                    stderr,
                },
            ),
            other => Error::Exec(other),
        }
    }
}

fn combined(stderr: &str, stdout: &str) -> String {
    let (e, o) = (stderr.trim(), stdout.trim());
    match (e.is_empty(), o.is_empty()) {
        (false, false) => format!("{e}\n{o}"),
        (false, true) => e.to_string(),
        (true, _) => o.to_string(),
    }
}

/// Lines iscsiadm prints on the way to the real problem, or as a summary after it.
const NOISE: &[&str] = &[
    "can not connect to iscsi daemon",
    "could not scan /sys/class/iscsi_transport",
    "could not insert module",
    "could not log into all portals",
    "could not logout of all requested sessions",
    "could not execute operation on all records",
];

/// Picks the line that explains a failure: an `initiator reported error (...)` line if there is
/// one, else the first `iscsiadm:` line that is not a generic lead-in or summary, else the first
/// `iscsiadm:` line, else the first non-empty line.
pub fn iscsiadm_message(stderr: &str, stdout: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .chain(stdout.lines())
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let tool: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with("iscsiadm:"))
        .collect();
    if let Some(l) = tool.iter().find(|l| l.contains("reported error")) {
        return l.to_string();
    }
    let is_noise = |l: &&str| {
        let lower = l.to_ascii_lowercase();
        NOISE.iter().any(|n| lower.contains(n))
    };
    if let Some(l) = tool.iter().find(|l| !is_noise(l)) {
        return l.to_string();
    }
    if let Some(l) = tool.first() {
        return l.to_string();
    }
    lines
        .first()
        .map_or_else(|| "(no output)".to_string(), |l| l.to_string())
}

/// The command line with the value of any `-n <...password...> -v <value>` pair masked.
pub fn redacted_line(cmd: &Cmd) -> String {
    let mut out = cmd.program.clone();
    let mut secret_name = false;
    let mut prev: Option<&str> = None;
    for a in &cmd.args {
        out.push(' ');
        match prev {
            Some("-n" | "--name") => {
                secret_name = a.to_ascii_lowercase().contains("password");
                out.push_str(a);
            }
            Some("-v" | "--value") if secret_name => out.push_str("***"),
            _ => out.push_str(a),
        }
        prev = Some(a);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOGIN_20: &str = "System has not been booted with systemd as init system (PID 1). Can't operate.
Failed to connect to bus: Host is down
iscsiadm: can not connect to iSCSI daemon (111)!
iscsiadm: Could not login to [iface: default, target: iqn.2016-09.com.openebs.cstor:tgtdisk1, portal: 127.0.0.1,3270].
iscsiadm: initiator reported error (20 - could not connect to iscsid)
iscsiadm: Could not log into all portals
";
    const DISCOVERY_12: &str = "System has not been booted with systemd as init system (PID 1). Can't operate.
Failed to connect to bus: Host is down
iscsiadm: can not connect to iSCSI daemon (111)!
iscsiadm: Could not scan /sys/class/iscsi_transport.
libkmod: ERROR ../libkmod/libkmod-module.c:895 kmod_module_insert_module: could not find module by name='iscsi_tcp'
iscsiadm: Could not insert module tcp. Kmod error -2
iscsiadm: iSCSI driver tcp is not loaded. Load the module then retry the command.
iscsiadm: Could not perform SendTargets discovery: iSCSI driver not found. Please make sure it is loaded, and retry the operation
";

    #[test]
    fn message_prefers_the_reported_error() {
        assert_eq!(
            iscsiadm_message(LOGIN_20, "Logging in to [iface: default, ...]\n"),
            "iscsiadm: initiator reported error (20 - could not connect to iscsid)"
        );
    }

    #[test]
    fn message_skips_lead_in_noise() {
        assert_eq!(
            iscsiadm_message(DISCOVERY_12, ""),
            "iscsiadm: iSCSI driver tcp is not loaded. Load the module then retry the command."
        );
        assert_eq!(
            iscsiadm_message(
                "iscsiadm: Cannot modify node.bogus. Invalid param name.\niscsiadm: Could not execute operation on all records: invalid parameter\n",
                ""
            ),
            "iscsiadm: Cannot modify node.bogus. Invalid param name."
        );
        assert_eq!(
            iscsiadm_message("iscsiadm: can not connect to iSCSI daemon (111)!\n", ""),
            "iscsiadm: can not connect to iSCSI daemon (111)!"
        );
        assert_eq!(iscsiadm_message("", "  \nsomething odd\n"), "something odd");
        assert_eq!(iscsiadm_message("", ""), "(no output)");
    }

    #[test]
    fn exit_codes_map_to_variants_and_are_kept() {
        let cmd = Cmd::new("iscsiadm").args(["-m", "node", "--login"]);
        type Check = fn(&Error) -> bool;
        let cases: &[(i32, Check)] = &[
            (21, |e| matches!(e, Error::NotFound(_))),
            (2, |e| matches!(e, Error::NotFound(_))),
            (20, |e| matches!(e, Error::DaemonUnavailable(_))),
            (12, |e| matches!(e, Error::TransportMissing(_))),
            (19, |e| matches!(e, Error::LoginFailed(_))),
            (5, |e| matches!(e, Error::LoginFailed(_))),
            (24, |e| matches!(e, Error::AuthFailed(_))),
            (8, |e| matches!(e, Error::Unreachable(_))),
            (6, |e| matches!(e, Error::Failed(_))),
        ];
        for (c, check) in cases {
            let e = Error::from_output(&cmd, &Output::fail(*c, LOGIN_20));
            assert!(check(&e), "code {c}: {e:?}");
            assert_eq!(e.code(), Some(*c));
            assert_eq!(
                e.message(),
                Some("iscsiadm: initiator reported error (20 - could not connect to iscsid)")
            );
            let text = e.to_string();
            assert!(text.contains(&format!("exited with code {c}")), "{text}");
            assert!(text.contains("iscsiadm -m node --login"), "{text}");
        }
        let e = Error::from_output(&cmd, &Output::fail(20, LOGIN_20));
        assert!(e.to_string().contains("start iscsid"), "{e}");
        assert!(
            e.failure()
                .unwrap()
                .output
                .contains("Could not log into all portals")
        );
    }

    #[test]
    fn runner_errors_become_timeout_or_exec() {
        let cmd = Cmd::new("iscsiadm").args(["-m", "session"]);
        let e = Error::from_exec(
            &cmd,
            ExecError::Timeout {
                command: cmd.line(),
                after: Duration::from_secs(3),
            },
        );
        assert!(matches!(e, Error::Timeout { after, .. } if after == Duration::from_secs(3)));
        let e = Error::from_exec(
            &cmd,
            ExecError::NotRecorded {
                command: cmd.line(),
            },
        );
        assert!(matches!(e, Error::Exec(_)));
        assert_eq!(e.code(), None);
    }

    #[test]
    fn secrets_are_masked_in_command_lines() {
        let cmd = Cmd::new("iscsiadm").args([
            "-m",
            "node",
            "-o",
            "update",
            "-n",
            "node.session.auth.password",
            "-v",
            "s3cret",
        ]);
        let line = redacted_line(&cmd);
        assert!(!line.contains("s3cret"), "{line}");
        assert!(
            line.ends_with("-n node.session.auth.password -v ***"),
            "{line}"
        );
        let cmd = Cmd::new("iscsiadm").args(["-n", "node.session.auth.username", "-v", "bob"]);
        assert!(redacted_line(&cmd).ends_with("-v bob"));
        let e = Error::from_output(
            &Cmd::new("iscsiadm").args([
                "--name",
                "node.session.auth.password_in",
                "--value",
                "pw",
            ]),
            &Output::fail(7, "iscsiadm: bad"),
        );
        assert!(!e.to_string().contains(" pw"), "{e}");
    }
}
