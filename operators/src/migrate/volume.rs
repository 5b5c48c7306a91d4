//! Volume migration: a legacy cStor volume (external iSCSI provisioner; legacy CStorVolume,
//! CStorVolumeReplicas and `<pv>-target` Deployment, group `openebs.io/v1alpha1`) → a CSI
//! volume served by our operators, its data left where it is.
//!
//! Preconditions: the pools of its replicas were migrated first (`cstor-migrate cstor-spc`: the
//! legacy replicas then name their CStorPoolInstance), no pod uses the claim, the cvc-operator
//! runs this tool's version.
//!
//! In order, each step skipped when already done, so a run that stopped anywhere is run again
//! to finish: a temporary CStorVolumePolicy `<pv>` pins the new replicas to the pools holding
//! the zvols and keeps the target's settings; the PV is retained; the StorageClass is rewritten
//! under the same name for the CSI driver (with a policy of the same name from its
//! `cas.openebs.io/config`); the PVC and the PV are recreated with the same names for the CSI
//! driver; the old target Deployment goes, the target Service stays (or moves to the OpenEBS
//! namespace keeping its ClusterIP: the zvols know the target by that address); a
//! CStorVolumeConfig is created. The cvc-operator then makes the new target and replicas, the
//! pool managers find the zvols already there and read their replica IDs back. Once the volume
//! is Bound on those pools and Healthy, the legacy objects and the temporary policy go and the
//! legacy snapshots become CSI VolumeSnapshots (see [`super::snapshot`]).

use std::collections::BTreeMap;

use anyhow::{Context as _, bail};
use cstor_api::{
    constants::{annotation, finalizer, label, value},
    cstor::{
        CStorVolume, CStorVolumeConfig, CStorVolumePhase, CStorVolumePolicy, CStorVolumeReplica,
        ReplicaPoolInfo, from_value,
    },
    migration::{MigrateCStorVolume, MigrationTaskSpec},
};
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{PersistentVolume, PersistentVolumeClaim, Pod, Service},
    storage::v1::StorageClass,
};
use kube::{
    Api, Resource, ResourceExt,
    api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams},
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    Migrator, check_operator, delete_if_present, is_conflict, legacy, legacy_cvrs, list_or_empty,
    snapshot, str_at,
    task::{MIGRATE, PRE_MIGRATION, Reporter},
    wait_for,
};

/// The CSI driver's name.
pub const CSI_DRIVER: &str = "cstor.csi.openebs.io";
/// Annotation of a claim naming its provisioner.
pub const STORAGE_PROVISIONER: &str = "volume.beta.kubernetes.io/storage-provisioner";
/// Annotation of a volume naming its provisioner.
pub const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
/// Annotation of the legacy StorageClasses holding the volume settings.
pub const CAS_CONFIG: &str = "cas.openebs.io/config";
/// Label of a legacy StorageClass asking for target affinity with the application.
pub const STS_TARGET_AFFINITY: &str = "openebs.io/sts-target-affinity";
/// Annotation on the temporary StorageClass naming the volume whose run holds it.
pub const LOCK_PV: &str = "pv-name";
/// Annotation letting the legacy admission webhook delete a claim.
pub const SKIP_VALIDATIONS: &str = super::pool::SKIP_VALIDATIONS;
/// Label of the legacy replicas naming their pool (before the pool migration).
pub const LEGACY_CSP_NAME: &str = "cstorpool.openebs.io/name";

/// What a run did (a dry run: the objects it would write).
pub type Outcome = super::Outcome<Plan>;

/// The objects a run writes (what a dry run prints).
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The temporary policy `<pv>`.
    pub policy: CStorVolumePolicy,
    /// The StorageClass for the CSI driver, when it is still a legacy one.
    pub storage_class: Option<StorageClass>,
    /// Its policy (named like the StorageClass), when it is created.
    pub storage_class_policy: Option<CStorVolumePolicy>,
    /// The claim for the CSI driver, when it is still a legacy one.
    pub claim: Option<PersistentVolumeClaim>,
    /// The volume for the CSI driver, when it is still a legacy one.
    pub volume: Option<PersistentVolume>,
    /// The CStorVolumeConfig.
    pub cvc: CStorVolumeConfig,
}

impl Plan {
    /// The objects as a YAML stream.
    pub fn to_yaml(&self) -> anyhow::Result<String> {
        let mut docs = vec![serde_yaml::to_string(&self.policy)?];
        if let Some(sc) = &self.storage_class {
            docs.push(serde_yaml::to_string(sc)?);
        }
        if let Some(p) = &self.storage_class_policy {
            docs.push(serde_yaml::to_string(p)?);
        }
        if let Some(c) = &self.claim {
            docs.push(serde_yaml::to_string(c)?);
        }
        if let Some(v) = &self.volume {
            docs.push(serde_yaml::to_string(v)?);
        }
        docs.push(serde_yaml::to_string(&self.cvc)?);
        Ok(docs.join("---\n"))
    }
}

fn legacy_cvs(m: &Migrator) -> Api<DynamicObject> {
    Api::all_with(m.client.clone(), &legacy("CStorVolume", "cstorvolumes"))
}

fn legacy_cvs_in(m: &Migrator, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(m.client.clone(), ns, &legacy("CStorVolume", "cstorvolumes"))
}

fn ns_api<K>(m: &Migrator) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    Api::namespaced(m.client.clone(), &m.namespace)
}

fn pv_selector(pv: &str) -> ListParams {
    ListParams::default().labels(&format!("{}={pv}", label::PERSISTENT_VOLUME))
}

/// Runs the volume migration of `pv`, recording it in MigrationTask
/// `migrate-cstor-volume-<pv>`.
pub async fn migrate(m: &Migrator, pv: &str, backoff_limit: i64) -> anyhow::Result<Outcome> {
    if pv.is_empty() {
        bail!("Cannot execute migrate job: cstor pv name is missing");
    }
    let spec = MigrationTaskSpec {
        cstor_volume: Some(MigrateCStorVolume { pv_name: pv.into() }),
        ..Default::default()
    };
    let task = Reporter::start(
        m.client.clone(),
        &m.namespace,
        &format!("migrate-cstor-volume-{pv}"),
        spec,
        !m.dry_run,
    )
    .await
    .context("MigrationTask")?;
    let result = run(m, &task, pv).await;
    task.finish(result.is_ok(), backoff_limit).await?;
    result.with_context(|| format!("Failed to migrate cStor Volume : {pv}"))
}

async fn run(m: &Migrator, task: &Reporter, pv: &str) -> anyhow::Result<Outcome> {
    task.step(
        PRE_MIGRATION,
        "Pre-migration steps were successful",
        "error in pre-migration steps",
        async {
            check_operator(m, "cvc-operator")
                .await
                .context("error validating cvc operator")
        },
    )
    .await?;
    task.step(
        MIGRATE,
        "Migration steps were successful",
        &format!("error migrating volume {pv}"),
        migrate_volume(m, pv),
    )
    .await
}

/// What the run found of the volume.
struct Found {
    /// The legacy CStorVolume.
    cv: DynamicObject,
    /// Its namespace (the OpenEBS namespace, or the claim's).
    cv_ns: String,
    /// The legacy replicas.
    cvrs: Vec<DynamicObject>,
    /// The PersistentVolume (absent when an interrupted run already deleted it).
    pv: Option<PersistentVolume>,
    /// The claim's namespace and name.
    claim: (String, String),
    /// The StorageClass (the PV's, or the claim's when the PV is gone).
    storage_class: String,
}

impl Found {
    /// The StorageClass of the volume.
    fn storage_class(&self) -> String {
        self.storage_class.clone()
    }
}

async fn migrate_volume(m: &Migrator, pv: &str) -> anyhow::Result<Outcome> {
    let legacy = list_or_empty(&legacy_cvs(m), &pv_selector(pv))
        .await
        .context("failed to check migration status")?;
    if legacy.is_empty() {
        let cvs: Api<CStorVolume> = ns_api(m);
        if cvs.get_opt(pv).await?.is_none() {
            bail!(
                "failed to check migration status: neither a legacy cstorvolume nor a cstorvolume {pv} in namespace {} exists",
                m.namespace
            );
        }
        if m.dry_run {
            return Ok(Outcome::AlreadyMigrated);
        }
        finish(m, pv).await?;
        return Ok(Outcome::AlreadyMigrated);
    }
    let found = find(m, pv, legacy).await?;
    let plan = plan(m, pv, &found).await?;
    if m.dry_run {
        return Ok(Outcome::DryRun(Box::new(plan)));
    }
    apply(m, pv, &found, &plan).await?;
    finish(m, pv).await?;
    Ok(Outcome::Migrated)
}

/// What the run is to write, from what it found; checks the preconditions on the way.
async fn plan(m: &Migrator, pv: &str, found: &Found) -> anyhow::Result<Plan> {
    let policy = temporary_policy(m, pv, found)
        .await
        .context("failed to create temporary policy")?;
    check_unused(m, pv, &found.claim)
        .await
        .with_context(|| format!("failed to verify mount status for pv {pv}"))?;
    let sc_name = found.storage_class();
    let (storage_class, storage_class_policy) = csi_storage_class(m, pv, &sc_name, found)
        .await
        .with_context(|| format!("failed to update storageclass {sc_name}"))?;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(m.client.clone(), &found.claim.0);
    let old_claim = claims.get_opt(&found.claim.1).await?;
    let claim = match &found.pv {
        Some(v) if !is_csi_claim(old_claim.as_ref()) => Some(csi_claim(v, &found.claim)?),
        _ => None,
    };
    let cvc = generate_cvc(m, pv, found, &storage_class, &sc_name).await?;
    let sc_for_pv = match &storage_class {
        Some(sc) => Some(sc.clone()),
        None => {
            Api::<StorageClass>::all(m.client.clone())
                .get_opt(&sc_name)
                .await?
        }
    };
    let volume = match &found.pv {
        Some(v) if v.spec.as_ref().is_some_and(|s| s.csi.is_some()) => None,
        Some(v) => Some(csi_volume_from_pv(v, sc_for_pv.as_ref(), &found.claim)),
        None => Some(csi_volume_from_cv(
            pv,
            &found.cv,
            sc_for_pv.as_ref(),
            old_claim.as_ref(),
            &found.claim,
        )?),
    };
    Ok(Plan {
        policy,
        storage_class,
        storage_class_policy,
        claim,
        volume,
        cvc,
    })
}

/// Writes the plan in upstream's order, each step skipped when already done.
async fn apply(m: &Migrator, pv: &str, found: &Found, plan: &Plan) -> anyhow::Result<()> {
    write_policy(m, &plan.policy).await?;
    let pvs: Api<PersistentVolume> = Api::all(m.client.clone());
    if let Some(v) = &found.pv
        && v.spec.as_ref().is_none_or(|s| s.csi.is_none())
    {
        retain(&pvs, v)
            .await
            .with_context(|| format!("failed to retain pv {pv}"))?;
    }
    let sc_name = found.storage_class();
    if plan.storage_class.is_some() || plan.storage_class_policy.is_some() {
        replace_storage_class(
            m,
            pv,
            &sc_name,
            plan.storage_class.as_ref(),
            plan.storage_class_policy.as_ref(),
        )
        .await
        .with_context(|| format!("failed to update storageclass {sc_name}"))?;
    }
    if let Some(c) = &plan.claim {
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(m.client.clone(), &found.claim.0);
        replace_claim(m, &claims, c)
            .await
            .context("failed to migrate pvc to csi spec")?;
    }
    if let Some(v) = &plan.volume {
        replace_volume(m, &pvs, v)
            .await
            .context("failed to migrate pv to csi spec")?;
    }
    let cvcs: Api<CStorVolumeConfig> = ns_api(m);
    if cvcs.get_opt(pv).await?.is_none() {
        move_target(m, pv, found)
            .await
            .context("failed to remove old target deployment")?;
        cvcs.create(&PostParams::default(), &plan.cvc)
            .await
            .context("failed to create cvc")?;
    }
    validate(m, pv, &plan.policy)
        .await
        .context("failed to validate migrated volume")?;
    let affinity = plan
        .policy
        .spec
        .target
        .as_ref()
        .and_then(|t| t.affinity.clone());
    if let Some(affinity) = affinity {
        let patch =
            json!({"spec": {"template": {"spec": {"affinity": {"podAffinity": affinity}}}}});
        ns_api::<Deployment>(m)
            .patch(
                &cstor_api::naming::target_deployment_name(pv),
                &PatchParams::default(),
                &Patch::Strategic(&patch),
            )
            .await
            .context("failed to patch target affinity")?;
    }
    clean_up(m, pv, found)
        .await
        .context("failed to cleanup old volume resources")
}

/// The end of every run that finds the volume migrated: the temporary policy goes and the
/// legacy snapshots are moved.
async fn finish(m: &Migrator, pv: &str) -> anyhow::Result<()> {
    delete_if_present(&ns_api::<CStorVolumePolicy>(m), pv)
        .await
        .with_context(|| format!("failed to delete temporary policy {pv}"))?;
    snapshot::migrate(m, pv)
        .await
        .with_context(|| format!("failed to migrate snapshots for volume {pv}"))
}

/// The legacy volume, its replicas, the PV and its claim.
async fn find(m: &Migrator, pv: &str, legacy: Vec<DynamicObject>) -> anyhow::Result<Found> {
    let [cv] = legacy.as_slice() else {
        bail!(
            "failed to fetch cv namespace: expected exactly 1 cv for {pv}, got {}",
            legacy.len()
        );
    };
    if cv.name_any() != pv {
        bail!("failed to fetch cv namespace: cv {pv} not found for given pv");
    }
    let cv_ns = cv.namespace().unwrap_or_default();
    let pvs: Api<PersistentVolume> = Api::all(m.client.clone());
    let volume = pvs.get_opt(pv).await?;
    let (claim, storage_class) = match &volume {
        Some(v) => {
            let spec = v.spec.as_ref();
            let r = spec
                .and_then(|s| s.claim_ref.as_ref())
                .with_context(|| format!("failed to validate pvname: pv {pv} has no claimRef"))?;
            (
                (
                    r.namespace.clone().unwrap_or_default(),
                    r.name.clone().unwrap_or_default(),
                ),
                spec.and_then(|s| s.storage_class_name.clone()),
            )
        }
        None => {
            // An interrupted run deleted the PV: its claim is already the new one.
            let claims: Api<PersistentVolumeClaim> = Api::all(m.client.clone());
            let c = claims
                .list(&ListParams::default())
                .await?
                .items
                .into_iter()
                .find(|c| c.spec.as_ref().and_then(|s| s.volume_name.as_deref()) == Some(pv))
                .with_context(|| {
                    format!("failed to validate pvname: No PVC found for the given PV {pv}")
                })?;
            let sc = c.spec.as_ref().and_then(|s| s.storage_class_name.clone());
            ((c.namespace().unwrap_or_default(), c.name_any()), sc)
        }
    };
    let cvrs = list_or_empty(&legacy_cvrs(m), &pv_selector(pv)).await?;
    Ok(Found {
        cv: cv.clone(),
        cv_ns,
        cvrs,
        pv: volume,
        claim,
        storage_class: storage_class.unwrap_or_default(),
    })
}

/// The CSPI a legacy replica lives on (set by the pool migration).
fn replica_pool(cvr: &DynamicObject) -> anyhow::Result<String> {
    match cvr.labels().get(label::CSPI_NAME) {
        Some(p) if !p.is_empty() => Ok(p.clone()),
        _ => {
            let csp = cvr
                .labels()
                .get(LEGACY_CSP_NAME)
                .cloned()
                .unwrap_or_default();
            bail!(
                "cvr {} has no {} label: its pool {csp} is not migrated yet (run cstor-migrate cstor-spc for it first)",
                cvr.name_any(),
                label::CSPI_NAME
            )
        }
    }
}

/// The temporary policy `<pv>`: reused when it exists, else built from the old target, the
/// legacy volume and its replicas.
async fn temporary_policy(m: &Migrator, pv: &str, f: &Found) -> anyhow::Result<CStorVolumePolicy> {
    if let Some(p) = ns_api::<CStorVolumePolicy>(m).get_opt(pv).await? {
        return Ok(p);
    }
    let rf =
        f.cv.data
            .pointer("/spec/replicationFactor")
            .and_then(Value::as_i64)
            .unwrap_or(0);
    if f.cvrs.len() as i64 != rf {
        bail!(
            "failed to get cvrs for volume {pv}, expected {rf} got {}",
            f.cvrs.len()
        );
    }
    let pools = f
        .cvrs
        .iter()
        .map(replica_pool)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let deployments: Api<Deployment> = Api::namespaced(m.client.clone(), &f.cv_ns);
    let target_name = cstor_api::naming::target_deployment_name(pv);
    let target = deployments
        .get_opt(&target_name)
        .await?
        .with_context(|| format!("target deployment {}/{target_name} not found", f.cv_ns))?;
    let pod = target
        .spec
        .and_then(|s| s.template.spec)
        .unwrap_or_default();
    let env = |name: &str| {
        pod.containers
            .iter()
            .find(|c| c.name == "cstor-istgt")
            .and_then(|c| c.env.as_ref())
            .and_then(|e| e.iter().find(|v| v.name == name))
            .and_then(|v| v.value.clone())
            .filter(|v| !v.is_empty())
    };
    let mut target_spec = json!({});
    let t = target_spec.as_object_mut().expect("object");
    if let Some(p) = &pod.priority_class_name {
        t.insert("priorityClassName".into(), json!(p));
    }
    if let Some(tol) = &pod.tolerations {
        t.insert("tolerations".into(), serde_json::to_value(tol)?);
    }
    if let Some(a) = pod.affinity.as_ref().and_then(|a| a.pod_affinity.as_ref()) {
        t.insert("affinity".into(), serde_json::to_value(a)?);
    }
    if let Some(ns) = &pod.node_selector {
        t.insert("nodeSelector".into(), serde_json::to_value(ns)?);
    }
    if let Some(q) = env("QueueDepth") {
        t.insert("queueDepth".into(), json!(q));
    }
    if let Some(l) = env("Luworkers") {
        let l: i64 = l
            .parse()
            .with_context(|| format!("target env Luworkers={l:?} is not a number"))?;
        t.insert("luWorkers".into(), json!(l));
    }
    let mut spec = json!({
        "target": target_spec,
        "replicaPoolInfo": pools.iter().map(|p| json!({"poolName": p})).collect::<Vec<_>>(),
    });
    let zvol_workers = f
        .cvrs
        .first()
        .map(|c| str_at(&c.data, "/spec/zvolWorkers"))
        .unwrap_or("");
    if !zvol_workers.is_empty() {
        spec["replica"] = json!({"zvolWorkers": zvol_workers});
    }
    Ok(from_value(json!({
        "apiVersion": CStorVolumePolicy::API_VERSION, "kind": CStorVolumePolicy::KIND,
        "metadata": {"name": pv, "namespace": m.namespace},
        "spec": spec,
    }))?)
}

async fn write_policy(m: &Migrator, policy: &CStorVolumePolicy) -> anyhow::Result<()> {
    let api: Api<CStorVolumePolicy> = ns_api(m);
    if api.get_opt(&policy.name_any()).await?.is_none() {
        match api.create(&PostParams::default(), policy).await {
            Ok(_) => {}
            Err(e) if is_conflict(&e) => {}
            Err(e) => return Err(e).context("failed to create temporary policy"),
        }
    }
    Ok(())
}

/// No pod in the claim's namespace mounts the claim.
async fn check_unused(m: &Migrator, pv: &str, claim: &(String, String)) -> anyhow::Result<()> {
    let pods: Api<Pod> = Api::namespaced(m.client.clone(), &claim.0);
    for p in pods.list(&ListParams::default()).await?.items {
        let uses = p
            .spec
            .as_ref()
            .and_then(|s| s.volumes.as_ref())
            .is_some_and(|vs| {
                vs.iter().any(|v| {
                    v.persistent_volume_claim
                        .as_ref()
                        .is_some_and(|c| c.claim_name == claim.1)
                })
            });
        if uses {
            bail!(
                "the volume {pv} is mounted on {}, please scale down all apps before migrating",
                p.name_any()
            );
        }
    }
    Ok(())
}

async fn retain(pvs: &Api<PersistentVolume>, v: &PersistentVolume) -> anyhow::Result<()> {
    let policy = v
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref());
    if policy != Some("Retain") {
        let patch = json!({"spec": {"persistentVolumeReclaimPolicy": "Retain"}});
        pvs.patch(
            &v.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    }
    Ok(())
}

/// One entry of a legacy StorageClass's `cas.openebs.io/config`.
#[derive(Debug, Deserialize)]
struct CasConfig {
    name: String,
    #[serde(default)]
    value: String,
}

/// The CSI StorageClass (same name) and its policy, when the StorageClass is still a legacy
/// one (`None, None` when it was already rewritten, by this run or another volume's).
async fn csi_storage_class(
    m: &Migrator,
    pv: &str,
    name: &str,
    f: &Found,
) -> anyhow::Result<(Option<StorageClass>, Option<CStorVolumePolicy>)> {
    let classes: Api<StorageClass> = Api::all(m.client.clone());
    let live = classes.get_opt(name).await?;
    let lock = classes.get_opt(&lock_name(name)).await?;
    if let Some(l) = &lock
        && l.annotations().get(LOCK_PV).map(String::as_str) != Some(pv)
    {
        // Another volume's run is rewriting it.
        return Ok((None, None));
    }
    let source = match (&live, &lock) {
        (Some(sc), _) if sc.provisioner == CSI_DRIVER => return Ok((None, None)),
        (Some(sc), _) => sc.clone(),
        // An interrupted run deleted the StorageClass after writing its copy.
        (None, Some(l)) => l.clone(),
        (None, None) => bail!("storageclass {name} not found"),
    };
    let first = f
        .cvrs
        .first()
        .with_context(|| format!("no cvr found for pv {pv}"))?;
    let cspi = first
        .labels()
        .get(label::CSPI_NAME)
        .with_context(|| format!("no cspi label found on cvr {}", first.name_any()))?;
    let cspc =
        Api::<cstor_api::cstor::CStorPoolInstance>::namespaced(m.client.clone(), &m.namespace)
            .get_opt(cspi)
            .await?
            .and_then(|c| c.labels().get(label::CSTOR_POOL_CLUSTER).cloned())
            .with_context(|| format!("cspi {cspi} of cvr {} has no cspc", first.name_any()))?;
    let rf =
        f.cv.data
            .pointer("/spec/replicationFactor")
            .and_then(Value::as_i64)
            .unwrap_or(0);
    let mut parameters = BTreeMap::from([
        ("cas-type".to_owned(), value::CAS_TYPE_CSTOR.to_owned()),
        ("replicaCount".to_owned(), rf.to_string()),
        ("cstorPoolCluster".to_owned(), cspc),
    ]);
    let existing_policy = ns_api::<CStorVolumePolicy>(m).get_opt(name).await?;
    let (policy, fs_type) = policy_from_config(m, name, &source)?;
    let sc_policy = if existing_policy.is_some() {
        None
    } else {
        Some(policy)
    };
    parameters.insert("cstorVolumePolicy".into(), name.to_owned());
    if let Some(fs) = fs_type {
        parameters.insert("fsType".into(), fs);
    }
    let mut annotations = source.metadata.annotations.clone().unwrap_or_default();
    annotations.remove(LOCK_PV);
    let sc = StorageClass {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_owned()),
            labels: source.metadata.labels.clone(),
            annotations: Some(annotations),
            ..Default::default()
        },
        provisioner: CSI_DRIVER.into(),
        allow_volume_expansion: Some(true),
        parameters: Some(parameters),
        reclaim_policy: source.reclaim_policy.clone(),
        volume_binding_mode: source.volume_binding_mode.clone(),
        mount_options: source.mount_options.clone(),
        allowed_topologies: source.allowed_topologies.clone(),
    };
    Ok((Some(sc), sc_policy))
}

fn lock_name(sc: &str) -> String {
    format!("tmp-migrate-{sc}")
}

/// The policy a legacy StorageClass's `cas.openebs.io/config` describes, and its `FSType`.
fn policy_from_config(
    m: &Migrator,
    name: &str,
    sc: &StorageClass,
) -> anyhow::Result<(CStorVolumePolicy, Option<String>)> {
    let raw = sc
        .annotations()
        .get(CAS_CONFIG)
        .cloned()
        .unwrap_or_default();
    let entries: Vec<CasConfig> = if raw.trim().is_empty() {
        Vec::new()
    } else {
        serde_yaml::from_str(&raw).with_context(|| {
            format!(
                "storageclass {name}: annotation {CAS_CONFIG} is not a list of name/value pairs"
            )
        })?
    };
    let yaml = |key: &str, v: &str| -> anyhow::Result<Value> {
        serde_yaml::from_str(v).with_context(|| {
            format!("storageclass {name}: {CAS_CONFIG} {key} is not a YAML map: {v:?}")
        })
    };
    let mut target = serde_json::Map::new();
    let mut replica = serde_json::Map::new();
    let mut fs_type = None;
    for e in &entries {
        let v = e.value.trim();
        if v.is_empty() {
            continue;
        }
        match e.name.as_str() {
            "TargetResourceRequests" => {
                target.entry("resources").or_insert_with(|| json!({}))["requests"] =
                    yaml(&e.name, v)?
            }
            "TargetResourceLimits" => {
                target.entry("resources").or_insert_with(|| json!({}))["limits"] = yaml(&e.name, v)?
            }
            "AuxResourceRequests" => {
                target.entry("auxResources").or_insert_with(|| json!({}))["requests"] =
                    yaml(&e.name, v)?
            }
            "AuxResourceLimits" => {
                target.entry("auxResources").or_insert_with(|| json!({}))["limits"] =
                    yaml(&e.name, v)?
            }
            "TargetNodeSelector" => {
                target.insert("nodeSelector".into(), yaml(&e.name, v)?);
            }
            "TargetTolerations" => {
                let map = yaml(&e.name, v)?;
                let list: Vec<Value> = map
                    .as_object()
                    .map(|o| o.values().cloned().collect())
                    .unwrap_or_default();
                target.insert("tolerations".into(), Value::Array(list));
            }
            "Luworkers" => {
                let n: i64 = v.parse().with_context(|| {
                    format!("storageclass {name}: {CAS_CONFIG} Luworkers={v:?} is not a number")
                })?;
                target.insert("luWorkers".into(), json!(n));
            }
            "QueueDepth" => {
                target.insert("queueDepth".into(), json!(v));
            }
            "ZvolWorkers" => {
                replica.insert("zvolWorkers".into(), json!(v));
            }
            "FSType" => fs_type = Some(v.to_owned()),
            _ => {}
        }
    }
    let mut spec = json!({"target": target});
    if !replica.is_empty() {
        spec["replica"] = Value::Object(replica);
    }
    if sc.labels().contains_key(STS_TARGET_AFFINITY) {
        spec["provision"] = json!({"replicaAffinity": true});
    }
    let policy = from_value(json!({
        "apiVersion": CStorVolumePolicy::API_VERSION, "kind": CStorVolumePolicy::KIND,
        "metadata": {"name": name, "namespace": m.namespace},
        "spec": spec,
    }))
    .with_context(|| {
        format!("storageclass {name}: {CAS_CONFIG} does not make a CStorVolumePolicy")
    })?;
    Ok((policy, fs_type))
}

/// The StorageClass swap, under the lock StorageClass `tmp-migrate-<sc>`: its copy is written
/// first (so an interrupted run still has it), then the policy, then the old class is replaced.
async fn replace_storage_class(
    m: &Migrator,
    pv: &str,
    name: &str,
    sc: Option<&StorageClass>,
    policy: Option<&CStorVolumePolicy>,
) -> anyhow::Result<()> {
    let classes: Api<StorageClass> = Api::all(m.client.clone());
    let lock = lock_name(name);
    if classes.get_opt(&lock).await?.is_none() {
        let Some(live) = classes.get_opt(name).await? else {
            bail!("storageclass {name} not found");
        };
        let mut copy = live.clone();
        copy.metadata = kube::api::ObjectMeta {
            name: Some(lock.clone()),
            labels: live.metadata.labels.clone(),
            annotations: Some({
                let mut a = live.metadata.annotations.clone().unwrap_or_default();
                a.insert(LOCK_PV.into(), pv.into());
                a
            }),
            ..Default::default()
        };
        match classes.create(&PostParams::default(), &copy).await {
            Ok(_) => {}
            // Another volume's run took the lock first: it rewrites the class.
            Err(e) if is_conflict(&e) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(p) = policy {
        write_policy(m, p).await?;
    }
    if let Some(sc) = sc {
        if let Some(live) = classes.get_opt(name).await?
            && live.provisioner != CSI_DRIVER
        {
            classes.delete(name, &DeleteParams::default()).await?;
            wait_gone(m, &classes, name, &format!("storageclass {name}")).await?;
        }
        if classes.get_opt(name).await?.is_none() {
            classes.create(&PostParams::default(), sc).await?;
        }
    }
    delete_if_present(&classes, &lock).await
}

async fn wait_gone<K>(m: &Migrator, api: &Api<K>, name: &str, what: &str) -> anyhow::Result<()>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    wait_for(m, &format!("{what} to be deleted"), || async {
        Ok(match api.get_opt(name).await? {
            None => Ok(()),
            Some(_) => Err(format!("{what} still present")),
        })
    })
    .await
}

fn is_csi_claim(c: Option<&PersistentVolumeClaim>) -> bool {
    c.and_then(|c| c.annotations().get(STORAGE_PROVISIONER))
        .is_some_and(|p| p == CSI_DRIVER)
}

/// The claim for the CSI driver: same name, bound to the same volume.
fn csi_claim(
    v: &PersistentVolume,
    claim: &(String, String),
) -> anyhow::Result<PersistentVolumeClaim> {
    let spec = v.spec.clone().unwrap_or_default();
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": claim.1, "namespace": claim.0,
            "annotations": {STORAGE_PROVISIONER: CSI_DRIVER}},
        "spec": {
            "accessModes": spec.access_modes,
            "resources": {"requests": spec.capacity},
            "storageClassName": spec.storage_class_name,
            "volumeMode": spec.volume_mode,
            "volumeName": v.name_any(),
        }
    }))?)
}

async fn replace_claim(
    m: &Migrator,
    claims: &Api<PersistentVolumeClaim>,
    c: &PersistentVolumeClaim,
) -> anyhow::Result<()> {
    let name = c.name_any();
    if let Some(old) = claims.get_opt(&name).await?
        && !is_csi_claim(Some(&old))
    {
        let patch = json!({"metadata": {"annotations": {SKIP_VALIDATIONS: "true"}}});
        claims
            .patch(&name, &PatchParams::default(), &Patch::Strategic(&patch))
            .await?;
        claims.delete(&name, &DeleteParams::default()).await?;
        wait_gone(m, claims, &name, &format!("PVC {name}")).await?;
    }
    if claims.get_opt(&name).await?.is_none() {
        claims.create(&PostParams::default(), c).await?;
    }
    Ok(())
}

fn provisioner_identity() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let rand = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() % 10_000)
        .unwrap_or(0);
    format!("{ms}-{rand}-{CSI_DRIVER}")
}

fn csi_block(pv: &str, fs_type: Option<String>) -> Value {
    json!({
        "driver": CSI_DRIVER,
        "fsType": fs_type,
        "volumeHandle": pv,
        "volumeAttributes": {
            "openebs.io/cas-type": value::CAS_TYPE_CSTOR,
            "storage.kubernetes.io/csiProvisionerIdentity": provisioner_identity(),
        },
    })
}

fn claim_ref(claim: &(String, String)) -> Value {
    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": claim.1, "namespace": claim.0})
}

fn reclaim_policy(sc: Option<&StorageClass>) -> String {
    sc.and_then(|s| s.reclaim_policy.clone())
        .unwrap_or_else(|| "Delete".into())
}

/// The volume for the CSI driver from the legacy PV.
fn csi_volume_from_pv(
    v: &PersistentVolume,
    sc: Option<&StorageClass>,
    claim: &(String, String),
) -> PersistentVolume {
    let spec = v.spec.clone().unwrap_or_default();
    let fs_type = spec.iscsi.as_ref().and_then(|i| i.fs_type.clone());
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": v.name_any(), "annotations": {PROVISIONED_BY: CSI_DRIVER}},
        "spec": {
            "accessModes": spec.access_modes,
            "capacity": spec.capacity,
            "storageClassName": spec.storage_class_name,
            "volumeMode": spec.volume_mode,
            "claimRef": claim_ref(claim),
            "persistentVolumeReclaimPolicy": reclaim_policy(sc),
            "csi": csi_block(&v.name_any(), fs_type),
        }
    }))
    .expect("a PersistentVolume")
}

/// The volume for the CSI driver from the legacy CStorVolume (the PV was already deleted by an
/// interrupted run).
fn csi_volume_from_cv(
    pv: &str,
    cv: &DynamicObject,
    sc: Option<&StorageClass>,
    claim_obj: Option<&PersistentVolumeClaim>,
    claim: &(String, String),
) -> anyhow::Result<PersistentVolume> {
    let spec = claim_obj.and_then(|c| c.spec.clone()).unwrap_or_default();
    let capacity = str_at(&cv.data, "/spec/capacity");
    if capacity.is_empty() {
        bail!("legacy cstorvolume {pv} has no spec.capacity");
    }
    let fs_type = cv.annotations().get("openebs.io/fs-type").cloned();
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": pv, "annotations": {PROVISIONED_BY: CSI_DRIVER}},
        "spec": {
            "accessModes": spec.access_modes,
            "capacity": {"storage": capacity},
            "storageClassName": sc.map(|s| s.name_any()),
            "volumeMode": spec.volume_mode,
            "claimRef": claim_ref(claim),
            "persistentVolumeReclaimPolicy": reclaim_policy(sc),
            "csi": csi_block(pv, fs_type),
        }
    }))?)
}

async fn replace_volume(
    m: &Migrator,
    pvs: &Api<PersistentVolume>,
    v: &PersistentVolume,
) -> anyhow::Result<()> {
    let name = v.name_any();
    if let Some(old) = pvs.get_opt(&name).await?
        && old.spec.as_ref().is_none_or(|s| s.csi.is_none())
    {
        pvs.delete(&name, &DeleteParams::default()).await?;
        wait_gone(m, pvs, &name, &format!("PV {name}")).await?;
    }
    if pvs.get_opt(&name).await?.is_none() {
        pvs.create(&PostParams::default(), v).await?;
    }
    Ok(())
}

/// The old target Deployment goes; the target Service stays where the new target looks for it
/// (the OpenEBS namespace), keeping the ClusterIP the zvols connect to.
async fn move_target(m: &Migrator, pv: &str, f: &Found) -> anyhow::Result<()> {
    let deployments: Api<Deployment> = Api::namespaced(m.client.clone(), &f.cv_ns);
    let target = cstor_api::naming::target_deployment_name(pv);
    delete_if_present(&deployments, &target).await?;
    // Gone before the cvc-operator makes the new one under the same name.
    let what = format!("Deployment {}/{target}", f.cv_ns);
    wait_gone(m, &deployments, &target, &what).await?;
    if f.cv_ns == m.namespace {
        return Ok(());
    }
    let old: Api<Service> = Api::namespaced(m.client.clone(), &f.cv_ns);
    delete_if_present(&old, pv).await?;
    wait_gone(m, &old, pv, &format!("Service {}/{pv}", f.cv_ns)).await?;
    let services: Api<Service> = ns_api(m);
    if services.get_opt(pv).await?.is_some() {
        return Ok(());
    }
    let ip = str_at(&f.cv.data, "/spec/targetIP");
    if ip.is_empty() {
        bail!("legacy cstorvolume {pv} has no spec.targetIP");
    }
    let svc: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": pv, "namespace": m.namespace, "labels": {
            label::STORAGE_ENGINE_TYPE: value::STORAGE_ENGINE_CSTOR,
            label::CAS_TYPE: value::CAS_TYPE_CSTOR,
            label::TARGET_SERVICE: value::TARGET_SERVICE_CSTOR,
            label::PERSISTENT_VOLUME: pv,
            label::VERSION: cstor_api::constants::version::current(),
        }},
        "spec": {
            "clusterIP": ip,
            "ports": [
                {"name": "cstor-iscsi", "port": 3260, "protocol": "TCP", "targetPort": 3260},
                {"name": "cstor-grpc", "port": 7777, "protocol": "TCP", "targetPort": 7777},
                {"name": "mgmt", "port": 6060, "protocol": "TCP", "targetPort": 6060},
                {"name": "exporter", "port": 9500, "protocol": "TCP", "targetPort": 9500},
            ],
            "selector": {
                label::APP: value::APP_VOLUME_MANAGER,
                label::TARGET: value::TARGET_CSTOR,
                label::PERSISTENT_VOLUME: pv,
            },
        }
    }))?;
    services.create(&PostParams::default(), &svc).await?;
    Ok(())
}

/// The CStorVolumeConfig of the volume, as the CSI driver would have written it, with the
/// temporary policy.
async fn generate_cvc(
    m: &Migrator,
    pv: &str,
    f: &Found,
    new_sc: &Option<StorageClass>,
    sc_name: &str,
) -> anyhow::Result<CStorVolumeConfig> {
    let cspc = match new_sc {
        Some(sc) => sc
            .parameters
            .as_ref()
            .and_then(|p| p.get("cstorPoolCluster").cloned()),
        None => Api::<StorageClass>::all(m.client.clone())
            .get_opt(sc_name)
            .await?
            .and_then(|sc| sc.parameters?.get("cstorPoolCluster").cloned()),
    }
    .with_context(|| format!("storageclass {sc_name} has no cstorPoolCluster parameter"))?;
    let capacity = str_at(&f.cv.data, "/spec/capacity");
    let replica_capacity = f
        .cvrs
        .first()
        .map(|c| str_at(&c.data, "/spec/capacity"))
        .filter(|c| !c.is_empty())
        .unwrap_or(capacity);
    let rf =
        f.cv.data
            .pointer("/spec/replicationFactor")
            .and_then(Value::as_i64)
            .unwrap_or(0);
    let mut labels = BTreeMap::from([(label::CSTOR_POOL_CLUSTER.to_owned(), cspc)]);
    let source = f.cv.labels().get(label::SOURCE_VOLUME).cloned();
    if let Some(s) = &source {
        labels.insert(label::SOURCE_VOLUME.into(), s.clone());
    }
    let mut spec = json!({
        "capacity": {"storage": capacity},
        "provision": {"capacity": {"storage": replica_capacity}, "replicaCount": rf},
        "policy": {},
    });
    if let Some(s) = &source {
        let snap =
            f.cv.annotations()
                .get(annotation::SNAPSHOT)
                .cloned()
                .unwrap_or_default();
        spec["cstorVolumeSource"] = json!(format!("{s}@{snap}"));
    }
    Ok(from_value(json!({
        "apiVersion": CStorVolumeConfig::API_VERSION, "kind": CStorVolumeConfig::KIND,
        "metadata": {"name": pv, "namespace": m.namespace, "labels": labels,
            "annotations": {
                annotation::VOLUME_ID: pv,
                annotation::VOLUME_POLICY: pv,
                annotation::PERSISTENT_VOLUME_CLAIM: f.claim.1,
            },
            "finalizers": [finalizer::CVC]},
        "spec": spec,
        "status": {"phase": "Pending"},
        "versionDetails": {},
    }))?)
}

/// The volume is Bound on the pools of the temporary policy and Healthy; its Service is owned
/// by the CVC.
async fn validate(m: &Migrator, pv: &str, policy: &CStorVolumePolicy) -> anyhow::Result<()> {
    let cvcs: Api<CStorVolumeConfig> = ns_api(m);
    let cvc = wait_for(m, &format!("cvc {pv} to be Bound"), || async {
        let c = cvcs.get(pv).await?;
        let phase = c.status.phase.clone();
        Ok(match phase {
            Some(cstor_api::cstor::CStorVolumeConfigPhase::Bound) => Ok(c),
            other => Err(format!("phase {other:?}")),
        })
    })
    .await?;
    let target = cstor_api::naming::target_deployment_name(pv);
    let deployments: Api<Deployment> = ns_api(m);
    let affinity = policy
        .spec
        .target
        .as_ref()
        .and_then(|t| t.affinity.as_ref());
    if affinity.is_some() {
        // The application is scaled down: the target could never be placed beside it.
        let patch = json!({"spec": {"template": {"spec": {"affinity": null}}}});
        deployments
            .patch(&target, &PatchParams::default(), &Patch::Strategic(&patch))
            .await?;
    }
    let cvrs: Api<CStorVolumeReplica> = ns_api(m);
    let placed: Vec<String> = cvrs
        .list(&pv_selector(pv))
        .await?
        .items
        .iter()
        .filter_map(|c| c.labels().get(label::CSPI_NAME).cloned())
        .collect();
    for want in policy.spec.replica_pool_info.iter().flatten() {
        let ReplicaPoolInfo { pool_name, .. } = want;
        if !placed.contains(pool_name) {
            bail!(
                "cvr expected to be scheduled {pool_name} pool, but cvrs scheduled on pools {placed:?}"
            );
        }
    }
    let cvs: Api<CStorVolume> = ns_api(m);
    wait_for(m, &format!("cstorvolume {pv} to be Healthy"), || async {
        let cv = cvs.get_opt(pv).await?;
        let phase = cv.and_then(|c| c.status?.phase);
        Ok(match phase {
            Some(CStorVolumePhase::Healthy) => Ok(()),
            other => Err(format!("phase {other:?}")),
        })
    })
    .await?;
    if let Some(owner) = cvc.controller_owner_ref(&()) {
        let patch = json!({"metadata": {"ownerReferences": [owner]}});
        // As upstream, a failure here does not fail the migration: the Service works unowned.
        if let Err(e) = ns_api::<Service>(m)
            .patch(pv, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            tracing::warn!(pv, "could not make the CVC own the target Service: {e}");
        }
    }
    Ok(())
}

/// The legacy replicas and volume go; the CVC stops naming the temporary policy.
async fn clean_up(m: &Migrator, pv: &str, f: &Found) -> anyhow::Result<()> {
    let cvrs = legacy_cvrs(m);
    for cvr in list_or_empty(&cvrs, &pv_selector(pv)).await? {
        let name = cvr.name_any();
        if !cvr.finalizers().is_empty() {
            let patch = json!({"metadata": {"finalizers": null}});
            cvrs.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
        delete_if_present(&cvrs, &name).await?;
    }
    let patch = json!({"metadata": {"annotations": {annotation::VOLUME_POLICY: null}}});
    ns_api::<CStorVolumeConfig>(m)
        .patch(pv, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    let cvs = legacy_cvs_in(m, &f.cv_ns);
    if cvs
        .get_opt(pv)
        .await?
        .is_some_and(|cv| !cv.finalizers().is_empty())
    {
        // No legacy controller is left to remove them.
        let patch = json!({"metadata": {"finalizers": null}});
        cvs.patch(pv, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    delete_if_present(&cvs, pv).await
}
