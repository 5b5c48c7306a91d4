//! The CRD types against realistic objects: every fixture (shaped as the Go operators write
//! them) round-trips with nothing lost and nothing added, upstream's example objects parse,
//! unknown fields and enum values survive, and malformed objects fail naming the field.

use std::{
    fmt::Debug,
    path::{Path, PathBuf},
};

use cstor_api::{
    cstor::{self, ParseError, from_json, from_value, from_yaml},
    ndm,
};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(yaml_files(&path));
        } else if path.extension().is_some_and(|e| e == "yaml") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// Nulls in an object read from the API server mean "absent" (Go writes `null` for zero
/// `metav1.Time`s); our types omit them, so the comparison drops them from the original.
fn without_nulls(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

fn contains_null(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(map) => map.values().any(contains_null),
        Value::Array(items) => items.iter().any(contains_null),
        _ => false,
    }
}

/// Differences between two JSON values as `path: a != b` lines.
fn diff(a: &Value, b: &Value, path: &str, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for k in x.keys().chain(y.keys().filter(|k| !x.contains_key(*k))) {
                let p = format!("{path}.{k}");
                match (x.get(k), y.get(k)) {
                    (Some(l), Some(r)) => diff(l, r, &p, out),
                    (l, r) => out.push(format!("{p}: {l:?} != {r:?}")),
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (l, r)) in x.iter().zip(y).enumerate() {
                diff(l, r, &format!("{path}[{i}]"), out);
            }
        }
        (l, r) if l != r => out.push(format!("{path}: {l} != {r}")),
        _ => {}
    }
}

/// Parses `text` as `K`, serializes it and checks the JSON equals the original (minus nulls),
/// then parses the output again and checks the typed values are equal.
fn round_trip<K>(text: &str, origin: &str) -> K
where
    K: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let original: Value = serde_yaml::from_str(text).unwrap();
    let parsed: K = from_yaml(text).unwrap_or_else(|e| panic!("{origin}: {e}"));
    let written = serde_json::to_value(&parsed).unwrap();
    assert!(
        !contains_null(&written),
        "{origin}: serialization invented a null: {written}"
    );
    let mut differences = Vec::new();
    diff(&without_nulls(&original), &written, "", &mut differences);
    assert!(
        differences.is_empty(),
        "{origin}: round trip changed the object (original != written):\n{}",
        differences.join("\n")
    );
    let again: K = from_value(written).unwrap_or_else(|e| panic!("{origin}: re-parse: {e}"));
    assert_eq!(again, parsed, "{origin}: re-parse differs");
    parsed
}

/// Round-trips `text` as the type its `kind` names; returns the kind.
fn round_trip_by_kind(text: &str, origin: &str) -> String {
    let value: Value = serde_yaml::from_str(text).unwrap();
    let kind = value["kind"].as_str().unwrap_or_default().to_owned();
    match kind.as_str() {
        "CStorPoolCluster" => drop(round_trip::<cstor::CStorPoolCluster>(text, origin)),
        "CStorPoolInstance" => drop(round_trip::<cstor::CStorPoolInstance>(text, origin)),
        "CStorVolumeConfig" => drop(round_trip::<cstor::CStorVolumeConfig>(text, origin)),
        "CStorVolume" => drop(round_trip::<cstor::CStorVolume>(text, origin)),
        "CStorVolumeReplica" => drop(round_trip::<cstor::CStorVolumeReplica>(text, origin)),
        "CStorVolumePolicy" => drop(round_trip::<cstor::CStorVolumePolicy>(text, origin)),
        "CStorVolumeAttachment" => drop(round_trip::<cstor::CStorVolumeAttachment>(text, origin)),
        "CStorBackup" => drop(round_trip::<cstor::CStorBackup>(text, origin)),
        "CStorRestore" => drop(round_trip::<cstor::CStorRestore>(text, origin)),
        "CStorCompletedBackup" => drop(round_trip::<cstor::CStorCompletedBackup>(text, origin)),
        "BlockDevice" => drop(round_trip::<ndm::BlockDevice>(text, origin)),
        "BlockDeviceClaim" => drop(round_trip::<ndm::BlockDeviceClaim>(text, origin)),
        other => panic!("{origin}: no type for kind `{other}`"),
    }
    kind
}

#[test]
fn every_fixture_round_trips_and_every_kind_has_one() {
    let mut kinds = std::collections::BTreeSet::new();
    let files = yaml_files(Path::new(FIXTURES));
    assert!(files.len() >= 18, "fixtures missing: {files:?}");
    for path in &files {
        kinds.insert(round_trip_by_kind(&read(path), &path.display().to_string()));
    }
    assert_eq!(kinds.len(), 12, "kinds covered: {kinds:?}");
}

fn fixture(rel: &str) -> String {
    read(&Path::new(FIXTURES).join(rel))
}

#[test]
fn fixtures_parse_into_the_expected_values() {
    let cspi: cstor::CStorPoolInstance = from_yaml(&fixture("cstor/cspi.yaml")).unwrap();
    let status = cspi.status.as_ref().unwrap();
    assert_eq!(status.phase, Some(cstor::CStorPoolInstancePhase::Online));
    assert_eq!(status.capacity.as_ref().unwrap().zfs.logical_used.0, "120M");
    assert_eq!(
        (status.provisioned_replicas, status.healthy_replicas),
        (3, 2)
    );
    let config = cspi.spec.pool_config.as_ref().unwrap();
    assert_eq!(config.data_raid_group_type, cstor::RaidGroupType::Mirror);
    assert_eq!(config.ro_threshold(), 90);
    assert_eq!(config.resources, None, "`resources: null` reads as absent");
    assert_eq!(
        cspi.spec.block_device_names().collect::<Vec<_>>(),
        [
            "blockdevice-8e7f3c2a1b0d4e5f6a7b8c9d0e1f2a3b",
            "blockdevice-1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f"
        ]
    );

    let cvc: cstor::CStorVolumeConfig = from_yaml(&fixture("cstor/cvc.yaml")).unwrap();
    assert_eq!(cvc.status.phase, Some(cstor::CStorVolumeConfigPhase::Bound));
    assert_eq!(cvc.status.conditions()[0].type_, "Resizing");
    assert_eq!(cvc.status.pool_info().len(), 3);
    assert_eq!(cvc.spec.provision.replica_count, 3);
    assert!(cvc.spec.policy.replica_affinity());
    assert_eq!(
        cvc.publish.as_ref().unwrap().node_id.as_deref(),
        Some("worker-1")
    );
    assert_eq!(cvc.version_details.current(), "3.6.0");

    let cv: cstor::CStorVolume = from_yaml(&fixture("cstor/cv.yaml")).unwrap();
    let cv_status = cv.status.as_ref().unwrap();
    assert_eq!(cv_status.replica_statuses()[2].quorum, "0");
    assert_eq!(
        cv.spec
            .replica_details
            .as_ref()
            .unwrap()
            .known_replicas
            .as_ref()
            .unwrap()
            .len(),
        3
    );

    let cvr: cstor::CStorVolumeReplica = from_yaml(&fixture("cstor/cvr.yaml")).unwrap();
    assert_eq!(cvr.spec.replica_id.as_deref(), Some("1340213417146580283"));
    let snaps = cvr.status.as_ref().unwrap().snapshots.as_ref().unwrap();
    assert_eq!(
        snaps["snapshot-7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c0d"].logical_referenced,
        1_048_576
    );

    let cva: cstor::CStorVolumeAttachment = from_yaml(&fixture("cstor/cva.yaml")).unwrap();
    assert_eq!(cva.status, Some(cstor::CStorVolumeAttachmentStatus::Empty));
    assert_eq!(cva.spec.volume.owner_node_id, "worker-1");

    let backup: cstor::CStorBackup = from_yaml(&fixture("cstor/backup.yaml")).unwrap();
    assert_eq!(backup.status, Some(cstor::CStorBackupStatus::Done));

    let bd: ndm::BlockDevice = from_yaml(&fixture("ndm/bd.yaml")).unwrap();
    assert_eq!(
        bd.spec.candidate_paths(),
        [
            "/dev/disk/by-id/ata-QEMU_HARDDISK_QM00003",
            "/dev/disk/by-path/pci-0000:00:01.1-ata-2",
            "/dev/sdb"
        ]
    );
    assert_eq!(
        bd.status.as_ref().unwrap().claim_state,
        ndm::DeviceClaimState::Claimed
    );
    let bdc: ndm::BlockDeviceClaim = from_yaml(&fixture("ndm/bdc.yaml")).unwrap();
    assert_eq!(bdc.status.unwrap().phase, ndm::DeviceClaimPhase::Bound);
}

#[test]
fn unknown_fields_survive_read_modify_write() {
    let text = fixture("future/cspc-unknown-fields.yaml");
    let mut cspc: cstor::CStorPoolCluster = from_yaml(&text).unwrap();
    assert_eq!(
        cspc.extra["futureTopLevel"],
        serde_json::json!({"enabled": true})
    );
    assert_eq!(
        cspc.spec.pools()[0].extra["futurePoolField"]["nested"]["deep"],
        "x"
    );
    let config = cspc.spec.pools.as_ref().unwrap()[0]
        .pool_config
        .as_ref()
        .unwrap();
    assert_eq!(
        config.data_raid_group_type,
        cstor::RaidGroupType::Other("draid".into())
    );
    assert_eq!(
        cspc.version_details
            .as_ref()
            .unwrap()
            .status
            .as_ref()
            .unwrap()
            .state,
        Some(cstor::VersionState::Other("ReconcileFailed".into()))
    );

    // Modify what we model; everything else must still be there.
    cspc.status.as_mut().unwrap().healthy_instances = Some(1);
    cspc.spec.pools.as_mut().unwrap()[0].data_raid_groups[0]
        .block_devices
        .push(cstor::CStorPoolInstanceBlockDevice::named("bd-b"));
    let written = serde_json::to_value(&cspc).unwrap();
    let mut expected: Value = serde_yaml::from_str(&text).unwrap();
    expected["status"]["healthyInstances"] = 1.into();
    expected["spec"]["pools"][0]["dataRaidGroups"][0]["blockDevices"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"blockDeviceName": "bd-b"}));
    let mut differences = Vec::new();
    diff(&expected, &written, "", &mut differences);
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}

#[test]
fn unknown_enum_values_are_kept_verbatim() {
    let cvr: cstor::CStorVolumeReplica =
        from_yaml(&fixture("future/cvr-unknown-values.yaml")).unwrap();
    let phase = cvr.status.unwrap().phase.unwrap();
    assert_eq!(
        phase,
        cstor::CStorVolumeReplicaPhase::Other("Snapshotting".into())
    );
    assert!(!phase.is_known());
    let cspi: cstor::CStorPoolInstance =
        from_yaml(&fixture("future/cspi-unknown-phase.yaml")).unwrap();
    assert_eq!(cspi.status.unwrap().phase.unwrap().as_str(), "SUSPENDED");
    let bd: ndm::BlockDevice = from_yaml(&fixture("future/bd-unknown-values.yaml")).unwrap();
    let details = bd.spec.details.unwrap();
    assert_eq!(
        details.device_type,
        Some(ndm::DeviceType::Other("nvme".into()))
    );
    assert_eq!(bd.status.unwrap().claim_state.as_str(), "Reserved");
}

#[test]
fn string_enums_map_every_known_value_to_a_variant() {
    fn check<E>(known: &[&str])
    where
        E: for<'a> From<&'a str> + AsRef<str> + Serialize + DeserializeOwned + PartialEq + Debug,
    {
        for value in known {
            let e = E::from(value);
            assert_eq!(e.as_ref(), *value);
            let json = serde_json::to_value(&e).unwrap();
            assert_eq!(json, Value::String((*value).to_owned()));
            assert_eq!(serde_json::from_value::<E>(json).unwrap(), e);
        }
    }
    check::<cstor::CStorPoolInstancePhase>(cstor::CStorPoolInstancePhase::KNOWN);
    check::<cstor::CStorVolumeReplicaPhase>(cstor::CStorVolumeReplicaPhase::KNOWN);
    check::<cstor::CStorVolumePhase>(cstor::CStorVolumePhase::KNOWN);
    check::<cstor::CStorVolumeConfigPhase>(cstor::CStorVolumeConfigPhase::KNOWN);
    check::<cstor::CStorVolumeAttachmentStatus>(cstor::CStorVolumeAttachmentStatus::KNOWN);
    check::<cstor::CStorBackupStatus>(cstor::CStorBackupStatus::KNOWN);
    check::<cstor::RaidGroupType>(cstor::RaidGroupType::KNOWN);
    check::<cstor::VersionState>(cstor::VersionState::KNOWN);
    check::<ndm::DeviceClaimPhase>(ndm::DeviceClaimPhase::KNOWN);
    check::<ndm::DeviceType>(ndm::DeviceType::KNOWN);
    assert!(cstor::CStorPoolInstancePhase::from("ONLINE").is_known());
    assert_eq!(cstor::CStorPoolInstancePhase::from("ONLINE"), "ONLINE");
    assert_eq!(
        cstor::CStorVolumeAttachmentStatus::from("WaitingForCVCBound"),
        cstor::CStorVolumeAttachmentStatus::WaitingForCvcBound
    );
    assert_eq!(
        ndm::DeviceClaimPhase::from("Invalid Capacity Request").to_string(),
        "Invalid Capacity Request"
    );
}

#[test]
fn upstream_example_objects_parse() {
    let Some(upstream) = cstor_testkit::shared::upstream_fixtures("upstream_example_objects_parse")
    else {
        return;
    };
    let mut parsed = Vec::new();
    let mut rejected = Vec::new();
    for path in yaml_files(upstream.as_path()) {
        let text = read(&path);
        for (i, doc) in serde_yaml::Deserializer::from_str(&text).enumerate() {
            let value: Value = serde::Deserialize::deserialize(doc).unwrap();
            let origin = format!("{}#{i}", path.display());
            let api = value["apiVersion"].as_str().unwrap_or_default();
            let kind = value["kind"].as_str().unwrap_or_default();
            match (api, kind) {
                ("cstor.openebs.io/v1", _)
                | ("openebs.io/v1alpha1", "BlockDevice" | "BlockDeviceClaim") => {
                    let text = serde_yaml::to_string(&value).unwrap();
                    round_trip_by_kind(&text, &origin);
                    parsed.push(origin);
                }
                // The legacy v1alpha1 CSPC (raidGroups/defaultRaidGroupType) of the archived
                // cstor-csi examples: not served by upstream 3.x CRDs either. Our v1 type must
                // refuse it clearly instead of misreading it.
                ("openebs.io/v1alpha1", "CStorPoolCluster") => {
                    let err = from_value::<cstor::CStorPoolCluster>(value.clone()).unwrap_err();
                    assert!(
                        err.message
                            .contains("apiVersion: expected `cstor.openebs.io/v1`")
                            && err.message.contains("openebs.io/v1alpha1"),
                        "{origin}: {err}"
                    );
                    rejected.push(origin);
                }
                // CRDs, workloads, StorageClasses, PVCs, snapshots: not ours to parse.
                _ => {}
            }
        }
    }
    assert!(
        parsed.iter().any(|o| o.contains("cspc-template.yaml")),
        "cspc-template.yaml not parsed: {parsed:?}"
    );
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    let template: cstor::CStorPoolCluster =
        from_yaml(&read(&upstream.as_path().join("cspc-template.yaml"))).unwrap();
    let pool = &template.spec.pools()[0];
    assert_eq!(pool.node_selector["kubernetes.io/hostname"], "NODE_NAME");
    assert_eq!(pool.block_device_names().collect::<Vec<_>>(), ["BD_NAME"]);
    assert_eq!(
        pool.pool_config.as_ref().unwrap().data_raid_group_type,
        cstor::RaidGroupType::Stripe
    );
}

fn cspc_value() -> Value {
    serde_yaml::from_str(&fixture("cstor/cspc.yaml")).unwrap()
}

fn expect_error<K: DeserializeOwned + Debug>(value: Value) -> ParseError {
    match from_value::<K>(value) {
        Ok(k) => panic!("expected an error, parsed {k:?}"),
        Err(e) => e,
    }
}

#[test]
fn missing_required_fields_are_named_with_their_path() {
    let mut v = cspc_value();
    v["spec"]["pools"][1]
        .as_object_mut()
        .unwrap()
        .remove("nodeSelector");
    let e = expect_error::<cstor::CStorPoolCluster>(v);
    assert_eq!(e.path, "spec.pools[1]");
    assert!(e.message.contains("missing field `nodeSelector`"), "{e}");
    assert!(e.to_string().contains("spec.pools[1]") && e.to_string().contains("nodeSelector"));

    let mut v = cspc_value();
    v["spec"]["pools"][0]
        .as_object_mut()
        .unwrap()
        .remove("dataRaidGroups");
    let e = expect_error::<cstor::CStorPoolCluster>(v);
    assert_eq!(
        (e.path.as_str(), e.kind.as_str()),
        ("spec.pools[0]", "CStorPoolCluster")
    );
    assert!(e.message.contains("missing field `dataRaidGroups`"), "{e}");

    let mut v = cspc_value();
    v["spec"]["pools"][0]["poolConfig"]
        .as_object_mut()
        .unwrap()
        .remove("dataRaidGroupType");
    let e = expect_error::<cstor::CStorPoolCluster>(v);
    assert_eq!(e.path, "spec.pools[0].poolConfig");
    assert!(e.message.contains("dataRaidGroupType"), "{e}");

    let mut v: Value = serde_yaml::from_str(&fixture("cstor/cvc.yaml")).unwrap();
    v["spec"].as_object_mut().unwrap().remove("provision");
    let e = expect_error::<cstor::CStorVolumeConfig>(v);
    assert_eq!(e.path, "spec");
    assert!(e.message.contains("missing field `provision`"), "{e}");

    let mut v: Value = serde_yaml::from_str(&fixture("cstor/cva.yaml")).unwrap();
    v["spec"]["volume"]
        .as_object_mut()
        .unwrap()
        .remove("ownerNodeID");
    let e = expect_error::<cstor::CStorVolumeAttachment>(v);
    assert_eq!(e.path, "spec.volume");
    assert!(e.message.contains("missing field `ownerNodeID`"), "{e}");

    let mut v = cspc_value();
    v.as_object_mut().unwrap().remove("spec");
    let e = expect_error::<cstor::CStorPoolCluster>(v);
    assert!(e.message.contains("missing field `spec`"), "{e}");
}

#[test]
fn wrong_types_are_named_with_their_path() {
    let mut v: Value = serde_yaml::from_str(&fixture("cstor/cspi.yaml")).unwrap();
    v["status"]["readOnly"] = "yes".into();
    let e = expect_error::<cstor::CStorPoolInstance>(v);
    assert_eq!(e.path, "status.readOnly");
    assert!(e.message.contains("expected a boolean"), "{e}");

    let mut v: Value = serde_yaml::from_str(&fixture("cstor/cvr.yaml")).unwrap();
    v["status"]["snapshots"]["snapshot-6f2d1c0b-7e8a-4b9c-a0d1-e2f3a4b5c6d7"]["logicalReferenced"] =
        (-1).into();
    let e = expect_error::<cstor::CStorVolumeReplica>(v);
    assert_eq!(
        e.path,
        "status.snapshots.snapshot-6f2d1c0b-7e8a-4b9c-a0d1-e2f3a4b5c6d7.logicalReferenced"
    );

    let mut v = cspc_value();
    v["spec"]["pools"][0]["dataRaidGroups"] = serde_json::json!({"blockDevices": []});
    let e = expect_error::<cstor::CStorPoolCluster>(v);
    assert_eq!(e.path, "spec.pools[0].dataRaidGroups");
    assert!(e.message.contains("expected a sequence"), "{e}");

    let mut v: Value = serde_yaml::from_str(&fixture("ndm/bd.yaml")).unwrap();
    v["spec"]["capacity"]["storage"] = "10Gi".into();
    let e = expect_error::<ndm::BlockDevice>(v);
    assert_eq!(e.path, "spec.capacity.storage");

    let e =
        from_json::<cstor::CStorVolume>(r#"{"spec": {"replicationFactor": "three"}}"#).unwrap_err();
    assert_eq!(e.path, "spec.replicationFactor");
}

#[test]
fn wrong_kind_or_api_version_is_refused() {
    let e = from_yaml::<cstor::CStorVolume>(&fixture("cstor/cvc.yaml")).unwrap_err();
    assert!(
        e.message
            .contains("kind: expected `CStorVolume`, found `CStorVolumeConfig`"),
        "{e}"
    );
    let text = fixture("ndm/bd.yaml").replace("openebs.io/v1alpha1", "openebs.io/v1beta1");
    let e = from_yaml::<ndm::BlockDevice>(&text).unwrap_err();
    assert!(
        e.message
            .contains("apiVersion: expected `openebs.io/v1alpha1`"),
        "{e}"
    );
    let e = from_yaml::<cstor::CStorVolume>("spec: [unterminated").unwrap_err();
    assert!(e.message.contains("not valid YAML"), "{e}");
    // Without apiVersion/kind (e.g. items of some list responses) the object still parses.
    let cv: cstor::CStorVolume = from_yaml("metadata: {name: v}\nspec: {iqn: x}").unwrap();
    assert_eq!(cv.spec.iqn.as_deref(), Some("x"));
}

#[test]
fn constructors_write_apiversion_kind_and_only_what_is_set() {
    let Some(upstream) = cstor_testkit::shared::upstream_fixtures(
        "constructors_write_apiversion_kind_and_only_what_is_set",
    ) else {
        return;
    };
    let cspc = cstor::CStorPoolCluster::namespaced(
        "cspc-stripe",
        "openebs",
        cstor::CStorPoolClusterSpec {
            pools: Some(vec![cstor::PoolSpec {
                node_selector: [("kubernetes.io/hostname".to_owned(), "n1".to_owned())].into(),
                data_raid_groups: vec![cstor::RaidGroup {
                    block_devices: vec![cstor::CStorPoolInstanceBlockDevice::named("bd-1")],
                    ..Default::default()
                }],
                pool_config: Some(cstor::PoolConfig {
                    data_raid_group_type: cstor::RaidGroupType::Stripe,
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ..Default::default()
        },
    );
    let written = serde_json::to_value(&cspc).unwrap();
    let expected: Value =
        serde_yaml::from_str(&read(&upstream.as_path().join("cspc-template.yaml")))
            .map(|mut v: Value| {
                v["metadata"]["name"] = "cspc-stripe".into();
                v["spec"]["pools"][0]["nodeSelector"]["kubernetes.io/hostname"] = "n1".into();
                v["spec"]["pools"][0]["dataRaidGroups"][0]["blockDevices"][0]["blockDeviceName"] =
                    "bd-1".into();
                v
            })
            .unwrap();
    assert_eq!(written, expected);

    // CVC: status and versionDetails are required upstream, so always written.
    let mut cvc = cstor::CStorVolumeConfig::namespaced("pvc-1", "openebs", Default::default());
    cvc.status.phase = Some(cstor::CStorVolumeConfigPhase::Pending);
    let written = serde_json::to_value(&cvc).unwrap();
    assert_eq!(written["apiVersion"], "cstor.openebs.io/v1");
    assert_eq!(written["kind"], "CStorVolumeConfig");
    assert_eq!(written["status"], serde_json::json!({"phase": "Pending"}));
    assert_eq!(written["versionDetails"], serde_json::json!({}));
    assert!(written.get("publish").is_none());
    assert_eq!(
        written["spec"],
        serde_json::json!({"capacity": {}, "policy": {}, "provision": {"capacity": {}, "replicaCount": 0}})
    );

    let details = cstor::VersionDetails::at("3.6.0");
    assert_eq!(
        serde_json::to_value(&details).unwrap(),
        serde_json::json!({"desired": "3.6.0", "status": {"current": "3.6.0", "dependentsUpgraded": true}})
    );
}
