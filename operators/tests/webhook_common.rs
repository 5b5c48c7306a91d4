//! Shared builders of the webhook tests (included with `#[path]`; has no tests of its own).
#![allow(dead_code)]

use std::collections::BTreeMap;

use cstor_api::{
    constants::label,
    cstor::{
        CStorPoolCluster, CStorPoolClusterSpec, CStorPoolInstanceBlockDevice, PoolConfig, PoolSpec,
        RaidGroup,
    },
    ndm::{
        BlockDevice, BlockDeviceClaim, BlockDeviceSpec, BlockDeviceState, BlockDeviceStatus,
        DeviceCapacity, DeviceClaimSpec, DeviceClaimState, NodeAttribute,
    },
};
use k8s_openapi::api::core::v1::{Node, ObjectReference};
use kube::api::ObjectMeta;

pub const GIB: u64 = 1 << 30;

pub fn node(name: &str, hostname: &str) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(BTreeMap::from([(
                label::HOSTNAME.to_owned(),
                hostname.to_owned(),
            )])),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// An Active, unclaimed block device on `host`.
pub fn bd(ns: &str, name: &str, host: &str, bytes: u64) -> BlockDevice {
    let mut bd = BlockDevice::namespaced(
        name,
        ns,
        BlockDeviceSpec {
            node_attributes: NodeAttribute {
                node_name: Some(host.to_owned()),
                ..Default::default()
            },
            path: format!("/dev/{name}"),
            capacity: DeviceCapacity {
                storage: bytes,
                ..Default::default()
            },
            ..Default::default()
        },
    );
    bd.metadata.uid = Some(format!("uid-{name}"));
    bd.metadata.labels = Some(BTreeMap::from([(
        label::HOSTNAME.to_owned(),
        host.to_owned(),
    )]));
    bd.status = Some(BlockDeviceStatus {
        claim_state: DeviceClaimState::Unclaimed,
        state: BlockDeviceState::Active,
        ..Default::default()
    });
    bd
}

/// Marks `bd` as claimed by `claim`.
pub fn claimed(mut bd: BlockDevice, claim: &str) -> BlockDevice {
    bd.spec.claim_ref = Some(ObjectReference {
        name: Some(claim.to_owned()),
        ..Default::default()
    });
    bd.status.as_mut().unwrap().claim_state = DeviceClaimState::Claimed;
    bd
}

/// A claim of `bd` labelled with `cspc`, optionally marked as replacing `predecessor`.
pub fn claim(
    ns: &str,
    name: &str,
    bd: &str,
    cspc: &str,
    predecessor: Option<&str>,
) -> BlockDeviceClaim {
    let mut c = BlockDeviceClaim::namespaced(
        name,
        ns,
        DeviceClaimSpec {
            block_device_name: Some(bd.to_owned()),
            ..Default::default()
        },
    );
    c.metadata.labels = Some(BTreeMap::from([(
        label::CSTOR_POOL_CLUSTER.to_owned(),
        cspc.to_owned(),
    )]));
    if let Some(p) = predecessor {
        c.metadata.annotations = Some(BTreeMap::from([(
            cstor_api::constants::annotation::BD_PREDECESSOR.to_owned(),
            p.to_owned(),
        )]));
    }
    c
}

pub fn group(bds: &[&str]) -> RaidGroup {
    RaidGroup {
        block_devices: bds
            .iter()
            .map(|b| CStorPoolInstanceBlockDevice::named(*b))
            .collect(),
        ..Default::default()
    }
}

/// A pool on the node labelled `kubernetes.io/hostname=<host>`.
pub fn pool(host: &str, raid: &str, groups: &[&[&str]]) -> PoolSpec {
    PoolSpec {
        node_selector: BTreeMap::from([(label::HOSTNAME.to_owned(), host.to_owned())]),
        data_raid_groups: groups.iter().map(|g| group(g)).collect(),
        pool_config: Some(PoolConfig {
            data_raid_group_type: raid.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn cspc(ns: &str, name: &str, pools: Vec<PoolSpec>) -> CStorPoolCluster {
    let mut c = CStorPoolCluster::namespaced(
        name,
        ns,
        CStorPoolClusterSpec {
            pools: Some(pools),
            ..Default::default()
        },
    );
    c.metadata.uid = Some(format!("uid-{name}"));
    c
}

/// POSTs `body` to `https://<addr>/validate`, verifying the server as `server_name` against
/// `ca_pem` only.
pub async fn post_validate(
    addr: std::net::SocketAddr,
    server_name: rustls_pki_types::ServerName<'static>,
    ca_pem: &str,
    body: Vec<u8>,
) -> Result<(u16, Vec<u8>), String> {
    use axum::body::Body;
    let config = cstor_operators::webhook::tls::client_config(ca_pem.as_bytes())
        .map_err(|e| e.to_string())?;
    let connector = tokio_rustls::TlsConnector::from(config);
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let stream = connector
        .connect(server_name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let request = hyper::Request::post("/validate")
        .header("host", "webhook")
        .header("content-type", "application/json")
        .body(Body::from(body))
        .map_err(|e| e.to_string())?;
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

/// A kubeconfig for the cluster: the real one, or a file pointing at the in-process server.
pub fn kubeconfig(
    cluster: &cstor_testkit::TestCluster,
    dir: &tempfile::TempDir,
) -> std::path::PathBuf {
    if let Some(server) = cluster.server() {
        let path = dir.path().join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: t\n  cluster:\n    server: {}\nusers:\n- name: t\n  user: {{}}\ncontexts:\n- name: t\n  context:\n    cluster: t\n    user: t\ncurrent-context: t\n",
            server.url()
        );
        std::fs::write(&path, text).unwrap();
        path
    } else {
        std::path::PathBuf::from(std::env::var_os(cstor_testkit::cluster::KUBECONFIG_ENV).unwrap())
    }
}
