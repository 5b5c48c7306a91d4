//! `/latest/backups/`: `POST` takes a snapshot and (remote backups) creates the CStorBackup and
//! its schedule's CStorCompletedBackup, `GET` reports one backup, `DELETE /<snap>` cleans up.

use std::collections::BTreeMap;

use axum::{
    http::{Method, StatusCode},
    response::Response,
};
use cstor_api::{
    constants::label,
    cstor::{
        CStorBackup, CStorBackupSpec, CStorBackupStatus, CStorCompletedBackup,
        CStorCompletedBackupSpec, CStorPoolInstance, CStorVolumeReplica,
    },
    naming,
};
use kube::{
    Api,
    api::{DeleteParams, ListParams, PostParams},
};
use serde::Deserialize;

use super::{BACKUPS_PATH, Call, HttpError, Rest, SnapCommand, json_value, json_written};

/// The fields of a CStorBackup body the server reads; anything missing is empty.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct BackupRequest {
    /// Namespace (the PVC's) and name.
    pub metadata: RequestMeta,
    /// The backup.
    pub spec: BackupRequestSpec,
}

/// `metadata` of a request body.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RequestMeta {
    /// Name (normally empty).
    pub name: Option<String>,
    /// Namespace.
    pub namespace: Option<String>,
}

/// `spec` of a backup request.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct BackupRequestSpec {
    /// Schedule (or backup) name.
    pub backup_name: Option<String>,
    /// PV name.
    pub volume_name: Option<String>,
    /// Snapshot name (the Velero backup).
    pub snap_name: Option<String>,
    /// Plugin's `ip:port`.
    pub backup_dest: Option<String>,
    /// Snapshot only.
    pub local_snap: Option<bool>,
}

/// A validated backup request.
struct Backup {
    namespace: String,
    backup: String,
    volume: String,
    snap: String,
    dest: String,
    local: bool,
}

fn blank(s: &Option<String>) -> bool {
    s.as_deref().is_none_or(|s| s.trim().is_empty())
}

fn owned(s: Option<String>) -> String {
    s.unwrap_or_default()
}

/// Upstream's checks, in its order; `create` also requires the destination and snapshot.
fn validate(req: BackupRequest, create: bool) -> Result<Backup, HttpError> {
    let verb = if create { "create" } else { "get" };
    let spec = req.spec;
    if blank(&spec.backup_name) {
        return Err(HttpError::bad(format!(
            "Failed to {verb} backup: missing backup name "
        )));
    }
    let backup = owned(spec.backup_name);
    let missing = |what: &str| {
        HttpError::bad(format!(
            "Failed to {verb} backup '{backup}': missing {what}"
        ))
    };
    if blank(&req.metadata.namespace) {
        return Err(missing("namespace"));
    }
    if blank(&spec.volume_name) {
        return Err(missing("volume name"));
    }
    let local = spec.local_snap.unwrap_or(false);
    if create && !local && blank(&spec.backup_dest) {
        return Err(missing("backupIP"));
    }
    if create && blank(&spec.snap_name) {
        return Err(missing("snapName"));
    }
    Ok(Backup {
        namespace: owned(req.metadata.namespace),
        volume: owned(spec.volume_name),
        snap: owned(spec.snap_name),
        dest: owned(spec.backup_dest),
        backup,
        local,
    })
}

/// Dispatches on the method.
pub async fn handle(rest: &Rest, call: &Call) -> Result<Response, HttpError> {
    match call.method {
        Method::POST => {
            create(rest, validate(call.decode()?, true)?).await?;
            Ok(json_value(&"", call.pretty()))
        }
        Method::GET => get(rest, validate(call.decode()?, false)?).await,
        Method::DELETE => {
            delete(rest, call).await?;
            Ok(json_value(&"", call.pretty()))
        }
        _ => Err(HttpError::method()),
    }
}

async fn create(rest: &Rest, b: Backup) -> Result<(), HttpError> {
    super::snapshot(rest, &b.volume, &b.snap, SnapCommand::Create)
        .await
        .map_err(|e| HttpError::bad(format!("Failed to create snapshot '{e}'")))?;
    if b.local {
        return Ok(());
    }
    let name = naming::backup_name(&b.snap, &b.volume);
    let cvr = healthy_replica(rest, &b.volume).await.ok_or_else(|| {
        HttpError::bad(format!(
            "Failed to find healthy replica for volume {}",
            b.volume
        ))
    })?;
    let cvr_label = |key: &str| {
        cvr.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(key))
            .cloned()
            .unwrap_or_default()
    };
    let labels = BTreeMap::from([
        (label::CSPI_UID.to_owned(), cvr_label(label::CSPI_UID)),
        (label::CSPI_NAME.to_owned(), cvr_label(label::CSPI_NAME)),
        (
            label::PERSISTENT_VOLUME.to_owned(),
            cvr_label(label::PERSISTENT_VOLUME),
        ),
        (label::BACKUP.to_owned(), b.backup.clone()),
    ]);
    let cspi = cvr_label(label::CSPI_NAME);
    let version = rest
        .api::<CStorPoolInstance>()
        .get(&cspi)
        .await
        .map_err(|e| HttpError::bad(format!("failed to get {cspi} pool version error: {e}")))?
        .version_details
        .and_then(|v| v.status)
        .and_then(|s| s.current)
        .unwrap_or_default();
    super::check_pool_version(&version)
        .map_err(|e| HttpError::bad(format!("failed to get backupInterface error: {e}")))?;
    let prev = last_completed(rest, &b, &labels).await.map_err(|e| {
        HttpError::bad(format!(
            "Failed get or create lastCompleted backup error: {e}"
        ))
    })?;
    let mut obj = CStorBackup::namespaced(
        &name,
        &b.namespace,
        CStorBackupSpec {
            backup_name: b.backup.clone(),
            volume_name: b.volume.clone(),
            snap_name: b.snap.clone(),
            prev_snap_name: Some(prev),
            backup_dest: Some(b.dest.clone()),
            local_snap: Some(false),
            extra: Default::default(),
        },
    );
    obj.metadata.labels = Some(labels);
    obj.status = Some(CStorBackupStatus::Pending);
    Api::<CStorBackup>::namespaced(rest.client.clone(), &b.namespace)
        .create(&PostParams::default(), &obj)
        .await
        .map_err(|e| HttpError::internal(format!("failed to create backup {name}: {e}")))?;
    tracing::info!(
        backup = name,
        namespace = b.namespace,
        "created CStorBackup"
    );
    Ok(())
}

/// The first replica of `volume` (API order) that is Healthy.
async fn healthy_replica(rest: &Rest, volume: &str) -> Option<CStorVolumeReplica> {
    let lp = ListParams::default().labels(&format!("{}={volume}", label::PERSISTENT_VOLUME));
    let cvrs = rest.api::<CStorVolumeReplica>().list(&lp).await.ok()?;
    cvrs.items.into_iter().find(|c| {
        c.status
            .as_ref()
            .and_then(|s| s.phase.as_ref())
            .is_some_and(|p| p.as_ref() == "Healthy")
    })
}

/// The schedule's last sent snapshot, creating its empty CStorCompletedBackup when absent.
async fn last_completed(
    rest: &Rest,
    b: &Backup,
    labels: &BTreeMap<String, String>,
) -> Result<String, kube::Error> {
    let name = naming::completed_backup_name(&b.backup, &b.volume);
    let api = Api::<CStorCompletedBackup>::namespaced(rest.client.clone(), &b.namespace);
    if let Some(done) = api.get_opt(&name).await? {
        return Ok(done.spec.last_snap_name.unwrap_or_default());
    }
    let mut record = CStorCompletedBackup::namespaced(
        &name,
        &b.namespace,
        CStorCompletedBackupSpec {
            backup_name: Some(b.backup.clone()),
            volume_name: Some(b.volume.clone()),
            ..Default::default()
        },
    );
    record.metadata.labels = Some(labels.clone());
    match api.create(&PostParams::default(), &record).await {
        Ok(_) => Ok(String::new()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(api
            .get(&name)
            .await?
            .spec
            .last_snap_name
            .unwrap_or_default()),
        Err(e) => Err(e),
    }
}

async fn get(rest: &Rest, b: Backup) -> Result<Response, HttpError> {
    let name = naming::backup_name(&b.snap, &b.volume);
    let api = Api::<CStorBackup>::namespaced(rest.client.clone(), &b.namespace);
    let mut obj = api
        .get_opt(&name)
        .await
        .map_err(|e| HttpError::bad(format!("failed to get backup interface error: {e}")))?
        .ok_or_else(|| {
            HttpError::with(
                StatusCode::NOT_FOUND,
                format!("backup {name} not found in namespace {}", b.namespace),
            )
        })?;
    let status = obj.status.clone().unwrap_or_default();
    if !matches!(status, CStorBackupStatus::Done | CStorBackupStatus::Failed) {
        let cspi = obj
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(label::CSPI_NAME))
            .cloned()
            .unwrap_or_default();
        if super::pool_down(rest, &cspi).await {
            let inferred = status_from_record(rest, &b, &obj.spec.snap_name).await;
            tracing::info!(backup = name, pool = cspi, status = ?inferred, "pool is down: backup status inferred");
            obj.status = Some(inferred);
            match api.replace(&name, &PostParams::default(), &obj).await {
                Ok(updated) => obj = updated,
                Err(e) => tracing::warn!(backup = name, "could not update the backup status: {e}"),
            }
        }
    }
    json_written(&obj)
}

/// `Done` when `snap` is the last or second-last snapshot of the schedule's record, else `Failed`.
async fn status_from_record(rest: &Rest, b: &Backup, snap: &str) -> CStorBackupStatus {
    let name = naming::completed_backup_name(&b.backup, &b.volume);
    let record = Api::<CStorCompletedBackup>::namespaced(rest.client.clone(), &b.namespace)
        .get_opt(&name)
        .await
        .ok()
        .flatten();
    let sent = record.is_some_and(|r| {
        r.spec.last_snap_name.as_deref() == Some(snap)
            || r.spec.second_last_snap_name.as_deref() == Some(snap)
    });
    if sent {
        CStorBackupStatus::Done
    } else {
        CStorBackupStatus::Failed
    }
}

async fn delete(rest: &Rest, call: &Call) -> Result<(), HttpError> {
    let snap = call.path[BACKUPS_PATH.len()..].trim().to_owned();
    let (volume, ns, schedule) = (
        call.query("volume"),
        call.query("namespace"),
        call.query("schedule"),
    );
    if [&snap, &volume, &ns, &schedule]
        .iter()
        .any(|s| s.is_empty())
    {
        return Err(HttpError::with(
            StatusCode::METHOD_NOT_ALLOWED,
            "failed to delete backup: Insufficient info -- required values volume_name, backup_name, namespace, schedule_name",
        ));
    }
    delete_backup(rest, &snap, &volume, &ns, &schedule)
        .await
        .map_err(|e| {
            HttpError::internal(format!(
                "Error deleting backup={snap} for volume={volume} with namesace={ns} and schedule={schedule}..  error={e}"
            ))
        })
}

async fn delete_backup(
    rest: &Rest,
    snap: &str,
    volume: &str,
    ns: &str,
    schedule: &str,
) -> Result<(), String> {
    let name = naming::backup_name(snap, volume);
    let backups = Api::<CStorBackup>::namespaced(rest.client.clone(), ns);
    let found = backups
        .get_opt(&name)
        .await
        .map_err(|e| format!("failed to get backup interface error: {e}"))?;
    if found.is_none() {
        tracing::info!(backup = name, namespace = ns, "backup already deleted");
        return Ok(());
    }
    let record_name = naming::completed_backup_name(schedule, volume);
    let records = Api::<CStorCompletedBackup>::namespaced(rest.client.clone(), ns);
    let record = records
        .get_opt(&record_name)
        .await
        .map_err(|e| format!("failed to get lastCompletedBackup {record_name}: {e}"))?;
    if let Some(record) = record {
        let last = record.spec.last_snap_name.unwrap_or_default();
        if last.is_empty() || last == snap {
            tolerate_not_found(records.delete(&record_name, &DeleteParams::default()).await)
                .map_err(|e| format!("failed to delete lastCompletedBackup {record_name}: {e}"))?;
        }
    }
    super::snapshot(rest, volume, snap, SnapCommand::Delete)
        .await
        .map_err(|e| format!("snapshot deletion failed: {e}"))?;
    tolerate_not_found(backups.delete(&name, &DeleteParams::default()).await)
        .map_err(|e| format!("failed to delete cstorbackup: {name} resource: {e}"))?;
    tracing::info!(backup = name, namespace = ns, "backup deleted");
    Ok(())
}

fn tolerate_not_found<T>(r: Result<T, kube::Error>) -> Result<(), kube::Error> {
    match r {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}
