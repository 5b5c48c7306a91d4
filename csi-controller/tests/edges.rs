//! The CSI spec's edges, driven over the unix socket as a CO calls them: opaque names of up to
//! 128 characters (uppercase, spaces, slashes) for volumes and snapshots, repeated calls,
//! topology that does not pin a volume to nodes, strict StorageClass parameters, a Probe that
//! tells when the API server or a CRD is missing, and nothing left behind by a refused call.

mod common;

use std::{collections::HashMap, time::Duration};

use common::*;
use cstor_api::{
    constants::annotation,
    cstor::{CStorSnapshotRecord, CStorSnapshotRecordSpec, CStorVolumeConfig},
    proto::csi::v1::{
        CreateSnapshotRequest, DeleteSnapshotRequest, DeleteVolumeRequest, ListSnapshotsRequest,
        ProbeRequest, Topology, TopologyRequirement, identity_client::IdentityClient,
    },
};
use cstor_csi_controller::{Config, ControllerService, TopologyMode, bind_unix, serve_unix};
use futures::StreamExt;
use kube::api::ListParams;
use tonic::Code;

fn snap_req(source: &str, name: &str) -> CreateSnapshotRequest {
    CreateSnapshotRequest {
        source_volume_id: source.into(),
        name: name.into(),
        ..Default::default()
    }
}

async fn cvcs(h: &Harness) -> Vec<CStorVolumeConfig> {
    h.api::<CStorVolumeConfig>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
}

#[tokio::test]
async fn volume_names_are_opaque_strings_of_up_to_128_characters() {
    let mut h = Harness::start().await;
    let long = format!("Vol/{}", "X".repeat(124));
    assert_eq!(long.chars().count(), 128);
    for name in ["MyVolume", "has space", long.as_str()] {
        let v = h
            .controller
            .create_volume(create_req(name, GIB))
            .await
            .unwrap_or_else(|s| panic!("CreateVolume {name:?}: {s:?}"))
            .into_inner()
            .volume
            .unwrap();
        let id = v.volume_id.clone();
        assert!(
            id.starts_with("csi-") && id.len() == 36,
            "{name:?} gets a derived object name: {id}"
        );
        let cvc = h
            .api::<CStorVolumeConfig>()
            .get(&id)
            .await
            .expect("the CVC carries the volume id");
        assert_eq!(
            cvc.metadata.annotations.as_ref().unwrap()[annotation::CSI_NAME],
            name,
            "the CSI name is kept for idempotency"
        );
        // Repeated call: the same volume, nothing new.
        let again = h
            .controller
            .create_volume(create_req(name, GIB))
            .await
            .unwrap()
            .into_inner()
            .volume
            .unwrap();
        assert_eq!(again.volume_id, id);
        // Same name, other size: the spec's ALREADY_EXISTS.
        let e = h
            .controller
            .create_volume(create_req(name, 50 * GIB))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");
    }
    assert_eq!(cvcs(&h).await.len(), 3, "one CVC per name");

    // A Kubernetes PV name stays the CVC name (upstream objects and PVs keep working).
    let pv = pv_name();
    let v = h
        .controller
        .create_volume(create_req(&pv, GIB))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(v.volume_id, pv);
    let cvc = h.api::<CStorVolumeConfig>().get(&pv).await.unwrap();
    assert!(
        !cvc.metadata
            .annotations
            .unwrap_or_default()
            .contains_key(annotation::CSI_NAME)
    );

    // A name that happens to equal another name's derived object name is a different volume.
    let derived = h
        .controller
        .create_volume(create_req("MyVolume", GIB))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap()
        .volume_id;
    let e = h
        .controller
        .create_volume(create_req(&derived, GIB))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");
    assert!(e.message().contains("MyVolume"), "{}", e.message());

    // Over 128 characters: refused, naming the limit; nothing written.
    let before = cvcs(&h).await.len();
    let e = h
        .controller
        .create_volume(create_req(&"v".repeat(129), GIB))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("128"), "{}", e.message());
    assert_eq!(cvcs(&h).await.len(), before);

    // DeleteVolume takes the returned id, twice.
    for _ in 0..2 {
        h.controller
            .delete_volume(DeleteVolumeRequest {
                volume_id: derived.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    h.cleanup().await;
}

#[tokio::test]
async fn snapshot_names_are_opaque_strings_of_up_to_128_characters() {
    let mut h = Harness::start().await;
    let pv = pv_name();
    h.controller
        .create_volume(create_req(&pv, GIB))
        .await
        .unwrap();
    h.bind_volume(&pv, Some("Healthy"), "1Gi").await;
    let long = format!("Snap shot/{}", "Z".repeat(118));
    assert_eq!(long.chars().count(), 128);
    let mut ids = Vec::new();
    for name in [
        "Nightly Backup",
        "cstor-clone-looks-internal",
        long.as_str(),
    ] {
        let snap = h
            .controller
            .create_snapshot(snap_req(&pv, name))
            .await
            .unwrap_or_else(|s| panic!("CreateSnapshot {name:?}: {s:?}"))
            .into_inner()
            .snapshot
            .unwrap();
        let (vol, object) = snap.snapshot_id.split_once('@').unwrap();
        assert_eq!(vol, pv);
        assert!(
            object.starts_with("snap-"),
            "{name:?}: {}",
            snap.snapshot_id
        );
        assert!(h.target.has(&snap.snapshot_id), "taken on the target");
        let again = h
            .controller
            .create_snapshot(snap_req(&pv, name))
            .await
            .unwrap()
            .into_inner()
            .snapshot
            .unwrap();
        assert_eq!(again, snap, "a repeated call returns the same snapshot");
        ids.push(snap.snapshot_id);
    }
    assert_eq!(h.target.calls().len(), 3, "one target call per snapshot");
    let listed: Vec<String> = h
        .controller
        .list_snapshots(ListSnapshotsRequest {
            source_volume_id: pv.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries
        .into_iter()
        .filter_map(|e| e.snapshot.map(|s| s.snapshot_id))
        .collect();
    for id in &ids {
        assert!(listed.contains(id), "{id} listed in {listed:?}");
    }
    // Over 128: refused, nothing sent to the target.
    let e = h
        .controller
        .create_snapshot(snap_req(&pv, &"s".repeat(129)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(h.target.calls().len(), 3);
    for id in &ids {
        for _ in 0..2 {
            h.controller
                .delete_snapshot(DeleteSnapshotRequest {
                    snapshot_id: id.clone(),
                    ..Default::default()
                })
                .await
                .unwrap();
        }
        assert!(!h.target.has(id));
    }
    h.cleanup().await;
}

fn requirement(requisite: &[&[(&str, &str)]]) -> TopologyRequirement {
    let topo = |pairs: &[(&str, &str)]| Topology {
        segments: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    TopologyRequirement {
        requisite: requisite.iter().map(|p| topo(p)).collect(),
        preferred: requisite.iter().map(|p| topo(p)).collect(),
    }
}

const NODE_KEY: &str = "topology.cstor.openebs.io/nodeName";
const ZONE_KEY: &str = "topology.kubernetes.io/zone";

#[tokio::test]
async fn the_default_topology_does_not_pin_a_volume_to_nodes() {
    let mut h = Harness::start().await;
    let a = h.node("node-a", &[(ZONE_KEY, "z1")]).await;
    let b = h.node("node-b", &[(ZONE_KEY, "z2")]).await;
    let mut req = create_req(&pv_name(), GIB);
    req.accessibility_requirements = Some(requirement(&[
        &[(NODE_KEY, a.as_str()), (ZONE_KEY, "z1")],
        &[(NODE_KEY, b.as_str()), (ZONE_KEY, "z2")],
    ]));
    let v = h
        .controller
        .create_volume(req)
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert!(
        v.accessible_topology.is_empty(),
        "reachable from every node over iSCSI: {:?}",
        v.accessible_topology
    );
    h.cleanup().await;

    let mut h = Harness::start_with(|c| c.topology = TopologyMode::Zone).await;
    let a = h.node("node-a", &[(ZONE_KEY, "z1")]).await;
    let b = h.node("node-b", &[(ZONE_KEY, "z2")]).await;
    let c = h.node("node-c", &[(ZONE_KEY, "z1")]).await;
    let mut req = create_req(&pv_name(), GIB);
    req.accessibility_requirements = Some(requirement(&[
        &[(NODE_KEY, a.as_str()), (ZONE_KEY, "z1")],
        &[(NODE_KEY, b.as_str()), (ZONE_KEY, "z2")],
        &[(NODE_KEY, c.as_str()), (ZONE_KEY, "z1")],
    ]));
    let v = h
        .controller
        .create_volume(req)
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    let zones: Vec<HashMap<String, String>> = v
        .accessible_topology
        .into_iter()
        .map(|t| t.segments)
        .collect();
    assert_eq!(
        zones,
        vec![
            HashMap::from([(ZONE_KEY.to_string(), "z1".to_string())]),
            HashMap::from([(ZONE_KEY.to_string(), "z2".to_string())]),
        ],
        "zone level only, each zone once, never a node"
    );
    h.cleanup().await;
}

#[tokio::test]
async fn unknown_storage_class_parameters_are_refused_and_nothing_is_written() {
    let mut h = Harness::start().await;
    for (key, value, closest) in [
        ("replicacount", "3", Some("replicaCount")),
        ("openebs.io/cas-type", "cstor", Some("cas-type")),
        ("encryption", "on", None),
    ] {
        let mut req = create_req(&pv_name(), GIB);
        req.parameters.insert(key.into(), value.into());
        let e = h.controller.create_volume(req).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{key}: {e:?}");
        assert!(e.message().contains(key), "{key}: {}", e.message());
        if let Some(c) = closest {
            assert!(
                e.message().contains(&format!("did you mean {c:?}")),
                "{}",
                e.message()
            );
        }
    }
    for (key, value) in [
        ("replicaCount", " 1"),
        ("replicaCount", "1.0"),
        ("fsType", "Ext4"),
    ] {
        let mut req = create_req(&pv_name(), GIB);
        req.parameters.insert(key.into(), value.into());
        let e = h.controller.create_volume(req).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{key}={value:?}");
        assert!(e.message().contains(key), "{}", e.message());
    }
    assert!(cvcs(&h).await.is_empty(), "a refused call writes nothing");
    h.cleanup().await;
}

async fn probe_over_socket(client: kube::Client) -> Option<bool> {
    let svc = ControllerService::new(client, Config::new("openebs"));
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("csi.sock");
    let listener = bind_unix(&socket).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_unix(listener, svc, true, async {
        let _ = stopped.await;
    }));
    let mut identity = IdentityClient::new(unix_channel(socket).await);
    let ready = tokio::time::timeout(Duration::from_secs(60), identity.probe(ProbeRequest {}))
        .await
        .expect("Probe answers while the API server is away")
        .expect("Probe is not an error")
        .into_inner()
        .ready;
    let _ = stop.send(());
    let _ = server.await;
    ready
}

#[tokio::test]
async fn probe_is_not_ready_without_the_api_server_or_a_crd() {
    assert_eq!(
        probe_over_socket(cstor_testkit::fake_api::client(
            Some("no-such-resource"),
            "openebs"
        ))
        .await,
        Some(true)
    );
    assert_eq!(
        probe_over_socket(cstor_testkit::fake_api::client(
            Some("cstorvolumereplicas"),
            "openebs"
        ))
        .await,
        Some(false),
        "the CVR CRD is not installed"
    );
    assert_eq!(
        probe_over_socket(cstor_testkit::fake_api::client(None, "openebs")).await,
        Some(false),
        "API server down"
    );
    let h = Harness::start().await;
    let mut identity = h.identity.clone();
    assert_eq!(
        identity
            .probe(ProbeRequest {})
            .await
            .unwrap()
            .into_inner()
            .ready,
        Some(true),
        "ready on a live API server with the CRDs"
    );
    h.cleanup().await;
}

/// A record object as the controller writes it (an earlier run's, for seeding).
fn seeded_record(ns: &str, pv: &str, snap: &str) -> CStorSnapshotRecord {
    let mut r = CStorSnapshotRecord::namespaced(
        cstor_csi_controller::records::record_name(pv, snap),
        ns,
        CStorSnapshotRecordSpec {
            volume: pv.into(),
            snapshot: snap.into(),
            creation_time: Some(cstor_csi_controller::records::now()),
            size_bytes: GIB,
            ready: true,
            ..Default::default()
        },
    );
    r.metadata.labels = Some(
        [
            ("openebs.io/persistent-volume".to_string(), pv.to_string()),
            (
                cstor_csi_controller::records::SNAPSHOT_DIGEST_LABEL.to_string(),
                cstor_csi_controller::records::snapshot_digest(snap),
            ),
        ]
        .into(),
    );
    r
}

#[tokio::test]
async fn a_volume_holds_10000_snapshots_listed_in_pages() {
    const N: usize = 10_000;
    const TAKEN: usize = 10;
    let mut h = Harness::start().await;
    let pv = pv_name();
    h.controller
        .create_volume(create_req(&pv, GIB))
        .await
        .unwrap();
    h.bind_volume(&pv, Some("Healthy"), "1Gi").await;
    let cvcs = h.api::<CStorVolumeConfig>();
    let cvc_version = || async { cvcs.get(&pv).await.unwrap().metadata.resource_version };
    let before = cvc_version().await;
    // What earlier runs of the controller recorded (written concurrently to keep this quick)...
    let records = h.api::<CStorSnapshotRecord>();
    let names: Vec<String> = (0..N - TAKEN).map(|i| format!("snapshot-{i:05}")).collect();
    futures::stream::iter(names.iter())
        .for_each_concurrent(32, |snap| {
            let records = records.clone();
            let obj = seeded_record(h.ns(), &pv, snap);
            async move {
                records
                    .create(&kube::api::PostParams::default(), &obj)
                    .await
                    .unwrap();
            }
        })
        .await;
    // ...and the last ones taken over the socket, on a volume already holding thousands.
    for i in N - TAKEN..N {
        h.controller
            .create_snapshot(snap_req(&pv, &format!("snapshot-{i:05}")))
            .await
            .unwrap();
    }
    assert_eq!(
        cvc_version().await,
        before,
        "the CVC is never rewritten per snapshot"
    );

    // Every page as the CO asks for it: sorted, no repeats, nothing missing.
    let mut seen: Vec<String> = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = h
            .controller
            .list_snapshots(ListSnapshotsRequest {
                source_volume_id: pv.clone(),
                max_entries: (N / 10) as i32,
                starting_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.entries.len() <= N / 10);
        pages += 1;
        seen.extend(
            page.entries
                .into_iter()
                .filter_map(|e| e.snapshot.map(|s| s.snapshot_id)),
        );
        if page.next_token.is_empty() {
            break;
        }
        token = page.next_token;
    }
    assert_eq!(pages, 10, "ten pages");
    let expected: Vec<String> = (0..N).map(|i| format!("{pv}@snapshot-{i:05}")).collect();
    assert_eq!(seen, expected);

    // One snapshot by id, and its deletion, touch only that snapshot.
    let one = format!("{pv}@snapshot-00424");
    let by_id = h
        .controller
        .list_snapshots(ListSnapshotsRequest {
            snapshot_id: one.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_id.entries.len(), 1);
    h.controller
        .delete_snapshot(DeleteSnapshotRequest {
            snapshot_id: one.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let by_label = ListParams::default().labels(&format!("openebs.io/persistent-volume={pv}"));
    assert_eq!(records.list(&by_label).await.unwrap().items.len(), N - 1);

    // The records go with the volume.
    h.controller
        .delete_volume(DeleteVolumeRequest {
            volume_id: pv.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(records.list(&by_label).await.unwrap().items.is_empty());
    h.cleanup().await;
}

#[tokio::test]
async fn records_an_earlier_version_kept_on_the_cvc_are_still_honoured() {
    let mut h = Harness::start().await;
    let pv = pv_name();
    h.controller
        .create_volume(create_req(&pv, GIB))
        .await
        .unwrap();
    h.bind_volume(&pv, Some("Healthy"), "1Gi").await;
    let legacy = r#"{"old-1":{"creationTime":"2026-01-02T03:04:05Z","sizeBytes":1073741824,"ready":true},"old-2":{"creationTime":"2026-01-02T03:04:06Z","sizeBytes":1073741824,"ready":true}}"#;
    let patch =
        serde_json::json!({"metadata": {"annotations": {"cstor.openebs.io/snapshots": legacy}}});
    h.api::<CStorVolumeConfig>()
        .patch(
            &pv,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .unwrap();
    let listed = |h: &mut Harness| {
        let mut c = h.controller.clone();
        let pv = pv.clone();
        async move {
            c.list_snapshots(ListSnapshotsRequest {
                source_volume_id: pv,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .entries
            .into_iter()
            .filter_map(|e| e.snapshot.map(|s| s.snapshot_id))
            .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        listed(&mut h).await,
        vec![format!("{pv}@old-1"), format!("{pv}@old-2")]
    );
    // A repeated CreateSnapshot of a legacy record answers from it, without the target.
    let again = h
        .controller
        .create_snapshot(snap_req(&pv, "old-1"))
        .await
        .unwrap()
        .into_inner()
        .snapshot
        .unwrap();
    assert_eq!(again.snapshot_id, format!("{pv}@old-1"));
    assert!(h.target.calls().is_empty());
    // Deleting one drops it from the annotation.
    h.controller
        .delete_snapshot(DeleteSnapshotRequest {
            snapshot_id: format!("{pv}@old-1"),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed(&mut h).await, vec![format!("{pv}@old-2")]);
    let ann = h
        .api::<CStorVolumeConfig>()
        .get(&pv)
        .await
        .unwrap()
        .metadata
        .annotations
        .unwrap();
    assert!(!ann["cstor.openebs.io/snapshots"].contains("old-1"));
    h.cleanup().await;
}
