//! The story's upgrade step: the story's pools and volume as an older OpenEBS release
//! ([`OLD`]) left them, moved to the release ours stamp by `cstor-migrate upgrade`, run as the
//! example Jobs `deploy/examples/upgrade-{cspc,volume}-job.yaml` would run it (their Pods,
//! ServiceAccount and RBAC), pools first.
//!
//! The objects are aged as upstream's upgrade tests age them: `versionDetails` at [`OLD`] on
//! the CSPC, CSPIs, CVC, CStorVolume and replicas, and the `openebs.io/version` label at
//! [`OLD`] on the CSPIs, CStorVolume, replicas, pool and target Deployments and the target
//! Service (upstream keeps no such label on CSPCs and CVCs). The operators then freeze the
//! CSPC and the CVC (Warning events `CSPC Reconcile`, `CVC Reconcile`). The Deployments' pod
//! templates are left as they run (ours, of this release), so the upgrade's Deployment patch
//! changes no template and no pod restarts: the image rewrite itself is shown by
//! `operators/tests/upgrade.rs`. After the Jobs every object is at this release, moved there by
//! the component that owns it (cspc-operator, pool managers, cvc-operator, volume manager), each
//! UpgradeTask says Success, no pool or target pod was restarted and the volume reads its data.

use anyhow::{Context as _, ensure};
use cstor_api::{
    constants::{label, version::OPENEBS_VERSION},
    cstor::{
        CStorPoolCluster, CStorPoolInstance, CStorVolume, CStorVolumeConfig, CStorVolumeReplica,
    },
    upgrade::UpgradeTask,
};
use k8s_openapi::api::{apps::v1::Deployment, core::v1::Service, events::v1::Event};
use kube::{
    Api, ResourceExt,
    api::{ListParams, Patch, PatchParams},
};
use serde_json::{Value, json};

use super::{Story, field, json as to_json, until};

/// The release the objects are aged to.
const OLD: &str = "3.5.0";
const CSPC_JOB: &str = "deploy/examples/upgrade-cspc-job.yaml";
const VOLUME_JOB: &str = "deploy/examples/upgrade-volume-job.yaml";

impl Story<'_> {
    pub(super) async fn upgrade_from_older_release(
        &self,
        pv: &str,
        cspc: &str,
        data: &[u8],
    ) -> anyhow::Result<()> {
        let before = self.data_plane(pv, cspc).await?;
        let cspis = self.age(pv, cspc).await?;
        self.frozen("CStorPoolCluster", cspc, "CSPC Reconcile")
            .await?;
        self.frozen("CStorVolumeConfig", pv, "CVC Reconcile")
            .await?;

        let short = &uuid::Uuid::new_v4().simple().to_string()[..6];
        let args = |kind: &str, name: &str| {
            [
                "upgrade",
                "--from-version",
                OLD,
                "--to-version",
                OPENEBS_VERSION,
                kind,
                name,
            ]
            .map(String::from)
        };
        let a = args("cstor-cspc", cspc);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        self.run_job(CSPC_JOB, &a, &format!("upgrade-cspc-{short}"))
            .await?;
        self.at_release::<CStorPoolCluster>(&[cspc.to_owned()])
            .await?;
        self.at_release::<CStorPoolInstance>(&cspis).await?;
        for cspi in &cspis {
            self.task_succeeded(&format!("upgrade-cstor-cspi-{cspi}"))
                .await?;
        }

        let a = args("cstor-volume", pv);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        self.run_job(VOLUME_JOB, &a, &format!("upgrade-volume-{short}"))
            .await?;
        let replicas = self.replica_names(pv).await?;
        self.at_release::<CStorVolumeReplica>(&replicas).await?;
        self.at_release::<CStorVolume>(&[pv.to_owned()]).await?;
        self.at_release::<CStorVolumeConfig>(&[pv.to_owned()])
            .await?;
        let sel = ListParams::default().labels(&format!("{}={pv}", label::PERSISTENT_VOLUME));
        for d in self.api::<Deployment>().list(&sel).await? {
            ensure!(
                d.labels().get(label::VERSION).map(String::as_str) == Some(OPENEBS_VERSION),
                "target Deployment {} not labelled {OPENEBS_VERSION}",
                d.name_any()
            );
        }

        self.data_plane_unchanged(pv, cspc, &before, "the upgrade")
            .await?;
        self.healthy(pv, 3).await?;
        let got = self.read(pv, data.len()).await?;
        ensure!(got == data, "after the upgrade the volume reads other data");
        Ok(())
    }

    /// Ages the pools' and the volume's objects to [`OLD`]; returns the CSPI names.
    async fn age(&self, pv: &str, cspc: &str) -> anyhow::Result<Vec<String>> {
        let version = json!({"desired": OLD, "status": {"current": OLD, "state": "Reconciled"}});
        let details = json!({ "versionDetails": version });
        let labelled = json!({"versionDetails": version,
            "metadata": {"labels": {label::VERSION: OLD}}});
        let only_label = json!({"metadata": {"labels": {label::VERSION: OLD}}});
        let merge = PatchParams::default();
        // The owners first: frozen, their operators leave the rest alone.
        self.api::<CStorPoolCluster>()
            .patch(cspc, &merge, &Patch::Merge(&details))
            .await?;
        self.api::<CStorVolumeConfig>()
            .patch(pv, &merge, &Patch::Merge(&details))
            .await?;
        let pools = ListParams::default().labels(&format!("{}={cspc}", label::CSTOR_POOL_CLUSTER));
        let cspis: Vec<String> = self
            .api::<CStorPoolInstance>()
            .list(&pools)
            .await?
            .items
            .iter()
            .map(|c| c.name_any())
            .collect();
        for cspi in &cspis {
            self.api::<CStorPoolInstance>()
                .patch(cspi, &merge, &Patch::Merge(&labelled))
                .await?;
        }
        for r in self.replica_names(pv).await? {
            self.api::<CStorVolumeReplica>()
                .patch(&r, &merge, &Patch::Merge(&labelled))
                .await?;
        }
        self.api::<CStorVolume>()
            .patch(pv, &merge, &Patch::Merge(&labelled))
            .await?;
        let volume = ListParams::default().labels(&format!("{}={pv}", label::PERSISTENT_VOLUME));
        for sel in [&pools, &volume] {
            for d in self.api::<Deployment>().list(sel).await? {
                self.api::<Deployment>()
                    .patch(&d.name_any(), &merge, &Patch::Merge(&only_label))
                    .await?;
            }
        }
        for s in self.api::<Service>().list(&volume).await? {
            self.api::<Service>()
                .patch(&s.name_any(), &merge, &Patch::Merge(&only_label))
                .await?;
        }
        Ok(cspis)
    }

    /// Waits for the Warning `reason` the operator gives `kind` `name` at an older release.
    async fn frozen(&self, kind: &str, name: &str, reason: &str) -> anyhow::Result<()> {
        let events: Api<Event> = self.api();
        until(
            &format!("the Warning {reason} on {kind} {name}"),
            || async {
                Ok(events
                    .list(&ListParams::default())
                    .await?
                    .items
                    .iter()
                    .any(|e| {
                        e.reason.as_deref() == Some(reason)
                            && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
                    })
                    .then_some(()))
            },
        )
        .await
    }

    /// The CVR names of `pv`.
    async fn replica_names(&self, pv: &str) -> anyhow::Result<Vec<String>> {
        let sel = ListParams::default().labels(&format!("cstorvolume.openebs.io/name={pv}"));
        Ok(self
            .api::<CStorVolumeReplica>()
            .list(&sel)
            .await?
            .items
            .iter()
            .map(|r| r.name_any())
            .collect())
    }

    /// Each of `names` has `versionDetails` desired and current at this release.
    async fn at_release<K>(&self, names: &[String]) -> anyhow::Result<()>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
    {
        ensure!(!names.is_empty(), "no {} to check", K::kind(&()));
        for name in names {
            let o = to_json(&self.api::<K>().get(name).await?);
            for at in ["/versionDetails/desired", "/versionDetails/status/current"] {
                ensure!(
                    field(&o, at) == OPENEBS_VERSION,
                    "{} {name}: {at} is {:?}, not {OPENEBS_VERSION}",
                    K::kind(&()),
                    field(&o, at)
                );
            }
        }
        Ok(())
    }

    /// UpgradeTask `name` ended `Success`.
    async fn task_succeeded(&self, name: &str) -> anyhow::Result<()> {
        let t = self
            .api::<UpgradeTask>()
            .get(name)
            .await
            .with_context(|| format!("UpgradeTask {name}"))?;
        let v: Value = to_json(&t);
        ensure!(
            field(&v, "/status/phase") == "Success",
            "UpgradeTask {name} is {:?}: {}",
            field(&v, "/status/phase"),
            v.pointer("/status").cloned().unwrap_or_default()
        );
        Ok(())
    }
}
