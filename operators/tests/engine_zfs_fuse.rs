//! The production engine against REAL zfs-fuse: pools on sparse files, datasets, snapshots,
//! clones. The harness starts the zfs-fuse daemon when its socket does not answer; tests skip
//! (with a printed reason) only when the zfs-fuse binary is not installed (`apt-get install
//! zfs-fuse`). The machine is shared: every pool is named `cstor-<random>` and only pools with
//! this test's prefix are looked at or destroyed.

use std::{
    future::Future,
    hash::{BuildHasher, Hasher},
    panic::AssertUnwindSafe,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use cstor_api::exec::{Cmd, HostRunner, Runner};
use cstor_operators::engine::*;
use futures::FutureExt;

const DISK_SIZE: u64 = 128 << 20;
const SCENARIO_DEADLINE: Duration = Duration::from_secs(120);

/// Makes sure a zfs-fuse daemon answers; `Err(reason)` only when the binary is missing.
async fn ensure_daemon() -> Result<(), String> {
    cstor_testkit::zfs_fuse::ensure_zfs_fuse()
        .await
        .map_err(|m| m.to_string())
}

fn random_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    format!("{:012x}", h.finish() & 0xffff_ffff_ffff)
}

struct Ctx {
    engine: CstorEngine,
    runner: Arc<dyn Runner>,
    dir: tempfile::TempDir,
    prefix: String,
}

impl Ctx {
    /// A pool name owned by this test.
    fn pool(&self, tag: &str) -> String {
        format!("{}-{tag}", self.prefix)
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A new sparse file vdev.
    fn disk(&self, name: &str) -> String {
        let path = self.dir.path().join(format!("{name}.img"));
        let f = std::fs::File::create(&path).expect("create sparse disk");
        f.set_len(DISK_SIZE).expect("size sparse disk");
        path.to_string_lossy().into_owned()
    }

    fn disks(&self, names: &[&str]) -> Vec<String> {
        names.iter().map(|n| self.disk(n)).collect()
    }

    /// Creates a pool from raid groups (no write cache) and keeps its datasets unmounted.
    async fn create(&self, tag: &str, groups: Vec<RaidGroup>) -> String {
        let name = self.pool(tag);
        self.engine
            .create_pool(&PoolSpec {
                name: name.clone(),
                data_groups: groups,
                write_cache_groups: vec![],
                // zfs-fuse has no lz4 (upstream's default); `on` is valid on both.
                compression: Some("on".into()),
                dev_dir: Some(self.dir().to_path_buf()),
            })
            .await
            .unwrap_or_else(|e| panic!("create {name}: {e}"));
        self.engine
            .set_property(&name, "mountpoint", "none")
            .await
            .expect("unmountable datasets");
        name
    }

    async fn zpool(&self, args: &[&str]) {
        let cmd = Cmd::new("zpool").args(args.iter().copied());
        self.runner
            .run_ok(&cmd)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Destroys this test's imported pools (a busy pool is retried for 20 s).
    async fn cleanup(&self) {
        let mine: Vec<String> = match self.engine.list_pools().await {
            Ok(pools) => pools
                .into_iter()
                .filter(|p| p.starts_with(&self.prefix))
                .collect(),
            Err(e) => {
                eprintln!("cleanup: cannot list pools: {e}");
                return;
            }
        };
        for pool in mine {
            let done = cstor_testkit::wait_for(Duration::from_secs(20), || async {
                match self.engine.destroy_pool(&pool).await {
                    Ok(()) => true,
                    Err(EngineError::PoolBusy { .. }) => false,
                    Err(e) => {
                        eprintln!("cleanup: destroy {pool}: {e}");
                        true
                    }
                }
            })
            .await;
            if done.is_err() {
                eprintln!("cleanup: {pool} stayed busy");
            }
        }
    }
}

/// Runs one scenario with a fresh prefix and temp dir, bounded in time; the test's pools are
/// destroyed afterwards whether it passed, failed or timed out.
async fn scenario<F, Fut>(name: &str, f: F)
where
    F: FnOnce(Arc<Ctx>) -> Fut,
    Fut: Future<Output = ()>,
{
    if let Err(reason) = ensure_daemon().await {
        eprintln!("SKIP {name}: {reason}");
        return;
    }
    let runner: Arc<dyn Runner> = Arc::new(HostRunner::new());
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = CstorEngine::new(runner.clone())
        .with_cache_file(dir.path().join("pool.cache").to_string_lossy());
    let ctx = Arc::new(Ctx {
        engine,
        runner,
        dir,
        prefix: format!("cstor-{}", random_suffix()),
    });
    let result = AssertUnwindSafe(tokio::time::timeout(SCENARIO_DEADLINE, f(ctx.clone())))
        .catch_unwind()
        .await;
    ctx.cleanup().await;
    match result {
        Ok(Ok(())) => {}
        Ok(Err(_)) => panic!("{name} did not finish within {SCENARIO_DEADLINE:?}"),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

#[tokio::test]
async fn create_every_raid_type_then_destroy_idempotently() {
    scenario("raid types", |c| async move {
        let cases = [
            ("stripe", RaidType::Stripe, 2, 0),
            ("mirror", RaidType::Mirror, 2, 1),
            ("raidz", RaidType::Raidz, 3, 1),
            ("raidz2", RaidType::Raidz2, 6, 1),
        ];
        for (tag, raid, n, groups) in cases {
            let names: Vec<String> = (0..n).map(|i| format!("{tag}{i}")).collect();
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            let disks = c.disks(&refs);
            let pool = c
                .create(tag, vec![RaidGroup::new(raid, disks.clone())])
                .await;
            assert!(c.engine.pool_exists(&pool).await.unwrap(), "{pool}");
            assert!(c.engine.list_pools().await.unwrap().contains(&pool));
            let health = c.engine.pool_health(&pool).await.unwrap();
            assert_eq!(
                health,
                PoolHealth {
                    health: "ONLINE".into(),
                    read_only: false
                }
            );
            let topo = c.engine.pool_topology(&pool).await.unwrap();
            assert_eq!(topo.state, VdevState::Healthy);
            assert_eq!(topo.leaves().len(), n, "{topo:#?}");
            assert!(disks.iter().all(|d| topo.contains_path(d)), "{topo:#?}");
            let kinds: Vec<&str> = topo.children.iter().map(|v| v.kind.as_str()).collect();
            match groups {
                0 => assert!(kinds.iter().all(|k| *k == "file"), "{kinds:?}"),
                _ => assert_eq!(
                    kinds,
                    vec![if raid == RaidType::Mirror {
                        "mirror"
                    } else {
                        "raidz"
                    }]
                ),
            }
            let cap = c.engine.pool_capacity(&pool).await.unwrap();
            assert!(
                cap.used.bytes.unwrap() > 0 && cap.available.bytes.unwrap() > 0,
                "{cap:?}"
            );
            assert!(cap.logical_used.is_none(), "zfs-fuse has no logicalused");
            let compression = c
                .engine
                .get_properties(&pool, &["compression", "canmount"])
                .await
                .unwrap();
            assert_eq!(compression["compression"].as_deref(), Some("on"));
            assert_eq!(compression["canmount"].as_deref(), Some("off"));

            // Creating over an existing pool fails as `zpool create` does; nothing is touched.
            let again = c
                .engine
                .create_pool(&PoolSpec {
                    name: pool.clone(),
                    data_groups: vec![RaidGroup::new(
                        RaidType::Stripe,
                        [c.disk(&format!("{tag}-again"))],
                    )],
                    write_cache_groups: vec![],
                    compression: Some("on".into()),
                    dev_dir: Some(c.dir().to_path_buf()),
                })
                .await
                .expect_err("pool exists");
            assert!(
                matches!(&again, EngineError::PoolExists { pool: p } if *p == pool),
                "{again}"
            );

            c.engine.destroy_pool(&pool).await.unwrap();
            assert!(!c.engine.pool_exists(&pool).await.unwrap());
            c.engine
                .destroy_pool(&pool)
                .await
                .expect("destroying a missing pool succeeds");
            c.engine
                .export_pool(&pool)
                .await
                .expect("exporting a missing pool succeeds");
            let err = c.engine.pool_health(&pool).await.expect_err("gone");
            assert!(
                matches!(&err, EngineError::PoolNotFound { pool: p } if *p == pool),
                "{err}"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn export_then_import_by_name_by_dir_and_with_rename() {
    scenario("import", |c| async move {
        let disks = c.disks(&["a", "b"]);
        let pool = c
            .create("old", vec![RaidGroup::new(RaidType::Mirror, disks)])
            .await;
        let req = |name: &str, existing: Option<&str>| ImportRequest {
            pool: name.to_string(),
            existing_name: existing.map(str::to_string),
            dev_dir: Some(c.dir().to_path_buf()),
        };
        assert_eq!(
            c.engine.import_pool(&req(&pool, None)).await.unwrap(),
            ImportOutcome::AlreadyImported
        );

        c.engine.export_pool(&pool).await.unwrap();
        assert!(!c.engine.pool_exists(&pool).await.unwrap());
        let listed = c.engine.importable_pools(Some(c.dir())).await.unwrap();
        let entry = listed
            .iter()
            .find(|p| p.name == pool)
            .expect("exported pool is importable");
        assert_eq!(entry.state.as_deref(), Some("ONLINE"));
        assert!(
            entry
                .id
                .as_deref()
                .is_some_and(|id| id.parse::<u64>().is_ok())
        );
        // Export dropped it from the cache file, so the device scan (-d) imports it.
        assert_eq!(
            c.engine.import_pool(&req(&pool, None)).await.unwrap(),
            ImportOutcome::Imported {
                renamed_from: None,
                from_cache_file: false
            }
        );
        assert!(c.engine.pool_exists(&pool).await.unwrap());

        // Rename on import (the existing-pool-name annotation).
        c.engine.export_pool(&pool).await.unwrap();
        let renamed = c.pool("new");
        assert_eq!(
            c.engine
                .import_pool(&req(&renamed, Some(&pool)))
                .await
                .unwrap(),
            ImportOutcome::Imported {
                renamed_from: Some(pool.clone()),
                from_cache_file: false
            }
        );
        assert!(c.engine.pool_exists(&renamed).await.unwrap());
        assert!(!c.engine.pool_exists(&pool).await.unwrap());
        // Running it again: already imported under the new name.
        assert_eq!(
            c.engine
                .import_pool(&req(&renamed, Some(&pool)))
                .await
                .unwrap(),
            ImportOutcome::AlreadyImported
        );
        // A stale annotation: the new name is the importable one.
        c.engine.export_pool(&renamed).await.unwrap();
        assert_eq!(
            c.engine
                .import_pool(&req(&renamed, Some(&pool)))
                .await
                .unwrap(),
            ImportOutcome::Imported {
                renamed_from: None,
                from_cache_file: false
            }
        );
        // Nothing by that name anywhere.
        assert_eq!(
            c.engine
                .import_pool(&req(&c.pool("none"), None))
                .await
                .unwrap(),
            ImportOutcome::NotFound
        );
    })
    .await;
}

#[tokio::test]
async fn create_refuses_a_pool_that_is_importable() {
    scenario("importable", |c| async move {
        let pool = c
            .create("p", vec![RaidGroup::new(RaidType::Stripe, c.disks(&["a"]))])
            .await;
        c.engine.export_pool(&pool).await.unwrap();
        let err = c
            .engine
            .create_pool(&PoolSpec {
                name: pool.clone(),
                data_groups: vec![RaidGroup::new(RaidType::Stripe, c.disks(&["b"]))],
                write_cache_groups: vec![],
                compression: Some("on".into()),
                dev_dir: Some(c.dir().to_path_buf()),
            })
            .await
            .expect_err("importable");
        assert!(
            matches!(&err, EngineError::PoolImportable { pool: p, .. } if *p == pool),
            "{err}"
        );
        assert!(
            !c.engine.pool_exists(&pool).await.unwrap(),
            "nothing was created"
        );
    })
    .await;
}

#[tokio::test]
async fn add_raid_groups_and_write_cache() {
    scenario("expansion", |c| async move {
        let name = c.pool("x");
        c.engine
            .create_pool(&PoolSpec {
                name: name.clone(),
                data_groups: vec![
                    RaidGroup::new(RaidType::Mirror, c.disks(&["a", "b"])),
                    RaidGroup::new(RaidType::Mirror, c.disks(&["c", "d"])),
                ],
                write_cache_groups: vec![RaidGroup::new(RaidType::Stripe, c.disks(&["log0"]))],
                compression: Some("on".into()),
                dev_dir: Some(c.dir().to_path_buf()),
            })
            .await
            .unwrap();
        let before = c
            .engine
            .pool_capacity(&name)
            .await
            .unwrap()
            .available
            .bytes
            .unwrap();
        c.engine
            .add_raid_group(
                &name,
                VdevClass::Data,
                &RaidGroup::new(RaidType::Mirror, c.disks(&["e", "f"])),
            )
            .await
            .unwrap();
        let topo = c.engine.pool_topology(&name).await.unwrap();
        let data: Vec<&Vdev> = topo.children.iter().filter(|v| !v.is_log).collect();
        assert_eq!(data.len(), 3);
        assert!(
            data.iter()
                .all(|v| v.kind == "mirror" && v.children.len() == 2)
        );
        let logs: Vec<&Vdev> = topo.children.iter().filter(|v| v.is_log).collect();
        assert_eq!(logs.len(), 1);
        assert!(logs[0].path.as_deref().unwrap().ends_with("log0.img"));
        let after = c
            .engine
            .pool_capacity(&name)
            .await
            .unwrap()
            .available
            .bytes
            .unwrap();
        assert!(after > before, "{before} -> {after}");
        // A group ZFS refuses (mismatched redundancy) is a typed failure, pool untouched.
        let err = c
            .engine
            .add_raid_group(
                &name,
                VdevClass::Data,
                &RaidGroup::new(RaidType::Stripe, c.disks(&["g"])),
            )
            .await
            .expect_err("mismatched replication");
        assert!(
            err.to_string().contains("mismatched replication level"),
            "{err}"
        );
    })
    .await;
}

#[tokio::test]
async fn replace_disk_tracks_resilver_and_labelclear_clears_removed_disks() {
    scenario("replace", |c| async move {
        let disks = c.disks(&["a", "b"]);
        let pool = c
            .create("r", vec![RaidGroup::new(RaidType::Mirror, disks.clone())])
            .await;
        c.engine
            .create_filesystem(&format!("{pool}/fill"), &[])
            .await
            .unwrap();
        let new = c.disk("c");
        c.engine.replace_disk(&pool, &disks[1], &new).await.unwrap();
        let end = Instant::now() + Duration::from_secs(60);
        let topo = loop {
            let topo = c.engine.pool_topology(&pool).await.expect("topology");
            if topo.resilver_progress(&new) == ResilverProgress::Completed {
                break topo;
            }
            assert!(Instant::now() < end, "resilver did not complete: {topo:#?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let scan = topo.scan.as_ref().expect("a resilver ran");
        assert_eq!(
            (scan.func, scan.state),
            (ScanFunc::Resilver, ScanState::Finished)
        );
        assert_eq!(
            topo.resilver_progress(&disks[1]),
            ResilverProgress::NotInPool
        );
        assert!(
            topo.find_leaf(&new).unwrap().note.contains("resilvered"),
            "{topo:#?}"
        );
        assert_eq!(c.engine.pool_health(&pool).await.unwrap().health, "ONLINE");

        // The removed disk can be label-cleared (zfs-fuse has no labelclear: labels are zeroed).
        c.engine.labelclear(&disks[1]).await.unwrap();

        // Clearing the labels of an exported pool's disks makes it unimportable.
        c.engine.export_pool(&pool).await.unwrap();
        assert!(
            c.engine
                .importable_pools(Some(c.dir()))
                .await
                .unwrap()
                .iter()
                .any(|p| p.name == pool)
        );
        c.engine.labelclear(&disks[0]).await.unwrap();
        c.engine.labelclear(&new).await.unwrap();
        let listed = c.engine.importable_pools(Some(c.dir())).await.unwrap();
        assert!(!listed.iter().any(|p| p.name == pool), "{listed:?}");
        let err = c
            .engine
            .labelclear(&c.dir().join("missing.img").to_string_lossy())
            .await
            .expect_err("no file");
        assert!(matches!(err, EngineError::Io { .. }), "{err}");
    })
    .await;
}

#[tokio::test]
async fn offline_disk_shows_in_health_and_topology() {
    scenario("health", |c| async move {
        let disks = c.disks(&["a", "b", "c"]);
        let pool = c
            .create("h", vec![RaidGroup::new(RaidType::Raidz, disks.clone())])
            .await;
        c.zpool(&["offline", &pool, &disks[2]]).await;
        assert_eq!(
            c.engine.pool_health(&pool).await.unwrap().health,
            "DEGRADED"
        );
        let topo = c.engine.pool_topology(&pool).await.unwrap();
        assert_eq!(topo.state, VdevState::Degraded);
        assert_eq!(topo.children[0].state, VdevState::Degraded);
        let bad = topo.unhealthy_leaves();
        assert_eq!(bad.len(), 1, "{topo:#?}");
        assert_eq!(bad[0].0.path.as_deref(), Some(disks[2].as_str()));
        assert_eq!(bad[0].1, VdevState::Offline);
        c.zpool(&["online", &pool, &disks[2]]).await;
        assert!(
            cstor_testkit::wait_for(Duration::from_secs(30), || async {
                c.engine.pool_health(&pool).await.unwrap().health == "ONLINE"
            })
            .await
            .is_ok()
        );
    })
    .await;
}

#[tokio::test]
async fn datasets_user_properties_snapshots_clones_and_idempotent_destroy() {
    scenario("datasets", |c| async move {
        let pool = c
            .create("d", vec![RaidGroup::new(RaidType::Stripe, c.disks(&["a"]))])
            .await;
        let vol = format!("{pool}/pvc-1");
        c.engine
            .create_filesystem(
                &vol,
                &[
                    ("io.openebs:volname", "pvc-1-cvr"),
                    ("io.openebs:zvol_replica_id", "1234"),
                ],
            )
            .await
            .unwrap();
        let err = c
            .engine
            .create_filesystem(&vol, &[])
            .await
            .expect_err("exists");
        assert!(
            matches!(&err, EngineError::DatasetExists { dataset } if *dataset == vol),
            "{err}"
        );
        assert!(c.engine.dataset_exists(&vol).await.unwrap());
        assert!(c.engine.list_datasets().await.unwrap().contains(&vol));
        assert_eq!(
            c.engine.provisioned_replicas(&pool).await.unwrap(),
            vec![vol.clone()]
        );

        let props = c
            .engine
            .get_properties(
                &vol,
                &[
                    "io.openebs:volname",
                    "io.openebs:zvol_replica_id",
                    "io.openebs:targetip",
                ],
            )
            .await
            .unwrap();
        assert_eq!(props["io.openebs:volname"].as_deref(), Some("pvc-1-cvr"));
        assert_eq!(props["io.openebs:zvol_replica_id"].as_deref(), Some("1234"));
        assert_eq!(props["io.openebs:targetip"], None, "unset user property");
        c.engine
            .set_property(&vol, "io.openebs:targetip", "127.0.0.1")
            .await
            .unwrap();
        let props = c
            .engine
            .get_properties(&vol, &["io.openebs:targetip"])
            .await
            .unwrap();
        assert_eq!(props["io.openebs:targetip"].as_deref(), Some("127.0.0.1"));

        c.engine.create_snapshot(&vol, "s1").await.unwrap();
        let err = c
            .engine
            .create_snapshot(&vol, "s1")
            .await
            .expect_err("exists");
        assert!(matches!(err, EngineError::DatasetExists { .. }), "{err}");
        let clone = format!("{pool}/pvc-2");
        c.engine
            .clone_dataset(
                &format!("{vol}@s1"),
                &clone,
                &[("io.openebs:volname", "pvc-2-cvr")],
            )
            .await
            .unwrap();
        let props = c
            .engine
            .get_properties(&clone, &["origin", "io.openebs:volname"])
            .await
            .unwrap();
        assert_eq!(
            props["origin"].as_deref(),
            Some(format!("{vol}@s1").as_str())
        );
        assert_eq!(props["io.openebs:volname"].as_deref(), Some("pvc-2-cvr"));
        let err = c
            .engine
            .destroy_snapshot(&vol, "s1")
            .await
            .expect_err("dependent clone");
        assert!(err.to_string().contains("dependent clones"), "{err}");

        // destroy -R takes the snapshot and its clone; running it again succeeds.
        c.engine.destroy_dataset(&vol).await.unwrap();
        assert!(!c.engine.dataset_exists(&vol).await.unwrap());
        assert!(!c.engine.dataset_exists(&clone).await.unwrap());
        c.engine
            .destroy_dataset(&vol)
            .await
            .expect("missing dataset is success");
        c.engine
            .destroy_snapshot(&vol, "s1")
            .await
            .expect("missing snapshot is success");
        c.engine.create_filesystem(&vol, &[]).await.unwrap();
        c.engine
            .destroy_snapshot(&vol, "nope")
            .await
            .expect("missing snapshot is success");
        assert!(
            c.engine
                .provisioned_replicas(&pool)
                .await
                .unwrap()
                .contains(&vol)
        );
    })
    .await;
}

#[tokio::test]
async fn cstor_only_commands_are_run_and_fail_typed_on_zfs_fuse() {
    scenario("cstor-only", |c| async move {
        let pool = c
            .create("z", vec![RaidGroup::new(RaidType::Stripe, c.disks(&["a"]))])
            .await;
        // zvols: zfs-fuse aborts with "Function not implemented"; the error carries the line.
        let err = c
            .engine
            .create_replica(&ReplicaVolumeSpec {
                pool: pool.clone(),
                volume: "pvc-z".into(),
                capacity: "64Mi".into(),
                quorum: true,
                replica_id: "77".into(),
                cvr_name: "pvc-z-cvr".into(),
                zvol_workers: None,
                target_ip: Some("127.0.0.1".into()),
            })
            .await
            .expect_err("no zvols on zfs-fuse");
        assert!(
            err.to_string().contains(&format!("-V 64M {pool}/pvc-z")),
            "{err}"
        );
        assert!(
            !c.engine
                .dataset_exists(&format!("{pool}/pvc-z"))
                .await
                .unwrap()
        );
        for err in [
            c.engine
                .replica_stats(None)
                .await
                .expect_err("no zfs stats"),
            c.engine
                .list_snapshots(&pool)
                .await
                .expect_err("no zfs listsnap"),
        ] {
            assert!(matches!(err, EngineError::Unsupported { .. }), "{err}");
        }
        let err = c
            .engine
            .set_pool_read_only(&pool, true)
            .await
            .expect_err("no pool user props");
        assert!(err.to_string().contains("io.openebs:readonly"), "{err}");
    })
    .await;
}
