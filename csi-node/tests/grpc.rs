//! The binary's serving path: unix socket with mode 0600, stale socket removed, a live one
//! refused; Identity and Node info over real gRPC.

mod common;

use std::{os::unix::fs::PermissionsExt, sync::Arc};

use common::*;
use cstor_api::{
    exec::HostRunner,
    proto::csi::v1::{
        GetPluginCapabilitiesRequest, GetPluginInfoRequest, NodeGetCapabilitiesRequest,
        NodeGetInfoRequest, NodeStageVolumeRequest, ProbeRequest, identity_client::IdentityClient,
        node_client::NodeClient, node_service_capability,
    },
};
use cstor_csi_node::{
    NodeConfig, NodeDriver, NodeService, iscsi::IscsiAttacher, memory::MemoryVolumeApi, server,
};
use hyper_util::rt::TokioIo;
use tonic::transport::{Endpoint, Uri};
use tower::service_fn;

async fn channel(path: std::path::PathBuf) -> tonic::transport::Channel {
    Endpoint::try_from("http://[::]:50051")
        .unwrap()
        .connect_with_connector(service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await
        .unwrap()
}

#[tokio::test]
async fn serves_identity_and_node_on_a_private_socket() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("plugin/csi.sock");
    std::fs::create_dir_all(sock.parent().unwrap()).unwrap();
    // A stale socket from a previous run.
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    let mut cfg = NodeConfig::new(NODE, NS);
    cfg.max_volumes = 7;
    let runner = Arc::new(HostRunner::new());
    let api = MemoryVolumeApi::new();
    api.set_node(cstor_csi_node::kube::NodeInfo {
        name: NODE.into(),
        uid: "uid-node".into(),
        ready: true,
        zone: Some("zone-1".into()),
    });
    let driver = NodeDriver::new(
        cfg,
        runner.clone(),
        Arc::new(api),
        Arc::new(IscsiAttacher::new(runner, dir.path())),
    );
    let endpoint = format!("unix://{}", sock.display());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn({
        let endpoint = endpoint.clone();
        async move {
            server::serve(NodeService::new(driver), &endpoint, async {
                let _ = rx.await;
            })
            .await
        }
    });
    // Wait for the socket to accept.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while tokio::net::UnixStream::connect(&sock).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "server did not start"
        );
        tokio::task::yield_now().await;
    }
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // A second server on the same live socket is refused and leaves it alone.
    let err = server::bind(&sock).unwrap_err();
    assert!(
        err.to_string().contains("another process is serving"),
        "{err}"
    );
    // A regular file is never removed.
    let file = dir.path().join("not-a-socket");
    std::fs::write(&file, b"x").unwrap();
    assert!(server::bind(&file).is_err());
    assert!(file.exists());

    let ch = channel(sock.clone()).await;
    let mut id = IdentityClient::new(ch.clone());
    let info = id
        .get_plugin_info(GetPluginInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.name, "cstor.csi.openebs.io");
    assert!(!info.vendor_version.is_empty());
    assert_eq!(
        id.probe(ProbeRequest {}).await.unwrap().into_inner().ready,
        Some(true)
    );
    assert_eq!(
        id.get_plugin_capabilities(GetPluginCapabilitiesRequest {})
            .await
            .unwrap()
            .into_inner()
            .capabilities
            .len(),
        3
    );

    let mut node = NodeClient::new(ch);
    let ni = node
        .node_get_info(NodeGetInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ni.node_id, NODE);
    assert_eq!(ni.max_volumes_per_node, 7);
    assert_eq!(
        ni.accessible_topology.unwrap().segments,
        std::collections::HashMap::from([
            (
                "topology.cstor.openebs.io/nodeName".to_string(),
                NODE.to_string()
            ),
            // The Node's zone label, for controllers run with zone topology.
            (
                "topology.kubernetes.io/zone".to_string(),
                "zone-1".to_string()
            ),
        ])
    );
    let caps: Vec<i32> = node
        .node_get_capabilities(NodeGetCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner()
        .capabilities
        .into_iter()
        .filter_map(|c| match c.r#type {
            Some(node_service_capability::Type::Rpc(r)) => Some(r.r#type),
            _ => None,
        })
        .collect();
    use node_service_capability::rpc::Type as R;
    for want in [
        R::StageUnstageVolume,
        R::ExpandVolume,
        R::GetVolumeStats,
        R::VolumeCondition,
        // The controller accepts every single-node mode, so the node must advertise this one.
        R::SingleNodeMultiWriter,
    ] {
        assert!(caps.contains(&(want as i32)), "{want:?} missing");
    }
    let err = node
        .node_stage_volume(NodeStageVolumeRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().contains("volume_id is missing"),
        "{}",
        err.message()
    );

    tx.send(()).unwrap();
    server.await.unwrap().unwrap();
    assert!(!sock.exists(), "socket removed on shutdown");
}

async fn probe_over_socket(client: kube::Client) -> Option<bool> {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("csi.sock");
    let runner = Arc::new(HostRunner::new());
    let driver = NodeDriver::new(
        NodeConfig::new(NODE, NS),
        runner.clone(),
        Arc::new(cstor_csi_node::kube_client::KubeVolumeApi::new(client, NS)),
        Arc::new(IscsiAttacher::new(runner, dir.path())),
    );
    let endpoint = format!("unix://{}", sock.display());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        server::serve(NodeService::new(driver), &endpoint, async {
            let _ = rx.await;
        })
        .await
    });
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while tokio::net::UnixStream::connect(&sock).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "server did not start"
        );
        tokio::task::yield_now().await;
    }
    let mut id = IdentityClient::new(channel(sock).await);
    let ready = id.probe(ProbeRequest {}).await.unwrap().into_inner().ready;
    let _ = tx.send(());
    let _ = server.await;
    ready
}

#[tokio::test]
async fn probe_is_not_ready_without_the_api_server_or_a_crd() {
    assert_eq!(
        probe_over_socket(cstor_testkit::fake_api::client(
            Some("no-such-resource"),
            NS
        ))
        .await,
        Some(true)
    );
    assert_eq!(
        probe_over_socket(cstor_testkit::fake_api::client(
            Some("cstorvolumeattachments"),
            NS
        ))
        .await,
        Some(false),
        "the CVA CRD is not installed"
    );
    assert_eq!(
        probe_over_socket(cstor_testkit::fake_api::client(None, NS)).await,
        Some(false),
        "API server down"
    );
}
