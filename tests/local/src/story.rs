//! The system story, as a cluster operator lives it, on a [`LocalCluster`]: a CStorPoolCluster
//! on three nodes' sparse-file BlockDevices → CSPIs ONLINE → CreateVolume with three replicas →
//! Bound, CStorVolume and every replica Healthy → a pattern written and read back through the
//! iSCSI target → resize (LUN and zvols grow) → snapshot create/delete → restore and clone read
//! the same data → replicas 3→2→3 → a pool pod killed, its replica rebuilt → DeleteVolume → no
//! zvol and no object left.

use std::{
    collections::BTreeMap,
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, bail, ensure};
use cstor_api::{
    cstor::{
        CStorPoolCluster, CStorPoolInstance, CStorVolume, CStorVolumeConfig, CStorVolumeReplica,
    },
    proto::csi::v1::{
        ControllerExpandVolumeRequest, CreateSnapshotRequest, CreateVolumeRequest,
        DeleteSnapshotRequest, DeleteVolumeRequest, VolumeCapability, VolumeContentSource,
        controller_client::ControllerClient,
        volume_capability::{AccessMode, AccessType, MountVolume, access_mode::Mode},
        volume_content_source::{SnapshotSource, Type as SourceType, VolumeSource},
    },
};
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{Pod, Service},
};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};
use tonic::transport::Channel;

use crate::{cluster::LocalCluster, initiator, registration::unix_channel};

mod backup;
mod migrate;
mod swap;
mod upgrade;

const GIB: u64 = 1 << 30;

/// Names the optional steps to run (all when unset): resize, snapshot, restore, migrate,
/// velero, scale, kill, swap, upgrade.
pub const STEPS_ENV: &str = "CSTOR_STORY_STEPS";

/// Generous deadline of each step (a 3-replica volume takes about 45 s to be fully Healthy).
pub const STEP: Duration = Duration::from_secs(240);

/// Figures of a finished story.
#[derive(Debug, Default)]
pub struct Summary {
    pub steps: Vec<(String, Duration)>,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let total: Duration = self.steps.iter().map(|(_, d)| *d).sum();
        writeln!(
            f,
            "system story: {} steps passed in {:.1} s",
            self.steps.len(),
            total.as_secs_f64()
        )?;
        for (s, d) in &self.steps {
            writeln!(f, "  {:>7.1} s  {s}", d.as_secs_f64())?;
        }
        Ok(())
    }
}

fn json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn field<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// Waits until `check` returns `Some`, polling every 500 ms, up to [`STEP`].
pub async fn until<T, F, Fut>(what: &str, check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    until_within(what, STEP, check).await
}

/// [`until`] with another deadline.
pub async fn until_within<T, F, Fut>(
    what: &str,
    within: Duration,
    mut check: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + within;
    let mut last = String::new();
    loop {
        match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last = format!("{e:#}"),
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "timed out after {within:?} waiting for {what}{}",
                if last.is_empty() {
                    String::new()
                } else {
                    format!(" (last error: {last})")
                }
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn mount_cap() -> VolumeCapability {
    VolumeCapability {
        access_mode: Some(AccessMode {
            mode: Mode::SingleNodeWriter as i32,
        }),
        access_type: Some(AccessType::Mount(MountVolume {
            fs_type: "ext4".into(),
            ..Default::default()
        })),
    }
}

/// CreateVolume of `pv` in CSPC `cspc` as the provisioner sends it (ext4 mount).
fn volume_request(
    pv: &str,
    cspc: &str,
    bytes: u64,
    replicas: u32,
    source: Option<VolumeContentSource>,
) -> CreateVolumeRequest {
    CreateVolumeRequest {
        name: pv.into(),
        capacity_range: Some(cstor_api::proto::csi::v1::CapacityRange {
            required_bytes: bytes as i64,
            limit_bytes: 0,
        }),
        volume_capabilities: vec![mount_cap()],
        parameters: BTreeMap::from([
            ("cstorPoolCluster".to_string(), cspc.to_string()),
            ("replicaCount".to_string(), replicas.to_string()),
            ("cas-type".to_string(), "cstor".to_string()),
        ])
        .into_iter()
        .collect(),
        volume_content_source: source,
        ..Default::default()
    }
}

/// The story's state.
pub struct Story<'a> {
    pub cluster: &'a LocalCluster,
    ns: String,
    csi: Option<ControllerClient<Channel>>,
    initiator_ns: Option<String>,
    summary: std::sync::Mutex<Summary>,
    progress: Box<dyn Fn(&str) + Send + Sync + 'a>,
}

impl<'a> Story<'a> {
    pub fn new(cluster: &'a LocalCluster, progress: impl Fn(&str) + Send + Sync + 'a) -> Story<'a> {
        Story {
            ns: cluster.namespace.clone(),
            cluster,
            csi: None,
            initiator_ns: None,
            summary: Default::default(),
            progress: Box::new(progress),
        }
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        Api::namespaced(self.cluster.client.clone(), &self.ns)
    }

    async fn step<T>(
        &self,
        name: &str,
        fut: impl std::future::Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<T> {
        (self.progress)(&format!("… {name}"));
        let t = tokio::time::Instant::now();
        let v = fut.await.with_context(|| format!("step failed: {name}"))?;
        let d = t.elapsed();
        (self.progress)(&format!("✓ {name} ({:.1} s)", d.as_secs_f64()));
        self.summary
            .lock()
            .unwrap()
            .steps
            .push((name.to_string(), d));
        Ok(v)
    }

    /// A step the story can leave out: run unless `CSTOR_STORY_STEPS` (a comma-separated list
    /// of step keys, for working on a few steps) is set and does not name `key`. The steps
    /// every other step builds on (components, pools, the volume and its data, deletion)
    /// always run.
    async fn optional_step(
        &self,
        key: &str,
        name: &str,
        fut: impl std::future::Future<Output = anyhow::Result<()>>,
    ) -> anyhow::Result<()> {
        match std::env::var(STEPS_ENV) {
            Ok(keys) if !keys.split(',').any(|k| k.trim() == key) => {
                (self.progress)(&format!("- {name}: left out ({STEPS_ENV}={keys})"));
                Ok(())
            }
            _ => self.step(name, fut).await,
        }
    }

    /// Runs every step; returns the figures.
    pub async fn run(mut self) -> anyhow::Result<Summary> {
        let csi = self
            .step(
                "the deployed components run (CSI controller, cspc-operator, cvc-operator)",
                self.components(),
            )
            .await?;
        self.csi = Some(csi);
        let (ini, _) = self.cluster.network.add("initiator")?;
        self.initiator_ns = Some(ini);

        // A name of its own: a story on a cluster that kept an earlier run's pools does not clash.
        let cspc_name = format!("story-{}", &uuid::Uuid::new_v4().simple().to_string()[..6]);
        let cspc = cspc_name.as_str();
        let pools = self
            .step(
                "CSPC on 3 nodes' sparse-file BlockDevices → 3 CSPIs ONLINE",
                self.pools(cspc),
            )
            .await?;
        let pv = format!("pvc-{}", uuid::Uuid::new_v4());
        self.step(
            "CreateVolume with 3 replicas → CVC Bound, CStorVolume and every replica Healthy",
            self.create_volume(&pv, cspc, GIB, 3, None),
        )
        .await?;
        let data = initiator::pattern("cstor-rs story", 64);
        self.step(
            "write a pattern through the iSCSI target and read it back",
            self.write_read(&pv, data.clone()),
        )
        .await?;
        self.optional_step(
            "resize",
            "ControllerExpandVolume 1 → 2 GiB: the LUN and every replica zvol grow",
            self.resize(&pv, 2 * GIB),
        )
        .await?;
        self.optional_step(
            "snapshot",
            "snapshot create and delete (through the target, on every replica)",
            self.snapshot_create_delete(&pv),
        )
        .await?;
        let snap = format!("snapshot-{}", uuid::Uuid::new_v4());
        self.optional_step(
            "restore",
            "snapshot, restore it and clone the volume: both read the same data",
            self.restore_and_clone(&pv, cspc, &snap, &data),
        )
        .await?;
        self.optional_step(
            "migrate",

            "legacy pools (StoragePoolClaim, a CStorPool per node) and a legacy volume on them holding the data, migrated by cstor-migrate run as its example Jobs: a CSPC whose pools were imported under their new names with their zvols, then a CSI volume on them, Healthy, reading the same data; both deleted as ours",
            self.legacy_migration(&pv, &data),
        )
        .await?;
        self.optional_step(
            "velero",

            "Velero through a stand-in plugin: a local backup restored as a clone; backups (full, then incremental) streamed out, the volume deleted, a new PVC restored from both: each reads the same data",
            self.velero_backup_restore(cspc),
        )
        .await?;
        self.optional_step(
            "scale",
            "replicas 3 → 2 → 3 (istgt drops one, then rebuilds it to Healthy)",
            self.scale(&pv, &pools),
        )
        .await?;
        self.optional_step(
            "kill",
            "kill a pool pod: it comes back, its replica rebuilds, the volume is Healthy and reads the same data", self.kill_pool_pod(&pv, &pools, &data)).await?;
        self.optional_step(
            "swap",

            "the operators swapped from upstream to ours and back: ours adopt objects as upstream leaves them with no pool or target pod restarted or pod template changed, and leave every field upstream reads as it was; handed back, the volume reads the same data",
            self.swap_operators(&pv, cspc, &data),
        )
        .await?;
        self.optional_step(
            "upgrade",
            "objects of an older release (3.5.0) upgraded by cstor-migrate upgrade run as its example Jobs, pools first: the CSPC and CVC frozen until then, every object moved to this release by the component owning it, no pod restarted, the volume reads the same data",
            self.upgrade_from_older_release(&pv, cspc, &data),
        )
        .await?;
        self.step(
            "DeleteVolume: no CVC, CStorVolume, replica, target, Service or zvol left",
            self.delete_volume(&pv),
        )
        .await?;
        if self.cluster.sidecars {
            self.step(
                "the user's path through the CSI sidecars: PVC → PV Bound (csi-provisioner), PVC resized (csi-resizer), VolumeSnapshot ready (csi-snapshotter, snapshot-controller), PVC deleted → volume gone",
                self.user_path(cspc),
            )
            .await?;
        } else {
            (self.progress)(
                "- the user's path through the CSI sidecars: not run (it needs a real API server and the sidecars of ../shared/real)",
            );
        }
        self.step(
            "delete the CSPC: pools destroyed, no CSPI, claim or pool pod left, disks released",
            self.delete_pools(cspc, true),
        )
        .await?;
        Ok(self.summary.into_inner().unwrap())
    }

    fn csi(&self) -> ControllerClient<Channel> {
        self.csi.clone().expect("components step ran")
    }

    async fn components(&self) -> anyhow::Result<ControllerClient<Channel>> {
        let pods: Api<Pod> = self.api();
        for prefix in [
            "cspc-operator",
            "cvc-operator",
            "openebs-cstor-csi-controller-0",
        ] {
            until(&format!("a running pod {prefix}…"), || async {
                let list = pods.list(&ListParams::default()).await?;
                Ok(list.items.into_iter().find(|p| {
                    p.name_any().starts_with(prefix)
                        && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                }))
            })
            .await?;
        }
        let key = format!("{}/openebs-cstor-csi-controller-0", self.ns);
        let sock = self
            .cluster
            .kubelet
            .pod_dir(&key)
            .context("CSI controller pod dir")?
            .join("socket-dir/csi.sock");
        until("the CSI controller socket", || async {
            Ok(sock.exists().then_some(()))
        })
        .await?;
        unix_channel(sock).await.map(ControllerClient::new)
    }

    async fn pools(&self, cspc: &str) -> anyhow::Result<Vec<String>> {
        let bds = crate::controllers::sparse_block_devices(
            &self.cluster.client,
            &self.ns,
            &self.cluster.nodes,
            |n| self.cluster.kubelet.node_dir(n),
            1,
            4 * GIB,
        )
        .await?;
        // zfs-fuse (the stand-in's pools) has no lz4, the engine's default compression.
        let pool_config = match self.cluster.engine_dir {
            Some(_) => json!({"dataRaidGroupType": "stripe"}),
            None => json!({"dataRaidGroupType": "stripe", "compression": "on"}),
        };
        let pools: Vec<Value> = self
            .cluster
            .nodes
            .iter()
            .map(|n| {
                let bd = bds
                    .iter()
                    .find(|b| b.spec.node_attributes.node_name.as_deref() == Some(n))
                    .expect("a BD per node");
                json!({
                    "nodeSelector": {"kubernetes.io/hostname": n},
                    "dataRaidGroups": [{"blockDevices": [{"blockDeviceName": bd.name_any()}]}],
                    "poolConfig": pool_config,
                })
            })
            .collect();
        let obj: CStorPoolCluster = serde_json::from_value(json!({
            "apiVersion": "cstor.openebs.io/v1", "kind": "CStorPoolCluster",
            "metadata": {"name": cspc, "namespace": self.ns},
            "spec": {"pools": pools},
        }))?;
        self.api::<CStorPoolCluster>()
            .create(&PostParams::default(), &obj)
            .await?;
        let cspis: Api<CStorPoolInstance> = self.api();
        let n = self.cluster.nodes.len();
        until("every CSPI ONLINE", || async {
            let list = cspis
                .list(
                    &ListParams::default().labels(&format!("openebs.io/cstor-pool-cluster={cspc}")),
                )
                .await?;
            let online: Vec<String> = list
                .items
                .iter()
                .filter(|c| field(&json(c), "/status/phase") == "ONLINE")
                .map(|c| c.name_any())
                .collect();
            Ok((online.len() == n).then_some(online))
        })
        .await
    }

    async fn create_volume(
        &self,
        pv: &str,
        cspc: &str,
        bytes: u64,
        replicas: u32,
        source: Option<VolumeContentSource>,
    ) -> anyhow::Result<()> {
        let req = volume_request(pv, cspc, bytes, replicas, source);
        self.csi()
            .create_volume(req)
            .await
            .context("CreateVolume")?;
        self.healthy(pv, replicas as usize).await
    }

    async fn healthy(&self, pv: &str, replicas: usize) -> anyhow::Result<()> {
        let cvcs: Api<CStorVolumeConfig> = self.api();
        until(&format!("CVC {pv} Bound"), || async {
            Ok(cvcs
                .get_opt(pv)
                .await?
                .filter(|c| field(&json(c), "/status/phase") == "Bound")
                .map(drop))
        })
        .await?;
        let cvs: Api<CStorVolume> = self.api();
        let cvrs: Api<CStorVolumeReplica> = self.api();
        until(
            &format!("CStorVolume {pv} Healthy with {replicas} Healthy replicas"),
            || async {
                let cv = cvs.get_opt(pv).await?.map(|c| json(&c));
                let healthy_cv = cv
                    .as_ref()
                    .is_some_and(|c| field(c, "/status/phase") == "Healthy");
                let list = cvrs
                    .list(
                        &ListParams::default().labels(&format!("cstorvolume.openebs.io/name={pv}")),
                    )
                    .await?;
                let healthy = list
                    .items
                    .iter()
                    .filter(|r| field(&json(r), "/status/phase") == "Healthy")
                    .count();
                Ok(
                    (healthy_cv && healthy == replicas && list.items.len() == replicas)
                        .then_some(()),
                )
            },
        )
        .await
    }

    async fn portal(&self, pv: &str) -> anyhow::Result<String> {
        let cv = self.api::<CStorVolume>().get(pv).await?;
        let ip = field(&json(&cv), "/spec/targetIP").to_string();
        ensure!(!ip.is_empty(), "CStorVolume {pv} has no spec.targetIP");
        Ok(format!("{ip}:3260"))
    }

    async fn read(&self, pv: &str, len: usize) -> anyhow::Result<Vec<u8>> {
        self.read_at(pv, 0, len).await
    }

    /// `len` bytes from block `lba` of the volume's LUN.
    async fn read_at(&self, pv: &str, lba: u32, len: usize) -> anyhow::Result<Vec<u8>> {
        let portal = self.portal(pv).await?;
        let ns = self.initiator_ns.clone().expect("initiator");
        let pv = pv.to_string();
        tokio::task::spawn_blocking(move || {
            initiator::read(&ns, &portal, &initiator::iqn(&pv), lba, len)
        })
        .await?
    }

    /// Writes `data` at block `lba` of the volume's LUN.
    async fn write_at(&self, pv: &str, lba: u32, data: Vec<u8>) -> anyhow::Result<()> {
        let portal = self.portal(pv).await?;
        let ns = self.initiator_ns.clone().expect("initiator");
        let pv = pv.to_string();
        tokio::task::spawn_blocking(move || {
            initiator::write(&ns, &portal, &initiator::iqn(&pv), lba, data)
        })
        .await?
    }

    async fn write_read(&self, pv: &str, data: Vec<u8>) -> anyhow::Result<()> {
        let portal = self.portal(pv).await?;
        let ns = self.initiator_ns.clone().expect("initiator");
        let (pv2, d2) = (pv.to_string(), data.clone());
        tokio::task::spawn_blocking(move || {
            initiator::write(&ns, &portal, &initiator::iqn(&pv2), 0, d2)
        })
        .await??;
        let back = self.read(pv, data.len()).await?;
        ensure!(
            back == data,
            "read back {} bytes that differ from what was written",
            back.len()
        );
        Ok(())
    }

    /// `zfs` in the engine of the pool pod of `cspi` (inside its zrepl's namespaces).
    async fn zfs_on(&self, cspi: &str, args: &[&str]) -> anyhow::Result<String> {
        let pod = self
            .pool_pod(&format!("openebs.io/cstor-pool-instance={cspi}"))
            .await?;
        self.engine_in(&pod, "zfs", args, Stdio::null(), None).await
    }

    /// The running pool pod selected by `selector`.
    async fn pool_pod(&self, selector: &str) -> anyhow::Result<Pod> {
        let list = self
            .api::<Pod>()
            .list(&ListParams::default().labels(selector))
            .await?;
        list.items
            .into_iter()
            .find(|p| p.metadata.deletion_timestamp.is_none())
            .with_context(|| format!("no pool pod {selector}"))
    }

    /// The engine's `zfs` or `zpool` (`tool`) run in the namespaces of the `cstor-pool`
    /// container of `pod` (zrepl, or the stand-in's zfs-fuse), its standard input from `stdin`
    /// and its standard output to `stdout` (captured and returned when `None`).
    async fn engine_in(
        &self,
        pod: &Pod,
        tool: &str,
        args: &[&str],
        stdin: Stdio,
        stdout: Option<std::fs::File>,
    ) -> anyhow::Result<String> {
        let key = format!("{}/{}", self.ns, pod.name_any());
        let pid = self
            .cluster
            .kubelet
            .container_pid(&key, "cstor-pool")
            .with_context(|| format!("the engine of {key} is not running"))?;
        let mut cmd = Command::new("nsenter");
        cmd.args(["-t", &pid.to_string(), "-m", "-n"]);
        match (&self.cluster.engine_dir, tool) {
            (Some(engine), _) => {
                cmd.arg(engine.join("cstor-engine/bin").join(tool));
            }
            (None, "zfs") => {
                // The stand-in: the zvol shim with the pool's node store.
                let node = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_name.clone())
                    .context("pool pod without a node")?;
                cmd.arg(self.cluster.bin_dir.join(crate::standin::ZFS_SHIM))
                    .env(
                        crate::standin::STORE_ENV,
                        self.cluster
                            .kubelet
                            .node_dir(&node)
                            .join(crate::standin::STORE_DIR),
                    );
            }
            // The stand-in's pools are zfs-fuse's.
            (None, _) => {
                cmd.arg(tool);
            }
        }
        cmd.args(args).stdin(stdin).stderr(Stdio::piped());
        let captured = stdout.is_none();
        match stdout {
            Some(f) => cmd.stdout(f),
            None => cmd.stdout(Stdio::piped()),
        };
        let what = format!("{tool} {}", args.join(" "));
        let out = tokio::task::spawn_blocking(move || cmd.output())
            .await?
            .with_context(|| what.clone())?;
        ensure!(
            out.status.success(),
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(if captured {
            String::from_utf8_lossy(&out.stdout).into_owned()
        } else {
            String::new()
        })
    }

    async fn replica_pools(&self, pv: &str) -> anyhow::Result<Vec<String>> {
        let list = self
            .api::<CStorVolumeReplica>()
            .list(&ListParams::default().labels(&format!("cstorvolume.openebs.io/name={pv}")))
            .await?;
        Ok(list
            .items
            .iter()
            .filter_map(|r| r.labels().get("cstorpoolinstance.openebs.io/name").cloned())
            .collect())
    }

    async fn resize(&self, pv: &str, bytes: u64) -> anyhow::Result<()> {
        self.csi()
            .controller_expand_volume(ControllerExpandVolumeRequest {
                volume_id: pv.into(),
                capacity_range: Some(cstor_api::proto::csi::v1::CapacityRange {
                    required_bytes: bytes as i64,
                    limit_bytes: 0,
                }),
                volume_capability: Some(mount_cap()),
                ..Default::default()
            })
            .await
            .context("ControllerExpandVolume")?;
        let portal = self.portal(pv).await?;
        let ns = self.initiator_ns.clone().expect("initiator");
        let iqn = initiator::iqn(pv);
        until("the LUN to report the new size", || {
            let (ns, portal, iqn) = (ns.clone(), portal.clone(), iqn.clone());
            async move {
                Ok(
                    tokio::task::spawn_blocking(move || initiator::capacity(&ns, &portal, &iqn))
                        .await??
                        .eq(&bytes)
                        .then_some(()),
                )
            }
        })
        .await?;
        for cspi in self.replica_pools(pv).await? {
            let pool = self.pool_of(&cspi).await?;
            until(&format!("zvol {pool}/{pv} volsize {bytes}"), || async {
                let v = self
                    .zfs_on(
                        &cspi,
                        &[
                            "get",
                            "-Hp",
                            "-o",
                            "value",
                            "volsize",
                            &format!("{pool}/{pv}"),
                        ],
                    )
                    .await?;
                Ok((v.trim() == bytes.to_string()).then_some(()))
            })
            .await?;
        }
        Ok(())
    }

    async fn pool_of(&self, cspi: &str) -> anyhow::Result<String> {
        let c = self.api::<CStorPoolInstance>().get(cspi).await?;
        let uid = c
            .labels()
            .get("openebs.io/cstor-pool-cluster")
            .cloned()
            .unwrap_or_default();
        let cspc = self.api::<CStorPoolCluster>().get(&uid).await?;
        Ok(format!("cstor-{}", cspc.uid().unwrap_or_default()))
    }

    async fn snapshots_on_replicas(&self, pv: &str, snap: &str) -> anyhow::Result<usize> {
        let mut n = 0;
        for cspi in self.replica_pools(pv).await? {
            let pool = self.pool_of(&cspi).await?;
            let out = self
                .zfs_on(&cspi, &["list", "-H", "-t", "snapshot", "-o", "name"])
                .await?;
            if out
                .lines()
                .any(|l| l.trim() == format!("{pool}/{pv}@{snap}"))
            {
                n += 1;
            }
        }
        Ok(n)
    }

    async fn snapshot_create_delete(&self, pv: &str) -> anyhow::Result<()> {
        let name = format!("snapshot-{}", uuid::Uuid::new_v4());
        let resp = self
            .csi()
            .create_snapshot(CreateSnapshotRequest {
                source_volume_id: pv.into(),
                name: name.clone(),
                ..Default::default()
            })
            .await
            .context("CreateSnapshot")?
            .into_inner();
        let id = resp
            .snapshot
            .context("no snapshot in the reply")?
            .snapshot_id;
        let snap = id.rsplit('@').next().unwrap_or(&id).to_string();
        let n = self.snapshots_on_replicas(pv, &snap).await?;
        ensure!(n == 3, "snapshot {snap} on {n} of 3 replicas");
        self.delete_snapshot(&id).await?;
        until("the snapshot gone from every replica", || async {
            Ok((self.snapshots_on_replicas(pv, &snap).await? == 0).then_some(()))
        })
        .await
    }

    async fn restore_and_clone(
        &self,
        pv: &str,
        cspc: &str,
        snap_name: &str,
        data: &[u8],
    ) -> anyhow::Result<()> {
        let resp = self
            .csi()
            .create_snapshot(CreateSnapshotRequest {
                source_volume_id: pv.into(),
                name: snap_name.into(),
                ..Default::default()
            })
            .await
            .context("CreateSnapshot")?
            .into_inner();
        let snap_id = resp
            .snapshot
            .context("no snapshot in the reply")?
            .snapshot_id;
        let restored = format!("pvc-{}", uuid::Uuid::new_v4());
        let src = VolumeContentSource {
            r#type: Some(SourceType::Snapshot(SnapshotSource {
                snapshot_id: snap_id.clone(),
            })),
        };
        self.create_volume(&restored, cspc, 2 * GIB, 3, Some(src))
            .await
            .context("restore")?;
        let got = self.read(&restored, data.len()).await?;
        ensure!(
            got == data,
            "the restored volume reads other data than the snapshot's"
        );
        let clone = format!("pvc-{}", uuid::Uuid::new_v4());
        let src = VolumeContentSource {
            r#type: Some(SourceType::Volume(VolumeSource {
                volume_id: pv.into(),
            })),
        };
        self.create_volume(&clone, cspc, 2 * GIB, 3, Some(src))
            .await
            .context("clone")?;
        let got = self.read(&clone, data.len()).await?;
        ensure!(got == data, "the clone reads other data than its source");
        for v in [&restored, &clone] {
            self.csi()
                .delete_volume(DeleteVolumeRequest {
                    volume_id: v.to_string(),
                    ..Default::default()
                })
                .await
                .context("DeleteVolume")?;
            self.gone(v).await?;
        }
        self.delete_snapshot(&snap_id).await
    }

    /// DeleteSnapshot of CSI snapshot `id`.
    async fn delete_snapshot(&self, id: &str) -> anyhow::Result<()> {
        self.csi()
            .delete_snapshot(DeleteSnapshotRequest {
                snapshot_id: id.to_owned(),
                ..Default::default()
            })
            .await
            .context("DeleteSnapshot")?;
        Ok(())
    }

    async fn set_pools(&self, pv: &str, pools: &[String]) -> anyhow::Result<()> {
        let info: Vec<Value> = pools.iter().map(|p| json!({"poolName": p})).collect();
        self.api::<CStorVolumeConfig>()
            .patch(
                pv,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"policy": {"replicaPoolInfo": info}}})),
            )
            .await?;
        Ok(())
    }

    async fn scale(&self, pv: &str, all: &[String]) -> anyhow::Result<()> {
        let cvc = self.api::<CStorVolumeConfig>().get(pv).await?;
        let current: Vec<String> = json(&cvc)
            .pointer("/status/poolInfo")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_else(|| all.to_vec());
        let keep: Vec<String> = current[..2].to_vec();
        let dropped = current[2].clone();
        self.set_pools(pv, &keep).await?;
        let cvrs: Api<CStorVolumeReplica> = self.api();
        until(
            "2 replicas, the third replica and its zvol gone",
            || async {
                let n = cvrs
                    .list(
                        &ListParams::default().labels(&format!("cstorvolume.openebs.io/name={pv}")),
                    )
                    .await?
                    .items
                    .len();
                if n != 2 {
                    return Ok(None);
                }
                let pool = self.pool_of(&dropped).await?;
                let out = self.zfs_on(&dropped, &["list", "-H", "-o", "name"]).await?;
                Ok((!out.lines().any(|l| l.trim() == format!("{pool}/{pv}"))).then_some(()))
            },
        )
        .await?;
        self.healthy(pv, 2).await?;
        self.set_pools(pv, &current).await?;
        self.healthy(pv, 3).await
    }

    async fn kill_pool_pod(&self, pv: &str, pools: &[String], data: &[u8]) -> anyhow::Result<()> {
        let victim = &pools[0];
        let pods: Api<Pod> = self.api();
        let lp = ListParams::default().labels(&format!("openebs.io/cstor-pool-instance={victim}"));
        let old = pods
            .list(&lp)
            .await?
            .items
            .into_iter()
            .next()
            .context("pool pod")?;
        pods.delete(&old.name_any(), &DeleteParams::default())
            .await?;
        let old_uid = old.uid();
        until("a new pool pod running", || async {
            let list = pods.list(&lp).await?;
            Ok(list
                .items
                .into_iter()
                .find(|p| {
                    p.uid() != old_uid
                        && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                })
                .map(drop))
        })
        .await?;
        self.healthy(pv, 3).await?;
        let got = self.read(pv, data.len()).await?;
        ensure!(
            got == data,
            "after the replica rebuilt, the volume reads other data"
        );
        Ok(())
    }

    async fn gone(&self, pv: &str) -> anyhow::Result<()> {
        let sel = format!("cstorvolume.openebs.io/name={pv}");
        until(&format!("every object of {pv} gone"), || async {
            let cvc = self.api::<CStorVolumeConfig>().get_opt(pv).await?.is_some();
            let cv = self.api::<CStorVolume>().get_opt(pv).await?.is_some();
            let cvrs = self
                .api::<CStorVolumeReplica>()
                .list(&ListParams::default().labels(&sel))
                .await?
                .items
                .len();
            let dep = self
                .api::<Deployment>()
                .get_opt(&format!("{pv}-target"))
                .await?
                .is_some();
            let svc = self.api::<Service>().get_opt(pv).await?.is_some();
            Ok((!cvc && !cv && cvrs == 0 && !dep && !svc).then_some(()))
        })
        .await
    }

    /// A StorageClass, a PVC, its resize, a VolumeSnapshot and the PVC's deletion, each turned
    /// into CSI calls by the real sidecars.
    async fn user_path(&self, cspc: &str) -> anyhow::Result<()> {
        use k8s_openapi::api::{
            core::v1::PersistentVolume, core::v1::PersistentVolumeClaim, storage::v1::StorageClass,
        };
        use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
        let client = self.cluster.client.clone();
        let sc_name = format!("{cspc}-sc");
        let sc: StorageClass = serde_json::from_value(json!({
            "metadata": {"name": sc_name},
            "provisioner": "cstor.csi.openebs.io",
            "allowVolumeExpansion": true,
            "reclaimPolicy": "Delete",
            "volumeBindingMode": "Immediate",
            "parameters": {"cstorPoolCluster": cspc, "replicaCount": "1", "cas-type": "cstor"},
        }))?;
        Api::<StorageClass>::all(client.clone())
            .create(&PostParams::default(), &sc)
            .await?;
        let vsc_ar = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("snapshot.storage.k8s.io", "v1", "VolumeSnapshotClass"),
            "volumesnapshotclasses",
        );
        let vsc: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotClass",
            "metadata": {"name": sc_name}, "driver": "cstor.csi.openebs.io", "deletionPolicy": "Delete",
        }))?;
        Api::<DynamicObject>::all_with(client.clone(), &vsc_ar)
            .create(&PostParams::default(), &vsc)
            .await?;

        let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
        let claim = format!("{cspc}-claim");
        let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
            "metadata": {"name": claim},
            "spec": {"storageClassName": sc_name, "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        }))?;
        claims.create(&PostParams::default(), &pvc).await?;
        let pv = until(&format!("PVC {claim} Bound"), || async {
            let c = claims.get(&claim).await?;
            let v = json(&c);
            Ok((field(&v, "/status/phase") == "Bound")
                .then(|| field(&v, "/spec/volumeName").to_string()))
        })
        .await?;
        self.healthy(&pv, 1).await?;

        claims
            .patch(
                &claim,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"resources": {"requests": {"storage": "2Gi"}}}})),
            )
            .await?;
        let pvs: Api<PersistentVolume> = Api::all(client.clone());
        until(&format!("PV {pv} and CStorVolume grown to 2Gi"), || async {
            let p = json(&pvs.get(&pv).await?);
            let cv = json(&self.api::<CStorVolume>().get(&pv).await?);
            Ok((field(&p, "/spec/capacity/storage") == "2Gi"
                && field(&cv, "/status/capacity") == "2Gi")
                .then_some(()))
        })
        .await?;

        let vs_ar = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("snapshot.storage.k8s.io", "v1", "VolumeSnapshot"),
            "volumesnapshots",
        );
        let snaps: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &vs_ar);
        let snap_name = format!("{cspc}-snap");
        let vs: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
            "metadata": {"name": snap_name},
            "spec": {"volumeSnapshotClassName": sc_name, "source": {"persistentVolumeClaimName": claim}},
        }))?;
        snaps.create(&PostParams::default(), &vs).await?;
        until(
            &format!("VolumeSnapshot {snap_name} readyToUse"),
            || async {
                let v = snaps.get(&snap_name).await?;
                Ok(v.data
                    .pointer("/status/readyToUse")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
                    .then_some(()))
            },
        )
        .await?;
        snaps.delete(&snap_name, &DeleteParams::default()).await?;
        until(&format!("VolumeSnapshot {snap_name} gone"), || async {
            Ok(snaps.get_opt(&snap_name).await?.is_none().then_some(()))
        })
        .await?;

        claims.delete(&claim, &DeleteParams::default()).await?;
        until(&format!("PV {pv} gone"), || async {
            Ok(pvs.get_opt(&pv).await?.is_none().then_some(()))
        })
        .await?;
        self.gone(&pv).await?;
        Api::<StorageClass>::all(client.clone())
            .delete(&sc_name, &DeleteParams::default())
            .await?;
        Api::<DynamicObject>::all_with(client, &vsc_ar)
            .delete(&sc_name, &DeleteParams::default())
            .await?;
        Ok(())
    }

    /// Deletes CSPC `cspc` and waits for its pools, claims and pods to go; its disks must be
    /// released (with `last`, every disk of the cluster).
    async fn delete_pools(&self, cspc: &str, last: bool) -> anyhow::Result<()> {
        let sel = format!("openebs.io/cstor-pool-cluster={cspc}");
        let disks: Vec<String> = self
            .api::<cstor_api::ndm::BlockDeviceClaim>()
            .list(&ListParams::default().labels(&sel))
            .await?
            .items
            .into_iter()
            .filter_map(|c| c.spec.block_device_name)
            .collect();
        ensure!(!disks.is_empty(), "CSPC {cspc} has no claimed disks");
        self.api::<CStorPoolCluster>()
            .delete(cspc, &DeleteParams::default())
            .await?;
        until(
            &format!("CSPC {cspc}, its CSPIs, claims and pool pods gone"),
            || async {
                let cspc_left = self
                    .api::<CStorPoolCluster>()
                    .get_opt(cspc)
                    .await?
                    .is_some();
                let cspis = self
                    .api::<CStorPoolInstance>()
                    .list(&ListParams::default().labels(&sel))
                    .await?
                    .items
                    .len();
                let bdcs = self
                    .api::<cstor_api::ndm::BlockDeviceClaim>()
                    .list(&ListParams::default().labels(&sel))
                    .await?
                    .items
                    .len();
                let pods = self
                    .api::<Pod>()
                    .list(&ListParams::default().labels(&sel))
                    .await?
                    .items
                    .len();
                Ok((!cspc_left && cspis == 0 && bdcs == 0 && pods == 0).then_some(()))
            },
        )
        .await?;
        let bds = self
            .api::<cstor_api::ndm::BlockDevice>()
            .list(&ListParams::default())
            .await?;
        let claimed: Vec<String> = bds
            .items
            .iter()
            .filter(|b| b.spec.claim_ref.is_some())
            .map(|b| b.name_any())
            .filter(|b| last || disks.contains(b))
            .collect();
        ensure!(
            claimed.is_empty(),
            "block devices still claimed after the CSPC was deleted: {claimed:?}"
        );
        Ok(())
    }

    async fn delete_volume(&self, pv: &str) -> anyhow::Result<()> {
        let pools: Vec<String> = self
            .api::<CStorPoolInstance>()
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .map(|c| c.name_any())
            .collect();
        self.csi()
            .delete_volume(DeleteVolumeRequest {
                volume_id: pv.into(),
                ..Default::default()
            })
            .await
            .context("DeleteVolume")?;
        self.gone(pv).await?;
        for cspi in pools {
            until(&format!("no zvol of {pv} on {cspi}"), || async {
                let out = self
                    .zfs_on(&cspi, &["list", "-H", "-t", "all", "-o", "name"])
                    .await?;
                Ok((!out.contains(pv)).then_some(()))
            })
            .await?;
        }
        Ok(())
    }
}
