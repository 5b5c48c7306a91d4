//! The snapshot gRPC service (`/v1alpha1.RunSnapCommand/*`) over tonic, against the fake istgt:
//! exact SNAPCREATE/SNAPDESTROY lines, upstream's `{"response": …}` JSON for OK and ERR
//! replies, and a gRPC error only when istgt's socket fails.

use std::time::Duration;

use cstor_api::proto::snapshot::v1alpha1::{
    VolumeSnapCreateRequest, VolumeSnapDeleteRequest, run_snap_command_client::RunSnapCommandClient,
};
use cstor_operators::volume_manager::{
    ControlClient,
    fake_istgt::{FakeIstgt, FakeReply},
    snapshot,
};

#[tokio::test]
async fn create_and_delete_over_tonic() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeIstgt::start(dir.path().join("istgt_ctl_sock"))
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(snapshot::serve(
        listener,
        ControlClient::new(fake.path()),
        async move {
            let _ = stopped.await;
        },
    ));
    let mut client = RunSnapCommandClient::connect(format!("http://{addr}"))
        .await
        .unwrap();

    let resp = client
        .run_volume_snap_create_command(VolumeSnapCreateRequest {
            version: 1,
            volume: "pvc-1".into(),
            snapname: "snapshot-a".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        String::from_utf8(resp.status).unwrap(),
        r#"{"response":"OK SNAPCREATE\r\n"}"#
    );
    let resp = client
        .run_volume_snap_delete_command(VolumeSnapDeleteRequest {
            version: 1,
            volume: "pvc-1".into(),
            snapname: "snapshot-a".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        String::from_utf8(resp.status).unwrap(),
        r#"{"response":"OK SNAPDESTROY\r\n"}"#
    );
    assert_eq!(
        fake.requests(),
        vec![
            "SNAPCREATE pvc-1 snapshot-a 10 60\r\n",
            "SNAPDESTROY pvc-1 snapshot-a 10 60\r\n"
        ]
    );

    // istgt refuses: the ERR line is the response (the CSI controller looks for "ERR").
    fake.push_reply("SNAPCREATE", FakeReply::err("ERR failed SNAPCREATE"));
    let resp = client
        .run_volume_snap_create_command(VolumeSnapCreateRequest {
            version: 1,
            volume: "pvc-1".into(),
            snapname: "snapshot-b".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        String::from_utf8(resp.status).unwrap(),
        r#"{"response":"ERR failed SNAPCREATE\r\n"}"#
    );
    // Only a banner, then close: upstream's reader returns just the banner → default "ERR".
    fake.push_reply("SNAPDESTROY", FakeReply::RawThenClose(Vec::new()));
    let resp = client
        .run_volume_snap_delete_command(VolumeSnapDeleteRequest {
            version: 1,
            volume: "pvc-1".into(),
            snapname: "snapshot-b".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        String::from_utf8(resp.status).unwrap(),
        r#"{"response":"ERR"}"#
    );

    // A name istgt would split into two words is refused before reaching istgt.
    let err = client
        .run_volume_snap_create_command(VolumeSnapCreateRequest {
            version: 1,
            volume: "pvc-1".into(),
            snapname: "a b".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);

    // istgt gone: UNAVAILABLE naming the socket.
    drop(fake);
    let err = client
        .run_volume_snap_create_command(VolumeSnapCreateRequest {
            version: 1,
            volume: "pvc-1".into(),
            snapname: "snapshot-c".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable);
    assert!(err.message().contains("istgt_ctl_sock"), "{err}");

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("server stops")
        .unwrap()
        .unwrap();
}
