//! The story's migration step: legacy cStor pools and a legacy volume on them, as the pre-CSI
//! control plane left them, moved by `cstor-migrate` run as its example Jobs would run it
//! (their Pods, ServiceAccount and RBAC).
//!
//! - The legacy pools: a StoragePoolClaim with one CStorPool per node on a disk of its own
//!   (claimed by a legacy BlockDeviceClaim), each served by its CStorPool Deployment whose
//!   `cstor-pool` container runs the engine; its zpool is `cstor-<CStorPool uid>`.
//! - The legacy volume: on each legacy pool a replica zvol holding the story's data (received
//!   from a snapshot of the story's volume), with the legacy target's address and a replica ID
//!   of its own; legacy CStorVolumeReplicas pointing at the CStorPools, the legacy
//!   CStorVolume, a scaled-down `<pv>-target` Deployment, the target Service whose ClusterIP
//!   the zvols know, an external-provisioner StorageClass, the iSCSI PV and its claim.
//! - `cstor-migrate cstor-spc` (deploy/examples/migrate-pool-job.yaml): a CStorPoolCluster of
//!   the same name, each pool imported under its new name `cstor-<CSPC uid>` with its zvol, the
//!   legacy objects gone, the replicas re-pointed.
//! - `cstor-migrate cstor-volume` (deploy/examples/migrate-volume-job.yaml): a CSI volume on
//!   the migrated pools, Healthy, reading the same data over iSCSI.
//! - The migrated volume and pools are then deleted as any of ours: zvols and pools destroyed,
//!   disks released.

use std::process::Stdio;

use anyhow::{Context as _, bail, ensure};
use cstor_api::{
    cstor::{CStorPoolCluster, CStorPoolInstance, CStorVolume, CStorVolumePolicy},
    ndm::BlockDeviceClaim,
    proto::csi::v1::{CreateSnapshotRequest, DeleteVolumeRequest},
};
use cstor_operators::migrate::{legacy, pool, volume};
use cstor_testkit::{CrdSpec, cluster::ensure_crds};
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{PersistentVolume, PersistentVolumeClaim, Pod, Service},
    storage::v1::StorageClass,
};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, DynamicObject, ListParams, PostParams},
};
use serde_json::{Value, json};

use super::{GIB, STEP, Story, field, json as to_json, until, until_within};
use crate::cluster::workspace_root;

/// The example Jobs the step runs.
const POOL_JOB: &str = "deploy/examples/migrate-pool-job.yaml";
const VOLUME_JOB: &str = "deploy/examples/migrate-volume-job.yaml";
/// The legacy release the objects come from.
const LEGACY_VERSION: &str = "2.12.0";
/// Size of the legacy volume (the story's volume was grown to 2 GiB).
const SIZE: &str = "2Gi";

/// One legacy pool: its CStorPool, node, zpool and replica ID of the legacy volume.
struct LegacyPool {
    csp: String,
    uid: String,
    node: String,
    zpool: String,
    replica_id: String,
}

impl Story<'_> {
    /// The step: `pv` holds `data` on three pools (one per node).
    pub(super) async fn legacy_migration(&self, pv: &str, data: &[u8]) -> anyhow::Result<()> {
        let short = &uuid::Uuid::new_v4().simple().to_string()[..6];
        let spc = format!("legacy-{short}");
        let legacy_pv = format!("pvc-legacy-{short}");
        self.legacy_crds().await?;
        let (snap_id, snap) = self.legacy_zvols_source(pv).await?;
        let pools = self.legacy_pools(&spc).await?;
        let ip = self.legacy_volume(&legacy_pv, pv, &snap, &pools).await?;

        self.run_job(
            POOL_JOB,
            &["cstor-spc", "--spc-name", &spc],
            &format!("migrate-pool-{short}"),
        )
        .await?;
        let cspis = self.migrated_pools(&spc, &legacy_pv, &pools).await?;

        self.run_job(
            VOLUME_JOB,
            &["cstor-volume", "--pv-name", &legacy_pv],
            &format!("migrate-volume-{short}"),
        )
        .await?;
        // A CSI volume of ours, on the migrated pools, reading the same data.
        self.healthy(&legacy_pv, pools.len()).await?;
        let mut on = self.replica_pools(&legacy_pv).await?;
        on.sort();
        ensure!(
            on == cspis,
            "the migrated replicas are on {on:?}, the migrated pools are {cspis:?}"
        );
        let cv = self.api::<CStorVolume>().get(&legacy_pv).await?;
        ensure!(
            field(&to_json(&cv), "/spec/targetIP") == ip,
            "the migrated target is not at the address the zvols know ({ip})"
        );
        let got = self.read(&legacy_pv, data.len()).await?;
        ensure!(
            got == data,
            "the migrated volume reads other data than the legacy one held"
        );
        let client = self.cluster.client.clone();
        let v = Api::<PersistentVolume>::all(client.clone())
            .get(&legacy_pv)
            .await?;
        ensure!(
            v.spec
                .as_ref()
                .and_then(|s| s.csi.as_ref())
                .map(|c| c.driver.as_str())
                == Some(volume::CSI_DRIVER),
            "the PV is not a CSI volume of {}",
            volume::CSI_DRIVER
        );
        let legacy_cv = Api::<DynamicObject>::namespaced_with(
            client.clone(),
            &self.ns,
            &legacy("CStorVolume", "cstorvolumes"),
        );
        ensure!(
            legacy_cv.get_opt(&legacy_pv).await?.is_none(),
            "the legacy CStorVolume is still there"
        );

        // Cleaned up as any volume and pools of ours: the volume, the claim and the classes,
        // the story's snapshot, then the migrated pools.
        self.csi()
            .delete_volume(DeleteVolumeRequest {
                volume_id: legacy_pv.clone(),
                ..Default::default()
            })
            .await
            .context("DeleteVolume of the migrated volume")?;
        self.gone(&legacy_pv).await?;
        self.api::<PersistentVolumeClaim>()
            .delete(&format!("claim-{legacy_pv}"), &DeleteParams::default())
            .await?;
        let pvs: Api<PersistentVolume> = Api::all(client.clone());
        match pvs.delete(&legacy_pv, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
        let sc = format!("legacy-{short}");
        Api::<StorageClass>::all(client.clone())
            .delete(&sc, &DeleteParams::default())
            .await?;
        self.api::<CStorVolumePolicy>()
            .delete(&sc, &DeleteParams::default())
            .await?;
        self.delete_snapshot(&snap_id).await?;
        self.delete_pools(&spc, false).await
    }

    /// Permissive CRDs of the legacy kinds (the pre-CSI control plane's).
    async fn legacy_crds(&self) -> anyhow::Result<()> {
        let crds: Vec<_> = [
            ("StoragePoolClaim", "storagepoolclaims", true),
            ("CStorPool", "cstorpools", true),
            ("CStorVolume", "cstorvolumes", false),
            ("CStorVolumeReplica", "cstorvolumereplicas", false),
        ]
        .into_iter()
        .map(|(kind, plural, cluster)| {
            let spec = CrdSpec::new("openebs.io", "v1alpha1", kind, plural);
            if cluster { spec.cluster_scoped() } else { spec }.crd()
        })
        .collect();
        Ok(ensure_crds(&self.cluster.client, &crds).await?)
    }

    /// A CSI snapshot of `pv` on every replica (through its target): the origin of the legacy
    /// zvols. Returns its CSI id and its name on the zvols.
    async fn legacy_zvols_source(&self, pv: &str) -> anyhow::Result<(String, String)> {
        let id = self
            .csi()
            .create_snapshot(CreateSnapshotRequest {
                source_volume_id: pv.into(),
                name: format!("legacy-src-{}", uuid::Uuid::new_v4()),
                ..Default::default()
            })
            .await
            .context("CreateSnapshot")?
            .into_inner()
            .snapshot
            .context("no snapshot in the reply")?
            .snapshot_id;
        let (_, name) = cstor_api::naming::parse_snapshot_id(&id)?;
        Ok((id.clone(), name.to_owned()))
    }

    /// The legacy pools of StoragePoolClaim `spc`: one CStorPool per node on the node's second
    /// sparse disk, its claim, its Deployment running the engine, its zpool.
    async fn legacy_pools(&self, spc: &str) -> anyhow::Result<Vec<LegacyPool>> {
        let client = self.cluster.client.clone();
        let bds = crate::controllers::sparse_block_devices(
            &client,
            &self.ns,
            &self.cluster.nodes,
            |n| self.cluster.kubelet.node_dir(n),
            2,
            4 * GIB,
        )
        .await?;
        let disk = |node: &str| {
            bds.iter()
                .find(|b| b.name_any() == format!("sparse-{node}-1"))
                .map(|b| (b.name_any(), b.spec.path.clone()))
                .with_context(|| format!("no second sparse disk on {node}"))
        };
        let disks: Vec<(String, String)> = self
            .cluster
            .nodes
            .iter()
            .map(|n| disk(n))
            .collect::<anyhow::Result<_>>()?;
        let spcs = Api::<DynamicObject>::all_with(
            client.clone(),
            &legacy("StoragePoolClaim", "storagepoolclaims"),
        );
        let spc_obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "openebs.io/v1alpha1", "kind": "StoragePoolClaim",
            "metadata": {"name": spc, "labels": {"openebs.io/version": LEGACY_VERSION}},
            "spec": {"name": spc, "type": "disk",
                "blockDevices": {"blockDeviceList": disks.iter().map(|d| &d.0).collect::<Vec<_>>()},
                "poolSpec": {"poolType": "striped", "thickProvisioning": false}},
            "versionDetails": {"autoUpgrade": false, "desired": LEGACY_VERSION,
                "status": {"current": LEGACY_VERSION}}
        }))?;
        let spc_obj = spcs.create(&PostParams::default(), &spc_obj).await?;
        let spc_owner = owner(&spc_obj, "StoragePoolClaim")?;

        // The pool pods mount what ours do, with the legacy pods' own directory for /tmp.
        let template = self
            .api::<Deployment>()
            .list(&ListParams::default().labels("app=cstor-pool"))
            .await?
            .items
            .into_iter()
            .find_map(|d| d.spec.map(|s| s.template))
            .context("no pool Deployment of ours to take the pool pod's volumes from")?;
        let tpl = to_json(&template);
        let mounts = tpl
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .and_then(|cs| cs.iter().find(|c| field(c, "/name") == "cstor-pool"))
            .and_then(|c| c.get("volumeMounts"))
            .cloned()
            .context("our pool container has no volumeMounts")?;
        let mut volumes = tpl
            .pointer("/spec/volumes")
            .cloned()
            .context("our pool pod has no volumes")?;
        let shared = format!("/var/openebs/sparse/shared-{spc}");
        for v in volumes.as_array_mut().into_iter().flatten() {
            if matches!(field(v, "/name"), "tmp" | "storagepath") {
                v["hostPath"] = json!({"path": shared, "type": "DirectoryOrCreate"});
            }
        }

        let csps =
            Api::<DynamicObject>::all_with(client.clone(), &legacy("CStorPool", "cstorpools"));
        let claims: Api<BlockDeviceClaim> = self.api();
        let deployments: Api<Deployment> = self.api();
        let mut out = Vec::new();
        for (i, (node, (bd, path))) in self.cluster.nodes.iter().zip(&disks).enumerate() {
            let claim: BlockDeviceClaim = serde_json::from_value(json!({
                "apiVersion": "openebs.io/v1alpha1", "kind": "BlockDeviceClaim",
                "metadata": {"name": format!("bdc-{spc}-{i}"), "namespace": self.ns,
                    "labels": {pool::SPC_LABEL: spc}, "finalizers": [pool::SPC_FINALIZER],
                    "ownerReferences": [spc_owner]},
                "spec": {"blockDeviceName": bd, "blockDeviceNodeAttributes": {"hostName": node},
                    "resources": {"requests": {"storage": "4Gi"}}}
            }))?;
            claims.create(&PostParams::default(), &claim).await?;
            let csp_name = format!("{spc}-{}", &uuid::Uuid::new_v4().simple().to_string()[..4]);
            let csp: DynamicObject = serde_json::from_value(json!({
                "apiVersion": "openebs.io/v1alpha1", "kind": "CStorPool",
                "metadata": {"name": csp_name, "finalizers": ["openebs.io/pool-protection"],
                    "ownerReferences": [spc_owner],
                    "labels": {pool::SPC_LABEL: spc, "kubernetes.io/hostname": node,
                        "openebs.io/version": LEGACY_VERSION, "openebs.io/cas-type": "cstor"}},
                "spec": {"group": [{"blockDevice": [{"name": bd, "deviceID": path, "inUseByPool": true}]}],
                    "poolSpec": {"poolType": "striped", "thickProvisioning": false}},
                "status": {"phase": "Healthy"}
            }))?;
            let csp = csps.create(&PostParams::default(), &csp).await?;
            let uid = csp.uid().unwrap_or_default();
            let labels = json!({pool::CSP_LABEL: csp_name, pool::SPC_LABEL: spc, "app": "cstor-pool",
                "openebs.io/version": LEGACY_VERSION});
            let dep: Deployment = serde_json::from_value(json!({
                "metadata": {"name": csp_name, "labels": labels,
                    "ownerReferences": [owner(&csp, "CStorPool")?]},
                "spec": {"replicas": 1, "selector": {"matchLabels": {pool::CSP_LABEL: csp_name}},
                    "strategy": {"type": "Recreate"},
                    "template": {"metadata": {"labels": labels}, "spec": {
                        "nodeSelector": {"kubernetes.io/hostname": node},
                        "volumes": volumes,
                        "containers": [
                            {"name": "cstor-pool", "image": format!("openebs/cstor-pool:{LEGACY_VERSION}"),
                                "env": [{"name": "OPENEBS_IO_CSTOR_ID", "value": uid}],
                                "volumeMounts": mounts},
                            {"name": "cstor-pool-mgmt",
                                "image": format!("openebs/cstor-pool-mgmt:{LEGACY_VERSION}")},
                            {"name": "maya-exporter",
                                "image": format!("openebs/m-exporter:{LEGACY_VERSION}")}]}}}
            }))?;
            deployments.create(&PostParams::default(), &dep).await?;
            out.push(LegacyPool {
                zpool: format!("cstor-{uid}"),
                csp: csp_name,
                uid,
                node: node.clone(),
                replica_id: cstor_api::naming::replica_id_from_uid(
                    &uuid::Uuid::new_v4().to_string(),
                ),
            });
        }
        let bound = format!("{}={spc}", pool::SPC_LABEL);
        until("the legacy claims Bound", || async {
            let list = claims
                .list(&ListParams::default().labels(&bound))
                .await?
                .items;
            Ok((list.len() == out.len()
                && list
                    .iter()
                    .all(|c| field(&to_json(c), "/status/phase") == "Bound"))
            .then_some(()))
        })
        .await?;
        // Each pool as the legacy pool manager made it, once the pod's engine answers.
        for (lp, (_, path)) in out.iter().zip(&disks) {
            let pod = until(&format!("the engine of legacy pool {}", lp.csp), || async {
                let pod = self
                    .pool_pod(&format!("{}={}", pool::CSP_LABEL, lp.csp))
                    .await?;
                self.engine_in(&pod, "zpool", &["list"], Stdio::null(), None)
                    .await?;
                Ok(Some(pod))
            })
            .await?;
            self.engine_in(
                &pod,
                "zpool",
                &[
                    "create",
                    "-f",
                    "-o",
                    "cachefile=/tmp/pool1.cache",
                    "-O",
                    "canmount=off",
                    &lp.zpool,
                    path,
                ],
                Stdio::null(),
                None,
            )
            .await?;
        }
        Ok(out)
    }

    /// The legacy objects of `legacy_pv` and its zvols on `pools` (each receives `pv@snap`
    /// from the story's replica on its node); returns the legacy target address.
    async fn legacy_volume(
        &self,
        legacy_pv: &str,
        pv: &str,
        snap: &str,
        pools: &[LegacyPool],
    ) -> anyhow::Result<String> {
        let client = self.cluster.client.clone();
        let selector = json!({"app": "cstor-volume-manager", "openebs.io/target": "cstor-target",
            "openebs.io/persistent-volume": legacy_pv});
        // The target Service first: its ClusterIP is the address the legacy zvols know.
        let services: Api<Service> = self.api();
        services
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "metadata": {"name": legacy_pv, "labels": {"openebs.io/persistent-volume": legacy_pv,
                        "openebs.io/target-service": "cstor-target-svc"}},
                    "spec": {"selector": selector, "ports": [
                        {"name": "cstor-iscsi", "port": 3260, "targetPort": 3260},
                        {"name": "cstor-grpc", "port": 7777, "targetPort": 7777},
                        {"name": "mgmt", "port": 6060, "targetPort": 6060},
                        {"name": "exporter", "port": 9500, "targetPort": 9500}]}
                }))?,
            )
            .await?;
        let ip = until("the legacy target Service's ClusterIP", || async {
            let s = services.get(legacy_pv).await?;
            Ok(s.spec
                .and_then(|s| s.cluster_ip)
                .filter(|ip| !ip.is_empty() && ip != "None"))
        })
        .await?;

        // The replica zvols: the story's data, sent from the story's replica on the same node.
        let cspis: Api<CStorPoolInstance> = self.api();
        let replicas = Api::<DynamicObject>::namespaced_with(
            client.clone(),
            &self.ns,
            &legacy("CStorVolumeReplica", "cstorvolumereplicas"),
        );
        let stream_dir = self.cluster.state_dir.join(format!("streams-{legacy_pv}"));
        std::fs::create_dir_all(&stream_dir)?;
        // The story's replica on each node (read once).
        let mut by_node = std::collections::BTreeMap::new();
        for cspi in self.replica_pools(pv).await? {
            let c = cspis.get(&cspi).await?;
            for node in [
                c.spec.host_name.clone(),
                c.labels().get("kubernetes.io/hostname").cloned(),
            ]
            .into_iter()
            .flatten()
            {
                by_node.insert(node, cspi.clone());
            }
        }
        for lp in pools {
            let cspi = by_node
                .get(&lp.node)
                .cloned()
                .with_context(|| format!("no replica of {pv} on {}", lp.node))?;
            let from = format!("{}/{pv}@{snap}", self.pool_of(&cspi).await?);
            let stream = stream_dir.join(&lp.csp);
            let src_pod = self
                .pool_pod(&format!("openebs.io/cstor-pool-instance={cspi}"))
                .await?;
            self.engine_in(
                &src_pod,
                "zfs",
                &["send", &from],
                Stdio::null(),
                Some(std::fs::File::create(&stream)?),
            )
            .await?;
            let pod = self
                .pool_pod(&format!("{}={}", pool::CSP_LABEL, lp.csp))
                .await?;
            let ds = format!("{}/{legacy_pv}", lp.zpool);
            let id = format!("io.openebs:zvol_replica_id={}", lp.replica_id);
            self.engine_in(
                &pod,
                "zfs",
                &[
                    "create",
                    "-s",
                    "-o",
                    "quorum=on",
                    "-o",
                    &id,
                    "-V",
                    "2G",
                    &ds,
                ],
                Stdio::null(),
                None,
            )
            .await?;
            self.engine_in(
                &pod,
                "zfs",
                &["recv", "-F", &ds],
                Stdio::from(std::fs::File::open(&stream)?),
                None,
            )
            .await?;
            self.engine_in(
                &pod,
                "zfs",
                &["set", &format!("io.openebs:targetip={ip}"), &ds],
                Stdio::null(),
                None,
            )
            .await?;
            let cvr: DynamicObject = serde_json::from_value(json!({
                "apiVersion": "openebs.io/v1alpha1", "kind": "CStorVolumeReplica",
                "metadata": {"name": format!("{legacy_pv}-{}", lp.csp), "namespace": self.ns,
                    "labels": {"openebs.io/persistent-volume": legacy_pv,
                        "cstorvolume.openebs.io/name": legacy_pv,
                        "cstorpool.openebs.io/name": lp.csp,
                        "cstorpool.openebs.io/uid": lp.uid,
                        "openebs.io/version": LEGACY_VERSION},
                    "annotations": {"cstorpool.openebs.io/hostname": lp.node},
                    "finalizers": ["cstorvolumereplica.openebs.io/finalizer"]},
                "spec": {"targetIP": ip, "capacity": SIZE, "replicaid": lp.replica_id},
                "status": {"phase": "Healthy"}
            }))?;
            replicas.create(&PostParams::default(), &cvr).await?;
            std::fs::remove_file(&stream)?;
        }
        std::fs::remove_dir(&stream_dir)?;
        let cv: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "openebs.io/v1alpha1", "kind": "CStorVolume",
            "metadata": {"name": legacy_pv, "namespace": self.ns,
                "labels": {"openebs.io/persistent-volume": legacy_pv,
                    "openebs.io/version": LEGACY_VERSION},
                "annotations": {"openebs.io/fs-type": "ext4"}},
            "spec": {"targetIP": ip, "capacity": SIZE, "replicationFactor": pools.len(),
                "consistencyFactor": pools.len() / 2 + 1,
                "iqn": format!("iqn.2016-09.com.openebs.cstor:{legacy_pv}"),
                "targetPortal": format!("{ip}:3260")}
        }))?;
        Api::<DynamicObject>::namespaced_with(
            client.clone(),
            &self.ns,
            &legacy("CStorVolume", "cstorvolumes"),
        )
        .create(&PostParams::default(), &cv)
        .await?;
        // The legacy target, scaled down with its application (its image is not ours to run).
        let target: Deployment = serde_json::from_value(json!({
            "metadata": {"name": format!("{legacy_pv}-target"), "labels": selector},
            "spec": {"replicas": 0, "selector": {"matchLabels": selector},
                "template": {"metadata": {"labels": selector}, "spec": {"containers": [
                    {"name": "cstor-istgt", "image": format!("openebs/cstor-istgt:{LEGACY_VERSION}"),
                        "env": [{"name": "QueueDepth", "value": "32"}, {"name": "Luworkers", "value": "6"}]},
                    {"name": "cstor-volume-mgmt",
                        "image": format!("openebs/cstor-volume-mgmt:{LEGACY_VERSION}")}]}}}
        }))?;
        self.api::<Deployment>()
            .create(&PostParams::default(), &target)
            .await?;
        let short = legacy_pv.trim_start_matches("pvc-legacy-");
        let sc = format!("legacy-{short}");
        let config = format!(
            "- name: StoragePoolClaim\n  value: legacy-{short}\n- name: ReplicaCount\n  value: \"{}\"\n- name: QueueDepth\n  value: \"32\"\n- name: FSType\n  value: ext4\n",
            pools.len()
        );
        let class: StorageClass = serde_json::from_value(json!({
            "metadata": {"name": sc, "annotations": {"openebs.io/cas-type": "cstor",
                volume::CAS_CONFIG: config}},
            "provisioner": "openebs.io/provisioner-iscsi", "reclaimPolicy": "Delete",
            "volumeBindingMode": "Immediate"
        }))?;
        Api::<StorageClass>::all(client.clone())
            .create(&PostParams::default(), &class)
            .await?;
        let claim = format!("claim-{legacy_pv}");
        let pv_obj: PersistentVolume = serde_json::from_value(json!({
            "metadata": {"name": legacy_pv, "labels": {"openebs.io/cas-type": "cstor"},
                "annotations": {volume::PROVISIONED_BY: "openebs.io/provisioner-iscsi"}},
            "spec": {"accessModes": ["ReadWriteOnce"], "capacity": {"storage": SIZE},
                "storageClassName": sc, "persistentVolumeReclaimPolicy": "Delete",
                "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                    "namespace": self.ns, "name": claim},
                "iscsi": {"targetPortal": format!("{ip}:3260"),
                    "iqn": format!("iqn.2016-09.com.openebs.cstor:{legacy_pv}"), "lun": 0, "fsType": "ext4"}}
        }))?;
        Api::<PersistentVolume>::all(client.clone())
            .create(&PostParams::default(), &pv_obj)
            .await?;
        let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
            "metadata": {"name": claim, "annotations": {
                volume::STORAGE_PROVISIONER: "openebs.io/provisioner-iscsi"}},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": sc, "volumeName": legacy_pv,
                "resources": {"requests": {"storage": SIZE}}}
        }))?;
        self.api::<PersistentVolumeClaim>()
            .create(&PostParams::default(), &pvc)
            .await?;
        Ok(ip)
    }

    /// After `cstor-migrate cstor-spc`: CSPC `spc` with one ONLINE CSPI per legacy pool, each
    /// pool imported under the CSPC's name with its replica zvol of `legacy_pv` (its replica
    /// ID kept); the SPC, its CStorPools and their Deployments gone; the legacy replicas
    /// re-pointed to the CSPIs. Returns the CSPI names, sorted.
    async fn migrated_pools(
        &self,
        spc: &str,
        legacy_pv: &str,
        pools: &[LegacyPool],
    ) -> anyhow::Result<Vec<String>> {
        let client = self.cluster.client.clone();
        let cspc = self.api::<CStorPoolCluster>().get(spc).await?;
        ensure!(
            cspc.annotations()
                .get(pool::MIGRATED_FROM)
                .map(String::as_str)
                == Some(spc),
            "CSPC {spc} does not record the SPC it came from"
        );
        let zpool = cstor_api::naming::pool_name(&cspc.uid().unwrap_or_default());
        let sel = format!("openebs.io/cstor-pool-cluster={spc}");
        let list = self
            .api::<CStorPoolInstance>()
            .list(&ListParams::default().labels(&sel))
            .await?
            .items;
        ensure!(
            list.len() == pools.len(),
            "{} CSPIs for {} legacy pools",
            list.len(),
            pools.len()
        );
        let mut names = Vec::new();
        for c in &list {
            let name = c.name_any();
            ensure!(
                field(&to_json(c), "/status/phase") == "ONLINE",
                "CSPI {name} is not ONLINE"
            );
            let node = c.spec.host_name.clone().unwrap_or_default();
            let lp = pools
                .iter()
                .find(|p| p.node == node)
                .with_context(|| format!("CSPI {name} is on {node}, where no legacy pool was"))?;
            let id = self
                .zfs_on(
                    &name,
                    &[
                        "get",
                        "-H",
                        "-o",
                        "value",
                        "io.openebs:zvol_replica_id",
                        &format!("{zpool}/{legacy_pv}"),
                    ],
                )
                .await?;
            ensure!(
                id.trim() == lp.replica_id,
                "the pool of {name} ({zpool}) does not hold the legacy replica {} (its ID reads {:?})",
                lp.replica_id,
                id.trim()
            );
            names.push(name);
        }
        names.sort();
        let spcs = Api::<DynamicObject>::all_with(
            client.clone(),
            &legacy("StoragePoolClaim", "storagepoolclaims"),
        );
        let csps =
            Api::<DynamicObject>::all_with(client.clone(), &legacy("CStorPool", "cstorpools"));
        let deployments: Api<Deployment> = self.api();
        let legacy_sel = format!("{}={spc}", pool::SPC_LABEL);
        until(
            "the SPC, its CStorPools and their Deployments gone",
            || async {
                let left = spcs.get_opt(spc).await?.is_some()
                    || !csps
                        .list(&ListParams::default().labels(&legacy_sel))
                        .await?
                        .items
                        .is_empty()
                    || !deployments
                        .list(&ListParams::default().labels(&legacy_sel))
                        .await?
                        .items
                        .is_empty();
                Ok((!left).then_some(()))
            },
        )
        .await?;
        let cvrs = Api::<DynamicObject>::namespaced_with(
            client,
            &self.ns,
            &legacy("CStorVolumeReplica", "cstorvolumereplicas"),
        );
        for r in cvrs
            .list(
                &ListParams::default().labels(&format!("openebs.io/persistent-volume={legacy_pv}")),
            )
            .await?
        {
            let on = r
                .labels()
                .get("cstorpoolinstance.openebs.io/name")
                .cloned()
                .unwrap_or_default();
            ensure!(
                names.contains(&on),
                "legacy replica {} is not re-pointed to a CSPI (label: {on:?})",
                r.name_any()
            );
        }
        Ok(names)
    }

    /// Runs `cstor-migrate` with `args` in a Pod `name` made from the example Job `job`'s
    /// template, on the node of the cvc-operator; waits for it to end.
    pub(super) async fn run_job(&self, job: &str, args: &[&str], name: &str) -> anyhow::Result<()> {
        let text = std::fs::read_to_string(workspace_root().join(job))
            .with_context(|| format!("reading {job}"))?;
        let doc: Value = serde_yaml::from_str(&text).with_context(|| format!("parsing {job}"))?;
        let mut spec = doc
            .pointer("/spec/template/spec")
            .cloned()
            .with_context(|| format!("{job} has no spec.template.spec"))?;
        let container = spec
            .pointer_mut("/containers/0")
            .context("the Job has no container")?;
        container["args"] = json!(args);
        let container_name = field(container, "/name").to_owned();
        // A failed run shows as Failed here (the Job could retry it).
        spec["restartPolicy"] = json!("Never");
        let pods: Api<Pod> = self.api();
        let node = pods
            .list(&ListParams::default().labels("openebs.io/component-name=cvc-operator"))
            .await?
            .items
            .into_iter()
            .find_map(|p| p.spec?.node_name)
            .context("no node runs the cvc-operator")?;
        spec["nodeName"] = json!(node);
        let pod: Pod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": self.ns},
            "spec": spec,
        }))?;
        pods.create(&PostParams::default(), &pod).await?;
        // A migration waits for pools to be imported, or for the volume to be Bound and
        // Healthy and for Kubernetes to delete the old claim and PV: longer than one step.
        let phase = until_within(
            &format!("migration pod {name} to end"),
            2 * STEP,
            || async {
                let p = pods.get(name).await?;
                Ok(p.status
                    .and_then(|s| s.phase)
                    .filter(|p| p == "Succeeded" || p == "Failed"))
            },
        )
        .await?;
        let log = self
            .cluster
            .kubelet
            .log_path(&self.ns, name, &container_name);
        let output = std::fs::read_to_string(&log).unwrap_or_default();
        if phase != "Succeeded" {
            bail!("cstor-migrate {} ended {phase}:\n{output}", args.join(" "));
        }
        (self.progress)(&format!(
            "  cstor-migrate {}: {}",
            args[0],
            output.lines().last().unwrap_or("").trim()
        ));
        pods.delete(name, &DeleteParams::default()).await?;
        Ok(())
    }
}

/// A controller owner reference to `obj` (a legacy kind).
fn owner(obj: &DynamicObject, kind: &str) -> anyhow::Result<Value> {
    Ok(
        json!({"apiVersion": "openebs.io/v1alpha1", "kind": kind, "name": obj.name_any(),
        "uid": obj.uid().context("created object without uid")?,
        "controller": true, "blockOwnerDeletion": true}),
    )
}
