//! A CStorPoolCluster upgrade, in upstream's order: the cspc-operator must already run this
//! release; each CSPI in turn (pool Deployment images and labels, rollout, CSPI label and
//! `desired`, the pool-manager's `current`, then its legacy `openebs.io/v1alpha1` backup
//! records moved to `cstor.openebs.io/v1`), each with its UpgradeTask; then the CSPC's
//! `desired`, and the cspc-operator's `current`.

use anyhow::Context as _;
use cstor_api::{
    constants::label,
    cstor::{CStorPoolCluster, CStorPoolInstance},
    upgrade::{UpgradeCStorPoolInstance, step},
};
use kube::{ResourceExt, api::ListParams};
use serde_json::json;

use super::{
    Upgrader,
    task::{self, Reporter},
};
use crate::version::{current, desired};

/// Upgrades CSPC `name` and its pool instances.
pub async fn upgrade(u: &Upgrader, name: &str) -> anyhow::Result<()> {
    let cspc = u
        .api::<CStorPoolCluster>()
        .get(name)
        .await
        .with_context(|| format!("failed to get cspc {name}"))?;
    u.check_operator("cspc-operator")
        .await
        .context("failed to verify cspc-operator")?;
    u.precheck("cspc", name, current(&cspc))
        .context("failed to verify cspc")?;
    let mut cspis = u
        .api::<CStorPoolInstance>()
        .list(&ListParams::default().labels(&format!("{}={name}", label::CSTOR_POOL_CLUSTER)))
        .await?
        .items;
    cspis.sort_by_key(ResourceExt::name_any);
    for cspi in cspis {
        let cspi = cspi.name_any();
        upgrade_cspi_task(u, &cspi, &task::cspi_task_name(&cspi))
            .await
            .with_context(|| format!("failed to upgrade cspi {cspi}"))?;
    }
    u.bump_desired::<CStorPoolCluster>(name, desired(&cspc), serde_json::Value::Null)
        .await?;
    u.verify_current::<CStorPoolCluster>(name)
        .await
        .context("failed to verify version reconcile on CSPC")
}

/// One CSPI with its UpgradeTask `task_name`, finalised at the end.
pub async fn upgrade_cspi_task(u: &Upgrader, cspi: &str, task_name: &str) -> anyhow::Result<()> {
    let mut spec = task::spec(u);
    spec.cstor_pool_instance = Some(UpgradeCStorPoolInstance {
        cspi_name: cspi.to_owned(),
        options: None,
    });
    let reporter = Reporter::start(u, task_name, spec).await?;
    let result = upgrade_cspi(u, cspi, &reporter).await;
    reporter.finish(result.is_ok(), u.backoff_limit).await?;
    result
}

async fn upgrade_cspi(u: &Upgrader, name: &str, r: &Reporter) -> anyhow::Result<()> {
    let selector = format!("{}={name}", label::CSTOR_POOL_INSTANCE);
    let (deploy, cspi) = r
        .step(
            step::PRE_UPGRADE,
            "Pre-upgrade steps were successful",
            &format!("failed to verify cspi {name}"),
            async {
                let deploy = u.deployment_by_label(&selector).await?;
                let cspi = u.api::<CStorPoolInstance>().get(name).await?;
                u.precheck(
                    "pool deployment",
                    &deploy.name_any(),
                    &deploy.version_label(),
                )?;
                u.precheck("cspi", name, &cspi.version_label())?;
                Ok((deploy, cspi))
            },
        )
        .await?;
    r.step(
        step::POOL_INSTANCE_UPGRADE,
        "Pool instance upgrade was successful",
        &format!("failed to upgrade pool instance {name}"),
        async {
            let images = u.operator_images("cspc-operator").await?;
            u.upgrade_deployment(&deploy.name_any(), &[], &images)
                .await?;
            let recorded = cspi.version_label();
            u.bump_desired::<CStorPoolInstance>(
                name,
                &recorded,
                json!({"labels": {label::VERSION: u.to}}),
            )
            .await?;
            u.verify_current::<CStorPoolInstance>(name).await?;
            // Backup records an older pool-manager wrote in the legacy kinds move to v1.
            let selector = format!("{}={name}", label::CSPI_NAME);
            crate::migrate::backup::convert_legacy_records(
                &u.client,
                &u.namespace,
                &selector,
                |_| {},
            )
            .await
            .context("failed to migrate the legacy backup records")?;
            Ok(())
        },
    )
    .await
}

/// The `openebs.io/version` label of an object (`""` when unset).
trait VersionLabel {
    fn version_label(&self) -> String;
}

impl<K: ResourceExt> VersionLabel for K {
    fn version_label(&self) -> String {
        self.labels()
            .get(label::VERSION)
            .cloned()
            .unwrap_or_default()
    }
}
