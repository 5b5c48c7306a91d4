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
async fn start(cmd: Command) -> Running {
    start_watching(cmd, &[]).await.0
}

/// The `addr=` of a log line.
fn logged_addr(line: &str) -> Option<SocketAddr> {
    line.split_once("addr=")?
        .1
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// [`start`], also waiting for a log line containing each of `wanted`; returns those lines.
async fn start_watching(mut cmd: Command, wanted: &[&str]) -> (Running, Vec<String>) {
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
    let mut matched: Vec<Option<String>> = vec![None; wanted.len()];
    let found = tokio::time::timeout(STARTUP, async {
        let mut health = None;
        loop {
            let line = tokio::select! {
                l = out.next_line() => l,
                l = err.next_line() => l,
            };
            let Ok(Some(line)) = line else { return None };
            if line.contains("serving /healthz and /readyz") {
                health = logged_addr(&line);
            }
            for (want, slot) in wanted.iter().zip(matched.iter_mut()) {
                if slot.is_none() && line.contains(want) {
                    *slot = Some(line.clone());
                }
            }
            seen.push(line);
            if health.is_some() && matched.iter().all(Option::is_some) {
                return health;
            }
        }
    })
    .await;
    let Ok(Some(health)) = found else {
        panic!(
            "never logged its health address and {wanted:?}:\n{}",
            seen.join("\n")
        );
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
    (
        Running { child, health },
        matched.into_iter().flatten().collect(),
    )
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

/// volume-manager with its sockets and istgt.conf in `dir` (istgt's control socket:
/// `<dir>/istgt_ctl_sock`).
fn volume_manager(dir: &tempfile::TempDir, kc: &Path, ns: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_volume-manager"));
    let at = |name: &str| dir.path().join(name).display().to_string();
    cmd.args(["--volume-id", "health-volume-uid"])
        .arg(format!("--istgt-socket={}", at("istgt_ctl_sock")))
        .arg(format!("--known-replica-socket={}", at("volume_mgmt_sock")))
        .arg(format!("--conf-path={}", at("istgt.conf")))
        .arg("--grpc-listen=127.0.0.1:0")
        .env("KUBECONFIG", kc)
        .env("OPENEBS_NAMESPACE", ns);
    cmd
}

#[tokio::test]
async fn volume_manager_is_ready_once_istgt_answers() {
    let cluster = TestCluster::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kc = kubeconfig(&cluster, &dir);
    let socket = dir.path().join("istgt_ctl_sock");
    let mut running = start(volume_manager(&dir, &kc, cluster.namespace())).await;
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

const EXPORTER_LOG: &str = "serving the metrics exporter at /metrics";

fn recorded(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/real-engine/exporter")
        .join(rel)
}

/// Scrapes `/metrics` until `pred` holds for the body, which is returned.
async fn scrape_until(addr: SocketAddr, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let pred = &pred;
    wait_until(what, STARTUP, || async move {
        let (status, body) = get(addr, "/metrics", ANSWER).await.ok()?;
        (status == 200 && pred(&body)).then_some(body)
    })
    .await
    .unwrap_or_else(|_| panic!("/metrics never showed {what}"))
}

/// volume-manager serves upstream's volume metrics from istgt's `IOSTATS` (the real istgt's
/// recorded reply, served by the fake control socket) on `--exporter-addr`.
#[tokio::test]
async fn volume_manager_exports_iostats_on_its_exporter_addr() {
    use cstor_operators::volume_manager::fake_istgt::FakeReply;
    let cluster = TestCluster::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kc = kubeconfig(&cluster, &dir);
    let istgt = FakeIstgt::start(dir.path().join("istgt_ctl_sock"))
        .await
        .unwrap();
    let recv = std::fs::read_to_string(recorded("istgt/iostats-after-io.recv")).unwrap();
    let lines = recv.split("\r\n").skip(1).filter(|l| !l.is_empty());
    istgt.set_reply(
        "IOSTATS",
        FakeReply::Lines(lines.map(str::to_owned).collect()),
    );
    let mut cmd = volume_manager(&dir, &kc, cluster.namespace());
    cmd.arg("--exporter-addr=127.0.0.1:0");
    let (running, lines) = start_watching(cmd, &[EXPORTER_LOG]).await;
    let exporter = logged_addr(&lines[0]).expect("exporter address logged");
    let body = scrape_until(exporter, "openebs_writes", |b| {
        b.contains("openebs_writes 768")
    })
    .await;
    for line in [
        "openebs_reads 512",
        "openebs_total_write_bytes 50528256",
        "openebs_size_of_volume 1",
        "openebs_volume_status 3",
        "openebs_healthy_replica_count 1",
        "openebs_volume_uptime{volName=\"pvc-9c8b7a6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d\",castype=\"cstor\"} 17",
    ] {
        assert!(body.lines().any(|l| l == line), "{line} in:\n{body}");
    }
    running.assert_live("volume-manager").await;
    cluster.cleanup().await.expect("namespace clean-up");
}

/// pool-manager serves upstream's pool metrics from the `zpool`/`zfs` CLIs it finds on PATH
/// (here scripts printing the real engine's recorded outputs for the exporter's command lines
/// and failing every other command).
#[tokio::test]
async fn pool_manager_exports_pool_metrics_on_its_exporter_addr() {
    use std::os::unix::fs::PermissionsExt;
    let cluster = TestCluster::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kc = kubeconfig(&cluster, &dir);
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let cli = |name: &str| {
        recorded(&format!("cli/{name}.stdout"))
            .display()
            .to_string()
    };
    let script = format!(
        "#!/bin/sh\ncase \"$(basename \"$0\") $*\" in\n\
         \"zpool list -Hp cstor-6b1f2d3c-4e5a-4b7c-9d8e-0f1a2b3c4d5e\") exec cat '{}';;\n\
         \"zfs stats\") exec cat '{}';;\n\
         \"zfs list -Hp -o name,used,available\") exec cat '{}';;\n\
         *) echo \"not recorded: $*\" >&2; exit 1;;\nesac\n",
        cli("zpool-list-Hp-after-io"),
        cli("zfs-stats-after-io"),
        cli("zfs-list-Hp-after-io"),
    );
    for name in ["zpool", "zfs"] {
        let path = bin.join(name);
        std::fs::write(&path, &script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pool-manager"));
    cmd.args(["--cspi-id", "exporter-cspi-uid"])
        .args(["--pool-name", "6b1f2d3c-4e5a-4b7c-9d8e-0f1a2b3c4d5e"])
        .args(["--namespace", cluster.namespace()])
        .arg(format!(
            "--cache-file={}",
            dir.path().join("pool.cache").display()
        ))
        .arg("--exporter-addr=127.0.0.1:0")
        .env("PATH", path)
        .env("KUBECONFIG", &kc);
    let (running, lines) = start_watching(cmd, &[EXPORTER_LOG]).await;
    let exporter = logged_addr(&lines[0]).expect("exporter address logged");
    let body = scrape_until(exporter, "openebs_pool_size", |b| {
        b.contains("openebs_pool_size ")
    })
    .await;
    for line in [
        "openebs_pool_size 2130706432",
        "openebs_pool_status{pool=\"cstor-6b1f2d3c-4e5a-4b7c-9d8e-0f1a2b3c4d5e\"} 1",
        "openebs_used_pool_capacity 94208",
        "openebs_total_write_count{vol=\"pvc-9c8b7a6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d\",pool=\"cstor-6b1f2d3c-4e5a-4b7c-9d8e-0f1a2b3c4d5e\"} 768",
        "openebs_zpool_list_command_error 0",
    ] {
        assert!(body.lines().any(|l| l == line), "{line} in:\n{body}");
    }
    running.assert_live("pool-manager").await;
    cluster.cleanup().await.expect("namespace clean-up");
}

/// An adopted pod still running upstream's m-exporter holds 9500: volume-manager warns and runs
/// on without its exporter.
#[tokio::test]
async fn a_taken_exporter_port_does_not_stop_the_binary() {
    let cluster = TestCluster::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kc = kubeconfig(&cluster, &dir);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let _istgt = FakeIstgt::start(dir.path().join("istgt_ctl_sock"))
        .await
        .unwrap();
    let mut cmd = volume_manager(&dir, &kc, cluster.namespace());
    cmd.arg(format!("--exporter-addr={addr}"));
    let (mut running, lines) = start_watching(cmd, &["running without the metrics exporter"]).await;
    assert!(lines[0].contains(&addr.to_string()), "{}", lines[0]);
    running.wait_ready("volume-manager").await;
    running.assert_live("volume-manager").await;
    assert!(
        running.child.try_wait().unwrap().is_none(),
        "volume-manager exited"
    );
    cluster.cleanup().await.expect("namespace clean-up");
}
