//! Watches: events, bookmarks, 410 Expired, selectors, timeouts, and kube-runtime's watcher
//! recovering from a forced 410 by listing again.

use std::{collections::BTreeMap, time::Duration};

use cstor_testkit::{ServerConfig, TestApiServer};
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api,
    api::{ListParams, ObjectMeta, Patch, PatchParams, PostParams, WatchEvent, WatchParams},
    runtime::{WatchStreamExt, watcher},
};

const STEP: Duration = Duration::from_secs(60);

fn cm(name: &str, labels: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        },
        data: Some(BTreeMap::from([("k".to_string(), "1".to_string())])),
        ..Default::default()
    }
}

async fn next<S, T>(s: &mut S) -> T
where
    S: Stream<Item = Result<T, kube::Error>> + Unpin,
{
    tokio::time::timeout(STEP, s.next())
        .await
        .expect("no watch event within the deadline")
        .expect("the watch stream ended")
        .expect("the watch stream failed")
}

fn describe(e: &WatchEvent<ConfigMap>) -> String {
    match e {
        WatchEvent::Added(o) => format!("ADDED {}", o.metadata.name.clone().unwrap()),
        WatchEvent::Modified(o) => format!("MODIFIED {}", o.metadata.name.clone().unwrap()),
        WatchEvent::Deleted(o) => format!("DELETED {}", o.metadata.name.clone().unwrap()),
        WatchEvent::Bookmark(b) => format!("BOOKMARK {}", b.metadata.resource_version),
        WatchEvent::Error(e) => format!("ERROR {}", e.code),
    }
}

#[tokio::test]
async fn watch_streams_changes_and_bookmarks() {
    let srv = TestApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(srv.client(), "default");
    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut stream = api
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();

    api.create(&PostParams::default(), &cm("w", &[]))
        .await
        .unwrap();
    let patch = serde_json::json!({"data": {"k": "2"}});
    api.patch("w", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    api.delete("w", &Default::default()).await.unwrap();
    assert_eq!(describe(&next(&mut stream).await), "ADDED w");
    let modified = next(&mut stream).await;
    assert_eq!(describe(&modified), "MODIFIED w");
    if let WatchEvent::Modified(o) = modified {
        assert_eq!(o.data.unwrap()["k"], "2");
    }
    assert_eq!(describe(&next(&mut stream).await), "DELETED w");

    srv.send_bookmarks();
    assert_eq!(
        describe(&next(&mut stream).await),
        format!("BOOKMARK {}", srv.resource_version())
    );
}

#[tokio::test]
async fn bookmarks_arrive_periodically_without_changes() {
    let srv = TestApiServer::start_with(
        ServerConfig::default().bookmark_interval(Duration::from_millis(50)),
    )
    .await;
    let api: Api<ConfigMap> = Api::namespaced(srv.client(), "default");
    let rv = srv.resource_version().to_string();
    let mut stream = api
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    assert_eq!(describe(&next(&mut stream).await), format!("BOOKMARK {rv}"));
    assert_eq!(describe(&next(&mut stream).await), format!("BOOKMARK {rv}"));

    // without allowWatchBookmarks no bookmark is sent: the next event is the change itself
    let mut plain = api
        .watch(&WatchParams::default().disable_bookmarks(), &rv)
        .await
        .unwrap()
        .boxed();
    let created = api
        .create(&PostParams::default(), &cm("after", &[]))
        .await
        .unwrap();
    assert_eq!(describe(&next(&mut plain).await), "ADDED after");
    drop(created);
}

#[tokio::test]
async fn too_old_resource_version_is_an_expired_error_event() {
    let srv = TestApiServer::start_with(ServerConfig::default().history_limit(3)).await;
    let api: Api<ConfigMap> = Api::namespaced(srv.client(), "default");
    let old = api
        .create(&PostParams::default(), &cm("x", &[]))
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    for i in 0..5 {
        let patch = serde_json::json!({"data": {"k": i.to_string()}});
        api.patch("x", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    }
    let mut stream = api
        .watch(&WatchParams::default(), &old)
        .await
        .unwrap()
        .boxed();
    match next(&mut stream).await {
        WatchEvent::Error(e) => {
            assert_eq!(e.code, 410);
            assert_eq!(e.reason, "Expired");
            assert!(
                e.message
                    .starts_with(&format!("too old resource version: {old} (")),
                "{}",
                e.message
            );
        }
        other => panic!("expected a 410 ERROR event, got {}", describe(&other)),
    }
    let end = tokio::time::timeout(STEP, stream.next())
        .await
        .expect("the stream ends after the error");
    assert!(end.is_none());

    // a version still inside the history replays the later events
    let recent = (srv.resource_version() - 2).to_string();
    let mut stream = api
        .watch(&WatchParams::default(), &recent)
        .await
        .unwrap()
        .boxed();
    assert_eq!(describe(&next(&mut stream).await), "MODIFIED x");
    assert_eq!(describe(&next(&mut stream).await), "MODIFIED x");
}

#[tokio::test]
async fn selector_watch_sees_objects_enter_and_leave() {
    let srv = TestApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(srv.client(), "default");
    let rv = srv.resource_version().to_string();
    let mut stream = api
        .watch(
            &WatchParams::default().labels("app=x").disable_bookmarks(),
            &rv,
        )
        .await
        .unwrap()
        .boxed();
    let mut by_name = api
        .watch(
            &WatchParams::default()
                .fields("metadata.name=s")
                .disable_bookmarks(),
            &rv,
        )
        .await
        .unwrap()
        .boxed();

    api.create(&PostParams::default(), &cm("other", &[("app", "y")]))
        .await
        .unwrap();
    api.create(&PostParams::default(), &cm("s", &[]))
        .await
        .unwrap();
    let label = |v: serde_json::Value| serde_json::json!({"metadata": {"labels": {"app": v}}});
    api.patch(
        "s",
        &PatchParams::default(),
        &Patch::Merge(label(serde_json::json!("x"))),
    )
    .await
    .unwrap();
    api.patch(
        "s",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"data": {"k": "2"}})),
    )
    .await
    .unwrap();
    api.patch(
        "s",
        &PatchParams::default(),
        &Patch::Merge(label(serde_json::Value::Null)),
    )
    .await
    .unwrap();

    assert_eq!(
        describe(&next(&mut stream).await),
        "ADDED s",
        "starts matching: ADDED"
    );
    assert_eq!(describe(&next(&mut stream).await), "MODIFIED s");
    assert_eq!(
        describe(&next(&mut stream).await),
        "DELETED s",
        "stops matching: DELETED"
    );

    assert_eq!(describe(&next(&mut by_name).await), "ADDED s");
    for _ in 0..3 {
        assert_eq!(describe(&next(&mut by_name).await), "MODIFIED s");
    }
}

#[tokio::test]
async fn watch_from_zero_lists_then_follows_and_times_out() {
    let srv = TestApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(srv.client(), "default");
    api.create(&PostParams::default(), &cm("pre", &[]))
        .await
        .unwrap();
    let mut stream = api
        .watch(&WatchParams::default().timeout(1).disable_bookmarks(), "0")
        .await
        .unwrap()
        .boxed();
    assert_eq!(
        describe(&next(&mut stream).await),
        "ADDED pre",
        "synthetic ADDED for existing objects"
    );
    let end = tokio::time::timeout(STEP, stream.next())
        .await
        .expect("timeoutSeconds=1 ends the stream");
    assert!(end.is_none());
}

/// Runs a kube-runtime watcher in a task and hands its events over as short strings.
fn spawn_watcher(
    api: Api<ConfigMap>,
    config: watcher::Config,
) -> (
    tokio::task::JoinHandle<()>,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let mut w = watcher(api, config).boxed();
        while let Some(ev) = w.next().await {
            let line = match ev {
                Ok(watcher::Event::Init) => "INIT".to_string(),
                Ok(watcher::Event::InitApply(o)) => {
                    format!("INITAPPLY {}", o.metadata.name.unwrap())
                }
                Ok(watcher::Event::InitDone) => "INITDONE".to_string(),
                Ok(watcher::Event::Apply(o)) => format!("APPLY {}", o.metadata.name.unwrap()),
                Ok(watcher::Event::Delete(o)) => format!("DELETE {}", o.metadata.name.unwrap()),
                Err(watcher::Error::WatchError(s)) => format!("ERROR {}", s.code),
                Err(e) => format!("OTHER ERROR {e}"),
            };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    (task, rx)
}

async fn expect_line(rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>, want: &str) {
    let got = tokio::time::timeout(STEP, rx.recv())
        .await
        .expect("watcher event within deadline")
        .expect("the watcher task ended");
    assert_eq!(got, want);
}

#[tokio::test]
async fn watcher_relists_after_forced_410() {
    let srv = TestApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(srv.client(), "default");
    api.create(&PostParams::default(), &cm("before", &[]))
        .await
        .unwrap();
    let (task, mut rx) = spawn_watcher(api.clone(), watcher::Config::default());
    for want in ["INIT", "INITAPPLY before", "INITDONE"] {
        expect_line(&mut rx, want).await;
    }
    api.create(&PostParams::default(), &cm("live", &[]))
        .await
        .unwrap();
    expect_line(&mut rx, "APPLY live").await;

    srv.expire_watch_history();
    for want in [
        "ERROR 410",
        "INIT",
        "INITAPPLY before",
        "INITAPPLY live",
        "INITDONE",
    ] {
        expect_line(&mut rx, want).await;
    }
    api.create(&PostParams::default(), &cm("later", &[]))
        .await
        .unwrap();
    expect_line(&mut rx, "APPLY later").await;
    task.abort();
}

#[tokio::test]
async fn streaming_list_watcher_sees_initial_events_end() {
    let srv = TestApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(srv.client(), "default");
    api.create(&PostParams::default(), &cm("s1", &[]))
        .await
        .unwrap();
    let (task, mut rx) = spawn_watcher(api.clone(), watcher::Config::default().streaming_lists());
    for want in ["INIT", "INITAPPLY s1", "INITDONE"] {
        expect_line(&mut rx, want).await;
    }
    api.create(&PostParams::default(), &cm("s2", &[]))
        .await
        .unwrap();
    expect_line(&mut rx, "APPLY s2").await;
    task.abort();
}

#[tokio::test]
async fn reflector_store_converges_after_expiry() {
    let srv = TestApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(srv.client(), "default");
    let (reader, writer) = kube::runtime::reflector::store();
    let stream = watcher(api.clone(), watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .applied_objects();
    // Errors (the 410) are part of the stream; keep consuming after them.
    let task = tokio::spawn(stream.for_each(|_| async {}));
    reader.wait_until_ready().await.unwrap();
    api.create(&PostParams::default(), &cm("one", &[]))
        .await
        .unwrap();
    srv.expire_watch_history();
    api.create(&PostParams::default(), &cm("two", &[]))
        .await
        .unwrap();
    api.delete("one", &Default::default()).await.unwrap();
    cstor_testkit::wait_until("the reflector to hold exactly [two]", STEP, || {
        let names: Vec<String> = reader
            .state()
            .iter()
            .map(|c| c.metadata.name.clone().unwrap())
            .collect();
        async move { names == ["two"] }
    })
    .await
    .unwrap();
    task.abort();
}

#[tokio::test]
async fn metadata_watcher_gets_partial_objects() {
    let srv = TestApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(srv.client(), "default");
    api.create(&PostParams::default(), &cm("m1", &[]))
        .await
        .unwrap();
    let meta_api: Api<kube::core::PartialObjectMeta<ConfigMap>> =
        Api::namespaced(srv.client(), "default");
    let mut w = watcher(meta_api, watcher::Config::default())
        .applied_objects()
        .boxed();
    let first = next_applied(&mut w).await;
    assert_eq!(first.metadata.name.as_deref(), Some("m1"));
    assert_eq!(
        first.types.as_ref().map(|t| t.kind.as_str()),
        Some("PartialObjectMetadata")
    );
    api.create(&PostParams::default(), &cm("m2", &[]))
        .await
        .unwrap();
    assert_eq!(
        next_applied(&mut w).await.metadata.name.as_deref(),
        Some("m2")
    );
}

async fn next_applied<S, T>(s: &mut S) -> T
where
    S: Stream<Item = Result<T, watcher::Error>> + Unpin,
{
    tokio::time::timeout(STEP, s.next())
        .await
        .expect("no watcher event within the deadline")
        .expect("the watcher ended")
        .expect("the watcher failed")
}
