//! The recordings of the real cStor engine (`tests/fixtures/real-engine`, made by its
//! `record.sh` from zrepl/zpool/zfs and istgt running in namespaces) through our code: every
//! recorded `zpool`/`zfs` output goes through the engine seam with the exact command line it
//! answered, every istgt reply through the control-socket client, and every stand-in (the
//! in-process fake istgt, the zvol shim of the pool tests) is compared with them. Plus the
//! regressions those recordings exposed, down to the pool-manager's CVR reconcile.

mod support;

use std::{collections::BTreeMap, path::PathBuf, sync::Arc, time::Duration};

use cstor_api::{
    constants::{annotation, finalizer, label},
    cstor::{CStorVolumeReplica, CStorVolumeReplicaPhase, CStorVolumeReplicaSpec},
    exec::{Cmd, ExecError, Output, RecordingRunner, Runner, ScriptedRunner},
};
use cstor_operators::{
    engine::*,
    pool_manager,
    volume_manager::{
        ControlClient,
        fake_istgt::{FakeIstgt, json_shape, replica_entry, replica_json, reply_shape},
        parse_replica_payload,
    },
};
use cstor_testkit::TestCluster;
use kube::{Api, ResourceExt, api::PostParams};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream},
};

fn dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/real-engine"
    ))
}

/// One recorded command: exit code, command line, output.
#[derive(Clone, Debug)]
struct Rec {
    name: String,
    code: i32,
    line: String,
}

impl Rec {
    fn stdout(&self) -> String {
        read(&format!("cli/{}.stdout", self.name))
    }
    fn stderr(&self) -> String {
        read(&format!("cli/{}.stderr", self.name))
    }
    fn output(&self) -> Output {
        Output {
            code: Some(self.code),
            stdout: self.stdout(),
            stderr: self.stderr(),
        }
    }
}

fn read(rel: &str) -> String {
    let p = dir().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

fn index() -> Vec<Rec> {
    read("index.tsv")
        .lines()
        .skip(1)
        .map(|l| {
            let mut f = l.splitn(3, '\t');
            let (name, code, line) = (f.next().unwrap(), f.next().unwrap(), f.next().unwrap());
            Rec {
                name: name.to_owned(),
                code: code.parse().unwrap(),
                line: line.to_owned(),
            }
        })
        .collect()
}

fn cli(name: &str) -> Rec {
    index()
        .into_iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no recording {name}"))
}

/// `(replica, io.openebs:zvol_replica_id, zvol guid)` of the recorded volume's replicas.
fn replicas() -> Vec<(String, String, String)> {
    read("replicas.tsv")
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[0].to_owned(), f[1].to_owned(), f[2].to_owned())
        })
        .collect()
}

fn istgt(name: &str) -> Vec<u8> {
    std::fs::read(dir().join("istgt").join(name)).unwrap_or_else(|e| panic!("read {name}: {e}"))
}

/// The recorded pool and zvol of the volume's replicas.
fn zvol() -> (String, String) {
    let line = cli("zfs-stats").line;
    let ds = line.rsplit(' ').next().unwrap().to_owned();
    (ds.split('/').next().unwrap().to_owned(), ds)
}

/// An engine answering each of these recordings' command lines with what the real engine
/// printed (a later name wins for the same line); anything else is an unscripted-line error.
fn replay(names: &[&str]) -> (CstorEngine, RecordingRunner) {
    let script = ScriptedRunner::new();
    for n in names {
        let r = cli(n);
        script.on_line(r.line.clone(), r.output());
    }
    let rec = RecordingRunner::new(Arc::new(script));
    (
        CstorEngine::new(Arc::new(rec.clone())).with_cache_file("/mnt/pool.cache"),
        rec,
    )
}

#[test]
fn every_recording_is_indexed_with_its_files() {
    let all = index();
    assert!(all.len() > 90, "{} recordings", all.len());
    for r in &all {
        if let Some(name) = r.name.strip_prefix("istgt/") {
            assert!(dir().join(format!("istgt/{name}.sent")).is_file(), "{name}");
            assert!(dir().join(format!("istgt/{name}.recv")).is_file(), "{name}");
        } else {
            r.stdout();
            r.stderr();
        }
    }
}

/// Every `zfs stats` the real engine printed parses; a zvol with a target has its entry, the
/// `{"pool":{}}` element is not a replica.
#[test]
fn every_zfs_stats_recording_parses() {
    let (_, zvol) = zvol();
    let mut seen = 0;
    for r in index().iter().filter(|r| r.line.starts_with("zfs stats")) {
        let stats = parse_stats(&r.stdout()).unwrap_or_else(|e| panic!("{}: {e}", r.name));
        let expect = match r.name.as_str() {
            // targetip cleared / never set: uZFS lists nothing for the zvol.
            "zfs-stats-disconnected" | "zfs-stats-restore-unconnected" => 0,
            _ => 1,
        };
        assert_eq!(stats.len(), expect, "{}: {stats:?}", r.name);
        for s in &stats {
            assert_eq!(s.name, zvol, "{}", r.name);
            assert!(
                !matches!(s.status, ReplicaStatus::Other(_)),
                "{}: {s:?}",
                r.name
            );
        }
        seen += 1;
    }
    assert!(seen >= 6, "{seen}");
    // The recorded zvol of a connected replica is Healthy, in quorum, with its counters.
    let healthy = parse_stats(&cli("zfs-stats-r2-connected").stdout()).unwrap();
    assert_eq!(healthy[0].status, ReplicaStatus::Healthy);
    assert_eq!((healthy[0].quorum, healthy[0].cvr_phase()), (1, "Healthy"));
    assert!(healthy[0].is_io_ack_sender_created && healthy[0].rebuild_done_cnt > 0);
}

/// Regression (a): the element that made every CVR status fail.
#[test]
fn zfs_stats_with_the_pool_element_parses() {
    let text = cli("zfs-stats").stdout();
    assert!(text.contains(r#"{"pool":{}}"#), "the recording has it");
    let stats = parse_stats(&text).expect("real zfs stats output parses");
    assert_eq!(stats.len(), 1);
    assert_eq!(parse_stats(r#"{"stats":[{"pool":{}}]}"#).unwrap(), vec![]);
}

#[tokio::test]
async fn replica_seam_against_the_recordings() {
    let (pool, zvol) = zvol();
    let (e, rec) = replay(&[
        "zfs-stats-r2-connected",
        "zfs-listsnap",
        "zfs-get-snapshot-sizes",
        "zfs-get-replica-capacity-connected",
        "zfs-get-replica-props",
        "zfs-get-datasets",
        "zfs-list-names",
        "zfs-destroy-missing",
        "zfs-destroy-snapshot-missing",
        "zfs-get-missing",
    ]);
    let stats = e.replica_stats(Some(&zvol)).await.unwrap();
    assert_eq!(stats[0].status, ReplicaStatus::Healthy);
    let snaps = e.list_snapshots(&zvol).await.unwrap();
    assert_eq!(
        (snaps.dataset.as_str(), snaps.snapshots),
        (zvol.as_str(), vec!["snap-1".to_string()])
    );
    let sizes = e.snapshot_sizes(&zvol, "snap-1").await.unwrap();
    assert!(sizes.logical_referenced > 0 && sizes.used > 0, "{sizes:?}");
    let cap = e.replica_capacity(&zvol).await.unwrap();
    assert!(
        !cap.total.text.is_empty() && !cap.used.text.is_empty(),
        "{cap:?}"
    );
    let props = e
        .get_properties(
            &zvol,
            &[
                "io.openebs:zvol_replica_id",
                "io.openebs:targetip",
                "quorum",
                "guid",
            ],
        )
        .await
        .unwrap();
    let (_, id, guid) = &replicas()[0];
    assert_eq!(
        props["io.openebs:zvol_replica_id"].as_deref(),
        Some(id.as_str())
    );
    assert_eq!(props["guid"].as_deref(), Some(guid.as_str()));
    assert_eq!(props["quorum"].as_deref(), Some("on"));
    assert!(e.dataset_exists(&zvol).await.unwrap());
    assert_eq!(
        e.provisioned_replicas(&pool).await.unwrap(),
        vec![zvol.clone()]
    );
    let clone = cli("zfs-destroy-missing").line;
    e.destroy_dataset(clone.rsplit(' ').next().unwrap())
        .await
        .expect("a missing dataset is destroyed");
    e.destroy_snapshot(&zvol, "snap-local")
        .await
        .expect("a missing snapshot is destroyed");
    let err = e
        .get_properties(
            &format!("{pool}/pvc-missing"),
            &["io.openebs:zvol_replica_id"],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, EngineError::DatasetNotFound { .. }),
        "{err:?}"
    );
    assert!(rec.lines().iter().all(|l| !l.is_empty()));

    // zfs listsnap before the replica met its target: EAGAIN (exit 11), a retry-later error.
    let (e, _) = replay(&["zfs-listsnap-empty"]);
    let err = e.list_snapshots(&zvol).await.unwrap_err();
    assert!(err.is_try_again(), "{err:?}");
}

/// Our create/clone lines are exactly what was recorded (the replay only knows those lines).
#[tokio::test]
async fn create_and_clone_lines_match_the_recordings() {
    let (pool, zvol) = zvol();
    let volume = zvol.split('/').nth(1).unwrap().to_owned();
    let (_, id, _) = &replicas()[0];
    let create = cli("zfs-create-replica");
    let (e, _) = replay(&["zfs-create-replica", "zfs-create-replica-exists"]);
    let target_ip = create
        .line
        .split(' ')
        .find_map(|w| w.strip_prefix("io.openebs:targetip="))
        .unwrap()
        .to_owned();
    let spec = ReplicaVolumeSpec {
        pool: pool.clone(),
        volume: volume.clone(),
        capacity: "1Gi".into(),
        quorum: true,
        replica_id: id.clone(),
        cvr_name: format!("{volume}-{pool}"),
        zvol_workers: None,
        target_ip: Some(target_ip.clone()),
    };
    // The second answer for the line is "dataset already exists".
    let err = e.create_replica(&spec).await.unwrap_err();
    assert!(
        matches!(
            err,
            EngineError::Failed { .. } | EngineError::DatasetExists { .. }
        ),
        "{err:?}"
    );
    let (e, _) = replay(&["zfs-create-replica"]);
    e.create_replica(&spec).await.unwrap();

    let restore = cli("zfs-create-restore-replica");
    let rvol = restore.line.rsplit('/').next().unwrap().to_owned();
    let (e, _) = replay(&["zfs-create-restore-replica"]);
    e.create_replica(&ReplicaVolumeSpec {
        volume: rvol.clone(),
        replica_id: format!("{id}0"),
        cvr_name: format!("{rvol}-{pool}"),
        target_ip: None,
        ..spec.clone()
    })
    .await
    .expect("restore replicas are created without a target ip");

    let clone = cli("zfs-clone-replica");
    let cvol = clone.line.rsplit('/').next().unwrap().to_owned();
    let (e, _) = replay(&["zfs-clone-replica"]);
    e.clone_replica(&ReplicaCloneSpec {
        pool: pool.clone(),
        volume: cvol.clone(),
        source_volume: volume.clone(),
        snapshot: "snap-1".into(),
        target_ip,
        zvol_workers: None,
        replica_id: format!("{id}1"),
        cvr_name: format!("{cvol}-{pool}"),
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn pool_seam_against_the_recordings() {
    let (pool, _) = zvol();
    let (e, _) = replay(&[
        "zpool-get-name",
        "zpool-get-name-list",
        "zpool-get-health",
        "zfs-get-pool-capacity",
        "zpool-dump",
        "zpool-set-readonly-on",
    ]);
    assert!(e.pool_exists(&pool).await.unwrap());
    assert_eq!(e.list_pools().await.unwrap(), vec![pool.clone()]);
    let h = e.pool_health(&pool).await.unwrap();
    assert_eq!((h.health.as_str(), h.read_only), ("ONLINE", false));
    let cap = e.pool_capacity(&pool).await.unwrap();
    assert!(cap.total_bytes().unwrap() > 1 << 30, "{cap:?}");
    let topo = e.pool_topology(&pool).await.unwrap();
    assert!(topo.contains_path("/mnt/disk-a.img"), "{topo:?}");
    e.set_pool_read_only(&pool, true).await.unwrap();
    let (e, _) = replay(&["zpool-get-health-readonly"]);
    assert!(e.pool_health(&pool).await.unwrap().read_only);

    let (e, _) = replay(&["zpool-get-name-missing", "zpool-get-name-list-none"]);
    assert!(!e.pool_exists(&pool).await.unwrap());
    assert!(e.list_pools().await.unwrap().is_empty());

    // Create: both probes find nothing, then the recorded create line.
    let (e, rec) = replay(&[
        "zpool-import-listing-dir-none",
        "zpool-import-listing-none",
        "zpool-create",
    ]);
    e.create_pool(&PoolSpec {
        name: pool.clone(),
        data_groups: vec![RaidGroup {
            raid_type: RaidType::Stripe,
            disks: vec!["/mnt/disk-a.img".into()],
        }],
        write_cache_groups: vec![],
        compression: None,
        dev_dir: Some("/mnt".into()),
    })
    .await
    .unwrap();
    assert_eq!(rec.lines().last().unwrap(), &cli("zpool-create").line);
}

#[test]
fn pool_listings_and_status_parse() {
    let lab = cli("lab-zpool-create").line;
    let lab = lab.split(' ').nth(8).unwrap().to_owned();
    let dump = parse_dump(&cli("lab-zpool-dump").stdout()).unwrap();
    for p in ["/mnt/l1.img", "/mnt/l3.img", "/mnt/l4.img"] {
        assert!(dump.contains_path(p), "{p}: {dump:?}");
    }
    assert!(dump.leaves().iter().any(|l| l.is_log));
    let status = parse_status(&cli("lab-zpool-status-replaced").stdout()).unwrap();
    assert!(status.contains_path("/mnt/l4.img"), "{status:?}");
    let status = parse_status(&cli("zpool-status").stdout()).unwrap();
    assert!(status.contains_path("/mnt/disk-a.img"));
    let r = cli("lab-zpool-import-listing");
    let pools = parse_import_listing(&format!("{}\n{}", r.stdout(), r.stderr()));
    assert_eq!(pools.len(), 1, "{pools:?}");
    assert_eq!(pools[0].name, lab);
    let r = cli("zpool-import-listing-none");
    assert!(parse_import_listing(&format!("{}\n{}", r.stdout(), r.stderr())).is_empty());
}

#[tokio::test]
async fn import_export_destroy_against_the_recordings() {
    let lab = cli("lab-zpool-create")
        .line
        .split(' ')
        .nth(8)
        .unwrap()
        .to_owned();
    // Import by device scan after the cache file had forgotten the exported pool.
    let (e, _) = replay(&[
        "lab-zpool-get-name-exported",
        "lab-zpool-import-cache",
        "lab-zpool-import-dir",
    ]);
    let out = e
        .import_pool(&ImportRequest {
            pool: lab.clone(),
            existing_name: None,
            dev_dir: Some("/mnt".into()),
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
    // Nothing to import: NotFound, not an error.
    let script = ScriptedRunner::new();
    script.on_line(
        format!("zpool get -H -p -o value name {lab}"),
        cli("lab-zpool-get-name-exported").output(),
    );
    script.on_line(
        format!("zpool import -o cachefile=/mnt/pool.cache -c /mnt/pool.cache {lab}"),
        cli("lab-zpool-import-cache").output(),
    );
    script.on_line(
        cli("lab-zpool-import-missing").line,
        cli("lab-zpool-import-missing").output(),
    );
    let e = CstorEngine::new(Arc::new(script)).with_cache_file("/mnt/pool.cache");
    let out = e
        .import_pool(&ImportRequest {
            pool: lab.clone(),
            existing_name: None,
            dev_dir: Some("/mnt".into()),
        })
        .await
        .unwrap();
    assert_eq!(out, ImportOutcome::NotFound);
    let (e, _) = replay(&[
        "lab-zpool-destroy-missing",
        "lab-zpool-export-missing",
        "lab-zpool-labelclear",
        "lab-zpool-add",
        "lab-zpool-add-log",
        "lab-zpool-replace",
        "lab-zpool-add-mirror-mismatch",
    ]);
    e.destroy_pool("cstor-renamed-lab").await.unwrap();
    e.export_pool("cstor-renamed-lab").await.unwrap();
    e.labelclear("/mnt/l1.img").await.unwrap();
    let group = |d: &[&str], t| RaidGroup {
        raid_type: t,
        disks: d.iter().map(|s| s.to_string()).collect(),
    };
    e.add_raid_group(
        &lab,
        VdevClass::Data,
        &group(&["/mnt/l2.img"], RaidType::Stripe),
    )
    .await
    .unwrap();
    e.add_raid_group(
        &lab,
        VdevClass::WriteCache,
        &group(&["/mnt/l3.img"], RaidType::Stripe),
    )
    .await
    .unwrap();
    e.replace_disk(&lab, "/mnt/l2.img", "/mnt/l4.img")
        .await
        .unwrap();
    let err = e
        .add_raid_group(
            &lab,
            VdevClass::Data,
            &group(&["/mnt/l4.img", "/mnt/l5.img"], RaidType::Mirror),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("mismatched replication"), "{err}");
}

/// A runner with uZFS's `zfs get`/`zfs set` behaviour for `io.openebs:targetip` (the recorded
/// rules: an unset value prints empty; a direct change aborts with exit 134).
#[derive(Debug, Default)]
struct TargetIpModel {
    props: std::sync::Mutex<BTreeMap<String, String>>,
    lines: std::sync::Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl Runner for TargetIpModel {
    async fn run(&self, cmd: &Cmd) -> Result<Output, ExecError> {
        self.lines.lock().unwrap().push(cmd.line());
        let a: Vec<&str> = cmd.args.iter().map(String::as_str).collect();
        let mut props = self.props.lock().unwrap();
        Ok(match a.as_slice() {
            [
                "get",
                "-H",
                "-o",
                "property,value",
                "io.openebs:targetip",
                _,
            ] => Output::ok(format!(
                "io.openebs:targetip\t{}\n",
                props.get("io.openebs:targetip").map_or("", String::as_str)
            )),
            ["set", kv, _] => {
                let (k, v) = kv.split_once('=').unwrap();
                support::uzfs_set(&mut props, k, v)
            }
            _ => Output::fail(2, format!("unexpected {}", cmd.line())),
        })
    }
}

/// The model agrees with the recordings it stands for.
#[test]
fn uzfs_models_agree_with_the_recordings() {
    let (_, zvol) = zvol();
    let change = cli("zfs-set-targetip-change");
    let mut props = BTreeMap::from([("io.openebs:targetip".to_string(), "10.0.0.1".to_string())]);
    let ours = support::uzfs_set(&mut props, "io.openebs:targetip", "10.0.0.2");
    assert_eq!(
        (ours.code, ours.stderr.as_str()),
        (Some(change.code), change.stderr().as_str())
    );
    for name in [
        "zfs-set-targetip-clear",
        "zfs-set-targetip-set",
        "zfs-set-targetip-same",
    ] {
        assert_eq!(cli(name).code, 0, "{name}");
        let ip = cli(name)
            .line
            .split(' ')
            .nth(2)
            .unwrap()
            .split_once('=')
            .unwrap()
            .1
            .to_owned();
        assert_eq!(
            support::uzfs_set(&mut props, "io.openebs:targetip", &ip).code,
            Some(0),
            "{name}"
        );
    }
    assert_eq!(
        cli("zfs-get-props-targetip-cleared").stdout(),
        "io.openebs:targetip\t\n"
    );
    // zfs stats: the shim's output has the real one's shape, with and without a target.
    let shape = |t: &str| json_shape(&serde_json::from_str(t).unwrap());
    let real = cli("zfs-stats-r2-connected").stdout();
    let shim = support::uzfs_stats(&zvol, "10.0.0.1", "Healthy");
    let real_v: serde_json::Value = serde_json::from_str(&real).unwrap();
    let shim_v: serde_json::Value = serde_json::from_str(&shim).unwrap();
    // The real entry has more counters (latencies, histograms); every key the shim writes is
    // a real key with the real type, and the list ends the same way.
    let real_entry = real_v["stats"][0].as_object().unwrap();
    for (k, v) in shim_v["stats"][0].as_object().unwrap() {
        let rv = real_entry
            .get(k)
            .unwrap_or_else(|| panic!("{k} is not a real key"));
        assert_eq!(json_shape(v), json_shape(rv), "{k}");
    }
    assert_eq!(shim_v["stats"][1], real_v["stats"][1]);
    assert!(
        real.contains(r"\/") && shim.contains(r"\/"),
        "names escape '/'"
    );
    assert_eq!(
        shape(&support::uzfs_stats(&zvol, "", "Healthy")),
        shape(&cli("zfs-stats-disconnected").stdout())
    );
}

/// Regression (c): re-pointing a replica clears the old address first.
#[tokio::test]
async fn set_target_ip_clears_before_changing() {
    let model = Arc::new(TargetIpModel::default());
    model
        .props
        .lock()
        .unwrap()
        .insert("io.openebs:targetip".into(), "10.0.0.1".into());
    let e = CstorEngine::new(model.clone());
    // The direct change is what the real engine refuses.
    let err = e
        .set_property("p/v", "io.openebs:targetip", "10.0.0.2")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(134), "{err}");
    model.lines.lock().unwrap().clear();
    assert!(e.set_target_ip("p/v", "10.0.0.2").await.unwrap());
    assert_eq!(
        e.target_ip("p/v").await.unwrap().as_deref(),
        Some("10.0.0.2")
    );
    let lines = model.lines.lock().unwrap().clone();
    assert_eq!(
        lines,
        vec![
            "zfs get -H -o property,value io.openebs:targetip p/v",
            "zfs set io.openebs:targetip= p/v",
            "zfs set io.openebs:targetip=10.0.0.2 p/v",
            "zfs get -H -o property,value io.openebs:targetip p/v",
        ]
    );
    // Same address: nothing set; unset: set directly.
    assert!(!e.set_target_ip("p/v", "10.0.0.2").await.unwrap());
    model.props.lock().unwrap().clear();
    model.lines.lock().unwrap().clear();
    assert_eq!(e.target_ip("p/v").await.unwrap(), None);
    assert!(e.set_target_ip("p/v", "10.0.0.3").await.unwrap());
    assert!(
        !model
            .lines
            .lock()
            .unwrap()
            .contains(&"zfs set io.openebs:targetip= p/v".to_string())
    );
}

// ---- istgt ----

/// Serves one recorded reply per connection: the banner and reply bytes istgt sent, after
/// the command line arrives.
async fn replay_istgt(path: PathBuf, recv: Vec<u8>) -> tokio::task::JoinHandle<Vec<String>> {
    let listener = UnixListener::bind(&path).unwrap();
    tokio::spawn(async move {
        let mut got = Vec::new();
        if let Ok((sock, _)) = listener.accept().await {
            let mut r = BufReader::new(sock);
            let mut line = String::new();
            r.read_line(&mut line).await.unwrap();
            got.push(line);
            r.get_mut().write_all(&recv).await.unwrap();
            r.get_mut().shutdown().await.ok();
        }
        got
    })
}

/// Every recorded istgt reply through our control-socket client: complete, with its final
/// line, `ERR` ones as errors; every `REPLICA` payload decodes, listing the zvol guids.
#[tokio::test]
async fn every_istgt_recording_through_the_control_client() {
    let tmp = tempfile::tempdir().unwrap();
    let guids: Vec<String> = replicas().into_iter().map(|r| r.2).collect();
    let mut n = 0;
    for r in index().iter().filter(|r| r.name.starts_with("istgt/")) {
        let name = r.name.strip_prefix("istgt/").unwrap();
        let recv = istgt(&format!("{name}.recv"));
        let sent = String::from_utf8(istgt(&format!("{name}.sent"))).unwrap();
        let path = tmp.path().join(format!("s{n}"));
        let server = replay_istgt(path.clone(), recv.clone()).await;
        let client = ControlClient::new(&path).with_timeout(Duration::from_secs(10));
        let reply = client
            .exchange(sent.trim_end())
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            server.await.unwrap(),
            vec![sent.clone()],
            "{name}: the line our client sends"
        );
        let text = String::from_utf8(recv).unwrap();
        assert_eq!(
            reply.lines.len(),
            text.matches("\r\n").count(),
            "{name}: {reply:?}"
        );
        assert!(reply.banner().is_some(), "{name}");
        assert_eq!(
            reply.is_error(),
            text.contains("\r\nERR"),
            "{name}: {}",
            reply.final_line()
        );
        if sent.starts_with("REPLICA") {
            let report = parse_replica_payload(&reply.lines.join("\r\n")).unwrap();
            for rs in &report.replicas {
                assert!(
                    guids.contains(&rs.replica_id),
                    "{name}: {} is a zvol guid",
                    rs.replica_id
                );
                assert!(rs.replica_id.parse::<u64>().is_ok());
            }
        }
        n += 1;
    }
    assert!(n >= 25, "{n}");
}

/// The fake istgt of the volume-manager tests answers every recorded command with the real
/// reply's shape: same lines, framing, JSON keys and types, final lines.
#[tokio::test]
async fn fake_istgt_replies_have_the_real_shape() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = FakeIstgt::start(tmp.path().join("ctl")).await.unwrap();
    let pv = zvol().1.split('/').nth(1).unwrap().to_owned();
    fake.set_volume(&pv);
    let reps = replicas();
    let entries: Vec<serde_json::Value> = reps
        .iter()
        .enumerate()
        .map(|(i, (_, _, guid))| {
            replica_entry(guid, &format!("10.0.0.{i}"), "Healthy", 0, true, 40)
        })
        .collect();
    let mut checked = 0;
    // Refusals that depend on the volume's size and factors, which the fake does not model
    // (tests script them with `push_reply`).
    let stateful = [
        "resize-smaller",
        "resize-unaligned",
        "drf-over-max",
        "drf-invalid-down",
    ];
    for r in index().iter().filter(|r| r.name.starts_with("istgt/")) {
        let name = r.name.strip_prefix("istgt/").unwrap();
        if stateful.contains(&name) {
            assert!(
                String::from_utf8(istgt(&format!("{name}.recv")))
                    .unwrap()
                    .contains("\r\nERR ")
            );
            continue;
        }
        let json = match name {
            "replica-starting" => replica_json(&pv, "Offline", &[]),
            _ => replica_json(&pv, "Healthy", &entries),
        };
        fake.set_replica_json(json);
        let sent = istgt(&format!("{name}.sent"));
        let mut sock = UnixStream::connect(fake.path()).await.unwrap();
        sock.write_all(&sent).await.unwrap();
        let real = istgt(&format!("{name}.recv"));
        let want = reply_shape(&real).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        // Read until the fake has sent as many lines as the real reply has.
        tokio::time::timeout(Duration::from_secs(10), async {
            while got.iter().filter(|b| **b == b'\n').count() < want.len() {
                let n = sock.read(&mut buf).await.unwrap();
                assert!(n > 0, "{name}: fake closed early: {got:?}");
                got.extend_from_slice(&buf[..n]);
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{name}: fake sent {:?}", String::from_utf8_lossy(&got)));
        let mut ours = reply_shape(&got).unwrap();
        let mut want = want;
        // A VERSION reply carries the build; compare the framing, not the build string.
        if name == "version" {
            ours[1] = ours[1].split(' ').next().unwrap().to_owned();
            want[1] = want[1].split(' ').next().unwrap().to_owned();
        }
        // The fake does not model replica state changes between commands (connected replica
        // counts, scale-down, degraded modes): it is checked on the reply's shape only.
        assert_eq!(ours, want, "{name}");
        checked += 1;
    }
    assert!(checked >= 25, "{checked}");
}

/// The known-replica line istgt writes is what our server decodes.
#[test]
fn known_replica_report_decodes() {
    let raw = String::from_utf8(istgt("known-replica-report-1.recv")).unwrap();
    assert!(raw.ends_with("\r\n"));
    let req: cstor_operators::volume_manager::KnownReplicaRequest =
        serde_json::from_str(raw.trim_end()).unwrap();
    let r3 = &replicas()[2];
    assert_eq!(
        (req.replica_id.as_str(), req.replica_zvol_guid.as_str()),
        (r3.1.as_str(), r3.2.as_str())
    );
    assert!(read("istgt/istgt.conf").contains(&format!(
        "  Replica {} {}\n",
        replicas()[0].1,
        replicas()[0].2
    )));
}

// ---- pool-manager CVR reconcile on the uZFS model ----

/// A uZFS replica host for the CVR controller: the pool exists, zvols are the shim's (with
/// the recorded behaviour of `zfs stats`, `zfs get`/`zfs set`), listsnap empty.
#[derive(Debug)]
struct PoolHost {
    pool: String,
    shim: support::ZvolShim,
}

#[async_trait::async_trait]
impl Runner for PoolHost {
    async fn run(&self, cmd: &Cmd) -> Result<Output, ExecError> {
        let a: Vec<&str> = cmd.args.iter().map(String::as_str).collect();
        if cmd.program == "zpool"
            && a.first() == Some(&"get")
            && a.last() == Some(&self.pool.as_str())
        {
            return Ok(Output::ok(format!("{}\n", self.pool)));
        }
        self.shim.run(cmd).await
    }
}

/// Answers the shim's pass-through commands: dataset listings hold the pool, anything else fails.
#[derive(Debug)]
struct PoolOnly(String);

#[async_trait::async_trait]
impl Runner for PoolOnly {
    async fn run(&self, cmd: &Cmd) -> Result<Output, ExecError> {
        let a: Vec<&str> = cmd.args.iter().map(String::as_str).collect();
        Ok(match a.as_slice() {
            ["get", "-Hp", "name", "-o", "name"] | ["list", "-H", "-o", "name"] => {
                Output::ok(format!("{}\n", self.0))
            }
            ["listsnap", ds] => Output::ok(format!(r#"{{"name":"{ds}","snaplist":{{}}}}"#)),
            _ => Output::fail(1, format!("not modelled: {}", cmd.line())),
        })
    }
}

struct Bench {
    cluster: TestCluster,
    ctx: Arc<pool_manager::Context>,
    host: Arc<PoolHost>,
    cvrs: Api<CStorVolumeReplica>,
}

async fn bench() -> Bench {
    let cluster = TestCluster::start().await;
    let ns = cluster.namespace().to_owned();
    let pool = cstor_api::naming::pool_name("4d2c1b0a-real-engine");
    let host = Arc::new(PoolHost {
        pool: pool.clone(),
        shim: support::ZvolShim::new(Arc::new(PoolOnly(pool.clone()))),
    });
    let engine: Arc<dyn DataEngine> = Arc::new(CstorEngine::new(host.clone()));
    let ctx = Arc::new(pool_manager::Context::new(
        cluster.client(),
        engine,
        &ns,
        "cspi-uid-1",
        "4d2c1b0a-real-engine",
    ));
    let cvrs = Api::namespaced(cluster.client(), &ns);
    Bench {
        cluster,
        ctx,
        host,
        cvrs,
    }
}

impl Bench {
    async fn cvr(&self, name: &str, ip: &str, anns: &[(&str, &str)]) -> CStorVolumeReplica {
        let mut cvr = CStorVolumeReplica::namespaced(
            name,
            self.cluster.namespace(),
            CStorVolumeReplicaSpec {
                target_ip: Some(ip.into()),
                capacity: Some("1Gi".into()),
                ..Default::default()
            },
        );
        cvr.metadata.labels = Some(
            [
                (label::CSPI_UID.to_string(), "cspi-uid-1".to_string()),
                (label::CSTOR_VOLUME_NAME.to_string(), "pvc-r".to_string()),
                (label::PERSISTENT_VOLUME.to_string(), "pvc-r".to_string()),
            ]
            .into(),
        );
        cvr.metadata.annotations = Some(
            anns.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        cvr.metadata.finalizers = Some(vec![finalizer::CVR.into()]);
        self.cvrs
            .create(&PostParams::default(), &cvr)
            .await
            .unwrap()
    }

    /// One reconcile pass of the CVR controller on the stored object; returns it afterwards.
    async fn pass(&self, name: &str) -> CStorVolumeReplica {
        let cvr = self.cvrs.get(name).await.unwrap();
        pool_manager::replica::reconcile(Arc::new(cvr), self.ctx.clone())
            .await
            .unwrap_or_else(|e| panic!("reconcile {name}: {e}"));
        self.cvrs.get(name).await.unwrap()
    }

    fn target_ip(&self) -> String {
        let zvol = format!("{}/pvc-r", self.host.pool);
        self.host
            .shim
            .props
            .lock()
            .unwrap()
            .get(&zvol)
            .and_then(|p| p.get("io.openebs:targetip").cloned())
            .unwrap_or_default()
    }
}

fn phase(c: &CStorVolumeReplica) -> Option<CStorVolumeReplicaPhase> {
    c.status.as_ref().and_then(|s| s.phase.clone())
}

/// Regressions (a) and (c) through the CVR controller: with uZFS's stats output the replica
/// gets its phase, and a changed `spec.targetIP` re-points the zvol (clear, then set).
#[tokio::test]
async fn cvr_gets_its_phase_and_follows_a_target_ip_change() {
    let b = bench().await;
    b.cvr("pvc-r-cspi-1", "10.0.0.1", &[]).await;
    let c = b.pass("pvc-r-cspi-1").await;
    assert_eq!(
        phase(&c),
        Some(CStorVolumeReplicaPhase::Healthy),
        "{:?}",
        c.status
    );
    assert_eq!(b.target_ip(), "10.0.0.1");

    let mut c = b.cvrs.get("pvc-r-cspi-1").await.unwrap();
    c.spec.target_ip = Some("10.0.0.2".into());
    b.cvrs
        .replace("pvc-r-cspi-1", &PostParams::default(), &c)
        .await
        .unwrap();
    let c = b.pass("pvc-r-cspi-1").await;
    assert_eq!(b.target_ip(), "10.0.0.2");
    assert_eq!(phase(&c), Some(CStorVolumeReplicaPhase::Healthy));
    b.cluster.cleanup().await.unwrap();
}

/// Regression (d): a restore replica stays without a target (Offline: uZFS reports nothing for
/// it) until `openebs.io/restore-completed: "true"`; then it connects and both annotations go.
#[tokio::test]
async fn restore_replica_connects_once_restore_completed() {
    let b = bench().await;
    b.cvr(
        "pvc-r-cspi-1",
        "10.0.0.7",
        &[(annotation::IS_RESTORE_VOL, "true")],
    )
    .await;
    let c = b.pass("pvc-r-cspi-1").await;
    let c = if phase(&c).is_none() {
        b.pass("pvc-r-cspi-1").await
    } else {
        c
    };
    assert_eq!(b.target_ip(), "", "no target while the data is restored");
    assert_eq!(
        phase(&c),
        Some(CStorVolumeReplicaPhase::Offline),
        "{:?}",
        c.status
    );
    // Another pass: still waiting.
    let c = b.pass("pvc-r-cspi-1").await;
    assert_eq!(b.target_ip(), "");
    assert!(c.annotations().contains_key(annotation::IS_RESTORE_VOL));

    let mut c = b.cvrs.get("pvc-r-cspi-1").await.unwrap();
    c.annotations_mut()
        .insert(annotation::RESTORE_COMPLETED.into(), "true".into());
    b.cvrs
        .replace("pvc-r-cspi-1", &PostParams::default(), &c)
        .await
        .unwrap();
    let c = b.pass("pvc-r-cspi-1").await;
    assert_eq!(b.target_ip(), "10.0.0.7");
    assert_eq!(
        phase(&c),
        Some(CStorVolumeReplicaPhase::Healthy),
        "{:?}",
        c.status
    );
    assert!(!c.annotations().contains_key(annotation::RESTORE_COMPLETED));
    assert!(!c.annotations().contains_key(annotation::IS_RESTORE_VOL));
    b.cluster.cleanup().await.unwrap();
}
