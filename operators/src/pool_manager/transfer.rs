//! The backup and restore controllers: the pool side of Velero backups.
//!
//! The cvc-operator's REST server creates a CStorBackup (one, on a Healthy replica's pool) or
//! CStorRestores (one per replica), labelled with the CSPI's UID, in status `Pending`. The
//! pool manager of that CSPI moves each one `Pending → Init → InProgress` and then streams:
//!
//! - backup: `zfs send [-i <pool>/<pv>@<prevSnapName>] <pool>/<pv>@<snapName>` into a TCP
//!   connection to `spec.backupDest` (the plugin's server, port 9001); on success the
//!   CStorCompletedBackup `<backupName>-<volumeName>` shifts (secondLast ← last, last ← snap)
//!   and the backup is `Done`;
//! - restore: `zfs recv -F <pool>/<pv>` from a TCP connection to `spec.restoreSrc` (the
//!   plugin's server, port 9000), then `Done`.
//!
//! As upstream, a stream is tried up to [`Transfers::attempts`] times, [`Transfers::retry_every`]
//! apart (the plugin starts listening only after its request returned), and success is the
//! zfs command's own exit status (upstream piped into `nc` and judged by nc's).
//!
//! Unlike upstream, a restart converges instead of failing work: a `Pending` or `Init` object
//! found at start-up is processed as usual, and an `InProgress` one that no transfer of this
//! process runs was interrupted: a backup whose snapshot the completed-backup record already
//! holds is `Done`, any other interrupted transfer is run again (the plugin keeps serving until
//! it sees a final status). Every status write carries the object's resourceVersion, so a
//! stale read never starts a transfer twice.

use std::{
    collections::HashSet,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use cstor_api::{
    constants::label,
    cstor::{CStorBackup, CStorBackupStatus as Status, CStorCompletedBackup, CStorRestore},
    exec::Fd,
};
use kube::{
    Api, Resource, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{controller::Action, events::EventType},
};
use serde::Serialize;

use super::{Context, Error, Result};

/// Retry settings of the streams, and the transfers running in this process.
#[derive(Debug)]
pub struct Transfers {
    /// Tries of one stream (upstream: 10).
    pub attempts: u32,
    /// Pause between tries (upstream: 5 s).
    pub retry_every: Duration,
    /// Connect deadline to the plugin's server (upstream's `nc -w 3`).
    pub connect_timeout: Duration,
    running: Mutex<HashSet<String>>,
}

impl Default for Transfers {
    fn default() -> Self {
        Self::new(10, Duration::from_secs(5))
    }
}

impl Transfers {
    pub fn new(attempts: u32, retry_every: Duration) -> Self {
        Self {
            attempts: attempts.max(1),
            retry_every,
            connect_timeout: Duration::from_secs(3),
            running: Mutex::default(),
        }
    }

    fn is_running(&self, uid: &str) -> bool {
        self.running.lock().unwrap().contains(uid)
    }
}

/// Marks a transfer as running in this process until dropped.
struct Running<'a>(&'a Transfers, String);

impl<'a> Running<'a> {
    fn start(t: &'a Transfers, uid: String) -> Self {
        t.running.lock().unwrap().insert(uid.clone());
        Running(t, uid)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.lock().unwrap().remove(&self.1);
    }
}

/// What differs between a backup and a restore.
#[async_trait]
trait Transfer: crate::Namespaced + Serialize {
    /// `backup` / `restore`, for messages.
    const WHAT: &'static str;
    fn status(&self) -> Status;
    fn volume(&self) -> &str;
    /// Checks the spec; `Err` names the field.
    fn check(&self) -> Result<()>;
    /// `ip:port` of the plugin's server and the field it came from.
    fn peer(&self) -> (&'static str, &str);
    /// Runs the zfs side of one try over `stream`.
    async fn stream(&self, ctx: &Context, dataset: &str, stream: Fd) -> Result<()>;
    /// Whether an interrupted transfer had in fact finished (a backup's record holds it).
    async fn finished_before(&self, _ctx: &Context) -> Result<bool> {
        Ok(false)
    }
    /// Book-keeping after a successful stream.
    async fn after_success(&self, _ctx: &Context) -> Result<()> {
        Ok(())
    }
    /// Event of a successful transfer: (reason, note).
    fn success_event() -> (&'static str, &'static str);
}

fn require(field: &str, value: &str) -> Result<()> {
    if value.trim().is_empty() {
        return Err(Error::invalid(field, "missing or empty"));
    }
    Ok(())
}

#[async_trait]
impl Transfer for CStorBackup {
    const WHAT: &'static str = "backup";

    fn status(&self) -> Status {
        self.status.clone().unwrap_or_default()
    }

    fn volume(&self) -> &str {
        &self.spec.volume_name
    }

    fn check(&self) -> Result<()> {
        require("spec.volumeName", &self.spec.volume_name)?;
        require("spec.snapName", &self.spec.snap_name)?;
        require("spec.backupName", &self.spec.backup_name)?;
        if self.spec.local_snap == Some(true) {
            return Err(Error::invalid(
                "spec.localSnap",
                "a local snapshot is not sent anywhere (the REST server creates no backup for it)",
            ));
        }
        Ok(())
    }

    fn peer(&self) -> (&'static str, &str) {
        (
            "spec.backupDest",
            self.spec.backup_dest.as_deref().unwrap_or(""),
        )
    }

    async fn stream(&self, ctx: &Context, dataset: &str, stream: Fd) -> Result<()> {
        let previous = self
            .spec
            .prev_snap_name
            .as_deref()
            .filter(|p| !p.is_empty());
        ctx.engine
            .send_snapshot(dataset, &self.spec.snap_name, previous, stream)
            .await?;
        Ok(())
    }

    async fn finished_before(&self, ctx: &Context) -> Result<bool> {
        let record = records(ctx, self).get_opt(&record_name(self)).await?;
        Ok(record.is_some_and(|r| {
            let snap = Some(self.spec.snap_name.as_str());
            r.spec.last_snap_name.as_deref() == snap
                || r.spec.second_last_snap_name.as_deref() == snap
        }))
    }

    /// Shifts the completed-backup record: secondLast ← last, last ← this snapshot (once: a
    /// record that already ends with it is left alone). A missing record is only logged, as
    /// upstream (the REST server creates it with the backup).
    async fn after_success(&self, ctx: &Context) -> Result<()> {
        let api = records(ctx, self);
        let name = record_name(self);
        let snap = self.spec.snap_name.clone();
        let out = cstor_api::update::modify(&api, &name, |record| {
            let last = record.spec.last_snap_name.clone().unwrap_or_default();
            if last == snap {
                return false;
            }
            record.spec.second_last_snap_name = Some(last);
            record.spec.last_snap_name = Some(snap.clone());
            true
        })
        .await?;
        if matches!(out, cstor_api::update::Modified::Absent) {
            tracing::warn!(record = %name, "no CStorCompletedBackup to update");
        }
        Ok(())
    }

    fn success_event() -> (&'static str, &'static str) {
        ("Backup", "backup creation is successful")
    }
}

fn records(ctx: &Context, b: &CStorBackup) -> Api<CStorCompletedBackup> {
    Api::namespaced(ctx.client.clone(), &b.namespace().unwrap_or_default())
}

/// `<backupName>-<volumeName>`: the record of a schedule's sent snapshots.
fn record_name(b: &CStorBackup) -> String {
    format!("{}-{}", b.spec.backup_name, b.spec.volume_name)
}

#[async_trait]
impl Transfer for CStorRestore {
    const WHAT: &'static str = "restore";

    fn status(&self) -> Status {
        self.status.clone().unwrap_or_default()
    }

    fn volume(&self) -> &str {
        &self.spec.volume_name
    }

    fn check(&self) -> Result<()> {
        require("spec.volumeName", &self.spec.volume_name)?;
        require("spec.restoreName", &self.spec.restore_name)?;
        if self.spec.local_restore == Some(true) {
            return Err(Error::invalid(
                "spec.localRestore",
                "a local restore is a clone made by the cvc-operator; the pool receives nothing",
            ));
        }
        Ok(())
    }

    fn peer(&self) -> (&'static str, &str) {
        ("spec.restoreSrc", &self.spec.restore_src)
    }

    async fn stream(&self, ctx: &Context, dataset: &str, stream: Fd) -> Result<()> {
        ctx.engine.receive(dataset, stream).await?;
        Ok(())
    }

    fn success_event() -> (&'static str, &'static str) {
        ("Created", "Resource created successfully")
    }
}

/// Runs the backup and restore controllers of this pool until their streams end. Backups and
/// restores live in any namespace (a backup in its PVC's); this pool's carry its CSPI UID. At
/// most two streams of each kind run at a time.
pub async fn run(ctx: Arc<Context>) {
    use futures::StreamExt;
    use kube::runtime::{Controller, controller::Config, watcher};
    let selector = format!("{}={}", label::CSPI_UID, ctx.cspi_uid);
    let backups = Controller::new(
        Api::<CStorBackup>::all(ctx.client.clone()),
        watcher::Config::default().labels(&selector),
    )
    .with_config(Config::default().concurrency(2))
    .run(reconcile_backup, error_policy, ctx.clone())
    .for_each(|res| async move {
        if let Err(e) = res {
            tracing::debug!(error = %e, "backup reconcile");
        }
    });
    let restores = Controller::new(
        Api::<CStorRestore>::all(ctx.client.clone()),
        watcher::Config::default().labels(&selector),
    )
    .with_config(Config::default().concurrency(2))
    .run(reconcile_restore, error_policy, ctx.clone())
    .for_each(|res| async move {
        if let Err(e) = res {
            tracing::debug!(error = %e, "restore reconcile");
        }
    });
    futures::join!(backups, restores);
}

/// `ip:port` → a socket address, or an error naming `field`.
pub fn parse_peer(field: &str, value: &str) -> Result<SocketAddr> {
    value.trim().parse::<SocketAddr>().map_err(|_| {
        Error::invalid(
            field,
            format!("{value:?} is not <ip>:<port> (the plugin's address)"),
        )
    })
}

/// Reconcile of a CStorBackup of this pool.
pub async fn reconcile_backup(b: Arc<CStorBackup>, ctx: Arc<Context>) -> Result<Action> {
    reconcile(b, ctx).await
}

/// Reconcile of a CStorRestore of this pool.
pub async fn reconcile_restore(r: Arc<CStorRestore>, ctx: Arc<Context>) -> Result<Action> {
    reconcile(r, ctx).await
}

/// API errors retry with backoff; a transfer that failed is final (`Failed`), not an error.
pub fn error_policy<K: Resource + ResourceExt>(
    obj: Arc<K>,
    err: &Error,
    ctx: Arc<Context>,
) -> Action {
    let delay = super::retry_delay(&*obj, err, &ctx);
    tracing::warn!(object = %obj.name_any(), error = %err, retry_in = ?delay, "transfer reconcile failed");
    Action::requeue(delay)
}

async fn reconcile<T: Transfer>(obj: Arc<T>, ctx: Arc<Context>) -> Result<Action> {
    if obj.labels().get(label::CSPI_UID) != Some(&ctx.cspi_uid)
        || obj.meta().deletion_timestamp.is_some()
    {
        return Ok(Action::await_change());
    }
    let uid = obj.uid().unwrap_or_default();
    let api: Api<T> = Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    match obj.status() {
        Status::Done | Status::Failed | Status::Invalid => Ok(Action::await_change()),
        other @ (Status::Empty | Status::Other(_)) => {
            let why = format!(
                "status {:?} is not a phase a {} starts from: it starts Pending (as the \
                 cvc-operator's REST server creates it)",
                other.to_string(),
                T::WHAT
            );
            set_status(&api, &obj, Status::Invalid).await?;
            ctx.event(&*obj, EventType::Warning, "Invalid", why).await;
            Ok(Action::await_change())
        }
        Status::Pending => {
            set_status(&api, &obj, Status::Init).await?;
            ctx.event_as(
                &*obj,
                EventType::Normal,
                "Update",
                "Init",
                format!("initialized {} process", T::WHAT),
            )
            .await;
            Ok(Action::await_change())
        }
        Status::Init => {
            // The write with this version is what entitles this pass to run the transfer.
            let obj = set_status(&api, &obj, Status::InProgress).await?;
            run_transfer(&api, obj, &ctx).await
        }
        Status::InProgress => {
            if ctx.transfers.is_running(&uid) {
                return Ok(Action::await_change());
            }
            // The cache may lag our own final write: only the API's copy tells.
            let Some(fresh) = api.get_opt(&obj.name_any()).await? else {
                return Ok(Action::await_change());
            };
            if fresh.status() != Status::InProgress || ctx.transfers.is_running(&uid) {
                return Ok(Action::await_change());
            }
            if fresh.finished_before(&ctx).await? {
                tracing::info!(object = %fresh.name_any(), "interrupted {} had finished", T::WHAT);
                set_status(&api, &fresh, Status::Done).await?;
                return Ok(Action::await_change());
            }
            tracing::info!(object = %fresh.name_any(), "running an interrupted {} again", T::WHAT);
            run_transfer(&api, fresh, &ctx).await
        }
    }
}

/// Streams (with retries) and records the outcome as `Done` or `Failed`.
async fn run_transfer<T: Transfer>(api: &Api<T>, obj: T, ctx: &Context) -> Result<Action> {
    let _running = Running::start(&ctx.transfers, obj.uid().unwrap_or_default());
    let outcome = match transfer(&obj, ctx).await {
        Ok(()) => obj.after_success(ctx).await,
        Err(e) => Err(e),
    };
    let status = match &outcome {
        Ok(()) => {
            let (reason, note) = T::success_event();
            ctx.event(&obj, EventType::Normal, reason, note).await;
            Status::Done
        }
        Err(e) => {
            tracing::warn!(object = %obj.name_any(), error = %e, "{} failed", T::WHAT);
            ctx.event(
                &obj,
                EventType::Warning,
                if T::WHAT == "backup" {
                    "Backup"
                } else {
                    "Restore"
                },
                format!("failed to create {} error: {e}", T::WHAT),
            )
            .await;
            Status::Failed
        }
    };
    // Our own InProgress write is the version to replace; retried until the API answers
    // (an error here requeues, and the next pass recovers through `finished_before`).
    let current = api.get(&obj.name_any()).await?;
    set_status(api, &current, status).await?;
    Ok(Action::await_change())
}

/// Up to `attempts` tries: connect to the plugin, run the zfs side.
async fn transfer<T: Transfer>(obj: &T, ctx: &Context) -> Result<()> {
    obj.check()?;
    let (field, value) = obj.peer();
    let peer = parse_peer(field, value)?;
    let dataset = format!("{}/{}", ctx.pool, obj.volume());
    if !ctx.engine.dataset_exists(&dataset).await? {
        return Err(Error::invalid(
            "spec.volumeName",
            format!("this pool has no replica {dataset}"),
        ));
    }
    let t = &ctx.transfers;
    let mut last = None;
    for attempt in 1..=t.attempts {
        match connect(peer, t.connect_timeout).await {
            Ok(fd) => match obj.stream(ctx, &dataset, fd).await {
                Ok(()) => return Ok(()),
                Err(e) => last = Some(e),
            },
            Err(e) => last = Some(Error::Waiting(format!("connecting to {peer}: {e}"))),
        }
        tracing::info!(object = %obj.name_any(), attempt, error = ?last, "{} stream failed", T::WHAT);
        if attempt < t.attempts {
            tokio::time::sleep(t.retry_every).await;
        }
    }
    Err(last.unwrap_or_else(|| Error::Waiting("no attempt made".into())))
}

/// A blocking-mode TCP connection to `peer`, as a descriptor for zfs's stdin or stdout.
async fn connect(peer: SocketAddr, deadline: Duration) -> std::io::Result<Fd> {
    let stream = tokio::time::timeout(deadline, tokio::net::TcpStream::connect(peer))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    let stream = stream.into_std()?;
    stream.set_nonblocking(false)?;
    Ok(Fd::new(std::os::fd::OwnedFd::from(stream)))
}

/// Writes `status`, conditional on the object's resourceVersion; returns the new object.
async fn set_status<T: Transfer>(api: &Api<T>, obj: &T, status: Status) -> Result<T> {
    let patch = serde_json::json!({
        "metadata": {"resourceVersion": obj.resource_version()},
        "status": status,
    });
    Ok(api
        .patch(
            &obj.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?)
}
