//! Controller RPCs against the Kubernetes API test server (or a real cluster with
//! CSTOR_TEST_KUBECONFIG), called over the controller's unix socket.

mod common;

use std::collections::HashMap;

use common::*;
use cstor_api::{
    cstor::{CStorVolumeConfig, CStorVolumePolicy},
    proto::csi::v1::{
        CapacityRange, ControllerExpandVolumeRequest, ControllerGetVolumeRequest,
        CreateVolumeRequest, DeleteVolumeRequest, GetCapacityRequest, ListVolumesRequest, Topology,
        TopologyRequirement, ValidateVolumeCapabilitiesRequest,
        volume_capability::access_mode::Mode,
    },
};
use cstor_csi_controller::TopologyMode;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::{
    Api,
    api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams},
    core::ApiResource,
};
use tonic::Code;

const NODE_KEY: &str = "topology.cstor.openebs.io/nodeName";

fn topo(pairs: &[(&str, &str)]) -> Topology {
    Topology {
        segments: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

async fn cvc(h: &Harness, name: &str) -> Option<CStorVolumeConfig> {
    h.api::<CStorVolumeConfig>().get_opt(name).await.unwrap()
}

#[tokio::test]
async fn create_volume_writes_the_upstream_cvc_shape() {
    let mut h = Harness::start().await;
    let name = "pvc-2b6c4b9e-5c1a-4e47-9a38-4d1f4c3e9a01";
    // A PVC the real API server accepts (access modes and a storage request are required).
    let mut pvc: PersistentVolumeClaim = serde_json::from_value(serde_json::json!({
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": { "requests": { "storage": "5Gi" } }
        }
    }))
    .unwrap();
    pvc.metadata.name = Some("data-claim".into());
    pvc.metadata.annotations = Some(
        [(
            "openebs.io/created-through".to_string(),
            "restore".to_string(),
        )]
        .into(),
    );
    h.api::<PersistentVolumeClaim>()
        .create(&PostParams::default(), &pvc)
        .await
        .unwrap();

    let mut req = create_req(name, 4 * GIB + GIB / 2);
    req.parameters = params("cstor-disk-pool", "3");
    req.parameters
        .insert("csi.storage.k8s.io/pvc/name".into(), "data-claim".into());
    req.parameters
        .insert("csi.storage.k8s.io/pvc/namespace".into(), h.ns().into());
    req.accessibility_requirements = Some(TopologyRequirement {
        requisite: vec![],
        preferred: vec![topo(&[(NODE_KEY, "node-a")])],
    });
    let vol = h
        .controller
        .create_volume(req)
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(vol.volume_id, name);
    assert_eq!(
        vol.capacity_bytes,
        5 * GIB,
        "the provisioned (rounded) size is reported"
    );
    assert_eq!(
        vol.volume_context,
        HashMap::from([("openebs.io/cas-type".to_string(), "cstor".to_string())])
    );

    let ar = ApiResource::erase::<CStorVolumeConfig>(&());
    let raw = Api::<DynamicObject>::namespaced_with(h.client(), h.ns(), &ar)
        .get(name)
        .await
        .unwrap();
    let mut got = serde_json::to_value(&raw).unwrap();
    for f in [
        "uid",
        "resourceVersion",
        "creationTimestamp",
        "generation",
        "managedFields",
    ] {
        got["metadata"].as_object_mut().unwrap().remove(f);
    }
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/cvc-upstream.yaml"
    ))
    .unwrap();
    let mut want: serde_json::Value = serde_yaml::from_str(&text).unwrap();
    want["metadata"]["namespace"] = h.ns().into();
    assert_eq!(
        got,
        want,
        "CVC differs from upstream's shape:\n{}",
        serde_json::to_string_pretty(&got).unwrap()
    );
    h.cleanup().await;
}

#[tokio::test]
async fn create_volume_is_idempotent_and_refuses_incompatible_repeats() {
    let mut h = Harness::start().await;
    let name = pv_name();
    let first = h
        .controller
        .create_volume(create_req(&name, 5 * GIB))
        .await
        .unwrap()
        .into_inner();
    let rv = cvc(&h, &name).await.unwrap().metadata.resource_version;
    let again = h
        .controller
        .create_volume(create_req(&name, 5 * GIB))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first, again);
    let smaller = h
        .controller
        .create_volume(create_req(&name, GIB))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        smaller.volume.unwrap().capacity_bytes,
        5 * GIB,
        "a 5 GiB volume satisfies a 1 GiB request"
    );
    assert_eq!(
        cvc(&h, &name).await.unwrap().metadata.resource_version,
        rv,
        "repeats write nothing"
    );

    let bigger = h
        .controller
        .create_volume(create_req(&name, 6 * GIB))
        .await
        .unwrap_err();
    assert_eq!(bigger.code(), Code::AlreadyExists, "{bigger:?}");
    assert!(bigger.message().contains("size"), "{}", bigger.message());

    let mut capped = create_req(&name, GIB);
    capped.capacity_range = Some(CapacityRange {
        required_bytes: GIB,
        limit_bytes: 2 * GIB,
    });
    assert_eq!(
        h.controller.create_volume(capped).await.unwrap_err().code(),
        Code::AlreadyExists
    );

    let mut replicas = create_req(&name, 5 * GIB);
    replicas.parameters = params(CSPC, "3");
    let e = h.controller.create_volume(replicas).await.unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    assert!(e.message().contains("replicaCount"), "{}", e.message());

    let mut pool = create_req(&name, 5 * GIB);
    pool.parameters = params("other-cspc", "1");
    let e = h.controller.create_volume(pool).await.unwrap_err();
    assert!(
        e.code() == Code::AlreadyExists && e.message().contains("cstorPoolCluster"),
        "{e:?}"
    );

    let mut policy = create_req(&name, 5 * GIB);
    policy
        .parameters
        .insert("cstorVolumePolicy".into(), "fast".into());
    let e = h.controller.create_volume(policy).await.unwrap_err();
    assert!(
        e.code() == Code::AlreadyExists && e.message().contains("cstorVolumePolicy"),
        "{e:?}"
    );
    h.cleanup().await;
}

#[tokio::test]
async fn create_volume_validates_capabilities_and_capacity() {
    let mut h = Harness::start().await;
    let ok = [
        mount_cap("ext4"),
        mount_cap("xfs"),
        mount_cap(""),
        block_cap(),
    ];
    for c in ok {
        let mut req = create_req(&pv_name(), GIB);
        req.volume_capabilities = vec![c.clone()];
        h.controller
            .create_volume(req)
            .await
            .unwrap_or_else(|e| panic!("{c:?}: {e:?}"));
    }
    for mode in [
        Mode::SingleNodeReaderOnly,
        Mode::SingleNodeSingleWriter,
        Mode::SingleNodeMultiWriter,
    ] {
        let mut req = create_req(&pv_name(), GIB);
        req.volume_capabilities = vec![cap(mode, block_cap().access_type.unwrap())];
        h.controller.create_volume(req).await.unwrap();
    }
    let cases: Vec<(CreateVolumeRequest, Code, &str)> = vec![
        {
            let mut r = create_req(&pv_name(), GIB);
            r.volume_capabilities = vec![cap(
                Mode::MultiNodeMultiWriter,
                block_cap().access_type.unwrap(),
            )];
            (r, Code::InvalidArgument, "MULTI_NODE_MULTI_WRITER")
        },
        {
            let mut r = create_req(&pv_name(), GIB);
            r.volume_capabilities = vec![mount_cap("btrfs")];
            (r, Code::InvalidArgument, "btrfs")
        },
        {
            let mut r = create_req(&pv_name(), GIB);
            r.volume_capabilities = vec![];
            (r, Code::InvalidArgument, "volume_capabilities")
        },
        {
            let mut r = create_req(&pv_name(), GIB);
            r.capacity_range = Some(CapacityRange {
                required_bytes: 2 * GIB,
                limit_bytes: GIB,
            });
            (r, Code::InvalidArgument, "limit_bytes")
        },
        {
            let mut r = create_req(&pv_name(), GIB);
            r.capacity_range = Some(CapacityRange {
                required_bytes: 1,
                limit_bytes: 1 << 20,
            });
            (r, Code::OutOfRange, "whole GiB")
        },
        {
            let mut r = create_req(&pv_name(), GIB);
            r.parameters.insert("fsType".into(), "zfs".into());
            (r, Code::InvalidArgument, "fsType")
        },
        {
            let mut r = create_req(&pv_name(), GIB);
            r.mutable_parameters.insert("iops".into(), "10".into());
            (r, Code::InvalidArgument, "mutable_parameters")
        },
    ];
    for (req, code, text) in cases {
        let name = req.name.clone();
        let e = h.controller.create_volume(req).await.unwrap_err();
        assert_eq!(e.code(), code, "{e:?}");
        assert!(e.message().contains(text), "{text}: {}", e.message());
        assert!(
            cvc(&h, &name).await.is_none(),
            "no CVC for a refused request"
        );
    }
    let mut no_range = create_req(&pv_name(), 0);
    no_range.capacity_range = None;
    assert_eq!(
        h.controller
            .create_volume(no_range)
            .await
            .unwrap()
            .into_inner()
            .volume
            .unwrap()
            .capacity_bytes,
        GIB
    );
    h.cleanup().await;
}

#[tokio::test]
async fn create_volume_honours_accessibility_requirements() {
    // Requisite mode (opt-in): the requisite topologies are reported as given.
    let mut h = Harness::start_with(|c| c.topology = TopologyMode::Requisite).await;
    // label values unique to this test: a real cluster may have its own zones
    let (z1, z2) = (format!("z1-{}", h.ns()), format!("z2-{}", h.ns()));
    let a = h.node("node-a", &[("zone", &z1)]).await;
    let b = h.node("node-b", &[("zone", &z2)]).await;
    let publish = |c: Option<CStorVolumeConfig>| c.unwrap().publish.and_then(|p| p.node_id);

    // preferred wins over requisite order; a label segment matches through Node labels
    let name = pv_name();
    let mut req = create_req(&name, GIB);
    req.accessibility_requirements = Some(TopologyRequirement {
        requisite: vec![topo(&[("zone", &z1)]), topo(&[("zone", &z2)])],
        preferred: vec![topo(&[("zone", &z2)])],
    });
    let vol = h
        .controller
        .create_volume(req)
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(publish(cvc(&h, &name).await), Some(b.clone()));
    assert_eq!(
        vol.accessible_topology,
        vec![topo(&[("zone", &z1)]), topo(&[("zone", &z2)])]
    );

    // requisite only
    let name = pv_name();
    let mut req = create_req(&name, GIB);
    req.accessibility_requirements = Some(TopologyRequirement {
        requisite: vec![topo(&[("zone", &z1), (NODE_KEY, &a)])],
        preferred: vec![],
    });
    h.controller.create_volume(req).await.unwrap();
    assert_eq!(publish(cvc(&h, &name).await), Some(a.clone()));

    // none at all: allowed, no publish, no topology
    let name = pv_name();
    let vol = h
        .controller
        .create_volume(create_req(&name, GIB))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert!(vol.accessible_topology.is_empty());
    assert!(cvc(&h, &name).await.unwrap().publish.is_none());

    // nothing matches: still created, without a preferred node
    let name = pv_name();
    let mut req = create_req(&name, GIB);
    req.accessibility_requirements = Some(TopologyRequirement {
        requisite: vec![topo(&[("zone", "nowhere")])],
        preferred: vec![],
    });
    h.controller.create_volume(req).await.unwrap();
    assert_eq!(publish(cvc(&h, &name).await), None);
    h.cleanup().await;

    // The default: no accessible topology.
    let mut h = Harness::start().await;
    let mut req = create_req(&pv_name(), GIB);
    req.accessibility_requirements = Some(TopologyRequirement {
        requisite: vec![topo(&[(NODE_KEY, "n1")])],
        preferred: vec![],
    });
    assert!(
        h.controller
            .create_volume(req)
            .await
            .unwrap()
            .into_inner()
            .volume
            .unwrap()
            .accessible_topology
            .is_empty()
    );
    h.cleanup().await;
}

#[tokio::test]
async fn create_volume_while_the_old_one_is_deleted_is_aborted() {
    let mut h = Harness::start().await;
    let name = pv_name();
    h.controller
        .create_volume(create_req(&name, GIB))
        .await
        .unwrap();
    h.controller
        .delete_volume(DeleteVolumeRequest {
            volume_id: name.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let c = cvc(&h, &name)
        .await
        .expect("the CVC finalizer keeps it until the cvc-operator removes it");
    assert!(c.metadata.deletion_timestamp.is_some());
    let e = h
        .controller
        .create_volume(create_req(&name, GIB))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Aborted, "{e:?}");
    assert!(e.message().contains("being deleted"));
    h.cleanup().await;
}

#[tokio::test]
async fn delete_volume_is_idempotent_and_refuses_staged_volumes() {
    let mut h = Harness::start().await;
    let del = |id: &str| DeleteVolumeRequest {
        volume_id: id.into(),
        ..Default::default()
    };
    h.controller.delete_volume(del(&pv_name())).await.unwrap();
    h.controller
        .delete_volume(del("Not A Volume!"))
        .await
        .unwrap();
    assert_eq!(
        h.controller
            .delete_volume(del(""))
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );

    let name = pv_name();
    h.controller
        .create_volume(create_req(&name, GIB))
        .await
        .unwrap();
    h.stage(&name, "worker-7").await;
    let e = h.controller.delete_volume(del(&name)).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(
        e.message().contains("staged") && e.message().contains("worker-7"),
        "{}",
        e.message()
    );
    assert!(
        cvc(&h, &name)
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_none()
    );

    h.api::<cstor_api::cstor::CStorVolumeAttachment>()
        .delete(
            &cstor_api::naming::cva_name(&name, "worker-7"),
            &DeleteParams::default(),
        )
        .await
        .unwrap();
    h.controller.delete_volume(del(&name)).await.unwrap();
    assert!(
        cvc(&h, &name)
            .await
            .is_none_or(|c| c.metadata.deletion_timestamp.is_some())
    );
    h.controller.delete_volume(del(&name)).await.unwrap();
    // once the cvc-operator drops the finalizer the CVC is gone; deleting again is still fine
    let patch = serde_json::json!({"metadata": {"finalizers": null}});
    let _ = h
        .api::<CStorVolumeConfig>()
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await;
    h.controller.delete_volume(del(&name)).await.unwrap();
    h.cleanup().await;
}

#[tokio::test]
async fn expand_records_the_size_and_returns_at_once() {
    let mut h = Harness::start().await;
    let name = pv_name();
    h.controller
        .create_volume(create_req(&name, GIB))
        .await
        .unwrap();
    let expand = |id: &str, bytes: i64, block: bool| ControllerExpandVolumeRequest {
        volume_id: id.into(),
        capacity_range: Some(CapacityRange {
            required_bytes: bytes,
            limit_bytes: 0,
        }),
        volume_capability: Some(if block {
            block_cap()
        } else {
            mount_cap("ext4")
        }),
        ..Default::default()
    };
    let r = h
        .controller
        .controller_expand_volume(expand(&name, 3 * GIB - 5, false))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.capacity_bytes, 3 * GIB);
    assert!(r.node_expansion_required);
    let c = cvc(&h, &name).await.unwrap();
    assert_eq!(c.spec.capacity["storage"].0, "3Gi");
    assert_eq!(
        c.spec.provision.capacity["storage"].0, "1Gi",
        "the provisioned size is immutable"
    );
    let rv = c.metadata.resource_version;
    let r = h
        .controller
        .controller_expand_volume(expand(&name, 3 * GIB, false))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.capacity_bytes, 3 * GIB);
    assert_eq!(
        cvc(&h, &name).await.unwrap().metadata.resource_version,
        rv,
        "a repeat writes nothing"
    );
    let r = h
        .controller
        .controller_expand_volume(expand(&name, 2 * GIB, true))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.capacity_bytes,
        3 * GIB,
        "a smaller request is already satisfied"
    );
    assert!(
        !r.node_expansion_required,
        "block volumes need no filesystem growth"
    );

    assert_eq!(
        h.controller
            .controller_expand_volume(expand(&pv_name(), GIB, false))
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    assert_eq!(
        h.controller
            .controller_expand_volume(expand("", GIB, false))
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    let mut no_range = expand(&name, GIB, false);
    no_range.capacity_range = None;
    assert_eq!(
        h.controller
            .controller_expand_volume(no_range)
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    let mut bad = expand(&name, 4 * GIB, false);
    bad.capacity_range = Some(CapacityRange {
        required_bytes: 4 * GIB,
        limit_bytes: GIB,
    });
    assert_eq!(
        h.controller
            .controller_expand_volume(bad)
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    let mut neg = expand(&name, -1, false);
    neg.capacity_range = Some(CapacityRange {
        required_bytes: -1,
        limit_bytes: 0,
    });
    assert_eq!(
        h.controller
            .controller_expand_volume(neg)
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    h.cleanup().await;
}

#[tokio::test]
async fn get_volume_reports_condition_and_staging_nodes() {
    let mut h = Harness::start().await;
    let get = |id: &str| ControllerGetVolumeRequest {
        volume_id: id.into(),
    };
    let pending = pv_name();
    h.controller
        .create_volume(create_req(&pending, GIB))
        .await
        .unwrap();
    let r = h
        .controller
        .controller_get_volume(get(&pending))
        .await
        .unwrap()
        .into_inner();
    let cond = r.status.unwrap().volume_condition.unwrap();
    assert!(
        cond.abnormal && cond.message.contains("Pending"),
        "{cond:?}"
    );
    assert_eq!(r.volume.unwrap().capacity_bytes, GIB);

    for (phase, abnormal, text) in [
        ("Healthy", false, "Healthy"),
        ("Degraded", true, "Degraded"),
        ("Offline", true, "Offline"),
        ("Init", true, "initialising"),
    ] {
        let name = pv_name();
        h.controller
            .create_volume(create_req(&name, GIB))
            .await
            .unwrap();
        h.bind_volume(&name, Some(phase), "2Gi").await;
        if phase == "Healthy" {
            h.stage(&name, "worker-1").await;
        }
        let r = h
            .controller
            .controller_get_volume(get(&name))
            .await
            .unwrap()
            .into_inner();
        let status = r.status.unwrap();
        let cond = status.volume_condition.unwrap();
        assert_eq!(cond.abnormal, abnormal, "{phase}: {cond:?}");
        assert!(cond.message.contains(text), "{phase}: {cond:?}");
        assert_eq!(
            r.volume.unwrap().capacity_bytes,
            2 * GIB,
            "the target's capacity, in bytes"
        );
        if phase == "Healthy" {
            assert_eq!(status.published_node_ids, vec!["worker-1".to_string()]);
        }
    }
    assert_eq!(
        h.controller
            .controller_get_volume(get(&pv_name()))
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    assert_eq!(
        h.controller
            .controller_get_volume(get(""))
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    h.cleanup().await;
}

#[tokio::test]
async fn list_volumes_pages_through_every_volume() {
    let mut h = Harness::start().await;
    let mut names: Vec<String> = (0..5).map(|_| pv_name()).collect();
    for n in &names {
        h.controller
            .create_volume(create_req(n, GIB))
            .await
            .unwrap();
    }
    h.bind_volume(&names[0], Some("Healthy"), "1Gi").await;
    names.sort();
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let r = h
            .controller
            .list_volumes(ListVolumesRequest {
                max_entries: 2,
                starting_token: token,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(r.entries.len() <= 2);
        pages += 1;
        for e in r.entries {
            assert!(e.status.unwrap().volume_condition.is_some());
            seen.push(e.volume.unwrap().volume_id);
        }
        if r.next_token.is_empty() {
            break;
        }
        token = r.next_token;
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, names);
    let all = h
        .controller
        .list_volumes(ListVolumesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.entries.len(), 5);
    assert!(all.next_token.is_empty());
    let e = h
        .controller
        .list_volumes(ListVolumesRequest {
            max_entries: 1,
            starting_token: "bogus".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Aborted);
    let e = h
        .controller
        .list_volumes(ListVolumesRequest {
            max_entries: -1,
            starting_token: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    h.cleanup().await;
}

#[tokio::test]
async fn validate_volume_capabilities_confirms_only_what_we_serve() {
    let mut h = Harness::start().await;
    let name = pv_name();
    h.controller
        .create_volume(create_req(&name, GIB))
        .await
        .unwrap();
    let req = |caps, params: HashMap<String, String>| ValidateVolumeCapabilitiesRequest {
        volume_id: name.clone(),
        volume_capabilities: caps,
        parameters: params,
        ..Default::default()
    };
    let r = h
        .controller
        .validate_volume_capabilities(req(vec![mount_cap("xfs"), block_cap()], params(CSPC, "1")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.confirmed.unwrap().volume_capabilities,
        vec![mount_cap("xfs"), block_cap()]
    );
    let multi = cap(Mode::MultiNodeReaderOnly, block_cap().access_type.unwrap());
    let r = h
        .controller
        .validate_volume_capabilities(req(vec![multi], HashMap::new()))
        .await
        .unwrap()
        .into_inner();
    assert!(
        r.confirmed.is_none() && r.message.contains("MULTI_NODE_READER_ONLY"),
        "{r:?}"
    );
    let r = h
        .controller
        .validate_volume_capabilities(req(vec![block_cap()], params("elsewhere", "1")))
        .await
        .unwrap()
        .into_inner();
    assert!(
        r.confirmed.is_none() && r.message.contains("elsewhere"),
        "{r:?}"
    );
    assert_eq!(
        h.controller
            .validate_volume_capabilities(req(vec![], HashMap::new()))
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    let mut unknown = req(vec![block_cap()], HashMap::new());
    unknown.volume_id = pv_name();
    assert_eq!(
        h.controller
            .validate_volume_capabilities(unknown)
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    h.cleanup().await;
}

#[tokio::test]
async fn get_capacity_counts_usable_pools_in_the_topology() {
    let mut h = Harness::start().await;
    // label values unique to this test: a real cluster may have its own zones
    let (z1, z2) = (format!("z1-{}", h.ns()), format!("z2-{}", h.ns()));
    let n1 = h.node("cap-a", &[("zone", &z1)]).await;
    let n2 = h.node("cap-b", &[("zone", &z1)]).await;
    let n3 = h.node("cap-c", &[("zone", &z2)]).await;
    h.pool("p1", CSPC, &n1, "ONLINE", false, "10Gi").await;
    h.pool("p2", CSPC, &n2, "DEGRADED", false, "4Gi").await;
    h.pool("p3", CSPC, &n3, "ONLINE", false, "20Gi").await;
    h.pool("p4", CSPC, &n3, "OFFLINE", false, "100Gi").await;
    h.pool("p5", CSPC, &n1, "ONLINE", true, "100Gi").await;
    h.pool("p6", "other", &n1, "ONLINE", false, "100Gi").await;
    let req = |replicas: &str, topology: Option<Topology>| GetCapacityRequest {
        volume_capabilities: vec![mount_cap("ext4")],
        parameters: params(CSPC, replicas),
        accessible_topology: topology,
    };
    let r = h
        .controller
        .get_capacity(req("1", None))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.available_capacity, 34 * GIB);
    assert_eq!(r.maximum_volume_size, Some(20 * GIB));
    let r = h
        .controller
        .get_capacity(req("2", None))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.available_capacity,
        17 * GIB,
        "free space shared by two replicas"
    );
    assert_eq!(
        r.maximum_volume_size,
        Some(10 * GIB),
        "two pools with room: the 2nd largest"
    );
    let r = h
        .controller
        .get_capacity(req("4", None))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.maximum_volume_size, Some(0), "only three usable pools");
    let r = h
        .controller
        .get_capacity(req("1", Some(topo(&[("zone", &z1)]))))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.available_capacity, 14 * GIB);
    let r = h
        .controller
        .get_capacity(req("1", Some(topo(&[(NODE_KEY, &n3)]))))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.available_capacity, 20 * GIB);
    let mut multi = req("1", None);
    multi.volume_capabilities = vec![cap(
        Mode::MultiNodeMultiWriter,
        block_cap().access_type.unwrap(),
    )];
    assert_eq!(
        h.controller
            .get_capacity(multi)
            .await
            .unwrap()
            .into_inner()
            .available_capacity,
        0
    );
    let mut bad = req("1", None);
    bad.parameters.insert("replicaCount".into(), "zero".into());
    let e = h.controller.get_capacity(bad).await.unwrap_err();
    assert!(
        e.code() == Code::InvalidArgument && e.message().contains("replicaCount"),
        "{e:?}"
    );
    h.cleanup().await;
}

#[tokio::test]
async fn concurrent_calls_for_one_volume_are_aborted() {
    let mut h = Harness::start().await;
    let name = pv_name();
    let held = h.svc.guard().try_lock(&name, "test").unwrap();
    let e = h
        .controller
        .create_volume(create_req(&name, GIB))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Aborted);
    assert!(e.message().contains(&name));
    assert!(cvc(&h, &name).await.is_none());
    let e = h
        .controller
        .delete_volume(DeleteVolumeRequest {
            volume_id: name.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Aborted);
    drop(held);
    h.controller
        .create_volume(create_req(&name, GIB))
        .await
        .unwrap();

    // truly concurrent creates of one name: exactly one CVC, every call OK or ABORTED
    let name = pv_name();
    let calls = (0..8).map(|_| {
        let mut c = h.controller.clone();
        let req = create_req(&name, GIB);
        async move { c.create_volume(req).await }
    });
    let results = futures::future::join_all(calls).await;
    assert!(results.iter().any(|r| r.is_ok()));
    assert!(
        results
            .iter()
            .all(|r| r.as_ref().is_ok() || r.as_ref().unwrap_err().code() == Code::Aborted),
        "{results:?}"
    );
    let list = h
        .api::<CStorVolumeConfig>()
        .list(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(
        list.items
            .iter()
            .filter(|c| c.metadata.name.as_deref() == Some(&name))
            .count(),
        1
    );
    h.cleanup().await;
}

#[tokio::test]
async fn volume_policy_is_only_referenced_by_name() {
    let mut h = Harness::start().await;
    let policy = CStorVolumePolicy::namespaced("fast", h.ns(), Default::default());
    h.api::<CStorVolumePolicy>()
        .create(&PostParams::default(), &policy)
        .await
        .unwrap();
    let name = pv_name();
    let mut req = create_req(&name, GIB);
    req.parameters
        .insert("cstorVolumePolicy".into(), "fast".into());
    h.controller.create_volume(req).await.unwrap();
    let c = cvc(&h, &name).await.unwrap();
    assert_eq!(
        c.metadata.annotations.unwrap()["openebs.io/volume-policy"],
        "fast"
    );
    h.cleanup().await;
}
