//! CStorPoolCluster rules: CREATE, UPDATE (scale-down, raid-group changes,
//! disk replacement, expansion) and DELETE.
//!
//! Every CREATE/UPDATE denial is code 422 with the message `invalid cspc specification: <msg>`;
//! DELETE denials are 422 `invalid cspc <name> deletion: volume still exists on pool <cspi>`.

use std::collections::{BTreeMap, BTreeSet};

use cstor_api::{
    constants::{annotation, finalizer, label},
    cstor::{CStorPoolCluster, PoolSpec, RaidGroup, RaidGroupType},
    naming,
    ndm::{
        BlockDevice, BlockDeviceClaim, BlockDeviceNodeAttributes, BlockDeviceState,
        DeviceClaimResources, DeviceClaimSpec, DeviceClaimState,
    },
};
use k8s_openapi::{
    api::core::v1::Node,
    apimachinery::pkg::{
        api::resource::Quantity,
        apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference},
    },
};
use kube::{Resource, ResourceExt};

use super::{
    Denial, go_list, go_map,
    lookup::{ClusterLookup, LookupError},
};

/// Compression values a pool may ask for (`""` means the pool-manager default).
pub const SUPPORTED_COMPRESSION: &[&str] = &["", "on", "off", "lzjb", "gzip", "zle", "lz4"];
/// Filesystem type a block device may carry (a previous zpool member).
pub const ZFS_MEMBER: &str = "zfs_member";

const PREFIX: &str = "invalid cspc specification: ";

/// The node a pool's `nodeSelector` resolved to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedNode {
    /// `metadata.name`.
    pub name: String,
    /// The `kubernetes.io/hostname` label (the name when unlabelled).
    pub hostname: String,
}

impl ResolvedNode {
    fn of(node: &Node) -> Self {
        let name = node.name_any();
        let hostname = node
            .labels()
            .get(label::HOSTNAME)
            .cloned()
            .unwrap_or_else(|| name.clone());
        Self { name, hostname }
    }
}

/// Resolves a pool's `nodeSelector` to exactly one node.
pub async fn resolve_node(
    selector: &BTreeMap<String, String>,
    lookup: &dyn ClusterLookup,
) -> Result<ResolvedNode, String> {
    if selector.is_empty() {
        return Err("nodeSelector is empty: set it to labels of exactly one node, e.g. kubernetes.io/hostname: <node>".into());
    }
    let nodes = lookup
        .nodes_matching(selector)
        .await
        .map_err(|e| format!("listing nodes failed: {e}"))?;
    match nodes.as_slice() {
        [node] => Ok(ResolvedNode::of(node)),
        [] => Err(
            "no node has these labels: set nodeSelector to the labels of an existing node".into(),
        ),
        many => Err(format!(
            "{} nodes ({}) have these labels: the nodeSelector must match exactly one node",
            many.len(),
            many.iter()
                .map(|n| n.name_any())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

fn namespace_of(cspc: &CStorPoolCluster) -> String {
    cspc.metadata.namespace.clone().unwrap_or_default()
}

/// Validates a CSPC being created (also the first step of an update).
pub async fn validate_cspc_create(
    cspc: &CStorPoolCluster,
    lookup: &dyn ClusterLookup,
) -> Result<(), Denial> {
    validate_spec(cspc, lookup)
        .await
        .map_err(|m| Denial::unprocessable(format!("{PREFIX}{m}")))
}

async fn validate_spec(cspc: &CStorPoolCluster, lookup: &dyn ClusterLookup) -> Result<(), String> {
    let pools = cspc.spec.pools();
    if pools.is_empty() {
        return Err("pools in cspc should have at least one item".into());
    }
    let mut seen = BTreeSet::new();
    let mut duplicates = BTreeSet::new();
    for name in pools.iter().flat_map(|p| p.block_device_names()) {
        if !name.is_empty() && !seen.insert(name) {
            duplicates.insert(name);
        }
    }
    if !duplicates.is_empty() {
        let list: Vec<&str> = duplicates.into_iter().collect();
        return Err(format!(
            "invalid cspc: cspc {{{}}} has duplicate blockdevices entries {}",
            cspc.name_any(),
            go_list(&list)
        ));
    }
    let mut nodes = BTreeSet::new();
    for pool in pools {
        let node = resolve_node(&pool.node_selector, lookup)
            .await
            .map_err(|e| {
                format!(
                    "failed to get node from pool nodeSelector: {{{}}} error: {{{e}}}",
                    go_map(&pool.node_selector)
                )
            })?;
        if !nodes.insert(node.name.clone()) {
            return Err(format!("invalid cspc: duplicate node {} entry", node.name));
        }
        validate_pool_spec(cspc, pool, &node, lookup)
            .await
            .map_err(|m| format!("invalid pool spec: {m}"))?;
    }
    Ok(())
}

/// Whether `count` disks fit a raid group of type `raid`: the shared rule,
/// [`RaidGroupType::disk_count_error`].
pub fn raid_group_disk_count_error(raid: &RaidGroupType, count: usize) -> Option<&'static str> {
    raid.disk_count_error(count)
}

async fn validate_pool_spec(
    cspc: &CStorPoolCluster,
    pool: &PoolSpec,
    node: &ResolvedNode,
    lookup: &dyn ClusterLookup,
) -> Result<(), String> {
    let config = pool.pool_config.clone().unwrap_or_default();
    let data_type = match &pool.pool_config {
        Some(c) => c.data_raid_group_type.clone(),
        None => RaidGroupType::Other(String::new()),
    };
    if data_type.as_str().is_empty() {
        return Err("missing dataRaidGroupType".into());
    }
    if !data_type.is_known() {
        return Err(format!(
            "unsupported dataRaidGroupType '{data_type}' specified"
        ));
    }
    let compression = config.compression.as_deref().unwrap_or_default();
    if !SUPPORTED_COMPRESSION.contains(&compression) {
        return Err(format!("unsupported compression '{compression}' specified"));
    }
    if let Some(limit) = config.ro_threshold_limit
        && !(0..=100).contains(&limit)
    {
        return Err(format!(
            "invalid roThresholdLimit {limit}: it must be between 0 and 100"
        ));
    }
    let cache_groups = pool.write_cache_raid_groups();
    let cache_type = config
        .write_cache_group_type
        .clone()
        .unwrap_or_else(|| RaidGroupType::Other(String::new()));
    if !cache_groups.is_empty() {
        if cache_type.as_str().is_empty() {
            return Err("missing writeCacheGroupType".into());
        }
        if !cache_type.is_known() {
            return Err(format!(
                "unsupported writeCacheGroupType '{cache_type}' specified"
            ));
        }
    }
    if pool.data_raid_groups.is_empty() {
        return Err("at least one raid group should be present on dataRaidGroups".into());
    }
    if data_type == RaidGroupType::Stripe && pool.data_raid_groups.len() != 1 {
        return Err("stripe dataRaidGroups should have exactly one raidGroup".into());
    }
    if !cache_groups.is_empty() && cache_type == RaidGroupType::Stripe && cache_groups.len() != 1 {
        return Err("stripe writeCacheRaidGroups should have exactly one raidGroup".into());
    }
    let groups = pool
        .data_raid_groups
        .iter()
        .map(|g| (g, &data_type))
        .chain(cache_groups.iter().map(|g| (g, &cache_type)));
    for (group, raid) in groups {
        if let Some(e) = raid_group_disk_count_error(raid, group.block_devices.len()) {
            return Err(e.into());
        }
        for bd in &group.block_devices {
            validate_block_device(cspc, &bd.block_device_name, node, lookup).await?;
        }
    }
    Ok(())
}

async fn fetch_block_device(
    namespace: &str,
    name: &str,
    lookup: &dyn ClusterLookup,
) -> Result<BlockDevice, String> {
    let failed = |e: String| format!("failed to get block device: {{{name}}} details error: {e}");
    match lookup.block_device(namespace, name).await {
        Ok(Some(bd)) => Ok(bd),
        Ok(None) => Err(failed(format!(
            "blockdevices.openebs.io \"{name}\" not found"
        ))),
        Err(e) => Err(failed(e.to_string())),
    }
}

fn allowed_tags(cspc: &CStorPoolCluster) -> Vec<String> {
    cspc.annotations()
        .get(annotation::ALLOWED_BD_TAGS)
        .map(|v| {
            v.split(',')
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

async fn validate_block_device(
    cspc: &CStorPoolCluster,
    name: &str,
    node: &ResolvedNode,
    lookup: &dyn ClusterLookup,
) -> Result<(), String> {
    if name.is_empty() {
        return Err("block device name cannot be empty".into());
    }
    let bd = fetch_block_device(&namespace_of(cspc), name, lookup).await?;
    let state = bd
        .status
        .as_ref()
        .map(|s| s.state.clone())
        .unwrap_or_default();
    if state != BlockDeviceState::Active {
        return Err(format!("block device \"{name}\" is in not in active state"));
    }
    let fs = bd
        .spec
        .filesystem
        .as_ref()
        .and_then(|f| f.fs_type.clone())
        .unwrap_or_default();
    if !fs.is_empty() && fs != ZFS_MEMBER {
        return Err(format!("block device has file system {{{fs}}}"));
    }
    if bd.labels().get(label::HOSTNAME) != Some(&node.hostname) {
        return Err(format!(
            "block device {name} doesn't belongs to node {}",
            node.hostname
        ));
    }
    if let Some(tag) = bd.labels().get(label::BLOCK_DEVICE_TAG)
        && (tag.is_empty() || !allowed_tags(cspc).contains(tag))
    {
        return Err(format!(
            "block device {name} is tagged with a value {tag} and cannot be used"
        ));
    }
    if !claim_belongs_to(&bd, cspc, lookup).await? {
        return Err(format!("error: can't use claimed blockdevice {name}"));
    }
    Ok(())
}

/// `true` when the block device is unclaimed or claimed by a BDC of this CSPC.
async fn claim_belongs_to(
    bd: &BlockDevice,
    cspc: &CStorPoolCluster,
    lookup: &dyn ClusterLookup,
) -> Result<bool, String> {
    let claimed = bd
        .status
        .as_ref()
        .is_some_and(|s| s.claim_state == DeviceClaimState::Claimed);
    let claim_name = bd.spec.claim_ref.as_ref().and_then(|r| r.name.clone());
    let Some(claim_name) = claim_name else {
        return Ok(!claimed);
    };
    let claim = lookup
        .block_device_claim(&namespace_of(cspc), &claim_name)
        .await
        .map_err(|e| format!("failed to get block device claim {claim_name}: {e}"))?;
    Ok(claim.is_some_and(|c| c.labels().get(label::CSTOR_POOL_CLUSTER) == Some(&cspc.name_any())))
}

/// Validates a CSPC DELETE: refused while any of its pools holds a volume replica.
pub async fn validate_cspc_delete(
    namespace: &str,
    name: &str,
    lookup: &dyn ClusterLookup,
) -> Result<(), Denial> {
    let selector = BTreeMap::from([(label::CSTOR_POOL_CLUSTER.to_owned(), name.to_owned())]);
    let failed =
        |e: LookupError| Denial::unprocessable(format!("invalid cspc {name} deletion: {e}"));
    for cspi in lookup
        .pool_instances(namespace, &selector)
        .await
        .map_err(failed)?
    {
        let cspi_name = cspi.name_any();
        if lookup.replicas_on_pool(&cspi_name).await.map_err(failed)? > 0 {
            return Err(Denial::unprocessable(format!(
                "invalid cspc {name} deletion: volume still exists on pool {cspi_name}"
            )));
        }
    }
    Ok(())
}

/// A disk replacement the update asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replacement {
    /// The block device being replaced.
    pub old: String,
    /// Its replacement.
    pub new: String,
}

/// What an accepted update implies.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UpdatePlan {
    /// The replacements found (one per raid group at most).
    pub replacements: Vec<Replacement>,
    /// The claims to save (`bdc-cstor-<new BD uid>` with `openebs.io/bd-predecessor`).
    pub claims: Vec<BlockDeviceClaim>,
}

/// Validates a CSPC UPDATE. On success returns the replacement claims to save; they are
/// saved through `lookup` when `apply` is true (not for dry-run requests).
pub async fn validate_cspc_update(
    old: &CStorPoolCluster,
    new: &CStorPoolCluster,
    lookup: &dyn ClusterLookup,
    apply: bool,
) -> Result<UpdatePlan, Denial> {
    if old.spec == new.spec {
        return Ok(UpdatePlan::default());
    }
    validate_cspc_create(new, lookup).await?;
    let plan = validate_changes(old, new, lookup)
        .await
        .map_err(|m| Denial::unprocessable(format!("{PREFIX}{m}")))?;
    if apply {
        for claim in &plan.claims {
            lookup.save_replacement_claim(claim).await.map_err(|e| {
                Denial::unprocessable(format!(
                    "{PREFIX}failed to save block device claim {}: {e}",
                    claim.name_any()
                ))
            })?;
        }
    }
    Ok(plan)
}

fn data_bds(pool: &PoolSpec) -> BTreeSet<&str> {
    pool.data_raid_groups
        .iter()
        .flat_map(|g| g.block_devices.iter())
        .map(|b| b.block_device_name.as_str())
        .collect()
}

fn group_bds(group: &RaidGroup) -> BTreeSet<&str> {
    group
        .block_devices
        .iter()
        .map(|b| b.block_device_name.as_str())
        .collect()
}

fn data_type(pool: &PoolSpec) -> RaidGroupType {
    pool.pool_config
        .as_ref()
        .map(|c| c.data_raid_group_type.clone())
        .unwrap_or_default()
}

async fn validate_changes(
    old: &CStorPoolCluster,
    new: &CStorPoolCluster,
    lookup: &dyn ClusterLookup,
) -> Result<UpdatePlan, String> {
    let namespace = namespace_of(new);
    let new_bds: BTreeSet<&str> = new
        .spec
        .pools()
        .iter()
        .flat_map(|p| p.block_device_names())
        .collect();
    let old_bds: BTreeSet<&str> = old
        .spec
        .pools()
        .iter()
        .flat_map(|p| p.block_device_names())
        .collect();

    // Scale-down: a removed pool must not hold replicas.
    for pool in old.spec.pools() {
        let kept = new
            .spec
            .pools()
            .iter()
            .any(|p| p.node_selector == pool.node_selector)
            || pool.block_device_names().any(|b| new_bds.contains(b));
        if kept {
            continue;
        }
        let hostname = match resolve_node(&pool.node_selector, lookup).await {
            Ok(node) => Some(node.hostname),
            Err(_) => pool.node_selector.get(label::HOSTNAME).cloned(),
        };
        let Some(hostname) = hostname else { continue };
        let selector = BTreeMap::from([
            (label::CSTOR_POOL_CLUSTER.to_owned(), new.name_any()),
            (label::HOSTNAME.to_owned(), hostname),
        ]);
        let cspis = lookup
            .pool_instances(&namespace, &selector)
            .await
            .map_err(|e| format!("listing pool instances failed: {e}"))?;
        for cspi in cspis {
            let replicas = lookup
                .replicas_on_pool(&cspi.name_any())
                .await
                .map_err(|e| format!("listing volume replicas failed: {e}"))?;
            if replicas > 0 {
                return Err(format!("volume still exists on pool {}", cspi.name_any()));
            }
        }
    }

    // Pair old and new pools by node, or by a shared data block device.
    let mut new_nodes = Vec::new();
    for pool in new.spec.pools() {
        new_nodes.push(resolve_node(&pool.node_selector, lookup).await.ok());
    }
    let claims = lookup
        .block_device_claims_of(&namespace, &new.name_any())
        .await
        .map_err(|e| format!("listing block device claims failed: {e}"))?;
    let mut plan = UpdatePlan::default();
    for old_pool in old.spec.pools() {
        let old_node = resolve_node(&old_pool.node_selector, lookup).await.ok();
        let paired = new
            .spec
            .pools()
            .iter()
            .zip(&new_nodes)
            .find(|(p, n)| match &old_node {
                Some(o) => n.as_ref().is_some_and(|n| n.name == o.name),
                None => data_bds(p)
                    .intersection(&data_bds(old_pool))
                    .next()
                    .is_some(),
            });
        let Some((new_pool, _)) = paired else {
            continue;
        };
        if new_pool == old_pool {
            continue;
        }
        let replacements =
            validate_pool_changes(old_pool, new_pool, &old_bds, &claims, &namespace, lookup)
                .await?;
        for replacement in replacements {
            let bd = fetch_block_device(&namespace, &replacement.new, lookup).await?;
            plan.claims
                .push(replacement_claim(new, &bd, &replacement.old)?);
            plan.replacements.push(replacement);
        }
    }
    Ok(plan)
}

/// `Some(predecessor)` when `bd` is claimed with a pending replacement annotation.
fn predecessor_of<'a>(claims: &'a [BlockDeviceClaim], bd: &str) -> Option<&'a str> {
    claims
        .iter()
        .filter(|c| c.spec.block_device_name.as_deref() == Some(bd))
        .find_map(|c| {
            c.annotations()
                .get(annotation::BD_PREDECESSOR)
                .map(String::as_str)
                .filter(|p| !p.is_empty())
        })
}

/// `true` when `bd` is the predecessor of an ongoing replacement.
fn is_being_replaced(claims: &[BlockDeviceClaim], bd: &str) -> bool {
    claims.iter().any(|c| {
        c.annotations()
            .get(annotation::BD_PREDECESSOR)
            .is_some_and(|p| p == bd)
    })
}

async fn validate_pool_changes(
    old: &PoolSpec,
    new: &PoolSpec,
    old_cspc_bds: &BTreeSet<&str>,
    claims: &[BlockDeviceClaim],
    namespace: &str,
    lookup: &dyn ClusterLookup,
) -> Result<Vec<Replacement>, String> {
    let raid = data_type(old);
    if raid != data_type(new) {
        return Err("raidgroup can't be modified".into());
    }
    let mut replacements = Vec::new();
    for old_group in &old.data_raid_groups {
        let change = GroupChange::of(old_group, new)?;
        if change.removed.is_empty() && change.added.is_empty() {
            continue;
        }
        if raid == RaidGroupType::Stripe {
            validate_stripe_change(&change, claims)?;
            continue;
        }
        let (old_bd, new_bd) = replaced_disk(&raid, &change)?;
        validate_replacement_claims(&change, new_bd, old_cspc_bds, claims)?;
        validate_replacement_capacity(old_bd, new_bd, namespace, lookup).await?;
        replacements.push(Replacement {
            old: old_bd.to_owned(),
            new: new_bd.to_owned(),
        });
    }
    validate_new_groups(old, new, claims)?;
    Ok(replacements)
}

fn raid_group_failed(m: &str) -> String {
    format!("raid group validation failed: {m}")
}

fn expansion_failed(bd: &str) -> String {
    format!("pool expansion validation failed: can not use blockdevice {bd} validation failed")
}

/// The block devices of one raid group of the old pool spec, and of the raid group of the new
/// spec that shares one with it.
struct GroupChange<'a> {
    old_set: BTreeSet<&'a str>,
    new_set: BTreeSet<&'a str>,
    /// In the old group only.
    removed: Vec<&'a str>,
    /// In the new group only.
    added: Vec<&'a str>,
}

impl<'a> GroupChange<'a> {
    /// Pairs `old_group` with its raid group in `new`; a raid group cannot be removed.
    fn of(old_group: &'a RaidGroup, new: &'a PoolSpec) -> Result<Self, String> {
        let old_set = group_bds(old_group);
        let Some(new_group) = new
            .data_raid_groups
            .iter()
            .find(|g| group_bds(g).intersection(&old_set).next().is_some())
        else {
            return Err(raid_group_failed(
                "removing raid group from pool spec is invalid operation",
            ));
        };
        let new_set = group_bds(new_group);
        let removed = old_set.difference(&new_set).copied().collect();
        let added = new_set.difference(&old_set).copied().collect();
        Ok(Self {
            old_set,
            new_set,
            removed,
            added,
        })
    }
}

/// A stripe raid group may only grow, and not by a device that is being replaced.
fn validate_stripe_change(
    change: &GroupChange<'_>,
    claims: &[BlockDeviceClaim],
) -> Result<(), String> {
    if !change.removed.is_empty() {
        return Err(if change.added.is_empty() {
            raid_group_failed("removing block device from stripe raid group is not valid operation")
        } else {
            "cannot replace  blockdevice in stripe raid group".into()
        });
    }
    if let Some(bd) = change.added.iter().find(|b| is_being_replaced(claims, b)) {
        return Err(expansion_failed(bd));
    }
    Ok(())
}

/// Any other raid group keeps its size, so a change is the replacement of exactly one device.
/// Returns `(old, new)`.
fn replaced_disk<'a>(
    raid: &RaidGroupType,
    change: &GroupChange<'a>,
) -> Result<(&'a str, &'a str), String> {
    if change.new_set.len() < change.old_set.len() {
        return Err(raid_group_failed(&format!(
            "removing block device from {raid} raid group is not valid operation"
        )));
    }
    if change.new_set.len() > change.old_set.len() {
        return Err(raid_group_failed(&format!(
            "adding block devices to existing {raid} raid group is not valid operation"
        )));
    }
    if change.removed.len() > 1 {
        return Err("cannot replace more than one blockdevice in a raid group".into());
    }
    Ok((change.removed[0], change.added[0]))
}

/// The new device must be new to the CSPC and not being replaced, and no replacement may be
/// running in the raid group already.
fn validate_replacement_claims(
    change: &GroupChange<'_>,
    new_bd: &str,
    old_cspc_bds: &BTreeSet<&str>,
    claims: &[BlockDeviceClaim],
) -> Result<(), String> {
    if old_cspc_bds.contains(new_bd) {
        return Err(
            "the new blockdevice intended to use for replacement is already a part of the current cspc"
                .into(),
        );
    }
    if let Some((bd, pred)) = change
        .old_set
        .iter()
        .find_map(|b| predecessor_of(claims, b).map(|p| (*b, p)))
    {
        return Err(format!(
            "cannot replace blockdevice as a background replacement may be in progress in the raid group: blockdevice {bd} is replacing {pred}"
        ));
    }
    if is_being_replaced(claims, new_bd) {
        return Err("the new blockdevice intended to use for replacement in invalid".into());
    }
    Ok(())
}

/// The new device must exist and be at least as large as the old one (when that still exists).
async fn validate_replacement_capacity(
    old_bd: &str,
    new_bd: &str,
    namespace: &str,
    lookup: &dyn ClusterLookup,
) -> Result<(), String> {
    let new_device = fetch_block_device(namespace, new_bd, lookup).await?;
    if let Some(old_device) = lookup
        .block_device(namespace, old_bd)
        .await
        .map_err(|e| format!("failed to get block device: {{{old_bd}}} details error: {e}"))?
    {
        let (n, o) = (
            new_device.spec.capacity.storage,
            old_device.spec.capacity.storage,
        );
        if n < o {
            return Err(format!(
                "error: capacity of replacing block device {{{new_bd}:{n}}} should be greater than or equal to existing block device {{{old_bd}:{o}}}"
            ));
        }
    }
    Ok(())
}

/// New raid groups (pool expansion) may not use a device that is being replaced.
fn validate_new_groups(
    old: &PoolSpec,
    new: &PoolSpec,
    claims: &[BlockDeviceClaim],
) -> Result<(), String> {
    let old_all = data_bds(old);
    for group in &new.data_raid_groups {
        let set = group_bds(group);
        if set.intersection(&old_all).next().is_some() {
            continue;
        }
        if let Some(bd) = set.iter().find(|b| is_being_replaced(claims, b)) {
            return Err(expansion_failed(bd));
        }
    }
    Ok(())
}

/// Renders a byte count as upstream's `ByteCount`: binary units, truncated, decimal suffix
/// letter (10 GiB → `10G`).
pub fn byte_count(bytes: u64) -> String {
    const UNIT: u64 = 1024;
    if bytes < UNIT {
        return format!("{bytes}B");
    }
    let (mut div, mut exp) = (UNIT, 0usize);
    let mut n = bytes / UNIT;
    while n >= UNIT {
        div *= UNIT;
        exp += 1;
        n /= UNIT;
    }
    format!("{}{}", bytes / div, &"KMGTPE"[exp..exp + 1])
}

/// The claim `bdc-cstor-<BD uid>` marking `bd` as the replacement of `predecessor`.
pub fn replacement_claim(
    cspc: &CStorPoolCluster,
    bd: &BlockDevice,
    predecessor: &str,
) -> Result<BlockDeviceClaim, String> {
    let uid = bd.metadata.uid.clone().ok_or_else(|| {
        format!(
            "block device {} has no metadata.uid: cannot name its claim",
            bd.name_any()
        )
    })?;
    let owner = cspc.controller_owner_ref(&()).map(|mut o: OwnerReference| {
        o.block_owner_deletion = Some(true);
        o
    });
    let hostname = bd.labels().get(label::HOSTNAME).cloned();
    let selector = bd
        .labels()
        .get(label::BLOCK_DEVICE_TAG)
        .map(|tag| LabelSelector {
            match_labels: Some(BTreeMap::from([(
                label::BLOCK_DEVICE_TAG.to_owned(),
                tag.clone(),
            )])),
            ..Default::default()
        });
    Ok(BlockDeviceClaim {
        metadata: ObjectMeta {
            name: Some(naming::bdc_name(&uid)),
            namespace: cspc.metadata.namespace.clone(),
            labels: Some(BTreeMap::from([(
                label::CSTOR_POOL_CLUSTER.to_owned(),
                cspc.name_any(),
            )])),
            annotations: Some(BTreeMap::from([(
                annotation::BD_PREDECESSOR.to_owned(),
                predecessor.to_owned(),
            )])),
            owner_references: owner.map(|o| vec![o]),
            finalizers: Some(vec![finalizer::CSPC.to_owned()]),
            ..Default::default()
        },
        spec: DeviceClaimSpec {
            selector,
            resources: Some(DeviceClaimResources {
                requests: BTreeMap::from([(
                    "storage".to_owned(),
                    Quantity(byte_count(bd.spec.capacity.storage)),
                )]),
                ..Default::default()
            }),
            block_device_name: Some(bd.name_any()),
            block_device_node_attributes: Some(BlockDeviceNodeAttributes {
                host_name: hostname,
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    })
}
