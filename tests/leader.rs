//! Leader election on a Lease: of two replicas one leads and the other waits; when the leader
//! shuts down it releases the lease and the other takes over (a waiting replica looks again when
//! the lease it saw would expire, so within one lease duration).

use std::{sync::Arc, time::Duration};

use cstor_api::leader::{LeaderConfig, LeaderOutcome, run_as_leader};
use cstor_testkit::{TestCluster, wait_until};
use tokio::sync::{Notify, watch};

#[tokio::test]
async fn one_replica_leads_and_the_other_takes_over_on_shutdown() {
    let cluster = TestCluster::start().await;
    let config = |id: &str| {
        let mut c = LeaderConfig::new("cstor-test-leader", cluster.namespace());
        c.identity = id.to_owned();
        c.duration = Duration::from_secs(6);
        c.grace = Duration::from_secs(2);
        c
    };
    let (leader_tx, leader_rx) = watch::channel(Vec::<&'static str>::new());
    let replica = |id: &'static str, shutdown: Arc<Notify>| {
        let client = cluster.client();
        let cfg = config(id);
        let tx = leader_tx.clone();
        tokio::spawn(async move {
            let stop = async move { shutdown.notified().await };
            run_as_leader(client, &cfg, stop, |stopped| async move {
                tx.send_modify(|l| l.push(id));
                stopped.await;
                tx.send_modify(|l| l.retain(|x| *x != id));
            })
            .await
        })
    };
    let (stop_a, stop_b) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let a = replica("a", stop_a.clone());
    let first = wait_until("a leads", Duration::from_secs(60), || {
        let l = leader_rx.borrow().clone();
        async move { l == ["a"] }
    })
    .await;
    assert!(first.is_ok(), "{first:?}");
    let b = replica("b", stop_b.clone());
    // b waits while a holds the lease: a test of "only one acts", bounded by a's renewals.
    let mut rx = leader_rx.clone();
    let both = tokio::time::timeout(Duration::from_secs(3), rx.wait_for(|l| l.len() > 1)).await;
    assert!(
        both.is_err(),
        "two leaders at once: {:?}",
        leader_rx.borrow()
    );

    stop_a.notify_one();
    assert_eq!(a.await.unwrap(), Ok(LeaderOutcome::Shutdown));
    let next = wait_until("b leads", Duration::from_secs(60), || {
        let l = leader_rx.borrow().clone();
        async move { l == ["b"] }
    })
    .await;
    assert!(next.is_ok(), "{next:?}");
    stop_b.notify_one();
    assert_eq!(b.await.unwrap(), Ok(LeaderOutcome::Shutdown));
    cluster.cleanup().await.ok();
}
