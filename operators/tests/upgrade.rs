//! `cstor-migrate upgrade` on a [`cstor_testkit::TestCluster`] with our cspc-operator or
//! cvc-operator running in process: objects written by the 3.6.0 operators are aged to 3.5.0
//! (labels, versionDetails, image tags), the operators then freeze them, and the tool brings
//! them back in upstream's order. The pool-managers and volume-managers are simulated by a
//! task that runs the real version reconcile (`cstor_operators::version`) on CSPIs, CVRs and
//! CVs; rollouts by a task that reports every Deployment's pods updated and available.

#[path = "cvc_support.rs"]
mod cvc_support;
mod support;

use std::time::Duration;

use cstor_api::{
    constants::{label, version::OPENEBS_VERSION},
    cstor::{
        CStorBackup, CStorCompletedBackup, CStorPoolCluster, CStorPoolClusterSpec,
        CStorPoolInstance, CStorRestore, CStorVolume, CStorVolumeConfig, CStorVolumeReplica,
        RaidGroupType, VersionState,
    },
    upgrade::{StepPhase, UpgradePhase, UpgradeTask},
};
use cstor_operators::{
    cspc_operator,
    upgrade::{Upgrader, cspc, volume},
    version::{self, Versioned},
};
use cstor_testkit::{CrdSpec, TestCluster, cluster::ensure_crds, wait_until};
use futures::StreamExt;
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{Pod, Service},
    events::v1::Event,
};
use kube::{
    Api, Client, ResourceExt,
    api::{DynamicObject, ListParams, Patch, PatchParams, PostParams},
    runtime::{WatchStreamExt, watcher},
};
use serde_json::json;
use tokio::task::JoinHandle;

const DEADLINE: Duration = Duration::from_secs(60);
const OLD: &str = "3.5.0";
/// The component name the tool's API calls are recorded under.
const TOOL: &str = "cstor-upgrade-test";

fn upgrader(client: Client, ns: &str) -> Upgrader {
    Upgrader {
        client,
        namespace: ns.to_owned(),
        from: OLD.into(),
        to: OPENEBS_VERSION.into(),
        image_prefix: None,
        image_tag: OPENEBS_VERSION.into(),
        images_named: false,
        tool_version: env!("CARGO_PKG_VERSION").into(),
        deadline: DEADLINE,
        poll: Duration::from_millis(100),
        backoff_limit: 6,
    }
}

/// Operator pods as our manifests label them (the crate version). The cspc-operator's names
/// the pool images it deploys (those of the operator the tests run); the cvc-operator's names
/// none, so targets follow upstream's `<repository>:<to-version>`.
async fn operator_pods(client: &Client, ns: &str) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pool = cspc_operator::deployment::DeployConfig::default();
    for c in ["cspc-operator", "cvc-operator"] {
        let env = if c == "cspc-operator" {
            json!([{"name": "OPENEBS_IO_CSPI_MGMT_IMAGE", "value": pool.pool_manager_image},
                {"name": "OPENEBS_IO_CSTOR_POOL_IMAGE", "value": pool.pool_image}])
        } else {
            json!([])
        };
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": format!("{c}-0"), "labels": {
                label::COMPONENT_NAME: c, label::VERSION: env!("CARGO_PKG_VERSION")}},
            "spec": {"containers": [{"name": c, "image": format!("cstor-rs/{c}:test"), "env": env}]}
        }))
        .unwrap();
        pods.create(&PostParams::default(), &pod).await.unwrap();
    }
}

/// Simulated pool- and volume-managers (the real version reconcile) and Deployment rollouts.
fn simulate(client: &Client, ns: &str) -> Vec<JoinHandle<()>> {
    fn reconciler<K: Versioned>(client: Client, ns: String) -> JoinHandle<()> {
        tokio::spawn(async move {
            let api: Api<K> = Api::namespaced(client.clone(), &ns);
            let events = cstor_operators::events::Events::new(client, "simulated-manager");
            let mut stream =
                std::pin::pin!(watcher(api.clone(), watcher::Config::default()).applied_objects());
            while let Some(Ok(obj)) = stream.next().await {
                let _ = version::reconcile_version(&api, &events, &obj, OPENEBS_VERSION).await;
            }
        })
    }
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let rollouts = tokio::spawn(async move {
        let mut stream = std::pin::pin!(
            watcher(deployments.clone(), watcher::Config::default()).applied_objects()
        );
        while let Some(Ok(d)) = stream.next().await {
            let generation = d.metadata.generation.unwrap_or(0);
            let observed = d.status.as_ref().and_then(|s| s.observed_generation);
            if observed == Some(generation) {
                continue;
            }
            let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            let _ = deployments
                .patch_status(
                    &d.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": {"observedGeneration": generation,
                        "replicas": replicas, "updatedReplicas": replicas,
                        "readyReplicas": replicas, "availableReplicas": replicas}})),
                )
                .await;
        }
    });
    vec![
        reconciler::<CStorPoolInstance>(client.clone(), ns.to_owned()),
        reconciler::<CStorVolumeReplica>(client.clone(), ns.to_owned()),
        reconciler::<CStorVolume>(client.clone(), ns.to_owned()),
        rollouts,
    ]
}

/// The patch that ages an object's versionDetails to `OLD`.
fn aged() -> serde_json::Value {
    json!({"versionDetails": {"desired": OLD, "status": {"current": OLD, "state": "Reconciled"}}})
}

/// Ages `name`: versionDetails, and the `openebs.io/version` label when `labelled` (CSPI, CV,
/// CVR; upstream keeps no such label on CSPCs and CVCs).
async fn age<K: Versioned>(api: &Api<K>, name: &str, labelled: bool) {
    let mut patch = aged();
    if labelled {
        patch["metadata"] = json!({"labels": {label::VERSION: OLD}});
    }
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

/// Sets the Deployment's version labels to `OLD` and its images' tags to `OLD`.
async fn age_deployment(api: &Api<Deployment>, name: &str) {
    let mut d = api.get(name).await.unwrap();
    d.labels_mut().insert(label::VERSION.into(), OLD.into());
    let spec = d.spec.as_mut().unwrap();
    spec.template
        .metadata
        .get_or_insert_with(Default::default)
        .labels
        .get_or_insert_with(Default::default)
        .insert(label::VERSION.into(), OLD.into());
    for c in &mut spec.template.spec.as_mut().unwrap().containers {
        let image = c.image.clone().unwrap();
        let repo = image.rsplit_once(':').unwrap().0;
        c.image = Some(format!("{repo}:{OLD}"));
    }
    api.replace(name, &PostParams::default(), &d).await.unwrap();
}

fn images(d: &Deployment) -> Vec<String> {
    d.spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers
        .iter()
        .map(|c| c.image.clone().unwrap_or_default())
        .collect()
}

fn template_version(d: &Deployment) -> Option<String> {
    d.spec
        .as_ref()?
        .template
        .metadata
        .as_ref()?
        .labels
        .as_ref()?
        .get(label::VERSION)
        .cloned()
}

async fn wait_event(client: &Client, ns: &str, name: &str, reason: &str) {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    wait_until(&format!("event {reason} on {name}"), DEADLINE, || async {
        events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .any(|e| {
                e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
                    && e.reason.as_deref() == Some(reason)
            })
            .then_some(())
    })
    .await
    .unwrap();
}

fn assert_at<K: Versioned>(obj: &K, v: &str) {
    let vd = obj.version_details().cloned().unwrap_or_default();
    assert_eq!(vd.desired(), v, "{} {} desired", K::KIND, obj.name_any());
    assert_eq!(vd.current(), v, "{} {} current", K::KIND, obj.name_any());
    assert_eq!(
        vd.status.and_then(|s| s.state),
        Some(VersionState::Reconciled),
        "{} {}",
        K::KIND,
        obj.name_any()
    );
    assert_eq!(
        obj.labels()
            .get(label::VERSION)
            .map(String::as_str)
            .unwrap_or(v),
        v,
        "{} {} label",
        K::KIND,
        obj.name_any()
    );
}

/// Steps and phases of a task.
async fn task_steps(
    client: &Client,
    ns: &str,
    name: &str,
) -> (Option<UpgradePhase>, Vec<(String, StepPhase)>, Option<i64>) {
    let t = Api::<UpgradeTask>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .unwrap();
    let st = t.status.unwrap_or_default();
    (
        st.phase,
        st.upgrade_detailed_statuses
            .into_iter()
            .map(|s| (s.step, s.phase.unwrap_or_default()))
            .collect(),
        st.retries,
    )
}

/// Writes the tool made, other than to its UpgradeTasks.
fn tool_writes(cluster: &TestCluster) -> Vec<String> {
    cluster
        .server()
        .expect("in-process server")
        .calls()
        .into_iter()
        .filter(|c| c.component == TOOL)
        .filter(|c| matches!(c.verb.as_str(), "create" | "update" | "patch" | "delete"))
        .filter(|c| c.resource != "upgradetasks")
        .map(|c| format!("{} {}", c.verb, c.resource))
        .collect()
}

/// A CSPC of one pool made by our cspc-operator, then aged to `OLD` (the CSPC first, which
/// the operator then leaves alone, then its CSPI and pool Deployment), with the simulated
/// managers running.
struct AgedCspc {
    cluster: TestCluster,
    /// The tool's client (its calls recorded under [`TOOL`]).
    tool: Client,
    client: Client,
    ns: String,
    name: &'static str,
    cspi: String,
    /// The pool Deployment's images as the operator wrote them.
    new_images: Vec<String>,
    tasks: Vec<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl AgedCspc {
    /// `None` on a real cluster (the tool's calls cannot be recorded there).
    async fn start(name: &'static str) -> Option<Self> {
        support::init_tracing();
        let cluster = TestCluster::start().await;
        let tool = cluster.server()?.client_as(TOOL);
        let client = cluster.client();
        let ns = cluster.namespace().to_string();
        let dir = tempfile::tempdir().unwrap();
        let node = support::unique("node");
        support::create_node(&client, &node).await;
        let bd = support::unique("bd");
        support::create_bd(&client, &ns, dir.path(), &bd, &node).await;
        operator_pods(&client, &ns).await;
        let cspcs: Api<CStorPoolCluster> = Api::namespaced(client.clone(), &ns);
        let cspis: Api<CStorPoolInstance> = Api::namespaced(client.clone(), &ns);
        let deps: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        let cspc = CStorPoolCluster::namespaced(
            name,
            &ns,
            CStorPoolClusterSpec {
                pools: Some(vec![support::pool_spec(
                    &node,
                    RaidGroupType::Stripe,
                    vec![support::raid_group(&[&bd])],
                )]),
                ..Default::default()
            },
        );
        cspcs.create(&PostParams::default(), &cspc).await.unwrap();
        let ctx = cspc_operator::Context::new(client.clone(), Default::default())
            .with_resync(Duration::from_secs(2));
        let operator = tokio::spawn(cspc_operator::run(ctx, Some(ns.clone())));
        support::bind_until(&client, &ns, name, 1).await;
        let cspi = support::cspi_on(&client, &ns, name, &node).await.name_any();
        let dep = wait_until("pool Deployment", DEADLINE, || async {
            deps.get_opt(&cspi).await.unwrap()
        })
        .await
        .unwrap();
        let new_images = images(&dep);

        age(&cspcs, name, false).await;
        wait_event(&client, &ns, name, "CSPC Reconcile").await;
        age(&cspis, &cspi, true).await;
        age_deployment(&deps, &cspi).await;
        let mut tasks = simulate(&client, &ns);
        tasks.push(operator);
        Some(Self {
            cluster,
            tool,
            client,
            ns,
            name,
            cspi,
            new_images,
            tasks,
            _dir: dir,
        })
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    fn task(&self) -> String {
        format!("upgrade-cstor-cspi-{}", self.cspi)
    }

    async fn stop(self) {
        for t in self.tasks {
            t.abort();
        }
        self.cluster.cleanup().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cspc_upgraded_pool_instance_first_then_rerun_is_a_noop() {
    let Some(f) = AgedCspc::start("cspc-up").await else {
        return;
    };
    let (name, cspi) = (f.name, f.cspi.as_str());
    let cspcs = f.api::<CStorPoolCluster>();
    let cspis = f.api::<CStorPoolInstance>();
    let deps = f.api::<Deployment>();

    assert_ne!(
        images(&deps.get(cspi).await.unwrap()),
        f.new_images,
        "aged: other images than the operator's"
    );
    let u = upgrader(f.tool.clone(), &f.ns);
    cspc::upgrade(&u, name).await.unwrap();

    // Back to the images the operator deploys (not `<repository>:3.6.0`): it has nothing to
    // roll out after the upgrade.
    let d = deps.get(cspi).await.unwrap();
    assert_eq!(
        images(&d),
        f.new_images,
        "images rewritten to the operator's"
    );
    assert_eq!(
        d.labels().get(label::VERSION).map(String::as_str),
        Some(OPENEBS_VERSION)
    );
    assert_eq!(template_version(&d).as_deref(), Some(OPENEBS_VERSION));
    assert_at(&cspis.get(cspi).await.unwrap(), OPENEBS_VERSION);
    assert_at(&cspcs.get(name).await.unwrap(), OPENEBS_VERSION);
    let (phase, steps, _) = task_steps(&f.client, &f.ns, &f.task()).await;
    assert_eq!(phase, Some(UpgradePhase::Success));
    assert_eq!(
        steps,
        vec![
            ("PRE_UPGRADE".to_string(), StepPhase::Completed),
            ("POOL_INSTANCE_UPGRADE".to_string(), StepPhase::Completed)
        ]
    );

    // A rerun changes nothing (beyond its task record).
    let before = tool_writes(&f.cluster).len();
    cspc::upgrade(&u, name).await.unwrap();
    assert_eq!(tool_writes(&f.cluster)[before..], [] as [String; 0]);
    assert_eq!(
        task_steps(&f.client, &f.ns, &f.task()).await.0,
        Some(UpgradePhase::Success)
    );
    f.stop().await;
}

/// The legacy (`openebs.io/v1alpha1`) kinds of backup records.
const LEGACY_BACKUP_KINDS: [(&str, &str); 3] = [
    ("CStorBackup", "cstorbackups"),
    ("CStorRestore", "cstorrestores"),
    ("CStorCompletedBackup", "cstorcompletedbackups"),
];

fn legacy_api(client: &Client, ns: &str, kind: &str, plural: &str) -> Api<DynamicObject> {
    Api::namespaced_with(
        client.clone(),
        ns,
        &cstor_operators::migrate::legacy(kind, plural),
    )
}

/// The CSPI's legacy records are v1 records now (same names and labels, v1 field names) and
/// gone from the legacy kinds; those of another pool instance are untouched.
async fn converted(f: &AgedCspc, labels: &serde_json::Value) {
    let backup = f.api::<CStorBackup>().get("b1-pvc-bk").await.unwrap();
    assert_eq!(backup.spec.backup_name, "b1");
    assert_eq!(backup.spec.snap_name, "s2");
    assert_eq!(backup.spec.prev_snap_name.as_deref(), Some("s1"));
    let want_labels: std::collections::BTreeMap<String, String> =
        serde_json::from_value(labels.clone()).unwrap();
    assert_eq!(backup.labels(), &want_labels);
    let restore = f.api::<CStorRestore>().get("b1-pvc-bk").await.unwrap();
    assert_eq!(restore.spec.restore_name, "b1-s2");
    assert_eq!(restore.spec.restore_src, "10.0.0.9:9000");
    assert_eq!(restore.labels(), &want_labels);
    let completed = f
        .api::<CStorCompletedBackup>()
        .get("b1-pvc-bk")
        .await
        .unwrap();
    assert_eq!(
        (
            completed.spec.last_snap_name.as_deref(),
            completed.spec.second_last_snap_name.as_deref()
        ),
        (Some("s2"), Some("s1")),
        "prevSnapName is lastSnapName, snapName secondLastSnapName"
    );
    assert_eq!(completed.labels(), &want_labels);
    for (kind, plural) in LEGACY_BACKUP_KINDS {
        let old = legacy_api(&f.client, &f.ns, kind, plural);
        assert!(
            old.get_opt("b1-pvc-bk").await.unwrap().is_none(),
            "legacy {kind} deleted"
        );
        assert!(
            old.get_opt("other-pool").await.unwrap().is_some(),
            "another pool's legacy {kind} left alone"
        );
    }
    assert!(
        f.api::<CStorBackup>()
            .get_opt("other-pool")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cspc_upgrade_moves_the_pool_instances_legacy_backup_records_to_v1() {
    let Some(f) = AgedCspc::start("cspc-bk").await else {
        return;
    };
    let cspi = f.cspi.as_str();
    let crds: Vec<_> = LEGACY_BACKUP_KINDS
        .iter()
        .map(|(kind, plural)| CrdSpec::new("openebs.io", "v1alpha1", kind, plural).crd())
        .collect();
    ensure_crds(&f.client, &crds).await.unwrap();
    // Records an older pool-manager wrote for the CSPI, and one of another pool instance.
    let specs = [
        json!({"name": "b1", "volumeName": "pvc-bk", "snapName": "s2", "prevSnapName": "s1",
            "backupDest": "10.0.0.9:9000"}),
        json!({"restoreName": "b1-s2", "volumeName": "pvc-bk", "restoreSrc": "10.0.0.9:9000"}),
        json!({"name": "b1", "volumeName": "pvc-bk", "prevSnapName": "s2", "snapName": "s1"}),
    ];
    let labels = json!({label::CSPI_NAME: cspi, "openebs.io/persistent-volume": "pvc-bk"});
    for ((kind, plural), spec) in LEGACY_BACKUP_KINDS.iter().zip(specs) {
        let api = legacy_api(&f.client, &f.ns, kind, plural);
        for (name, labels) in [
            ("b1-pvc-bk", labels.clone()),
            ("other-pool", json!({label::CSPI_NAME: "another-cspi"})),
        ] {
            let obj: DynamicObject = serde_json::from_value(json!({
                "apiVersion": "openebs.io/v1alpha1", "kind": kind,
                "metadata": {"name": name, "namespace": f.ns, "labels": labels},
                "spec": spec, "status": "Done"}))
            .unwrap();
            api.create(&PostParams::default(), &obj).await.unwrap();
        }
    }

    let u = upgrader(f.tool.clone(), &f.ns);
    cspc::upgrade(&u, f.name).await.unwrap();
    assert_at(
        &f.api::<CStorPoolInstance>().get(cspi).await.unwrap(),
        OPENEBS_VERSION,
    );

    converted(&f, &labels).await;
    let (phase, steps, _) = task_steps(&f.client, &f.ns, &f.task()).await;
    assert_eq!(phase, Some(UpgradePhase::Success));
    assert_eq!(steps.len(), 2, "{steps:?}");

    // A rerun is harmless: nothing written, the copies stay.
    let before = tool_writes(&f.cluster).len();
    cspc::upgrade(&u, f.name).await.unwrap();
    assert_eq!(tool_writes(&f.cluster)[before..], [] as [String; 0]);
    converted(&f, &labels).await;
    f.stop().await;
}

#[tokio::test]
async fn volume_refused_until_its_pools_are_upgraded_then_upgraded_in_order() {
    let h = cvc_support::Harness::start().await;
    let Some(server) = h.cluster.server() else {
        h.stop().await;
        return;
    };
    let tool = server.client_as(TOOL);
    operator_pods(&h.client, &h.ns).await;
    h.create_cspc("cspc-v").await;
    let pools = h.create_pools("cspc-v", 0, 3).await;
    let pv = "pvc-up";
    h.create_cvc(&h.cvc(pv, "cspc-v", 3, "1Gi")).await;
    h.wait_bound(pv).await;
    let cvcs = h.api::<CStorVolumeConfig>();
    let cvs = h.api::<CStorVolume>();
    let cvrs = h.api::<CStorVolumeReplica>();
    let deps = h.api::<Deployment>();
    let svcs = h.api::<Service>();
    let target = cstor_api::naming::target_deployment_name(pv);
    wait_until("target Deployment", DEADLINE, || async {
        deps.get_opt(&target).await.unwrap()
    })
    .await
    .unwrap();
    let new_images = images(&deps.get(&target).await.unwrap());

    // Age the volume: the CVC first (frozen from then on), then its objects.
    age(&cvcs, pv, false).await;
    wait_event(&h.client, &h.ns, pv, "CVC Reconcile").await;
    age(&cvs, pv, true).await;
    let replicas: Vec<String> = h.cvrs(pv).await.iter().map(ResourceExt::name_any).collect();
    assert_eq!(replicas.len(), 3);
    for r in &replicas {
        age(&cvrs, r, true).await;
    }
    age_deployment(&deps, &target).await;
    svcs.patch(
        pv,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {label::VERSION: OLD}}})),
    )
    .await
    .unwrap();
    let sims = simulate(&h.client, &h.ns);
    let u = upgrader(tool.clone(), &h.ns);
    let task = format!("upgrade-cstor-csi-volume-{pv}");

    // The pools are not upgraded: refused, nothing patched.
    let before = tool_writes(&h.cluster).len();
    let err = format!("{:#}", volume::upgrade(&u, pv).await.unwrap_err());
    assert!(err.contains("not in 3.6.0 version"), "{err}");
    assert!(err.contains("upgrade its CStorPoolCluster first"), "{err}");
    assert_eq!(tool_writes(&h.cluster)[before..], [] as [String; 0]);
    let d = deps.get(&target).await.unwrap();
    assert!(
        images(&d).iter().all(|i| i.ends_with(":3.5.0")),
        "{:?}",
        images(&d)
    );
    let (phase, steps, retries) = task_steps(&h.client, &h.ns, &task).await;
    assert_eq!(phase, Some(UpgradePhase::Started));
    assert_eq!(retries, Some(1));
    assert_eq!(
        steps,
        vec![
            ("PRE_UPGRADE".to_string(), StepPhase::Completed),
            ("REPLICA_UPGRADE".to_string(), StepPhase::Errored)
        ]
    );
    assert_eq!(cvcs.get(pv).await.unwrap().version_details.desired(), OLD);

    // Pools at 3.6.0 (as `upgrade cstor-cspc` leaves them): the volume goes through.
    for p in &pools {
        h.api::<CStorPoolInstance>()
            .patch(
                p,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {label::VERSION: OPENEBS_VERSION}}})),
            )
            .await
            .unwrap();
    }
    volume::upgrade(&u, pv).await.unwrap();
    for r in &replicas {
        assert_at(&cvrs.get(r).await.unwrap(), OPENEBS_VERSION);
    }
    assert_at(&cvs.get(pv).await.unwrap(), OPENEBS_VERSION);
    assert_at(&cvcs.get(pv).await.unwrap(), OPENEBS_VERSION);
    let d = deps.get(&target).await.unwrap();
    let want: Vec<String> = new_images
        .iter()
        .map(|i| {
            let repo = i.rsplit_once(':').unwrap().0;
            format!("{}:{OPENEBS_VERSION}", repo.trim_end_matches("-amd64"))
        })
        .collect();
    assert_eq!(images(&d), want, "target images rewritten");
    assert_eq!(
        d.labels().get(label::VERSION).map(String::as_str),
        Some(OPENEBS_VERSION)
    );
    assert_eq!(template_version(&d).as_deref(), Some(OPENEBS_VERSION));
    assert_eq!(
        svcs.get(pv)
            .await
            .unwrap()
            .labels()
            .get(label::VERSION)
            .map(String::as_str),
        Some(OPENEBS_VERSION)
    );
    let (phase, steps, _) = task_steps(&h.client, &h.ns, &task).await;
    assert_eq!(phase, Some(UpgradePhase::Success));
    assert_eq!(
        steps,
        vec![
            ("PRE_UPGRADE".to_string(), StepPhase::Completed),
            ("REPLICA_UPGRADE".to_string(), StepPhase::Completed),
            ("TARGET_UPGRADE".to_string(), StepPhase::Completed)
        ]
    );

    // A rerun changes nothing (beyond its task record).
    let before = tool_writes(&h.cluster).len();
    volume::upgrade(&u, pv).await.unwrap();
    assert_eq!(
        tool_writes(&h.cluster)[before..],
        [] as [String; 0],
        "rerun is a no-op"
    );
    // The same through `upgrade resource`: a task selected by its label is run and finalised.
    let mut labelled = UpgradeTask::namespaced(
        "batch-task",
        &h.ns,
        cstor_api::upgrade::UpgradeTaskSpec {
            from_version: OLD.into(),
            to_version: OPENEBS_VERSION.into(),
            cstor_volume: Some(cstor_api::upgrade::UpgradeVolume {
                pv_name: pv.into(),
                options: None,
            }),
            ..Default::default()
        },
    );
    labelled.labels_mut().insert("batch".into(), "one".into());
    Api::<UpgradeTask>::namespaced(h.client.clone(), &h.ns)
        .create(&PostParams::default(), &labelled)
        .await
        .unwrap();
    cstor_operators::upgrade::task::run_selected(&u, "batch=one")
        .await
        .unwrap();
    assert_eq!(tool_writes(&h.cluster)[before..], [] as [String; 0]);
    let (phase, steps, _) = task_steps(&h.client, &h.ns, "batch-task").await;
    assert_eq!(phase, Some(UpgradePhase::Success));
    assert_eq!(steps.len(), 3, "{steps:?}");
    let err = cstor_operators::upgrade::task::run_selected(&u, "batch=none")
        .await
        .unwrap_err();
    assert!(err.contains("no UpgradeTask matches batch=none"), "{err}");

    for s in sims {
        s.abort();
    }
    h.stop().await;
}
