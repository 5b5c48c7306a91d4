//! Test support for cstor-rs: an in-process Kubernetes API server and the cluster-backed test
//! switch.
//!
//! # The in-process API server
//!
//! [`TestApiServer::start`] serves plain HTTP on `127.0.0.1:<random port>`; a normal
//! `kube::Client` (from `kube::Config::new(url)`) talks to it, and kube-runtime's `watcher`,
//! `reflector` and `Controller` run against it unmodified.
//!
//! ```no_run
//! # async fn demo() {
//! use cstor_testkit::TestApiServer;
//! let srv = TestApiServer::start().await;
//! let client: kube::Client = srv.client();
//! # }
//! ```
//!
//! What it serves, and how faithfully:
//!
//! - **Discovery** ([`discovery`]): `/version`, `/api`, `/api/v1`, `/apis`, `/apis/<g>`,
//!   `/apis/<g>/<v>` with kinds, verbs, short names, scope and `/status` subresources.
//!   Aggregated discovery (`apidiscovery.k8s.io/v2`) is not served.
//! - **Resources** ([`resources`]): the built-in kinds of [`builtin_resources`]; custom resources
//!   are learnt when a `CustomResourceDefinition` is created (all served versions, scope, short
//!   names, status subresource) and are served until the CRD is deleted. The CRD gets the
//!   `NamesAccepted` and `Established` conditions at once. Objects are stored as
//!   `serde_json::Value`; all versions of a resource share one storage without conversion.
//! - **Reads**: get; list with label selectors (`=`, `==`, `!=`, `in`, `notin`, `key`, `!key`),
//!   field selectors on any dotted path (`=`, `==`, `!=`), `limit`/`continue` pagination and the
//!   list resourceVersion; namespaced and cluster-wide (`/api/v1/pods`). `resourceVersion` /
//!   `resourceVersionMatch` on lists are ignored: lists always read the latest state, and later
//!   pages read the live store after the previous page's last key.
//!   Metadata-only requests (`Accept: ...;as=PartialObjectMetadata`, kube's `get_metadata`,
//!   `list_metadata`, `Api<PartialObjectMeta<K>>` watchers) get `PartialObjectMetadata` answers.
//! - **Watches** ([`watch`]): one global resourceVersion counter; bounded history
//!   ([`ServerConfig::history_limit`]); 410 `Expired` ERROR events for versions that left it;
//!   BOOKMARKs; `timeoutSeconds`; `sendInitialEvents`; selectors.
//! - **Writes** ([`store`]): create (`generateName`, uid, creationTimestamp, generation 1, 409
//!   AlreadyExists, 404 for a missing namespace, 403 in a terminating one, name validation),
//!   replace with optimistic concurrency (409 Conflict on a stale resourceVersion; no
//!   resourceVersion = unconditional), no-op writes keep the resourceVersion and send no event,
//!   `metadata.generation` bumped when anything outside metadata (and outside status when the
//!   kind has a status subresource) changes, `/status` subresource where the kind has one (404
//!   otherwise, and then the main endpoint writes status), `dryRun=All`.
//!   Status sent on create is dropped for kinds with a status subresource (except Node and
//!   Namespace), as the real API does; Pods, PVCs and PVs start in phase `Pending`, Namespaces in
//!   `Active`.
//! - **Patches** ([`patch`]): merge, JSON (RFC 6902) and server-side apply; strategic merge is
//!   refused with 415 for custom resources and approximated by a merge patch for built-ins. See
//!   the module for what server-side apply does not model.
//! - **Deletes** ([`gc`]): finalizers (deletionTimestamp + deletionGracePeriodSeconds 0, object
//!   kept until the last finalizer goes; no new finalizers on an object being deleted),
//!   preconditions, propagation Background / Foreground / Orphan, delete collection, owner-
//!   reference garbage collection by uid across kinds and scopes, namespace and CRD deletion
//!   removing their content. Pods are deleted at once (no kubelet, no grace period).
//! - **Errors** ([`status`]): `Status` bodies with the real API's reasons, messages and details.
//!   One knowing deviation from the project brief: a name or namespace in the body that differs
//!   from the URL answers 400 BadRequest, because that is what the real API answers.
//!
//! Not modelled: authentication/authorization, admission (webhooks, quotas, defaults beyond the
//! ones above), OpenAPI schema validation and pruning, protobuf, other subresources (`scale`,
//! `log`, `exec`, `eviction`), table output.
//!
//! # The cluster switch
//!
//! [`cluster::TestCluster`] runs a test against a real cluster when `CSTOR_TEST_KUBECONFIG` is set
//! and against the in-process server otherwise.
//!
//! # Waiting
//!
//! [`wait_for`] / [`wait_until`] poll with a deadline; [`wait_for_object`] watches one object
//! with kube-runtime's `await_condition`.

pub mod cluster;
pub mod discovery;
pub mod fake_api;
pub mod fixtures;
pub mod gc;
pub mod http_get;
pub mod patch;
pub mod resources;
mod routes;
pub mod selectors;
mod server;
pub mod shared;
pub mod status;
pub mod store;
pub mod velero;
pub mod wait;
pub mod watch;
pub mod zfs_fuse;

pub use cluster::TestCluster;
pub use fixtures::CrdSpec;
pub use resources::{ResourceDef, Scope, builtin_resources};
pub use routes::{ApiCall, COMPONENT_HEADER};
pub use server::{ServerConfig, TestApiServer};
pub use status::ApiError;
pub use wait::{WaitError, WaitTimeout, wait_for, wait_for_object, wait_until};
