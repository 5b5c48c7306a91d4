//! `cstor_api::update::modify` on the in-process API server: a write that lands between its
//! read and its write is kept (the change is applied again on the fresh object), a change that
//! asks for nothing writes nothing, a missing object is said to be absent.

use std::collections::BTreeMap;

use cstor_api::update::{Modified, modify};
use cstor_testkit::TestApiServer;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Api, api::PostParams};

fn map(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
    Some(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_write_is_kept_and_the_change_applied_again() {
    let srv = TestApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(srv.client(), "default");
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("shared".into());
    cm.data = map(&[("a", "1")]);
    api.create(&PostParams::default(), &cm).await.unwrap();

    let mut calls = 0;
    let other = api.clone();
    let out = modify(&api, "shared", |cm| {
        calls += 1;
        if calls == 1 {
            // Another writer, between our read and our write.
            tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(async {
                    let mut theirs = other.get("shared").await.unwrap();
                    theirs
                        .data
                        .get_or_insert_with(Default::default)
                        .insert("c".into(), "3".into());
                    other
                        .replace("shared", &PostParams::default(), &theirs)
                        .await
                        .unwrap();
                })
            });
        }
        cm.data
            .get_or_insert_with(Default::default)
            .insert("b".into(), "2".into());
        true
    })
    .await
    .unwrap();
    assert_eq!(calls, 2, "the conflict made it read and change again");
    let Modified::Written(written) = out else {
        panic!("expected a write, got {out:?}")
    };
    assert_eq!(written.data, map(&[("a", "1"), ("b", "2"), ("c", "3")]));
    assert_eq!(api.get("shared").await.unwrap().data, written.data);

    // Nothing to change: no write.
    let before = api.get("shared").await.unwrap().metadata.resource_version;
    let out = modify(&api, "shared", |_| false).await.unwrap();
    assert!(matches!(out, Modified::Unchanged(_)), "{out:?}");
    assert_eq!(
        api.get("shared").await.unwrap().metadata.resource_version,
        before
    );

    let out = modify(&api, "missing", |_| true).await.unwrap();
    assert!(matches!(out, Modified::Absent), "{out:?}");
}
