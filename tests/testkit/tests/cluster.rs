//! The cluster switch and the wait helpers. Without `CSTOR_TEST_KUBECONFIG` these run against the
//! in-process server; with it, against the real cluster.

use std::time::Duration;

use cstor_testkit::{
    CrdSpec, TestCluster,
    cluster::{KUBECONFIG_ENV, crd_dir, load_crds},
    wait_for, wait_until,
};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::{
    Api,
    api::{DynamicObject, ListParams, ObjectMeta, PostParams},
};

fn real_cluster() -> bool {
    std::env::var_os(KUBECONFIG_ENV).is_some_and(|v| !v.is_empty())
}

#[tokio::test]
async fn cluster_gives_a_fresh_namespace_and_cleans_it_up() {
    let cluster = TestCluster::start().await;
    assert_eq!(cluster.is_real(), real_cluster());
    assert!(
        cluster.namespace().starts_with("cstor-test-"),
        "{}",
        cluster.namespace()
    );
    let client = cluster.client();
    // every CRD of deploy/crds is installed, Established, and its resources are served
    let repo_crds = load_crds(&crd_dir()).unwrap();
    assert_eq!(cluster.crds().len(), repo_crds.len());
    for crd in &repo_crds {
        for v in crd.spec.versions.iter().filter(|v| v.served) {
            let ar = kube::discovery::ApiResource {
                group: crd.spec.group.clone(),
                version: v.name.clone(),
                api_version: format!("{}/{}", crd.spec.group, v.name),
                kind: crd.spec.names.kind.clone(),
                plural: crd.spec.names.plural.clone(),
            };
            let api: Api<DynamicObject> = if crd.spec.scope == "Namespaced" {
                Api::namespaced_with(client.clone(), cluster.namespace(), &ar)
            } else {
                Api::all_with(client.clone(), &ar)
            };
            api.list(&ListParams::default().limit(1))
                .await
                .unwrap_or_else(|e| {
                    panic!("{} {} is not served: {e}", crd.spec.names.plural, v.name)
                });
        }
    }
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.get(cluster.namespace())
        .await
        .expect("the test namespace exists");
    let other = TestCluster::start().await;
    assert_ne!(
        cluster.namespace(),
        other.namespace(),
        "every TestCluster gets its own namespace"
    );
    other.cleanup().await.unwrap();

    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), cluster.namespace());
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some("x".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    cms.create(&PostParams::default(), &cm).await.unwrap();
    let ns = cluster.namespace().to_string();
    cluster.cleanup().await.unwrap();
    wait_for(Duration::from_secs(120), || async {
        nss.get_opt(&ns)
            .await
            .unwrap()
            .is_none_or(|n| n.metadata.deletion_timestamp.is_some())
    })
    .await
    .expect("cleanup deletes the namespace");
}

#[tokio::test]
async fn real_only_skips_without_a_kubeconfig() {
    let got = TestCluster::real_only("real_only_skips_without_a_kubeconfig").await;
    assert_eq!(got.is_some(), real_cluster());
    if let Some(c) = got {
        c.cleanup().await.unwrap();
    }
}

#[tokio::test]
async fn repository_crds_load() {
    // deploy/crds may be empty or missing today; whatever is there must parse.
    let crds = load_crds(&crd_dir()).expect("the repository's CRD manifests parse");
    for crd in &crds {
        assert!(crd.metadata.name.is_some());
    }
}

#[tokio::test]
async fn crds_from_a_directory_are_installed_and_established() {
    let dir = tempfile::tempdir().unwrap();
    let a = CrdSpec::new("testkit.example.com", "v1", "Alpha", "alphas").with_status();
    let b = CrdSpec::new("testkit.example.com", "v1", "Beta", "betas").cluster_scoped();
    let multi = format!(
        "{}---\n{}",
        serde_yaml::to_string(&a.crd()).unwrap(),
        serde_yaml::to_string(&b.crd()).unwrap()
    );
    std::fs::write(dir.path().join("crds.yaml"), multi).unwrap();
    std::fs::write(dir.path().join("README.md"), "not a manifest").unwrap();
    if real_cluster() {
        println!(
            "SKIPPED crds_from_a_directory_are_installed_and_established: would install test CRDs on a real cluster"
        );
        return;
    }
    let cluster = TestCluster::try_start_with_crds(dir.path()).await.unwrap();
    assert_eq!(
        cluster.crds(),
        ["alphas.testkit.example.com", "betas.testkit.example.com"]
    );
    let alphas: Api<DynamicObject> =
        Api::namespaced_with(cluster.client(), cluster.namespace(), &a.api_resource());
    alphas
        .create(
            &PostParams::default(),
            &DynamicObject::new("a1", &a.api_resource()),
        )
        .await
        .unwrap();
    assert_eq!(
        alphas
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );

    std::fs::write(
        dir.path().join("zz-bad.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n",
    )
    .unwrap();
    let err = load_crds(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("zz-bad.yaml") && err.contains("ConfigMap"),
        "{err}"
    );
}

#[tokio::test]
async fn wait_for_returns_values_and_times_out() {
    let mut n = 0;
    let got = wait_for(Duration::from_secs(60), || {
        n += 1;
        let v = n;
        async move { (v >= 3).then_some(v) }
    })
    .await
    .unwrap();
    assert_eq!(got, 3);
    let err = wait_until(
        "something that never happens",
        Duration::from_millis(50),
        || async { false },
    )
    .await
    .unwrap_err();
    assert!(err.to_string().starts_with("timed out after"), "{err}");
    assert!(err.to_string().contains("something that never happens"));
    assert!(err.waited >= Duration::from_millis(50));
}
