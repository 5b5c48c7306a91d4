//! NodePublishVolume (bind mount of the staging path, or of the device for raw block, with
//! `ro` and the capability's mount flags) and NodeUnpublishVolume (unmount, then remove the
//! directory or file the publish created). Both are idempotent and decide from the mount table.

use std::{
    os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use cstor_api::{
    naming::cva_name,
    proto::csi::v1::{
        NodePublishVolumeRequest, NodePublishVolumeResponse, NodeUnpublishVolumeRequest,
        NodeUnpublishVolumeResponse,
    },
};

use crate::{
    error::{NodeError, Result},
    guard::Operation,
    kube::{AccessType, Attachment},
    mount_table::MountTable,
    node::{Capability, NodeDriver, require_id, require_path},
};

/// A NodePublishVolume request whose fields have been checked.
struct PublishRequest<'a> {
    volume: &'a str,
    target: &'a Path,
    staging: &'a Path,
    cap: Capability,
    readonly: bool,
}

impl<'a> PublishRequest<'a> {
    /// Checks the ids, paths and capability, and that the CO created the target's parent.
    fn parse(req: &'a NodePublishVolumeRequest) -> Result<Self> {
        let volume = require_id(&req.volume_id, "volume_id")?;
        let target = require_path(&req.target_path, "target_path")?;
        if req.staging_target_path.is_empty() {
            return Err(NodeError::Precondition(
                "staging_target_path is missing: this driver stages volumes (STAGE_UNSTAGE_VOLUME), call NodeStageVolume first and pass its path".into(),
            ));
        }
        let staging = require_path(&req.staging_target_path, "staging_target_path")?;
        let cap = Capability::from_request(req.volume_capability.as_ref())?;
        let parent = target.parent().unwrap_or(Path::new("/"));
        if !parent.is_dir() {
            return Err(NodeError::Invalid(format!(
                "target_path {}: its parent directory {} does not exist; the CO must create it",
                target.display(),
                parent.display()
            )));
        }
        Ok(Self {
            volume,
            target,
            staging,
            cap,
            readonly: req.readonly,
        })
    }
}

/// What publishing still has to do at the target path.
enum PublishStep {
    /// The volume is already published there the way the request asks.
    Done,
    /// Nothing is mounted there yet: bind-mount this source.
    Bind(PathBuf),
}

impl NodeDriver {
    pub async fn publish(
        &self,
        req: NodePublishVolumeRequest,
    ) -> Result<NodePublishVolumeResponse> {
        let p = PublishRequest::parse(&req)?;
        let _guard = self.guards().try_lock(p.volume, Operation::Publish)?;
        let name = cva_name(p.volume, self.node());
        let mut cva = self.staged_attachment(&name, p.volume).await?;
        let source = match self.publish_step(&p, &cva)? {
            PublishStep::Done => return Ok(NodePublishVolumeResponse {}),
            PublishStep::Bind(source) => source,
        };
        if let Capability::Block = p.cap {
            self.set_device_read_only(&source, &p).await?;
        }
        self.bind_target(&source, &p).await?;
        self.record_target_path(&mut cva, &name, p.target).await?;
        tracing::info!(volume = p.volume, target = %p.target.display(), readonly = p.readonly, "published");
        Ok(NodePublishVolumeResponse {})
    }

    /// The volume's attachment on this node, which must exist and be staged.
    async fn staged_attachment(&self, name: &str, volume: &str) -> Result<Attachment> {
        self.inner
            .api
            .attachment(name)
            .await
            .map_err(NodeError::api(format!(
                "cannot read CStorVolumeAttachment {name}"
            )))?
            .filter(|c| !c.deleting && !c.staging_target_path.is_empty())
            .ok_or_else(|| {
                NodeError::Precondition(format!(
                    "volume {volume} is not staged on node {}: call NodeStageVolume first",
                    self.node()
                ))
            })
    }

    /// Decides from the mount table whether the target is already published, and otherwise
    /// what to bind-mount there (the staging path, or the device for raw block).
    fn publish_step(&self, p: &PublishRequest<'_>, cva: &Attachment) -> Result<PublishStep> {
        let table = self.mounts()?;
        match &p.cap {
            Capability::Mount { .. } => mount_publish_step(&table, p),
            Capability::Block => block_publish_step(&table, p, cva),
        }
    }

    /// For raw block the read-only flag is set on the device itself, before the bind mount.
    async fn set_device_read_only(&self, device: &Path, p: &PublishRequest<'_>) -> Result<()> {
        self.inner
            .fs
            .set_read_only(device, p.readonly)
            .await
            .map_err(NodeError::fs(format!(
                "cannot set the device of volume {} read-{}",
                p.volume,
                if p.readonly { "only" } else { "write" }
            )))
    }

    /// Creates the target if missing and bind-mounts the source on it; a target this call
    /// created is removed again when the mount fails.
    async fn bind_target(&self, source: &Path, p: &PublishRequest<'_>) -> Result<()> {
        let created = create_target(p.target, matches!(p.cap, Capability::Block))?;
        let flags = match &p.cap {
            Capability::Mount { flags, .. } => flags.clone(),
            Capability::Block => Vec::new(),
        };
        if let Err(e) = self
            .inner
            .fs
            .bind(source, p.target, p.readonly, &flags)
            .await
        {
            if created {
                remove_target(p.target);
            }
            return Err(NodeError::fs(format!(
                "could not mount {} at {}",
                source.display(),
                p.target.display()
            ))(e));
        }
        Ok(())
    }

    /// Records the target path in the attachment, when it is not there already.
    async fn record_target_path(
        &self,
        cva: &mut Attachment,
        name: &str,
        target: &Path,
    ) -> Result<()> {
        let t = target.to_string_lossy().into_owned();
        if cva.target_path != t {
            cva.target_path = t;
            self.inner
                .api
                .update_attachment(cva)
                .await
                .map_err(NodeError::api(format!(
                    "cannot record the target path in CStorVolumeAttachment {name}"
                )))?;
        }
        Ok(())
    }

    pub async fn unpublish(
        &self,
        req: NodeUnpublishVolumeRequest,
    ) -> Result<NodeUnpublishVolumeResponse> {
        let volume = require_id(&req.volume_id, "volume_id")?;
        let target = require_path(&req.target_path, "target_path")?;
        let _guard = self.guards().try_lock(volume, Operation::Unpublish)?;
        self.unmount_all(target).await?;
        match std::fs::symlink_metadata(target) {
            Ok(m) if m.is_dir() => std::fs::remove_dir(target).map_err(|e| {
                NodeError::Precondition(format!(
                    "cannot remove target_path {} after unmounting it ({e}); it holds files that are not on the volume, remove them by hand",
                    target.display()
                ))
            })?,
            Ok(_) => std::fs::remove_file(target).map_err(NodeError::io("cannot remove", target))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(NodeError::io("cannot inspect", target)(e)),
        }
        let name = cva_name(volume, self.node());
        let cva = self
            .inner
            .api
            .attachment(&name)
            .await
            .map_err(NodeError::api(format!(
                "cannot read CStorVolumeAttachment {name}"
            )))?;
        if let Some(c) = &cva
            && c.access_type == AccessType::Block
            && Path::new(&c.device_path).exists()
        {
            // Undo a read-only publish: the flag is on the device itself.
            self.inner
                .fs
                .set_read_only(Path::new(&c.device_path), false)
                .await
                .map_err(NodeError::fs(format!(
                    "cannot make the device of volume {volume} writable again"
                )))?;
        }
        if let Some(mut cva) = cva
            && cva.target_path == req.target_path
        {
            cva.target_path.clear();
            self.inner
                .api
                .update_attachment(&cva)
                .await
                .map_err(NodeError::api(format!(
                    "cannot update CStorVolumeAttachment {name}"
                )))?;
        }
        tracing::info!(volume, target = %target.display(), "unpublished");
        Ok(NodeUnpublishVolumeResponse {})
    }
}

/// Creates the publish target (directory for a filesystem, empty file for a block device) when
/// missing. Returns whether it created it.
fn create_target(target: &Path, file: bool) -> Result<bool> {
    let res = if file {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o640)
            .open(target)
            .map(|_| ())
    } else {
        std::fs::DirBuilder::new().mode(0o750).create(target)
    };
    match res {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let is_dir = target.is_dir();
            if is_dir == file {
                return Err(NodeError::Invalid(format!(
                    "target_path {} exists but is a {}; a {} volume needs a {}",
                    target.display(),
                    if is_dir { "directory" } else { "file" },
                    if file { "block" } else { "mount" },
                    if file { "file" } else { "directory" }
                )));
            }
            Ok(false)
        }
        Err(e) => Err(NodeError::io("cannot create", target)(e)),
    }
}

fn remove_target(target: &Path) {
    let _ = if target.is_dir() {
        std::fs::remove_dir(target)
    } else {
        std::fs::remove_file(target)
    };
}

/// Publishing a filesystem volume binds its staging mount; the target is already published when
/// it holds the same mount in the same read-only mode, and taken when it holds anything else.
fn mount_publish_step(table: &MountTable, p: &PublishRequest<'_>) -> Result<PublishStep> {
    let volume = p.volume;
    let staged = table.at(p.staging).ok_or_else(|| {
        NodeError::Precondition(format!(
            "volume {volume} is not staged at {}: nothing is mounted there; call NodeStageVolume first",
            p.staging.display()
        ))
    })?;
    if let Some(existing) = table.at(p.target) {
        let same = existing.majmin == staged.majmin && existing.root == staged.root;
        let ro = existing.mount_options.contains_key("ro");
        if same && ro == p.readonly {
            tracing::info!(volume, target = %p.target.display(), "already published");
            return Ok(PublishStep::Done);
        }
        return Err(NodeError::AlreadyExists(format!(
            "target_path {} already has {} mounted ({}): unpublish it first",
            p.target.display(),
            if same {
                format!("volume {volume}")
            } else {
                existing.source.clone()
            },
            if ro { "read-only" } else { "read-write" }
        )));
    }
    Ok(PublishStep::Bind(p.staging.to_path_buf()))
}

/// Publishing a raw block volume binds its device, which must still be present; the target is
/// already published when it is that device in the same read-only mode.
fn block_publish_step(
    table: &MountTable,
    p: &PublishRequest<'_>,
    cva: &Attachment,
) -> Result<PublishStep> {
    let volume = p.volume;
    let dev = Path::new(&cva.device_path);
    let meta = std::fs::metadata(dev).ok().filter(|m| m.file_type().is_block_device()).ok_or_else(|| {
        NodeError::Precondition(format!(
            "the device {} of volume {volume} is not present: stage the volume again (NodeStageVolume)",
            cva.device_path
        ))
    })?;
    if table.is_mount_point(p.target) {
        let cur = std::fs::metadata(p.target).ok();
        let same = cur
            .as_ref()
            .is_some_and(|c| c.file_type().is_block_device() && c.rdev() == meta.rdev());
        let ro = table
            .at(p.target)
            .is_some_and(|m| m.mount_options.contains_key("ro"));
        if same && ro == p.readonly {
            return Ok(PublishStep::Done);
        }
        return Err(NodeError::AlreadyExists(format!(
            "target_path {} already has another device or mode published: unpublish it first",
            p.target.display()
        )));
    }
    Ok(PublishStep::Bind(dev.to_path_buf()))
}
