//! Velero backups end to end on the test API server (or `CSTOR_TEST_KUBECONFIG`'s cluster): the
//! stand-in plugin (`cstor_testkit::velero`) calls the cvc-operator's REST server, the pool
//! managers' backup and restore controllers stream REAL zfs-fuse `zfs send` / `zfs recv`
//! through TCP connections to the plugin's data servers, and the data read back after the
//! volume was deleted and restored into a new one is the data backed up.
//!
//! zfs-fuse has no zvols, so the replicas are filesystem datasets `<pool>/<pv>` holding files;
//! the target's snapshot fan-out (SNAPCREATE/SNAPDESTROY to every replica) is played by a
//! gRPC server that runs `zfs snapshot` / `zfs destroy` on each pool holding the volume.
//! The deployed system (real target, real zvols, iSCSI reads) runs the same story in the
//! system suite (`tests/local`).

mod support;

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use cstor_api::{
    cstor::{
        CStorBackup, CStorBackupStatus, CStorCompletedBackup, CStorPoolInstance, CStorRestore,
        CStorVolume, CStorVolumeConfig, CStorVolumeReplica, from_value,
    },
    exec::{Cmd, HostRunner, Runner},
    proto::snapshot::v1alpha1::{
        VolumeSnapCreateRequest, VolumeSnapCreateResponse, VolumeSnapDeleteRequest,
        VolumeSnapDeleteResponse, run_snap_command_server::RunSnapCommand,
    },
};
use cstor_operators::{
    engine::CstorEngine,
    pool_manager::{self, transfer},
};
use cstor_testkit::{
    TestCluster,
    velero::{HostNet, Plugin},
    wait_until,
};
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, ListParams, PostParams},
};
use serde_json::{Value, json};
use tonic::{Request, Response, Status};

const DEADLINE: Duration = Duration::from_secs(60);
const CSPC: &str = "cspc-bk";
const SC: &str = "cstor-sc";

/// The target's snapshot service, played on the pools: `zfs snapshot` / `zfs destroy` of
/// `<pool>/<volume>@<snap>` on every pool that holds the volume.
#[derive(Clone)]
struct ZfsTarget {
    runner: Arc<dyn Runner>,
    pools: Vec<String>,
}

impl ZfsTarget {
    async fn each(&self, volume: &str, args: impl Fn(&str) -> Vec<String>) -> Vec<u8> {
        let mut done = 0;
        for pool in &self.pools {
            let ds = format!("{pool}/{volume}");
            let exists = Cmd::new("zfs").args(["list", "-H", "-o", "name", &ds]);
            if !self.runner.run(&exists).await.is_ok_and(|o| o.success()) {
                continue;
            }
            let cmd = Cmd::new("zfs").args(args(&ds));
            if let Err(e) = self.runner.run_ok(&cmd).await {
                return format!(r#"{{"response":"ERR {e}"}}"#).into_bytes();
            }
            done += 1;
        }
        if done == 0 {
            return br#"{"response":"ERR no replica connected"}"#.to_vec();
        }
        br#"{"response":"OK\r\n"}"#.to_vec()
    }
}

#[tonic::async_trait]
impl RunSnapCommand for ZfsTarget {
    async fn run_volume_snap_create_command(
        &self,
        r: Request<VolumeSnapCreateRequest>,
    ) -> Result<Response<VolumeSnapCreateResponse>, Status> {
        let r = r.into_inner();
        let status = self
            .each(&r.volume, |ds| {
                vec!["snapshot".into(), format!("{ds}@{}", r.snapname)]
            })
            .await;
        Ok(Response::new(VolumeSnapCreateResponse {
            version: 0,
            status,
        }))
    }

    async fn run_volume_snap_delete_command(
        &self,
        r: Request<VolumeSnapDeleteRequest>,
    ) -> Result<Response<VolumeSnapDeleteResponse>, Status> {
        let r = r.into_inner();
        let status = self
            .each(&r.volume, |ds| {
                vec!["destroy".into(), format!("{ds}@{}", r.snapname)]
            })
            .await;
        Ok(Response::new(VolumeSnapDeleteResponse {
            version: 0,
            status,
        }))
    }
}

struct Setup {
    _cluster: TestCluster,
    client: Client,
    ns: String,
    app_ns: String,
    runner: Arc<dyn Runner>,
    pools: Vec<String>,
    dir: tempfile::TempDir,
    rest: SocketAddr,
}

impl Setup {
    /// Two zfs-fuse pools with a pool manager's transfer controllers each, the REST server
    /// and the snapshot service; `None` when zfs-fuse is not installed.
    async fn start() -> Option<Setup> {
        if let Err(why) = support::ensure_zfs_fuse().await {
            println!("SKIPPED: zfs-fuse is not available: {why}");
            return None;
        }
        support::init_tracing();
        let runner: Arc<dyn Runner> = Arc::new(HostRunner::new());
        let dir = tempfile::tempdir().unwrap();
        let mut pools = Vec::new();
        for i in 0..2 {
            let pool = support::unique_pool(&format!("bk{i}"));
            let disk = dir.path().join(format!("disk{i}.img"));
            std::fs::File::create(&disk)
                .unwrap()
                .set_len(support::DISK_SIZE)
                .unwrap();
            let disk = disk.to_string_lossy().into_owned();
            runner
                .run_ok(&Cmd::new("zpool").args(["create", "-m", "none", &pool, &disk]))
                .await
                .unwrap();
            pools.push(pool);
        }
        let cluster = TestCluster::start().await;
        let client = cluster.client();
        let ns = cluster.namespace().to_owned();
        let app_ns = format!("{ns}-app");
        let app: k8s_openapi::api::core::v1::Namespace =
            serde_json::from_value(json!({"metadata": {"name": app_ns}})).unwrap();
        Api::all(client.clone())
            .create(&PostParams::default(), &app)
            .await
            .unwrap();

        let target = ZfsTarget {
            runner: runner.clone(),
            pools: pools.clone(),
        };
        let rest = support::rest_server(&client, &ns, target).await;

        for (i, pool) in pools.iter().enumerate() {
            let ctx = pool_manager::Context::new(
                client.clone(),
                Arc::new(CstorEngine::new(runner.clone())),
                &ns,
                format!("uid-{i}"),
                "cspc-uid",
            )
            .with_pool_name(pool)
            .with_transfer_retries(30, Duration::from_millis(100));
            tokio::spawn(transfer::run(Arc::new(ctx)));
        }
        let s = Setup {
            _cluster: cluster,
            client,
            ns,
            app_ns,
            runner,
            pools,
            dir,
            rest,
        };
        s.pool_pods().await;
        for i in 0..2 {
            s.create::<CStorPoolInstance>(json!({
                "apiVersion": "cstor.openebs.io/v1", "kind": "CStorPoolInstance",
                "metadata": {"name": format!("{CSPC}-p{i}"), "namespace": s.ns,
                    "labels": {"openebs.io/cstor-pool-cluster": CSPC}},
                "spec": {"hostName": "h", "nodeSelector": {}, "dataRaidGroups": []},
                "versionDetails": {"status": {"current": "3.6.0"}}
            }))
            .await;
        }
        Some(s)
    }

    /// A Ready node with a running pool pod per CSPI: the REST server's status routes infer a
    /// final status when a pool is down, and here both are up.
    async fn pool_pods(&self) {
        let cspis: Vec<String> = (0..2).map(|i| format!("{CSPC}-p{i}")).collect();
        let pods = [
            ("pool-p0", cspis[0].as_str()),
            ("pool-p1", cspis[1].as_str()),
        ];
        support::running_pool_pods(&self.client, &self.ns, &pods).await;
    }

    fn plugin(&self) -> Plugin {
        let mut p = Plugin::new(self.rest, "127.0.0.1".parse().unwrap(), Arc::new(HostNet));
        (p.backup_port, p.restore_port) = (0, 0);
        p.poll_every = Duration::from_millis(100);
        p.deadline = DEADLINE;
        p
    }

    async fn create<K>(&self, value: Value)
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + serde::de::DeserializeOwned
            + serde::Serialize
            + Clone
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        let obj: K = serde_json::from_value(value).unwrap();
        Api::<K>::namespaced(self.client.clone(), &obj.namespace().unwrap())
            .create(&PostParams::default(), &obj)
            .await
            .unwrap();
    }

    async fn zfs(&self, args: &[&str]) -> String {
        let cmd = Cmd::new("zfs").args(args.iter().copied());
        self.runner
            .run_ok(&cmd)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .stdout
    }

    fn mountpoint(&self, pool: usize, pv: &str) -> PathBuf {
        self.dir.path().join(format!("m{pool}-{pv}"))
    }

    /// The volume as the cvc-operator and the pools leave it: CV (target 127.0.0.1), a
    /// Healthy replica on each pool, and each replica's dataset, mounted in the test's dir when
    /// `mounted` (a restore's target stays unmounted: `zfs recv -F` need not unmount it).
    async fn volume(&self, pv: &str, mounted: bool) {
        self.create::<CStorVolume>(json!({
            "apiVersion": "cstor.openebs.io/v1", "kind": "CStorVolume",
            "metadata": {"name": pv, "namespace": self.ns},
            "spec": {"targetIP": "127.0.0.1", "targetPortal": "10.0.0.9:3260",
                "iqn": format!("iqn.2016-09.com.openebs.cstor:{pv}"), "capacity": "1Gi",
                "targetPort": "3260", "replicationFactor": 2, "consistencyFactor": 2}
        }))
        .await;
        for (i, pool) in self.pools.iter().enumerate() {
            self.create::<CStorVolumeReplica>(json!({
                "apiVersion": "cstor.openebs.io/v1", "kind": "CStorVolumeReplica",
                "metadata": {"name": format!("{pv}-{CSPC}-p{i}"), "namespace": self.ns, "labels": {
                    "openebs.io/persistent-volume": pv,
                    "cstorvolume.openebs.io/name": pv,
                    "cstorpoolinstance.openebs.io/name": format!("{CSPC}-p{i}"),
                    "cstorpoolinstance.openebs.io/uid": format!("uid-{i}")}},
                "spec": {"targetIP": "127.0.0.1", "capacity": "1Gi", "replicaid": format!("r{i}")},
                "status": {"phase": "Healthy"}
            }))
            .await;
            let mnt = if mounted {
                self.mountpoint(i, pv).display().to_string()
            } else {
                "none".to_string()
            };
            self.zfs(&[
                "create",
                "-o",
                &format!("mountpoint={mnt}"),
                &format!("{pool}/{pv}"),
            ])
            .await;
        }
    }

    /// Writes `files` into every replica of `pv`.
    async fn write(&self, pv: &str, files: &[(&str, &[u8])]) {
        for i in 0..self.pools.len() {
            let dir = self.mountpoint(i, pv);
            for (name, data) in files {
                std::fs::write(dir.join(name), data).unwrap();
            }
        }
    }

    /// The file `name` as each replica of `pv` holds it (remounted first: a received dataset
    /// is not mounted by zfs-fuse).
    async fn read(&self, pv: &str, name: &str) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for (i, pool) in self.pools.iter().enumerate() {
            let ds = format!("{pool}/{pv}");
            let mnt = self.mountpoint(i, pv);
            self.zfs(&["set", &format!("mountpoint={}", mnt.display()), &ds])
                .await;
            let mounted = self
                .zfs(&["get", "-H", "-o", "value", "mounted", &ds])
                .await;
            if mounted.trim() != "yes" {
                self.zfs(&["mount", &ds]).await;
            }
            out.push(std::fs::read(mnt.join(name)).unwrap_or_default());
        }
        out
    }

    async fn snapshots(&self, pv: &str) -> Vec<String> {
        let mut all = Vec::new();
        for pool in &self.pools {
            let list = self
                .zfs(&[
                    "list",
                    "-H",
                    "-t",
                    "snapshot",
                    "-o",
                    "name",
                    "-r",
                    &format!("{pool}/{pv}"),
                ])
                .await;
            all.extend(list.lines().map(|l| l.trim().to_string()));
        }
        all
    }

    fn backups(&self) -> Api<CStorBackup> {
        Api::namespaced(self.client.clone(), &self.app_ns)
    }

    fn records(&self) -> Api<CStorCompletedBackup> {
        Api::namespaced(self.client.clone(), &self.app_ns)
    }

    /// Deletes the volume: its replicas' datasets, CVRs, CV (the PV's snapshots go with
    /// the datasets).
    async fn delete_volume(&self, pv: &str) {
        for pool in &self.pools {
            // A FUSE mount can be busy for a moment after the last file closed: retried.
            let ds = format!("{pool}/{pv}");
            let cmd = Cmd::new("zfs").args(["destroy", "-r", "-f", ds.as_str()]);
            wait_until(&format!("{ds} destroyed"), DEADLINE, || async {
                let out = self.runner.run(&cmd).await.unwrap();
                assert!(
                    out.success() || out.stderr.contains("busy"),
                    "{}",
                    out.stderr
                );
                out.success()
            })
            .await
            .unwrap();
        }
        let cvrs: Api<CStorVolumeReplica> = Api::namespaced(self.client.clone(), &self.ns);
        let lp = ListParams::default().labels(&format!("openebs.io/persistent-volume={pv}"));
        cvrs.delete_collection(&DeleteParams::default(), &lp)
            .await
            .unwrap();
        let cvs: Api<CStorVolume> = Api::namespaced(self.client.clone(), &self.ns);
        cvs.delete(pv, &DeleteParams::default()).await.unwrap();
    }

    /// What CSI and the cvc-operator create for the PVC of a restore: a Bound CVC, a CV and
    /// replicas whose (empty) datasets wait for the stream.
    async fn restore_target(&self, pv: &str) {
        let cvc: CStorVolumeConfig = from_value(json!({
            "apiVersion": "cstor.openebs.io/v1", "kind": "CStorVolumeConfig",
            "metadata": {"name": pv, "namespace": self.ns,
                "annotations": {"openebs.io/created-through": "restore"}},
            "spec": {"capacity": {"storage": "1Gi"}, "provision": {"capacity": {"storage": "1Gi"}, "replicaCount": 2}, "policy": {}},
            "publish": {"nodeId": ""},
            "status": {"phase": "Bound"}
        }))
        .unwrap();
        Api::<CStorVolumeConfig>::namespaced(self.client.clone(), &self.ns)
            .create(&PostParams::default(), &cvc)
            .await
            .unwrap();
        self.volume(pv, false).await;
    }

    async fn cleanup(&self) {
        let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(self.client.clone());
        let _ = nodes
            .delete(&format!("{}-node", self.ns), &DeleteParams::default())
            .await;
        for pool in &self.pools {
            let _ = self
                .runner
                .run(&Cmd::new("zpool").args(["destroy", "-f", pool.as_str()]))
                .await;
        }
    }
}

fn pattern(tag: &str, len: usize) -> Vec<u8> {
    tag.bytes().cycle().take(len).collect()
}

fn status_of(b: &CStorBackup) -> CStorBackupStatus {
    b.status.clone().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backup_delete_restore_reads_the_same_data() {
    let Some(s) = Setup::start().await else {
        return;
    };
    let outcome = support::scenario(Duration::from_secs(240), story(&s)).await;
    s.cleanup().await;
    outcome.finish();
}

async fn story(s: &Setup) {
    let plugin = s.plugin();
    let pv = "pvc-src";
    s.volume(pv, true).await;
    let first = pattern("first backup ", 300 << 10);
    s.write(pv, &[("a.bin", &first)]).await;

    // A scheduled backup: full stream, the CStorBackup Done, the record holds the snapshot,
    // nothing cleaned up (it is the schedule's base).
    let b1 = "nightly-20240101000000";
    let id = plugin.backup(&s.app_ns, pv, b1, false).await.unwrap();
    assert_eq!(id, format!("{pv}-velero-bkp-{b1}"));
    let full = plugin.object(pv, b1).expect("full stream stored");
    assert!(
        full.len() > first.len() / 2,
        "full stream of {} bytes",
        full.len()
    );
    let backup = s.backups().get(&format!("{b1}-{pv}")).await.unwrap();
    assert_eq!(status_of(&backup), CStorBackupStatus::Done);
    let record = s.records().get(&format!("nightly-{pv}")).await.unwrap();
    assert_eq!(record.spec.last_snap_name.as_deref(), Some(b1));

    // The next one of the schedule: incremental from the first; the plugin's clean-up then
    // removes the first snapshot and its CStorBackup.
    let second = pattern("second ", 20 << 10);
    s.write(pv, &[("b.bin", &second)]).await;
    let b2 = "nightly-20240102000000";
    plugin.backup(&s.app_ns, pv, b2, false).await.unwrap();
    let inc = plugin.object(pv, b2).expect("incremental stream stored");
    assert!(
        inc.len() < full.len() / 2,
        "incremental stream {} bytes, full {}",
        inc.len(),
        full.len()
    );
    let backup = s.backups().get(&format!("{b2}-{pv}")).await.unwrap();
    assert_eq!(backup.spec.prev_snap_name.as_deref(), Some(b1));
    assert!(
        s.backups()
            .get_opt(&format!("{b1}-{pv}"))
            .await
            .unwrap()
            .is_none()
    );
    let record = s.records().get(&format!("nightly-{pv}")).await.unwrap();
    assert_eq!(
        (
            record.spec.second_last_snap_name.as_deref(),
            record.spec.last_snap_name.as_deref()
        ),
        (Some(b1), Some(b2))
    );
    let snaps = s.snapshots(pv).await;
    assert!(
        snaps.iter().all(|n| n.ends_with(&format!("@{b2}"))) && snaps.len() == 2,
        "only the schedule's newest snapshot stays, on both replicas: {snaps:?}"
    );

    interrupted_backups_converge(s, pv, b2).await;
    bad_destination_fails_naming_the_field(s, pv, b2).await;
    failed_stream_fails_the_backup(s, &plugin, pv).await;

    // The volume goes; a new PVC is restored from the chain (full, then incremental).
    s.delete_volume(pv).await;
    let new = "pvc-restored";
    s.restore_target(new).await;
    plugin.restore(&s.ns, pv, b1, new, SC).await.unwrap();
    plugin.restore(&s.ns, pv, b2, new, SC).await.unwrap();
    let restores: Api<CStorRestore> = Api::namespaced(s.client.clone(), &s.ns);
    let list = restores
        .list(&ListParams::default().labels(&format!("openebs.io/persistent-volume={new}")))
        .await
        .unwrap();
    assert_eq!(list.items.len(), 4, "one restore per replica and snapshot");
    assert!(
        list.items
            .iter()
            .all(|r| r.status == Some(CStorBackupStatus::Done))
    );
    assert_eq!(s.read(new, "a.bin").await, vec![first.clone(), first]);
    assert_eq!(s.read(new, "b.bin").await, vec![second.clone(), second]);
}

/// A pool manager that died mid-stream left a backup `InProgress`: the next one resumes it.
/// One whose snapshot the record already holds is just `Done`; another is sent again.
async fn interrupted_backups_converge(s: &Setup, pv: &str, snap: &str) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dest = listener.local_addr().unwrap().to_string();
    let receive = tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut data = Vec::new();
        tcp.read_to_end(&mut data).await.unwrap();
        data
    });
    for (name, schedule) in [("sent", "nightly"), ("resent", "other")] {
        s.create::<CStorBackup>(json!({
            "apiVersion": "cstor.openebs.io/v1", "kind": "CStorBackup",
            "metadata": {"name": name, "namespace": s.app_ns, "labels": {
                "cstorpoolinstance.openebs.io/uid": "uid-0",
                "cstorpoolinstance.openebs.io/name": format!("{CSPC}-p0"),
                "openebs.io/persistent-volume": pv, "openebs.io/backup": schedule}},
            "spec": {"backupName": schedule, "volumeName": pv, "snapName": snap,
                "backupDest": dest},
            "status": "InProgress"
        }))
        .await;
    }
    for name in ["sent", "resent"] {
        wait_until(&format!("backup {name} Done"), DEADLINE, || async {
            s.backups()
                .get(name)
                .await
                .is_ok_and(|b| status_of(&b) == CStorBackupStatus::Done)
        })
        .await
        .unwrap();
    }
    let data = tokio::time::timeout(DEADLINE, receive)
        .await
        .unwrap()
        .unwrap();
    assert!(!data.is_empty(), "the interrupted backup was sent again");
    for name in ["sent", "resent"] {
        s.backups()
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
    }
}

/// A backup whose destination is not `<ip>:<port>` fails at once, and a Warning event on it
/// names the field.
async fn bad_destination_fails_naming_the_field(s: &Setup, pv: &str, snap: &str) {
    use k8s_openapi::api::events::v1::Event;
    let name = "bad-dest";
    s.create::<CStorBackup>(json!({
        "apiVersion": "cstor.openebs.io/v1", "kind": "CStorBackup",
        "metadata": {"name": name, "namespace": s.app_ns, "labels": {
            "cstorpoolinstance.openebs.io/uid": "uid-1",
            "openebs.io/persistent-volume": pv, "openebs.io/backup": "x"}},
        "spec": {"backupName": "x", "volumeName": pv, "snapName": snap,
            "backupDest": "velero:9001"},
        "status": "Pending"
    }))
    .await;
    wait_until("backup with a bad destination Failed", DEADLINE, || async {
        s.backups()
            .get(name)
            .await
            .is_ok_and(|b| status_of(&b) == CStorBackupStatus::Failed)
    })
    .await
    .unwrap();
    let events: Api<Event> = Api::namespaced(s.client.clone(), &s.app_ns);
    let note = wait_until("the Warning event", DEADLINE, || async {
        events
            .list(&ListParams::default())
            .await
            .ok()
            .and_then(|l| {
                l.items.into_iter().find_map(|e| {
                    let about = e.regarding.as_ref()?.name.as_deref()? == name;
                    (about && e.type_.as_deref() == Some("Warning")).then_some(e.note?)
                })
            })
    })
    .await
    .unwrap();
    assert!(
        note.contains("spec.backupDest") && note.contains("velero:9001"),
        "{note}"
    );
    s.backups()
        .delete(name, &DeleteParams::default())
        .await
        .unwrap();
}

/// A stream that cannot be produced (its base snapshot is gone) fails the backup after the
/// retries; the plugin reports it and its clean-up removes the snapshot and the CStorBackup.
async fn failed_stream_fails_the_backup(s: &Setup, plugin: &Plugin, pv: &str) {
    let record = format!("broken-{pv}");
    let b = "broken-20240103000000";
    // The record says a snapshot was sent that no replica has any more.
    s.create::<CStorCompletedBackup>(json!({
        "apiVersion": "cstor.openebs.io/v1", "kind": "CStorCompletedBackup",
        "metadata": {"name": record, "namespace": s.app_ns},
        "spec": {"backupName": "broken", "volumeName": pv, "lastSnapName": "gone"}
    }))
    .await;
    let err = plugin.backup(&s.app_ns, pv, b, false).await.unwrap_err();
    assert!(err.to_string().contains("status:{Failed}"), "{err}");
    assert!(
        s.backups()
            .get_opt(&format!("{b}-{pv}"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        !s.snapshots(pv).await.iter().any(|n| n.ends_with(b)),
        "the failed backup's snapshot was destroyed"
    );
}
