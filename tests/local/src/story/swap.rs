//! The story's swap step: the running cluster is handed to "upstream" and back. Our two
//! operators are scaled to zero, and the objects are made to look as upstream's cstor-operators
//! 3.6 leave them (its `cstor.openebs.io/template-hash` label on the CVC, none of our
//! records of what we applied); then ours are scaled up again and adopt them. No pool or
//! target pod may be restarted or replaced and no pod template changed; the volume still
//! reads its data. (Upstream's binaries are not among the real parts: that upstream's
//! operators accept what ours leave is shown object by object in `operators/tests/swap.rs`.)

use std::collections::BTreeMap;

use anyhow::ensure;
use cstor_api::{
    constants::{annotation, label},
    cstor::CStorVolumeConfig,
};
use k8s_openapi::api::{apps::v1::Deployment, core::v1::Pod};
use kube::{
    Api, ResourceExt,
    api::{ListParams, Patch, PatchParams},
};
use serde_json::json;

use super::{Story, until};

/// The operators swapped (Deployment names of `deploy/base/operators`).
const OPERATORS: [&str; 2] = ["cspc-operator", "cvc-operator"];
/// A template-hash label value as upstream's Go code computes it (ours cannot).
const UPSTREAM_HASH: &str = "2953539981";

/// What must not change: each pool and target pod (uid, restarts), each of their
/// Deployments' pod template.
type DataPlane = BTreeMap<String, String>;

impl Story<'_> {
    pub(super) async fn swap_operators(
        &self,
        pv: &str,
        cspc: &str,
        data: &[u8],
    ) -> anyhow::Result<()> {
        let before = self.data_plane(pv, cspc).await?;
        let replicas = self.scale_operators(0).await?;

        // The objects as upstream leaves them.
        let cvcs: Api<CStorVolumeConfig> = self.api();
        let patch = json!({"metadata": {
            "labels": {label::TEMPLATE_HASH: UPSTREAM_HASH},
            "annotations": {annotation::APPLIED_POLICY: null}}});
        cvcs.patch(pv, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        let deployments: Api<Deployment> = self.api();
        let pools = ListParams::default().labels(&format!("{}={cspc}", label::CSTOR_POOL_CLUSTER));
        let patch = json!({"metadata": {"annotations": {annotation::APPLIED_POOL_TEMPLATE: null}}});
        for d in deployments.list(&pools).await? {
            deployments
                .patch(
                    &d.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await?;
        }

        // Ours again: they adopt what runs.
        self.scale_operators(replicas).await?;
        until(
            "the cvc-operator's record of the adopted target",
            || async {
                let c = cvcs.get(pv).await?;
                Ok(c.annotations()
                    .contains_key(annotation::APPLIED_POLICY)
                    .then_some(c))
            },
        )
        .await?;
        until(
            "the cspc-operator's record of every adopted pool",
            || async {
                let list = deployments.list(&pools).await?.items;
                Ok((!list.is_empty()
                    && list.iter().all(|d| {
                        d.annotations()
                            .contains_key(annotation::APPLIED_POOL_TEMPLATE)
                    }))
                .then_some(()))
            },
        )
        .await?;
        let after = self.data_plane(pv, cspc).await?;
        for (what, was) in &before {
            let now = after.get(what).map(String::as_str).unwrap_or("gone");
            ensure!(
                was == now,
                "swapping the operators changed {what}: {was} → {now}"
            );
        }
        let cvc = cvcs.get(pv).await?;
        ensure!(
            cvc.labels().get(label::TEMPLATE_HASH).map(String::as_str) == Some(UPSTREAM_HASH),
            "upstream's template-hash label was not left as upstream wrote it"
        );
        self.healthy(pv, 3).await?;
        let got = self.read(pv, data.len()).await?;
        ensure!(got == data, "after the swap the volume reads other data");
        Ok(())
    }

    /// Scales both operators to `n` replicas and waits for exactly that many running pods of
    /// each; returns the replicas they had.
    async fn scale_operators(&self, n: i32) -> anyhow::Result<i32> {
        let deployments: Api<Deployment> = self.api();
        let mut had = 0;
        for name in OPERATORS {
            let d = deployments.get(name).await?;
            had = d.spec.and_then(|s| s.replicas).unwrap_or(1);
            deployments
                .patch(
                    name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"replicas": n}})),
                )
                .await?;
        }
        let pods: Api<Pod> = self.api();
        for name in OPERATORS {
            let lp = ListParams::default().labels(&format!("{}={name}", label::COMPONENT_NAME));
            until(&format!("{n} running {name} pods"), || async {
                let list = pods.list(&lp).await?.items;
                let running = list
                    .iter()
                    .filter(|p| {
                        p.metadata.deletion_timestamp.is_none()
                            && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                    })
                    .count();
                Ok((running == n as usize && list.len() == n as usize).then_some(()))
            })
            .await?;
        }
        Ok(had)
    }

    /// The pool pods of `cspc` and the target pod of `pv` (uid and restarts) and their
    /// Deployments (pod template).
    async fn data_plane(&self, pv: &str, cspc: &str) -> anyhow::Result<DataPlane> {
        let mut out = DataPlane::new();
        let selectors = [
            format!("{}={cspc}", label::CSTOR_POOL_CLUSTER),
            format!("{}={pv}", label::PERSISTENT_VOLUME),
        ];
        let pods: Api<Pod> = self.api();
        let deployments: Api<Deployment> = self.api();
        for sel in &selectors {
            let lp = ListParams::default().labels(sel);
            for p in pods.list(&lp).await? {
                let restarts: i32 = p
                    .status
                    .as_ref()
                    .and_then(|s| s.container_statuses.as_ref())
                    .map(|cs| cs.iter().map(|c| c.restart_count).sum())
                    .unwrap_or(0);
                let uid = p.uid().unwrap_or_default();
                out.insert(
                    format!("pod {}", p.name_any()),
                    format!("uid {uid}, {restarts} restarts"),
                );
            }
            // The pod template itself: a real API server also bumps a Deployment's generation
            // when only its annotations change (they are copied to its ReplicaSets).
            for d in deployments.list(&lp).await? {
                let template = serde_json::to_string(&d.spec.as_ref().map(|s| &s.template))?;
                let mut h = std::collections::hash_map::DefaultHasher::new();
                std::hash::Hash::hash(&template, &mut h);
                out.insert(
                    format!("Deployment {}", d.name_any()),
                    format!("pod template {:016x}", std::hash::Hasher::finish(&h)),
                );
            }
        }
        ensure!(
            out.keys().any(|k| k.starts_with("pod ")),
            "no pool or target pod found for {pv} / {cspc}"
        );
        Ok(out)
    }
}
