//! Lists: label selectors, field selectors, cluster-wide lists and pagination.

use std::collections::BTreeMap;

use cstor_testkit::TestApiServer;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::{
    Api, Client,
    api::{ListParams, ObjectMeta, PostParams},
};

async fn pod(client: &Client, ns: &str, name: &str, labels: &[(&str, &str)], node: &str) {
    let p: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {
            "name": name,
            "labels": labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
        },
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i"}]},
    }))
    .unwrap();
    Api::<Pod>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &p)
        .await
        .unwrap();
}

async fn names(api: &Api<Pod>, lp: &ListParams) -> Vec<String> {
    api.list(lp)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|p| p.metadata.name.unwrap())
        .collect()
}

async fn fixture() -> (TestApiServer, Client) {
    let srv = TestApiServer::start().await;
    let client = srv.client();
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some("other".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    pod(
        &client,
        "default",
        "a",
        &[("app", "x"), ("tier", "db")],
        "n1",
    )
    .await;
    pod(&client, "default", "b", &[("app", "y")], "n2").await;
    pod(&client, "default", "c", &[], "n1").await;
    pod(&client, "other", "d", &[("app", "x")], "n2").await;
    (srv, client)
}

#[tokio::test]
async fn label_selectors_follow_kubernetes_semantics() {
    let (_srv, client) = fixture().await;
    let api: Api<Pod> = Api::namespaced(client, "default");
    let sel = |s: &str| ListParams::default().labels(s);
    assert_eq!(names(&api, &sel("app=x")).await, ["a"]);
    assert_eq!(names(&api, &sel("app==x")).await, ["a"]);
    assert_eq!(
        names(&api, &sel("app!=x")).await,
        ["b", "c"],
        "!= also matches objects without the label"
    );
    assert_eq!(names(&api, &sel("app in (x,y)")).await, ["a", "b"]);
    assert_eq!(names(&api, &sel("app notin (x)")).await, ["b", "c"]);
    assert_eq!(names(&api, &sel("app")).await, ["a", "b"]);
    assert_eq!(names(&api, &sel("!app")).await, ["c"]);
    assert_eq!(names(&api, &sel("app=x,tier=db")).await, ["a"]);
    assert_eq!(names(&api, &sel("app in (x,y),!tier")).await, ["b"]);
}

#[tokio::test]
async fn field_selectors_on_metadata_and_any_path() {
    let (_srv, client) = fixture().await;
    let all: Api<Pod> = Api::all(client.clone());
    let sel = |s: &str| ListParams::default().fields(s);
    assert_eq!(names(&all, &sel("metadata.name=b")).await, ["b"]);
    assert_eq!(names(&all, &sel("metadata.namespace=other")).await, ["d"]);
    assert_eq!(
        names(&all, &sel("metadata.namespace!=other")).await,
        ["a", "b", "c"]
    );
    assert_eq!(names(&all, &sel("spec.nodeName=n1")).await, ["a", "c"]);
    assert_eq!(
        names(&all, &sel("spec.nodeName==n2,metadata.namespace=default")).await,
        ["b"]
    );
    assert_eq!(names(&all, &sel("status.phase=Pending")).await.len(), 4);
    let err = all.list(&sel("nonsense")).await.unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(s) if s.code == 400),
        "a selector without an operator is a bad request"
    );
}

#[tokio::test]
async fn cluster_wide_list_spans_namespaces() {
    let (srv, client) = fixture().await;
    let all: Api<Pod> = Api::all(client.clone());
    let list = all.list(&ListParams::default()).await.unwrap();
    let got: Vec<(String, String)> = list
        .items
        .iter()
        .map(|p| {
            (
                p.metadata.namespace.clone().unwrap(),
                p.metadata.name.clone().unwrap(),
            )
        })
        .collect();
    assert_eq!(got.len(), 4);
    assert!(got.contains(&("other".into(), "d".into())));
    assert_eq!(
        list.metadata.resource_version,
        Some(srv.resource_version().to_string()),
        "list carries the current version"
    );
    assert_eq!(
        names(&all, &ListParams::default().labels("app=x")).await,
        ["a", "d"]
    );
}

#[tokio::test]
async fn limit_and_continue_paginate() {
    let (_srv, client) = fixture().await;
    let all: Api<Pod> = Api::all(client.clone());
    let first = all.list(&ListParams::default().limit(3)).await.unwrap();
    assert_eq!(first.items.len(), 3);
    let token = first
        .metadata
        .continue_
        .clone()
        .expect("a continue token when more items remain");
    assert_eq!(first.metadata.remaining_item_count, Some(1));
    let second = all
        .list(&ListParams::default().limit(3).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(second.items.len(), 1);
    assert!(
        second
            .metadata
            .continue_
            .as_deref()
            .unwrap_or("")
            .is_empty(),
        "last page has no continue token"
    );
    assert_eq!(
        second.metadata.resource_version, first.metadata.resource_version,
        "pages share the list version"
    );
    let mut seen: Vec<String> = first
        .items
        .iter()
        .chain(second.items.iter())
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    seen.sort();
    assert_eq!(seen, ["a", "b", "c", "d"]);

    // pagination with a selector
    let p1 = all
        .list(&ListParams::default().labels("app").limit(1))
        .await
        .unwrap();
    let p2 = all
        .list(
            &ListParams::default()
                .labels("app")
                .limit(1)
                .continue_token(p1.metadata.continue_.as_deref().unwrap()),
        )
        .await
        .unwrap();
    let p3 = all
        .list(
            &ListParams::default()
                .labels("app")
                .limit(1)
                .continue_token(p2.metadata.continue_.as_deref().unwrap()),
        )
        .await
        .unwrap();
    let got: Vec<_> = [p1, p2, p3]
        .iter()
        .flat_map(|l| l.items.iter().map(|p| p.metadata.name.clone().unwrap()))
        .collect();
    assert_eq!(got, ["a", "b", "d"]);
}

#[tokio::test]
async fn expired_continue_token_is_410() {
    let (srv, client) = fixture().await;
    let all: Api<Pod> = Api::all(client);
    let first = all.list(&ListParams::default().limit(1)).await.unwrap();
    srv.expire_watch_history();
    let err = all
        .list(
            &ListParams::default()
                .limit(1)
                .continue_token(first.metadata.continue_.as_deref().unwrap()),
        )
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(s) => assert_eq!((s.code, s.reason.as_str()), (410, "Expired")),
        other => panic!("expected 410, got {other:?}"),
    }
}

#[tokio::test]
async fn metadata_only_reads_work() {
    let (_srv, client) = fixture().await;
    let api: Api<Pod> = Api::namespaced(client, "default");
    let one = api.get_metadata("a").await.unwrap();
    assert_eq!(one.metadata.name.as_deref(), Some("a"));
    assert_eq!(
        one.types.as_ref().map(|t| t.kind.as_str()),
        Some("PartialObjectMetadata")
    );
    let list = api
        .list_metadata(&ListParams::default().labels("app"))
        .await
        .unwrap();
    let names: Vec<_> = list
        .items
        .iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["a", "b"]);
}
