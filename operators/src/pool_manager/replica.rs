//! The CVR controller (as upstream): CVRs labelled with this pool's CSPI UID become
//! zvols `<pool>/<cstorvolume.openebs.io/name>`; deletion runs `zfs destroy -R` and then drops
//! the `cstorvolumereplica.openebs.io/finalizer`.

use std::sync::Arc;

use cstor_api::{
    constants::{annotation as annotations, finalizer as finalizers, label as labels},
    cstor::{
        CStorSnapshotInfo, CStorVolumeReplica, CStorVolumeReplicaCapacityDetails,
        CStorVolumeReplicaPhase as Phase,
    },
    naming::replica_id_from_uid,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{
    ResourceExt,
    api::PostParams,
    runtime::{controller::Action, events::EventType},
};

use super::{Context, Error, Result, resync};
use crate::engine::{ReplicaCloneSpec, ReplicaStatus, ReplicaVolumeSpec};

/// Reconcile metrics of the CVR controller.
static METRICS: cstor_api::metrics::Reconciles = cstor_api::metrics::Reconciles::new("cvr");

pub async fn reconcile(cvr: Arc<CStorVolumeReplica>, ctx: Arc<Context>) -> Result<Action> {
    let started = std::time::Instant::now();
    let result = reconcile_once(cvr.clone(), ctx.clone()).await;
    METRICS.observe(started, result.is_ok());
    if result.is_ok() {
        ctx.backoff.succeeded(&*cvr);
        super::FAILING.set_failing(ctx.backoff.failing());
    }
    result
}

async fn reconcile_once(cvr: Arc<CStorVolumeReplica>, ctx: Arc<Context>) -> Result<Action> {
    if cvr.labels().get(labels::CSPI_UID) != Some(&ctx.cspi_uid) {
        return Ok(Action::await_change());
    }
    let api = ctx.cvrs();
    crate::finalizer::finalized(&api, finalizers::CVR, cvr, |event| async {
        match event {
            crate::finalizer::Step::Apply(c) => apply(&c, &ctx).await,
            crate::finalizer::Step::Cleanup(c) => cleanup(&c, &ctx).await,
        }
    })
    .await
}

/// Waiting on another component is retried at a steady pace; errors back off per CVR.
pub fn error_policy(cvr: Arc<CStorVolumeReplica>, err: &Error, ctx: Arc<Context>) -> Action {
    let delay = super::retry_delay(&*cvr, err, &ctx);
    tracing::warn!(cvr = %cvr.name_any(), error = %err, retry_in = ?delay, "cvr reconcile failed");
    Action::requeue(delay)
}

/// The zvol of a CVR, or why the CVR is invalid.
pub fn zvol(ctx: &Context, cvr: &CStorVolumeReplica) -> Result<String> {
    let volume = cvr
        .labels()
        .get(labels::CSTOR_VOLUME_NAME)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            Error::invalid("CVR label cstorvolume.openebs.io/name", "missing or empty")
        })?;
    if cvr.spec.target_ip.as_deref().unwrap_or("").is_empty() {
        return Err(Error::invalid("CVR spec.targetIP", "missing or empty"));
    }
    if cvr.spec.capacity.as_deref().unwrap_or("").is_empty() {
        return Err(Error::invalid("CVR spec.capacity", "missing or empty"));
    }
    Ok(format!("{}/{volume}", ctx.pool))
}

/// Phase from `zfs stats` (upstream mapping).
pub fn phase_of(status: &ReplicaStatus, quorum: u64) -> Phase {
    match status {
        ReplicaStatus::Healthy => Phase::Healthy,
        ReplicaStatus::Offline => Phase::Offline,
        ReplicaStatus::Degraded if quorum == 1 => Phase::Degraded,
        ReplicaStatus::Degraded => Phase::NewReplicaDegraded,
        ReplicaStatus::Rebuilding if quorum == 1 => Phase::Rebuilding,
        ReplicaStatus::Rebuilding => Phase::ReconstructingNewReplica,
        ReplicaStatus::Other(_) => Phase::Error,
    }
}

/// The phase `zfs stats <zvol>` gives. uZFS lists only zvols opened for a target: a zvol
/// without `io.openebs:targetip` (a restore replica waiting for its data) has no entry, and is
/// `Offline` (it exists, but serves no target).
async fn stats_phase(ctx: &Context, zvol: &str) -> Result<Phase> {
    let stats = ctx.engine.replica_stats(Some(zvol)).await?;
    Ok(stats
        .iter()
        .find(|s| s.name == zvol)
        .map(|s| phase_of(&s.status, s.quorum))
        .unwrap_or(Phase::Offline))
}

/// `io.openebs:targetip` of an existing zvol follows the CVR (as upstream, extended to
/// any change of `spec.targetIP`):
/// - a restore replica (`isRestoreVol: "true"`) stays without a target until the CVR carries
///   `openebs.io/restore-completed: "true"`; then it gets `spec.targetIP` and both annotations
///   are removed (persisted with the status update of this pass);
/// - any other replica whose target differs is re-pointed, clearing the old address first
///   (uZFS refuses a direct change, see [`crate::engine::DataEngine::set_target_ip`]).
async fn sync_target_ip(ctx: &Context, cvr: &mut CStorVolumeReplica, zvol: &str) -> Result<()> {
    let anns = cvr.annotations();
    let is_true = |k: &str| anns.get(k).map(String::as_str) == Some("true");
    let restore = is_true(annotations::IS_RESTORE_VOL);
    let completed = is_true(annotations::RESTORE_COMPLETED);
    if restore && !completed {
        return Ok(());
    }
    let want = cvr.spec.target_ip.clone().unwrap_or_default();
    let before = ctx.engine.target_ip(zvol).await?;
    if ctx.engine.set_target_ip(zvol, &want).await? {
        let message = match before {
            Some(old) => format!("Replica volume {zvol} moved from target {old} to {want}"),
            None => format!("Replica volume {zvol} connects to target {want}"),
        };
        ctx.event(cvr, EventType::Normal, "TargetIPUpdated", message)
            .await;
    }
    if completed {
        let anns = cvr.annotations_mut();
        anns.remove(annotations::RESTORE_COMPLETED);
        anns.remove(annotations::IS_RESTORE_VOL);
    }
    Ok(())
}

async fn apply(cvr: &CStorVolumeReplica, ctx: &Context) -> Result<Action> {
    let Some(cvr) = &super::reconcile_version(ctx, &ctx.cvrs(), cvr).await? else {
        return Ok(resync(ctx));
    };
    let mut work = cvr.clone();
    let outcome = pass(ctx, &mut work).await;
    let status = work.status.get_or_insert_with(Default::default);
    let (phase, message) = match &outcome {
        Ok(p) => (Some(p.clone()), None),
        Err(Error::Invalid { .. }) => (
            Some(Phase::Offline),
            outcome.as_ref().err().map(|e| e.to_string()),
        ),
        Err(e) => (None, Some(e.to_string())),
    };
    if let Some(p) = phase
        && status.phase.as_ref() != Some(&p)
    {
        status.phase = Some(p);
        status.last_transition_time = Some(Time(k8s_openapi::jiff::Timestamp::now()));
    }
    status.message = message;
    if work != *cvr {
        work.status
            .get_or_insert_with(Default::default)
            .last_update_time = Some(Time(k8s_openapi::jiff::Timestamp::now()));
        ctx.cvrs()
            .replace(&work.name_any(), &PostParams::default(), &work)
            .await?;
    }
    outcome.map(|_| resync(ctx))
}

/// Creates the zvol when needed and returns the phase to record.
async fn pass(ctx: &Context, cvr: &mut CStorVolumeReplica) -> Result<Phase> {
    let zvol = match zvol(ctx, cvr) {
        Ok(z) => z,
        Err(e) => {
            ctx.event(cvr, EventType::Warning, "FailValidate", e.to_string())
                .await;
            return Err(e);
        }
    };
    let _guard = ctx.lock.lock().await;
    if !ctx.engine.pool_exists(&ctx.pool).await? {
        return Err(Error::Waiting(format!("pool {} not found", ctx.pool)));
    }
    let phase = cvr
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default();
    if ctx.engine.dataset_exists(&zvol).await? {
        if cvr.spec.replica_id.as_deref().unwrap_or("").is_empty() {
            let props = ctx
                .engine
                .get_properties(&zvol, &["io.openebs:zvol_replica_id"])
                .await?;
            cvr.spec.replica_id = props.get("io.openebs:zvol_replica_id").cloned().flatten();
        }
        sync_target_ip(ctx, cvr, &zvol).await?;
    } else if matches!(phase, Phase::Empty | Phase::Init | Phase::Recreate) {
        create(ctx, cvr, &zvol, &phase).await?;
    } else {
        return Ok(Phase::Offline);
    }
    let new_phase = match stats_phase(ctx, &zvol).await {
        Ok(p) => p,
        Err(e) => {
            ctx.event(
                cvr,
                EventType::Warning,
                "FailStatusSync",
                format!("zfs stats {zvol}: {e}"),
            )
            .await;
            return Err(e);
        }
    };
    match ctx.engine.replica_capacity(&zvol).await {
        Ok(c) => {
            cvr.status.get_or_insert_with(Default::default).capacity =
                Some(CStorVolumeReplicaCapacityDetails {
                    total: c.total.text,
                    used: c.used.text,
                    ..Default::default()
                });
        }
        Err(e) => tracing::warn!(zvol, error = %e, "replica capacity unavailable"),
    }
    sync_snapshots(ctx, cvr, &zvol, &new_phase).await;
    Ok(new_phase)
}

/// `status.snapshots` follows the zvol's snapshots (`zfs listsnap`, upstream syncCVRStatus):
/// new names get their `logicalreferenced`, vanished names are dropped. While the replica is
/// rebuilding, `pendingSnapshots` holds the snapshots its peers (the CVRs of the same volume)
/// report and it does not have yet; it is cleared once the replica is Healthy. A failed listing
/// (exit 11, EAGAIN, is common) keeps the recorded state for the next pass.
async fn sync_snapshots(ctx: &Context, cvr: &mut CStorVolumeReplica, zvol: &str, phase: &Phase) {
    let list = match ctx.engine.list_snapshots(zvol).await {
        Ok(l) => l,
        Err(e) => {
            tracing::debug!(zvol, error = %e, "snapshot listing unavailable");
            return;
        }
    };
    let peers = if matches!(phase, Phase::Rebuilding | Phase::ReconstructingNewReplica) {
        peer_snapshots(ctx, cvr).await
    } else {
        None
    };
    let status = cvr.status.get_or_insert_with(Default::default);
    let known = status.snapshots.take().unwrap_or_default();
    let mut now = std::collections::BTreeMap::new();
    for name in list.snapshots {
        if let Some(info) = known.get(&name) {
            now.insert(name, info.clone());
            continue;
        }
        match ctx.engine.snapshot_sizes(zvol, &name).await {
            Ok(s) => {
                now.insert(
                    name,
                    CStorSnapshotInfo {
                        logical_referenced: s.logical_referenced,
                        ..Default::default()
                    },
                );
            }
            Err(e) => {
                tracing::debug!(zvol, snapshot = name, error = %e, "snapshot size unavailable")
            }
        }
    }
    if let Some(mut union) = peers {
        // Recomputed from the peers each pass: a snapshot gone from every peer leaves too.
        union.retain(|k, _| !now.contains_key(k));
        status.pending_snapshots = Some(union);
    }
    if let Some(pending) = status.pending_snapshots.as_mut() {
        pending.retain(|k, _| !now.contains_key(k));
    }
    if matches!(phase, Phase::Healthy)
        || status
            .pending_snapshots
            .as_ref()
            .is_some_and(|p| p.is_empty())
    {
        status.pending_snapshots = None;
    }
    status.snapshots = (!now.is_empty()).then_some(now);
}

/// The union of the snapshots the other CVRs of this volume report; `None` when they cannot be
/// listed (the previous pending set is kept).
async fn peer_snapshots(
    ctx: &Context,
    cvr: &CStorVolumeReplica,
) -> Option<std::collections::BTreeMap<String, CStorSnapshotInfo>> {
    let pv = cvr.labels().get(labels::PERSISTENT_VOLUME)?;
    let selector = format!("{}={pv}", labels::PERSISTENT_VOLUME);
    let peers = match ctx
        .cvrs()
        .list(&kube::api::ListParams::default().labels(&selector))
        .await
    {
        Ok(l) => l.items,
        Err(e) => {
            tracing::debug!(error = %e, "cannot list the peers of {}", cvr.name_any());
            return None;
        }
    };
    let mut union = std::collections::BTreeMap::new();
    for peer in peers.iter().filter(|p| p.name_any() != cvr.name_any()) {
        for (name, info) in peer
            .status
            .as_ref()
            .and_then(|s| s.snapshots.as_ref())
            .into_iter()
            .flatten()
        {
            union.entry(name.clone()).or_insert_with(|| info.clone());
        }
    }
    Some(union)
}

async fn create(
    ctx: &Context,
    cvr: &mut CStorVolumeReplica,
    zvol: &str,
    phase: &Phase,
) -> Result<()> {
    if cvr.spec.replica_id.as_deref().unwrap_or("").is_empty() {
        if matches!(phase, Phase::Empty | Phase::Init) {
            cvr.spec.replica_id = Some(replica_id_from_uid(&cvr.uid().unwrap_or_default()));
        } else {
            return Err(Error::invalid(
                "CVR spec.replicaid",
                "empty on a replica to recreate",
            ));
        }
    }
    let volume = zvol.rsplit('/').next().unwrap_or_default().to_owned();
    let replica_id = cvr.spec.replica_id.clone().unwrap_or_default();
    let target_ip = cvr.spec.target_ip.clone().unwrap_or_default();
    let anns = cvr.annotations().clone();
    let cloned = cvr.labels().get(labels::CLONED).map(String::as_str) == Some("true");
    let result = if cloned {
        let source_volume = anns
            .get(annotations::SOURCE_VOLUME)
            .cloned()
            .unwrap_or_default();
        let snapshot = anns.get(annotations::SNAPSHOT).cloned().unwrap_or_default();
        if source_volume.is_empty() || snapshot.is_empty() {
            return Err(Error::invalid(
                "clone CVR annotations",
                "openebs.io/source-volume and openebs.io/snapshot are required",
            ));
        }
        ctx.engine
            .clone_replica(&ReplicaCloneSpec {
                pool: ctx.pool.clone(),
                volume,
                source_volume,
                snapshot,
                target_ip,
                zvol_workers: cvr.spec.zvol_workers.clone().filter(|w| !w.is_empty()),
                replica_id,
                cvr_name: cvr.name_any(),
            })
            .await
    } else {
        let restore = anns.get(annotations::IS_RESTORE_VOL).map(String::as_str) == Some("true");
        ctx.engine
            .create_replica(&ReplicaVolumeSpec {
                pool: ctx.pool.clone(),
                volume,
                capacity: cvr.spec.capacity.clone().unwrap_or_default(),
                quorum: *phase != Phase::Recreate,
                replica_id,
                cvr_name: cvr.name_any(),
                zvol_workers: cvr.spec.zvol_workers.clone().filter(|w| !w.is_empty()),
                target_ip: (!restore).then_some(target_ip),
            })
            .await
    };
    match result {
        Ok(()) => {
            ctx.event(
                cvr,
                EventType::Normal,
                "Created",
                format!("Replica volume {zvol} created"),
            )
            .await;
            Ok(())
        }
        Err(e) => {
            ctx.event(
                cvr,
                EventType::Warning,
                "FailCreate",
                format!("creating {zvol}: {e}"),
            )
            .await;
            Err(e.into())
        }
    }
}

async fn cleanup(cvr: &CStorVolumeReplica, ctx: &Context) -> Result<Action> {
    let volume = cvr
        .labels()
        .get(labels::CSTOR_VOLUME_NAME)
        .cloned()
        .unwrap_or_default();
    if volume.is_empty() {
        // Nothing was ever created for a CVR without a volume name.
        return Ok(Action::await_change());
    }
    let zvol = format!("{}/{volume}", ctx.pool);
    let _guard = ctx.lock.lock().await;
    if let Err(e) = ctx.engine.destroy_dataset(&zvol).await {
        let mut latest = ctx.cvrs().get(&cvr.name_any()).await?;
        latest.status.get_or_insert_with(Default::default).phase = Some(Phase::DeletionFailed);
        ctx.cvrs()
            .replace(&cvr.name_any(), &PostParams::default(), &latest)
            .await?;
        ctx.event(
            cvr,
            EventType::Warning,
            "FailDestroy",
            format!("zfs destroy -R {zvol}: {e}"),
        )
        .await;
        return Err(e.into());
    }
    Ok(Action::await_change())
}

/// Start-up pass (upstream's Add handler): every existing CVR of this pool that is past
/// `""`/`Init` is set to `Recreate`, so a zvol lost while the pool manager was down is created
/// again with `quorum=off` (it must be rebuilt from its peers before serving reads); a zvol
/// that still exists only gets its phase back from `zfs stats`. Returns how many were marked.
pub async fn mark_recreate(ctx: &Context) -> Result<usize> {
    let selector = format!("{}={}", labels::CSPI_UID, ctx.cspi_uid);
    let list = ctx
        .cvrs()
        .list(&kube::api::ListParams::default().labels(&selector))
        .await?;
    let mut marked = 0;
    for mut cvr in list.items {
        if cvr.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let status = cvr.status.get_or_insert_with(Default::default);
        let phase = status.phase.clone().unwrap_or_default();
        if matches!(phase, Phase::Empty | Phase::Init | Phase::Recreate) {
            continue;
        }
        status.phase = Some(Phase::Recreate);
        status.last_transition_time = Some(Time(k8s_openapi::jiff::Timestamp::now()));
        match ctx
            .cvrs()
            .replace(&cvr.name_any(), &PostParams::default(), &cvr)
            .await
        {
            Ok(_) => marked += 1,
            // Changed or deleted meanwhile: the controller sees the newer object anyway.
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
        ctx.event(
            &cvr,
            EventType::Normal,
            "Synced",
            format!("pool manager started: replica {} (was {phase}) is checked and recreated if missing", cvr.name_any()),
        )
        .await;
    }
    Ok(marked)
}
