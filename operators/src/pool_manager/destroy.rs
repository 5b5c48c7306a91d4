//! CSPI deletion (with the replica guard upstream lacks): the pool is destroyed
//! only when no replica lives on it — neither a CVR of this CSPI nor a zvol in the pool.
//! Otherwise the finalizer stays, a `PoolDeletionBlocked` condition and a Warning Event say why,
//! and the pass is retried.

use cstor_api::{
    constants::label as labels,
    cstor::{CStorPoolInstance, CStorPoolInstancePhase, ConditionStatus},
};
use kube::{
    ResourceExt,
    api::{ListParams, PostParams},
    runtime::events::EventType,
};

use super::{
    Context, DELETION_BLOCKED, Error, REPLICAS_EXIST, Result, condition, devices, set_condition,
};

/// Replicas that still live on this pool: CVR names and zvol names.
pub async fn replicas_on_pool(ctx: &Context, cspi: &CStorPoolInstance) -> Result<Vec<String>> {
    let uid = cspi.uid().unwrap_or_default();
    let cvrs = ctx
        .cvrs()
        .list(&ListParams::default().labels(&format!("{}={uid}", labels::CSPI_UID)))
        .await?;
    let mut out: Vec<String> = cvrs
        .items
        .iter()
        .map(|c| format!("cvr/{}", c.name_any()))
        .collect();
    if ctx.engine.pool_exists(&ctx.pool).await? {
        out.extend(
            ctx.engine
                .provisioned_replicas(&ctx.pool)
                .await?
                .into_iter()
                .map(|z| format!("zvol/{z}")),
        );
    }
    Ok(out)
}

/// Destroys the pool and clears its disks' labels, unless replicas remain.
pub async fn destroy(ctx: &Context, cspi: &CStorPoolInstance) -> Result<()> {
    let replicas = replicas_on_pool(ctx, cspi).await?;
    if !replicas.is_empty() {
        let msg = format!(
            "pool {} still holds replicas {replicas:?}: delete their volumes (or move the replicas) first; the pool is kept until then",
            ctx.pool
        );
        let mut latest = ctx.cspis().get(&cspi.name_any()).await?;
        let status = latest.status.get_or_insert_with(Default::default);
        if set_condition(
            &mut status.conditions,
            condition(
                DELETION_BLOCKED,
                ConditionStatus::True,
                REPLICAS_EXIST,
                msg.clone(),
            ),
        ) {
            ctx.cspis()
                .replace(&cspi.name_any(), &PostParams::default(), &latest)
                .await?;
            ctx.event(cspi, EventType::Warning, "PoolDeletionBlocked", msg.clone())
                .await;
        }
        return Err(Error::Waiting(msg));
    }
    // Paths before destroying: the BlockDevices may be gone later.
    let mut paths = Vec::new();
    for bd in cspi.spec.block_device_names() {
        match devices::candidate_paths(ctx, bd).await {
            Ok(p) => paths.push(p[0].clone()),
            Err(e) => tracing::warn!(bd, error = %e, "no path for labelclear"),
        }
    }
    if let Err(e) = ctx.engine.destroy_pool(&ctx.pool).await {
        let mut latest = ctx.cspis().get(&cspi.name_any()).await?;
        latest.status.get_or_insert_with(Default::default).phase =
            Some(CStorPoolInstancePhase::DeletionFailed);
        ctx.cspis()
            .replace(&cspi.name_any(), &PostParams::default(), &latest)
            .await?;
        ctx.event(
            cspi,
            EventType::Warning,
            "FailDestroy",
            format!("Failed to destroy pool {}: {e}", ctx.pool),
        )
        .await;
        return Err(e.into());
    }
    for p in &paths {
        if let Err(e) = ctx.engine.labelclear(p).await {
            tracing::warn!(device = %p, error = %e, "labelclear failed");
        }
    }
    ctx.event(
        cspi,
        EventType::Normal,
        "Destroyed",
        format!("Pool {} destroyed", ctx.pool),
    )
    .await;
    Ok(())
}
