//! CSI Node and Identity services of `cstor.csi.openebs.io`.
//!
//! * [`node::NodeDriver`] holds the logic of every Node RPC (one file per capability:
//!   [`stage`], [`publish`], [`expand`], [`stats`], [`remount`]); [`service::NodeService`] maps
//!   it onto the generated tonic traits; [`server::serve`] runs it on a unix socket.
//! * Mounts are decided from the kernel's mount table ([`mount_table`]), filesystems handled by
//!   external tools through the runner seam ([`fs`]), one operation per volume at a time
//!   ([`guard`]).
//! * Kubernetes (CVC, CStorVolume, Node, CStorVolumeAttachment) is reached through the
//!   [`kube::VolumeApi`] trait: [`kube_client::KubeVolumeApi`] in production,
//!   `memory::MemoryVolumeApi` (feature `test-support`) in tests. iSCSI goes through the [`attach::Attacher`] trait,
//!   implemented with `cstor-iscsi` in [`iscsi`].

#![warn(clippy::too_many_lines)]

pub mod attach;
pub mod cli;
pub mod error;
pub mod expand;
pub mod fs;
pub mod guard;
pub mod iscsi;
pub mod kube;
pub mod kube_client;
#[cfg(feature = "test-support")]
pub mod memory;
pub mod mount_table;
pub mod node;
pub mod publish;
pub mod remount;
pub mod server;
pub mod service;
pub mod stage;
pub mod stats;

pub use error::NodeError;
pub use node::{NodeConfig, NodeDriver, Waits};
pub use service::NodeService;
