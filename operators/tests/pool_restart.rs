//! Scenario on REAL zfs-fuse: pool-manager shutdown and start-up.
//! * shutdown marks the CSPI `OFFLINE` ([`pool_manager::mark_offline`], what the binary runs on
//!   SIGTERM);
//! * a new pool manager finds an existing Healthy replica whose zvol was lost while it was down:
//!   the CVR goes to `Recreate`, the zvol is created again with `quorum=off`, the replica is
//!   Healthy again and the CSPI ONLINE again.

mod support;

use std::{sync::Arc, time::Duration};

use cstor_api::{
    constants::{finalizer, label},
    cstor::*,
};
use cstor_operators::{
    cspc_operator,
    engine::{CstorEngine, DataEngine},
    pool_manager,
};
use cstor_testkit::{TestCluster, wait_until};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, PostParams},
};

const DEADLINE: Duration = Duration::from_secs(90);

fn manager(
    client: &kube::Client,
    ns: &str,
    cspi: &CStorPoolInstance,
    pool: &str,
    dir: &std::path::Path,
) -> (pool_manager::Context, Arc<cstor_api::exec::RecordingRunner>) {
    // A fresh shim each time: zvols it played before are gone, as after a lost zvol.
    let (rec, _shim) = support::runners();
    let engine: Arc<dyn DataEngine> = Arc::new(
        CstorEngine::new(rec.clone())
            .with_cache_file(dir.join(format!("{pool}.cache")).to_string_lossy()),
    );
    let ctx = pool_manager::Context::new(client.clone(), engine, ns, cspi.uid().unwrap(), "unused")
        .with_pool_name(pool)
        .with_resync(Duration::from_secs(2));
    (ctx, rec)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_offline_and_startup_recreate() {
    support::init_tracing();
    if let Err(why) = support::ensure_zfs_fuse().await {
        eprintln!("SKIP shutdown_offline_and_startup_recreate: {why}");
        return;
    }
    let cluster = TestCluster::start().await;
    let client = cluster.client();
    let ns = cluster.namespace().to_string();
    let dir = tempfile::tempdir().unwrap();
    let node = support::unique("node");
    support::create_node(&client, &node).await;
    let bd = support::unique("bd");
    support::create_bd(&client, &ns, dir.path(), &bd, &node).await;
    let zpool = support::unique_pool("restart");
    let cspcs: Api<CStorPoolCluster> = Api::namespaced(client.clone(), &ns);
    let cspis: Api<CStorPoolInstance> = Api::namespaced(client.clone(), &ns);
    let cvrs: Api<CStorVolumeReplica> = Api::namespaced(client.clone(), &ns);
    let name = "cspc-restart";
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
    let op_ctx = cspc_operator::Context::new(client.clone(), Default::default())
        .with_resync(Duration::from_secs(2));
    let operator = tokio::spawn(cspc_operator::run(op_ctx, Some(ns.clone())));
    let mut tasks = Vec::new();

    let result = support::scenario(Duration::from_secs(300), async {
        support::bind_until(&client, &ns, name, 1).await;
        let cspi = support::cspi_on(&client, &ns, name, &node).await;
        let (ctx1, rec1) = manager(&client, &ns, &cspi, &zpool, dir.path());
        tasks.push(tokio::spawn(pool_manager::run(ctx1.clone())));
        support::wait_online(&client, &ns, &cspi.name_any()).await;

        let mut cvr = CStorVolumeReplica::namespaced(
            format!("pvc-r-{}", cspi.name_any()),
            &ns,
            CStorVolumeReplicaSpec {
                target_ip: Some("127.0.0.1".into()),
                capacity: Some("1Gi".into()),
                ..Default::default()
            },
        );
        cvr.metadata.labels = Some(
            [
                (label::CSPI_UID.to_string(), cspi.uid().unwrap()),
                (label::CSPI_NAME.to_string(), cspi.name_any()),
                (label::CSTOR_VOLUME_NAME.to_string(), "pvc-r".to_string()),
            ]
            .into(),
        );
        cvr.metadata.finalizers = Some(vec![finalizer::CVR.into()]);
        let cvr = cvrs.create(&PostParams::default(), &cvr).await.unwrap();
        let healthy = wait_until("CVR Healthy", DEADLINE, || async {
            let c = cvrs.get(&cvr.name_any()).await.unwrap();
            (c.status.as_ref().and_then(|s| s.phase.clone())
                == Some(CStorVolumeReplicaPhase::Healthy))
            .then_some(c)
        })
        .await
        .unwrap();
        let id = healthy
            .spec
            .replica_id
            .clone()
            .expect("replica id recorded");
        assert!(
            rec1.lines()
                .iter()
                .any(|l| l.starts_with("zfs create") && l.contains("-o quorum=on")),
            "{:#?}",
            rec1.lines()
        );

        // Shutdown: the controllers stop, then the CSPI is reported OFFLINE.
        tasks.pop().unwrap().abort();
        pool_manager::mark_offline(&ctx1).await.unwrap();
        let off = cspis.get(&cspi.name_any()).await.unwrap();
        assert_eq!(
            off.status.unwrap().phase,
            Some(CStorPoolInstancePhase::Offline)
        );
        pool_manager::mark_offline(&ctx1)
            .await
            .expect("marking twice is harmless");

        // Start-up with the zvol gone: Recreate, created again with quorum=off, Healthy.
        let (ctx2, rec2) = manager(&client, &ns, &cspi, &zpool, dir.path());
        tasks.push(tokio::spawn(pool_manager::run(ctx2)));
        wait_until("zvol recreated with quorum=off", DEADLINE, || async {
            rec2.lines().iter().any(|l| {
                l.starts_with("zfs create")
                    && l.contains("-o quorum=off")
                    && l.contains(&format!("io.openebs:zvol_replica_id={id}"))
            })
        })
        .await
        .unwrap();
        wait_until("CVR Healthy again", DEADLINE, || async {
            cvrs.get(&cvr.name_any())
                .await
                .unwrap()
                .status
                .and_then(|s| s.phase)
                == Some(CStorVolumeReplicaPhase::Healthy)
        })
        .await
        .unwrap();
        support::wait_online(&client, &ns, &cspi.name_any()).await;
        let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), &ns);
        let evs = events.list(&Default::default()).await.unwrap().items;
        assert!(
            evs.iter().any(|e| e.reason.as_deref() == Some("Synced")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref())
                    == Some(cvr.name_any().as_str())),
            "start-up Synced event on the CVR"
        );

        cvrs.delete(&cvr.name_any(), &DeleteParams::default())
            .await
            .unwrap();
        wait_until("CVR gone", DEADLINE, || async {
            cvrs.get_opt(&cvr.name_any()).await.unwrap().is_none()
        })
        .await
        .unwrap();
        cspcs.delete(name, &DeleteParams::default()).await.unwrap();
        wait_until("CSPC gone", DEADLINE, || async {
            cspcs.get_opt(name).await.unwrap().is_none()
        })
        .await
        .unwrap();
        assert!(
            !ctx1.engine.pool_exists(&zpool).await.unwrap(),
            "pool destroyed"
        );
    })
    .await;
    for t in &tasks {
        t.abort();
    }
    operator.abort();
    support::destroy_pools(
        &cstor_api::exec::HostRunner::new(),
        std::slice::from_ref(&zpool),
    )
    .await;
    support::delete_node(&client, &node).await;
    let _ = cluster.cleanup().await;
    result.finish();
}
