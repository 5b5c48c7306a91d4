//! Pool spec validation, node resolution and CSPI construction.

use std::collections::BTreeMap;

use cstor_api::{
    constants::{finalizer as finalizers, label as labels, value as values},
    cstor::{
        CStorPoolCluster, CStorPoolInstance, CStorPoolInstanceSpec, PoolConfig, PoolSpec,
        RaidGroupType, VersionDetails,
    },
    ndm::{BlockDevice, BlockDeviceState},
};
use k8s_openapi::api::core::v1::Node;
use kube::{Api, Resource, ResourceExt, api::ListParams};

use super::{Context, Result};

/// Why a pool spec cannot be provisioned, for the CSPC status and a Warning Event.
pub type Invalid = String;

/// Disk-count rule of one raid group: the shared rule ([`RaidGroupType::disk_count_error`],
/// the admission webhook's), after the type itself.
pub fn check_group(raid: &RaidGroupType, n: usize) -> Option<String> {
    if let RaidGroupType::Other(t) = raid {
        return Some(format!(
            "unsupported raid group type `{t}` (use stripe, mirror, raidz or raidz2)"
        ));
    }
    raid.disk_count_error(n).map(str::to_owned)
}

/// The `kubernetes.io/hostname` of the single node `selector` matches.
pub async fn resolve_node(
    ctx: &Context,
    selector: &BTreeMap<String, String>,
) -> Result<Result<String, Invalid>> {
    if selector.is_empty() {
        return Ok(Err(
            "nodeSelector is empty: it must match exactly one node".into()
        ));
    }
    let sel = selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let nodes = Api::<Node>::all(ctx.client.clone())
        .list(&ListParams::default().labels(&sel))
        .await?;
    if nodes.items.len() != 1 {
        return Ok(Err(format!(
            "nodeSelector {sel} matches {} nodes, it must match exactly one",
            nodes.items.len()
        )));
    }
    let node = &nodes.items[0];
    Ok(Ok(node
        .labels()
        .get(labels::HOSTNAME)
        .cloned()
        .unwrap_or_else(|| node.name_any())))
}

/// Validates one pool spec; returns the node hostname or why the pool is invalid.
pub async fn validate_pool(
    ctx: &Context,
    ns: &str,
    pool: &PoolSpec,
) -> Result<Result<String, Invalid>> {
    let Some(config) = &pool.pool_config else {
        return Ok(Err("poolConfig.dataRaidGroupType is missing".into()));
    };
    if pool.data_raid_groups.is_empty() {
        return Ok(Err(
            "at least one raid group should be present on dataRaidGroups".into(),
        ));
    }
    for (i, g) in pool.data_raid_groups.iter().enumerate() {
        if let Some(why) = check_group(&config.data_raid_group_type, g.block_devices.len()) {
            return Ok(Err(format!("dataRaidGroups[{i}]: {why}")));
        }
    }
    if !pool.write_cache_raid_groups().is_empty() {
        let Some(t) = &config.write_cache_group_type else {
            return Ok(Err(
                "writeCacheGroupType is missing while writeCacheRaidGroups are set".into(),
            ));
        };
        for (i, g) in pool.write_cache_raid_groups().iter().enumerate() {
            if let Some(why) = check_group(t, g.block_devices.len()) {
                return Ok(Err(format!("writeCacheRaidGroups[{i}]: {why}")));
            }
        }
    }
    let node = match resolve_node(ctx, &pool.node_selector).await? {
        Ok(n) => n,
        Err(why) => return Ok(Err(why)),
    };
    let bds: Api<BlockDevice> = Api::namespaced(ctx.client.clone(), ns);
    for name in pool.block_device_names() {
        if name.is_empty() {
            return Ok(Err("block device name cannot be empty".into()));
        }
        let Some(bd) = bds.get_opt(name).await? else {
            return Ok(Err(format!(
                "block device {name} does not exist in namespace {ns}"
            )));
        };
        if bd.status.as_ref().map(|s| &s.state) != Some(&BlockDeviceState::Active) {
            return Ok(Err(format!("block device {name} is not in Active state")));
        }
        if bd.labels().get(labels::HOSTNAME) != Some(&node) {
            return Ok(Err(format!(
                "block device {name} does not belong to node {node}"
            )));
        }
        if let Some(fs) = bd
            .spec
            .filesystem
            .as_ref()
            .and_then(|f| f.fs_type.as_deref())
            && !fs.is_empty()
            && fs != "zfs_member"
        {
            return Ok(Err(format!("block device {name} has file system {fs}")));
        }
    }
    Ok(Ok(node))
}

/// Pool config with CSPC-level defaults (upstream `GetCSPISpec`).
pub fn defaulted_config(cspc: &CStorPoolCluster, pool: &PoolSpec) -> PoolConfig {
    let mut c = pool.pool_config.clone().unwrap_or_default();
    if c.resources.is_none() {
        c.resources = cspc.spec.resources.clone();
    }
    if c.aux_resources.is_none() {
        c.aux_resources = cspc.spec.aux_resources.clone();
    }
    if c.tolerations.as_ref().is_none_or(|t| t.is_empty()) {
        c.tolerations = cspc.spec.tolerations.clone();
    }
    if c.priority_class_name.is_none() {
        c.priority_class_name = Some(cspc.spec.priority_class_name.clone().unwrap_or_default());
    }
    if c.ro_threshold_limit.is_none() {
        c.ro_threshold_limit = Some(PoolConfig::DEFAULT_RO_THRESHOLD);
    }
    c
}

/// Whether `cspi` realises `pool`: equal node selector or a shared data block device.
pub fn matches(cspi: &CStorPoolInstance, pool: &PoolSpec) -> bool {
    if cspi.spec.node_selector == pool.node_selector {
        return true;
    }
    let mine: Vec<&str> = cspi
        .spec
        .data_raid_groups
        .iter()
        .flat_map(|g| &g.block_devices)
        .map(|b| b.block_device_name.as_str())
        .collect();
    pool.data_raid_groups
        .iter()
        .flat_map(|g| &g.block_devices)
        .any(|b| mine.contains(&b.block_device_name.as_str()))
}

fn entropy() -> [u8; 4] {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    (h.finish() as u32).to_le_bytes()
}

/// A new CSPI for `pool` on `host`.
pub fn build(
    ctx: &Context,
    cspc: &CStorPoolCluster,
    pool: &PoolSpec,
    host: &str,
) -> CStorPoolInstance {
    let cspc_name = cspc.name_any();
    let ns = cspc.namespace().unwrap_or_default();
    let spec = CStorPoolInstanceSpec {
        host_name: Some(host.into()),
        node_selector: pool.node_selector.clone(),
        pool_config: Some(defaulted_config(cspc, pool)),
        data_raid_groups: pool.data_raid_groups.clone(),
        write_cache_raid_groups: pool.write_cache_raid_groups.clone(),
        ..Default::default()
    };
    let mut cspi = CStorPoolInstance::namespaced(
        cstor_api::naming::cspi_name(&cspc_name, entropy()),
        ns,
        spec,
    );
    cspi.metadata.labels = Some(BTreeMap::from([
        (labels::HOSTNAME.into(), host.into()),
        (labels::CSTOR_POOL_CLUSTER.into(), cspc_name),
        (labels::VERSION.into(), ctx.version.clone()),
        (labels::CAS_TYPE.into(), values::CAS_TYPE_CSTOR.into()),
    ]));
    cspi.metadata.owner_references = cspc.controller_owner_ref(&()).map(|r| vec![r]);
    cspi.metadata.finalizers = Some(vec![finalizers::CSPC.into()]);
    if cspc
        .annotations()
        .get(cstor_api::constants::annotation::RECONCILE_DISABLE_DEPENDANTS)
        .map(String::as_str)
        == Some("true")
    {
        cspi.metadata.annotations = Some(BTreeMap::from([(
            cstor_api::constants::annotation::RECONCILE_DISABLE.into(),
            "true".into(),
        )]));
    }
    cspi.version_details = Some(VersionDetails::at(&ctx.version));
    cspi
}
