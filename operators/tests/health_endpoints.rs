//! The operator binaries serve `/healthz` and `/readyz` on `--health-addr`: liveness answers
//! once they run, readiness turns 200 when what the binary waits for is there (the API server
//! serving its CRDs, istgt answering, the webhook's HTTPS listener bound).

#[path = "webhook_common.rs"]
mod common;

use std::{net::SocketAddr, path::Path, process::Stdio, time::Duration};

use common::kubeconfig;
use cstor_operators::volume_manager::fake_istgt::FakeIstgt;
use cstor_testkit::{TestCluster, http_get::get, wait_until};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

const STARTUP: Duration = Duration::from_secs(60);
const ANSWER: Duration = Duration::from_secs(5);

/// A running binary and the address of its health server (read from its log).
struct Running {
    child: Child,
    health: SocketAddr,
}

/// Starts `cmd` with an ephemeral health port and waits for the line naming the bound address.
async fn start(mut cmd: Command) -> Running {
    let mut child = cmd
        .arg("--health-addr=127.0.0.1:0")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("starting the binary");
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
            let addr = line
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
    // Keep reading its output so that it never blocks on a full pipe.
    tokio::spawn(async move {
        loop {
            let line = tokio::select! {
                l = out.next_line() => l,
                l = err.next_line() => l,
            };
            if !matches!(line, Ok(Some(_))) {
                return;
            }
        }
    });
    Running { child, health }
}

impl Running {
    async fn assert_live(&self, name: &str) {
        assert_eq!(
            get(self.health, "/healthz", ANSWER).await.ok(),
            Some((200, "ok".to_owned())),
            "{name}: /healthz"
        );
    }

    /// Waits for `/readyz` to answer 200; the last answer is in the panic message otherwise.
    async fn wait_ready(&mut self, name: &str) {
        let last = std::cell::RefCell::new(None);
        let ready = wait_until(&format!("{name} /readyz 200"), STARTUP, || {
            let exited = self.child.try_wait().unwrap();
            let health = self.health;
            let last = &last;
            async move {
                assert!(exited.is_none(), "{name} exited: {exited:?}");
                let answer = get(health, "/readyz", ANSWER).await;
                let ok = matches!(&answer, Ok((200, _)));
                *last.borrow_mut() = Some(answer);
                ok.then_some(())
            }
        })
        .await;
        assert!(
            ready.is_ok(),
            "{name} never ready; last /readyz: {:?}",
            last.borrow()
        );
    }
}

#[tokio::test]
async fn operators_and_webhook_are_live_and_become_ready() {
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
    let ip: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    let bundle = cstor_operators::webhook::tls::generate("health-ca", &[], &[ip]).unwrap();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert, &bundle.cert_pem).unwrap();
    std::fs::write(&key, &bundle.key_pem).unwrap();
    let mut webhook = Command::new(env!("CARGO_BIN_EXE_cstor-webhook"));
    webhook
        .args(["--bind-address", "127.0.0.1", "--port", &port.to_string()])
        .args(["--namespace", &ns])
        .arg(format!("--tls-cert-file={}", cert.display()))
        .arg(format!("--tls-key-file={}", key.display()))
        .env("KUBECONFIG", &kc)
        .env_remove("OPENEBS_NAMESPACE");

    for (name, cmd) in [
        ("cspc-operator", cspc),
        ("cvc-operator", cvc),
        ("cstor-webhook", webhook),
    ] {
        let mut running = start(cmd).await;
        running.assert_live(name).await;
        running.wait_ready(name).await;
        running.assert_live(name).await;
    }
    cluster.cleanup().await.expect("namespace clean-up");
}

#[tokio::test]
async fn volume_manager_is_ready_once_istgt_answers() {
    let cluster = TestCluster::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kc = kubeconfig(&cluster, &dir);
    let socket = dir.path().join("istgt_ctl_sock");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_volume-manager"));
    cmd.args(["--volume-id", "health-volume-uid"])
        .arg(format!("--istgt-socket={}", socket.display()))
        .arg(format!(
            "--known-replica-socket={}",
            dir.path().join("volume_mgmt_sock").display()
        ))
        .arg(format!(
            "--conf-path={}",
            dir.path().join("istgt.conf").display()
        ))
        .arg("--grpc-listen=127.0.0.1:0")
        .env("KUBECONFIG", &kc)
        .env("OPENEBS_NAMESPACE", cluster.namespace());
    let mut running = start(cmd).await;
    running.assert_live("volume-manager").await;
    // No istgt yet: not ready, saying why.
    let (status, reason) = get(running.health, "/readyz", ANSWER).await.unwrap();
    assert_eq!(status, 503, "{reason}");
    assert!(reason.contains("istgt"), "{reason}");

    let _istgt = FakeIstgt::start(Path::new(&socket)).await.unwrap();
    running.wait_ready("volume-manager").await;
    running.assert_live("volume-manager").await;
    cluster.cleanup().await.expect("namespace clean-up");
}

/// With `--leader-election`, cspc-operator takes its Lease, and `/metrics` on the health
/// address counts its API requests by verb and its reconciles.
#[tokio::test]
async fn cspc_operator_leads_and_serves_metrics() {
    use k8s_openapi::api::coordination::v1::Lease;
    let cluster = TestCluster::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kc = kubeconfig(&cluster, &dir);
    let ns = cluster.namespace().to_owned();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cspc-operator"));
    cmd.args(["--namespace", &ns, "--leader-election"])
        .env("KUBECONFIG", &kc)
        .env("POD_NAME", "cspc-operator-test-0");
    let mut running = start(cmd).await;
    running.wait_ready("cspc-operator").await;

    let leases: kube::Api<Lease> = kube::Api::namespaced(cluster.client(), &ns);
    let holder = wait_until("the Lease has a holder", STARTUP, || async {
        leases
            .get_opt("cstor-cspc-operator")
            .await
            .ok()
            .flatten()
            .and_then(|l| l.spec?.holder_identity)
    })
    .await
    .expect("cspc-operator holds its Lease");
    assert!(holder.starts_with("cspc-operator-test-0"), "{holder}");

    let health = running.health;
    let text = wait_until("API requests in /metrics", STARTUP, || async move {
        let (status, body) = get(health, "/metrics", ANSWER).await.ok()?;
        (status == 200
            && body.contains("cstor_kube_api_requests_total{verb=\"list\"}")
            && body.contains("cstor_kube_api_requests_total{verb=\"watch\"}"))
        .then_some(body)
    })
    .await
    .expect("/metrics counts the operator's lists and watches");
    assert!(
        text.contains("verb=\"create\""),
        "the Lease was created: {text}"
    );

    // A CSPC to reconcile: its passes show under controller="cspc".
    let cspcs: kube::Api<cstor_api::cstor::CStorPoolCluster> =
        kube::Api::namespaced(cluster.client(), &ns);
    let cspc = cstor_api::cstor::CStorPoolCluster::new("cspc-metrics", Default::default());
    cspcs.create(&Default::default(), &cspc).await.unwrap();
    wait_until("reconciles in /metrics", STARTUP, || async move {
        let (_, body) = get(health, "/metrics", ANSWER).await.ok()?;
        body.contains("cstor_reconcile_total{controller=\"cspc\"")
            .then_some(())
            .filter(|()| {
                body.contains("cstor_reconcile_duration_seconds_count{controller=\"cspc\"}")
            })
    })
    .await
    .expect("/metrics counts the CSPC reconciles");
    cluster.cleanup().await.expect("namespace clean-up");
}
