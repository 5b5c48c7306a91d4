//! The CStorVolume reconcile loop of the volume manager: it watches the one CV whose UID is
//! `OPENEBS_IO_CSTOR_VOLUME_ID`, writes `istgt.conf` for it, drives resize and
//! desired-replication-factor changes through istgt, and keeps `status` true from istgt's
//! `REPLICA` report on every resync.
//!
//! Event mapping (upstream's): first sight of the CV → [`VolumeManager::add`]; a spec change →
//! [`VolumeManager::modify`]; status-only changes (our own writes) → ignored; deletion →
//! ignored (the Deployment goes with the CV); each resync tick → [`VolumeManager::sync`].
//! On shutdown the CV is marked `Offline` with no replica statuses.
//!
//! Status is written with a plain update of the whole object (the CRD has no status
//! subresource), re-read and retried on conflicts.

use std::{future::Future, sync::Arc, time::Duration};

use cstor_api::cstor::{CStorVolume, CStorVolumeCondition, CStorVolumePhase};
use futures::StreamExt;
use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use kube::{
    Api, Client,
    runtime::{WatchStreamExt, events::EventType, watcher},
};

use crate::{conditions, events::Events};

use super::{
    UpdateError,
    control::{ControlClient, ControlError},
    istgt_conf::{
        ConfError, ConfOptions, IstgtConf, LunStorage, render, replace_line_containing,
        update_or_append,
    },
    status, update_cv,
};

/// The `Resizing` condition (status `InProgress`) with `message`.
fn resize_condition(message: String) -> CStorVolumeCondition {
    CStorVolumeCondition {
        type_: RESIZE_CONDITION.into(),
        status: "InProgress".into(),
        reason: Some(RESIZE_CONDITION.into()),
        message: Some(message),
        ..Default::default()
    }
}

/// Condition type, reason and message upstream writes while a resize runs.
pub const RESIZE_CONDITION: &str = "Resizing";
/// Message of the resize condition.
pub const RESIZE_MESSAGE: &str = "Triggered resize by changing capacity in spec";

/// Settings of the reconcile loop.
#[derive(Clone, Debug)]
pub struct ManagerConfig {
    /// Namespace of the CV (env `OPENEBS_NAMESPACE`).
    pub namespace: String,
    /// UID of the CV this target serves (env `OPENEBS_IO_CSTOR_VOLUME_ID`).
    pub volume_uid: String,
    /// Period of the status sync (env `RESYNC_INTERVAL`, upstream 30 s).
    pub resync_interval: Duration,
    /// How often istgt's `STATUS` is retried at start-up (upstream 3 s).
    pub istgt_retry_interval: Duration,
    /// Event source component (env `POD_NAME`).
    pub pod_name: String,
    /// Event source host (env `NODE_NAME`).
    pub node_name: String,
    /// Paths and ports written into `istgt.conf`.
    pub conf_options: ConfOptions,
}

/// Failure of one reconcile step.
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    /// The API server refused or failed.
    #[error("{what}: {source}")]
    Api {
        /// What was attempted.
        what: String,
        /// API error.
        source: kube::Error,
    },
    /// istgt refused or failed a command.
    #[error(transparent)]
    Control(#[from] ControlError),
    /// istgt.conf could not be rendered or edited.
    #[error(transparent)]
    Conf(#[from] ConfError),
    /// The CV is not valid for a target.
    #[error("CStorVolume is invalid: {0}")]
    Invalid(String),
    /// A replica-count change cannot go ahead.
    #[error("cannot change the desired replication factor: {0}")]
    Drf(String),
}

fn api_err(what: impl Into<String>) -> impl FnOnce(UpdateError<ManagerError>) -> ManagerError {
    let what = what.into();
    move |e| match e {
        UpdateError::Api(source) => ManagerError::Api { what, source },
        UpdateError::Refused(e) => e,
    }
}

fn now() -> Time {
    Time(Timestamp::now())
}

fn name_of(cv: &CStorVolume) -> String {
    cv.metadata.name.clone().unwrap_or_default()
}

fn known(
    details: Option<&cstor_api::cstor::CStorVolumeReplicaDetails>,
) -> std::collections::BTreeMap<String, String> {
    details
        .and_then(|d| d.known_replicas.clone())
        .unwrap_or_default()
}

/// Effective desired replication factor (0/unset → replication factor).
pub fn effective_drf(cv: &CStorVolume) -> i64 {
    match cv.spec.desired_replication_factor.unwrap_or(0) {
        0 => cv.spec.replication_factor.unwrap_or(0),
        n => n,
    }
}

/// Upstream's `add` validation; the error names the offending field.
pub fn validate(cv: &CStorVolume) -> Result<(), String> {
    let empty = |v: Option<&str>| v.is_none_or(str::is_empty);
    if empty(cv.metadata.uid.as_deref()) {
        return Err("metadata.uid is empty".into());
    }
    if empty(cv.metadata.name.as_deref()) {
        return Err("metadata.name is empty".into());
    }
    if empty(cv.spec.target_ip.as_deref()) {
        return Err("spec.targetIP is empty".into());
    }
    let cap = cv
        .spec
        .capacity
        .as_ref()
        .map(|q| q.0.as_str())
        .unwrap_or("");
    match cstor_api::quantity::parse_bytes(cap) {
        Some(0) | None => return Err(format!("spec.capacity {cap:?} is not a non-zero quantity")),
        Some(_) => {}
    }
    let current = cv
        .version_details
        .as_ref()
        .map(|v| v.current())
        .unwrap_or("");
    if current >= "1.3.0" && cv.spec.desired_replication_factor.unwrap_or(0) == 0 {
        return Err("spec.desiredReplicationFactor is 0".into());
    }
    let rf = cv.spec.replication_factor.unwrap_or(0);
    let cf = cv.spec.consistency_factor.unwrap_or(0);
    if rf == 0 {
        return Err("spec.replicationFactor is 0".into());
    }
    if cf == 0 {
        return Err("spec.consistencyFactor is 0".into());
    }
    if rf < cf {
        return Err(format!(
            "spec.replicationFactor {rf} is smaller than spec.consistencyFactor {cf}"
        ));
    }
    Ok(())
}

/// Whether `status.capacity` is below `spec.capacity`.
pub fn resize_pending(cv: &CStorVolume) -> bool {
    let spec = cv
        .spec
        .capacity
        .as_ref()
        .and_then(|q| cstor_api::quantity::parse_bytes(&q.0));
    let status = cv
        .status
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|q| cstor_api::quantity::parse_bytes(&q.0));
    matches!((status, spec), (Some(s), Some(w)) if s < w)
}

/// Whether a desired-replication-factor change is pending: the conf's
/// `DesiredReplicationFactor` line differs from the spec, or the spec knows fewer replicas
/// than the status (scale down).
pub fn drf_pending(cv: &CStorVolume, conf_text: &str) -> bool {
    let want = format!(" {}", effective_drf(cv));
    let line_differs = conf_text
        .lines()
        .find(|l| l.contains("  DesiredReplicationFactor"))
        .is_some_and(|l| !l.ends_with(&want));
    let spec_known = known(cv.spec.replica_details.as_ref()).len();
    let status_known = known(cv.status.as_ref().and_then(|s| s.replica_details.as_ref())).len();
    line_differs || spec_known < status_known
}

/// The reconcile loop.
#[derive(Clone)]
pub struct VolumeManager {
    api: Api<CStorVolume>,
    events: Events,
    control: ControlClient,
    conf: Arc<IstgtConf>,
    cfg: ManagerConfig,
    health: Option<cstor_api::health::Health>,
}

impl VolumeManager {
    /// A manager for the CV `cfg.volume_uid` in `cfg.namespace`.
    pub fn new(
        client: Client,
        control: ControlClient,
        conf: Arc<IstgtConf>,
        cfg: ManagerConfig,
    ) -> Self {
        Self {
            api: Api::namespaced(client.clone(), &cfg.namespace),
            events: Events::new(client, "cstor-volume-manager"),
            control,
            conf,
            cfg,
            health: None,
        }
    }

    /// Marks `health` ready once istgt has answered `STATUS`.
    pub fn with_health(mut self, health: cstor_api::health::Health) -> Self {
        self.health = Some(health);
        self
    }

    /// Waits for istgt (`STATUS`), then reconciles until `shutdown` completes, then marks the
    /// CV `Offline`.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ManagerError> {
        tokio::pin!(shutdown);
        let mut retry = tokio::time::interval(self.cfg.istgt_retry_interval);
        loop {
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                _ = retry.tick() => match self.control.status().await {
                    Ok(_) => break,
                    Err(e) => {
                        tracing::info!(error = %e, "waiting for istgt to answer STATUS");
                        if let Some(h) = &self.health {
                            h.set_not_ready(format!("waiting for istgt to answer STATUS: {e}"));
                        }
                    }
                },
            }
        }
        if let Some(h) = &self.health {
            h.set_ready();
        }
        let mut stream = watcher(self.api.clone(), watcher::Config::default())
            .default_backoff()
            .boxed();
        let mut tick = tokio::time::interval(self.cfg.resync_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last: Option<CStorVolume> = None;
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                ev = stream.next() => match ev {
                    Some(Ok(watcher::Event::Apply(cv) | watcher::Event::InitApply(cv))) => {
                        if cv.metadata.uid.as_deref() == Some(self.cfg.volume_uid.as_str()) {
                            self.on_object(&mut last, cv).await;
                        }
                    }
                    Some(Ok(watcher::Event::Delete(cv))) => {
                        if cv.metadata.uid.as_deref() == Some(self.cfg.volume_uid.as_str()) {
                            tracing::info!(volume = %name_of(&cv), "CStorVolume deleted; nothing to clean up in the target");
                            last = None;
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => tracing::warn!(error = %e, "CStorVolume watch failed; retrying"),
                    None => break,
                },
                _ = tick.tick() => {
                    if let Some(cv) = last.clone()
                        && let Err(e) = self.sync(&cv).await
                    {
                        tracing::warn!(volume = %name_of(&cv), error = %e, "sync failed");
                    }
                }
            }
        }
        if let Some(cv) = last
            && let Err(e) = self.mark_offline(&name_of(&cv)).await
        {
            tracing::warn!(error = %e, "could not mark the CStorVolume Offline on shutdown");
        }
        Ok(())
    }

    async fn on_object(&self, last: &mut Option<CStorVolume>, cv: CStorVolume) {
        let name = name_of(&cv);
        let cv = if cv.metadata.deletion_timestamp.is_some() {
            cv
        } else {
            match self.reconcile_version(&cv).await {
                Ok(Some(cv)) => cv,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(volume = %name, error = %e, "version reconcile failed");
                    return;
                }
            }
        };
        let result = match last.as_ref() {
            _ if cv.metadata.deletion_timestamp.is_some() => Ok(()),
            None => match self.add(&cv).await {
                Ok(()) => self.sync(&cv).await,
                Err(e) => Err(e),
            },
            Some(prev) if prev.spec == cv.spec => Ok(()),
            Some(_) => self.modify(&cv).await,
        };
        if let Err(e) = result {
            tracing::warn!(volume = %name, error = %e, "reconcile failed");
        }
        *last = Some(cv);
    }

    /// The version reconcile of the CV (see [`crate::version`]): the CV to go on with, or
    /// `None` when its version is invalid (recorded on the CV; nothing else is done with this
    /// copy, the next change of the CV tries again).
    pub async fn reconcile_version(
        &self,
        cv: &CStorVolume,
    ) -> Result<Option<CStorVolume>, crate::version::VersionError> {
        let version = cstor_api::constants::version::current();
        match crate::version::reconcile_version(&self.api, &self.events, cv, &version).await {
            Ok(written) => Ok(Some(written.unwrap_or_else(|| cv.clone()))),
            Err(crate::version::VersionError::Invalid(reason)) => {
                tracing::warn!(volume = %name_of(cv), %reason, "invalid version");
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// First sight of the CV: validate, write `istgt.conf`, `REFRESH`, record the capacity and
    /// phase `Init`.
    pub async fn add(&self, cv: &CStorVolume) -> Result<(), ManagerError> {
        let name = name_of(cv);
        if let Err(reason) = validate(cv) {
            let why = reason.clone();
            update_cv(&self.api, &name, |cv| {
                Ok::<_, ManagerError>(
                    status::set_phase(
                        cv.status.get_or_insert_with(Default::default),
                        CStorVolumePhase::Invalid,
                        now(),
                    )
                    .is_some(),
                )
            })
            .await
            .map_err(api_err(format!("marking CStorVolume {name} Invalid")))?;
            self.record(
                cv,
                EventType::Warning,
                "FailCreate",
                "Create",
                &format!("Failed to create volume {name}: {why}"),
            )
            .await;
            return Err(ManagerError::Invalid(reason));
        }
        let text = render(cv, &self.cfg.conf_options)?;
        self.conf.write(&text).await?;
        if let Err(e) = self.control.refresh().await {
            tracing::warn!(volume = %name, error = %e, "REFRESH after writing istgt.conf failed");
        }
        let pending = resize_pending(cv);
        update_cv(&self.api, &name, |cv| {
            let capacity = cv.spec.capacity.clone();
            let st = cv.status.get_or_insert_with(Default::default);
            if !pending {
                st.capacity = capacity;
            }
            status::set_phase(st, CStorVolumePhase::Init, now());
            Ok::<_, ManagerError>(true)
        })
        .await
        .map_err(api_err(format!("updating CStorVolume {name} after add")))?;
        tracing::info!(volume = %name, "target configured");
        Ok(())
    }

    /// A spec change: DRF and resize when pending, else a `FailUpdate` event.
    pub async fn modify(&self, cv: &CStorVolume) -> Result<(), ManagerError> {
        let drf = self.drf_if_pending(cv).await;
        if resize_pending(cv) {
            self.resize(cv).await?;
        } else if matches!(drf, Ok(false)) {
            let name = name_of(cv);
            self.record(
                cv,
                EventType::Warning,
                "FailUpdate",
                "ValidateSpec",
                &format!("Ignoring changes on volume {name}"),
            )
            .await;
        }
        drf.map(drop)
    }

    /// Periodic work: pending DRF/resize, then the status from istgt's `REPLICA`.
    pub async fn sync(&self, cv: &CStorVolume) -> Result<(), ManagerError> {
        let drf = self.drf_if_pending(cv).await;
        let resize = if resize_pending(cv) {
            self.resize(cv).await
        } else {
            Ok(())
        };
        self.sync_status(&name_of(cv)).await?;
        drf.map(drop).and(resize)
    }

    /// Reads `REPLICA` and writes phase and replica statuses (phase `Error` when istgt fails).
    pub async fn sync_status(&self, name: &str) -> Result<(), ManagerError> {
        let report = self.control.replica().await;
        if let Err(e) = &report {
            tracing::warn!(volume = %name, error = %e, "REPLICA failed");
        }
        let mut changed = None;
        let updated = update_cv(&self.api, name, |cv| {
            let st = cv.status.get_or_insert_with(Default::default);
            changed = match &report {
                Ok(r) => status::apply_report(st, r, now()),
                Err(_) => status::apply_error(st, now()),
            };
            Ok::<_, ManagerError>(true)
        })
        .await
        .map_err(api_err(format!("updating status of CStorVolume {name}")))?;
        if let Some(phase) = changed {
            let msg = format!("Volume is in {phase} state");
            self.record(
                &updated,
                status::event_type(&phase),
                phase.as_str(),
                "PhaseChange",
                &msg,
            )
            .await;
        }
        report.map(drop).map_err(ManagerError::from)
    }

    /// Runs the DRF change when one is pending; `Ok(true)` when it ran.
    async fn drf_if_pending(&self, cv: &CStorVolume) -> Result<bool, ManagerError> {
        let text = self.conf.read().await?;
        if !drf_pending(cv, &text) {
            return Ok(false);
        }
        match self.drf(cv).await {
            Ok(()) => Ok(true),
            Err(e) => {
                self.record(
                    cv,
                    EventType::Warning,
                    "FailUpdate",
                    "UpdateReplicationFactor",
                    &format!("Failed to update desiredReplicationFactor: {e}"),
                )
                .await;
                Err(e)
            }
        }
    }

    /// Scale up (`DRF <vol> <n>`) or down (`DRF <vol> <n> <remaining ids…>`), upstream's steps.
    pub async fn drf(&self, cv: &CStorVolume) -> Result<(), ManagerError> {
        let name = name_of(cv);
        let drf = effective_drf(cv);
        let spec_known = known(cv.spec.replica_details.as_ref());
        let status_known = known(cv.status.as_ref().and_then(|s| s.replica_details.as_ref()));
        if spec_known.len() == status_known.len() {
            self.control.drf(&name, drf, &[]).await?;
            let line = format!("  DesiredReplicationFactor {drf}");
            self.conf
                .edit(|t| replace_line_containing(t, "  DesiredReplicationFactor", &line))
                .await?;
            self.record_drf(cv, drf).await;
            return Ok(());
        }
        if spec_known.len() > status_known.len() {
            return Err(ManagerError::Drf(format!(
                "unkown changes are made to cStorVolume {name}: spec knows {} replicas, status {}",
                spec_known.len(),
                status_known.len()
            )));
        }
        self.check_scale_down(&name, &spec_known).await?;
        let removed: Vec<String> = status_known
            .keys()
            .filter(|k| !spec_known.contains_key(*k))
            .cloned()
            .collect();
        if drf < cv.spec.replication_factor.unwrap_or(0) {
            self.lower_factors(&name, drf, &removed).await?;
        }
        let keep: Vec<String> = spec_known.keys().cloned().collect();
        self.control.drf(&name, drf, &keep).await?;
        update_cv(&self.api, &name, |cv| {
            let spec = cv
                .spec
                .replica_details
                .as_ref()
                .and_then(|d| d.known_replicas.clone());
            let st = cv.status.get_or_insert_with(Default::default);
            st.replica_details
                .get_or_insert_with(Default::default)
                .known_replicas = spec;
            Ok::<_, ManagerError>(true)
        })
        .await
        .map_err(api_err(format!(
            "updating known replicas of CStorVolume {name}"
        )))?;
        self.record_drf(cv, drf).await;
        Ok(())
    }

    /// A scale-down starts only from a healthy volume whose remaining replicas (known by id,
    /// reported by istgt under their zvol guid) are all connected and healthy.
    async fn check_scale_down(
        &self,
        name: &str,
        remaining: &std::collections::BTreeMap<String, String>,
    ) -> Result<(), ManagerError> {
        let report = self.control.replica().await?;
        if report.status != "Healthy" {
            return Err(ManagerError::Drf(format!(
                "volume {name} is {} (must be Healthy to remove a replica)",
                report.status
            )));
        }
        for (id, guid) in remaining {
            let healthy = report
                .replica_by_guid(guid)
                .is_some_and(|r| r.mode == "Healthy");
            if !healthy {
                return Err(ManagerError::Drf(format!(
                    "replica {id} (zvol guid {guid}) of volume {name} is not connected and Healthy yet"
                )));
            }
        }
        Ok(())
    }

    /// Lowers the replication and consistency factors to `drf` in istgt.conf (dropping the
    /// removed replicas' lines) and in the CV's spec.
    async fn lower_factors(
        &self,
        name: &str,
        drf: i64,
        removed: &[String],
    ) -> Result<(), ManagerError> {
        let cf = drf / 2 + 1;
        let mut edits = vec![
            (
                "  ReplicationFactor".to_string(),
                format!("  ReplicationFactor {drf}"),
            ),
            (
                "  ConsistencyFactor".to_string(),
                format!("  ConsistencyFactor {cf}"),
            ),
            (
                "  DesiredReplicationFactor".to_string(),
                format!("  DesiredReplicationFactor {drf}"),
            ),
        ];
        edits.extend(
            removed
                .iter()
                .map(|id| (format!("  Replica {id}"), String::new())),
        );
        self.conf.edit(|t| Ok(update_or_append(t, &edits))).await?;
        update_cv(&self.api, name, |cv| {
            cv.spec.replication_factor = Some(drf);
            cv.spec.consistency_factor = Some(cf);
            Ok::<_, ManagerError>(true)
        })
        .await
        .map_err(api_err(format!("updating factors of CStorVolume {name}")))?;
        Ok(())
    }

    async fn record_drf(&self, cv: &CStorVolume, drf: i64) {
        let msg = format!("Successfully updated the desiredReplicationFactor to {drf}");
        self.record(
            cv,
            EventType::Normal,
            "Updated",
            "UpdateReplicationFactor",
            &msg,
        )
        .await;
    }

    /// Resizes through istgt (`RESIZE <vol> <spec.capacity> 10 60`), upstream's steps.
    pub async fn resize(&self, cv: &CStorVolume) -> Result<(), ManagerError> {
        let name = name_of(cv);
        let want = cv.spec.capacity.clone().map(|q| q.0).unwrap_or_default();
        let from = cv
            .status
            .as_ref()
            .and_then(|s| s.capacity.clone())
            .map(|q| q.0)
            .unwrap_or_default();
        update_cv(&self.api, &name, |cv| {
            let st = cv.status.get_or_insert_with(Default::default);
            if conditions::find(st.conditions.as_ref(), RESIZE_CONDITION).is_some() {
                return Ok::<_, ManagerError>(false);
            }
            Ok(conditions::set(
                &mut st.conditions,
                resize_condition(RESIZE_MESSAGE.into()),
            ))
        })
        .await
        .map_err(api_err(format!(
            "adding the resize condition to CStorVolume {name}"
        )))?;
        self.record(
            cv,
            EventType::Normal,
            "Updated",
            "StartResize",
            "Updated resize conditions",
        )
        .await;
        match self.control.resize(&name, &want).await {
            Ok(()) => {
                if self.cfg.conf_options.lun_storage == LunStorage::Replicated {
                    let line = format!("  LUN0 Storage {want} 32K");
                    self.conf
                        .edit(|t| replace_line_containing(t, "LUN0 Storage", &line))
                        .await?;
                }
                update_cv(&self.api, &name, |cv| {
                    let capacity = cv.spec.capacity.clone();
                    let st = cv.status.get_or_insert_with(Default::default);
                    conditions::remove(&mut st.conditions, RESIZE_CONDITION);
                    st.capacity = capacity;
                    Ok::<_, ManagerError>(true)
                })
                .await
                .map_err(api_err(format!(
                    "recording the new capacity of CStorVolume {name}"
                )))?;
                let msg = format!("successfully resized volume from {from} to {want}");
                self.record(cv, EventType::Normal, "Updated", "Resize", &msg)
                    .await;
                Ok(())
            }
            Err(e) => {
                let text = e.to_string();
                update_cv(&self.api, &name, |cv| {
                    let st = cv.status.get_or_insert_with(Default::default);
                    // The failure becomes the message of the resize condition, if still there.
                    if conditions::find(st.conditions.as_ref(), RESIZE_CONDITION).is_none() {
                        return Ok::<_, ManagerError>(false);
                    }
                    Ok(conditions::set(
                        &mut st.conditions,
                        resize_condition(text.clone()),
                    ))
                })
                .await
                .map_err(api_err(format!(
                    "recording the resize failure on CStorVolume {name}"
                )))?;
                self.record(
                    cv,
                    EventType::Warning,
                    "FailUpdate",
                    "Resize",
                    &format!("Failed to resize volume {name}: {e}"),
                )
                .await;
                Err(e.into())
            }
        }
    }

    /// Shutdown: phase `Offline`, no replica statuses (unless the phase was never set).
    pub async fn mark_offline(&self, name: &str) -> Result<(), ManagerError> {
        update_cv(&self.api, name, |cv| {
            let st = cv.status.get_or_insert_with(Default::default);
            if st.phase.as_ref().is_none_or(|p| p.as_str().is_empty()) {
                return Ok::<_, ManagerError>(false);
            }
            status::set_phase(st, CStorVolumePhase::Offline, now());
            st.replica_statuses = None;
            Ok(true)
        })
        .await
        .map(drop)
        .map_err(api_err(format!("marking CStorVolume {name} Offline")))
    }

    /// Publishes an Event on the CV through the shared [`Events`] helper. Repeats of the
    /// same reason and action fold into one series with a count (what upstream got from its
    /// fixed `<cv>.<phase>` event names for phase changes).
    async fn record(
        &self,
        cv: &CStorVolume,
        type_: EventType,
        reason: &str,
        action: &str,
        message: &str,
    ) {
        self.events
            .publish(cv, type_, reason, action, message)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cstor_api::cstor::{CStorVolumeReplicaDetails, CStorVolumeStatus};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn cv() -> CStorVolume {
        let mut cv = CStorVolume::new("pvc-1", Default::default());
        cv.metadata.uid = Some("u-1".into());
        cv.spec.target_ip = Some("10.0.0.1".into());
        cv.spec.capacity = Some(Quantity("5Gi".into()));
        cv.spec.replication_factor = Some(3);
        cv.spec.consistency_factor = Some(2);
        cv.spec.desired_replication_factor = Some(3);
        cv
    }

    #[test]
    fn validate_names_the_field() {
        assert_eq!(validate(&cv()), Ok(()));
        let mut c = cv();
        c.spec.target_ip = None;
        assert_eq!(validate(&c), Err("spec.targetIP is empty".into()));
        let mut c = cv();
        c.spec.capacity = Some(Quantity("0".into()));
        assert!(validate(&c).unwrap_err().contains("spec.capacity"));
        let mut c = cv();
        c.spec.consistency_factor = Some(4);
        assert!(validate(&c).unwrap_err().contains("smaller than"));
        let mut c = cv();
        c.spec.desired_replication_factor = Some(0);
        assert_eq!(validate(&c), Ok(()));
        c.version_details = Some(cstor_api::cstor::VersionDetails::at("3.6.0"));
        assert_eq!(
            validate(&c),
            Err("spec.desiredReplicationFactor is 0".into())
        );
    }

    #[test]
    fn resize_pending_compares_bytes() {
        let mut c = cv();
        assert!(!resize_pending(&c));
        c.status = Some(CStorVolumeStatus {
            capacity: Some(Quantity("5120Mi".into())),
            ..Default::default()
        });
        assert!(!resize_pending(&c));
        c.spec.capacity = Some(Quantity("6Gi".into()));
        assert!(resize_pending(&c));
    }

    #[test]
    fn drf_pending_on_conf_mismatch_or_scale_down() {
        let c = cv();
        assert!(!drf_pending(&c, "  DesiredReplicationFactor 3\n"));
        assert!(drf_pending(&c, "  DesiredReplicationFactor 2\n"));
        let mut c = cv();
        let two = |ids: &[&str]| CStorVolumeReplicaDetails {
            known_replicas: Some(
                ids.iter()
                    .map(|i| (i.to_string(), format!("g{i}")))
                    .collect(),
            ),
            ..Default::default()
        };
        c.spec.replica_details = Some(two(&["a"]));
        c.status = Some(CStorVolumeStatus {
            replica_details: Some(two(&["a", "b"])),
            ..Default::default()
        });
        assert!(drf_pending(&c, "  DesiredReplicationFactor 3\n"));
    }
}
