//! Disk replacement. A BDC carrying `openebs.io/bd-predecessor=<old BD>` marks
//! its block device as the replacement of `<old BD>`: `zpool replace` runs once (skipped when the
//! new path is already in the pool), the resilver is followed on every pass, and when it has
//! completed the old claim is released, the old disk's labels cleared and the annotation dropped.

use cstor_api::{
    constants::{annotation as annotations, finalizer as finalizers, label as labels},
    cstor::{CStorPoolInstance, ConditionStatus, pool_conditions},
    ndm::BlockDeviceClaim,
};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, ListParams, PostParams},
    runtime::events::EventType,
};

use super::{
    Context, Error, Result, condition,
    devices::{ResolvedPool, candidate_paths},
    set_condition,
};
use crate::engine::{PoolTopology, ResilverProgress};

/// Runs pending replacements; returns how many are still resilvering.
pub async fn replace(
    ctx: &Context,
    cspi: &mut CStorPoolInstance,
    resolved: &ResolvedPool,
    topology: &PoolTopology,
) -> Result<usize> {
    let Some(cspc) = cspi.labels().get(labels::CSTOR_POOL_CLUSTER).cloned() else {
        return Ok(0);
    };
    let bdcs: Api<BlockDeviceClaim> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let claims = bdcs
        .list(&ListParams::default().labels(&format!("{}={cspc}", labels::CSTOR_POOL_CLUSTER)))
        .await?
        .items;
    let mut in_progress = 0;
    for (new_bd, new_path) in &resolved.path_of {
        let Some(r) = Replacement::find(&claims, new_bd, new_path) else {
            continue;
        };
        let old_paths = candidate_paths(ctx, &r.old_bd).await.unwrap_or_default();
        if !topology.contains_path(new_path) {
            start(ctx, cspi, topology, &r, &old_paths).await?;
            in_progress += 1;
            continue;
        }
        if !resilvered(ctx, new_path).await? {
            in_progress += 1;
            continue;
        }
        finish(ctx, cspi, &bdcs, &claims, &r, &old_paths).await?;
    }
    set_replacement_condition(cspi, in_progress);
    Ok(in_progress)
}

/// A block device of the pool whose claim marks it as the replacement of another one.
struct Replacement<'a> {
    old_bd: String,
    new_bd: &'a str,
    new_path: &'a str,
    /// The new block device's claim, which carries the marker.
    claim: &'a BlockDeviceClaim,
}

impl<'a> Replacement<'a> {
    /// The replacement `new_bd` is part of, if its claim carries the predecessor marker.
    fn find(claims: &'a [BlockDeviceClaim], new_bd: &'a str, new_path: &'a str) -> Option<Self> {
        let claim = claims
            .iter()
            .find(|c| c.spec.block_device_name.as_deref() == Some(new_bd))?;
        let old_bd = claim
            .annotations()
            .get(annotations::BD_PREDECESSOR)
            .cloned()?;
        Some(Self {
            old_bd,
            new_bd,
            new_path,
            claim,
        })
    }
}

/// Runs `zpool replace` of the old disk (the one of its paths the pool uses) by the new one.
async fn start(
    ctx: &Context,
    cspi: &CStorPoolInstance,
    topology: &PoolTopology,
    r: &Replacement<'_>,
    old_paths: &[String],
) -> Result<()> {
    let (old_bd, new_bd) = (&r.old_bd, r.new_bd);
    let Some(old_path) = old_paths.iter().find(|p| topology.contains_path(p)) else {
        return Err(Error::invalid(
            format!("replacement of {old_bd} by {new_bd}"),
            "none of the old block device's paths is in use by the pool",
        ));
    };
    ctx.engine
        .replace_disk(&ctx.pool, old_path, r.new_path)
        .await?;
    ctx.event_as(
        cspi,
        EventType::Normal,
        "BlockDeviceReplacement",
        "Replacing",
        format!("Replacement of {old_bd} BlockDevice with {new_bd} BlockDevice is in-Progress"),
    )
    .await;
    Ok(())
}

/// Whether the resilver onto the new disk, already in the pool, has completed.
async fn resilvered(ctx: &Context, new_path: &str) -> Result<bool> {
    let current = ctx.engine.pool_topology(&ctx.pool).await?;
    Ok(current.resilver_progress(new_path) == ResilverProgress::Completed)
}

/// After the resilver: clears the old disk's labels, releases its claim, then drops the marker
/// from the new claim (re-runnable in this order).
async fn finish(
    ctx: &Context,
    cspi: &CStorPoolInstance,
    bdcs: &Api<BlockDeviceClaim>,
    claims: &[BlockDeviceClaim],
    r: &Replacement<'_>,
    old_paths: &[String],
) -> Result<()> {
    for p in old_paths.iter().take(1) {
        if let Err(e) = ctx.engine.labelclear(p).await {
            tracing::warn!(device = %p, error = %e, "labelclear of replaced disk failed");
        }
    }
    release_old_claim(bdcs, claims, &r.old_bd).await?;
    let mut new_claim = bdcs.get(&r.claim.name_any()).await?;
    if let Some(a) = new_claim.metadata.annotations.as_mut() {
        a.remove(annotations::BD_PREDECESSOR);
    }
    bdcs.replace(&r.claim.name_any(), &PostParams::default(), &new_claim)
        .await?;
    ctx.event_as(
        cspi,
        EventType::Normal,
        "BlockDeviceReplacement",
        "Replaced",
        format!("Resilvering is successful on BlockDevice {}", r.new_bd),
    )
    .await;
    Ok(())
}

/// Deletes the old block device's claim, dropping the CSPC finalizer first.
async fn release_old_claim(
    bdcs: &Api<BlockDeviceClaim>,
    claims: &[BlockDeviceClaim],
    old_bd: &str,
) -> Result<()> {
    let Some(mut old_claim) = claims
        .iter()
        .find(|c| c.spec.block_device_name.as_deref() == Some(old_bd))
        .cloned()
    else {
        return Ok(());
    };
    let name = old_claim.name_any();
    if old_claim.finalizers().iter().any(|f| f == finalizers::CSPC) {
        old_claim.finalizers_mut().retain(|f| f != finalizers::CSPC);
        bdcs.replace(&name, &PostParams::default(), &old_claim)
            .await?;
    }
    match bdcs.delete(&name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// DiskReplacement: True while disks resilver; False (succeeded) once none does, when it was set.
fn set_replacement_condition(cspi: &mut CStorPoolInstance, in_progress: usize) {
    let status = cspi.status.get_or_insert_with(Default::default);
    let had = status.conditions.as_ref().is_some_and(|c| {
        c.iter()
            .any(|c| c.type_ == pool_conditions::DISK_REPLACEMENT)
    });
    if in_progress > 0 {
        set_condition(
            &mut status.conditions,
            condition(
                pool_conditions::DISK_REPLACEMENT,
                ConditionStatus::True,
                pool_conditions::BLOCK_DEVICE_REPLACEMENT_IN_PROGRESS,
                format!("Resilvering {in_progress} no.of blockdevices"),
            ),
        );
    } else if had {
        set_condition(
            &mut status.conditions,
            condition(
                pool_conditions::DISK_REPLACEMENT,
                ConditionStatus::False,
                pool_conditions::BLOCK_DEVICE_REPLACEMENT_SUCCEEDED,
                "Blockdevice replacement was successful",
            ),
        );
    }
}
