//! Pool settings edited in a CSPC reach the existing CSPI and its pool-manager Deployment
//! (upstream's syncCSPI): CSPC-level resources, auxResources, tolerations and
//! priorityClassName, and a pool-level compression change. No data engine involved.

mod support;

use std::{collections::BTreeMap, time::Duration};

use cstor_api::cstor::*;
use cstor_operators::cspc_operator;
use cstor_testkit::{TestCluster, wait_until};
use k8s_openapi::{
    api::{
        apps::v1::Deployment,
        core::v1::{ResourceRequirements, Toleration},
    },
    apimachinery::pkg::api::resource::Quantity,
};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, PostParams},
};

const DEADLINE: Duration = Duration::from_secs(60);

fn requests(cpu: &str, memory: &str) -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), Quantity(cpu.into())),
            ("memory".to_string(), Quantity(memory.into())),
        ])),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cspc_settings_reach_cspi_and_deployment() {
    support::init_tracing();
    let cluster = TestCluster::start().await;
    let client = cluster.client();
    let ns = cluster.namespace().to_string();
    let dir = tempfile::tempdir().unwrap();
    let node = support::unique("node");
    support::create_node(&client, &node).await;
    let bd = support::unique("bd");
    support::create_bd(&client, &ns, dir.path(), &bd, &node).await;
    let cspcs: Api<CStorPoolCluster> = Api::namespaced(client.clone(), &ns);
    let cspis: Api<CStorPoolInstance> = Api::namespaced(client.clone(), &ns);
    let deps: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let name = "cspc-sync";
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

    let result = support::scenario(Duration::from_secs(200), async {
        support::bind_until(&client, &ns, name, 1).await;
        let cspi = support::cspi_on(&client, &ns, name, &node).await;
        let dep = wait_until("pool Deployment", DEADLINE, || async {
            deps.get_opt(&cspi.name_any()).await.unwrap()
        })
        .await
        .unwrap();
        let pod = dep.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        assert_eq!(pod.priority_class_name.as_deref().unwrap_or(""), "");
        assert!(pod.tolerations.as_ref().is_none_or(|t| t.is_empty()));
        let generation = dep.metadata.generation;

        // Edit the CSPC: cluster-wide pool resources, tolerations, priority class; pool compression.
        let toleration = Toleration {
            key: Some("storage".into()),
            operator: Some("Equal".into()),
            value: Some("cstor".into()),
            effect: Some("NoSchedule".into()),
            ..Default::default()
        };
        support::edit(&cspcs, name, |latest| {
            latest.spec.resources = Some(requests("250m", "512Mi"));
            latest.spec.aux_resources = Some(requests("50m", "64Mi"));
            latest.spec.tolerations = Some(vec![toleration.clone()]);
            latest.spec.priority_class_name = Some("storage-critical".into());
            latest.spec.pools.as_mut().unwrap()[0]
                .pool_config
                .as_mut()
                .unwrap()
                .compression = Some("off".into());
        })
        .await;

        let synced = wait_until("CSPI poolConfig synced", DEADLINE, || async {
            let c = cspis.get(&cspi.name_any()).await.unwrap();
            let cfg = c.spec.pool_config.clone().unwrap_or_default();
            (cfg.priority_class_name.as_deref() == Some("storage-critical")).then_some(cfg)
        })
        .await
        .unwrap();
        assert_eq!(synced.resources, Some(requests("250m", "512Mi")));
        assert_eq!(synced.aux_resources, Some(requests("50m", "64Mi")));
        assert_eq!(synced.tolerations, Some(vec![toleration.clone()]));
        assert_eq!(synced.compression.as_deref(), Some("off"));
        let after = cspis.get(&cspi.name_any()).await.unwrap();
        assert_eq!(
            after.spec.data_raid_groups, cspi.spec.data_raid_groups,
            "raid groups untouched"
        );

        let dep = wait_until("Deployment synced", DEADLINE, || async {
            let d = deps.get(&cspi.name_any()).await.unwrap();
            let pod = d.spec.as_ref()?.template.spec.as_ref()?;
            (pod.priority_class_name.as_deref() == Some("storage-critical")).then_some(d)
        })
        .await
        .unwrap();
        let pod = dep.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        assert_eq!(pod.tolerations, Some(vec![toleration]));
        let container = |n: &str| {
            pod.containers
                .iter()
                .find(|c| c.name == n)
                .unwrap_or_else(|| panic!("container {n}"))
        };
        // No m-exporter sidecar: pool-manager serves the pool metrics on 9500 itself.
        let names: Vec<&str> = pod.containers.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["cstor-pool-mgmt", "cstor-pool"]);
        let mgmt = container("cstor-pool-mgmt");
        assert!(
            mgmt.ports
                .iter()
                .flatten()
                .any(|p| p.container_port == 9500),
            "exporter port on the pool manager"
        );
        assert!(
            mgmt.env
                .iter()
                .flatten()
                .any(|e| e.name == "EXPORTER_ADDR" && e.value.as_deref() == Some("0.0.0.0:9500")),
            "the pool manager serves the exporter"
        );
        let mem = |c: &k8s_openapi::api::core::v1::Container| {
            c.resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get("memory"))
                .map(|q| q.0.clone())
        };
        assert_eq!(
            mem(container("cstor-pool")).as_deref(),
            Some("512Mi"),
            "pool container gets resources"
        );
        assert_eq!(
            mem(container("cstor-pool-mgmt")).as_deref(),
            Some("64Mi"),
            "management container gets auxResources"
        );
        if generation.is_some() {
            assert!(
                dep.metadata.generation > generation,
                "the pod template changed (rollout)"
            );
        }
        cspcs.delete(name, &DeleteParams::default()).await.unwrap();
    })
    .await;
    operator.abort();
    support::delete_node(&client, &node).await;
    let _ = cluster.cleanup().await;
    result.finish();
}
