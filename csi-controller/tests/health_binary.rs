//! The `cstor-csi-controller` binary serves `/healthz` at once and turns `/readyz` 200 once its
//! CSI endpoint is bound.

use std::{net::SocketAddr, process::Stdio, time::Duration};

use cstor_testkit::{TestCluster, http_get::get, wait_until};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::Command,
};

const STARTUP: Duration = Duration::from_secs(60);
const ANSWER: Duration = Duration::from_secs(5);

#[tokio::test]
async fn health_and_readiness_once_the_endpoint_listens() {
    let cluster = TestCluster::start().await;
    let Some(server) = cluster.server() else {
        println!("SKIPPED: runs against the in-process API server only");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: t\n  cluster:\n    server: {}\nusers:\n- name: t\n  user: {{}}\ncontexts:\n- name: t\n  context:\n    cluster: t\n    user: t\ncurrent-context: t\n",
            server.url()
        ),
    )
    .unwrap();
    let socket = dir.path().join("csi.sock");
    let mut child = Command::new(env!("CARGO_BIN_EXE_cstor-csi-controller"))
        .arg(format!("--endpoint=unix://{}", socket.display()))
        .arg(format!("--namespace={}", cluster.namespace()))
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .arg("--clone-sweep-interval=0")
        .arg("--health-addr=127.0.0.1:0")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("starting cstor-csi-controller");
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut err = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    let found = tokio::time::timeout(STARTUP, async {
        loop {
            let line = tokio::select! {
                l = out.next_line() => l,
                l = err.next_line() => l,
            };
            let Ok(Some(line)) = line else { return None };
            let addr: Option<SocketAddr> = line
                .contains("serving /healthz and /readyz")
                .then(|| {
                    line.split_once("addr=")?
                        .1
                        .split_whitespace()
                        .next()?
                        .parse()
                        .ok()
                })
                .flatten();
            seen.push(line);
            if addr.is_some() {
                return addr;
            }
        }
    })
    .await;
    let Ok(Some(health)) = found else {
        panic!("never logged its health address:\n{}", seen.join("\n"));
    };
    tokio::spawn(async move {
        while let Ok(Some(_)) = tokio::select! {
            l = out.next_line() => l,
            l = err.next_line() => l,
        } {}
    });

    assert_eq!(
        get(health, "/healthz", ANSWER).await.ok(),
        Some((200, "ok".to_owned()))
    );
    wait_until("/readyz 200", STARTUP, || {
        let exited = child.try_wait().unwrap();
        async move {
            assert!(exited.is_none(), "cstor-csi-controller exited: {exited:?}");
            matches!(get(health, "/readyz", ANSWER).await, Ok((200, _))).then_some(())
        }
    })
    .await
    .expect("ready once the endpoint listens");
    assert!(socket.exists(), "ready before the CSI socket exists");
    cluster.cleanup().await.expect("namespace clean-up");
}
