//! The node driver: configuration, shared state and request validation used by every RPC.
//! Each RPC lives in its own file (stage.rs, publish.rs, expand.rs, stats.rs) as an
//! `impl NodeDriver` block; service.rs maps them onto the generated tonic traits.

use std::{
    path::{Component, Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use cstor_api::{
    exec::Runner,
    proto::csi::v1::{
        VolumeCapability,
        volume_capability::{AccessType as CsiAccessType, access_mode::Mode},
    },
};

use crate::{
    attach::Attacher,
    error::{NodeError, Result},
    fs::{Fs, FsType},
    guard::VolumeGuards,
    kube::{AccessType, VolumeApi},
    mount_table::{DEFAULT_MOUNTINFO, MountTable},
};

/// How long NodeStage waits for things outside the node before it gives up with a message
/// (the CO retries). Upstream waits ~10-12 s each, under kubelet's ~14 s retry.
#[derive(Clone, Debug)]
pub struct Waits {
    pub cvc_bound: Duration,
    pub volume_ready: Duration,
    pub portal_reachable: Duration,
    /// How long NodeExpandVolume waits for the device to reach the requested size after a
    /// rescan (the target may still be resizing the LUN) before asking the CO to retry.
    pub device_resize: Duration,
    pub poll: Duration,
}

impl Default for Waits {
    fn default() -> Self {
        Self {
            cvc_bound: Duration::from_secs(10),
            volume_ready: Duration::from_secs(12),
            portal_reachable: Duration::from_secs(12),
            device_resize: Duration::from_secs(10),
            poll: Duration::from_secs(1),
        }
    }
}

#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// This node's name (CVA owner, topology value, CSI node id).
    pub node_id: String,
    pub driver_name: String,
    pub version: String,
    /// Namespace of the cStor objects (for messages that tell the user what to run).
    pub namespace: String,
    /// `max_volumes_per_node` in NodeGetInfo; 0 = no limit.
    pub max_volumes: i64,
    pub waits: Waits,
    /// Mount table to read (the calling thread's by default).
    pub mountinfo: PathBuf,
}

impl NodeConfig {
    pub fn new(node_id: impl Into<String>, namespace: impl Into<String>) -> Self {
        Self {
            node_id: node_id.into(),
            driver_name: cstor_api::constants::csi::DRIVER_NAME.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            namespace: namespace.into(),
            max_volumes: 0,
            waits: Waits::default(),
            mountinfo: PathBuf::from(DEFAULT_MOUNTINFO),
        }
    }
}

/// Everything the RPCs share. Cheap to clone.
#[derive(Clone, Debug)]
pub struct NodeDriver {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub cfg: NodeConfig,
    pub api: Arc<dyn VolumeApi>,
    pub attacher: Arc<dyn Attacher>,
    pub fs: Fs,
    pub guards: VolumeGuards,
}

impl NodeDriver {
    pub fn new(
        cfg: NodeConfig,
        runner: Arc<dyn Runner>,
        api: Arc<dyn VolumeApi>,
        attacher: Arc<dyn Attacher>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                cfg,
                api,
                attacher,
                fs: Fs::new(runner),
                guards: VolumeGuards::new(),
            }),
        }
    }

    pub fn config(&self) -> &NodeConfig {
        &self.inner.cfg
    }

    /// This node's Node object, as the volume API sees it.
    pub async fn node_info(&self) -> Result<Option<crate::kube::NodeInfo>, crate::kube::ApiError> {
        self.inner.api.node(&self.inner.cfg.node_id).await
    }

    pub fn guards(&self) -> &VolumeGuards {
        &self.inner.guards
    }

    pub(crate) fn mounts(&self) -> Result<MountTable> {
        Ok(MountTable::read_from(&self.inner.cfg.mountinfo)?)
    }

    /// Takes every mount stacked at `path` off, one `umount` each, and at most
    /// [`MAX_STACKED_MOUNTS`] of them: an `umount` that succeeds while the mount stays (or a
    /// deeper stack than that) is an error the caller reports, never an endless loop.
    pub(crate) async fn unmount_all(&self, path: &Path) -> Result<()> {
        for _ in 0..MAX_STACKED_MOUNTS {
            if !self.mounts()?.is_mount_point(path) {
                return Ok(());
            }
            self.unmount_once(path).await?;
        }
        self.still_mounted(path)
    }

    /// One `umount` of `path`.
    pub(crate) async fn unmount_once(&self, path: &Path) -> Result<()> {
        self.inner
            .fs
            .umount(path)
            .await
            .map_err(NodeError::fs(format!("cannot unmount {}", path.display())))
    }

    /// `Ok` when `path` is no mount point, else the error of an unmount loop that gave up.
    pub(crate) fn still_mounted(&self, path: &Path) -> Result<()> {
        if !self.mounts()?.is_mount_point(path) {
            return Ok(());
        }
        Err(NodeError::Precondition(format!(
            "{} is still a mount point after {MAX_STACKED_MOUNTS} unmounts: something mounts it \
             again or umount does not take it off; check `findmnt {}`",
            path.display(),
            path.display()
        )))
    }

    pub(crate) fn node(&self) -> &str {
        &self.inner.cfg.node_id
    }
}

/// Most mounts stacked on one path an unmount loop takes off before giving up.
pub const MAX_STACKED_MOUNTS: usize = 16;

/// A validated volume capability.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Capability {
    Mount { fs: FsType, flags: Vec<String> },
    Block,
}

impl Capability {
    pub fn access_type(&self) -> AccessType {
        match self {
            Capability::Mount { .. } => AccessType::Mount,
            Capability::Block => AccessType::Block,
        }
    }

    pub fn fs_type(&self) -> &'static str {
        match self {
            Capability::Mount { fs, .. } => fs.as_str(),
            Capability::Block => "",
        }
    }

    /// Checks access type, fs type and access mode. cStor volumes are single-node (RWO).
    pub fn from_request(cap: Option<&VolumeCapability>) -> Result<Self> {
        let cap = cap.ok_or_else(|| {
            NodeError::Invalid("volume_capability is missing: give the volume's access type (mount or block) and access mode".into())
        })?;
        let mode = cap.access_mode.as_ref().map(|m| m.mode).ok_or_else(|| {
            NodeError::Invalid("volume_capability.access_mode is missing: cStor volumes support SINGLE_NODE_WRITER (ReadWriteOnce)".into())
        })?;
        match Mode::try_from(mode) {
            // Every single-node mode the controller accepts; read-only use is enforced by the
            // CO's `readonly` flag on NodePublish.
            Ok(
                Mode::SingleNodeWriter
                | Mode::SingleNodeSingleWriter
                | Mode::SingleNodeMultiWriter
                | Mode::SingleNodeReaderOnly,
            ) => {}
            Ok(other) => {
                return Err(NodeError::Invalid(format!(
                    "access mode {} is not supported: cStor volumes are single-node; use SINGLE_NODE_WRITER (ReadWriteOnce)",
                    other.as_str_name()
                )));
            }
            Err(_) => {
                return Err(NodeError::Invalid(format!(
                    "volume_capability.access_mode {mode} is not a CSI access mode; use SINGLE_NODE_WRITER"
                )));
            }
        }
        match &cap.access_type {
            Some(CsiAccessType::Block(_)) => Ok(Capability::Block),
            Some(CsiAccessType::Mount(m)) => {
                let fs = FsType::parse(&m.fs_type).ok_or_else(|| {
                    NodeError::Invalid(format!(
                        "fs_type {:?} is not supported: use one of {} (or leave it empty for ext4)",
                        m.fs_type,
                        FsType::SUPPORTED
                    ))
                })?;
                if !m.volume_mount_group.is_empty() {
                    return Err(NodeError::Invalid(
                        "volume_mount_group is not supported by this driver (VOLUME_MOUNT_GROUP is not advertised)".into(),
                    ));
                }
                Ok(Capability::Mount {
                    fs,
                    flags: m.mount_flags.clone(),
                })
            }
            None => Err(NodeError::Invalid(
                "volume_capability has neither mount nor block access type: set one".into(),
            )),
        }
    }
}

/// A required id field.
pub(crate) fn require_id<'a>(value: &'a str, field: &str) -> Result<&'a str> {
    if value.is_empty() {
        return Err(NodeError::Invalid(format!(
            "{field} is missing: it must name the volume (the PV name)"
        )));
    }
    if value.len() > 253 || value.contains('/') || value.chars().any(char::is_whitespace) {
        return Err(NodeError::Invalid(format!(
            "{field} {value:?} is not a cStor volume name (at most 253 characters, no '/' or spaces)"
        )));
    }
    Ok(value)
}

/// A required absolute path without `..`.
pub(crate) fn require_path<'a>(value: &'a str, field: &str) -> Result<&'a Path> {
    if value.is_empty() {
        return Err(NodeError::Invalid(format!(
            "{field} is missing: give an absolute path"
        )));
    }
    let p = Path::new(value);
    if !p.is_absolute() || p.components().any(|c| c == Component::ParentDir) {
        return Err(NodeError::Invalid(format!(
            "{field} {value:?} must be an absolute path without '..'"
        )));
    }
    Ok(p)
}
