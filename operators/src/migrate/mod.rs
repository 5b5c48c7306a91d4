//! `cstor-migrate`: moves a legacy cStor pool (StoragePoolClaim with its CStorPools, group
//! `openebs.io/v1alpha1`, run by the pre-3.0 maya control plane) to a CStorPoolCluster served by
//! our operators, with upstream's order of steps, preconditions and MigrationTask record: the
//! zpool `cstor-<CSP uid>` is imported as `cstor-<CSPC uid>` by the new pool manager, so its
//! data and zvols stay where they are.
//!
//! Every step checks whether it already happened, so a run that stopped anywhere is run
//! again to finish. `--dry-run` checks the preconditions and prints the CStorPoolCluster it
//! would create, writing nothing.

pub mod backup;
pub mod pool;
pub mod snapshot;
pub mod task;
pub mod volume;

use std::time::Duration;

use kube::{
    Api, Client,
    api::{ApiResource, DeleteParams, DynamicObject, ListParams},
};
use serde_json::Value;

/// Group of the legacy kinds.
pub const LEGACY_GROUP: &str = "openebs.io";
/// Version of the legacy kinds.
pub const LEGACY_VERSION: &str = "v1alpha1";

/// A legacy (`openebs.io/v1alpha1`) kind.
pub fn legacy(kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: LEGACY_GROUP.into(),
        version: LEGACY_VERSION.into(),
        api_version: format!("{LEGACY_GROUP}/{LEGACY_VERSION}"),
        kind: kind.into(),
        plural: plural.into(),
    }
}

/// What a migration run did; `P` is what a dry run would write.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome<P> {
    /// The legacy object now runs as the new one.
    Migrated,
    /// Nothing legacy was left and the new object exists.
    AlreadyMigrated,
    /// Dry run: what would be written.
    DryRun(Box<P>),
}

/// The legacy replicas (in the OpenEBS namespace).
pub fn legacy_cvrs(m: &Migrator) -> Api<DynamicObject> {
    Api::namespaced_with(
        m.client.clone(),
        &m.namespace,
        &legacy("CStorVolumeReplica", "cstorvolumereplicas"),
    )
}

/// The string at `pointer` of a dynamic object's data, or `""`.
pub fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// Whether the API answered 404.
pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// Whether the API answered 409.
pub fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// A list that is empty when the kind is not served at all (a cluster that never had the
/// legacy kinds).
pub async fn list_or_empty(
    api: &Api<DynamicObject>,
    lp: &ListParams,
) -> anyhow::Result<Vec<DynamicObject>> {
    match api.list(lp).await {
        Ok(l) => Ok(l.items),
        Err(e) if is_not_found(&e) => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

/// Deletes `name`; one already gone is fine.
pub async fn delete_if_present<K>(api: &Api<K>, name: &str) -> anyhow::Result<()>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// What a migration run needs.
#[derive(Clone)]
pub struct Migrator {
    pub client: Client,
    /// The OpenEBS namespace (pools, claims, operators).
    pub namespace: String,
    /// The version the operators' pods must carry (`openebs.io/version`): this tool's.
    pub version: String,
    /// Pause between two looks at something the operators or the pool managers do.
    pub poll: Duration,
    /// How many looks before giving up on the CSPIs to appear (upstream: 60 × 5 s).
    pub cspi_tries: u32,
    /// How long to wait for anything else the operators, pool managers or Kubernetes do (a
    /// pod gone, a pool imported, a volume bound and Healthy, a snapshot ready). Upstream
    /// waits for ever; a run that gives up says what it waited for and is run again.
    pub timeout: Duration,
    /// Check and print, write nothing.
    pub dry_run: bool,
}

impl std::fmt::Debug for Migrator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Migrator")
            .field("namespace", &self.namespace)
            .field("version", &self.version)
            .field("dry_run", &self.dry_run)
            .finish()
    }
}

impl Migrator {
    pub fn new(client: Client, namespace: impl Into<String>) -> Self {
        Self {
            client,
            namespace: namespace.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            poll: Duration::from_secs(5),
            cspi_tries: 60,
            timeout: Duration::from_secs(30 * 60),
            dry_run: false,
        }
    }
}

/// Looks every `m.poll` until `look` answers `Ok(Ok(value))`; `Ok(Err(seen))` means not yet
/// (`seen` says what it is instead), `Err` ends the wait at once. Gives up after `m.timeout`,
/// naming `what` and the last thing seen.
pub async fn wait_for<T, F, Fut>(m: &Migrator, what: &str, mut look: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Result<T, String>>>,
{
    wait_within(m.timeout, m.poll, what, &mut look).await
}

/// [`wait_for`] with its own deadline and pause.
pub async fn wait_within<T, F, Fut>(
    timeout: Duration,
    poll: Duration,
    what: &str,
    mut look: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Result<T, String>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let seen = match look().await? {
            Ok(v) => return Ok(v),
            Err(seen) => seen,
        };
        if tokio::time::Instant::now() + poll > deadline {
            anyhow::bail!("gave up after {timeout:?} waiting for {what} (last seen: {seen})");
        }
        tokio::time::sleep(poll).await;
    }
}

/// `v` without a `-suffix`.
pub fn strip_version(v: &str) -> &str {
    v.split('-').next().unwrap_or(v)
}

/// The version gate: every pod of `component` (label `openebs.io/component-name`) in the
/// namespace runs this tool's version.
pub async fn check_operator(m: &Migrator, component: &str) -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::Pod;
    use kube::{Api, ResourceExt, api::ListParams};
    let pods: Api<Pod> = Api::namespaced(m.client.clone(), &m.namespace);
    let list = pods
        .list(&ListParams::default().labels(&format!("openebs.io/component-name={component}")))
        .await?;
    if list.items.is_empty() {
        anyhow::bail!("{component} pod missing");
    }
    for p in &list.items {
        let v = p
            .labels()
            .get(cstor_api::constants::label::VERSION)
            .cloned()
            .unwrap_or_default();
        if strip_version(&v) != strip_version(&m.version) {
            anyhow::bail!(
                "{component} is in {v} version, please upgrade it to {} version or use cstor-migrate of the same version as {component}",
                m.version
            );
        }
    }
    Ok(())
}
