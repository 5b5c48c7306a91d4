//! The kubelet's CSI plugin registration: once a node plugin serves its socket under the node's
//! `/var/lib/kubelet/plugins/<driver>/csi.sock`, the driver's name, node ID and topology keys
//! (GetPluginInfo, NodeGetInfo) go into the node's CSINode object, its topology segments become
//! Node labels, and the node ID a Node annotation — what csi-provisioner reads to place volumes.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use anyhow::Context as _;
use cstor_api::proto::csi::v1::{
    GetPluginInfoRequest, NodeGetInfoRequest, identity_client::IdentityClient,
    node_client::NodeClient,
};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::{core::v1::Node, storage::v1::CSINode};
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
};
use serde_json::json;
use tonic::transport::{Channel, Endpoint, Uri};

/// A gRPC channel over a unix socket. Socket paths are limited to 107 bytes; a longer one is
/// reached through its directory's descriptor (`/proc/self/fd/<n>/<name>`).
pub async fn unix_channel(path: PathBuf) -> anyhow::Result<Channel> {
    Ok(Endpoint::try_from("http://[::1]:50051")?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(connect_unix(&path).await?)) }
        }))
        .await?)
}

async fn connect_unix(path: &std::path::Path) -> std::io::Result<tokio::net::UnixStream> {
    if path.as_os_str().len() < 100 {
        return tokio::net::UnixStream::connect(path).await;
    }
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return tokio::net::UnixStream::connect(path).await;
    };
    let dir = std::fs::File::open(dir)?;
    let short = PathBuf::from(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&dir)
    ))
    .join(name);
    let stream = tokio::net::UnixStream::connect(short).await;
    drop(dir);
    stream
}

/// Registers the node plugin of `socket` for `node`.
pub async fn register(client: &Client, node: &str, socket: PathBuf) -> anyhow::Result<String> {
    let channel = unix_channel(socket).await?;
    let driver = IdentityClient::new(channel.clone())
        .get_plugin_info(GetPluginInfoRequest {})
        .await?
        .into_inner()
        .name;
    let info = NodeClient::new(channel)
        .node_get_info(NodeGetInfoRequest {})
        .await?
        .into_inner();
    let segments: BTreeMap<String, String> = info
        .accessible_topology
        .map(|t| t.segments.into_iter().collect())
        .unwrap_or_default();
    let pp = PatchParams::apply("cstor-local").force();
    let csinode = json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "CSINode",
        "metadata": {"name": node},
        "spec": {"drivers": [{
            "name": driver, "nodeID": info.node_id,
            "topologyKeys": segments.keys().collect::<Vec<_>>(),
            "allocatable": (info.max_volumes_per_node > 0).then(|| json!({"count": info.max_volumes_per_node})),
        }]},
    });
    Api::<CSINode>::all(client.clone())
        .patch(node, &pp, &Patch::Apply(csinode))
        .await
        .context("CSINode")?;
    let annotation = json!({driver.clone(): info.node_id}).to_string();
    let node_patch = json!({"metadata": {
        "labels": segments,
        "annotations": {"csi.volume.kubernetes.io/nodeid": annotation},
    }});
    Api::<Node>::all(client.clone())
        .patch(node, &PatchParams::default(), &Patch::Merge(node_patch))
        .await
        .context("Node labels")?;
    Ok(driver)
}

/// Registers each node's plugins as their sockets appear (`node_dir(node)` is the node's
/// directory; its `var/lib/kubelet/plugins/*/csi.sock` are the plugins), for as long as it runs.
pub async fn run(client: Client, nodes: Vec<(String, PathBuf)>) {
    let mut done: BTreeMap<(String, PathBuf), ()> = BTreeMap::new();
    loop {
        for (node, dir) in &nodes {
            let Ok(entries) = std::fs::read_dir(dir.join("var/lib/kubelet/plugins")) else {
                continue;
            };
            for e in entries.flatten() {
                let sock = e.path().join("csi.sock");
                let key = (node.clone(), sock.clone());
                if done.contains_key(&key) || !sock.exists() {
                    continue;
                }
                match register(&client, node, sock).await {
                    Ok(driver) => {
                        tracing::info!(%node, %driver, "CSI node plugin registered");
                        done.insert(key, ());
                    }
                    Err(e) => {
                        tracing::warn!(%node, error = format!("{e:#}"), "CSI plugin registration (retried)")
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
