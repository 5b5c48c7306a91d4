//! cvc-operator scenarios on a [`cstor_testkit::TestCluster`] (in-process API server, or a real
//! cluster with `CSTOR_TEST_KUBECONFIG`). Pool managers and volume managers are simulated by
//! `cvc_support::simulate`.

#[path = "cvc_support.rs"]
mod support;

use std::collections::BTreeSet;

use cstor_api::{
    constants::label,
    cstor::{
        CStorVolume, CStorVolumeConfig, CStorVolumeConfigPhase, CStorVolumePolicy,
        CStorVolumeReplica, from_value,
    },
    naming,
};
use cstor_operators::cvc_operator::status;
use cstor_testkit::wait_until;
use k8s_openapi::api::{
    apps::v1::Deployment, core::v1::Service, events::v1::Event, policy::v1::PodDisruptionBudget,
};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
};
use serde_json::json;
use support::{DEADLINE, Harness};

fn provision_failure(c: &CStorVolumeConfig) -> Option<(String, String)> {
    status::condition(c, status::PROVISION_FAILED).map(|c| (c.reason.clone(), c.message.clone()))
}

/// Asserts that nothing was created for volume `pv`.
async fn assert_nothing_created(h: &Harness, pv: &str) {
    assert!(
        h.api::<Service>().get_opt(pv).await.unwrap().is_none(),
        "service of {pv}"
    );
    assert!(
        h.api::<CStorVolume>().get_opt(pv).await.unwrap().is_none(),
        "CV of {pv}"
    );
    let target = naming::target_deployment_name(pv);
    assert!(
        h.api::<Deployment>()
            .get_opt(&target)
            .await
            .unwrap()
            .is_none(),
        "target of {pv}"
    );
    assert!(h.cvrs(pv).await.is_empty(), "CVRs of {pv}");
}

async fn events_for(h: &Harness, name: &str, reason: &str) -> Vec<Event> {
    h.api::<Event>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| {
            e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
                && e.reason.as_deref() == Some(reason)
        })
        .collect()
}

#[tokio::test]
async fn pending_to_bound_with_one_and_three_replicas() {
    let h = Harness::start().await;
    h.create_cspc("cspc-a").await;
    let pools = h.create_pools("cspc-a", 0, 4).await;

    h.create_cvc(&h.cvc("pvc-one", "cspc-a", 1, "5Gi")).await;
    h.create_cvc(&h.cvc("pvc-three", "cspc-a", 3, "5Gi")).await;
    for (pv, rf) in [("pvc-one", 1usize), ("pvc-three", 3)] {
        let cvc = h.wait_bound(pv).await;
        // The policy read back from the API hashes as it did when it was written, so the bound
        // volume is not "policy synced" again (a second CVC write and event per volume).
        use cstor_operators::cvc_operator::target;
        assert_eq!(
            cvc.annotations()
                .get(cstor_api::constants::annotation::APPLIED_POLICY),
            Some(&target::applied_record(
                &target::policy_hash(&cvc.spec.policy),
                ""
            )),
            "{pv}"
        );
        let svc = h.api::<Service>().get(pv).await.unwrap();
        let ports: Vec<i32> = svc
            .spec
            .as_ref()
            .unwrap()
            .ports
            .as_ref()
            .unwrap()
            .iter()
            .map(|p| p.port)
            .collect();
        assert_eq!(ports, [3260, 7777, 6060, 9500]);
        let ip = svc.spec.unwrap().cluster_ip.unwrap();
        let cv = h.api::<CStorVolume>().get(pv).await.unwrap();
        assert_eq!(cv.spec.replication_factor, Some(rf as i64));
        assert_eq!(cv.spec.desired_replication_factor, Some(rf as i64));
        assert_eq!(cv.spec.consistency_factor, Some(rf as i64 / 2 + 1));
        assert_eq!(cv.spec.target_ip.as_deref(), Some(ip.as_str()));
        assert_eq!(cv.spec.iqn, Some(naming::iqn(pv)));
        assert_eq!(cv.owner_references()[0].uid, cvc.uid().unwrap());
        let deploy = h
            .api::<Deployment>()
            .get(&naming::target_deployment_name(pv))
            .await
            .unwrap();
        let deploy_template = deploy.spec.unwrap().template;
        let pod = deploy_template.spec.clone().unwrap();
        let names: Vec<&str> = pod.containers.iter().map(|c| c.name.as_str()).collect();
        // No m-exporter sidecar: volume-manager serves the metrics on 9500 itself.
        assert_eq!(names, ["cstor-istgt", "cstor-volume-mgmt"]);
        let mgmt = &pod.containers[1];
        let ports: Vec<i32> = mgmt
            .ports
            .iter()
            .flatten()
            .map(|p| p.container_port)
            .collect();
        assert!(ports.contains(&9500), "{ports:?}");
        let exporter_env = mgmt
            .env
            .iter()
            .flatten()
            .find(|e| e.name == "EXPORTER_ADDR")
            .and_then(|e| e.value.clone());
        assert_eq!(exporter_env.as_deref(), Some("0.0.0.0:9500"));
        let annotations = deploy_pod_annotations(&deploy_template);
        assert_eq!(
            annotations.get("prometheus.io/port").map(String::as_str),
            Some("9500")
        );
        assert_eq!(pod.tolerations.unwrap().len(), 4, "default tolerations");
        let pools_of = h.cvr_pools(pv).await;
        let distinct: BTreeSet<_> = pools_of.iter().collect();
        assert_eq!(pools_of.len(), rf);
        assert_eq!(distinct.len(), rf, "one replica per pool: {pools_of:?}");
        assert!(pools_of.iter().all(|p| pools.contains(p)));
        for cvr in h.cvrs(pv).await {
            assert_eq!(cvr.owner_references()[0].uid, cv.uid().unwrap());
            assert_eq!(cvr.spec.target_ip.as_deref(), Some(ip.as_str()));
            assert!(
                cvr.finalizers()
                    .iter()
                    .any(|f| f == "cstorvolumereplica.openebs.io/finalizer")
            );
        }
        let mut info = cvc.status.pool_info().to_vec();
        info.sort();
        assert_eq!(info, pools_of);
        assert_eq!(
            cvc.spec.cstor_volume_ref.as_ref().unwrap().name.as_deref(),
            Some(pv)
        );
        assert!(provision_failure(&cvc).is_none());
        let pdb_label = cvc.labels().get(label::POD_DISRUPTION_BUDGET).cloned();
        if rf >= 3 {
            let pdb = h
                .api::<PodDisruptionBudget>()
                .get(pdb_label.as_ref().unwrap())
                .await
                .unwrap();
            let values = pdb
                .spec
                .unwrap()
                .selector
                .unwrap()
                .match_expressions
                .unwrap()[0]
                .values
                .clone()
                .unwrap();
            assert_eq!(values.len(), 3);
        } else {
            assert!(pdb_label.is_none());
        }
        assert!(!events_for(&h, pv, "Synced").await.is_empty());
    }
    h.stop().await;
}

#[tokio::test]
async fn not_enough_pools_leaves_nothing_then_recovers() {
    let h = Harness::start().await;
    h.create_cspc("cspc-b").await;
    let pools = h.create_pools("cspc-b", 0, 3).await;
    h.set_pool_phase(&pools[2], "OFFLINE").await;
    h.create_cvc(&h.cvc("pvc-short", "cspc-b", 3, "1Gi")).await;
    let cvc = h
        .wait_cvc("pvc-short", "NotEnoughPools condition", |c| {
            provision_failure(c).is_some_and(|(r, _)| r == "NotEnoughPools")
        })
        .await;
    let (_, message) = provision_failure(&cvc).unwrap();
    assert!(
        message.contains("usable pool count: 2 pending replica count: 3"),
        "{message}"
    );
    assert!(
        message.contains(&format!("{}: pool phase is OFFLINE", pools[2])),
        "{message}"
    );
    assert_eq!(cvc.status.phase, Some(CStorVolumeConfigPhase::Pending));
    assert_nothing_created(&h, "pvc-short").await;
    assert!(!events_for(&h, "pvc-short", "Provisioning").await.is_empty());
    // The pool comes back: the volume binds and the condition goes.
    h.set_pool_phase(&pools[2], "ONLINE").await;
    let cvc = h.wait_bound("pvc-short").await;
    assert!(provision_failure(&cvc).is_none());
    assert_eq!(h.cvr_pools("pvc-short").await.len(), 3);
    h.stop().await;
}

#[tokio::test]
async fn bad_input_is_explained_and_creates_nothing() {
    let h = Harness::start().await;
    h.create_cspc("cspc-c").await;
    let pools = h.create_pools("cspc-c", 0, 2).await;
    let mut cases: Vec<(CStorVolumeConfig, &str, &str)> = Vec::new();
    cases.push((
        h.cvc("pvc-zero", "cspc-c", 0, "1Gi"),
        "InvalidSpec",
        "replicaCount is 0",
    ));
    cases.push((
        h.cvc("pvc-many", "cspc-c", 5, "1Gi"),
        "NotEnoughPools",
        "usable pool count: 2 pending replica count: 5",
    ));
    cases.push((
        h.cvc("pvc-nocspc", "cspc-missing", 1, "1Gi"),
        "PoolClusterNotFound",
        "CStorPoolCluster \"cspc-missing\"",
    ));
    let mut nopolicy = h.cvc("pvc-nopolicy", "cspc-c", 1, "1Gi");
    nopolicy
        .annotations_mut()
        .insert("openebs.io/volume-policy".into(), "no-such-policy".into());
    cases.push((
        nopolicy,
        "PolicyNotFound",
        "CStorVolumePolicy \"no-such-policy\"",
    ));
    // A policy whose replicaPoolInfo is malformed: wrong length, unknown pool, duplicates.
    for (policy, pools_in_policy) in [
        ("pol-len", vec![pools[0].clone()]),
        (
            "pol-unknown",
            vec![pools[0].clone(), "cspc-c-nope".to_owned()],
        ),
        ("pol-dup", vec![pools[0].clone(), pools[0].clone()]),
    ] {
        let cvp: CStorVolumePolicy = from_value(json!({
            "apiVersion": "cstor.openebs.io/v1", "kind": "CStorVolumePolicy",
            "metadata": {"name": policy, "namespace": h.ns},
            "spec": {"replicaPoolInfo": pools_in_policy.iter().map(|p| json!({"poolName": p})).collect::<Vec<_>>()}
        }))
        .unwrap();
        h.api::<CStorVolumePolicy>()
            .create(&PostParams::default(), &cvp)
            .await
            .unwrap();
        let mut c = h.cvc(&format!("pvc-{policy}"), "cspc-c", 2, "1Gi");
        c.annotations_mut()
            .insert("openebs.io/volume-policy".into(), policy.into());
        let expect = match policy {
            "pol-len" => "incorrect number of pool names in cvc policy: expected 2 got 1",
            "pol-unknown" => "names pool \"cspc-c-nope\"",
            _ => "duplicate pool names",
        };
        cases.push((c, "InvalidSpec", expect));
    }
    for (c, _, _) in &cases {
        h.create_cvc(c).await;
    }
    for (c, reason, text) in &cases {
        let name = c.name_any();
        let got = h
            .wait_cvc(&name, reason, |c| {
                provision_failure(c).is_some_and(|(r, _)| r == *reason)
            })
            .await;
        let (_, message) = provision_failure(&got).unwrap();
        assert!(
            message.contains(text),
            "{name}: {message:?} should contain {text:?}"
        );
        assert_eq!(got.status.phase, Some(CStorVolumeConfigPhase::Pending));
        assert_nothing_created(&h, &name).await;
    }
    h.stop().await;
}

#[tokio::test]
async fn scale_replicas_one_to_three_to_two() {
    let h = Harness::start().await;
    h.create_cspc("cspc-s").await;
    let pools = h.create_pools("cspc-s", 0, 3).await;
    h.create_cvc(&h.cvc("pvc-scale", "cspc-s", 1, "2Gi")).await;
    let cvc = h.wait_bound("pvc-scale").await;
    let first = cvc.status.pool_info().to_vec();
    assert_eq!(first.len(), 1);
    assert_eq!(
        cvc.spec.policy.replica_pool_info().len(),
        1,
        "replicaPoolInfo filled at bind"
    );
    let api = h.api::<CStorVolumeConfig>();
    let set_pools = |names: Vec<String>| {
        let api = api.clone();
        async move {
            api.patch(
                "pvc-scale",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"policy": {"replicaPoolInfo":
                    names.iter().map(|p| json!({"poolName": p})).collect::<Vec<_>>()}}})),
            )
            .await
            .unwrap();
        }
    };
    // Malformed change: duplicates → refused, explained, nothing touched.
    set_pools(vec![first[0].clone(), first[0].clone()]).await;
    let c = h
        .wait_cvc("pvc-scale", "scaling refused", |c| {
            status::condition(c, status::SCALING_REPLICAS)
                .is_some_and(|s| s.message.starts_with("duplicate pool names"))
        })
        .await;
    assert_eq!(c.status.pool_info(), first.as_slice());
    assert_eq!(h.cvrs("pvc-scale").await.len(), 1);

    // 1 → 3.
    let mut three = first.clone();
    three.extend(pools.iter().filter(|p| !first.contains(p)).cloned());
    set_pools(three.clone()).await;
    let c = h
        .wait_cvc("pvc-scale", "3 pools in status", |c| {
            c.status.pool_info().len() == 3
        })
        .await;
    assert!(status::condition(&c, status::SCALING_REPLICAS).is_none());
    let mut sorted = three.clone();
    sorted.sort();
    assert_eq!(h.cvr_pools("pvc-scale").await, sorted);
    let cv = h.api::<CStorVolume>().get("pvc-scale").await.unwrap();
    assert_eq!(cv.spec.desired_replication_factor, Some(3));
    let added = h
        .api::<CStorVolumeReplica>()
        .get(&naming::cvr_name("pvc-scale", &three[1]))
        .await
        .unwrap();
    assert_eq!(
        added.spec.replica_id,
        Some(naming::replica_id_for_scale_up("pvc-scale", &three[1]))
    );
    let pdb = c
        .labels()
        .get(label::POD_DISRUPTION_BUDGET)
        .cloned()
        .expect("PDB at 3 replicas");
    assert!(
        h.api::<PodDisruptionBudget>()
            .get_opt(&pdb)
            .await
            .unwrap()
            .is_some()
    );

    // 3 → 2: the CV forgets the removed replica before its CVR is deleted.
    let cv_api = h.api::<CStorVolume>();
    let known: serde_json::Map<String, serde_json::Value> = h
        .cvrs("pvc-scale")
        .await
        .iter()
        .map(|c| {
            (
                c.spec.replica_id.clone().unwrap(),
                json!(format!("guid-{}", c.name_any())),
            )
        })
        .collect();
    cv_api
        .patch(
            "pvc-scale",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicaDetails": {"knownReplicas": known}}})),
        )
        .await
        .unwrap();
    wait_until(
        "volume manager reported 3 known replicas",
        DEADLINE,
        || async {
            cv_api
                .get("pvc-scale")
                .await
                .ok()
                .and_then(|cv| cv.status?.replica_details?.known_replicas)
                .is_some_and(|k| k.len() == 3)
        },
    )
    .await
    .unwrap();
    let removed = three[2].clone();
    let removed_id = h
        .api::<CStorVolumeReplica>()
        .get(&naming::cvr_name("pvc-scale", &removed))
        .await
        .unwrap()
        .spec
        .replica_id
        .unwrap();
    set_pools(three[..2].to_vec()).await;
    let c = h
        .wait_cvc("pvc-scale", "2 pools in status", |c| {
            c.status.pool_info().len() == 2
        })
        .await;
    assert!(!c.status.pool_info().contains(&removed));
    let cv = cv_api.get("pvc-scale").await.unwrap();
    assert_eq!(cv.spec.desired_replication_factor, Some(2));
    assert!(
        !cv.spec
            .replica_details
            .unwrap()
            .known_replicas
            .unwrap()
            .contains_key(&removed_id)
    );
    wait_until("removed CVR deleted", DEADLINE, || async {
        h.cvrs("pvc-scale").await.len() == 2
    })
    .await
    .unwrap();
    assert!(c.labels().get(label::POD_DISRUPTION_BUDGET).is_none());
    wait_until("PDB released", DEADLINE, || async {
        h.api::<PodDisruptionBudget>()
            .get_opt(&pdb)
            .await
            .unwrap()
            .is_none()
    })
    .await
    .unwrap();
    h.stop().await;
}

#[tokio::test]
async fn resize_flows_cvc_to_cv_and_completes() {
    let h = Harness::start().await;
    h.create_cspc("cspc-r").await;
    h.create_pools("cspc-r", 0, 1).await;
    h.create_cvc(&h.cvc("pvc-grow", "cspc-r", 1, "5Gi")).await;
    h.wait_bound("pvc-grow").await;
    h.api::<CStorVolumeConfig>()
        .patch(
            "pvc-grow",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"capacity": {"storage": "10Gi"}}})),
        )
        .await
        .unwrap();
    let c = h
        .wait_cvc("pvc-grow", "status capacity 10Gi", |c| {
            c.status
                .capacity
                .as_ref()
                .and_then(|m| m.get("storage"))
                .map(|q| q.0.as_str())
                == Some("10Gi")
        })
        .await;
    assert!(status::condition(&c, "Resizing").is_none());
    let cv = h.api::<CStorVolume>().get("pvc-grow").await.unwrap();
    assert_eq!(cv.spec.capacity.unwrap().0, "10Gi");
    assert!(
        !events_for(&h, "pvc-grow", "VolumeResizeSuccessful")
            .await
            .is_empty()
    );
    h.stop().await;
}

#[tokio::test]
async fn restore_places_replicas_on_the_source_pools() {
    let h = Harness::start().await;
    h.create_cspc("cspc-x").await;
    h.create_pools("cspc-x", 0, 4).await;
    h.create_cvc(&h.cvc("pvc-src", "cspc-x", 2, "3Gi")).await;
    h.wait_bound("pvc-src").await;
    let src_pools = h.cvr_pools("pvc-src").await;
    let mut clone = h.cvc("pvc-clone", "cspc-x", 2, "3Gi");
    clone.spec.cstor_volume_source = Some("pvc-src@snap1".into());
    clone
        .annotations_mut()
        .insert("openebs.io/created-through".into(), "restore".into());
    h.create_cvc(&clone).await;
    h.wait_bound("pvc-clone").await;
    assert_eq!(h.cvr_pools("pvc-clone").await, src_pools);
    for cvr in h.cvrs("pvc-clone").await {
        assert_eq!(
            cvr.labels().get(label::CLONED).map(String::as_str),
            Some("true")
        );
        assert_eq!(
            cvr.annotations()
                .get("openebs.io/source-volume")
                .map(String::as_str),
            Some("pvc-src")
        );
        assert_eq!(
            cvr.annotations()
                .get("openebs.io/snapshot")
                .map(String::as_str),
            Some("snap1")
        );
        assert_eq!(
            cvr.annotations().get("isRestoreVol").map(String::as_str),
            Some("true")
        );
    }
    let cv = h.api::<CStorVolume>().get("pvc-clone").await.unwrap();
    assert_eq!(
        cv.labels().get(label::SOURCE_VOLUME).map(String::as_str),
        Some("pvc-src")
    );
    // A restore from a volume that has no replicas is refused with a reason.
    let mut bad = h.cvc("pvc-clone-bad", "cspc-x", 1, "3Gi");
    bad.spec.cstor_volume_source = Some("pvc-gone@snap1".into());
    h.create_cvc(&bad).await;
    let c = h
        .wait_cvc("pvc-clone-bad", "SourceVolumeNotFound", |c| {
            provision_failure(c).is_some_and(|(r, _)| r == "SourceVolumeNotFound")
        })
        .await;
    assert!(provision_failure(&c).unwrap().1.contains("pvc-gone"));
    assert_nothing_created(&h, "pvc-clone-bad").await;
    h.stop().await;
}

#[tokio::test]
async fn delete_removes_everything() {
    let h = Harness::start().await;
    h.create_cspc("cspc-d").await;
    h.create_pools("cspc-d", 0, 3).await;
    h.create_cvc(&h.cvc("pvc-del", "cspc-d", 3, "1Gi")).await;
    let cvc = h.wait_bound("pvc-del").await;
    let pdb = cvc
        .labels()
        .get(label::POD_DISRUPTION_BUDGET)
        .cloned()
        .unwrap();
    h.api::<CStorVolumeConfig>()
        .delete("pvc-del", &DeleteParams::default())
        .await
        .unwrap();
    wait_until("everything of pvc-del gone", DEADLINE, || async {
        h.api::<CStorVolumeConfig>()
            .get_opt("pvc-del")
            .await
            .unwrap()
            .is_none()
            && h.api::<Service>()
                .get_opt("pvc-del")
                .await
                .unwrap()
                .is_none()
            && h.api::<CStorVolume>()
                .get_opt("pvc-del")
                .await
                .unwrap()
                .is_none()
            && h.api::<Deployment>()
                .get_opt("pvc-del-target")
                .await
                .unwrap()
                .is_none()
            && h.cvrs("pvc-del").await.is_empty()
            && h.api::<PodDisruptionBudget>()
                .get_opt(&pdb)
                .await
                .unwrap()
                .is_none()
    })
    .await
    .unwrap();
    h.stop().await;
}

#[tokio::test]
async fn killed_mid_reconcile_converges_without_duplicates() {
    let mut h = Harness::start_without_operator().await;
    h.create_cspc("cspc-k").await;
    h.create_pools("cspc-k", 0, 5).await;
    let names: Vec<String> = (0..6).map(|i| format!("pvc-crash{i}")).collect();
    for n in &names {
        h.create_cvc(&h.cvc(n, "cspc-k", 3, "1Gi")).await;
    }
    // Kill the operator at different points of its work: as soon as the first objects of the
    // batch appear, and again a little later.
    for _ in 0..3 {
        h.start_operator();
        let before = h.ctx.api_writes();
        let ctx = h.ctx.clone();
        wait_until("operator made progress", DEADLINE, || async {
            ctx.api_writes() > before + 2
        })
        .await
        .unwrap();
        h.kill_operator().await;
    }
    h.start_operator();
    for n in &names {
        h.wait_bound(n).await;
        let pools = h.cvr_pools(n).await;
        let distinct: BTreeSet<_> = pools.iter().collect();
        assert_eq!((pools.len(), distinct.len()), (3, 3), "{n}: {pools:?}");
    }
    let deploys = h
        .api::<Deployment>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    assert_eq!(deploys.len(), names.len(), "one target per volume");
    let cvs = h
        .api::<CStorVolume>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    assert_eq!(cvs.len(), names.len());
    let pdbs = h
        .api::<PodDisruptionBudget>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let sets: BTreeSet<_> = pdbs.iter().map(|p| p.labels().clone()).collect();
    assert_eq!(sets.len(), pdbs.len(), "no two PDBs for one pool set");
    let _: Api<Event> = h.api();
    h.stop().await;
}

#[tokio::test]
async fn unhealthy_volume_is_explained_on_cvc_and_cv_then_cleared() {
    let h = Harness::start().await;
    h.create_cspc("cspc-h").await;
    let pools = h.create_pools("cspc-h", 0, 1).await;
    h.create_cvc(&h.cvc("pvc-sick", "cspc-h", 1, "1Gi")).await;
    h.wait_bound("pvc-sick").await;
    let cvr = h.cvrs("pvc-sick").await.remove(0);
    let hold = json!({"metadata": {"annotations": {support::HOLD_STATUS: "true"}}});
    // The target reports the volume Offline, its only replica Offline, and the pool went OFFLINE.
    h.api::<CStorVolumeReplica>()
        .patch(
            &cvr.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": hold["metadata"], "status": {"phase": "Offline"}})),
        )
        .await
        .unwrap();
    h.set_pool_phase(&pools[0], "OFFLINE").await;
    h.api::<CStorVolume>()
        .patch(
            "pvc-sick",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": hold["metadata"], "status": {"phase": "Offline"}})),
        )
        .await
        .unwrap();
    let c = h
        .wait_cvc("pvc-sick", "VolumeNotHealthy condition", |c| {
            status::condition(c, status::VOLUME_NOT_HEALTHY).is_some()
        })
        .await;
    let cond = status::condition(&c, status::VOLUME_NOT_HEALTHY).unwrap();
    assert_eq!(cond.reason, "Offline");
    assert!(
        cond.message.contains("CStorVolume phase is Offline")
            && cond.message.contains(&format!(
                "replica {} on {}: Offline (pool phase OFFLINE)",
                cvr.name_any(),
                pools[0]
            )),
        "{}",
        cond.message
    );
    assert!(
        !events_for(&h, "pvc-sick", "VolumeNotHealthy")
            .await
            .is_empty()
    );
    let cv = h.api::<CStorVolume>().get("pvc-sick").await.unwrap();
    let cv_cond = cv
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.type_ == status::CV_VOLUME_HEALTHY)
                .cloned()
        })
        .expect("VolumeHealthy condition on the CV");
    assert_eq!(cv_cond.status, "False");

    // Recovery: everything Healthy again clears the CVC condition and flips the CV's.
    h.set_pool_phase(&pools[0], "ONLINE").await;
    h.api::<CStorVolumeReplica>()
        .patch(
            &cvr.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Healthy"}})),
        )
        .await
        .unwrap();
    h.api::<CStorVolume>()
        .patch(
            "pvc-sick",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Healthy"}})),
        )
        .await
        .unwrap();
    h.wait_cvc("pvc-sick", "VolumeNotHealthy cleared", |c| {
        status::condition(c, status::VOLUME_NOT_HEALTHY).is_none()
    })
    .await;
    let cvs = h.api::<CStorVolume>();
    wait_until("CV VolumeHealthy True", DEADLINE, || {
        let cvs = cvs.clone();
        async move {
            cvs.get("pvc-sick").await.ok().filter(|cv| {
                cv.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| {
                        cs.iter()
                            .any(|c| c.type_ == status::CV_VOLUME_HEALTHY && c.status == "True")
                    })
            })
        }
    })
    .await
    .unwrap();
    h.stop().await;
}

#[tokio::test]
async fn volume_policy_shapes_the_target_and_policy_edits_reach_it() {
    let h = Harness::start().await;
    h.create_cspc("cspc-pol").await;
    h.create_pools("cspc-pol", 0, 1).await;
    let policy: CStorVolumePolicy = from_value(json!({
        "apiVersion": "cstor.openebs.io/v1", "kind": "CStorVolumePolicy",
        "metadata": {"name": "target-tuning", "namespace": h.ns},
        "spec": {
            "provision": {"replicaAffinity": false},
            "target": {
                "queueDepth": "64",
                "luWorkers": 8,
                "priorityClassName": "storage-critical",
                "nodeSelector": {"storage": "fast"},
                "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "storage", "effect": "NoSchedule"}],
                "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}},
                "auxResources": {"limits": {"memory": "128Mi"}},
                "affinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                    {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "kubernetes.io/hostname"}]}
            },
            "replica": {"zvolWorkers": "4"}
        }
    }))
    .unwrap();
    h.api::<CStorVolumePolicy>()
        .create(&PostParams::default(), &policy)
        .await
        .unwrap();
    let mut cvc = h.cvc("pvc-tuned", "cspc-pol", 1, "1Gi");
    cvc.annotations_mut()
        .insert("openebs.io/volume-policy".into(), "target-tuning".into());
    h.create_cvc(&cvc).await;
    let bound = h.wait_bound("pvc-tuned").await;
    assert_eq!(
        bound
            .spec
            .policy
            .target
            .as_ref()
            .and_then(|t| t.queue_depth.as_deref()),
        Some("64"),
        "the policy is copied into the CVC at bind"
    );

    let target = naming::target_deployment_name("pvc-tuned");
    let pod = h
        .api::<Deployment>()
        .get(&target)
        .await
        .unwrap()
        .spec
        .unwrap()
        .template
        .spec
        .unwrap();
    assert_eq!(pod.priority_class_name.as_deref(), Some("storage-critical"));
    assert_eq!(
        pod.node_selector
            .as_ref()
            .and_then(|n| n.get("storage"))
            .map(String::as_str),
        Some("fast")
    );
    let tolerations = pod.tolerations.clone().unwrap();
    assert_eq!(
        tolerations.len(),
        1,
        "the policy's tolerations replace the defaults"
    );
    assert_eq!(tolerations[0].key.as_deref(), Some("dedicated"));
    let pod_affinity = pod
        .affinity
        .as_ref()
        .and_then(|a| a.pod_affinity.as_ref())
        .unwrap();
    assert_eq!(
        pod_affinity
            .required_during_scheduling_ignored_during_execution
            .as_ref()
            .unwrap()[0]
            .topology_key,
        "kubernetes.io/hostname"
    );
    let istgt = pod
        .containers
        .iter()
        .find(|c| c.name == "cstor-istgt")
        .unwrap();
    let env = |c: &k8s_openapi::api::core::v1::Container, k: &str| {
        c.env
            .as_ref()
            .and_then(|e| e.iter().find(|v| v.name == k))
            .and_then(|v| v.value.clone())
    };
    assert_eq!(env(istgt, "QueueDepth").as_deref(), Some("64"));
    assert_eq!(env(istgt, "Luworkers").as_deref(), Some("8"));
    assert_eq!(
        istgt
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("cpu"))
            .map(|q| q.0.as_str()),
        Some("250m")
    );
    let mgmt = pod
        .containers
        .iter()
        .find(|c| c.name == "cstor-volume-mgmt")
        .unwrap();
    assert_eq!(
        mgmt.resources
            .as_ref()
            .and_then(|r| r.limits.as_ref())
            .and_then(|r| r.get("memory"))
            .map(|q| q.0.as_str()),
        Some("128Mi")
    );
    assert_eq!(
        h.cvrs("pvc-tuned").await[0].spec.zvol_workers.as_deref(),
        Some("4"),
        "replica zvolWorkers from the policy"
    );

    // Editing the CVC's policy reaches the running target.
    h.api::<CStorVolumeConfig>()
        .patch(
            "pvc-tuned",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"policy": {"target": {"queueDepth": "128", "priorityClassName": "other"}}}})),
        )
        .await
        .unwrap();
    let deployments = h.api::<Deployment>();
    wait_until("target follows the policy edit", DEADLINE, || {
        let deployments = deployments.clone();
        let target = target.clone();
        async move {
            let d = deployments.get(&target).await.ok()?;
            let pod = d.spec?.template.spec?;
            let istgt = pod
                .containers
                .iter()
                .find(|c| c.name == "cstor-istgt")?
                .clone();
            (pod.priority_class_name.as_deref() == Some("other")
                && env(&istgt, "QueueDepth").as_deref() == Some("128"))
            .then_some(())
        }
    })
    .await
    .unwrap();
    h.stop().await;
}

#[tokio::test]
async fn replicas_spread_over_zones() {
    use k8s_openapi::api::core::v1::Node;
    // The Nodes exist before the operator starts, as in a cluster: placement reads zones from
    // the operator's watch cache of Nodes, which a Node created a moment before the volume
    // may not have reached yet.
    let mut h = Harness::start_without_operator().await;
    h.create_cspc("cspc-z").await;
    // Eight pools: six in zone-a, one in zone-b, one in zone-c (pool i is on `<ns>-node<i>`).
    let pools = h.create_pools("cspc-z", 0, 8).await;
    let nodes: Api<Node> = Api::all(h.client.clone());
    let zone_of = |i: usize| match i {
        6 => "zone-b",
        7 => "zone-c",
        _ => "zone-a",
    };
    for i in 0..pools.len() {
        let host = format!("{}-node{i}", h.ns);
        let node: Node = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": host, "labels": {
                label::HOSTNAME: host, "topology.kubernetes.io/zone": zone_of(i)}}
        }))
        .unwrap();
        nodes.create(&PostParams::default(), &node).await.unwrap();
    }
    h.start_operator();
    h.create_cvc(&h.cvc("pvc-zones", "cspc-z", 3, "1Gi")).await;
    h.wait_bound("pvc-zones").await;
    let zones: BTreeSet<&str> = h
        .cvr_pools("pvc-zones")
        .await
        .iter()
        .map(|p| zone_of(pools.iter().position(|q| q == p).unwrap()))
        .collect();
    assert_eq!(
        zones,
        BTreeSet::from(["zone-a", "zone-b", "zone-c"]),
        "one replica per zone"
    );
    for i in 0..pools.len() {
        let _ = nodes
            .delete(&format!("{}-node{i}", h.ns), &DeleteParams::default())
            .await;
    }
    h.stop().await;
}

fn deploy_pod_annotations(
    t: &k8s_openapi::api::core::v1::PodTemplateSpec,
) -> std::collections::BTreeMap<String, String> {
    t.metadata
        .as_ref()
        .and_then(|m| m.annotations.clone())
        .unwrap_or_default()
}
