//! Replica scale up / down through `spec.policy.replicaPoolInfo`, with the admission
//! rules re-checked here (the webhook may be absent): a refused change leaves every
//! object untouched and is explained by a `ScalingReplicas` condition and a Warning event.

use std::collections::BTreeSet;

use cstor_api::{
    constants::{annotation, label},
    cstor::{CStorVolumeConfig, CStorVolumeReplica, CStorVolumeReplicaPhase},
    naming,
};
use kube::{ResourceExt, api::DeleteParams, runtime::events::EventType};

use super::{
    Context, Error, is_not_found, pdb,
    provision::{self, CvrOptions},
    pv_name, status,
};

/// What a replicaPoolInfo change asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Desired and current pool sets are equal.
    None,
    /// Add these pools.
    Up(Vec<String>),
    /// Remove this pool.
    Down(String),
}

/// Classifies a change; `Err((event reason, message))` when it is refused.
pub fn classify(
    cvc_name: &str,
    desired: &[String],
    current: &[String],
) -> Result<Change, (&'static str, String)> {
    let d: BTreeSet<&String> = desired.iter().collect();
    let c: BTreeSet<&String> = current.iter().collect();
    if let Some(i) = desired.iter().position(|n| n.is_empty()) {
        return Err((
            "ScalingVolumeReplicas",
            format!(
                "spec.policy.replicaPoolInfo[{i}].poolName of cvc {cvc_name} is empty: name a CStorPoolInstance"
            ),
        ));
    }
    if d.len() != desired.len() {
        return Err((
            "ScalingVolumeReplicas",
            format!("duplicate pool names {desired:?} found under spec of cvc {cvc_name}"),
        ));
    }
    if c.len() != current.len() {
        return Err((
            "ScalingVolumeReplicas",
            format!("duplicate pool names {current:?} found under status of cvc {cvc_name}"),
        ));
    }
    if d == c {
        return Ok(Change::None);
    }
    if desired.is_empty() {
        return Err((
            "ScalingVolumeReplicas",
            format!(
                "Can't scale down cvc {cvc_name} to 0 replicas: keep at least one pool in spec.policy.replicaPoolInfo"
            ),
        ));
    }
    let migration = || {
        (
            "Migration",
            format!(
                "volume replica migration directly by modifying pool names {desired:?} is not yet supported"
            ),
        )
    };
    match desired.len().cmp(&current.len()) {
        std::cmp::Ordering::Equal => Err((
            "Migration",
            "Migration of volume replicas is not yet supported".to_owned(),
        )),
        std::cmp::Ordering::Greater => {
            if !c.is_subset(&d) {
                return Err(migration());
            }
            Ok(Change::Up(
                desired.iter().filter(|n| !c.contains(n)).cloned().collect(),
            ))
        }
        std::cmp::Ordering::Less => {
            let count = current.len() - desired.len();
            if count > 1 {
                return Err((
                    "ScalingVolumeReplicas",
                    format!(
                        "Can't perform more than one replica scale down requested scale down count {count}"
                    ),
                ));
            }
            if !d.is_subset(&c) {
                return Err(migration());
            }
            let removed = current.iter().find(|n| !d.contains(n)).cloned();
            Ok(Change::Down(removed.unwrap_or_default()))
        }
    }
}

/// One scaling step for a bound CVC.
pub async fn sync(cvc: &mut CStorVolumeConfig, ctx: &Context) -> Result<(), Error> {
    let name = cvc.name_any();
    let desired: Vec<String> = cvc
        .spec
        .policy
        .replica_pool_info()
        .iter()
        .map(|p| p.pool_name.clone())
        .collect();
    let current = cvc.status.pool_info().to_vec();
    match classify(&name, &desired, &current) {
        Ok(Change::None) => {
            if status::clear_condition(cvc, status::SCALING_REPLICAS) {
                status::replace_cvc(cvc, ctx).await?;
            }
            Ok(())
        }
        Ok(Change::Up(new)) => scale_up(cvc, ctx, &desired, &current, &new).await,
        Ok(Change::Down(removed)) => scale_down(cvc, ctx, &desired, &current, &removed).await,
        Err((event_reason, message)) => {
            status::record_scaling(
                cvc,
                ctx,
                EventType::Warning,
                event_reason,
                "InvalidReplicaPoolInfo",
                &message,
            )
            .await
        }
    }
}

async fn scale_up(
    cvc: &mut CStorVolumeConfig,
    ctx: &Context,
    desired: &[String],
    current: &[String],
    new: &[String],
) -> Result<(), Error> {
    let pv = pv_name(cvc);
    let cspc = cvc
        .labels()
        .get(label::CSTOR_POOL_CLUSTER)
        .cloned()
        .unwrap_or_default();
    let pools = provision::load_pools(ctx, &cspc).await?;
    for n in new {
        let problem = match pools.iter().find(|p| &p.name == n) {
            None => Some(format!(
                "pool {n:?} is not a CStorPoolInstance of CSPC {cspc:?}"
            )),
            Some(p) => p
                .unusable_because()
                .map(|why| format!("pool {n:?} cannot take a replica: {why}")),
        };
        if let Some(problem) = problem {
            let message = format!(
                "cannot scale volume replicas of cvc {pv} from {} to {}: {problem}",
                current.len(),
                desired.len()
            );
            status::record_scaling(
                cvc,
                ctx,
                EventType::Warning,
                "ScalingVolumeReplicas",
                "InvalidReplicaPoolInfo",
                &message,
            )
            .await?;
            return Ok(());
        }
    }
    let mut cv = super::bound_cv(ctx, &pv).await?;
    let want = desired.len() as i64;
    if cv.spec.desired_replication_factor.unwrap_or(0) < want {
        cv = super::patch_cv(
            ctx,
            &pv,
            serde_json::json!({"spec": {"desiredReplicationFactor": want}}),
        )
        .await?;
    }
    let volume_id = cvc
        .annotations()
        .get(annotation::VOLUME_ID)
        .filter(|v| !v.is_empty())
        .cloned()
        .unwrap_or_else(|| pv.clone());
    let capacity = cvc
        .spec
        .provision
        .capacity
        .get("storage")
        .map(|q| q.0.clone())
        .unwrap_or_default();
    let caches = ctx.caches();
    for n in new {
        let pool = pools.iter().find(|p| &p.name == n).expect("checked above");
        let cvr = provision::build_cvr(
            cvc,
            &cv,
            pool,
            &cvc.spec.policy,
            &capacity,
            &ctx.config.version,
            CvrOptions {
                phase: CStorVolumeReplicaPhase::Recreate,
                replica_id: naming::replica_id_for_scale_up(&volume_id, n),
            },
        );
        provision::get_or_create(ctx, &caches.replicas, &cvr).await?;
    }
    let mut pool_info = current.to_vec();
    pool_info.extend(new.iter().cloned());
    finish(cvc, ctx, &cspc, pool_info).await
}

async fn scale_down(
    cvc: &mut CStorVolumeConfig,
    ctx: &Context,
    desired: &[String],
    current: &[String],
    removed: &str,
) -> Result<(), Error> {
    let pv = pv_name(cvc);
    let mut cv = super::bound_cv(ctx, &pv).await?;
    let cvr_name = naming::cvr_name(&pv, removed);
    let cvr = ctx.cached(&ctx.caches().replicas, &cvr_name).await?;
    let want = desired.len() as i64;
    if cv.spec.desired_replication_factor.unwrap_or(0) > want {
        // A merge patch: the removed replica's entry of knownReplicas is deleted (null), the
        // other entries are left as they are.
        let mut patch = serde_json::json!({"spec": {"desiredReplicationFactor": want}});
        if let Some(id) = cvr.as_ref().and_then(|c| c.spec.replica_id.clone())
            && cv
                .spec
                .replica_details
                .as_ref()
                .and_then(|d| d.known_replicas.as_ref())
                .is_some_and(|k| k.contains_key(&id))
        {
            patch["spec"]["replicaDetails"] = serde_json::json!({"knownReplicas": {id: null}});
        }
        cv = super::patch_cv(ctx, &pv, patch).await?;
    }
    let known = |d: Option<&cstor_api::cstor::CStorVolumeReplicaDetails>| {
        d.and_then(|d| d.known_replicas.as_ref())
            .map_or(0, |k| k.len())
    };
    let status_known = known(cv.status.as_ref().and_then(|s| s.replica_details.as_ref()));
    let spec_known = known(cv.spec.replica_details.as_ref());
    if status_known > spec_known {
        let message = format!(
            "Scaling down volume replicas from {} to {} is in progress",
            current.len(),
            desired.len()
        );
        status::record_scaling(
            cvc,
            ctx,
            EventType::Normal,
            "ScalingVolumeReplicas",
            "ScaleDownInProgress",
            &message,
        )
        .await?;
        return Err(Error::Waiting {
            reason: "ScaleDownInProgress",
            message,
        });
    }
    if cvr.is_some() {
        ctx.count_write();
        match ctx
            .api::<CStorVolumeReplica>()
            .delete(&cvr_name, &DeleteParams::default())
            .await
        {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(Error::kube(format!("delete CStorVolumeReplica {cvr_name}"))(e)),
        }
    }
    let cspc = cvc
        .labels()
        .get(label::CSTOR_POOL_CLUSTER)
        .cloned()
        .unwrap_or_default();
    let pool_info = current.iter().filter(|p| *p != removed).cloned().collect();
    finish(cvc, ctx, &cspc, pool_info).await
}

async fn finish(
    cvc: &mut CStorVolumeConfig,
    ctx: &Context,
    cspc: &str,
    pool_info: Vec<String>,
) -> Result<(), Error> {
    let n = pool_info.len();
    let set: BTreeSet<String> = pool_info.iter().cloned().collect();
    pdb::resync(ctx, cvc, cspc, &set).await?;
    cvc.status.pool_info = Some(pool_info);
    status::clear_condition(cvc, status::SCALING_REPLICAS);
    status::replace_cvc(cvc, ctx).await?;
    ctx.event(
        cvc,
        EventType::Normal,
        "ScalingVolumeReplicas",
        format!("successfully scaled volume replicas to {n}"),
    )
    .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn upstream_rules() {
        assert_eq!(
            classify("c", &v(&["a", "b"]), &v(&["b", "a"])),
            Ok(Change::None)
        );
        assert_eq!(
            classify("c", &v(&["a", "b", "x"]), &v(&["a", "b"])),
            Ok(Change::Up(v(&["x"])))
        );
        assert_eq!(
            classify("c", &v(&["a"]), &v(&["a", "b"])),
            Ok(Change::Down("b".into()))
        );
        let err = |d: &[&str], c: &[&str]| classify("c", &v(d), &v(c)).unwrap_err().1;
        assert_eq!(
            err(&["a", "x"], &["a", "b"]),
            "Migration of volume replicas is not yet supported"
        );
        assert!(err(&["a", "x", "y"], &["a", "b"]).contains("is not yet supported"));
        assert_eq!(
            err(&["a"], &["a", "b", "c"]),
            "Can't perform more than one replica scale down requested scale down count 2"
        );
        assert!(err(&["a", "a", "b"], &["a", "b"]).starts_with("duplicate pool names"));
        assert!(err(&[], &["a"]).contains("0 replicas"));
        assert!(err(&["a", ""], &["a"]).contains("poolName of cvc c is empty"));
    }
}
