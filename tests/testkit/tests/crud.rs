//! Create / get / replace / delete, generateName, namespaces, validation and error bodies.

use std::collections::BTreeMap;

use cstor_testkit::TestApiServer;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod};
use kube::{
    Api,
    api::{DeleteParams, ObjectMeta, PostParams},
};

fn cm(name: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([("k".to_string(), "v".to_string())])),
        ..Default::default()
    }
}

fn api_status(err: kube::Error) -> Box<kube::core::Status> {
    match err {
        kube::Error::Api(s) => s,
        other => panic!("expected an API error with a Status body, got {other:?}"),
    }
}

#[tokio::test]
async fn create_get_replace_delete_round_trip() {
    let srv = TestApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(srv.client(), "default");

    let created = api.create(&PostParams::default(), &cm("a")).await.unwrap();
    let meta = &created.metadata;
    assert_eq!(meta.namespace.as_deref(), Some("default"));
    assert!(
        meta.uid.as_deref().is_some_and(|u| u.len() == 36),
        "uid is a UUID: {:?}",
        meta.uid
    );
    assert!(meta.creation_timestamp.is_some());
    assert_eq!(meta.generation, Some(1));
    let rv1: u64 = meta.resource_version.as_deref().unwrap().parse().unwrap();

    let got = api.get("a").await.unwrap();
    assert_eq!(got, created);

    let mut changed = got.clone();
    changed.data = Some(BTreeMap::from([("k".to_string(), "w".to_string())]));
    let replaced = api
        .replace("a", &PostParams::default(), &changed)
        .await
        .unwrap();
    let rv2: u64 = replaced
        .metadata
        .resource_version
        .as_deref()
        .unwrap()
        .parse()
        .unwrap();
    assert!(rv2 > rv1, "resourceVersion must grow: {rv1} -> {rv2}");
    assert_eq!(replaced.metadata.generation, Some(2));
    assert_eq!(
        replaced.metadata.uid, created.metadata.uid,
        "uid is kept across updates"
    );
    assert_eq!(replaced.data.unwrap()["k"], "w");

    api.delete("a", &DeleteParams::default()).await.unwrap();
    assert!(api.get_opt("a").await.unwrap().is_none());
    let err = api_status(api.get("a").await.unwrap_err());
    assert_eq!(err.code, 404);
    assert_eq!(err.reason, "NotFound");
    assert_eq!(err.message, "configmaps \"a\" not found");
}

#[tokio::test]
async fn no_op_replace_keeps_resource_version() {
    let srv = TestApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(srv.client(), "default");
    let created = api
        .create(&PostParams::default(), &cm("same"))
        .await
        .unwrap();
    let again = api
        .replace("same", &PostParams::default(), &created)
        .await
        .unwrap();
    assert_eq!(
        again.metadata.resource_version,
        created.metadata.resource_version
    );
    assert_eq!(
        srv.resource_version().to_string(),
        created.metadata.resource_version.unwrap()
    );
}

#[tokio::test]
async fn generate_name_adds_a_random_suffix() {
    let srv = TestApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(srv.client(), "default");
    let mut obj = cm("");
    obj.metadata.name = None;
    obj.metadata.generate_name = Some("gen-".into());
    let a = api.create(&PostParams::default(), &obj).await.unwrap();
    let b = api.create(&PostParams::default(), &obj).await.unwrap();
    let (na, nb) = (a.metadata.name.unwrap(), b.metadata.name.unwrap());
    assert!(
        na.starts_with("gen-") && na.len() == "gen-".len() + 5,
        "{na}"
    );
    assert!(nb.starts_with("gen-") && na != nb, "{na} vs {nb}");
}

#[tokio::test]
async fn create_twice_is_already_exists() {
    let srv = TestApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(srv.client(), "default");
    api.create(&PostParams::default(), &cm("dup"))
        .await
        .unwrap();
    let err = api_status(
        api.create(&PostParams::default(), &cm("dup"))
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(err.message, "configmaps \"dup\" already exists");
    let details = err.details.expect("details");
    assert_eq!(details.name, "dup");
    assert_eq!(details.kind, "configmaps");
}

#[tokio::test]
async fn namespaced_create_needs_an_existing_namespace() {
    let srv = TestApiServer::start().await;
    let client = srv.client();
    let err = api_status(
        Api::<ConfigMap>::namespaced(client.clone(), "nowhere")
            .create(&PostParams::default(), &cm("x"))
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (404, "NotFound"));
    assert_eq!(err.message, "namespaces \"nowhere\" not found");

    // default and kube-system exist from the start
    let names: Vec<String> = Api::<Namespace>::all(client.clone())
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    assert!(
        names.contains(&"default".to_string()) && names.contains(&"kube-system".to_string()),
        "{names:?}"
    );
    let ns = Api::<Namespace>::all(client.clone())
        .get("default")
        .await
        .unwrap();
    assert_eq!(ns.status.unwrap().phase.as_deref(), Some("Active"));
}

#[tokio::test]
async fn invalid_names_are_422_with_causes() {
    let srv = TestApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(srv.client(), "default");

    let mut nameless = cm("");
    nameless.metadata.name = None;
    let err = api_status(
        api.create(&PostParams::default(), &nameless)
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (422, "Invalid"));
    assert_eq!(
        err.message,
        "ConfigMap \"\" is invalid: metadata.name: Required value: name or generateName is required"
    );
    let causes = err.details.unwrap().causes;
    assert_eq!(causes[0].field, "metadata.name");
    assert_eq!(causes[0].reason, "FieldValueRequired");

    let err = api_status(
        api.create(&PostParams::default(), &cm("Not_Valid"))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 422);
    assert!(err.message.starts_with("ConfigMap \"Not_Valid\" is invalid: metadata.name: Invalid value: \"Not_Valid\": a lowercase RFC 1123 subdomain"), "{}", err.message);
    // A subdomain is limited to 253 characters in all, not 63 between dots (a CStorVolumeReplica
    // of a local-restore clone is `cstor-clone-<uuid>-<cspi>`, 66 characters).
    let long = format!("cstor-clone-{}-story-142766-xkk8", "0".repeat(36));
    assert!(long.len() > 63);
    api.create(&PostParams::default(), &cm(&long))
        .await
        .unwrap();
    let err = api_status(
        api.create(&PostParams::default(), &cm(&"a".repeat(254)))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 422);
}

#[tokio::test]
async fn body_and_path_must_agree() {
    let srv = TestApiServer::start().await;
    let client = srv.client();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let mut other_ns = cm("x");
    other_ns.metadata.namespace = Some("kube-system".into());
    let err = api_status(
        api.create(&PostParams::default(), &other_ns)
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (400, "BadRequest"));
    assert!(
        err.message
            .contains("namespace of the provided object does not match"),
        "{}",
        err.message
    );

    let created = api.create(&PostParams::default(), &cm("y")).await.unwrap();
    let err = api_status(
        api.replace("z", &PostParams::default(), &created)
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 400);
    assert_eq!(
        err.message,
        "the name of the object (y) does not match the name on the URL (z)"
    );
}

#[tokio::test]
async fn undecodable_body_is_400_and_unknown_verb_is_405() {
    let srv = TestApiServer::start().await;
    let client = srv.client();
    let req = http::Request::post("/api/v1/namespaces/default/configmaps")
        .header("content-type", "application/json")
        .body(b"{not json".to_vec())
        .unwrap();
    let err = api_status(client.request::<ConfigMap>(req).await.unwrap_err());
    assert_eq!((err.code, err.reason.as_str()), (400, "BadRequest"));
    assert!(
        err.message.contains("must be of type ConfigMap"),
        "{}",
        err.message
    );

    let req = http::Request::post("/api/v1/namespaces/default/configmaps/x")
        .header("content-type", "application/json")
        .body(b"{}".to_vec())
        .unwrap();
    let err = api_status(client.request::<ConfigMap>(req).await.unwrap_err());
    assert_eq!((err.code, err.reason.as_str()), (405, "MethodNotAllowed"));

    let req = http::Request::get("/apis/nothing.example.com/v1/things")
        .body(Vec::new())
        .unwrap();
    let err = api_status(client.request::<ConfigMap>(req).await.unwrap_err());
    assert_eq!((err.code, err.reason.as_str()), (404, "NotFound"));
}

#[tokio::test]
async fn status_subresource_of_builtin_kind_is_reset_on_create() {
    let srv = TestApiServer::start().await;
    let client = srv.client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        "status": {"phase": "Running"},
    }))
    .unwrap();
    let created = pods.create(&PostParams::default(), &pod).await.unwrap();
    assert_eq!(
        created.status.unwrap().phase.as_deref(),
        Some("Pending"),
        "status sent on create is dropped"
    );
    pod.metadata = created.metadata.clone();
    pod.status.as_mut().unwrap().phase = Some("Running".into());
    let replaced = pods
        .replace("p", &PostParams::default(), &pod)
        .await
        .unwrap();
    assert_eq!(
        replaced.status.as_ref().unwrap().phase.as_deref(),
        Some("Pending"),
        "main endpoint ignores status"
    );
    let via_status = pods
        .replace_status("p", &PostParams::default(), &pod)
        .await
        .unwrap();
    assert_eq!(via_status.status.unwrap().phase.as_deref(), Some("Running"));
    assert_eq!(
        via_status.metadata.generation,
        Some(1),
        "status writes do not bump generation"
    );

    // Nodes keep the status a kubelet registers with.
    let nodes: Api<Node> = Api::all(client);
    let node: Node = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "n1", "namespace": "ignored"},
        "status": {"capacity": {"cpu": "2"}},
    }))
    .unwrap();
    let n = nodes.create(&PostParams::default(), &node).await.unwrap();
    assert_eq!(
        n.metadata.namespace, None,
        "cluster-scoped objects carry no namespace"
    );
    assert!(n.status.unwrap().capacity.unwrap().contains_key("cpu"));
}

#[tokio::test]
async fn dry_run_changes_nothing() {
    let srv = TestApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(srv.client(), "default");
    let before = srv.resource_version();
    let pp = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let out = api.create(&pp, &cm("dry")).await.unwrap();
    assert_eq!(out.metadata.name.as_deref(), Some("dry"));
    assert!(api.get_opt("dry").await.unwrap().is_none());
    assert_eq!(srv.resource_version(), before);
}
