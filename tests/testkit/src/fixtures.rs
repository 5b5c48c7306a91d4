//! Small builders for test objects that are not tied to cStor's own types.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::discovery::ApiResource;
use serde_json::json;

use crate::resources::Scope;

/// A minimal custom resource definition for tests.
#[derive(Clone, Debug)]
pub struct CrdSpec {
    /// API group, e.g. `example.com`.
    pub group: String,
    /// Version served and stored, e.g. `v1`.
    pub version: String,
    /// Kind, e.g. `Widget`.
    pub kind: String,
    /// Plural, e.g. `widgets`.
    pub plural: String,
    /// Scope.
    pub scope: Scope,
    /// Whether the version has a `/status` subresource.
    pub status_subresource: bool,
    /// Short names.
    pub short_names: Vec<String>,
}

impl CrdSpec {
    /// A namespaced CRD without status subresource.
    pub fn new(group: &str, version: &str, kind: &str, plural: &str) -> Self {
        CrdSpec {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
            plural: plural.into(),
            scope: Scope::Namespaced,
            status_subresource: false,
            short_names: Vec::new(),
        }
    }

    /// Makes it cluster scoped.
    pub fn cluster_scoped(mut self) -> Self {
        self.scope = Scope::Cluster;
        self
    }

    /// Adds a `/status` subresource.
    pub fn with_status(mut self) -> Self {
        self.status_subresource = true;
        self
    }

    /// Sets the short names.
    pub fn short_names(mut self, names: &[&str]) -> Self {
        self.short_names = names.iter().map(|s| s.to_string()).collect();
        self
    }

    /// The CRD object (schema: any object, unknown fields preserved).
    pub fn crd(&self) -> CustomResourceDefinition {
        let mut version = json!({
            "name": self.version,
            "served": true,
            "storage": true,
            "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
        });
        if self.status_subresource {
            version["subresources"] = json!({"status": {}});
        }
        let scope = match self.scope {
            Scope::Namespaced => "Namespaced",
            Scope::Cluster => "Cluster",
        };
        serde_json::from_value(json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": format!("{}.{}", self.plural, self.group)},
            "spec": {
                "group": self.group,
                "scope": scope,
                "names": {
                    "kind": self.kind,
                    "plural": self.plural,
                    "singular": self.kind.to_ascii_lowercase(),
                    "shortNames": self.short_names,
                },
                "versions": [version],
            },
        }))
        .expect("the CRD built from a CrdSpec is a valid CustomResourceDefinition")
    }

    /// The `ApiResource` to use with `kube::Api::<DynamicObject>`.
    pub fn api_resource(&self) -> ApiResource {
        ApiResource {
            group: self.group.clone(),
            version: self.version.clone(),
            api_version: format!("{}/{}", self.group, self.version),
            kind: self.kind.clone(),
            plural: self.plural.clone(),
        }
    }
}
