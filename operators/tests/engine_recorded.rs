//! The production engine against recorded cStor (uZFS) outputs: the exact command lines
//! upstream runs, and the parse of what cStor prints. zfs-fuse cannot run these (no zvols,
//! `zpool dump`, `zfs stats`, `zfs listsnap`), so ScriptedRunner answers them.

use std::{path::PathBuf, sync::Arc};

use cstor_api::exec::{Output, RecordingRunner, ScriptedRunner};
use cstor_operators::engine::*;

const POOL: &str = "cstor-8f1b3c2e-0a5d-4f7e-9b61-2c7d4e5f6a70";
const VOL: &str = "pvc-1c1698bb-2dc6-11e9-bbe3-42010a80017a";

fn fixture(name: &str) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/engine/").to_string() + name;
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read fixture {path}: {e}"))
}

/// An engine whose runner answers only the scripted lines, and the recorder of what ran.
fn engine() -> (CstorEngine, ScriptedRunner, RecordingRunner) {
    let script = ScriptedRunner::new();
    let rec = RecordingRunner::new(Arc::new(script.clone()));
    (CstorEngine::new(Arc::new(rec.clone())), script, rec)
}

fn no_such_pool(pool: &str) -> Output {
    Output::fail(1, format!("cannot open '{pool}': no such pool\n"))
}

#[tokio::test]
async fn pool_exists_uses_zpool_get_and_maps_missing_pool_to_false() {
    let (e, s, rec) = engine();
    s.on_line(
        format!("zpool get -H -p -o value name {POOL}"),
        Output::ok(format!("{POOL}\n")),
    );
    s.on_line(
        "zpool get -H -p -o value name cstor-gone",
        no_such_pool("cstor-gone"),
    );
    assert!(e.pool_exists(POOL).await.unwrap());
    assert!(!e.pool_exists("cstor-gone").await.unwrap());
    assert_eq!(
        rec.lines(),
        vec![
            format!("zpool get -H -p -o value name {POOL}"),
            "zpool get -H -p -o value name cstor-gone".to_string()
        ]
    );
    s.on_line(
        "zpool get -H -p -o value name cstor-x",
        Output::fail(1, "internal error: failed to initialize ZFS library\n"),
    );
    let err = e
        .pool_exists("cstor-x")
        .await
        .expect_err("daemon down is an error, not absence");
    assert!(
        matches!(err, EngineError::Failed { code: Some(1), .. }),
        "{err}"
    );
}

#[tokio::test]
async fn import_tries_cache_file_then_device_scan() {
    let (e, s, rec) = engine();
    let e = e.with_cache_file("/var/openebs/cstor-pool/pool.cache");
    s.on_line(
        format!("zpool get -H -p -o value name {POOL}"),
        no_such_pool(POOL),
    );
    s.on_line(
        format!("zpool import -o cachefile=/var/openebs/cstor-pool/pool.cache -c /var/openebs/cstor-pool/pool.cache {POOL}"),
        Output::fail(1, format!("failed to open cache file: No such file or directory\ncannot import '{POOL}': no such pool available\n")),
    );
    s.on_line(
        format!("zpool import -o cachefile=/var/openebs/cstor-pool/pool.cache -d /var/openebs/sparse {POOL}"),
        Output::ok(""),
    );
    let out = e
        .import_pool(&ImportRequest {
            pool: POOL.into(),
            existing_name: None,
            dev_dir: Some(PathBuf::from("/var/openebs/sparse")),
        })
        .await
        .unwrap();
    assert_eq!(
        out,
        ImportOutcome::Imported {
            renamed_from: None,
            from_cache_file: false
        }
    );
    assert_eq!(rec.lines().len(), 3, "{:?}", rec.lines());

    // Device pools (no dev dir) scan /dev; nothing found is NotFound, not an error.
    rec.clear();
    s.on_line(
        format!("zpool import -o cachefile=/var/openebs/cstor-pool/pool.cache {POOL}"),
        Output::fail(
            1,
            format!("cannot import '{POOL}': no such pool available\n"),
        ),
    );
    let out = e
        .import_pool(&ImportRequest {
            pool: POOL.into(),
            existing_name: None,
            dev_dir: None,
        })
        .await
        .unwrap();
    assert_eq!(out, ImportOutcome::NotFound);
    assert_eq!(
        rec.lines().last().unwrap(),
        &format!("zpool import -o cachefile=/var/openebs/cstor-pool/pool.cache {POOL}")
    );

    // A real import failure is reported, not mistaken for absence.
    s.on_line(
        format!("zpool import -o cachefile=/var/openebs/cstor-pool/pool.cache {POOL}"),
        Output::fail(1, format!("cannot import '{POOL}': I/O error\n\tDestroy and re-create the pool from\n\ta backup source.\n")),
    );
    let err = e
        .import_pool(&ImportRequest {
            pool: POOL.into(),
            existing_name: None,
            dev_dir: None,
        })
        .await
        .expect_err("I/O error");
    assert!(err.to_string().contains("I/O error"), "{err}");
}

#[tokio::test]
async fn import_with_existing_name_renames_unless_already_renamed() {
    let (e, s, rec) = engine();
    s.on_line(
        format!("zpool get -H -p -o value name {POOL}"),
        no_such_pool(POOL),
    );
    // The probe lists only the old name: import old and rename.
    let listing =
        fixture("zpool-import-listing.txt").replace(&format!("pool: {POOL}"), "pool: cstor-other");
    s.on_line("zpool import", Output::ok(listing));
    s.on_line(
        format!("zpool import -o cachefile={DEFAULT_CACHE_FILE} -c {DEFAULT_CACHE_FILE} cstor-old-pool-name {POOL}"),
        Output::ok(""),
    );
    let req = ImportRequest {
        pool: POOL.into(),
        existing_name: Some("cstor-old-pool-name".into()),
        dev_dir: None,
    };
    assert_eq!(
        e.import_pool(&req).await.unwrap(),
        ImportOutcome::Imported {
            renamed_from: Some("cstor-old-pool-name".into()),
            from_cache_file: true
        }
    );
    assert_eq!(
        rec.lines(),
        vec![
            format!("zpool get -H -p -o value name {POOL}"),
            "zpool import".to_string(),
            format!(
                "zpool import -o cachefile={DEFAULT_CACHE_FILE} -c {DEFAULT_CACHE_FILE} cstor-old-pool-name {POOL}"
            ),
        ]
    );
    // The new name is already importable: the annotation is stale, import by the new name.
    rec.clear();
    s.on_line(
        "zpool import",
        Output::ok(fixture("zpool-import-listing.txt")),
    );
    s.on_line(
        format!("zpool import -o cachefile={DEFAULT_CACHE_FILE} -c {DEFAULT_CACHE_FILE} {POOL}"),
        Output::ok(""),
    );
    assert_eq!(
        e.import_pool(&req).await.unwrap(),
        ImportOutcome::Imported {
            renamed_from: None,
            from_cache_file: true
        }
    );
}

#[tokio::test]
async fn import_of_an_imported_pool_runs_only_the_existence_check() {
    let (e, s, rec) = engine();
    s.on_line(
        format!("zpool get -H -p -o value name {POOL}"),
        Output::ok(format!("{POOL}\n")),
    );
    let out = e
        .import_pool(&ImportRequest {
            pool: POOL.into(),
            existing_name: None,
            dev_dir: None,
        })
        .await
        .unwrap();
    assert_eq!(out, ImportOutcome::AlreadyImported);
    assert_eq!(rec.lines().len(), 1);
}

#[tokio::test]
async fn create_pool_runs_upstream_lines_in_order() {
    let (e, s, rec) = engine();
    s.on_line(
        "zpool import -d /var/openebs/sparse",
        Output::fail(1, "no pools available to import\n"),
    );
    s.on_line(
        "zpool import",
        Output::fail(1, "no pools available to import\n"),
    );
    s.on(|c| {
        (c.program == "zpool" && matches!(c.args[0].as_str(), "create" | "add"))
            .then(|| Ok(Output::ok("")))
    });
    let spec = PoolSpec {
        name: POOL.into(),
        data_groups: vec![
            RaidGroup::new(RaidType::Mirror, ["/dev/sdb", "/dev/sdc"]),
            RaidGroup::new(RaidType::Mirror, ["/dev/sdd", "/dev/sde"]),
        ],
        write_cache_groups: vec![RaidGroup::new(RaidType::Stripe, ["/dev/nvme0n1"])],
        compression: None,
        dev_dir: Some("/var/openebs/sparse".into()),
    };
    e.create_pool(&spec).await.unwrap();
    assert_eq!(
        rec.lines(),
        vec![
            "zpool import -d /var/openebs/sparse".to_string(),
            "zpool import".to_string(),
            format!(
                "zpool create -o cachefile={DEFAULT_CACHE_FILE} -O compression=lz4 -O canmount=off {POOL} mirror /dev/sdb /dev/sdc"
            ),
            format!("zpool add {POOL} mirror /dev/sdd /dev/sde"),
            format!("zpool add {POOL} log /dev/nvme0n1"),
        ]
    );
}

#[tokio::test]
async fn create_pool_refuses_an_importable_pool_and_reports_add_failures() {
    let (e, s, rec) = engine();
    s.on_line(
        "zpool import",
        Output::ok(fixture("zpool-import-listing.txt")),
    );
    let spec = PoolSpec {
        name: POOL.into(),
        data_groups: vec![RaidGroup::new(RaidType::Stripe, ["/dev/sdb"])],
        write_cache_groups: vec![],
        compression: Some("gzip".into()),
        dev_dir: None,
    };
    let err = e.create_pool(&spec).await.expect_err("importable");
    assert!(
        matches!(&err, EngineError::PoolImportable { pool, .. } if pool == POOL),
        "{err}"
    );
    assert!(err.to_string().contains("is in faulty state"), "{err}");
    assert_eq!(rec.lines(), vec!["zpool import"], "nothing created");

    // A name that only prefixes an importable pool is not that pool.
    s.on_line(
        "zpool import",
        Output::ok(fixture("zpool-import-listing.txt")),
    );
    let (e2, s2, rec2) = engine();
    s2.on_line(
        "zpool import",
        Output::ok(fixture("zpool-import-listing.txt")),
    );
    s2.on_line("zpool create -o cachefile=/c -O compression=gzip -O canmount=off cstor-8f1b3c2e raidz2 /dev/a /dev/b /dev/c /dev/d /dev/e /dev/f", Output::ok(""));
    s2.on_line("zpool add cstor-8f1b3c2e raidz2 /dev/i /dev/j /dev/k /dev/l /dev/m /dev/n", Output::fail(1, "invalid vdev specification\nuse '-f' to override the following errors:\nmismatched replication level\n"));
    s2.on_line(
        "zpool add cstor-8f1b3c2e log mirror /dev/g /dev/h",
        Output::fail(
            1,
            "cannot add to 'cstor-8f1b3c2e': one or more devices is currently unavailable\n",
        ),
    );
    let err = e2
        .with_cache_file("/c")
        .create_pool(&PoolSpec {
            name: "cstor-8f1b3c2e".into(),
            data_groups: vec![
                RaidGroup::new(
                    RaidType::Raidz2,
                    ["/dev/a", "/dev/b", "/dev/c", "/dev/d", "/dev/e", "/dev/f"],
                ),
                RaidGroup::new(
                    RaidType::Raidz2,
                    ["/dev/i", "/dev/j", "/dev/k", "/dev/l", "/dev/m", "/dev/n"],
                ),
            ],
            write_cache_groups: vec![RaidGroup::new(RaidType::Mirror, ["/dev/g", "/dev/h"])],
            compression: Some("gzip".into()),
            dev_dir: None,
        })
        .await
        .expect_err("add failures");
    match err {
        EngineError::RaidGroupsNotAdded { pool, failures } => {
            assert_eq!(pool, "cstor-8f1b3c2e");
            assert_eq!(failures.len(), 2, "{failures:?}");
            assert!(
                failures[1].contains("currently unavailable"),
                "{failures:?}"
            );
        }
        other => panic!("unexpected {other}"),
    }
    assert_eq!(
        rec2.lines().len(),
        4,
        "both adds attempted: {:?}",
        rec2.lines()
    );
}

#[tokio::test]
async fn create_pool_validates_before_running_anything() {
    let (e, _s, rec) = engine();
    let bad = |groups: Vec<RaidGroup>| PoolSpec {
        name: POOL.into(),
        data_groups: groups,
        write_cache_groups: vec![],
        compression: None,
        dev_dir: None,
    };
    for (spec, field) in [
        (bad(vec![]), "data raid groups"),
        (
            bad(vec![RaidGroup::new(RaidType::Mirror, ["/dev/sdb"])]),
            "data raid group 0",
        ),
        (
            bad(vec![RaidGroup::new(RaidType::Stripe, Vec::<String>::new())]),
            "data raid group 0",
        ),
        (
            bad(vec![RaidGroup::new(RaidType::Stripe, ["-f"])]),
            "data raid group 0 disk",
        ),
    ] {
        let err = e.create_pool(&spec).await.expect_err("invalid");
        assert!(
            matches!(&err, EngineError::InvalidRequest { field: f, .. } if f == field),
            "{err}"
        );
    }
    let err = "raid5".parse::<RaidType>().expect_err("unknown type");
    assert!(
        err.to_string().contains("stripe, mirror, raidz, raidz2"),
        "{err}"
    );
    assert!(rec.lines().is_empty());
}

#[tokio::test]
async fn destroy_export_labelclear_replace_and_properties() {
    let (e, s, rec) = engine();
    s.on_line(format!("zpool destroy {POOL}"), Output::ok(""));
    s.on_line("zpool destroy cstor-gone", no_such_pool("cstor-gone"));
    s.on_line(
        "zpool destroy cstor-busy",
        Output::fail(1, "cannot destroy 'cstor-busy': pool is busy\n"),
    );
    s.on_line("zpool export cstor-gone", no_such_pool("cstor-gone"));
    s.on_line("zpool labelclear -f /dev/sdb", Output::ok(""));
    s.on_line(
        format!("zpool replace {POOL} /dev/sdb /dev/sdf"),
        Output::ok(""),
    );
    s.on_line(
        format!("zpool add {POOL} log raidz /dev/a /dev/b /dev/c"),
        Output::ok(""),
    );
    s.on_line(
        format!("zpool set io.openebs:readonly=on {POOL}"),
        Output::ok(""),
    );
    s.on_line(
        format!("zpool get -H -o value health,io.openebs:readonly {POOL}"),
        Output::ok("DEGRADED\non\n"),
    );
    s.on_line(
        format!("zfs get -H -o value used,logicalused,available {POOL}"),
        Output::ok("9.94G\n8.71G\n69.5K\n"),
    );
    s.on_line(format!("zfs set compression=lz4 {POOL}"), Output::ok(""));
    s.on_line(
        format!("zfs get -H -o property,value compression,canmount {POOL}"),
        Output::ok("compression\ton\ncanmount\toff\n"),
    );

    e.destroy_pool(POOL).await.unwrap();
    e.destroy_pool("cstor-gone").await.unwrap();
    assert!(
        matches!(e.destroy_pool("cstor-busy").await, Err(EngineError::PoolBusy { pool }) if pool == "cstor-busy")
    );
    e.export_pool("cstor-gone").await.unwrap();
    e.labelclear("/dev/sdb").await.unwrap();
    e.replace_disk(POOL, "/dev/sdb", "/dev/sdf").await.unwrap();
    e.add_raid_group(
        POOL,
        VdevClass::WriteCache,
        &RaidGroup::new(RaidType::Raidz, ["/dev/a", "/dev/b", "/dev/c"]),
    )
    .await
    .unwrap();
    e.set_pool_read_only(POOL, true).await.unwrap();
    assert_eq!(
        e.pool_health(POOL).await.unwrap(),
        PoolHealth {
            health: "DEGRADED".into(),
            read_only: true
        }
    );
    let cap = e.pool_capacity(POOL).await.unwrap();
    assert_eq!(cap.used.text, "9.94G");
    assert_eq!(cap.logical_used.as_ref().unwrap().text, "8.71G");
    assert_eq!(cap.available.bytes, Some(71168));
    assert_eq!(cap.used_percent(), Some(99));
    e.set_property(POOL, "compression", "lz4").await.unwrap();
    let props = e
        .get_properties(POOL, &["compression", "canmount"])
        .await
        .unwrap();
    assert_eq!(props.get("compression"), Some(&Some("on".to_string())));
    assert_eq!(props.get("canmount"), Some(&Some("off".to_string())));
    assert_eq!(rec.lines().len(), 12, "{:?}", rec.lines());
}

#[tokio::test]
async fn topology_from_dump_json_tracks_disk_state_and_resilver() {
    let (e, s, rec) = engine();
    s.on_line(
        format!("zpool dump {POOL}"),
        Output::ok(fixture("zpool-dump-healthy.json")),
    );
    let topo = e.pool_topology(POOL).await.unwrap();
    assert_eq!(rec.lines(), vec![format!("zpool dump {POOL}")]);
    assert_eq!(topo.state, VdevState::Healthy);
    assert_eq!(topo.children.len(), 2);
    assert_eq!(topo.children[0].kind, "mirror");
    assert!(topo.children[1].is_log);
    // whole_disk=1: the -part1 / partition digit suffix is stripped, so BD links match.
    assert!(topo.contains_path("/dev/disk/by-id/scsi-0Google_PersistentDisk_pool-disk-1"));
    assert!(topo.contains_path("/dev/sdd"));
    assert!(!topo.contains_path("/dev/sde"));
    assert!(topo.unhealthy_leaves().is_empty());
    assert_eq!(
        topo.resilver_progress("/dev/sdd"),
        ResilverProgress::Completed
    );

    let new = "/dev/disk/by-id/scsi-0Google_PersistentDisk_pool-disk-3";
    s.on_line(
        format!("zpool dump {POOL}"),
        Output::ok(fixture("zpool-dump-replacing.json")),
    );
    let topo = e.pool_topology(POOL).await.unwrap();
    assert_eq!(topo.resilver_progress(new), ResilverProgress::InProgress);
    let bad = topo.unhealthy_leaves();
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0].1, VdevState::CantOpen);
    assert_eq!(bad[0].1.as_str(), "CANT_OPEN");

    s.on_line(
        format!("zpool dump {POOL}"),
        Output::ok(fixture("zpool-dump-resilvered.json")),
    );
    let topo = e.pool_topology(POOL).await.unwrap();
    assert_eq!(topo.resilver_progress(new), ResilverProgress::Completed);
    assert_eq!(
        topo.resilver_progress("/dev/disk/by-id/scsi-0Google_PersistentDisk_pool-disk-2"),
        ResilverProgress::NotInPool
    );

    s.on_line(
        format!("zpool dump {POOL}"),
        Output::ok(fixture("zpool-dump-raidz-faulted-sparse.json")),
    );
    let topo = e.pool_topology(POOL).await.unwrap();
    let bad = topo.unhealthy_leaves();
    assert_eq!(bad.len(), 1);
    assert_eq!(
        bad[0].0.path.as_deref(),
        Some("/var/openebs/sparse/1-ndm-sparse.img")
    );
    assert_eq!(bad[0].1, VdevState::Faulted);
    assert!(
        topo.contains_path("/var/openebs/sparse/3-ndm-sparse.img"),
        "spares are searched"
    );
}

#[tokio::test]
async fn topology_falls_back_to_status_text_when_dump_is_unknown() {
    let (e, s, rec) = engine();
    s.on_line(
        format!("zpool dump {POOL}"),
        Output::fail(
            2,
            "unrecognized command 'dump'\nusage: zpool command args ...\n",
        ),
    );
    s.on_line(
        format!("zpool status {POOL}"),
        Output::ok(fixture("zpool-status-openzfs-resilvering.txt")),
    );
    let topo = e.pool_topology(POOL).await.unwrap();
    assert_eq!(
        rec.lines(),
        vec![format!("zpool dump {POOL}"), format!("zpool status {POOL}")]
    );
    assert_eq!(topo.state, VdevState::Degraded);
    let scan = topo.scan.as_ref().unwrap();
    assert_eq!(
        (scan.func, scan.state, scan.percent_done),
        (ScanFunc::Resilver, ScanState::Scanning, Some(60.0))
    );
    assert_eq!(
        topo.resilver_progress("/dev/disk/by-id/scsi-0Google_PersistentDisk_pool-disk-3-part1"),
        ResilverProgress::InProgress
    );
    assert_eq!(
        topo.resilver_progress("/dev/sdd"),
        ResilverProgress::Completed
    );
    assert!(topo.children.last().unwrap().is_log);

    // zfs-fuse 0.7's status (a real capture): `scrub: resilver completed`.
    let topo = parse_status(&fixture("zpool-status-zfs-fuse-resilvered.txt")).unwrap();
    assert_eq!(
        topo.resilver_progress("/tmp/engx/d6.img"),
        ResilverProgress::Completed
    );
    assert_eq!(
        topo.find_leaf("/tmp/engx/d3.img").unwrap().state,
        VdevState::Offline
    );
    assert_eq!(
        topo.find_leaf("/tmp/engx/d6.img").unwrap().note,
        "10.6M resilvered"
    );
    assert_eq!(topo.leaves().len(), 5);
    assert!(topo.find_leaf("/tmp/engx/d5.img").unwrap().is_log);

    // Any other dump failure is an error, not a fallback.
    s.on_line(format!("zpool dump {POOL}"), no_such_pool(POOL));
    assert!(matches!(
        e.pool_topology(POOL).await,
        Err(EngineError::PoolNotFound { .. })
    ));
}

#[tokio::test]
async fn replica_create_and_clone_lines_are_upstreams() {
    let (e, s, rec) = engine();
    s.on(|c| {
        (c.program == "zfs" && matches!(c.args[0].as_str(), "create" | "clone"))
            .then(|| Ok(Output::ok("")))
    });
    let mut spec = ReplicaVolumeSpec {
        pool: POOL.into(),
        volume: VOL.into(),
        capacity: "5Gi".into(),
        quorum: true,
        replica_id: "6061C3B3DB5E8E3C".into(),
        cvr_name: format!("{VOL}-{POOL}"),
        zvol_workers: None,
        target_ip: Some("10.0.0.12".into()),
    };
    e.create_replica(&spec).await.unwrap();
    spec.quorum = false;
    spec.zvol_workers = Some("6".into());
    spec.target_ip = None;
    spec.capacity = "1G".into();
    e.create_replica(&spec).await.unwrap();
    e.clone_replica(&ReplicaCloneSpec {
        pool: POOL.into(),
        volume: "pvc-clone".into(),
        source_volume: VOL.into(),
        snapshot: "snap1".into(),
        target_ip: "10.0.0.13".into(),
        zvol_workers: Some("4".into()),
        replica_id: "42".into(),
        cvr_name: "pvc-clone-cvr".into(),
    })
    .await
    .unwrap();
    assert_eq!(
        rec.lines(),
        vec![
            format!(
                "zfs create -b 4K -s -o compression=on -o quorum=on -o io.openebs:zvol_replica_id=6061C3B3DB5E8E3C -o io.openebs:volname={VOL}-{POOL} -o io.openebs:targetip=10.0.0.12 -V 5G {POOL}/{VOL}"
            ),
            format!(
                "zfs create -b 4K -s -o compression=on -o quorum=off -o io.openebs:zvol_replica_id=6061C3B3DB5E8E3C -o io.openebs:volname={VOL}-{POOL} -o io.openebs:zvol_workers=6 -V 1G {POOL}/{VOL}"
            ),
            format!(
                "zfs clone -o compression=on -o io.openebs:targetip=10.0.0.13 -o quorum=on -o io.openebs:zvol_workers=4 -o io.openebs:volname=pvc-clone-cvr -o io.openebs:zvol_replica_id=42 {POOL}/{VOL}@snap1 {POOL}/pvc-clone"
            ),
        ]
    );
    // Each command is one argv, never a shell string.
    let calls = rec.calls();
    assert_eq!(calls[0].0.args.iter().filter(|a| *a == "-o").count(), 5);

    let err = e
        .create_replica(&ReplicaVolumeSpec {
            replica_id: String::new(),
            ..spec.clone()
        })
        .await
        .expect_err("no id");
    assert!(
        matches!(&err, EngineError::InvalidRequest { field, .. } if field == "replica id"),
        "{err}"
    );
    let err = e
        .create_replica(&ReplicaVolumeSpec {
            capacity: "Gi".into(),
            ..spec.clone()
        })
        .await
        .expect_err("bad size");
    assert!(
        matches!(&err, EngineError::InvalidRequest { field, .. } if field == "capacity"),
        "{err}"
    );
}

#[tokio::test]
async fn replica_create_on_existing_and_destroy_of_missing_follow_upstream() {
    let (e, s, rec) = engine();
    s.on(|c| {
        (c.program == "zfs" && c.args[0] == "create").then(|| {
            Ok(Output::fail(
                1,
                format!("cannot create '{POOL}/{VOL}': dataset already exists\n"),
            ))
        })
    });
    s.on_line(
        format!("zfs destroy -R {POOL}/{VOL}"),
        Output::fail(
            1,
            format!("cannot open '{POOL}/{VOL}': dataset does not exist\n"),
        ),
    );
    s.on_line(
        format!("zfs destroy -R {POOL}/busy"),
        Output::fail(
            1,
            format!("cannot destroy '{POOL}/busy': dataset is busy\n"),
        ),
    );
    s.on_line(
        "zfs get -Hp name -o name",
        Output::ok(format!("{POOL}\n{POOL}/{VOL}\n{POOL}/{VOL}@snap1\n")),
    );
    let spec = ReplicaVolumeSpec {
        pool: POOL.into(),
        volume: VOL.into(),
        capacity: "5Gi".into(),
        quorum: true,
        replica_id: "1".into(),
        cvr_name: "c".into(),
        zvol_workers: None,
        target_ip: None,
    };
    assert!(
        matches!(e.create_replica(&spec).await, Err(EngineError::DatasetExists { dataset }) if dataset == format!("{POOL}/{VOL}"))
    );
    e.destroy_dataset(&format!("{POOL}/{VOL}")).await.unwrap();
    let err = e
        .destroy_dataset(&format!("{POOL}/busy"))
        .await
        .expect_err("busy");
    assert!(err.to_string().contains("dataset is busy"), "{err}");
    assert!(e.dataset_exists(&format!("{POOL}/{VOL}")).await.unwrap());
    assert!(
        !e.dataset_exists(&format!("{POOL}/pvc-other"))
            .await
            .unwrap()
    );
    assert!(rec.lines().iter().all(|l| !l.contains("sh -c")));
}

#[tokio::test]
async fn replica_stats_listsnap_and_capacity() {
    let (e, s, rec) = engine();
    s.on_line("zfs stats", Output::ok(fixture("zfs-stats.json")));
    s.on_line(
        format!("zfs stats {POOL}/{VOL}"),
        Output::ok(fixture("zfs-stats.json")),
    );
    s.on_line(
        format!("zfs listsnap {POOL}/{VOL}"),
        Output::ok(fixture("zfs-listsnap.json")),
    );
    s.on_line(
        format!("zfs listsnap {POOL}/pvc-busy"),
        Output::fail(
            11,
            "failed listsnap command for pool/pvc-busy with err 11\n",
        ),
    );
    s.on_line(
        format!("zfs get used,logicalreferenced {POOL}/{VOL}"),
        Output::ok(fixture("zfs-get-replica-capacity.txt")),
    );
    s.on_line(
        format!("zfs get -H -p -o value logicalreferenced,used {POOL}/{VOL}@istgt_snap_20261125"),
        Output::ok("1610612736\n6144\n"),
    );
    s.on_line(
        "zfs list -H -o name",
        Output::ok(format!(
            "{POOL}\n{POOL}/{VOL}\n{POOL}/{VOL}_rebuild_clone\ncstor-other/{VOL}\n"
        )),
    );

    let stats = e.replica_stats(None).await.unwrap();
    assert_eq!(stats.len(), 2);
    assert_eq!(stats[0].status, ReplicaStatus::Healthy);
    assert_eq!(stats[0].cvr_phase(), "Healthy");
    assert_eq!(stats[0].checkpointed_io_num, 4096);
    assert!(stats[0].is_io_ack_sender_created);
    assert_eq!(stats[1].cvr_phase(), "ReconstructingNewReplica");
    assert_eq!(stats[1].rebuild_bytes, 73400320);
    assert_eq!(
        e.replica_stats(Some(&format!("{POOL}/{VOL}")))
            .await
            .unwrap()
            .len(),
        2
    );

    let snaps = e.list_snapshots(&format!("{POOL}/{VOL}")).await.unwrap();
    assert_eq!(snaps.dataset, format!("{POOL}/{VOL}"));
    assert_eq!(
        snaps.snapshots,
        vec![
            "istgt_snap_20261125",
            "rebuild_snap",
            "snapshot-4c6a1e2f-9d3b-4a7c-8e5f-1a2b3c4d5e6f"
        ]
    );
    let err = e
        .list_snapshots(&format!("{POOL}/pvc-busy"))
        .await
        .expect_err("EAGAIN");
    assert!(err.is_try_again(), "{err}");

    let cap = e.replica_capacity(&format!("{POOL}/{VOL}")).await.unwrap();
    assert_eq!(
        (cap.total.text.as_str(), cap.used.text.as_str()),
        ("6K", "1.50G")
    );
    assert_eq!(cap.total.bytes, Some(6144));

    let sizes = e
        .snapshot_sizes(&format!("{POOL}/{VOL}"), "istgt_snap_20261125")
        .await
        .unwrap();
    assert_eq!(
        sizes,
        SnapshotSizes {
            logical_referenced: 1610612736,
            used: 6144
        }
    );

    assert_eq!(
        e.provisioned_replicas(POOL).await.unwrap(),
        vec![format!("{POOL}/{VOL}")]
    );
    assert_eq!(rec.lines().len(), 7);
}

#[tokio::test]
async fn malformed_outputs_are_typed_parse_errors() {
    let (e, s, _rec) = engine();
    s.on_line("zfs stats", Output::ok("{\"stats\": [{\"name\": 3}]}"));
    s.on_line(
        format!("zpool dump {POOL}"),
        Output::ok("{\"vdev_tree\": {\"children\": [{\"vdev_stats\": [\"x\"]}]}}"),
    );
    s.on_line(
        format!("zfs get used,logicalreferenced {POOL}/{VOL}"),
        Output::ok("NAME PROPERTY VALUE SOURCE\n"),
    );
    s.on_line(format!("zfs listsnap {POOL}/{VOL}"), Output::ok("not json"));
    assert!(matches!(
        e.replica_stats(None).await,
        Err(EngineError::Parse { .. })
    ));
    let err = e.pool_topology(POOL).await.expect_err("bad dump");
    assert!(
        err.to_string().contains("vdev_tree.children[0].vdev_stats"),
        "{err}"
    );
    assert!(matches!(
        e.replica_capacity(&format!("{POOL}/{VOL}")).await,
        Err(EngineError::Parse { .. })
    ));
    assert!(matches!(
        e.list_snapshots(&format!("{POOL}/{VOL}")).await,
        Err(EngineError::Parse { .. })
    ));
}
