//! cStor API: CRD types, naming rules, label/annotation/finalizer names, the shared command
//! runner and the generated gRPC bindings (CSI v1.12 and the target's snapshot service).

#![warn(clippy::too_many_lines)]

pub mod constants;
pub mod crdgen;
pub mod cstor;
pub mod leader;
pub mod metrics;
pub mod migration;
/// The command-runner seam (its own crate, `cstor-exec`, so that crates which only run
/// commands do not pull in Kubernetes and gRPC).
pub use cstor_exec as exec;
pub mod health;
pub mod naming;
pub mod ndm;
pub mod process;
pub mod proto;
pub mod quantity;
pub mod served;
pub mod update;
pub mod upgrade;
