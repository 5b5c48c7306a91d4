//! Scenario: disk replacement end to end on REAL zfs-fuse. A mirror CSPC [a, b] is provisioned;
//! the user swaps b for c in the CSPC. The cspc-operator claims c with
//! `openebs.io/bd-predecessor: b` and, once NDM (the test) binds it, renames b → c in the CSPI;
//! the pool manager runs `zpool replace`, follows the resilver to completion, clears b's labels,
//! releases b's claim and drops the marker. The pool stays ONLINE and the CSPI shows c.

mod support;

use std::time::Duration;

use cstor_api::{
    constants::{annotation, label},
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

fn claim_of<'a>(claims: &'a [BlockDeviceClaim], bd: &str) -> Option<&'a BlockDeviceClaim> {
    claims
        .iter()
        .find(|c| c.spec.block_device_name.as_deref() == Some(bd))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_disk_replacement() {
    support::init_tracing();
    if let Err(why) = support::ensure_zfs_fuse().await {
        eprintln!("SKIP mirror_disk_replacement: {why}");
        return;
    }
    let cluster = TestCluster::start().await;
    let client = cluster.client();
    let ns = cluster.namespace().to_string();
    let dir = tempfile::tempdir().unwrap();
    let node = support::unique("node");
    support::create_node(&client, &node).await;
    let mut bds = Vec::new();
    let mut paths = Vec::new();
    for i in 0..3 {
        let bd = support::unique(&format!("bd{i}"));
        paths.push(support::create_bd(&client, &ns, dir.path(), &bd, &node).await);
        bds.push(bd);
    }
    let (a, b, c) = (bds[0].as_str(), bds[1].as_str(), bds[2].as_str());
    let zpool = support::unique_pool("replace");
    let cspcs: Api<CStorPoolCluster> = Api::namespaced(client.clone(), &ns);
    let cspis: Api<CStorPoolInstance> = Api::namespaced(client.clone(), &ns);
    let bdcs: Api<BlockDeviceClaim> = Api::namespaced(client.clone(), &ns);
    let name = "cspc-replace";
    let cspc = CStorPoolCluster::namespaced(
        name,
        &ns,
        CStorPoolClusterSpec {
            pools: Some(vec![support::pool_spec(
                &node,
                RaidGroupType::Mirror,
                vec![support::raid_group(&[a, b])],
            )]),
            ..Default::default()
        },
    );
    cspcs.create(&PostParams::default(), &cspc).await.unwrap();
    let op_ctx = cspc_operator::Context::new(client.clone(), Default::default())
        .with_resync(Duration::from_secs(2));
    let operator = tokio::spawn(cspc_operator::run(op_ctx, Some(ns.clone())));
    let mut manager = None;

    let result = support::scenario(Duration::from_secs(300), async {
        support::bind_until(&client, &ns, name, 2).await;
        let cspi = support::cspi_on(&client, &ns, name, &node).await;
        let (task, engine, rec) =
            support::spawn_pool_manager(&client, &ns, &cspi, &zpool, dir.path());
        manager = Some(task);
        support::wait_online(&client, &ns, &cspi.name_any()).await;
        let topo = engine.pool_topology(&zpool).await.unwrap();
        assert!(topo.contains_path(&paths[1]) && !topo.contains_path(&paths[2]));

        // The user swaps b for c.
        support::edit(&cspcs, name, |latest| {
            latest.spec.pools.as_mut().unwrap()[0].data_raid_groups =
                vec![support::raid_group(&[a, c])];
        })
        .await;

        // The new claim names its predecessor; the CSPI keeps b until that claim is bound.
        let new_claim = wait_until("claim of the new disk", DEADLINE, || async {
            let claims = bdcs.list(&ListParams::default()).await.unwrap().items;
            claim_of(&claims, c).cloned()
        })
        .await
        .unwrap();
        assert_eq!(
            new_claim
                .annotations()
                .get(annotation::BD_PREDECESSOR)
                .map(String::as_str),
            Some(b)
        );
        assert_eq!(
            new_claim
                .labels()
                .get(label::CSTOR_POOL_CLUSTER)
                .map(String::as_str),
            Some(name)
        );
        let names: Vec<String> = cspis
            .get(&cspi.name_any())
            .await
            .unwrap()
            .spec
            .block_device_names()
            .map(str::to_owned)
            .collect();
        assert!(
            names.contains(&b.to_string()) && !names.contains(&c.to_string()),
            "CSPI unchanged before the claim is bound: {names:?}"
        );
        support::bind_until(&client, &ns, name, 3).await;

        // Pool side: replaced, resilvered, old claim released, marker dropped.
        let done = wait_until("replacement completed", DEADLINE, || async {
            let claims = bdcs.list(&ListParams::default()).await.unwrap().items;
            let old_gone = claim_of(&claims, b).is_none();
            let marker_gone = claim_of(&claims, c)
                .is_some_and(|cl| !cl.annotations().contains_key(annotation::BD_PREDECESSOR));
            let cur = cspis.get(&cspi.name_any()).await.unwrap();
            let succeeded = cur
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| {
                    cs.iter().any(|c| {
                        c.type_ == pool_conditions::DISK_REPLACEMENT
                            && c.status == ConditionStatus::False
                            && c.reason.as_deref()
                                == Some(pool_conditions::BLOCK_DEVICE_REPLACEMENT_SUCCEEDED)
                    })
                });
            (old_gone && marker_gone && succeeded).then_some(cur)
        })
        .await
        .unwrap();
        let topo = engine.pool_topology(&zpool).await.unwrap();
        assert!(
            topo.contains_path(&paths[2]),
            "new disk in the pool: {topo:#?}"
        );
        assert!(
            !topo.contains_path(&paths[1]),
            "old disk left the pool: {topo:#?}"
        );
        assert!(topo.contains_path(&paths[0]));
        assert_eq!(topo.children.len(), 1, "still one mirror: {topo:#?}");
        assert_eq!(
            done.status.as_ref().unwrap().phase,
            Some(CStorPoolInstancePhase::Online)
        );
        let group = &done.spec.data_raid_groups[0];
        let entry = group
            .block_devices
            .iter()
            .find(|x| x.block_device_name == c)
            .expect("CSPI lists the new disk");
        assert_eq!(
            entry.dev_link.as_deref(),
            Some(paths[2].as_str()),
            "devLink of the new disk"
        );
        assert!(!group.block_devices.iter().any(|x| x.block_device_name == b));
        let lines = rec.lines();
        assert_eq!(
            lines
                .iter()
                .filter(|l| **l == format!("zpool replace {zpool} {} {}", paths[1], paths[2]))
                .count(),
            1,
            "exactly one zpool replace: {lines:#?}"
        );
        assert!(
            !lines
                .iter()
                .any(|l| l.starts_with(&format!("zpool add {zpool}"))),
            "a replacement is not an expansion: {lines:#?}"
        );
        let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), &ns);
        let evs = events.list(&ListParams::default()).await.unwrap().items;
        assert!(
            evs.iter()
                .any(|e| e.reason.as_deref() == Some("BlockDeviceReplacement")
                    && e.note
                        .as_deref()
                        .is_some_and(|n| n.contains("Resilvering is successful"))),
            "completion event"
        );

        cspcs.delete(name, &DeleteParams::default()).await.unwrap();
        wait_until("CSPC gone", DEADLINE, || async {
            cspcs.get_opt(name).await.unwrap().is_none()
        })
        .await
        .unwrap();
        assert!(!engine.pool_exists(&zpool).await.unwrap());
        assert!(
            bdcs.list(&ListParams::default())
                .await
                .unwrap()
                .items
                .is_empty(),
            "every claim released"
        );
    })
    .await;
    if let Some(m) = manager {
        m.abort();
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
