//! The CSPC reconcile: the finalizer helper is the single top-level action. `apply` releases
//! claims of destroyed pools, validates each pool spec, claims block devices, creates missing
//! CSPIs (only once every claim is bound) and Deployments, propagates new raid groups, scales
//! down, and writes the status with a plain replace. `cleanup` deletes the CSPIs, waits for
//! their pools to be destroyed, then releases every claim.

use std::sync::Arc;

use cstor_api::{
    constants::{annotation as annotations, finalizer as finalizers, label as labels},
    cstor::{CStorPoolCluster, CStorPoolInstance, ConditionStatus},
};
use k8s_openapi::api::apps::v1::Deployment;
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, ListParams, PostParams},
    runtime::{controller::Action, events::EventType},
};

use super::{
    Context, Error, POOL_SPEC_VALID, Result, SCALE_DOWN_BLOCKED,
    bdc::{self, Claim},
    cspi, deployment, replace, scale_down, status, sync,
};
use crate::pool_manager::{condition, set_condition};

pub async fn reconcile(cspc: Arc<CStorPoolCluster>, ctx: Arc<Context>) -> Result<Action> {
    if cspc
        .annotations()
        .get(annotations::RECONCILE_DISABLE)
        .map(String::as_str)
        == Some("true")
    {
        ctx.event(
            &*cspc,
            EventType::Warning,
            "ReconcileDisabled",
            "reconcile is disabled via reconcile.openebs.io/disable annotation",
        )
        .await;
        return Ok(Action::await_change());
    }
    let api: Api<CStorPoolCluster> = ctx.api(&cspc.namespace().unwrap_or_default());
    crate::pool_manager::finalizer::finalized(&api, finalizers::CSPC, cspc, |event| async {
        match event {
            crate::pool_manager::finalizer::Step::Apply(c) => apply(&c, &ctx).await,
            crate::pool_manager::finalizer::Step::Cleanup(c) => cleanup(&c, &ctx).await,
        }
    })
    .await
}

pub fn error_policy(_cspc: Arc<CStorPoolCluster>, err: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(error = %err, "cspc reconcile failed");
    Action::requeue(ctx.resync.min(std::time::Duration::from_secs(5)))
}

async fn list_cspis(ctx: &Context, cspc: &CStorPoolCluster) -> Result<Vec<CStorPoolInstance>> {
    let api: Api<CStorPoolInstance> = ctx.api(&cspc.namespace().unwrap_or_default());
    Ok(api
        .list(&ListParams::default().labels(&format!(
            "{}={}",
            labels::CSTOR_POOL_CLUSTER,
            cspc.name_any()
        )))
        .await?
        .items)
}

/// For CSPIs being deleted whose pool is destroyed (no pool-protection): release their claims,
/// then drop the CSPC finalizer. Returns the CSPIs still present afterwards.
async fn finish_deleted_cspis(
    ctx: &Context,
    cspc: &CStorPoolCluster,
) -> Result<Vec<CStorPoolInstance>> {
    let api: Api<CStorPoolInstance> = ctx.api(&cspc.namespace().unwrap_or_default());
    let mut left = Vec::new();
    for mut c in list_cspis(ctx, cspc).await? {
        let deleting = c.metadata.deletion_timestamp.is_some();
        let protected = c
            .finalizers()
            .iter()
            .any(|f| f == finalizers::POOL_PROTECTION);
        if deleting && !protected && c.finalizers().iter().any(|f| f == finalizers::CSPC) {
            let bds: Vec<String> = c.spec.block_device_names().map(str::to_owned).collect();
            bdc::release(ctx, cspc, Some(&bds)).await?;
            c.finalizers_mut().retain(|f| f != finalizers::CSPC);
            match api.replace(&c.name_any(), &PostParams::default(), &c).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
            continue;
        }
        left.push(c);
    }
    Ok(left)
}

async fn cleanup(cspc: &CStorPoolCluster, ctx: &Context) -> Result<Action> {
    let api: Api<CStorPoolInstance> = ctx.api(&cspc.namespace().unwrap_or_default());
    for c in list_cspis(ctx, cspc).await? {
        if c.metadata.deletion_timestamp.is_none() {
            match api.delete(&c.name_any(), &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    let left = finish_deleted_cspis(ctx, cspc).await?;
    if !left.is_empty() {
        let names: Vec<String> = left.iter().map(|c| c.name_any()).collect();
        let msg = format!(
            "waiting for pool(s) {names:?} to be destroyed by their pool manager before removing the CSPC finalizer"
        );
        ctx.event(cspc, EventType::Normal, "CSPCCleanup", msg.clone())
            .await;
        return Err(Error::Waiting(msg));
    }
    bdc::release(ctx, cspc, None).await?;
    Ok(Action::await_change())
}

async fn apply(cspc: &CStorPoolCluster, ctx: &Context) -> Result<Action> {
    let ns = cspc.namespace().unwrap_or_default();
    let cspi_api: Api<CStorPoolInstance> = ctx.api(&ns);
    let deps: Api<Deployment> = ctx.api(&ns);
    let mut existing = finish_deleted_cspis(ctx, cspc).await?;
    let mut invalid = Vec::new();
    let mut pending = Vec::new();
    for (i, pool) in cspc.spec.pools().iter().enumerate() {
        let host = match cspi::validate_pool(ctx, &ns, pool).await? {
            Ok(h) => h,
            Err(why) => {
                invalid.push(format!("spec.pools[{i}]: {why}"));
                continue;
            }
        };
        // Disks swapped in the spec (the CSPI still has the old one) are claimed as
        // replacements.
        let replacements = existing
            .iter()
            .find(|c| cspi::matches(c, pool))
            .map(|c| replace::pending(c, pool))
            .unwrap_or_default();
        // Claim every block device; a foreign claim makes the pool invalid.
        let mut usable = std::collections::BTreeMap::new();
        let mut foreign = None;
        for bd in pool.block_device_names() {
            let predecessor = replacements
                .iter()
                .find(|r| r.new == bd)
                .map(|r| r.old.as_str());
            match bdc::claim(ctx, cspc, bd, predecessor).await? {
                Claim::Usable => {
                    usable.insert(bd.to_owned(), true);
                }
                Claim::Pending => {
                    usable.insert(bd.to_owned(), false);
                }
                Claim::Foreign(why) => foreign = Some(why),
            }
        }
        if let Some(why) = foreign {
            invalid.push(format!("spec.pools[{i}]: {why}"));
            continue;
        }
        match existing.iter_mut().find(|c| cspi::matches(c, pool)) {
            None => {
                if usable.values().all(|u| *u) {
                    let new = cspi::build(ctx, cspc, pool, &host);
                    let created = cspi_api.create(&PostParams::default(), &new).await?;
                    ctx.event(
                        cspc,
                        EventType::Normal,
                        "Create",
                        format!("Pool Provisioned {} on {host}", created.name_any()),
                    )
                    .await;
                    existing.push(created);
                } else {
                    pending.push(format!(
                        "spec.pools[{i}]: waiting for block device claims to be bound"
                    ));
                }
            }
            Some(c) => {
                let replaced = replace::apply(c, &replacements, &usable);
                if replaced.len() < replacements.len() {
                    pending.push(format!(
                        "spec.pools[{i}]: waiting for the claims of replacement block devices to be bound"
                    ));
                }
                if !replaced.is_empty() {
                    *c = cspi_api
                        .replace(&c.name_any(), &PostParams::default(), c)
                        .await?;
                    for r in &replaced {
                        ctx.event(
                            cspc,
                            EventType::Normal,
                            "BlockDeviceReplacement",
                            format!(
                                "block device {} of {} is being replaced by {}",
                                r.old,
                                c.name_any(),
                                r.new
                            ),
                        )
                        .await;
                    }
                }
                let targets: Vec<&str> = replacements.iter().map(|r| r.new.as_str()).collect();
                if sync::sync_cspi(cspc, pool, &host, c) {
                    *c = cspi_api
                        .replace(&c.name_any(), &PostParams::default(), c)
                        .await?;
                    ctx.event(
                        cspc,
                        EventType::Normal,
                        "PoolConfigSync",
                        format!(
                            "pool settings of spec.pools[{i}] handed to {}",
                            c.name_any()
                        ),
                    )
                    .await;
                }
                if expand(c, pool, &usable, &targets) {
                    *c = cspi_api
                        .replace(&c.name_any(), &PostParams::default(), c)
                        .await?;
                    ctx.event(
                        cspc,
                        EventType::Normal,
                        "PoolExpansion",
                        format!("new raid groups / disks handed to {}", c.name_any()),
                    )
                    .await;
                }
            }
        }
    }
    // Deployments for CSPIs lacking one.
    for c in existing
        .iter()
        .filter(|c| c.metadata.deletion_timestamp.is_none())
    {
        let d = deployment::build(&ctx.deploy, &ctx.version, cspc, c);
        if let Some(mut current) = deps.get_opt(&c.name_any()).await? {
            if sync::sync_deployment(&d, &mut current) {
                match deps
                    .replace(&c.name_any(), &PostParams::default(), &current)
                    .await
                {
                    Ok(_) => {}
                    // Changed meanwhile: the next pass compares again.
                    Err(kube::Error::Api(s)) if s.code == 409 => {}
                    Err(e) => return Err(e.into()),
                }
            }
        } else {
            match deps.create(&PostParams::default(), &d).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => {
                    ctx.event(
                        cspc,
                        EventType::Warning,
                        "PoolDeploymentCreate",
                        format!(
                            "Failed to create pool deployment for CSP {}: {e}",
                            c.name_any()
                        ),
                    )
                    .await;
                    return Err(e.into());
                }
            }
        }
    }
    let orphans: Vec<CStorPoolInstance> = existing
        .iter()
        .filter(|c| !cspc.spec.pools().iter().any(|p| cspi::matches(c, p)))
        .cloned()
        .collect();
    let blocked = scale_down::scale_down(ctx, cspc, &orphans).await?;

    let mut work = cspc.clone();
    let cspis = list_cspis(ctx, cspc).await?;
    status::compute(ctx, &mut work, &cspis).await?;
    let st = work.status.get_or_insert_with(Default::default);
    if invalid.is_empty() {
        if st
            .conditions
            .as_ref()
            .is_some_and(|c| c.iter().any(|c| c.type_ == POOL_SPEC_VALID))
        {
            set_condition(
                &mut st.conditions,
                condition(
                    POOL_SPEC_VALID,
                    ConditionStatus::True,
                    "Valid",
                    "every pool spec is valid",
                ),
            );
        }
    } else {
        let msg = invalid.join("; ");
        if set_condition(
            &mut st.conditions,
            condition(
                POOL_SPEC_VALID,
                ConditionStatus::False,
                "InvalidPoolSpec",
                msg.clone(),
            ),
        ) {
            ctx.event(cspc, EventType::Warning, "InvalidPoolSpec", msg)
                .await;
        }
    }
    if blocked.is_empty() {
        if st
            .conditions
            .as_ref()
            .is_some_and(|c| c.iter().any(|c| c.type_ == SCALE_DOWN_BLOCKED))
        {
            set_condition(
                &mut st.conditions,
                condition(
                    SCALE_DOWN_BLOCKED,
                    ConditionStatus::False,
                    "NoReplicas",
                    "no removed pool holds replicas",
                ),
            );
        }
    } else {
        set_condition(
            &mut st.conditions,
            condition(
                SCALE_DOWN_BLOCKED,
                ConditionStatus::True,
                "VolumeReplicasExist",
                blocked.join("; "),
            ),
        );
    }
    if work.status != cspc.status {
        let api: Api<CStorPoolCluster> = ctx.api(&ns);
        let mut latest = api.get(&cspc.name_any()).await?;
        latest.status = work.status;
        api.replace(&cspc.name_any(), &PostParams::default(), &latest)
            .await?;
    }
    Ok(if pending.is_empty() {
        Action::requeue(ctx.resync)
    } else {
        Action::requeue(ctx.resync.min(std::time::Duration::from_secs(2)))
    })
}

/// Appends data raid groups of `pool` that are new to `c` (every disk usable), and new usable
/// disks of stripe groups; `replacing` (new devices of pending replacements) are never added.
/// Returns whether `c` changed.
fn expand(
    c: &mut CStorPoolInstance,
    pool: &cstor_api::cstor::PoolSpec,
    usable: &std::collections::BTreeMap<String, bool>,
    replacing: &[&str],
) -> bool {
    let mut changed = false;
    let stripe = pool
        .pool_config
        .as_ref()
        .map(|p| p.data_raid_group_type.as_str() == "stripe")
        .unwrap_or(false);
    for g in &pool.data_raid_groups {
        let names: Vec<&str> = g
            .block_devices
            .iter()
            .map(|b| b.block_device_name.as_str())
            .collect();
        let present = c.spec.data_raid_groups.iter_mut().find(|cg| {
            cg.block_devices
                .iter()
                .any(|b| names.contains(&b.block_device_name.as_str()))
        });
        match present {
            None => {
                if names.iter().all(|n| usable.get(*n) == Some(&true))
                    && !names.iter().any(|n| replacing.contains(n))
                {
                    c.spec.data_raid_groups.push(g.clone());
                    changed = true;
                }
            }
            Some(cg) if stripe => {
                for b in &g.block_devices {
                    if !cg
                        .block_devices
                        .iter()
                        .any(|x| x.block_device_name == b.block_device_name)
                    {
                        if replacing.contains(&b.block_device_name.as_str()) {
                            continue;
                        }
                        if usable.get(&b.block_device_name) != Some(&true) {
                            break;
                        }
                        cg.block_devices.push(b.clone());
                        changed = true;
                    }
                }
            }
            Some(_) => {}
        }
    }
    changed
}
