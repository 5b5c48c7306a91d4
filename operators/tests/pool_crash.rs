//! Crash between `zpool create` and the CSPI status write: the next pass finds the pool and
//! converges (ONLINE, capacity) without a second `zpool create`. Then the CSPI deletion destroys
//! the pool and removes the pool-protection finalizer. Pool-manager passes are driven directly.

mod support;

use std::{sync::Arc, time::Duration};

use cstor_api::{
    constants::{finalizer, label},
    cstor::*,
};
use cstor_operators::{
    engine::{CstorEngine, DataEngine},
    pool_manager::{self, devices, import},
};
use cstor_testkit::{TestCluster, wait_until};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, PostParams},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_after_create_converges_without_second_pool() {
    support::init_tracing();
    if let Err(why) = support::ensure_zfs_fuse().await {
        eprintln!("SKIP: {why}");
        return;
    }
    let cluster = TestCluster::start().await;
    let client = cluster.client();
    let ns = cluster.namespace().to_string();
    let dir = tempfile::tempdir().unwrap();
    let node = support::unique("node");
    let bds: Vec<String> = (0..2).map(|i| support::unique(&format!("bd{i}"))).collect();
    for b in &bds {
        support::create_bd(&client, &ns, dir.path(), b, &node).await;
    }
    let cspis: Api<CStorPoolInstance> = Api::namespaced(client.clone(), &ns);
    let mut cspi = CStorPoolInstance::namespaced(
        "crash-cspi",
        &ns,
        CStorPoolInstanceSpec {
            host_name: Some(node.clone()),
            node_selector: [(label::HOSTNAME.to_string(), node.clone())].into(),
            pool_config: Some(PoolConfig {
                data_raid_group_type: RaidGroupType::Mirror,
                compression: Some("on".into()),
                ..Default::default()
            }),
            data_raid_groups: vec![RaidGroup {
                block_devices: bds
                    .iter()
                    .map(CStorPoolInstanceBlockDevice::named)
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        },
    );
    cspi.metadata.labels =
        Some([(label::CSTOR_POOL_CLUSTER.to_string(), "crash".to_string())].into());
    let cspi = cspis.create(&PostParams::default(), &cspi).await.unwrap();
    let cspc_uid = support::unique("uid");
    let (rec, shim) = support::runners();
    let engine: Arc<dyn DataEngine> = Arc::new(
        CstorEngine::new(rec.clone())
            .with_cache_file(dir.path().join("pool.cache").to_string_lossy()),
    );
    let ctx = Arc::new(
        pool_manager::Context::new(
            client.clone(),
            engine.clone(),
            &ns,
            cspi.uid().unwrap(),
            &cspc_uid,
        )
        .with_resync(Duration::from_secs(1)),
    );
    let pool = ctx.pool.clone();

    let outcome = support::scenario(Duration::from_secs(180), async {
        // First life: the pool gets created, then the process dies before any status write.
        let mut copy = cspi.clone();
        let resolved = devices::resolve(&ctx, &copy).await.unwrap();
        assert_eq!(
            import::import_or_create(&ctx, &mut copy, &resolved)
                .await
                .unwrap(),
            import::Outcome::Created
        );
        assert!(engine.pool_exists(&pool).await.unwrap());
        assert!(
            cspis.get("crash-cspi").await.unwrap().status.is_none(),
            "nothing was written"
        );

        // Second life: normal passes until ONLINE.
        let online = wait_until("ONLINE", Duration::from_secs(60), || async {
            let c = cspis.get("crash-cspi").await.unwrap();
            if c.status.as_ref().and_then(|s| s.phase.clone())
                == Some(CStorPoolInstancePhase::Online)
            {
                return Some(c);
            }
            let _ = pool_manager::reconcile(Arc::new(c), ctx.clone()).await;
            None
        })
        .await
        .unwrap();
        assert_eq!(
            rec.lines()
                .iter()
                .filter(|l| l.starts_with("zpool create"))
                .count(),
            1,
            "{:?}",
            rec.lines()
        );
        assert!(online.status.as_ref().unwrap().capacity.is_some());
        assert!(
            online
                .finalizers()
                .iter()
                .any(|f| f == finalizer::POOL_PROTECTION)
        );
        let dev_links: Vec<Option<String>> = online.spec.data_raid_groups[0]
            .block_devices
            .iter()
            .map(|b| b.dev_link.clone())
            .collect();
        assert!(
            dev_links
                .iter()
                .all(|d| d.as_deref().is_some_and(|p| p.ends_with(".img"))),
            "{dev_links:?}"
        );

        // Deletion with no replica: pool destroyed, finalizer removed, object gone.
        // Read-only threshold: at 0 % the pool is over it at once and is set
        // read-only; at 100 % switching is disabled and the pool is writable again.
        for (limit, want) in [(0, true), (100, false)] {
            let mut c = cspis.get("crash-cspi").await.unwrap();
            c.spec.pool_config.as_mut().unwrap().ro_threshold_limit = Some(limit);
            cspis
                .replace("crash-cspi", &PostParams::default(), &c)
                .await
                .unwrap();
            wait_until(
                "readOnly follows the threshold",
                Duration::from_secs(60),
                || async {
                    let c = cspis.get("crash-cspi").await.unwrap();
                    if c.status.as_ref().is_some_and(|s| s.read_only == want) {
                        return Some(());
                    }
                    let _ = pool_manager::reconcile(Arc::new(c), ctx.clone()).await;
                    None
                },
            )
            .await
            .unwrap();
            assert_eq!(shim.read_only.lock().unwrap().get(&pool), Some(&want));
            let value = if want { "on" } else { "off" };
            assert!(
                rec.lines()
                    .contains(&format!("zpool set io.openebs:readonly={value} {pool}")),
                "{:?}",
                rec.lines()
            );
        }

        cspis
            .delete("crash-cspi", &DeleteParams::default())
            .await
            .unwrap();
        wait_until("CSPI gone", Duration::from_secs(60), || async {
            match cspis.get_opt("crash-cspi").await.unwrap() {
                None => true,
                Some(c) => {
                    let _ = pool_manager::reconcile(Arc::new(c), ctx.clone()).await;
                    false
                }
            }
        })
        .await
        .unwrap();
        assert!(!engine.pool_exists(&pool).await.unwrap());
        assert!(
            rec.lines()
                .iter()
                .any(|l| l.starts_with("zpool labelclear")),
            "{:?}",
            rec.lines()
        );
    })
    .await;
    support::destroy_pools(&cstor_api::exec::HostRunner::new(), &[pool]).await;
    let _ = cluster.cleanup().await;
    outcome.finish();
}
