//! The record of a run: a MigrationTask (here) or an UpgradeTask (`crate::upgrade::task`),
//! written by one [`TaskReporter`]: get-or-created at the start (`Started` and the start time on
//! first use, the step list emptied at every run), one entry per step (`Waiting`, then
//! `Completed` with a message or `Errored` with the context and the error), the overall phase at
//! the end. A dry run writes none of it.

use std::{fmt::Debug, future::Future};

use cstor_api::migration::{
    MigrationPhase, MigrationStepStatus, MigrationTask, MigrationTaskSpec, StepPhase,
};
use k8s_openapi::{NamespaceResourceScope, apimachinery::pkg::apis::meta::v1::Time};
use kube::{Api, Resource, api::PostParams};
use serde::{Serialize, de::DeserializeOwned};

/// Step names, as upstream.
pub const PRE_MIGRATION: &str = "Pre-migration";
pub const MIGRATE: &str = "Migrate";

/// The status fields a [`TaskReporter`] writes, borrowed from a task's status.
pub struct TaskRecord<'a> {
    pub phase: &'a mut Option<MigrationPhase>,
    pub start_time: &'a mut Option<Time>,
    pub completed_time: &'a mut Option<Time>,
    pub retries: &'a mut Option<i64>,
    /// `migrationDetailedStatuses` / `upgradeDetailedStatuses`.
    pub steps: &'a mut Vec<MigrationStepStatus>,
}

/// A kind of task record (MigrationTask, UpgradeTask).
pub trait TaskKind:
    Resource<Scope = NamespaceResourceScope, DynamicType = ()>
    + Clone
    + DeserializeOwned
    + Serialize
    + Debug
{
    type Spec;
    /// Whether a failed step's error comes back with the step's context attached (the
    /// upgrade's callers rely on it; the migration's callers name theirs).
    const STEP_ERROR_TAKES_CONTEXT: bool;
    /// A new task `name` in `namespace`.
    fn new_task(name: &str, namespace: &str, spec: Self::Spec) -> Self;
    /// Its status fields (the status created empty if unset).
    fn record(&mut self) -> TaskRecord<'_>;
}

impl TaskKind for MigrationTask {
    type Spec = MigrationTaskSpec;
    const STEP_ERROR_TAKES_CONTEXT: bool = false;

    fn new_task(name: &str, namespace: &str, spec: Self::Spec) -> Self {
        MigrationTask::namespaced(name, namespace, spec)
    }

    fn record(&mut self) -> TaskRecord<'_> {
        let st = self.status.get_or_insert_with(Default::default);
        TaskRecord {
            phase: &mut st.phase,
            start_time: &mut st.start_time,
            completed_time: &mut st.completed_time,
            retries: &mut st.retries,
            steps: &mut st.migration_detailed_statuses,
        }
    }
}

/// Writes the task of one run (nothing when `write` is off).
pub struct TaskReporter<K> {
    api: Api<K>,
    name: String,
    write: bool,
}

/// The MigrationTask of a migration run.
pub type Reporter = TaskReporter<MigrationTask>;

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

impl Reporter {
    /// Gets or creates MigrationTask `name` with `spec` (nothing in a dry run, `!write`).
    pub async fn start(
        client: kube::Client,
        namespace: &str,
        name: &str,
        spec: MigrationTaskSpec,
        write: bool,
    ) -> anyhow::Result<Self> {
        TaskReporter::open(client, namespace, name, spec, write).await
    }
}

impl<K: TaskKind> TaskReporter<K> {
    /// Gets or creates task `name` with `spec`; a first run stamps `Started` and the start time;
    /// every run starts with no step entries.
    pub async fn open(
        client: kube::Client,
        namespace: &str,
        name: &str,
        spec: K::Spec,
        write: bool,
    ) -> anyhow::Result<Self> {
        let r = TaskReporter {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            write,
        };
        if write {
            if r.api.get_opt(name).await?.is_none() {
                let task = K::new_task(name, namespace, spec);
                match r.api.create(&PostParams::default(), &task).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 409 => {}
                    Err(e) => {
                        return Err(anyhow::Error::from(e)
                            .context(format!("create {} {name}", K::kind(&()))));
                    }
                }
            }
            r.update(|st| {
                if st.start_time.is_none() {
                    *st.phase = Some(MigrationPhase::Started);
                    *st.start_time = Some(now());
                }
                st.steps.clear();
            })
            .await?;
        }
        Ok(r)
    }

    async fn update(&self, change: impl Fn(TaskRecord<'_>)) -> anyhow::Result<()> {
        if !self.write {
            return Ok(());
        }
        let out = cstor_api::update::modify(&self.api, &self.name, |task| {
            change(task.record());
            true
        })
        .await?;
        if matches!(out, cstor_api::update::Modified::Absent) {
            anyhow::bail!("{} {} is gone", K::kind(&()), self.name);
        }
        Ok(())
    }

    /// A step begins: a `Waiting` entry.
    pub async fn begin(&self, step: &str) -> anyhow::Result<()> {
        self.update(|st| {
            st.steps.push(MigrationStepStatus {
                step: step.into(),
                start_time: Some(now()),
                last_updated_at: Some(now()),
                phase: Some(StepPhase::Waiting),
                ..Default::default()
            })
        })
        .await
    }

    /// The step's entry becomes `Completed` with `done_message` (`ok`) or `Errored` with
    /// `context` as message and the error as reason.
    pub async fn end(
        &self,
        result: &anyhow::Result<()>,
        done_message: &str,
        context: &str,
    ) -> anyhow::Result<()> {
        self.update(|st| {
            if let Some(last) = st.steps.last_mut() {
                last.last_updated_at = Some(now());
                match result {
                    Ok(()) => {
                        last.phase = Some(StepPhase::Completed);
                        last.message = Some(done_message.into());
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
        .await
    }

    /// Runs one step between its `Waiting` entry and its `Completed` / `Errored` one. For an
    /// UpgradeTask ([`TaskKind::STEP_ERROR_TAKES_CONTEXT`]) the step's error comes back with
    /// `context` attached.
    pub async fn step<T>(
        &self,
        step: &str,
        done_message: &str,
        context: &str,
        work: impl Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<T> {
        self.begin(step).await?;
        let out = work.await;
        let result = out.as_ref().map(drop).map_err(|e| anyhow::anyhow!("{e:#}"));
        self.end(&result, done_message, context).await?;
        if K::STEP_ERROR_TAKES_CONTEXT {
            out.map_err(|e| e.context(context.to_owned()))
        } else {
            out
        }
    }

    /// The run's end: `Success`, or one more retry (and `Error` once `backoff_limit` runs
    /// failed).
    pub async fn finish(&self, ok: bool, backoff_limit: i64) -> anyhow::Result<()> {
        self.update(|st| {
            if ok {
                *st.phase = Some(MigrationPhase::Success);
                *st.completed_time = Some(now());
            } else {
                let retries = st.retries.unwrap_or(0) + 1;
                *st.retries = Some(retries);
                if retries >= backoff_limit {
                    *st.phase = Some(MigrationPhase::Error);
                    *st.completed_time = Some(now());
                }
            }
        })
        .await
    }
}
