//! Bad CSPC input is reported in the CSPC status and Events, and nothing is created: a pool
//! whose nodeSelector names an unknown node, one naming a missing block device, a mirror group
//! with 3 disks.

mod support;

use std::time::Duration;

use cstor_api::{constants::label, cstor::*, ndm::BlockDeviceClaim};
use cstor_operators::cspc_operator::{self, POOL_SPEC_VALID};
use cstor_testkit::{TestCluster, wait_until};
use kube::{
    Api,
    api::{DeleteParams, ListParams, PostParams},
};

fn pool(node: &str, raid: RaidGroupType, bds: &[&str]) -> PoolSpec {
    PoolSpec {
        node_selector: [(label::HOSTNAME.to_string(), node.to_string())].into(),
        data_raid_groups: vec![RaidGroup {
            block_devices: bds
                .iter()
                .map(|b| CStorPoolInstanceBlockDevice::named(*b))
                .collect(),
            ..Default::default()
        }],
        pool_config: Some(PoolConfig {
            data_raid_group_type: raid,
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_pools_are_reported_and_nothing_is_created() {
    support::init_tracing();
    let cluster = TestCluster::start().await;
    let client = cluster.client();
    let ns = cluster.namespace().to_string();
    let dir = tempfile::tempdir().unwrap();
    let node = support::unique("node");
    support::create_node(&client, &node).await;
    let bds: Vec<String> = (0..3).map(|i| support::unique(&format!("bd{i}"))).collect();
    for b in &bds {
        support::create_bd(&client, &ns, dir.path(), b, &node).await;
    }
    let missing = support::unique("missing-bd");
    let cspcs: Api<CStorPoolCluster> = Api::namespaced(client.clone(), &ns);
    let cspc = CStorPoolCluster::namespaced(
        "bad",
        &ns,
        CStorPoolClusterSpec {
            pools: Some(vec![
                pool(
                    &support::unique("no-such-node"),
                    RaidGroupType::Stripe,
                    &[&bds[0]],
                ),
                pool(&node, RaidGroupType::Stripe, &[&missing]),
                pool(&node, RaidGroupType::Mirror, &[&bds[0], &bds[1], &bds[2]]),
            ]),
            ..Default::default()
        },
    );
    cspcs.create(&PostParams::default(), &cspc).await.unwrap();
    let ctx = cspc_operator::Context::new(client.clone(), Default::default())
        .with_resync(Duration::from_secs(2));
    let op = tokio::spawn(cspc_operator::run(ctx, Some(ns.clone())));
    let cond = wait_until("PoolSpecValid=False", Duration::from_secs(60), || async {
        let c = cspcs.get("bad").await.unwrap();
        c.status.and_then(|s| s.conditions).and_then(|cs| {
            cs.into_iter()
                .find(|c| c.type_ == POOL_SPEC_VALID && c.status == ConditionStatus::False)
        })
    })
    .await
    .unwrap();
    let msg = cond.message.unwrap();
    assert!(
        msg.contains("spec.pools[0]: nodeSelector") && msg.contains("matches 0 nodes"),
        "{msg}"
    );
    assert!(
        msg.contains(&format!(
            "spec.pools[1]: block device {missing} does not exist"
        )),
        "{msg}"
    );
    assert!(
        msg.contains(
            "spec.pools[2]: dataRaidGroups[0]: mirror raid group should have disks in multiple of 2"
        ),
        "{msg}"
    );
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), &ns);
    let evs = events.list(&ListParams::default()).await.unwrap();
    assert!(
        evs.items
            .iter()
            .any(|e| e.reason.as_deref() == Some("InvalidPoolSpec")),
        "a Warning event names the problem"
    );
    let status = cspcs.get("bad").await.unwrap().status.unwrap();
    assert_eq!(
        (status.desired_instances, status.provisioned_instances),
        (Some(3), Some(0))
    );
    let cspis: Api<CStorPoolInstance> = Api::namespaced(client.clone(), &ns);
    let bdcs: Api<BlockDeviceClaim> = Api::namespaced(client.clone(), &ns);
    assert!(
        cspis
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert!(
        bdcs.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    cspcs.delete("bad", &DeleteParams::default()).await.unwrap();
    wait_until("CSPC gone", Duration::from_secs(30), || async {
        cspcs.get_opt("bad").await.unwrap().is_none()
    })
    .await
    .unwrap();
    op.abort();
    support::delete_node(&client, &node).await;
    let _ = cluster.cleanup().await;
}
