//! Shared support for the pool-manager / cspc-operator scenario tests: the zfs-fuse daemon
//! (started when its socket does not answer), sparse-file block devices published as NDM
//! BlockDevices, a stand-in for NDM's claim binding, and a runner shim that plays the uZFS-only
//! zvol commands (zfs-fuse has no zvols) while everything else runs on the real tools.
#![allow(dead_code)]

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use cstor_api::{
    constants::label,
    exec::{Cmd, ExecError, HostRunner, Output, RecordingRunner, Runner},
    ndm::{
        BlockDevice, BlockDeviceClaim, BlockDeviceSpec, BlockDeviceState, BlockDeviceStatus,
        DeviceCapacity, DeviceClaimPhase, DeviceClaimState, DeviceClaimStatus,
    },
};
use k8s_openapi::api::core::v1::{Node, ObjectReference};
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, ListParams, PostParams},
};

pub const DISK_SIZE: u64 = 128 << 20;

/// Makes sure a zfs-fuse daemon answers; `Err(reason)` only when the binary is missing.
pub async fn ensure_zfs_fuse() -> Result<(), String> {
    cstor_testkit::zfs_fuse::ensure_zfs_fuse()
        .await
        .map_err(|m| m.to_string())
}

/// Plays the uZFS zvol commands zfs-fuse lacks: `zfs create -V`, `zfs stats`, `zfs get`/`zfs set`
/// of zvol properties, `zfs get used,logicalreferenced <zvol>`, `zfs destroy -R <zvol>`, and adds
/// the zvols to the dataset listings, with uZFS's behaviour as recorded in
/// `tests/fixtures/real-engine` (checked by `engine_real_recordings.rs`). Everything else runs
/// on `inner`.
#[derive(Debug)]
pub struct ZvolShim {
    inner: Arc<dyn Runner>,
    pub zvols: Mutex<BTreeSet<String>>,
    /// Snapshots of the zvols (`zfs listsnap` answers from here), name → logicalreferenced.
    pub snapshots:
        Mutex<std::collections::BTreeMap<String, std::collections::BTreeMap<String, u64>>>,
    /// uZFS's `io.openebs:readonly` pool property (zfs-fuse has no such property), per pool.
    pub read_only: Mutex<std::collections::BTreeMap<String, bool>>,
    /// `zfs stats` status of a zvol when not `Healthy` (e.g. `Rebuilding`).
    pub stats_status: Mutex<std::collections::BTreeMap<String, String>>,
    /// The `-o` properties of each zvol (`zfs get`/`zfs set` answer from here).
    pub props:
        Mutex<std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>>,
}

/// Behaves as uZFS does for `zfs set <k>=<v> <zvol>` (tests/fixtures/real-engine): changing
/// `io.openebs:targetip` from one address to another directly aborts (exit 134).
pub fn uzfs_set(
    props: &mut std::collections::BTreeMap<String, String>,
    key: &str,
    value: &str,
) -> Output {
    let current = props.get(key).map(String::as_str).unwrap_or("");
    if key == "io.openebs:targetip" && !current.is_empty() && !value.is_empty() && current != value
    {
        return Output::fail(134, "internal error: Invalid argument\n");
    }
    props.insert(key.to_owned(), value.to_owned());
    Output::ok("")
}

/// uZFS's `zfs stats <zvol>`: a zvol without a target has no entry, and the list ends with a
/// `{"pool":{}}` element.
pub fn uzfs_stats(zvol: &str, target_ip: &str, status: &str) -> String {
    if target_ip.is_empty() {
        return r#"{"stats":[{"pool":{}}]}"#.to_owned() + "\n";
    }
    let zvol = zvol.replace('/', "\\/");
    format!(
        r#"{{"stats":[{{"name":"{zvol}","status":"{status}","readOnly":"off","rebuildStatus":"DONE","isIOAckSenderCreated":1,"isIOReceiverCreated":1,"runningIONum":0,"checkpointedIONum":0,"degradedCheckpointedIONum":0,"checkpointedTime":0,"zvol_workers":2,"quorum":1,"rebuildBytes":0,"rebuildCnt":0,"rebuildDoneCnt":0,"rebuildFailedCnt":0}},{{"pool":{{}}}}]}}"#
    ) + "\n"
}

impl ZvolShim {
    pub fn new(inner: Arc<dyn Runner>) -> Self {
        Self {
            inner,
            zvols: Mutex::default(),
            snapshots: Mutex::default(),
            read_only: Mutex::default(),
            stats_status: Mutex::default(),
            props: Mutex::default(),
        }
    }
}

#[async_trait]
impl Runner for ZvolShim {
    async fn run(&self, cmd: &Cmd) -> Result<Output, ExecError> {
        let a: Vec<&str> = cmd.args.iter().map(String::as_str).collect();
        if cmd.program == "zpool" {
            match a.as_slice() {
                ["set", prop, pool] if prop.starts_with("io.openebs:readonly=") => {
                    let on = prop.ends_with("=on");
                    self.read_only.lock().unwrap().insert(pool.to_string(), on);
                    return Ok(Output::ok(""));
                }
                [
                    "get",
                    "-H",
                    "-o",
                    "value",
                    "health,io.openebs:readonly",
                    pool,
                ] => {
                    let ro = self.read_only.lock().unwrap().get(*pool).copied();
                    if let Some(ro) = ro {
                        let health = self
                            .inner
                            .run(&Cmd::new("zpool").args(["list", "-H", "-o", "health", pool]))
                            .await?;
                        return Ok(Output::ok(format!(
                            "{}\n{}\n",
                            health.stdout.trim(),
                            if ro { "on" } else { "off" }
                        )));
                    }
                }
                _ => {}
            }
        }
        if cmd.program == "zfs" {
            let zvols = || self.zvols.lock().unwrap().clone();
            match a.as_slice() {
                ["create", .., "-V", _, ds] => {
                    self.zvols.lock().unwrap().insert(ds.to_string());
                    let props = a
                        .windows(2)
                        .filter(|w| w[0] == "-o")
                        .filter_map(|w| w[1].split_once('='))
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .collect();
                    self.props.lock().unwrap().insert(ds.to_string(), props);
                    return Ok(Output::ok(""));
                }
                ["get", "-H", "-o", "property,value", keys, ds] if zvols().contains(*ds) => {
                    let props = self.props.lock().unwrap().get(*ds).cloned();
                    let props = props.unwrap_or_default();
                    let out: String = keys
                        .split(',')
                        .map(|k| format!("{k}\t{}\n", props.get(k).map_or("", String::as_str)))
                        .collect();
                    return Ok(Output::ok(out));
                }
                ["set", kv, ds] if zvols().contains(*ds) && kv.contains('=') => {
                    let (k, v) = kv.split_once('=').unwrap();
                    let mut all = self.props.lock().unwrap();
                    return Ok(uzfs_set(all.entry(ds.to_string()).or_default(), k, v));
                }
                ["stats", ds] if zvols().contains(*ds) => {
                    let status = self
                        .stats_status
                        .lock()
                        .unwrap()
                        .get(*ds)
                        .cloned()
                        .unwrap_or_else(|| "Healthy".into());
                    let ip = self
                        .props
                        .lock()
                        .unwrap()
                        .get(*ds)
                        .and_then(|p| p.get("io.openebs:targetip").cloned())
                        .unwrap_or_default();
                    return Ok(Output::ok(uzfs_stats(ds, &ip, &status)));
                }
                ["stats"] => {
                    let list: Vec<String> = zvols()
                        .iter()
                        .map(|z| format!(r#"{{"name":"{z}","status":"Healthy","quorum":1}}"#))
                        .collect();
                    return Ok(Output::ok(format!(r#"{{"stats":[{}]}}"#, list.join(","))));
                }
                ["get", "used,logicalreferenced", ds] if zvols().contains(*ds) => {
                    return Ok(Output::ok(format!(
                        "NAME PROPERTY VALUE SOURCE\n{ds} used 6K -\n{ds} logicalreferenced 6K -\n"
                    )));
                }
                ["listsnap", ds] if zvols().contains(*ds) => {
                    let snaps = self
                        .snapshots
                        .lock()
                        .unwrap()
                        .get(*ds)
                        .cloned()
                        .unwrap_or_default();
                    let list: Vec<String> =
                        snaps.keys().map(|s| format!(r#""{s}":null"#)).collect();
                    return Ok(Output::ok(format!(
                        r#"{{"name":"{ds}","snaplist":{{{}}}}}"#,
                        list.join(",")
                    )));
                }
                [
                    "get",
                    "-H",
                    "-p",
                    "-o",
                    "value",
                    "logicalreferenced,used",
                    full,
                ] => {
                    if let Some((ds, snap)) = full.split_once('@')
                        && let Some(size) = self
                            .snapshots
                            .lock()
                            .unwrap()
                            .get(ds)
                            .and_then(|s| s.get(snap))
                            .copied()
                    {
                        return Ok(Output::ok(format!("{size}\n{}\n", size * 2)));
                    }
                }
                ["destroy", "-R", ds] if zvols().contains(*ds) => {
                    self.zvols.lock().unwrap().remove(*ds);
                    self.props.lock().unwrap().remove(*ds);
                    return Ok(Output::ok(""));
                }
                ["get", "-Hp", "name", "-o", "name"] | ["list", "-H", "-o", "name"] => {
                    let mut out = self.inner.run(cmd).await?;
                    for z in zvols() {
                        out.stdout.push_str(&z);
                        out.stdout.push('\n');
                    }
                    return Ok(out);
                }
                _ => {}
            }
        }
        self.inner.run(cmd).await
    }
}

/// The runner chain of a test: recording → shim → host.
pub fn runners() -> (Arc<RecordingRunner>, Arc<ZvolShim>) {
    let shim = Arc::new(ZvolShim::new(Arc::new(HostRunner::new())));
    let rec = Arc::new(RecordingRunner::new(shim.clone()));
    (rec, shim)
}

pub fn unique(prefix: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    format!("{prefix}-{:010x}", h.finish() & 0xff_ffff_ffff)
}

/// A Node whose `kubernetes.io/hostname` is its name; deleted by [`Fixture::cleanup`].
pub async fn create_node(client: &Client, name: &str) {
    let mut n = Node::default();
    n.metadata.name = Some(name.into());
    n.metadata.labels = Some(BTreeMap::from([(
        label::HOSTNAME.to_string(),
        name.to_string(),
    )]));
    Api::<Node>::all(client.clone())
        .create(&PostParams::default(), &n)
        .await
        .expect("create node");
}

/// Creates a sparse file and its Active, Unclaimed BlockDevice on `node`.
pub async fn create_bd(
    client: &Client,
    ns: &str,
    dir: &std::path::Path,
    name: &str,
    node: &str,
) -> String {
    let path = dir.join(format!("{name}.img"));
    let f = std::fs::File::create(&path).expect("create sparse disk");
    f.set_len(DISK_SIZE).expect("size sparse disk");
    let path = path.to_string_lossy().into_owned();
    let mut bd = BlockDevice::namespaced(
        name,
        ns,
        BlockDeviceSpec {
            path: path.clone(),
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
        .expect("create bd");
    path
}

/// What NDM does: binds every unbound claim to its block device. Returns how many it bound.
pub async fn bind_claims(client: &Client, ns: &str) -> usize {
    let bdcs: Api<BlockDeviceClaim> = Api::namespaced(client.clone(), ns);
    let bds: Api<BlockDevice> = Api::namespaced(client.clone(), ns);
    let mut n = 0;
    for mut c in bdcs
        .list(&ListParams::default())
        .await
        .expect("list bdcs")
        .items
    {
        if c.status
            .as_ref()
            .is_some_and(|s| s.phase == DeviceClaimPhase::Bound)
            || c.metadata.deletion_timestamp.is_some()
        {
            continue;
        }
        let bd_name = c
            .spec
            .block_device_name
            .clone()
            .expect("claim names its block device");
        let mut bd = bds.get(&bd_name).await.expect("claimed bd");
        bd.spec.claim_ref = Some(ObjectReference {
            name: Some(c.name_any()),
            namespace: Some(ns.into()),
            kind: Some("BlockDeviceClaim".into()),
            uid: c.uid(),
            ..Default::default()
        });
        bd.status.get_or_insert_with(Default::default).claim_state = DeviceClaimState::Claimed;
        bds.replace(&bd_name, &PostParams::default(), &bd)
            .await
            .expect("bind bd");
        c.status = Some(DeviceClaimStatus {
            phase: DeviceClaimPhase::Bound,
            ..Default::default()
        });
        bdcs.replace(&c.name_any(), &PostParams::default(), &c)
            .await
            .expect("bind bdc");
        n += 1;
    }
    n
}

pub async fn delete_node(client: &Client, name: &str) {
    let _ = Api::<Node>::all(client.clone())
        .delete(name, &DeleteParams::default())
        .await;
}

/// Destroys every pool whose name starts with `prefix` (test cleanup).
pub async fn destroy_pools(runner: &dyn Runner, pools: &[String]) {
    for p in pools {
        let _ = runner
            .run(&Cmd::new("zpool").args(["destroy", "-f", p.as_str()]))
            .await;
    }
}

/// Logs of the library to the test output (`RUST_LOG`, default `cstor_operators=debug`).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "cstor_operators=debug".into()),
        )
        .with_test_writer()
        .try_init();
}

/// A raid group of the named block devices.
pub fn raid_group(bds: &[&str]) -> cstor_api::cstor::RaidGroup {
    cstor_api::cstor::RaidGroup {
        block_devices: bds
            .iter()
            .map(|b| cstor_api::cstor::CStorPoolInstanceBlockDevice::named(*b))
            .collect(),
        ..Default::default()
    }
}

/// A pool spec on `node` (selected by hostname), compression `on`.
pub fn pool_spec(
    node: &str,
    raid: cstor_api::cstor::RaidGroupType,
    groups: Vec<cstor_api::cstor::RaidGroup>,
) -> cstor_api::cstor::PoolSpec {
    cstor_api::cstor::PoolSpec {
        node_selector: [(label::HOSTNAME.to_string(), node.to_string())].into(),
        data_raid_groups: groups,
        pool_config: Some(cstor_api::cstor::PoolConfig {
            data_raid_group_type: raid,
            // zfs-fuse knows no lz4 (the default).
            compression: Some("on".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Plays NDM until `n` claims of CSPC `cspc` are bound (waits for the operator to create them).
pub async fn bind_until(client: &Client, ns: &str, cspc: &str, n: usize) {
    let bdcs: Api<BlockDeviceClaim> = Api::namespaced(client.clone(), ns);
    let selector = format!("{}={cspc}", label::CSTOR_POOL_CLUSTER);
    cstor_testkit::wait_until(
        &format!("{n} claims of {cspc} bound"),
        Duration::from_secs(90),
        || async {
            bind_claims(client, ns).await;
            let list = bdcs
                .list(&ListParams::default().labels(&selector))
                .await
                .expect("list bdcs");
            list.items
                .iter()
                .filter(|c| {
                    c.status
                        .as_ref()
                        .is_some_and(|s| s.phase == DeviceClaimPhase::Bound)
                })
                .count()
                >= n
        },
    )
    .await
    .expect("claims bound");
}

/// The CSPI of `cspc` on `node`, once it exists.
pub async fn cspi_on(
    client: &Client,
    ns: &str,
    cspc: &str,
    node: &str,
) -> cstor_api::cstor::CStorPoolInstance {
    let api: Api<cstor_api::cstor::CStorPoolInstance> = Api::namespaced(client.clone(), ns);
    let selector = format!(
        "{}={cspc},{}={node}",
        label::CSTOR_POOL_CLUSTER,
        label::HOSTNAME
    );
    cstor_testkit::wait_until(
        &format!("CSPI of {cspc} on {node}"),
        Duration::from_secs(90),
        || async {
            api.list(&ListParams::default().labels(&selector))
                .await
                .expect("list cspis")
                .items
                .into_iter()
                .next()
        },
    )
    .await
    .expect("CSPI created")
}

/// A pool manager serving `cspi` in process, on zpool `pool` (unique per test: several fake
/// nodes share this host's zfs-fuse). Returns its task, engine and command recording.
pub fn spawn_pool_manager(
    client: &Client,
    ns: &str,
    cspi: &cstor_api::cstor::CStorPoolInstance,
    pool: &str,
    dir: &std::path::Path,
) -> (
    tokio::task::JoinHandle<()>,
    Arc<dyn cstor_operators::engine::DataEngine>,
    Arc<RecordingRunner>,
) {
    let (rec, _shim) = runners();
    let engine: Arc<dyn cstor_operators::engine::DataEngine> = Arc::new(
        cstor_operators::engine::CstorEngine::new(rec.clone())
            .with_cache_file(dir.join(format!("{pool}.cache")).to_string_lossy()),
    );
    let ctx = cstor_operators::pool_manager::Context::new(
        client.clone(),
        engine.clone(),
        ns,
        cspi.uid().expect("cspi uid"),
        "unused",
    )
    .with_pool_name(pool)
    .with_resync(Duration::from_secs(2));
    (
        tokio::spawn(cstor_operators::pool_manager::run(ctx)),
        engine,
        rec,
    )
}

/// Waits for CSPI `name` to report phase ONLINE and returns it.
pub async fn wait_online(
    client: &Client,
    ns: &str,
    name: &str,
) -> cstor_api::cstor::CStorPoolInstance {
    let api: Api<cstor_api::cstor::CStorPoolInstance> = Api::namespaced(client.clone(), ns);
    cstor_testkit::wait_until(
        &format!("CSPI {name} ONLINE"),
        Duration::from_secs(90),
        || async {
            let c = api.get(name).await.expect("get cspi");
            (c.status.as_ref().and_then(|s| s.phase.clone())
                == Some(cstor_api::cstor::CStorPoolInstancePhase::Online))
            .then_some(c)
        },
    )
    .await
    .expect("CSPI ONLINE")
}

/// A unique zpool name for a test.
pub fn unique_pool(prefix: &str) -> String {
    unique(&format!("cstor-{prefix}"))
}

/// How a scenario ended: finished, timed out, or panicked (the panic is held until the
/// caller's cleanup ran).
pub struct ScenarioOutcome(
    Result<Result<(), tokio::time::error::Elapsed>, Box<dyn std::any::Any + Send>>,
);

impl ScenarioOutcome {
    /// Re-raises the scenario's panic, or fails on its timeout; call after cleanup.
    pub fn finish(self) {
        match self.0 {
            Ok(Ok(())) => {}
            Ok(Err(_)) => panic!("scenario timed out"),
            Err(p) => std::panic::resume_unwind(p),
        }
    }
}

/// Runs `fut` with a deadline, catching a panic so zpools and nodes are cleaned up even when
/// an assertion fails.
pub async fn scenario(
    deadline: Duration,
    fut: impl std::future::Future<Output = ()>,
) -> ScenarioOutcome {
    use futures::FutureExt;
    ScenarioOutcome(
        std::panic::AssertUnwindSafe(tokio::time::timeout(deadline, fut))
            .catch_unwind()
            .await,
    )
}

/// A user's edit of `name`: read, change, replace, and read again on a 409 (the operators
/// write the same object's status and metadata concurrently, as in a cluster); gives up after
/// a minute.
pub async fn edit<K>(api: &Api<K>, name: &str, change: impl Fn(&mut K))
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + serde::Serialize,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut latest = api.get(name).await.expect("read before edit");
        change(&mut latest);
        match api.replace(name, &PostParams::default(), &latest).await {
            Ok(_) => return,
            Err(kube::Error::Api(e)) if e.code == 409 && tokio::time::Instant::now() < deadline => {
                tracing::debug!(name, "edit conflicted, retrying on the latest version");
            }
            Err(e) => panic!("edit of {name}: {e}"),
        }
    }
}

/// The backup/restore REST server of the cvc-operator on `127.0.0.1:<free port>`, with
/// `target` serving the volumes' snapshot gRPC (the targets' port 7777) on another free port;
/// restores wait at most 2 s for their CVC. Returns the REST address.
pub async fn rest_server<T>(client: &Client, ns: &str, target: T) -> std::net::SocketAddr
where
    T: cstor_api::proto::snapshot::v1alpha1::run_snap_command_server::RunSnapCommand,
{
    use cstor_api::proto::snapshot::v1alpha1::run_snap_command_server::RunSnapCommandServer;
    use cstor_operators::cvc_operator::rest::{self, Rest};
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc_port = grpc.local_addr().unwrap().port();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(RunSnapCommandServer::new(target))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(grpc)),
    );
    let mut api = Rest::new(client.clone(), ns, "3.6.0");
    api.snapshot_port = grpc_port;
    api.snapshot_timeout = Duration::from_secs(10);
    api.bound_tries = 40;
    api.bound_interval = Duration::from_millis(50);
    let bind: rest::BindAddr = "127.0.0.1:0".parse().unwrap();
    rest::start(bind.get().unwrap(), Arc::new(api), std::future::pending())
        .await
        .unwrap()
}

/// A Ready node `<ns>-node` and, on it, a running pool pod (`cstor-pool-mgmt` ready) for each
/// `(pod name, CSPI name)`: what the REST server's pool-down check looks at.
pub async fn running_pool_pods(client: &Client, ns: &str, pools: &[(&str, &str)]) {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Patch, PatchParams};
    let node_name = format!("{ns}-node");
    let ready =
        serde_json::json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
    let node: Node = serde_json::from_value(
        serde_json::json!({"metadata": {"name": node_name}, "status": ready["status"]}),
    )
    .unwrap();
    let nodes: Api<Node> = Api::all(client.clone());
    let node = nodes.create(&PostParams::default(), &node).await.unwrap();
    // A real API server drops the status of a create.
    if node.status.and_then(|st| st.conditions).is_none() {
        nodes
            .patch_status(&node_name, &PatchParams::default(), &Patch::Merge(&ready))
            .await
            .unwrap();
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    for (name, cspi) in pools {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {"app": "cstor-pool",
                "openebs.io/cstor-pool-instance": cspi}},
            "spec": {"nodeName": node_name,
                "containers": [{"name": "cstor-pool-mgmt", "image": "x"}]},
        }))
        .unwrap();
        pods.create(&PostParams::default(), &pod).await.unwrap();
        set_pool_pod_ready(client, ns, name, true).await;
    }
}

/// Marks the `cstor-pool-mgmt` container of pool pod `name` ready or not.
pub async fn set_pool_pod_ready(client: &Client, ns: &str, name: &str, ready: bool) {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Patch, PatchParams};
    let status = serde_json::json!({"status": {"containerStatuses": [{"name": "cstor-pool-mgmt",
        "ready": ready, "restartCount": 0, "image": "x", "imageID": ""}]}});
    Api::<Pod>::namespaced(client.clone(), ns)
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
}
