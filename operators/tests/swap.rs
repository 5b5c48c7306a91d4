//! Swapping upstream's operators (cstor-operators 3.6) for ours and back, without restarting a
//! pod (issue 14 item 1). The cluster is built as upstream 3.6 leaves it: a Bound CVC carrying
//! upstream's `cstor.openebs.io/template-hash` label (a hash of a Go dump of the policy, which
//! our code cannot compute), its CStorVolume, CVR and target Service, a target Deployment with
//! upstream's three containers, and a CSPC/CSPI whose pool Deployment has upstream's images and
//! its `maya-exporter` sidecar. Our cvc-operator and cspc-operator then run over it until both
//! have recorded what they adopted; no pod template may change (`metadata.generation` of both
//! Deployments unchanged). Stopping ours must leave every object as upstream's operators expect
//! it, so that swapping back changes nothing either. A genuine policy or pool setting change
//! after the adoption still reaches the Deployments.

#[path = "cvc_support.rs"]
mod cvc_support;
mod support;

use std::time::Duration;

use cstor_api::{
    constants::{annotation, finalizer, label, version::OPENEBS_VERSION},
    cstor::{
        CStorPoolCluster, CStorPoolInstance, CStorVolume, CStorVolumeConfig, CStorVolumeReplica,
        from_value,
    },
    naming,
    ndm::BlockDevice,
};
use cstor_operators::{cspc_operator, cvc_operator::target};
use cstor_testkit::wait_until;
use cvc_support::{DEADLINE, Harness};
use k8s_openapi::api::{apps::v1::Deployment, core::v1::Service};
use kube::{
    Api, Resource, ResourceExt,
    api::{Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

/// Upstream's label value on the CVC: computed by upstream's Go code, not by ours.
const UPSTREAM_HASH: &str = "2953539981";
const PV: &str = "pvc-0f6c2a1e-upstream";
const CSPC: &str = "cstor-disk-pool";
const CSPI: &str = "cstor-disk-pool-x7kq";

fn version_details() -> Value {
    json!({"desired": OPENEBS_VERSION, "autoUpgrade": false,
        "status": {"current": OPENEBS_VERSION, "dependentsUpgraded": true, "state": "Reconciled"}})
}

fn owner<K: Resource<DynamicType = ()>>(obj: &K) -> Value {
    serde_json::to_value(obj.controller_owner_ref(&()).expect("owner ref")).unwrap()
}

/// The volume mounts upstream gives every target container.
fn target_mounts() -> Value {
    json!([{"name": "sockfile", "mountPath": "/var/run"},
        {"name": "conf", "mountPath": "/usr/local/etc/istgt"},
        {"name": "storagepath", "mountPath": "/var/openebs/cstor-target"}])
}

/// Upstream's target Deployment (`BuildTargetDeployment`): istgt, the m-exporter sidecar and
/// the Go volume manager, default policy.
fn upstream_target(ns: &str, cv: &CStorVolume) -> Deployment {
    let selector = json!({"app": "cstor-volume-manager", "openebs.io/target": "cstor-target",
        "openebs.io/persistent-volume": PV});
    let zero =
        json!({"limits": {"cpu": "0", "memory": "0"}, "requests": {"cpu": "0", "memory": "0"}});
    let tolerations: Vec<Value> = [
        "node.alpha.kubernetes.io/notReady",
        "node.alpha.kubernetes.io/unreachable",
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ]
    .iter()
    .map(
        |k| json!({"key": k, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30}),
    )
    .collect();
    from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": naming::target_deployment_name(PV), "namespace": ns,
            "labels": {"app": "cstor-volume-manager", "openebs.io/target": "cstor-target",
                "openebs.io/storage-engine-type": "cstor", "openebs.io/cas-type": "cstor",
                "openebs.io/persistent-volume": PV, "openebs.io/persistent-volume-claim": "data-db-0",
                "openebs.io/version": OPENEBS_VERSION},
            "annotations": {"openebs.io/volume-monitor": "true", "openebs.io/volume-type": "cstor"},
            "ownerReferences": [owner(cv)]},
        "spec": {"replicas": 1, "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": {"app": "cstor-volume-manager", "openebs.io/target": "cstor-target",
                    "openebs.io/persistent-volume": PV, "openebs.io/persistent-volume-claim": "data-db-0",
                    "monitoring": "volume_exporter_prometheus", "openebs.io/version": OPENEBS_VERSION},
                    "annotations": {"prometheus.io/path": "/metrics", "prometheus.io/port": "9500",
                        "prometheus.io/scrape": "true"}},
                "spec": {
                    "serviceAccountName": "openebs-cstor-operator",
                    "affinity": {},
                    "tolerations": tolerations,
                    "containers": [
                        {"name": "cstor-istgt", "image": "openebs/cstor-istgt:3.6.0",
                            "imagePullPolicy": "IfNotPresent", "ports": [{"containerPort": 3260}],
                            "env": [{"name": "QueueDepth", "value": "32"}, {"name": "Luworkers", "value": "6"}],
                            "resources": zero, "securityContext": {"privileged": true},
                            "volumeMounts": target_mounts()},
                        {"name": "maya-volume-exporter", "image": "openebs/m-exporter:3.6.0",
                            "command": ["maya-exporter"], "args": ["-e=cstor"],
                            "ports": [{"containerPort": 9500}], "resources": zero,
                            "volumeMounts": target_mounts()},
                        {"name": "cstor-volume-mgmt", "image": "openebs/cstor-volume-manager:3.6.0",
                            "imagePullPolicy": "IfNotPresent", "ports": [{"containerPort": 80}],
                            "env": [
                                {"name": "OPENEBS_IO_CSTOR_VOLUME_ID", "value": cv.uid().unwrap()},
                                {"name": "RESYNC_INTERVAL", "value": "30"},
                                {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                                {"name": "OPENEBS_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}],
                            "resources": zero, "securityContext": {"privileged": true},
                            "volumeMounts": target_mounts()}],
                    "volumes": [{"name": "sockfile", "emptyDir": {}}, {"name": "conf", "emptyDir": {}},
                        {"name": "storagepath", "hostPath": {"path": format!("/var/openebs/cstor-target/{PV}"),
                            "type": "DirectoryOrCreate"}}]}}}
    }))
    .unwrap()
}

/// The volume mounts upstream gives every pool container.
fn pool_mounts() -> Value {
    json!([{"name": "device", "mountPath": "/dev"}, {"name": "tmp", "mountPath": "/tmp"},
        {"name": "udev", "mountPath": "/run/udev"},
        {"name": "storagepath", "mountPath": "/var/openebs/cstor-pool"},
        {"name": "sockfile", "mountPath": "/var/tmp/sock"},
        {"name": "sparse", "mountPath": "/var/openebs/sparse"}])
}

/// Upstream's pool Deployment (`GetPoolDeploySpec`): the Go pool manager, the pool and the
/// m-exporter sidecar, with upstream's 3.6.0 images.
fn upstream_pool(
    ns: &str,
    node: &str,
    cspc: &CStorPoolCluster,
    cspi: &CStorPoolInstance,
) -> Deployment {
    let labels = json!({"openebs.io/cstor-pool-cluster": CSPC, "app": "cstor-pool",
        "openebs.io/cstor-pool-instance": CSPI, "openebs.io/version": OPENEBS_VERSION});
    let (cspc_uid, cspi_uid) = (cspc.uid().unwrap(), cspi.uid().unwrap());
    let storage = format!("/var/openebs/cstor-pool/{CSPC}");
    from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": CSPI, "namespace": ns, "labels": labels,
            "annotations": {"openebs.io/monitoring": "pool_exporter_prometheus"},
            "ownerReferences": [owner(cspi)]},
        "spec": {"replicas": 1, "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": {"app": "cstor-pool"}},
            "template": {
                "metadata": {"labels": labels, "annotations": {
                    "openebs.io/monitoring": "pool_exporter_prometheus",
                    "prometheus.io/path": "/metrics", "prometheus.io/port": "9500",
                    "prometheus.io/scrape": "true", "cluster-autoscaler.kubernetes.io/safe-to-evict": "false"}},
                "spec": {
                    "priorityClassName": "",
                    "nodeSelector": {label::HOSTNAME: node},
                    "serviceAccountName": "openebs-cstor-operator",
                    "containers": [
                        {"name": "cstor-pool-mgmt", "image": "openebs/cstor-pool-manager:3.6.0",
                            "imagePullPolicy": "IfNotPresent", "securityContext": {"privileged": true},
                            "env": [{"name": "OPENEBS_IO_CSPI_ID", "value": cspi_uid},
                                {"name": "RESYNC_INTERVAL", "value": "30"},
                                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                                {"name": "NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                                {"name": "OPENEBS_IO_POOL_NAME", "value": cspc_uid}],
                            "resources": {}, "volumeMounts": pool_mounts()},
                        {"name": "cstor-pool", "image": "openebs/cstor-pool:3.6.0",
                            "imagePullPolicy": "IfNotPresent", "securityContext": {"privileged": true},
                            "resources": {},
                            "ports": [{"containerPort": 12000, "protocol": "TCP"},
                                {"containerPort": 3232, "protocol": "TCP"}, {"containerPort": 3233, "protocol": "TCP"}],
                            "env": [{"name": "OPENEBS_IO_CSTOR_ID", "value": cspi_uid},
                                {"name": "OPENEBS_IO_POOL_NAME", "value": cspc_uid}],
                            "lifecycle": {"postStart": {"exec": {"command": ["/bin/sh", "-c", "sleep 2"]}}},
                            "livenessProbe": {"exec": {"command": ["/bin/sh", "-c",
                                "timeout 120 zfs set io.openebs:livenesstimestamp=\"$(date +%s)\" cstor-$OPENEBS_IO_POOL_NAME"]},
                                "failureThreshold": 3, "initialDelaySeconds": 300, "periodSeconds": 60, "timeoutSeconds": 150},
                            "volumeMounts": pool_mounts()},
                        {"name": "maya-exporter", "image": "openebs/m-exporter:3.6.0",
                            "command": ["maya-exporter"], "args": ["-e=pool"],
                            "ports": [{"containerPort": 9500}], "securityContext": {"privileged": true},
                            "volumeMounts": pool_mounts()}],
                    "volumes": [
                        {"name": "device", "hostPath": {"path": "/dev", "type": "Directory"}},
                        {"name": "udev", "hostPath": {"path": "/run/udev", "type": "Directory"}},
                        {"name": "tmp", "hostPath": {"path": storage, "type": "DirectoryOrCreate"}},
                        {"name": "storagepath", "hostPath": {"path": storage, "type": "DirectoryOrCreate"}},
                        {"name": "sparse", "hostPath": {"path": "/var/openebs/sparse", "type": "DirectoryOrCreate"}},
                        {"name": "sockfile", "emptyDir": {}}]}}}
    }))
    .unwrap()
}

async fn create<K>(api: &Api<K>, obj: Value) -> K
where
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + serde::Serialize,
{
    api.create(&PostParams::default(), &from_value(obj).unwrap())
        .await
        .unwrap()
}

/// The pool half of an upstream cluster: node, block device, CSPC, its bound claim, an ONLINE
/// CSPI and the CSPI's pool Deployment.
async fn upstream_pool_cluster(h: &Harness, node: &str, disks: &std::path::Path) {
    let ns = h.ns.as_str();
    support::create_node(&h.client, node).await;
    let bd_name = format!("blockdevice-{node}");
    support::create_bd(&h.client, ns, disks, &bd_name, node).await;
    let bd = h.api::<BlockDevice>().get(&bd_name).await.unwrap();
    let raid = json!([{"blockDevices": [{"blockDeviceName": bd_name}]}]);
    let pool_config =
        json!({"dataRaidGroupType": "stripe", "priorityClassName": "", "roThresholdLimit": 85});
    let cspc: CStorPoolCluster = create(
        &h.api(),
        json!({
            "apiVersion": "cstor.openebs.io/v1", "kind": "CStorPoolCluster",
            "metadata": {"name": CSPC, "namespace": ns, "finalizers": [finalizer::CSPC]},
            "spec": {"pools": [{"nodeSelector": {label::HOSTNAME: node}, "dataRaidGroups": raid,
                "poolConfig": {"dataRaidGroupType": "stripe"}}]},
            "status": {"provisionedInstances": 1, "desiredInstances": 1, "healthyInstances": 1},
            "versionDetails": version_details()
        }),
    )
    .await;
    let _claim: cstor_api::ndm::BlockDeviceClaim = create(
        &h.api(),
        json!({
            "apiVersion": "openebs.io/v1alpha1", "kind": "BlockDeviceClaim",
            "metadata": {"name": naming::bdc_name(&bd.uid().unwrap()), "namespace": ns,
                "labels": {label::CSTOR_POOL_CLUSTER: CSPC}, "finalizers": [finalizer::CSPC],
                "ownerReferences": [owner(&cspc)]},
            "spec": {"blockDeviceName": bd_name, "blockDeviceNodeAttributes": {"hostName": node},
                "resources": {"requests": {"storage": "1G"}}}
        }),
    )
    .await;
    support::bind_claims(&h.client, ns).await;
    let cspi: CStorPoolInstance = create(&h.api(), json!({
        "apiVersion": "cstor.openebs.io/v1", "kind": "CStorPoolInstance",
        "metadata": {"name": CSPI, "namespace": ns,
            "labels": {label::HOSTNAME: node, label::CSTOR_POOL_CLUSTER: CSPC,
                label::VERSION: OPENEBS_VERSION, label::CAS_TYPE: "cstor"},
            "finalizers": [finalizer::CSPC, finalizer::POOL_PROTECTION],
            "ownerReferences": [owner(&cspc)]},
        "spec": {"hostName": node, "nodeSelector": {label::HOSTNAME: node},
            "poolConfig": pool_config, "dataRaidGroups": raid},
        "status": {"phase": "ONLINE", "readOnly": false, "provisionedReplicas": 1, "healthyReplicas": 1,
            "capacity": {"used": "1Mi", "free": "9Gi", "total": "9Gi", "zfs": {"logicalUsed": "1Mi"}}},
        "versionDetails": version_details()
    }))
    .await;
    h.api::<Deployment>()
        .create(
            &PostParams::default(),
            &upstream_pool(ns, node, &cspc, &cspi),
        )
        .await
        .unwrap();
}

/// The volume half: a Bound CVC with upstream's labels, its CV, Service, CVR and target.
async fn upstream_volume(h: &Harness) {
    let ns = h.ns.as_str();
    let policy = json!({
        "provision": {"replicaAffinity": false},
        "target": {"luWorkers": 6, "queueDepth": "32",
            "resources": {"limits": {"cpu": "0", "memory": "0"}, "requests": {"cpu": "0", "memory": "0"}},
            "auxResources": {"limits": {"cpu": "0", "memory": "0"}, "requests": {"cpu": "0", "memory": "0"}}},
        "replica": {},
        "replicaPoolInfo": [{"poolName": CSPI}]
    });
    let cvc: CStorVolumeConfig = create(
        &h.api(),
        json!({
            "apiVersion": "cstor.openebs.io/v1", "kind": "CStorVolumeConfig",
            "metadata": {"name": PV, "namespace": ns,
                "labels": {label::CSTOR_POOL_CLUSTER: CSPC, label::TEMPLATE_HASH: UPSTREAM_HASH},
                "annotations": {annotation::VOLUME_ID: PV, annotation::VOLUME_POLICY: "",
                    annotation::PERSISTENT_VOLUME_CLAIM: "data-db-0"},
                "finalizers": [finalizer::CVC]},
            "spec": {"capacity": {"storage": "1Gi"},
                "provision": {"capacity": {"storage": "1Gi"}, "replicaCount": 1},
                "policy": policy,
                "cstorVolumeRef": {"kind": "CStorVolume", "name": PV, "namespace": ns,
                    "apiVersion": "cstor.openebs.io/v1"}},
            "publish": {"nodeId": ""},
            "status": {"phase": "Bound", "capacity": {"storage": "1Gi"}, "poolInfo": [CSPI]},
            "versionDetails": version_details()
        }),
    )
    .await;
    let ip = "10.96.200.7";
    let _svc: Service = create(&h.api(), json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": PV, "namespace": ns, "ownerReferences": [owner(&cvc)],
            "labels": {"openebs.io/target-service": "cstor-target-svc", "openebs.io/storage-engine-type": "cstor",
                "openebs.io/cas-type": "cstor", label::PERSISTENT_VOLUME: PV, label::VERSION: OPENEBS_VERSION}},
        "spec": {"clusterIP": ip,
            "selector": {"app": "cstor-volume-manager", "openebs.io/target": "cstor-target", label::PERSISTENT_VOLUME: PV},
            "ports": [{"name": "cstor-iscsi", "port": 3260, "targetPort": 3260, "protocol": "TCP"},
                {"name": "cstor-grpc", "port": 7777, "targetPort": 7777, "protocol": "TCP"},
                {"name": "mgmt", "port": 6060, "targetPort": 6060, "protocol": "TCP"},
                {"name": "exporter", "port": 9500, "targetPort": 9500, "protocol": "TCP"}]}
    }))
    .await;
    let replica_id = "6061B2E0A3C1F0A5";
    let replicas = json!({"knownReplicas": {replica_id: "13813277463542400237"}});
    let cv: CStorVolume = create(
        &h.api(),
        json!({
            "apiVersion": "cstor.openebs.io/v1", "kind": "CStorVolume",
            "metadata": {"name": PV, "namespace": ns, "ownerReferences": [owner(&cvc)],
                "labels": {label::PERSISTENT_VOLUME: PV, label::VERSION: OPENEBS_VERSION,
                    label::PERSISTENT_VOLUME_CLAIM: "data-db-0"}},
            "spec": {"targetIP": ip, "capacity": "1Gi", "iqn": naming::iqn(PV),
                "targetPortal": format!("{ip}:3260"), "targetPort": "3260",
                "replicationFactor": 1, "consistencyFactor": 1, "desiredReplicationFactor": 1,
                "replicaDetails": replicas},
            "status": {"phase": "Healthy", "capacity": "1Gi", "replicaDetails": replicas},
            "versionDetails": version_details()
        }),
    )
    .await;
    let cspi = h.api::<CStorPoolInstance>().get(CSPI).await.unwrap();
    let _cvr: CStorVolumeReplica = create(&h.api(), json!({
        "apiVersion": "cstor.openebs.io/v1", "kind": "CStorVolumeReplica",
        "metadata": {"name": format!("{PV}-{CSPI}"), "namespace": ns,
            "labels": {label::CSPI_NAME: CSPI, label::CSPI_UID: cspi.uid().unwrap(),
                label::CSTOR_VOLUME_NAME: PV, label::PERSISTENT_VOLUME: PV, label::VERSION: OPENEBS_VERSION},
            "annotations": {annotation::CSPI_HOSTNAME: cspi.spec.host_name.clone().unwrap()},
            "finalizers": [finalizer::CVR], "ownerReferences": [owner(&cv)]},
        "spec": {"targetIP": ip, "replicaid": replica_id, "capacity": "1Gi"},
        "status": {"phase": "Healthy"},
        "versionDetails": version_details()
    }))
    .await;
    h.api::<Deployment>()
        .create(&PostParams::default(), &upstream_target(ns, &cv))
        .await
        .unwrap();
}

/// The `spec` of object `name`, as JSON.
async fn spec_of<K>(h: &Harness, name: &str) -> Value
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + serde::Serialize,
{
    serde_json::to_value(h.api::<K>().get(name).await.unwrap()).unwrap()["spec"].clone()
}

/// What upstream's operators (and the pods) depend on, as JSON, to compare before and after.
async fn snapshot(h: &Harness) -> Value {
    let cvc = h.api::<CStorVolumeConfig>().get(PV).await.unwrap();
    let target = naming::target_deployment_name(PV);
    let generation = |d: Deployment| d.metadata.generation;
    let deps = h.api::<Deployment>();
    json!({
        "cvc labels": cvc.labels(),
        "cvc spec": serde_json::to_value(&cvc.spec).unwrap(),
        "cv spec": spec_of::<CStorVolume>(h, PV).await,
        "service spec": spec_of::<Service>(h, PV).await,
        "cvr spec": spec_of::<CStorVolumeReplica>(h, &format!("{PV}-{CSPI}")).await,
        "cspi spec": spec_of::<CStorPoolInstance>(h, CSPI).await,
        "target generation": generation(deps.get(&target).await.unwrap()),
        "target spec": spec_of::<Deployment>(h, &target).await,
        "pool generation": generation(deps.get(CSPI).await.unwrap()),
        "pool spec": spec_of::<Deployment>(h, CSPI).await,
    })
}

/// Compares two [`snapshot`]s part by part, so a failure names what changed.
fn assert_unchanged(before: &Value, after: &Value, when: &str) {
    for (part, was) in before.as_object().unwrap() {
        assert_eq!(
            was, &after[part],
            "{when}: {part} changed (a changed pod template restarts the pod)"
        );
    }
}

/// Successful reconcile passes of `controller` so far (this process's metrics).
fn passes(controller: &str) -> u64 {
    let wanted = format!("controller=\"{controller}\"");
    cstor_api::metrics::render()
        .lines()
        .filter(|l| l.starts_with("cstor_reconcile_total{"))
        .filter(|l| l.contains(&wanted) && l.contains("result=\"ok\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Makes each of our operators run at least one complete pass over the adopted objects that
/// started after this call: at most one pass per object is in flight at a time (one CVC, one
/// CSPC here), so two more passes than now include a fresh one. Each round touches the CVC
/// and the CSPC (an annotation nobody reads) to wake both controllers.
async fn another_full_pass(h: &Harness) {
    let start = (passes("cvc"), passes("cspc"));
    for round in 1..=2u64 {
        let touch =
            json!({"metadata": {"annotations": {"swap-test.example/touched": round.to_string()}}});
        h.api::<CStorVolumeConfig>()
            .patch(PV, &PatchParams::default(), &Patch::Merge(&touch))
            .await
            .unwrap();
        h.api::<CStorPoolCluster>()
            .patch(CSPC, &PatchParams::default(), &Patch::Merge(&touch))
            .await
            .unwrap();
        wait_until("our operators ran another pass", DEADLINE, || async {
            (passes("cvc") >= start.0 + round && passes("cspc") >= start.1 + round).then_some(())
        })
        .await
        .unwrap();
    }
}

/// The two scenarios share this process's reconcile metrics: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Our two operators, running.
struct Ours {
    cspc: JoinHandle<()>,
}

fn start_ours(h: &mut Harness) -> Ours {
    h.start_operator();
    let ctx = cspc_operator::Context::new(h.client.clone(), Default::default())
        .with_resync(Duration::from_secs(2));
    Ours {
        cspc: tokio::spawn(cspc_operator::run(ctx, Some(h.ns.clone()))),
    }
}

async fn stop_ours(h: &mut Harness, ours: Ours) {
    ours.cspc.abort();
    let _ = ours.cspc.await;
    h.kill_operator().await;
}

/// Waits until both operators have recorded what they adopted.
async fn wait_adopted(h: &Harness) {
    h.wait_cvc(PV, "our policy record", |c| {
        c.annotations().contains_key(annotation::APPLIED_POLICY)
    })
    .await;
    let deps = h.api::<Deployment>();
    wait_until("pool Deployment adopted", DEADLINE, || async {
        let d = deps.get(CSPI).await.ok()?;
        d.annotations()
            .contains_key(annotation::APPLIED_POOL_TEMPLATE)
            .then_some(())
    })
    .await
    .unwrap();
}

async fn upstream_cluster(h: &Harness, disks: &std::path::Path) -> String {
    let node = support::unique("swap-node");
    upstream_pool_cluster(h, &node, disks).await;
    upstream_volume(h).await;
    node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_cluster_swapped_to_ours_and_back_restarts_nothing() {
    let _serial = SERIAL.lock().await;
    support::init_tracing();
    let mut h = Harness::start_without_operator().await;
    let disks = tempfile::tempdir().unwrap();
    let node = upstream_cluster(&h, disks.path()).await;
    let before = snapshot(&h).await;

    let ours = start_ours(&mut h);
    wait_adopted(&h).await;
    // Later passes over the adopted objects must not change them either.
    another_full_pass(&h).await;
    assert_unchanged(&before, &snapshot(&h).await, "adopted by ours");
    let cvc = h.api::<CStorVolumeConfig>().get(PV).await.unwrap();
    assert_eq!(
        cvc.labels().get(label::TEMPLATE_HASH).map(String::as_str),
        Some(UPSTREAM_HASH),
        "upstream's template-hash label is left as upstream wrote it"
    );

    // Back again: with ours stopped, upstream's policy sync finds its label equal to its hash
    // of the unchanged policy (nothing to patch), and its syncCSPI finds the pool Deployment
    // equal to the one it builds (our record annotation aside, which its two-way patch drops
    // without a rollout).
    stop_ours(&mut h, ours).await;
    assert_unchanged(&before, &snapshot(&h).await, "back to upstream");
    let pool = h.api::<Deployment>().get(CSPI).await.unwrap();
    let containers: Vec<String> = pool
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .containers
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(
        containers,
        ["cstor-pool-mgmt", "cstor-pool", "maya-exporter"]
    );

    // And to ours once more: our records match, nothing is touched.
    let ours = start_ours(&mut h);
    another_full_pass(&h).await;
    assert_unchanged(&before, &snapshot(&h).await, "swapped to ours again");
    stop_ours(&mut h, ours).await;
    support::delete_node(&h.client, &node).await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_after_adoption_still_reach_the_target_and_the_pool() {
    let _serial = SERIAL.lock().await;
    support::init_tracing();
    let mut h = Harness::start_without_operator().await;
    let disks = tempfile::tempdir().unwrap();
    let node = upstream_cluster(&h, disks.path()).await;
    let ours = start_ours(&mut h);
    wait_adopted(&h).await;
    let deps = h.api::<Deployment>();
    let target_name = naming::target_deployment_name(PV);
    let target_before = deps.get(&target_name).await.unwrap();
    let pool_before = deps.get(CSPI).await.unwrap();

    // A user edits the volume's policy: the target is rebuilt (ours, with the new queue depth).
    h.api::<CStorVolumeConfig>()
        .patch(
            PV,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"policy": {"target": {"queueDepth": "64"}}}})),
        )
        .await
        .unwrap();
    let target = wait_until("target follows the policy edit", DEADLINE, || async {
        let d = deps.get(&target_name).await.ok()?;
        let pod = d.spec.as_ref()?.template.spec.as_ref()?;
        let istgt = pod.containers.iter().find(|c| c.name == "cstor-istgt")?;
        istgt
            .env
            .iter()
            .flatten()
            .any(|e| e.name == "QueueDepth" && e.value.as_deref() == Some("64"))
            .then_some(d)
    })
    .await
    .unwrap();
    assert!(target.metadata.generation > target_before.metadata.generation);
    let cvc = h
        .wait_cvc(PV, "record of the new policy", |c| {
            let hash = target::policy_hash(&c.spec.policy);
            c.annotations().get(annotation::APPLIED_POLICY)
                == Some(&target::applied_record(&hash, UPSTREAM_HASH))
        })
        .await;
    assert_eq!(
        cvc.labels().get(label::TEMPLATE_HASH).map(String::as_str),
        Some(UPSTREAM_HASH),
        "upstream's label is still not ours to write (upstream re-applies its template on swap-back)"
    );

    // A user edits the pool cluster's settings: the pool pod is rebuilt.
    support::edit(&h.api::<CStorPoolCluster>(), CSPC, |c| {
        c.spec.priority_class_name = Some("storage-critical".into());
    })
    .await;
    let pool = wait_until(
        "pool Deployment follows the CSPC edit",
        DEADLINE,
        || async {
            let d = deps.get(CSPI).await.ok()?;
            let pod = d.spec.as_ref()?.template.spec.as_ref()?;
            (pod.priority_class_name.as_deref() == Some("storage-critical")).then_some(d)
        },
    )
    .await
    .unwrap();
    assert!(pool.metadata.generation > pool_before.metadata.generation);
    stop_ours(&mut h, ours).await;
    support::delete_node(&h.client, &node).await;
    h.stop().await;
}
