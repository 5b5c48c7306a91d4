//! CSPC status: provisioned/desired/healthy instances and conditions.

use cstor_api::cstor::{
    CStorPoolCluster, CStorPoolInstance, CStorPoolInstancePhase, ConditionStatus, pool_conditions,
};
use k8s_openapi::api::apps::v1::Deployment;
use kube::{Api, ResourceExt};

use super::{Context, Result};
use crate::pool_manager::{condition, set_condition};

/// Counts and the PoolManagerAvailable condition into `cspc.status`.
pub async fn compute(
    ctx: &Context,
    cspc: &mut CStorPoolCluster,
    cspis: &[CStorPoolInstance],
) -> Result<()> {
    let ns = cspc.namespace().unwrap_or_default();
    let deps: Api<Deployment> = ctx.api(&ns);
    let mut healthy = 0;
    let mut unavailable = Vec::new();
    for cspi in cspis {
        let ready = deps
            .get_opt(&cspi.name_any())
            .await?
            .and_then(|d| d.status)
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0)
            >= 1;
        if !ready {
            unavailable.push(cspi.name_any());
        }
        let online = cspi.status.as_ref().and_then(|s| s.phase.as_ref())
            == Some(&CStorPoolInstancePhase::Online);
        if ready && online {
            healthy += 1;
        }
    }
    let desired = cspc.spec.pools().len() as i32;
    let status = cspc.status.get_or_insert_with(Default::default);
    status.desired_instances = Some(desired);
    status.provisioned_instances = Some(cspis.len() as i32);
    status.healthy_instances = Some(healthy);
    if !cspis.is_empty() {
        let c = if unavailable.is_empty() {
            condition(
                pool_conditions::POOL_MANAGER_AVAILABLE,
                ConditionStatus::True,
                pool_conditions::MINIMUM_POOL_MANAGERS_AVAILABLE,
                "Pool manager(s) have minimum available pod",
            )
        } else {
            condition(
                pool_conditions::POOL_MANAGER_AVAILABLE,
                ConditionStatus::False,
                pool_conditions::MINIMUM_POOL_MANAGERS_UNAVAILABLE,
                format!(
                    "Pool manager(s): {} :does not have minimum available pod",
                    unavailable.join(" ")
                ),
            )
        };
        set_condition(&mut status.conditions, c);
    }
    Ok(())
}
