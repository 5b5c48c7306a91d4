//! The webhook rules against an in-memory cluster: every rule with an accepted and a
//! rejected case, checking upstream's exact messages.

#[path = "webhook_common.rs"]
mod common;

use std::collections::BTreeMap;

use common::*;
use cstor_api::{
    constants::{annotation, label},
    cstor::{
        CStorPoolCluster, CStorPoolInstance, CStorPoolInstanceSpec, CStorVolume, CStorVolumeConfig,
        CStorVolumeReplica, CStorVolumeReplicaSpec, CStorVolumeSpec, RaidGroupType,
        ReplicaPoolInfo,
    },
    ndm::{BlockDeviceState, FileSystemInfo},
};
use cstor_operators::webhook::{
    Denial,
    cspc::{
        byte_count, raid_group_disk_count_error, validate_cspc_create, validate_cspc_delete,
        validate_cspc_update,
    },
    cvc::validate_cvc_update,
    lookup::MemoryLookup,
    pvc::{CLONED_PVC_REASON, handle_namespace_delete, validate_pvc_delete},
};
use k8s_openapi::{
    api::core::v1::{PersistentVolumeClaim, PersistentVolumeClaimSpec},
    apimachinery::pkg::api::resource::Quantity,
};
use kube::api::ObjectMeta;

const NS: &str = "openebs";

/// Nodes n1..n3 (hostname = name) and block devices `<node>-bd<i>` (i in 0..8, 10 GiB),
/// plus a small one `n1-small` (5 GiB).
fn cluster() -> MemoryLookup {
    let mut lookup = MemoryLookup::default();
    for n in ["n1", "n2", "n3"] {
        lookup.nodes.push(node(n, n));
        for i in 0..8 {
            lookup
                .block_devices
                .push(bd(NS, &format!("{n}-bd{i}"), n, 10 * GIB));
        }
    }
    lookup.block_devices.push(bd(NS, "n1-small", "n1", 5 * GIB));
    lookup
}

fn stripe(host: &str, bds: &[&str]) -> CStorPoolCluster {
    cspc(NS, "cspc1", vec![pool(host, "stripe", &[bds])])
}

async fn create_msg(c: &CStorPoolCluster, lookup: &MemoryLookup) -> String {
    let d = validate_cspc_create(c, lookup)
        .await
        .expect_err("the cspc must be denied");
    assert_eq!(d.code, 422, "{d}");
    d.message
}

async fn accepts(c: &CStorPoolCluster, lookup: &MemoryLookup) {
    if let Err(d) = validate_cspc_create(c, lookup).await {
        panic!("the cspc must be accepted, got {d}");
    }
}

const P: &str = "invalid cspc specification: ";
const PP: &str = "invalid cspc specification: invalid pool spec: ";

#[tokio::test]
async fn valid_layouts_are_accepted() {
    let l = cluster();
    accepts(&stripe("n1", &["n1-bd0"]), &l).await;
    accepts(&stripe("n1", &["n1-bd0", "n1-bd1", "n1-bd2"]), &l).await;
    let c = cspc(
        NS,
        "cspc1",
        vec![
            pool(
                "n1",
                "mirror",
                &[&["n1-bd0", "n1-bd1"], &["n1-bd2", "n1-bd3"]],
            ),
            pool("n2", "raidz", &[&["n2-bd0", "n2-bd1", "n2-bd2"]]),
            pool(
                "n3",
                "raidz2",
                &[&["n3-bd0", "n3-bd1", "n3-bd2", "n3-bd3", "n3-bd4", "n3-bd5"]],
            ),
        ],
    );
    accepts(&c, &l).await;
}

#[tokio::test]
async fn pools_are_required() {
    let l = cluster();
    let c = cspc(NS, "cspc1", vec![]);
    assert_eq!(
        create_msg(&c, &l).await,
        format!("{P}pools in cspc should have at least one item")
    );
}

#[tokio::test]
async fn duplicate_block_devices_are_rejected() {
    let l = cluster();
    let mut c = cspc(
        NS,
        "cspc1",
        vec![pool(
            "n1",
            "mirror",
            &[&["n1-bd0", "n1-bd1"], &["n1-bd1", "n1-bd0"]],
        )],
    );
    assert_eq!(
        create_msg(&c, &l).await,
        format!(
            "{P}invalid cspc: cspc {{cspc1}} has duplicate blockdevices entries [n1-bd0 n1-bd1]"
        )
    );
    // The same device as data and write cache.
    c = stripe("n1", &["n1-bd0"]);
    let p = &mut c.spec.pools.as_mut().unwrap()[0];
    p.write_cache_raid_groups = Some(vec![group(&["n1-bd0"])]);
    p.pool_config.as_mut().unwrap().write_cache_group_type = Some(RaidGroupType::Stripe);
    assert_eq!(
        create_msg(&c, &l).await,
        format!("{P}invalid cspc: cspc {{cspc1}} has duplicate blockdevices entries [n1-bd0]")
    );
}

#[tokio::test]
async fn unknown_node_is_rejected() {
    let l = cluster();
    let c = stripe("ghost", &["n1-bd0"]);
    assert_eq!(
        create_msg(&c, &l).await,
        format!(
            "{P}failed to get node from pool nodeSelector: {{map[kubernetes.io/hostname:ghost]}} error: {{no node has these labels: set nodeSelector to the labels of an existing node}}"
        )
    );
    // A selector matching two nodes is as bad.
    let mut l2 = cluster();
    for n in &mut l2.nodes {
        n.metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("zone".into(), "a".into());
    }
    let mut c = stripe("n1", &["n1-bd0"]);
    c.spec.pools.as_mut().unwrap()[0].node_selector = BTreeMap::from([("zone".into(), "a".into())]);
    let msg = create_msg(&c, &l2).await;
    assert!(
        msg.starts_with(&format!("{P}failed to get node from pool nodeSelector: {{map[zone:a]}} error: {{3 nodes (n1, n2, n3) have these labels")),
        "{msg}"
    );
}

#[tokio::test]
async fn two_pools_on_one_node_are_rejected() {
    let mut l = cluster();
    // Same node reached through two different selectors.
    l.nodes[0]
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("disk".into(), "fast".into());
    let mut second = pool("n1", "stripe", &[&["n1-bd1"]]);
    second.node_selector = BTreeMap::from([("disk".into(), "fast".into())]);
    let c = cspc(
        NS,
        "cspc1",
        vec![pool("n1", "stripe", &[&["n1-bd0"]]), second],
    );
    assert_eq!(
        create_msg(&c, &l).await,
        format!("{P}invalid cspc: duplicate node n1 entry")
    );
}

#[tokio::test]
async fn raid_types_and_compression() {
    let l = cluster();
    let mut c = stripe("n1", &["n1-bd0"]);
    c.spec.pools.as_mut().unwrap()[0].pool_config = None;
    assert_eq!(
        create_msg(&c, &l).await,
        format!("{PP}missing dataRaidGroupType")
    );

    let c = cspc(NS, "cspc1", vec![pool("n1", "raid5", &[&["n1-bd0"]])]);
    assert_eq!(
        create_msg(&c, &l).await,
        format!("{PP}unsupported dataRaidGroupType 'raid5' specified")
    );

    for (value, ok) in [
        ("snappy", false),
        ("gzip", true),
        ("lz4", true),
        ("", true),
        ("off", true),
    ] {
        let mut c = stripe("n1", &["n1-bd0"]);
        c.spec.pools.as_mut().unwrap()[0]
            .pool_config
            .as_mut()
            .unwrap()
            .compression = Some(value.into());
        if ok {
            accepts(&c, &l).await;
        } else {
            assert_eq!(
                create_msg(&c, &l).await,
                format!("{PP}unsupported compression '{value}' specified")
            );
        }
    }
}

#[tokio::test]
async fn ro_threshold_limit_range() {
    let l = cluster();
    for (value, ok) in [
        (0, true),
        (85, true),
        (100, true),
        (101, false),
        (-1, false),
    ] {
        let mut c = stripe("n1", &["n1-bd0"]);
        c.spec.pools.as_mut().unwrap()[0]
            .pool_config
            .as_mut()
            .unwrap()
            .ro_threshold_limit = Some(value);
        if ok {
            accepts(&c, &l).await;
        } else {
            assert_eq!(
                create_msg(&c, &l).await,
                format!("{PP}invalid roThresholdLimit {value}: it must be between 0 and 100")
            );
        }
    }
}

#[tokio::test]
async fn write_cache_groups() {
    let l = cluster();
    let with_cache = |kind: Option<&str>, groups: Vec<Vec<&str>>| {
        let mut c = stripe("n1", &["n1-bd0"]);
        let p = &mut c.spec.pools.as_mut().unwrap()[0];
        p.write_cache_raid_groups = Some(groups.iter().map(|g| group(g)).collect());
        p.pool_config.as_mut().unwrap().write_cache_group_type = kind.map(Into::into);
        c
    };
    assert_eq!(
        create_msg(&with_cache(None, vec![vec!["n1-bd1"]]), &l).await,
        format!("{PP}missing writeCacheGroupType")
    );
    assert_eq!(
        create_msg(&with_cache(Some("raid0"), vec![vec!["n1-bd1"]]), &l).await,
        format!("{PP}unsupported writeCacheGroupType 'raid0' specified")
    );
    assert_eq!(
        create_msg(
            &with_cache(Some("stripe"), vec![vec!["n1-bd1"], vec!["n1-bd2"]]),
            &l
        )
        .await,
        format!("{PP}stripe writeCacheRaidGroups should have exactly one raidGroup")
    );
    assert_eq!(
        create_msg(&with_cache(Some("mirror"), vec![vec!["n1-bd1"]]), &l).await,
        format!("{PP}mirror raid group should have disks in multiple of 2")
    );
    accepts(
        &with_cache(Some("mirror"), vec![vec!["n1-bd1", "n1-bd2"]]),
        &l,
    )
    .await;
    accepts(&with_cache(Some("stripe"), vec![vec!["n1-bd1"]]), &l).await;
}

#[tokio::test]
async fn raid_group_counts() {
    let l = cluster();
    let c = cspc(NS, "cspc1", vec![pool("n1", "mirror", &[])]);
    assert_eq!(
        create_msg(&c, &l).await,
        format!("{PP}at least one raid group should be present on dataRaidGroups")
    );
    let c = cspc(
        NS,
        "cspc1",
        vec![pool("n1", "stripe", &[&["n1-bd0"], &["n1-bd1"]])],
    );
    assert_eq!(
        create_msg(&c, &l).await,
        format!("{PP}stripe dataRaidGroups should have exactly one raidGroup")
    );
    let c = cspc(NS, "cspc1", vec![pool("n1", "mirror", &[&[]])]);
    assert_eq!(
        create_msg(&c, &l).await,
        format!(
            "{PP}empty raid group: number of block devices honouring raid type should be specified"
        )
    );
    let bds: Vec<String> = (0..8).map(|i| format!("n1-bd{i}")).collect();
    let names = |n: usize| bds[..n].iter().map(String::as_str).collect::<Vec<_>>();
    let cases: &[(&str, usize, Option<&str>)] = &[
        (
            "mirror",
            3,
            Some("mirror raid group should have disks in multiple of 2"),
        ),
        (
            "mirror",
            1,
            Some("mirror raid group should have disks in multiple of 2"),
        ),
        ("mirror", 2, None),
        ("mirror", 4, None),
        (
            "raidz",
            2,
            Some("raidz raid group should have disks of the order 2^n+1, where n>0"),
        ),
        (
            "raidz",
            4,
            Some("raidz raid group should have disks of the order 2^n+1, where n>0"),
        ),
        ("raidz", 3, None),
        ("raidz", 5, None),
        (
            "raidz2",
            4,
            Some("raidz raid group should have disks of the order 2^n+2, where n>1"),
        ),
        (
            "raidz2",
            5,
            Some("raidz raid group should have disks of the order 2^n+2, where n>1"),
        ),
        ("raidz2", 6, None),
    ];
    for (raid, n, expected) in cases {
        let group = names(*n);
        let c = cspc(NS, "cspc1", vec![pool("n1", raid, &[&group])]);
        match expected {
            Some(m) => assert_eq!(create_msg(&c, &l).await, format!("{PP}{m}"), "{raid} x{n}"),
            None => accepts(&c, &l).await,
        }
    }
    // The counting rule beyond the devices at hand.
    for n in [9, 17] {
        assert_eq!(raid_group_disk_count_error(&RaidGroupType::Raidz, n), None);
    }
    for n in [10, 18] {
        assert_eq!(raid_group_disk_count_error(&RaidGroupType::Raidz2, n), None);
    }
    assert!(raid_group_disk_count_error(&RaidGroupType::Raidz, 7).is_some());
    assert!(raid_group_disk_count_error(&RaidGroupType::Raidz2, 3).is_some());
    assert!(raid_group_disk_count_error(&RaidGroupType::Raidz2, 8).is_some());
}

#[tokio::test]
async fn block_device_checks() {
    let mut l = cluster();
    assert_eq!(
        create_msg(&stripe("n1", &[""]), &l).await,
        format!("{PP}block device name cannot be empty")
    );
    assert_eq!(
        create_msg(&stripe("n1", &["n1-missing"]), &l).await,
        format!(
            "{PP}failed to get block device: {{n1-missing}} details error: blockdevices.openebs.io \"n1-missing\" not found"
        )
    );
    assert_eq!(
        create_msg(&stripe("n1", &["n2-bd0"]), &l).await,
        format!("{PP}block device n2-bd0 doesn't belongs to node n1")
    );

    let find = |l: &mut MemoryLookup, name: &str| -> usize {
        l.block_devices
            .iter()
            .position(|b| b.metadata.name.as_deref() == Some(name))
            .unwrap()
    };
    let i = find(&mut l, "n1-bd1");
    l.block_devices[i].status.as_mut().unwrap().state = BlockDeviceState::Inactive;
    assert_eq!(
        create_msg(&stripe("n1", &["n1-bd1"]), &l).await,
        format!("{PP}block device \"n1-bd1\" is in not in active state")
    );

    let i = find(&mut l, "n1-bd2");
    l.block_devices[i].spec.filesystem = Some(FileSystemInfo {
        fs_type: Some("ext4".into()),
        ..Default::default()
    });
    assert_eq!(
        create_msg(&stripe("n1", &["n1-bd2"]), &l).await,
        format!("{PP}block device has file system {{ext4}}")
    );
    l.block_devices[i].spec.filesystem.as_mut().unwrap().fs_type = Some("zfs_member".into());
    accepts(&stripe("n1", &["n1-bd2"]), &l).await;
}

#[tokio::test]
async fn block_device_tags() {
    let mut l = cluster();
    let tag = |l: &mut MemoryLookup, name: &str, value: &str| {
        let b = l
            .block_devices
            .iter_mut()
            .find(|b| b.metadata.name.as_deref() == Some(name))
            .unwrap();
        b.metadata
            .labels
            .as_mut()
            .unwrap()
            .insert(label::BLOCK_DEVICE_TAG.into(), value.into());
    };
    tag(&mut l, "n1-bd0", "");
    tag(&mut l, "n1-bd1", "fast");
    assert_eq!(
        create_msg(&stripe("n1", &["n1-bd0"]), &l).await,
        format!("{PP}block device n1-bd0 is tagged with a value  and cannot be used")
    );
    assert_eq!(
        create_msg(&stripe("n1", &["n1-bd1"]), &l).await,
        format!("{PP}block device n1-bd1 is tagged with a value fast and cannot be used")
    );
    let mut c = stripe("n1", &["n1-bd1"]);
    c.metadata.annotations = Some(BTreeMap::from([(
        annotation::ALLOWED_BD_TAGS.to_owned(),
        "slow, fast".to_owned(),
    )]));
    accepts(&c, &l).await;
}

#[tokio::test]
async fn claimed_block_devices() {
    let mut l = cluster();
    for b in &mut l.block_devices {
        match b.metadata.name.as_deref() {
            Some("n1-bd0") => *b = claimed(b.clone(), "bdc-other"),
            Some("n1-bd1") => *b = claimed(b.clone(), "bdc-mine"),
            _ => {}
        }
    }
    l.claims.lock().unwrap().extend([
        claim(NS, "bdc-other", "n1-bd0", "cspc-other", None),
        claim(NS, "bdc-mine", "n1-bd1", "cspc1", None),
    ]);
    assert_eq!(
        create_msg(&stripe("n1", &["n1-bd0"]), &l).await,
        format!("{PP}error: can't use claimed blockdevice n1-bd0")
    );
    accepts(&stripe("n1", &["n1-bd1"]), &l).await;
}

fn cspi(name: &str, cspc: &str, host: &str) -> CStorPoolInstance {
    let mut c = CStorPoolInstance::namespaced(name, NS, CStorPoolInstanceSpec::default());
    c.metadata.labels = Some(BTreeMap::from([
        (label::CSTOR_POOL_CLUSTER.to_owned(), cspc.to_owned()),
        (label::HOSTNAME.to_owned(), host.to_owned()),
    ]));
    c
}

fn cvr(name: &str, cspi: &str) -> CStorVolumeReplica {
    let mut r = CStorVolumeReplica::namespaced(name, NS, CStorVolumeReplicaSpec::default());
    r.metadata.labels = Some(BTreeMap::from([(
        label::CSPI_NAME.to_owned(),
        cspi.to_owned(),
    )]));
    r
}

#[tokio::test]
async fn delete_is_refused_while_replicas_exist() {
    let mut l = cluster();
    l.pool_instances.push(cspi("cspc1-abcd", "cspc1", "n1"));
    validate_cspc_delete(NS, "cspc1", &l)
        .await
        .expect("no replica: allowed");
    l.replicas.push(cvr("pvc-1-cspc1-abcd", "cspc1-abcd"));
    let d = validate_cspc_delete(NS, "cspc1", &l)
        .await
        .expect_err("denied");
    assert_eq!(d.code, 422);
    assert_eq!(
        d.message,
        "invalid cspc cspc1 deletion: volume still exists on pool cspc1-abcd"
    );
}

async fn update_msg(old: &CStorPoolCluster, new: &CStorPoolCluster, l: &MemoryLookup) -> String {
    let d = validate_cspc_update(old, new, l, true)
        .await
        .expect_err("the update must be denied");
    assert_eq!(d.code, 422, "{d}");
    d.message
}

async fn update_ok(old: &CStorPoolCluster, new: &CStorPoolCluster, l: &MemoryLookup) {
    if let Err(d) = validate_cspc_update(old, new, l, true).await {
        panic!("the update must be accepted, got {d}");
    }
}

fn mirror_cspc(groups: &[&[&str]]) -> CStorPoolCluster {
    cspc(NS, "cspc1", vec![pool("n1", "mirror", groups)])
}

#[tokio::test]
async fn update_identical_spec_is_allowed_without_checks() {
    // Even a spec that would fail CREATE (missing device) passes when unchanged.
    let l = cluster();
    let c = stripe("n1", &["gone"]);
    let mut newer = c.clone();
    newer.metadata.labels = Some(BTreeMap::from([("x".into(), "y".into())]));
    update_ok(&c, &newer, &l).await;
}

#[tokio::test]
async fn scale_down_of_a_pool_with_replicas_is_refused() {
    let mut l = cluster();
    let old = cspc(
        NS,
        "cspc1",
        vec![
            pool("n1", "stripe", &[&["n1-bd0"]]),
            pool("n2", "stripe", &[&["n2-bd0"]]),
        ],
    );
    let new = cspc(NS, "cspc1", vec![pool("n1", "stripe", &[&["n1-bd0"]])]);
    l.pool_instances.push(cspi("cspc1-n2xx", "cspc1", "n2"));
    update_ok(&old, &new, &l).await;
    l.replicas.push(cvr("pvc-1-cspc1-n2xx", "cspc1-n2xx"));
    assert_eq!(
        update_msg(&old, &new, &l).await,
        format!("{P}volume still exists on pool cspc1-n2xx")
    );
    // The pool's CSPI is already gone (upstream panicked here): allowed.
    l.pool_instances.clear();
    update_ok(&old, &new, &l).await;
}

#[tokio::test]
async fn raid_group_changes() {
    let l = cluster();
    let old = mirror_cspc(&[&["n1-bd0", "n1-bd1"], &["n1-bd2", "n1-bd3"]]);
    let mut changed_type = cspc(
        NS,
        "cspc1",
        vec![pool(
            "n1",
            "stripe",
            &[&["n1-bd0", "n1-bd1", "n1-bd2", "n1-bd3"]],
        )],
    );
    assert_eq!(
        update_msg(&old, &changed_type, &l).await,
        format!("{P}raidgroup can't be modified")
    );
    changed_type.spec.pools.as_mut().unwrap()[0]
        .pool_config
        .as_mut()
        .unwrap()
        .data_raid_group_type = RaidGroupType::Mirror;
    // (mirror with 4 disks in one group: removing the second group)
    assert_eq!(
        update_msg(&old, &mirror_cspc(&[&["n1-bd0", "n1-bd1"]]), &l).await,
        format!(
            "{P}raid group validation failed: removing raid group from pool spec is invalid operation"
        )
    );
    assert_eq!(
        update_msg(
            &old,
            &mirror_cspc(&[
                &["n1-bd0", "n1-bd1", "n1-bd4", "n1-bd5"],
                &["n1-bd2", "n1-bd3"]
            ]),
            &l
        )
        .await,
        format!(
            "{P}raid group validation failed: adding block devices to existing mirror raid group is not valid operation"
        )
    );
    // Expansion by a new raid group is fine.
    update_ok(
        &old,
        &mirror_cspc(&[
            &["n1-bd0", "n1-bd1"],
            &["n1-bd2", "n1-bd3"],
            &["n1-bd4", "n1-bd5"],
        ]),
        &l,
    )
    .await;

    let old4 = mirror_cspc(&[&["n1-bd0", "n1-bd1", "n1-bd2", "n1-bd3"]]);
    assert_eq!(
        update_msg(&old4, &mirror_cspc(&[&["n1-bd0", "n1-bd1"]]), &l).await,
        format!(
            "{P}raid group validation failed: removing block device from mirror raid group is not valid operation"
        )
    );
    assert_eq!(
        update_msg(
            &old4,
            &mirror_cspc(&[&["n1-bd0", "n1-bd1", "n1-bd4", "n1-bd5"]]),
            &l
        )
        .await,
        format!("{P}cannot replace more than one blockdevice in a raid group")
    );
}

#[tokio::test]
async fn stripe_changes() {
    let l = cluster();
    let old = stripe("n1", &["n1-bd0", "n1-bd1"]);
    update_ok(&old, &stripe("n1", &["n1-bd0", "n1-bd1", "n1-bd2"]), &l).await;
    assert_eq!(
        update_msg(&old, &stripe("n1", &["n1-bd0", "n1-bd2"]), &l).await,
        format!("{P}cannot replace  blockdevice in stripe raid group")
    );
    assert_eq!(
        update_msg(&old, &stripe("n1", &["n1-bd0"]), &l).await,
        format!(
            "{P}raid group validation failed: removing block device from stripe raid group is not valid operation"
        )
    );
}

#[tokio::test]
async fn replacement_creates_the_predecessor_claim() {
    let l = cluster();
    let old = mirror_cspc(&[&["n1-bd0", "n1-bd1"]]);
    let new = mirror_cspc(&[&["n1-bd0", "n1-bd4"]]);
    // Dry run: validated, nothing saved.
    let plan = validate_cspc_update(&old, &new, &l, false)
        .await
        .expect("valid replacement");
    assert_eq!(plan.replacements.len(), 1);
    assert!(l.claims().is_empty());
    validate_cspc_update(&old, &new, &l, true)
        .await
        .expect("valid replacement");
    let claims = l.claims();
    assert_eq!(claims.len(), 1);
    let c = &claims[0];
    assert_eq!(c.metadata.name.as_deref(), Some("bdc-cstor-uid-n1-bd4"));
    assert_eq!(c.metadata.namespace.as_deref(), Some(NS));
    assert_eq!(
        c.metadata.annotations.as_ref().unwrap()[annotation::BD_PREDECESSOR],
        "n1-bd1"
    );
    assert_eq!(
        c.metadata.labels.as_ref().unwrap()[label::CSTOR_POOL_CLUSTER],
        "cspc1"
    );
    assert_eq!(c.spec.block_device_name.as_deref(), Some("n1-bd4"));
    assert_eq!(
        c.spec.resources.as_ref().unwrap().requests["storage"],
        Quantity("10G".into())
    );
    assert_eq!(
        c.spec
            .block_device_node_attributes
            .as_ref()
            .unwrap()
            .host_name
            .as_deref(),
        Some("n1")
    );
    let owner = &c.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (
            owner.kind.as_str(),
            owner.name.as_str(),
            owner.controller,
            owner.block_owner_deletion
        ),
        ("CStorPoolCluster", "cspc1", Some(true), Some(true))
    );
    assert_eq!(
        c.metadata.finalizers.as_ref().unwrap(),
        &vec!["cstorpoolcluster.openebs.io/finalizer".to_owned()]
    );

    // The replacement is now in progress: a second one in the same group is refused.
    let third = mirror_cspc(&[&["n1-bd5", "n1-bd4"]]);
    assert_eq!(
        update_msg(&new, &third, &l).await,
        format!(
            "{P}cannot replace blockdevice as a background replacement may be in progress in the raid group: blockdevice n1-bd4 is replacing n1-bd1"
        )
    );
}

#[tokio::test]
async fn replacement_rules() {
    let l = cluster();
    let old = mirror_cspc(&[&["n1-bd0", "n1-bd1"], &["n1-bd2", "n1-bd3"]]);
    // The new device already belongs to the cspc (moved from the other group).
    assert_eq!(
        update_msg(
            &old,
            &mirror_cspc(&[&["n1-bd0", "n1-bd2"], &["n1-bd3", "n1-bd4"]]),
            &l
        )
        .await,
        format!(
            "{P}the new blockdevice intended to use for replacement is already a part of the current cspc"
        )
    );
    // Smaller replacement.
    assert_eq!(
        update_msg(
            &old,
            &mirror_cspc(&[&["n1-bd0", "n1-small"], &["n1-bd2", "n1-bd3"]]),
            &l
        )
        .await,
        format!(
            "{P}error: capacity of replacing block device {{n1-small:{}}} should be greater than or equal to existing block device {{n1-bd1:{}}}",
            5 * GIB,
            10 * GIB
        )
    );
    // The new device is the predecessor of another ongoing replacement.
    let l2 = cluster();
    l2.claims
        .lock()
        .unwrap()
        .push(claim(NS, "bdc-x", "n1-bd7", "cspc1", Some("n1-bd6")));
    assert_eq!(
        update_msg(
            &old,
            &mirror_cspc(&[&["n1-bd0", "n1-bd6"], &["n1-bd2", "n1-bd3"]]),
            &l2
        )
        .await,
        format!("{P}the new blockdevice intended to use for replacement in invalid")
    );
    // Same device used to expand the pool.
    assert_eq!(
        update_msg(
            &old,
            &mirror_cspc(&[
                &["n1-bd0", "n1-bd1"],
                &["n1-bd2", "n1-bd3"],
                &["n1-bd6", "n1-bd5"]
            ]),
            &l2
        )
        .await,
        format!(
            "{P}pool expansion validation failed: can not use blockdevice n1-bd6 validation failed"
        )
    );
    update_ok(
        &old,
        &mirror_cspc(&[&["n1-bd0", "n1-bd4"], &["n1-bd2", "n1-bd3"]]),
        &l2,
    )
    .await;
}

#[test]
fn byte_count_matches_upstream() {
    assert_eq!(byte_count(512), "512B");
    assert_eq!(byte_count(10 * GIB), "10G");
    assert_eq!(byte_count(1536 * 1024 * 1024), "1G");
    assert_eq!(byte_count(3 << 40), "3T");
}

fn cvc(pools: &[&str], status: &[&str], phase: &str) -> CStorVolumeConfig {
    let text = serde_json::json!({
        "apiVersion": "cstor.openebs.io/v1",
        "kind": "CStorVolumeConfig",
        "metadata": {"name": "pvc-1", "namespace": NS},
        "spec": {
            "capacity": {"storage": "5Gi"},
            "provision": {"capacity": {"storage": "5Gi"}, "replicaCount": 3},
            "policy": {"replicaPoolInfo": pools.iter().map(|p| serde_json::json!({"poolName": p})).collect::<Vec<_>>()},
        },
        "status": {"phase": phase, "poolInfo": status},
        "versionDetails": {},
    });
    cstor_api::cstor::from_value(text).unwrap()
}

fn cvc_msg(old: &CStorVolumeConfig, new: &CStorVolumeConfig) -> String {
    let d: Denial = validate_cvc_update(old, new).expect_err("the cvc update must be denied");
    assert_eq!(d.code, 400);
    d.message
}

#[test]
fn cvc_immutable_fields() {
    let old = cvc(&["a", "b", "c"], &["a", "b", "c"], "Bound");
    let mut new = old.clone();
    new.spec.provision.replica_count = 2;
    assert_eq!(
        cvc_msg(&old, &new),
        "cvc pvc-1 replicaCount got modified from 3 to 2"
    );
    let mut new = old.clone();
    new.spec
        .provision
        .capacity
        .insert("storage".into(), Quantity("6Gi".into()));
    assert_eq!(
        cvc_msg(&old, &new),
        "cvc initial provisioned capacity `Spec.Provision.Capacity` is immutable, can't be modified "
    );
    // Growing spec.capacity (a resize) is fine.
    let mut new = old.clone();
    new.spec
        .capacity
        .insert("storage".into(), Quantity("6Gi".into()));
    validate_cvc_update(&old, &new).expect("resize allowed");
}

#[test]
fn cvc_replica_scaling() {
    let bound = cvc(&["a", "b"], &["a", "b"], "Bound");
    // Scale up by one and down by one: allowed.
    validate_cvc_update(&bound, &cvc(&["a", "b", "c"], &["a", "b"], "Bound")).expect("scale up");
    validate_cvc_update(&bound, &cvc(&["a"], &["a", "b"], "Bound")).expect("scale down");

    let pending = cvc(&["a", "b"], &[], "Pending");
    assert_eq!(
        cvc_msg(&pending, &cvc(&["a", "b", "c"], &[], "Pending")),
        "Can't perform scaling of volume replicas when CVC is not in Bound state"
    );
    let three = cvc(&["a", "b", "c"], &["a", "b", "c"], "Bound");
    assert_eq!(
        cvc_msg(&three, &cvc(&["a"], &["a", "b", "c"], "Bound")),
        "Can't perform more than one replica scale down requested scale down count 2"
    );
    assert_eq!(
        cvc_msg(&bound, &cvc(&["a", "x"], &["a", "b"], "Bound")),
        "volume replica migration directly by modifying pool names [b] is not yet supported"
    );
    let scaling = cvc(&["a", "b", "c"], &["a", "b"], "Bound");
    assert_eq!(
        cvc_msg(&scaling, &cvc(&["a", "b", "c", "d"], &["a", "b"], "Bound")),
        "scaling of CVC pvc-1 is already in progress"
    );
    assert_eq!(
        cvc_msg(&bound, &cvc(&["a", "b", "b"], &["a", "b"], "Bound")),
        "duplicate pool names [b] found under spec of cvc pvc-1"
    );
    assert_eq!(
        cvc_msg(&bound, &cvc(&["a", "b"], &["a", "a"], "Bound")),
        "duplicate pool names [a] found under status of cvc pvc-1"
    );
    let _ = ReplicaPoolInfo::named("unused");
}

fn pvc(name: &str, ns: &str, volume: &str) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            volume_name: Some(volume.into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn pvc_with_clones_cannot_be_deleted() {
    let mut l = MemoryLookup::default();
    l.pvcs.push(pvc("data", "app", "pvc-src"));
    l.pvcs.push(pvc("sys", "kube-system", "pvc-src"));
    validate_pvc_delete("app", "data", &l)
        .await
        .expect("no clone: allowed");
    let mut clone = CStorVolume::namespaced("pvc-clone", NS, CStorVolumeSpec::default());
    clone.metadata.labels = Some(BTreeMap::from([(
        label::SOURCE_VOLUME.to_owned(),
        "pvc-src".to_owned(),
    )]));
    l.volumes.push(clone);
    let mut clone_cvc = cvc(&[], &[], "Pending");
    clone_cvc.metadata.labels = Some(BTreeMap::from([(
        label::SOURCE_VOLUME.to_owned(),
        "pvc-src".to_owned(),
    )]));
    l.volume_configs.push(clone_cvc);
    let d = validate_pvc_delete("app", "data", &l)
        .await
        .expect_err("denied");
    assert_eq!(
        d,
        Denial::forbidden(CLONED_PVC_REASON, "pvc \"data\" has '2' cloned volume(s)")
    );
    validate_pvc_delete("kube-system", "sys", &l)
        .await
        .expect("kube-system is not checked");
    validate_pvc_delete("app", "absent", &l)
        .await
        .expect("unknown pvc: allowed");
}

#[tokio::test]
async fn openebs_namespace_deletion_removes_the_webhook_configuration() {
    let l = MemoryLookup::default();
    l.webhook_configurations
        .lock()
        .unwrap()
        .push("openebs-cstor-validation-webhook".into());
    handle_namespace_delete("other", NS, "openebs-cstor-validation-webhook", &l)
        .await
        .unwrap();
    assert_eq!(l.webhook_configurations.lock().unwrap().len(), 1);
    handle_namespace_delete(NS, NS, "openebs-cstor-validation-webhook", &l)
        .await
        .unwrap();
    assert!(l.webhook_configurations.lock().unwrap().is_empty());
}
