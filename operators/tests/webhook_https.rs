//! End to end over HTTPS: the server on 127.0.0.1:0 with a generated certificate, a client
//! trusting only the generated CA, AdmissionReview v1 in and out.

#[path = "webhook_common.rs"]
mod common;

use std::{net::IpAddr, sync::Arc};

use axum::body::Body;
use common::*;
use cstor_operators::webhook::{
    lookup::MemoryLookup,
    server::{WebhookState, router, serve_tls},
    tls,
};
use hyper::Request;
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use serde_json::{Value, json};
use tokio::{net::TcpStream, sync::oneshot};
use tokio_rustls::TlsConnector;

const NS: &str = "openebs";

struct Running {
    addr: std::net::SocketAddr,
    ca_pem: String,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start(lookup: MemoryLookup) -> Running {
    let ip: IpAddr = "127.0.0.1".parse().unwrap();
    let bundle = tls::generate("test-ca", &["localhost".to_owned()], &[ip]).unwrap();
    let config = tls::server_config(bundle.cert_pem.as_bytes(), bundle.key_pem.as_bytes()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let app = router(WebhookState::new(Arc::new(lookup), NS));
    let task = tokio::spawn(serve_tls(listener, config, app, async {
        let _ = stopped.await;
    }));
    Running {
        addr,
        ca_pem: bundle.ca_pem,
        stop: Some(stop),
        task,
    }
}

impl Running {
    async fn post(&self, content_type: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
        self.post_trusting(&self.ca_pem, content_type, body)
            .await
            .expect("TLS request")
    }

    async fn post_trusting(
        &self,
        ca_pem: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<(u16, Vec<u8>), String> {
        let connector = TlsConnector::from(tls::client_config(ca_pem.as_bytes()).unwrap());
        let tcp = TcpStream::connect(self.addr)
            .await
            .map_err(|e| e.to_string())?;
        let name = ServerName::IpAddress("127.0.0.1".parse::<IpAddr>().unwrap().into());
        let stream = connector
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let request = Request::post("/validate")
            .header("host", "127.0.0.1")
            .header("content-type", content_type)
            .body(Body::from(body))
            .unwrap();
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(Body::new(response.into_body()), 1 << 20)
            .await
            .map_err(|e| e.to_string())?;
        Ok((status, bytes.to_vec()))
    }

    async fn review(&self, review: Value) -> Value {
        let (status, body) = self
            .post("application/json", serde_json::to_vec(&review).unwrap())
            .await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).unwrap()
    }

    async fn stop(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        self.task.await.unwrap().unwrap();
    }
}

fn admission(
    uid: &str,
    operation: &str,
    resource: &str,
    object: Value,
    old: Option<Value>,
) -> Value {
    let (group, version, kind) = match resource {
        "cstorpoolclusters" => ("cstor.openebs.io", "v1", "CStorPoolCluster"),
        "cstorvolumeconfigs" => ("cstor.openebs.io", "v1", "CStorVolumeConfig"),
        _ => ("", "v1", "PersistentVolumeClaim"),
    };
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": resource},
            "name": object["metadata"]["name"],
            "namespace": NS,
            "operation": operation,
            "userInfo": {"username": "tester"},
            "object": object,
            "oldObject": old,
            "dryRun": false
        }
    })
}

fn lookup() -> MemoryLookup {
    let mut l = MemoryLookup::default();
    l.nodes.push(node("n1", "n1"));
    for i in 0..4 {
        l.block_devices
            .push(bd(NS, &format!("n1-bd{i}"), "n1", 10 * GIB));
    }
    l
}

fn denied(review: &Value, uid: &str) -> (u64, String) {
    let r = &review["response"];
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(review["kind"], "AdmissionReview");
    assert_eq!(r["uid"], uid);
    assert_eq!(r["allowed"], false, "{review}");
    assert_eq!(r["status"]["status"], "Failure");
    (
        r["status"]["code"].as_u64().unwrap(),
        r["status"]["message"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn cspc_reviews_over_https() {
    let server = start(lookup()).await;

    let good = serde_json::to_value(cspc(
        NS,
        "c1",
        vec![pool("n1", "mirror", &[&["n1-bd0", "n1-bd1"]])],
    ))
    .unwrap();
    let answer = server
        .review(admission(
            "u-ok",
            "CREATE",
            "cstorpoolclusters",
            good.clone(),
            None,
        ))
        .await;
    assert_eq!(answer["response"]["uid"], "u-ok");
    assert_eq!(answer["response"]["allowed"], true, "{answer}");

    let cases = [
        (
            cspc(NS, "c1", vec![pool("elsewhere", "stripe", &[&["n1-bd0"]])]),
            "invalid cspc specification: failed to get node from pool nodeSelector: {map[kubernetes.io/hostname:elsewhere]} error: {no node has these labels: set nodeSelector to the labels of an existing node}",
        ),
        (
            cspc(NS, "c1", vec![pool("n1", "stripe", &[&["n1-nope"]])]),
            "invalid cspc specification: invalid pool spec: failed to get block device: {n1-nope} details error: blockdevices.openebs.io \"n1-nope\" not found",
        ),
        (
            cspc(
                NS,
                "c1",
                vec![pool("n1", "mirror", &[&["n1-bd0", "n1-bd1", "n1-bd2"]])],
            ),
            "invalid cspc specification: invalid pool spec: mirror raid group should have disks in multiple of 2",
        ),
    ];
    for (i, (object, message)) in cases.into_iter().enumerate() {
        let uid = format!("u-bad-{i}");
        let answer = server
            .review(admission(
                &uid,
                "CREATE",
                "cstorpoolclusters",
                serde_json::to_value(object).unwrap(),
                None,
            ))
            .await;
        assert_eq!(denied(&answer, &uid), (422, message.to_owned()));
        assert_eq!(answer["response"]["status"]["reason"], "BadRequest");
    }

    // UPDATE: adding a disk to the mirror group.
    let grown = serde_json::to_value(cspc(
        NS,
        "c1",
        vec![pool(
            "n1",
            "mirror",
            &[&["n1-bd0", "n1-bd1", "n1-bd2", "n1-bd3"]],
        )],
    ))
    .unwrap();
    let answer = server
        .review(admission(
            "u-upd",
            "UPDATE",
            "cstorpoolclusters",
            grown,
            Some(good),
        ))
        .await;
    assert_eq!(
        denied(&answer, "u-upd"),
        (422, "invalid cspc specification: raid group validation failed: adding block devices to existing mirror raid group is not valid operation".to_owned())
    );

    // A CSPC that does not decode: 400.
    let answer = server
        .review(admission("u-junk", "CREATE", "cstorpoolclusters", json!({"apiVersion": "cstor.openebs.io/v1", "kind": "CStorPoolCluster", "metadata": {"name": "c1"}, "spec": {"pools": "nope"}}), None))
        .await;
    let (code, message) = denied(&answer, "u-junk");
    assert_eq!(code, 400);
    assert!(
        message.starts_with("failed to decode cspc: invalid CStorPoolCluster: at `spec.pools`"),
        "{message}"
    );

    // A pool whose poolConfig lacks dataRaidGroupType is a rule violation, as upstream.
    let mut missing =
        serde_json::to_value(cspc(NS, "c1", vec![pool("n1", "stripe", &[&["n1-bd0"]])])).unwrap();
    missing["spec"]["pools"][0]["poolConfig"]
        .as_object_mut()
        .unwrap()
        .remove("dataRaidGroupType");
    let answer = server
        .review(admission(
            "u-miss",
            "CREATE",
            "cstorpoolclusters",
            missing,
            None,
        ))
        .await;
    assert_eq!(
        denied(&answer, "u-miss"),
        (
            422,
            "invalid cspc specification: invalid pool spec: missing dataRaidGroupType".to_owned()
        )
    );
    server.stop().await;
}

#[tokio::test]
async fn cvc_and_other_resources_over_https() {
    let server = start(lookup()).await;
    let cvc = |count: i64| {
        json!({
            "apiVersion": "cstor.openebs.io/v1", "kind": "CStorVolumeConfig",
            "metadata": {"name": "pvc-1", "namespace": NS},
            "spec": {"capacity": {"storage": "1Gi"}, "provision": {"capacity": {"storage": "1Gi"}, "replicaCount": count}, "policy": {}},
            "status": {"phase": "Bound"}, "versionDetails": {}
        })
    };
    let answer = server
        .review(admission(
            "u-cvc",
            "UPDATE",
            "cstorvolumeconfigs",
            cvc(2),
            Some(cvc(3)),
        ))
        .await;
    assert_eq!(
        denied(&answer, "u-cvc"),
        (
            400,
            "cvc pvc-1 replicaCount got modified from 3 to 2".to_owned()
        )
    );
    let answer = server
        .review(admission(
            "u-cvc2",
            "UPDATE",
            "cstorvolumeconfigs",
            cvc(3),
            Some(cvc(3)),
        ))
        .await;
    assert_eq!(answer["response"]["allowed"], true);
    // PVC CREATE is always allowed.
    let pvc = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data", "namespace": NS}, "spec": {}});
    let answer = server
        .review(admission(
            "u-pvc",
            "CREATE",
            "persistentvolumeclaims",
            pvc,
            None,
        ))
        .await;
    assert_eq!(answer["response"]["allowed"], true);
    server.stop().await;
}

#[tokio::test]
async fn bad_requests_and_untrusted_clients() {
    let server = start(lookup()).await;
    let (status, body) = server.post("text/plain", b"{}".to_vec()).await;
    assert_eq!(status, 415);
    assert_eq!(
        String::from_utf8_lossy(&body),
        "invalid Content-Type, expected `application/json`"
    );
    let (status, body) = server.post("application/json", b"not json".to_vec()).await;
    assert_eq!(status, 400);
    assert!(
        String::from_utf8_lossy(&body).starts_with("could not decode the AdmissionReview body")
    );
    // A client that trusts another CA cannot complete the handshake.
    let other = tls::generate("other-ca", &["localhost".to_owned()], &[]).unwrap();
    let err = server
        .post_trusting(&other.ca_pem, "application/json", b"{}".to_vec())
        .await
        .expect_err("untrusted certificate must fail");
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    server.stop().await;
}

/// A client that connects and never speaks (no TLS handshake) is dropped after the handshake
/// deadline, and does not keep others from being served meanwhile.
#[tokio::test]
async fn silent_connections_are_closed_and_do_not_block_others() {
    use tokio::io::AsyncReadExt;
    let server = start(lookup()).await;
    let mut silent = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let review = admission(
        "uid-1",
        "DELETE",
        "persistentvolumeclaims",
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
               "metadata": {"name": "claim-1", "namespace": NS}}),
        None,
    );
    let answered = server.review(review).await;
    assert_eq!(answered["response"]["uid"], "uid-1", "{answered}");
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(
        cstor_operators::webhook::server::HANDSHAKE_TIMEOUT * 6,
        silent.read(&mut buf),
    )
    .await
    .expect("the server closes a connection that never completes its handshake");
    assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
    server.stop().await;
}
