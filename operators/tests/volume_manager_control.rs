//! istgt control-socket protocol: `ControlClient` against the in-test fake istgt, which speaks
//! the protocol byte for byte (banner, `\r\n`, data lines, `OK`/`ERR`, several commands per
//! connection), plus a raw listener that checks the exact bytes the client writes.

use std::time::Duration;

use cstor_operators::volume_manager::{
    ControlClient, ControlError,
    fake_istgt::{FAKE_BANNER, FakeIstgt, FakeReply, replica_json},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::UnixListener,
};

async fn fake() -> (tempfile::TempDir, FakeIstgt, ControlClient) {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("istgt_ctl_sock");
    let fake = FakeIstgt::start(&sock).await.unwrap();
    let client = ControlClient::new(&sock).with_timeout(Duration::from_secs(10));
    (dir, fake, client)
}

#[tokio::test]
async fn status_refresh_and_exact_request_lines() {
    let (_d, fake, client) = fake().await;
    let reply = client.status().await.unwrap();
    assert_eq!(reply.banner(), Some(FAKE_BANNER));
    assert_eq!(reply.lines[1], "STATUS Running:NORMAL MODE OF OPERATION");
    assert_eq!(reply.final_line(), "OK STATUS");
    client.refresh().await.unwrap();
    client
        .drf("pvc-1", 2, &["11".into(), "22".into()])
        .await
        .unwrap();
    client.resize("pvc-1", "10Gi").await.unwrap();
    let r = client.snap_create("pvc-1", "snap-a").await.unwrap();
    assert_eq!(r.final_line(), "OK SNAPCREATE");
    let r = client.snap_destroy("pvc-1", "snap-a").await.unwrap();
    assert_eq!(r.final_line(), "OK SNAPDESTROY");
    assert_eq!(
        fake.requests(),
        vec![
            "STATUS\r\n",
            "REFRESH\r\n",
            "DRF pvc-1 2 11 22\r\n",
            "RESIZE pvc-1 10Gi 10 60\r\n",
            "SNAPCREATE pvc-1 snap-a 10 60\r\n",
            "SNAPDESTROY pvc-1 snap-a 10 60\r\n",
        ]
    );
}

#[tokio::test]
async fn replica_payload_survives_byte_by_byte_delivery() {
    let (_d, fake, client) = fake().await;
    let replicas = [serde_json::json!({
        "replicaId": "5613272981393414112", "Address": "10.1.2.3", "Mode": "Healthy",
        "checkpointedIOSeq": "4000", "inflightRead": "1", "inflightWrite": "2", "inflightSync": "0",
        "quorum": "1", "upTime": 120
    })];
    fake.set_replica_json(replica_json("pvc-1", "Healthy", &replicas));
    fake.set_chunk_size(Some(1));
    let report = client.replica().await.unwrap();
    assert_eq!(report.name, "pvc-1");
    assert_eq!(report.status, "Healthy");
    assert_eq!(report.replicas.len(), 1);
    assert_eq!(report.replicas[0].replica_id, "5613272981393414112");
    assert_eq!(report.replicas[0].checkpointed_io_seq, "4000");
    assert_eq!(report.replicas[0].up_time, 120);
    assert_eq!(fake.requests(), vec!["REPLICA\r\n"]);
}

#[tokio::test]
async fn err_replies_are_typed_rejections() {
    let (_d, fake, client) = fake().await;
    fake.push_reply(
        "RESIZE",
        FakeReply::err("ERR current size is already greater than requested size"),
    );
    match client.resize("pvc-1", "1Gi").await {
        Err(ControlError::Rejected { command, line, .. }) => {
            assert_eq!(command, "RESIZE pvc-1 1Gi 10 60");
            assert_eq!(
                line,
                "ERR current size is already greater than requested size"
            );
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
    fake.push_reply("DRF", FakeReply::err("ERR target not found"));
    assert!(
        matches!(client.drf("pvc-x", 3, &[]).await, Err(ControlError::Rejected { line, .. }) if line == "ERR target not found")
    );
    fake.push_reply(
        "REFRESH",
        FakeReply::err("Error Previous Refresh command still running"),
    );
    assert!(matches!(
        client.refresh().await,
        Err(ControlError::Rejected { .. })
    ));
    // Unknown command word: istgt's own answer.
    let r = client.exchange("FROB x").await.unwrap();
    assert!(r.is_error());
    assert_eq!(r.final_line(), "ERR unknown command");
    // SNAPCREATE refusals come back as replies (the gRPC layer forwards them).
    fake.push_reply("SNAPCREATE", FakeReply::err("ERR failed SNAPCREATE"));
    let r = client.snap_create("pvc-1", "s").await.unwrap();
    assert_eq!(
        r.upstream_line(1).as_deref(),
        Some("ERR failed SNAPCREATE\r\n")
    );
    // RESIZE: an ERR anywhere in the reply is a failure, even before an OK line.
    fake.push_reply(
        "RESIZE",
        FakeReply::Lines(vec![
            "RESIZE ERR new size 5 is not in multiples of block length 4096".into(),
            "OK RESIZE".into(),
        ]),
    );
    assert!(matches!(
        client.resize("pvc-1", "5").await,
        Err(ControlError::Rejected { .. })
    ));
}

#[tokio::test]
async fn replication_not_initialised_then_close() {
    let (_d, fake, client) = fake().await;
    fake.push_reply(
        "REPLICA",
        FakeReply::RawThenClose(b"ERR replication module not initialized\r\n".to_vec()),
    );
    match client.replica().await {
        Err(ControlError::Rejected { line, .. }) => {
            assert_eq!(line, "ERR replication module not initialized")
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
}

#[tokio::test]
async fn socket_closing_mid_reply_is_an_error_with_the_partial_data() {
    let (_d, fake, client) = fake().await;
    fake.push_reply(
        "REPLICA",
        FakeReply::RawThenClose(b"REPLICA  {\"volumeStatus\":[{\"name\":\"pv".to_vec()),
    );
    fake.set_chunk_size(Some(3));
    match client.replica().await {
        Err(ControlError::Closed { command, received }) => {
            assert_eq!(command, "REPLICA");
            assert_eq!(
                received,
                format!("{FAKE_BANNER}\r\nREPLICA  {{\"volumeStatus\":[{{\"name\":\"pv")
            );
        }
        other => panic!("expected Closed, got {other:?}"),
    }
    // A data line complete but the final OK line missing: still Closed, not a short success.
    fake.push_reply(
        "STATUS",
        FakeReply::RawThenClose(b"STATUS Running:NORMAL MODE OF OPERATION\r\n".to_vec()),
    );
    assert!(matches!(
        client.status().await,
        Err(ControlError::Closed { .. })
    ));
    // Next command on a fresh connection works again.
    client.status().await.unwrap();
}

#[tokio::test]
async fn silent_istgt_hits_the_deadline_and_missing_socket_is_connect_error() {
    let (dir, fake, client) = fake().await;
    fake.push_reply("STATUS", FakeReply::Silent);
    let r = client
        .clone()
        .with_timeout(Duration::from_millis(300))
        .status()
        .await;
    assert!(
        matches!(r, Err(ControlError::Timeout { after, .. }) if after == Duration::from_millis(300)),
        "{r:?}"
    );
    let missing = ControlClient::new(dir.path().join("nope"));
    let err = missing.status().await.unwrap_err();
    assert!(matches!(err, ControlError::Connect { .. }));
    assert!(err.to_string().contains("nope"), "{err}");
    assert!(matches!(
        client.exchange("STATUS\r\nREFRESH").await,
        Err(ControlError::InvalidCommand { .. })
    ));
}

/// A hand-written peer: checks the exact bytes written by the client and answers with a
/// banner and reply split at awkward places (mid-`\r\n`).
#[tokio::test]
async fn exact_bytes_on_the_wire() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("raw.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        s.write_all(b"iSCSI Target Controller version istgt:0.5 on  from \r")
            .await
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        while !got.ends_with(b"\r\n") {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "client closed before sending a full line");
            got.extend_from_slice(&buf[..n]);
        }
        s.write_all(b"\nSNAPDESTROY  progress\r").await.unwrap();
        s.flush().await.unwrap();
        s.write_all(b"\nOK SNAPDESTROY\r\n").await.unwrap();
        got
    });
    let client = ControlClient::new(&path).with_timeout(Duration::from_secs(10));
    let reply = client.snap_destroy("pvc-9", "snap-1").await.unwrap();
    assert_eq!(server.await.unwrap(), b"SNAPDESTROY pvc-9 snap-1 10 60\r\n");
    assert_eq!(
        reply.lines,
        vec![
            "iSCSI Target Controller version istgt:0.5 on  from ",
            "SNAPDESTROY  progress",
            "OK SNAPDESTROY"
        ]
    );
    assert_eq!(reply.payload(), Some("progress"));
}
