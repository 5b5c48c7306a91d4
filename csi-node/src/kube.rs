//! What the node plugin needs from Kubernetes, behind a small trait: the volume's
//! CStorVolumeConfig phase, its CStorVolume (iqn, portal, phase), the Node, and the
//! CStorVolumeAttachments it owns. [`crate::kube_client::KubeVolumeApi`] talks to an API server;
//! `memory::MemoryVolumeApi` (feature `test-support`) keeps everything in memory for tests that exercise only
//! the node's filesystem and iSCSI logic.

use std::collections::BTreeMap;

use async_trait::async_trait;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("{kind} {name} was changed by someone else meanwhile (conflict); retry")]
    Conflict { kind: &'static str, name: String },
    #[error("{kind} {name} is malformed: {message}")]
    Malformed {
        kind: &'static str,
        name: String,
        message: String,
    },
}

impl ApiError {
    /// Errors worth retrying as they are (network, conflicts, server overload).
    pub fn is_transient(&self) -> bool {
        matches!(self, ApiError::Conflict { .. })
            || matches!(self, ApiError::Kube(e) if e.to_string().contains("connect"))
    }
}

/// The CStorVolume fields the node uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeTarget {
    pub iqn: String,
    /// `ip:port`.
    pub target_portal: String,
    /// `Init | Healthy | Degraded | Offline | Error | Invalid` (empty when not reported yet).
    pub phase: String,
}

impl VolumeTarget {
    /// Upstream accepts I/O once the volume is Healthy or Degraded.
    pub fn is_ready(&self) -> bool {
        matches!(self.phase.as_str(), "Healthy" | "Degraded")
    }
}

/// The Node fields the node uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    pub name: String,
    pub uid: String,
    /// Condition `Ready` is `True`.
    pub ready: bool,
    /// Label `topology.kubernetes.io/zone`, when the Node has it.
    pub zone: Option<String>,
}

/// `mount` or `block` (CVA `spec.volume.accessType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessType {
    Mount,
    Block,
}

impl AccessType {
    pub fn as_str(&self) -> &'static str {
        match self {
            AccessType::Mount => "mount",
            AccessType::Block => "block",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "mount" => Some(AccessType::Mount),
            "block" => Some(AccessType::Block),
            _ => None,
        }
    }
}

/// A CStorVolumeAttachment as the node plugin sees it (name `<pv>-<node>`, labels
/// `nodeID`/`Volname`, owner: the Node, finalizer: the node name while staged).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    pub name: String,
    pub volume: String,
    pub node: String,
    pub access_type: AccessType,
    pub fs_type: String,
    pub staging_target_path: String,
    pub target_path: String,
    pub device_path: String,
    pub iqn: String,
    pub target_portal: String,
    pub lun: String,
    pub iscsi_interface: String,
    pub finalizers: Vec<String>,
    /// `metadata.deletionTimestamp` is set.
    pub deleting: bool,
    /// Labels other than `nodeID`/`Volname` found on the object (kept on update).
    pub extra_labels: BTreeMap<String, String>,
}

impl Attachment {
    /// A new attachment of `volume` on `node`, with the target's addressing filled in.
    pub fn new(
        volume: &str,
        node: &str,
        access: AccessType,
        fs_type: &str,
        target: &VolumeTarget,
        device_path: String,
    ) -> Self {
        Self {
            name: cstor_api::naming::cva_name(volume, node),
            volume: volume.to_string(),
            node: node.to_string(),
            access_type: access,
            fs_type: fs_type.to_string(),
            staging_target_path: String::new(),
            target_path: String::new(),
            device_path,
            iqn: target.iqn.clone(),
            target_portal: target.target_portal.clone(),
            lun: cstor_api::constants::engine::LUN.to_string(),
            iscsi_interface: cstor_api::constants::engine::ISCSI_INTERFACE.to_string(),
            finalizers: Vec::new(),
            deleting: false,
            extra_labels: BTreeMap::new(),
        }
    }
}

#[async_trait]
pub trait VolumeApi: Send + Sync + std::fmt::Debug {
    /// Whether the API server answers for every resource the node plugin works with (CVC, CV,
    /// CVA, Node); `Err(why not)` otherwise. Probe reports not-ready while it fails.
    async fn readiness(&self) -> Result<(), String> {
        Ok(())
    }
    /// `status.phase` of CStorVolumeConfig `<volume>`; `None` when there is no such CVC.
    async fn cvc_phase(&self, volume: &str) -> Result<Option<String>, ApiError>;
    /// CStorVolume `<volume>`; `None` when it does not exist (yet).
    async fn volume_target(&self, volume: &str) -> Result<Option<VolumeTarget>, ApiError>;
    async fn node(&self, name: &str) -> Result<Option<NodeInfo>, ApiError>;
    /// Every CVA labelled `Volname=<volume>`.
    async fn attachments_of_volume(&self, volume: &str) -> Result<Vec<Attachment>, ApiError>;
    /// Every CVA labelled `nodeID=<node>`.
    async fn attachments_of_node(&self, node: &str) -> Result<Vec<Attachment>, ApiError>;
    async fn attachment(&self, name: &str) -> Result<Option<Attachment>, ApiError>;
    /// Creates the CVA with the Node as owner.
    async fn create_attachment(&self, cva: &Attachment, owner: &NodeInfo) -> Result<(), ApiError>;
    /// Writes spec, labels and finalizers of an existing CVA.
    async fn update_attachment(&self, cva: &Attachment) -> Result<(), ApiError>;
    /// Deletes the CVA; an absent one is fine.
    async fn delete_attachment(&self, name: &str) -> Result<(), ApiError>;
}
