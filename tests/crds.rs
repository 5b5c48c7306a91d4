//! The generated CRDs: committed files in sync with the types (drift), valid
//! apiextensions/v1 objects with structural schemas, no status subresource, and the crdgen
//! binary's `--check` / `--stdout` behaviour.

use std::{collections::BTreeSet, path::Path, process::Command};

use cstor_api::{crdgen, cstor, ndm};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps,
};
use kube::{CustomResourceExt, Resource};
use serde::Deserialize;
use serde_json::Value;

#[test]
fn committed_crds_match_the_types() {
    let problems = crdgen::check_dir(Path::new(crdgen::DEFAULT_DIR)).expect("read deploy/crds");
    assert!(
        problems.is_empty(),
        "deploy/crds is out of date with the Rust types:\n  {}\nrun `cargo run --bin crdgen` and commit the result",
        problems.join("\n  ")
    );
}

#[test]
fn committed_files_are_valid_crds_equal_to_the_generated_ones() {
    let generated = crdgen::all_crds();
    assert_eq!(generated.len(), 15);
    for crd in &generated {
        let path = Path::new(crdgen::DEFAULT_DIR).join(crdgen::file_name(crd));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; run `cargo run --bin crdgen`", path.display()));
        let parsed: CustomResourceDefinition = serde_yaml::from_str(&text).unwrap_or_else(|e| {
            panic!("{} is not a CustomResourceDefinition: {e}", path.display())
        });
        assert_eq!(
            &parsed,
            crd,
            "{} differs from the generated CRD",
            path.display()
        );
        assert!(!text.contains("$ref"), "{} contains a $ref", path.display());
    }
}

#[test]
fn every_schema_is_structural() {
    for crd in crdgen::all_crds() {
        let name = crd.metadata.name.clone().unwrap();
        let schema = crdgen::schema_json(&crd);
        let problems = crdgen::structural_problems(&schema);
        assert!(problems.is_empty(), "{name}: {problems:#?}");
        // Independent of the helper: every node that has properties is an object, every node
        // has a type unless it is int-or-string.
        let mut nodes = 0;
        walk(&schema, &mut |path, node| {
            nodes += 1;
            let int_or_string = node.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
            assert!(
                node.get("type").is_some() || int_or_string,
                "{name}: {path} has no type"
            );
            if node.get("properties").is_some() {
                assert_eq!(node["type"], "object", "{name}: {path}");
            }
            for key in ["$ref", "anyOf", "oneOf", "allOf", "default", "const"] {
                assert!(node.get(key).is_none(), "{name}: {path} has {key}");
            }
            // Unknown fields are pruned like upstream: nothing preserves them wholesale.
            assert!(
                node.get("x-kubernetes-preserve-unknown-fields").is_none(),
                "{name}: {path} preserves unknown fields"
            );
        });
        assert!(nodes > 5, "{name}: schema too small ({nodes} nodes)");
        let props: JSONSchemaProps = serde_json::from_value(schema).expect("JSONSchemaProps");
        let root = props.properties.expect("root properties");
        assert_eq!(root["metadata"].type_.as_deref(), Some("object"), "{name}");
        assert!(
            root["spec"].properties.is_some(),
            "{name}: spec has properties"
        );
    }
}

fn walk(node: &Value, f: &mut dyn FnMut(&str, &Value)) {
    fn go(node: &Value, path: String, f: &mut dyn FnMut(&str, &Value)) {
        f(&path, node);
        if let Some(Value::Object(props)) = node.get("properties") {
            for (k, v) in props {
                go(v, format!("{path}.{k}"), f);
            }
        }
        if let Some(items) = node.get("items") {
            go(items, format!("{path}[]"), f);
        }
        if let Some(ap @ Value::Object(_)) = node.get("additionalProperties") {
            go(ap, format!("{path}{{}}"), f);
        }
    }
    go(node, String::new(), f);
}

#[test]
fn no_status_subresource_and_one_served_storage_version() {
    for crd in crdgen::all_crds() {
        let name = crd.metadata.name.clone().unwrap();
        assert_eq!(crd.spec.scope, "Namespaced", "{name}");
        assert_eq!(crd.spec.versions.len(), 1, "{name}");
        let v = &crd.spec.versions[0];
        assert!(v.served && v.storage, "{name}: served and storage");
        assert!(
            v.subresources.as_ref().is_none_or(|s| s.status.is_none()),
            "{name}: a status subresource would make the Go operators' status updates vanish"
        );
    }
}

#[test]
fn quirky_fields_are_declared_as_upstream_spells_them() {
    let schema_of = |name: &str| {
        let crd = crdgen::all_crds()
            .into_iter()
            .find(|c| c.metadata.name.as_deref() == Some(name))
            .unwrap();
        crdgen::schema_json(&crd)
    };
    let cvc = schema_of("cstorvolumeconfigs.cstor.openebs.io");
    assert!(cvc["properties"]["status"]["properties"]["condition"].is_object());
    assert!(cvc["properties"]["status"]["properties"]["conditions"].is_null());
    assert!(cvc["properties"]["publish"]["properties"]["nodeId"].is_object());
    assert_eq!(
        cvc["required"],
        serde_json::json!(["spec", "status", "versionDetails"])
    );
    let cvr = schema_of("cstorvolumereplicas.cstor.openebs.io");
    assert!(cvr["properties"]["spec"]["properties"]["replicaid"].is_object());
    assert!(cvr["properties"]["spec"]["properties"]["targetIP"].is_object());
    let cva = schema_of("cstorvolumeattachments.cstor.openebs.io");
    assert_eq!(cva["properties"]["status"]["type"], "string");
    assert!(
        cva["properties"]["spec"]["properties"]["volume"]["properties"]["ownerNodeID"].is_object()
    );
    let backup = schema_of("cstorbackups.cstor.openebs.io");
    assert_eq!(backup["properties"]["status"]["type"], "string");
    let cv = schema_of("cstorvolumes.cstor.openebs.io");
    let rs = &cv["properties"]["status"]["properties"]["replicaStatuses"]["items"];
    assert!(rs["properties"]["checkpointedIOSeq"].is_object());
    assert_eq!(
        cv["properties"]["spec"]["properties"]["capacity"]["x-kubernetes-int-or-string"],
        true
    );
    let bd = schema_of("blockdevices.openebs.io");
    assert!(
        bd.get("required").is_none(),
        "NDM's BD CRD does not require spec"
    );
}

#[test]
fn custom_resource_ext_agrees_with_crdgen() {
    fn check<K: CustomResourceExt + Resource<DynamicType = ()>>(short: &str) {
        let crd = K::crd();
        assert_eq!(crd.metadata.name.as_deref(), Some(K::crd_name()));
        assert_eq!(K::shortnames(), [short]);
        let ar = K::api_resource();
        assert_eq!(ar.plural, crd.spec.names.plural);
        assert_eq!(ar.kind, crd.spec.names.kind);
        assert_eq!(ar.api_version, K::api_version(&()));
        assert!(
            crdgen::all_crds().contains(&crd),
            "{} missing from all_crds",
            K::crd_name()
        );
    }
    check::<cstor::CStorPoolCluster>("cspc");
    check::<cstor::CStorPoolInstance>("cspi");
    check::<cstor::CStorVolumeConfig>("cvc");
    check::<cstor::CStorVolume>("cv");
    check::<cstor::CStorVolumeReplica>("cvr");
    check::<cstor::CStorVolumePolicy>("cvp");
    check::<cstor::CStorVolumeAttachment>("cva");
    check::<cstor::CStorSnapshotRecord>("csnap");
    check::<cstor::CStorBackup>("cbackup");
    check::<cstor::CStorRestore>("crestore");
    check::<cstor::CStorCompletedBackup>("ccompletedbackup");
    check::<ndm::BlockDevice>("bd");
    check::<ndm::BlockDeviceClaim>("bdc");
    assert_eq!(
        cstor::CStorPoolCluster::url_path(&(), Some("openebs")),
        "/apis/cstor.openebs.io/v1/namespaces/openebs/cstorpoolclusters"
    );
    assert_eq!(
        ndm::BlockDevice::url_path(&(), Some("openebs")),
        "/apis/openebs.io/v1alpha1/namespaces/openebs/blockdevices"
    );
}

fn crdgen_bin(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_crdgen"))
        .args(args)
        .output()
        .expect("run crdgen")
}

#[test]
fn crdgen_check_names_the_files_that_differ() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();

    let out = crdgen_bin(&["--dir", d]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written: BTreeSet<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let expected: BTreeSet<String> = crdgen::all_crds().iter().map(crdgen::file_name).collect();
    assert_eq!(written, expected);

    let out = crdgen_bin(&["--check", "--dir", d]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let cvc = dir.path().join("cstorvolumeconfigs.cstor.openebs.io.yaml");
    let text = std::fs::read_to_string(&cvc).unwrap();
    std::fs::write(&cvc, text.replace("- cvc", "- cvcx")).unwrap();
    std::fs::remove_file(dir.path().join("blockdevices.openebs.io.yaml")).unwrap();
    std::fs::write(dir.path().join("old.cstor.openebs.io.yaml"), "stale").unwrap();

    let out = crdgen_bin(&["--check", "--dir", d]);
    assert!(!out.status.success(), "--check must fail on drift");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cstorvolumeconfigs.cstor.openebs.io.yaml differs"),
        "{stderr}"
    );
    assert!(
        stderr.contains("blockdevices.openebs.io.yaml is missing"),
        "{stderr}"
    );
    assert!(
        stderr.contains("old.cstor.openebs.io.yaml is not produced by crdgen"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("cstorpoolclusters"),
        "unchanged files are not reported: {stderr}"
    );
    assert!(stderr.contains("cargo run --bin crdgen"), "{stderr}");

    let out = crdgen_bin(&["--bogus"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown argument `--bogus`"));
}

#[test]
fn crdgen_stdout_is_a_multi_document_stream_of_all_crds() {
    let out = crdgen_bin(&["--stdout"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let crds: Vec<CustomResourceDefinition> = serde_yaml::Deserializer::from_str(&text)
        .map(|doc| CustomResourceDefinition::deserialize(doc).expect("a CRD document"))
        .collect();
    assert_eq!(crds, crdgen::all_crds());
}
