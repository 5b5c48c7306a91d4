//! UpgradeTasks: one per CSPI (`upgrade-cstor-cspi-<cspi>`) and per volume
//! (`upgrade-cstor-csi-volume-<pv>`), get-or-created by the run that upgrades it, `Started` on
//! first use, their step list reset at each run; each step is a `Waiting` entry that becomes
//! `Completed` (message) or `Errored` (message and the error as reason). The overall `Success`,
//! or one more retry (`Error` once the backoff limit is reached), is written when the run
//! ends. Written by the migration's [`TaskReporter`].

use cstor_api::upgrade::{UpgradePhase, UpgradeTask, UpgradeTaskSpec};
use kube::{Api, ResourceExt, api::ListParams};

use super::Upgrader;
use crate::migrate::task::{TaskKind, TaskRecord, TaskReporter};

/// Name of the task of a CSPI.
pub fn cspi_task_name(cspi: &str) -> String {
    format!("upgrade-cstor-cspi-{cspi}")
}

/// Name of the task of a volume.
pub fn volume_task_name(pv: &str) -> String {
    format!("upgrade-cstor-csi-volume-{pv}")
}

/// The spec of a task this run creates.
pub fn spec(u: &Upgrader) -> UpgradeTaskSpec {
    UpgradeTaskSpec {
        from_version: u.from.clone(),
        to_version: u.to.clone(),
        image_prefix: u.image_prefix.clone(),
        image_tag: Some(u.image_tag.clone()),
        ..Default::default()
    }
}

impl TaskKind for UpgradeTask {
    type Spec = UpgradeTaskSpec;
    const STEP_ERROR_TAKES_CONTEXT: bool = true;

    fn new_task(name: &str, namespace: &str, spec: Self::Spec) -> Self {
        UpgradeTask::namespaced(name, namespace, spec)
    }

    fn record(&mut self) -> TaskRecord<'_> {
        let st = self.status.get_or_insert_with(Default::default);
        TaskRecord {
            phase: &mut st.phase,
            start_time: &mut st.start_time,
            completed_time: &mut st.completed_time,
            retries: &mut st.retries,
            steps: &mut st.upgrade_detailed_statuses,
        }
    }
}

/// Writes the task of one resource (the migration's reporter, over `upgradeDetailedStatuses`;
/// a failed step's error comes back with the step's context).
pub type Reporter = TaskReporter<UpgradeTask>;

impl Reporter {
    /// Gets or creates UpgradeTask `name` with `spec`; a first run stamps `Started` and the
    /// start time; every run starts with no step entries.
    pub async fn start(u: &Upgrader, name: &str, spec: UpgradeTaskSpec) -> anyhow::Result<Self> {
        TaskReporter::open(u.client.clone(), &u.namespace, name, spec, true).await
    }
}

/// `upgrade resource`: every UpgradeTask matching `selector` that is not finished yet (a
/// CSPI, a CSPC or a volume), with the versions and images of its spec.
pub async fn run_selected(u: &Upgrader, selector: &str) -> Result<(), String> {
    let api: Api<UpgradeTask> = u.api();
    let tasks = api
        .list(&ListParams::default().labels(selector))
        .await
        .map_err(|e| format!("list UpgradeTasks {selector}: {e}"))?;
    if tasks.items.is_empty() {
        return Err(format!(
            "no UpgradeTask matches {selector} in {}",
            u.namespace
        ));
    }
    let mut failed = Vec::new();
    for t in tasks.items {
        let name = t.name_any();
        let done = t
            .status
            .as_ref()
            .and_then(|s| s.phase.as_ref())
            .is_some_and(|p| matches!(p, UpgradePhase::Success | UpgradePhase::Error));
        if done {
            continue;
        }
        let mut tu = u.clone();
        tu.from = t.spec.from_version.clone();
        tu.to = t.spec.to_version.clone();
        if !super::valid_versions(&tu.from, &tu.to) {
            failed.push(format!(
                "UpgradeTask {name}: Invalid from version {} or to version {}",
                tu.from, tu.to
            ));
            continue;
        }
        tu.image_prefix = t.spec.image_prefix.clone().or(tu.image_prefix);
        tu.image_tag = t.spec.image_tag.clone().unwrap_or_else(|| tu.to.clone());
        tu.images_named =
            tu.images_named || t.spec.image_tag.is_some() || t.spec.image_prefix.is_some();
        let result = if let Some(v) = &t.spec.cstor_volume {
            super::volume::upgrade_task(&tu, &v.pv_name, &name)
                .await
                .map_err(|e| format!("Failed to upgrade CStorVolume {}: {e:#}", v.pv_name))
        } else if let Some(c) = &t.spec.cstor_pool_instance {
            let run = async {
                tu.check_operator("cspc-operator")
                    .await
                    .map_err(|e| e.context("failed to verify cspc-operator"))?;
                super::cspc::upgrade_cspi_task(&tu, &c.cspi_name, &name).await
            };
            run.await
                .map_err(|e| format!("Failed to upgrade cStor CSPI {}: {e:#}", c.cspi_name))
        } else if let Some(c) = &t.spec.cstor_pool_cluster {
            // No step entries (the CSPI tasks have them); the overall phase is recorded.
            let run = async {
                let reporter = Reporter::start(&tu, &name, t.spec.clone()).await?;
                let result = super::cspc::upgrade(&tu, &c.cspc_name).await;
                reporter.finish(result.is_ok(), tu.backoff_limit).await?;
                result
            };
            run.await
                .map_err(|e| format!("Failed to upgrade cStor CSPC {}: {e:#}", c.cspc_name))
        } else {
            Err(format!(
                "UpgradeTask {name}: none of cstorPoolInstance, cstorPoolCluster, cstorVolume is set (jiva and legacy pools are not upgraded by this tool)"
            ))
        };
        if let Err(e) = result {
            failed.push(e);
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join("; "))
    }
}
