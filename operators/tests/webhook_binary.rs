//! The `cstor-webhook` binary against a cluster (in-process API server, or the real one named
//! by CSTOR_TEST_KUBECONFIG): bootstrap mode (generates its Secret and registers itself) and
//! file mode (--tls-cert-file/--tls-key-file), each answering an AdmissionReview over HTTPS.

#[path = "webhook_common.rs"]
mod common;

use std::{net::IpAddr, path::PathBuf, process::Stdio, time::Duration};

use common::*;
use cstor_operators::webhook::{SECRET_CA_KEY, SECRET_NAME, tls};
use cstor_testkit::{ResourceDef, Scope, TestCluster, wait_until};
use k8s_openapi::api::{
    admissionregistration::v1::ValidatingWebhookConfiguration, core::v1::Secret,
};
use kube::{Api, api::DeleteParams};
use rustls_pki_types::ServerName;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

const STARTUP: Duration = Duration::from_secs(30);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn(kubeconfig: &PathBuf, ns: &str, port: u16, extra: &[String]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_cstor-webhook"))
        .args([
            "--bind-address",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--namespace",
            ns,
        ])
        .args(extra)
        .env("KUBECONFIG", kubeconfig)
        .env("ADMISSION_WEBHOOK_FAILURE_POLICY", "ignore")
        // An ephemeral health port: several webhooks run at once here.
        .env("HEALTH_ADDR", "127.0.0.1:0")
        .env_remove("OPENEBS_NAMESPACE")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("starting cstor-webhook")
}

fn review(ns: &str, node: &str) -> Vec<u8> {
    let object =
        serde_json::to_value(cspc(ns, "c1", vec![pool(node, "stripe", &[&["bd-1"]])])).unwrap();
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "bin-1",
            "kind": {"group": "cstor.openebs.io", "version": "v1", "kind": "CStorPoolCluster"},
            "resource": {"group": "cstor.openebs.io", "version": "v1", "resource": "cstorpoolclusters"},
            "name": "c1", "namespace": ns, "operation": "CREATE",
            "userInfo": {"username": "tester"}, "object": object, "dryRun": false
        }
    }))
    .unwrap()
}

/// Waits until the server answers, then returns its verdict on a CSPC naming an unknown node.
async fn ask(port: u16, name: ServerName<'static>, ca: &str, ns: &str, child: &mut Child) -> Value {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let node = format!("{ns}-absent-node");
    let body = review(ns, &node);
    let (status, bytes) = wait_until("cstor-webhook to answer", STARTUP, || {
        let (name, body) = (name.clone(), body.clone());
        let exited = child.try_wait().unwrap();
        async move {
            assert!(exited.is_none(), "cstor-webhook exited early: {exited:?}");
            post_validate(addr, name, ca, body).await.ok()
        }
    })
    .await
    .unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
    let answer: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(answer["response"]["uid"], "bin-1");
    assert_eq!(answer["response"]["allowed"], false);
    assert_eq!(answer["response"]["status"]["code"], 422);
    assert_eq!(
        answer["response"]["status"]["message"],
        format!(
            "invalid cspc specification: failed to get node from pool nodeSelector: {{map[kubernetes.io/hostname:{node}]}} error: {{no node has these labels: set nodeSelector to the labels of an existing node}}"
        )
    );
    answer
}

#[tokio::test]
async fn binary_serves_with_certificate_files() {
    let cluster = TestCluster::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ns = cluster.namespace().to_owned();
    let ip: IpAddr = "127.0.0.1".parse().unwrap();
    let bundle = tls::generate("files-ca", &[], &[ip]).unwrap();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert, &bundle.cert_pem).unwrap();
    std::fs::write(&key, &bundle.key_pem).unwrap();
    let port = free_port();
    let mut child = spawn(
        &kubeconfig(&cluster, &dir),
        &ns,
        port,
        &[
            "--tls-cert-file".into(),
            cert.display().to_string(),
            "--tls-key-file".into(),
            key.display().to_string(),
        ],
    );
    ask(
        port,
        ServerName::IpAddress(ip.into()),
        &bundle.ca_pem,
        &ns,
        &mut child,
    )
    .await;
    // File mode registers nothing.
    let secrets: Api<Secret> = Api::namespaced(cluster.client(), &ns);
    assert!(secrets.get_opt(SECRET_NAME).await.unwrap().is_none());
    child.kill().await.unwrap();
    cluster.cleanup().await.unwrap();
}

#[tokio::test]
async fn binary_bootstraps_its_certificate() {
    let cluster = TestCluster::start().await;
    if let Some(server) = cluster.server() {
        server.register(ResourceDef::new(
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingWebhookConfiguration",
            "validatingwebhookconfigurations",
            Scope::Cluster,
        ));
    }
    let vwcs: Api<ValidatingWebhookConfiguration> = Api::all(cluster.client());
    if cluster.is_real()
        && vwcs
            .get_opt(cstor_operators::webhook::WEBHOOK_CONFIG_NAME)
            .await
            .unwrap()
            .is_some()
    {
        println!(
            "SKIPPED binary_bootstraps_its_certificate: the cluster already runs a cStor webhook"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ns = cluster.namespace().to_owned();
    let port = free_port();
    let mut child = spawn(&kubeconfig(&cluster, &dir), &ns, port, &[]);
    let secrets: Api<Secret> = Api::namespaced(cluster.client(), &ns);
    let secret = wait_until("the webhook Secret", STARTUP, || {
        let secrets = secrets.clone();
        async move { secrets.get_opt(SECRET_NAME).await.ok().flatten() }
    })
    .await
    .unwrap();
    let ca = String::from_utf8(secret.data.unwrap()[SECRET_CA_KEY].0.clone()).unwrap();
    let host = format!("openebs-cstor-admission-server.{ns}.svc");
    ask(
        port,
        ServerName::try_from(host).unwrap(),
        &ca,
        &ns,
        &mut child,
    )
    .await;
    let vwc = vwcs
        .get(cstor_operators::webhook::WEBHOOK_CONFIG_NAME)
        .await
        .unwrap();
    let hook = &vwc.webhooks.as_ref().unwrap()[0];
    assert_eq!(
        hook.client_config.ca_bundle.as_ref().unwrap().0,
        ca.as_bytes()
    );
    assert_eq!(hook.failure_policy.as_deref(), Some("Ignore"));
    child.kill().await.unwrap();
    vwcs.delete(
        cstor_operators::webhook::WEBHOOK_CONFIG_NAME,
        &DeleteParams::default(),
    )
    .await
    .unwrap();
    cluster.cleanup().await.unwrap();
}
