//! pool-manager: realises one CStorPoolInstance (the one whose UID is `OPENEBS_IO_CSPI_ID`) as a
//! zpool, and the CStorVolumeReplicas placed on it as zvols.
//!
//! Two kube-runtime controllers share one [`Context`]: the CSPI controller ([`reconcile`]) and
//! the CVR controller ([`replica::reconcile`]). Every step is re-runnable: a crash at any point
//! converges on the next pass (the pool is looked up before it is created, raid groups are added
//! only when none of their disks is in the pool, finalizers go last).

pub mod destroy;
pub mod devices;
pub mod expand;
pub mod exporter;
pub mod import;
pub mod reconcile;
pub mod replace;
pub mod replica;
pub mod status;
pub mod transfer;

use std::{sync::Arc, time::Duration};

use cstor_api::cstor::{CStorPoolInstance, CStorVolumeReplica, PoolCondition};
use futures::StreamExt;
use kube::{
    Api, Client, Resource, ResourceExt,
    runtime::{Controller, controller::Action, events::EventType, watcher},
};

use crate::engine::{DataEngine, EngineError};

pub use reconcile::{error_policy, reconcile};

/// Condition set on a CSPI whose deletion waits for its replicas to go.
pub const DELETION_BLOCKED: &str = "PoolDeletionBlocked";
/// Reason of [`DELETION_BLOCKED`].
pub const REPLICAS_EXIST: &str = "VolumeReplicasExist";

/// Everything a pool-manager pass needs.
#[derive(Clone)]
pub struct Context {
    pub client: Client,
    pub engine: Arc<dyn DataEngine>,
    pub events: crate::events::Events,
    /// Per-object retry delays after errors (CSPI and CVRs).
    pub backoff: Arc<crate::backoff::Backoff>,
    /// Namespace of the CSPI, its CVRs, BlockDevices and BDCs.
    pub namespace: String,
    /// UID of the CSPI this pool manager serves (`OPENEBS_IO_CSPI_ID`).
    pub cspi_uid: String,
    /// The zpool name, `cstor-<CSPC uid>` (`OPENEBS_IO_POOL_NAME` with the prefix).
    pub pool: String,
    /// Slow resync of both controllers.
    pub resync: Duration,
    /// Serialises pool and replica commands (upstream's global mutex).
    pub lock: Arc<tokio::sync::Mutex<()>>,
    /// Backup and restore streams: retry settings and the ones running.
    pub transfers: Arc<transfer::Transfers>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("pool", &self.pool)
            .field("cspi_uid", &self.cspi_uid)
            .finish()
    }
}

impl Context {
    pub fn new(
        client: Client,
        engine: Arc<dyn DataEngine>,
        namespace: impl Into<String>,
        cspi_uid: impl Into<String>,
        cspc_uid: &str,
    ) -> Self {
        let events = crate::events::Events::new(client.clone(), "cstor-pool-manager");
        Self {
            client,
            engine,
            events,
            namespace: namespace.into(),
            cspi_uid: cspi_uid.into(),
            pool: cstor_api::naming::pool_name(cspc_uid),
            resync: Duration::from_secs(30),
            backoff: Arc::default(),
            lock: Arc::default(),
            transfers: Arc::default(),
        }
    }

    /// Tries of a backup or restore stream and the pause between them (upstream: 10, 5 s).
    pub fn with_transfer_retries(mut self, attempts: u32, every: Duration) -> Self {
        self.transfers = Arc::new(transfer::Transfers::new(attempts, every));
        self
    }

    pub fn with_resync(mut self, resync: Duration) -> Self {
        self.resync = resync;
        self
    }

    /// Overrides the zpool name. Every pool of one CSPC is `cstor-<CSPC uid>` on its own node;
    /// a host that plays several nodes (the scenario tests) needs a distinct name per pool.
    pub fn with_pool_name(mut self, pool: impl Into<String>) -> Self {
        self.pool = pool.into();
        self
    }

    pub fn cspis(&self) -> Api<CStorPoolInstance> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    pub fn cvrs(&self) -> Api<CStorVolumeReplica> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Publishes an Event about `obj`; a failure to publish is logged, never fatal.
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        note: impl Into<String>,
    ) {
        self.event_as(obj, type_, reason, reason, note).await
    }

    /// [`Self::event`] with an explicit `action` (see [`crate::events::Events::publish`]).
    pub async fn event_as<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        action: &str,
        note: impl Into<String>,
    ) {
        self.events.publish(obj, type_, reason, action, note).await
    }
}

/// Errors of a pool-manager pass; every one is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("data engine: {0}")]
    Engine(#[from] EngineError),
    #[error("invalid {what}: {detail}")]
    Invalid { what: String, detail: String },
    #[error("waiting: {0}")]
    Waiting(String),
    #[error(transparent)]
    Finalizer(#[from] crate::finalizer::Misuse),
}

impl From<cstor_api::update::ModifyError> for Error {
    fn from(e: cstor_api::update::ModifyError) -> Self {
        match e {
            cstor_api::update::ModifyError::Api(e) => Error::Kube(e),
            // Others keep writing the object: the next pass tries again.
            conflicts => Error::Waiting(conflicts.to_string()),
        }
    }
}

impl Error {
    pub fn invalid(what: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::Invalid {
            what: what.into(),
            detail: detail.into(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The version reconcile of a CSPI or CVR before its sync (see [`crate::version`]): the
/// object to go on with, or `None` when its version is invalid (recorded on the object; this
/// sync stops and the next resync tries again).
pub async fn reconcile_version<K: crate::version::Versioned>(
    ctx: &Context,
    api: &Api<K>,
    obj: &K,
) -> Result<Option<K>> {
    use crate::version::VersionError;
    let version = cstor_api::constants::version::current();
    match crate::version::reconcile_version(api, &ctx.events, obj, &version).await {
        Ok(written) => Ok(Some(written.unwrap_or_else(|| obj.clone()))),
        Err(VersionError::Invalid(reason)) => {
            tracing::warn!(kind = K::KIND, name = %obj.name_any(), %reason, "version reconcile failed");
            Ok(None)
        }
        Err(VersionError::Kube(e)) => Err(e.into()),
        Err(e @ VersionError::Conflicts(_)) => Err(Error::Waiting(e.to_string())),
    }
}

/// How long after a failed pass on `obj` to try again: waiting on another component at a
/// steady pace, errors with per-object exponential backoff.
pub fn retry_delay<K: kube::Resource>(obj: &K, err: &Error, ctx: &Context) -> Duration {
    let delay = match err {
        Error::Waiting(_) => ctx.resync.min(Duration::from_secs(5)),
        _ => ctx.backoff.failed(obj),
    };
    FAILING.set_failing(ctx.backoff.failing());
    delay
}

/// The pool manager's objects (its CSPI and its CVRs) waiting out an error backoff.
pub(crate) static FAILING: cstor_api::metrics::Reconciles =
    cstor_api::metrics::Reconciles::new("pool-manager");

/// Sets a CSPI or CSPC condition (the shared rules of [`crate::conditions::set`]).
pub use crate::conditions::set as set_condition;

/// A condition value with `status`, `reason` and `message`.
pub fn condition(
    type_: &str,
    status: cstor_api::cstor::ConditionStatus,
    reason: &str,
    message: impl Into<String>,
) -> PoolCondition {
    PoolCondition {
        type_: type_.into(),
        status,
        reason: Some(reason.into()),
        message: Some(message.into()),
        ..Default::default()
    }
}

/// Marks existing replicas `Recreate` ([`replica::mark_recreate`]), then runs the CSPI and
/// CVR controllers until the stream ends (or the future is dropped).
pub async fn run(ctx: Context) {
    // Replicas found at start-up are rechecked (and recreated when their zvol is gone); a
    // failure here is retried until the API answers, the controllers need it first.
    let mut backoff = Duration::from_millis(200);
    loop {
        match replica::mark_recreate(&ctx).await {
            Ok(n) => {
                tracing::info!(replicas = n, "existing replicas marked Recreate");
                break;
            }
            Err(e) => {
                tracing::warn!(error = %e, "marking existing replicas Recreate failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
    let ctx = Arc::new(ctx);
    let cspis = ctx.cspis();
    let cspi_ctl = Controller::new(cspis, watcher::Config::default())
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "cspi reconcile");
            }
        });
    let selector = format!("{}={}", cstor_api::constants::label::CSPI_UID, ctx.cspi_uid);
    let cvr_ctl = Controller::new(ctx.cvrs(), watcher::Config::default().labels(&selector))
        .run(replica::reconcile, replica::error_policy, ctx.clone())
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "cvr reconcile");
            }
        });
    futures::join!(cspi_ctl, cvr_ctl, transfer::run(ctx.clone()));
}

/// Requeue after a successful pass.
pub fn resync(ctx: &Context) -> Action {
    Action::requeue(ctx.resync)
}

/// Shutdown: the served CSPI's `status.phase` becomes `OFFLINE`, so the CSPC
/// status and the volume placement stop counting this pool until the next pool manager reports
/// it again. Retried on a write conflict; a CSPI that is gone is not an error.
pub async fn mark_offline(ctx: &Context) -> Result<()> {
    use cstor_api::cstor::CStorPoolInstancePhase;
    let list = ctx.cspis().list(&kube::api::ListParams::default()).await?;
    let Some(name) = list
        .items
        .iter()
        .find(|c| c.uid().as_deref() == Some(ctx.cspi_uid.as_str()))
        .map(|c| c.name_any())
    else {
        return Ok(());
    };
    let uid = ctx.cspi_uid.clone();
    cstor_api::update::modify(&ctx.cspis(), &name, |cspi| {
        // Another CSPI of the same name (recreated): not ours to mark.
        if !cspi_uid_is(&cspi.metadata, &uid) {
            return false;
        }
        let status = cspi.status.get_or_insert_with(Default::default);
        if status.phase == Some(CStorPoolInstancePhase::Offline) {
            return false;
        }
        status.phase = Some(CStorPoolInstancePhase::Offline);
        true
    })
    .await?;
    Ok(())
}

fn cspi_uid_is(meta: &kube::api::ObjectMeta, uid: &str) -> bool {
    meta.uid.as_deref() == Some(uid)
}
