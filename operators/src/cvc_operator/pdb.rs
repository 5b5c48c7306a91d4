//! PodDisruptionBudget of HA volumes: one PDB per set of pools, shared by every volume
//! whose replicas sit on exactly that set, so that at most one of those pool pods is evicted at
//! a time.
//!
//! Difference from upstream: the PDB name is deterministic (`<cspc>-<fnv32 of the sorted pool
//! names>`) instead of `generateName`, so a crash between creating the PDB and labelling the
//! CVC cannot leave a second PDB behind. PDBs created by upstream are still found and reused
//! through the label lookup.

use std::collections::{BTreeMap, BTreeSet};

use cstor_api::{
    constants::{label, value},
    cstor::CStorVolumeConfig,
};
use k8s_openapi::{
    api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec},
    apimachinery::pkg::{
        apis::meta::v1::{LabelSelector, LabelSelectorRequirement},
        util::intstr::IntOrString,
    },
};
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};

use super::{Context, Error, is_already_exists, is_not_found};

/// Whether a volume with these replicas needs a PDB (3 or more replicas).
pub fn is_ha(replicas: usize) -> bool {
    replicas >= 3
}

/// Deterministic PDB name for a CSPC and pool set.
pub fn pdb_name(cspc: &str, pools: &BTreeSet<String>) -> String {
    let joined = pools.iter().cloned().collect::<Vec<_>>().join(",");
    let mut h: u32 = 0x811c_9dc5;
    for b in joined.bytes() {
        h = h.wrapping_mul(0x0100_0193);
        h ^= u32::from(b);
    }
    format!("{cspc}-{h:08x}")
}

fn pool_label(pool: &str) -> String {
    format!("openebs.io/{pool}")
}

/// Builds the PDB object for a pool set.
pub fn build(cspc: &str, pools: &BTreeSet<String>) -> PodDisruptionBudget {
    let mut labels: BTreeMap<String, String> = pools
        .iter()
        .map(|p| (pool_label(p), value::TRUE.to_owned()))
        .collect();
    labels.insert(label::CSTOR_POOL_CLUSTER.to_owned(), cspc.to_owned());
    PodDisruptionBudget {
        metadata: ObjectMeta {
            name: Some(pdb_name(cspc, pools)),
            labels: Some(labels),
            ..Default::default()
        },
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(
                    [(label::APP.to_owned(), value::APP_CSTOR_POOL.to_owned())].into(),
                ),
                match_expressions: Some(vec![LabelSelectorRequirement {
                    key: label::CSTOR_POOL_INSTANCE.to_owned(),
                    operator: "In".to_owned(),
                    values: Some(pools.iter().cloned().collect()),
                }]),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Finds the PDB covering exactly `pools` or creates it; returns its name.
pub async fn get_or_create(
    ctx: &Context,
    cspc: &str,
    pools: &BTreeSet<String>,
) -> Result<String, Error> {
    let api = ctx.api::<PodDisruptionBudget>();
    let wanted: Vec<(String, &str)> = pools.iter().map(|p| (pool_label(p), value::TRUE)).collect();
    let labels: Vec<(&str, Option<&str>)> =
        wanted.iter().map(|(k, v)| (k.as_str(), Some(*v))).collect();
    let existing = ctx.caches().disruption_budgets.list(&api, &labels).await?;
    for pdb in existing {
        let values: BTreeSet<String> = pdb
            .spec
            .as_ref()
            .and_then(|s| s.selector.as_ref())
            .and_then(|s| s.match_expressions.as_ref())
            .and_then(|m| m.first())
            .and_then(|m| m.values.clone())
            .unwrap_or_default()
            .into_iter()
            .collect();
        if &values == pools
            && pdb.metadata.deletion_timestamp.is_none()
            && let Some(name) = pdb.metadata.name
        {
            return Ok(name);
        }
    }
    let pdb = build(cspc, pools);
    let name = pdb_name(cspc, pools);
    ctx.count_write();
    match api.create(&PostParams::default(), &pdb).await {
        Ok(_) => Ok(name),
        Err(e) if is_already_exists(&e) => Ok(name),
        Err(e) => Err(Error::kube(format!(
            "create PodDisruptionBudget {name} (policy/v1 is required)"
        ))(e)),
    }
}

/// Deletes PDB `pdb` unless a CVC other than `cvc` still references it.
pub async fn release(ctx: &Context, pdb: &str, cvc: &str) -> Result<(), Error> {
    let users = ctx
        .api::<CStorVolumeConfig>()
        .list(&ListParams::default().labels(&format!("{}={pdb}", label::POD_DISRUPTION_BUDGET)))
        .await
        .map_err(Error::kube("list CStorVolumeConfigs using the PDB"))?;
    if users
        .items
        .iter()
        .any(|c| c.metadata.name.as_deref() != Some(cvc))
    {
        return Ok(());
    }
    ctx.count_write();
    match ctx
        .api::<PodDisruptionBudget>()
        .delete(pdb, &DeleteParams::default())
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(Error::kube(format!("delete PodDisruptionBudget {pdb}"))(e)),
    }
}

/// Recomputes the PDB of a CVC for its (new) pool set: releases the old one when the set
/// changed, gets or creates the new one when HA, and sets or removes the CVC label (in memory;
/// the caller writes the CVC).
pub async fn resync(
    ctx: &Context,
    cvc: &mut CStorVolumeConfig,
    cspc: &str,
    pools: &BTreeSet<String>,
) -> Result<(), Error> {
    let name = cvc.metadata.name.clone().unwrap_or_default();
    let old = cvc
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(label::POD_DISRUPTION_BUDGET))
        .cloned();
    let new = if is_ha(pools.len()) {
        Some(get_or_create(ctx, cspc, pools).await?)
    } else {
        None
    };
    if let Some(old) = &old
        && Some(old) != new.as_ref()
    {
        release(ctx, old, &name).await?;
    }
    let labels = cvc.metadata.labels.get_or_insert_with(Default::default);
    match new {
        Some(n) => {
            labels.insert(label::POD_DISRUPTION_BUDGET.to_owned(), n);
        }
        None => {
            labels.remove(label::POD_DISRUPTION_BUDGET);
        }
    }
    Ok(())
}
