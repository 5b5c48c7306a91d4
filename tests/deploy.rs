//! Deploy manifests (`deploy/`), their kustomizations and the Containerfile.
//!
//! * RBAC: per component, the granted rules equal a table of the API calls the component's code
//!   makes (kept below, each row naming the calls) — nothing missing, nothing extra.
//! * Every kustomization renders with `kubectl kustomize` (the `kubectl` on PATH, or `$KUBECTL`)
//!   and every object parses into its k8s-openapi / cstor-api type without losing a field.
//! * Every binary a manifest runs is a workspace binary target and is copied by the Containerfile.
//! * The rendered objects, our examples and upstream's examples are accepted by the API test
//!   server with our CRDs (plus minimal snapshot.storage.k8s.io CRDs) installed.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
};

use cstor_api::cstor::{CStorPoolCluster, CStorVolumePolicy};
use cstor_testkit::{CrdSpec, ResourceDef, Scope as KitScope, TestApiServer, cluster};
use k8s_openapi::{
    api::admissionregistration::v1::ValidatingWebhookConfiguration,
    api::{
        apps::v1::{DaemonSet, Deployment, StatefulSet},
        core::v1::{ConfigMap, Container, Namespace, PodSpec, Service, ServiceAccount},
        rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding},
        scheduling::v1::PriorityClass,
        storage::v1::{CSIDriver, StorageClass},
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api,
    api::{DynamicObject, GroupVersionKind, PostParams},
    discovery::{Scope, pinned_kind},
};
use serde::de::DeserializeOwned;
use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// Paths and helpers

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn deploy() -> PathBuf {
    repo().join("deploy")
}

/// Every YAML document of `text` as JSON (empty documents skipped).
fn yaml_docs(text: &str, what: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .enumerate()
        .filter_map(|(i, d)| {
            let v: Value = serde::Deserialize::deserialize(d)
                .unwrap_or_else(|e| panic!("{what}: document {i} is not valid YAML: {e}"));
            (!v.is_null()).then_some(v)
        })
        .collect()
}

fn read_docs(path: &Path) -> Vec<Value> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    yaml_docs(&text, &path.display().to_string())
}

fn kubectl() -> String {
    std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".to_owned())
}

/// `kubectl kustomize <dir>` parsed into documents.
fn render(dir: &Path) -> Vec<Value> {
    let out = Command::new(kubectl())
        .arg("kustomize")
        .arg(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `{} kustomize`: {e}. Install kubectl (Debian 12: apt-get install -y \
                 kubernetes-client) or point $KUBECTL at one",
                kubectl()
            )
        });
    assert!(
        out.status.success(),
        "kubectl kustomize {} failed ({}): {}",
        dir.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    yaml_docs(
        &String::from_utf8_lossy(&out.stdout),
        &format!("kubectl kustomize {}", dir.display()),
    )
}

fn kind(v: &Value) -> &str {
    v["kind"].as_str().unwrap_or_default()
}

fn name(v: &Value) -> &str {
    v["metadata"]["name"].as_str().unwrap_or_default()
}

fn ns(v: &Value) -> Option<&str> {
    v["metadata"]["namespace"].as_str()
}

fn id(v: &Value) -> String {
    format!("{}/{}", kind(v), name(v))
}

/// Every kustomization directory under deploy/ (the root, base, namespace, examples, overlays).
fn kustomizations() -> Vec<PathBuf> {
    let mut dirs = vec![
        deploy(),
        deploy().join("base"),
        deploy().join("namespace"),
        deploy().join("examples"),
    ];
    let mut overlays: Vec<PathBuf> = std::fs::read_dir(deploy().join("overlays"))
        .expect("deploy/overlays exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.join("kustomization.yaml").is_file())
        .collect();
    overlays.sort();
    assert!(
        overlays.len() >= 5,
        "expected the overlays namespace-example, images, resources, no-remount, sidecar-versions"
    );
    dirs.extend(overlays);
    dirs
}

/// Checks that everything `original` says is still in `typed` after the typed round trip, so a
/// misspelled or misplaced field (dropped by the typed parse) fails.
fn assert_kept(original: &Value, typed: &Value, path: &str) {
    match (original, typed) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let p = format!("{path}.{k}");
                match b.get(k) {
                    Some(w) => assert_kept(v, w, &p),
                    None => panic!("{p}: not a field of the type (misspelled or misplaced?)"),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            assert_eq!(
                a.len(),
                b.len(),
                "{path}: list length changed by the typed parse"
            );
            for (i, (v, w)) in a.iter().zip(b).enumerate() {
                assert_kept(v, w, &format!("{path}[{i}]"));
            }
        }
        (Value::Number(a), Value::Number(b)) => {
            assert_eq!(
                a.as_f64(),
                b.as_f64(),
                "{path}: number changed by the typed parse"
            )
        }
        (a, b) => assert_eq!(a, b, "{path}: value changed by the typed parse"),
    }
}

fn typed<T: DeserializeOwned + serde::Serialize>(doc: &Value, what: &str) -> T {
    let t: T = serde_path_to_error::deserialize(doc.clone())
        .unwrap_or_else(|e| panic!("{what}: {} does not parse: {e}", id(doc)));
    let back = serde_json::to_value(&t).expect("typed object serializes");
    assert_kept(doc, &back, &format!("{what}: {}", id(doc)));
    t
}

/// Parses `doc` into its type; VolumeSnapshotClass (not in k8s-openapi) is checked by hand.
fn parse_typed(doc: &Value, what: &str) {
    match kind(doc) {
        "Namespace" => drop(typed::<Namespace>(doc, what)),
        "ServiceAccount" => drop(typed::<ServiceAccount>(doc, what)),
        "Role" => drop(typed::<Role>(doc, what)),
        "RoleBinding" => drop(typed::<RoleBinding>(doc, what)),
        "ClusterRole" => drop(typed::<ClusterRole>(doc, what)),
        "ClusterRoleBinding" => drop(typed::<ClusterRoleBinding>(doc, what)),
        "PriorityClass" => drop(typed::<PriorityClass>(doc, what)),
        "Job" => drop(typed::<k8s_openapi::api::batch::v1::Job>(doc, what)),
        "CSIDriver" => drop(typed::<CSIDriver>(doc, what)),
        "ConfigMap" => drop(typed::<ConfigMap>(doc, what)),
        "Service" => drop(typed::<Service>(doc, what)),
        "ValidatingWebhookConfiguration" => {
            drop(typed::<ValidatingWebhookConfiguration>(doc, what))
        }
        "StatefulSet" => drop(typed::<StatefulSet>(doc, what)),
        "DaemonSet" => drop(typed::<DaemonSet>(doc, what)),
        "Deployment" => drop(typed::<Deployment>(doc, what)),
        "CustomResourceDefinition" => drop(typed::<CustomResourceDefinition>(doc, what)),
        "StorageClass" => drop(typed::<StorageClass>(doc, what)),
        "CStorPoolCluster" => drop(typed::<CStorPoolCluster>(doc, what)),
        "CStorVolumePolicy" => drop(typed::<CStorVolumePolicy>(doc, what)),
        "VolumeSnapshotClass" => {
            assert_eq!(
                doc["apiVersion"],
                "snapshot.storage.k8s.io/v1",
                "{what}: {}",
                id(doc)
            );
            assert_eq!(doc["driver"], "cstor.csi.openebs.io", "{what}: {}", id(doc));
            assert!(
                matches!(doc["deletionPolicy"].as_str(), Some("Delete" | "Retain")),
                "{what}: {} deletionPolicy must be Delete or Retain",
                id(doc)
            );
        }
        other => panic!(
            "{what}: {} has kind {other:?}, which this test does not know: add it to parse_typed",
            id(doc)
        ),
    }
}

fn pod_spec(doc: &Value) -> Option<PodSpec> {
    matches!(kind(doc), "StatefulSet" | "DaemonSet" | "Deployment").then(|| {
        serde_json::from_value(doc["spec"]["template"]["spec"].clone()).expect("pod spec parses")
    })
}

fn containers(docs: &[Value]) -> Vec<(String, Container)> {
    docs.iter()
        .filter_map(|d| pod_spec(d).map(|s| (id(d), s)))
        .flat_map(|(owner, s)| s.containers.into_iter().map(move |c| (owner.clone(), c)))
        .collect()
}

fn container<'a>(all: &'a [(String, Container)], owner: &str, name: &str) -> &'a Container {
    all.iter()
        .find(|(o, c)| o == owner && c.name == name)
        .map(|(_, c)| c)
        .unwrap_or_else(|| panic!("container {name} of {owner} not rendered"))
}

fn env_value<'a>(c: &'a Container, var: &str) -> Option<&'a str> {
    c.env
        .as_ref()?
        .iter()
        .find(|e| e.name == var)?
        .value
        .as_deref()
}

// ---------------------------------------------------------------------------------------------
// RBAC: the table of API calls per component

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum At {
    /// In the components' namespace (a Role, or a ClusterRole through a RoleBinding).
    Ns,
    /// Cluster wide (ClusterRoleBinding).
    Cluster,
}

/// (scope, API group, resource, verbs).
type Need = (At, &'static str, &'static str, &'static [&'static str]);

const CSTOR: &str = "cstor.openebs.io";
const NDM: &str = "openebs.io";
const SNAP: &str = "snapshot.storage.k8s.io";
const STORAGE: &str = "storage.k8s.io";

/// What each ServiceAccount needs, from reading the code (kube Api calls, Controllers,
/// finalizer helper, Recorder) and, for the CSI sidecars, the sidecars' published RBAC.
fn needs() -> BTreeMap<&'static str, Vec<Need>> {
    use At::*;
    let mut m: BTreeMap<&'static str, Vec<Need>> = BTreeMap::new();
    m.insert(
        "openebs-cstor-csi-controller-sa",
        vec![
            // --- cstor-csi-controller (csi-controller/src) ---
            // create.rs cvcs().create + get_cvc get_opt; snapshot.rs/list.rs/delete.rs cvcs().list;
            // expand.rs + records.rs cvcs().patch (merge); delete.rs cvcs().delete.
            (
                Ns,
                CSTOR,
                "cstorvolumeconfigs",
                &["get", "list", "create", "patch", "delete"],
            ),
            // snapshot.rs target_ip + list.rs get_volume cvs().get_opt; list.rs cvs().list.
            (Ns, CSTOR, "cstorvolumes", &["get", "list"]),
            // records.rs records(): get_opt, list (by volume / snapshot-name labels), create,
            // patch (merge, ready), delete, delete_collection (DeleteVolume).
            (
                Ns,
                CSTOR,
                "cstorsnapshotrecords",
                &[
                    "get",
                    "list",
                    "create",
                    "patch",
                    "delete",
                    "deletecollection",
                ],
            ),
            // snapshot.rs cvrs().list (replicas of a volume).
            (Ns, CSTOR, "cstorvolumereplicas", &["list"]),
            // delete.rs / list.rs cvas().list.
            (Ns, CSTOR, "cstorvolumeattachments", &["list"]),
            // capacity.rs cspis().list.
            (Ns, CSTOR, "cstorpoolinstances", &["list"]),
            // create.rs topology + capacity.rs: nodes().list.
            (Cluster, "", "nodes", &["list"]),
            // create.rs created_through: pvcs(ns).get_opt.
            (Cluster, "", "persistentvolumeclaims", &["get"]),
            // --- csi-provisioner v3.5.0 (Topology=true, no leader election, no capacity) ---
            (
                Cluster,
                "",
                "persistentvolumes",
                &["get", "list", "watch", "create", "delete"],
            ),
            (
                Cluster,
                "",
                "persistentvolumeclaims",
                &["get", "list", "watch", "update"],
            ),
            (
                Cluster,
                STORAGE,
                "storageclasses",
                &["get", "list", "watch"],
            ),
            (
                Cluster,
                "",
                "events",
                &["list", "watch", "create", "update", "patch"],
            ),
            (Cluster, SNAP, "volumesnapshots", &["get", "list"]),
            (Cluster, SNAP, "volumesnapshotcontents", &["get", "list"]),
            (Cluster, STORAGE, "csinodes", &["get", "list", "watch"]),
            (Cluster, "", "nodes", &["get", "list", "watch"]),
            (
                Cluster,
                STORAGE,
                "volumeattachments",
                &["get", "list", "watch"],
            ),
            // --- csi-resizer v1.8.0 ---
            (
                Cluster,
                "",
                "persistentvolumes",
                &["get", "list", "watch", "patch"],
            ),
            (
                Cluster,
                "",
                "persistentvolumeclaims",
                &["get", "list", "watch"],
            ),
            (Cluster, "", "pods", &["get", "list", "watch"]),
            (Cluster, "", "persistentvolumeclaims/status", &["patch"]),
            // --- csi-snapshotter v6.2.2 ---
            (
                Cluster,
                SNAP,
                "volumesnapshotclasses",
                &["get", "list", "watch"],
            ),
            (
                Cluster,
                SNAP,
                "volumesnapshotcontents",
                &["create", "get", "list", "watch", "update", "patch"],
            ),
            (
                Cluster,
                SNAP,
                "volumesnapshotcontents/status",
                &["update", "patch"],
            ),
        ],
    );
    m.insert(
        "openebs-cstor-csi-node-sa",
        vec![
            // kube_client.rs: cvas() list (by nodeID / Volname labels), get_opt + get, create,
            // replace (update), delete.
            (
                Ns,
                CSTOR,
                "cstorvolumeattachments",
                &["get", "list", "create", "update", "delete"],
            ),
            // kube_client.rs cvc_phase: Api<CStorVolumeConfig>.get_opt.
            (Ns, CSTOR, "cstorvolumeconfigs", &["get"]),
            // kube_client.rs volume: Api<CStorVolume>.get_opt.
            (Ns, CSTOR, "cstorvolumes", &["get"]),
            // kube_client.rs node: Api<Node>::all().get_opt.
            (Cluster, "", "nodes", &["get"]),
        ],
    );
    m.insert(
        "openebs-cstor-cspc-operator",
        vec![
            // cstor_api::leader (kube-lease-manager): Lease get, create, apply patch.
            (
                Ns,
                "coordination.k8s.io",
                "leases",
                &["get", "create", "patch"],
            ),
            // mod.rs Controller::new(cspcs) list/watch; reconcile.rs finalized() (kube's
            // finalizer helper: JSON patch); reconcile.rs status get + replace.
            (
                Ns,
                CSTOR,
                "cstorpoolclusters",
                &["get", "list", "watch", "update", "patch"],
            ),
            // .owns(cspis) list/watch; reconcile.rs list, create, replace, delete;
            // scale_down.rs delete.
            (
                Ns,
                CSTOR,
                "cstorpoolinstances",
                &["list", "watch", "create", "update", "delete"],
            ),
            // scale_down.rs cvrs.list.
            (Ns, CSTOR, "cstorvolumereplicas", &["list"]),
            // bdc.rs bds.get; cspi.rs bds.get_opt; mod.rs .watches(bds) list/watch.
            (Ns, NDM, "blockdevices", &["get", "list", "watch"]),
            // .owns(bdcs) list/watch; bdc.rs get_opt, create, list, replace, delete.
            (
                Ns,
                NDM,
                "blockdeviceclaims",
                &["get", "list", "watch", "create", "update", "delete"],
            ),
            // mod.rs .watches(deps) list/watch; reconcile.rs get_opt + create, and replace when
            // sync.rs sync_deployment changed the pool settings; status.rs get_opt.
            (
                Ns,
                "apps",
                "deployments",
                &["get", "list", "watch", "create", "update"],
            ),
            // Recorder::publish (kube-runtime events.rs): create, patch for a series.
            (Ns, "events.k8s.io", "events", &["create", "patch"]),
            // cspi.rs Api::<Node>::all().list(nodeSelector labels); mod.rs .watches(nodes).
            (Cluster, "", "nodes", &["list", "watch"]),
        ],
    );
    m.insert(
        "openebs-cstor-cvc-operator",
        vec![
            // cstor_api::leader (kube-lease-manager): Lease get, create, apply patch.
            (
                Ns,
                "coordination.k8s.io",
                "leases",
                &["get", "create", "patch"],
            ),
            // mod.rs watch cache of the CVCs (list/watch); pdb.rs list; status.rs replace;
            // delete.rs patch (finalizer).
            (
                Ns,
                CSTOR,
                "cstorvolumeconfigs",
                &["get", "list", "watch", "update", "patch"],
            ),
            // cache.rs watch cache (list/watch); provision.rs get_or_create (create, get after
            // a 409 or without the cache); resize.rs/scale.rs/status.rs merge patches.
            (
                Ns,
                CSTOR,
                "cstorvolumes",
                &["get", "list", "watch", "create", "patch"],
            ),
            // Watch cache; provision.rs list + get_or_create; scale.rs delete.
            (
                Ns,
                CSTOR,
                "cstorvolumereplicas",
                &["get", "list", "watch", "create", "delete"],
            ),
            // Watch caches of policies, CSPCs and CSPIs (get without the cache).
            (Ns, CSTOR, "cstorvolumepolicies", &["get", "list", "watch"]),
            (Ns, CSTOR, "cstorpoolclusters", &["get", "list", "watch"]),
            (Ns, CSTOR, "cstorpoolinstances", &["get", "list", "watch"]),
            // Watch cache; provision.rs get_or_create.
            (Ns, "", "services", &["get", "list", "watch", "create"]),
            // Watch cache; provision.rs get_or_create; target.rs get + JSON patch of the template.
            (
                Ns,
                "apps",
                "deployments",
                &["get", "list", "watch", "create", "patch"],
            ),
            // pdb.rs watch cache, create, delete.
            (
                Ns,
                "policy",
                "poddisruptionbudgets",
                &["list", "watch", "create", "delete"],
            ),
            // Recorder::publish: create, patch.
            (Ns, "events.k8s.io", "events", &["create", "patch"]),
            // Watch cache of the zone-labelled Nodes; rest/mod.rs pool_down get.
            (Cluster, "", "nodes", &["get", "list", "watch"]),
            // rest/restore.rs create_clone_cvc (local restore).
            (Ns, CSTOR, "cstorvolumeconfigs", &["create"]),
            // rest/mod.rs pool_down: pool pod list.
            (Ns, "", "pods", &["list"]),
            // rest/backup.rs: get_opt, create, replace (status), delete.
            (
                Cluster,
                CSTOR,
                "cstorbackups",
                &["get", "create", "update", "delete"],
            ),
            // rest/backup.rs: get_opt, create, delete.
            (
                Cluster,
                CSTOR,
                "cstorcompletedbackups",
                &["get", "create", "delete"],
            ),
            // rest/restore.rs: list (status), create, replace (Failed).
            (
                Cluster,
                CSTOR,
                "cstorrestores",
                &["list", "create", "update"],
            ),
            // rest/restore.rs create_restores: Api::all lists.
            (Cluster, CSTOR, "cstorvolumereplicas", &["list"]),
            (Cluster, CSTOR, "cstorpoolinstances", &["list"]),
            // rest/restore.rs create_clone_cvc: StorageClass get.
            (Cluster, STORAGE, "storageclasses", &["get"]),
        ],
    );
    m.insert(
        "openebs-cstor-pool-manager",
        vec![
            // mod.rs Controller::new(cspis) list/watch; reconcile.rs finalized() (kube's
            // finalizer helper: JSON patch); destroy.rs get + replace.
            (
                Ns,
                CSTOR,
                "cstorpoolinstances",
                &["get", "list", "watch", "update", "patch"],
            ),
            // mod.rs Controller::new(cvrs, uid label) list/watch; replica.rs finalized() (JSON
            // patch), get + replace; destroy.rs list.
            (
                Ns,
                CSTOR,
                "cstorvolumereplicas",
                &["get", "list", "watch", "update", "patch"],
            ),
            // devices.rs get_opt.
            (Ns, NDM, "blockdevices", &["get"]),
            // replace.rs list, replace, delete, get.
            (
                Ns,
                NDM,
                "blockdeviceclaims",
                &["get", "list", "update", "delete"],
            ),
            // Recorder::publish: create, patch.
            (Ns, "events.k8s.io", "events", &["create", "patch"]),
            // transfer.rs: Controller::new(Api::all, uid label) list/watch; status get + merge
            // patch; the completed-backup record get_opt, and get + replace
            // (cstor_api::update::modify); events in the backups' namespaces.
            (
                Cluster,
                CSTOR,
                "cstorbackups",
                &["get", "list", "watch", "patch"],
            ),
            (
                Cluster,
                CSTOR,
                "cstorrestores",
                &["get", "list", "watch", "patch"],
            ),
            (Cluster, CSTOR, "cstorcompletedbackups", &["get", "update"]),
            (Cluster, "events.k8s.io", "events", &["create", "patch"]),
        ],
    );
    m.insert(
        "openebs-cstor-volume-manager",
        vec![
            // manager.rs watcher(cvs) list/watch; mod.rs update_cv get + replace; version.rs
            // reconcile_version merge patch (with the resourceVersion read).
            (
                Ns,
                CSTOR,
                "cstorvolumes",
                &["get", "list", "watch", "update", "patch"],
            ),
            // events.rs Recorder::publish create, patch (series).
            (Ns, "events.k8s.io", "events", &["create", "patch"]),
        ],
    );
    m.insert("openebs-cstor-migrate", migrate_needs());
    m
}

/// cstor-migrate (operators/src/migrate): one ClusterRole bound cluster wide.
fn migrate_needs() -> Vec<Need> {
    use At::*;
    const LEGACY_SNAP: &str = "volumesnapshot.external-storage.k8s.io";
    vec![
        // mod.rs check_operator list; volume.rs check_unused list.
        (Cluster, "", "pods", &["list"]),
        // task.rs get_opt, create, get + replace.
        (Cluster, NDM, "migrationtasks", &["get", "create", "update"]),
        // upgrade/task.rs get_opt, create, get + replace; run_selected list.
        (
            Cluster,
            NDM,
            "upgradetasks",
            &["get", "list", "create", "update"],
        ),
        // pool.rs get_opt, merge patch, delete.
        (
            Cluster,
            NDM,
            "storagepoolclaims",
            &["get", "patch", "delete"],
        ),
        // pool.rs list by SPC label, merge patch (finalizers).
        (Cluster, NDM, "cstorpools", &["list", "patch"]),
        // pool.rs relabel_replicas list + patch; volume.rs list, patch, delete.
        (
            Cluster,
            NDM,
            "cstorvolumereplicas",
            &["list", "patch", "delete"],
        ),
        // volume.rs list by PV label, get_opt, patch (finalizers), delete.
        (
            Cluster,
            NDM,
            "cstorvolumes",
            &["get", "list", "patch", "delete"],
        ),
        // backup.rs convert_legacy_records (pool.rs, upgrade cspc.rs) list + delete.
        (Cluster, NDM, "cstorbackups", &["list", "delete"]),
        (Cluster, NDM, "cstorrestores", &["list", "delete"]),
        (Cluster, NDM, "cstorcompletedbackups", &["list", "delete"]),
        // pool.rs check_block_devices get_opt.
        (Cluster, NDM, "blockdevices", &["get"]),
        // pool.rs relabel_claims / own_claims list + replace.
        (Cluster, NDM, "blockdeviceclaims", &["list", "update"]),
        // pool.rs get_opt, create, merge patch.
        (
            Cluster,
            CSTOR,
            "cstorpoolclusters",
            &["get", "create", "patch"],
        ),
        // pool.rs list, get + replace; volume.rs get_opt; upgrade list, get, merge patch.
        (
            Cluster,
            CSTOR,
            "cstorpoolinstances",
            &["get", "list", "update", "patch"],
        ),
        // backup.rs convert_legacy_records (pool.rs, upgrade cspc.rs) create.
        (Cluster, CSTOR, "cstorbackups", &["create"]),
        (Cluster, CSTOR, "cstorrestores", &["create"]),
        (Cluster, CSTOR, "cstorcompletedbackups", &["create"]),
        // volume.rs get_opt, create, delete.
        (
            Cluster,
            CSTOR,
            "cstorvolumepolicies",
            &["get", "create", "delete"],
        ),
        // volume.rs get_opt, create, get, merge patch.
        (
            Cluster,
            CSTOR,
            "cstorvolumeconfigs",
            &["get", "create", "patch"],
        ),
        // volume.rs get_opt; upgrade get, merge patch.
        (Cluster, CSTOR, "cstorvolumes", &["get", "patch"]),
        // volume.rs validate list; upgrade list, get, merge patch.
        (
            Cluster,
            CSTOR,
            "cstorvolumereplicas",
            &["get", "list", "patch"],
        ),
        // pool.rs list, get_opt, merge patch; volume.rs get_opt, delete, strategic patch;
        // upgrade list, get + replace.
        (
            Cluster,
            "apps",
            "deployments",
            &["get", "list", "patch", "delete", "update"],
        ),
        // volume.rs get_opt, delete, create, merge patch; upgrade list, merge patch.
        (
            Cluster,
            "",
            "services",
            &["get", "list", "create", "patch", "delete"],
        ),
        // volume.rs get_opt, merge patch, delete, create.
        (
            Cluster,
            "",
            "persistentvolumes",
            &["get", "patch", "delete", "create"],
        ),
        // volume.rs list, get_opt, strategic patch, delete, create.
        (
            Cluster,
            "",
            "persistentvolumeclaims",
            &["get", "list", "patch", "delete", "create"],
        ),
        // volume.rs get_opt, create, delete.
        (
            Cluster,
            STORAGE,
            "storageclasses",
            &["get", "create", "delete"],
        ),
        // snapshot.rs list, delete; get.
        (Cluster, LEGACY_SNAP, "volumesnapshots", &["list", "delete"]),
        (Cluster, LEGACY_SNAP, "volumesnapshotdatas", &["get"]),
        // snapshot.rs get; get_opt + create.
        (Cluster, SNAP, "volumesnapshotclasses", &["get"]),
        (Cluster, SNAP, "volumesnapshotcontents", &["get", "create"]),
        (Cluster, SNAP, "volumesnapshots", &["get", "create"]),
    ]
}

type Grant = (At, String, String, String);

fn expand(at: At, rules: &[PolicyRule], owner: &str) -> BTreeSet<Grant> {
    let mut out = BTreeSet::new();
    for r in rules {
        assert!(
            r.non_resource_urls.is_none(),
            "{owner}: nonResourceURLs are not needed by any component"
        );
        assert!(
            r.resource_names.is_none(),
            "{owner}: resourceNames are not used here"
        );
        let groups = r.api_groups.clone().unwrap_or_default();
        let resources = r.resources.clone().unwrap_or_default();
        for g in &groups {
            for res in &resources {
                for v in &r.verbs {
                    for s in [g, res, v] {
                        assert!(
                            !s.contains('*'),
                            "{owner}: wildcard {s:?} in a rule (grant the listed verbs instead)"
                        );
                    }
                    out.insert((at, g.clone(), res.clone(), v.clone()));
                }
            }
        }
    }
    out
}

/// What the RBAC objects grant each ServiceAccount of namespace `openebs`.
fn grants(docs: &[Value]) -> BTreeMap<String, BTreeSet<Grant>> {
    let roles: BTreeMap<String, Role> = docs
        .iter()
        .filter(|d| kind(d) == "Role")
        .map(|d| (name(d).to_owned(), typed(d, "rbac")))
        .collect();
    let croles: BTreeMap<String, ClusterRole> = docs
        .iter()
        .filter(|d| kind(d) == "ClusterRole")
        .map(|d| (name(d).to_owned(), typed(d, "rbac")))
        .collect();
    let mut out: BTreeMap<String, BTreeSet<Grant>> = BTreeMap::new();
    for d in docs {
        let (at, subjects, role_ref) = match kind(d) {
            "RoleBinding" => {
                let b: RoleBinding = typed(d, "rbac");
                assert_eq!(ns(d), Some("openebs"), "{}", id(d));
                (At::Ns, b.subjects.unwrap_or_default(), b.role_ref)
            }
            "ClusterRoleBinding" => {
                let b: ClusterRoleBinding = typed(d, "rbac");
                (At::Cluster, b.subjects.unwrap_or_default(), b.role_ref)
            }
            _ => continue,
        };
        let rules = match role_ref.kind.as_str() {
            "Role" => roles
                .get(&role_ref.name)
                .unwrap_or_else(|| panic!("{}: Role {} is not defined", id(d), role_ref.name))
                .rules
                .clone(),
            "ClusterRole" => croles
                .get(&role_ref.name)
                .unwrap_or_else(|| {
                    panic!("{}: ClusterRole {} is not defined", id(d), role_ref.name)
                })
                .rules
                .clone(),
            k => panic!("{}: roleRef kind {k}", id(d)),
        }
        .unwrap_or_default();
        for s in subjects {
            assert_eq!(
                s.kind,
                "ServiceAccount",
                "{}: only ServiceAccounts are bound",
                id(d)
            );
            assert_eq!(
                s.namespace.as_deref(),
                Some("openebs"),
                "{}: subject {} namespace",
                id(d),
                s.name
            );
            out.entry(s.name.clone())
                .or_default()
                .extend(expand(at, &rules, &id(d)));
        }
    }
    out
}

fn base_docs_from_files() -> Vec<Value> {
    let mut docs = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy().join("base/rbac"))
        .expect("deploy/base/rbac")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    for f in files {
        docs.extend(read_docs(&f));
    }
    docs
}

#[test]
fn rbac_grants_exactly_the_api_calls_of_each_component() {
    let docs = base_docs_from_files();
    let granted = grants(&docs);
    let wanted: BTreeMap<String, BTreeSet<Grant>> = needs()
        .into_iter()
        .map(|(sa, list)| {
            let set = list
                .into_iter()
                .flat_map(|(at, g, r, verbs)| {
                    verbs
                        .iter()
                        .map(move |v| (at, g.to_owned(), r.to_owned(), (*v).to_owned()))
                })
                .collect();
            (sa.to_owned(), set)
        })
        .collect();
    let sas: BTreeSet<&str> = docs
        .iter()
        .filter(|d| kind(d) == "ServiceAccount")
        .map(name)
        .collect();
    assert_eq!(
        sas,
        wanted.keys().map(String::as_str).collect(),
        "one ServiceAccount per component, each with a table in this test"
    );
    for (sa, want) in &wanted {
        let have = granted.get(sa).cloned().unwrap_or_default();
        let missing: Vec<_> = want.difference(&have).collect();
        let extra: Vec<_> = have.difference(want).collect();
        assert!(
            missing.is_empty(),
            "{sa}: the code makes these calls but RBAC does not allow them: {missing:?}"
        );
        assert!(
            extra.is_empty(),
            "{sa}: RBAC grants these but no call in the table needs them: {extra:?}"
        );
    }
}

#[test]
fn pods_and_operators_use_the_component_service_accounts() {
    let docs = render(&deploy());
    let sas: BTreeSet<&str> = docs
        .iter()
        .filter(|d| kind(d) == "ServiceAccount")
        .map(name)
        .collect();
    let all = containers(&docs);
    for d in &docs {
        if let Some(spec) = pod_spec(d) {
            let sa = spec.service_account_name.unwrap_or_default();
            assert!(
                sas.contains(sa.as_str()),
                "{} runs as ServiceAccount {sa:?}, which deploy/ does not create",
                id(d)
            );
        }
    }
    // The pool and target pods the operators create run as these (OPENEBS_SERVICEACCOUNT_NAME).
    for (owner, c) in [
        ("Deployment/cspc-operator", "cspc-operator"),
        ("Deployment/cvc-operator", "cvc-operator"),
    ] {
        let sa = env_value(container(&all, owner, c), "OPENEBS_SERVICEACCOUNT_NAME")
            .unwrap_or_else(|| panic!("{owner}: OPENEBS_SERVICEACCOUNT_NAME must be set"));
        assert!(
            sas.contains(sa),
            "{owner}: OPENEBS_SERVICEACCOUNT_NAME={sa} is not a ServiceAccount of deploy/"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Kustomize

#[test]
fn root_kustomization_lists_every_generated_crd() {
    let k = read_docs(&deploy().join("kustomization.yaml")).remove(0);
    let listed: BTreeSet<String> = k["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter_map(|r| r.as_str().map(str::to_owned))
        .collect();
    let files: BTreeSet<String> = std::fs::read_dir(deploy().join("crds"))
        .expect("deploy/crds")
        .map(|e| format!("crds/{}", e.expect("entry").file_name().to_string_lossy()))
        .filter(|f| f.ends_with(".yaml"))
        .collect();
    assert_eq!(
        listed, files,
        "deploy/kustomization.yaml must list exactly the files of deploy/crds (regenerated by crdgen)"
    );
    let webhook = deploy().join("webhook");
    if webhook.is_dir() {
        let bases: Vec<&str> = k["bases"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        assert!(
            bases.contains(&"webhook"),
            "deploy/webhook exists: add it to `bases` of deploy/kustomization.yaml"
        );
    }
}

#[test]
fn every_kustomization_renders_into_typed_objects() {
    for dir in kustomizations() {
        let what = dir
            .strip_prefix(repo())
            .unwrap_or(&dir)
            .display()
            .to_string();
        let docs = render(&dir);
        assert!(!docs.is_empty(), "{what} renders nothing");
        let mut seen = BTreeSet::new();
        for d in &docs {
            parse_typed(d, &what);
            assert!(
                seen.insert((
                    kind(d).to_owned(),
                    ns(d).map(str::to_owned),
                    name(d).to_owned()
                )),
                "{what}: {} twice",
                id(d)
            );
        }
        // Full installs (the root and the overlays) create the namespace they use.
        if dir == deploy() || dir.starts_with(deploy().join("overlays")) {
            let namespaces: BTreeSet<&str> = docs
                .iter()
                .filter(|d| kind(d) == "Namespace")
                .map(name)
                .collect();
            assert_eq!(
                namespaces.len(),
                1,
                "{what}: exactly one Namespace, got {namespaces:?}"
            );
            for d in &docs {
                if let Some(n) = ns(d) {
                    assert!(
                        namespaces.contains(n),
                        "{what}: {} is in namespace {n}, which it does not create",
                        id(d)
                    );
                }
            }
        }
    }
}

#[test]
fn overlays_change_what_they_say() {
    let base = render(&deploy().join("base"));
    let base_c = containers(&base);
    let ctl = "StatefulSet/openebs-cstor-csi-controller";
    let node = "DaemonSet/openebs-cstor-csi-node";

    let docs = render(&deploy().join("overlays/namespace-example"));
    for d in &docs {
        if let Some(n) = ns(d) {
            assert_eq!(n, "cstor-system", "namespace-example: {}", id(d));
        }
        for s in d["subjects"].as_array().into_iter().flatten() {
            assert_eq!(
                s["namespace"],
                "cstor-system",
                "namespace-example: subject of {}",
                id(d)
            );
        }
    }

    let docs = render(&deploy().join("overlays/images"));
    let c = containers(&docs);
    for (owner, k) in &c {
        if k.command.is_some() {
            assert_eq!(
                k.image.as_deref(),
                Some("registry.example.com/cstor/cstor-rs:0.1.0"),
                "images: {owner}/{}",
                k.name
            );
        }
    }
    let cspc = container(&c, "Deployment/cspc-operator", "cspc-operator");
    assert!(
        env_value(cspc, "OPENEBS_IO_CSPI_MGMT_IMAGE")
            .unwrap_or_default()
            .starts_with("registry.example.com/")
    );
    assert!(
        env_value(cspc, "OPENEBS_NAMESPACE").is_none(),
        "fieldRef env kept as fieldRef"
    );
    assert!(
        cspc.env
            .as_ref()
            .is_some_and(|e| e.iter().any(|v| v.name == "OPENEBS_NAMESPACE")),
        "images: patch kept other env"
    );

    let docs = render(&deploy().join("overlays/no-remount"));
    assert_eq!(
        env_value(container(&base_c, node, "cstor-csi-plugin"), "REMOUNT"),
        Some("true")
    );
    assert_eq!(
        env_value(
            container(&containers(&docs), node, "cstor-csi-plugin"),
            "REMOUNT"
        ),
        Some("false")
    );

    let docs = render(&deploy().join("overlays/resources"));
    let c = containers(&docs);
    for (owner, k) in [
        (ctl, "cstor-csi-plugin"),
        (node, "cstor-csi-plugin"),
        ("Deployment/cspc-operator", "cspc-operator"),
        ("Deployment/cvc-operator", "cvc-operator"),
    ] {
        let r = container(&c, owner, k)
            .resources
            .clone()
            .unwrap_or_default();
        assert!(
            r.limits.is_some_and(|l| l.contains_key("memory")),
            "resources: {owner}/{k} has no memory limit"
        );
    }

    let docs = render(&deploy().join("overlays/sidecar-versions"));
    let c = containers(&docs);
    for (owner, k) in &c {
        let before = container(&base_c, owner, &k.name);
        if k.command.is_none() {
            assert_ne!(
                k.image, before.image,
                "sidecar-versions: {owner}/{} keeps its image",
                k.name
            );
        } else {
            assert_eq!(
                k.image, before.image,
                "sidecar-versions: {owner}/{} must not change",
                k.name
            );
        }
    }
}

#[test]
fn csi_manifests_follow_upstream_names_and_settings() {
    let docs = render(&deploy());
    let c = containers(&docs);
    let ctl = "StatefulSet/openebs-cstor-csi-controller";
    let node = "DaemonSet/openebs-cstor-csi-node";
    let prov = container(&c, ctl, "csi-provisioner")
        .args
        .clone()
        .unwrap_or_default();
    for a in [
        "--feature-gates=Topology=true",
        "--extra-create-metadata=true",
        "--default-fstype=ext4",
    ] {
        assert!(prov.iter().any(|x| x == a), "csi-provisioner lacks {a}");
    }
    for s in ["csi-resizer", "csi-snapshotter"] {
        container(&c, ctl, s);
    }
    let sts: StatefulSet = typed(
        docs.iter().find(|d| id(d) == ctl).expect("controller"),
        "root",
    );
    let spec = sts.spec.expect("spec").template.spec.expect("pod spec");
    assert_eq!(
        spec.service_account_name.as_deref(),
        Some("openebs-cstor-csi-controller-sa")
    );
    assert_eq!(
        spec.priority_class_name.as_deref(),
        Some("openebs-cstor-csi-controller-critical")
    );
    assert!(
        spec.volumes
            .unwrap_or_default()
            .iter()
            .any(|v| v.name == "socket-dir" && v.empty_dir.is_some())
    );

    let ds: DaemonSet = typed(docs.iter().find(|d| id(d) == node).expect("node"), "root");
    let spec = ds.spec.expect("spec").template.spec.expect("pod spec");
    assert_eq!(
        spec.service_account_name.as_deref(),
        Some("openebs-cstor-csi-node-sa")
    );
    assert_eq!(
        spec.priority_class_name.as_deref(),
        Some("openebs-cstor-csi-node-critical")
    );
    container(&c, node, "csi-node-driver-registrar");
    container(&c, node, "liveness-probe");
    let plugin = container(&c, node, "cstor-csi-plugin");
    let mounts = plugin.volume_mounts.clone().unwrap_or_default();
    let mount = |p: &str| {
        mounts
            .iter()
            .find(|m| m.mount_path == p)
            .unwrap_or_else(|| panic!("node plugin mount {p}"))
    };
    assert_eq!(
        mount("/var/lib/kubelet/").mount_propagation.as_deref(),
        Some("Bidirectional")
    );
    mount("/dev");
    assert_eq!(
        mount("/sbin/iscsiadm").sub_path.as_deref(),
        Some("iscsiadm")
    );
    let vols = spec.volumes.unwrap_or_default();
    let host_root = vols
        .iter()
        .find(|v| v.name == mount("/host").name)
        .expect("host-root volume");
    assert_eq!(
        host_root.host_path.as_ref().map(|h| h.path.as_str()),
        Some("/")
    );
    let cm: ConfigMap = typed(
        docs.iter()
            .find(|d| id(d) == "ConfigMap/openebs-cstor-csi-iscsiadm")
            .expect("iscsiadm cm"),
        "root",
    );
    let script = cm
        .data
        .unwrap_or_default()
        .remove("iscsiadm")
        .expect("iscsiadm key");
    assert!(
        script.contains("chroot /host iscsiadm \"$@\""),
        "iscsiadm script runs the host's iscsiadm"
    );
    assert!(
        plugin
            .security_context
            .as_ref()
            .and_then(|s| s.privileged)
            .unwrap_or(false),
        "node plugin must be privileged"
    );

    let drv: CSIDriver = typed(
        docs.iter()
            .find(|d| id(d) == "CSIDriver/cstor.csi.openebs.io")
            .expect("csidriver"),
        "root",
    );
    assert_eq!(drv.spec.attach_required, Some(false));
    assert_eq!(drv.spec.pod_info_on_mount, Some(true));
}

// ---------------------------------------------------------------------------------------------
// Binaries and the Containerfile

fn workspace_binaries() -> BTreeSet<String> {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .current_dir(repo())
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata JSON");
    meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter(|t| {
            t["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "bin"))
        })
        .filter_map(|t| t["name"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn manifest_binaries_are_workspace_binaries_in_the_image() {
    let bins = workspace_binaries();
    let containerfile =
        std::fs::read_to_string(repo().join("Containerfile")).expect("Containerfile");
    assert!(
        !containerfile
            .lines()
            .any(|l| l.trim_start().starts_with("ENTRYPOINT")),
        "the image has no ENTRYPOINT: manifests pick the binary with `command`"
    );
    let mut docs = render(&deploy());
    let webhook = deploy().join("webhook");
    if webhook.join("kustomization.yaml").is_file() {
        docs.extend(render(&webhook));
    }
    let mut referenced = BTreeSet::new();
    for (owner, c) in containers(&docs) {
        let image = c.image.clone().unwrap_or_default();
        let ours = image
            .split(':')
            .next()
            .is_some_and(|n| n.ends_with("cstor-rs"));
        if !ours {
            assert!(
                c.command.is_none(),
                "{owner}/{}: third-party image {image} keeps its own entrypoint",
                c.name
            );
            continue;
        }
        let cmd = c.command.clone().unwrap_or_default();
        let bin = cmd.first().cloned().unwrap_or_else(|| {
            panic!(
                "{owner}/{}: our image has no ENTRYPOINT, set `command`",
                c.name
            )
        });
        referenced.insert(bin);
    }
    assert!(
        referenced.len() >= 4,
        "expected the CSI and operator binaries, got {referenced:?}"
    );
    for bin in &referenced {
        assert!(
            bins.contains(bin),
            "manifests run `{bin}`, which is no [[bin]] target of the workspace (have {bins:?})"
        );
        let copy = format!("COPY --from=builder /out/{bin} /usr/local/bin/{bin}");
        assert!(
            containerfile.contains(&copy),
            "Containerfile does not copy {bin} (expected `{copy}`)"
        );
    }
    // The image also carries the role binaries the operators start in pool and target pods.
    for bin in ["pool-manager", "volume-manager"] {
        assert!(
            containerfile.contains(&format!("/out/{bin} /usr/local/bin/{bin}")),
            "Containerfile lacks {bin}"
        );
        assert!(
            containerfile.contains(&format!("CMD [\"{bin}\"]")),
            "Containerfile has no {bin} role image"
        );
    }
}

/// The packages the image is built from, read from the Containerfile's `cargo build` step.
fn image_build_packages(containerfile: &str) -> Vec<String> {
    let start = containerfile
        .find("RUN cargo build")
        .expect("Containerfile builds with `RUN cargo build`");
    let step: String = containerfile[start..]
        .lines()
        .take_while(|l| !l.trim_start().starts_with("&&"))
        .map(|l| l.trim_end_matches('\\').to_owned())
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        !step.contains("--workspace"),
        "the image must not be built with --workspace (test harnesses enable test doubles): {step}"
    );
    let words: Vec<&str> = step.split_whitespace().collect();
    words
        .windows(2)
        .filter(|w| w[0] == "-p")
        .map(|w| w[1].to_owned())
        .collect()
}

#[test]
fn image_binaries_are_built_without_test_doubles() {
    let containerfile =
        std::fs::read_to_string(repo().join("Containerfile")).expect("Containerfile");
    let packages = image_build_packages(&containerfile);
    assert!(!packages.is_empty(), "the image build names its packages");
    for p in &packages {
        assert!(
            !p.starts_with("cstor-testkit") && !p.starts_with("cstor-e2e") && p != "cstor-local",
            "the image builds test harness {p}"
        );
    }
    // Every product crate that carries test doubles keeps them behind `test-support`.
    let gated = [
        ("src/exec/lib.rs", "mod doubles;"),
        ("iscsi/src/lib.rs", "pub mod fake;"),
        ("operators/src/volume_manager/mod.rs", "pub mod fake_istgt;"),
        ("csi-node/src/lib.rs", "pub mod memory;"),
    ];
    for (file, decl) in gated {
        let src = std::fs::read_to_string(repo().join(file)).expect(file);
        let lines: Vec<&str> = src.lines().collect();
        let at = lines
            .iter()
            .position(|l| l.trim() == decl)
            .unwrap_or_else(|| panic!("{file}: no `{decl}`"));
        assert!(
            at > 0 && lines[at - 1].trim() == "#[cfg(feature = \"test-support\")]",
            "{file}: `{decl}` must be behind #[cfg(feature = \"test-support\")]"
        );
    }
    // Resolving exactly what the image builds (no dev-dependencies) turns no test double on.
    let mut args = vec![
        "tree",
        "--offline",
        "--locked",
        "-e",
        "no-dev",
        "--prefix",
        "none",
        "-f",
        "{p} {f}",
    ];
    for p in &packages {
        args.extend(["-p", p.as_str()]);
    }
    let out = Command::new(env!("CARGO"))
        .args(&args)
        .current_dir(repo())
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(
        tree.contains("cstor-operators"),
        "cargo tree output: {tree}"
    );
    let with_doubles: Vec<&str> = tree
        .lines()
        .filter(|l| l.contains("test-support"))
        .collect();
    assert!(
        with_doubles.is_empty(),
        "the image's build compiles test doubles in: {with_doubles:?}"
    );
    // The same resolution with a test harness beside it does turn them on (the check can fail).
    args.extend(["-p", "cstor-local"]);
    let out = Command::new(env!("CARGO"))
        .args(&args)
        .current_dir(repo())
        .output()
        .expect("cargo tree runs");
    assert!(String::from_utf8_lossy(&out.stdout).contains("test-support"));
}

/// The operators and the webhook run with two replicas, and every replicated workload running
/// one of them elects a leader (two cspc- or cvc-operators acting at once would fight over
/// the same objects; two webhooks bootstrapping at once would write two certificates).
#[test]
fn replicated_operators_and_webhook_elect_a_leader() {
    let mut docs = render(&deploy());
    let webhook = deploy().join("webhook");
    if webhook.join("kustomization.yaml").is_file() {
        docs.extend(render(&webhook));
    }
    let mut seen = BTreeSet::new();
    for doc in &docs {
        let Some(spec) = pod_spec(doc) else { continue };
        let replicas = doc["spec"]["replicas"].as_i64().unwrap_or(1);
        for c in spec.containers {
            let bin = c.command.clone().unwrap_or_default().first().cloned();
            let Some(bin) = bin.filter(|b| {
                ["cspc-operator", "cvc-operator", "cstor-webhook"].contains(&b.as_str())
            }) else {
                continue;
            };
            seen.insert(bin.clone());
            assert!(
                replicas >= 2,
                "{}: {bin} runs {replicas} replica(s)",
                id(doc)
            );
            let args = c.args.clone().unwrap_or_default();
            assert!(
                args.iter()
                    .any(|a| a == "--leader-election=true" || a == "--leader-election"),
                "{}: {replicas} replicas of {bin} without --leader-election: {args:?}",
                id(doc)
            );
        }
    }
    assert_eq!(
        seen,
        ["cspc-operator", "cstor-webhook", "cvc-operator"]
            .map(String::from)
            .into(),
    );
}

// ---------------------------------------------------------------------------------------------
// API test server

async fn server() -> TestApiServer {
    let srv = TestApiServer::start().await;
    srv.register(ResourceDef::new(
        "scheduling.k8s.io",
        "v1",
        "PriorityClass",
        "priorityclasses",
        KitScope::Cluster,
    ));
    srv.register(ResourceDef::new(
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingWebhookConfiguration",
        "validatingwebhookconfigurations",
        KitScope::Cluster,
    ));
    let client = srv.client();
    let mut crds = cluster::load_crds(&cluster::crd_dir()).expect("deploy/crds loads");
    // The snapshot CRDs are the cluster's (external-snapshotter), not ours: minimal stand-ins.
    crds.push(
        CrdSpec::new(SNAP, "v1", "VolumeSnapshotClass", "volumesnapshotclasses")
            .cluster_scoped()
            .crd(),
    );
    crds.push(
        CrdSpec::new(
            SNAP,
            "v1",
            "VolumeSnapshotContent",
            "volumesnapshotcontents",
        )
        .cluster_scoped()
        .with_status()
        .crd(),
    );
    crds.push(
        CrdSpec::new(SNAP, "v1", "VolumeSnapshot", "volumesnapshots")
            .with_status()
            .crd(),
    );
    cluster::install_crds(&client, &crds)
        .await
        .expect("CRDs install");
    srv
}

/// Creates `doc` (in `default_ns` when namespaced without a namespace) and reads it back.
async fn create(srv: &TestApiServer, doc: &Value, default_ns: &str, what: &str) {
    let client = srv.client();
    let api_version = doc["apiVersion"].as_str().unwrap_or_default();
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, kind(doc));
    let (ar, caps) = pinned_kind(&client, &gvk)
        .await
        .unwrap_or_else(|e| panic!("{what}: {api_version} {} is not served: {e}", id(doc)));
    let obj: DynamicObject = serde_json::from_value(doc.clone()).expect("dynamic object");
    let api: Api<DynamicObject> = match caps.scope {
        Scope::Namespaced => Api::namespaced_with(client, ns(doc).unwrap_or(default_ns), &ar),
        Scope::Cluster => Api::all_with(client, &ar),
    };
    if let Scope::Namespaced = caps.scope {
        ensure_namespace(srv, ns(doc).unwrap_or(default_ns)).await;
    }
    // `kubectl apply` semantics: create, or replace what an earlier file created.
    match api.create(&PostParams::default(), &obj).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let mut obj = obj.clone();
            let current = api
                .get(name(doc))
                .await
                .unwrap_or_else(|e| panic!("{what}: reading {}: {e}", id(doc)));
            obj.metadata.resource_version = current.metadata.resource_version;
            api.replace(name(doc), &PostParams::default(), &obj)
                .await
                .unwrap_or_else(|e| panic!("{what}: replacing {} failed: {e}", id(doc)));
        }
        Err(e) => panic!("{what}: creating {} failed: {e}", id(doc)),
    }
    let back = api
        .get(name(doc))
        .await
        .unwrap_or_else(|e| panic!("{what}: reading {} back: {e}", id(doc)));
    assert_eq!(
        back.metadata.labels,
        obj.metadata.labels,
        "{what}: {} labels",
        id(doc)
    );
}

async fn ensure_namespace(srv: &TestApiServer, n: &str) {
    let api: Api<Namespace> = Api::all(srv.client());
    if api.get_opt(n).await.expect("namespace lookup").is_none() {
        let nsobj: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": n}}))
            .expect("namespace");
        api.create(&PostParams::default(), &nsobj)
            .await
            .expect("namespace create");
    }
}

#[tokio::test]
async fn rendered_manifests_and_examples_are_accepted_by_the_api_server() {
    let srv = server().await;
    // The root install (its CRDs are the ones already installed: skip re-creating them).
    for d in render(&deploy())
        .iter()
        .filter(|d| kind(d) != "CustomResourceDefinition")
    {
        create(&srv, d, "openebs", "deploy").await;
    }
    for d in render(&deploy().join("examples")) {
        create(&srv, &d, "openebs", "deploy/examples").await;
    }
    // A moved namespace works the same way.
    for d in render(&deploy().join("overlays/namespace-example"))
        .iter()
        .filter(|d| ns(d).is_some() || kind(d) == "Namespace")
    {
        create(&srv, d, "cstor-system", "overlays/namespace-example").await;
    }
}

/// The Job examples (`deploy/examples/*-job.yaml`: the migrations and the upgrades; applied one
/// at a time, so not in the examples' kustomization): typed Jobs in `openebs` running
/// `cstor-migrate` from the operators' image as ServiceAccount `openebs-cstor-migrate` (which the
/// root install creates and binds to its ClusterRole), given their namespace, and accepted by
/// the API server. Their arguments are checked against the real CLI by
/// `operators/src/cli.rs` (`example_jobs_parse_with_the_migrate_cli`).
#[tokio::test]
async fn job_examples_run_cstor_migrate_as_its_service_account() {
    const SA: &str = "openebs-cstor-migrate";
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy().join("examples"))
        .expect("deploy/examples")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.to_string_lossy().ends_with("-job.yaml"))
        .collect();
    files.sort();
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "migrate-pool-job.yaml",
            "migrate-volume-job.yaml",
            "upgrade-cspc-job.yaml",
            "upgrade-volume-job.yaml"
        ]
    );
    let root = render(&deploy());
    assert!(
        root.iter()
            .any(|d| kind(d) == "ServiceAccount" && name(d) == SA && ns(d) == Some("openebs")),
        "the root install has no ServiceAccount openebs/{SA}"
    );
    assert!(
        root.iter().any(|d| kind(d) == "ClusterRoleBinding"
            && d["roleRef"]["name"] == SA
            && d["subjects"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|s| s["name"] == SA && s["namespace"] == "openebs")),
        "ClusterRole {SA} is not bound to ServiceAccount openebs/{SA}"
    );
    let operator_image = container(
        &containers(&root),
        "Deployment/cspc-operator",
        "cspc-operator",
    )
    .image
    .clone();
    let srv = server().await;
    srv.register(ResourceDef::new(
        "batch",
        "v1",
        "Job",
        "jobs",
        KitScope::Namespaced,
    ));
    for (file, path) in names.iter().zip(&files) {
        let docs = read_docs(path);
        assert_eq!(docs.len(), 1, "{file}: one Job");
        let doc = &docs[0];
        assert_eq!(kind(doc), "Job", "{file}");
        assert_eq!(ns(doc), Some("openebs"), "{file}");
        parse_typed(doc, file);
        let pod: PodSpec = serde_json::from_value(doc["spec"]["template"]["spec"].clone())
            .expect("pod spec parses");
        assert_eq!(pod.service_account_name.as_deref(), Some(SA), "{file}");
        let [c] = pod.containers.as_slice() else {
            panic!("{file}: one container");
        };
        assert_eq!(c.image, operator_image, "{file}: the operators' image");
        assert_eq!(
            c.command.as_deref(),
            Some(&["cstor-migrate".to_owned()][..]),
            "{file}"
        );
        let namespace_env = c
            .env
            .iter()
            .flatten()
            .find(|e| e.name == "OPENEBS_NAMESPACE")
            .and_then(|e| e.value_from.as_ref()?.field_ref.as_ref())
            .map(|f| f.field_path.as_str());
        assert_eq!(namespace_env, Some("metadata.namespace"), "{file}");
        create(&srv, doc, "openebs", file).await;
    }
}

/// Upstream example files that cannot apply as they are, and why.
const UPSTREAM_SKIPPED: &[(&str, &str)] = &[(
    "cstor-csi/examples_cspc.yaml",
    "apiVersion openebs.io/v1alpha1 CStorPoolCluster (pre-2.0 schema: raidGroups/defaultRaidGroupType) is not served by upstream 3.6 either",
)];

/// Files whose API version is no longer served; applied with the served version instead.
const UPSTREAM_MOVED: &[(&str, &str, &str)] = &[
    (
        "cstor-csi/deploy_csidriver.yaml",
        "storage.k8s.io/v1",
        "CSIDriver storage.k8s.io/v1beta1 was removed in Kubernetes 1.22",
    ),
    (
        "cstor-csi/examples_csi-snapshot.yaml",
        "snapshot.storage.k8s.io/v1",
        "VolumeSnapshot v1beta1 is not served by external-snapshotter v6 (what upstream 3.6 installs)",
    ),
];

#[tokio::test]
async fn upstream_examples_apply_with_our_crds() {
    let Some(upstream) =
        cstor_testkit::shared::upstream_fixtures("upstream_examples_apply_with_our_crds")
    else {
        return;
    };
    let srv = server().await;
    let files = [
        "csi-storageclass.yaml",
        "cspc-template.yaml",
        "snapshot_class.yaml",
        "cstor-csi/deploy_csidriver.yaml",
        "cstor-csi/deploy_snapshot-class.yaml",
        "cstor-csi/examples_block-volume_block_pvc.yaml",
        "cstor-csi/examples_csi-pvc-clone.yaml",
        "cstor-csi/examples_csi-pvc.yaml",
        "cstor-csi/examples_csi-snapshot.yaml",
        "cstor-csi/examples_csi-storageclass.yaml",
        "cstor-csi/examples_cspc.yaml",
    ];
    let on_disk: BTreeSet<String> = std::fs::read_dir(upstream.join("cstor-csi"))
        .expect("upstream cstor-csi fixtures")
        .map(|e| {
            format!(
                "cstor-csi/{}",
                e.expect("entry").file_name().to_string_lossy()
            )
        })
        .collect();
    assert!(
        on_disk.iter().all(|f| files.contains(&f.as_str())),
        "a new upstream cstor-csi fixture: add it to this test"
    );
    let ours: Vec<Value> = render(&deploy());
    for f in files {
        if let Some((_, why)) = UPSTREAM_SKIPPED.iter().find(|(s, _)| *s == f) {
            println!("SKIPPED upstream {f}: {why}");
            continue;
        }
        let docs = read_docs(&upstream.join(f));
        assert!(!docs.is_empty(), "{f} has no objects");
        for mut d in docs {
            if let Some((_, to, why)) = UPSTREAM_MOVED.iter().find(|(s, _, _)| *s == f) {
                println!("upstream {f}: {why}; applying {} as {to}", id(&d));
                d["apiVersion"] = Value::String((*to).to_owned());
            }
            if kind(&d) == "CSIDriver" {
                // Same driver object as ours: the spec must match, then it replaces nothing.
                let mine = ours
                    .iter()
                    .find(|o| kind(o) == "CSIDriver")
                    .expect("our CSIDriver");
                assert_eq!(
                    d["spec"], mine["spec"],
                    "upstream CSIDriver spec differs from deploy/base/csi/csidriver.yaml"
                );
            }
            if kind(&d) == "CStorPoolCluster" {
                let _: CStorPoolCluster = typed(&d, f);
            }
            create(&srv, &d, "default", f).await;
        }
    }
}

/// With `CSTOR_TEST_KUBECONFIG` set: every rendered manifest and example goes to the real API
/// server as a server-side-apply dry run (full validation and admission, nothing persisted;
/// namespaced objects aimed at the test's namespace). Kinds the cluster does not serve (the
/// snapshot CRDs are a cluster add-on) are reported and skipped.
#[tokio::test]
async fn manifests_apply_to_a_real_cluster_as_dry_run() {
    use kube::{
        Api,
        api::{DynamicObject, GroupVersionKind, Patch, PatchParams},
        discovery::{Discovery, Scope},
    };
    let Some(tc) =
        cluster::TestCluster::real_only("manifests_apply_to_a_real_cluster_as_dry_run").await
    else {
        return;
    };
    let client = tc.client();
    let discovery = Discovery::new(client.clone())
        .run()
        .await
        .expect("discovery");
    let docs: Vec<Value> = render(&deploy())
        .into_iter()
        .chain(render(&deploy().join("examples")))
        .collect();
    for d in &docs {
        let api_version = d["apiVersion"].as_str().unwrap_or_default();
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let gvk = GroupVersionKind::gvk(group, version, kind(d));
        let Some((ar, caps)) = discovery.resolve_gvk(&gvk) else {
            println!(
                "SKIPPED {api_version} {}: not served by this cluster",
                kind(d)
            );
            continue;
        };
        let mut obj: DynamicObject = serde_json::from_value(d.clone()).expect("object");
        let name = obj.metadata.name.clone().expect("name");
        let api: Api<DynamicObject> = if caps.scope == Scope::Namespaced {
            obj.metadata.namespace = Some(tc.namespace().to_string());
            Api::namespaced_with(client.clone(), tc.namespace(), &ar)
        } else {
            Api::all_with(client.clone(), &ar)
        };
        api.patch(
            &name,
            &PatchParams::apply("cstor-deploy-test").force().dry_run(),
            &Patch::Apply(&obj),
        )
        .await
        .unwrap_or_else(|e| panic!("{} {name} refused by the cluster: {e}", kind(d)));
    }
    tc.cleanup().await.expect("cleanup");
}
