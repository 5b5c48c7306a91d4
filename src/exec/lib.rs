//! The one seam every external command goes through (zpool, zfs, iscsiadm, mkfs, mount, blkid, ...).
//!
//! Production code holds an `Arc<dyn Runner>`; it is a [`HostRunner`] in the binaries and either a
//! `HostRunner` (the real tool) or a `ScriptedRunner` (recorded answers) in tests. A
//! `RecordingRunner` wraps any runner and keeps every call so tests can assert on the exact
//! command lines. Both test doubles exist only with the `test-support` feature.

#![warn(clippy::too_many_lines)]

use std::{
    collections::BTreeMap,
    fmt,
    os::fd::{AsFd, AsRawFd, OwnedFd},
    sync::Arc,
    time::Duration,
};

use async_trait::async_trait;

/// Default per-call deadline when a command does not set its own.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// One command line to run, without a shell.
#[derive(Clone, PartialEq, Eq)]
pub struct Cmd {
    pub program: String,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub stdin: Option<Vec<u8>>,
    pub timeout: Duration,
    /// Indexes into `args` of values that must never reach a log or an error (CHAP secrets).
    pub secret: Vec<usize>,
    /// A descriptor (a connected socket, a file) the command writes its standard output to
    /// instead of having it captured: `zfs send` streaming to a backup server.
    pub stdout_to: Option<Fd>,
    /// A descriptor the command reads its standard input from (instead of `stdin`): `zfs recv`
    /// reading a stream from a restore server.
    pub stdin_from: Option<Fd>,
}

/// A shared open file descriptor handed to a command as its stdin or stdout. The runner gives
/// the child a duplicate; the descriptor closes when the last holder drops it (for a socket,
/// the peer then sees end of stream).
#[derive(Clone)]
pub struct Fd(Arc<OwnedFd>);

impl Fd {
    pub fn new(fd: impl Into<OwnedFd>) -> Self {
        Self(Arc::new(fd.into()))
    }

    /// A duplicate for a child process's standard stream.
    pub fn try_clone(&self) -> std::io::Result<OwnedFd> {
        self.0.as_fd().try_clone_to_owned()
    }
}

impl PartialEq for Fd {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_raw_fd() == other.0.as_raw_fd()
    }
}

impl Eq for Fd {}

impl fmt::Debug for Fd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "fd {}", self.0.as_raw_fd())
    }
}

impl Cmd {
    pub fn new(program: impl Into<String>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            env: BTreeMap::new(),
            stdin: None,
            timeout: DEFAULT_TIMEOUT,
            secret: Vec::new(),
            stdout_to: None,
            stdin_from: None,
        }
    }

    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Adds an argument that is passed to the program but shown as `***` in logs and errors.
    pub fn secret_arg(mut self, a: impl Into<String>) -> Self {
        self.secret.push(self.args.len());
        self.args.push(a.into());
        self
    }

    pub fn env(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.env.insert(k.into(), v.into());
        self
    }

    pub fn stdin(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(data.into());
        self
    }

    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// Sends the command's standard output to `fd` (see [`Cmd::stdout_to`]).
    pub fn stdout_to(mut self, fd: Fd) -> Self {
        self.stdout_to = Some(fd);
        self
    }

    /// Feeds the command's standard input from `fd` (see [`Cmd::stdin_from`]).
    pub fn stdin_from(mut self, fd: Fd) -> Self {
        self.stdin_from = Some(fd);
        self
    }

    /// `program arg1 arg2 ...`, for logs, errors and matching recorded answers; secret
    /// arguments appear as `***`.
    pub fn line(&self) -> String {
        let mut s = self.program.clone();
        for (i, a) in self.args.iter().enumerate() {
            s.push(' ');
            s.push_str(if self.secret.contains(&i) { "***" } else { a });
        }
        s
    }
}

impl fmt::Debug for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cmd")
            .field("line", &self.line())
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("stdin", &self.stdin.as_ref().map(Vec::len))
            .field("stdin_from", &self.stdin_from)
            .field("stdout_to", &self.stdout_to)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.line())
    }
}

/// What a finished command left behind. A non-zero exit is not an error of the runner:
/// callers decide what an exit code means (iscsiadm's 21 is "nothing found", for example).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Output {
    /// Exit code; `None` when the process was killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn ok(stdout: impl Into<String>) -> Self {
        Self {
            code: Some(0),
            stdout: stdout.into(),
            stderr: String::new(),
        }
    }

    pub fn fail(code: i32, stderr: impl Into<String>) -> Self {
        Self {
            code: Some(code),
            stdout: String::new(),
            stderr: stderr.into(),
        }
    }

    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Turns a non-zero exit into [`ExecError::Failed`], keeping code and output.
    pub fn check(self, cmd: &Cmd) -> Result<Output, ExecError> {
        if self.success() {
            Ok(self)
        } else {
            Err(ExecError::Failed {
                command: cmd.line(),
                code: self.code,
                stdout: self.stdout,
                stderr: self.stderr,
            })
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("cannot start `{command}`: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` did not finish within {after:?} and was killed")]
    Timeout { command: String, after: Duration },
    #[error("`{command}` exited with {}: {}", code.map_or("a signal".to_string(), |c| format!("code {c}")), first_line(stderr, stdout))]
    Failed {
        command: String,
        code: Option<i32>,
        stdout: String,
        stderr: String,
    },
    #[error("no recorded answer for `{command}`")]
    NotRecorded { command: String },
}

impl ExecError {
    /// The exit code of a command that ran and failed.
    pub fn code(&self) -> Option<i32> {
        match self {
            ExecError::Failed { code, .. } => *code,
            _ => None,
        }
    }
}

fn first_line<'a>(stderr: &'a str, stdout: &'a str) -> &'a str {
    let text = if stderr.trim().is_empty() {
        stdout
    } else {
        stderr
    };
    text.trim()
}

/// Runs commands. Implementations must be cheap to share (`Arc<dyn Runner>`).
#[async_trait]
pub trait Runner: Send + Sync + fmt::Debug {
    async fn run(&self, cmd: &Cmd) -> Result<Output, ExecError>;

    /// Runs and turns a non-zero exit into an error.
    async fn run_ok(&self, cmd: &Cmd) -> Result<Output, ExecError> {
        self.run(cmd).await?.check(cmd)
    }
}

/// Runs the real program on this machine, with the command's deadline; the child is killed
/// when the deadline passes or the future is dropped.
#[derive(Clone, Debug, Default)]
pub struct HostRunner {
    /// Optional program substitutions (`"iscsiadm" -> "/host/sbin/iscsiadm"`), for a node plugin
    /// that reaches the host's tools through a different path.
    pub programs: BTreeMap<String, String>,
}

impl HostRunner {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_program(mut self, name: impl Into<String>, path: impl Into<String>) -> Self {
        self.programs.insert(name.into(), path.into());
        self
    }
}

#[async_trait]
impl Runner for HostRunner {
    async fn run(&self, cmd: &Cmd) -> Result<Output, ExecError> {
        use tokio::io::AsyncWriteExt;
        let program = self
            .programs
            .get(&cmd.program)
            .cloned()
            .unwrap_or_else(|| cmd.program.clone());
        let spawn_err = |source| ExecError::Spawn {
            command: cmd.line(),
            source,
        };
        let stdin = match (&cmd.stdin_from, &cmd.stdin) {
            (Some(fd), _) => std::process::Stdio::from(fd.try_clone().map_err(spawn_err)?),
            (None, Some(_)) => std::process::Stdio::piped(),
            (None, None) => std::process::Stdio::null(),
        };
        let stdout = match &cmd.stdout_to {
            Some(fd) => std::process::Stdio::from(fd.try_clone().map_err(spawn_err)?),
            None => std::process::Stdio::piped(),
        };
        let mut c = tokio::process::Command::new(&program);
        c.args(&cmd.args)
            .envs(&cmd.env)
            .stdin(stdin)
            .stdout(stdout)
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        tracing::debug!(command = %cmd, "running");
        let mut child = c.spawn().map_err(spawn_err)?;
        // The child holds its own duplicates now; ours close with `c` (the command) below, so
        // the child's exit is what ends the stream.
        drop(c);
        if let (Some(data), Some(mut pipe)) = (cmd.stdin.clone(), child.stdin.take()) {
            tokio::spawn(async move {
                let _ = pipe.write_all(&data).await;
            });
        }
        match tokio::time::timeout(cmd.timeout, child.wait_with_output()).await {
            Err(_) => Err(ExecError::Timeout {
                command: cmd.line(),
                after: cmd.timeout,
            }),
            Ok(Err(source)) => Err(ExecError::Spawn {
                command: cmd.line(),
                source,
            }),
            Ok(Ok(out)) => {
                let output = Output {
                    code: out.status.code(),
                    stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                    stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
                };
                tracing::debug!(command = %cmd, code = ?output.code, "finished");
                Ok(output)
            }
        }
    }
}

#[cfg(feature = "test-support")]
mod doubles;
#[cfg(feature = "test-support")]
pub use doubles::{Call, RecordingRunner, ScriptedRunner};

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn host_runner_captures_code_and_output() {
        let r = HostRunner::new();
        let out = r
            .run(&Cmd::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]))
            .await
            .unwrap();
        assert_eq!(out.code, Some(3));
        assert_eq!(out.stdout, "out\n");
        assert_eq!(out.stderr, "err\n");
        let err = out
            .check(&Cmd::new("sh"))
            .expect_err("non-zero exit is an error");
        assert_eq!(err.code(), Some(3));
        assert!(err.to_string().contains("code 3: err"), "{err}");
    }

    #[tokio::test]
    async fn host_runner_feeds_stdin_and_env() {
        let r = HostRunner::new();
        let out = r
            .run_ok(
                &Cmd::new("sh")
                    .args(["-c", "cat; printf %s \"$X\""])
                    .env("X", "vx")
                    .stdin("in-"),
            )
            .await
            .unwrap();
        assert_eq!(out.stdout, "in-vx");
    }

    #[test]
    fn secret_arguments_are_redacted_in_lines() {
        let c = Cmd::new("iscsiadm")
            .args(["-n", "node.session.auth.password", "-v"])
            .secret_arg("s3cret");
        assert_eq!(c.line(), "iscsiadm -n node.session.auth.password -v ***");
        assert_eq!(c.args[3], "s3cret");
        assert!(!format!("{c}").contains("s3cret"));
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[tokio::test]
    async fn host_runner_streams_to_and_from_descriptors() {
        use std::io::{Read, Write};
        let r = HostRunner::new();
        // stdout to a socket: the peer reads the whole output, then end of stream.
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        r.run_ok(
            &Cmd::new("sh")
                .args(["-c", "printf streamed"])
                .stdout_to(Fd::new(theirs)),
        )
        .await
        .unwrap();
        let mut got = String::new();
        (&ours).read_to_string(&mut got).unwrap();
        assert_eq!(got, "streamed");
        // stdin from a socket: the command reads until the peer closes.
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        (&ours).write_all(b"fed").unwrap();
        drop(ours);
        let out = r
            .run_ok(&Cmd::new("cat").stdin_from(Fd::new(theirs)))
            .await
            .unwrap();
        assert_eq!(out.stdout, "fed");
    }

    #[tokio::test]
    async fn host_runner_kills_on_deadline() {
        let r = HostRunner::new();
        let err = r
            .run(
                &Cmd::new("sleep")
                    .arg("30")
                    .timeout(Duration::from_millis(100)),
            )
            .await
            .expect_err("must time out");
        assert!(matches!(err, ExecError::Timeout { .. }), "{err}");
    }

    #[tokio::test]
    async fn host_runner_reports_missing_program() {
        let err = HostRunner::new()
            .run(&Cmd::new("/nonexistent/cstor-no-such-tool"))
            .await
            .expect_err("missing program");
        assert!(matches!(err, ExecError::Spawn { .. }), "{err}");
    }
}
