//! Scenario: one CSPC with three pools on three fake nodes — mirror (2 disks), raidz (3 disks),
//! raidz2 (6 disks) — provisioned through the cspc-operator and realised by three pool managers
//! on REAL zfs-fuse over sparse files; each pool ONLINE with the requested vdev layout. Then the
//! CSPC is deleted: every pool destroyed, every claim released, CSPIs and Deployments gone.

mod support;

use std::time::Duration;

use cstor_api::{constants::label, cstor::*, ndm::BlockDeviceClaim};
use cstor_operators::cspc_operator;
use cstor_testkit::{TestCluster, wait_until};
use k8s_openapi::api::apps::v1::Deployment;
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, ListParams, PostParams},
};

const DEADLINE: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_raidz_raidz2_pools_then_cspc_deletion() {
    support::init_tracing();
    if let Err(why) = support::ensure_zfs_fuse().await {
        eprintln!("SKIP mirror_raidz_raidz2_pools_then_cspc_deletion: {why}");
        return;
    }
    let cluster = TestCluster::start().await;
    let client = cluster.client();
    let ns = cluster.namespace().to_string();
    let dir = tempfile::tempdir().unwrap();
    // (raid type, disks, zpool vdev name prefix)
    let layouts = [
        (RaidGroupType::Mirror, 2, "mirror"),
        (RaidGroupType::Raidz, 3, "raidz"),
        (RaidGroupType::Raidz2, 6, "raidz2"),
    ];
    let mut nodes = Vec::new();
    let mut disks: Vec<Vec<(String, String)>> = Vec::new();
    let mut pools_spec = Vec::new();
    let zpools: Vec<String> = (0..layouts.len())
        .map(|i| support::unique_pool(&format!("topo{i}")))
        .collect();
    for (i, (raid, n, _)) in layouts.iter().enumerate() {
        let node = support::unique(&format!("node{i}"));
        support::create_node(&client, &node).await;
        let mut mine = Vec::new();
        for d in 0..*n {
            let bd = support::unique(&format!("bd{i}-{d}"));
            let path = support::create_bd(&client, &ns, dir.path(), &bd, &node).await;
            mine.push((bd, path));
        }
        let names: Vec<&str> = mine.iter().map(|(b, _)| b.as_str()).collect();
        pools_spec.push(support::pool_spec(
            &node,
            raid.clone(),
            vec![support::raid_group(&names)],
        ));
        nodes.push(node);
        disks.push(mine);
    }
    let cspcs: Api<CStorPoolCluster> = Api::namespaced(client.clone(), &ns);
    let cspis: Api<CStorPoolInstance> = Api::namespaced(client.clone(), &ns);
    let bdcs: Api<BlockDeviceClaim> = Api::namespaced(client.clone(), &ns);
    let deps: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let name = "cspc-topologies";
    let cspc = CStorPoolCluster::namespaced(
        name,
        &ns,
        CStorPoolClusterSpec {
            pools: Some(pools_spec),
            ..Default::default()
        },
    );
    cspcs.create(&PostParams::default(), &cspc).await.unwrap();
    let op_ctx = cspc_operator::Context::new(client.clone(), Default::default())
        .with_resync(Duration::from_secs(2));
    let operator = tokio::spawn(cspc_operator::run(op_ctx, Some(ns.clone())));
    let mut managers = Vec::new();

    let result = support::scenario(Duration::from_secs(400), async {
        support::bind_until(&client, &ns, name, 11).await;
        let mut engines = Vec::new();
        let mut cspi_names = Vec::new();
        for (i, node) in nodes.iter().enumerate() {
            let cspi = support::cspi_on(&client, &ns, name, node).await;
            let raid = cspi
                .spec
                .pool_config
                .as_ref()
                .unwrap()
                .data_raid_group_type
                .clone();
            assert_eq!(
                raid, layouts[i].0,
                "CSPI on {node} carries the pool's raid type"
            );
            let (task, engine, _rec) =
                support::spawn_pool_manager(&client, &ns, &cspi, &zpools[i], dir.path());
            managers.push(task);
            engines.push(engine);
            cspi_names.push(cspi.name_any());
        }
        for (i, cspi) in cspi_names.iter().enumerate() {
            let online = support::wait_online(&client, &ns, cspi).await;
            let topo = engines[i].pool_topology(&zpools[i]).await.unwrap();
            assert_eq!(
                topo.children.len(),
                1,
                "{}: one raid group: {topo:#?}",
                layouts[i].2
            );
            let group = &topo.children[0];
            let kind_ok = match layouts[i].0 {
                // zfs-fuse names a single-parity group `raidz1-0`, newer ZFS `raidz1-0` or `raidz-0`.
                RaidGroupType::Raidz => {
                    group.name.starts_with("raidz")
                        && !group.name.starts_with("raidz2")
                        && !group.name.starts_with("raidz3")
                }
                _ => group.name.starts_with(layouts[i].2),
            };
            assert!(
                kind_ok,
                "vdev {} is not a {} group",
                group.name, layouts[i].2
            );
            assert_eq!(
                group.children.len(),
                layouts[i].1,
                "{}: every disk in the group",
                layouts[i].2
            );
            for (_, path) in &disks[i] {
                assert!(topo.contains_path(path), "{path} in pool {}", zpools[i]);
            }
            let cap = online.status.as_ref().unwrap().capacity.as_ref().unwrap();
            assert_ne!(cap.total.0, "0", "capacity reported for {}", layouts[i].2);
            // Each device's devLink is reported.
            for g in &online.spec.data_raid_groups {
                for b in &g.block_devices {
                    assert!(b.dev_link.is_some(), "devLink of {}", b.block_device_name);
                }
            }
            assert!(
                deps.get_opt(cspi).await.unwrap().is_some(),
                "Deployment of {cspi}"
            );
        }
        wait_until("CSPC status counts", DEADLINE, || async {
            let st = cspcs.get(name).await.unwrap().status.unwrap_or_default();
            st.provisioned_instances == Some(3) && st.desired_instances == Some(3)
        })
        .await
        .unwrap();

        // Deleting the CSPC takes everything with it.
        cspcs.delete(name, &DeleteParams::default()).await.unwrap();
        wait_until("CSPC gone", DEADLINE, || async {
            cspcs.get_opt(name).await.unwrap().is_none()
        })
        .await
        .unwrap();
        for (i, z) in zpools.iter().enumerate() {
            assert!(
                !engines[i].pool_exists(z).await.unwrap(),
                "pool {z} destroyed"
            );
        }
        let sel = ListParams::default().labels(&format!("{}={name}", label::CSTOR_POOL_CLUSTER));
        assert!(
            cspis.list(&sel).await.unwrap().items.is_empty(),
            "no CSPI left"
        );
        assert!(
            bdcs.list(&sel).await.unwrap().items.is_empty(),
            "no claim left"
        );
        for cspi in &cspi_names {
            wait_until(
                &format!("Deployment {cspi} collected"),
                DEADLINE,
                || async { deps.get_opt(cspi).await.unwrap().is_none() },
            )
            .await
            .unwrap();
        }
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
