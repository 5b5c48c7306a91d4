//! CStorVolumeConfig UPDATE rules: every denial is code 400.

use std::collections::BTreeSet;

use cstor_api::cstor::{CStorVolumeConfig, CStorVolumeConfigPhase};
use kube::ResourceExt;

use super::{Denial, go_list};

fn spec_pools(cvc: &CStorVolumeConfig) -> Vec<String> {
    cvc.spec
        .policy
        .replica_pool_info()
        .iter()
        .map(|p| p.pool_name.clone())
        .collect()
}

fn status_pools(cvc: &CStorVolumeConfig) -> Vec<String> {
    cvc.status.pool_info().to_vec()
}

fn is_bound(cvc: &CStorVolumeConfig) -> bool {
    cvc.status
        .phase
        .as_ref()
        .is_some_and(|p| *p == CStorVolumeConfigPhase::Bound)
}

fn duplicates(names: &[String]) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut dups = BTreeSet::new();
    for n in names {
        if !seen.insert(n) {
            dups.insert(n.clone());
        }
    }
    dups.into_iter().collect()
}

/// Validates a CVC update against the stored object.
pub fn validate_cvc_update(old: &CStorVolumeConfig, new: &CStorVolumeConfig) -> Result<(), Denial> {
    if new.metadata.deletion_timestamp.is_some() {
        return Ok(());
    }
    let name = new.name_any();
    let (old_count, new_count) = (
        old.spec.provision.replica_count,
        new.spec.provision.replica_count,
    );
    if old_count != new_count {
        return Err(Denial::bad_request(format!(
            "cvc {name} replicaCount got modified from {old_count} to {new_count}"
        )));
    }
    if old.spec.provision.capacity != new.spec.provision.capacity {
        return Err(Denial::bad_request(
            "cvc initial provisioned capacity `Spec.Provision.Capacity` is immutable, can't be modified ",
        ));
    }
    let old_desired = spec_pools(old);
    let new_desired = spec_pools(new);
    let current = status_pools(new);
    let dups = duplicates(&new_desired);
    if !dups.is_empty() {
        return Err(Denial::bad_request(format!(
            "duplicate pool names {} found under spec of cvc {name}",
            go_list(&dups)
        )));
    }
    let dups = duplicates(&current);
    if !dups.is_empty() {
        return Err(Denial::bad_request(format!(
            "duplicate pool names {} found under status of cvc {name}",
            go_list(&dups)
        )));
    }
    if old_desired.len() == new_desired.len() && old_desired == new_desired {
        return Ok(());
    }
    if old_desired.len() != new_desired.len() && !is_bound(old) && !is_bound(new) {
        return Err(Denial::bad_request(
            "Can't perform scaling of volume replicas when CVC is not in Bound state",
        ));
    }
    if old_desired.len() != status_pools(old).len() && old_desired.len() != new_desired.len() {
        return Err(Denial::bad_request(format!(
            "scaling of CVC {name} is already in progress"
        )));
    }
    if new_desired.len() < old_desired.len() {
        let removed = old_desired
            .iter()
            .filter(|p| !new_desired.contains(p))
            .count();
        if removed > 1 {
            return Err(Denial::bad_request(format!(
                "Can't perform more than one replica scale down requested scale down count {removed}"
            )));
        }
    } else {
        let missing: Vec<String> = current
            .iter()
            .filter(|p| !new_desired.contains(p))
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Err(Denial::bad_request(format!(
                "volume replica migration directly by modifying pool names {} is not yet supported",
                go_list(&missing)
            )));
        }
    }
    Ok(())
}
