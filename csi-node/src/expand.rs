//! NodeExpandVolume: rescan the iSCSI session so the kernel sees the new LUN size, then grow
//! the filesystem (`xfs_growfs` online, `resize2fs` for ext4). Block volumes report the new
//! device size.

use std::{os::unix::fs::FileTypeExt, path::Path};

use cstor_api::{
    naming::cva_name,
    proto::csi::v1::{NodeExpandVolumeRequest, NodeExpandVolumeResponse},
};

use crate::{
    attach::IscsiTarget,
    error::{NodeError, Result},
    fs::FsType,
    guard::Operation,
    node::{NodeDriver, require_id, require_path},
};

impl NodeDriver {
    pub async fn expand(&self, req: NodeExpandVolumeRequest) -> Result<NodeExpandVolumeResponse> {
        let volume = require_id(&req.volume_id, "volume_id")?;
        let path = require_path(&req.volume_path, "volume_path")?;
        if let Some(r) = &req.capacity_range
            && (r.required_bytes < 0 || r.limit_bytes < 0)
        {
            return Err(NodeError::Invalid(
                "capacity_range must not be negative".into(),
            ));
        }
        let meta = std::fs::metadata(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                NodeError::NotFound(format!(
                    "volume_path {} does not exist: is volume {volume} published there?",
                    path.display()
                ))
            } else {
                NodeError::io("cannot inspect", path)(e)
            }
        })?;
        let _guard = self.guards().try_lock(volume, Operation::Expand)?;
        let name = cva_name(volume, self.node());
        let cva = self
            .inner
            .api
            .attachment(&name)
            .await
            .map_err(NodeError::api(format!(
                "cannot read CStorVolumeAttachment {name}"
            )))?
            .ok_or_else(|| {
                NodeError::NotFound(format!(
                    "volume {volume} is not staged on node {} (no CStorVolumeAttachment {name})",
                    self.node()
                ))
            })?;
        let target = IscsiTarget::new(&cva.iqn, &cva.target_portal);
        let required = req.capacity_range.as_ref().map_or(0, |r| r.required_bytes);

        if meta.file_type().is_block_device() {
            let size = self.rescan_until(volume, &target, path, required).await?;
            tracing::info!(volume, size, "block volume rescanned");
            return Ok(NodeExpandVolumeResponse {
                capacity_bytes: size,
            });
        }
        let table = self.mounts()?;
        let m = table.at(path).ok_or_else(|| {
            NodeError::Precondition(format!(
                "volume_path {} is not a mount point: publish volume {volume} there before expanding it",
                path.display()
            ))
        })?;
        let fs = FsType::parse(&m.fs_type)
            .filter(|_| !m.fs_type.is_empty())
            .ok_or_else(|| {
                NodeError::Precondition(format!(
                    "the {} filesystem at {} cannot be grown by this driver (only {})",
                    m.fs_type,
                    path.display(),
                    FsType::SUPPORTED
                ))
            })?;
        let device = Path::new(&m.source).to_path_buf();
        // Growing the filesystem before the LUN has grown would report a resize that did not
        // happen: the kubelet would consider it finished.
        self.rescan_until(volume, &target, &device, required)
            .await?;
        self.inner
            .fs
            .grow(fs, &device, path)
            .await
            .map_err(NodeError::fs(format!(
                "cannot grow the {fs} filesystem of volume {volume}"
            )))?;
        let size = self.device_size(&device).await?;
        tracing::info!(volume, %fs, size, "filesystem grown");
        Ok(NodeExpandVolumeResponse {
            capacity_bytes: size,
        })
    }

    /// Rescans the iSCSI session until `device` is at least `required` bytes, within the
    /// `device_resize` deadline; otherwise UNAVAILABLE so the CO retries once the target has
    /// resized the LUN. Returns the device size.
    async fn rescan_until(
        &self,
        volume: &str,
        target: &IscsiTarget,
        device: &Path,
        required: i64,
    ) -> Result<i64> {
        let waits = &self.config().waits;
        let deadline = tokio::time::Instant::now() + waits.device_resize;
        loop {
            self.inner
                .attacher
                .rescan(target)
                .await
                .map_err(NodeError::attach(format!(
                    "cannot rescan the iSCSI session of volume {volume}"
                )))?;
            let size = self.device_size(device).await?;
            if size >= required {
                return Ok(size);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(NodeError::NotReady(format!(
                    "volume {volume}: the device {} is {size} bytes, smaller than the requested {required}; \
                     the target has not grown the LUN yet (check the CStorVolume's status.capacity) — the expansion is retried",
                    device.display()
                )));
            }
            crate::stage::sleep_until_next(waits.poll, deadline).await;
        }
    }

    async fn device_size(&self, device: &Path) -> Result<i64> {
        let size = self
            .inner
            .fs
            .device_size(device)
            .await
            .map_err(NodeError::fs(format!(
                "cannot read the size of {}",
                device.display()
            )))?;
        Ok(i64::try_from(size).unwrap_or(i64::MAX))
    }
}
