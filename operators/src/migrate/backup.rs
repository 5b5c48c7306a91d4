//! Legacy backup records (`openebs.io/v1alpha1` CStorBackup, CStorRestore,
//! CStorCompletedBackup) become `cstor.openebs.io/v1` ones: same name, namespace, labels (as
//! the caller rewrites them), spec in the v1 field names, status; then the legacy ones go.
//! Used by the pool migration (the records of a CStorPool, which become the CSPI's) and by
//! the CSPC upgrade (records an older pool-manager wrote for a CSPI), as upstream does in both.

use std::collections::BTreeMap;

use anyhow::Context as _;
use cstor_api::constants::group;
use kube::{
    Api, Client, ResourceExt,
    api::{ApiResource, DynamicObject, ListParams, PostParams},
};
use serde_json::{Value, json};

use super::{delete_if_present, is_conflict, legacy, list_or_empty};

/// How a legacy record's spec becomes a v1 one.
type SpecConversion = fn(&Value) -> Value;

/// The legacy kinds of backup records (same kind and plural in `cstor.openebs.io/v1`), and
/// how a legacy spec becomes a v1 one.
const KINDS: [(&str, &str, SpecConversion); 3] = [
    ("CStorBackup", "cstorbackups", backup_spec),
    ("CStorRestore", "cstorrestores", restore_spec),
    (
        "CStorCompletedBackup",
        "cstorcompletedbackups",
        completed_backup_spec,
    ),
];

/// Legacy `spec.name` is v1 `spec.backupName`.
fn backup_spec(legacy: &Value) -> Value {
    let mut spec = legacy.clone();
    if let Some(o) = spec.as_object_mut()
        && let Some(name) = o.remove("name")
    {
        o.insert("backupName".into(), name);
    }
    spec
}

fn restore_spec(legacy: &Value) -> Value {
    legacy.clone()
}

/// Legacy `prevSnapName` is v1 `lastSnapName`, legacy `snapName` is `secondLastSnapName` (as
/// upstream maps them).
fn completed_backup_spec(legacy: &Value) -> Value {
    let mut spec = backup_spec(legacy);
    if let Some(o) = spec.as_object_mut() {
        if let Some(v) = o.remove("prevSnapName") {
            o.insert("lastSnapName".into(), v);
        }
        if let Some(v) = o.remove("snapName") {
            o.insert("secondLastSnapName".into(), v);
        }
    }
    spec
}

/// Copies every legacy record of `namespace` matching `selector` to its v1 kind (labels
/// rewritten by `relabel`; a copy that already exists is left as it is), then deletes the
/// legacy records it copied. A legacy kind that is not served (a cluster that never had it)
/// has nothing to convert. Returns how many records were converted.
pub async fn convert_legacy_records(
    client: &Client,
    namespace: &str,
    selector: &str,
    relabel: impl Fn(&mut BTreeMap<String, String>),
) -> anyhow::Result<usize> {
    let mut converted = 0;
    for (kind, plural, convert) in KINDS {
        let old: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), namespace, &legacy(kind, plural));
        let records = list_or_empty(&old, &ListParams::default().labels(selector))
            .await
            .with_context(|| format!("list legacy {kind}s {selector}"))?;
        if records.is_empty() {
            continue;
        }
        let new: Api<DynamicObject> = Api::namespaced_with(
            client.clone(),
            namespace,
            &ApiResource {
                group: group::CSTOR.into(),
                version: group::CSTOR_VERSION.into(),
                api_version: group::CSTOR_API_VERSION.into(),
                kind: kind.into(),
                plural: plural.into(),
            },
        );
        for r in &records {
            let mut labels = r.labels().clone();
            relabel(&mut labels);
            let mut copy = json!({
                "apiVersion": group::CSTOR_API_VERSION, "kind": kind,
                "metadata": {"name": r.name_any(), "namespace": namespace, "labels": labels},
                "spec": convert(r.data.get("spec").unwrap_or(&Value::Null)),
            });
            if let Some(status) = r.data.get("status") {
                copy["status"] = status.clone();
            }
            let obj: DynamicObject = serde_json::from_value(copy)?;
            match new.create(&PostParams::default(), &obj).await {
                Ok(_) => {}
                Err(e) if is_conflict(&e) => {}
                Err(e) => {
                    return Err(e).with_context(|| format!("copying {kind} {}", r.name_any()));
                }
            }
        }
        for r in &records {
            delete_if_present(&old, &r.name_any())
                .await
                .with_context(|| format!("deleting legacy {kind} {}", r.name_any()))?;
            converted += 1;
        }
        tracing::info!(
            kind,
            selector,
            count = records.len(),
            "legacy records converted to v1"
        );
    }
    Ok(converted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_take_the_v1_field_names() {
        let legacy =
            json!({"name": "b1", "volumeName": "pv", "snapName": "s2", "prevSnapName": "s1"});
        assert_eq!(
            backup_spec(&legacy),
            json!({"backupName": "b1", "volumeName": "pv", "snapName": "s2", "prevSnapName": "s1"})
        );
        assert_eq!(
            completed_backup_spec(&legacy),
            json!({"backupName": "b1", "volumeName": "pv", "lastSnapName": "s1", "secondLastSnapName": "s2"})
        );
        assert_eq!(restore_spec(&legacy), legacy);
    }
}
