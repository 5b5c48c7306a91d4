//! The version reconcile every controller runs before it touches an object (upstream
//! `reconcileVersion`): an object whose `versionDetails.status.current` differs from its
//! `desired` is moved to `desired` once both are valid for this binary (see
//! [`cstor_api::constants::version`]), through `ReconcileInProgress` to `Reconciled`. An invalid
//! version is recorded on the object (`status.message`, `status.reason`) and as a Warning
//! `FailedUpgrade` event, and the caller stops that sync.
//!
//! Used by the cspc-operator (CSPC), the cvc-operator (CVC), the pool-manager (CSPI and CVR)
//! and the volume-manager (CV). Every write is a JSON merge patch of `versionDetails` carrying
//! the `metadata.resourceVersion` it was computed from, so a concurrent write is never
//! overwritten: a 409 Conflict re-reads the object and starts over.

use std::fmt::Debug;

use cstor_api::{
    constants::version::{is_current_version_valid, is_desired_version_valid, same_release},
    cstor::{
        CStorPoolCluster, CStorPoolInstance, CStorVolume, CStorVolumeConfig, CStorVolumeReplica,
        VersionDetails, VersionState,
    },
};
use k8s_openapi::{
    NamespaceResourceScope, apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp,
};
use kube::{
    Api, Resource, ResourceExt,
    api::{Patch, PatchParams},
    runtime::events::EventType,
};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Value, json};

use crate::events::Events;

/// Event reason of a failed version reconcile.
pub const FAILED_UPGRADE: &str = "FailedUpgrade";

/// Writes attempted before a run of conflicts is reported as an error.
const CONFLICT_RETRIES: usize = 8;

/// An object that carries `versionDetails`.
pub trait Versioned:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    /// The kind in lower case, as upstream names it in messages (`cspc`, `cvr`).
    const KIND: &'static str;

    /// `versionDetails`, when present.
    fn version_details(&self) -> Option<&VersionDetails>;
}

macro_rules! versioned {
    ($ty:ty, $kind:literal, optional) => {
        impl Versioned for $ty {
            const KIND: &'static str = $kind;
            fn version_details(&self) -> Option<&VersionDetails> {
                self.version_details.as_ref()
            }
        }
    };
    ($ty:ty, $kind:literal, defaulted) => {
        impl Versioned for $ty {
            const KIND: &'static str = $kind;
            fn version_details(&self) -> Option<&VersionDetails> {
                Some(&self.version_details)
            }
        }
    };
}

versioned!(CStorPoolCluster, "cspc", optional);
versioned!(CStorPoolInstance, "cspi", optional);
versioned!(CStorVolume, "cv", optional);
versioned!(CStorVolumeReplica, "cvr", optional);
versioned!(CStorVolumeConfig, "cvc", defaulted);

/// `status.current` of an object (`""` when unset).
pub fn current<K: Versioned>(obj: &K) -> &str {
    obj.version_details()
        .map(VersionDetails::current)
        .unwrap_or("")
}

/// `desired` of an object (`""` when unset).
pub fn desired<K: Versioned>(obj: &K) -> &str {
    obj.version_details()
        .map(VersionDetails::desired)
        .unwrap_or("")
}

/// Upstream `ShouldReconcile`: an operator at `operator` works on an object only when the
/// object has no recorded version yet or is at the operator's release.
pub fn should_reconcile<K: Versioned>(obj: &K, operator: &str) -> bool {
    let current = current(obj);
    current.is_empty() || same_release(current, operator)
}

/// Why a version reconcile did not finish.
#[derive(Debug, thiserror::Error)]
pub enum VersionError {
    /// The object's current or desired version is not one this binary can reconcile; it is
    /// recorded on the object and in an event, and the sync must stop.
    #[error("{0}")]
    Invalid(String),
    /// An API call failed.
    #[error("version reconcile: {0}")]
    Kube(#[from] kube::Error),
    /// Every guarded write met a newer version of the object.
    #[error("{0}")]
    Conflicts(String),
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

fn now() -> Time {
    Time(Timestamp::now())
}

/// A merge patch of `versionDetails` guarded by the resourceVersion of `obj`.
async fn guarded_patch<K: Versioned>(
    api: &Api<K>,
    obj: &K,
    version_details: Value,
) -> Result<K, kube::Error> {
    let patch = json!({
        "metadata": {"resourceVersion": obj.resource_version()},
        "versionDetails": version_details,
    });
    api.patch(
        &obj.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
}

async fn reread<K: Versioned>(api: &Api<K>, obj: &K) -> Result<K, kube::Error> {
    api.get(&obj.name_any()).await
}

/// Fills in empty `versionDetails` (current = desired = `version`, dependents upgraded), as
/// the cspc- and cvc-operator do for objects written without them. Returns the written object,
/// or `None` when `status.current` was already set or the object is gone.
pub async fn populate<K: Versioned>(
    api: &Api<K>,
    obj: &K,
    version: &str,
) -> Result<Option<K>, VersionError> {
    let mut obj = obj.clone();
    for _ in 0..CONFLICT_RETRIES {
        if !current(&obj).is_empty() {
            return Ok(None);
        }
        let details =
            serde_json::to_value(VersionDetails::at(version)).expect("versionDetails serialises");
        match guarded_patch(api, &obj, details).await {
            Ok(written) => return Ok(Some(written)),
            // Gone: nothing to stamp.
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) if is_conflict(&e) => match reread(api, &obj).await {
                Ok(fresh) => obj = fresh,
                Err(e) if is_not_found(&e) => return Ok(None),
                Err(e) => return Err(e.into()),
            },
            Err(e) => return Err(e.into()),
        }
    }
    Err(conflicts(&obj))
}

fn conflicts<K: Versioned>(obj: &K) -> VersionError {
    VersionError::Conflicts(format!(
        "{} {}: versionDetails changed under {CONFLICT_RETRIES} writes in a row",
        K::KIND,
        obj.name_any()
    ))
}

/// The `versionDetails.status` fields a patch sets, with `null` for those to clear.
fn status_patch(
    state: &VersionState,
    current: Option<&str>,
    error: Option<(String, &str)>,
) -> Value {
    let mut status = json!({
        "state": state.as_str(),
        "lastUpdateTime": now(),
    });
    if let Some(c) = current {
        status["current"] = json!(c);
    }
    let (message, reason) = match error {
        Some((message, reason)) => (json!(message), json!(reason)),
        None => (Value::Null, Value::Null),
    };
    status["message"] = message;
    status["reason"] = reason;
    status
}

/// Upstream `reconcileVersion` on one object. When `current != desired`: both are checked
/// against `operator` (this binary's version), the state goes to `ReconcileInProgress`, then
/// `current = desired` and `Reconciled` (there are no upgrade hooks between the releases this
/// control plane knows). Returns the written object, or `None` when nothing was to do (the
/// versions agree, or the object is gone).
///
/// An invalid version publishes a Warning `FailedUpgrade`, records `status.message` ("Failed
/// to reconcile <kind> version") and `status.reason` (the error), and returns
/// [`VersionError::Invalid`]: the caller stops its sync.
pub async fn reconcile_version<K: Versioned>(
    api: &Api<K>,
    events: &Events,
    obj: &K,
    operator: &str,
) -> Result<Option<K>, VersionError> {
    let mut obj = obj.clone();
    let mut wrote = false;
    for _ in 0..CONFLICT_RETRIES {
        let (cur, want) = (current(&obj).to_owned(), desired(&obj).to_owned());
        if cur == want {
            return Ok(wrote.then_some(obj));
        }
        let invalid = if !is_current_version_valid(&cur, operator) {
            Some(format!("invalid current version {cur}"))
        } else if !is_desired_version_valid(&want, operator) {
            Some(format!("invalid desired version {want}"))
        } else {
            None
        };
        let result = match &invalid {
            Some(reason) => {
                let message = format!("Failed to reconcile {} version", K::KIND);
                let already = obj
                    .version_details()
                    .and_then(|v| v.status.as_ref())
                    .is_some_and(|s| {
                        s.reason.as_deref() == Some(reason.as_str())
                            && s.message.as_deref() == Some(message.as_str())
                    });
                if already {
                    Ok(obj.clone())
                } else {
                    let mut status = status_patch(
                        &VersionState::ReconcilePending,
                        None,
                        Some((message, reason.as_str())),
                    );
                    // Only the error is recorded: the state and its time stay.
                    if let Some(o) = status.as_object_mut() {
                        o.remove("state");
                        o.remove("lastUpdateTime");
                    }
                    guarded_patch(api, &obj, json!({ "status": status })).await
                }
            }
            None => {
                let in_progress = obj
                    .version_details()
                    .and_then(|v| v.status.as_ref())
                    .and_then(|s| s.state.as_ref())
                    == Some(&VersionState::ReconcileInProgress);
                let step = if in_progress {
                    Ok(obj.clone())
                } else {
                    guarded_patch(
                        api,
                        &obj,
                        json!({"status": {
                            "state": VersionState::ReconcileInProgress.as_str(),
                            "lastUpdateTime": now(),
                        }}),
                    )
                    .await
                };
                // No upgrade hook runs between the releases this binary handles.
                match step {
                    Ok(progressing) => {
                        let status = status_patch(&VersionState::Reconciled, Some(&want), None);
                        guarded_patch(api, &progressing, json!({ "status": status })).await
                    }
                    Err(e) => Err(e),
                }
            }
        };
        match (result, invalid) {
            (Ok(_), Some(reason)) => {
                events
                    .publish(
                        &obj,
                        EventType::Warning,
                        FAILED_UPGRADE,
                        "ReconcileVersion",
                        format!("Failed to upgrade {} to {want} version: {reason}", K::KIND),
                    )
                    .await;
                return Err(VersionError::Invalid(reason));
            }
            (Ok(written), None) => {
                tracing::info!(kind = K::KIND, name = %written.name_any(), from = %cur, to = %want, "version reconciled");
                obj = written;
                wrote = true;
            }
            // Gone: nothing to reconcile.
            (Err(e), _) if is_not_found(&e) => return Ok(None),
            (Err(e), _) if is_conflict(&e) => match reread(api, &obj).await {
                Ok(fresh) => obj = fresh,
                Err(e) if is_not_found(&e) => return Ok(None),
                Err(e) => return Err(e.into()),
            },
            (Err(e), _) => return Err(e.into()),
        }
    }
    Err(conflicts(&obj))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cvr(current: &str, desired: &str) -> CStorVolumeReplica {
        let mut cvr = CStorVolumeReplica::new("r", Default::default());
        let mut vd = VersionDetails::at(current);
        vd.desired = Some(desired.to_owned());
        cvr.version_details = Some(vd);
        cvr
    }

    #[test]
    fn gate_follows_the_release() {
        assert!(should_reconcile(&cvr("3.6.0", "3.6.0"), "3.6.0"));
        assert!(should_reconcile(&cvr("3.6.0-RC1", "3.6.0"), "3.6.0"));
        assert!(!should_reconcile(&cvr("3.5.0", "3.6.0"), "3.6.0"));
        let mut empty = cvr("3.6.0", "3.6.0");
        empty.version_details = None;
        assert!(should_reconcile(&empty, "3.6.0"));
    }

    #[test]
    fn status_patch_clears_the_error_on_success() {
        let p = status_patch(&VersionState::Reconciled, Some("3.6.0"), None);
        assert_eq!(p["current"], "3.6.0");
        assert_eq!(p["state"], "Reconciled");
        assert!(p["message"].is_null() && p.get("message").is_some());
        assert!(p["reason"].is_null() && p.get("reason").is_some());
    }
}
