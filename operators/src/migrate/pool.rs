//! Pool migration: StoragePoolClaim `<spc>` (and its CStorPools) → CStorPoolCluster `<cspc>`.
//!
//! Pre-migration: the cspc-operator runs this tool's version; the CSPC name is recorded on the
//! SPC (`openebs.io/cstor-pool-cluster`) so a rerun cannot pick another one; every CStorPool's
//! block devices are still Active on its node.
//!
//! Migration, each step skipped when already done: the SPC is checked (manual: every block
//! device listed once; auto: as many CStorPools as `maxPools`); its claims are re-labelled for
//! the CSPC; the CSPC is created with one pool per CStorPool, same node and disks, annotated
//! `reconcile.openebs.io/disable-dependants` so the cspc-operator makes its CSPIs with
//! reconciliation disabled; once all exist, the annotation goes and the claims are owned by the
//! CSPC. Then, one CSPI at a time: the old pool Deployment is scaled to 0 (and given the new
//! pool's volumes), and once its pod is gone the CSPI gets
//! `import.cspi.cstor.openebs.io/existing-pool-name: cstor-<CSP uid>` and phase `OFFLINE` (so a
//! failed import never creates a fresh pool) with reconciliation enabled: the pool manager
//! imports the old pool under the new name. When the CSPI is ONLINE, the replicas of the old
//! pool are re-labelled to the CSPI and the CStorPool's finalizers go. Last, the SPC is deleted
//! (`openebs.io/skip-validations`), and its CStorPools and old Deployments with it.

use std::collections::BTreeMap;

use anyhow::{Context as _, bail};
use cstor_api::{
    constants::{annotation, finalizer, label},
    cstor::{CStorPoolCluster, CStorPoolInstance, CStorPoolInstancePhase},
    migration::{MigrateCStorPool, MigrationTaskSpec},
    ndm::{BlockDevice, BlockDeviceClaim},
};
use k8s_openapi::api::{apps::v1::Deployment, core::v1::Pod};
use kube::{
    Api, Resource, ResourceExt,
    api::{DynamicObject, ListParams, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};

use super::{
    Migrator, check_operator, delete_if_present, legacy, legacy_cvrs, list_or_empty, str_at,
    task::{MIGRATE, PRE_MIGRATION, Reporter},
    wait_for, wait_within,
};

/// Label of the legacy kinds naming their SPC.
pub const SPC_LABEL: &str = "openebs.io/storage-pool-claim";
/// Label of a CStorPool's Deployment and pod naming the CStorPool.
pub const CSP_LABEL: &str = "openebs.io/cstor-pool";
/// Finalizer of the legacy claims.
pub const SPC_FINALIZER: &str = "storagepoolclaim.openebs.io/finalizer";
/// Annotation on the CSPC naming the SPC it came from.
pub const MIGRATED_FROM: &str = "openebs.io/migrated-from";
/// Annotation letting the legacy admission webhook delete the SPC.
pub const SKIP_VALIDATIONS: &str = "openebs.io/skip-validations";

/// What a run did (a dry run: the CSPC it would create).
pub type Outcome = super::Outcome<CStorPoolCluster>;

fn spcs(m: &Migrator) -> Api<DynamicObject> {
    Api::all_with(
        m.client.clone(),
        &legacy("StoragePoolClaim", "storagepoolclaims"),
    )
}

fn csps(m: &Migrator) -> Api<DynamicObject> {
    Api::all_with(m.client.clone(), &legacy("CStorPool", "cstorpools"))
}

/// The CStorPools of `spc`.
async fn pools_of(m: &Migrator, spc: &str) -> anyhow::Result<Vec<DynamicObject>> {
    Ok(csps(m)
        .list(&ListParams::default().labels(&format!("{SPC_LABEL}={spc}")))
        .await?
        .items)
}

/// The block devices of a CStorPool, group by group.
fn csp_groups(csp: &DynamicObject) -> Vec<Vec<String>> {
    csp.data
        .pointer("/spec/group")
        .and_then(Value::as_array)
        .map(|groups| {
            groups
                .iter()
                .map(|g| {
                    g.get("blockDevice")
                        .and_then(Value::as_array)
                        .map(|bds| bds.iter().map(|b| str_at(b, "/name").to_owned()).collect())
                        .unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Runs the pool migration of `spc` to CSPC `cspc` (default: the SPC's name), recording it in
/// MigrationTask `migrate-cstor-pool-<spc>`.
pub async fn migrate(
    m: &Migrator,
    spc: &str,
    cspc: Option<&str>,
    backoff_limit: i64,
) -> anyhow::Result<Outcome> {
    if spc.is_empty() {
        bail!("Cannot execute migrate job: cstor spc name is missing");
    }
    let cspc_name = cspc.filter(|c| !c.is_empty()).unwrap_or(spc).to_owned();
    let spec = MigrationTaskSpec {
        cstor_pool: Some(MigrateCStorPool {
            spc_name: spc.into(),
            rename: cspc.filter(|c| !c.is_empty()).map(str::to_owned),
        }),
        ..Default::default()
    };
    let task = Reporter::start(
        m.client.clone(),
        &m.namespace,
        &format!("migrate-cstor-pool-{spc}"),
        spec,
        !m.dry_run,
    )
    .await
    .context("MigrationTask")?;
    let result = run(m, &task, spc, &cspc_name).await;
    task.finish(result.is_ok(), backoff_limit).await?;
    result.with_context(|| format!("Failed to migrate cStor SPC : {spc}"))
}

async fn run(m: &Migrator, task: &Reporter, spc: &str, cspc: &str) -> anyhow::Result<Outcome> {
    task.step(
        PRE_MIGRATION,
        "Pre-migration steps were successful",
        "error in pre-migration steps",
        pre_migrate(m, spc, cspc),
    )
    .await?;
    task.step(
        MIGRATE,
        "Migration steps were successful",
        &format!("error migrating spc {spc}"),
        migrate_pool(m, spc, cspc),
    )
    .await
}

async fn pre_migrate(m: &Migrator, spc: &str, cspc: &str) -> anyhow::Result<()> {
    check_operator(m, "cspc-operator")
        .await
        .context("error validating cspc operator")?;
    let Some(spc_obj) = spcs(m).get_opt(spc).await? else {
        return Ok(());
    };
    let cspcs: Api<CStorPoolCluster> = Api::namespaced(m.client.clone(), &m.namespace);
    let recorded = spc_obj
        .annotations()
        .get(label::CSTOR_POOL_CLUSTER)
        .cloned();
    let mismatch = |got: &str| {
        anyhow::anyhow!(
            "failed to validate migration: the spc {spc} is set to be renamed as {got}, but got cspc-name {cspc} instead"
        )
    };
    match cspcs.get_opt(cspc).await? {
        Some(existing) => {
            let from = existing.annotations().get(MIGRATED_FROM).cloned();
            if recorded.as_deref() != Some(cspc) || from.as_deref() != Some(spc) {
                return Err(mismatch(recorded.as_deref().unwrap_or("")))
                    .context("error while checking for existing cspc");
            }
            return Ok(());
        }
        None => match recorded.as_deref() {
            Some(r) if r != cspc => {
                return Err(mismatch(r)).context("error while checking for existing cspc");
            }
            Some(_) => {}
            None if m.dry_run => {}
            None => {
                let patch = json!({"metadata": {"annotations": {label::CSTOR_POOL_CLUSTER: cspc}}});
                spcs(m)
                    .patch(spc, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
            }
        },
    }
    if str_at(&spc_obj.data, "/spec/type") != "sparse" {
        check_block_devices(m, spc)
            .await
            .context("error while checking the block devices of the spc")?;
    }
    Ok(())
}

/// Every block device of every CStorPool is Active on that pool's node. (Upstream re-discovers
/// renamed disks through the old pool pod; this tool refuses instead, naming the device.)
async fn check_block_devices(m: &Migrator, spc: &str) -> anyhow::Result<()> {
    let bds: Api<BlockDevice> = Api::namespaced(m.client.clone(), &m.namespace);
    for csp in pools_of(m, spc).await? {
        let node = csp
            .labels()
            .get(label::HOSTNAME)
            .cloned()
            .unwrap_or_default();
        for name in csp_groups(&csp).into_iter().flatten() {
            let bd = bds.get_opt(&name).await?;
            let active = bd.as_ref().is_some_and(|b| {
                b.status.as_ref().map(|s| s.state.as_str()) == Some("Active")
                    && b.labels().get(label::HOSTNAME) == Some(&node)
            });
            if !active {
                bail!(
                    "blockdevice {name} of cstorpool {} is not an Active device of node {node}: a disk renamed since the pool was made must be corrected in the SPC and the cstorpool first",
                    csp.name_any()
                );
            }
        }
    }
    Ok(())
}

async fn migrate_pool(m: &Migrator, spc: &str, cspc: &str) -> anyhow::Result<Outcome> {
    let cspcs: Api<CStorPoolCluster> = Api::namespaced(m.client.clone(), &m.namespace);
    let Some(spc_obj) = spcs(m).get_opt(spc).await? else {
        return match cspcs.get_opt(cspc).await? {
            Some(_) => Ok(Outcome::AlreadyMigrated),
            None => Err(anyhow::anyhow!(
                "failed to get equivalent cspc {cspc} for spc {spc}"
            ))
            .with_context(|| format!("error checking migration status of spc {spc}")),
        };
    };
    let pools = pools_of(m, spc).await?;
    validate_spc(&spc_obj, &pools).with_context(|| format!("failed to validate spc {spc}"))?;
    let wanted = generate_cspc(m, &spc_obj, &pools, cspc).await?;
    if m.dry_run {
        return Ok(Outcome::DryRun(Box::new(wanted)));
    }
    relabel_claims(m, spc, cspc).await?;
    let created = match cspcs.get_opt(cspc).await? {
        Some(c) => c,
        None => cspcs.create(&PostParams::default(), &wanted).await?,
    };
    wait_for_cspis(m, cspc, pools.len()).await?;
    if created
        .annotations()
        .contains_key(annotation::RECONCILE_DISABLE_DEPENDANTS)
    {
        let patch =
            json!({"metadata": {"annotations": {annotation::RECONCILE_DISABLE_DEPENDANTS: null}}});
        cspcs
            .patch(cspc, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    let created = cspcs.get(cspc).await?;
    own_claims(m, &created).await?;
    let cspis: Api<CStorPoolInstance> = Api::namespaced(m.client.clone(), &m.namespace);
    for cspi in cspis
        .list(&ListParams::default().labels(&format!("{}={cspc}", label::CSTOR_POOL_CLUSTER)))
        .await?
        .items
    {
        hand_over(m, spc, &cspi)
            .await
            .with_context(|| format!("failed to migrate cspi {}", cspi.name_any()))?;
    }
    let patch = json!({"metadata": {"annotations": {SKIP_VALIDATIONS: "true"}}});
    spcs(m)
        .patch(spc, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    delete_if_present(&spcs(m), spc)
        .await
        .with_context(|| format!("failed to clean up spc {spc}"))?;
    Ok(Outcome::Migrated)
}

/// Manual SPCs list every block device once, and the CStorPools use each once; auto SPCs have
/// `maxPools` CStorPools.
fn validate_spc(spc: &DynamicObject, pools: &[DynamicObject]) -> anyhow::Result<()> {
    let listed: Vec<String> = spc
        .data
        .pointer("/spec/blockDevices/blockDeviceList")
        .and_then(Value::as_array)
        .map(|l| {
            l.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let used: Vec<String> = pools.iter().flat_map(csp_groups).flatten().collect();
    if !listed.is_empty() {
        for bd in listed.iter().chain(&used) {
            let in_spc = listed.iter().filter(|b| *b == bd).count();
            let in_pools = used.iter().filter(|b| *b == bd).count();
            if in_spc != 1 || in_pools != 1 {
                bail!("bd {bd} is not configured properly");
            }
        }
        return Ok(());
    }
    match spc.data.pointer("/spec/maxPools").and_then(Value::as_i64) {
        Some(max) if max as usize == pools.len() => Ok(()),
        Some(max) => bail!(
            "maxpool count does not match csp count expected: {max} got: {}",
            pools.len()
        ),
        None => bail!(
            "invalid spc {} neither has bdc list nor maxpools",
            spc.name_any()
        ),
    }
}

/// The CSPC of the SPC: one pool per CStorPool, same node, disks, raid type and settings.
async fn generate_cspc(
    m: &Migrator,
    spc: &DynamicObject,
    pools: &[DynamicObject],
    name: &str,
) -> anyhow::Result<CStorPoolCluster> {
    let deployments: Api<Deployment> = Api::namespaced(m.client.clone(), &m.namespace);
    let mut specs = Vec::new();
    for csp in pools {
        let csp_name = csp.name_any();
        let deps = deployments
            .list(&ListParams::default().labels(&format!("{CSP_LABEL}={csp_name}")))
            .await?
            .items;
        let [dep] = deps.as_slice() else {
            bail!(
                "invalid number of deployments found for csp {csp_name}: {}",
                deps.len()
            );
        };
        let pool_type = str_at(&csp.data, "/spec/poolSpec/poolType");
        let raid = match pool_type {
            "striped" => "stripe",
            "mirrored" => "mirror",
            "raidz" => "raidz",
            "raidz2" => "raidz2",
            other => bail!("cstorpool {csp_name} has unknown poolType {other:?}"),
        };
        let groups = csp_groups(csp);
        let groups: Vec<Vec<String>> = if raid == "stripe" {
            vec![groups.into_iter().flatten().collect()]
        } else {
            groups
        };
        let raid_groups: Vec<Value> = groups
            .iter()
            .map(|g| {
                json!({"blockDevices": g.iter().map(|b| json!({"blockDeviceName": b})).collect::<Vec<_>>()})
            })
            .collect();
        let pod = dep
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.clone())
            .unwrap_or_default();
        let resources_of = |c: &str| {
            pod.containers
                .iter()
                .find(|x| x.name == c)
                .and_then(|x| x.resources.clone())
                .map(|r| serde_json::to_value(r).unwrap_or(Value::Null))
        };
        let mut config = json!({"dataRaidGroupType": raid});
        let c = config.as_object_mut().expect("object");
        if let Some(thick) = csp.data.pointer("/spec/poolSpec/thickProvisioning") {
            c.insert("thickProvision".into(), thick.clone());
        }
        if let Some(ro) = csp.data.pointer("/spec/poolSpec/roThresholdLimit") {
            c.insert("roThresholdLimit".into(), ro.clone());
        }
        if let Some(r) = resources_of("cstor-pool") {
            c.insert("resources".into(), r);
        }
        if let Some(r) = resources_of("cstor-pool-mgmt") {
            c.insert("auxResources".into(), r);
        }
        if let Some(t) = &pod.tolerations {
            c.insert("tolerations".into(), serde_json::to_value(t)?);
        }
        if let Some(p) = &pod.priority_class_name {
            c.insert("priorityClassName".into(), json!(p));
        }
        let node = csp
            .labels()
            .get(label::HOSTNAME)
            .cloned()
            .unwrap_or_default();
        specs.push(json!({
            "nodeSelector": {label::HOSTNAME: node},
            "dataRaidGroups": raid_groups,
            "poolConfig": config,
        }));
    }
    let mut annotations = BTreeMap::from([
        (
            annotation::RECONCILE_DISABLE_DEPENDANTS.to_owned(),
            "true".to_owned(),
        ),
        (MIGRATED_FROM.to_owned(), spc.name_any()),
    ]);
    if let Some(tags) = spc.annotations().get(annotation::ALLOWED_BD_TAGS) {
        annotations.insert(annotation::ALLOWED_BD_TAGS.into(), tags.clone());
    }
    let value = json!({
        "apiVersion": CStorPoolCluster::API_VERSION, "kind": CStorPoolCluster::KIND,
        "metadata": {"name": name, "namespace": m.namespace, "annotations": annotations},
        "spec": {"pools": specs},
    });
    Ok(serde_json::from_value(value)?)
}

/// The SPC's claims become the CSPC's: label and finalizer.
async fn relabel_claims(m: &Migrator, spc: &str, cspc: &str) -> anyhow::Result<()> {
    let bdcs: Api<BlockDeviceClaim> = Api::namespaced(m.client.clone(), &m.namespace);
    for mut c in bdcs
        .list(&ListParams::default().labels(&format!("{SPC_LABEL}={spc}")))
        .await?
        .items
    {
        let labels = c.metadata.labels.get_or_insert_with(Default::default);
        labels.remove(SPC_LABEL);
        labels.insert(label::CSTOR_POOL_CLUSTER.into(), cspc.into());
        if let Some(f) = c.metadata.finalizers.as_mut() {
            for x in f.iter_mut().filter(|x| *x == SPC_FINALIZER) {
                *x = finalizer::CSPC.into();
            }
        }
        bdcs.replace(&c.name_any(), &PostParams::default(), &c)
            .await
            .with_context(|| format!("re-labelling claim {}", c.name_any()))?;
    }
    Ok(())
}

/// Waits until the cspc-operator made one CSPI per pool.
async fn wait_for_cspis(m: &Migrator, cspc: &str, want: usize) -> anyhow::Result<()> {
    let cspis: Api<CStorPoolInstance> = Api::namespaced(m.client.clone(), &m.namespace);
    let lp = ListParams::default().labels(&format!("{}={cspc}", label::CSTOR_POOL_CLUSTER));
    let timeout = m.poll * m.cspi_tries.max(1);
    wait_within(
        timeout,
        m.poll,
        &format!("the CSPIs of cspc {cspc}"),
        || async {
            let got = cspis.list(&lp).await?.items.len();
            Ok(if got == want {
                Ok(())
            } else {
                Err(format!("{got} CSPIs"))
            })
        },
    )
    .await
    .with_context(|| format!("failed to verify cspi count expected: {want}"))
}

/// Claims labelled for the CSPC and not owned by it get it as their controller.
async fn own_claims(m: &Migrator, cspc: &CStorPoolCluster) -> anyhow::Result<()> {
    let bdcs: Api<BlockDeviceClaim> = Api::namespaced(m.client.clone(), &m.namespace);
    let owner = cspc
        .controller_owner_ref(&())
        .context("the CSPC has no uid yet")?;
    let lp = ListParams::default().labels(&format!(
        "{}={}",
        label::CSTOR_POOL_CLUSTER,
        cspc.name_any()
    ));
    for mut c in bdcs.list(&lp).await?.items {
        let first = c.owner_references().first().map(|o| o.kind.clone());
        if first.as_deref() != Some("CStorPoolCluster") {
            c.metadata.owner_references = Some(vec![owner.clone()]);
            bdcs.replace(&c.name_any(), &PostParams::default(), &c)
                .await?;
        }
    }
    Ok(())
}

/// One CSPI takes over the CStorPool on its node.
async fn hand_over(m: &Migrator, spc: &str, cspi: &CStorPoolInstance) -> anyhow::Result<()> {
    let host = cspi
        .labels()
        .get(label::HOSTNAME)
        .cloned()
        .unwrap_or_default();
    let found = csps(m)
        .list(
            &ListParams::default().labels(&format!("{}={host},{SPC_LABEL}={spc}", label::HOSTNAME)),
        )
        .await?
        .items;
    let [csp] = found.as_slice() else {
        let names: Vec<String> = found.iter().map(|c| c.name_any()).collect();
        bail!("Invalid number of pools on one node: {names:?}");
    };
    let csp_name = csp.name_any();
    let old_pool = format!("cstor-{}", csp.uid().unwrap_or_default());
    let cspis: Api<CStorPoolInstance> = Api::namespaced(m.client.clone(), &m.namespace);
    if cspi
        .annotations()
        .contains_key(annotation::RECONCILE_DISABLE)
    {
        scale_down(m, &csp_name, &cspi.name_any()).await?;
        // The cspc-operator and the pool manager write the CSPI too.
        cstor_api::update::modify(&cspis, &cspi.name_any(), |latest| {
            let anns = latest
                .metadata
                .annotations
                .get_or_insert_with(Default::default);
            anns.remove(annotation::RECONCILE_DISABLE);
            anns.insert(annotation::EXISTING_POOL_NAME.into(), old_pool.clone());
            latest.status.get_or_insert_with(Default::default).phase =
                Some(CStorPoolInstancePhase::Offline);
            true
        })
        .await?;
    }
    let name = cspi.name_any();
    wait_for(m, &format!("cspi {name} to be ONLINE"), || async {
        let c = cspis.get(&name).await?;
        let phase = c.status.as_ref().and_then(|s| s.phase.clone());
        Ok(match phase {
            Some(CStorPoolInstancePhase::Online) => Ok(()),
            other => Err(format!("phase {other:?}")),
        })
    })
    .await?;
    relabel_replicas(m, &csp_name, cspi).await?;
    // The old pool's backup records (labelled with the CStorPool's uid) become the CSPI's.
    let selector = format!(
        "{}={}",
        label::LEGACY_CSP_UID,
        csp.uid().unwrap_or_default()
    );
    super::backup::convert_legacy_records(&m.client, &m.namespace, &selector, |labels| {
        labels.remove(label::LEGACY_CSP_UID);
        labels.remove("cstorpool.openebs.io/name");
        labels.insert(label::CSPI_NAME.into(), cspi.name_any());
        labels.insert(label::CSPI_UID.into(), cspi.uid().unwrap_or_default());
    })
    .await?;
    let patch = json!({"metadata": {"finalizers": null}});
    csps(m)
        .patch(&csp_name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

/// The old pool's Deployment goes to 0 replicas with the new pool's volumes (so a stray
/// restart would see the new pool's directories); waits for its pod to be gone.
async fn scale_down(m: &Migrator, csp: &str, cspi: &str) -> anyhow::Result<()> {
    let deployments: Api<Deployment> = Api::namespaced(m.client.clone(), &m.namespace);
    let deps = deployments
        .list(&ListParams::default().labels(&format!("{CSP_LABEL}={csp}")))
        .await?
        .items;
    let [dep] = deps.as_slice() else {
        bail!(
            "invalid number of csp deployment found for {csp}: expected 1, got {}",
            deps.len()
        );
    };
    let new = deployments
        .get_opt(cspi)
        .await?
        .with_context(|| format!("failed to get deployment for cspi {cspi}"))?;
    let volumes = new
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.volumes.clone())
        .unwrap_or_default();
    let patch = json!({"spec": {"replicas": 0, "template": {"spec": {"volumes": volumes}}}});
    deployments
        .patch(
            &dep.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    let pods: Api<Pod> = Api::namespaced(m.client.clone(), &m.namespace);
    let lp = ListParams::default().labels(&format!("{CSP_LABEL}={csp}"));
    wait_for(
        m,
        &format!("the pod of cstorpool {csp} to be gone"),
        || async {
            let left: Vec<String> = pods.list(&lp).await?.iter().map(|p| p.name_any()).collect();
            Ok(if left.is_empty() {
                Ok(())
            } else {
                Err(format!("pods {left:?}"))
            })
        },
    )
    .await
}

/// The old pool's replicas (legacy CVRs) now name the CSPI.
async fn relabel_replicas(m: &Migrator, csp: &str, cspi: &CStorPoolInstance) -> anyhow::Result<()> {
    let api = legacy_cvrs(m);
    let lp = ListParams::default().labels(&format!("cstorpool.openebs.io/name={csp}"));
    let list = list_or_empty(&api, &lp).await?;
    for cvr in list {
        if cvr.labels().contains_key(label::CSPI_NAME) {
            continue;
        }
        let patch = json!({"metadata": {
            "labels": {"cstorpool.openebs.io/name": null, "cstorpool.openebs.io/uid": null,
                label::CSPI_NAME: cspi.name_any(), label::CSPI_UID: cspi.uid()},
            "annotations": {"cstorpool.openebs.io/hostname": null,
                "cstorpoolinstance.openebs.io/hostname": cspi.spec.host_name},
        }});
        api.patch(
            &cvr.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    }
    Ok(())
}
