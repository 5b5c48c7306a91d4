//! Scenario on REAL zfs-fuse: a CSPC with three stripe pools on three fake nodes.
//! * expansion by a disk: a disk appended to pool A's raid group is claimed, handed to the CSPI
//!   and `zpool add`ed — the pool grows;
//! * scale down: pools B (holding a replica) and C (empty) are removed from the spec at once —
//!   C's CSPI is deleted, its pool destroyed and claims released, while B is kept with a
//!   `ScaleDownBlocked` condition and a Warning Event; once B's replica is deleted B goes too;
//! * CSPC deletion leaves nothing.

mod support;

use std::time::Duration;

use cstor_api::{
    constants::{finalizer, label},
    cstor::*,
    ndm::BlockDeviceClaim,
};
use cstor_operators::cspc_operator;
use cstor_testkit::{TestCluster, wait_until};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, ListParams, PostParams},
};

const DEADLINE: Duration = Duration::from_secs(90);

fn bds_of(claims: &[BlockDeviceClaim]) -> Vec<String> {
    claims
        .iter()
        .filter_map(|c| c.spec.block_device_name.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripe_disk_expansion_and_scale_down() {
    support::init_tracing();
    if let Err(why) = support::ensure_zfs_fuse().await {
        eprintln!("SKIP stripe_disk_expansion_and_scale_down: {why}");
        return;
    }
    let cluster = TestCluster::start().await;
    let client = cluster.client();
    let ns = cluster.namespace().to_string();
    let dir = tempfile::tempdir().unwrap();
    let nodes: Vec<String> = (0..3)
        .map(|i| support::unique(&format!("node{i}")))
        .collect();
    let zpools: Vec<String> = (0..3)
        .map(|i| support::unique_pool(&format!("scale{i}")))
        .collect();
    let mut bds = Vec::new();
    let mut paths = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        support::create_node(&client, n).await;
        let bd = support::unique(&format!("bd{i}"));
        paths.push(support::create_bd(&client, &ns, dir.path(), &bd, n).await);
        bds.push(bd);
    }
    // The disk pool A grows by.
    let extra = support::unique("bd0-extra");
    let extra_path = support::create_bd(&client, &ns, dir.path(), &extra, &nodes[0]).await;

    let cspcs: Api<CStorPoolCluster> = Api::namespaced(client.clone(), &ns);
    let cspis: Api<CStorPoolInstance> = Api::namespaced(client.clone(), &ns);
    let cvrs: Api<CStorVolumeReplica> = Api::namespaced(client.clone(), &ns);
    let bdcs: Api<BlockDeviceClaim> = Api::namespaced(client.clone(), &ns);
    let name = "cspc-scale";
    let pools: Vec<PoolSpec> = (0..3)
        .map(|i| {
            support::pool_spec(
                &nodes[i],
                RaidGroupType::Stripe,
                vec![support::raid_group(&[&bds[i]])],
            )
        })
        .collect();
    let cspc = CStorPoolCluster::namespaced(
        name,
        &ns,
        CStorPoolClusterSpec {
            pools: Some(pools),
            ..Default::default()
        },
    );
    cspcs.create(&PostParams::default(), &cspc).await.unwrap();
    let op_ctx = cspc_operator::Context::new(client.clone(), Default::default())
        .with_resync(Duration::from_secs(2));
    let operator = tokio::spawn(cspc_operator::run(op_ctx, Some(ns.clone())));
    let mut managers = Vec::new();

    let result = support::scenario(Duration::from_secs(400), async {
        support::bind_until(&client, &ns, name, 3).await;
        let mut engines = Vec::new();
        let mut recs = Vec::new();
        let mut cspi_list = Vec::new();
        for (i, n) in nodes.iter().enumerate() {
            let cspi = support::cspi_on(&client, &ns, name, n).await;
            let (task, engine, rec) =
                support::spawn_pool_manager(&client, &ns, &cspi, &zpools[i], dir.path());
            managers.push(task);
            engines.push(engine);
            recs.push(rec);
            cspi_list.push(cspi);
        }
        for c in &cspi_list {
            support::wait_online(&client, &ns, &c.name_any()).await;
        }

        // --- Expansion by a disk: pool A's stripe group gets a second disk.
        let cap0 = engines[0]
            .pool_capacity(&zpools[0])
            .await
            .unwrap()
            .total_bytes()
            .unwrap();
        support::edit(&cspcs, name, |latest| {
            latest.spec.pools.as_mut().unwrap()[0].data_raid_groups[0]
                .block_devices
                .push(CStorPoolInstanceBlockDevice::named(&extra));
        })
        .await;
        support::bind_until(&client, &ns, name, 4).await;
        // The recorder logs a command once it has returned, which can be after
        // the pool already shows the disk: wait for both.
        let add_prefix = format!("zpool add {}", zpools[0]);
        wait_until("extra disk in pool A", DEADLINE, || async {
            engines[0]
                .pool_topology(&zpools[0])
                .await
                .is_ok_and(|t| t.contains_path(&extra_path))
                && recs[0].lines().iter().any(|l| l.starts_with(&add_prefix))
        })
        .await
        .unwrap();
        let cap1 = engines[0]
            .pool_capacity(&zpools[0])
            .await
            .unwrap()
            .total_bytes()
            .unwrap();
        assert!(cap1 > cap0 + (64 << 20), "pool A grew: {cap0} -> {cap1}");
        let a = cspis.get(&cspi_list[0].name_any()).await.unwrap();
        assert_eq!(
            a.spec.data_raid_groups.len(),
            1,
            "the disk joined the existing raid group"
        );
        assert_eq!(a.spec.data_raid_groups[0].block_devices.len(), 2);
        assert!(
            recs[0].lines().iter().any(|l| l.starts_with(&add_prefix)
                && l.ends_with(&format!(" {extra_path}"))
                && !l.contains(&paths[0])),
            "only the new disk is added: {:#?}",
            recs[0].lines()
        );

        // --- A replica on pool B.
        let b = &cspi_list[1];
        let mut cvr = CStorVolumeReplica::namespaced(
            format!("pvc-s-{}", b.name_any()),
            &ns,
            CStorVolumeReplicaSpec {
                target_ip: Some("127.0.0.1".into()),
                capacity: Some("1Gi".into()),
                ..Default::default()
            },
        );
        cvr.metadata.labels = Some(
            [
                (label::CSPI_UID.to_string(), b.uid().unwrap()),
                (label::CSPI_NAME.to_string(), b.name_any()),
                (label::CSTOR_VOLUME_NAME.to_string(), "pvc-s".to_string()),
            ]
            .into(),
        );
        cvr.metadata.finalizers = Some(vec![finalizer::CVR.into()]);
        let cvr = cvrs.create(&PostParams::default(), &cvr).await.unwrap();
        wait_until("CVR Healthy", DEADLINE, || async {
            cvrs.get(&cvr.name_any())
                .await
                .unwrap()
                .status
                .and_then(|s| s.phase)
                == Some(CStorVolumeReplicaPhase::Healthy)
        })
        .await
        .unwrap();

        // --- Scale down B and C together.
        support::edit(&cspcs, name, |latest| {
            latest.spec.pools.as_mut().unwrap().truncate(1);
        })
        .await;
        let c = &cspi_list[2];
        wait_until("C's CSPI gone", DEADLINE, || async {
            cspis.get_opt(&c.name_any()).await.unwrap().is_none()
        })
        .await
        .unwrap();
        assert!(
            !engines[2].pool_exists(&zpools[2]).await.unwrap(),
            "C's pool destroyed"
        );
        wait_until("C's claim released", DEADLINE, || async {
            !bds_of(&bdcs.list(&ListParams::default()).await.unwrap().items).contains(&bds[2])
        })
        .await
        .unwrap();
        let blocked = wait_until("ScaleDownBlocked on the CSPC", DEADLINE, || async {
            cspcs
                .get(name)
                .await
                .unwrap()
                .status
                .and_then(|s| s.conditions)
                .and_then(|cs| {
                    cs.into_iter().find(|c| {
                        c.type_ == cspc_operator::SCALE_DOWN_BLOCKED
                            && c.status == ConditionStatus::True
                    })
                })
        })
        .await
        .unwrap();
        let msg = blocked.message.unwrap_or_default();
        assert!(
            msg.contains(&b.name_any()) && msg.contains(&cvr.name_any()),
            "{msg}"
        );
        assert!(!msg.contains(&c.name_any()), "{msg}");
        let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), &ns);
        let evs = events.list(&ListParams::default()).await.unwrap().items;
        assert!(
            evs.iter()
                .any(|e| e.reason.as_deref() == Some("ScaleDownBlocked")
                    && e.type_.as_deref() == Some("Warning")),
            "Warning event"
        );
        let kept = cspis.get(&b.name_any()).await.unwrap();
        assert!(
            kept.metadata.deletion_timestamp.is_none(),
            "B is not deleted while its replica lives"
        );
        assert!(engines[1].pool_exists(&zpools[1]).await.unwrap());
        assert!(
            bds_of(&bdcs.list(&ListParams::default()).await.unwrap().items).contains(&bds[1]),
            "B keeps its claim"
        );

        // --- The replica goes: B is scaled down as well.
        cvrs.delete(&cvr.name_any(), &DeleteParams::default())
            .await
            .unwrap();
        wait_until("CVR gone", DEADLINE, || async {
            cvrs.get_opt(&cvr.name_any()).await.unwrap().is_none()
        })
        .await
        .unwrap();
        wait_until("B's CSPI gone", DEADLINE, || async {
            cspis.get_opt(&b.name_any()).await.unwrap().is_none()
        })
        .await
        .unwrap();
        assert!(
            !engines[1].pool_exists(&zpools[1]).await.unwrap(),
            "B's pool destroyed"
        );
        wait_until(
            "B's claim released and the condition cleared",
            DEADLINE,
            || async {
                let released = !bds_of(&bdcs.list(&ListParams::default()).await.unwrap().items)
                    .contains(&bds[1]);
                let cleared = cspcs
                    .get(name)
                    .await
                    .unwrap()
                    .status
                    .and_then(|s| s.conditions)
                    .is_some_and(|cs| {
                        cs.iter().any(|c| {
                            c.type_ == cspc_operator::SCALE_DOWN_BLOCKED
                                && c.status == ConditionStatus::False
                        })
                    });
                released && cleared
            },
        )
        .await
        .unwrap();
        assert!(
            engines[0].pool_exists(&zpools[0]).await.unwrap(),
            "pool A untouched"
        );
        assert_eq!(
            cspis
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .len(),
            1
        );

        cspcs.delete(name, &DeleteParams::default()).await.unwrap();
        wait_until("CSPC gone", DEADLINE, || async {
            cspcs.get_opt(name).await.unwrap().is_none()
        })
        .await
        .unwrap();
        assert!(!engines[0].pool_exists(&zpools[0]).await.unwrap());
        assert!(
            bdcs.list(&ListParams::default())
                .await
                .unwrap()
                .items
                .is_empty()
        );
        assert!(
            cspis
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .is_empty()
        );
    })
    .await;
    for m in &managers {
        m.abort();
    }
    operator.abort();
    support::destroy_pools(&cstor_api::exec::HostRunner::new(), &zpools).await;
    for n in &nodes {
        support::delete_node(&client, n).await;
    }
    let _ = cluster.cleanup().await;
    result.finish();
}
