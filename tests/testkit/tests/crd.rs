//! CRD registration, the status subresource with and without `subresources.status`, and CRD
//! deletion.

use std::time::Duration;

use cstor_testkit::{CrdSpec, TestApiServer, wait_for_object};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{
    Api,
    api::{DynamicObject, ListParams, Patch, PatchParams, PostParams},
    runtime::wait::conditions,
};
use serde_json::json;

fn api_code(err: kube::Error) -> u16 {
    match err {
        kube::Error::Api(s) => s.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn creating_a_crd_serves_its_resource_and_establishes_it() {
    let srv = TestApiServer::start().await;
    let client = srv.client();
    let spec = CrdSpec::new("example.com", "v1", "Widget", "widgets");
    let widgets: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), "default", &spec.api_resource());
    assert_eq!(
        api_code(widgets.list(&ListParams::default()).await.unwrap_err()),
        404,
        "not served before the CRD"
    );

    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = crds
        .create(&PostParams::default(), &spec.crd())
        .await
        .unwrap();
    let status = crd.status.unwrap();
    let types: Vec<(String, String)> = status
        .conditions
        .unwrap()
        .into_iter()
        .map(|c| (c.type_, c.status))
        .collect();
    assert!(
        types.contains(&("Established".into(), "True".into())),
        "{types:?}"
    );
    assert_eq!(status.accepted_names.unwrap().kind, "Widget");
    assert_eq!(status.stored_versions.unwrap(), ["v1"]);
    wait_for_object(
        &crds,
        "widgets.example.com",
        Duration::from_secs(60),
        conditions::is_crd_established(),
    )
    .await
    .unwrap();

    let w = DynamicObject::new("w1", &spec.api_resource()).data(json!({"spec": {"size": 3}}));
    let created = widgets.create(&PostParams::default(), &w).await.unwrap();
    assert_eq!(created.types.unwrap().api_version, "example.com/v1");
    assert_eq!(created.data["spec"]["size"], 3);
    assert_eq!(
        widgets
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
}

#[tokio::test]
async fn invalid_crd_is_rejected() {
    let srv = TestApiServer::start().await;
    let crds: Api<CustomResourceDefinition> = Api::all(srv.client());
    let mut crd = CrdSpec::new("example.com", "v1", "Widget", "widgets").crd();
    crd.metadata.name = Some("wrong.example.com".into());
    match crds.create(&PostParams::default(), &crd).await.unwrap_err() {
        kube::Error::Api(s) => {
            assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"));
            assert!(
                s.message
                    .contains("must be spec.names.plural+\".\"+spec.group"),
                "{}",
                s.message
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn status_subresource_separates_spec_and_status() {
    let srv = TestApiServer::start().await;
    let client = srv.client();
    let spec = CrdSpec::new("example.com", "v1", "Pool", "pools").with_status();
    Api::<CustomResourceDefinition>::all(client.clone())
        .create(&PostParams::default(), &spec.crd())
        .await
        .unwrap();
    let api: Api<DynamicObject> = Api::namespaced_with(client, "default", &spec.api_resource());
    let obj = DynamicObject::new("p", &spec.api_resource())
        .data(json!({"spec": {"a": 1}, "status": {"phase": "Made-up"}}));
    let created = api.create(&PostParams::default(), &obj).await.unwrap();
    assert!(
        created.data.get("status").is_none(),
        "status is dropped on create"
    );

    let pp = PatchParams::default();
    let o = api
        .patch(
            "p",
            &pp,
            &Patch::Merge(json!({"status": {"phase": "Ignored"}})),
        )
        .await
        .unwrap();
    assert!(
        o.data.get("status").is_none(),
        "the main endpoint ignores status"
    );
    let o = api
        .patch_status(
            "p",
            &pp,
            &Patch::Merge(json!({"spec": {"a": 2}, "status": {"phase": "Online"}})),
        )
        .await
        .unwrap();
    assert_eq!(o.data["status"]["phase"], "Online");
    assert_eq!(o.data["spec"]["a"], 1, "the status endpoint ignores spec");
    let got = api.get_status("p").await.unwrap();
    assert_eq!(got.data["status"]["phase"], "Online");

    let mut replaced = got.clone();
    replaced.data["status"] = json!({"phase": "Degraded"});
    let o = api
        .replace_status("p", &PostParams::default(), &replaced)
        .await
        .unwrap();
    assert_eq!(o.data["status"]["phase"], "Degraded");
}

#[tokio::test]
async fn without_status_subresource_status_endpoint_is_404_and_main_writes_status() {
    let srv = TestApiServer::start().await;
    let client = srv.client();
    let spec = CrdSpec::new("example.com", "v1", "Replica", "replicas");
    Api::<CustomResourceDefinition>::all(client.clone())
        .create(&PostParams::default(), &spec.crd())
        .await
        .unwrap();
    let api: Api<DynamicObject> = Api::namespaced_with(client, "default", &spec.api_resource());
    let obj = DynamicObject::new("r", &spec.api_resource())
        .data(json!({"spec": {}, "status": {"phase": "Init"}}));
    let created = api.create(&PostParams::default(), &obj).await.unwrap();
    assert_eq!(
        created.data["status"]["phase"], "Init",
        "status kept on create"
    );
    let err = api
        .patch_status(
            "r",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "X"}})),
        )
        .await
        .unwrap_err();
    assert_eq!(api_code(err), 404);
    assert_eq!(api_code(api.get_status("r").await.unwrap_err()), 404);
    let o = api
        .patch(
            "r",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Healthy"}})),
        )
        .await
        .unwrap();
    assert_eq!(o.data["status"]["phase"], "Healthy");
}

#[tokio::test]
async fn deleting_a_crd_removes_its_objects_and_stops_serving() {
    let srv = TestApiServer::start().await;
    let client = srv.client();
    let spec = CrdSpec::new("example.com", "v1", "Widget", "widgets").cluster_scoped();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &spec.crd())
        .await
        .unwrap();
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &spec.api_resource());
    for n in ["a", "b"] {
        api.create(
            &PostParams::default(),
            &DynamicObject::new(n, &spec.api_resource()),
        )
        .await
        .unwrap();
    }
    crds.delete("widgets.example.com", &Default::default())
        .await
        .unwrap();
    assert!(srv.objects("example.com", "widgets").is_empty());
    assert!(crds.get_opt("widgets.example.com").await.unwrap().is_none());
    assert_eq!(
        api_code(api.list(&ListParams::default()).await.unwrap_err()),
        404
    );
}
