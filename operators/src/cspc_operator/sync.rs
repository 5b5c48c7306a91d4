//! syncCSPI: pool settings edited in the CSPC — poolConfig (resources,
//! auxResources, tolerations, priorityClassName, compression, roThresholdLimit, ...) and the
//! node selector — reach the existing CSPI, and from it the pool-manager Deployment, so the
//! pool pod is rolled with the new settings. Raid groups are not touched here (expansion and
//! replacement own them).

use cstor_api::cstor::{CStorPoolCluster, CStorPoolInstance, PoolSpec};
use k8s_openapi::api::apps::v1::Deployment;

use super::cspi;

/// Copies the pool spec's defaulted poolConfig, node selector and the resolved host name into
/// `c`. Returns whether anything changed.
pub fn sync_cspi(
    cspc: &CStorPoolCluster,
    pool: &PoolSpec,
    host: &str,
    c: &mut CStorPoolInstance,
) -> bool {
    let config = Some(cspi::defaulted_config(cspc, pool));
    let mut changed = false;
    if c.spec.pool_config != config {
        c.spec.pool_config = config;
        changed = true;
    }
    if c.spec.node_selector != pool.node_selector {
        c.spec.node_selector = pool.node_selector.clone();
        changed = true;
    }
    if c.spec.host_name.as_deref() != Some(host) {
        c.spec.host_name = Some(host.to_owned());
        changed = true;
    }
    changed
}

/// Brings the fields of `existing` that derive from the CSPI and the operator's configuration
/// (pod node selector, tolerations, priority class; each container's image and resources) to
/// their `desired` values, leaving everything else (server defaults, other controllers'
/// changes) alone. Returns whether anything changed.
pub fn sync_deployment(desired: &Deployment, existing: &mut Deployment) -> bool {
    let (Some(want), Some(have)) = (
        desired.spec.as_ref().and_then(|s| s.template.spec.as_ref()),
        existing
            .spec
            .as_mut()
            .and_then(|s| s.template.spec.as_mut()),
    ) else {
        return false;
    };
    let mut changed = false;
    let non_empty = |v: &Option<Vec<_>>| v.as_ref().is_some_and(|t: &Vec<_>| !t.is_empty());
    if have.node_selector != want.node_selector {
        have.node_selector = want.node_selector.clone();
        changed = true;
    }
    if have.tolerations != want.tolerations
        && (non_empty(&have.tolerations) || non_empty(&want.tolerations))
    {
        have.tolerations = want.tolerations.clone();
        changed = true;
    }
    if have.priority_class_name.as_deref().unwrap_or("")
        != want.priority_class_name.as_deref().unwrap_or("")
    {
        have.priority_class_name = want.priority_class_name.clone();
        changed = true;
    }
    for w in &want.containers {
        let Some(h) = have.containers.iter_mut().find(|h| h.name == w.name) else {
            continue;
        };
        if h.image != w.image {
            h.image = w.image.clone();
            changed = true;
        }
        let empty = |r: &Option<k8s_openapi::api::core::v1::ResourceRequirements>| {
            r.as_ref().is_none_or(|r| {
                r.limits.as_ref().is_none_or(|m| m.is_empty())
                    && r.requests.as_ref().is_none_or(|m| m.is_empty())
                    && r.claims.as_ref().is_none_or(|c| c.is_empty())
            })
        };
        if h.resources != w.resources && !(empty(&h.resources) && empty(&w.resources)) {
            h.resources = w.resources.clone();
            changed = true;
        }
    }
    changed
}
