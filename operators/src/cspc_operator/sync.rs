//! syncCSPI: pool settings edited in the CSPC — poolConfig (resources,
//! auxResources, tolerations, priorityClassName, compression, roThresholdLimit, ...) and the
//! node selector — reach the existing CSPI, and from it the pool-manager Deployment, so the
//! pool pod is rolled with the new settings (only when they changed since this operator last
//! applied them: a pool Deployment built by upstream's operator is adopted as it is). Raid
//! groups are not touched here (expansion and replacement own them).

use cstor_api::{
    constants::annotation,
    cstor::{CStorPoolCluster, CStorPoolInstance, PoolSpec},
};
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{PodSpec, ResourceRequirements},
};

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

/// The pod template fields the cspc-operator owns on a pool Deployment: pod node selector,
/// tolerations, priority class; each container's image and resources (empty values
/// normalised, so an absent and an empty list hash alike).
#[derive(serde::Serialize)]
struct Owned<'a> {
    node_selector: Option<&'a std::collections::BTreeMap<String, String>>,
    tolerations: Option<&'a Vec<k8s_openapi::api::core::v1::Toleration>>,
    priority_class_name: &'a str,
    containers: Vec<(&'a str, Option<&'a str>, Option<&'a ResourceRequirements>)>,
}

fn empty_resources(r: &Option<ResourceRequirements>) -> bool {
    r.as_ref().is_none_or(|r| {
        r.limits.as_ref().is_none_or(|m| m.is_empty())
            && r.requests.as_ref().is_none_or(|m| m.is_empty())
            && r.claims.as_ref().is_none_or(|c| c.is_empty())
    })
}

/// Hash of what the cspc-operator owns in a pool pod (recorded in the pool Deployment's
/// annotation [`annotation::APPLIED_POOL_TEMPLATE`]).
pub fn owned_hash(pod: &PodSpec) -> String {
    let owned = Owned {
        node_selector: pod.node_selector.as_ref().filter(|m| !m.is_empty()),
        tolerations: pod.tolerations.as_ref().filter(|t| !t.is_empty()),
        priority_class_name: pod.priority_class_name.as_deref().unwrap_or(""),
        containers: pod
            .containers
            .iter()
            .map(|c| {
                let resources = (!empty_resources(&c.resources))
                    .then_some(c.resources.as_ref())
                    .flatten();
                (c.name.as_str(), c.image.as_deref(), resources)
            })
            .collect(),
    };
    crate::stable_hash::of(&owned)
}

fn applied(d: &Deployment) -> Option<&String> {
    d.metadata
        .annotations
        .as_ref()?
        .get(annotation::APPLIED_POOL_TEMPLATE)
}

/// Brings `existing` in line with `desired` (built by [`super::deployment::build`], which
/// records [`owned_hash`] in [`annotation::APPLIED_POOL_TEMPLATE`]). Returns whether
/// `existing` changed and must be written.
///
/// - No record (a pool Deployment upstream's operator built, or an older cstor-rs): adopted as
///   it is; only the record is added (metadata: no rollout).
/// - Record equal to the desired hash: nothing, whatever the template holds.
/// - Record differs (the CSPC's pool settings or the operator's images changed): the owned
///   fields are synced ([`sync_owned`]) and the record updated; the pool pod is rolled.
pub fn sync_deployment(desired: &Deployment, existing: &mut Deployment) -> bool {
    let Some(want) = applied(desired).cloned() else {
        return sync_owned(desired, existing);
    };
    let have = applied(existing).cloned();
    if have.as_ref() == Some(&want) {
        return false;
    }
    if have.is_some() {
        sync_owned(desired, existing);
    }
    existing
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(annotation::APPLIED_POOL_TEMPLATE.to_owned(), want);
    true
}

/// Brings the fields of `existing` that derive from the CSPI and the operator's configuration
/// (pod node selector, tolerations, priority class; each container's image and resources) to
/// their `desired` values, leaving everything else (server defaults, other controllers'
/// changes, containers we do not build) alone. Returns whether anything changed.
pub fn sync_owned(desired: &Deployment, existing: &mut Deployment) -> bool {
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
        if h.resources != w.resources
            && !(empty_resources(&h.resources) && empty_resources(&w.resources))
        {
            h.resources = w.resources.clone();
            changed = true;
        }
    }
    changed
}
