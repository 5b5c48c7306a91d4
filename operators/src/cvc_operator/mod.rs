//! cvc-operator: turns a Pending CStorVolumeConfig into a target Service, a CStorVolume, a
//! target Deployment and CStorVolumeReplicas, then keeps them in line with the CVC (replica
//! scale up/down, resize, policy changes, deletion).
//!
//! Event driven: a kube-runtime [`Controller`] on the CVCs of the OpenEBS namespace, woken by
//! changes of the CVCs and of the objects they own (CV and Service directly; target Deployment
//! and CVRs through the `openebs.io/persistent-volume` label), with a periodic resync.
//!
//! Crash safety: every object has a deterministic name (the PDB included), so a create that
//! answers 409 AlreadyExists means "already done"; replica placement is decided from the CVRs
//! that exist (listed from the API, never a cache), so a reconcile interrupted at any point and
//! run again never puts two replicas of a volume on one pool nor creates a second target.
//!
//! One file per capability: [`provision`] (the get-or-create chain), [`placement`] (which pools
//! get replicas), [`target`] (Service and Deployment), [`scale`], [`resize`], [`delete`],
//! [`pdb`], [`status`] (conditions and events).

pub mod cache;
pub mod delete;
pub mod pdb;
pub mod placement;
pub mod provision;
pub mod resize;
pub mod rest;
pub mod scale;
pub mod status;
pub mod target;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use cstor_api::{
    constants::{env, label},
    cstor::{CStorVolumeConfig, CStorVolumeConfigPhase},
};
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Node;
use kube::{
    Api, Client, Resource, ResourceExt,
    runtime::{
        Controller, WatchStreamExt, controller::Action, events::EventType, reflector::ObjectRef,
        watcher,
    },
};
use tracing::{debug, info, warn};

/// Operator settings (images, namespace, timings). [`Config::from_env`] reads upstream's
/// environment variables; tests build it directly.
#[derive(Clone, Debug)]
pub struct Config {
    /// Namespace of CVCs, CVs, CVRs, CSPIs, policies, targets (`OPENEBS_NAMESPACE`).
    pub namespace: String,
    /// Operator version (labels `openebs.io/version`, `versionDetails`).
    pub version: String,
    /// `OPENEBS_IO_CSTOR_TARGET_IMAGE`.
    pub target_image: String,
    /// `OPENEBS_IO_CSTOR_VOLUME_MGMT_IMAGE`.
    pub volume_mgmt_image: String,
    /// `OPENEBS_SERVICEACCOUNT_NAME` (target pod service account).
    pub service_account: Option<String>,
    /// `OPENEBS_IO_IMAGE_PULL_SECRETS` (comma separated).
    pub image_pull_secrets: Vec<String>,
    /// `OPENEBS_IO_BASE_DIR` (default `/var/openebs`).
    pub base_dir: String,
    /// Periodic resync of every CVC.
    pub resync: Duration,
    /// Retry delay after an error (a volume that cannot be provisioned yet, a conflict...).
    pub retry: Duration,
    /// Retry delay while waiting on another component (target IP, scale down progress).
    pub wait_retry: Duration,
}

impl Config {
    /// Defaults for `namespace`, as upstream's manifests configure them.
    pub fn new(namespace: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            version: cstor_api::constants::version::OPENEBS_VERSION.to_owned(),
            target_image: "openebs/cstor-istgt:ci".to_owned(),
            volume_mgmt_image: "openebs/cstor-volume-manager-amd64:ci".to_owned(),
            service_account: None,
            image_pull_secrets: Vec::new(),
            base_dir: "/var/openebs".to_owned(),
            resync: Duration::from_secs(30),
            retry: Duration::from_secs(5),
            wait_retry: Duration::from_secs(2),
        }
    }

    /// Reads upstream's environment variables; `OPENEBS_NAMESPACE` is required.
    pub fn from_env() -> Result<Self, String> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let namespace = var(env::OPENEBS_NAMESPACE).ok_or_else(|| {
            format!(
                "environment variable {} is not set: set it to the namespace OpenEBS runs in",
                env::OPENEBS_NAMESPACE
            )
        })?;
        let mut c = Self::new(namespace);
        if let Some(v) = var(env::OPENEBS_IO_CSTOR_TARGET_IMAGE) {
            c.target_image = v;
        }
        if let Some(v) = var(env::OPENEBS_IO_CSTOR_VOLUME_MGMT_IMAGE) {
            c.volume_mgmt_image = v;
        }
        c.service_account = var(env::OPENEBS_SERVICEACCOUNT_NAME);
        if let Some(v) = var(env::OPENEBS_IO_IMAGE_PULL_SECRETS) {
            c.image_pull_secrets = v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
        }
        if let Some(v) = var(env::OPENEBS_IO_BASE_DIR) {
            c.base_dir = v;
        }
        c.version = cstor_api::constants::version::from(var(cstor_api::constants::version::ENV));
        Ok(c)
    }
}

/// Shared state of the reconciler.
pub struct Context {
    /// API client.
    pub client: Client,
    /// Settings.
    pub config: Config,
    /// Event publisher (reporting controller `cvc-operator`).
    pub events: crate::events::Events,
    /// Per-CVC retry delays after errors.
    pub backoff: crate::backoff::Backoff,
    writes: AtomicU64,
    /// The watch caches of the running controller (fresh ones for every [`run`]).
    caches: std::sync::RwLock<Arc<cache::Caches>>,
}

impl Context {
    /// A context for `client` and `config`.
    pub fn new(client: Client, config: Config) -> Arc<Self> {
        let backoff = crate::backoff::Backoff::new(config.retry, Duration::from_secs(300));
        Arc::new(Self {
            events: crate::events::Events::new(client.clone(), "cvc-operator"),
            client,
            config,
            writes: AtomicU64::new(0),
            backoff,
            caches: Default::default(),
        })
    }

    /// The watch caches reads go through (answered by the API until [`run`] fills them).
    pub fn caches(&self) -> Arc<cache::Caches> {
        self.caches.read().expect("caches lock").clone()
    }

    /// Reads `name` of a namespaced kind through its cache.
    pub(crate) async fn cached<K: cache::Namespaced>(
        &self,
        cached: &cache::Cached<K>,
        name: &str,
    ) -> Result<Option<K>, Error> {
        cached
            .get(&self.api::<K>(), Some(&self.config.namespace), name)
            .await
    }

    /// The objects of a namespaced kind labelled `key=value`, through its cache.
    pub(crate) async fn cached_list<K: cache::Namespaced>(
        &self,
        cached: &cache::Cached<K>,
        key: &str,
        value: &str,
    ) -> Result<Vec<K>, Error> {
        cached.list(&self.api::<K>(), &[(key, Some(value))]).await
    }

    /// Number of API writes (creates, updates, patches, deletes, events) issued so far.
    pub fn api_writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    pub(crate) fn count_write(&self) {
        self.writes.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.config.namespace)
    }

    /// Publishes an event about `obj`; failures are logged, never fatal.
    pub(crate) async fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        note: impl Into<String>,
    ) {
        self.count_write();
        self.events.publish(obj, type_, reason, reason, note).await
    }
}

/// Why a reconcile did not complete.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call failed.
    #[error("{action}: {source}")]
    Kube {
        /// What was being done (`create CStorVolume pvc-1`).
        action: String,
        /// The API error.
        source: kube::Error,
    },
    /// The volume cannot progress because of its spec or its surroundings; `reason` is the
    /// machine-readable cause shown in the CVC condition, `message` says what to do.
    #[error("{message}")]
    Blocked {
        /// Condition/event reason (`NotEnoughPools`, `InvalidSpec`...).
        reason: &'static str,
        /// Human-readable cause.
        message: String,
    },
    /// Waiting on another component (target IP, volume manager); retried sooner.
    #[error("{message}")]
    Waiting {
        /// Condition reason.
        reason: &'static str,
        /// What is awaited.
        message: String,
    },
}

impl Error {
    pub(crate) fn kube(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let action = action.into();
        move |source| Error::Kube { action, source }
    }

    pub(crate) fn blocked(reason: &'static str, message: impl Into<String>) -> Self {
        Error::Blocked {
            reason,
            message: message.into(),
        }
    }

    /// The condition reason for this error.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Kube { .. } => "APIError",
            Error::Blocked { reason, .. } | Error::Waiting { reason, .. } => reason,
        }
    }
}

/// Merge-patches the CStorVolume `pv` (an owned object: only the fields a step changes are
/// sent) and returns the stored object.
pub(crate) async fn patch_cv(
    ctx: &Context,
    pv: &str,
    patch: serde_json::Value,
) -> Result<cstor_api::cstor::CStorVolume, Error> {
    ctx.count_write();
    ctx.api::<cstor_api::cstor::CStorVolume>()
        .patch(
            pv,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .map_err(Error::kube(format!("patch CStorVolume {pv}")))
}

/// The CStorVolume of a bound volume, from the cache; waiting when it is missing.
pub(crate) async fn bound_cv(
    ctx: &Context,
    pv: &str,
) -> Result<cstor_api::cstor::CStorVolume, Error> {
    ctx.cached(&ctx.caches().volumes, pv)
        .await?
        .ok_or_else(|| Error::Waiting {
            reason: "VolumeMissing",
            message: format!("CStorVolume {pv} of the bound volume does not exist (yet)"),
        })
}

/// Whether an API error is 404.
pub(crate) fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// Whether an API error is 409 AlreadyExists (a create that was already done).
pub(crate) fn is_already_exists(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists")
}

/// Whether an API error is 409 Conflict (stale resourceVersion).
pub(crate) fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409 && s.reason == "Conflict")
}

/// PV name of a CVC (= CVC name).
pub(crate) fn pv_name(cvc: &CStorVolumeConfig) -> String {
    cvc.name_any()
}

/// Reconcile metrics of the CVC controller.
static METRICS: cstor_api::metrics::Reconciles = cstor_api::metrics::Reconciles::new("cvc");

/// Reconciles one CVC (upstream `syncCVC`).
///
/// The CVC comes from the controller's cache; a copy older than this operator's own last
/// write (the watch has not delivered it yet) is skipped, as acting on a stale spec/status
/// pair (e.g. an old scale-up) would re-create replicas or PDBs that were just removed. The
/// watch event of that write wakes the reconcile again.
pub async fn reconcile(cvc: Arc<CStorVolumeConfig>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let result = reconcile_once(cvc.clone(), ctx.clone()).await;
    METRICS.observe(started, result.is_ok());
    if result.is_ok() {
        ctx.backoff.succeeded(&*cvc);
        METRICS.set_failing(ctx.backoff.failing());
    }
    result
}

async fn reconcile_once(cvc: Arc<CStorVolumeConfig>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = cvc.name_any();
    if ctx.caches().is_stale(&cvc) {
        debug!(cvc = %name, "cached CVC is older than our last write: waiting for the watch");
        return Ok(Action::await_change());
    }
    if cvc.metadata.deletion_timestamp.is_some() {
        delete::finalize(&cvc, &ctx).await?;
        return Ok(Action::await_change());
    }
    let cvc = match reconcile_version(cvc, &ctx).await? {
        Some(cvc) => cvc,
        None => return Ok(Action::requeue(ctx.config.resync)),
    };
    if !crate::version::should_reconcile(cvc.as_ref(), &ctx.config.version) {
        let current = cvc.version_details.current();
        ctx.event(
            cvc.as_ref(),
            EventType::Warning,
            "CVC Reconcile",
            format!(
                "can not reconcile CVC {name} as cvc operator version is {} but cvc version is {current}; upgrade the volume (cstor-migrate upgrade cstor-volume {name})",
                ctx.config.version
            ),
        )
        .await;
        return Ok(Action::await_change());
    }
    match cvc.status.phase.as_ref() {
        Some(CStorVolumeConfigPhase::Pending) => match provision::provision(&cvc, &ctx).await {
            Ok(()) => {
                info!(cvc = %name, "volume bound");
                Ok(Action::requeue(ctx.config.resync))
            }
            Err(e) => {
                status::record_provision_failure(&cvc, &ctx, &e).await;
                Err(e)
            }
        },
        Some(CStorVolumeConfigPhase::Bound) => {
            let mut cvc = (*cvc).clone();
            resize::sync(&mut cvc, &ctx).await?;
            scale::sync(&mut cvc, &ctx).await?;
            target::sync_policy(&mut cvc, &ctx).await?;
            status::sync_health(&mut cvc, &ctx).await?;
            Ok(Action::requeue(ctx.config.resync))
        }
        _ => {
            debug!(cvc = %name, "phase is neither Pending nor Bound: nothing to do");
            Ok(Action::await_change())
        }
    }
}

/// Upstream's version steps of a CVC sync: empty `versionDetails` are filled in at this
/// operator's version, then a pending `desired` is reconciled (see [`crate::version`]).
/// Returns the CVC to go on with, or `None` when its version is invalid (recorded on the CVC;
/// this sync stops and the next resync tries again).
async fn reconcile_version(
    cvc: Arc<CStorVolumeConfig>,
    ctx: &Context,
) -> Result<Option<Arc<CStorVolumeConfig>>, Error> {
    let api = ctx.api::<CStorVolumeConfig>();
    let name = cvc.name_any();
    let mut cvc = cvc;
    let failed = |e: crate::version::VersionError| match e {
        crate::version::VersionError::Kube(source) => Error::Kube {
            action: format!("reconcile the version of CVC {name}"),
            source,
        },
        other => Error::Waiting {
            reason: "VersionConflict",
            message: other.to_string(),
        },
    };
    if let Some(written) = crate::version::populate(&api, cvc.as_ref(), &ctx.config.version)
        .await
        .map_err(&failed)?
    {
        ctx.count_write();
        ctx.caches().wrote(&written);
        cvc = Arc::new(written);
    }
    match crate::version::reconcile_version(&api, &ctx.events, cvc.as_ref(), &ctx.config.version)
        .await
    {
        Ok(Some(written)) => {
            ctx.count_write();
            ctx.caches().wrote(&written);
            Ok(Some(Arc::new(written)))
        }
        Ok(None) => Ok(Some(cvc)),
        Err(crate::version::VersionError::Invalid(reason)) => {
            warn!(cvc = %name, %reason, "version reconcile failed");
            Ok(None)
        }
        Err(e) => Err(failed(e)),
    }
}

/// How long after a failed pass on `cvc` to try again: waiting on another component at a
/// steady pace, a write conflict at once, errors with per-CVC exponential backoff (at most
/// [`BLOCKED_RETRY_MAX`] for a volume blocked by its surroundings, which no watch tells us
/// about: pools coming online, for one).
pub fn retry_delay(cvc: &CStorVolumeConfig, err: &Error, ctx: &Context) -> Duration {
    match err {
        Error::Waiting { .. } => ctx.config.wait_retry,
        Error::Kube { source, .. } if is_conflict(source) => {
            ctx.config.wait_retry.min(Duration::from_millis(200))
        }
        Error::Blocked { .. } => ctx.backoff.failed(cvc).min(BLOCKED_RETRY_MAX),
        _ => ctx.backoff.failed(cvc),
    }
}

/// The longest wait between two attempts at a blocked volume.
pub const BLOCKED_RETRY_MAX: Duration = Duration::from_secs(30);

pub fn error_policy(cvc: Arc<CStorVolumeConfig>, err: &Error, ctx: Arc<Context>) -> Action {
    let delay = retry_delay(&cvc, err, &ctx);
    METRICS.set_failing(ctx.backoff.failing());
    if delay > ctx.config.wait_retry {
        warn!(cvc = %cvc.name_any(), error = %err, retry_in = ?delay, "reconcile failed");
    }
    Action::requeue(delay)
}

/// Maps an object carrying `openebs.io/persistent-volume` to its CVC.
fn by_pv_label<K: Resource>(obj: K, ns: &str) -> Option<ObjectRef<CStorVolumeConfig>> {
    obj.meta()
        .labels
        .as_ref()?
        .get(label::PERSISTENT_VOLUME)
        .map(|pv| ObjectRef::new(pv).within(ns))
}

/// CVCs reconciled at once: enough to keep the API server busy (each pass is a few requests),
/// few enough that a burst of new volumes does not hold hundreds of passes and their buffers in
/// memory at once.
pub const RECONCILE_CONCURRENCY: u16 = 16;

/// Builds the controller (not started) on fresh watch caches: CVCs of the namespace, woken by
/// their CVs, Services, target Deployments and CVRs, whose watches also fill the caches the
/// reconciles read. The caches of the pools, pool clusters, policies and zone-labelled nodes
/// are filled by the returned task, which must be driven alongside the controller.
pub fn controller(
    ctx: &Arc<Context>,
) -> (
    Controller<CStorVolumeConfig>,
    impl Future<Output = ()> + Send + 'static,
) {
    let caches = Arc::new(cache::Caches::default());
    *ctx.caches.write().expect("caches lock") = caches.clone();
    let wc = watcher::Config::default();
    let ns = ctx.config.namespace.clone();
    let ns2 = ns.clone();
    let pv_selector = watcher::Config::default().labels(label::PERSISTENT_VOLUME);
    let taken = "fresh caches";
    // The CVCs too without their managed fields (a CVC written back keeps the server's: an
    // update that leaves them out does not change them).
    let (cvc_store, cvc_writer) = kube::runtime::reflector::store();
    let cvcs = watcher(ctx.api::<CStorVolumeConfig>(), wc.clone())
        .default_backoff()
        .modify(|c| c.meta_mut().managed_fields = None)
        .reflect(cvc_writer)
        .applied_objects();
    let controller = Controller::for_stream(cvcs, cvc_store)
        .with_config(
            kube::runtime::controller::Config::default().concurrency(RECONCILE_CONCURRENCY),
        )
        .owns_stream(
            caches
                .volumes
                .reflect(ctx.api(), wc.clone(), cache::whole)
                .expect(taken),
        )
        .owns_stream(
            caches
                .services
                .reflect(ctx.api(), pv_selector.clone(), cache::cluster_ip_only)
                .expect(taken),
        )
        .watches_stream(
            caches
                .deployments
                .reflect(ctx.api(), pv_selector.clone(), cache::metadata_only)
                .expect(taken),
            move |d| by_pv_label(d, &ns),
        )
        .watches_stream(
            caches
                .replicas
                .reflect(ctx.api(), pv_selector, cache::replica_essentials)
                .expect(taken),
            move |r| by_pv_label(r, &ns2),
        );
    let nodes = Api::<Node>::all(ctx.client.clone());
    let zoned = watcher::Config::default().labels(placement::ZONE_LABEL);
    let pdbs = watcher::Config::default().labels(label::CSTOR_POOL_CLUSTER);
    let others = futures::future::join5(
        cache::drain(caches.pools.reflect(ctx.api(), wc.clone(), cache::whole)),
        cache::drain(
            caches
                .pool_clusters
                .reflect(ctx.api(), wc.clone(), cache::whole),
        ),
        cache::drain(caches.policies.reflect(ctx.api(), wc, cache::whole)),
        cache::drain(caches.nodes.reflect(nodes, zoned, cache::whole)),
        cache::drain(
            caches
                .disruption_budgets
                .reflect(ctx.api(), pdbs, cache::whole),
        ),
    )
    .map(drop);
    (controller, others)
}

/// Runs the controller until `shutdown` resolves.
/// In-flight reconciles get [`crate::shutdown::GRACE`] to finish.
pub async fn run(ctx: Arc<Context>, shutdown: impl Future<Output = ()> + Send + 'static) {
    let shutdown = crate::shutdown::shared(shutdown);
    let (controller, caches) = controller(&ctx);
    let caches = tokio::spawn(caches);
    let store = controller.store();
    let stream = controller
        .graceful_shutdown_on(shutdown.clone())
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|res| async move {
            match res {
                Ok((obj, _)) => debug!(cvc = %obj.name, "reconciled"),
                Err(e) => debug!(error = %e, "reconcile error"),
            }
        });
    crate::shutdown::drive(stream, shutdown, || {
        futures::FutureExt::now_or_never(store.wait_until_ready()).is_some_and(|r| r.is_ok())
    })
    .await;
    caches.abort();
}
