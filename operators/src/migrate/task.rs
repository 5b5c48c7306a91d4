//! The MigrationTask of a run: get-or-created at the start, one entry per step, the overall
//! phase at the end. A dry run writes none of it.

use cstor_api::migration::{
    MigrationPhase, MigrationStepStatus, MigrationTask, MigrationTaskSpec, MigrationTaskStatus,
    StepPhase,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{Api, api::PostParams};

/// Step names, as upstream.
pub const PRE_MIGRATION: &str = "Pre-migration";
pub const MIGRATE: &str = "Migrate";

/// Writes the task of one run (nothing in a dry run).
pub struct Reporter {
    api: Api<MigrationTask>,
    name: String,
    write: bool,
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

impl Reporter {
    /// Gets or creates task `name` with `spec`; a first run stamps `Started` and the start time;
    /// every run starts with no step entries.
    pub async fn start(
        client: kube::Client,
        namespace: &str,
        name: &str,
        spec: MigrationTaskSpec,
        write: bool,
    ) -> anyhow::Result<Self> {
        let r = Reporter {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            write,
        };
        if write {
            if r.api.get_opt(name).await?.is_none() {
                let task = MigrationTask::namespaced(name, namespace, spec);
                match r.api.create(&PostParams::default(), &task).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 409 => {}
                    Err(e) => return Err(e.into()),
                }
            }
            r.update(|st| {
                if st.start_time.is_none() {
                    st.phase = Some(MigrationPhase::Started);
                    st.start_time = Some(now());
                }
                st.migration_detailed_statuses.clear();
            })
            .await?;
        }
        Ok(r)
    }

    async fn update(&self, change: impl Fn(&mut MigrationTaskStatus)) -> anyhow::Result<()> {
        if !self.write {
            return Ok(());
        }
        let out = cstor_api::update::modify(&self.api, &self.name, |task| {
            change(task.status.get_or_insert_with(Default::default));
            true
        })
        .await?;
        if matches!(out, cstor_api::update::Modified::Absent) {
            anyhow::bail!("MigrationTask {} is gone", self.name);
        }
        Ok(())
    }

    /// A step begins: a `Waiting` entry.
    pub async fn begin(&self, step: &str) -> anyhow::Result<()> {
        self.update(|st| {
            st.migration_detailed_statuses.push(MigrationStepStatus {
                step: step.into(),
                start_time: Some(now()),
                last_updated_at: Some(now()),
                phase: Some(StepPhase::Waiting),
                ..Default::default()
            })
        })
        .await
    }

    /// The step's entry becomes `Completed` (`ok`) or `Errored` with the error as reason.
    pub async fn end(
        &self,
        result: &anyhow::Result<()>,
        done_message: &str,
        context: &str,
    ) -> anyhow::Result<()> {
        self.update(|st| {
            if let Some(last) = st.migration_detailed_statuses.last_mut() {
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

    /// Runs one step between its `Waiting` entry and its `Completed` / `Errored` one.
    pub async fn step<T>(
        &self,
        step: &str,
        done_message: &str,
        context: &str,
        work: impl std::future::Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<T> {
        self.begin(step).await?;
        let out = work.await;
        let result = out.as_ref().map(drop).map_err(|e| anyhow::anyhow!("{e:#}"));
        self.end(&result, done_message, context).await?;
        out
    }

    /// The run's end: `Success`, or one more retry (and `Error` once `backoff_limit` runs
    /// failed).
    pub async fn finish(&self, ok: bool, backoff_limit: i64) -> anyhow::Result<()> {
        self.update(|st| {
            if ok {
                st.phase = Some(MigrationPhase::Success);
                st.completed_time = Some(now());
            } else {
                let retries = st.retries.unwrap_or(0) + 1;
                st.retries = Some(retries);
                if retries >= backoff_limit {
                    st.phase = Some(MigrationPhase::Error);
                    st.completed_time = Some(now());
                }
            }
        })
        .await
    }
}
