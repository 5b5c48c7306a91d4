//! `cstor-migrate cstor-spc` on the test API server (or `CSTOR_TEST_KUBECONFIG`'s cluster) with
//! a REAL zfs-fuse pool: a legacy StoragePoolClaim with one CStorPool whose zpool
//! `cstor-<CSP uid>` holds a replica dataset becomes a CStorPoolCluster; the cspc-operator makes
//! the CSPI, the pool manager imports the old pool under the name `cstor-<CSPC uid>` and the
//! dataset is still there; claims, replicas and the MigrationTask are as upstream leaves them. A
//! dry run writes nothing; a second run finds the work done; a broken SPC is refused with the
//! reason in the MigrationTask and nothing created.
//!
//! The legacy pool pod is played by the test: its pool is imported while its Deployment has a
//! replica and exported (its zrepl gone) once the migration scaled the Deployment to 0.

mod support;

use std::{sync::Arc, time::Duration};

use cstor_api::{
    cstor::{CStorPoolCluster, CStorPoolInstance, CStorPoolInstancePhase},
    exec::{Cmd, HostRunner, Runner},
    migration::{MigrationPhase, MigrationTask, StepPhase},
    ndm::BlockDeviceClaim,
};
use cstor_operators::{
    cspc_operator,
    migrate::{Migrator, pool},
};
use cstor_testkit::{CrdSpec, TestCluster, cluster::ensure_crds, wait_until};
use k8s_openapi::api::{apps::v1::Deployment, core::v1::Pod};
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, DynamicObject, ListParams, PostParams},
};
use serde_json::json;

const DEADLINE: Duration = Duration::from_secs(120);

/// Permissive CRDs of the legacy kinds the migration reads.
async fn legacy_crds(client: &Client) {
    let crds: Vec<_> = [
        ("StoragePoolClaim", "storagepoolclaims", true),
        ("CStorPool", "cstorpools", true),
        ("CStorVolumeReplica", "cstorvolumereplicas", false),
        ("CStorBackup", "cstorbackups", false),
        ("CStorCompletedBackup", "cstorcompletedbackups", false),
        ("CStorRestore", "cstorrestores", false),
    ]
    .into_iter()
    .map(|(kind, plural, cluster)| {
        let spec = CrdSpec::new("openebs.io", "v1alpha1", kind, plural);
        if cluster { spec.cluster_scoped() } else { spec }.crd()
    })
    .collect();
    ensure_crds(client, &crds).await.unwrap();
}

fn pool_api(client: &Client) -> Api<DynamicObject> {
    Api::all_with(
        client.clone(),
        &cstor_operators::migrate::legacy("StoragePoolClaim", "storagepoolclaims"),
    )
}

fn csp_api(client: &Client) -> Api<DynamicObject> {
    Api::all_with(
        client.clone(),
        &cstor_operators::migrate::legacy("CStorPool", "cstorpools"),
    )
}

async fn create_dynamic(api: &Api<DynamicObject>, value: serde_json::Value) -> DynamicObject {
    let obj: DynamicObject = serde_json::from_value(value).unwrap();
    api.create(&PostParams::default(), &obj).await.unwrap()
}

async fn zfs(runner: &dyn Runner, program: &str, args: &[&str]) -> String {
    let cmd = Cmd::new(program).args(args.iter().copied());
    runner
        .run_ok(&cmd)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_pool_moves_to_a_cspc_with_its_data() {
    support::init_tracing();
    if let Err(why) = support::ensure_zfs_fuse().await {
        println!("SKIPPED legacy_pool_moves_to_a_cspc_with_its_data: zfs-fuse: {why}");
        return;
    }
    let cluster = TestCluster::start().await;
    let client = cluster.client();
    let ns = cluster.namespace().to_string();
    let dir = tempfile::tempdir().unwrap();
    let runner: Arc<dyn Runner> = Arc::new(HostRunner::new());
    legacy_crds(&client).await;

    // The legacy world: node, disk, SPC, CSP with its pool, claim, Deployment, replica; the
    // cspc-operator's pod at this tool's version.
    let node = support::unique("node");
    support::create_node(&client, &node).await;
    let bd = support::unique("bd");
    let path = support::create_bd(&client, &ns, dir.path(), &bd, &node).await;
    let spc = support::unique("spc");
    create_dynamic(
        &pool_api(&client),
        json!({"apiVersion": "openebs.io/v1alpha1", "kind": "StoragePoolClaim",
            "metadata": {"name": spc},
            "spec": {"name": spc, "type": "disk", "blockDevices": {"blockDeviceList": [bd]},
                "poolSpec": {"poolType": "striped", "thickProvisioning": false}}}),
    )
    .await;
    let csp_name = format!("{spc}-x7k2");
    let csp = create_dynamic(
        &csp_api(&client),
        json!({"apiVersion": "openebs.io/v1alpha1", "kind": "CStorPool",
            "metadata": {"name": csp_name, "finalizers": ["openebs.io/pool-protection"],
                "labels": {pool::SPC_LABEL: spc, "kubernetes.io/hostname": node,
                    "openebs.io/version": "2.12.0", "openebs.io/cas-type": "cstor"}},
            "spec": {"group": [{"blockDevice": [{"name": bd, "deviceID": path, "inUseByPool": true}]}],
                "poolSpec": {"poolType": "striped", "thickProvisioning": false}}}),
    )
    .await;
    let old_pool = format!("cstor-{}", csp.uid().unwrap());
    let bdcs: Api<BlockDeviceClaim> = Api::namespaced(client.clone(), &ns);
    let claim: BlockDeviceClaim = serde_json::from_value(json!({
        "apiVersion": "openebs.io/v1alpha1", "kind": "BlockDeviceClaim",
        "metadata": {"name": format!("bdc-{bd}"), "namespace": ns,
            "labels": {pool::SPC_LABEL: spc}, "finalizers": [pool::SPC_FINALIZER]},
        "spec": {"blockDeviceName": bd, "blockDeviceNodeAttributes": {"hostName": node},
            "resources": {"requests": {"storage": "128Mi"}}}
    }))
    .unwrap();
    bdcs.create(&PostParams::default(), &claim).await.unwrap();
    assert_eq!(support::bind_claims(&client, &ns).await, 1);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let dep: Deployment = serde_json::from_value(json!({
        "metadata": {"name": csp_name, "labels": {pool::CSP_LABEL: csp_name, pool::SPC_LABEL: spc, "app": "cstor-pool"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {pool::CSP_LABEL: csp_name}},
            "template": {"metadata": {"labels": {pool::CSP_LABEL: csp_name, "app": "cstor-pool"}},
                "spec": {"containers": [
                    {"name": "cstor-pool", "image": "openebs/cstor-pool:2.12.0",
                        "resources": {"limits": {"memory": "2Gi"}}},
                    {"name": "cstor-pool-mgmt", "image": "openebs/cstor-pool-mgmt:2.12.0"}]}}}
    }))
    .unwrap();
    deployments
        .create(&PostParams::default(), &dep)
        .await
        .unwrap();
    let cvrs = Api::<DynamicObject>::namespaced_with(
        client.clone(),
        &ns,
        &cstor_operators::migrate::legacy("CStorVolumeReplica", "cstorvolumereplicas"),
    );
    create_dynamic(
        &cvrs,
        json!({"apiVersion": "openebs.io/v1alpha1", "kind": "CStorVolumeReplica",
            "metadata": {"name": format!("pvc-legacy-{csp_name}"), "namespace": ns,
                "labels": {"cstorpool.openebs.io/name": csp_name, "cstorpool.openebs.io/uid": csp.uid(),
                    "cstorvolume.openebs.io/name": "pvc-legacy", "openebs.io/persistent-volume": "pvc-legacy"},
                "annotations": {"cstorpool.openebs.io/hostname": node}},
            "spec": {"targetIP": "10.0.0.7", "capacity": "1G", "replicaid": "R1"}}),
    )
    .await;
    // The old pool's backup records (legacy kinds), labelled with the CStorPool's uid.
    for (kind, plural, spec) in [
        (
            "CStorBackup",
            "cstorbackups",
            json!({"name": "b1", "volumeName": "pvc-legacy",
            "snapName": "s2", "prevSnapName": "s1", "backupDest": "10.0.0.9:9000"}),
        ),
        (
            "CStorCompletedBackup",
            "cstorcompletedbackups",
            json!({"name": "b1",
            "volumeName": "pvc-legacy", "prevSnapName": "s2", "snapName": "s1"}),
        ),
    ] {
        create_dynamic(
            &Api::namespaced_with(
                client.clone(),
                &ns,
                &cstor_operators::migrate::legacy(kind, plural),
            ),
            json!({"apiVersion": "openebs.io/v1alpha1", "kind": kind,
                "metadata": {"name": "b1-pvc-legacy", "namespace": ns, "labels": {
                    "cstorpool.openebs.io/uid": csp.uid(), "cstorpool.openebs.io/name": csp_name,
                    "openebs.io/persistent-volume": "pvc-legacy"}},
                "spec": spec, "status": "Done"}),
        )
        .await;
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let op_pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "cspc-operator-0", "labels": {
            "openebs.io/component-name": "cspc-operator",
            "openebs.io/version": env!("CARGO_PKG_VERSION")}},
        "spec": {"containers": [{"name": "cspc-operator", "image": "x"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &op_pod).await.unwrap();
    zfs(
        &*runner,
        "zpool",
        &["create", "-f", "-m", "none", &old_pool, &path],
    )
    .await;
    let replica = format!("{old_pool}/pvc-legacy");
    zfs(
        &*runner,
        "zfs",
        &["create", "-o", "cstor:data=kept", &replica],
    )
    .await;

    let outcome = support::scenario(
        Duration::from_secs(300),
        story(&client, &ns, &spc, &bd, &old_pool, dir.path()),
    )
    .await;
    let cspc_uid = Api::<CStorPoolCluster>::namespaced(client.clone(), &ns)
        .get_opt(&spc)
        .await
        .ok()
        .flatten()
        .and_then(|c| c.uid());
    let mut pools = vec![old_pool.clone()];
    pools.extend(cspc_uid.map(|u| cstor_api::naming::pool_name(&u)));
    support::destroy_pools(&*runner, &pools).await;
    support::delete_node(&client, &node).await;
    outcome.finish();
}

async fn story(
    client: &Client,
    ns: &str,
    spc: &str,
    bd: &str,
    old_pool: &str,
    dir: &std::path::Path,
) {
    let runner: Arc<dyn Runner> = Arc::new(HostRunner::new());
    let mut m = Migrator::new(client.clone(), ns);
    m.poll = Duration::from_millis(200);
    m.cspi_tries = 600;

    // Dry run: the CSPC it would make, and nothing written.
    m.dry_run = true;
    let dry = pool::migrate(&m, spc, None, 6).await.unwrap();
    let pool::Outcome::DryRun(cspc) = dry else {
        panic!("dry run gave {dry:?}");
    };
    let pools = cspc.spec.pools.clone().unwrap_or_default();
    assert_eq!(pools.len(), 1);
    assert_eq!(
        pools[0].data_raid_groups[0].block_devices[0].block_device_name,
        bd
    );
    let cspcs: Api<CStorPoolCluster> = Api::namespaced(client.clone(), ns);
    let tasks: Api<MigrationTask> = Api::namespaced(client.clone(), ns);
    assert!(cspcs.get_opt(spc).await.unwrap().is_none());
    assert!(
        tasks
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let spc_obj = pool_api(client).get(spc).await.unwrap();
    assert!(
        !spc_obj
            .annotations()
            .contains_key("openebs.io/cstor-pool-cluster")
    );

    // The operators, and the legacy pool pod: exported once its Deployment is at 0.
    let op_ctx = cspc_operator::Context::new(client.clone(), Default::default())
        .with_resync(Duration::from_secs(2));
    let operator = tokio::spawn(cspc_operator::run(op_ctx, Some(ns.to_string())));
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let (r2, csp_name, old) = (runner.clone(), format!("{spc}-x7k2"), old_pool.to_string());
    let d2 = deployments.clone();
    let legacy_pod = tokio::spawn(async move {
        wait_until("old pool Deployment at 0", DEADLINE, || async {
            d2.get(&csp_name).await.ok().and_then(|d| d.spec?.replicas) == Some(0)
        })
        .await
        .unwrap();
        zfs(&*r2, "zpool", &["export", &old]).await;
    });
    let cspis: Api<CStorPoolInstance> = Api::namespaced(client.clone(), ns);
    let (c2, ns2, dir2, cspis2, cspcs2, spc2) = (
        client.clone(),
        ns.to_string(),
        dir.to_path_buf(),
        cspis.clone(),
        cspcs.clone(),
        spc.to_string(),
    );
    let pool_manager = tokio::spawn(async move {
        let cspi = wait_until("the CSPI", DEADLINE, || async {
            cspis2
                .list(&ListParams::default())
                .await
                .ok()
                .and_then(|l| l.items.into_iter().next())
        })
        .await
        .unwrap();
        let cspc = cspcs2.get(&spc2).await.unwrap();
        let pool = cstor_api::naming::pool_name(&cspc.uid().unwrap());
        let (task, _, _) = support::spawn_pool_manager(&c2, &ns2, &cspi, &pool, &dir2);
        task.await.ok();
    });

    m.dry_run = false;
    let outcome = tokio::time::timeout(DEADLINE, pool::migrate(&m, spc, None, 6))
        .await
        .expect("migration within the deadline")
        .unwrap();
    assert_eq!(outcome, pool::Outcome::Migrated);
    legacy_pod.await.unwrap();

    // The pool runs as the CSPC's, with its data; the legacy objects are gone or re-pointed.
    let cspc = cspcs.get(spc).await.unwrap();
    assert_eq!(
        cspc.annotations()
            .get(pool::MIGRATED_FROM)
            .map(String::as_str),
        Some(spc)
    );
    assert!(
        !cspc
            .annotations()
            .contains_key("reconcile.openebs.io/disable-dependants")
    );
    let new_pool = cstor_api::naming::pool_name(&cspc.uid().unwrap());
    let cspi = cspis
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .remove(0);
    assert_eq!(
        cspi.status.as_ref().and_then(|s| s.phase.clone()),
        Some(CStorPoolInstancePhase::Online)
    );
    let kept = zfs(
        &*runner,
        "zfs",
        &[
            "get",
            "-H",
            "-o",
            "value",
            "cstor:data",
            &format!("{new_pool}/pvc-legacy"),
        ],
    )
    .await;
    assert_eq!(kept.trim(), "kept", "the replica dataset came along");
    let listed = zfs(&*runner, "zpool", &["list", "-H", "-o", "name"]).await;
    assert!(!listed.lines().any(|l| l.trim() == old_pool), "{listed}");
    assert!(
        pool_api(client).get_opt(spc).await.unwrap().is_none(),
        "SPC deleted"
    );
    let bdcs: Api<BlockDeviceClaim> = Api::namespaced(client.clone(), ns);
    let claim = bdcs.get(&format!("bdc-{bd}")).await.unwrap();
    assert_eq!(
        claim
            .labels()
            .get("openebs.io/cstor-pool-cluster")
            .map(String::as_str),
        Some(spc)
    );
    assert!(!claim.labels().contains_key(pool::SPC_LABEL));
    assert_eq!(
        claim.finalizers(),
        &["cstorpoolcluster.openebs.io/finalizer".to_string()]
    );
    assert_eq!(claim.owner_references()[0].uid, cspc.uid().unwrap());
    let cvrs = Api::<DynamicObject>::namespaced_with(
        client.clone(),
        ns,
        &cstor_operators::migrate::legacy("CStorVolumeReplica", "cstorvolumereplicas"),
    );
    let cvr = cvrs.get(&format!("pvc-legacy-{spc}-x7k2")).await.unwrap();
    assert_eq!(
        cvr.labels().get("cstorpoolinstance.openebs.io/uid"),
        cspi.uid().as_ref()
    );
    assert!(!cvr.labels().contains_key("cstorpool.openebs.io/name"));
    // The backup records are the CSPI's now, in the v1 kinds.
    let backup = Api::<cstor_api::cstor::CStorBackup>::namespaced(client.clone(), ns)
        .get("b1-pvc-legacy")
        .await
        .unwrap();
    assert_eq!(backup.spec.backup_name, "b1");
    assert_eq!(backup.spec.prev_snap_name.as_deref(), Some("s1"));
    assert_eq!(
        backup.labels().get("cstorpoolinstance.openebs.io/uid"),
        cspi.uid().as_ref()
    );
    assert!(!backup.labels().contains_key("cstorpool.openebs.io/uid"));
    let completed = Api::<cstor_api::cstor::CStorCompletedBackup>::namespaced(client.clone(), ns)
        .get("b1-pvc-legacy")
        .await
        .unwrap();
    assert_eq!(
        (
            completed.spec.last_snap_name.as_deref(),
            completed.spec.second_last_snap_name.as_deref()
        ),
        (Some("s2"), Some("s1"))
    );
    for (kind, plural) in [
        ("CStorBackup", "cstorbackups"),
        ("CStorCompletedBackup", "cstorcompletedbackups"),
    ] {
        let old = Api::<DynamicObject>::namespaced_with(
            client.clone(),
            ns,
            &cstor_operators::migrate::legacy(kind, plural),
        );
        assert!(
            old.get_opt("b1-pvc-legacy").await.unwrap().is_none(),
            "{kind}"
        );
    }
    let task = tasks
        .get(&format!("migrate-cstor-pool-{spc}"))
        .await
        .unwrap();
    let status = task.status.unwrap();
    assert_eq!(status.phase, Some(MigrationPhase::Success));
    let steps: Vec<(String, Option<StepPhase>)> = status
        .migration_detailed_statuses
        .iter()
        .map(|s| (s.step.clone(), s.phase.clone()))
        .collect();
    assert_eq!(
        steps,
        vec![
            ("Pre-migration".to_string(), Some(StepPhase::Completed)),
            ("Migrate".to_string(), Some(StepPhase::Completed)),
        ]
    );

    // Again: already done.
    assert_eq!(
        pool::migrate(&m, spc, None, 6).await.unwrap(),
        pool::Outcome::AlreadyMigrated
    );

    // A broken SPC (auto, maxPools 2, one CStorPool): refused, the reason recorded, nothing
    // created.
    let bad = format!("{spc}-bad");
    let spcs = pool_api(client);
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "openebs.io/v1alpha1", "kind": "StoragePoolClaim",
        "metadata": {"name": bad},
        "spec": {"name": bad, "type": "sparse", "maxPools": 2, "poolSpec": {"poolType": "striped"}}
    }))
    .unwrap();
    spcs.create(&PostParams::default(), &obj).await.unwrap();
    let err = pool::migrate(&m, &bad, None, 1).await.unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("maxpool count does not match csp count expected: 2 got: 0"),
        "{msg}"
    );
    assert!(cspcs.get_opt(&bad).await.unwrap().is_none());
    let task = tasks
        .get(&format!("migrate-cstor-pool-{bad}"))
        .await
        .unwrap();
    let status = task.status.unwrap();
    assert_eq!(status.phase, Some(MigrationPhase::Error), "backoff limit 1");
    let last = status.migration_detailed_statuses.last().unwrap();
    assert_eq!(last.phase, Some(StepPhase::Errored));
    assert!(
        last.reason
            .as_deref()
            .unwrap_or("")
            .contains("maxpool count"),
        "{last:?}"
    );
    spcs.delete(&bad, &DeleteParams::default()).await.unwrap();
    pool_manager.abort();
    operator.abort();
}
