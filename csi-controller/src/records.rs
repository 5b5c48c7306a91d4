//! Our record of the snapshots CreateSnapshot took: one `CStorSnapshotRecord` object per
//! snapshot (see `cstor_api::cstor::CStorSnapshotRecord`), named `<volume>.<digest of the
//! snapshot name>`, labelled with its volume and the digest, owned by the source CVC. Reading
//! one snapshot is one GET, recording one is one create and one patch, and nothing rewrites
//! the CVC, so a volume can hold any number of snapshots.
//!
//! Earlier versions kept the records in one CVC annotation ([`SNAPSHOTS_ANNOTATION`], a JSON
//! object `{"<snapshot name>": {creationTime, sizeBytes, ready, cloneFor?}}`); those records
//! are still read (an object of the same snapshot wins) and dropped from the annotation when
//! their snapshot is deleted.

use std::collections::BTreeMap;

use cstor_api::{
    constants::label,
    cstor::{CStorSnapshotRecord, CStorSnapshotRecordSpec, CStorVolumeConfig},
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{
    Api, Resource,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
};
use serde::{Deserialize, Serialize};

use crate::{
    error::{KubeError, SnapshotError},
    server::ControllerService,
};

/// The CVC annotation earlier versions kept the records in (read, never written but to drop
/// an entry).
pub const SNAPSHOTS_ANNOTATION: &str = "cstor.openebs.io/snapshots";

/// Prefix of the internal snapshot a PVC→PVC clone is made from: `cstor-clone-<clone pv>`.
/// CSI snapshot names (`snapshot-<uid>` from external-snapshotter) never start with it, and
/// CreateSnapshot refuses names that do.
pub const CLONE_SNAPSHOT_PREFIX: &str = "cstor-clone-";

/// Name of the internal snapshot a clone `clone_pv` is created from.
pub fn clone_snapshot_name(clone_pv: &str) -> String {
    format!("{CLONE_SNAPSHOT_PREFIX}{clone_pv}")
}

/// One snapshot of a volume.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotRecord {
    /// When CreateSnapshot first asked for it (whole seconds).
    pub creation_time: Time,
    /// Size of the source volume when the snapshot was taken (the smallest restore).
    pub size_bytes: i64,
    /// `false` while the target has not confirmed the snapshot.
    #[serde(default)]
    pub ready: bool,
    /// For internal clone snapshots: the clone volume that needs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clone_for: Option<String>,
    /// The CSI name, when the snapshot carries a name derived from it (see
    /// `params::snapshot_object_name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csi_name: Option<String>,
}

impl SnapshotRecord {
    /// The CSI name this record was created for, `key` being its name in the records.
    pub fn csi_name<'a>(&'a self, key: &'a str) -> &'a str {
        self.csi_name.as_deref().unwrap_or(key)
    }
}

/// Snapshot name → record.
pub type Records = BTreeMap<String, SnapshotRecord>;

/// Reads the records of `cvc` (none when the annotation is absent).
pub fn read(cvc: &CStorVolumeConfig) -> Result<Records, SnapshotError> {
    let name = cvc.metadata.name.as_deref().unwrap_or_default();
    match cvc.metadata.annotations.as_ref().and_then(|a| a.get(SNAPSHOTS_ANNOTATION)) {
        None => Ok(Records::new()),
        Some(text) if text.trim().is_empty() => Ok(Records::new()),
        Some(text) => serde_json::from_str(text).map_err(|e| {
            SnapshotError::Record(format!(
                "annotation {SNAPSHOTS_ANNOTATION} on CStorVolumeConfig {name} is not a valid snapshot record ({e}); \
                 fix or remove it"
            ))
        }),
    }
}

/// The current time truncated to whole seconds (the precision a record keeps).
pub fn now() -> Time {
    let secs = k8s_openapi::jiff::Timestamp::now().as_second();
    Time(
        k8s_openapi::jiff::Timestamp::from_second(secs)
            .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
    )
}

/// How many times an update of the legacy annotation is retried after write conflicts.
const UPDATE_ATTEMPTS: usize = 10;

/// Label of a record: the digest of its snapshot name (finds a name on any volume).
pub const SNAPSHOT_DIGEST_LABEL: &str = "cstor.openebs.io/snapshot-digest";
/// Label of an internal clone snapshot's record: the clone volume it was taken for.
pub const CLONE_FOR_LABEL: &str = "cstor.openebs.io/clone-for";
/// Records listed per API request.
const PAGE: u32 = 500;

/// 32 hex digits naming snapshot `snapshot` in object names and labels.
pub fn snapshot_digest(snapshot: &str) -> String {
    cstor_api::naming::name_digest(snapshot)
}

/// Name of the record object of snapshot `snapshot` of `volume`: `<volume>.<digest>` (two
/// DNS labels, each within 63 characters).
pub fn record_name(volume: &str, snapshot: &str) -> String {
    format!("{volume}.{}", snapshot_digest(snapshot))
}

impl SnapshotRecord {
    fn from_object(o: &CStorSnapshotRecord) -> SnapshotRecord {
        SnapshotRecord {
            creation_time: o
                .spec
                .creation_time
                .clone()
                .or_else(|| o.metadata.creation_timestamp.clone())
                .unwrap_or_else(now),
            size_bytes: o.spec.size_bytes,
            ready: o.spec.ready,
            clone_for: o.spec.clone_for.clone(),
            csi_name: o.spec.csi_name.clone(),
        }
    }
}

/// The CVC's legacy annotation records (none when the annotation is absent).
pub fn read_legacy(cvc: &CStorVolumeConfig) -> Result<Records, SnapshotError> {
    let name = cvc.metadata.name.as_deref().unwrap_or_default();
    match cvc.metadata.annotations.as_ref().and_then(|a| a.get(SNAPSHOTS_ANNOTATION)) {
        None => Ok(Records::new()),
        Some(text) if text.trim().is_empty() => Ok(Records::new()),
        Some(text) => serde_json::from_str(text).map_err(|e| {
            SnapshotError::Record(format!(
                "annotation {SNAPSHOTS_ANNOTATION} on CStorVolumeConfig {name} is not a valid snapshot record ({e}); \
                 fix or remove it"
            ))
        }),
    }
}

fn list_err(what: String) -> impl FnOnce(kube::Error) -> SnapshotError {
    move |e| KubeError::new(what, e).into()
}

impl ControllerService {
    pub(crate) fn records(&self) -> Api<CStorSnapshotRecord> {
        Api::namespaced(self.kube_client(), self.ns())
    }

    /// Every record object matching `selector` (paged).
    async fn list_records(
        &self,
        selector: &str,
    ) -> Result<Vec<CStorSnapshotRecord>, SnapshotError> {
        let mut out = Vec::new();
        let mut lp = ListParams::default().labels(selector).limit(PAGE);
        loop {
            let page = self.records().list(&lp).await.map_err(list_err(format!(
                "listing CStorSnapshotRecords ({selector})"
            )))?;
            out.extend(page.items);
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(c) => lp = lp.continue_token(&c),
                None => return Ok(out),
            }
        }
    }

    /// The records of the volume of `cvc`: its objects and its legacy annotation.
    pub(crate) async fn records_of(
        &self,
        cvc: &CStorVolumeConfig,
    ) -> Result<Records, SnapshotError> {
        let volume = cvc.metadata.name.as_deref().unwrap_or_default();
        let mut recs = read_legacy(cvc)?;
        for o in self
            .list_records(&format!("{}={volume}", label::PERSISTENT_VOLUME))
            .await?
        {
            recs.insert(o.spec.snapshot.clone(), SnapshotRecord::from_object(&o));
        }
        Ok(recs)
    }

    /// Every record object in the namespace, by volume.
    pub(crate) async fn all_record_objects(
        &self,
    ) -> Result<BTreeMap<String, Records>, SnapshotError> {
        let mut out: BTreeMap<String, Records> = BTreeMap::new();
        for o in self.list_records(label::PERSISTENT_VOLUME).await? {
            out.entry(o.spec.volume.clone())
                .or_default()
                .insert(o.spec.snapshot.clone(), SnapshotRecord::from_object(&o));
        }
        Ok(out)
    }

    /// The internal clone snapshots' record objects: (volume, snapshot, record).
    pub(crate) async fn clone_records(
        &self,
    ) -> Result<Vec<(String, String, SnapshotRecord)>, SnapshotError> {
        Ok(self
            .list_records(CLONE_FOR_LABEL)
            .await?
            .iter()
            .map(|o| {
                (
                    o.spec.volume.clone(),
                    o.spec.snapshot.clone(),
                    SnapshotRecord::from_object(o),
                )
            })
            .collect())
    }

    /// The volumes other than `volume` with a record of snapshot `snapshot`.
    pub(crate) async fn other_volumes_with(
        &self,
        volume: &str,
        snapshot: &str,
    ) -> Result<Vec<String>, SnapshotError> {
        Ok(self
            .list_records(&format!(
                "{SNAPSHOT_DIGEST_LABEL}={}",
                snapshot_digest(snapshot)
            ))
            .await?
            .into_iter()
            .filter(|o| o.spec.snapshot == snapshot && o.spec.volume != volume)
            .map(|o| o.spec.volume)
            .collect())
    }

    /// The record of snapshot `snapshot` of the volume of `cvc` (its object, else the legacy
    /// annotation's entry).
    pub(crate) async fn record(
        &self,
        cvc: &CStorVolumeConfig,
        snapshot: &str,
    ) -> Result<Option<SnapshotRecord>, SnapshotError> {
        let volume = cvc.metadata.name.as_deref().unwrap_or_default();
        let name = record_name(volume, snapshot);
        match self.records().get_opt(&name).await {
            Ok(Some(o)) if o.spec.snapshot == snapshot => Ok(Some(SnapshotRecord::from_object(&o))),
            Ok(_) => Ok(read_legacy(cvc)?.remove(snapshot)),
            Err(e) => Err(KubeError::new(format!("reading CStorSnapshotRecord {name}"), e).into()),
        }
    }

    /// Records `rec` for snapshot `snapshot` of the volume of `cvc` unless a record exists;
    /// returns the record in place.
    pub(crate) async fn add_record(
        &self,
        cvc: &CStorVolumeConfig,
        snapshot: &str,
        rec: SnapshotRecord,
    ) -> Result<SnapshotRecord, SnapshotError> {
        if let Some(existing) = self.record(cvc, snapshot).await? {
            return Ok(existing);
        }
        let volume = cvc.metadata.name.clone().unwrap_or_default();
        let name = record_name(&volume, snapshot);
        let mut labels = BTreeMap::from([
            (label::PERSISTENT_VOLUME.to_owned(), volume.clone()),
            (SNAPSHOT_DIGEST_LABEL.to_owned(), snapshot_digest(snapshot)),
        ]);
        if let Some(clone) = &rec.clone_for {
            labels.insert(CLONE_FOR_LABEL.to_owned(), clone.clone());
        }
        let mut obj = CStorSnapshotRecord::namespaced(
            &name,
            self.ns(),
            CStorSnapshotRecordSpec {
                volume: volume.clone(),
                snapshot: snapshot.to_owned(),
                csi_name: rec.csi_name.clone(),
                creation_time: Some(rec.creation_time.clone()),
                size_bytes: rec.size_bytes,
                ready: rec.ready,
                clone_for: rec.clone_for.clone(),
                ..Default::default()
            },
        );
        obj.metadata.labels = Some(labels);
        obj.metadata.owner_references = cvc.controller_owner_ref(&()).map(|mut r| {
            r.controller = Some(false);
            r.block_owner_deletion = Some(false);
            vec![r]
        });
        match self.records().create(&PostParams::default(), &obj).await {
            Ok(o) => Ok(SnapshotRecord::from_object(&o)),
            Err(kube::Error::Api(s)) if s.is_already_exists() => self
                .record(cvc, snapshot)
                .await?
                .ok_or_else(|| {
                    SnapshotError::Record(format!(
                        "the record of snapshot {volume}@{snapshot} was deleted while it was created; retry"
                    ))
                }),
            Err(e) => Err(KubeError::new(format!("creating CStorSnapshotRecord {name}"), e).into()),
        }
    }

    /// Marks the record of snapshot `snapshot` of the volume of `cvc` ready (a legacy record
    /// gets its object); returns it.
    pub(crate) async fn mark_ready(
        &self,
        cvc: &CStorVolumeConfig,
        snapshot: &str,
    ) -> Result<SnapshotRecord, SnapshotError> {
        let volume = cvc.metadata.name.clone().unwrap_or_default();
        let name = record_name(&volume, snapshot);
        let patch = serde_json::json!({ "spec": { "ready": true } });
        match self
            .records()
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(o) => Ok(SnapshotRecord::from_object(&o)),
            Err(kube::Error::Api(s)) if s.is_not_found() => {
                let Some(mut rec) = read_legacy(cvc)?.remove(snapshot) else {
                    return Err(SnapshotError::Record(format!(
                        "the record of snapshot {volume}@{snapshot} vanished while it was taken; retry"
                    )));
                };
                rec.ready = true;
                let rec = self.add_record(cvc, snapshot, rec).await?;
                if rec.ready {
                    Ok(rec)
                } else {
                    Box::pin(self.mark_ready(cvc, snapshot)).await
                }
            }
            Err(e) => {
                Err(KubeError::new(format!("marking CStorSnapshotRecord {name} ready"), e).into())
            }
        }
    }

    /// Drops the record of snapshot `snapshot` of the volume of `cvc` (object and legacy
    /// entry); an absent record is fine.
    pub(crate) async fn remove_record(
        &self,
        cvc: CStorVolumeConfig,
        snapshot: &str,
    ) -> Result<(), SnapshotError> {
        let volume = cvc.metadata.name.clone().unwrap_or_default();
        let name = record_name(&volume, snapshot);
        match self.records().delete(&name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.is_not_found() => {}
            Err(e) => {
                return Err(
                    KubeError::new(format!("deleting CStorSnapshotRecord {name}"), e).into(),
                );
            }
        }
        if read_legacy(&cvc)?.contains_key(snapshot) {
            self.update_legacy(cvc, |r| {
                r.remove(snapshot);
            })
            .await?;
        }
        Ok(())
    }

    /// Drops every record of `volume` (DeleteVolume: its snapshots go with its replicas).
    pub(crate) async fn remove_records_of(&self, volume: &str) -> Result<(), SnapshotError> {
        let lp = ListParams::default().labels(&format!("{}={volume}", label::PERSISTENT_VOLUME));
        self.records()
            .delete_collection(&DeleteParams::default(), &lp)
            .await
            .map(|_| ())
            .map_err(list_err(format!(
                "deleting the CStorSnapshotRecords of volume {volume}"
            )))
    }

    /// Applies `change` to the legacy annotation records of `cvc` and writes them back (merge
    /// patch guarded by the resourceVersion; on a conflict the CVC is read again).
    async fn update_legacy(
        &self,
        mut cvc: CStorVolumeConfig,
        mut change: impl FnMut(&mut Records),
    ) -> Result<(), SnapshotError> {
        let name = cvc.metadata.name.clone().unwrap_or_default();
        let api = self.cvcs();
        for _ in 0..UPDATE_ATTEMPTS {
            let before = read_legacy(&cvc)?;
            let mut records = before.clone();
            change(&mut records);
            if records == before {
                return Ok(());
            }
            let value = if records.is_empty() {
                serde_json::Value::Null
            } else {
                serde_json::Value::String(
                    serde_json::to_string(&records).expect("records serialize"),
                )
            };
            let patch = serde_json::json!({
                "metadata": {
                    "resourceVersion": cvc.metadata.resource_version,
                    "annotations": { SNAPSHOTS_ANNOTATION: value },
                }
            });
            match api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(s)) if s.is_conflict() => {
                    cvc = match api.get_opt(&name).await {
                        Ok(Some(c)) => c,
                        Ok(None) => return Ok(()),
                        Err(e) => {
                            return Err(KubeError::new(
                                format!("re-reading CStorVolumeConfig {name}"),
                                e,
                            )
                            .into());
                        }
                    };
                }
                Err(kube::Error::Api(s)) if s.is_not_found() => return Ok(()),
                Err(e) => {
                    return Err(KubeError::new(
                        format!("writing snapshot records to CStorVolumeConfig {name}"),
                        e,
                    )
                    .into());
                }
            }
        }
        Err(SnapshotError::Record(format!(
            "CStorVolumeConfig {name} kept changing while its snapshot records were written ({UPDATE_ATTEMPTS} conflicts); retry"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_the_annotation() {
        let mut records = Records::new();
        records.insert(
            "snap-1".into(),
            SnapshotRecord {
                creation_time: now(),
                size_bytes: 1 << 30,
                ready: true,
                clone_for: None,
                csi_name: None,
            },
        );
        let text = serde_json::to_string(&records).unwrap();
        assert!(
            text.contains("\"creationTime\"") && text.contains("\"sizeBytes\":1073741824"),
            "{text}"
        );
        let mut cvc = CStorVolumeConfig::new("pvc-1", Default::default());
        cvc.metadata.annotations = Some([(SNAPSHOTS_ANNOTATION.to_string(), text)].into());
        assert_eq!(read_legacy(&cvc).unwrap(), records);
        cvc.metadata.annotations =
            Some([(SNAPSHOTS_ANNOTATION.to_string(), "{oops".to_string())].into());
        assert!(
            read_legacy(&cvc)
                .unwrap_err()
                .to_string()
                .contains("fix or remove it")
        );
    }
}
