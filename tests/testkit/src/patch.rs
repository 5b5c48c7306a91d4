//! PATCH bodies, chosen by `Content-Type`:
//!
//! - `application/merge-patch+json`: RFC 7386 JSON merge patch.
//! - `application/json-patch+json`: RFC 6902 JSON patch. A failing `test` operation, or an operation
//!   on a path that does not exist, answers 422 `Invalid`; like the real API server, a `test` for
//!   `null` on a missing path passes.
//! - `application/strategic-merge-patch+json`: refused with 415 for custom resources, as the real
//!   API does. For built-in kinds it is **approximated by a JSON merge patch**: lists are replaced
//!   whole instead of merged by their patch merge key (e.g. containers by `name`), and `$patch`,
//!   `$retainKeys`, `$setElementOrder` directives are not understood.
//! - `application/apply-patch+yaml`: server-side apply. `fieldManager` is required (400 without).
//!   When the object does not exist it is created from the applied configuration; otherwise the
//!   configuration is merged into the live object with JSON-merge rules (maps merged recursively,
//!   lists replaced, `null` removes a field), and a `managedFields` entry with
//!   `operation: Apply` is recorded for the manager.
//!
//!   What server-side apply does **not** model: field ownership (`fieldsV1` stays empty), so there
//!   are never apply conflicts and `force` changes nothing; fields a manager applied before and
//!   omits now are not removed; list merge by `x-kubernetes-list-type: map` keys; defaulting and
//!   schema pruning.

use serde_json::{Value, json};

use crate::{
    resources::ResourceDef,
    status::ApiError,
    store::{meta_mut, meta_str, now},
};

/// The patch types the server understands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PatchKind {
    Merge,
    Json,
    Strategic,
    Apply { manager: String },
}

/// Picks the patch type from `Content-Type` and the `fieldManager` query parameter.
pub(crate) fn patch_kind(
    content_type: &str,
    field_manager: Option<&str>,
) -> Result<PatchKind, ApiError> {
    let ct = content_type.split(';').next().unwrap_or_default().trim();
    match ct {
        "application/merge-patch+json" => Ok(PatchKind::Merge),
        "application/json-patch+json" => Ok(PatchKind::Json),
        "application/strategic-merge-patch+json" => Ok(PatchKind::Strategic),
        "application/apply-patch+yaml" | "application/apply-patch+json" => match field_manager {
            Some(m) if !m.is_empty() => Ok(PatchKind::Apply {
                manager: m.to_string(),
            }),
            _ => Err(ApiError::bad_request(
                "PATCH requests with apply-patch content type must include fieldManager: add ?fieldManager=<name>",
            )),
        },
        other => Err(ApiError::unsupported_media_type(other)),
    }
}

fn decode_json(body: &[u8], what: &str) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding {what} patch: {e}")))
}

/// Parses a server-side apply body (YAML or JSON) and checks apiVersion/kind/name.
pub(crate) fn apply_body(def: &ResourceDef, name: &str, body: &[u8]) -> Result<Value, ApiError> {
    let v: Value = serde_yaml::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!("error decoding YAML apply configuration: {e}"))
    })?;
    if !v.is_object() {
        return Err(ApiError::bad_request(
            "the apply configuration must be a YAML/JSON object",
        ));
    }
    let api_version = v
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let kind = v.get("kind").and_then(Value::as_str).unwrap_or_default();
    if api_version.is_empty() || kind.is_empty() {
        return Err(ApiError::bad_request(format!(
            "the apply configuration must set apiVersion and kind (expected apiVersion {:?}, kind {:?})",
            def.api_version(),
            def.kind
        )));
    }
    if let Some(n) = meta_str(&v, "name")
        && n != name
    {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({n}) does not match the name on the URL ({name})"
        )));
    }
    Ok(v)
}

/// Applies a merge, JSON or (approximated) strategic patch to `current`.
pub(crate) fn apply_patch(
    def: &ResourceDef,
    current: &Value,
    kind: &PatchKind,
    body: &[u8],
) -> Result<Value, ApiError> {
    let mut doc = current.clone();
    match kind {
        PatchKind::Merge => json_patch::merge(&mut doc, &decode_json(body, "merge")?),
        PatchKind::Strategic => {
            if def.custom {
                return Err(ApiError::unsupported_media_type(
                    "application/strategic-merge-patch+json",
                ));
            }
            json_patch::merge(&mut doc, &decode_json(body, "strategic merge")?)
        }
        PatchKind::Json => {
            let ops: json_patch::Patch = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding JSON patch: {e}")))?;
            // Applied one operation at a time so that, as in the real API server (evanphx
            // json-patch), a `test` for `null` passes on a path that does not exist — kube's
            // finalizer helper relies on that when it adds the first finalizer.
            for (i, op) in ops.0.iter().enumerate() {
                if let json_patch::PatchOperation::Test(t) = op
                    && t.value.is_null()
                    && doc.pointer(t.path.as_str()).is_none()
                {
                    continue;
                }
                json_patch::patch(&mut doc, std::slice::from_ref(op)).map_err(|e| {
                    ApiError::unprocessable_patch(format!(
                        "the server rejected our request due to an error in our request: JSON patch operation {i} failed: {}",
                        e.kind
                    ))
                })?;
            }
        }
        PatchKind::Apply { .. } => {
            let applied = apply_body(def, meta_str(current, "name").unwrap_or_default(), body)?;
            json_patch::merge(&mut doc, &strip_apply_meta(applied));
        }
    }
    Ok(doc)
}

/// Removes the metadata fields an apply configuration must not set on the live object.
pub(crate) fn strip_apply_meta(mut applied: Value) -> Value {
    let m = meta_mut(&mut applied);
    for f in [
        "managedFields",
        "uid",
        "creationTimestamp",
        "generation",
        "deletionTimestamp",
    ] {
        m.remove(f);
    }
    applied
}

/// Records (or refreshes) the manager's `Apply` entry in `metadata.managedFields`.
pub(crate) fn record_apply_manager(
    def: &ResourceDef,
    obj: &mut Value,
    manager: &str,
    status: bool,
) {
    let sub = if status { Some("status") } else { None };
    let m = meta_mut(obj);
    let mut fields: Vec<Value> = m
        .get("managedFields")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    fields.retain(|f| {
        !(f["manager"] == manager
            && f["operation"] == "Apply"
            && f.get("subresource").and_then(Value::as_str) == sub)
    });
    let mut entry = json!({
        "manager": manager,
        "operation": "Apply",
        "apiVersion": def.api_version(),
        "time": now(),
        "fieldsType": "FieldsV1",
        "fieldsV1": {},
    });
    if let Some(s) = sub {
        entry["subresource"] = json!(s);
    }
    fields.push(entry);
    m.insert("managedFields".into(), json!(fields));
}
