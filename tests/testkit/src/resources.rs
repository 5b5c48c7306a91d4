//! The resource registry: which group/version/plural the server serves, with its kind, scope and
//! whether it has a `/status` subresource.
//!
//! Built-in kinds are registered at start ([`builtin_resources`]); custom resources are learnt when a
//! `CustomResourceDefinition` is created (see [`crate::store`]) or registered by hand with
//! [`crate::TestApiServer::register`].

use std::collections::BTreeMap;

/// Whether objects of a resource live in a namespace or at cluster level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Objects live in a namespace (`/namespaces/<ns>/<plural>/<name>`).
    Namespaced,
    /// Objects live at cluster level (`/<plural>/<name>`).
    Cluster,
}

/// One served resource (one group/version/plural).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceDef {
    /// API group; empty for the core group.
    pub group: String,
    /// API version, e.g. `v1`.
    pub version: String,
    /// Kind, e.g. `ConfigMap`.
    pub kind: String,
    /// Plural resource name, e.g. `configmaps`.
    pub plural: String,
    /// Singular resource name, e.g. `configmap`.
    pub singular: String,
    /// Short names served by discovery, e.g. `cm`.
    pub short_names: Vec<String>,
    /// Categories served by discovery, e.g. `all`.
    pub categories: Vec<String>,
    /// Namespaced or cluster scoped.
    pub scope: Scope,
    /// `true` when the resource has a `/status` subresource: then the main endpoint ignores status
    /// changes and the `/status` endpoint ignores everything else.
    pub status_subresource: bool,
    /// `true` when creating an object drops the `status` the client sent (the real API does this for
    /// most built-in kinds with a status subresource and for custom resources with one).
    pub reset_status_on_create: bool,
    /// `true` for custom resources (served from a CRD): strategic merge patch is refused with 415.
    pub custom: bool,
    /// Name of the CRD that registered this resource, if any.
    pub crd_name: Option<String>,
}

impl ResourceDef {
    /// A resource without status subresource; use the builder methods to refine it.
    pub fn new(group: &str, version: &str, kind: &str, plural: &str, scope: Scope) -> Self {
        ResourceDef {
            group: group.to_string(),
            version: version.to_string(),
            kind: kind.to_string(),
            plural: plural.to_string(),
            singular: kind.to_ascii_lowercase(),
            short_names: Vec::new(),
            categories: Vec::new(),
            scope,
            status_subresource: false,
            reset_status_on_create: false,
            custom: false,
            crd_name: None,
        }
    }

    /// Adds a `/status` subresource whose content is dropped on create.
    pub fn with_status(mut self) -> Self {
        self.status_subresource = true;
        self.reset_status_on_create = true;
        self
    }

    /// Adds a `/status` subresource whose content is kept on create (Node, Namespace).
    pub fn with_status_kept_on_create(mut self) -> Self {
        self.status_subresource = true;
        self.reset_status_on_create = false;
        self
    }

    /// Sets the short names served by discovery.
    pub fn short_names(mut self, names: &[&str]) -> Self {
        self.short_names = names.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Sets the categories served by discovery.
    pub fn categories(mut self, names: &[&str]) -> Self {
        self.categories = names.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Sets the singular name (defaults to the lower-cased kind).
    pub fn singular(mut self, singular: &str) -> Self {
        self.singular = singular.to_string();
        self
    }

    /// Marks the resource as a custom resource (strategic merge patch refused with 415).
    pub fn custom(mut self) -> Self {
        self.custom = true;
        self
    }

    /// `true` when objects live in a namespace.
    pub fn namespaced(&self) -> bool {
        self.scope == Scope::Namespaced
    }

    /// `apiVersion` of the objects, e.g. `apps/v1` or `v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Kind of the list objects, e.g. `ConfigMapList`.
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// Group-qualified plural as the real API prints it in messages: `pods`, `deployments.apps`.
    pub fn qualified_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// Group-qualified kind as the real API prints it in `Invalid` messages: `Pod`, `Deployment.apps`.
    pub fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }
}

/// The set of served resources.
#[derive(Clone, Debug, Default)]
pub(crate) struct Registry {
    /// Keyed by (group, version, plural).
    defs: BTreeMap<(String, String, String), ResourceDef>,
}

impl Registry {
    pub(crate) fn with_builtins() -> Self {
        let mut reg = Registry::default();
        for def in builtin_resources() {
            reg.insert(def);
        }
        reg
    }

    pub(crate) fn insert(&mut self, def: ResourceDef) {
        self.defs.insert(
            (def.group.clone(), def.version.clone(), def.plural.clone()),
            def,
        );
    }

    /// Removes every resource registered by the named CRD.
    pub(crate) fn remove_crd(&mut self, crd_name: &str) {
        self.defs
            .retain(|_, d| d.crd_name.as_deref() != Some(crd_name));
    }

    pub(crate) fn get(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceDef> {
        self.defs
            .get(&(group.to_string(), version.to_string(), plural.to_string()))
    }

    pub(crate) fn all(&self) -> impl Iterator<Item = &ResourceDef> {
        self.defs.values()
    }

    /// Groups (other than core) with their versions, in registration-independent sorted order.
    pub(crate) fn groups(&self) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for d in self.defs.values() {
            let versions = out.entry(d.group.clone()).or_default();
            if !versions.contains(&d.version) {
                versions.push(d.version.clone());
            }
        }
        out
    }
}

/// The built-in kinds the cStor operators and CSI driver use.
pub fn builtin_resources() -> Vec<ResourceDef> {
    use Scope::{Cluster, Namespaced};
    vec![
        ResourceDef::new("", "v1", "Namespace", "namespaces", Cluster)
            .with_status_kept_on_create()
            .short_names(&["ns"]),
        ResourceDef::new("", "v1", "Node", "nodes", Cluster)
            .with_status_kept_on_create()
            .short_names(&["no"]),
        ResourceDef::new("", "v1", "Pod", "pods", Namespaced)
            .with_status()
            .short_names(&["po"])
            .categories(&["all"]),
        ResourceDef::new("", "v1", "Service", "services", Namespaced)
            .with_status()
            .short_names(&["svc"])
            .categories(&["all"]),
        ResourceDef::new("", "v1", "Event", "events", Namespaced).short_names(&["ev"]),
        ResourceDef::new("", "v1", "PersistentVolume", "persistentvolumes", Cluster)
            .with_status()
            .short_names(&["pv"]),
        ResourceDef::new(
            "",
            "v1",
            "PersistentVolumeClaim",
            "persistentvolumeclaims",
            Namespaced,
        )
        .with_status()
        .short_names(&["pvc"]),
        ResourceDef::new("", "v1", "Secret", "secrets", Namespaced),
        ResourceDef::new("", "v1", "ConfigMap", "configmaps", Namespaced).short_names(&["cm"]),
        ResourceDef::new("", "v1", "ServiceAccount", "serviceaccounts", Namespaced)
            .short_names(&["sa"]),
        ResourceDef::new("", "v1", "Endpoints", "endpoints", Namespaced).short_names(&["ep"]),
        ResourceDef::new("apps", "v1", "Deployment", "deployments", Namespaced)
            .with_status()
            .short_names(&["deploy"])
            .categories(&["all"]),
        ResourceDef::new("apps", "v1", "StatefulSet", "statefulsets", Namespaced)
            .with_status()
            .short_names(&["sts"])
            .categories(&["all"]),
        ResourceDef::new("apps", "v1", "DaemonSet", "daemonsets", Namespaced)
            .with_status()
            .short_names(&["ds"])
            .categories(&["all"]),
        ResourceDef::new("apps", "v1", "ReplicaSet", "replicasets", Namespaced)
            .with_status()
            .short_names(&["rs"])
            .categories(&["all"]),
        ResourceDef::new(
            "policy",
            "v1",
            "PodDisruptionBudget",
            "poddisruptionbudgets",
            Namespaced,
        )
        .with_status()
        .short_names(&["pdb"]),
        ResourceDef::new("coordination.k8s.io", "v1", "Lease", "leases", Namespaced),
        ResourceDef::new("events.k8s.io", "v1", "Event", "events", Namespaced).short_names(&["ev"]),
        ResourceDef::new("storage.k8s.io", "v1", "CSIDriver", "csidrivers", Cluster),
        ResourceDef::new("storage.k8s.io", "v1", "CSINode", "csinodes", Cluster),
        ResourceDef::new(
            "storage.k8s.io",
            "v1",
            "StorageClass",
            "storageclasses",
            Cluster,
        )
        .short_names(&["sc"]),
        ResourceDef::new(
            "storage.k8s.io",
            "v1",
            "VolumeAttachment",
            "volumeattachments",
            Cluster,
        )
        .with_status(),
        ResourceDef::new(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            Cluster,
        )
        .with_status()
        .short_names(&["crd", "crds"]),
        ResourceDef::new(
            "rbac.authorization.k8s.io",
            "v1",
            "Role",
            "roles",
            Namespaced,
        ),
        ResourceDef::new(
            "rbac.authorization.k8s.io",
            "v1",
            "RoleBinding",
            "rolebindings",
            Namespaced,
        ),
        ResourceDef::new(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRole",
            "clusterroles",
            Cluster,
        ),
        ResourceDef::new(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRoleBinding",
            "clusterrolebindings",
            Cluster,
        ),
    ]
}
