//! CSPI status: phase = zpool health, capacity, replica counts, read-only
//! threshold, and each block device's `devLink`.

use cstor_api::cstor::{
    CStorPoolInstance, CStorPoolInstanceCapacity, CStorPoolInstancePhase, ZfsCapacityAttributes,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::runtime::events::EventType;

use super::{Context, Result, devices::ResolvedPool};
use crate::engine::{ReplicaStatus, Size};

/// upstream: each value with `K` turned into `k`, read as a Kubernetes quantity.
fn quantity(size: &Size) -> Quantity {
    Quantity(size.text.replace('K', "k"))
}

/// Fills `cspi.status` and the devLinks from the pool.
pub async fn refresh(
    ctx: &Context,
    cspi: &mut CStorPoolInstance,
    resolved: &ResolvedPool,
) -> Result<()> {
    for group in cspi
        .spec
        .data_raid_groups
        .iter_mut()
        .chain(cspi.spec.write_cache_raid_groups.iter_mut().flatten())
    {
        for bd in &mut group.block_devices {
            if let Some(p) = resolved.path_of.get(&bd.block_device_name) {
                bd.dev_link = Some(p.clone());
            }
        }
    }
    let health = ctx.engine.pool_health(&ctx.pool).await?;
    let capacity = ctx.engine.pool_capacity(&ctx.pool).await?;
    let provisioned = ctx.engine.provisioned_replicas(&ctx.pool).await?;
    let healthy = match ctx.engine.replica_stats(None).await {
        Ok(stats) => stats
            .iter()
            .filter(|s| s.status == ReplicaStatus::Healthy)
            .count(),
        Err(e) => {
            tracing::debug!(error = %e, "zfs stats unavailable; healthy replicas = 0");
            0
        }
    };
    let threshold = cspi
        .spec
        .pool_config
        .as_ref()
        .map(|c| c.ro_threshold())
        .unwrap_or(cstor_api::cstor::PoolConfig::DEFAULT_RO_THRESHOLD);
    let mut read_only = health.read_only;
    if let Some(pct) = capacity.used_percent() {
        let over = threshold != 100 && pct as i64 >= threshold;
        if over && !read_only {
            ctx.engine.set_pool_read_only(&ctx.pool, true).await?;
            read_only = true;
            ctx.event(cspi, EventType::Warning, "PoolReadOnlyThreshold",
                "Pool storage limit reached to read only threshold limit. Pool expansion is required to make its volume replicas RW").await;
        } else if !over && read_only {
            ctx.engine.set_pool_read_only(&ctx.pool, false).await?;
            read_only = false;
            ctx.event(
                cspi,
                EventType::Normal,
                "PoolReadOnlyThreshold",
                "Pool is below the read only threshold limit: replicas are RW again",
            )
            .await;
        }
    }
    let total = match capacity.total_bytes() {
        Some(b) => Quantity(b.to_string()),
        None => Quantity("0".into()),
    };
    let status = cspi.status.get_or_insert_with(Default::default);
    status.phase = Some(CStorPoolInstancePhase::from(health.health.as_str()));
    status.read_only = read_only;
    status.provisioned_replicas = provisioned.len() as i32;
    status.healthy_replicas = healthy as i32;
    status.capacity = Some(CStorPoolInstanceCapacity {
        used: quantity(&capacity.used),
        free: quantity(&capacity.available),
        total,
        zfs: ZfsCapacityAttributes {
            logical_used: capacity
                .logical_used
                .as_ref()
                .map(quantity)
                .unwrap_or_else(|| quantity(&capacity.used)),
            ..Default::default()
        },
        ..Default::default()
    });
    Ok(())
}
