//! The engine stand-in: what `cstor-local` runs for the cStor engine images when the real engine
//! (../shared/real) is absent — the default on a fresh machine.
//!
//! - **Pools** are real: each pool Pod runs its own `zfs-fuse` daemon (for `cstor-pool`, in the
//!   Pod's mount namespace with a private `/var/run/zfs`), and the pool manager's `zpool` and
//!   `zfs` commands reach it exactly as they reach zrepl.
//! - **zvols** (zfs-fuse has none) are sparse image files in a per-node store
//!   ([`dataplane::DataPlane`]): the pool manager's `zfs` is [`ZFS_SHIM`], which answers the
//!   zvol commands from the store in uZFS's output shapes (checked against the recordings in
//!   `tests/fixtures/real-engine`) and hands everything else to zfs-fuse's `zfs`.
//! - **The target** ([`target`], binary [`ISTGT_SHIM`]) answers istgt's control socket for the
//!   volume manager, "connects" the replica zvols of every store whose `io.openebs:targetip` is
//!   set, reports them to the known-replica socket, and serves the volume's LUN over iSCSI on
//!   the Pod's addresses through Debian's `istgt`. The LUN is an image of the target's own
//!   (seeded from a replica, so clones and restores carry their snapshot's data);
//!   `SNAPCREATE` copies it into a snapshot of every replica, `RESIZE` grows replicas and LUN.
//!
//! Not modelled: the replication protocol itself (replicas hold no copy of the LUN's writes;
//! a replica "rebuilds" at once) and the degraded I/O paths of a real target.

pub mod dataplane;
pub mod protocol;
pub mod target;

/// The `zfs` the pool manager runs under the stand-in.
pub const ZFS_SHIM: &str = "cstor-standin-zfs";
/// The program that plays `cstor-istgt`.
pub const ISTGT_SHIM: &str = "cstor-standin-istgt";
/// The store of a node's zvols (the shim's; a host path).
pub const STORE_ENV: &str = "CSTOR_STANDIN_STORE";
/// The directory whose `*/`[`STORE_DIR`] are every node's stores (the target's).
pub const NODES_ENV: &str = "CSTOR_STANDIN_NODES";
/// The directory of the targets' LUN images.
pub const LUNS_ENV: &str = "CSTOR_STANDIN_LUNS";
/// A node's store below its node directory.
pub const STORE_DIR: &str = "cstor-standin";
