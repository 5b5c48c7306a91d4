//! CreateSnapshot, DeleteSnapshot, ListSnapshots and GetSnapshot, plus the internal snapshots
//! PVC→PVC clones are made from and their clean-up.
//!
//! Snapshots are taken and destroyed by the volume's target (gRPC `RunSnapCommand`, see
//! [`crate::target`]). What exists is read from two places: our record on the source CVC
//! ([`crate::records`]) and the replicas' `status.snapshots` (written by the pool managers,
//! which also lists snapshots taken by upstream's Go driver).

use std::{collections::BTreeMap, time::Duration};

use cstor_api::{
    constants::label,
    cstor::{CStorVolumeConfig, CStorVolumeReplica},
    naming::{parse_snapshot_id, snapshot_id},
    proto::csi::v1::{
        CreateSnapshotRequest, CreateSnapshotResponse, DeleteSnapshotRequest,
        DeleteSnapshotResponse, GetSnapshotRequest, GetSnapshotResponse, ListSnapshotsRequest,
        ListSnapshotsResponse, Snapshot, list_snapshots_response::Entry,
    },
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::ListParams;

use crate::{
    create::cvc_capacity,
    error::{KubeError, SnapshotError},
    params::{check_volume_name, snapshot_object_name},
    records::{self, CLONE_SNAPSHOT_PREFIX, SnapshotRecord},
    server::ControllerService,
    target::{SnapAction, TargetError},
};

/// Prefix of the pagination tokens ListSnapshots hands out (`after:<snapshot id>`).
const TOKEN_PREFIX: &str = "after:";

fn to_timestamp(t: &Time) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.0.as_second(),
        nanos: t.0.subsec_nanosecond(),
    }
}

fn snapshot_message(volume: &str, name: &str, creation: &Time, size: i64) -> Snapshot {
    Snapshot {
        size_bytes: size,
        snapshot_id: snapshot_id(volume, name),
        source_volume_id: volume.to_owned(),
        creation_time: Some(to_timestamp(creation)),
        ready_to_use: true,
        group_snapshot_id: String::new(),
    }
}

/// Snapshots the replicas of one volume report: name → earliest replica creation time.
fn replica_snapshots<'a>(
    cvrs: impl Iterator<Item = &'a CStorVolumeReplica>,
) -> BTreeMap<String, Option<Time>> {
    let mut out: BTreeMap<String, Option<Time>> = BTreeMap::new();
    for cvr in cvrs {
        let created = cvr.metadata.creation_timestamp.clone();
        for name in cvr
            .status
            .as_ref()
            .and_then(|s| s.snapshots.as_ref())
            .into_iter()
            .flat_map(|m| m.keys())
        {
            let slot = out.entry(name.clone()).or_insert_with(|| created.clone());
            if let (Some(cur), Some(c)) = (slot.as_ref(), created.as_ref())
                && c.0 < cur.0
            {
                *slot = Some(c.clone());
            }
        }
    }
    out
}

fn cvr_volume(cvr: &CStorVolumeReplica) -> &str {
    cvr.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(label::PERSISTENT_VOLUME))
        .map(String::as_str)
        .unwrap_or("")
}

/// The CSI snapshots of one volume from its record and its replicas (internal clone
/// snapshots and unconfirmed ones excluded).
fn volume_snapshot_list<'a>(
    cvc: &CStorVolumeConfig,
    recs: &records::Records,
    cvrs: impl Iterator<Item = &'a CStorVolumeReplica>,
) -> Vec<Snapshot> {
    let volume = cvc.metadata.name.as_deref().unwrap_or_default();
    let on_replicas = replica_snapshots(cvrs);
    let fallback_time = cvc
        .metadata
        .creation_timestamp
        .clone()
        .unwrap_or_else(records::now);
    let fallback_size = cvc_capacity(cvc).unwrap_or(0) as i64;
    let mut out = Vec::new();
    for (name, rec) in recs {
        if rec.clone_for.is_none() && (rec.ready || on_replicas.contains_key(name)) {
            out.push(snapshot_message(
                volume,
                name,
                &rec.creation_time,
                rec.size_bytes,
            ));
        }
    }
    for (name, created) in &on_replicas {
        if recs.contains_key(name) || name.starts_with(CLONE_SNAPSHOT_PREFIX) {
            continue;
        }
        let created = created.clone().unwrap_or_else(|| fallback_time.clone());
        out.push(snapshot_message(volume, name, &created, fallback_size));
    }
    out
}

impl ControllerService {
    /// CreateSnapshot.
    pub async fn create_snapshot(
        &self,
        req: CreateSnapshotRequest,
    ) -> Result<CreateSnapshotResponse, SnapshotError> {
        let (csi_name, source) = (req.name.as_str(), req.source_volume_id.as_str());
        if csi_name.is_empty() {
            return Err(SnapshotError::Missing("name"));
        }
        if source.is_empty() {
            return Err(SnapshotError::Missing("source_volume_id"));
        }
        let object =
            snapshot_object_name(csi_name).map_err(|reason| SnapshotError::InvalidName {
                name: csi_name.chars().take(64).collect(),
                reason,
            })?;
        let name = object.as_ref();
        let derived = (name != csi_name).then_some(csi_name);
        if check_volume_name(source).is_err() {
            return Err(SnapshotError::SourceNotFound(source.to_owned()));
        }
        let _token = self.guard().try_lock(source, "CreateSnapshot")?;
        let cvc = match self.get_cvc(source).await? {
            None => return Err(SnapshotError::SourceNotFound(source.to_owned())),
            Some(c) if c.metadata.deletion_timestamp.is_some() => {
                return Err(SnapshotError::SourceDeleting(source.to_owned()));
            }
            Some(c) => c,
        };
        let existing = self.record(&cvc, name).await?;
        if let Some(rec) = &existing
            && rec.csi_name(name) != csi_name
        {
            return Err(SnapshotError::AlreadyExists {
                name: name.to_owned(),
                volume: format!("{source} (taken for CSI name {:?})", rec.csi_name(name)),
            });
        }
        if let Some(rec) = existing.filter(|r| r.ready && r.clone_for.is_none()) {
            return Ok(CreateSnapshotResponse {
                snapshot: Some(snapshot_message(
                    source,
                    name,
                    &rec.creation_time,
                    rec.size_bytes,
                )),
            });
        }
        self.check_name_unique(source, name).await?;
        let rec = self.take_snapshot(cvc, name, None, derived).await?;
        tracing::info!(volume = source, snapshot = name, "snapshot created");
        Ok(CreateSnapshotResponse {
            snapshot: Some(snapshot_message(
                source,
                name,
                &rec.creation_time,
                rec.size_bytes,
            )),
        })
    }

    /// Refuses a snapshot name already used on another volume.
    async fn check_name_unique(&self, source: &str, name: &str) -> Result<(), SnapshotError> {
        if let Some(volume) = self
            .other_volumes_with(source, name)
            .await?
            .into_iter()
            .next()
        {
            return Err(SnapshotError::AlreadyExists {
                name: name.to_owned(),
                volume,
            });
        }
        let cvrs = self
            .cvrs()
            .list(&ListParams::default())
            .await
            .map_err(|e| KubeError::new("listing CStorVolumeReplicas", e))?;
        for cvr in &cvrs.items {
            let volume = cvr_volume(cvr);
            if volume != source
                && !volume.is_empty()
                && replica_snapshots(std::iter::once(cvr)).contains_key(name)
            {
                return Err(SnapshotError::AlreadyExists {
                    name: name.to_owned(),
                    volume: volume.to_owned(),
                });
            }
        }
        Ok(())
    }

    /// The replicas of `volume`.
    async fn volume_cvrs(&self, volume: &str) -> Result<Vec<CStorVolumeReplica>, KubeError> {
        let lp = ListParams::default().labels(&format!("{}={volume}", label::PERSISTENT_VOLUME));
        Ok(self
            .cvrs()
            .list(&lp)
            .await
            .map_err(|e| {
                KubeError::new(format!("listing CStorVolumeReplicas of volume {volume}"), e)
            })?
            .items)
    }

    /// The target IP of `volume`'s CStorVolume.
    async fn target_ip(&self, volume: &str) -> Result<String, SnapshotError> {
        let cv = self.cvs().get_opt(volume).await.map_err(|e| {
            KubeError::new(format!("reading CStorVolume {}/{volume}", self.ns()), e)
        })?;
        cv.and_then(|cv| cv.spec.target_ip)
            .filter(|ip| !ip.is_empty())
            .ok_or_else(|| SnapshotError::NoTarget(volume.to_owned()))
    }

    /// The size of snapshot `name` of the volume of `cvc` if it exists (recorded as ready,
    /// or reported by a replica).
    pub(crate) async fn known_snapshot(
        &self,
        cvc: &CStorVolumeConfig,
        name: &str,
    ) -> Result<Option<u64>, SnapshotError> {
        let volume = cvc.metadata.name.as_deref().unwrap_or_default();
        let rec = self.record(cvc, name).await?;
        if let Some(rec) = rec.as_ref().filter(|r| r.ready) {
            return Ok(Some(rec.size_bytes.max(0) as u64));
        }
        let cvrs = self.volume_cvrs(volume).await?;
        if replica_snapshots(cvrs.iter()).contains_key(name) {
            let size = rec
                .as_ref()
                .map(|r| r.size_bytes.max(0) as u64)
                .or_else(|| cvc_capacity(cvc));
            return Ok(Some(size.unwrap_or(0)));
        }
        Ok(None)
    }

    /// Takes snapshot `name` of the volume of `cvc` unless it is recorded as taken: records
    /// it as pending, runs SNAPCREATE on the target, records it as ready. A pending record
    /// left by an interrupted call is confirmed from the replicas' status instead of asking
    /// the target again.
    pub(crate) async fn take_snapshot(
        &self,
        cvc: CStorVolumeConfig,
        name: &str,
        clone_for: Option<&str>,
        csi_name: Option<&str>,
    ) -> Result<SnapshotRecord, SnapshotError> {
        let volume = cvc.metadata.name.clone().unwrap_or_default();
        let size = cvc_capacity(&cvc).unwrap_or(0) as i64;
        let fresh = SnapshotRecord {
            creation_time: records::now(),
            size_bytes: size,
            ready: false,
            clone_for: clone_for.map(str::to_owned),
            csi_name: csi_name.map(str::to_owned),
        };
        let rec = self.add_record(&cvc, name, fresh).await?;
        if rec.ready {
            return Ok(rec);
        }
        let on_replicas =
            replica_snapshots(self.volume_cvrs(&volume).await?.iter()).contains_key(name);
        if !on_replicas {
            let ip = match self.target_ip(&volume).await {
                Ok(ip) => ip,
                Err(e) => {
                    // Nothing was sent: forget the pending record.
                    if let Err(e2) = self.remove_record(cvc, name).await {
                        tracing::warn!(
                            volume,
                            snapshot = name,
                            "could not drop the pending snapshot record: {e2}"
                        );
                    }
                    return Err(e);
                }
            };
            self.target()
                .run(&ip, &volume, name, SnapAction::Create)
                .await?;
        }
        self.mark_ready(&cvc, name).await
    }

    /// DeleteSnapshot.
    pub async fn delete_snapshot(
        &self,
        req: DeleteSnapshotRequest,
    ) -> Result<DeleteSnapshotResponse, SnapshotError> {
        let id = req.snapshot_id.as_str();
        if id.is_empty() {
            return Err(SnapshotError::Missing("snapshot_id"));
        }
        let Ok((volume, name)) = parse_snapshot_id(id) else {
            tracing::info!(
                snapshot_id = id,
                "not a cStor snapshot id: nothing to delete"
            );
            return Ok(DeleteSnapshotResponse {});
        };
        let _token = self.guard().try_lock(volume, "DeleteSnapshot")?;
        let Some(cvc) = self.get_cvc(volume).await? else {
            tracing::info!(
                snapshot_id = id,
                "source volume is gone, and its snapshots with it"
            );
            return Ok(DeleteSnapshotResponse {});
        };
        let users: Vec<String> = self
            .dependents_of(volume)
            .await?
            .into_iter()
            .filter(|d| d.spec.cstor_volume_source.as_deref() == Some(id))
            .filter_map(|d| d.metadata.name)
            .collect();
        if !users.is_empty() {
            return Err(SnapshotError::InUse {
                id: id.to_owned(),
                volumes: users.join(", "),
            });
        }
        self.destroy_snapshot(cvc, name).await?;
        Ok(DeleteSnapshotResponse {})
    }

    /// CVCs restored or cloned from a snapshot of `volume`.
    pub(crate) async fn dependents_of(
        &self,
        volume: &str,
    ) -> Result<Vec<CStorVolumeConfig>, KubeError> {
        let lp = ListParams::default().labels(&format!("{}={volume}", label::SOURCE_VOLUME));
        Ok(self
            .cvcs()
            .list(&lp)
            .await
            .map_err(|e| KubeError::new(format!("listing volumes restored from {volume}"), e))?
            .items)
    }

    /// Destroys snapshot `name` of the volume of `cvc` on its target and drops its record.
    /// A refusal for a snapshot no replica reports counts as already gone.
    async fn destroy_snapshot(
        &self,
        cvc: CStorVolumeConfig,
        name: &str,
    ) -> Result<(), SnapshotError> {
        let volume = cvc.metadata.name.clone().unwrap_or_default();
        let on_replicas =
            replica_snapshots(self.volume_cvrs(&volume).await?.iter()).contains_key(name);
        match self.target_ip(&volume).await {
            Err(SnapshotError::NoTarget(_)) => {
                tracing::info!(
                    volume,
                    snapshot = name,
                    "volume has no target: nothing to destroy"
                );
            }
            Err(e) => return Err(e),
            Ok(ip) => match self
                .target()
                .run(&ip, &volume, name, SnapAction::Delete)
                .await
            {
                Ok(()) => {}
                Err(TargetError::Refused { reply, .. }) if !on_replicas => {
                    tracing::info!(
                        volume,
                        snapshot = name,
                        reply,
                        "target refused to destroy an unknown snapshot: treating it as gone"
                    );
                }
                Err(e) => return Err(e.into()),
            },
        }
        self.remove_record(cvc, name).await?;
        tracing::info!(volume, snapshot = name, "snapshot deleted");
        Ok(())
    }

    /// The CSI snapshots of one volume (none when it does not exist).
    async fn snapshots_of(&self, volume: &str) -> Result<Vec<Snapshot>, SnapshotError> {
        let Some(cvc) = self.get_cvc(volume).await? else {
            return Ok(Vec::new());
        };
        let recs = self.records_of(&cvc).await?;
        let cvrs = self.volume_cvrs(volume).await?;
        Ok(volume_snapshot_list(&cvc, &recs, cvrs.iter()))
    }

    /// The CSI snapshot `name` of `volume`, if it exists: one record read and the replicas.
    async fn snapshot_of(
        &self,
        volume: &str,
        name: &str,
    ) -> Result<Option<Snapshot>, SnapshotError> {
        let Some(cvc) = self.get_cvc(volume).await? else {
            return Ok(None);
        };
        let recs: records::Records = self
            .record(&cvc, name)
            .await?
            .map(|r| (name.to_owned(), r))
            .into_iter()
            .collect();
        let cvrs = self.volume_cvrs(volume).await?;
        Ok(volume_snapshot_list(&cvc, &recs, cvrs.iter())
            .into_iter()
            .find(|s| s.snapshot_id == snapshot_id(volume, name)))
    }

    /// Every CSI snapshot in the namespace.
    async fn all_snapshots(&self) -> Result<Vec<Snapshot>, SnapshotError> {
        let cvcs = self
            .cvcs()
            .list(&ListParams::default())
            .await
            .map_err(|e| KubeError::new("listing CStorVolumeConfigs", e))?;
        let cvrs = self
            .cvrs()
            .list(&ListParams::default())
            .await
            .map_err(|e| KubeError::new("listing CStorVolumeReplicas", e))?;
        let mut objects = self.all_record_objects().await?;
        let mut out = Vec::new();
        for cvc in &cvcs.items {
            let volume = cvc.metadata.name.as_deref().unwrap_or_default();
            let mut recs = records::read_legacy(cvc).unwrap_or_else(|e| {
                tracing::warn!(volume, "ignoring an unreadable legacy snapshot record: {e}");
                Default::default()
            });
            recs.extend(objects.remove(volume).unwrap_or_default());
            out.extend(volume_snapshot_list(
                cvc,
                &recs,
                cvrs.items.iter().filter(|r| cvr_volume(r) == volume),
            ));
        }
        Ok(out)
    }

    /// ListSnapshots: by id, by source volume or all, sorted by id, paginated.
    pub async fn list_snapshots(
        &self,
        req: ListSnapshotsRequest,
    ) -> Result<ListSnapshotsResponse, SnapshotError> {
        if req.max_entries < 0 {
            return Err(SnapshotError::MaxEntries(req.max_entries));
        }
        let after = match req.starting_token.as_str() {
            "" => None,
            t => Some(
                t.strip_prefix(TOKEN_PREFIX)
                    .ok_or_else(|| SnapshotError::Token(t.to_owned()))?
                    .to_owned(),
            ),
        };
        let mut all = if !req.snapshot_id.is_empty() {
            match parse_snapshot_id(&req.snapshot_id) {
                Ok((volume, name))
                    if req.source_volume_id.is_empty() || req.source_volume_id == volume =>
                {
                    self.snapshot_of(volume, name).await?.into_iter().collect()
                }
                _ => Vec::new(),
            }
        } else if !req.source_volume_id.is_empty() {
            self.snapshots_of(&req.source_volume_id).await?
        } else {
            self.all_snapshots().await?
        };
        all.sort_by(|a, b| a.snapshot_id.cmp(&b.snapshot_id));
        if let Some(after) = &after {
            all.retain(|s| s.snapshot_id.as_str() > after.as_str());
        }
        let limit = if req.max_entries == 0 {
            usize::MAX
        } else {
            req.max_entries as usize
        };
        let next_token = if all.len() > limit {
            format!("{TOKEN_PREFIX}{}", all[limit - 1].snapshot_id)
        } else {
            String::new()
        };
        all.truncate(limit);
        Ok(ListSnapshotsResponse {
            entries: all
                .into_iter()
                .map(|s| Entry { snapshot: Some(s) })
                .collect(),
            next_token,
        })
    }

    /// GetSnapshot.
    pub async fn get_snapshot(
        &self,
        req: GetSnapshotRequest,
    ) -> Result<GetSnapshotResponse, SnapshotError> {
        let id = req.snapshot_id.as_str();
        if id.is_empty() {
            return Err(SnapshotError::Missing("snapshot_id"));
        }
        let (volume, name) =
            parse_snapshot_id(id).map_err(|_| SnapshotError::NotFound(id.to_owned()))?;
        let found = self.snapshot_of(volume, name).await?;
        Ok(GetSnapshotResponse {
            snapshot: Some(found.ok_or_else(|| SnapshotError::NotFound(id.to_owned()))?),
        })
    }

    /// Destroys the internal snapshots of clones that no longer need them: the clone's CVC
    /// is gone (or being deleted) and no replica of the clone remains (ZFS keeps a clone's
    /// origin snapshot until the clone's zvol is destroyed). Only the snapshots of `source`
    /// when given, else of every volume. Returns how many were destroyed; volumes busy with
    /// another operation are skipped until the next sweep.
    pub async fn sweep_clone_snapshots(
        &self,
        source: Option<&str>,
    ) -> Result<usize, SnapshotError> {
        let cvcs = match source {
            Some(s) => self.get_cvc(s).await?.into_iter().collect(),
            None => {
                self.cvcs()
                    .list(&ListParams::default())
                    .await
                    .map_err(|e| KubeError::new("listing CStorVolumeConfigs", e))?
                    .items
            }
        };
        let mut clone_objects: BTreeMap<String, records::Records> = BTreeMap::new();
        for (volume, snap, rec) in self.clone_records().await? {
            clone_objects.entry(volume).or_default().insert(snap, rec);
        }
        let mut destroyed = 0;
        for cvc in cvcs {
            if cvc.metadata.deletion_timestamp.is_some() {
                continue; // destroying the source volume destroys its snapshots
            }
            let volume = cvc.metadata.name.clone().unwrap_or_default();
            let mut recs = records::read_legacy(&cvc).unwrap_or_default();
            recs.extend(clone_objects.remove(&volume).unwrap_or_default());
            for (snap, rec) in recs {
                let Some(clone) = rec.clone_for else { continue };
                let Ok(_token) = self
                    .guard()
                    .try_lock_all(&[&volume, &clone], "clone snapshot clean-up")
                else {
                    continue;
                };
                let clone_alive = self
                    .get_cvc(&clone)
                    .await?
                    .is_some_and(|c| c.metadata.deletion_timestamp.is_none());
                if clone_alive || !self.volume_cvrs(&clone).await?.is_empty() {
                    continue;
                }
                let Some(current) = self.get_cvc(&volume).await? else {
                    break;
                };
                self.destroy_snapshot(current, &snap).await?;
                tracing::info!(
                    volume,
                    snapshot = snap,
                    clone,
                    "destroyed the snapshot of a deleted clone"
                );
                destroyed += 1;
            }
        }
        Ok(destroyed)
    }

    /// Runs [`ControllerService::sweep_clone_snapshots`] for every volume every `every`
    /// (a housekeeping task, not a wait: errors are logged and retried at the next tick).
    pub fn spawn_clone_sweeper(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let svc = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match svc.sweep_clone_snapshots(None).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(destroyed = n, "clone snapshot sweep"),
                    Err(e) => tracing::warn!("clone snapshot sweep failed: {e}"),
                }
            }
        })
    }
}
