//! Pool expansion: a raid group none of whose disks is in the pool is added
//! whole; a stripe group with some new disks gets those disks added.

use cstor_api::cstor::{CStorPoolInstance, ConditionStatus, pool_conditions};
use kube::runtime::events::EventType;

use super::{Context, Result, condition, devices::ResolvedPool, set_condition};
use crate::engine::{PoolTopology, RaidGroup, RaidType};

/// Adds what is missing; returns whether anything was added.
pub async fn expand(
    ctx: &Context,
    cspi: &mut CStorPoolInstance,
    resolved: &ResolvedPool,
    topology: &PoolTopology,
) -> Result<bool> {
    let mut added = Vec::new();
    for (class, group, names) in &resolved.groups {
        let unused: Vec<(String, String)> = group
            .disks
            .iter()
            .zip(names)
            .filter(|(p, _)| !topology.contains_path(p))
            .map(|(p, n)| (p.clone(), n.clone()))
            .collect();
        if unused.is_empty() {
            continue;
        }
        let to_add = if unused.len() == group.disks.len() {
            group.clone()
        } else if group.raid_type == RaidType::Stripe {
            RaidGroup::new(RaidType::Stripe, unused.iter().map(|(p, _)| p.clone()))
        } else {
            // A non-stripe group with one disk missing is a replacement, handled elsewhere.
            continue;
        };
        if let Err(e) = ctx.engine.add_raid_group(&ctx.pool, *class, &to_add).await {
            ctx.event(
                cspi,
                EventType::Warning,
                "PoolExpansion",
                format!("Failed to expand pool... Error: {e}"),
            )
            .await;
            return Err(e.into());
        }
        let bds: Vec<&str> = unused.iter().map(|(_, n)| n.as_str()).collect();
        ctx.event(
            cspi,
            EventType::Normal,
            "PoolExpansion",
            format!(
                "Pool Expanded Successfully By Adding BlockDevices: {bds:?} raid type: {}",
                group.raid_type
            ),
        )
        .await;
        added.extend(bds.into_iter().map(str::to_owned));
    }
    let status = cspi.status.get_or_insert_with(Default::default);
    if !added.is_empty() {
        set_condition(
            &mut status.conditions,
            condition(
                pool_conditions::POOL_EXPANSION,
                ConditionStatus::True,
                pool_conditions::POOL_EXPANSION_IN_PROGRESS,
                format!("Pool expansion is in progress: added {added:?}"),
            ),
        );
    } else if status
        .conditions
        .as_ref()
        .is_some_and(|c| c.iter().any(|c| c.type_ == pool_conditions::POOL_EXPANSION))
    {
        set_condition(
            &mut status.conditions,
            condition(
                pool_conditions::POOL_EXPANSION,
                ConditionStatus::False,
                pool_conditions::POOL_EXPANSION_SUCCESSFUL,
                "Pool expansion was successfull by adding blockdevices/raid groups",
            ),
        );
    }
    Ok(!added.is_empty())
}
