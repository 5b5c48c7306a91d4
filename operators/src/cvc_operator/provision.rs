//! Provisioning of a Pending CVC (upstream `createVolumeOperation`): validate, plan the
//! replica placement, then get-or-create Service → CStorVolume → target Deployment → CVRs →
//! PDB, and bind.
//!
//! Everything that can make the volume impossible to provision (bad spec, unknown policy or
//! CSPC, too few usable pools) is checked *before* the first object is created, so a CVC that
//! cannot be provisioned leaves nothing behind; it only carries a `ProvisionFailed` condition.

use std::collections::{BTreeMap, BTreeSet};

use cstor_api::{
    constants::{annotation, finalizer, label, value},
    cstor::{
        CStorVolume, CStorVolumeConfig, CStorVolumeConfigPhase, CStorVolumePolicySpec,
        CStorVolumeReplica, CStorVolumeReplicaPhase, CStorVolumeReplicaSpec,
        CStorVolumeReplicaStatus, CStorVolumeSpec, ReplicaPoolInfo, VersionDetails,
    },
    naming,
};
use k8s_openapi::{
    api::core::v1::{Node, ObjectReference},
    apimachinery::pkg::api::resource::Quantity,
};
use kube::{
    Api, Resource, ResourceExt,
    api::{ListParams, ObjectMeta, PostParams},
    runtime::events::EventType,
};
use serde::Serialize;

use super::{
    Context, Error, is_already_exists, pdb,
    placement::{self, Pool},
    pv_name, status, target,
};

/// What a valid CVC asks for.
#[derive(Clone, Debug, PartialEq)]
pub struct Validated {
    /// `spec.provision.replicaCount`.
    pub replica_count: usize,
    /// CSPC name (label `openebs.io/cstor-pool-cluster`).
    pub cspc: String,
    /// `spec.capacity.storage`.
    pub capacity: Quantity,
    /// `spec.provision.capacity.storage` as written (CVR `spec.capacity`).
    pub provision_capacity: String,
    /// `(source PV, snapshot)` for restores/clones.
    pub source: Option<(String, String)>,
}

fn invalid(message: String) -> Error {
    Error::blocked("InvalidSpec", message)
}

fn looks_like_quantity(q: &str) -> bool {
    let digits = q.trim_start_matches(|c: char| c.is_ascii_digit() || c == '.');
    q.starts_with(|c: char| c.is_ascii_digit())
        && [
            "", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "k", "K", "M", "G", "T", "P", "E",
        ]
        .contains(&digits)
}

/// Checks the CVC's own fields (no API access).
pub fn validate(cvc: &CStorVolumeConfig) -> Result<Validated, Error> {
    let name = cvc.name_any();
    let count = cvc.spec.provision.replica_count;
    if count < 1 {
        return Err(invalid(format!(
            "cvc {name}: spec.provision.replicaCount is {count}: it must be at least 1 (set the StorageClass parameter replicaCount)"
        )));
    }
    let storage = |list: &BTreeMap<String, Quantity>, field: &str| -> Result<Quantity, Error> {
        match list.get("storage") {
            Some(q) if looks_like_quantity(&q.0) => Ok(q.clone()),
            Some(q) => Err(invalid(format!(
                "cvc {name}: {field}.storage {:?} is not a size such as 5Gi",
                q.0
            ))),
            None => Err(invalid(format!(
                "cvc {name}: {field}.storage is not set: it must hold the volume size (e.g. 5Gi)"
            ))),
        }
    };
    let capacity = storage(&cvc.spec.capacity, "spec.capacity")?;
    let provision_capacity = storage(&cvc.spec.provision.capacity, "spec.provision.capacity")?.0;
    let cspc = cvc
        .labels()
        .get(label::CSTOR_POOL_CLUSTER)
        .filter(|c| !c.is_empty())
        .cloned()
        .ok_or_else(|| {
            invalid(format!(
                "failed to get cspc name from cstorvolumeclaim {name}: label {} is not set (set the StorageClass parameter cstorPoolCluster)",
                label::CSTOR_POOL_CLUSTER
            ))
        })?;
    let source = match cvc.spec.cstor_volume_source.as_deref() {
        None | Some("") => None,
        Some(s) => {
            let (v, snap) = naming::parse_snapshot_id(s)
                .map_err(|e| invalid(format!("cvc {name}: spec.cstorVolumeSource: {e}")))?;
            Some((v.to_owned(), snap.to_owned()))
        }
    };
    Ok(Validated {
        replica_count: count as usize,
        cspc,
        capacity,
        provision_capacity,
        source,
    })
}

/// Checks `policy.replicaPoolInfo` against the replica count; returns the pool names.
pub fn validate_pool_list(
    cvc_name: &str,
    policy: &CStorVolumePolicySpec,
    replica_count: usize,
) -> Result<Vec<String>, Error> {
    let names: Vec<String> = policy
        .replica_pool_info()
        .iter()
        .map(|p| p.pool_name.clone())
        .collect();
    if names.is_empty() {
        return Ok(names);
    }
    if let Some(i) = names.iter().position(|n| n.is_empty()) {
        return Err(invalid(format!(
            "cvc {cvc_name}: policy replicaPoolInfo[{i}].poolName is empty: name a CStorPoolInstance"
        )));
    }
    let unique: BTreeSet<&String> = names.iter().collect();
    if unique.len() != names.len() {
        return Err(invalid(format!(
            "duplicate pool names {names:?} found under spec of cvc {cvc_name}"
        )));
    }
    if names.len() != replica_count {
        return Err(invalid(format!(
            "failed to distribute cvrs: incorrect number of pool names in cvc policy: expected {replica_count} got {}",
            names.len()
        )));
    }
    Ok(names)
}

/// The policy of a volume: the CVP named by annotation `openebs.io/volume-policy`, else the
/// CVC's own `spec.policy`, with upstream's defaults filled in.
pub async fn load_policy(
    cvc: &CStorVolumeConfig,
    ctx: &Context,
) -> Result<CStorVolumePolicySpec, Error> {
    let name = cvc
        .annotations()
        .get(annotation::VOLUME_POLICY)
        .filter(|n| !n.is_empty());
    let spec = match name {
        None => cvc.spec.policy.clone(),
        Some(n) => match ctx.cached(&ctx.caches().policies, n).await? {
            Some(p) => p.spec,
            None => {
                return Err(Error::blocked(
                    "PolicyNotFound",
                    format!(
                        "CStorVolumePolicy {n:?} (annotation {}) not found in namespace {}: create it or fix the StorageClass parameter cstorVolumePolicy",
                        annotation::VOLUME_POLICY,
                        ctx.config.namespace
                    ),
                ));
            }
        },
    };
    Ok(target::with_defaults(spec))
}

/// Pools (CSPIs) of a CSPC with the zones of their nodes. Errors when the CSPC is unknown.
pub async fn load_pools(ctx: &Context, cspc: &str) -> Result<Vec<Pool>, Error> {
    let caches = ctx.caches();
    if ctx.cached(&caches.pool_clusters, cspc).await?.is_none() {
        return Err(Error::blocked(
            "PoolClusterNotFound",
            format!(
                "CStorPoolCluster {cspc:?} (label {}) not found in namespace {}: create it or fix the StorageClass parameter cstorPoolCluster",
                label::CSTOR_POOL_CLUSTER,
                ctx.config.namespace
            ),
        ));
    }
    let cspis = ctx
        .cached_list(&caches.pools, label::CSTOR_POOL_CLUSTER, cspc)
        .await?;
    // Zones: optional, a missing permission or label only disables zone spreading.
    let mut zones: BTreeMap<String, String> = BTreeMap::new();
    match caches
        .nodes
        .list(
            &Api::<Node>::all(ctx.client.clone()),
            &[(placement::ZONE_LABEL, None)],
        )
        .await
    {
        Ok(nodes) => {
            for node in nodes {
                let labels = node.labels();
                if let Some(zone) = labels.get(placement::ZONE_LABEL) {
                    let host = labels
                        .get(label::HOSTNAME)
                        .cloned()
                        .unwrap_or_else(|| node.name_any());
                    zones.insert(host, zone.clone());
                }
            }
        }
        Err(e) => tracing::debug!(error = %e, "cannot list nodes: no zone spreading"),
    }
    Ok(cspis
        .iter()
        .map(|c| {
            let host = c
                .spec
                .host_name
                .clone()
                .or_else(|| c.labels().get(label::HOSTNAME).cloned())
                .unwrap_or_default();
            Pool::from_cspi(c, zones.get(&host).cloned())
        })
        .collect())
}

/// CVRs of a volume (label `openebs.io/persistent-volume`), straight from the API.
pub async fn list_cvrs(ctx: &Context, pv: &str) -> Result<Vec<CStorVolumeReplica>, Error> {
    Ok(ctx
        .api::<CStorVolumeReplica>()
        .list(&ListParams::default().labels(&format!("{}={pv}", label::PERSISTENT_VOLUME)))
        .await
        .map_err(Error::kube(format!("list CStorVolumeReplicas of {pv}")))?
        .items)
}

/// Pool names of CVRs (label `cstorpoolinstance.openebs.io/name`).
pub fn pools_of(cvrs: &[CStorVolumeReplica]) -> BTreeSet<String> {
    cvrs.iter()
        .filter(|c| c.metadata.deletion_timestamp.is_none())
        .filter_map(|c| c.labels().get(label::CSPI_NAME).cloned())
        .collect()
}

/// Gets `name` from `cached` (the API when the cache is not running), or creates `obj` when
/// absent (409 AlreadyExists: a cache that lagged, reads the winner from the API).
pub async fn get_or_create<K>(
    ctx: &Context,
    cached: &super::cache::Cached<K>,
    obj: &K,
) -> Result<K, Error>
where
    K: super::cache::Namespaced + Serialize,
{
    let kind = K::kind(&());
    let name = obj.meta().name.clone().unwrap_or_default();
    if let Some(found) = ctx.cached(cached, &name).await? {
        return Ok(found);
    }
    let api = ctx.api::<K>();
    ctx.count_write();
    match api.create(&PostParams::default(), obj).await {
        Ok(o) => Ok(o),
        Err(e) if is_already_exists(&e) => api
            .get(&name)
            .await
            .map_err(Error::kube(format!("get {kind} {name}"))),
        Err(e) => Err(Error::kube(format!("create {kind} {name}"))(e)),
    }
}

/// The CStorVolume object for a CVC.
pub fn build_cv(
    cvc: &CStorVolumeConfig,
    v: &Validated,
    target_ip: &str,
    version: &str,
) -> CStorVolume {
    let pv = pv_name(cvc);
    let rf = v.replica_count as i64;
    let mut labels: BTreeMap<String, String> = [
        (label::PERSISTENT_VOLUME.to_owned(), pv.clone()),
        (label::VERSION.to_owned(), version.to_owned()),
        (
            label::PERSISTENT_VOLUME_CLAIM.to_owned(),
            cvc.annotations()
                .get(annotation::PERSISTENT_VOLUME_CLAIM)
                .cloned()
                .unwrap_or_default(),
        ),
    ]
    .into();
    if let Some((src, _)) = &v.source {
        labels.insert(label::SOURCE_VOLUME.to_owned(), src.clone());
    }
    let mut cv = CStorVolume::new(
        pv.clone(),
        CStorVolumeSpec {
            capacity: Some(v.capacity.clone()),
            target_ip: Some(target_ip.to_owned()),
            target_port: Some(cstor_api::constants::engine::ISCSI_PORT.to_string()),
            iqn: Some(naming::iqn(&pv)),
            target_portal: Some(naming::target_portal(target_ip)),
            replication_factor: Some(rf),
            consistency_factor: Some(rf / 2 + 1),
            desired_replication_factor: Some(rf),
            ..Default::default()
        },
    );
    cv.metadata = ObjectMeta {
        name: Some(pv),
        namespace: cvc.namespace(),
        labels: Some(labels),
        owner_references: cvc.controller_owner_ref(&()).map(|o| vec![o]),
        ..Default::default()
    };
    cv.version_details = Some(VersionDetails::at(version));
    cv
}

/// Options of a CVR beyond the volume and pool.
#[derive(Clone, Debug, Default)]
pub struct CvrOptions {
    /// Initial `status.phase` (`Recreate` for scale-up).
    pub phase: CStorVolumeReplicaPhase,
    /// `spec.replicaid` (empty: the pool manager generates it).
    pub replica_id: String,
}

/// A CVR of the volume on `pool`.
pub fn build_cvr(
    cvc: &CStorVolumeConfig,
    cv: &CStorVolume,
    pool: &Pool,
    policy: &CStorVolumePolicySpec,
    capacity: &str,
    version: &str,
    opts: CvrOptions,
) -> CStorVolumeReplica {
    let pv = pv_name(cvc);
    let mut labels: BTreeMap<String, String> = [
        (label::CSPI_NAME.to_owned(), pool.name.clone()),
        (label::CSPI_UID.to_owned(), pool.uid.clone()),
        (label::CSTOR_VOLUME_NAME.to_owned(), pv.clone()),
        (label::PERSISTENT_VOLUME.to_owned(), pv.clone()),
        (label::VERSION.to_owned(), version.to_owned()),
    ]
    .into();
    let mut annotations: BTreeMap<String, String> =
        [(annotation::CSPI_HOSTNAME.to_owned(), pool.host.clone())].into();
    if let Some(src) = cvc
        .spec
        .cstor_volume_source
        .as_deref()
        .filter(|s| !s.is_empty())
        && let Ok((vol, snap)) = naming::parse_snapshot_id(src)
    {
        labels.insert(label::CLONED.to_owned(), value::TRUE.to_owned());
        annotations.insert(annotation::SOURCE_VOLUME.to_owned(), vol.to_owned());
        annotations.insert(annotation::SNAPSHOT.to_owned(), snap.to_owned());
    }
    if cvc
        .annotations()
        .get(annotation::CREATED_THROUGH)
        .map(String::as_str)
        == Some(value::CREATED_THROUGH_RESTORE)
    {
        annotations.insert(
            annotation::IS_RESTORE_VOL.to_owned(),
            value::TRUE.to_owned(),
        );
    }
    let mut cvr = CStorVolumeReplica::new(
        naming::cvr_name(&pv, &pool.name),
        CStorVolumeReplicaSpec {
            target_ip: cv.spec.target_ip.clone(),
            capacity: Some(capacity.to_owned()),
            zvol_workers: Some(
                policy
                    .replica
                    .as_ref()
                    .and_then(|r| r.zvol_workers.clone())
                    .unwrap_or_default(),
            ),
            replica_id: Some(opts.replica_id),
            ..Default::default()
        },
    );
    cvr.metadata.namespace = cvc.namespace();
    cvr.metadata.labels = Some(labels);
    cvr.metadata.annotations = Some(annotations);
    cvr.metadata.owner_references = cv.controller_owner_ref(&()).map(|o| vec![o]);
    cvr.metadata.finalizers = Some(vec![finalizer::CVR.to_owned()]);
    cvr.version_details = Some(VersionDetails::at(version));
    cvr.status = Some(CStorVolumeReplicaStatus {
        phase: Some(opts.phase),
        ..Default::default()
    });
    cvr
}

/// The get-or-create chain and bind.
pub async fn provision(cvc: &CStorVolumeConfig, ctx: &Context) -> Result<(), Error> {
    let pv = pv_name(cvc);
    let v = validate(cvc)?;
    let policy = load_policy(cvc, ctx).await?;
    let plan = Plan::load(cvc, ctx, &v, &policy).await?;
    // Feasibility before creating anything, from the cached replicas ...
    let cached = pools_of(
        &ctx.cached_list(&ctx.caches().replicas, label::PERSISTENT_VOLUME, &pv)
            .await?,
    );
    plan.choose(&cached)?;
    let cv = create_target(cvc, ctx, &v, &policy).await?;
    // ... and the placement that counts from the replicas the API has: the one read of a
    // provisioning pass a lagging cache must not answer, or a re-run could place a second set.
    let existing = pools_of(&list_cvrs(ctx, &pv).await?);
    let chosen = plan.choose(&existing)?;
    let placed = create_replicas(cvc, ctx, &cv, &v, &policy, &chosen, existing).await?;
    if placed.len() < v.replica_count {
        return Err(Error::Waiting {
            reason: "ReplicasPending",
            message: format!(
                "{} of {} replicas exist for volume {pv}",
                placed.len(),
                v.replica_count
            ),
        });
    }
    bind(cvc, ctx, &v, policy, &cv, &placed).await
}

/// The node the replicas should be placed on: the CVC's `publish.nodeId` when the policy asks
/// for replica affinity.
fn preferred_host<'a>(
    cvc: &'a CStorVolumeConfig,
    policy: &CStorVolumePolicySpec,
) -> Option<&'a str> {
    cvc.publish
        .as_ref()
        .and_then(|p| p.node_id.as_deref())
        .filter(|_| policy.replica_affinity())
}

/// What replica placement is decided from, loaded once per provisioning pass: the CSPC's pools,
/// the pools the policy allows and, for a restore or clone, those holding the source volume.
struct Plan<'a> {
    pv: String,
    v: &'a Validated,
    pools: Vec<Pool>,
    allowed: Vec<String>,
    source_pools: Option<BTreeSet<String>>,
    preferred_host: Option<&'a str>,
}

impl<'a> Plan<'a> {
    /// Loads and checks the plan's inputs (the policy's pools must be pools of the CSPC).
    async fn load(
        cvc: &'a CStorVolumeConfig,
        ctx: &Context,
        v: &'a Validated,
        policy: &CStorVolumePolicySpec,
    ) -> Result<Self, Error> {
        let pv = pv_name(cvc);
        let allowed = validate_pool_list(&pv, policy, v.replica_count)?;
        let pools = load_pools(ctx, &v.cspc).await?;
        if let Some(unknown) = allowed
            .iter()
            .find(|a| !pools.iter().any(|p| &p.name == *a))
        {
            return Err(invalid(format!(
                "cvc {pv}: policy replicaPoolInfo names pool {unknown:?}, which is not a CStorPoolInstance of CSPC {:?}",
                v.cspc
            )));
        }
        let source_pools = source_pools(ctx, &pv, v).await?;
        Ok(Self {
            pv,
            v,
            pools,
            allowed,
            source_pools,
            preferred_host: preferred_host(cvc, policy),
        })
    }

    /// The pools of the replicas still missing, given the pools that hold a replica already.
    fn choose(&self, existing: &BTreeSet<String>) -> Result<Vec<Pool>, Error> {
        let chosen = placement::choose(
            &self.pools,
            &placement::Request {
                pv: &self.pv,
                cspc: &self.v.cspc,
                replica_count: self.v.replica_count,
                existing,
                allowed: &self.allowed,
                source_pools: self.source_pools.as_ref(),
                preferred_host: self.preferred_host,
            },
        )
        .map_err(|e| Error::blocked("NotEnoughPools", e.to_string()))?;
        Ok(chosen.into_iter().cloned().collect())
    }
}

/// For a restore or clone, the pools holding the source volume (there must be some).
async fn source_pools(
    ctx: &Context,
    pv: &str,
    v: &Validated,
) -> Result<Option<BTreeSet<String>>, Error> {
    let Some((src, snap)) = &v.source else {
        return Ok(None);
    };
    let src_pools = pools_of(
        &ctx.cached_list(&ctx.caches().replicas, label::PERSISTENT_VOLUME, src)
            .await?,
    );
    if src_pools.is_empty() {
        return Err(Error::blocked(
            "SourceVolumeNotFound",
            format!(
                "cvc {pv}: cannot restore from {src}@{snap}: source volume {src} has no replicas in namespace {}",
                ctx.config.namespace
            ),
        ));
    }
    Ok(Some(src_pools))
}

/// Gets or creates the target: its Service (waiting for a ClusterIP), the CStorVolume, then
/// the target Deployment. Returns the CStorVolume.
async fn create_target(
    cvc: &CStorVolumeConfig,
    ctx: &Context,
    v: &Validated,
    policy: &CStorVolumePolicySpec,
) -> Result<CStorVolume, Error> {
    let pv = pv_name(cvc);
    let version = &ctx.config.version;
    let caches = ctx.caches();
    let svc = get_or_create(ctx, &caches.services, &target::build_service(cvc, version)).await?;
    let ip = svc
        .spec
        .as_ref()
        .and_then(|s| s.cluster_ip.clone())
        .filter(|ip| !ip.is_empty() && ip != "None")
        .ok_or_else(|| Error::Waiting {
            reason: "TargetServiceIPPending",
            message: format!("waiting for target Service {pv} to get a ClusterIP"),
        })?;
    let cv = get_or_create(ctx, &caches.volumes, &build_cv(cvc, v, &ip, version)).await?;
    if cv.metadata.deletion_timestamp.is_some() {
        return Err(Error::Waiting {
            reason: "OldVolumeTerminating",
            message: format!("CStorVolume {pv} of a previous volume is still being deleted"),
        });
    }
    get_or_create(
        ctx,
        &caches.deployments,
        &target::build_deployment(cvc, &cv, policy, &ctx.config),
    )
    .await?;
    Ok(cv)
}

/// Gets or creates a CVR on each chosen pool. Returns the pools that now hold a replica.
async fn create_replicas(
    cvc: &CStorVolumeConfig,
    ctx: &Context,
    cv: &CStorVolume,
    v: &Validated,
    policy: &CStorVolumePolicySpec,
    chosen: &[Pool],
    existing: BTreeSet<String>,
) -> Result<BTreeSet<String>, Error> {
    if let Some(host) = preferred_host(cvc, policy) {
        ctx.event(
            cvc,
            EventType::Normal,
            "Provisioning",
            format!("replica affinity is enabled, nodeID is {host}"),
        )
        .await;
    }
    let caches = ctx.caches();
    let mut placed = existing;
    for pool in chosen {
        let cvr = build_cvr(
            cvc,
            cv,
            pool,
            policy,
            &v.provision_capacity,
            &ctx.config.version,
            CvrOptions::default(),
        );
        get_or_create(ctx, &caches.replicas, &cvr).await?;
        placed.insert(pool.name.clone());
    }
    Ok(placed)
}

/// Binds the CVC: records the replicas' pools in its policy and status, resyncs the PDB, points
/// it at the CStorVolume and sets phase Bound.
async fn bind(
    cvc: &CStorVolumeConfig,
    ctx: &Context,
    v: &Validated,
    mut policy: CStorVolumePolicySpec,
    cv: &CStorVolume,
    placed: &BTreeSet<String>,
) -> Result<(), Error> {
    let mut bound = cvc.clone();
    let names = pool_names(&policy, placed);
    policy.replica_pool_info = Some(names.iter().map(ReplicaPoolInfo::named).collect());
    pdb::resync(ctx, &mut bound, &v.cspc, placed).await?;
    bound.spec.cstor_volume_ref = Some(volume_ref(cv));
    // Our record of the policy the target was built with; upstream's template-hash label is
    // not ours to write (its value is a hash of a Go dump of the policy).
    let upstream = bound
        .labels()
        .get(label::TEMPLATE_HASH)
        .cloned()
        .unwrap_or_default();
    bound.annotations_mut().insert(
        annotation::APPLIED_POLICY.to_owned(),
        target::applied_record(&target::policy_hash(&policy), &upstream),
    );
    bound.spec.policy = policy;
    bound.status.phase = Some(CStorVolumeConfigPhase::Bound);
    bound.status.capacity = Some(bound.spec.capacity.clone());
    bound.status.pool_info = Some(names);
    if bound.version_details.is_empty() {
        bound.version_details = VersionDetails::at(&ctx.config.version);
    }
    status::clear_condition(&mut bound, status::PROVISION_FAILED);
    status::replace_cvc(&mut bound, ctx).await?;
    ctx.event(
        &bound,
        EventType::Normal,
        "Synced",
        "cstorvolumeconfig created successfully",
    )
    .await;
    Ok(())
}

/// The policy's pools in their order, then the other pools holding a replica.
fn pool_names(policy: &CStorVolumePolicySpec, placed: &BTreeSet<String>) -> Vec<String> {
    let mut names: Vec<String> = policy
        .replica_pool_info()
        .iter()
        .map(|p| p.pool_name.clone())
        .collect();
    for p in placed {
        if !names.contains(p) {
            names.push(p.clone());
        }
    }
    names
}

/// A reference to the CStorVolume, as the CVC's `spec.cstorVolumeRef` holds it.
fn volume_ref(cv: &CStorVolume) -> ObjectReference {
    ObjectReference {
        api_version: Some(CStorVolume::API_VERSION.to_owned()),
        kind: Some(CStorVolume::KIND.to_owned()),
        name: cv.metadata.name.clone(),
        namespace: cv.metadata.namespace.clone(),
        uid: cv.metadata.uid.clone(),
        resource_version: cv.metadata.resource_version.clone(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cstor_api::cstor::{VolumeProvision, from_yaml};

    fn cvc(count: i64) -> CStorVolumeConfig {
        let mut c: CStorVolumeConfig = from_yaml(
            "apiVersion: cstor.openebs.io/v1\nkind: CStorVolumeConfig\nmetadata: {name: pvc-1, namespace: openebs, labels: {openebs.io/cstor-pool-cluster: cspc}}\nspec: {capacity: {storage: 5Gi}, provision: {capacity: {storage: 5Gi}, replicaCount: 1}, policy: {}}\nstatus: {phase: Pending}\nversionDetails: {}\n",
        )
        .unwrap();
        c.spec.provision = VolumeProvision {
            replica_count: count,
            ..c.spec.provision
        };
        c
    }

    #[test]
    fn validation_names_the_field() {
        assert_eq!(validate(&cvc(3)).unwrap().replica_count, 3);
        let e = validate(&cvc(0)).unwrap_err().to_string();
        assert!(e.contains("spec.provision.replicaCount is 0"), "{e}");
        let mut c = cvc(1);
        c.metadata.labels = None;
        assert!(
            validate(&c)
                .unwrap_err()
                .to_string()
                .contains("failed to get cspc name")
        );
        let mut c = cvc(1);
        c.spec.cstor_volume_source = Some("novolume".into());
        assert!(
            validate(&c)
                .unwrap_err()
                .to_string()
                .contains("spec.cstorVolumeSource")
        );
        let mut c = cvc(1);
        c.spec
            .capacity
            .insert("storage".into(), Quantity("lots".into()));
        assert!(
            validate(&c)
                .unwrap_err()
                .to_string()
                .contains("spec.capacity.storage")
        );
    }

    #[test]
    fn pool_list_rules() {
        let p = |names: &[&str]| CStorVolumePolicySpec {
            replica_pool_info: Some(names.iter().map(|n| ReplicaPoolInfo::named(*n)).collect()),
            ..Default::default()
        };
        assert_eq!(
            validate_pool_list("c", &p(&["a", "b"]), 2).unwrap(),
            ["a", "b"]
        );
        let e = validate_pool_list("c", &p(&["a"]), 2)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "failed to distribute cvrs: incorrect number of pool names in cvc policy: expected 2 got 1"
        );
        assert!(
            validate_pool_list("c", &p(&["a", "a"]), 2)
                .unwrap_err()
                .to_string()
                .contains("duplicate pool names")
        );
        assert!(
            validate_pool_list("c", &p(&["a", ""]), 2)
                .unwrap_err()
                .to_string()
                .contains("poolName is empty")
        );
    }
}
