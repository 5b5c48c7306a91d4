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
        .await?;
    let mut in_progress = 0;
    for (new_bd, new_path) in &resolved.path_of {
        let Some(claim) = claims
            .items
            .iter()
            .find(|c| c.spec.block_device_name.as_deref() == Some(new_bd.as_str()))
        else {
            continue;
        };
        let Some(old_bd) = claim
            .annotations()
            .get(annotations::BD_PREDECESSOR)
            .cloned()
        else {
            continue;
        };
        let old_paths = candidate_paths(ctx, &old_bd).await.unwrap_or_default();
        if !topology.contains_path(new_path) {
            let Some(old_path) = old_paths.iter().find(|p| topology.contains_path(p)) else {
                return Err(Error::invalid(
                    format!("replacement of {old_bd} by {new_bd}"),
                    "none of the old block device's paths is in use by the pool",
                ));
            };
            ctx.engine
                .replace_disk(&ctx.pool, old_path, new_path)
                .await?;
            ctx.event_as(
                cspi,
                EventType::Normal,
                "BlockDeviceReplacement",
                "Replacing",
                format!(
                    "Replacement of {old_bd} BlockDevice with {new_bd} BlockDevice is in-Progress"
                ),
            )
            .await;
            in_progress += 1;
            continue;
        }
        // The new disk is in the pool: follow the resilver.
        let current = ctx.engine.pool_topology(&ctx.pool).await?;
        if current.resilver_progress(new_path) != ResilverProgress::Completed {
            in_progress += 1;
            continue;
        }
        for p in old_paths.iter().take(1) {
            if let Err(e) = ctx.engine.labelclear(p).await {
                tracing::warn!(device = %p, error = %e, "labelclear of replaced disk failed");
            }
        }
        // Release the old claim, then drop the marker (re-runnable in this order).
        if let Some(mut old_claim) = claims
            .items
            .iter()
            .find(|c| c.spec.block_device_name.as_deref() == Some(old_bd.as_str()))
            .cloned()
        {
            let name = old_claim.name_any();
            if old_claim.finalizers().iter().any(|f| f == finalizers::CSPC) {
                old_claim.finalizers_mut().retain(|f| f != finalizers::CSPC);
                bdcs.replace(&name, &PostParams::default(), &old_claim)
                    .await?;
            }
            match bdcs.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        let mut new_claim = bdcs.get(&claim.name_any()).await?;
        if let Some(a) = new_claim.metadata.annotations.as_mut() {
            a.remove(annotations::BD_PREDECESSOR);
        }
        bdcs.replace(&claim.name_any(), &PostParams::default(), &new_claim)
            .await?;
        ctx.event_as(
            cspi,
            EventType::Normal,
            "BlockDeviceReplacement",
            "Replaced",
            format!("Resilvering is successful on BlockDevice {new_bd}"),
        )
        .await;
    }
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
    Ok(in_progress)
}
