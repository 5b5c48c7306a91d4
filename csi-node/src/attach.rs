//! Getting a volume's LUN onto this node and off it again. The node service only needs
//! attach (find an existing session → log in → wait for the device), detach (logout and node
//! record delete) and rescan; [`crate::iscsi::IscsiAttacher`] does them with `iscsiadm` through
//! the `cstor-iscsi` crate.

use std::path::PathBuf;

use async_trait::async_trait;

/// The iSCSI address of a volume's LUN (from the CStorVolume / the CVA).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IscsiTarget {
    pub iqn: String,
    /// `ip:port`.
    pub portal: String,
    pub lun: u64,
    pub iface: String,
}

impl IscsiTarget {
    pub fn new(iqn: &str, portal: &str) -> Self {
        Self {
            iqn: iqn.to_string(),
            portal: portal.to_string(),
            lun: u64::from(cstor_api::constants::engine::LUN),
            iface: cstor_api::constants::engine::ISCSI_INTERFACE.to_string(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AttachError(#[source] pub Box<dyn std::error::Error + Send + Sync>);

impl AttachError {
    pub fn msg(m: impl Into<String>) -> Self {
        AttachError(m.into().into())
    }
}

#[async_trait]
pub trait Attacher: Send + Sync + std::fmt::Debug {
    /// The device link of the LUN once attached (`/dev/disk/by-path/ip-…-lun-0` in production),
    /// whether it exists now or not.
    fn device_link(&self, target: &IscsiTarget) -> PathBuf;

    /// Makes the LUN's block device appear: reuses a logged-in session, else logs in, then
    /// waits for the device link. Returns the link.
    async fn attach(&self, target: &IscsiTarget) -> Result<PathBuf, AttachError>;

    /// Logs out of the target and deletes its node record; nothing to do is fine.
    async fn detach(&self, target: &IscsiTarget) -> Result<(), AttachError>;

    /// Makes the kernel re-read the LUN's size.
    async fn rescan(&self, target: &IscsiTarget) -> Result<(), AttachError>;
}
