//! `cstor-migrate cstor-volume` on the test API server (or `CSTOR_TEST_KUBECONFIG`'s cluster)
//! with our cvc-operator running; the pool managers, the volume manager and the snapshot
//! controller are simulated (`cvc_support::simulate` and a task here). Two legacy volumes of
//! one legacy StorageClass, on pools already migrated to a CSPC: one whose legacy CStorVolume
//! lives in the OpenEBS namespace, one in its claim's namespace (its target Service moves,
//! keeping the ClusterIP the zvols know). Each becomes a CSI volume with a CVC bound on the
//! very pools that hold its zvols, the StorageClass, PVC and PV are rewritten under the same
//! names, its legacy snapshot becomes a CSI VolumeSnapshot, the legacy objects and the
//! temporary policy go, and the MigrationTask says Success. A second run finds the work done.
//! Refusals (a pod still uses the claim, a replica's pool not migrated) change nothing and
//! name the reason; a dry run writes nothing.

#[path = "cvc_support.rs"]
mod support;

use std::collections::BTreeMap;

use cstor_api::{
    constants::{annotation, label},
    cstor::{CStorVolumeConfig, CStorVolumePolicy},
    migration::{MigrationPhase, MigrationTask, StepPhase},
};
use cstor_operators::migrate::{Migrator, legacy, snapshot, volume};
use cstor_testkit::{CrdSpec, cluster::ensure_crds, wait_until};
use futures::StreamExt;
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{Namespace, PersistentVolume, PersistentVolumeClaim, Pod, Service},
    storage::v1::StorageClass,
};
use kube::{
    Api, Client, ResourceExt,
    api::{DynamicObject, Patch, PatchParams, PostParams},
    runtime::{WatchStreamExt, watcher},
};
use serde_json::{Value, json};
use support::{DEADLINE, Harness};

const CSPC: &str = "cspc-mig";
const SNAP_CLASS: &str = snapshot::SNAPSHOT_CLASS;

/// The kinds the migration reads and writes that our CRDs do not define: the legacy cStor and
/// snapshot kinds, and the CSI snapshot kinds (which a cluster with the snapshot controller
/// has).
async fn crds(client: &Client) {
    let specs = [
        CrdSpec::new("openebs.io", "v1alpha1", "CStorVolume", "cstorvolumes"),
        CrdSpec::new(
            "openebs.io",
            "v1alpha1",
            "CStorVolumeReplica",
            "cstorvolumereplicas",
        ),
        CrdSpec::new(
            snapshot::LEGACY_GROUP,
            "v1",
            "VolumeSnapshot",
            "volumesnapshots",
        ),
        CrdSpec::new(
            snapshot::LEGACY_GROUP,
            "v1",
            "VolumeSnapshotData",
            "volumesnapshotdatas",
        )
        .cluster_scoped(),
        CrdSpec::new(
            snapshot::CSI_GROUP,
            "v1",
            "VolumeSnapshot",
            "volumesnapshots",
        )
        .with_status(),
        CrdSpec::new(
            snapshot::CSI_GROUP,
            "v1",
            "VolumeSnapshotContent",
            "volumesnapshotcontents",
        )
        .cluster_scoped()
        .with_status(),
        CrdSpec::new(
            snapshot::CSI_GROUP,
            "v1",
            "VolumeSnapshotClass",
            "volumesnapshotclasses",
        )
        .cluster_scoped(),
    ];
    let crds: Vec<_> = specs.iter().map(CrdSpec::crd).collect();
    ensure_crds(client, &crds).await.unwrap();
}

fn dynamic(client: &Client, ar: &kube::api::ApiResource, ns: Option<&str>) -> Api<DynamicObject> {
    match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, ar),
        None => Api::all_with(client.clone(), ar),
    }
}

async fn create_dynamic(api: &Api<DynamicObject>, obj: Value) -> DynamicObject {
    let obj: DynamicObject = serde_json::from_value(obj).unwrap();
    api.create(&PostParams::default(), &obj).await.unwrap()
}

async fn create<K>(api: &Api<K>, obj: Value) -> K
where
    K: Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let obj: K = serde_json::from_value(obj).unwrap();
    api.create(&PostParams::default(), &obj).await.unwrap()
}

/// The snapshot controller's part: a CSI VolumeSnapshot naming a pre-provisioned content is
/// bound to it and ready.
fn simulate_snapshot_controller(client: Client, ns: String) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let api = dynamic(&client, &snapshot::csi_snapshot(), Some(&ns));
        let mut stream =
            std::pin::pin!(watcher(api.clone(), watcher::Config::default()).applied_objects());
        while let Some(Ok(vs)) = stream.next().await {
            let content = vs
                .data
                .pointer("/spec/source/volumeSnapshotContentName")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            let bound = vs.data.pointer("/status/boundVolumeSnapshotContentName");
            if content.is_empty() || bound.is_some() {
                continue;
            }
            let patch =
                json!({"status": {"boundVolumeSnapshotContentName": content, "readyToUse": true}});
            let _ = api
                .patch_status(
                    &vs.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await;
        }
    })
}

/// The world the legacy control plane left, around a cluster whose pools were migrated.
struct Legacy {
    app_ns: String,
    sc: String,
}

async fn legacy_world(h: &Harness) -> Legacy {
    crds(&h.client).await;
    h.create_cspc(CSPC).await;
    h.create_pools(CSPC, 0, 3).await;
    let pods: Api<Pod> = h.api();
    create(
        &pods,
        json!({"metadata": {"name": "cvc-operator-0", "labels": {
            "openebs.io/component-name": "cvc-operator",
            "openebs.io/version": env!("CARGO_PKG_VERSION")}},
            "spec": {"containers": [{"name": "cvc-operator", "image": "x"}]}}),
    )
    .await;
    let app_ns = format!("{}-app", h.ns);
    create(
        &Api::<Namespace>::all(h.client.clone()),
        json!({"metadata": {"name": app_ns}}),
    )
    .await;
    let sc = format!("{}-legacy", h.ns);
    let config = r#"- name: StoragePoolClaim
  value: "cstor-disk-pool"
- name: ReplicaCount
  value: "3"
- name: TargetResourceLimits
  value: |-
      memory: 1Gi
      cpu: 200m
- name: QueueDepth
  value: "32"
- name: Luworkers
  value: "6"
- name: ZvolWorkers
  value: "4"
- name: FSType
  value: xfs
- name: TargetTolerations
  value: |-
      t1:
        key: storage
        operator: Equal
        value: "true"
        effect: NoSchedule
"#;
    create(
        &Api::<StorageClass>::all(h.client.clone()),
        json!({"metadata": {"name": sc, "annotations": {
            "openebs.io/cas-type": "cstor", volume::CAS_CONFIG: config}},
            "provisioner": "openebs.io/provisioner-iscsi", "reclaimPolicy": "Delete"}),
    )
    .await;
    let class: DynamicObject = serde_json::from_value(
        json!({"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotClass",
            "metadata": {"name": SNAP_CLASS}, "driver": volume::CSI_DRIVER, "deletionPolicy": "Delete"}),
    )
    .unwrap();
    // Cluster-wide: another test may have made it.
    match dynamic(&h.client, &snapshot::csi_class(), None)
        .create(&PostParams::default(), &class)
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => panic!("VolumeSnapshotClass: {e}"),
    }
    Legacy { app_ns, sc }
}

/// Creates a legacy volume `pv` of 3 replicas on the CSPC's pools; its CStorVolume, target
/// Deployment and Service live in `cv_ns`; its claim `claim-<pv>` in the app namespace; one
/// legacy snapshot.
async fn legacy_volume(h: &Harness, l: &Legacy, pv: &str, cv_ns: &str, ip: &str) {
    let claim = format!("claim-{pv}");
    let pvs: Api<PersistentVolume> = Api::all(h.client.clone());
    create(
        &pvs,
        json!({"metadata": {"name": pv, "labels": {"openebs.io/cas-type": "cstor"},
                "annotations": {"pv.kubernetes.io/provisioned-by": "openebs.io/provisioner-iscsi"}},
            "spec": {"accessModes": ["ReadWriteOnce"], "capacity": {"storage": "5Gi"},
                "storageClassName": l.sc, "persistentVolumeReclaimPolicy": "Delete",
                "claimRef": {"namespace": l.app_ns, "name": claim, "uid": "0b7e-legacy"},
                "iscsi": {"targetPortal": format!("{ip}:3260"),
                    "iqn": format!("iqn.2016-09.com.openebs.cstor:{pv}"), "lun": 0, "fsType": "xfs"}}}),
    )
    .await;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(h.client.clone(), &l.app_ns);
    create(
        &claims,
        json!({"metadata": {"name": claim, "annotations": {
                volume::STORAGE_PROVISIONER: "openebs.io/provisioner-iscsi",
                "pv.kubernetes.io/bind-completed": "yes"}},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": l.sc, "volumeName": pv,
                "resources": {"requests": {"storage": "5Gi"}}}}),
    )
    .await;
    create_dynamic(
        &dynamic(
            &h.client,
            &legacy("CStorVolume", "cstorvolumes"),
            Some(cv_ns),
        ),
        json!({"apiVersion": "openebs.io/v1alpha1", "kind": "CStorVolume",
            "metadata": {"name": pv, "namespace": cv_ns,
                "labels": {label::PERSISTENT_VOLUME: pv},
                "annotations": {"openebs.io/fs-type": "xfs"},
                "finalizers": ["cstorvolume.openebs.io/finalizer"]},
            "spec": {"targetIP": ip, "capacity": "5G", "iqn": format!("iqn.2016-09.com.openebs.cstor:{pv}"),
                "targetPortal": format!("{ip}:3260"), "replicationFactor": 3, "consistencyFactor": 2}}),
    )
    .await;
    let cvrs = dynamic(
        &h.client,
        &legacy("CStorVolumeReplica", "cstorvolumereplicas"),
        Some(&h.ns),
    );
    for i in 0..3 {
        let pool = format!("{CSPC}-p{i}");
        create_dynamic(
            &cvrs,
            json!({"apiVersion": "openebs.io/v1alpha1", "kind": "CStorVolumeReplica",
                "metadata": {"name": format!("{pv}-csp{i}"), "namespace": h.ns,
                    "labels": {label::PERSISTENT_VOLUME: pv, "cstorvolume.openebs.io/name": pv,
                        label::CSPI_NAME: pool, label::CSPI_UID: format!("uid-{i}")},
                    "finalizers": ["cstorvolumereplica.openebs.io/finalizer"]},
                "spec": {"targetIP": ip, "capacity": "5G", "zvolWorkers": "4", "replicaid": format!("R{i}")}}),
        )
        .await;
    }
    let deployments: Api<Deployment> = Api::namespaced(h.client.clone(), cv_ns);
    let selector = json!({"app": "cstor-volume-manager", "openebs.io/target": "cstor-target",
        label::PERSISTENT_VOLUME: pv});
    create(
        &deployments,
        json!({"metadata": {"name": format!("{pv}-target"), "labels": selector},
            "spec": {"replicas": 1, "selector": {"matchLabels": selector},
                "template": {"metadata": {"labels": selector}, "spec": {
                    "priorityClassName": "storage-critical",
                    "affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                        {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "kubernetes.io/hostname"}]}},
                    "containers": [
                        {"name": "cstor-istgt", "image": "openebs/cstor-istgt:2.12.0",
                            "env": [{"name": "QueueDepth", "value": "32"}, {"name": "Luworkers", "value": "6"}]},
                        {"name": "cstor-volume-mgmt", "image": "openebs/cstor-volume-mgmt:2.12.0"}]}}}}),
    )
    .await;
    let services: Api<Service> = Api::namespaced(h.client.clone(), cv_ns);
    create(
        &services,
        json!({"metadata": {"name": pv, "labels": {label::PERSISTENT_VOLUME: pv}},
            "spec": {"clusterIP": ip, "selector": selector,
                "ports": [{"name": "cstor-iscsi", "port": 3260, "targetPort": 3260}]}}),
    )
    .await;
    let data = format!("k8s-volume-snapshot-{pv}");
    create_dynamic(
        &dynamic(&h.client, &snapshot::legacy_snapshot_data(), None),
        json!({"apiVersion": "volumesnapshot.external-storage.k8s.io/v1", "kind": "VolumeSnapshotData",
            "metadata": {"name": data},
            "spec": {"persistentVolumeRef": {"kind": "PersistentVolume", "name": pv},
                "openebsVolume": {"snapshotId": format!("snap-{pv}")}}}),
    )
    .await;
    create_dynamic(
        &dynamic(&h.client, &snapshot::legacy_snapshot(), Some(&l.app_ns)),
        json!({"apiVersion": "volumesnapshot.external-storage.k8s.io/v1", "kind": "VolumeSnapshot",
            "metadata": {"name": format!("backup-{pv}"), "namespace": l.app_ns,
                "labels": {snapshot::PV_LABEL: pv}},
            "spec": {"persistentVolumeClaimName": claim, "snapshotDataName": data}}),
    )
    .await;
}

fn migrator(h: &Harness) -> Migrator {
    let mut m = Migrator::new(h.client.clone(), &h.ns);
    m.poll = std::time::Duration::from_millis(100);
    m.timeout = DEADLINE;
    m
}

async fn task(h: &Harness, pv: &str) -> MigrationTask {
    h.api::<MigrationTask>()
        .get(&format!("migrate-cstor-volume-{pv}"))
        .await
        .unwrap()
}

/// Everything of `pv` is as a CSI volume of ours; its legacy remains are gone.
async fn check_migrated(h: &Harness, l: &Legacy, pv: &str, cv_ns: &str, ip: &str) {
    let claim = format!("claim-{pv}");
    let cvc = h.wait_bound(pv).await;
    assert_eq!(cvc.labels().get(label::CSTOR_POOL_CLUSTER).unwrap(), CSPC);
    assert!(
        !cvc.annotations().contains_key(annotation::VOLUME_POLICY),
        "the temporary policy is no longer named"
    );
    assert_eq!(
        cvc.annotations().get(annotation::PERSISTENT_VOLUME_CLAIM),
        Some(&claim)
    );
    assert_eq!(
        h.cvr_pools(pv).await,
        vec![
            format!("{CSPC}-p0"),
            format!("{CSPC}-p1"),
            format!("{CSPC}-p2")
        ],
        "new replicas on the pools holding the zvols"
    );
    assert!(
        h.api::<CStorVolumePolicy>()
            .get_opt(pv)
            .await
            .unwrap()
            .is_none(),
        "temporary policy deleted"
    );
    let svc = h.api::<Service>().get(pv).await.unwrap();
    assert_eq!(
        svc.spec.as_ref().unwrap().cluster_ip.as_deref(),
        Some(ip),
        "the target keeps the address the zvols connect to"
    );
    assert_eq!(
        svc.owner_references().first().map(|o| o.kind.as_str()),
        Some("CStorVolumeConfig")
    );
    let target = h
        .api::<Deployment>()
        .get(&format!("{pv}-target"))
        .await
        .unwrap();
    let affinity = serde_json::to_value(
        target
            .spec
            .unwrap()
            .template
            .spec
            .unwrap()
            .affinity
            .unwrap_or_default(),
    )
    .unwrap();
    assert_eq!(
        affinity.pointer("/podAffinity/requiredDuringSchedulingIgnoredDuringExecution/0/labelSelector/matchLabels/app"),
        Some(&json!("db")),
        "the target's affinity with the application is back: {affinity}"
    );
    if cv_ns != h.ns {
        let old: Api<Service> = Api::namespaced(h.client.clone(), cv_ns);
        assert!(old.get_opt(pv).await.unwrap().is_none());
    }
    let old_target: Api<Deployment> = Api::namespaced(h.client.clone(), cv_ns);
    if cv_ns != h.ns {
        assert!(
            old_target
                .get_opt(&format!("{pv}-target"))
                .await
                .unwrap()
                .is_none()
        );
    }
    // PV and PVC for the CSI driver, same names.
    let v = Api::<PersistentVolume>::all(h.client.clone())
        .get(pv)
        .await
        .unwrap();
    let spec = v.spec.unwrap();
    let csi = spec.csi.expect("a CSI volume");
    assert_eq!(csi.driver, volume::CSI_DRIVER);
    assert_eq!(csi.volume_handle, pv);
    assert_eq!(csi.fs_type.as_deref(), Some("xfs"));
    assert!(spec.iscsi.is_none());
    let r = spec.claim_ref.unwrap();
    assert_eq!(
        (r.namespace.as_deref(), r.name.as_deref(), r.uid.as_deref()),
        (Some(l.app_ns.as_str()), Some(claim.as_str()), None)
    );
    assert_eq!(
        spec.persistent_volume_reclaim_policy.as_deref(),
        Some("Delete")
    );
    assert_eq!(
        v.metadata.annotations.unwrap().get(volume::PROVISIONED_BY),
        Some(&volume::CSI_DRIVER.to_owned())
    );
    let c = Api::<PersistentVolumeClaim>::namespaced(h.client.clone(), &l.app_ns)
        .get(&claim)
        .await
        .unwrap();
    assert_eq!(
        c.annotations().get(volume::STORAGE_PROVISIONER),
        Some(&volume::CSI_DRIVER.to_owned())
    );
    assert_eq!(c.spec.unwrap().volume_name.as_deref(), Some(pv));
    // Legacy objects gone.
    let legacy_cv = dynamic(
        &h.client,
        &legacy("CStorVolume", "cstorvolumes"),
        Some(cv_ns),
    );
    assert!(legacy_cv.get_opt(pv).await.unwrap().is_none());
    let legacy_cvrs = dynamic(
        &h.client,
        &legacy("CStorVolumeReplica", "cstorvolumereplicas"),
        Some(&h.ns),
    );
    for i in 0..3 {
        assert!(
            legacy_cvrs
                .get_opt(&format!("{pv}-csp{i}"))
                .await
                .unwrap()
                .is_none()
        );
    }
    // The snapshot.
    let name = format!("backup-{pv}");
    let legacy_snap = dynamic(&h.client, &snapshot::legacy_snapshot(), Some(&l.app_ns));
    assert!(legacy_snap.get_opt(&name).await.unwrap().is_none());
    let vs = dynamic(&h.client, &snapshot::csi_snapshot(), Some(&l.app_ns))
        .get(&name)
        .await
        .unwrap();
    let content_name = format!("k8s-volume-snapshot-{pv}");
    assert_eq!(
        vs.data.pointer("/spec/source/volumeSnapshotContentName"),
        Some(&json!(content_name))
    );
    let content = dynamic(&h.client, &snapshot::csi_content(), None)
        .get(&content_name)
        .await
        .unwrap();
    assert_eq!(
        content.data.pointer("/spec/source/snapshotHandle"),
        Some(&json!(format!("{pv}@snap-{pv}")))
    );
    assert_eq!(
        content.data.pointer("/spec/volumeSnapshotRef/name"),
        Some(&json!(name))
    );
    // The record.
    let t = task(h, pv).await;
    let st = t.status.unwrap();
    assert_eq!(st.phase, Some(MigrationPhase::Success));
    let steps: Vec<_> = st
        .migration_detailed_statuses
        .iter()
        .map(|s| (s.step.as_str(), s.phase.clone()))
        .collect();
    assert_eq!(
        steps,
        vec![
            ("Pre-migration", Some(StepPhase::Completed)),
            ("Migrate", Some(StepPhase::Completed))
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_volumes_become_csi_volumes_on_the_pools_holding_their_data() {
    let h = Harness::start().await;
    let l = legacy_world(&h).await;
    let sim = simulate_snapshot_controller(h.client.clone(), l.app_ns.clone());
    let (a, b) = (format!("{}-pv-a", h.ns), format!("{}-pv-b", h.ns));
    legacy_volume(&h, &l, &a, &h.ns, "10.96.200.11").await;
    legacy_volume(&h, &l, &b, &l.app_ns, "10.96.200.12").await;
    let m = migrator(&h);

    // A dry run checks and shows, writing nothing.
    let mut dry = m.clone();
    dry.dry_run = true;
    let volume::Outcome::DryRun(plan) = volume::migrate(&dry, &a, 1).await.unwrap() else {
        panic!("a dry run returns its plan")
    };
    assert_eq!(plan.cvc.name_any(), a);
    let pools: Vec<_> = plan
        .policy
        .spec
        .replica_pool_info
        .iter()
        .flatten()
        .map(|p| p.pool_name.clone())
        .collect();
    assert_eq!(pools.len(), 3);
    assert!(plan.to_yaml().unwrap().contains("cstor.csi.openebs.io"));
    assert!(
        h.api::<CStorVolumePolicy>()
            .get_opt(&a)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        h.api::<MigrationTask>()
            .get_opt(&format!("migrate-cstor-volume-{a}"))
            .await
            .unwrap()
            .is_none()
    );
    let sc = Api::<StorageClass>::all(h.client.clone())
        .get(&l.sc)
        .await
        .unwrap();
    assert_eq!(sc.provisioner, "openebs.io/provisioner-iscsi");

    // The volume whose legacy CStorVolume is in the OpenEBS namespace.
    assert_eq!(
        volume::migrate(&m, &a, 1).await.unwrap(),
        volume::Outcome::Migrated
    );
    check_migrated(&h, &l, &a, &h.ns.clone(), "10.96.200.11").await;
    // The StorageClass, rewritten by the first volume's run.
    let sc = Api::<StorageClass>::all(h.client.clone())
        .get(&l.sc)
        .await
        .unwrap();
    assert_eq!(sc.provisioner, volume::CSI_DRIVER);
    assert_eq!(sc.allow_volume_expansion, Some(true));
    assert_eq!(sc.reclaim_policy.as_deref(), Some("Delete"));
    let want: BTreeMap<String, String> = [
        ("cas-type", "cstor"),
        ("replicaCount", "3"),
        ("cstorPoolCluster", CSPC),
        ("cstorVolumePolicy", l.sc.as_str()),
        ("fsType", "xfs"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(sc.parameters.unwrap(), want);
    assert!(
        Api::<StorageClass>::all(h.client.clone())
            .get_opt(&format!("tmp-migrate-{}", l.sc))
            .await
            .unwrap()
            .is_none(),
        "the StorageClass lock is released"
    );
    let policy =
        serde_json::to_value(h.api::<CStorVolumePolicy>().get(&l.sc).await.unwrap().spec).unwrap();
    assert_eq!(
        policy.pointer("/target/resources/limits/memory"),
        Some(&json!("1Gi"))
    );
    assert_eq!(policy.pointer("/target/queueDepth"), Some(&json!("32")));
    assert_eq!(policy.pointer("/target/luWorkers"), Some(&json!(6)));
    assert_eq!(policy.pointer("/replica/zvolWorkers"), Some(&json!("4")));
    assert_eq!(
        policy.pointer("/target/tolerations/0/key"),
        Some(&json!("storage"))
    );

    // The volume whose legacy CStorVolume is in its claim's namespace.
    assert_eq!(
        volume::migrate(&m, &b, 1).await.unwrap(),
        volume::Outcome::Migrated
    );
    check_migrated(&h, &l, &b, &l.app_ns.clone(), "10.96.200.12").await;

    // A second run finds the work done and changes nothing.
    let before = h.api::<CStorVolumeConfig>().get(&a).await.unwrap();
    assert_eq!(
        volume::migrate(&m, &a, 1).await.unwrap(),
        volume::Outcome::AlreadyMigrated
    );
    let after = h.api::<CStorVolumeConfig>().get(&a).await.unwrap();
    assert_eq!(before.spec, after.spec);
    assert_eq!(before.labels(), after.labels());
    sim.abort();
    h.stop().await;
}

/// A refused run wrote nothing: PV, policies, StorageClass, claim as the legacy world has them,
/// no CVC.
async fn assert_untouched(h: &Harness, l: &Legacy, pv: &str) {
    let v = Api::<PersistentVolume>::all(h.client.clone())
        .get(pv)
        .await
        .unwrap();
    let spec = v.spec.unwrap();
    assert_eq!(
        (
            spec.persistent_volume_reclaim_policy.as_deref(),
            spec.csi.is_some()
        ),
        (Some("Delete"), false),
        "a refused run changed the PV"
    );
    assert!(
        h.api::<CStorVolumePolicy>()
            .get_opt(pv)
            .await
            .unwrap()
            .is_none(),
        "a refused run wrote a policy"
    );
    let sc = Api::<StorageClass>::all(h.client.clone())
        .get(&l.sc)
        .await
        .unwrap();
    assert_eq!(
        sc.provisioner, "openebs.io/provisioner-iscsi",
        "a refused run changed the StorageClass"
    );
    let claim = Api::<PersistentVolumeClaim>::namespaced(h.client.clone(), &l.app_ns)
        .get(&format!("claim-{pv}"))
        .await
        .unwrap();
    assert_eq!(
        claim
            .annotations()
            .get(volume::STORAGE_PROVISIONER)
            .map(String::as_str),
        Some("openebs.io/provisioner-iscsi"),
        "a refused run changed the claim"
    );
    assert!(
        h.api::<CStorVolumeConfig>()
            .get_opt(pv)
            .await
            .unwrap()
            .is_none(),
        "a refused run created the CVC"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_migrations_change_nothing_and_say_why() {
    let h = Harness::start().await;
    let l = legacy_world(&h).await;
    let pv = format!("{}-pv-busy", h.ns);
    legacy_volume(&h, &l, &pv, &h.ns, "10.96.201.11").await;
    let m = migrator(&h);

    // An application pod still uses the claim.
    let app: Api<Pod> = Api::namespaced(h.client.clone(), &l.app_ns);
    create(
        &app,
        json!({"metadata": {"name": "db-0"},
            "spec": {"containers": [{"name": "db", "image": "db"}],
                "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": format!("claim-{pv}")}}]}}),
    )
    .await;
    let err = format!("{:#}", volume::migrate(&m, &pv, 2).await.unwrap_err());
    assert!(
        err.contains(&format!("Failed to migrate cStor Volume : {pv}"))
            && err.contains("is mounted on db-0, please scale down all apps before migrating"),
        "{err}"
    );
    let st = task(&h, &pv).await.status.unwrap();
    let last = st.migration_detailed_statuses.last().unwrap();
    assert_eq!(last.phase, Some(StepPhase::Errored));
    assert!(last.reason.as_deref().unwrap().contains("db-0"), "{last:?}");
    assert_eq!(st.retries, Some(1));
    assert_eq!(st.phase, Some(MigrationPhase::Started), "one retry of two");
    assert_untouched(&h, &l, &pv).await;
    app.delete("db-0", &Default::default()).await.unwrap();
    wait_until("the app pod gone", DEADLINE, || async {
        app.get_opt("db-0").await.ok().flatten().is_none()
    })
    .await
    .unwrap();

    // A replica whose pool was not migrated yet.
    let cvrs = dynamic(
        &h.client,
        &legacy("CStorVolumeReplica", "cstorvolumereplicas"),
        Some(&h.ns),
    );
    let patch = json!({"metadata": {"labels": {label::CSPI_NAME: null,
        "cstorpool.openebs.io/name": "cstor-disk-pool-x7k2"}}});
    cvrs.patch(
        &format!("{pv}-csp1"),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .unwrap();
    let err = format!("{:#}", volume::migrate(&m, &pv, 2).await.unwrap_err());
    assert!(
        err.contains("its pool cstor-disk-pool-x7k2 is not migrated yet")
            && err.contains("cstor-migrate cstor-spc"),
        "{err}"
    );
    let st = task(&h, &pv).await.status.unwrap();
    assert_eq!(st.retries, Some(2));
    assert_eq!(
        st.phase,
        Some(MigrationPhase::Error),
        "the backoff limit reached"
    );
    assert_untouched(&h, &l, &pv).await;

    // The pool migrated: the run goes through.
    let patch = json!({"metadata": {"labels": {label::CSPI_NAME: format!("{CSPC}-p1"),
        "cstorpool.openebs.io/name": null}}});
    cvrs.patch(
        &format!("{pv}-csp1"),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .unwrap();
    let sim = simulate_snapshot_controller(h.client.clone(), l.app_ns.clone());
    assert_eq!(
        volume::migrate(&m, &pv, 2).await.unwrap(),
        volume::Outcome::Migrated
    );
    check_migrated(&h, &l, &pv, &h.ns.clone(), "10.96.201.11").await;
    sim.abort();
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_stopped_half_way_is_finished_by_the_next() {
    // No cvc-operator at first: the run writes everything up to the CVC, then gives up
    // waiting for it to be Bound.
    let mut h = Harness::start_without_operator().await;
    let l = legacy_world(&h).await;
    let sim = simulate_snapshot_controller(h.client.clone(), l.app_ns.clone());
    let pv = format!("{}-pv-c", h.ns);
    legacy_volume(&h, &l, &pv, &l.app_ns, "10.96.202.11").await;
    let mut m = migrator(&h);
    m.timeout = std::time::Duration::from_secs(2);
    let err = format!("{:#}", volume::migrate(&m, &pv, 6).await.unwrap_err());
    assert!(
        err.contains("failed to validate migrated volume")
            && err.contains(&format!("waiting for cvc {pv} to be Bound")),
        "{err}"
    );
    let v = Api::<PersistentVolume>::all(h.client.clone())
        .get(&pv)
        .await
        .unwrap();
    assert!(
        v.spec.unwrap().csi.is_some(),
        "the PV was already rewritten"
    );
    assert!(
        h.api::<CStorVolumePolicy>()
            .get_opt(&pv)
            .await
            .unwrap()
            .is_some()
    );
    let st = task(&h, &pv).await.status.unwrap();
    assert_eq!(
        st.migration_detailed_statuses.last().unwrap().phase,
        Some(StepPhase::Errored)
    );

    // The operator is back; the same command finishes the work.
    h.start_operator();
    let m = migrator(&h);
    assert_eq!(
        volume::migrate(&m, &pv, 6).await.unwrap(),
        volume::Outcome::Migrated
    );
    check_migrated(&h, &l, &pv, &l.app_ns.clone(), "10.96.202.11").await;
    sim.abort();
    h.stop().await;
}
