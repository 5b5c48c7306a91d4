//! Conditions and events that tell a user why a volume is not Bound or not Healthy (issue item
//! 3), and the plain-update status writes (no status subresource).
//!
//! CVC `status.condition` entries added by this operator (besides upstream's `Resizing`):
//! - `ProvisionFailed` while a Pending CVC cannot be bound; reason is the cause
//!   (`InvalidSpec`, `PolicyNotFound`, `PoolClusterNotFound`, `NotEnoughPools`,
//!   `TargetServiceIPPending`, `APIError`...), message says what is wrong and what to do.
//!   Removed when the CVC binds.
//! - `ScalingReplicas` while a replica scale up/down is in progress or refused.
//! - `VolumeNotHealthy` while the bound volume's CStorVolume is not `Healthy`; the message lists
//!   the replicas that are not healthy and the state of their pools.
//!
//! On the CStorVolume, condition `VolumeHealthy` (`True`/`False`) carries the same summary.

use std::collections::BTreeMap;

use cstor_api::{
    constants::label,
    cstor::{
        CStorPoolInstance, CStorVolume, CStorVolumeCondition, CStorVolumeConfig,
        CStorVolumeConfigCondition, CStorVolumePhase, CStorVolumeReplica, CStorVolumeReplicaPhase,
    },
};
use kube::{ResourceExt, api::PostParams, runtime::events::EventType};

use super::{Context, Error, is_conflict, pv_name};

/// CVC condition: the CVC cannot be bound (yet).
pub const PROVISION_FAILED: &str = "ProvisionFailed";
/// CVC condition: replica scaling in progress or refused.
pub const SCALING_REPLICAS: &str = "ScalingReplicas";
/// CVC condition: the bound volume is not healthy.
pub const VOLUME_NOT_HEALTHY: &str = "VolumeNotHealthy";
/// CV condition type summarising replica health.
pub const CV_VOLUME_HEALTHY: &str = "VolumeHealthy";

/// Replaces the CVC (spec, metadata and status in one plain update) and refreshes `cvc` with
/// the stored object.
pub async fn replace_cvc(cvc: &mut CStorVolumeConfig, ctx: &Context) -> Result<(), Error> {
    let name = cvc.name_any();
    ctx.count_write();
    *cvc = ctx
        .api::<CStorVolumeConfig>()
        .replace(&name, &PostParams::default(), cvc)
        .await
        .map_err(Error::kube(format!("update CStorVolumeConfig {name}")))?;
    ctx.caches().wrote(cvc);
    Ok(())
}

/// The condition of type `type_`, if present.
pub fn condition<'a>(
    cvc: &'a CStorVolumeConfig,
    type_: &str,
) -> Option<&'a CStorVolumeConfigCondition> {
    crate::conditions::find(cvc.status.conditions.as_ref(), type_)
}

/// Sets (or replaces) a condition in memory. Returns whether anything changed.
pub fn set_condition(
    cvc: &mut CStorVolumeConfig,
    type_: &str,
    reason: &str,
    message: &str,
) -> bool {
    let new = CStorVolumeConfigCondition {
        type_: type_.to_owned(),
        reason: reason.to_owned(),
        message: message.to_owned(),
        ..Default::default()
    };
    crate::conditions::set(&mut cvc.status.conditions, new)
}

/// Removes a condition in memory. Returns whether anything changed.
pub fn clear_condition(cvc: &mut CStorVolumeConfig, type_: &str) -> bool {
    crate::conditions::remove(&mut cvc.status.conditions, type_)
}

/// Records why a Pending CVC could not be bound: `ProvisionFailed` condition and a Warning
/// `Provisioning` event, both only when the cause changed (a retry loop does not flood the API).
pub async fn record_provision_failure(cvc: &CStorVolumeConfig, ctx: &Context, err: &Error) {
    if let Error::Kube { source, .. } = err
        && is_conflict(source)
    {
        return;
    }
    if matches!(err, Error::Waiting { .. }) && younger_than(cvc, WAITING_GRACE) {
        return;
    }
    let mut cvc = cvc.clone();
    let message = err.to_string();
    if !set_condition(&mut cvc, PROVISION_FAILED, err.reason(), &message) {
        return;
    }
    let event_type = match err {
        Error::Waiting { .. } => EventType::Normal,
        _ => EventType::Warning,
    };
    ctx.event(&cvc, event_type, "Provisioning", &message).await;
    if let Err(e) = replace_cvc(&mut cvc, ctx).await {
        tracing::debug!(error = %e, "could not record the provisioning condition");
    }
}

/// How long a new CVC may wait on another component (a ClusterIP being allocated, replicas
/// being created) before the wait is worth a `ProvisionFailed` condition and an event: a
/// volume bound within it costs no status write and no event for its waits.
pub const WAITING_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// Whether `obj` was created less than `grace` ago (objects without a creation time are
/// treated as new).
fn younger_than<K: kube::Resource>(obj: &K, grace: std::time::Duration) -> bool {
    obj.meta().creation_timestamp.as_ref().is_none_or(|t| {
        let age = k8s_openapi::jiff::Timestamp::now().duration_since(t.0);
        age < k8s_openapi::jiff::SignedDuration::try_from(grace).unwrap_or_default()
    })
}

/// Records a scaling problem/progress (condition `ScalingReplicas` + event) when it changed.
pub async fn record_scaling(
    cvc: &mut CStorVolumeConfig,
    ctx: &Context,
    event_type: EventType,
    event_reason: &str,
    reason: &str,
    message: &str,
) -> Result<(), Error> {
    if set_condition(cvc, SCALING_REPLICAS, reason, message) {
        ctx.event(cvc, event_type, event_reason, message).await;
        replace_cvc(cvc, ctx).await?;
    }
    Ok(())
}

fn replica_healthy(phase: &CStorVolumeReplicaPhase) -> bool {
    matches!(phase, CStorVolumeReplicaPhase::Healthy)
}

/// Builds the health summary of a bound volume: `None` when the CV is Healthy, otherwise
/// `(reason, message)`.
pub fn health_summary(
    cv: Option<&CStorVolume>,
    cvrs: &[CStorVolumeReplica],
    pools: &BTreeMap<String, CStorPoolInstance>,
) -> Option<(String, String)> {
    let Some(cv) = cv else {
        return Some((
            "CStorVolumeMissing".to_owned(),
            "the CStorVolume of this volume does not exist".to_owned(),
        ));
    };
    let phase = cv.status.as_ref().and_then(|s| s.phase.clone());
    if phase == Some(CStorVolumePhase::Healthy) {
        return None;
    }
    let mut parts = Vec::new();
    match &phase {
        None | Some(CStorVolumePhase::Init) => parts.push(
            "the target has not reported the volume yet (CStorVolume phase Init): check the target pod"
                .to_owned(),
        ),
        Some(p) => parts.push(format!("CStorVolume phase is {p}")),
    }
    for cvr in cvrs {
        let rphase = cvr
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        if replica_healthy(&rphase) {
            continue;
        }
        let pool = cvr
            .labels()
            .get(label::CSPI_NAME)
            .cloned()
            .unwrap_or_default();
        let pool_state = match pools.get(&pool) {
            None => "pool not found".to_owned(),
            Some(p) => {
                let s = p.status.as_ref();
                let ph = s.and_then(|s| s.phase.clone()).unwrap_or_default();
                let ro = if s.is_some_and(|s| s.read_only) {
                    ", read-only"
                } else {
                    ""
                };
                format!(
                    "pool phase {}{ro}",
                    if ph.as_str().is_empty() {
                        "unknown"
                    } else {
                        ph.as_str()
                    }
                )
            }
        };
        let rp = if rphase.as_str().is_empty() {
            "not created yet by the pool manager"
        } else {
            rphase.as_str()
        };
        parts.push(format!(
            "replica {} on {pool}: {rp} ({pool_state})",
            cvr.name_any()
        ));
    }
    let reason = match phase {
        None => "Init".to_owned(),
        Some(p) => p.as_str().to_owned(),
    };
    Some((reason, parts.join("; ")))
}

/// How long a new volume's target may take to report it (CStorVolume phase still empty or
/// `Init`) before the volume is called not healthy: a target pod starting is not a fault, and
/// flagging every new volume for its first seconds would cost each one two CVC writes, a CV
/// write and an event.
pub const TARGET_START_GRACE: std::time::Duration = std::time::Duration::from_secs(120);

/// Whether `cv` is a new volume whose target has not reported yet, within
/// [`TARGET_START_GRACE`] of its creation.
fn target_starting(cv: &CStorVolume) -> bool {
    let reported = cv
        .status
        .as_ref()
        .and_then(|s| s.phase.as_ref())
        .is_some_and(|p| *p != CStorVolumePhase::Init);
    !reported && younger_than(cv, TARGET_START_GRACE)
}

/// Keeps `VolumeNotHealthy` on the CVC and `VolumeHealthy` on the CV in line with the CV's
/// state; writes only when the summary changed. A target still starting
/// ([`TARGET_START_GRACE`]) is left alone; the periodic resync looks again.
pub async fn sync_health(cvc: &mut CStorVolumeConfig, ctx: &Context) -> Result<(), Error> {
    let pv = pv_name(cvc);
    let caches = ctx.caches();
    let cv = ctx.cached(&caches.volumes, &pv).await?;
    if cv.as_ref().is_some_and(target_starting) {
        return Ok(());
    }
    let healthy = cv
        .as_ref()
        .and_then(|c| c.status.as_ref())
        .and_then(|s| s.phase.as_ref())
        == Some(&CStorVolumePhase::Healthy);
    let summary = if healthy {
        None
    } else {
        let cvrs = ctx
            .cached_list(&caches.replicas, label::PERSISTENT_VOLUME, &pv)
            .await?;
        let mut pools: BTreeMap<String, CStorPoolInstance> = BTreeMap::new();
        for cvr in &cvrs {
            if let Some(p) = cvr.labels().get(label::CSPI_NAME)
                && let Some(cspi) = ctx.cached(&caches.pools, p).await?
            {
                pools.insert(p.clone(), cspi);
            }
        }
        health_summary(cv.as_ref(), &cvrs, &pools)
    };
    let changed = match &summary {
        None => clear_condition(cvc, VOLUME_NOT_HEALTHY),
        Some((reason, message)) => set_condition(cvc, VOLUME_NOT_HEALTHY, reason, message),
    };
    if changed {
        if let Some((reason, message)) = &summary {
            ctx.event(
                cvc,
                EventType::Warning,
                "VolumeNotHealthy",
                message.as_str(),
            )
            .await;
            tracing::info!(cvc = %pv, reason, message, "volume not healthy");
        }
        replace_cvc(cvc, ctx).await?;
    }
    if let Some(mut cv) = cv {
        let (status, reason, message) = match &summary {
            None => (
                "True",
                "Healthy".to_owned(),
                "all replicas are healthy".to_owned(),
            ),
            Some((r, m)) => ("False", r.clone(), m.clone()),
        };
        let st = cv.status.get_or_insert_with(Default::default);
        let healthy = CStorVolumeCondition {
            type_: CV_VOLUME_HEALTHY.to_owned(),
            status: status.to_owned(),
            reason: Some(reason),
            message: Some(message),
            ..Default::default()
        };
        if crate::conditions::set(&mut st.conditions, healthy) {
            // The conditions list is replaced as a whole: the patch carries the resource
            // version it was computed from, so a volume manager write meanwhile is not lost.
            let patch = serde_json::json!({
                "metadata": {"resourceVersion": cv.metadata.resource_version},
                "status": {"conditions": st.conditions},
            });
            match super::patch_cv(ctx, &pv, patch).await {
                Ok(_) => {}
                // The volume manager wrote the CV meanwhile: its watch event brings us back.
                Err(Error::Kube { source, .. }) if is_conflict(&source) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff};

    fn cv(age_secs: i64, phase: Option<CStorVolumePhase>) -> CStorVolume {
        let mut cv = CStorVolume::new("pvc-1", Default::default());
        cv.metadata.creation_timestamp = Some(Time(
            jiff::Timestamp::now() - jiff::SignedDuration::from_secs(age_secs),
        ));
        cv.status = phase.map(|p| cstor_api::cstor::CStorVolumeStatus {
            phase: Some(p),
            ..Default::default()
        });
        cv
    }

    #[test]
    fn a_short_wait_is_not_reported() {
        let mut cvc = CStorVolumeConfig::new("pvc-1", Default::default());
        cvc.metadata.creation_timestamp = Some(Time(jiff::Timestamp::now()));
        assert!(younger_than(&cvc, WAITING_GRACE));
        cvc.metadata.creation_timestamp = Some(Time(
            jiff::Timestamp::now() - jiff::SignedDuration::from_secs(31),
        ));
        assert!(!younger_than(&cvc, WAITING_GRACE));
    }

    #[test]
    fn a_new_target_gets_time_to_report_and_no_more() {
        assert!(target_starting(&cv(5, None)));
        assert!(target_starting(&cv(5, Some(CStorVolumePhase::Init))));
        // Reported (healthy or not): judged at once.
        assert!(!target_starting(&cv(5, Some(CStorVolumePhase::Offline))));
        assert!(!target_starting(&cv(5, Some(CStorVolumePhase::Healthy))));
        // Still Init after the grace: a fault worth reporting.
        let late = TARGET_START_GRACE.as_secs() as i64 + 1;
        assert!(!target_starting(&cv(late, Some(CStorVolumePhase::Init))));
        assert!(!target_starting(&cv(late, None)));
    }
}
