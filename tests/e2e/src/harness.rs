//! The scenario harness: one cluster with every cStor component running in this process, the
//! stand-ins of what a bare API server lacks (kubelet, NDM, kube-proxy), CSI clients over the
//! components' unix sockets, and a cleanup that runs on success and failure.

use std::{
    collections::{BTreeMap, HashMap},
    future::Future,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use cstor_api::{
    constants::label,
    cstor::{
        CStorPoolCluster, CStorPoolClusterSpec, CStorPoolInstance, CStorPoolInstanceBlockDevice,
        CStorVolume, PoolConfig, PoolSpec, RaidGroup, RaidGroupType,
    },
    exec::{Cmd, HostRunner, RecordingRunner, Runner},
    ndm::{
        BlockDevice, BlockDeviceSpec, BlockDeviceState, BlockDeviceStatus, DeviceCapacity,
        DeviceClaimState,
    },
    proto::{
        csi::v1::{controller_client::ControllerClient, node_client::NodeClient},
        snapshot::v1alpha1::{
            VolumeSnapCreateRequest, VolumeSnapCreateResponse, VolumeSnapDeleteRequest,
            VolumeSnapDeleteResponse,
            run_snap_command_server::{RunSnapCommand, RunSnapCommandServer},
        },
    },
};
use cstor_csi_node::{
    NodeConfig, NodeDriver, NodeService, Waits,
    iscsi::IscsiAttacher,
    kube::{ApiError, Attachment, NodeInfo, VolumeApi, VolumeTarget},
    kube_client::KubeVolumeApi,
};
use cstor_operators::{
    cspc_operator, cvc_operator,
    engine::{CstorEngine, DataEngine},
    pool_manager,
    volume_manager::{
        ConfOptions, ControlClient, IstgtConf, KnownReplicaServer, ManagerConfig, SnapshotService,
        VolumeManager,
    },
};
use cstor_testkit::TestCluster;
use futures::StreamExt;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{Node, NodeCondition, NodeStatus, Service};
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, Patch, PatchParams, PostParams},
    runtime::{WatchStreamExt, watcher},
};
use tokio::{sync::watch, task::JoinHandle};
use tonic::transport::{Channel, Endpoint, Uri};

use crate::{dataplane::DataPlane, dataplane::ZvolShim, iscsi::FakeIscsiadm, istgt::IstgtStandIn};

/// Deadline of every wait of the scenarios.
pub const DEADLINE: Duration = Duration::from_secs(120);
/// Size of each sparse disk behind a BlockDevice.
pub const DISK_SIZE: u64 = 128 << 20;
/// The TCP port istgt listens on (the CVs' portals).
pub const ISCSI_PORT: u16 = 3260;

/// Runs `body` on a thread of its own, in a new private mount namespace, on a runtime whose
/// threads (workers and blocking pool) are all created inside it: every mount, mkfs and
/// losetup the components run happens there, and the mounts vanish with the namespace.
pub fn in_mount_ns<F, Fut>(body: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let handle = std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
            .expect("unshare(CLONE_NEWNS): the e2e suite must run as root");
        nix::mount::mount(
            None::<&str>,
            "/",
            None::<&str>,
            nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .expect("make / rprivate in the test's mount namespace");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        rt.block_on(body());
        rt.shutdown_timeout(Duration::from_secs(10));
    });
    if let Err(panic) = handle.join() {
        std::panic::resume_unwind(panic);
    }
}

/// Logs of the components to the test output (`RUST_LOG`, default info for cStor crates).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                "cstor_operators=info,cstor_csi_controller=info,cstor_csi_node=info,cstor_e2e=info"
                    .into()
            }),
        )
        .with_test_writer()
        .try_init();
}

fn unique(prefix: &str) -> String {
    let id = uuid_like();
    format!("{prefix}-{id}")
}

fn uuid_like() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    format!("{:08x}", h.finish() & 0xffff_ffff)
}

/// A channel to a unix socket.
pub async fn unix_channel(path: PathBuf) -> Channel {
    Endpoint::try_from("http://[::1]:50051")
        .expect("static endpoint")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await
        .expect("connecting to a component's unix socket")
}

/// kube-proxy stand-in for the node: a CV's portal `<clusterIP>:3260` is reached at the local
/// portal listener (the Service's endpoint), everything else is the real API.
#[derive(Debug)]
struct ServiceRouting {
    inner: KubeVolumeApi,
    portal: String,
}

#[async_trait]
impl VolumeApi for ServiceRouting {
    async fn cvc_phase(&self, volume: &str) -> Result<Option<String>, ApiError> {
        self.inner.cvc_phase(volume).await
    }
    async fn volume_target(&self, volume: &str) -> Result<Option<VolumeTarget>, ApiError> {
        Ok(self.inner.volume_target(volume).await?.map(|mut t| {
            if t.target_portal.ends_with(&format!(":{ISCSI_PORT}")) {
                t.target_portal = self.portal.clone();
            }
            t
        }))
    }
    async fn node(&self, name: &str) -> Result<Option<NodeInfo>, ApiError> {
        self.inner.node(name).await
    }
    async fn attachments_of_volume(&self, volume: &str) -> Result<Vec<Attachment>, ApiError> {
        self.inner.attachments_of_volume(volume).await
    }
    async fn attachments_of_node(&self, node: &str) -> Result<Vec<Attachment>, ApiError> {
        self.inner.attachments_of_node(node).await
    }
    async fn attachment(&self, name: &str) -> Result<Option<Attachment>, ApiError> {
        self.inner.attachment(name).await
    }
    async fn create_attachment(&self, cva: &Attachment, owner: &NodeInfo) -> Result<(), ApiError> {
        self.inner.create_attachment(cva, owner).await
    }
    async fn update_attachment(&self, cva: &Attachment) -> Result<(), ApiError> {
        self.inner.update_attachment(cva).await
    }
    async fn delete_attachment(&self, name: &str) -> Result<(), ApiError> {
        self.inner.delete_attachment(name).await
    }
}

/// kube-proxy stand-in for the targets' snapshot port: every Service ClusterIP is 127.0.0.1
/// here, so one listener takes the controller's `RunSnapCommand` calls and hands each to the
/// snapshot service of the volume's own volume manager.
#[derive(Clone, Default)]
struct SnapshotRouter {
    targets: Arc<Mutex<HashMap<String, Arc<SnapshotService>>>>,
}

impl SnapshotRouter {
    fn target(&self, volume: &str) -> Result<Arc<SnapshotService>, tonic::Status> {
        self.targets
            .lock()
            .unwrap()
            .get(volume)
            .cloned()
            .ok_or_else(|| tonic::Status::unavailable(format!("no target running for {volume}")))
    }
}

#[tonic::async_trait]
impl RunSnapCommand for SnapshotRouter {
    async fn run_volume_snap_create_command(
        &self,
        r: tonic::Request<VolumeSnapCreateRequest>,
    ) -> Result<tonic::Response<VolumeSnapCreateResponse>, tonic::Status> {
        let svc = self.target(&r.get_ref().volume)?;
        svc.run_volume_snap_create_command(r).await
    }

    async fn run_volume_snap_delete_command(
        &self,
        r: tonic::Request<VolumeSnapDeleteRequest>,
    ) -> Result<tonic::Response<VolumeSnapDeleteResponse>, tonic::Status> {
        let svc = self.target(&r.get_ref().volume)?;
        svc.run_volume_snap_delete_command(r).await
    }
}

/// One target pod: the istgt stand-in and the real volume manager (reconcile loop, known-replica
/// socket, snapshot service).
struct Target {
    istgt: IstgtStandIn,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Target {
    async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            if tokio::time::timeout(Duration::from_secs(10), t)
                .await
                .is_err()
            {
                tracing::warn!("a target task did not stop within 10 s");
            }
        }
        drop(self.istgt);
    }
}

/// One pool pod: the real pool manager of one CSPI over the real zpool/zfs (zvols from the
/// data plane).
struct PoolPod {
    pool: String,
    rec: Arc<RecordingRunner>,
    task: JoinHandle<()>,
}

/// What runs on "nodes": pool managers per CSPI and targets per CV (the kubelet stand-in).
#[derive(Default)]
struct Kubelet {
    pools: Mutex<BTreeMap<String, PoolPod>>,
    targets: tokio::sync::Mutex<BTreeMap<String, Target>>,
    /// Every zpool name a pool manager was started for (for the cleanup).
    pool_names: Mutex<Vec<String>>,
}

/// Everything one scenario runs on.
pub struct Harness {
    pub cluster: TestCluster,
    pub client: Client,
    pub ns: String,
    pub dir: tempfile::TempDir,
    pub plane: Arc<DataPlane>,
    /// Node names; the CSI node plugin runs as `nodes[0]`.
    pub nodes: Vec<String>,
    /// Block device names, one per node.
    pub bds: Vec<String>,
    pub iscsiadm: FakeIscsiadm,
    /// Every command the node plugin ran.
    pub node_commands: RecordingRunner,
    pub controller: ControllerClient<Channel>,
    pub node: NodeClient<Channel>,
    pub node_driver: NodeDriver,
    kubelet: Arc<Kubelet>,
    router: SnapshotRouter,
    tasks: Vec<JoinHandle<()>>,
    stop: watch::Sender<bool>,
}

impl std::fmt::Debug for Harness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Harness")
            .field("ns", &self.ns)
            .field("dir", &self.dir.path())
            .finish()
    }
}

fn ready_node(name: &str) -> Node {
    Node {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            labels: Some(BTreeMap::from([(
                label::HOSTNAME.to_string(),
                name.to_string(),
            )])),
            ..Default::default()
        },
        status: Some(NodeStatus {
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: "True".into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

impl Harness {
    /// Starts the cluster, the stand-ins and every component. `nodes` nodes each get one
    /// sparse-file BlockDevice.
    pub async fn start(nodes: usize) -> Harness {
        let cluster = TestCluster::start().await;
        let client = cluster.client();
        // On the in-process server each component gets a client of its own, so the calls it
        // makes are recorded under its ServiceAccount name (checked against deploy/'s RBAC).
        let as_sa = |sa: &str| {
            cluster
                .server()
                .map(|s| s.client_as(sa))
                .unwrap_or_else(|| client.clone())
        };
        let ns = cluster.namespace().to_owned();
        let dir = tempfile::tempdir().expect("tempdir");
        let plane = DataPlane::new(dir.path().join("plane")).expect("data plane directory");
        let tag = uuid_like();
        let node_names: Vec<String> = (0..nodes).map(|i| format!("e2e-{tag}-n{i}")).collect();
        for n in &node_names {
            Api::<Node>::all(client.clone())
                .create(&PostParams::default(), &ready_node(n))
                .await
                .expect("create Node");
        }
        std::fs::create_dir_all(dir.path().join("disks")).expect("disks dir");
        let mut bds = Vec::new();
        for n in &node_names {
            let name = unique("bd");
            create_bd(&client, &ns, &dir.path().join("disks"), &name, n).await;
            bds.push(name);
        }
        let (stop, stopped) = watch::channel(false);
        let stopped_fut = move || {
            let mut rx = stopped.clone();
            async move {
                let _ = rx.wait_for(|v| *v).await;
            }
        };
        let mut tasks = Vec::new();

        // NDM stand-in: binds every claim to its block device.
        tasks.push(tokio::spawn(cstor_local::controllers::ndm(
            client.clone(),
            ns.clone(),
        )));
        // kube-proxy/Service IP allocation stand-in (a bare API server assigns none).
        if !cluster.is_real() {
            tasks.push(tokio::spawn(cluster_ips(client.clone(), ns.clone())));
        }

        // The operators.
        let cspc_ctx =
            cspc_operator::Context::new(as_sa("openebs-cstor-cspc-operator"), Default::default())
                .with_resync(Duration::from_secs(2));
        tasks.push(tokio::spawn(cspc_operator::run(cspc_ctx, Some(ns.clone()))));
        let mut cvc_cfg = cvc_operator::Config::new(&ns);
        cvc_cfg.resync = Duration::from_secs(2);
        cvc_cfg.retry = Duration::from_millis(300);
        cvc_cfg.wait_retry = Duration::from_millis(200);
        let cvc_ctx = cvc_operator::Context::new(as_sa("openebs-cstor-cvc-operator"), cvc_cfg);
        tasks.push(tokio::spawn(cvc_operator::run(cvc_ctx, stopped_fut())));

        // The snapshot port of every target.
        let router = SnapshotRouter::default();
        let snap_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the snapshot port");
        let snap_port = snap_listener.local_addr().expect("local addr").port();
        {
            let router = router.clone();
            let stop = stopped_fut();
            tasks.push(tokio::spawn(async move {
                let _ = tonic::transport::Server::builder()
                    .add_service(RunSnapCommandServer::new(router))
                    .serve_with_incoming_shutdown(
                        tokio_stream::wrappers::TcpListenerStream::new(snap_listener),
                        stop,
                    )
                    .await;
            }));
        }

        // The iSCSI portal every target Service leads to (accepts and drops connections).
        let portal_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the portal");
        let portal: SocketAddr = portal_listener.local_addr().expect("local addr");
        tasks.push(tokio::spawn(async move {
            while let Ok((s, _)) = portal_listener.accept().await {
                drop(s);
            }
        }));

        // Kubelet stand-in: pool managers per CSPI, targets per CV.
        let kubelet = Arc::new(Kubelet::default());
        let zvol_runner: Arc<dyn Runner> =
            Arc::new(ZvolShim::new(Arc::new(HostRunner::new()), plane.clone()));
        tasks.push(tokio::spawn(run_pool_pods(
            client.clone(),
            as_sa("openebs-cstor-pool-manager"),
            ns.clone(),
            kubelet.clone(),
            zvol_runner,
            dir.path().to_path_buf(),
        )));
        tasks.push(tokio::spawn(run_targets(
            Clients {
                infra: client.clone(),
                component: as_sa("openebs-cstor-volume-manager"),
            },
            ns.clone(),
            kubelet.clone(),
            plane.clone(),
            router.clone(),
            dir.path().join("targets"),
            node_names[0].clone(),
        )));

        // CSI controller on its unix socket.
        let sockets = dir.path().join("csi");
        std::fs::create_dir_all(&sockets).expect("socket dir");
        let mut ccfg = cstor_csi_controller::Config::new(&ns);
        ccfg.snapshot_port = snap_port;
        // On a real cluster the targets' ClusterIPs are not reachable from here: every snapshot
        // command goes to the local router, which dispatches by volume.
        ccfg.snapshot_host = Some("127.0.0.1".to_owned());
        ccfg.snapshot_timeout = Duration::from_secs(30);
        let csvc = cstor_csi_controller::ControllerService::new(
            as_sa("openebs-cstor-csi-controller-sa"),
            ccfg,
        );
        let csock = sockets.join("controller.sock");
        let listener = cstor_csi_controller::bind_unix(&csock).expect("bind controller socket");
        {
            let stop = stopped_fut();
            tasks.push(tokio::spawn(async move {
                if let Err(e) = cstor_csi_controller::serve_unix(listener, csvc, true, stop).await {
                    tracing::error!(error = %e, "controller server failed");
                }
            }));
        }

        // CSI node plugin of nodes[0] on its unix socket.
        let dev_root = dir.path().join("by-path");
        std::fs::create_dir_all(&dev_root).expect("device root");
        let iscsiadm = FakeIscsiadm::new(plane.clone(), &dev_root);
        let node_commands = RecordingRunner::new(Arc::new(iscsiadm.runner()));
        let runner: Arc<dyn Runner> = Arc::new(node_commands.clone());
        let attacher = IscsiAttacher::new(runner.clone(), &dev_root)
            .with_device_timeout(Duration::from_secs(10));
        let mut ncfg = NodeConfig::new(&node_names[0], &ns);
        ncfg.waits = Waits {
            cvc_bound: Duration::from_secs(30),
            volume_ready: Duration::from_secs(30),
            portal_reachable: Duration::from_secs(10),
            device_resize: Duration::from_secs(2),
            poll: Duration::from_millis(100),
        };
        let api: Arc<dyn VolumeApi> = Arc::new(ServiceRouting {
            inner: KubeVolumeApi::new(as_sa("openebs-cstor-csi-node-sa"), &ns),
            portal: portal.to_string(),
        });
        let node_driver = NodeDriver::new(ncfg, runner, api, Arc::new(attacher));
        let nsock = sockets.join("node.sock");
        {
            let svc = NodeService::new(node_driver.clone());
            let endpoint = format!("unix://{}", nsock.display());
            let stop = stopped_fut();
            tasks.push(tokio::spawn(async move {
                if let Err(e) = cstor_csi_node::server::serve(svc, &endpoint, stop).await {
                    tracing::error!(error = %e, "node server failed");
                }
            }));
        }
        cstor_testkit::wait_until("node socket", Duration::from_secs(10), || async {
            nsock.exists()
        })
        .await
        .expect("the node plugin did not create its socket");

        let controller = ControllerClient::new(unix_channel(csock).await);
        let node = NodeClient::new(unix_channel(nsock).await);
        Harness {
            cluster,
            client,
            ns,
            dir,
            plane,
            nodes: node_names,
            bds,
            iscsiadm,
            node_commands,
            controller,
            node,
            node_driver,
            kubelet,
            router,
            tasks,
            stop,
        }
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// A CSPC with one stripe pool per node, each on that node's block device.
    pub async fn create_cspc(&self, name: &str) -> CStorPoolCluster {
        let pools = self
            .nodes
            .iter()
            .zip(&self.bds)
            .map(|(node, bd)| PoolSpec {
                node_selector: [(label::HOSTNAME.to_string(), node.clone())].into(),
                data_raid_groups: vec![RaidGroup {
                    block_devices: vec![CStorPoolInstanceBlockDevice::named(bd.clone())],
                    ..Default::default()
                }],
                pool_config: Some(PoolConfig {
                    data_raid_group_type: RaidGroupType::Stripe,
                    compression: Some("on".into()),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect();
        let cspc = CStorPoolCluster::namespaced(
            name,
            &self.ns,
            CStorPoolClusterSpec {
                pools: Some(pools),
                ..Default::default()
            },
        );
        self.api::<CStorPoolCluster>()
            .create(&PostParams::default(), &cspc)
            .await
            .expect("create CSPC")
    }

    /// zpool names of the pool managers started so far.
    pub fn pool_names(&self) -> Vec<String> {
        self.kubelet.pool_names.lock().unwrap().clone()
    }

    /// Commands the pool manager of `cspi` ran (empty when none runs).
    pub fn pool_commands(&self, cspi: &str) -> Vec<String> {
        self.kubelet
            .pools
            .lock()
            .unwrap()
            .get(cspi)
            .map(|p| p.rec.lines())
            .unwrap_or_default()
    }

    /// The zpool of `cspi`'s pool manager.
    pub fn pool_of(&self, cspi: &str) -> Option<String> {
        self.kubelet
            .pools
            .lock()
            .unwrap()
            .get(cspi)
            .map(|p| p.pool.clone())
    }

    /// Requests the istgt stand-in of `pv` received.
    pub async fn target_requests(&self, pv: &str) -> Vec<String> {
        self.kubelet
            .targets
            .lock()
            .await
            .get(pv)
            .map(|t| t.istgt.requests())
            .unwrap_or_default()
    }

    /// Holds or releases the `RESIZE` commands of `pv`'s target; `false` when no target runs.
    pub async fn hold_resize(&self, pv: &str, hold: bool) -> bool {
        match self.kubelet.targets.lock().await.get(pv) {
            Some(t) => {
                t.istgt.hold_resize(hold);
                true
            }
            None => false,
        }
    }

    /// Volumes whose target runs.
    pub async fn running_targets(&self) -> Vec<String> {
        self.kubelet.targets.lock().await.keys().cloned().collect()
    }

    /// Whether `zpool list <pool>` finds the pool.
    pub async fn zpool_exists(&self, pool: &str) -> bool {
        HostRunner::new()
            .run(&Cmd::new("zpool").args(["list", "-H", "-o", "name", pool]))
            .await
            .is_ok_and(|o| o.success())
    }

    /// Stops every component, destroys the pools, detaches loop devices, deletes the nodes
    /// and the namespace. Safe after a failure at any point.
    pub async fn cleanup(mut self) {
        let _ = self.stop.send(true);
        for t in self.tasks.drain(..) {
            t.abort();
            let _ = t.await;
        }
        let targets: Vec<Target> = std::mem::take(&mut *self.kubelet.targets.lock().await)
            .into_values()
            .collect();
        for t in targets {
            t.stop().await;
        }
        self.router.targets.lock().unwrap().clear();
        let pods: Vec<PoolPod> = std::mem::take(&mut *self.kubelet.pools.lock().unwrap())
            .into_values()
            .collect();
        for p in pods {
            p.task.abort();
            let _ = p.task.await;
        }
        destroy_pools(&self.pool_names()).await;
        for n in &self.nodes {
            let _ = Api::<Node>::all(self.client.clone())
                .delete(n, &DeleteParams::default())
                .await;
        }
        if let Err(e) = self.cluster.cleanup().await {
            tracing::warn!(error = %e, "namespace cleanup failed");
        }
        // The iscsiadm sessions' loop devices are detached when the last handle drops.
    }
}

async fn destroy_pools(pools: &[String]) {
    let host = HostRunner::new();
    for p in pools {
        let _ = host
            .run(&Cmd::new("zpool").args(["destroy", "-f", p.as_str()]))
            .await;
    }
}

/// Creates a sparse file and its Active, Unclaimed BlockDevice on `node`.
async fn create_bd(client: &Client, ns: &str, dir: &Path, name: &str, node: &str) {
    let path = dir.join(format!("{name}.img"));
    let f = std::fs::File::create(&path).expect("create sparse disk");
    f.set_len(DISK_SIZE).expect("size sparse disk");
    let mut bd = BlockDevice::namespaced(
        name,
        ns,
        BlockDeviceSpec {
            path: path.to_string_lossy().into_owned(),
            capacity: DeviceCapacity {
                storage: DISK_SIZE,
                ..Default::default()
            },
            ..Default::default()
        },
    );
    bd.spec.node_attributes.node_name = Some(node.into());
    bd.metadata.labels = Some(BTreeMap::from([(
        label::HOSTNAME.to_string(),
        node.to_string(),
    )]));
    bd.status = Some(BlockDeviceStatus {
        claim_state: DeviceClaimState::Unclaimed,
        state: BlockDeviceState::Active,
        ..Default::default()
    });
    Api::<BlockDevice>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &bd)
        .await
        .expect("create BlockDevice");
}

/// Gives every Service ClusterIP 127.0.0.1 (the in-process API server allocates none).
async fn cluster_ips(client: Client, ns: String) {
    let svcs: Api<Service> = Api::namespaced(client, &ns);
    let mut stream = std::pin::pin!(
        watcher(svcs.clone(), watcher::Config::default())
            .default_backoff()
            .applied_objects()
    );
    while let Some(ev) = stream.next().await {
        let Ok(svc) = ev else { continue };
        let has_ip = svc
            .spec
            .as_ref()
            .and_then(|s| s.cluster_ip.as_deref())
            .is_some_and(|ip| !ip.is_empty());
        if !has_ip {
            let _ = svcs
                .patch(
                    &svc.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(serde_json::json!({"spec": {"clusterIP": "127.0.0.1"}})),
                )
                .await;
        }
    }
}

/// Kubelet stand-in for pool pods: one pool manager per CSPI, stopped when the CSPI is gone.
async fn run_pool_pods(
    client: Client,
    pm_client: Client,
    ns: String,
    kubelet: Arc<Kubelet>,
    zvol_runner: Arc<dyn Runner>,
    dir: PathBuf,
) {
    let cspis: Api<CStorPoolInstance> = Api::namespaced(client.clone(), &ns);
    let cspcs: Api<CStorPoolCluster> = Api::namespaced(client.clone(), &ns);
    let mut stream = std::pin::pin!(watcher(cspis, watcher::Config::default()).default_backoff());
    while let Some(ev) = stream.next().await {
        let (cspi, deleted) = match ev {
            Ok(watcher::Event::Apply(c) | watcher::Event::InitApply(c)) => (c, false),
            Ok(watcher::Event::Delete(c)) => (c, true),
            _ => continue,
        };
        let name = cspi.name_any();
        if deleted {
            let pod = kubelet.pools.lock().unwrap().remove(&name);
            if let Some(p) = pod {
                p.task.abort();
            }
            continue;
        }
        if kubelet.pools.lock().unwrap().contains_key(&name) {
            continue;
        }
        let cspc_uid = match cspi
            .owner_references()
            .iter()
            .find(|o| o.kind == "CStorPoolCluster")
        {
            Some(o) => o.uid.clone(),
            None => {
                let Some(cspc) = cspi.labels().get(label::CSTOR_POOL_CLUSTER) else {
                    continue;
                };
                match cspcs.get(cspc).await.ok().and_then(|c| c.uid()) {
                    Some(u) => u,
                    None => continue,
                }
            }
        };
        let host = cspi.spec.host_name.clone().unwrap_or_else(|| name.clone());
        // Every pool of a CSPC is `cstor-<uid>` on its own node; this host plays all nodes.
        let pool = format!(
            "{}-{}",
            cstor_api::naming::pool_name(&cspc_uid),
            host.rsplit('-').next().unwrap_or("n")
        );
        let rec = Arc::new(RecordingRunner::new(zvol_runner.clone()));
        let engine: Arc<dyn DataEngine> = Arc::new(
            CstorEngine::new(rec.clone())
                .with_cache_file(dir.join(format!("{name}.cache")).to_string_lossy()),
        );
        let ctx = pool_manager::Context::new(
            pm_client.clone(),
            engine,
            &ns,
            cspi.uid().unwrap_or_default(),
            &cspc_uid,
        )
        .with_resync(Duration::from_secs(2))
        .with_pool_name(&pool);
        kubelet.pool_names.lock().unwrap().push(pool.clone());
        let task = tokio::spawn(pool_manager::run(ctx));
        kubelet
            .pools
            .lock()
            .unwrap()
            .insert(name, PoolPod { pool, rec, task });
    }
}

/// Kubelet stand-in for target pods: for each CV, an istgt stand-in and the real volume manager;
/// stopped when the CV is gone.
/// The test infrastructure's client and the client a component runs with.
struct Clients {
    infra: Client,
    component: Client,
}

async fn run_targets(
    clients: Clients,
    ns: String,
    kubelet: Arc<Kubelet>,
    plane: Arc<DataPlane>,
    router: SnapshotRouter,
    dir: PathBuf,
    node: String,
) {
    let Clients {
        infra: client,
        component: vm_client,
    } = clients;
    let cvs: Api<CStorVolume> = Api::namespaced(client.clone(), &ns);
    let mut stream =
        std::pin::pin!(watcher(cvs.clone(), watcher::Config::default()).default_backoff());
    while let Some(ev) = stream.next().await {
        let (cv, deleted) = match ev {
            Ok(watcher::Event::Apply(c) | watcher::Event::InitApply(c)) => (c, false),
            Ok(watcher::Event::Delete(c)) => (c, true),
            _ => continue,
        };
        let pv = cv.name_any();
        if deleted {
            router.targets.lock().unwrap().remove(&pv);
            let target = kubelet.targets.lock().await.remove(&pv);
            if let Some(t) = target {
                t.stop().await;
            }
            continue;
        }
        if kubelet.targets.lock().await.contains_key(&pv) {
            continue;
        }
        let pod_dir = dir.join(&pv);
        if let Err(e) = std::fs::create_dir_all(&pod_dir) {
            tracing::error!(pv, error = %e, "target directory");
            continue;
        }
        let ctl = pod_dir.join("istgt_ctl_sock");
        let known_sock = pod_dir.join("volume_mgmt_sock");
        let istgt = match IstgtStandIn::start(&ctl, &pv, plane.clone(), cvs.clone(), &known_sock) {
            Ok(i) => i,
            Err(e) => {
                tracing::error!(pv, error = %e, "istgt stand-in");
                continue;
            }
        };
        let control = ControlClient::new(&ctl);
        let conf = Arc::new(IstgtConf::new(pod_dir.join("istgt.conf")));
        let uds = match KnownReplicaServer::bind(&known_sock) {
            Ok(u) => u,
            Err(e) => {
                tracing::error!(pv, error = %e, "known-replica socket");
                continue;
            }
        };
        let (stop, stopped) = watch::channel(false);
        let stopped = move || {
            let mut rx = stopped.clone();
            async move {
                let _ = rx.wait_for(|v| *v).await;
            }
        };
        let known = KnownReplicaServer::new(vm_client.clone(), &ns, conf.clone());
        let manager = VolumeManager::new(
            vm_client.clone(),
            control.clone(),
            conf,
            ManagerConfig {
                namespace: ns.clone(),
                volume_uid: cv.uid().unwrap_or_default(),
                resync_interval: Duration::from_millis(500),
                istgt_retry_interval: Duration::from_millis(200),
                pod_name: format!("{pv}-target"),
                node_name: node.clone(),
                conf_options: ConfOptions::default(),
            },
        );
        let tasks = vec![
            tokio::spawn(known.serve(uds, stopped())),
            tokio::spawn({
                let pv = pv.clone();
                let stop = stopped();
                async move {
                    if let Err(e) = manager.run(stop).await {
                        tracing::info!(pv, error = %e, "volume manager ended");
                    }
                }
            }),
        ];
        router
            .targets
            .lock()
            .unwrap()
            .insert(pv.clone(), Arc::new(SnapshotService::new(control)));
        kubelet
            .targets
            .lock()
            .await
            .insert(pv, Target { istgt, stop, tasks });
    }
}
