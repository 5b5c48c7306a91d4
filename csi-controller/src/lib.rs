//! CSI Controller and Identity services of `cstor.csi.openebs.io`.
//!
//! The controller turns CSI calls into the Kubernetes objects the cStor operators act on:
//! CreateVolume writes a CStorVolumeConfig (CVC) shaped exactly as upstream's Go driver does
//! ([`create`]), and the cvc-operator provisions target and replicas from it. The controller
//! reads CStorVolumes, CStorVolumeReplicas, CStorVolumeAttachments and CStorPoolInstances, and
//! talks to a volume's target only for snapshots ([`target`]).
//!
//! | RPC | module |
//! | --- | --- |
//! | CreateVolume (empty, restore from snapshot, PVC→PVC clone) | [`create`] |
//! | DeleteVolume | [`delete`] |
//! | ControllerExpandVolume | [`expand`] |
//! | Create/Delete/List/GetSnapshot | [`snapshot`] |
//! | ValidateVolumeCapabilities, ControllerGetVolume, ListVolumes | [`list`] |
//! | GetCapacity | [`capacity`] |
//! | GetPluginInfo, GetPluginCapabilities, Probe | [`identity`] |
//!
//! Every mutating RPC holds the per-volume [`guard`] for its whole duration; a concurrent call
//! for the same volume gets `ABORTED`. Each RPC family has one error enum ([`error`]) with one
//! `From<E> for tonic::Status` that chooses the code and logs the error.
//!
//! # Where snapshots are recorded
//!
//! ListSnapshots answers from what the system records:
//!
//! 1. the replicas' `status.snapshots` (CStorVolumeReplica), written by each pool manager from
//!    `zfs listsnap` — the data engine's truth, which also covers snapshots upstream's Go
//!    driver took, but lags behind (it is refreshed on the pool manager's resync);
//! 2. our own record, written by CreateSnapshot before and after it asks the target: one
//!    `CStorSnapshotRecord` object per snapshot (`<volume>.<digest of the name>`, labelled with
//!    the volume and the name's digest, owned by the source CVC; [`records`]) holding the
//!    creation time, the restore size (the source's size when the snapshot was taken), whether
//!    the target confirmed it, the CSI name when the snapshot carries a derived one, and the
//!    clone it was taken for. It lives in the cluster, so it survives controller restarts; it
//!    goes with the volume, as the snapshots do (the pool manager destroys the zvol with
//!    `zfs destroy -R`); and a volume can hold any number of them, since nothing else is
//!    rewritten per snapshot. Records earlier versions kept in the CVC annotation
//!    `cstor.openebs.io/snapshots` are still read.
//!
//! A snapshot is listed when our record says it is ready, or when a replica reports it.
//! Internal snapshots (`cstor-clone-<pv>`, taken to clone a volume) are never listed: they are
//! recorded with `cloneFor` and destroyed once the clone's CVC and replicas are gone
//! ([`ControllerService::sweep_clone_snapshots`], run after DeleteVolume of a clone and
//! periodically).

#![warn(clippy::too_many_lines)]

pub mod capability;
pub mod capacity;
pub mod cli;
pub mod create;
pub mod delete;
pub mod error;
pub mod expand;
pub mod guard;
pub mod identity;
pub mod list;
pub mod params;
pub mod quantity;
pub mod records;
pub mod server;
pub mod snapshot;
pub mod target;

pub use error::{CreateError, DeleteError, ExpandError, KubeError, QueryError, SnapshotError};
pub use guard::VolumeGuard;
pub use identity::IdentityGrpc;
pub use params::VolumeParams;
pub use server::{
    Config, ControllerGrpc, ControllerService, CsiEndpoint, ServeError, TopologyMode, bind_unix,
    serve, serve_reporting, serve_unix,
};
