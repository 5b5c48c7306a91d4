//! Replace semantics: optimistic concurrency and metadata.generation.

use cstor_testkit::{CrdSpec, TestApiServer};
use k8s_openapi::{
    api::core::v1::ConfigMap,
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api,
    api::{DynamicObject, ObjectMeta, Patch, PatchParams, PostParams},
};
use serde_json::json;

#[tokio::test]
async fn stale_update_is_409_conflict() {
    let srv = TestApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(srv.client(), "default");
    let obj = ConfigMap {
        metadata: ObjectMeta {
            name: Some("c".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let v1 = api.create(&PostParams::default(), &obj).await.unwrap();
    let mut a = v1.clone();
    a.data = Some([("who".to_string(), "a".to_string())].into());
    api.replace("c", &PostParams::default(), &a).await.unwrap();
    let mut b = v1.clone();
    b.data = Some([("who".to_string(), "b".to_string())].into());
    match api
        .replace("c", &PostParams::default(), &b)
        .await
        .unwrap_err()
    {
        kube::Error::Api(s) => {
            assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
            assert_eq!(
                s.message,
                "Operation cannot be fulfilled on configmaps \"c\": the object has been modified; please apply your \
                 changes to the latest version and try again"
            );
        }
        other => panic!("expected 409, got {other:?}"),
    }
    assert_eq!(api.get("c").await.unwrap().data.unwrap()["who"], "a");

    // without a resourceVersion the write is unconditional
    b.metadata.resource_version = None;
    let out = api.replace("c", &PostParams::default(), &b).await.unwrap();
    assert_eq!(out.data.unwrap()["who"], "b");
}

async fn crd_api(srv: &TestApiServer, spec: &CrdSpec) -> Api<DynamicObject> {
    let client = srv.client();
    Api::<CustomResourceDefinition>::all(client.clone())
        .create(&PostParams::default(), &spec.crd())
        .await
        .unwrap();
    Api::namespaced_with(client, "default", &spec.api_resource())
}

#[tokio::test]
async fn generation_with_status_subresource_ignores_status_and_metadata() {
    let srv = TestApiServer::start().await;
    let spec = CrdSpec::new("example.com", "v1", "Pool", "pools").with_status();
    let api = crd_api(&srv, &spec).await;
    let obj = DynamicObject::new("p", &spec.api_resource()).data(json!({"spec": {"disks": 1}}));
    let created = api.create(&PostParams::default(), &obj).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    let pp = PatchParams::default();
    let g = |o: &DynamicObject| o.metadata.generation.unwrap();
    let o = api
        .patch(
            "p",
            &pp,
            &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await
        .unwrap();
    assert_eq!(g(&o), 1, "metadata changes keep the generation");
    let o = api
        .patch_status(
            "p",
            &pp,
            &Patch::Merge(json!({"status": {"phase": "Online"}})),
        )
        .await
        .unwrap();
    assert_eq!(g(&o), 1, "status changes keep the generation");
    let o = api
        .patch("p", &pp, &Patch::Merge(json!({"spec": {"disks": 2}})))
        .await
        .unwrap();
    assert_eq!(g(&o), 2, "spec changes bump the generation");
}

#[tokio::test]
async fn generation_without_status_subresource_counts_status() {
    let srv = TestApiServer::start().await;
    let spec = CrdSpec::new("example.com", "v1", "Replica", "replicas");
    let api = crd_api(&srv, &spec).await;
    let obj = DynamicObject::new("r", &spec.api_resource()).data(json!({"spec": {"x": 1}}));
    api.create(&PostParams::default(), &obj).await.unwrap();
    let pp = PatchParams::default();
    let o = api
        .patch(
            "r",
            &pp,
            &Patch::Merge(json!({"metadata": {"annotations": {"a": "b"}}})),
        )
        .await
        .unwrap();
    assert_eq!(o.metadata.generation, Some(1));
    let o = api
        .patch(
            "r",
            &pp,
            &Patch::Merge(json!({"status": {"phase": "Healthy"}})),
        )
        .await
        .unwrap();
    assert_eq!(
        o.metadata.generation,
        Some(2),
        "without a status subresource, status is part of what generation tracks"
    );
    assert_eq!(
        o.data["status"]["phase"], "Healthy",
        "the main endpoint writes status"
    );
}
