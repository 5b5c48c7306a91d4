//! 200 concurrent CreateVolume calls over the controller's unix socket against the Kubernetes
//! API test server (or the cluster named by CSTOR_TEST_KUBECONFIG). Prints calls per second
//! and Kubernetes API requests per volume (counted by a layer on the controller's client).
//!
//! `cargo bench -p cstor-csi-controller --bench create_volume`

#[path = "../tests/common/mod.rs"]
mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use cstor_api::{
    cstor::CStorVolumeConfig,
    proto::csi::v1::{Topology, TopologyRequirement, controller_client::ControllerClient},
};
use cstor_csi_controller::{Config, ControllerService, bind_unix, serve_unix};
use cstor_testkit::TestCluster;
use kube::{Api, api::ListParams, client::ClientBuilder};

const VOLUMES: usize = 200;

async fn counting_client(cluster: &TestCluster, counter: Arc<AtomicU64>) -> kube::Client {
    let config = match cluster.server() {
        Some(srv) => srv.kube_config(),
        None => {
            let path = std::env::var("CSTOR_TEST_KUBECONFIG")
                .expect("a real cluster needs CSTOR_TEST_KUBECONFIG");
            let kc = kube::config::Kubeconfig::read_from(path).expect("readable kubeconfig");
            kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .expect("usable kubeconfig")
        }
    };
    let layer = tower::util::MapRequestLayer::new(move |req: http::Request<kube::client::Body>| {
        counter.fetch_add(1, Ordering::Relaxed);
        req
    });
    ClientBuilder::try_from(config)
        .expect("client stack")
        .with_layer(&layer)
        .build()
}

#[tokio::main]
async fn main() {
    let cluster = TestCluster::start().await;
    let counter = Arc::new(AtomicU64::new(0));
    let client = counting_client(&cluster, counter.clone()).await;
    let svc = ControllerService::new(client, Config::new(cluster.namespace()));
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("csi.sock");
    let listener = bind_unix(&socket).unwrap();
    tokio::spawn(serve_unix(listener, svc, true, std::future::pending()));
    let channel = common::unix_channel(socket).await;

    let requests: Vec<_> = (0..VOLUMES)
        .map(|i| {
            let mut r = common::create_req(&common::pv_name(), (i as i64 % 10 + 1) * common::GIB);
            r.accessibility_requirements = Some(TopologyRequirement {
                requisite: vec![],
                preferred: vec![Topology {
                    segments: [(
                        "topology.cstor.openebs.io/nodeName".to_string(),
                        format!("node-{}", i % 3),
                    )]
                    .into(),
                }],
            });
            r
        })
        .collect();
    let before = counter.load(Ordering::Relaxed);
    let start = Instant::now();
    let calls = requests.into_iter().map(|r| {
        let mut c = ControllerClient::new(channel.clone());
        async move { c.create_volume(r).await }
    });
    let results = futures::future::join_all(calls).await;
    let elapsed = start.elapsed();
    let api_requests = counter.load(Ordering::Relaxed) - before;
    let failed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "{} CreateVolume calls failed, first: {:?}",
        failed.len(),
        failed.first()
    );
    let cvcs = Api::<CStorVolumeConfig>::namespaced(cluster.client(), cluster.namespace())
        .list(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(cvcs.items.len(), VOLUMES);

    println!(
        "create_volume: {VOLUMES} concurrent CreateVolume calls in {:.3} s",
        elapsed.as_secs_f64()
    );
    println!(
        "create_volume: {:.0} calls/s",
        VOLUMES as f64 / elapsed.as_secs_f64()
    );
    println!(
        "create_volume: {:.2} Kubernetes API requests per volume ({api_requests} in total)",
        api_requests as f64 / VOLUMES as f64
    );
    cluster.cleanup().await.unwrap();
}
