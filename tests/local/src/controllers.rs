//! What a bare API server lacks and a cluster has, in their simplest faithful form:
//!
//! - [`workloads`] (embedded API server only; a real control plane runs the controller-manager
//!   and scheduler): Deployments, StatefulSets and DaemonSets become Pods bound to a node whose
//!   labels match the template's `nodeSelector`; a changed template replaces its Pods; a deleted
//!   Pod is recreated;
//! - [`cluster_ips`] (embedded only): Services get a ClusterIP from `10.96.0.0/16`;
//! - [`ndm`]: node-disk-manager's sparse-file BlockDevices and claim binding;
//! - [`nodes`]: Node objects, Ready, with a heartbeat Lease.

use std::{
    collections::{BTreeMap, BTreeSet, hash_map::DefaultHasher},
    hash::{Hash, Hasher},
    path::Path,
    time::Duration,
};

use cstor_api::ndm::{
    BlockDevice, BlockDeviceClaim, BlockDeviceSpec, BlockDeviceState, BlockDeviceStatus,
    DeviceCapacity, DeviceClaimPhase, DeviceClaimState, DeviceClaimStatus,
};
use futures::{StreamExt, stream};
use k8s_openapi::{
    api::{
        apps::v1::{DaemonSet, Deployment, StatefulSet},
        coordination::v1::{Lease, LeaseSpec},
        core::v1::{Node, ObjectReference, Pod, PodTemplateSpec, Service},
    },
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference},
    jiff::Timestamp,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
    runtime::{WatchStreamExt, watcher},
};

/// The label NDM and the cStor operators select nodes by.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

/// Creates (or updates) Ready Node objects for `names`.
pub async fn nodes(client: &Client, names: &[String]) -> kube::Result<()> {
    let api: Api<Node> = Api::all(client.clone());
    for n in names {
        let now = Timestamp::now().to_string();
        let node = serde_json::json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": n, "labels": {
                HOSTNAME_LABEL: n, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
            }},
            "spec": {},
        });
        api.patch(
            n,
            &PatchParams::apply("cstor-local").force(),
            &Patch::Apply(node),
        )
        .await?;
        let status = serde_json::json!({"status": {
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "message": "cstor-local runs this node's pods", "lastHeartbeatTime": now, "lastTransitionTime": now}],
            "capacity": {"cpu": "64", "memory": "256Gi", "pods": "250"},
            "allocatable": {"cpu": "64", "memory": "256Gi", "pods": "250"},
            "addresses": [{"type": "Hostname", "address": n}],
            "nodeInfo": {"architecture": "amd64", "operatingSystem": "linux", "kubeletVersion": "v1.26.4",
                         "bootID": "", "containerRuntimeVersion": "cstor-local://0.1.0", "kernelVersion": "",
                         "kubeProxyVersion": "", "machineID": "", "osImage": "", "systemUUID": ""},
        }});
        api.patch_status(n, &PatchParams::default(), &Patch::Merge(status))
            .await?;
    }
    Ok(())
}

/// Renews each node's Lease in `kube-node-lease` every 10 s (the node lifecycle controller
/// taints nodes whose Lease expires), for as long as it runs. Errors (no such namespace on the
/// embedded server) are ignored.
pub async fn heartbeat(client: Client, names: Vec<String>) {
    let api: Api<Lease> = Api::namespaced(client, "kube-node-lease");
    loop {
        for n in &names {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(n.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(n.clone()),
                    lease_duration_seconds: Some(40),
                    renew_time: Some(MicroTime(Timestamp::now())),
                    ..Default::default()
                }),
            };
            let _ = api
                .patch(
                    n,
                    &PatchParams::apply("cstor-local").force(),
                    &Patch::Apply(lease),
                )
                .await;
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
}

fn template_hash(t: &PodTemplateSpec) -> String {
    let mut h = DefaultHasher::new();
    serde_json::to_string(t).unwrap_or_default().hash(&mut h);
    format!("{:x}", h.finish() & 0xff_ffff_ffff)
}

fn node_matches(node: &Node, selector: &BTreeMap<String, String>) -> bool {
    let labels = node.labels();
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

struct Workload {
    kind: &'static str,
    api_version: &'static str,
    name: String,
    namespace: String,
    uid: String,
    /// `metadata.generation`, reported back as `status.observedGeneration` (what rollout
    /// checks wait for).
    generation: Option<i64>,
    replicas: i32,
    template: PodTemplateSpec,
    /// DaemonSet: one per node.
    per_node: bool,
    /// StatefulSet: `<name>-<ordinal>`.
    ordinal_names: bool,
}

impl Workload {
    /// The workload `obj` of `kind` (an `apps/v1` kind); one being deleted wants no Pods.
    fn of<K: Resource>(
        obj: &K,
        kind: &'static str,
        replicas: i32,
        template: PodTemplateSpec,
        per_node: bool,
        ordinal_names: bool,
    ) -> Workload {
        let deleting = obj.meta().deletion_timestamp.is_some();
        Workload {
            kind,
            api_version: "apps/v1",
            name: obj.meta().name.clone().unwrap_or_default(),
            namespace: obj.meta().namespace.clone().unwrap_or_default(),
            uid: obj.meta().uid.clone().unwrap_or_default(),
            generation: obj.meta().generation,
            replicas: if deleting { 0 } else { replicas },
            template,
            per_node,
            ordinal_names,
        }
    }
}

/// Deployment/StatefulSet/DaemonSet → Pods, for an API server without controllers.
pub async fn workloads(client: Client, namespaces: BTreeSet<String>, nodes: Vec<String>) {
    let trigger = stream::select_all(vec![
        watcher(
            Api::<Deployment>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .map(|_| ())
        .boxed(),
        watcher(
            Api::<StatefulSet>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .map(|_| ())
        .boxed(),
        watcher(
            Api::<DaemonSet>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .map(|_| ())
        .boxed(),
        watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
            .default_backoff()
            .map(|_| ())
            .boxed(),
    ]);
    let mut trigger = std::pin::pin!(trigger.ready_chunks(64));
    while trigger.next().await.is_some() {
        for ns in &namespaces {
            if let Err(e) = reconcile_namespace(&client, ns, &nodes).await {
                tracing::warn!(namespace = %ns, error = %e, "workload reconcile");
            }
        }
    }
}

async fn reconcile_namespace(client: &Client, ns: &str, node_names: &[String]) -> kube::Result<()> {
    let lp = ListParams::default();
    let mut loads = Vec::new();
    for d in Api::<Deployment>::namespaced(client.clone(), ns)
        .list(&lp)
        .await?
        .items
    {
        let spec = d.spec.clone().unwrap_or_default();
        loads.push(Workload::of(
            &d,
            "Deployment",
            spec.replicas.unwrap_or(1),
            spec.template,
            false,
            false,
        ));
    }
    for s in Api::<StatefulSet>::namespaced(client.clone(), ns)
        .list(&lp)
        .await?
        .items
    {
        let spec = s.spec.clone().unwrap_or_default();
        loads.push(Workload::of(
            &s,
            "StatefulSet",
            spec.replicas.unwrap_or(1),
            spec.template,
            false,
            true,
        ));
    }
    for d in Api::<DaemonSet>::namespaced(client.clone(), ns)
        .list(&lp)
        .await?
        .items
    {
        let spec = d.spec.clone().unwrap_or_default();
        loads.push(Workload::of(&d, "DaemonSet", 1, spec.template, true, false));
    }
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pods = pods_api.list(&lp).await?.items;
    let nodes: Vec<Node> = Api::<Node>::all(client.clone())
        .list(&lp)
        .await?
        .items
        .into_iter()
        .filter(|n| node_names.contains(&n.name_any()))
        .collect();
    let mut per_node: BTreeMap<String, usize> = nodes.iter().map(|n| (n.name_any(), 0)).collect();
    for p in &pods {
        if let Some(n) = p.spec.as_ref().and_then(|s| s.node_name.clone()) {
            *per_node.entry(n).or_default() += 1;
        }
    }
    for w in loads {
        let hash = template_hash(&w.template);
        let owned: Vec<&Pod> = pods
            .iter()
            .filter(|p| {
                p.owner_references().iter().any(|o| o.uid == w.uid)
                    && p.meta().deletion_timestamp.is_none()
            })
            .collect();
        // Pods of an older template go (Recreate: all of them before new ones come).
        let (current, old): (Vec<&Pod>, Vec<&Pod>) = owned
            .into_iter()
            .partition(|p| p.labels().get("pod-template-hash") == Some(&hash));
        for p in &old {
            let _ = pods_api
                .delete(&p.name_any(), &DeleteParams::default())
                .await;
        }
        if !old.is_empty() {
            continue;
        }
        let selector = w
            .template
            .spec
            .as_ref()
            .and_then(|s| s.node_selector.clone())
            .unwrap_or_default();
        let candidates: Vec<&Node> = nodes
            .iter()
            .filter(|n| node_matches(n, &selector))
            .collect();
        let mut wanted: Vec<(String, String)> = Vec::new(); // (pod name, node)
        if w.per_node {
            for n in &candidates {
                let node = n.name_any();
                if !current
                    .iter()
                    .any(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(&node))
                {
                    let suffix = &template_hash(&PodTemplateSpec {
                        metadata: Some(ObjectMeta {
                            name: Some(node.clone()),
                            ..Default::default()
                        }),
                        spec: None,
                    })[..5];
                    wanted.push((format!("{}-{suffix}", w.name), node));
                }
            }
        } else {
            let have = current.len() as i32;
            if have > w.replicas {
                for p in current.iter().skip(w.replicas.max(0) as usize) {
                    let _ = pods_api
                        .delete(&p.name_any(), &DeleteParams::default())
                        .await;
                }
            }
            for i in have..w.replicas {
                let Some(node) = candidates
                    .iter()
                    .map(|n| n.name_any())
                    .min_by_key(|n| per_node.get(n).copied().unwrap_or(0))
                else {
                    tracing::warn!(workload = %w.name, ?selector, "no node matches the nodeSelector");
                    break;
                };
                *per_node.entry(node.clone()).or_default() += 1;
                let name = if w.ordinal_names {
                    format!("{}-{i}", w.name)
                } else {
                    // As the ReplicaSet controller: base truncated so that the name fits 63.
                    let base = format!("{}-{hash}-", w.name);
                    let base = &base[..base.len().min(58)];
                    format!("{base}{}", &uuid::Uuid::new_v4().simple().to_string()[..5])
                };
                wanted.push((name, node));
            }
        }
        for (name, node) in wanted {
            let mut meta = w.template.metadata.clone().unwrap_or_default();
            meta.name = Some(name.clone());
            meta.namespace = Some(w.namespace.clone());
            meta.labels
                .get_or_insert_with(Default::default)
                .insert("pod-template-hash".into(), hash.clone());
            meta.owner_references = Some(vec![OwnerReference {
                api_version: w.api_version.into(),
                kind: w.kind.into(),
                name: w.name.clone(),
                uid: w.uid.clone(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]);
            let mut spec = w.template.spec.clone().unwrap_or_default();
            spec.node_name = Some(node);
            let pod = Pod {
                metadata: meta,
                spec: Some(spec),
                status: None,
            };
            if let Err(e) = pods_api.create(&PostParams::default(), &pod).await {
                tracing::warn!(pod = %name, error = %e, "create pod");
            }
        }
        let ready = current
            .iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .count();
        let status = serde_json::json!({"status": {
            "replicas": current.len(), "readyReplicas": ready, "availableReplicas": ready,
            "updatedReplicas": current.len(), "currentReplicas": current.len(),
            "numberReady": ready, "currentNumberScheduled": current.len(), "desiredNumberScheduled": current.len(),
            "numberAvailable": ready, "updatedNumberScheduled": current.len(), "numberMisscheduled": 0,
            "observedGeneration": w.generation,
        }});
        let pp = PatchParams::default();
        let _ = match w.kind {
            "Deployment" => Api::<Deployment>::namespaced(client.clone(), ns)
                .patch_status(&w.name, &pp, &Patch::Merge(status))
                .await
                .map(drop),
            "StatefulSet" => Api::<StatefulSet>::namespaced(client.clone(), ns)
                .patch_status(&w.name, &pp, &Patch::Merge(status))
                .await
                .map(drop),
            _ => Api::<DaemonSet>::namespaced(client.clone(), ns)
                .patch_status(&w.name, &pp, &Patch::Merge(status))
                .await
                .map(drop),
        };
    }
    Ok(())
}

/// Gives Services without one a ClusterIP from `10.96.0.0/16` (as the API server does).
pub async fn cluster_ips(client: Client) {
    let api: Api<Service> = Api::all(client.clone());
    let mut next: u32 = 10;
    let mut stream = std::pin::pin!(
        watcher(api, watcher::Config::default())
            .default_backoff()
            .applied_objects()
    );
    while let Some(ev) = stream.next().await {
        let Ok(svc) = ev else { continue };
        let has = svc
            .spec
            .as_ref()
            .and_then(|s| s.cluster_ip.as_deref())
            .is_some_and(|ip| !ip.is_empty());
        if has {
            continue;
        }
        next += 1;
        let ip = format!("10.96.{}.{}", next / 250, next % 250 + 1);
        let ns = svc.namespace().unwrap_or_default();
        let _ = Api::<Service>::namespaced(client.clone(), &ns)
            .patch(
                &svc.name_any(),
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"spec": {"clusterIP": ip, "clusterIPs": [ip]}})),
            )
            .await;
    }
}

/// node-disk-manager's sparse disks: `count` sparse files of `size` bytes in each node's
/// `/var/openebs/sparse` (below `node_dir(node)`), each with an Active, Unclaimed BlockDevice
/// named `sparse-<node>-<i>` whose path is the file's path as pods see it.
pub async fn sparse_block_devices(
    client: &Client,
    ns: &str,
    nodes: &[String],
    node_dir: impl Fn(&str) -> std::path::PathBuf,
    count: usize,
    size: u64,
) -> anyhow::Result<Vec<BlockDevice>> {
    let api: Api<BlockDevice> = Api::namespaced(client.clone(), ns);
    let mut out = Vec::new();
    for node in nodes {
        let dir = node_dir(node).join("var/openebs/sparse");
        std::fs::create_dir_all(&dir)?;
        for i in 0..count {
            let name = format!("sparse-{node}-{i}");
            let file = dir.join(format!("{name}.img"));
            let f = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&file)?;
            f.set_len(size)?;
            let path = Path::new("/var/openebs/sparse").join(format!("{name}.img"));
            let mut bd = BlockDevice::new(
                &name,
                BlockDeviceSpec {
                    path: path.to_string_lossy().into_owned(),
                    capacity: DeviceCapacity {
                        storage: size,
                        ..Default::default()
                    },
                    ..Default::default()
                },
            );
            bd.metadata.namespace = Some(ns.into());
            bd.spec.node_attributes.node_name = Some(node.clone());
            bd.metadata.labels = Some(BTreeMap::from([
                (HOSTNAME_LABEL.to_string(), node.clone()),
                (
                    "ndm.io/blockdevice-type".to_string(),
                    "blockdevice".to_string(),
                ),
                ("ndm.io/managed".to_string(), "true".to_string()),
            ]));
            bd.status = Some(BlockDeviceStatus {
                claim_state: DeviceClaimState::Unclaimed,
                state: BlockDeviceState::Active,
                ..Default::default()
            });
            let bd = match api.get_opt(&name).await? {
                Some(existing) => existing,
                None => {
                    let created = api.create(&PostParams::default(), &bd).await?;
                    // The status is a plain field of this CRD (no subresource): keep it.
                    if created.status.is_none() {
                        api.replace(
                            &name,
                            &PostParams::default(),
                            &BlockDevice {
                                status: bd.status.clone(),
                                ..created
                            },
                        )
                        .await?
                    } else {
                        created
                    }
                }
            };
            out.push(bd);
        }
    }
    Ok(out)
}

/// node-disk-manager's claim binding: each new BlockDeviceClaim naming a BlockDevice is bound to
/// it; a deleted claim releases its device.
pub async fn ndm(client: Client, ns: String) {
    let bdcs: Api<BlockDeviceClaim> = Api::namespaced(client.clone(), &ns);
    let bds: Api<BlockDevice> = Api::namespaced(client.clone(), &ns);
    let mut stream =
        std::pin::pin!(watcher(bdcs.clone(), watcher::Config::default()).default_backoff());
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(watcher::Event::Apply(c) | watcher::Event::InitApply(c)) => {
                if c.metadata.deletion_timestamp.is_some() {
                    release(&bds, &bdcs, &c).await;
                    continue;
                }
                if c.status
                    .as_ref()
                    .is_some_and(|s| s.phase == DeviceClaimPhase::Bound)
                {
                    continue;
                }
                let Some(bd_name) = c.spec.block_device_name.clone() else {
                    continue;
                };
                let Ok(mut bd) = bds.get(&bd_name).await else {
                    continue;
                };
                bd.spec.claim_ref = Some(ObjectReference {
                    name: Some(c.name_any()),
                    namespace: Some(ns.clone()),
                    kind: Some("BlockDeviceClaim".into()),
                    api_version: Some("openebs.io/v1alpha1".into()),
                    uid: c.uid(),
                    ..Default::default()
                });
                bd.status.get_or_insert_with(Default::default).claim_state =
                    DeviceClaimState::Claimed;
                if bds
                    .replace(&bd_name, &PostParams::default(), &bd)
                    .await
                    .is_err()
                {
                    continue;
                }
                let mut c = c;
                c.status = Some(DeviceClaimStatus {
                    phase: DeviceClaimPhase::Bound,
                    ..Default::default()
                });
                let _ = bdcs
                    .replace(&c.name_any(), &PostParams::default(), &c)
                    .await;
            }
            Ok(watcher::Event::Delete(c)) => release(&bds, &bdcs, &c).await,
            _ => {}
        }
    }
}

async fn release(bds: &Api<BlockDevice>, bdcs: &Api<BlockDeviceClaim>, c: &BlockDeviceClaim) {
    let Some(bd_name) = c.spec.block_device_name.clone() else {
        return;
    };
    if let Ok(mut bd) = bds.get(&bd_name).await
        && bd.spec.claim_ref.as_ref().and_then(|r| r.uid.clone()) == c.uid()
    {
        bd.spec.claim_ref = None;
        bd.status.get_or_insert_with(Default::default).claim_state = DeviceClaimState::Unclaimed;
        let _ = bds.replace(&bd_name, &PostParams::default(), &bd).await;
    }
    // NDM's own finalizer on claims goes once the device is released.
    if c.metadata.deletion_timestamp.is_some()
        && c.finalizers()
            .iter()
            .any(|f| f == "blockdeviceclaim.openebs.io/finalizer")
    {
        let fins: Vec<String> = c
            .finalizers()
            .iter()
            .filter(|f| *f != "blockdeviceclaim.openebs.io/finalizer")
            .cloned()
            .collect();
        let _ = bdcs
            .patch(
                &c.name_any(),
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"metadata": {"finalizers": fins}})),
            )
            .await;
    }
}
