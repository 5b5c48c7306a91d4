//! Test doubles for the runner seam, compiled only with the `test-support` feature (tests and
//! test harnesses enable it; the product binaries never do): [`ScriptedRunner`] answers from
//! recorded outputs, [`RecordingRunner`] keeps every call.

use std::{
    fmt,
    sync::{Arc, Mutex},
};

use async_trait::async_trait;

use crate::{Cmd, ExecError, Output, Runner};

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
    use crate::HostRunner;

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
