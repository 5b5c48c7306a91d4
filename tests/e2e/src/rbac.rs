//! The RBAC in `deploy/` checked against what the components really did: on the in-process API
//! server every component runs with a client of its own (`TestApiServer::client_as`), so each
//! request is recorded under the ServiceAccount the component runs as in a cluster. Every call
//! must be allowed by the Roles and ClusterRoles bound to that ServiceAccount (a namespaced call
//! by either, a cluster-wide one only by a ClusterRole).

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use cstor_testkit::ApiCall;
use serde_json::Value;

/// (group, resource, verb) granted to a ServiceAccount, split by where it applies.
#[derive(Debug, Default)]
pub struct Grants {
    /// From ClusterRoles: allowed everywhere.
    pub cluster: BTreeSet<(String, String, String)>,
    /// From Roles: allowed inside a namespace.
    pub namespaced: BTreeSet<(String, String, String)>,
}

fn rbac_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/base/rbac")
}

fn docs() -> Vec<Value> {
    let mut out = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(rbac_dir())
        .expect("deploy/base/rbac")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    for f in files {
        let text = std::fs::read_to_string(&f).expect("read RBAC file");
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v: Value = serde::Deserialize::deserialize(doc).expect("RBAC YAML");
            if !v.is_null() {
                out.push(v);
            }
        }
    }
    out
}

fn rules(role: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for r in role["rules"].as_array().into_iter().flatten() {
        let strs = |k: &str| -> Vec<String> {
            r[k].as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        };
        for g in strs("apiGroups") {
            for res in strs("resources") {
                for v in strs("verbs") {
                    out.push((g.clone(), res.clone(), v));
                }
            }
        }
    }
    out
}

/// What `deploy/base/rbac` grants each ServiceAccount.
pub fn grants() -> BTreeMap<String, Grants> {
    let docs = docs();
    let role = |kind: &str, name: &str| {
        docs.iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .map(rules)
            .unwrap_or_default()
    };
    let mut out: BTreeMap<String, Grants> = BTreeMap::new();
    for b in docs
        .iter()
        .filter(|d| d["kind"] == "RoleBinding" || d["kind"] == "ClusterRoleBinding")
    {
        let kind = b["roleRef"]["kind"].as_str().unwrap_or_default();
        let name = b["roleRef"]["name"].as_str().unwrap_or_default();
        let granted = role(kind, name);
        for s in b["subjects"].as_array().into_iter().flatten() {
            if s["kind"] != "ServiceAccount" {
                continue;
            }
            let sa = s["name"].as_str().unwrap_or_default().to_owned();
            let g = out.entry(sa).or_default();
            // A ClusterRole bound by a RoleBinding applies inside that namespace only.
            if kind == "ClusterRole" && b["kind"] == "ClusterRoleBinding" {
                g.cluster.extend(granted.iter().cloned());
            } else {
                g.namespaced.extend(granted.iter().cloned());
            }
        }
    }
    out
}

/// The calls of `calls` that the ServiceAccount they were made as may not make.
pub fn denied(calls: &[ApiCall], grants: &BTreeMap<String, Grants>) -> Vec<ApiCall> {
    let mut out = BTreeSet::new();
    for c in calls.iter().filter(|c| !c.component.is_empty()) {
        let key = (c.group.clone(), c.resource.clone(), c.verb.clone());
        let ok = grants.get(&c.component).is_some_and(|g| {
            g.cluster.contains(&key) || (c.namespaced && g.namespaced.contains(&key))
        });
        if !ok {
            out.insert(c.clone());
        }
    }
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(component: &str, verb: &str, group: &str, resource: &str, ns: bool) -> ApiCall {
        ApiCall {
            component: component.into(),
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            namespaced: ns,
        }
    }

    #[test]
    fn grants_follow_bindings_and_scope() {
        let g = grants();
        let pm = &g["openebs-cstor-pool-manager"];
        let cspi = |v: &str| {
            (
                "cstor.openebs.io".to_string(),
                "cstorpoolinstances".to_string(),
                v.to_string(),
            )
        };
        assert!(pm.namespaced.contains(&cspi("update")));
        assert!(!pm.namespaced.contains(&cspi("delete")));
        // Namespaced grants do not allow a cluster-wide list; unknown components get nothing.
        let calls = [
            call(
                "openebs-cstor-pool-manager",
                "update",
                "cstor.openebs.io",
                "cstorpoolinstances",
                true,
            ),
            call(
                "openebs-cstor-pool-manager",
                "list",
                "cstor.openebs.io",
                "cstorpoolinstances",
                false,
            ),
            call(
                "openebs-cstor-pool-manager",
                "delete",
                "cstor.openebs.io",
                "cstorpoolinstances",
                true,
            ),
            call("no-such-sa", "get", "", "nodes", false),
            call("", "delete", "", "nodes", false),
        ];
        let d = denied(&calls, &g);
        assert_eq!(
            d,
            vec![calls[1].clone(), calls[2].clone(), calls[3].clone()]
                .into_iter()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect::<Vec<_>>()
        );
    }
}
