//! The story's swap step: the running cluster is handed to "upstream", to ours, and back. Our
//! two operators are scaled to zero, and the objects are made to look as upstream's
//! cstor-operators 3.6 leave them (its `cstor.openebs.io/template-hash` label on the CVC, none
//! of our records of what we applied); then ours are scaled up again and adopt them. No pool or
//! target pod may be restarted or replaced and no pod template changed; and nothing upstream's
//! operators read (spec, labels, annotations but our own records, finalizers, owners,
//! versionDetails of the CVC, CStorVolume, replicas, CSPC, CSPIs, Deployments and target
//! Service) may differ from what upstream left: handing the cluster back changes nothing
//! either. Ours are then scaled to zero once more (the way back) — the volume still reads its
//! data with no operator running — and up again for the rest of the story. (Upstream's
//! binaries are not among the real parts: that upstream's operators accept what ours leave is
//! shown object by object in `operators/tests/swap.rs`.)

use std::collections::BTreeMap;

use anyhow::ensure;
use cstor_api::{
    constants::{annotation, label},
    cstor::{
        CStorPoolCluster, CStorPoolInstance, CStorVolume, CStorVolumeConfig, CStorVolumeReplica,
    },
};
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{Pod, Service},
};
use kube::{
    Api, ResourceExt,
    api::{ListParams, Patch, PatchParams},
};
use serde_json::{Value, json};

use super::{Story, until};

/// The operators swapped (Deployment names of `deploy/base/operators`).
const OPERATORS: [&str; 2] = ["cspc-operator", "cvc-operator"];
/// A template-hash label value as upstream's Go code computes it (ours cannot).
const UPSTREAM_HASH: &str = "2953539981";

/// What must not change: each pool and target pod (uid, restarts), each of their
/// Deployments' pod template.
pub(super) type DataPlane = BTreeMap<String, String>;

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

        let left_by_upstream = self.upstream_view(pv, cspc).await?;
        for kind in [
            "CStorVolumeConfig",
            "CStorVolume",
            "CStorVolumeReplica",
            "CStorPoolCluster",
            "CStorPoolInstance",
            "Deployment",
            "Service",
        ] {
            ensure!(
                left_by_upstream
                    .keys()
                    .any(|k| k.starts_with(&format!("{kind} "))),
                "no {kind} of {pv} / {cspc} found to compare"
            );
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
        self.data_plane_unchanged(pv, cspc, &before, "swapping the operators")
            .await?;
        let cvc = cvcs.get(pv).await?;
        ensure!(
            cvc.labels().get(label::TEMPLATE_HASH).map(String::as_str) == Some(UPSTREAM_HASH),
            "upstream's template-hash label was not left as upstream wrote it"
        );
        self.healthy(pv, 3).await?;
        let got = self.read(pv, data.len()).await?;
        ensure!(got == data, "after the swap the volume reads other data");

        // And back: what upstream's operators would read is what they left.
        let left_by_ours = self.upstream_view(pv, cspc).await?;
        let mut changed = Vec::new();
        for (what, was) in &left_by_upstream {
            match left_by_ours.get(what) {
                Some(now) => diff(what, was, now, &mut changed),
                None => changed.push(format!("{what}: gone")),
            }
        }
        for what in left_by_ours.keys() {
            if !left_by_upstream.contains_key(what) {
                changed.push(format!("{what}: new"));
            }
        }
        ensure!(
            changed.is_empty(),
            "ours changed what upstream's operators read:\n  {}",
            changed.join("\n  ")
        );
        self.scale_operators(0).await?;
        let got = self.read(pv, data.len()).await?;
        ensure!(
            got == data,
            "with the operators handed back the volume reads other data"
        );
        self.scale_operators(replicas).await?;
        self.data_plane_unchanged(pv, cspc, &before, "swapping the operators back")
            .await
    }

    /// The pool and target pods and pod templates are as in `before` ([`Self::data_plane`]);
    /// `doing` names what would have changed them.
    pub(super) async fn data_plane_unchanged(
        &self,
        pv: &str,
        cspc: &str,
        before: &DataPlane,
        doing: &str,
    ) -> anyhow::Result<()> {
        let after = self.data_plane(pv, cspc).await?;
        for (what, was) in before {
            let now = after.get(what).map(String::as_str).unwrap_or("gone");
            ensure!(was == now, "{doing} changed {what}: {was} → {now}");
        }
        Ok(())
    }

    /// What upstream's operators read of the volume's and the pools' objects: each one's
    /// spec, labels, annotations (but ours, `cstor-rs.openebs.io/…`, and the Deployment
    /// controller's revision), finalizers, owners and versionDetails.
    async fn upstream_view(&self, pv: &str, cspc: &str) -> anyhow::Result<BTreeMap<String, Value>> {
        fn view(kind: &str, v: Value, out: &mut BTreeMap<String, Value>) {
            let name = v
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let mut annotations = v
                .pointer("/metadata/annotations")
                .cloned()
                .unwrap_or_else(|| json!({}));
            if let Some(a) = annotations.as_object_mut() {
                a.retain(|k, _| {
                    !k.starts_with("cstor-rs.openebs.io/")
                        && k != "deployment.kubernetes.io/revision"
                });
            }
            let spec = v.get("spec").cloned().unwrap_or(Value::Null);
            let mut version = v.get("versionDetails").cloned().unwrap_or(Value::Null);
            if let Some(st) = version.get_mut("status").and_then(Value::as_object_mut) {
                st.remove("lastUpdateTime");
            }
            out.insert(
                format!("{kind} {name}"),
                json!({
                    "spec": spec,
                    "labels": v.pointer("/metadata/labels"),
                    "annotations": annotations,
                    "finalizers": v.pointer("/metadata/finalizers"),
                    "ownerReferences": v.pointer("/metadata/ownerReferences"),
                    "versionDetails": version,
                }),
            );
        }
        let mut out = BTreeMap::new();
        let pv_sel = ListParams::default().labels(&format!("{}={pv}", label::PERSISTENT_VOLUME));
        let pool_sel =
            ListParams::default().labels(&format!("{}={cspc}", label::CSTOR_POOL_CLUSTER));
        view(
            "CStorVolumeConfig",
            to_value(&self.api::<CStorVolumeConfig>().get(pv).await?),
            &mut out,
        );
        view(
            "CStorVolume",
            to_value(&self.api::<CStorVolume>().get(pv).await?),
            &mut out,
        );
        view(
            "CStorPoolCluster",
            to_value(&self.api::<CStorPoolCluster>().get(cspc).await?),
            &mut out,
        );
        for r in self.api::<CStorVolumeReplica>().list(&pv_sel).await? {
            view("CStorVolumeReplica", to_value(&r), &mut out);
        }
        for c in self.api::<CStorPoolInstance>().list(&pool_sel).await? {
            view("CStorPoolInstance", to_value(&c), &mut out);
        }
        for sel in [&pv_sel, &pool_sel] {
            for d in self.api::<Deployment>().list(sel).await? {
                view("Deployment", to_value(&d), &mut out);
            }
        }
        for svc in self.api::<Service>().list(&pv_sel).await? {
            view("Service", to_value(&svc), &mut out);
        }
        Ok(out)
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
    pub(super) async fn data_plane(&self, pv: &str, cspc: &str) -> anyhow::Result<DataPlane> {
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

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// The JSON paths where `now` differs from `was`, under `at`.
fn diff(at: &str, was: &Value, now: &Value, out: &mut Vec<String>) {
    match (was, now) {
        (Value::Object(a), Value::Object(b)) => {
            for k in a.keys().chain(b.keys().filter(|k| !a.contains_key(*k))) {
                let (x, y) = (
                    a.get(k).unwrap_or(&Value::Null),
                    b.get(k).unwrap_or(&Value::Null),
                );
                diff(&format!("{at}/{k}"), x, y, out);
            }
        }
        _ if was != now => out.push(format!("{at}: {was} → {now}")),
        _ => {}
    }
}
