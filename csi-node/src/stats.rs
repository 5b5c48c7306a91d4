//! NodeGetVolumeStats: bytes and inodes from statfs for a filesystem, the device size for a
//! block volume, and a VolumeCondition that is abnormal when the mount is gone or read-only.

use std::os::unix::fs::FileTypeExt;

use cstor_api::proto::csi::v1::{
    NodeGetVolumeStatsRequest, NodeGetVolumeStatsResponse, VolumeCondition, VolumeUsage,
    volume_usage::Unit,
};

use crate::{
    error::{NodeError, Result},
    node::{NodeDriver, require_id, require_path},
};

impl NodeDriver {
    pub async fn stats(
        &self,
        req: NodeGetVolumeStatsRequest,
    ) -> Result<NodeGetVolumeStatsResponse> {
        let volume = require_id(&req.volume_id, "volume_id")?;
        let path = require_path(&req.volume_path, "volume_path")?;
        let meta = std::fs::metadata(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                NodeError::NotFound(format!(
                    "volume_path {} does not exist: volume {volume} is not published there",
                    path.display()
                ))
            } else {
                NodeError::io("cannot inspect", path)(e)
            }
        })?;
        let table = self.mounts()?;
        let mounted = table.at(path);
        if meta.file_type().is_block_device() {
            let size = self
                .inner
                .fs
                .device_size(path)
                .await
                .map_err(NodeError::fs(format!(
                    "cannot read the size of {}",
                    path.display()
                )))?;
            return Ok(NodeGetVolumeStatsResponse {
                usage: vec![VolumeUsage {
                    total: i64::try_from(size).unwrap_or(i64::MAX),
                    unit: Unit::Bytes as i32,
                    ..Default::default()
                }],
                volume_condition: Some(condition(
                    mounted.is_none(),
                    if mounted.is_none() {
                        format!(
                            "the block device of volume {volume} is no longer bound at {}",
                            path.display()
                        )
                    } else {
                        "volume is attached".into()
                    },
                )),
            });
        }
        let Some(m) = mounted else {
            return Ok(NodeGetVolumeStatsResponse {
                usage: Vec::new(),
                volume_condition: Some(condition(
                    true,
                    format!(
                        "volume {volume} is not mounted at {}: its filesystem is gone from this path; restart the pod to mount it again",
                        path.display()
                    ),
                )),
            });
        };
        let st = nix::sys::statvfs::statvfs(path).map_err(|e| NodeError::Io {
            what: "statfs failed on",
            path: path.display().to_string(),
            source: e.into(),
        })?;
        let bs = st.fragment_size() as i64;
        let blocks = st.blocks() as i64;
        let bfree = st.blocks_free() as i64;
        let bavail = st.blocks_available() as i64;
        let files = st.files() as i64;
        let ffree = st.files_free() as i64;
        let fs_ro = m.super_options.contains_key("ro");
        let (abnormal, message) = if fs_ro {
            (
                true,
                format!(
                    "the filesystem of volume {volume} went read-only (the iSCSI target was lost?); with REMOUNT on, the node plugin remounts it once the volume is Healthy"
                ),
            )
        } else if m.mount_options.contains_key("ro") {
            (false, "volume is published read-only".to_string())
        } else {
            (false, "volume is mounted read-write".to_string())
        };
        Ok(NodeGetVolumeStatsResponse {
            usage: vec![
                VolumeUsage {
                    available: bavail * bs,
                    total: blocks * bs,
                    used: (blocks - bfree) * bs,
                    unit: Unit::Bytes as i32,
                },
                VolumeUsage {
                    available: ffree,
                    total: files,
                    used: files - ffree,
                    unit: Unit::Inodes as i32,
                },
            ],
            volume_condition: Some(condition(abnormal, message)),
        })
    }
}

fn condition(abnormal: bool, message: String) -> VolumeCondition {
    VolumeCondition { abnormal, message }
}
