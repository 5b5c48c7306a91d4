//! kube-runtime's `Controller` running unmodified against the test server: for each ConfigMap
//! labelled `reconcile=yes` it creates an owned Secret and marks the ConfigMap; deleting the
//! ConfigMap garbage-collects the Secret.

use std::{sync::Arc, time::Duration};

use cstor_testkit::{TestApiServer, wait_for};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{ObjectMeta, Patch, PatchParams, PostParams},
    runtime::{Controller, controller::Action, watcher},
};
use serde_json::json;

const DEADLINE: Duration = Duration::from_secs(60);
const MANAGER: &str = "test-controller";

#[derive(Debug, thiserror::Error)]
#[error(transparent)]
struct ReconcileError(#[from] kube::Error);

async fn reconcile(cm: Arc<ConfigMap>, client: Arc<Client>) -> Result<Action, ReconcileError> {
    let ns = cm.namespace().unwrap();
    let name = cm.name_any();
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(format!("{name}-secret")),
            owner_references: Some(vec![cm.controller_owner_ref(&()).unwrap()]),
            ..Default::default()
        },
        string_data: None,
        data: Some(
            [(
                "from".to_string(),
                k8s_openapi::ByteString(name.clone().into_bytes()),
            )]
            .into(),
        ),
        ..Default::default()
    };
    let secrets: Api<Secret> = Api::namespaced((*client).clone(), &ns);
    secrets
        .patch(
            &format!("{name}-secret"),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&secret),
        )
        .await?;
    let cms: Api<ConfigMap> = Api::namespaced((*client).clone(), &ns);
    let mark = json!({"metadata": {"annotations": {"reconciled": "true"}}});
    cms.patch(&name, &PatchParams::default(), &Patch::Merge(&mark))
        .await?;
    Ok(Action::requeue(Duration::from_secs(300)))
}

fn error_policy(_cm: Arc<ConfigMap>, _err: &ReconcileError, _client: Arc<Client>) -> Action {
    Action::requeue(Duration::from_millis(100))
}

#[tokio::test]
async fn controller_reconciles_and_owned_objects_are_collected() {
    let srv = TestApiServer::start().await;
    let client = srv.client();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");

    let controller = Controller::new(
        cms.clone(),
        watcher::Config::default().labels("reconcile=yes"),
    )
    .owns(secrets.clone(), watcher::Config::default())
    .run(reconcile, error_policy, Arc::new(client.clone()))
    .for_each(|_| async {});
    let task = tokio::spawn(controller);

    for (name, label) in [("wanted", "yes"), ("ignored", "no")] {
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some([("reconcile".to_string(), label.to_string())].into()),
                ..Default::default()
            },
            ..Default::default()
        };
        cms.create(&PostParams::default(), &cm).await.unwrap();
    }

    wait_for(DEADLINE, || async {
        let marked = cms
            .get("wanted")
            .await
            .unwrap()
            .annotations()
            .get("reconciled")
            .is_some_and(|v| v == "true");
        marked && secrets.get_opt("wanted-secret").await.unwrap().is_some()
    })
    .await
    .expect("the controller reconciled the labelled ConfigMap");
    let secret = secrets.get("wanted-secret").await.unwrap();
    let owner = &secret.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("ConfigMap", "wanted")
    );
    assert_eq!(secret.data.unwrap()["from"].0, b"wanted");
    assert!(
        secrets.get_opt("ignored-secret").await.unwrap().is_none(),
        "unlabelled ConfigMaps are not reconciled"
    );

    // Deleting the owned Secret triggers a reconcile (via .owns) that recreates it.
    let old_uid = secret.metadata.uid.clone();
    secrets
        .delete("wanted-secret", &Default::default())
        .await
        .unwrap();
    wait_for(DEADLINE, || async {
        secrets
            .get_opt("wanted-secret")
            .await
            .unwrap()
            .is_some_and(|s| s.metadata.uid != old_uid)
    })
    .await
    .expect("the controller recreated the deleted Secret");

    cms.delete("wanted", &Default::default()).await.unwrap();
    wait_for(DEADLINE, || async {
        secrets.get_opt("wanted-secret").await.unwrap().is_none()
    })
    .await
    .expect("the Secret is garbage-collected with its owner");
    task.abort();
}

#[tokio::test]
async fn event_recorder_publishes_and_aggregates_events() {
    use kube::runtime::events::{Event, EventType, Recorder, Reporter};
    let srv = TestApiServer::start().await;
    let client = srv.client();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some("evented".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let cm = cms.create(&PostParams::default(), &cm).await.unwrap();
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: MANAGER.into(),
            instance: None,
        },
    );
    let ev = Event {
        type_: EventType::Normal,
        reason: "Reconciled".into(),
        note: Some("all good".into()),
        action: "Reconcile".into(),
        secondary: None,
    };
    recorder.publish(&ev, &cm.object_ref(&())).await.unwrap();
    recorder.publish(&ev, &cm.object_ref(&())).await.unwrap();
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client, "default");
    let list = events.list(&Default::default()).await.unwrap().items;
    assert_eq!(list.len(), 1, "the repeat is aggregated into a series");
    assert_eq!(
        list[0].regarding.as_ref().unwrap().name.as_deref(),
        Some("evented")
    );
    assert_eq!(list[0].series.as_ref().map(|s| s.count), Some(2));
}
