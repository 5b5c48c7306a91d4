//! The CSPC reconcile: the finalizer helper is the single top-level action. `apply` releases
//! claims of destroyed pools, validates each pool spec, claims block devices, creates missing
//! CSPIs (only once every claim is bound) and Deployments, propagates new raid groups, scales
//! down, and writes the status with a plain replace. `cleanup` deletes the CSPIs, waits for
//! their pools to be destroyed, then releases every claim.

use std::{collections::BTreeMap, sync::Arc};

use cstor_api::{
    constants::{annotation as annotations, finalizer as finalizers, label as labels},
    cstor::{CStorPoolCluster, CStorPoolInstance, ConditionStatus, PoolCondition, PoolSpec},
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

/// Reconcile metrics of the CSPC controller.
static METRICS: cstor_api::metrics::Reconciles = cstor_api::metrics::Reconciles::new("cspc");

pub async fn reconcile(cspc: Arc<CStorPoolCluster>, ctx: Arc<Context>) -> Result<Action> {
    let started = std::time::Instant::now();
    let result = reconcile_once(cspc.clone(), ctx.clone()).await;
    METRICS.observe(started, result.is_ok());
    if result.is_ok() {
        ctx.backoff.succeeded(&*cspc);
        METRICS.set_failing(ctx.backoff.failing());
    }
    result
}

async fn reconcile_once(cspc: Arc<CStorPoolCluster>, ctx: Arc<Context>) -> Result<Action> {
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
    crate::finalizer::finalized(&api, finalizers::CSPC, cspc, |event| async {
        match event {
            crate::finalizer::Step::Apply(c) => apply(&c, &ctx).await,
            crate::finalizer::Step::Cleanup(c) => cleanup(&c, &ctx).await,
        }
    })
    .await
}

/// How long after a failed pass on `cspc` to try again: waiting on another component at a
/// steady pace, errors with per-CSPC exponential backoff.
pub fn retry_delay(cspc: &CStorPoolCluster, err: &Error, ctx: &Context) -> std::time::Duration {
    match err {
        Error::Waiting(_) => ctx.resync.min(std::time::Duration::from_secs(5)),
        _ => ctx.backoff.failed(cspc),
    }
}

pub fn error_policy(cspc: Arc<CStorPoolCluster>, err: &Error, ctx: Arc<Context>) -> Action {
    let delay = retry_delay(&cspc, err, &ctx);
    METRICS.set_failing(ctx.backoff.failing());
    tracing::warn!(cspc = %cspc.name_any(), error = %err, retry_in = ?delay, "cspc reconcile failed");
    Action::requeue(delay)
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
    let mut existing = finish_deleted_cspis(ctx, cspc).await?;
    let cspc = &match reconcile_version(ctx, cspc, &existing).await? {
        Ok(cspc) => cspc,
        Err(stop) => return Ok(stop),
    };
    let mut invalid = Vec::new();
    let mut pending = Vec::new();
    for (i, pool) in cspc.spec.pools().iter().enumerate() {
        match apply_pool(ctx, cspc, i, pool, &mut existing).await? {
            PoolOutcome::Done => {}
            PoolOutcome::Invalid(why) => invalid.push(format!("spec.pools[{i}]: {why}")),
            PoolOutcome::Pending(what) => pending.push(format!("spec.pools[{i}]: {what}")),
        }
    }
    ensure_deployments(ctx, cspc, &existing).await?;
    let blocked = scale_down_removed_pools(ctx, cspc, &existing).await?;
    write_status(ctx, cspc, &invalid, &blocked).await?;
    Ok(if pending.is_empty() {
        Action::requeue(ctx.resync)
    } else {
        Action::requeue(ctx.resync.min(std::time::Duration::from_secs(2)))
    })
}

/// Upstream's version steps of a CSPC sync: empty `versionDetails` are filled in (at the
/// version label of the first CSPI, else this operator's version), a pending `desired` is
/// reconciled (see [`crate::version`]), and a CSPC that was at another release when this pass
/// read it is not worked on (Warning `CSPC Reconcile`; the pass after its version reconcile
/// goes on). Gives the CSPC to go on with, or the action that ends this pass.
async fn reconcile_version(
    ctx: &Context,
    cspc: &CStorPoolCluster,
    cspis: &[CStorPoolInstance],
) -> Result<std::result::Result<CStorPoolCluster, Action>> {
    use crate::version::{VersionError, populate, should_reconcile};
    let api: Api<CStorPoolCluster> = ctx.api(&cspc.namespace().unwrap_or_default());
    let name = cspc.name_any();
    let failed = |e: VersionError| match e {
        VersionError::Kube(e) => Error::Kube(e),
        other => Error::Waiting(other.to_string()),
    };
    let initial = cspis
        .iter()
        .find_map(|c| c.labels().get(labels::VERSION).filter(|v| !v.is_empty()))
        .cloned()
        .unwrap_or_else(|| ctx.version.clone());
    let read = populate(&api, cspc, &initial)
        .await
        .map_err(failed)?
        .unwrap_or_else(|| cspc.clone());
    let cspc = match crate::version::reconcile_version(&api, &ctx.events, &read, &ctx.version).await
    {
        Ok(written) => written.unwrap_or_else(|| read.clone()),
        Err(VersionError::Invalid(reason)) => {
            tracing::warn!(cspc = %name, %reason, "version reconcile failed");
            return Ok(Err(Action::requeue(ctx.resync)));
        }
        Err(e) => return Err(failed(e)),
    };
    if !should_reconcile(&read, &ctx.version) {
        ctx.event(
            &read,
            EventType::Warning,
            "CSPC Reconcile",
            format!(
                "Can not reconcile CSPC {name} as cspc operator version is {} but cspc version is {}; upgrade it (cstor-migrate upgrade cstor-cspc {name})",
                ctx.version,
                crate::version::current(&read)
            ),
        )
        .await;
        return Ok(Err(Action::await_change()));
    }
    Ok(Ok(cspc))
}

/// What one pass did with one pool spec.
enum PoolOutcome {
    /// Its CSPI exists and has been brought up to date, or been created.
    Done,
    /// The spec cannot be used; the reason goes into the PoolSpecValid condition.
    Invalid(String),
    /// Something is still being waited for (claims to be bound); the CSPC is requeued early.
    Pending(&'static str),
}

/// The block devices of one pool spec, claimed.
struct Claims {
    /// Disks swapped in the spec (the CSPI still has the old one), claimed as replacements.
    replacements: Vec<replace::Replacement>,
    /// Every block device of the pool spec, and whether its claim is bound.
    usable: BTreeMap<String, bool>,
}

/// Validates one pool spec, claims its block devices, then creates its CSPI or updates the
/// existing one (replacements, pool settings, expansion).
async fn apply_pool(
    ctx: &Context,
    cspc: &CStorPoolCluster,
    i: usize,
    pool: &PoolSpec,
    existing: &mut Vec<CStorPoolInstance>,
) -> Result<PoolOutcome> {
    let ns = cspc.namespace().unwrap_or_default();
    let host = match cspi::validate_pool(ctx, &ns, pool).await? {
        Ok(h) => h,
        Err(why) => return Ok(PoolOutcome::Invalid(why)),
    };
    let replacements = existing
        .iter()
        .find(|c| cspi::matches(c, pool))
        .map(|c| replace::pending(c, pool))
        .unwrap_or_default();
    let claims = match claim_block_devices(ctx, cspc, pool, replacements).await? {
        Ok(claims) => claims,
        Err(why) => return Ok(PoolOutcome::Invalid(why)),
    };
    let Some(c) = existing.iter_mut().find(|c| cspi::matches(c, pool)) else {
        if !claims.usable.values().all(|u| *u) {
            return Ok(PoolOutcome::Pending(
                "waiting for block device claims to be bound",
            ));
        }
        let created = create_cspi(ctx, cspc, pool, &host).await?;
        existing.push(created);
        return Ok(PoolOutcome::Done);
    };
    update_cspi(ctx, cspc, i, pool, &host, c, &claims).await
}

/// Claims every block device of the pool (a replacement with its predecessor). Returns why the
/// pool is invalid when a device is claimed by someone else.
async fn claim_block_devices(
    ctx: &Context,
    cspc: &CStorPoolCluster,
    pool: &PoolSpec,
    replacements: Vec<replace::Replacement>,
) -> Result<Result<Claims, String>> {
    let mut usable = BTreeMap::new();
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
    Ok(match foreign {
        Some(why) => Err(why),
        None => Ok(Claims {
            replacements,
            usable,
        }),
    })
}

/// Creates the CSPI of a pool spec that has none yet.
async fn create_cspi(
    ctx: &Context,
    cspc: &CStorPoolCluster,
    pool: &PoolSpec,
    host: &str,
) -> Result<CStorPoolInstance> {
    let api: Api<CStorPoolInstance> = ctx.api(&cspc.namespace().unwrap_or_default());
    let new = cspi::build(ctx, cspc, pool, host);
    let created = api.create(&PostParams::default(), &new).await?;
    ctx.event(
        cspc,
        EventType::Normal,
        "Create",
        format!("Pool Provisioned {} on {host}", created.name_any()),
    )
    .await;
    Ok(created)
}

/// Hands what changed in the pool spec to its existing CSPI: bound replacements first, then
/// the pool settings, then new raid groups and disks.
async fn update_cspi(
    ctx: &Context,
    cspc: &CStorPoolCluster,
    i: usize,
    pool: &PoolSpec,
    host: &str,
    c: &mut CStorPoolInstance,
    claims: &Claims,
) -> Result<PoolOutcome> {
    let all_replaced = hand_over_replacements(ctx, cspc, c, claims).await?;
    if sync::sync_cspi(cspc, pool, host, c) {
        save_cspi(ctx, cspc, c).await?;
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
    let targets: Vec<&str> = claims.replacements.iter().map(|r| r.new.as_str()).collect();
    if expand(c, pool, &claims.usable, &targets) {
        save_cspi(ctx, cspc, c).await?;
        ctx.event(
            cspc,
            EventType::Normal,
            "PoolExpansion",
            format!("new raid groups / disks handed to {}", c.name_any()),
        )
        .await;
    }
    Ok(if all_replaced {
        PoolOutcome::Done
    } else {
        PoolOutcome::Pending("waiting for the claims of replacement block devices to be bound")
    })
}

/// Renames replaced block devices in the CSPI once their new device's claim is bound. Returns
/// whether every pending replacement was handed over.
async fn hand_over_replacements(
    ctx: &Context,
    cspc: &CStorPoolCluster,
    c: &mut CStorPoolInstance,
    claims: &Claims,
) -> Result<bool> {
    let replaced = replace::apply(c, &claims.replacements, &claims.usable);
    if !replaced.is_empty() {
        save_cspi(ctx, cspc, c).await?;
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
    Ok(replaced.len() == claims.replacements.len())
}

/// Writes the changed CSPI and keeps what the API server returned.
async fn save_cspi(
    ctx: &Context,
    cspc: &CStorPoolCluster,
    c: &mut CStorPoolInstance,
) -> Result<()> {
    let api: Api<CStorPoolInstance> = ctx.api(&cspc.namespace().unwrap_or_default());
    *c = api
        .replace(&c.name_any(), &PostParams::default(), c)
        .await?;
    Ok(())
}

/// Creates the Deployment of every live CSPI lacking one, and brings the others in line.
async fn ensure_deployments(
    ctx: &Context,
    cspc: &CStorPoolCluster,
    existing: &[CStorPoolInstance],
) -> Result<()> {
    let deps: Api<Deployment> = ctx.api(&cspc.namespace().unwrap_or_default());
    for c in existing
        .iter()
        .filter(|c| c.metadata.deletion_timestamp.is_none())
    {
        let d = deployment::build(&ctx.deploy, &ctx.version, cspc, c);
        match deps.get_opt(&c.name_any()).await? {
            Some(mut current) => {
                if sync::sync_deployment(&d, &mut current) {
                    update_deployment(&deps, c, &current).await?;
                }
            }
            None => create_deployment(ctx, cspc, &deps, c, &d).await?,
        }
    }
    Ok(())
}

/// Writes a Deployment brought in line with its CSPI; a conflict is left to the next pass.
async fn update_deployment(
    deps: &Api<Deployment>,
    c: &CStorPoolInstance,
    current: &Deployment,
) -> Result<()> {
    match deps
        .replace(&c.name_any(), &PostParams::default(), current)
        .await
    {
        Ok(_) => Ok(()),
        // Changed meanwhile: the next pass compares again.
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Creates the pool Deployment of a CSPI (one created meanwhile is fine); a failure is also
/// reported as an event on the CSPC.
async fn create_deployment(
    ctx: &Context,
    cspc: &CStorPoolCluster,
    deps: &Api<Deployment>,
    c: &CStorPoolInstance,
    d: &Deployment,
) -> Result<()> {
    match deps.create(&PostParams::default(), d).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
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
            Err(e.into())
        }
    }
}

/// Scales down the CSPIs whose pool left the spec. Returns why some could not be removed.
async fn scale_down_removed_pools(
    ctx: &Context,
    cspc: &CStorPoolCluster,
    existing: &[CStorPoolInstance],
) -> Result<Vec<String>> {
    let orphans: Vec<CStorPoolInstance> = existing
        .iter()
        .filter(|c| !cspc.spec.pools().iter().any(|p| cspi::matches(c, p)))
        .cloned()
        .collect();
    scale_down::scale_down(ctx, cspc, &orphans).await
}

/// Computes the CSPC status from its CSPIs, sets the PoolSpecValid and ScaleDownBlocked
/// conditions, and replaces the status when it changed.
async fn write_status(
    ctx: &Context,
    cspc: &CStorPoolCluster,
    invalid: &[String],
    blocked: &[String],
) -> Result<()> {
    let mut work = cspc.clone();
    let cspis = list_cspis(ctx, cspc).await?;
    status::compute(ctx, &mut work, &cspis).await?;
    let st = work.status.get_or_insert_with(Default::default);
    set_pool_spec_valid(ctx, cspc, &mut st.conditions, invalid).await;
    set_scale_down_blocked(&mut st.conditions, blocked);
    if work.status != cspc.status {
        let api: Api<CStorPoolCluster> = ctx.api(&cspc.namespace().unwrap_or_default());
        let mut latest = api.get(&cspc.name_any()).await?;
        latest.status = work.status;
        api.replace(&cspc.name_any(), &PostParams::default(), &latest)
            .await?;
    }
    Ok(())
}

/// PoolSpecValid: False with every reason (and a warning event when it changed) while a pool
/// spec is invalid; back to True once all are valid (not set when it never was False).
async fn set_pool_spec_valid(
    ctx: &Context,
    cspc: &CStorPoolCluster,
    conditions: &mut Option<Vec<PoolCondition>>,
    invalid: &[String],
) {
    if invalid.is_empty() {
        if has_condition(conditions.as_deref(), POOL_SPEC_VALID) {
            set_condition(
                conditions,
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
            conditions,
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
}

/// ScaleDownBlocked: True with the reasons while a removed pool still holds replicas; back to
/// False once none does (not set when it never was True).
fn set_scale_down_blocked(conditions: &mut Option<Vec<PoolCondition>>, blocked: &[String]) {
    if blocked.is_empty() {
        if has_condition(conditions.as_deref(), SCALE_DOWN_BLOCKED) {
            set_condition(
                conditions,
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
            conditions,
            condition(
                SCALE_DOWN_BLOCKED,
                ConditionStatus::True,
                "VolumeReplicasExist",
                blocked.join("; "),
            ),
        );
    }
}

/// Whether a condition of this type is set.
fn has_condition(conditions: Option<&[PoolCondition]>, type_: &str) -> bool {
    conditions.is_some_and(|c| c.iter().any(|c| c.type_ == type_))
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
