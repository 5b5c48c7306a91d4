//! Block device → vdev path resolution: the first of the BlockDevice's devlinks
//! followed by `spec.path` is the path the pool uses.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use cstor_api::{cstor::CStorPoolInstance, ndm::BlockDevice};
use kube::Api;

use super::{Context, Error, Result};
use crate::engine::{RaidGroup, RaidType, VdevClass};

/// Every candidate path of a block device, devlinks first.
pub async fn candidate_paths(ctx: &Context, bd: &str) -> Result<Vec<String>> {
    let api: Api<BlockDevice> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let Some(device) = api.get_opt(bd).await? else {
        return Err(Error::invalid(
            format!("block device {bd}"),
            format!(
                "BlockDevice {bd} does not exist in namespace {}; restore it or remove it from the pool spec",
                ctx.namespace
            ),
        ));
    };
    let paths: Vec<String> = device
        .spec
        .candidate_paths()
        .into_iter()
        .map(str::to_owned)
        .collect();
    if paths.is_empty() {
        return Err(Error::invalid(
            format!("block device {bd}"),
            "it has neither devlinks nor spec.path",
        ));
    }
    Ok(paths)
}

/// The CSPI's raid groups resolved to device paths.
#[derive(Clone, Debug, Default)]
pub struct ResolvedPool {
    /// (class, raid group with vdev paths, block device names in the same order).
    pub groups: Vec<(VdevClass, RaidGroup, Vec<String>)>,
    /// Block device name → the path used as vdev.
    pub path_of: BTreeMap<String, String>,
    /// Directory of sparse-file vdevs (paths not under `/dev`), for `-d`.
    pub dev_dir: Option<PathBuf>,
}

/// Resolves every block device of the CSPI (data groups then write-cache groups).
pub async fn resolve(ctx: &Context, cspi: &CStorPoolInstance) -> Result<ResolvedPool> {
    let config = cspi.spec.pool_config.clone().unwrap_or_default();
    let data_type: RaidType = config.data_raid_group_type.as_str().parse()?;
    let cache_type: Option<RaidType> = match &config.write_cache_group_type {
        Some(t) => Some(t.as_str().parse()?),
        None => None,
    };
    let mut out = ResolvedPool::default();
    let sets = [
        (
            VdevClass::Data,
            Some(data_type),
            &cspi.spec.data_raid_groups[..],
        ),
        (
            VdevClass::WriteCache,
            cache_type,
            cspi.spec.write_cache_raid_groups(),
        ),
    ];
    for (class, raid, groups) in sets {
        for group in groups {
            let Some(raid) = raid else {
                return Err(Error::invalid(
                    "spec.poolConfig.writeCacheGroupType",
                    "write-cache raid groups are present but writeCacheGroupType is not set",
                ));
            };
            let mut disks = Vec::new();
            let mut names = Vec::new();
            for bd in &group.block_devices {
                let paths = candidate_paths(ctx, &bd.block_device_name).await?;
                let path = paths[0].clone();
                if out.dev_dir.is_none() && !path.starts_with("/dev") {
                    out.dev_dir = Path::new(&path).parent().map(Path::to_path_buf);
                }
                out.path_of
                    .insert(bd.block_device_name.clone(), path.clone());
                disks.push(path);
                names.push(bd.block_device_name.clone());
            }
            out.groups.push((class, RaidGroup::new(raid, disks), names));
        }
    }
    Ok(out)
}
