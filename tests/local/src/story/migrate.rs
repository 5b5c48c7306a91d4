//! The story's migration step: a legacy cStor volume, as the pre-CSI control plane left it
//! (external-provisioner StorageClass, iSCSI PV and its claim, legacy CStorVolume and
//! CStorVolumeReplicas, a scaled-down `<pv>-target` Deployment, the target Service whose
//! ClusterIP its zvols connect to), on the story's pools (already CSPC pools: the pool
//! migration is shown by `operators/tests/migrate_pool.rs`). Its zvols hold the story's data:
//! they are clones of a snapshot of the story's volume, one per pool, with the legacy target's
//! address and replica IDs of their own. `cstor-migrate cstor-volume` then runs as the Job of
//! `deploy/examples/migrate-volume-job.yaml` would run it (its Pod, ServiceAccount and RBAC);
//! the volume comes up as a CSI volume on the same pools, Healthy, and reads the same data
//! over iSCSI.

use anyhow::{Context as _, bail, ensure};
use cstor_api::proto::csi::v1::{
    CreateSnapshotRequest, DeleteSnapshotRequest, DeleteVolumeRequest,
};
use cstor_operators::migrate::{legacy, volume};
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

use super::{STEP, Story, field, json as to_json, until, until_within};
use crate::cluster::workspace_root;

/// The example Job the step runs.
const JOB: &str = "deploy/examples/migrate-volume-job.yaml";

impl Story<'_> {
    /// The step: `pv` holds `data` on three pools.
    pub(super) async fn legacy_volume_migration(
        &self,
        pv: &str,
        data: &[u8],
    ) -> anyhow::Result<()> {
        let short = &uuid::Uuid::new_v4().simple().to_string()[..6];
        let legacy_pv = format!("pvc-legacy-{short}");
        let snap = self.legacy_zvols_source(pv).await?;
        let ip = self.legacy_volume(&legacy_pv, pv, &snap.1).await?;
        self.run_migration(&legacy_pv, short).await?;

        // A CSI volume of ours, on the pools holding the zvols, reading the same data.
        self.healthy(&legacy_pv, 3).await?;
        let mut pools = self.replica_pools(&legacy_pv).await?;
        let mut want = self.replica_pools(pv).await?;
        pools.sort();
        want.sort();
        ensure!(
            pools == want,
            "the migrated replicas are on {pools:?}, the zvols on {want:?}"
        );
        let cv = self
            .api::<cstor_api::cstor::CStorVolume>()
            .get(&legacy_pv)
            .await?;
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

        // Cleaned up: the volume (its clones first), then the snapshot, the claim and the
        // classes.
        self.csi()
            .delete_volume(DeleteVolumeRequest {
                volume_id: legacy_pv.clone(),
                ..Default::default()
            })
            .await
            .context("DeleteVolume of the migrated volume")?;
        self.gone(&legacy_pv).await?;
        self.csi()
            .delete_snapshot(DeleteSnapshotRequest {
                snapshot_id: snap.0,
                ..Default::default()
            })
            .await
            .context("DeleteSnapshot")?;
        let claims: Api<PersistentVolumeClaim> = self.api();
        claims
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
        self.api::<cstor_api::cstor::CStorVolumePolicy>()
            .delete(&sc, &DeleteParams::default())
            .await?;
        Ok(())
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

    /// The legacy objects of `legacy_pv` and its zvols (clones of `pv@snap`); returns the
    /// legacy target address.
    async fn legacy_volume(&self, legacy_pv: &str, pv: &str, snap: &str) -> anyhow::Result<String> {
        let client = self.cluster.client.clone();
        let crds: Vec<_> = [
            ("CStorVolume", "cstorvolumes"),
            ("CStorVolumeReplica", "cstorvolumereplicas"),
        ]
        .into_iter()
        .map(|(kind, plural)| CrdSpec::new("openebs.io", "v1alpha1", kind, plural).crd())
        .collect();
        ensure_crds(&client, &crds).await?;
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
        let replicas = Api::<DynamicObject>::namespaced_with(
            client.clone(),
            &self.ns,
            &legacy("CStorVolumeReplica", "cstorvolumereplicas"),
        );
        for cspi in self.replica_pools(pv).await? {
            let pool = self.pool_of(&cspi).await?;
            let id = cstor_api::naming::replica_id_from_uid(&uuid::Uuid::new_v4().to_string());
            self.zfs_on(
                &cspi,
                &[
                    "clone",
                    "-o",
                    "compression=on",
                    "-o",
                    &format!("io.openebs:targetip={ip}"),
                    "-o",
                    "quorum=on",
                    "-o",
                    &format!("io.openebs:zvol_replica_id={id}"),
                    &format!("{pool}/{pv}@{snap}"),
                    &format!("{pool}/{legacy_pv}"),
                ],
            )
            .await?;
            let uid = self
                .api::<cstor_api::cstor::CStorPoolInstance>()
                .get(&cspi)
                .await?
                .uid()
                .unwrap_or_default();
            let cvr: DynamicObject = serde_json::from_value(json!({
                "apiVersion": "openebs.io/v1alpha1", "kind": "CStorVolumeReplica",
                "metadata": {"name": format!("{legacy_pv}-{cspi}"), "namespace": self.ns,
                    "labels": {"openebs.io/persistent-volume": legacy_pv,
                        "cstorvolume.openebs.io/name": legacy_pv,
                        "cstorpoolinstance.openebs.io/name": cspi,
                        "cstorpoolinstance.openebs.io/uid": uid},
                    "finalizers": ["cstorvolumereplica.openebs.io/finalizer"]},
                "spec": {"targetIP": ip, "capacity": "2Gi", "replicaid": id}
            }))?;
            replicas.create(&PostParams::default(), &cvr).await?;
        }
        let cv: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "openebs.io/v1alpha1", "kind": "CStorVolume",
            "metadata": {"name": legacy_pv, "namespace": self.ns,
                "labels": {"openebs.io/persistent-volume": legacy_pv},
                "annotations": {"openebs.io/fs-type": "ext4"}},
            "spec": {"targetIP": ip, "capacity": "2Gi", "replicationFactor": 3, "consistencyFactor": 2,
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
                    {"name": "cstor-istgt", "image": "openebs/cstor-istgt:2.12.0",
                        "env": [{"name": "QueueDepth", "value": "32"}, {"name": "Luworkers", "value": "6"}]},
                    {"name": "cstor-volume-mgmt", "image": "openebs/cstor-volume-mgmt:2.12.0"}]}}}
        }))?;
        self.api::<Deployment>()
            .create(&PostParams::default(), &target)
            .await?;
        let short = legacy_pv.trim_start_matches("pvc-legacy-");
        let sc = format!("legacy-{short}");
        let config = "- name: ReplicaCount\n  value: \"3\"\n- name: QueueDepth\n  value: \"32\"\n- name: FSType\n  value: ext4\n";
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
            "spec": {"accessModes": ["ReadWriteOnce"], "capacity": {"storage": "2Gi"},
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
                "resources": {"requests": {"storage": "2Gi"}}}
        }))?;
        self.api::<PersistentVolumeClaim>()
            .create(&PostParams::default(), &pvc)
            .await?;
        Ok(ip)
    }

    /// Runs `cstor-migrate cstor-volume` in a Pod made from the example Job's template, on the
    /// node of the cvc-operator; waits for it to end.
    async fn run_migration(&self, legacy_pv: &str, short: &str) -> anyhow::Result<()> {
        let text = std::fs::read_to_string(workspace_root().join(JOB))
            .with_context(|| format!("reading {JOB}"))?;
        let job: Value = serde_yaml::from_str(&text).with_context(|| format!("parsing {JOB}"))?;
        let mut spec = job
            .pointer("/spec/template/spec")
            .cloned()
            .with_context(|| format!("{JOB} has no spec.template.spec"))?;
        let container = spec
            .pointer_mut("/containers/0")
            .context("the Job has no container")?;
        container["args"] = json!(["cstor-volume", "--pv-name", legacy_pv]);
        let container_name = field(container, "/name").to_owned();
        // A failed run shows as Failed here; the Job would retry it (OnFailure).
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
        let name = format!("migrate-{short}");
        let pod: Pod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": self.ns},
            "spec": spec,
        }))?;
        pods.create(&PostParams::default(), &pod).await?;
        // The migration waits for the volume to be Bound and Healthy, and for Kubernetes to
        // delete the old claim and PV: longer than one step.
        let phase = until_within(
            &format!("migration pod {name} to end"),
            2 * STEP,
            || async {
                let p = pods.get(&name).await?;
                Ok(p.status
                    .and_then(|s| s.phase)
                    .filter(|p| p == "Succeeded" || p == "Failed"))
            },
        )
        .await?;
        let log = self
            .cluster
            .kubelet
            .log_path(&self.ns, &name, &container_name);
        let output = std::fs::read_to_string(&log).unwrap_or_default();
        if phase != "Succeeded" {
            bail!("cstor-migrate ended {phase}:\n{output}");
        }
        (self.progress)(&format!(
            "  cstor-migrate: {}",
            output.lines().last().unwrap_or("").trim()
        ));
        pods.delete(&name, &DeleteParams::default()).await?;
        Ok(())
    }
}
