//! [`Attacher`] over `iscsiadm` (crate `cstor-iscsi`): attach = find an existing session →
//! log in → wait for the by-path device; detach = logout and node record delete; rescan of
//! the target's session.

use std::{path::PathBuf, sync::Arc, time::Duration};

use async_trait::async_trait;
use cstor_api::exec::Runner;
use cstor_iscsi::{AttachOptions, DeviceWaiter, Iscsiadm, Target};

use crate::attach::{AttachError, Attacher, IscsiTarget};

#[derive(Clone, Debug)]
pub struct IscsiAttacher {
    adm: Iscsiadm,
    opts: AttachOptions,
}

impl IscsiAttacher {
    /// `device_root` is `/dev/disk/by-path` in production.
    pub fn new(runner: Arc<dyn Runner>, device_root: impl Into<PathBuf>) -> Self {
        Self {
            adm: Iscsiadm::new(runner).with_device_waiter(DeviceWaiter::new(device_root)),
            opts: AttachOptions::default(),
        }
    }

    /// How long to wait for the device link after a login.
    pub fn with_device_timeout(mut self, t: Duration) -> Self {
        self.opts.device_timeout = t;
        self
    }

    /// The iscsiadm program to run (e.g. a chroot wrapper).
    pub fn with_program(mut self, program: impl Into<String>) -> Self {
        self.adm = self.adm.with_program(program);
        self
    }

    pub fn iscsiadm(&self) -> &Iscsiadm {
        &self.adm
    }

    fn target(t: &IscsiTarget) -> Result<Target, AttachError> {
        Target::new(&t.iqn, &t.portal, &t.iface).map_err(|e| AttachError(Box::new(e)))
    }
}

#[async_trait]
impl Attacher for IscsiAttacher {
    fn device_link(&self, t: &IscsiTarget) -> PathBuf {
        match Self::target(t) {
            Ok(target) => self.adm.device_waiter().link_path(&target, t.lun),
            // An invalid address has no link; attach reports the validation error.
            Err(_) => self.adm.device_waiter().root().join(format!(
                "ip-{}-iscsi-{}-{}",
                t.portal,
                t.iqn,
                cstor_iscsi::lun_suffix(t.lun)
            )),
        }
    }

    async fn attach(&self, t: &IscsiTarget) -> Result<PathBuf, AttachError> {
        let target = Self::target(t)?;
        let dev = self
            .adm
            .attach(&target, t.lun, &self.opts)
            .await
            .map_err(|e| AttachError(Box::new(e)))?;
        Ok(dev.device)
    }

    async fn detach(&self, t: &IscsiTarget) -> Result<(), AttachError> {
        let target = Self::target(t)?;
        let d = self
            .adm
            .detach(&target)
            .await
            .map_err(|e| AttachError(Box::new(e)))?;
        tracing::info!(target = %target, logged_out = d.logged_out, record_deleted = d.record_deleted, "detached");
        Ok(())
    }

    async fn rescan(&self, t: &IscsiTarget) -> Result<(), AttachError> {
        let target = Self::target(t)?;
        match self
            .adm
            .session_for(&target)
            .await
            .map_err(|e| AttachError(Box::new(e)))?
        {
            Some(s) => self
                .adm
                .rescan(&s)
                .await
                .map_err(|e| AttachError(Box::new(e))),
            None => Err(AttachError::msg(format!(
                "no iSCSI session to {target}: the volume is not attached on this node; stage it again"
            ))),
        }
    }
}
