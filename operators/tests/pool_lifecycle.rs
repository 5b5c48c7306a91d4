//! Scenario: CSPC (stripe) → BDCs → (NDM binds) → CSPI + Deployment → pool-manager creates the
//! pool on REAL zfs-fuse over sparse files → CSPI ONLINE with capacity → expansion by a raid
//! group → CVR create (zvol command through the shim) → CSPI deletion blocked while the replica
//! lives → CVR delete (`zfs destroy -R`, finalizer removed) → CSPC delete → pool destroyed,
//! claims released, nothing left. Runs against the in-process API server or a real cluster.

mod support;

use std::{sync::Arc, time::Duration};

use cstor_api::{
    constants::{finalizer, label},
    cstor::*,
    ndm::BlockDeviceClaim,
};
use cstor_operators::{
    cspc_operator,
    engine::{CstorEngine, DataEngine},
    pool_manager,
};
use cstor_testkit::{TestCluster, wait_until};
use k8s_openapi::api::apps::v1::Deployment;
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, ListParams, PostParams},
};

const DEADLINE: Duration = Duration::from_secs(90);

fn raid_group(bds: &[&str]) -> RaidGroup {
    RaidGroup {
        block_devices: bds
            .iter()
            .map(|b| CStorPoolInstanceBlockDevice::named(*b))
            .collect(),
        ..Default::default()
    }
}

fn pool_spec(node: &str, raid: RaidGroupType, groups: Vec<RaidGroup>) -> PoolSpec {
    PoolSpec {
        node_selector: [(label::HOSTNAME.to_string(), node.to_string())].into(),
        data_raid_groups: groups,
        pool_config: Some(PoolConfig {
            data_raid_group_type: raid,
            compression: Some("on".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripe_pool_lifecycle() {
    support::init_tracing();
    if let Err(why) = support::ensure_zfs_fuse().await {
        eprintln!("SKIP stripe_pool_lifecycle: {why}");
        return;
    }
    let cluster = TestCluster::start().await;
    let client = cluster.client();
    let ns = cluster.namespace().to_string();
    let dir = tempfile::tempdir().unwrap();
    let node = support::unique("node");
    support::create_node(&client, &node).await;
    let names: Vec<String> = (0..3).map(|i| support::unique(&format!("bd{i}"))).collect();
    let mut paths = Vec::new();
    for n in &names {
        paths.push(support::create_bd(&client, &ns, dir.path(), n, &node).await);
    }
    let (rec, shim) = support::runners();
    let engine: Arc<dyn DataEngine> = Arc::new(
        CstorEngine::new(rec.clone())
            .with_cache_file(dir.path().join("pool.cache").to_string_lossy()),
    );

    let cspcs: Api<CStorPoolCluster> = Api::namespaced(client.clone(), &ns);
    let cspis: Api<CStorPoolInstance> = Api::namespaced(client.clone(), &ns);
    let cvrs: Api<CStorVolumeReplica> = Api::namespaced(client.clone(), &ns);
    let bdcs: Api<BlockDeviceClaim> = Api::namespaced(client.clone(), &ns);
    let cspc = CStorPoolCluster::namespaced(
        "cspc-stripe",
        &ns,
        CStorPoolClusterSpec {
            pools: Some(vec![pool_spec(
                &node,
                RaidGroupType::Stripe,
                vec![raid_group(&[&names[0]])],
            )]),
            ..Default::default()
        },
    );
    let cspc = cspcs.create(&PostParams::default(), &cspc).await.unwrap();
    let pool = cstor_api::naming::pool_name(&cspc.uid().unwrap());

    let op_ctx = cspc_operator::Context::new(client.clone(), Default::default())
        .with_resync(Duration::from_secs(2));
    let operator = tokio::spawn(cspc_operator::run(op_ctx, Some(ns.clone())));

    let result = support::scenario(Duration::from_secs(300), async {
        // The claim comes before the CSPI; NDM (the test) binds it.
        wait_until("BDC created", DEADLINE, || async { !bdcs.list(&ListParams::default()).await.unwrap().items.is_empty() }).await.unwrap();
        assert!(cspis.list(&ListParams::default()).await.unwrap().items.is_empty(), "no CSPI before the claim is bound");
        let claim = &bdcs.list(&ListParams::default()).await.unwrap().items[0];
        assert!(claim.name_any().starts_with("bdc-cstor-"), "{}", claim.name_any());
        assert_eq!(support::bind_claims(&client, &ns).await, 1);
        let cspi = wait_until("CSPI created", DEADLINE, || async { cspis.list(&ListParams::default()).await.unwrap().items.into_iter().next() }).await.unwrap();
        assert_eq!(cspi.spec.host_name.as_deref(), Some(node.as_str()));
        let deps: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        let dep = wait_until("pool Deployment", DEADLINE, || async { deps.get_opt(&cspi.name_any()).await.unwrap() }).await.unwrap();
        let containers = &dep.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers;
        let mgmt_env = containers[0].env.as_ref().unwrap();
        assert!(mgmt_env.iter().any(|e| e.name == "OPENEBS_IO_CSPI_ID" && e.value == cspi.uid()));

        // The pool manager of that CSPI, in process.
        let pm_ctx = pool_manager::Context::new(client.clone(), engine.clone(), &ns, cspi.uid().unwrap(), &cspc.uid().unwrap()).with_resync(Duration::from_secs(2));
        let pm = tokio::spawn(pool_manager::run(pm_ctx));
        let online = wait_until("CSPI ONLINE", DEADLINE, || async {
            let c = cspis.get(&cspi.name_any()).await.unwrap();
            (c.status.as_ref().and_then(|s| s.phase.clone()) == Some(CStorPoolInstancePhase::Online)).then_some(c)
        }).await.unwrap();
        assert!(engine.pool_exists(&pool).await.unwrap());
        assert!(online.finalizers().iter().any(|f| f == finalizer::POOL_PROTECTION));
        let cap0 = engine.pool_capacity(&pool).await.unwrap().total_bytes().unwrap();
        assert!(online.status.as_ref().unwrap().capacity.is_some());
        assert_eq!(rec.lines().iter().filter(|l| l.starts_with("zpool create")).count(), 1);

        // Expansion by a raid group (stripe: a new group with one disk).
        let mut c = cspcs.get("cspc-stripe").await.unwrap();
        c.spec.pools.as_mut().unwrap()[0].data_raid_groups.push(raid_group(&[&names[1]]));
        cspcs.replace("cspc-stripe", &PostParams::default(), &c).await.unwrap();
        wait_until("second claim", DEADLINE, || async { bdcs.list(&ListParams::default()).await.unwrap().items.len() == 2 }).await.unwrap();
        support::bind_claims(&client, &ns).await;
        wait_until("second raid group in the pool", DEADLINE, || async {
            // The recorder logs `zpool add` once it returned, maybe after the pool shows the disk.
            engine.pool_topology(&pool).await.is_ok_and(|t| t.contains_path(&paths[1]) && t.children.len() == 2)
                && rec.lines().iter().any(|l| l.starts_with(&format!("zpool add {pool}")))
        }).await.unwrap();
        let cap1 = engine.pool_capacity(&pool).await.unwrap().total_bytes().unwrap();
        assert!(cap1 > cap0 + (64 << 20), "capacity {cap0} -> {cap1}");
        assert!(rec.lines().iter().any(|l| l.starts_with(&format!("zpool add {pool}"))), "{:#?}", rec.lines());

        // A replica on the pool.
        let mut cvr = CStorVolumeReplica::namespaced(format!("pvc-1-{}", cspi.name_any()), &ns, CStorVolumeReplicaSpec {
            target_ip: Some("127.0.0.1".into()),
            capacity: Some("1Gi".into()),
            ..Default::default()
        });
        cvr.metadata.labels = Some([
            (label::CSPI_UID.to_string(), cspi.uid().unwrap()),
            (label::CSPI_NAME.to_string(), cspi.name_any()),
            (label::CSTOR_VOLUME_NAME.to_string(), "pvc-1".to_string()),
            (label::PERSISTENT_VOLUME.to_string(), "pvc-1".to_string()),
        ].into());
        cvr.metadata.finalizers = Some(vec![finalizer::CVR.into()]);
        let cvr = cvrs.create(&PostParams::default(), &cvr).await.unwrap();
        let healthy = wait_until("CVR Healthy", DEADLINE, || async {
            let c = cvrs.get(&cvr.name_any()).await.unwrap();
            (c.status.as_ref().and_then(|s| s.phase.clone()) == Some(CStorVolumeReplicaPhase::Healthy)).then_some(c)
        }).await.unwrap();
        let id = cstor_api::naming::replica_id_from_uid(&cvr.uid().unwrap());
        assert_eq!(healthy.spec.replica_id.as_deref(), Some(id.as_str()));
        let create = rec.lines().into_iter().find(|l| l.starts_with("zfs create")).expect("zvol create issued");
        assert_eq!(create, format!("zfs create -b 4K -s -o compression=on -o quorum=on -o io.openebs:zvol_replica_id={id} -o io.openebs:volname={} -o io.openebs:targetip=127.0.0.1 -V 1G {pool}/pvc-1", cvr.name_any()));

        // Snapshots the target took on the zvol show in the CVR status, and leave it with them.
        shim.snapshots.lock().unwrap().entry(format!("{pool}/pvc-1")).or_default().insert("snap-1".into(), 4096);
        let snap_of = |c: &CStorVolumeReplica| c.status.as_ref().and_then(|s| s.snapshots.as_ref()).and_then(|m| m.get("snap-1")).map(|i| i.logical_referenced);
        wait_until("CVR lists snap-1", DEADLINE, || async {
            snap_of(&cvrs.get(&cvr.name_any()).await.unwrap()).filter(|b| *b == 4096)
        }).await.unwrap();
        shim.snapshots.lock().unwrap().clear();
        wait_until("snap-1 gone from the CVR", DEADLINE, || async {
            snap_of(&cvrs.get(&cvr.name_any()).await.unwrap()).is_none()
        }).await.unwrap();

        // While the replica rebuilds, the snapshots its peers have and it lacks are pending.
        let mut peer = CStorVolumeReplica::namespaced("pvc-1-peer", &ns, CStorVolumeReplicaSpec::default());
        peer.metadata.labels = Some([
            (label::CSPI_UID.to_string(), "another-pool".to_string()),
            (label::PERSISTENT_VOLUME.to_string(), "pvc-1".to_string()),
        ].into());
        peer.status = Some(cstor_api::cstor::CStorVolumeReplicaStatus {
            snapshots: Some([("snap-2".to_string(), cstor_api::cstor::CStorSnapshotInfo { logical_referenced: 8192, ..Default::default() })].into()),
            ..Default::default()
        });
        cvrs.create(&PostParams::default(), &peer).await.unwrap();
        let zvol = format!("{pool}/pvc-1");
        shim.stats_status.lock().unwrap().insert(zvol.clone(), "Rebuilding".into());
        let snap2_of = |c: &CStorVolumeReplica| c.status.as_ref().and_then(|s| s.snapshots.as_ref()).is_some_and(|m| m.contains_key("snap-2"));
        let pending_of = |c: &CStorVolumeReplica| c.status.as_ref().and_then(|s| s.pending_snapshots.clone()).unwrap_or_default();
        wait_until("snap-2 pending while rebuilding", DEADLINE, || async {
            let c = cvrs.get(&cvr.name_any()).await.unwrap();
            (c.status.as_ref().and_then(|s| s.phase.clone()) == Some(CStorVolumeReplicaPhase::Rebuilding)
                && pending_of(&c).get("snap-2").map(|i| i.logical_referenced) == Some(8192)).then_some(())
        }).await.unwrap();
        // The rebuild brings snap-2 over: it leaves the pending set.
        shim.snapshots.lock().unwrap().entry(zvol.clone()).or_default().insert("snap-2".into(), 8192);
        wait_until("snap-2 local, nothing pending", DEADLINE, || async {
            let c = cvrs.get(&cvr.name_any()).await.unwrap();
            (snap2_of(&c) && pending_of(&c).is_empty()).then_some(())
        }).await.unwrap();
        shim.stats_status.lock().unwrap().clear();
        shim.snapshots.lock().unwrap().clear();
        cvrs.delete("pvc-1-peer", &DeleteParams::default()).await.unwrap();

        // Deleting the CSPI while the replica lives: kept, with a condition saying why.
        cspis.delete(&cspi.name_any(), &DeleteParams::default()).await.unwrap();
        wait_until("deletion blocked", DEADLINE, || async {
            let c = cspis.get(&cspi.name_any()).await.unwrap();
            c.status.and_then(|s| s.conditions).is_some_and(|cs| cs.iter().any(|c| c.type_ == pool_manager::DELETION_BLOCKED && c.status == ConditionStatus::True))
        }).await.unwrap();
        assert!(engine.pool_exists(&pool).await.unwrap(), "pool with a replica must survive CSPI deletion");

        // Replica deletion: zfs destroy -R, then the finalizer goes.
        cvrs.delete(&cvr.name_any(), &DeleteParams::default()).await.unwrap();
        wait_until("CVR gone", DEADLINE, || async { cvrs.get_opt(&cvr.name_any()).await.unwrap().is_none() }).await.unwrap();
        assert!(rec.lines().contains(&format!("zfs destroy -R {pool}/pvc-1")));
        assert!(shim.zvols.lock().unwrap().is_empty());

        // Now the CSPI deletion proceeds; then the CSPC goes with everything.
        wait_until("CSPI gone", DEADLINE, || async { cspis.get_opt(&cspi.name_any()).await.unwrap().is_none() }).await.unwrap();
        assert!(!engine.pool_exists(&pool).await.unwrap());
        cspcs.delete("cspc-stripe", &DeleteParams::default()).await.unwrap();
        wait_until("CSPC gone", DEADLINE, || async { cspcs.get_opt("cspc-stripe").await.unwrap().is_none() }).await.unwrap();
        wait_until("claims released", DEADLINE, || async { bdcs.list(&ListParams::default()).await.unwrap().items.is_empty() }).await.unwrap();
        pm.abort();
    }).await;
    operator.abort();
    support::destroy_pools(&cstor_api::exec::HostRunner::new(), &[pool]).await;
    support::delete_node(&client, &node).await;
    let _ = cluster.cleanup().await;
    result.finish();
}
