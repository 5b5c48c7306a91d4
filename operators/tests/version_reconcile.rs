//! Upstream's version reconcile in every controller that runs it, on a
//! [`cstor_testkit::TestCluster`]: an object whose `versionDetails.desired` is this release and
//! whose `status.current` is an older one is moved to `Reconciled` at the new version; one
//! whose current and desired are both an older release stays frozen (cspc- and cvc-operator
//! say so in an event); an invalid version is a Warning `FailedUpgrade` with
//! `status.message`/`status.reason` and nothing else happens to the object.

#[path = "cvc_support.rs"]
mod cvc_support;
mod support;

use std::{sync::Arc, time::Duration};

use cstor_api::{
    constants::{label, version::OPENEBS_VERSION},
    cstor::{
        self, CStorPoolCluster, CStorPoolClusterSpec, CStorPoolInstance, CStorVolume,
        CStorVolumeConfig, CStorVolumeConfigPhase, CStorVolumeReplica, RaidGroupType,
        VersionDetails, VersionState, from_value,
    },
};
use cstor_operators::{cspc_operator, version::Versioned};
use cstor_testkit::{TestCluster, wait_until};
use k8s_openapi::api::events::v1::Event;
use kube::{
    Api, Client, ResourceExt,
    api::{ListParams, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(60);

fn details(current: &str, desired: &str) -> Value {
    json!({"desired": desired, "status": {"current": current, "dependentsUpgraded": true}})
}

/// Events about object `name` with `reason`.
async fn events(client: &Client, ns: &str, name: &str, reason: &str) -> Vec<Event> {
    Api::<Event>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| {
            e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
                && e.reason.as_deref() == Some(reason)
        })
        .collect()
}

async fn wait_event(client: &Client, ns: &str, name: &str, reason: &str) -> Event {
    wait_until(&format!("event {reason} on {name}"), DEADLINE, || async {
        events(client, ns, name, reason).await.into_iter().next()
    })
    .await
    .unwrap()
}

fn vd<K: Versioned>(obj: &K) -> VersionDetails {
    obj.version_details().cloned().unwrap_or_default()
}

fn state<K: Versioned>(obj: &K) -> Option<VersionState> {
    vd(obj).status.and_then(|s| s.state)
}

/// Waits until `name` is at `version` and `Reconciled`.
async fn wait_reconciled<K: Versioned>(api: &Api<K>, name: &str, version: &str) -> K {
    let res = wait_until(
        &format!("{} {name} reconciled", K::KIND),
        DEADLINE,
        || async {
            api.get(name).await.ok().filter(|o| {
                vd(o).current() == version && state(o) == Some(VersionState::Reconciled)
            })
        },
    )
    .await;
    match res {
        Ok(o) => o,
        Err(e) => panic!("{e}; now {:#?}", api.get(name).await.map(|o| vd(&o))),
    }
}

/// Asserts the recorded failure of an invalid version and that `versionDetails` otherwise kept
/// what `before` had.
fn assert_failed<K: Versioned>(obj: &K, before: &VersionDetails, reason: &str) {
    let after = vd(obj);
    let st = after.status.clone().unwrap_or_default();
    assert_eq!(
        st.message.as_deref(),
        Some(format!("Failed to reconcile {} version", K::KIND).as_str())
    );
    assert_eq!(st.reason.as_deref(), Some(reason));
    assert_eq!(after.desired, before.desired);
    assert_eq!(after.current(), before.current());
}

#[tokio::test]
async fn cvc_frozen_at_an_old_release_until_desired_moves_then_reconciled_and_provisioned() {
    let h = cvc_support::Harness::start().await;
    h.create_cspc("cspc-v").await;
    h.create_pools("cspc-v", 0, 3).await;
    let mut cvc = h.cvc("pvc-old", "cspc-v", 1, "1Gi");
    cvc.version_details = from_value(details("3.5.0", "3.5.0")).unwrap();
    h.create_cvc(&cvc).await;

    let ev = wait_event(&h.client, &h.ns, "pvc-old", "CVC Reconcile").await;
    assert_eq!(ev.type_.as_deref(), Some("Warning"));
    let note = ev.note.unwrap_or_default();
    assert!(
        note.contains("cvc operator version is 3.6.0 but cvc version is 3.5.0"),
        "{note}"
    );
    let api = h.api::<CStorVolumeConfig>();
    let frozen = api.get("pvc-old").await.unwrap();
    assert_eq!(frozen.status.phase, Some(CStorVolumeConfigPhase::Pending));
    assert!(h.cvrs("pvc-old").await.is_empty(), "frozen: no replicas");
    assert!(
        h.api::<CStorVolume>()
            .get_opt("pvc-old")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(frozen.version_details.current(), "3.5.0");

    // A frozen CVC can still be deleted: the operator drops its finalizer.
    let mut doomed = h.cvc("pvc-old-gone", "cspc-v", 1, "1Gi");
    doomed.version_details = from_value(details("3.5.0", "3.5.0")).unwrap();
    h.create_cvc(&doomed).await;
    wait_event(&h.client, &h.ns, "pvc-old-gone", "CVC Reconcile").await;
    api.delete("pvc-old-gone", &Default::default())
        .await
        .unwrap();
    wait_until("frozen CVC deleted", DEADLINE, || async {
        api.get_opt("pvc-old-gone")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await
    .unwrap();

    // The upgrade job's step: desired moves to this release.
    api.patch(
        "pvc-old",
        &PatchParams::default(),
        &Patch::Merge(json!({"versionDetails": {"desired": OPENEBS_VERSION}})),
    )
    .await
    .unwrap();
    wait_reconciled(&api, "pvc-old", OPENEBS_VERSION).await;
    h.wait_bound("pvc-old").await;
    h.stop().await;
}

#[tokio::test]
async fn cvc_with_invalid_current_version_fails_upgrade_and_nothing_else_happens() {
    let h = cvc_support::Harness::start().await;
    h.create_cspc("cspc-w").await;
    h.create_pools("cspc-w", 0, 3).await;
    let mut cvc = h.cvc("pvc-bad", "cspc-w", 1, "1Gi");
    cvc.version_details = from_value(details("1.2.0", OPENEBS_VERSION)).unwrap();
    h.create_cvc(&cvc).await;
    let before = cvc.version_details.clone();

    let ev = wait_event(&h.client, &h.ns, "pvc-bad", "FailedUpgrade").await;
    assert_eq!(ev.type_.as_deref(), Some("Warning"));
    assert_eq!(
        ev.note.as_deref(),
        Some("Failed to upgrade cvc to 3.6.0 version: invalid current version 1.2.0")
    );
    let api = h.api::<CStorVolumeConfig>();
    let now = wait_until("failure recorded", DEADLINE, || async {
        let c = api.get("pvc-bad").await.unwrap();
        c.version_details
            .status
            .as_ref()
            .is_some_and(|s| s.reason.is_some())
            .then_some(c)
    })
    .await
    .unwrap();
    assert_failed(&now, &before, "invalid current version 1.2.0");
    assert_eq!(now.status.phase, Some(CStorVolumeConfigPhase::Pending));
    assert_eq!(now.spec, cvc.spec);
    assert!(h.cvrs("pvc-bad").await.is_empty());
    h.stop().await;
}

/// A CSPC on one node and block device; the cspc-operator running.
struct CspcSetup {
    cluster: TestCluster,
    client: Client,
    ns: String,
    operator: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

async fn cspc_setup(name: &str, version_details: Option<Value>) -> CspcSetup {
    support::init_tracing();
    let cluster = TestCluster::start().await;
    let client = cluster.client();
    let ns = cluster.namespace().to_string();
    let dir = tempfile::tempdir().unwrap();
    let node = support::unique("node");
    support::create_node(&client, &node).await;
    let bd = support::unique("bd");
    support::create_bd(&client, &ns, dir.path(), &bd, &node).await;
    let mut cspc = CStorPoolCluster::namespaced(
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
    cspc.version_details = version_details.map(|v| from_value(v).unwrap());
    Api::<CStorPoolCluster>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &cspc)
        .await
        .unwrap();
    let ctx = cspc_operator::Context::new(client.clone(), Default::default())
        .with_resync(Duration::from_secs(2));
    let operator = tokio::spawn(cspc_operator::run(ctx, Some(ns.clone())));
    CspcSetup {
        cluster,
        client,
        ns,
        operator,
        _dir: dir,
    }
}

async fn claims(client: &Client, ns: &str) -> usize {
    Api::<cstor_api::ndm::BlockDeviceClaim>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cspc_frozen_at_an_old_release_until_desired_moves_then_reconciled() {
    let s = cspc_setup("cspc-old", Some(details("3.5.0", "3.5.0"))).await;
    let api: Api<CStorPoolCluster> = Api::namespaced(s.client.clone(), &s.ns);
    let ev = wait_event(&s.client, &s.ns, "cspc-old", "CSPC Reconcile").await;
    let note = ev.note.unwrap_or_default();
    assert!(
        note.contains("cspc operator version is 3.6.0 but cspc version is 3.5.0"),
        "{note}"
    );
    assert_eq!(claims(&s.client, &s.ns).await, 0, "frozen: nothing claimed");
    assert_eq!(vd(&api.get("cspc-old").await.unwrap()).current(), "3.5.0");

    api.patch(
        "cspc-old",
        &PatchParams::default(),
        &Patch::Merge(json!({"versionDetails": {"desired": OPENEBS_VERSION}})),
    )
    .await
    .unwrap();
    wait_reconciled(&api, "cspc-old", OPENEBS_VERSION).await;
    support::bind_until(&s.client, &s.ns, "cspc-old", 1).await;
    let cspis: Api<CStorPoolInstance> = Api::namespaced(s.client.clone(), &s.ns);
    wait_until("CSPI created after the upgrade", DEADLINE, || async {
        let l = cspis
            .list(&ListParams::default().labels(&format!("{}=cspc-old", label::CSTOR_POOL_CLUSTER)))
            .await
            .unwrap();
        (!l.items.is_empty()).then_some(())
    })
    .await
    .unwrap();
    s.operator.abort();
    s.cluster.cleanup().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cspc_without_version_is_populated_and_invalid_desired_fails_upgrade() {
    let s = cspc_setup("cspc-new", None).await;
    let api: Api<CStorPoolCluster> = Api::namespaced(s.client.clone(), &s.ns);
    let c = wait_until("versionDetails populated", DEADLINE, || async {
        api.get("cspc-new")
            .await
            .ok()
            .filter(|c| !vd(c).current().is_empty())
    })
    .await
    .unwrap();
    assert_eq!(vd(&c).desired(), OPENEBS_VERSION);
    assert_eq!(vd(&c).current(), OPENEBS_VERSION);

    let bad = CStorPoolCluster::namespaced(
        "cspc-bad",
        &s.ns,
        CStorPoolClusterSpec {
            pools: Some(vec![]),
            ..Default::default()
        },
    );
    let mut bad = bad;
    bad.version_details = Some(from_value(details("3.5.0", "9.9.9")).unwrap());
    let before = bad.version_details.clone().unwrap();
    api.create(&PostParams::default(), &bad).await.unwrap();
    let ev = wait_event(&s.client, &s.ns, "cspc-bad", "FailedUpgrade").await;
    assert_eq!(
        ev.note.as_deref(),
        Some("Failed to upgrade cspc to 9.9.9 version: invalid desired version 9.9.9")
    );
    let now = wait_until("failure recorded", DEADLINE, || async {
        api.get("cspc-bad")
            .await
            .ok()
            .filter(|c| vd(c).status.and_then(|s| s.reason).is_some())
    })
    .await
    .unwrap();
    assert_failed(&now, &before, "invalid desired version 9.9.9");
    assert!(
        now.status.is_none(),
        "no CSPC status written: {:?}",
        now.status
    );
    s.operator.abort();
    s.cluster.cleanup().await.unwrap();
}

/// The pool-manager reconciles the version of its CSPI and its CVRs before anything else (its
/// data engine answers nothing here, so nothing else could happen).
#[tokio::test]
async fn pool_manager_reconciles_cspi_and_cvr_versions() {
    let cluster = TestCluster::start().await;
    let client = cluster.client();
    let ns = cluster.namespace().to_string();
    let cspis: Api<CStorPoolInstance> = Api::namespaced(client.clone(), &ns);
    let cvrs: Api<CStorVolumeReplica> = Api::namespaced(client.clone(), &ns);
    let cspi: CStorPoolInstance = from_value(json!({
        "apiVersion": "cstor.openebs.io/v1", "kind": "CStorPoolInstance",
        "metadata": {"name": "pool-a", "namespace": ns, "labels": {label::VERSION: "3.5.0"}},
        "spec": {"hostName": "n", "nodeSelector": {}, "dataRaidGroups": [{"blockDevices": [{"blockDeviceName": "bd-x"}]}],
            "poolConfig": {"dataRaidGroupType": "stripe"}},
        "versionDetails": details("3.5.0", OPENEBS_VERSION)
    }))
    .unwrap();
    let cspi = cspis.create(&PostParams::default(), &cspi).await.unwrap();
    let uid = cspi.uid().unwrap();
    let cvr = |name: &str, vd: Value| -> CStorVolumeReplica {
        from_value(json!({
            "apiVersion": "cstor.openebs.io/v1", "kind": "CStorVolumeReplica",
            "metadata": {"name": name, "namespace": ns, "labels": {label::CSPI_UID: uid}},
            "spec": {},
            "versionDetails": vd
        }))
        .unwrap()
    };
    for (name, v) in [
        ("r-old", details("3.5.0", OPENEBS_VERSION)),
        ("r-bad", details("0.9.0", OPENEBS_VERSION)),
        ("r-frozen", details("3.5.0", "3.5.0")),
    ] {
        cvrs.create(&PostParams::default(), &cvr(name, v))
            .await
            .unwrap();
    }
    let engine: Arc<dyn cstor_operators::engine::DataEngine> = Arc::new(
        cstor_operators::engine::CstorEngine::new(Arc::new(cstor_api::exec::ScriptedRunner::new())),
    );
    let ctx = cstor_operators::pool_manager::Context::new(
        client.clone(),
        engine,
        &ns,
        uid.clone(),
        "unused",
    )
    .with_pool_name("cstor-unused")
    .with_resync(Duration::from_secs(2));
    let manager = tokio::spawn(cstor_operators::pool_manager::run(ctx));

    wait_reconciled(&cspis, "pool-a", OPENEBS_VERSION).await;
    wait_reconciled(&cvrs, "r-old", OPENEBS_VERSION).await;
    let ev = wait_event(&client, &ns, "r-bad", "FailedUpgrade").await;
    assert_eq!(
        ev.note.as_deref(),
        Some("Failed to upgrade cvr to 3.6.0 version: invalid current version 0.9.0")
    );
    let bad = wait_until("CVR failure recorded", DEADLINE, || async {
        cvrs.get("r-bad")
            .await
            .ok()
            .filter(|c| vd(c).status.and_then(|s| s.reason).is_some())
    })
    .await
    .unwrap();
    assert_failed(
        &bad,
        &from_value(details("0.9.0", OPENEBS_VERSION)).unwrap(),
        "invalid current version 0.9.0",
    );
    assert!(
        bad.status.is_none(),
        "nothing else written: {:?}",
        bad.status
    );
    // current == desired: nothing for the version reconcile to do, whatever the release.
    let frozen = cvrs.get("r-frozen").await.unwrap();
    assert_eq!(vd(&frozen).current(), "3.5.0");
    assert_eq!(state(&frozen), None);
    manager.abort();
    cluster.cleanup().await.unwrap();
}

/// The volume-manager reconciles its CV's version before configuring the target.
#[tokio::test]
async fn volume_manager_reconciles_cv_version_then_configures_the_target() {
    use cstor_operators::volume_manager::{
        ConfOptions, ControlClient, IstgtConf, ManagerConfig, VolumeManager, fake_istgt::FakeIstgt,
    };
    let cluster = TestCluster::start().await;
    let ns = cluster.namespace().to_owned();
    let api: Api<CStorVolume> = Api::namespaced(cluster.client(), &ns);
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/volume_manager/cv-pvc-1.yaml"
    ))
    .unwrap();
    let mut cv: CStorVolume = cstor::from_yaml(&text).unwrap();
    cv.metadata.uid = None;
    cv.metadata.namespace = Some(ns.clone());
    let name = cv.name_any();
    let mut bad = cv.clone();
    cv.version_details = Some(from_value(details("3.5.0", OPENEBS_VERSION)).unwrap());
    let cv = api.create(&PostParams::default(), &cv).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let fake = FakeIstgt::start(dir.path().join("ctl")).await.unwrap();
    let conf = Arc::new(IstgtConf::new(dir.path().join("istgt.conf")));
    let cfg = |uid: String| ManagerConfig {
        namespace: ns.clone(),
        volume_uid: uid,
        resync_interval: Duration::from_secs(3600),
        istgt_retry_interval: Duration::from_millis(100),
        pod_name: String::new(),
        node_name: String::new(),
        conf_options: ConfOptions::default(),
    };
    let manager = VolumeManager::new(
        cluster.client(),
        ControlClient::new(fake.path()),
        conf.clone(),
        cfg(cv.uid().unwrap()),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(manager.run(async move {
        let _ = stopped.await;
    }));
    let done = wait_reconciled(&api, &name, OPENEBS_VERSION).await;
    assert_eq!(vd(&done).desired(), OPENEBS_VERSION);
    wait_until(
        "istgt.conf written after the version reconcile",
        DEADLINE,
        || async { conf.path().exists().then_some(()) },
    )
    .await
    .unwrap();
    let _ = stop.send(());
    task.await.unwrap().unwrap();

    // An invalid desired version: recorded, and the target is not configured.
    api.delete(&name, &Default::default()).await.unwrap();
    bad.metadata.name = Some(format!("{name}-bad"));
    bad.version_details = Some(from_value(details("3.5.0", "3.7.0")).unwrap());
    let bad = api.create(&PostParams::default(), &bad).await.unwrap();
    let dir2 = tempfile::tempdir().unwrap();
    let conf2 = Arc::new(IstgtConf::new(dir2.path().join("istgt.conf")));
    let manager = VolumeManager::new(
        cluster.client(),
        ControlClient::new(fake.path()),
        conf2.clone(),
        cfg(bad.uid().unwrap()),
    );
    assert!(manager.reconcile_version(&bad).await.unwrap().is_none());
    let now = api.get(&bad.name_any()).await.unwrap();
    assert_failed(
        &now,
        bad.version_details.as_ref().unwrap(),
        "invalid desired version 3.7.0",
    );
    assert_eq!(now.status, bad.status, "nothing else written");
    assert!(!conf2.path().exists());
    let ev = wait_event(&cluster.client(), &ns, &bad.name_any(), "FailedUpgrade").await;
    assert_eq!(
        ev.note.as_deref(),
        Some("Failed to upgrade cv to 3.7.0 version: invalid desired version 3.7.0")
    );
    cluster.cleanup().await.unwrap();
}

/// The version writes carry the resourceVersion they were computed from: a copy read before a
/// concurrent change of `desired` is not acted on; the object is read again and judged as it
/// is now.
#[tokio::test]
async fn a_stale_copy_is_read_again_and_never_overwrites_a_concurrent_change() {
    let cluster = TestCluster::start().await;
    let client = cluster.client();
    let ns = cluster.namespace().to_string();
    let cvrs: Api<CStorVolumeReplica> = Api::namespaced(client.clone(), &ns);
    let cvr: CStorVolumeReplica = from_value(json!({
        "apiVersion": "cstor.openebs.io/v1", "kind": "CStorVolumeReplica",
        "metadata": {"name": "r-race", "namespace": ns},
        "spec": {},
        "versionDetails": details("3.5.0", OPENEBS_VERSION)
    }))
    .unwrap();
    let stale = cvrs.create(&PostParams::default(), &cvr).await.unwrap();
    cvrs.patch(
        "r-race",
        &PatchParams::default(),
        &Patch::Merge(json!({"versionDetails": {"desired": "3.7.0"}})),
    )
    .await
    .unwrap();
    let events = cstor_operators::events::Events::new(client.clone(), "version-test");
    let err = cstor_operators::version::reconcile_version(&cvrs, &events, &stale, OPENEBS_VERSION)
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "invalid desired version 3.7.0");
    let now = cvrs.get("r-race").await.unwrap();
    assert_eq!(vd(&now).current(), "3.5.0");
    assert_eq!(vd(&now).desired(), "3.7.0");
    assert_ne!(state(&now), Some(VersionState::Reconciled));

    // And a stale copy of a valid upgrade still ends Reconciled at the current desired.
    cvrs.patch(
        "r-race",
        &PatchParams::default(),
        &Patch::Merge(json!({"versionDetails": {"desired": OPENEBS_VERSION}})),
    )
    .await
    .unwrap();
    let written =
        cstor_operators::version::reconcile_version(&cvrs, &events, &stale, OPENEBS_VERSION)
            .await
            .unwrap()
            .expect("written");
    assert_eq!(vd(&written).current(), OPENEBS_VERSION);
    assert_eq!(state(&written), Some(VersionState::Reconciled));
    assert!(
        vd(&written).status.unwrap().reason.is_none(),
        "error cleared"
    );
    cluster.cleanup().await.unwrap();
}
