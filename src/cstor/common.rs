//! Types shared by several cStor kinds.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::string_enum;

/// Unknown fields of an object level, kept verbatim (see the module docs).
pub type Extra = BTreeMap<String, Value>;

/// `versionDetails`: the top-level sibling of `spec`/`status` through which the operators
/// gate reconciliation on the object's version (upstream `VersionDetails`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VersionDetails {
    /// Whether the object is upgraded automatically when the operator is upgraded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_upgrade: Option<bool>,
    /// The version the object should be at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired: Option<String>,
    /// The version the object is at and the state of the last version reconcile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<VersionStatus>,
    /// Fields this version does not model.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

/// `versionDetails.status` (upstream `VersionStatus`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VersionStatus {
    /// Whether the objects this one depends on are upgraded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dependents_upgraded: Option<bool>,
    /// The version the object is at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    /// State of the version reconcile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<VersionState>,
    /// Human-readable message of the last version reconcile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Machine-readable reason of the last version reconcile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When the version state last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<Time>,
    /// Fields this version does not model.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

string_enum! {
    schema = open;
    /// `versionDetails.status.state`.
    pub enum VersionState {
        /// `current == desired`.
        Reconciled = "Reconciled",
        /// An upgrade hook is running.
        ReconcileInProgress = "ReconcileInProgress",
        /// An upgrade is waiting.
        ReconcilePending = "ReconcilePending",
    }
}

impl VersionDetails {
    /// The details a controller fills in when `versionDetails` is empty: current = desired =
    /// `version`, dependents upgraded.
    pub fn at(version: &str) -> Self {
        Self {
            desired: Some(version.to_owned()),
            status: Some(VersionStatus {
                current: Some(version.to_owned()),
                dependents_upgraded: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// `status.current`, or `""` when unset.
    pub fn current(&self) -> &str {
        self.status
            .as_ref()
            .and_then(|s| s.current.as_deref())
            .unwrap_or("")
    }

    /// `desired`, or `""` when unset.
    pub fn desired(&self) -> &str {
        self.desired.as_deref().unwrap_or("")
    }

    /// Whether neither a desired nor a current version is recorded.
    pub fn is_empty(&self) -> bool {
        self.desired().is_empty() && self.current().is_empty()
    }
}

string_enum! {
    schema = open;
    /// `status` of a Kubernetes-style condition.
    #[derive(Default)]
    pub enum ConditionStatus {
        /// The condition holds.
        True = "True",
        /// The condition does not hold.
        False = "False",
        /// Unknown.
        #[default]
        Unknown = "Unknown",
    }
}
