//! Waiting for a LUN's `/dev/disk/by-path` link and resolving it to the real device.

use std::{
    io::ErrorKind,
    path::{Path, PathBuf},
    time::Duration,
};

use tokio::time::Instant;

use crate::{
    Error,
    target::{Iqn, Portal, Target},
};

/// Where udev puts the links in production.
pub const DEFAULT_DEVICE_ROOT: &str = "/dev/disk/by-path";

/// How often [`DeviceWaiter::wait`] looks for the link by default.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The LUN part of a by-path name as udev's `path_id` writes it: `lun-<n>` below 256, else the
/// SAM-encoded `lun-0x<hhhh><llll>00000000` form.
pub fn lun_suffix(lun: u64) -> String {
    if lun < 256 {
        format!("lun-{lun}")
    } else {
        format!(
            "lun-0x{:04x}{:04x}00000000",
            lun & 0xffff,
            (lun >> 16) & 0xffff
        )
    }
}

/// The by-path link name udev creates for a software-iSCSI LUN:
/// `ip-<ip>:<port>-iscsi-<iqn>-lun-<n>` (IPv6 addresses without brackets, as udev writes them).
pub fn by_path_name(portal: &Portal, iqn: &Iqn, lun: u64) -> String {
    format!(
        "ip-{}:{}-iscsi-{}-{}",
        portal.address(),
        portal.port,
        iqn,
        lun_suffix(lun)
    )
}

/// Waits for by-path links under a configurable root (`/dev/disk/by-path` in production, a
/// temporary directory in tests) and resolves them with `canonicalize`.
#[derive(Clone, Debug)]
pub struct DeviceWaiter {
    root: PathBuf,
    poll_interval: Duration,
}

impl Default for DeviceWaiter {
    fn default() -> Self {
        Self::new(DEFAULT_DEVICE_ROOT)
    }
}

impl DeviceWaiter {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            poll_interval: DEFAULT_POLL_INTERVAL,
        }
    }

    /// How often to look again while waiting (clamped to at least 1 ms).
    pub fn with_poll_interval(mut self, every: Duration) -> Self {
        self.poll_interval = every.max(Duration::from_millis(1));
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/ip-<ip>:<port>-iscsi-<iqn>-lun-<n>`.
    pub fn link_path(&self, target: &Target, lun: u64) -> PathBuf {
        self.root
            .join(by_path_name(&target.portal, &target.iqn, lun))
    }

    /// The device the link points at, `None` while the link is missing or dangling.
    pub async fn resolve(&self, link: &Path) -> Result<Option<PathBuf>, Error> {
        match tokio::fs::canonicalize(link).await {
            Ok(p) => Ok(Some(p)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(source) => Err(Error::Io {
                path: link.to_path_buf(),
                source,
            }),
        }
    }

    /// Looks for `link` until it resolves or `timeout` passes, then returns the resolved device
    /// or [`Error::DeviceTimeout`]. The link is checked once more at the deadline.
    pub async fn wait(&self, link: &Path, timeout: Duration) -> Result<PathBuf, Error> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(dev) = self.resolve(link).await? {
                return Ok(dev);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::DeviceTimeout {
                    path: link.to_path_buf(),
                    after: timeout,
                });
            }
            tokio::time::sleep(self.poll_interval.min(deadline - now)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn by_path_name_matches_udev() {
        let t = Target::with_default_iface("iqn.2016-09.com.openebs.cstor:pvc-1", "10.0.0.5:3260")
            .unwrap();
        assert_eq!(
            by_path_name(&t.portal, &t.iqn, 0),
            "ip-10.0.0.5:3260-iscsi-iqn.2016-09.com.openebs.cstor:pvc-1-lun-0"
        );
        assert_eq!(
            DeviceWaiter::default().link_path(&t, 3),
            PathBuf::from(
                "/dev/disk/by-path/ip-10.0.0.5:3260-iscsi-iqn.2016-09.com.openebs.cstor:pvc-1-lun-3"
            )
        );
        let v6 = Portal::parse("[fd00::5]:3260").unwrap();
        assert_eq!(
            by_path_name(&v6, &t.iqn, 255),
            "ip-fd00::5:3260-iscsi-iqn.2016-09.com.openebs.cstor:pvc-1-lun-255"
        );
        assert_eq!(lun_suffix(256), "lun-0x0100000000000000");
        assert_eq!(lun_suffix(0x1_0005), "lun-0x0005000100000000");
    }
}
