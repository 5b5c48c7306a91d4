//! The volume manager against the Kubernetes API (in-process test server, or a real cluster
//! with `CSTOR_TEST_KUBECONFIG`): CV status from istgt's REPLICA report, resize and DRF through
//! istgt, shutdown → Offline, and known replicas persisted from istgt's reverse socket.

use std::{sync::Arc, time::Duration};

use cstor_api::cstor::{self, CStorVolume, CStorVolumePhase, CStorVolumeStatus};
use cstor_operators::volume_manager::{
    ConfOptions, ControlClient, IstgtConf, KnownReplicaServer, ManagerConfig, VolumeManager,
    fake_istgt::{FakeIstgt, FakeReply, replica_json},
    render, update_cv,
};
use cstor_testkit::{TestCluster, wait_for};
use k8s_openapi::{api::events::v1::Event, apimachinery::pkg::api::resource::Quantity};
use kube::{Api, api::PostParams};
use serde_json::json;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::UnixStream,
};

const DEADLINE: Duration = Duration::from_secs(90);

fn fixture_cv(namespace: &str) -> CStorVolume {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/volume_manager/cv-pvc-1.yaml"
    ))
    .unwrap();
    let mut cv: CStorVolume = cstor::from_yaml(&text).unwrap();
    cv.metadata.uid = None;
    cv.metadata.namespace = Some(namespace.into());
    cv
}

/// A replica of istgt's REPLICA payload; `zvol_guid` is what istgt reports as `replicaId`.
fn replica(zvol_guid: &str, mode: &str, quorum: &str) -> serde_json::Value {
    json!({"replicaId": zvol_guid, "Address": "10.0.0.9", "Mode": mode, "checkpointedIOSeq": "1234",
           "inflightRead": "0", "inflightWrite": "5", "inflightSync": "0", "quorum": quorum, "upTime": 42})
}

async fn wait_cv<F>(api: &Api<CStorVolume>, name: &str, what: &str, pred: F) -> CStorVolume
where
    F: Fn(&CStorVolume) -> bool,
{
    let pred = &pred;
    wait_for(DEADLINE, || async move {
        api.get(name).await.ok().filter(|cv| pred(cv))
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{what}: {e}; CV now: {:?}",
            futures::executor::block_on(api.get(name)).ok()
        )
    })
}

fn phase(cv: &CStorVolume) -> Option<CStorVolumePhase> {
    cv.status.as_ref().and_then(|s| s.phase.clone())
}

#[tokio::test]
async fn status_resize_drf_and_shutdown() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("cstor_operators=debug")
        .try_init();
    let cluster = TestCluster::start().await;
    let ns = cluster.namespace().to_owned();
    let api: Api<CStorVolume> = Api::namespaced(cluster.client(), &ns);
    // Both known replicas already reported by istgt (spec and status agree).
    let mut cv = fixture_cv(&ns);
    cv.status = Some(CStorVolumeStatus {
        replica_details: cv.spec.replica_details.clone(),
        ..Default::default()
    });
    let cv = api.create(&PostParams::default(), &cv).await.unwrap();
    let name = cv.metadata.name.clone().unwrap();
    let uid = cv.metadata.uid.clone().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let fake = FakeIstgt::start(dir.path().join("istgt_ctl_sock"))
        .await
        .unwrap();
    fake.set_replica_json(replica_json(
        &name,
        "Degraded",
        &[
            replica(&guid_of("11"), "Healthy", "1"),
            replica(&guid_of("22"), "Degraded", "0"),
        ],
    ));
    let conf = Arc::new(IstgtConf::new(dir.path().join("istgt.conf")));
    let cfg = ManagerConfig {
        namespace: ns.clone(),
        volume_uid: uid.clone(),
        resync_interval: Duration::from_millis(200),
        istgt_retry_interval: Duration::from_millis(100),
        pod_name: "pvc-target-pod".into(),
        node_name: "node-1".into(),
        conf_options: ConfOptions::default(),
    };
    let manager = VolumeManager::new(
        cluster.client(),
        ControlClient::new(fake.path()),
        conf.clone(),
        cfg,
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(manager.run(async move {
        let _ = stopped.await;
    }));

    // add: istgt.conf written and REFRESH sent; then REPLICA → Degraded with both replicas.
    let cv = wait_cv(&api, &name, "CV Degraded", |cv| {
        phase(cv) == Some(CStorVolumePhase::Degraded)
            && cv
                .status
                .as_ref()
                .is_some_and(|s| s.replica_statuses().len() == 2)
    })
    .await;
    let st = cv.status.clone().unwrap();
    assert_eq!(st.capacity, Some(Quantity("5Gi".into())));
    let r0 = &st.replica_statuses()[0];
    assert_eq!(
        (r0.replica_id.as_str(), r0.mode.as_str(), r0.quorum.as_str()),
        (guid_of("11").as_str(), "Healthy", "1")
    );
    assert_eq!(
        (
            r0.checkpointed_io_seq.as_str(),
            r0.inflight_write.as_str(),
            r0.up_time
        ),
        ("1234", "5", 42)
    );
    assert_eq!(st.replica_statuses()[1].mode, "Degraded");
    assert!(st.last_transition_time.is_some() && st.last_update_time.is_some());
    assert_eq!(
        conf.read().await.unwrap(),
        render(&cv, &ConfOptions::default()).unwrap()
    );
    let reqs = fake.requests();
    assert_eq!(
        reqs.first().map(String::as_str),
        Some("STATUS\r\n"),
        "{reqs:?}"
    );
    assert!(
        reqs.contains(&"REFRESH\r\n".to_string()) && reqs.contains(&"REPLICA\r\n".to_string()),
        "{reqs:?}"
    );
    let events: Api<Event> = Api::namespaced(cluster.client(), &ns);
    let ev = wait_for(DEADLINE, || async {
        events
            .list(&Default::default())
            .await
            .ok()?
            .items
            .into_iter()
            .find(|e| {
                e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name.as_str())
                    && e.reason.as_deref() == Some("Degraded")
            })
    })
    .await
    .expect("phase event Degraded on the CV");
    assert_eq!(ev.action.as_deref(), Some("PhaseChange"));
    assert_eq!(ev.note.as_deref(), Some("Volume is in Degraded state"));
    assert_eq!(ev.type_.as_deref(), Some("Normal"));
    assert_eq!(
        ev.reporting_controller.as_deref(),
        Some("cstor-volume-manager")
    );

    // All replicas healthy → Healthy.
    fake.set_replica_json(replica_json(
        &name,
        "Healthy",
        &[
            replica(&guid_of("11"), "Healthy", "1"),
            replica(&guid_of("22"), "Healthy", "1"),
            replica(&guid_of("33"), "Healthy", "1"),
        ],
    ));
    wait_cv(&api, &name, "CV Healthy", |cv| {
        phase(cv) == Some(CStorVolumePhase::Healthy)
            && cv
                .status
                .as_ref()
                .is_some_and(|s| s.replica_statuses().len() == 3)
    })
    .await;

    // Resize: spec.capacity 5Gi → 10Gi → RESIZE, conf line, status.capacity, condition gone.
    update_cv(&api, &name, |cv| {
        cv.spec.capacity = Some(Quantity("10Gi".into()));
        Ok::<_, ()>(true)
    })
    .await
    .map_err(|_| "update")
    .unwrap();
    let resize = format!("RESIZE {name} 10Gi 10 60\r\n");
    fake.wait_for_request(DEADLINE, |r| r == resize)
        .await
        .expect("RESIZE sent");
    let cv = wait_cv(&api, &name, "capacity 10Gi", |cv| {
        cv.status
            .as_ref()
            .is_some_and(|s| s.capacity == Some(Quantity("10Gi".into())))
    })
    .await;
    assert!(
        cv.status
            .unwrap()
            .conditions
            .unwrap_or_default()
            .iter()
            .all(|c| c.type_ != "Resizing")
    );
    assert!(
        conf.read()
            .await
            .unwrap()
            .contains("\n  LUN0 Storage 10Gi 32K\n")
    );

    // Resize refused by istgt: condition keeps the error, capacity unchanged.
    fake.set_reply("RESIZE", FakeReply::err("ERR failed RESIZE"));
    update_cv(&api, &name, |cv| {
        cv.spec.capacity = Some(Quantity("20Gi".into()));
        Ok::<_, ()>(true)
    })
    .await
    .map_err(|_| "update")
    .unwrap();
    let cv = wait_cv(&api, &name, "Resizing condition with error", |cv| {
        cv.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| {
                c.iter().any(|c| {
                    c.type_ == "Resizing"
                        && c.message
                            .as_deref()
                            .is_some_and(|m| m.contains("ERR failed RESIZE"))
                })
            })
    })
    .await;
    assert_eq!(cv.status.unwrap().capacity, Some(Quantity("10Gi".into())));

    // DRF scale up 3 → 4 (known replicas unchanged in spec and status): DRF line + conf.
    update_cv(&api, &name, |cv| {
        cv.spec.desired_replication_factor = Some(4);
        Ok::<_, ()>(true)
    })
    .await
    .map_err(|_| "update")
    .unwrap();
    let drf = format!("DRF {name} 4\r\n");
    fake.wait_for_request(DEADLINE, |r| r == drf)
        .await
        .expect("DRF sent");
    wait_for(DEADLINE, || async {
        conf.read()
            .await
            .unwrap()
            .contains("\n  DesiredReplicationFactor 4\n")
    })
    .await
    .expect("conf DesiredReplicationFactor 4");

    // REPLICA failing → Error.
    fake.set_reply(
        "REPLICA",
        FakeReply::err("ERR replication module not initialized"),
    );
    wait_cv(&api, &name, "CV Error", |cv| {
        phase(cv) == Some(CStorVolumePhase::Error)
    })
    .await;

    // Shutdown → Offline without replica statuses.
    stop.send(()).unwrap();
    tokio::time::timeout(DEADLINE, task)
        .await
        .expect("manager stops")
        .unwrap()
        .unwrap();
    let cv = api.get(&name).await.unwrap();
    let st = cv.status.unwrap();
    assert_eq!(st.phase, Some(CStorVolumePhase::Offline));
    assert_eq!(st.replica_statuses, None);
    cluster.cleanup().await.unwrap();
}

#[tokio::test]
async fn invalid_cv_is_marked_invalid() {
    let cluster = TestCluster::start().await;
    let ns = cluster.namespace().to_owned();
    let api: Api<CStorVolume> = Api::namespaced(cluster.client(), &ns);
    let mut cv = fixture_cv(&ns);
    cv.spec.consistency_factor = Some(5);
    let cv = api.create(&PostParams::default(), &cv).await.unwrap();
    let name = cv.metadata.name.clone().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeIstgt::start(dir.path().join("ctl")).await.unwrap();
    let conf = Arc::new(IstgtConf::new(dir.path().join("istgt.conf")));
    let cfg = ManagerConfig {
        namespace: ns.clone(),
        volume_uid: cv.metadata.uid.clone().unwrap(),
        resync_interval: Duration::from_secs(3600),
        istgt_retry_interval: Duration::from_millis(100),
        pod_name: String::new(),
        node_name: String::new(),
        conf_options: ConfOptions::default(),
    };
    let manager = VolumeManager::new(
        cluster.client(),
        ControlClient::new(fake.path()),
        conf.clone(),
        cfg,
    );
    let err = manager.add(&cv).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("spec.replicationFactor 3 is smaller than spec.consistencyFactor 5"),
        "{err}"
    );
    assert_eq!(
        phase(&api.get(&name).await.unwrap()),
        Some(CStorVolumePhase::Invalid)
    );
    assert!(!conf.path().exists(), "no istgt.conf for an invalid CV");
    assert!(!fake.requests().contains(&"REFRESH\r\n".to_string()));
    cluster.cleanup().await.unwrap();
}

async fn report(path: &std::path::Path, line: &str) -> String {
    let mut s = UnixStream::connect(path).await.unwrap();
    s.write_all(line.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(DEADLINE, s.read_to_string(&mut answer))
        .await
        .expect("answer")
        .unwrap();
    answer
}

#[tokio::test]
async fn known_replicas_from_istgt_are_persisted() {
    let cluster = TestCluster::start().await;
    let ns = cluster.namespace().to_owned();
    let api: Api<CStorVolume> = Api::namespaced(cluster.client(), &ns);
    let mut cv = fixture_cv(&ns);
    cv.spec.replica_details = None;
    let cv = api.create(&PostParams::default(), &cv).await.unwrap();
    let name = cv.metadata.name.clone().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let conf = Arc::new(IstgtConf::new(dir.path().join("istgt.conf")));
    conf.write(&render(&cv, &ConfOptions::default()).unwrap())
        .await
        .unwrap();
    let sock = dir.path().join("volume_mgmt_sock");
    let listener = KnownReplicaServer::bind(&sock).unwrap();
    let server = KnownReplicaServer::new(cluster.client(), &ns, conf.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.serve(listener, async move {
        let _ = stopped.await;
    }));

    let line = format!(
        "{{\"replicaId\":\"6061\",\"replicaZvolGuid\":\"98765\",\"volumeName\":\"{name}\",\"replicationFactor\":3,\"consistencyFactor\":2}}\r\n"
    );
    assert_eq!(report(&sock, &line).await, "Ok\r\n");
    let cv = api.get(&name).await.unwrap();
    let spec_known = cv
        .spec
        .replica_details
        .as_ref()
        .and_then(|d| d.known_replicas.clone())
        .unwrap();
    assert_eq!(spec_known.get("6061").map(String::as_str), Some("98765"));
    let status_known = cv
        .status
        .as_ref()
        .and_then(|s| s.replica_details.as_ref())
        .and_then(|d| d.known_replicas.clone())
        .unwrap();
    assert_eq!(status_known.get("6061").map(String::as_str), Some("98765"));
    let text = conf.read().await.unwrap();
    assert!(
        text.ends_with("  LUN0 Option XCOPY Disable\n  Replica 6061 98765\n"),
        "{text}"
    );

    // istgt running with a lower RF than the CV: refused, nothing changes.
    let lower = line
        .replace("\"replicationFactor\":3", "\"replicationFactor\":1")
        .replace("6061", "7071");
    assert_eq!(report(&sock, &lower).await, "Err\r\n");
    // Unknown volume and garbage: refused.
    let other = line
        .replace(&name, "pvc-does-not-exist")
        .replace("6061", "8081");
    assert_eq!(report(&sock, &other).await, "Err\r\n");
    assert_eq!(report(&sock, "not json\r\n").await, "Err\r\n");
    let cv = api.get(&name).await.unwrap();
    assert_eq!(
        cv.spec
            .replica_details
            .and_then(|d| d.known_replicas)
            .unwrap()
            .len(),
        1
    );
    assert!(!conf.read().await.unwrap().contains("7071"));

    stop.send(()).unwrap();
    tokio::time::timeout(DEADLINE, task)
        .await
        .expect("server stops")
        .unwrap();
    cluster.cleanup().await.unwrap();
}

/// The zvol guid of replica `id` in these tests (istgt reports replicas by guid).
fn guid_of(id: &str) -> String {
    format!("1544{id}0963112087")
}

fn details(ids: &[&str]) -> Option<cstor::CStorVolumeReplicaDetails> {
    Some(cstor::CStorVolumeReplicaDetails {
        known_replicas: Some(ids.iter().map(|i| (i.to_string(), guid_of(i))).collect()),
        ..Default::default()
    })
}

#[tokio::test]
async fn drf_scale_down_removes_the_dropped_replica() {
    let cluster = TestCluster::start().await;
    let ns = cluster.namespace().to_owned();
    let api: Api<CStorVolume> = Api::namespaced(cluster.client(), &ns);
    // The user removed replica 22 from spec and lowered DRF 2 → 1.
    let mut cv = fixture_cv(&ns);
    cv.spec.replication_factor = Some(2);
    cv.spec.consistency_factor = Some(2);
    cv.spec.desired_replication_factor = Some(2);
    cv.spec.replica_details = details(&["11", "22"]);
    let created = api.create(&PostParams::default(), &cv).await.unwrap();
    let name = created.metadata.name.clone().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let conf = Arc::new(IstgtConf::new(dir.path().join("istgt.conf")));
    conf.write(&render(&created, &ConfOptions::default()).unwrap())
        .await
        .unwrap();
    let cv = update_cv(&api, &name, |cv| {
        cv.spec.desired_replication_factor = Some(1);
        cv.spec.replica_details = details(&["11"]);
        cv.status = Some(CStorVolumeStatus {
            replica_details: details(&["11", "22"]),
            ..Default::default()
        });
        Ok::<_, ()>(true)
    })
    .await
    .map_err(|_| "update")
    .unwrap();

    let fake = FakeIstgt::start(dir.path().join("ctl")).await.unwrap();
    let cfg = ManagerConfig {
        namespace: ns.clone(),
        volume_uid: created.metadata.uid.clone().unwrap(),
        resync_interval: Duration::from_secs(3600),
        istgt_retry_interval: Duration::from_millis(100),
        pod_name: String::new(),
        node_name: String::new(),
        conf_options: ConfOptions::default(),
    };
    let manager = VolumeManager::new(
        cluster.client(),
        ControlClient::new(fake.path()),
        conf.clone(),
        cfg,
    );

    // Not while the volume is degraded.
    fake.set_replica_json(replica_json(
        &name,
        "Degraded",
        &[replica(&guid_of("11"), "Degraded", "1")],
    ));
    let err = manager.drf(&cv).await.unwrap_err();
    assert!(err.to_string().contains("must be Healthy"), "{err}");
    assert!(!fake.requests().iter().any(|r| r.starts_with("DRF")));

    // istgt lists replicas by zvol guid: a healthy replica is found through knownReplicas
    // (id → guid). A report naming only some other zvol does not count for replica 11.
    fake.set_replica_json(replica_json(
        &name,
        "Healthy",
        &[replica(&guid_of("33"), "Healthy", "1")],
    ));
    let err = manager.drf(&cv).await.unwrap_err();
    assert!(err.to_string().contains("replica 11"), "{err}");
    assert!(!fake.requests().iter().any(|r| r.starts_with("DRF")));
    fake.set_replica_json(replica_json(
        &name,
        "Healthy",
        &[replica(&guid_of("11"), "Healthy", "1")],
    ));
    manager.drf(&cv).await.unwrap();
    assert!(
        fake.requests().contains(&format!("DRF {name} 1 11\r\n")),
        "{:?}",
        fake.requests()
    );
    let text = conf.read().await.unwrap();
    for line in [
        "\n  ReplicationFactor 1\n",
        "\n  ConsistencyFactor 1\n",
        "\n  DesiredReplicationFactor 1\n",
        &format!("\n  Replica 11 {}\n", guid_of("11")),
    ] {
        assert!(text.contains(line), "{line:?} missing in {text}");
    }
    assert!(!text.contains("Replica 22"), "{text}");
    let cv = api.get(&name).await.unwrap();
    assert_eq!(
        (cv.spec.replication_factor, cv.spec.consistency_factor),
        (Some(1), Some(1))
    );
    let status_known = cv
        .status
        .and_then(|s| s.replica_details)
        .and_then(|d| d.known_replicas)
        .unwrap();
    assert_eq!(status_known.keys().collect::<Vec<_>>(), vec!["11"]);
    cluster.cleanup().await.unwrap();
}

/// The three parts together, as the binary runs them.
#[tokio::test]
async fn run_serves_all_three_parts_and_goes_offline() {
    use cstor_api::proto::snapshot::v1alpha1::{
        VolumeSnapCreateRequest, run_snap_command_client::RunSnapCommandClient,
    };
    use cstor_operators::volume_manager::{Settings, run};

    let cluster = TestCluster::start().await;
    let ns = cluster.namespace().to_owned();
    let api: Api<CStorVolume> = Api::namespaced(cluster.client(), &ns);
    let mut cv = fixture_cv(&ns);
    cv.spec.replica_details = None;
    let cv = api.create(&PostParams::default(), &cv).await.unwrap();
    let name = cv.metadata.name.clone().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let fake = FakeIstgt::start(dir.path().join("istgt_ctl_sock"))
        .await
        .unwrap();
    fake.set_replica_json(replica_json(
        &name,
        "Healthy",
        &[
            replica(&guid_of("11"), "Healthy", "1"),
            replica(&guid_of("22"), "Healthy", "1"),
        ],
    ));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let settings = Settings {
        istgt_socket: fake.path().to_path_buf(),
        known_replica_socket: dir.path().join("volume_mgmt_sock"),
        conf_path: dir.path().join("etc/istgt.conf"),
        grpc_listen: format!("127.0.0.1:{port}").parse().unwrap(),
        manager: ManagerConfig {
            namespace: ns.clone(),
            volume_uid: cv.metadata.uid.clone().unwrap(),
            resync_interval: Duration::from_millis(200),
            istgt_retry_interval: Duration::from_millis(100),
            pod_name: String::new(),
            node_name: String::new(),
            conf_options: ConfOptions::default(),
        },
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(run(cluster.client(), settings.clone(), async move {
        let _ = stopped.await;
    }));
    wait_cv(&api, &name, "CV Healthy", |cv| {
        phase(cv) == Some(CStorVolumePhase::Healthy)
    })
    .await;
    assert!(settings.conf_path.exists());

    let line = format!(
        "{{\"replicaId\":\"11\",\"replicaZvolGuid\":\"4242\",\"volumeName\":\"{name}\",\"replicationFactor\":3,\"consistencyFactor\":2}}\r\n"
    );
    assert_eq!(
        report(&settings.known_replica_socket, &line).await,
        "Ok\r\n"
    );
    let mut client = RunSnapCommandClient::connect(format!("http://127.0.0.1:{port}"))
        .await
        .unwrap();
    let resp = client
        .run_volume_snap_create_command(VolumeSnapCreateRequest {
            version: 1,
            volume: name.clone(),
            snapname: "s1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.status, br#"{"response":"OK SNAPCREATE\r\n"}"#.to_vec());

    stop.send(()).unwrap();
    tokio::time::timeout(DEADLINE, task)
        .await
        .expect("run stops")
        .unwrap()
        .unwrap();
    let cv = api.get(&name).await.unwrap();
    assert_eq!(phase(&cv), Some(CStorVolumePhase::Offline));
    assert_eq!(
        cv.spec
            .replica_details
            .and_then(|d| d.known_replicas)
            .unwrap()
            .get("11")
            .map(String::as_str),
        Some("4242")
    );
    assert!(
        !settings.known_replica_socket.exists(),
        "socket removed on shutdown"
    );
    cluster.cleanup().await.unwrap();
}
