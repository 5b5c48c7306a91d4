//! The one seam every external command goes through (zpool, zfs, iscsiadm, mkfs, mount, blkid, ...).
//!
//! Production code holds an `Arc<dyn Runner>`; it is a [`HostRunner`] in the binaries and either a
//! `HostRunner` (the real tool) or a [`ScriptedRunner`] (recorded answers) in tests. A
//! [`RecordingRunner`] wraps any runner and keeps every call so tests can assert on the exact
//! command lines.

#![warn(clippy::too_many_lines)]

use std::{
    collections::BTreeMap,
    fmt,
    sync::{Arc, Mutex},
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
        let mut c = tokio::process::Command::new(&program);
        c.args(&cmd.args)
            .envs(&cmd.env)
            .stdin(if cmd.stdin.is_some() {
                std::process::Stdio::piped()
            } else {
                std::process::Stdio::null()
            })
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        tracing::debug!(command = %cmd, "running");
        let mut child = c.spawn().map_err(|source| ExecError::Spawn {
            command: cmd.line(),
            source,
        })?;
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

type Answer = Arc<dyn Fn(&Cmd) -> Option<Result<Output, ExecError>> + Send + Sync>;

/// Answers commands from recorded outputs. Rules are tried newest first; a rule returns `None`
/// to pass. A command no rule answers goes to the fallback runner if there is one, else fails
/// with [`ExecError::NotRecorded`] so a test never silently runs something unexpected.
#[derive(Clone, Default)]
pub struct ScriptedRunner {
    rules: Arc<Mutex<Vec<Answer>>>,
    fallback: Option<Arc<dyn Runner>>,
}

impl fmt::Debug for ScriptedRunner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScriptedRunner")
            .field("rules", &self.rules.lock().map(|r| r.len()).unwrap_or(0))
            .field("fallback", &self.fallback)
            .finish()
    }
}

impl ScriptedRunner {
    pub fn new() -> Self {
        Self::default()
    }

    /// Commands no rule answers run on `runner` (for example the real tool).
    pub fn with_fallback(mut self, runner: Arc<dyn Runner>) -> Self {
        self.fallback = Some(runner);
        self
    }

    /// Answers an exact command line (`program a b c`) with `output`, every time it is run.
    pub fn on_line(&self, line: impl Into<String>, output: Output) -> &Self {
        let line = line.into();
        self.on(move |cmd| (cmd.line() == line).then(|| Ok(output.clone())))
    }

    /// Adds a rule: a function that answers the commands it recognises.
    pub fn on<F>(&self, f: F) -> &Self
    where
        F: Fn(&Cmd) -> Option<Result<Output, ExecError>> + Send + Sync + 'static,
    {
        self.rules.lock().expect("rules lock").push(Arc::new(f));
        self
    }
}

#[async_trait]
impl Runner for ScriptedRunner {
    async fn run(&self, cmd: &Cmd) -> Result<Output, ExecError> {
        let rules: Vec<Answer> = self.rules.lock().expect("rules lock").clone();
        for rule in rules.iter().rev() {
            if let Some(answer) = rule(cmd) {
                return answer;
            }
        }
        match &self.fallback {
            Some(f) => f.run(cmd).await,
            None => Err(ExecError::NotRecorded {
                command: cmd.line(),
            }),
        }
    }
}

/// A command that was run, with its exit code (`None` for runner errors or signals).
pub type Call = (Cmd, Option<i32>);

/// Wraps a runner and remembers every command it was asked to run, with its result code.
#[derive(Clone, Debug)]
pub struct RecordingRunner {
    inner: Arc<dyn Runner>,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl RecordingRunner {
    pub fn new(inner: Arc<dyn Runner>) -> Self {
        Self {
            inner,
            calls: Arc::default(),
        }
    }

    /// Every command line run so far, in order.
    pub fn lines(&self) -> Vec<String> {
        self.calls
            .lock()
            .expect("calls lock")
            .iter()
            .map(|(c, _)| c.line())
            .collect()
    }

    /// Every command run so far with its exit code (`None` for runner errors or signals).
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().expect("calls lock").clone()
    }

    pub fn clear(&self) {
        self.calls.lock().expect("calls lock").clear();
    }
}

#[async_trait]
impl Runner for RecordingRunner {
    async fn run(&self, cmd: &Cmd) -> Result<Output, ExecError> {
        let res = self.inner.run(cmd).await;
        let code = res.as_ref().ok().and_then(|o| o.code);
        self.calls
            .lock()
            .expect("calls lock")
            .push((cmd.clone(), code));
        res
    }
}

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

    #[tokio::test]
    async fn scripted_runner_answers_newest_rule_first_and_refuses_unknown() {
        let s = ScriptedRunner::new();
        s.on_line("zpool list", Output::ok("old"));
        s.on_line("zpool list", Output::ok("new"));
        let rec = RecordingRunner::new(Arc::new(s));
        assert_eq!(
            rec.run(&Cmd::new("zpool").arg("list"))
                .await
                .unwrap()
                .stdout,
            "new"
        );
        let err = rec
            .run(&Cmd::new("zfs").arg("list"))
            .await
            .expect_err("not recorded");
        assert!(matches!(err, ExecError::NotRecorded { .. }));
        assert_eq!(rec.lines(), vec!["zpool list", "zfs list"]);
    }

    #[tokio::test]
    async fn scripted_runner_falls_back_to_real_tool() {
        let s = ScriptedRunner::new().with_fallback(Arc::new(HostRunner::new()));
        s.on_line(
            "iscsiadm -m session",
            Output::fail(21, "No active sessions."),
        );
        assert_eq!(
            s.run(&Cmd::new("iscsiadm").args(["-m", "session"]))
                .await
                .unwrap()
                .code,
            Some(21)
        );
        assert_eq!(
            s.run(&Cmd::new("echo").arg("real")).await.unwrap().stdout,
            "real\n"
        );
    }
}
