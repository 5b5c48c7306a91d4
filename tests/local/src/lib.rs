//! `cstor-local`: the deployed cStor system on one machine.
//!
//! A node runtime that plays kubelet (and, on the embedded API server, the controller-manager
//! and scheduler): it applies the rendered `deploy/`, creates Node objects, and runs every Pod
//! that lands on its nodes as processes — our binaries for our images, the cStor engine's
//! `zrepl` and `istgt` for the engine images — with the command, args and environment of the Pod
//! spec, each Pod in a network namespace of its own on a private bridge and each container in a
//! mount namespace with the Pod's volumes bound at their mount paths.
//!
//! - [`podspec`]: env, `fieldRef`, `$(VAR)` expansion, volumes → directories;
//! - [`images`]: image → program;
//! - [`netns`]: the pod network;
//! - [`kubelet`]: runs Pods;
//! - [`controllers`]: workloads → Pods, ClusterIPs, NDM, Nodes;
//! - [`registration`]: CSI node plugins → CSINode (the kubelet's plugin registration);
//! - [`cluster`]: all of it together with `deploy/` applied;
//! - [`initiator`]: iSCSI reads and writes through libiscsi;
//! - [`standin`]: the engine stand-in (image-file zvols, a target over Debian's istgt) used when
//!   the real cStor engine is absent;
//! - [`story`]: the system story (pools → volume → I/O → resize → snapshots → restore/clone →
//!   scale → replica loss → delete).

pub mod cluster;
pub mod controllers;
pub mod images;
pub mod initiator;
pub mod kubelet;
pub mod netns;
pub mod podspec;
pub mod registration;
pub mod standin;
pub mod story;
