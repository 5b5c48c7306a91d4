//! Shared harness of the controller's integration tests: a [`TestCluster`], the controller
//! serving on a real unix socket, tonic clients over that socket, an in-test target snapshot
//! service on 127.0.0.1, and builders for requests and for the objects the operators would
//! write (CStorVolume, CStorVolumeReplica, CStorVolumeAttachment, CStorPoolInstance, Node).
#![allow(dead_code)]

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    path::PathBuf,
    sync::{Arc, Mutex},
};

use cstor_api::{
    constants::label,
    cstor::{
        CStorPoolInstance, CStorPoolInstanceCapacity, CStorPoolInstancePhase,
        CStorPoolInstanceSpec, CStorPoolInstanceStatus, CStorSnapshotInfo, CStorVolume,
        CStorVolumeAttachment, CStorVolumeAttachmentSpec, CStorVolumePhase, CStorVolumeReplica,
        CStorVolumeReplicaSpec, CStorVolumeReplicaStatus, CStorVolumeSpec, CStorVolumeStatus,
        VolumeInfo,
    },
    proto::{
        csi::v1::{
            CapacityRange, CreateVolumeRequest, VolumeCapability,
            controller_client::ControllerClient,
            identity_client::IdentityClient,
            volume_capability::{
                AccessMode, AccessType, BlockVolume, MountVolume, access_mode::Mode,
            },
        },
        snapshot::v1alpha1::{
            VolumeSnapCreateRequest, VolumeSnapCreateResponse, VolumeSnapDeleteRequest,
            VolumeSnapDeleteResponse,
            run_snap_command_server::{RunSnapCommand, RunSnapCommandServer},
        },
    },
};
use cstor_csi_controller::{Config, ControllerService, bind_unix, serve_unix};
use cstor_testkit::TestCluster;
use hyper_util::rt::TokioIo;
use k8s_openapi::{
    api::core::v1::Node,
    apimachinery::pkg::{api::resource::Quantity, apis::meta::v1::ObjectMeta},
};
use kube::{
    Api, Client,
    api::{DeleteParams, PostParams},
};
use tokio::sync::oneshot;
use tonic::transport::{Channel, Endpoint, Uri};

pub const GIB: i64 = 1 << 30;
pub const CSPC: &str = "cspc-test";

/// What the fake target did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SnapCall {
    Create(String, String),
    Delete(String, String),
}

/// An in-test `v1alpha1.RunSnapCommand` server keeping a set of `volume@snap`.
#[derive(Clone, Default)]
pub struct FakeTarget {
    pub calls: Arc<Mutex<Vec<SnapCall>>>,
    pub snapshots: Arc<Mutex<BTreeSet<String>>>,
    /// Answer every command with an ERR reply (an unhealthy volume).
    pub refuse: Arc<Mutex<bool>>,
}

fn reply(text: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "response": text })).unwrap()
}

#[tonic::async_trait]
impl RunSnapCommand for FakeTarget {
    async fn run_volume_snap_create_command(
        &self,
        r: tonic::Request<VolumeSnapCreateRequest>,
    ) -> Result<tonic::Response<VolumeSnapCreateResponse>, tonic::Status> {
        let r = r.into_inner();
        assert_eq!(r.version, 1, "protocol version");
        self.calls
            .lock()
            .unwrap()
            .push(SnapCall::Create(r.volume.clone(), r.snapname.clone()));
        let ok = !*self.refuse.lock().unwrap()
            && self
                .snapshots
                .lock()
                .unwrap()
                .insert(format!("{}@{}", r.volume, r.snapname));
        let text = if ok {
            "OK SNAPCREATE\r\n"
        } else {
            "ERR failed SNAPCREATE\r\n"
        };
        Ok(tonic::Response::new(VolumeSnapCreateResponse {
            version: 1,
            status: reply(text),
        }))
    }

    async fn run_volume_snap_delete_command(
        &self,
        r: tonic::Request<VolumeSnapDeleteRequest>,
    ) -> Result<tonic::Response<VolumeSnapDeleteResponse>, tonic::Status> {
        let r = r.into_inner();
        self.calls
            .lock()
            .unwrap()
            .push(SnapCall::Delete(r.volume.clone(), r.snapname.clone()));
        let ok = !*self.refuse.lock().unwrap()
            && self
                .snapshots
                .lock()
                .unwrap()
                .remove(&format!("{}@{}", r.volume, r.snapname));
        let text = if ok {
            "OK SNAPDESTROY\r\n"
        } else {
            "ERR failed SNAPDESTROY\r\n"
        };
        Ok(tonic::Response::new(VolumeSnapDeleteResponse {
            version: 1,
            status: reply(text),
        }))
    }
}

impl FakeTarget {
    /// Serves on 127.0.0.1:<random>; returns the port.
    pub async fn start(&self) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let svc = RunSnapCommandServer::new(self.clone());
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await
                .unwrap();
        });
        port
    }

    pub fn calls(&self) -> Vec<SnapCall> {
        self.calls.lock().unwrap().clone()
    }

    pub fn has(&self, id: &str) -> bool {
        self.snapshots.lock().unwrap().contains(id)
    }
}

/// Controller + cluster + fake target + clients over the unix socket.
pub struct Harness {
    pub cluster: TestCluster,
    pub svc: ControllerService,
    pub target: FakeTarget,
    pub controller: ControllerClient<Channel>,
    pub identity: IdentityClient<Channel>,
    pub socket: PathBuf,
    _dir: tempfile::TempDir,
    _stop: oneshot::Sender<()>,
    nodes: Mutex<Vec<String>>,
}

/// A channel to a unix socket.
pub async fn unix_channel(path: PathBuf) -> Channel {
    Endpoint::try_from("http://[::1]:50051")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await
        .expect("connecting to the controller's unix socket")
}

impl Harness {
    pub async fn start() -> Harness {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tune: impl FnOnce(&mut Config)) -> Harness {
        let cluster = TestCluster::start().await;
        let target = FakeTarget::default();
        let port = target.start().await;
        let mut config = Config::new(cluster.namespace());
        config.snapshot_port = port;
        config.snapshot_timeout = std::time::Duration::from_secs(10);
        tune(&mut config);
        let svc = ControllerService::new(cluster.client(), config);
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("csi.sock");
        let listener = bind_unix(&socket).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let server_svc = svc.clone();
        tokio::spawn(async move {
            serve_unix(listener, server_svc, true, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        let channel = unix_channel(socket.clone()).await;
        Harness {
            cluster,
            svc,
            target,
            controller: ControllerClient::new(channel.clone()),
            identity: IdentityClient::new(channel),
            socket,
            _dir: dir,
            _stop: stop,
            nodes: Mutex::new(Vec::new()),
        }
    }

    pub fn client(&self) -> Client {
        self.cluster.client()
    }

    pub fn ns(&self) -> &str {
        self.cluster.namespace()
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client(), self.ns())
    }

    /// Creates the CStorVolume the cvc-operator would: target IP 127.0.0.1 (the fake target).
    pub async fn bind_volume(&self, pv: &str, phase: Option<&str>, capacity: &str) {
        let mut cv = CStorVolume::namespaced(
            pv,
            self.ns(),
            CStorVolumeSpec {
                target_ip: Some("127.0.0.1".into()),
                iqn: Some(cstor_api::naming::iqn(pv)),
                target_portal: Some("127.0.0.1:3260".into()),
                capacity: Some(Quantity(capacity.into())),
                ..Default::default()
            },
        );
        cv.metadata.labels = Some([(label::PERSISTENT_VOLUME.to_string(), pv.to_string())].into());
        cv.status = Some(CStorVolumeStatus {
            phase: phase.map(CStorVolumePhase::from),
            capacity: Some(Quantity(capacity.into())),
            ..Default::default()
        });
        self.api::<CStorVolume>()
            .create(&PostParams::default(), &cv)
            .await
            .unwrap();
    }

    /// Creates a replica of `pv` on pool `pool` reporting `snapshots`.
    pub async fn replica(&self, pv: &str, pool: &str, snapshots: &[&str]) {
        let mut cvr = CStorVolumeReplica::namespaced(
            cstor_api::naming::cvr_name(pv, pool),
            self.ns(),
            CStorVolumeReplicaSpec {
                target_ip: Some("127.0.0.1".into()),
                capacity: Some("1Gi".into()),
                ..Default::default()
            },
        );
        cvr.metadata.labels = Some(
            [
                (label::PERSISTENT_VOLUME.to_string(), pv.to_string()),
                (label::CSTOR_VOLUME_NAME.to_string(), pv.to_string()),
                (label::CSPI_NAME.to_string(), pool.to_string()),
            ]
            .into(),
        );
        let snaps: BTreeMap<String, CStorSnapshotInfo> = snapshots
            .iter()
            .map(|s| {
                (
                    s.to_string(),
                    CStorSnapshotInfo {
                        logical_referenced: 4096,
                        ..Default::default()
                    },
                )
            })
            .collect();
        cvr.status = Some(CStorVolumeReplicaStatus {
            snapshots: Some(snaps),
            ..Default::default()
        });
        self.api::<CStorVolumeReplica>()
            .create(&PostParams::default(), &cvr)
            .await
            .unwrap();
    }

    /// Creates the CStorVolumeAttachment the node plugin writes while `pv` is staged on `node`.
    pub async fn stage(&self, pv: &str, node: &str) {
        let mut cva = CStorVolumeAttachment::namespaced(
            cstor_api::naming::cva_name(pv, node),
            self.ns(),
            CStorVolumeAttachmentSpec {
                volume: VolumeInfo {
                    name: pv.into(),
                    owner_node_id: node.into(),
                    ..Default::default()
                },
                ..Default::default()
            },
        );
        cva.metadata.labels = Some(
            [
                (label::CVA_NODE_ID.to_string(), node.to_string()),
                (label::CVA_VOLNAME.to_string(), pv.to_string()),
            ]
            .into(),
        );
        self.api::<CStorVolumeAttachment>()
            .create(&PostParams::default(), &cva)
            .await
            .unwrap();
    }

    /// Creates a pool of `cspc` on the node with `kubernetes.io/hostname=host`.
    pub async fn pool(
        &self,
        name: &str,
        cspc: &str,
        host: &str,
        phase: &str,
        read_only: bool,
        free: &str,
    ) {
        let mut cspi = CStorPoolInstance::namespaced(
            name,
            self.ns(),
            CStorPoolInstanceSpec {
                host_name: Some(host.into()),
                node_selector: [(label::HOSTNAME.to_string(), host.to_string())].into(),
                ..Default::default()
            },
        );
        cspi.metadata.labels =
            Some([(label::CSTOR_POOL_CLUSTER.to_string(), cspc.to_string())].into());
        cspi.status = Some(CStorPoolInstanceStatus {
            phase: Some(CStorPoolInstancePhase::from(phase)),
            read_only,
            capacity: Some(CStorPoolInstanceCapacity {
                free: Quantity(free.into()),
                used: Quantity("0".into()),
                total: Quantity(free.into()),
                ..Default::default()
            }),
            ..Default::default()
        });
        self.api::<CStorPoolInstance>()
            .create(&PostParams::default(), &cspi)
            .await
            .unwrap();
    }

    /// Creates a Node (cluster-scoped: the name is made unique and the node deleted on
    /// [`Harness::cleanup`]). Returns its name.
    pub async fn node(&self, prefix: &str, labels: &[(&str, &str)]) -> String {
        let name = format!(
            "{prefix}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let mut all: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        all.insert(label::HOSTNAME.into(), name.clone());
        let node = Node {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(all),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<Node>::all(self.client())
            .create(&PostParams::default(), &node)
            .await
            .unwrap();
        self.nodes.lock().unwrap().push(name.clone());
        name
    }

    pub async fn cleanup(self) {
        let nodes: Vec<String> = self.nodes.lock().unwrap().clone();
        for n in nodes {
            let _ = Api::<Node>::all(self.client())
                .delete(&n, &DeleteParams::default())
                .await;
        }
        self.cluster.cleanup().await.unwrap();
    }
}

/// A fresh volume name.
pub fn pv_name() -> String {
    format!("pvc-{}", uuid::Uuid::new_v4())
}

pub fn params(cspc: &str, replicas: &str) -> HashMap<String, String> {
    [
        ("cstorPoolCluster", cspc),
        ("replicaCount", replicas),
        ("cas-type", "cstor"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

pub fn mount_cap(fs: &str) -> VolumeCapability {
    cap(
        Mode::SingleNodeWriter,
        AccessType::Mount(MountVolume {
            fs_type: fs.into(),
            ..Default::default()
        }),
    )
}

pub fn block_cap() -> VolumeCapability {
    cap(Mode::SingleNodeWriter, AccessType::Block(BlockVolume {}))
}

pub fn cap(mode: Mode, access: AccessType) -> VolumeCapability {
    VolumeCapability {
        access_mode: Some(AccessMode { mode: mode as i32 }),
        access_type: Some(access),
    }
}

pub fn create_req(name: &str, required: i64) -> CreateVolumeRequest {
    CreateVolumeRequest {
        name: name.into(),
        capacity_range: Some(CapacityRange {
            required_bytes: required,
            limit_bytes: 0,
        }),
        volume_capabilities: vec![mount_cap("ext4")],
        parameters: params(CSPC, "1"),
        ..Default::default()
    }
}
