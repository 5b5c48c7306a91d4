//! Import-or-create. The pool is looked up first, then imported
//! (cache file, then device scan), and created only when the CSPI never had a pool
//! (`status.phase` empty or `Pending`). A crash after `zpool create` and before the status write
//! therefore finds the pool on the next pass and never creates a second one.

use cstor_api::{
    constants::annotation as annotations,
    cstor::{CStorPoolInstance, CStorPoolInstancePhase, ConditionStatus, pool_conditions},
};
use kube::runtime::events::EventType;

use super::{Context, Error, Result, condition, devices::ResolvedPool, set_condition};
use crate::engine::{EngineError, ImportOutcome, ImportRequest, PoolSpec, VdevClass};

/// What the import-or-create step did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    AlreadyImported,
    Imported,
    Created,
}

/// Makes sure the pool is imported, creating it when allowed. `cspi` is the in-memory copy the
/// caller writes back (conditions, dropped rename annotation).
pub async fn import_or_create(
    ctx: &Context,
    cspi: &mut CStorPoolInstance,
    resolved: &ResolvedPool,
) -> Result<Outcome> {
    if let Some(outcome) = import(ctx, cspi, resolved).await? {
        return Ok(outcome);
    }
    refuse_if_provisioned(ctx, cspi).await?;
    create(ctx, cspi, resolved).await?;
    Ok(Outcome::Created)
}

/// Imports the pool (under the name the rename annotation gives, when set). Returns `None` when
/// no pool was found.
async fn import(
    ctx: &Context,
    cspi: &mut CStorPoolInstance,
    resolved: &ResolvedPool,
) -> Result<Option<Outcome>> {
    let existing_name = cspi
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(annotations::EXISTING_POOL_NAME))
        .cloned();
    let req = ImportRequest {
        pool: ctx.pool.clone(),
        existing_name,
        dev_dir: resolved.dev_dir.clone(),
    };
    match ctx.engine.import_pool(&req).await {
        Ok(ImportOutcome::AlreadyImported) => Ok(Some(Outcome::AlreadyImported)),
        Ok(ImportOutcome::Imported { renamed_from, .. }) => {
            if renamed_from.is_some()
                && let Some(a) = cspi.metadata.annotations.as_mut()
            {
                a.remove(annotations::EXISTING_POOL_NAME);
            }
            ctx.event(
                cspi,
                EventType::Normal,
                "PoolImported",
                format!("Pool Import successful: {}", ctx.pool),
            )
            .await;
            Ok(Some(Outcome::Imported))
        }
        Ok(ImportOutcome::NotFound) => Ok(None),
        Err(e) => {
            ctx.event(
                cspi,
                EventType::Warning,
                "ImportFailure",
                format!("Failed to import pool due to '{e}'"),
            )
            .await;
            Err(e.into())
        }
    }
}

/// A pool that existed once (its phase was written) and cannot be found is lost: never create
/// over disks that may still hold it. Sets the PoolLost condition and waits instead.
async fn refuse_if_provisioned(ctx: &Context, cspi: &mut CStorPoolInstance) -> Result<()> {
    let phase = cspi
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default();
    if matches!(
        phase,
        CStorPoolInstancePhase::Empty | CStorPoolInstancePhase::Pending
    ) {
        return Ok(());
    }
    let msg = format!(
        "pool {} was provisioned (phase {}) but cannot be imported: the disks may be gone or bad; restore them, or delete the CSPI to start over",
        ctx.pool,
        phase.as_str()
    );
    let status = cspi.status.get_or_insert_with(Default::default);
    set_condition(
        &mut status.conditions,
        condition(
            pool_conditions::POOL_LOST,
            ConditionStatus::True,
            pool_conditions::POOL_LOST,
            msg.clone(),
        ),
    );
    ctx.event(cspi, EventType::Warning, "FailedSync", msg.clone())
        .await;
    Err(Error::Waiting(msg))
}

/// Creates the pool from the resolved raid groups. A pool created without some of its raid
/// groups counts as created: the expansion step adds the missing ones.
async fn create(ctx: &Context, cspi: &CStorPoolInstance, resolved: &ResolvedPool) -> Result<()> {
    let compression = cspi
        .spec
        .pool_config
        .as_ref()
        .map(|c| c.compression_or_default().to_owned());
    let spec = PoolSpec {
        name: ctx.pool.clone(),
        data_groups: groups(resolved, VdevClass::Data),
        write_cache_groups: groups(resolved, VdevClass::WriteCache),
        compression,
        dev_dir: resolved.dev_dir.clone(),
    };
    match ctx.engine.create_pool(&spec).await {
        Ok(()) => {}
        // Partly created: the pool exists; the expansion step adds the missing groups.
        Err(EngineError::RaidGroupsNotAdded { failures, .. }) => {
            ctx.event(
                cspi,
                EventType::Warning,
                "FailCreate",
                format!(
                    "Pool created but some raid groups were not added (retried): {}",
                    failures.join("; ")
                ),
            )
            .await;
        }
        Err(e) => {
            // Upstream destroys the pool and clears the labels here; we do not (a failed
            // probe could otherwise wipe an existing pool): the next pass retries.
            ctx.event(
                cspi,
                EventType::Warning,
                "FailCreate",
                format!("Failed to create pool due to '{e}'"),
            )
            .await;
            return Err(e.into());
        }
    }
    ctx.event(
        cspi,
        EventType::Normal,
        "Created",
        "Pool created successfully",
    )
    .await;
    Ok(())
}

fn groups(resolved: &ResolvedPool, class: VdevClass) -> Vec<crate::engine::RaidGroup> {
    resolved
        .groups
        .iter()
        .filter(|(c, _, _)| *c == class)
        .map(|(_, g, _)| g.clone())
        .collect()
}
