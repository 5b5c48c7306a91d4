//! Every resource request is recorded with its RBAC verb and the component that made it.

use cstor_testkit::{ApiCall, TestApiServer};
use k8s_openapi::api::core::v1::{ConfigMap, Node};
use kube::{
    Api,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
};
use serde_json::json;

#[tokio::test]
async fn calls_are_recorded_with_verb_resource_and_component() {
    let srv = TestApiServer::start().await;
    let client = srv.client_as("my-operator");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("c".into());
    cms.create(&PostParams::default(), &cm).await.unwrap();
    cms.get("c").await.unwrap();
    cms.list(&ListParams::default()).await.unwrap();
    cms.patch(
        "c",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "v"}})),
    )
    .await
    .unwrap();
    let latest = cms.get("c").await.unwrap();
    cms.replace("c", &PostParams::default(), &latest)
        .await
        .unwrap();
    cms.delete("c", &DeleteParams::default()).await.unwrap();
    Api::<Node>::all(srv.client())
        .list(&ListParams::default())
        .await
        .unwrap();

    let call = |verb: &str, group: &str, resource: &str, namespaced: bool, who: &str| ApiCall {
        component: who.into(),
        verb: verb.into(),
        group: group.into(),
        resource: resource.into(),
        namespaced,
    };
    assert_eq!(
        srv.calls(),
        vec![
            call("create", "", "configmaps", true, "my-operator"),
            call("get", "", "configmaps", true, "my-operator"),
            call("list", "", "configmaps", true, "my-operator"),
            call("patch", "", "configmaps", true, "my-operator"),
            call("get", "", "configmaps", true, "my-operator"),
            call("update", "", "configmaps", true, "my-operator"),
            call("delete", "", "configmaps", true, "my-operator"),
            call("list", "", "nodes", false, ""),
        ]
    );
}
