//! Our record of the snapshots CreateSnapshot took, kept on the source volume's CVC.
//!
//! See the crate docs ("Where snapshots are recorded"): annotation
//! [`SNAPSHOTS_ANNOTATION`] holds a JSON object `{"<snapshot name>": {creationTime, sizeBytes,
//! ready, cloneFor?}}`. The Go cvc-operator reads the CVC and writes it back whole, so the
//! annotation survives its updates; it ignores annotations it does not know.

use std::collections::BTreeMap;

use cstor_api::cstor::CStorVolumeConfig;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use serde::{Deserialize, Serialize};

use crate::{
    error::{KubeError, SnapshotError},
    server::ControllerService,
};

/// Annotation on a CVC holding the snapshots taken of that volume.
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

/// How many times an update is retried after write conflicts.
const UPDATE_ATTEMPTS: usize = 10;

impl ControllerService {
    /// Applies `change` to the records of `cvc` and writes them back (merge patch guarded by
    /// the resourceVersion; on a conflict the CVC is read again and `change` re-applied).
    /// Nothing is written when `change` leaves the records as they were. Returns `change`'s
    /// result and the CVC as written.
    pub(crate) async fn update_records<T>(
        &self,
        mut cvc: CStorVolumeConfig,
        mut change: impl FnMut(&mut Records) -> T,
    ) -> Result<(T, CStorVolumeConfig), SnapshotError> {
        let name = cvc.metadata.name.clone().unwrap_or_default();
        let api = self.cvcs();
        for _ in 0..UPDATE_ATTEMPTS {
            let before = read(&cvc)?;
            let mut records = before.clone();
            let out = change(&mut records);
            if records == before {
                return Ok((out, cvc));
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
                Ok(written) => return Ok((out, written)),
                Err(kube::Error::Api(s)) if s.is_conflict() => {
                    cvc = match api.get_opt(&name).await {
                        Ok(Some(c)) => c,
                        Ok(None) => return Err(SnapshotError::SourceNotFound(name)),
                        Err(e) => {
                            return Err(KubeError::new(
                                format!("re-reading CStorVolumeConfig {name}"),
                                e,
                            )
                            .into());
                        }
                    };
                }
                Err(kube::Error::Api(s)) if s.is_not_found() => {
                    return Err(SnapshotError::SourceNotFound(name));
                }
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
        assert_eq!(read(&cvc).unwrap(), records);
        cvc.metadata.annotations =
            Some([(SNAPSHOTS_ANNOTATION.to_string(), "{oops".to_string())].into());
        assert!(
            read(&cvc)
                .unwrap_err()
                .to_string()
                .contains("fix or remove it")
        );
    }
}
