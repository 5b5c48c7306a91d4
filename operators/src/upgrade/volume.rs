//! A volume upgrade, in upstream's order, recorded in UpgradeTask
//! `upgrade-cstor-csi-volume-<pv>`: `PRE_UPGRADE` (the cvc-operator runs this release; the CVC,
//! CV, target Deployment and Service are at `from` or `to`), `REPLICA_UPGRADE` (every replica's
//! pool is already at `to`, else nothing is touched; then each CVR's label and `desired`, and
//! its pool-manager's `current`), `TARGET_UPGRADE` (target Deployment images and labels and its
//! rollout, the Service label, the CV, then the CVC, each waited for).

use anyhow::{Context as _, bail};
use cstor_api::{
    constants::{annotation, label},
    cstor::{CStorPoolInstance, CStorVolume, CStorVolumeConfig, CStorVolumeReplica},
    upgrade::{UpgradeVolume, step},
};
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{PersistentVolume, Service},
};
use kube::{
    Api, ResourceExt,
    api::{ListParams, Patch, PatchParams},
};
use serde_json::json;

use super::{
    Upgrader,
    task::{self, Reporter},
};
use crate::version::{current, desired};

/// Upgrades the volume of PV `pv`, with its UpgradeTask finalised at the end.
pub async fn upgrade(u: &Upgrader, pv: &str) -> anyhow::Result<()> {
    upgrade_task(u, pv, &task::volume_task_name(pv)).await
}

/// [`upgrade`] recorded in UpgradeTask `task_name`.
pub async fn upgrade_task(u: &Upgrader, pv: &str, task_name: &str) -> anyhow::Result<()> {
    let mut spec = task::spec(u);
    spec.cstor_volume = Some(UpgradeVolume {
        pv_name: pv.to_owned(),
        options: None,
    });
    let reporter = Reporter::start(u, task_name, spec).await?;
    let result = run(u, pv, &reporter).await;
    reporter.finish(result.is_ok(), u.backoff_limit).await?;
    result
}

/// What the pre-upgrade step found.
struct Found {
    cvc: CStorVolumeConfig,
    cv: CStorVolume,
    deploy: Deployment,
    service: Service,
    /// The PV's claim name, when the PV names one.
    claim: Option<String>,
}

fn version_label<K: ResourceExt>(o: &K) -> String {
    o.labels().get(label::VERSION).cloned().unwrap_or_default()
}

async fn pre_upgrade(u: &Upgrader, pv: &str) -> anyhow::Result<Found> {
    let selector = format!("{}={pv}", label::PERSISTENT_VOLUME);
    u.check_operator("cvc-operator")
        .await
        .context("failed to verify cvc-operator")?;
    let cvc = u
        .api::<CStorVolumeConfig>()
        .get(pv)
        .await
        .context("failed to verify CVC")?;
    u.precheck("cvc", pv, current(&cvc))
        .context("failed to verify CVC")?;
    let cv = u
        .api::<CStorVolume>()
        .get(pv)
        .await
        .context("failed to verify CV")?;
    u.precheck("cv", pv, current(&cv))
        .context("failed to verify CV")?;
    let deploy = u
        .deployment_by_label(&selector)
        .await
        .context("failed to verify target deploy")?;
    u.precheck(
        "target deployment",
        &deploy.name_any(),
        &version_label(&deploy),
    )
    .context("failed to verify target deploy")?;
    let service = u
        .api::<Service>()
        .list(&ListParams::default().labels(&selector))
        .await?
        .items
        .into_iter()
        .next()
        .with_context(|| {
            format!(
                "no services found for label: {selector} in {} namespace",
                u.namespace
            )
        })
        .context("failed to verify target svc")?;
    u.precheck(
        "target service",
        &service.name_any(),
        &version_label(&service),
    )
    .context("failed to verify target svc")?;
    let claim = Api::<PersistentVolume>::all(u.client.clone())
        .get_opt(pv)
        .await?
        .and_then(|p| p.spec?.claim_ref?.name);
    Ok(Found {
        cvc,
        cv,
        deploy,
        service,
        claim,
    })
}

async fn upgrade_replicas(u: &Upgrader, pv: &str) -> anyhow::Result<()> {
    let mut cvrs = u
        .api::<CStorVolumeReplica>()
        .list(&ListParams::default().labels(&format!("{}={pv}", label::PERSISTENT_VOLUME)))
        .await?
        .items;
    cvrs.sort_by_key(ResourceExt::name_any);
    // Pools first: every replica's pool must already be at `to` before any replica is touched.
    for cvr in &cvrs {
        let name = cvr.name_any();
        let cspi = cvr
            .labels()
            .get(label::CSPI_NAME)
            .filter(|c| !c.is_empty())
            .with_context(|| format!("missing cspi label for cvr {name}"))?;
        let pool = u.api::<CStorPoolInstance>().get(cspi).await?;
        if version_label(&pool) != u.to {
            bail!(
                "cspi {cspi} not in {} version: upgrade its CStorPoolCluster first (cstor-migrate upgrade cstor-cspc)",
                u.to
            );
        }
        u.precheck("cvr", &name, current(cvr))?;
    }
    for cvr in &cvrs {
        let name = cvr.name_any();
        u.bump_desired::<CStorVolumeReplica>(
            &name,
            desired(cvr),
            json!({"labels": {label::VERSION: u.to}}),
        )
        .await
        .with_context(|| format!("failed to patch cvr {name}"))?;
        u.verify_current::<CStorVolumeReplica>(&name).await?;
    }
    Ok(())
}

async fn upgrade_target(u: &Upgrader, pv: &str, f: &Found) -> anyhow::Result<()> {
    let claim_labels: Vec<(&str, String)> = f
        .claim
        .iter()
        .map(|c| (label::PERSISTENT_VOLUME_CLAIM, c.clone()))
        .collect();
    let images = u.operator_images("cvc-operator").await?;
    u.upgrade_deployment(&f.deploy.name_any(), &claim_labels, &images)
        .await
        .context("failed to patch target deploy")?;
    if u.should_patch(&version_label(&f.service)) {
        u.api::<Service>()
            .patch(
                &f.service.name_any(),
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {label::VERSION: u.to}}})),
            )
            .await
            .context("failed to patch target svc")?;
    }
    let mut cv_labels = json!({label::VERSION: u.to});
    if let Some(c) = &f.claim {
        cv_labels[label::PERSISTENT_VOLUME_CLAIM] = json!(c);
    }
    u.bump_desired::<CStorVolume>(pv, desired(&f.cv), json!({ "labels": cv_labels }))
        .await
        .context("failed to patch CV")?;
    u.verify_current::<CStorVolume>(pv)
        .await
        .context("failed to verify version reconcile on CV")?;
    let cvc_meta = match &f.claim {
        Some(c) => json!({"annotations": {annotation::PERSISTENT_VOLUME_CLAIM: c}}),
        None => serde_json::Value::Null,
    };
    u.bump_desired::<CStorVolumeConfig>(pv, desired(&f.cvc), cvc_meta)
        .await
        .context("failed to patch CVC")?;
    u.verify_current::<CStorVolumeConfig>(pv)
        .await
        .context("failed to verify version reconcile on CVC")
}

async fn run(u: &Upgrader, pv: &str, r: &Reporter) -> anyhow::Result<()> {
    let found = r
        .step(
            step::PRE_UPGRADE,
            "Pre-upgrade steps were successful",
            "failed to verify the volume",
            pre_upgrade(u, pv),
        )
        .await?;
    r.step(
        step::REPLICA_UPGRADE,
        "Replica upgrade was successful",
        "failed to upgrade the replicas",
        upgrade_replicas(u, pv),
    )
    .await?;
    r.step(
        step::TARGET_UPGRADE,
        "Target upgrade was successful",
        "failed to upgrade the target",
        upgrade_target(u, pv, &found),
    )
    .await
}
