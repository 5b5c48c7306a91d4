//! UpgradeTasks: one per CSPI (`upgrade-cstor-cspi-<cspi>`) and per volume
//! (`upgrade-cstor-csi-volume-<pv>`), get-or-created by the run that upgrades it, `Started` on
//! first use, their step list reset at each run; each step is a `Waiting` entry that becomes
//! `Completed` (message) or `Errored` (message and the error as reason). The overall `Success`,
//! or one more retry (`Error` once the backoff limit is reached), is written when the run
//! ends.

use std::future::Future;

use cstor_api::upgrade::{
    StepPhase, UpgradePhase, UpgradeStepStatus, UpgradeTask, UpgradeTaskSpec, UpgradeTaskStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{
    Api, ResourceExt,
    api::{ListParams, PostParams},
};

use super::Upgrader;

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

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

/// Writes the task of one resource.
pub struct Reporter {
    api: Api<UpgradeTask>,
    name: String,
}

impl Reporter {
    /// Gets or creates task `name` with `spec`; a first run stamps `Started` and the start time;
    /// every run starts with no step entries.
    pub async fn start(u: &Upgrader, name: &str, spec: UpgradeTaskSpec) -> anyhow::Result<Self> {
        let r = Reporter {
            api: u.api(),
            name: name.to_owned(),
        };
        if r.api.get_opt(name).await?.is_none() {
            let task = UpgradeTask::namespaced(name, &u.namespace, spec);
            match r.api.create(&PostParams::default(), &task).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => {
                    return Err(
                        anyhow::Error::from(e).context(format!("create UpgradeTask {name}"))
                    );
                }
            }
        }
        r.update(|st| {
            if st.start_time.is_none() {
                st.phase = Some(UpgradePhase::Started);
                st.start_time = Some(now());
            }
            st.upgrade_detailed_statuses.clear();
        })
        .await?;
        Ok(r)
    }

    async fn update(&self, change: impl Fn(&mut UpgradeTaskStatus)) -> anyhow::Result<()> {
        let out = cstor_api::update::modify(&self.api, &self.name, |task| {
            change(task.status.get_or_insert_with(Default::default));
            true
        })
        .await?;
        if matches!(out, cstor_api::update::Modified::Absent) {
            anyhow::bail!("UpgradeTask {} is gone", self.name);
        }
        Ok(())
    }

    /// Runs one step: a `Waiting` entry, then `Completed` with `done` or `Errored` with
    /// `context` and the error. The step's error comes back with `context` attached.
    pub async fn step<T, Fut>(
        &self,
        step: &str,
        done: &str,
        context: &str,
        work: Fut,
    ) -> anyhow::Result<T>
    where
        Fut: Future<Output = anyhow::Result<T>>,
    {
        self.update(|st| {
            st.upgrade_detailed_statuses.push(UpgradeStepStatus {
                step: step.into(),
                start_time: Some(now()),
                last_updated_at: Some(now()),
                phase: Some(StepPhase::Waiting),
                ..Default::default()
            })
        })
        .await?;
        let result = work.await;
        self.update(|st| {
            if let Some(last) = st.upgrade_detailed_statuses.last_mut() {
                last.last_updated_at = Some(now());
                match &result {
                    Ok(_) => {
                        last.phase = Some(StepPhase::Completed);
                        last.message = Some(done.into());
                        last.reason = None;
                    }
                    Err(e) => {
                        last.phase = Some(StepPhase::Errored);
                        last.message = Some(context.into());
                        last.reason = Some(format!("{e:#}"));
                    }
                }
            }
        })
        .await?;
        result.map_err(|e| e.context(context.to_owned()))
    }

    /// The run's end: `Success`, or one more retry (and `Error` once `backoff_limit` runs
    /// failed).
    pub async fn finish(&self, ok: bool, backoff_limit: i64) -> anyhow::Result<()> {
        self.update(|st| {
            if ok {
                st.phase = Some(UpgradePhase::Success);
                st.completed_time = Some(now());
            } else {
                let retries = st.retries.unwrap_or(0) + 1;
                st.retries = Some(retries);
                if retries >= backoff_limit {
                    st.phase = Some(UpgradePhase::Error);
                    st.completed_time = Some(now());
                }
            }
        })
        .await
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
