//! Typed wrapper over open-iscsi's `iscsiadm`, behind the shared command-runner seam
//! ([`cstor_exec::Runner`]).
//!
//! * [`Target`] / [`Iqn`] / [`Portal`]: validated addressing (errors name the bad field).
//! * [`Iscsiadm`]: discovery, node records, login/logout, sessions, rescans, and the idempotent
//!   [`Iscsiadm::attach`] / [`Iscsiadm::detach`] a CSI node plugin stages and unstages with.
//! * [`DeviceWaiter`]: waits for `/dev/disk/by-path/ip-<ip>:<port>-iscsi-<iqn>-lun-<n>` and
//!   resolves it to the real device.
//! * [`Error`]: one variant per failure class, keeping iscsiadm's exit code and message.
//! * [`parse`]: tolerant parsers for `-m session`, `-m session -P 3`, discovery and node records.
//!
//! ```no_run
//! # async fn f() -> Result<(), cstor_iscsi::Error> {
//! use std::sync::Arc;
//! use cstor_exec::HostRunner;
//! use cstor_iscsi::{AttachOptions, Iscsiadm, Target};
//!
//! let adm = Iscsiadm::new(Arc::new(HostRunner::new()));
//! let target = Target::with_default_iface("iqn.2016-09.com.openebs.cstor:pvc-1", "10.0.0.5:3260")?;
//! let dev = adm.attach(&target, 0, &AttachOptions::default()).await?;
//! println!("{} -> {}", dev.by_path.display(), dev.device.display());
//! adm.detach(&target).await?;
//! # Ok(()) }
//! ```

#![warn(clippy::too_many_lines)]

pub mod device;
pub mod error;
#[cfg(feature = "test-support")]
pub mod fake;
pub mod iscsiadm;
pub mod parse;
pub mod target;

pub use device::{DEFAULT_DEVICE_ROOT, DeviceWaiter, by_path_name, lun_suffix};
pub use error::{Error, Failure, code};
pub use iscsiadm::{
    AttachOptions, AttachedDevice, Chap, DEFAULT_CALL_TIMEOUT, DEFAULT_DEVICE_TIMEOUT, Detached,
    Iscsiadm, Login, Logout, RECORD_DB_ATTEMPTS,
};
pub use parse::{PortalTarget, ScsiDevice, Session, SessionDetail};
pub use target::{DEFAULT_IFACE, DEFAULT_PORT, Iqn, Portal, Target};
