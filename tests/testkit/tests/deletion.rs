//! Deletion: finalizers, propagation policies, owner-reference GC, delete collection, namespaces.

use std::time::Duration;

use cstor_testkit::{CrdSpec, TestApiServer, wait_for};
use futures::StreamExt;
use k8s_openapi::{
    api::{
        apps::v1::Deployment,
        core::v1::{ConfigMap, Namespace, PersistentVolume, Secret},
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    apimachinery::pkg::apis::meta::v1::OwnerReference,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{
        DeleteParams, DynamicObject, ListParams, ObjectMeta, Patch, PatchParams, PostParams,
        WatchEvent, WatchParams,
    },
};
use serde_json::json;

const DEADLINE: Duration = Duration::from_secs(60);

fn owner_ref<K: Resource<DynamicType = ()>>(owner: &K, block: bool) -> OwnerReference {
    let mut r = owner.controller_owner_ref(&()).unwrap();
    r.block_owner_deletion = Some(block);
    r
}

fn cm(name: &str, owners: Vec<OwnerReference>, finalizers: &[&str]) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            owner_references: Some(owners).filter(|o| !o.is_empty()),
            finalizers: Some(finalizers.iter().map(|s| s.to_string()).collect())
                .filter(|f: &Vec<_>| !f.is_empty()),
            labels: Some([("set".to_string(), "one".to_string())].into()),
            ..Default::default()
        },
        ..Default::default()
    }
}

async fn exists(api: &Api<ConfigMap>, name: &str) -> bool {
    api.get_opt(name).await.unwrap().is_some()
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    let srv = TestApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(srv.client(), "default");
    api.create(
        &PostParams::default(),
        &cm("f", vec![], &["example.com/hold"]),
    )
    .await
    .unwrap();
    let rv = srv.resource_version().to_string();
    let mut events = api
        .watch(&WatchParams::default().disable_bookmarks(), &rv)
        .await
        .unwrap()
        .boxed();

    api.delete("f", &DeleteParams::default()).await.unwrap();
    let held = api.get("f").await.unwrap();
    assert!(held.metadata.deletion_timestamp.is_some());
    assert_eq!(held.metadata.deletion_grace_period_seconds, Some(0));

    let err = api
        .patch(
            "f",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["example.com/hold", "new"]}})),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 422),
        "no new finalizers while deleting: {err:?}"
    );

    api.patch(
        "f",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert!(!exists(&api, "f").await);

    let mut seen = Vec::new();
    while seen.len() < 3 {
        let ev = tokio::time::timeout(DEADLINE, events.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        seen.push(match ev {
            WatchEvent::Modified(o) => format!(
                "MODIFIED deleting={}",
                o.metadata.deletion_timestamp.is_some()
            ),
            WatchEvent::Deleted(o) => format!("DELETED finalizers={:?}", o.metadata.finalizers),
            other => format!("{other:?}"),
        });
    }
    assert_eq!(
        seen,
        [
            "MODIFIED deleting=true",
            "MODIFIED deleting=true",
            "DELETED finalizers=None"
        ]
    );
}

#[tokio::test]
async fn background_deletion_collects_dependents() {
    let srv = TestApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(srv.client(), "default");
    let owner = api
        .create(&PostParams::default(), &cm("owner", vec![], &[]))
        .await
        .unwrap();
    api.create(
        &PostParams::default(),
        &cm("dep", vec![owner_ref(&owner, false)], &[]),
    )
    .await
    .unwrap();
    api.create(
        &PostParams::default(),
        &cm("held", vec![owner_ref(&owner, false)], &["x/y"]),
    )
    .await
    .unwrap();
    api.delete("owner", &DeleteParams::background())
        .await
        .unwrap();
    wait_for(DEADLINE, || async { !exists(&api, "dep").await })
        .await
        .unwrap();
    let held = api.get("held").await.unwrap();
    assert!(
        held.metadata.deletion_timestamp.is_some(),
        "a dependent with finalizers is only marked"
    );
}

#[tokio::test]
async fn foreground_deletion_waits_for_blocking_dependents() {
    let srv = TestApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(srv.client(), "default");
    let owner = api
        .create(&PostParams::default(), &cm("fg-owner", vec![], &[]))
        .await
        .unwrap();
    api.create(
        &PostParams::default(),
        &cm("fg-dep", vec![owner_ref(&owner, true)], &["x/y"]),
    )
    .await
    .unwrap();
    api.delete("fg-owner", &DeleteParams::foreground())
        .await
        .unwrap();

    let o = api.get("fg-owner").await.unwrap();
    assert!(o.metadata.deletion_timestamp.is_some());
    assert_eq!(o.finalizers(), ["foregroundDeletion"]);
    let d = api.get("fg-dep").await.unwrap();
    assert!(
        d.metadata.deletion_timestamp.is_some(),
        "dependents are deleted first"
    );

    api.patch(
        "fg-dep",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    wait_for(DEADLINE, || async {
        !exists(&api, "fg-owner").await && !exists(&api, "fg-dep").await
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn orphan_deletion_keeps_dependents_and_drops_references() {
    let srv = TestApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(srv.client(), "default");
    let owner = api
        .create(&PostParams::default(), &cm("o-owner", vec![], &[]))
        .await
        .unwrap();
    api.create(
        &PostParams::default(),
        &cm("o-dep", vec![owner_ref(&owner, true)], &[]),
    )
    .await
    .unwrap();
    api.delete("o-owner", &DeleteParams::orphan())
        .await
        .unwrap();
    assert!(!exists(&api, "o-owner").await);
    let dep = api.get("o-dep").await.unwrap();
    assert!(
        dep.metadata.owner_references.is_none(),
        "{:?}",
        dep.metadata.owner_references
    );
    assert!(dep.metadata.deletion_timestamp.is_none());
}

async fn widget_crd(client: &Client, spec: &CrdSpec) {
    Api::<CustomResourceDefinition>::all(client.clone())
        .create(&PostParams::default(), &spec.crd())
        .await
        .unwrap();
}

#[tokio::test]
async fn owner_gc_works_across_kinds_and_scopes() {
    let srv = TestApiServer::start().await;
    let client = srv.client();
    // a namespaced custom resource owning a Deployment
    let spec = CrdSpec::new("example.com", "v1", "Pool", "pools");
    widget_crd(&client, &spec).await;
    let pools: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), "default", &spec.api_resource());
    let pool = pools
        .create(
            &PostParams::default(),
            &DynamicObject::new("p", &spec.api_resource()),
        )
        .await
        .unwrap();
    let pool_ref = pool.controller_owner_ref(&spec.api_resource()).unwrap();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "pool-deploy", "ownerReferences": [pool_ref]},
        "spec": {"selector": {"matchLabels": {"a": "b"}},
                 "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}},
    }))
    .unwrap();
    deployments
        .create(&PostParams::default(), &d)
        .await
        .unwrap();

    // a cluster-scoped PersistentVolume owning a namespaced Secret
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let pv: PersistentVolume = serde_json::from_value(
        json!({"metadata": {"name": "pv1"}, "spec": {"capacity": {"storage": "1Gi"}}}),
    )
    .unwrap();
    let pv = pvs.create(&PostParams::default(), &pv).await.unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let s = Secret {
        metadata: ObjectMeta {
            name: Some("pv-secret".into()),
            owner_references: Some(vec![owner_ref(&pv, false)]),
            ..Default::default()
        },
        ..Default::default()
    };
    secrets.create(&PostParams::default(), &s).await.unwrap();

    pools.delete("p", &DeleteParams::default()).await.unwrap();
    pvs.delete("pv1", &DeleteParams::default()).await.unwrap();
    wait_for(DEADLINE, || async {
        deployments.get_opt("pool-deploy").await.unwrap().is_none()
            && secrets.get_opt("pv-secret").await.unwrap().is_none()
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn delete_collection_honours_selectors() {
    let srv = TestApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(srv.client(), "default");
    api.create(&PostParams::default(), &cm("c1", vec![], &[]))
        .await
        .unwrap();
    api.create(&PostParams::default(), &cm("c2", vec![], &[]))
        .await
        .unwrap();
    let mut other = cm("c3", vec![], &[]);
    other.metadata.labels = Some([("set".to_string(), "two".to_string())].into());
    api.create(&PostParams::default(), &other).await.unwrap();
    let out = api
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels("set=one"),
        )
        .await
        .unwrap();
    let deleted = out.left().expect("the deleted objects are returned");
    assert_eq!(deleted.items.len(), 2);
    let left: Vec<String> = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|c| c.name_any())
        .collect();
    assert_eq!(left, ["c3"]);
}

#[tokio::test]
async fn delete_preconditions_are_checked() {
    let srv = TestApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(srv.client(), "default");
    api.create(&PostParams::default(), &cm("pre", vec![], &[]))
        .await
        .unwrap();
    let dp = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: Some("not-the-uid".into()),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete("pre", &dp).await.unwrap_err() {
        kube::Error::Api(s) => assert_eq!((s.code, s.reason.as_str()), (409, "Conflict")),
        other => panic!("{other:?}"),
    }
    assert!(exists(&api, "pre").await);
}

#[tokio::test]
async fn deleting_a_namespace_removes_its_objects() {
    let srv = TestApiServer::start().await;
    let client = srv.client();
    let nss: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some("doomed".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    nss.create(&PostParams::default(), &ns).await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "doomed");
    api.create(&PostParams::default(), &cm("plain", vec![], &[]))
        .await
        .unwrap();
    api.create(&PostParams::default(), &cm("held", vec![], &["x/y"]))
        .await
        .unwrap();
    let keep: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    keep.create(&PostParams::default(), &cm("elsewhere", vec![], &[]))
        .await
        .unwrap();

    nss.delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    assert!(!exists(&api, "plain").await);
    let terminating = nss.get("doomed").await.unwrap();
    assert_eq!(
        terminating.status.unwrap().phase.as_deref(),
        Some("Terminating"),
        "held by the object with a finalizer"
    );
    match api
        .create(&PostParams::default(), &cm("new", vec![], &[]))
        .await
        .unwrap_err()
    {
        kube::Error::Api(s) => assert_eq!((s.code, s.reason.as_str()), (403, "Forbidden")),
        other => panic!("{other:?}"),
    }
    api.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    wait_for(DEADLINE, || async {
        nss.get_opt("doomed").await.unwrap().is_none()
    })
    .await
    .unwrap();
    assert!(exists(&keep, "elsewhere").await);
}
