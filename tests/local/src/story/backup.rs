//! The story's Velero step: a stand-in Velero plugin (`cstor_testkit::velero`) in a pod network
//! namespace of its own backs a volume up through the deployed cvc-operator's REST server and
//! the pool managers' `zfs send`, the volume is deleted, and a new PVC is restored from the
//! backups (full, then incremental) through `zfs recv` on every replica; the restored volume
//! reads, over iSCSI, what the first one held. Before the deletion, a local (snapshot-only)
//! backup is restored as a clone.

use std::{net::SocketAddr, sync::Arc};

use anyhow::{Context as _, ensure};
use cstor_api::{cstor::CStorVolumeReplica, proto::csi::v1::DeleteVolumeRequest};
use cstor_testkit::velero::{self, Plugin};
use k8s_openapi::api::{
    core::v1::{PersistentVolumeClaim, Pod, Service},
    storage::v1::StorageClass,
};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, ListParams, PostParams},
};
use serde_json::json;

use super::{GIB, Story, field, json as to_json, until, volume_request};
use crate::{initiator, netns};

/// The plugin's sockets, made inside its network namespace.
struct PodNet(String);

impl velero::Net for PodNet {
    fn connect(&self, addr: SocketAddr) -> std::io::Result<std::net::TcpStream> {
        netns::in_netns(&self.0, move || {
            std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(10))
        })
        .map_err(|e| std::io::Error::other(format!("{e:#}")))
    }

    fn listen(&self, addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
        netns::in_netns(&self.0, move || std::net::TcpListener::bind(addr))
            .map_err(|e| std::io::Error::other(format!("{e:#}")))
    }
}

impl Story<'_> {
    /// A local (snapshot-only) backup and its restore: a clone made by the REST server in the
    /// StorageClass's pool cluster, reading the volume's data; the clone is deleted after.
    async fn local_backup_restore(
        &self,
        plugin: &Plugin,
        pv: &str,
        cspc: &str,
        first: &[u8],
    ) -> anyhow::Result<()> {
        let snap = "story-local";
        plugin
            .backup(&self.ns, pv, snap, true)
            .await
            .context("the local backup")?;
        let sc_name = format!(
            "cstor-story-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..6]
        );
        let sc: StorageClass = serde_json::from_value(json!({
            "metadata": {"name": sc_name},
            "provisioner": "cstor.csi.openebs.io",
            "parameters": {"cstorPoolCluster": cspc, "replicaCount": "3", "cas-type": "cstor"}
        }))?;
        let scs: Api<StorageClass> = Api::all(self.cluster.client.clone());
        scs.create(&PostParams::default(), &sc).await?;
        let clone = plugin
            .restore_local(&self.ns, pv, snap, &sc_name, "1Gi")
            .await
            .context("the local restore")?;
        self.healthy(&clone, 3).await?;
        let got = self.read(&clone, first.len()).await?;
        ensure!(
            got == first,
            "the local restore reads other data than the volume's"
        );
        self.csi()
            .delete_volume(DeleteVolumeRequest {
                volume_id: clone.clone(),
                ..Default::default()
            })
            .await
            .context("DeleteVolume of the local restore")?;
        self.gone(&clone).await?;
        scs.delete(&sc_name, &DeleteParams::default()).await?;
        Ok(())
    }

    /// The REST server as the plugin reaches it: the Service labelled
    /// `openebs.io/component-name=cvc-operator-svc`, resolved to a ready endpoint (the pod IP
    /// and target port; kube-proxy's part, which this node runtime does not play for
    /// Services whose server binds the pod IP).
    async fn rest_endpoint(&self) -> anyhow::Result<SocketAddr> {
        let svcs: Api<Service> = self.api();
        let svc = svcs
            .list(&ListParams::default().labels(velero::REST_SERVICE_LABEL))
            .await?
            .items
            .into_iter()
            .next()
            .with_context(|| format!("no Service labelled {}", velero::REST_SERVICE_LABEL))?;
        let spec = svc.spec.clone().unwrap_or_default();
        let port = spec
            .ports
            .as_ref()
            .and_then(|p| p.first())
            .context("the REST Service has no port")?;
        let target = match &port.target_port {
            Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(p)) => *p,
            _ => port.port,
        };
        let selector: Vec<String> = spec
            .selector
            .unwrap_or_default()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let pods: Api<Pod> = self.api();
        until(
            "a ready cvc-operator pod behind the REST Service",
            || async {
                let list = pods
                    .list(&ListParams::default().labels(&selector.join(",")))
                    .await?;
                Ok(list.items.iter().find_map(|p| {
                    let ip = p.status.as_ref()?.pod_ip.as_ref()?;
                    let addr = format!("{ip}:{target}").parse().ok()?;
                    (field(&to_json(p), "/status/phase") == "Running").then_some(addr)
                }))
            },
        )
        .await
    }

    /// Backup (full, then incremental) → DeleteVolume → restore into a new PVC → same data.
    pub(super) async fn velero_backup_restore(&self, cspc: &str) -> anyhow::Result<()> {
        let (plugin_ns, plugin_ip) = self.cluster.network.add("velero")?;
        let mut plugin = Plugin::new(
            self.rest_endpoint().await?,
            plugin_ip.into(),
            Arc::new(PodNet(plugin_ns.clone())),
        );
        plugin.poll_every = std::time::Duration::from_millis(500);
        plugin.deadline = super::STEP;

        let pv = format!("pvc-{}", uuid::Uuid::new_v4());
        self.create_volume(&pv, cspc, GIB, 3, None).await?;
        let first = initiator::pattern("velero full backup", 32);
        self.write_read(&pv, first.clone()).await?;
        // The PVC's namespace holds the backup objects; the story's namespace stands in for it.
        let b1 = "story-20240101000000";
        plugin
            .backup(&self.ns, &pv, b1, false)
            .await
            .context("the full backup")?;
        let second = initiator::pattern("velero incremental backup", 16);
        self.write_at(&pv, 64, second.clone()).await?;
        let b2 = "story-20240102000000";
        plugin
            .backup(&self.ns, &pv, b2, false)
            .await
            .context("the incremental backup")?;
        let (full, inc) = (
            plugin.object(&pv, b1).unwrap_or_default(),
            plugin.object(&pv, b2).unwrap_or_default(),
        );
        ensure!(
            !full.is_empty() && !inc.is_empty(),
            "streams stored: full {} bytes, incremental {} bytes",
            full.len(),
            inc.len()
        );
        self.local_backup_restore(&plugin, &pv, cspc, &first)
            .await?;
        self.delete_volume(&pv).await?;

        // Velero's part: a PVC annotated as a restore, provisioned; the replicas wait without
        // a target until the streams are in.
        let new = format!("pvc-{}", uuid::Uuid::new_v4());
        let claim = format!("restore-{}", &new[4..12]);
        let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
            "metadata": {"name": claim, "namespace": self.ns,
                "annotations": {"openebs.io/created-through": "restore"}},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "cstor-story-restore",
                "resources": {"requests": {"storage": "1Gi"}}}
        }))?;
        let pvcs: Api<PersistentVolumeClaim> = self.api();
        pvcs.create(&PostParams::default(), &pvc).await?;
        let mut req = volume_request(&new, cspc, GIB, 3, None);
        req.parameters
            .insert("csi.storage.k8s.io/pvc/name".into(), claim.clone());
        req.parameters
            .insert("csi.storage.k8s.io/pvc/namespace".into(), self.ns.clone());
        self.csi()
            .create_volume(req)
            .await
            .context("CreateVolume of the restore")?;
        let cvrs: Api<CStorVolumeReplica> = self.api();
        until(&format!("3 restore replicas of {new} created"), || async {
            let list = cvrs
                .list(&ListParams::default().labels(&format!("openebs.io/persistent-volume={new}")))
                .await?;
            let waiting = list
                .items
                .iter()
                .filter(|r| r.annotations().get("isRestoreVol").map(String::as_str) == Some("true"))
                .filter(|r| field(&to_json(*r), "/status/phase") == "Offline")
                .count();
            Ok((waiting == 3).then_some(()))
        })
        .await?;
        for b in [b1, b2] {
            plugin
                .restore(&self.ns, &pv, b, &new, "cstor-story-restore")
                .await
                .with_context(|| format!("restore of {b}"))?;
        }
        let marked = velero::complete_restore(&self.cluster.client, &self.ns, &new).await?;
        ensure!(marked == 3, "{marked} replicas marked restore-completed");
        self.healthy(&new, 3).await?;
        let got = self.read(&new, first.len()).await?;
        ensure!(
            got == first,
            "the restored volume reads other data than the full backup's"
        );
        let got = self.read_at(&new, 64, second.len()).await?;
        ensure!(
            got == second,
            "the restored volume reads other data than the incremental backup's"
        );
        self.csi()
            .delete_volume(DeleteVolumeRequest {
                volume_id: new.clone(),
                ..Default::default()
            })
            .await
            .context("DeleteVolume of the restore")?;
        self.gone(&new).await?;
        pvcs.delete(&claim, &DeleteParams::default()).await?;
        self.cluster.network.remove(&plugin_ns);
        Ok(())
    }
}
