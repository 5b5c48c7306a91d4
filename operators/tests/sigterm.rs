//! SIGTERM — what the kubelet sends when it stops a Pod — ends every long-running operator
//! binary cleanly: it stops taking work, lets what is in flight finish and exits 0 (before, the
//! cspc-operator, cvc-operator and webhook only listened for Ctrl-C and died of the signal).

#[path = "webhook_common.rs"]
mod common;

use std::{process::Stdio, time::Duration};

use common::kubeconfig;
use cstor_testkit::TestCluster;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::Command,
};

/// Starts `program`, waits for `ready` on its log, sends SIGTERM, and returns its exit status.
async fn terminate(mut cmd: Command, ready: &str) -> std::process::ExitStatus {
    let mut child = cmd
        // An ephemeral health port: the default ones may be taken on a test host.
        .env("HEALTH_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("starting the binary");
    // tracing writes to stdout; read both.
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut err = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    let found = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let line = tokio::select! {
                l = out.next_line() => l,
                l = err.next_line() => l,
            };
            match line {
                Ok(Some(l)) => {
                    let hit = l.contains(ready);
                    seen.push(l);
                    if hit {
                        return true;
                    }
                }
                _ => return false,
            }
        }
    })
    .await;
    assert!(
        matches!(found, Ok(true)),
        "never logged {ready:?}:\n{}",
        seen.join("\n")
    );
    let pid = nix::unistd::Pid::from_raw(child.id().expect("running") as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("kill -TERM");
    // Keep draining its output so it never blocks on a full pipe.
    let drain = tokio::spawn(async move {
        let mut tail = Vec::new();
        loop {
            let line = tokio::select! {
                l = out.next_line() => l,
                l = err.next_line() => l,
            };
            match line {
                Ok(Some(l)) => tail.push(l),
                _ => return tail,
            }
        }
    });
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait()).await;
    let status = match status {
        Ok(s) => s.expect("wait"),
        Err(_) => {
            let _ = child.kill().await;
            let tail = drain.await.unwrap_or_default();
            panic!(
                "{ready:?}: the binary did not exit within a minute of SIGTERM; its log after it:\n{}",
                tail.join("\n")
            );
        }
    };
    drain.abort();
    status
}

#[tokio::test]
async fn operators_exit_cleanly_on_sigterm() {
    let cluster = TestCluster::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kc = kubeconfig(&cluster, &dir);
    let ns = cluster.namespace().to_owned();

    let mut cspc = Command::new(env!("CARGO_BIN_EXE_cspc-operator"));
    cspc.args(["--namespace", &ns]).env("KUBECONFIG", &kc);
    let mut cvc = Command::new(env!("CARGO_BIN_EXE_cvc-operator"));
    cvc.env("KUBECONFIG", &kc).env("OPENEBS_NAMESPACE", &ns);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // Certificate-file mode: serves without registering itself.
    let ip: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    let bundle = cstor_operators::webhook::tls::generate("sigterm-ca", &[], &[ip]).unwrap();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert, &bundle.cert_pem).unwrap();
    std::fs::write(&key, &bundle.key_pem).unwrap();
    let mut webhook = Command::new(env!("CARGO_BIN_EXE_cstor-webhook"));
    webhook
        .args([
            "--bind-address",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--namespace",
            &ns,
            "--tls-cert-file",
            &cert.display().to_string(),
            "--tls-key-file",
            &key.display().to_string(),
        ])
        .env("KUBECONFIG", &kc)
        .env("ADMISSION_WEBHOOK_FAILURE_POLICY", "ignore")
        .env_remove("OPENEBS_NAMESPACE");

    for (name, cmd, ready) in [
        ("cvc-operator", cvc, "starting cvc-operator"),
        ("cspc-operator", cspc, "starting cspc-operator"),
        ("cstor-webhook", webhook, "serving the admission webhook"),
    ] {
        let status = terminate(cmd, ready).await;
        assert!(
            status.success(),
            "{name} must exit 0 on SIGTERM, got {status:?} (killed by the signal: it does not handle it)"
        );
    }
    cluster.cleanup().await.expect("namespace clean-up");
}
