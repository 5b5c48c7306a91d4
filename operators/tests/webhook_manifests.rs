//! deploy/webhook/*.yaml parse as k8s-openapi types without losing a field, and agree with
//! what the server registers by itself.

use std::path::{Path, PathBuf};

use cstor_operators::webhook::{
    DEFAULT_PORT, SERVER_NAME, VALIDATE_PATH, WEBHOOK_CONFIG_NAME, WEBHOOK_NAME,
    bootstrap::{BootstrapConfig, service, webhook_configuration},
};
use k8s_openapi::api::{
    admissionregistration::v1::ValidatingWebhookConfiguration,
    apps::v1::Deployment,
    core::v1::{Service, ServiceAccount},
    rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding},
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::Value;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/webhook")
}

#[derive(Default)]
struct Objects {
    deployments: Vec<Deployment>,
    services: Vec<Service>,
    webhooks: Vec<ValidatingWebhookConfiguration>,
    service_accounts: Vec<ServiceAccount>,
    cluster_roles: Vec<ClusterRole>,
    roles: Vec<Role>,
    bindings: usize,
}

/// Parses `value` as `K` and checks that serializing it back gives the same document (a
/// misspelt or misplaced field would be dropped by the typed parse and show up here).
fn typed<K: DeserializeOwned + Serialize>(value: &Value, file: &Path) -> K {
    let object: K =
        serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let back = serde_json::to_value(&object).unwrap();
    assert_eq!(
        &back,
        value,
        "{}: a field did not survive the typed parse",
        file.display()
    );
    object
}

fn load() -> Objects {
    let mut out = Objects::default();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir())
        .expect("deploy/webhook exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    for file in files {
        if file.file_name().unwrap() == "kustomization.yaml" {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = Value::deserialize(doc).unwrap();
            if value.is_null() {
                continue;
            }
            match value["kind"].as_str().unwrap_or_default() {
                "Deployment" => out.deployments.push(typed(&value, &file)),
                "Service" => out.services.push(typed(&value, &file)),
                "ValidatingWebhookConfiguration" => out.webhooks.push(typed(&value, &file)),
                "ServiceAccount" => out.service_accounts.push(typed(&value, &file)),
                "ClusterRole" => out.cluster_roles.push(typed(&value, &file)),
                "Role" => out.roles.push(typed(&value, &file)),
                "ClusterRoleBinding" => {
                    typed::<ClusterRoleBinding>(&value, &file);
                    out.bindings += 1;
                }
                "RoleBinding" => {
                    typed::<RoleBinding>(&value, &file);
                    out.bindings += 1;
                }
                other => panic!("{}: unexpected kind {other:?}", file.display()),
            }
        }
    }
    out
}

#[test]
fn manifests_parse_and_match_the_bootstrap() {
    let o = load();
    assert_eq!(o.deployments.len(), 1);
    assert_eq!(o.services.len(), 1);
    assert_eq!(o.webhooks.len(), 1);
    assert_eq!(o.service_accounts.len(), 1);
    assert_eq!(
        (o.cluster_roles.len(), o.roles.len(), o.bindings),
        (1, 1, 2)
    );

    // The webhook configuration is the one the server registers, minus the CA bundle.
    let cfg = BootstrapConfig::new("openebs");
    let mut expected = webhook_configuration(&cfg, "", None);
    let actual = &o.webhooks[0];
    assert_eq!(actual.metadata.name.as_deref(), Some(WEBHOOK_CONFIG_NAME));
    let hook = &actual.webhooks.as_ref().unwrap()[0];
    let want = &mut expected.webhooks.as_mut().unwrap()[0];
    want.client_config.ca_bundle = None;
    assert_eq!(hook, want);
    assert_eq!(hook.name, WEBHOOK_NAME);
    assert_eq!(
        hook.client_config.service.as_ref().unwrap().path.as_deref(),
        Some(VALIDATE_PATH)
    );

    // The Service is the one the server creates.
    let svc = &o.services[0];
    let built = service(&cfg, None);
    assert_eq!(svc.metadata.name.as_deref(), Some(SERVER_NAME));
    assert_eq!(
        svc.spec.as_ref().unwrap().selector,
        built.spec.as_ref().unwrap().selector
    );
    assert_eq!(
        svc.spec.as_ref().unwrap().ports,
        built.spec.as_ref().unwrap().ports
    );

    // The Deployment is found by the server's owner lookup and its pods match the Service.
    let d = &o.deployments[0];
    let labels = d.metadata.labels.as_ref().unwrap();
    assert_eq!(
        labels["openebs.io/component-name"],
        "cstor-admission-webhook"
    );
    let pod_labels = d
        .spec
        .as_ref()
        .unwrap()
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .as_ref()
        .unwrap();
    for (k, v) in svc.spec.as_ref().unwrap().selector.as_ref().unwrap() {
        assert_eq!(pod_labels.get(k), Some(v), "pod label {k}");
    }
    let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(
        pod.service_account_name.as_deref(),
        o.service_accounts[0].metadata.name.as_deref()
    );
    let container = &pod.containers[0];
    assert_eq!(
        container.ports.as_ref().unwrap()[0].container_port,
        i32::from(DEFAULT_PORT)
    );
    let env: Vec<&str> = container
        .env
        .as_ref()
        .unwrap()
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    for name in [
        "OPENEBS_NAMESPACE",
        "ADMISSION_WEBHOOK_NAME",
        "ADMISSION_WEBHOOK_FAILURE_POLICY",
    ] {
        assert!(env.contains(&name), "env {name} missing");
    }

    // RBAC covers what the server calls.
    let cluster_rules = o.cluster_roles[0].rules.as_ref().unwrap();
    let allows = |rules: &[k8s_openapi::api::rbac::v1::PolicyRule],
                  group: &str,
                  resource: &str,
                  verb: &str| {
        rules.iter().any(|r| {
            r.api_groups
                .as_ref()
                .is_some_and(|g| g.iter().any(|g| g == group))
                && r.resources
                    .as_ref()
                    .is_some_and(|x| x.iter().any(|x| x == resource))
                && r.verbs.iter().any(|v| v == verb)
        })
    };
    for (group, resource, verb) in [
        ("", "nodes", "list"),
        ("", "persistentvolumeclaims", "get"),
        ("openebs.io", "blockdevices", "get"),
        ("openebs.io", "blockdeviceclaims", "create"),
        ("openebs.io", "blockdeviceclaims", "update"),
        ("openebs.io", "blockdeviceclaims", "list"),
        ("cstor.openebs.io", "cstorpoolinstances", "list"),
        ("cstor.openebs.io", "cstorvolumereplicas", "list"),
        ("cstor.openebs.io", "cstorvolumes", "list"),
        ("cstor.openebs.io", "cstorvolumeconfigs", "list"),
        (
            "admissionregistration.k8s.io",
            "validatingwebhookconfigurations",
            "update",
        ),
        (
            "admissionregistration.k8s.io",
            "validatingwebhookconfigurations",
            "delete",
        ),
    ] {
        assert!(
            allows(cluster_rules, group, resource, verb),
            "ClusterRole lacks {verb} {group}/{resource}"
        );
    }
    let ns_rules = o.roles[0].rules.as_ref().unwrap();
    for (group, resource, verb) in [
        ("", "secrets", "get"),
        ("", "secrets", "create"),
        ("", "services", "create"),
        ("apps", "deployments", "list"),
    ] {
        assert!(
            allows(ns_rules, group, resource, verb),
            "Role lacks {verb} {group}/{resource}"
        );
    }
}
