//! PATCH: merge, JSON patch, strategic merge and server-side apply.

use std::collections::BTreeMap;

use cstor_testkit::{CrdSpec, TestApiServer};
use k8s_openapi::{
    api::{apps::v1::Deployment, core::v1::ConfigMap},
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api,
    api::{DynamicObject, ObjectMeta, Patch, PatchParams, PostParams},
};
use serde_json::json;

fn cm(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        ..Default::default()
    }
}

fn code(err: kube::Error) -> (u16, String, String) {
    match err {
        kube::Error::Api(s) => (s.code, s.reason, s.message),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn merge_patch_adds_replaces_and_removes() {
    let srv = TestApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(srv.client(), "default");
    api.create(&PostParams::default(), &cm("m", &[("a", "1"), ("b", "2")]))
        .await
        .unwrap();
    let p = json!({"data": {"a": "10", "b": null, "c": "3"}, "metadata": {"labels": {"l": "v"}}});
    let out = api
        .patch("m", &PatchParams::default(), &Patch::Merge(&p))
        .await
        .unwrap();
    let want: BTreeMap<String, String> = [("a", "10"), ("c", "3")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(out.data.unwrap(), want);
    assert_eq!(out.metadata.labels.unwrap()["l"], "v");
    let err = api
        .patch("missing", &PatchParams::default(), &Patch::Merge(&p))
        .await
        .unwrap_err();
    assert_eq!(code(err).0, 404);
}

#[tokio::test]
async fn json_patch_applies_and_failing_test_op_is_422() {
    let srv = TestApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(srv.client(), "default");
    api.create(&PostParams::default(), &cm("j", &[("a", "1")]))
        .await
        .unwrap();
    let ok: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/data/a", "value": "1"},
        {"op": "add", "path": "/data/b", "value": "2"},
        {"op": "replace", "path": "/data/a", "value": "3"},
    ]))
    .unwrap();
    let out = api
        .patch("j", &PatchParams::default(), &Patch::<()>::Json(ok))
        .await
        .unwrap();
    let data = out.data.unwrap();
    assert_eq!((data["a"].as_str(), data["b"].as_str()), ("3", "2"));
    let rv = out.metadata.resource_version;

    let failing: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/data/a", "value": "nope"},
        {"op": "add", "path": "/data/c", "value": "x"},
    ]))
    .unwrap();
    let (c, reason, _) = code(
        api.patch("j", &PatchParams::default(), &Patch::<()>::Json(failing))
            .await
            .unwrap_err(),
    );
    assert_eq!((c, reason.as_str()), (422, "Invalid"));
    let after = api.get("j").await.unwrap();
    assert_eq!(
        after.metadata.resource_version, rv,
        "a failed patch changes nothing"
    );
    assert!(!after.data.unwrap().contains_key("c"));
}

#[tokio::test]
async fn patch_with_stale_resource_version_conflicts() {
    let srv = TestApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(srv.client(), "default");
    let created = api
        .create(&PostParams::default(), &cm("s", &[]))
        .await
        .unwrap();
    api.patch(
        "s",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"x": "1"}})),
    )
    .await
    .unwrap();
    let stale = json!({"metadata": {"resourceVersion": created.metadata.resource_version}, "data": {"x": "2"}});
    let (c, reason, _) = code(
        api.patch("s", &PatchParams::default(), &Patch::Merge(&stale))
            .await
            .unwrap_err(),
    );
    assert_eq!((c, reason.as_str()), (409, "Conflict"));
}

#[tokio::test]
async fn apply_creates_then_merges() {
    let srv = TestApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(srv.client(), "default");
    let pp = PatchParams::apply("tester");
    let first = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ap"}, "data": {"a": "1"}});
    let created = api.patch("ap", &pp, &Patch::Apply(&first)).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    assert_eq!(created.metadata.namespace.as_deref(), Some("default"));
    let mf = created.metadata.managed_fields.clone().unwrap();
    assert_eq!(mf[0].manager.as_deref(), Some("tester"));
    assert_eq!(mf[0].operation.as_deref(), Some("Apply"));

    // another writer adds a key; a second apply merges and keeps it
    api.patch(
        "ap",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"other": "x"}})),
    )
    .await
    .unwrap();
    let second = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ap", "labels": {"l": "1"}}, "data": {"a": "2"}});
    let merged = api
        .patch("ap", &pp.clone().force(), &Patch::Apply(&second))
        .await
        .unwrap();
    let data = merged.data.unwrap();
    assert_eq!((data["a"].as_str(), data["other"].as_str()), ("2", "x"));
    assert_eq!(merged.metadata.labels.unwrap()["l"], "1");
    assert_eq!(merged.metadata.uid, created.metadata.uid);

    // re-applying the same configuration is a no-op
    let again = api.patch("ap", &pp, &Patch::Apply(&second)).await.unwrap();
    assert_eq!(
        again.metadata.resource_version,
        merged.metadata.resource_version
    );
}

#[tokio::test]
async fn apply_needs_field_manager_and_kind() {
    let srv = TestApiServer::start().await;
    let client = srv.client();
    let body = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: nf\n".to_vec();
    let req = http::Request::patch("/api/v1/namespaces/default/configmaps/nf")
        .header("content-type", "application/apply-patch+yaml")
        .body(body)
        .unwrap();
    let (c, _, msg) = code(client.request::<ConfigMap>(req).await.unwrap_err());
    assert_eq!(c, 400);
    assert!(msg.contains("fieldManager"), "{msg}");

    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let no_kind = json!({"metadata": {"name": "nk"}});
    let (c, _, msg) = code(
        api.patch("nk", &PatchParams::apply("t"), &Patch::Apply(&no_kind))
            .await
            .unwrap_err(),
    );
    assert_eq!(c, 400);
    assert!(msg.contains("apiVersion and kind"), "{msg}");
}

#[tokio::test]
async fn strategic_merge_is_415_for_custom_resources_and_merge_for_builtins() {
    let srv = TestApiServer::start().await;
    let client = srv.client();
    let spec = CrdSpec::new("example.com", "v1", "Thing", "things");
    Api::<CustomResourceDefinition>::all(client.clone())
        .create(&PostParams::default(), &spec.crd())
        .await
        .unwrap();
    let things: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), "default", &spec.api_resource());
    let obj = DynamicObject::new("t", &spec.api_resource()).data(json!({"spec": {"size": 1}}));
    things.create(&PostParams::default(), &obj).await.unwrap();
    let (c, reason, _) = code(
        things
            .patch(
                "t",
                &PatchParams::default(),
                &Patch::Strategic(json!({"spec": {"size": 2}})),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!((c, reason.as_str()), (415, "UnsupportedMediaType"));

    let deployments: Api<Deployment> = Api::namespaced(client, "default");
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "d"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"a": "b"}},
                 "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}},
    }))
    .unwrap();
    deployments
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    let out = deployments
        .patch(
            "d",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"replicas": 3}})),
        )
        .await
        .unwrap();
    assert_eq!(out.spec.unwrap().replicas, Some(3));
    assert_eq!(out.metadata.generation, Some(2));
}

#[tokio::test]
async fn json_patch_test_for_null_on_a_missing_path_passes_as_in_the_real_api() {
    let srv = TestApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(srv.client(), "default");
    api.create(&PostParams::default(), &cm("fin", &[("a", "1")]))
        .await
        .unwrap();
    // What kube::runtime::finalizer sends when it adds the first finalizer.
    let first = json!([
        {"op": "test", "path": "/metadata/finalizers", "value": null},
        {"op": "add", "path": "/metadata/finalizers", "value": ["x.io/f"]}
    ]);
    let patched = api
        .patch(
            "fin",
            &PatchParams::default(),
            &Patch::Json::<()>(serde_json::from_value(first.clone()).unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(patched.metadata.finalizers, Some(vec!["x.io/f".into()]));
    // Now the path exists and holds a list, so the same test for null fails.
    let err = api
        .patch(
            "fin",
            &PatchParams::default(),
            &Patch::Json::<()>(serde_json::from_value(first).unwrap()),
        )
        .await
        .unwrap_err();
    assert_eq!(code(err).0, 422);
}

#[tokio::test]
async fn kube_runtime_finalizer_helper_works_against_the_server() {
    use kube::runtime::finalizer::{Event, finalizer};
    let srv = TestApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(srv.client(), "default");
    api.create(&PostParams::default(), &cm("helper", &[]))
        .await
        .unwrap();
    let cleanups = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let run = |api: Api<ConfigMap>| {
        let cleanups = cleanups.clone();
        async move {
            let obj = std::sync::Arc::new(api.get("helper").await.unwrap());
            let seen = cleanups.clone();
            finalizer(&api, "cstor.test/finalizer", obj, |ev| async move {
                if matches!(ev, Event::Cleanup(_)) {
                    cleanups.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                Ok::<_, std::convert::Infallible>(kube::runtime::controller::Action::await_change())
            })
            .await
            .map(|_| seen.load(std::sync::atomic::Ordering::SeqCst))
        }
    };
    // First pass adds the finalizer, second applies.
    run(api.clone()).await.unwrap();
    let got = api.get("helper").await.unwrap();
    assert_eq!(
        got.metadata.finalizers,
        Some(vec!["cstor.test/finalizer".to_string()])
    );
    assert_eq!(run(api.clone()).await.unwrap(), 0, "apply, not cleanup");
    // Deletion keeps the object until the helper runs cleanup and removes the finalizer.
    api.delete("helper", &Default::default()).await.unwrap();
    assert!(
        api.get("helper")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some()
    );
    assert_eq!(run(api.clone()).await.unwrap(), 1, "cleanup ran");
    assert!(api.get_opt("helper").await.unwrap().is_none());
}
