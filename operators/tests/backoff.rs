//! Errors requeue with exponential backoff and jitter per object (the operators used to retry a
//! broken object every 5 s forever); waiting on another component keeps a steady pace; a
//! successful pass forgets the failures.

use std::time::Duration;

use cstor_api::cstor::{CStorPoolCluster, CStorVolumeConfig, CStorVolumeReplica};
use cstor_operators::{cspc_operator, cvc_operator, pool_manager};
use cstor_testkit::TestCluster;

fn api_down() -> kube::Error {
    kube::Error::Api(
        kube::core::Status::failure(
            "the server is currently unable to handle the request",
            "ServiceUnavailable",
        )
        .with_code(503)
        .boxed(),
    )
}

/// `delays` grow about twofold per failure (±20 % jitter) until they reach `cap`.
fn assert_backs_off(delays: &[Duration], cap: Duration) {
    for pair in delays.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        assert!(
            b >= a.mul_f64(1.3).min(cap.mul_f64(0.8)),
            "no backoff: {delays:?}"
        );
    }
    assert!(delays.iter().all(|d| *d <= cap), "{delays:?}");
    assert!(*delays.last().unwrap() >= cap.mul_f64(0.8), "{delays:?}");
}

#[tokio::test]
async fn cvc_errors_back_off_and_a_success_resets() {
    let cluster = TestCluster::start().await;
    let mut config = cvc_operator::Config::new(cluster.namespace());
    config.retry = Duration::from_millis(300);
    config.wait_retry = Duration::from_millis(100);
    let ctx = cvc_operator::Context::new(cluster.client(), config);
    let mut cvc = CStorVolumeConfig::new("pvc-backoff", Default::default());
    cvc.metadata.namespace = Some(cluster.namespace().to_owned());
    cvc.metadata.uid = Some("uid-backoff".into());

    let failed = cvc_operator::Error::Kube {
        action: "get CStorVolumeConfig pvc-backoff".into(),
        source: api_down(),
    };
    let delays: Vec<Duration> = (0..12)
        .map(|_| cvc_operator::retry_delay(&cvc, &failed, &ctx))
        .collect();
    assert_backs_off(&delays, Duration::from_secs(300));
    assert_eq!(ctx.backoff.failing(), 1);

    // A volume blocked by its surroundings is looked at again at least every 30 s.
    let blocked = cvc_operator::Error::Blocked {
        reason: "NotEnoughPools",
        message: "no pools".into(),
    };
    assert!(cvc_operator::retry_delay(&cvc, &blocked, &ctx) <= cvc_operator::BLOCKED_RETRY_MAX);

    // The CVC is gone: the pass succeeds and its failures are forgotten.
    cvc_operator::reconcile(std::sync::Arc::new(cvc.clone()), ctx.clone())
        .await
        .expect("a pass over a deleted CVC succeeds");
    assert_eq!(ctx.backoff.failing(), 0);
    let first = cvc_operator::retry_delay(&cvc, &failed, &ctx);
    assert!(first <= Duration::from_millis(360), "{first:?}");
    cluster.cleanup().await.ok();
}

#[tokio::test]
async fn pool_errors_back_off_and_waiting_keeps_its_pace() {
    let client = cstor_testkit::fake_api::client(None, "openebs");
    let ctx = cspc_operator::Context::new(client.clone(), Default::default());
    let mut cspc = CStorPoolCluster::new("cspc-backoff", Default::default());
    cspc.metadata.uid = Some("uid-cspc".into());
    let failed = cspc_operator::Error::Kube(api_down());
    let delays: Vec<Duration> = (0..10)
        .map(|_| cspc_operator::reconcile::retry_delay(&cspc, &failed, &ctx))
        .collect();
    assert_backs_off(&delays, Duration::from_secs(60));
    let waiting = cspc_operator::Error::Waiting("pools being destroyed".into());
    assert_eq!(
        cspc_operator::reconcile::retry_delay(&cspc, &waiting, &ctx),
        Duration::from_secs(5)
    );

    let engine = std::sync::Arc::new(cstor_operators::engine::CstorEngine::new(
        std::sync::Arc::new(cstor_api::exec::ScriptedRunner::new()),
    ));
    let pm = pool_manager::Context::new(client, engine, "openebs", "uid-cspi", "uid-cspc");
    let mut cvr = CStorVolumeReplica::new("pvc-1-cstor-x", Default::default());
    cvr.metadata.uid = Some("uid-cvr".into());
    let failed = pool_manager::Error::invalid("CVR spec.capacity", "missing or empty");
    let delays: Vec<Duration> = (0..10)
        .map(|_| pool_manager::retry_delay(&cvr, &failed, &pm))
        .collect();
    assert_backs_off(&delays, Duration::from_secs(60));
    assert_eq!(pm.backoff.failing(), 1);
}
