//! Discovery documents and `kube::discovery`.

use cstor_testkit::{CrdSpec, ResourceDef, Scope, TestApiServer};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{
    Api,
    api::PostParams,
    discovery::{self, Discovery, Scope as KubeScope},
};

#[tokio::test]
async fn version_and_core_discovery() {
    let srv = TestApiServer::start().await;
    let client = srv.client();
    let v = client.apiserver_version().await.unwrap();
    assert_eq!((v.major.as_str(), v.minor.as_str()), ("1", "33"));
    let core = client.list_core_api_versions().await.unwrap();
    assert_eq!(core.versions, ["v1"]);
    let res = client.list_core_api_resources("v1").await.unwrap();
    let pods = res
        .resources
        .iter()
        .find(|r| r.name == "pods")
        .expect("pods are served");
    assert!(pods.namespaced);
    assert_eq!(pods.kind, "Pod");
    assert!(pods.verbs.iter().any(|v| v == "watch"));
    assert_eq!(pods.short_names.as_deref(), Some(&["po".to_string()][..]));
    assert!(
        res.resources.iter().any(|r| r.name == "pods/status"),
        "status subresource listed"
    );
    let ns = res
        .resources
        .iter()
        .find(|r| r.name == "namespaces")
        .unwrap();
    assert!(!ns.namespaced);
}

#[tokio::test]
async fn kube_discovery_runs_and_sees_builtin_groups() {
    let srv = TestApiServer::start().await;
    let d = Discovery::new(srv.client()).run().await.unwrap();
    for group in [
        "",
        "apps",
        "policy",
        "coordination.k8s.io",
        "events.k8s.io",
        "storage.k8s.io",
        "apiextensions.k8s.io",
    ] {
        assert!(d.has_group(group), "group {group:?} missing");
    }
    let (ar, caps) = d
        .resolve_gvk(&kube::api::GroupVersionKind::gvk(
            "apps",
            "v1",
            "Deployment",
        ))
        .unwrap();
    assert_eq!(ar.plural, "deployments");
    assert_eq!(caps.scope, KubeScope::Namespaced);
    let (ar, caps) = d
        .resolve_gvk(&kube::api::GroupVersionKind::gvk(
            "storage.k8s.io",
            "v1",
            "StorageClass",
        ))
        .unwrap();
    assert_eq!(ar.plural, "storageclasses");
    assert_eq!(caps.scope, KubeScope::Cluster);
}

#[tokio::test]
async fn created_crd_is_discoverable_and_served() {
    let srv = TestApiServer::start().await;
    let client = srv.client();
    let spec = CrdSpec::new("example.com", "v1alpha1", "Widget", "widgets")
        .cluster_scoped()
        .short_names(&["wd"]);
    assert!(
        discovery::pinned_kind(
            &client,
            &kube::api::GroupVersionKind::gvk("example.com", "v1alpha1", "Widget")
        )
        .await
        .is_err()
    );
    Api::<CustomResourceDefinition>::all(client.clone())
        .create(&PostParams::default(), &spec.crd())
        .await
        .unwrap();
    let (ar, caps) = discovery::pinned_kind(
        &client,
        &kube::api::GroupVersionKind::gvk("example.com", "v1alpha1", "Widget"),
    )
    .await
    .unwrap();
    assert_eq!(ar.plural, "widgets");
    assert_eq!(caps.scope, KubeScope::Cluster);
    let list = client
        .list_api_group_resources("example.com/v1alpha1")
        .await
        .unwrap();
    assert_eq!(
        list.resources[0].short_names.as_deref(),
        Some(&["wd".to_string()][..])
    );
}

#[tokio::test]
async fn registered_resource_is_served() {
    let srv = TestApiServer::start().await;
    srv.register(
        ResourceDef::new(
            "extra.example.com",
            "v2",
            "Gadget",
            "gadgets",
            Scope::Namespaced,
        )
        .with_status(),
    );
    let d = Discovery::new(srv.client()).run().await.unwrap();
    let (ar, caps) = d
        .resolve_gvk(&kube::api::GroupVersionKind::gvk(
            "extra.example.com",
            "v2",
            "Gadget",
        ))
        .unwrap();
    assert_eq!(ar.plural, "gadgets");
    assert!(
        caps.subresources
            .iter()
            .any(|(sub, _)| sub.plural == "gadgets/status" || sub.plural == "status")
    );
}
