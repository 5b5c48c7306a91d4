//! The cspc-operator converges as Nodes and BlockDevices appear after the CSPC, with its slow
//! resync set to an hour: the Node and BlockDevice watches bring it back to the CSPC. (A
//! reconcile still running from the previous step may also pick a change up, so this shows
//! convergence without the resync; the `cspcs_naming` unit test shows the BlockDevice mapping.)

mod support;

use std::time::Duration;

use cstor_api::{constants::label, cstor::*, naming, ndm::BlockDeviceClaim};
use cstor_operators::cspc_operator::{self, POOL_SPEC_VALID};
use cstor_testkit::{TestCluster, wait_until};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, ListParams, PostParams},
};

const DEADLINE: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_nodes_and_block_devices_trigger_reconcile() {
    support::init_tracing();
    let cluster = TestCluster::start().await;
    let client = cluster.client();
    let ns = cluster.namespace().to_string();
    let dir = tempfile::tempdir().unwrap();
    let node = support::unique("late-node");
    let bd = support::unique("late-bd");
    let cspcs: Api<CStorPoolCluster> = Api::namespaced(client.clone(), &ns);
    let cspc = CStorPoolCluster::namespaced(
        "late",
        &ns,
        CStorPoolClusterSpec {
            pools: Some(vec![PoolSpec {
                node_selector: [(label::HOSTNAME.to_string(), node.clone())].into(),
                data_raid_groups: vec![RaidGroup {
                    block_devices: vec![CStorPoolInstanceBlockDevice::named(&bd)],
                    ..Default::default()
                }],
                pool_config: Some(PoolConfig {
                    data_raid_group_type: RaidGroupType::Stripe,
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ..Default::default()
        },
    );
    cspcs.create(&PostParams::default(), &cspc).await.unwrap();
    let ctx = cspc_operator::Context::new(client.clone(), Default::default())
        .with_resync(Duration::from_secs(3600));
    let op = tokio::spawn(cspc_operator::run(ctx, Some(ns.clone())));
    let message = |want_node: bool| {
        let cspcs = cspcs.clone();
        async move {
            let c = cspcs.get("late").await.ok()?;
            let cond = c
                .status?
                .conditions?
                .into_iter()
                .find(|c| c.type_ == POOL_SPEC_VALID && c.status == ConditionStatus::False)?;
            let msg = cond.message.unwrap_or_default();
            (msg.contains("matches 0 nodes") == want_node).then_some(msg)
        }
    };
    let first = wait_until("node missing", DEADLINE, || message(true))
        .await
        .unwrap();
    assert!(first.contains(&node), "{first}");

    // The node appears.
    support::create_node(&client, &node).await;
    let second = wait_until("only the disk missing", DEADLINE, || message(false))
        .await
        .unwrap();
    assert!(
        second.contains(&format!("block device {bd} does not exist")),
        "{second}"
    );

    // The block device appears: its claim is created without waiting for the resync.
    support::create_bd(&client, &ns, dir.path(), &bd, &node).await;
    let bds: Api<cstor_api::ndm::BlockDevice> = Api::namespaced(client.clone(), &ns);
    let uid = bds.get(&bd).await.unwrap().uid().unwrap();
    let bdcs: Api<BlockDeviceClaim> = Api::namespaced(client.clone(), &ns);
    let claim = naming::bdc_name(&uid);
    wait_until("claim for the new disk", DEADLINE, || {
        let bdcs = bdcs.clone();
        let claim = claim.clone();
        async move { bdcs.get_opt(&claim).await.ok().flatten() }
    })
    .await
    .unwrap();

    cspcs
        .delete("late", &DeleteParams::default())
        .await
        .unwrap();
    wait_until("CSPC gone", DEADLINE, || async {
        cspcs.get_opt("late").await.unwrap().is_none()
    })
    .await
    .unwrap();
    assert!(
        bdcs.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty(),
        "claims released with the CSPC"
    );
    op.abort();
    support::delete_node(&client, &node).await;
    let _ = cluster.cleanup().await;
}
