//! End-to-end scenarios of cstor-rs: every component, in one process, driven through its real
//! interfaces.
//!
//! # What is real
//!
//! - **Kubernetes API objects**: a namespace on the in-process API server of `cstor-testkit`
//!   (or on a real cluster with `CSTOR_TEST_KUBECONFIG`); every object the components write is
//!   read back from there, and the final checks list the namespace.
//! - **The controllers**, as libraries, unchanged: the cspc-operator, one pool manager per
//!   CStorPoolInstance, the cvc-operator, one volume manager per CStorVolume (its reconcile
//!   loop, known-replica socket and `RunSnapCommand` service), the CSI controller and the CSI
//!   node plugin.
//! - **CSI over gRPC**: the scenarios call the controller and node plugins through tonic
//!   clients on their unix sockets, as the kubelet and the CSI sidecars would.
//! - **Pools**: `zpool create/add/destroy`, pool datasets and properties run on **zfs-fuse**
//!   over sparse files published as NDM BlockDevices.
//! - **Filesystems**: the node plugin's `blkid`, `mkfs.xfs`, `mount`, bind mounts, `umount`
//!   and `xfs_growfs` run for real on loop devices, inside a private mount namespace
//!   ([`harness::in_mount_ns`]), so the host sees none of the mounts. The volumes use xfs,
//!   which grows online (ext4 cannot here: no `CAP_SYS_RESOURCE` for an online `resize2fs`).
//!
//! # What is stood in, and how
//!
//! zvols, the uZFS replica protocol, istgt and a kernel iSCSI initiator do not exist here, and a
//! bare API server has no kubelet, NDM, Service IP allocation or kube-proxy.
//!
//! - **Data plane** ([`dataplane`]): a replica zvol `<pool>/<pv>` is a sparse image file; a
//!   zvol snapshot is a sparse copy of it; `zfs clone` copies the snapshot. The pool managers'
//!   runner ([`dataplane::ZvolShim`]) answers the zvol commands (`zfs create -V`, `zfs clone`,
//!   `zfs stats`, `zfs get` on zvols, `zfs destroy -R`, `zfs listsnap`) from that store and
//!   sends every other command to the real tools. Replication and rebuild are not modelled: the
//!   volume's LUN is the image of its first replica; replicas added later start empty.
//! - **Target** ([`istgt`]): istgt's control socket, per volume, speaking istgt's line protocol
//!   to the real volume manager. `REPLICA` reports every replica zvol that exists as a Healthy,
//!   connected replica (and reports it to the known-replica socket, as istgt does); `RESIZE`
//!   grows the replica images; `SNAPCREATE` copies the LUN image to a snapshot on every replica;
//!   `SNAPDESTROY` removes those copies.
//! - **Initiator** ([`iscsi`]): a recorded `iscsiadm` behind the node plugin's runner seam.
//!   `--login` is `losetup -f --show <the volume's LUN image>` plus the
//!   `ip-<portal>-iscsi-<iqn>-lun-0` link under a test device root; `--rescan` is `losetup -c`;
//!   `--logout` detaches. Everything else the node plugin runs is real.
//! - **Cluster services** ([`harness`]): the kubelet (a pool manager is started for every
//!   CSPI, a target — istgt stand-in plus volume manager — for every CV, both stopped when the
//!   object is gone), NDM (claims bound to their block device), Service IP allocation (every
//!   ClusterIP is 127.0.0.1 on the in-process server) and kube-proxy (the node plugin reaches a
//!   CV's `<clusterIP>:3260` portal at a local listener; the controller's snapshot calls to
//!   `<clusterIP>:<port>` reach the volume's own snapshot service through one router).
//! - **One host plays every node**: each pool gets the name `cstor-<CSPC uid>-<node>` instead
//!   of the per-node `cstor-<CSPC uid>` (`pool_manager::Context::with_pool_name`).
//!
//! Every scenario cleans up after itself, on success and on failure: components stopped,
//! zpools destroyed, loop devices detached, Nodes and the namespace deleted.

pub mod dataplane;
pub mod harness;
pub mod iscsi;
pub mod istgt;
pub mod rbac;
pub mod scenario;
pub mod zfs_fuse;

pub use harness::{DEADLINE, Harness, in_mount_ns, init_tracing};
