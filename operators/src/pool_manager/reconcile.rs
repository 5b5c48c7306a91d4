//! The CSPI reconcile: the finalizer helper is the single top-level action; `apply` imports or
//! creates the pool, replaces and expands, sets pool properties and writes the status back with
//! a plain replace of the whole object; `cleanup` is [`super::destroy::destroy`].

use std::sync::Arc;

use cstor_api::{
    constants::{annotation as annotations, finalizer as finalizers},
    cstor::{CStorPoolInstance, ConditionStatus},
};
use kube::{
    ResourceExt,
    api::PostParams,
    runtime::{controller::Action, events::EventType},
};

use super::{
    Context, DELETION_BLOCKED, Error, Result, condition, destroy, devices, expand, import, replace,
    resync, set_condition, status,
};

/// Reconciles one CSPI; CSPIs other than `ctx.cspi_uid` are ignored.
/// Reconcile metrics of the CSPI controller.
static METRICS: cstor_api::metrics::Reconciles = cstor_api::metrics::Reconciles::new("cspi");

pub async fn reconcile(cspi: Arc<CStorPoolInstance>, ctx: Arc<Context>) -> Result<Action> {
    let started = std::time::Instant::now();
    let result = reconcile_once(cspi.clone(), ctx.clone()).await;
    METRICS.observe(started, result.is_ok());
    if result.is_ok() {
        ctx.backoff.succeeded(&*cspi);
        super::FAILING.set_failing(ctx.backoff.failing());
    }
    result
}

async fn reconcile_once(cspi: Arc<CStorPoolInstance>, ctx: Arc<Context>) -> Result<Action> {
    if cspi.uid().as_deref() != Some(ctx.cspi_uid.as_str()) {
        return Ok(Action::await_change());
    }
    if cspi
        .annotations()
        .get(annotations::RECONCILE_DISABLE)
        .map(String::as_str)
        == Some("true")
    {
        ctx.event(
            &*cspi,
            EventType::Warning,
            "Skipping",
            "Skipping reconcile: reconcile.openebs.io/disable is true",
        )
        .await;
        return Ok(Action::await_change());
    }
    let api = ctx.cspis();
    crate::finalizer::finalized(&api, finalizers::POOL_PROTECTION, cspi, |event| async {
        match event {
            crate::finalizer::Step::Apply(c) => apply(&c, &ctx).await,
            crate::finalizer::Step::Cleanup(c) => {
                let _guard = ctx.lock.lock().await;
                destroy::destroy(&ctx, &c)
                    .await
                    .map(|()| Action::await_change())
            }
        }
    })
    .await
}

/// Waiting on another component is retried at a steady pace; errors back off.
pub fn error_policy(cspi: Arc<CStorPoolInstance>, err: &Error, ctx: Arc<Context>) -> Action {
    let delay = super::retry_delay(&*cspi, err, &ctx);
    tracing::warn!(error = %err, retry_in = ?delay, "cspi reconcile failed");
    Action::requeue(delay)
}

/// Checks a CSPI before anything is done with it: at least one data raid group and a
/// poolConfig with its raid type, each error naming the field.
pub fn validate(cspi: &CStorPoolInstance) -> Result<()> {
    if cspi.spec.data_raid_groups.is_empty() {
        return Err(Error::invalid(
            "spec.dataRaidGroups",
            "at least one data raid group is required",
        ));
    }
    let config = cspi.spec.pool_config.as_ref().ok_or_else(|| {
        Error::invalid(
            "spec.poolConfig",
            "poolConfig with dataRaidGroupType is required",
        )
    })?;
    if config.data_raid_group_type.as_str().is_empty() {
        return Err(Error::invalid(
            "spec.poolConfig.dataRaidGroupType",
            "must be set",
        ));
    }
    if !cspi.spec.write_cache_raid_groups().is_empty() && config.write_cache_group_type.is_none() {
        return Err(Error::invalid(
            "spec.poolConfig.writeCacheGroupType",
            "must be set when writeCacheRaidGroups are present",
        ));
    }
    let all = cspi
        .spec
        .data_raid_groups
        .iter()
        .chain(cspi.spec.write_cache_raid_groups());
    if all.clone().any(|g| g.block_devices.is_empty()) {
        return Err(Error::invalid(
            "raid group",
            "a raid group has no block devices",
        ));
    }
    Ok(())
}

async fn apply(cspi: &CStorPoolInstance, ctx: &Context) -> Result<Action> {
    let Some(cspi) = &super::reconcile_version(ctx, &ctx.cspis(), cspi).await? else {
        return Ok(resync(ctx));
    };
    if let Err(e) = validate(cspi) {
        ctx.event(cspi, EventType::Warning, "ValidationFailed", e.to_string())
            .await;
        return Err(e);
    }
    let before = cspi.clone();
    let mut work = cspi.clone();
    let result = pass(ctx, &mut work).await;
    // A CSPI that was blocked from deletion and is no longer being deleted loses the condition.
    if let Some(st) = work.status.as_mut()
        && st.conditions.as_ref().is_some_and(|c| {
            c.iter()
                .any(|c| c.type_ == DELETION_BLOCKED && c.status == ConditionStatus::True)
        })
    {
        set_condition(
            &mut st.conditions,
            condition(
                DELETION_BLOCKED,
                ConditionStatus::False,
                "NotDeleting",
                "the CSPI is not being deleted",
            ),
        );
    }
    if work != before {
        ctx.cspis()
            .replace(&work.name_any(), &PostParams::default(), &work)
            .await?;
    }
    result.map(|in_progress| {
        if in_progress {
            Action::requeue(std::time::Duration::from_secs(1).min(ctx.resync))
        } else {
            resync(ctx)
        }
    })
}

/// import/create → replace → expand → properties → status. Returns whether a resilver or an
/// expansion is in progress (the caller requeues sooner).
async fn pass(ctx: &Context, cspi: &mut CStorPoolInstance) -> Result<bool> {
    let _guard = ctx.lock.lock().await;
    let resolved = devices::resolve(ctx, cspi).await?;
    import::import_or_create(ctx, cspi, &resolved).await?;
    let topology = ctx.engine.pool_topology(&ctx.pool).await?;
    let resilvering = replace::replace(ctx, cspi, &resolved, &topology).await?;
    let topology = ctx.engine.pool_topology(&ctx.pool).await?;
    let expanded = expand::expand(ctx, cspi, &resolved, &topology).await?;
    set_properties(ctx, cspi).await;
    status::refresh(ctx, cspi, &resolved).await?;
    Ok(resilvering > 0 || expanded)
}

/// `canmount=off` and the configured compression on the pool's root dataset.
async fn set_properties(ctx: &Context, cspi: &CStorPoolInstance) {
    let compression = cspi
        .spec
        .pool_config
        .as_ref()
        .map(|c| c.compression_or_default().to_owned())
        .unwrap_or_else(|| "lz4".into());
    let wanted = [
        ("canmount", "off".to_string()),
        ("compression", compression),
    ];
    let names: Vec<&str> = wanted.iter().map(|(k, _)| *k).collect();
    let current = match ctx.engine.get_properties(&ctx.pool, &names).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "reading pool properties failed");
            return;
        }
    };
    for (k, v) in &wanted {
        if current.get(*k).and_then(|x| x.as_deref()) != Some(v.as_str())
            && let Err(e) = ctx.engine.set_property(&ctx.pool, k, v).await
        {
            ctx.event(
                cspi,
                EventType::Warning,
                "FailedToSetPoolProperties",
                format!("setting {k}={v} on {}: {e}", ctx.pool),
            )
            .await;
        }
    }
}
