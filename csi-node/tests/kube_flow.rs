//! The CVC → CStorVolume → CStorVolumeAttachment flow against an API server: the testkit's
//! in-process server, or a real cluster when CSTOR_TEST_KUBECONFIG is set (TestCluster).
//! NodeStage/NodeUnstage run for real (loop device, mkfs, mount) in a private mount namespace.

mod common;

use std::{sync::Arc, time::Duration};

use common::*;
use cstor_api::cstor::{CStorVolume, CStorVolumeAttachment, CStorVolumeConfig};
use cstor_csi_node::{
    NodeConfig, NodeDriver, iscsi::IscsiAttacher, kube::VolumeApi, kube_client::KubeVolumeApi,
};
use cstor_testkit::cluster::TestCluster;
use k8s_openapi::api::core::v1::Node;
use kube::{
    Api,
    api::{DeleteParams, PostParams},
};
use serde_json::json;

async fn create_json<K>(api: &Api<K>, value: serde_json::Value) -> K
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + serde::Serialize,
{
    let obj: K = serde_json::from_value(value).unwrap();
    api.create(&PostParams::default(), &obj).await.unwrap()
}

/// Writes `status` through the status subresource when the kind has one, else the main endpoint.
async fn set_status<K>(api: &Api<K>, name: &str, status: serde_json::Value)
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + serde::Serialize,
{
    let patch = kube::api::Patch::Merge(json!({ "status": status }));
    let pp = kube::api::PatchParams::default();
    if api.patch_status(name, &pp, &patch).await.is_err() {
        api.patch(name, &pp, &patch).await.unwrap();
    }
}

#[test]
fn stage_and_unstage_write_upstream_shaped_attachments() {
    in_mount_ns(|| async {
        let cluster = TestCluster::start().await;
        let ns = cluster.namespace().to_string();
        let client = cluster.client();
        let h = Harness::new();
        let node_name = format!("{}-node", ns);
        let nodes: Api<Node> = Api::all(client.clone());
        let node = create_json(&nodes, json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": { "name": node_name, "labels": { "kubernetes.io/hostname": node_name } },
        })).await;
        set_status(
            &nodes,
            &node_name,
            json!({ "conditions": [{ "type": "Ready", "status": "True" }] }),
        )
        .await;

        let pv = "pvc-kube-flow";
        let image = h.dir.path().join("lun.img");
        sparse_file(&image, 64 * MIB);
        h.iscsi.add_lun(&cstor_api::naming::iqn(pv), &image);
        let cvcs: Api<CStorVolumeConfig> = Api::namespaced(client.clone(), &ns);
        create_json(&cvcs, json!({
            "apiVersion": "cstor.openebs.io/v1", "kind": "CStorVolumeConfig",
            "metadata": { "name": pv, "namespace": ns },
            "spec": { "capacity": { "storage": "1Gi" }, "policy": {}, "provision": { "capacity": { "storage": "1Gi" }, "replicaCount": 1 } },
            "status": { "phase": "Pending" },
            "versionDetails": { "desired": "3.6.0", "status": { "current": "3.6.0", "dependentsUpgraded": true } },
        })).await;

        let api = KubeVolumeApi::new(client.clone(), &ns);
        let mut cfg = NodeConfig::new(&node_name, &ns);
        cfg.waits = short_waits();
        let runner: Arc<dyn cstor_api::exec::Runner> = Arc::new(h.rec.clone());
        let d = NodeDriver::new(
            cfg,
            runner.clone(),
            Arc::new(api.clone()),
            Arc::new(
                IscsiAttacher::new(runner, &h.dev_root).with_device_timeout(Duration::from_secs(5)),
            ),
        );
        let staging = h.mkdir("staging");

        // CVC still Pending: upstream's message, nothing attached.
        let e = tonic::Status::from(
            d.stage(stage_req(pv, &staging, mount_cap("ext4")))
                .await
                .unwrap_err(),
        );
        assert!(
            e.message()
                .contains(&format!("Waiting for {pv}'s CVC to be bound")),
            "{}",
            e.message()
        );
        assert_eq!(h.iscsi.logins(), 0);

        // Bound, CStorVolume Healthy.
        set_status(&cvcs, pv, json!({ "phase": "Bound" })).await;
        let cvs: Api<CStorVolume> = Api::namespaced(client.clone(), &ns);
        create_json(&cvs, json!({
            "apiVersion": "cstor.openebs.io/v1", "kind": "CStorVolume",
            "metadata": { "name": pv, "namespace": ns, "labels": { "openebs.io/persistent-volume": pv } },
            "spec": { "iqn": cstor_api::naming::iqn(pv), "targetPortal": h.portal, "targetIP": "127.0.0.1", "targetPort": "3260",
                      "capacity": "1Gi", "replicationFactor": 1, "consistencyFactor": 1, "desiredReplicationFactor": 1 },
        })).await;
        set_status(&cvs, pv, json!({ "phase": "Healthy" })).await;
        assert_eq!(api.cvc_phase(pv).await.unwrap().as_deref(), Some("Bound"));

        d.stage(stage_req(pv, &staging, mount_cap("ext4")))
            .await
            .unwrap();
        assert!(h.mounts().is_mount_point(&staging));

        // The attachment as upstream writes it.
        let cvas: Api<CStorVolumeAttachment> = Api::namespaced(client.clone(), &ns);
        let name = format!("{pv}-{node_name}");
        let raw = serde_json::to_value(cvas.get(&name).await.unwrap()).unwrap();
        assert_eq!(raw["metadata"]["labels"]["nodeID"], json!(node_name));
        assert_eq!(raw["metadata"]["labels"]["Volname"], json!(pv));
        assert_eq!(raw["metadata"]["finalizers"], json!([node_name]));
        let owner = &raw["metadata"]["ownerReferences"][0];
        assert_eq!(owner["kind"], json!("Node"));
        assert_eq!(owner["apiVersion"], json!("v1"));
        assert_eq!(owner["name"], json!(node_name));
        assert_eq!(owner["uid"], json!(node.metadata.uid.clone().unwrap()));
        let v = &raw["spec"]["volume"];
        assert_eq!(v["name"], json!(pv));
        assert_eq!(v["ownerNodeID"], json!(node_name));
        assert_eq!(v["accessType"], json!("mount"));
        assert_eq!(v["fsType"], json!("ext4"));
        assert_eq!(v["readOnly"], json!(false));
        assert_eq!(v["stagingTargetPath"], json!(staging.display().to_string()));
        assert!(v["devicePath"].as_str().unwrap().ends_with(&format!(
            "ip-{}-iscsi-{}-lun-0",
            h.portal,
            cstor_api::naming::iqn(pv)
        )));
        let i = &raw["spec"]["iscsi"];
        assert_eq!(i["iqn"], json!(cstor_api::naming::iqn(pv)));
        assert_eq!(i["targetPortal"], json!(h.portal));
        assert_eq!(i["lun"], json!("0"));
        assert_eq!(i["iscsiInterface"], json!("default"));

        // Staging again changes nothing in the API (no delete/recreate, no terminating CVA).
        let rv = cvas.get(&name).await.unwrap().metadata.resource_version;
        d.stage(stage_req(pv, &staging, mount_cap("ext4")))
            .await
            .unwrap();
        let again = cvas.get(&name).await.unwrap();
        assert_eq!(again.metadata.resource_version, rv);
        assert!(again.metadata.deletion_timestamp.is_none());

        d.unstage(unstage_req(pv, &staging)).await.unwrap();
        assert!(
            cvas.get_opt(&name).await.unwrap().is_none(),
            "CVA deleted after its finalizer was released"
        );
        d.unstage(unstage_req(pv, &staging)).await.unwrap();
        assert!(h.our_mounts().is_empty());

        nodes
            .delete(&node_name, &DeleteParams::default())
            .await
            .unwrap();
        cluster.cleanup().await.unwrap();
    });
}
