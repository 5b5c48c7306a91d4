//! The e2e data plane's zvol shim against the recordings of the real cStor engine
//! (`tests/fixtures/real-engine`): every recorded `zfs` command line on a zvol runs through
//! [`ZvolShim`] in the recorded order, and its answer must have the real answer's shape: the
//! same exit code and error text, JSON with the same keys and types, tables with the same rows
//! and columns (tab-separated with `-H`, space-aligned without), the same cells except for
//! sizes and numbers.

use std::{path::PathBuf, sync::Arc};

use async_trait::async_trait;
use cstor_api::exec::{Cmd, ExecError, Output, Runner};
use cstor_e2e::dataplane::{DataPlane, ZvolShim};
use cstor_operators::volume_manager::fake_istgt::json_shape;

fn dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fixtures/real-engine"
    ))
}

fn read(rel: &str) -> String {
    let p = dir().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// One line of `index.tsv`: name, exit code, command line.
struct Rec {
    name: String,
    code: i32,
    line: String,
}

fn index() -> Vec<Rec> {
    read("index.tsv")
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.splitn(3, '\t').collect();
            Rec {
                name: f[0].to_owned(),
                code: f[1].parse().unwrap(),
                line: f[2].to_owned(),
            }
        })
        .collect()
}

/// zfs-fuse's part of the namespace: the dataset listings hold the recorded pool. Any other
/// command reaching it is a zvol command the shim did not answer, and fails the comparison.
#[derive(Debug)]
struct PoolOnly(String);

#[async_trait]
impl Runner for PoolOnly {
    async fn run(&self, cmd: &Cmd) -> Result<Output, ExecError> {
        let a: Vec<&str> = cmd.args.iter().map(String::as_str).collect();
        Ok(match a.as_slice() {
            ["get", "-Hp", "name", "-o", "name"] | ["list", "-H", "-o", "name"] => {
                Output::ok(format!("{}\n", self.0))
            }
            _ => Output::fail(99, format!("passed to zfs-fuse: {}\n", cmd.line())),
        })
    }
}

/// A size or count as `zfs get` prints it (`6144`, `6K`, `1.86G`).
fn size_like(cell: &str) -> bool {
    let digits = cell
        .strip_suffix(['K', 'M', 'G', 'T', 'P', 'E'])
        .unwrap_or(cell);
    !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit() || c == '.')
}

/// The cells of a table output: tab-separated with `-H`, space-aligned columns without.
fn rows(text: &str, scripted: bool) -> Vec<Vec<String>> {
    text.lines()
        .map(|l| {
            if scripted {
                l.split('\t').map(str::to_owned).collect()
            } else {
                l.split_whitespace().map(str::to_owned).collect()
            }
        })
        .collect()
}

fn compare(rec: &Rec, ours: &Output) {
    let name = &rec.name;
    let stdout = read(&format!("cli/{name}.stdout"));
    let stderr = read(&format!("cli/{name}.stderr"));
    assert_eq!(ours.code, Some(rec.code), "{name}: exit code; {ours:?}");
    assert_eq!(ours.stderr, stderr, "{name}: stderr");
    assert_eq!(
        ours.stdout.ends_with('\n'),
        stdout.ends_with('\n'),
        "{name}: final newline of {:?}",
        ours.stdout
    );
    if stdout.trim_start().starts_with('{') {
        let real: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        let shim: serde_json::Value = serde_json::from_str(&ours.stdout)
            .unwrap_or_else(|e| panic!("{name}: {e}: {}", ours.stdout));
        assert_eq!(json_shape(&shim), json_shape(&real), "{name}: JSON shape");
        // uZFS's JSON writer escapes '/' in names.
        assert_eq!(
            ours.stdout.contains(r"\/"),
            stdout.contains(r"\/"),
            "{name}: {}",
            ours.stdout
        );
        return;
    }
    let scripted = rec.line.split(' ').any(|w| w.starts_with("-H"));
    let (real, shim) = (rows(&stdout, scripted), rows(&ours.stdout, scripted));
    assert_eq!(
        shim.len(),
        real.len(),
        "{name}: rows of {:?} vs {stdout:?}",
        ours.stdout
    );
    for (s, r) in shim.iter().zip(&real) {
        assert_eq!(s.len(), r.len(), "{name}: columns of {s:?} vs {r:?}");
        for (sc, rc) in s.iter().zip(r) {
            assert!(
                sc == rc || (size_like(sc) && size_like(rc)),
                "{name}: cell {sc:?} where the engine printed {rc:?}"
            );
        }
    }
}

/// The recorded zvol commands through the shim, in the recorded order, with the recorded
/// events that changed the engine's state between them (istgt meeting the replica, istgt's
/// SNAPCREATE) played on the data plane.
#[tokio::test]
async fn zvol_shim_answers_like_the_real_engine() {
    let all = index();
    let zvol = all
        .iter()
        .find(|r| r.name == "zfs-stats")
        .expect("zfs-stats recording")
        .line
        .rsplit(' ')
        .next()
        .unwrap()
        .to_owned();
    let (pool, pv) = zvol.split_once('/').unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let plane = DataPlane::new(tmp.path()).unwrap();
    let shim = ZvolShim::new(Arc::new(PoolOnly(pool.to_owned())), plane.clone());

    let mut compared = Vec::new();
    let mut skipped = Vec::new();
    for rec in &all {
        match rec.name.as_str() {
            // istgt connected the replicas: uZFS reports the zvol Healthy from here on.
            "istgt/replica-volume-healthy" => {
                assert!(plane.set_connected(&zvol, true));
                continue;
            }
            "istgt/snapcreate" => {
                plane.snapshot_volume(pv, "snap-1").unwrap();
                continue;
            }
            // Istgt's SNAPDESTROY answered OK, yet the engine still listed snap-1 after it;
            // RESIZE left volsize as it was: neither is replayed.
            _ => {}
        }
        if !rec.line.starts_with("zfs ") {
            continue;
        }
        let words: Vec<&str> = rec.line.split(' ').collect();
        let last = words.last().unwrap();
        // The pool's own dataset is zfs-fuse's, not the shim's.
        if words.len() > 2 && !last.contains('/') && !rec.line.ends_with("-o name") {
            skipped.push(rec.name.clone());
            continue;
        }
        let cmd = Cmd::new(words[0]).args(words[1..].iter().copied());
        let out = shim.run(&cmd).await.unwrap();
        compare(rec, &out);
        compared.push(rec.name.clone());
        if rec.name == "zfs-create-replica" {
            // Recorded before istgt ran: the replica had its address, not its target.
            assert!(plane.set_connected(&zvol, false));
        }
    }
    assert_eq!(skipped, ["zfs-get-pool-capacity"]);
    assert!(compared.len() >= 40, "{compared:?}");
    for must in [
        "zfs-stats",
        "zfs-stats-all",
        "zfs-stats-before-target",
        "zfs-stats-disconnected",
        "zfs-set-targetip-change",
        "zfs-set-targetip-clear",
        "zfs-set-targetip-set",
        "zfs-listsnap-empty",
        "zfs-get-replica-capacity",
        "zfs-destroy-snapshot-missing",
        "zfs-get-clone-props",
    ] {
        assert!(compared.iter().any(|n| n == must), "{must} compared");
    }
    // Everything the recorded lines made is gone again but the volume and its snapshot.
    assert_eq!(plane.zvols().keys().collect::<Vec<_>>(), [&zvol]);
    assert_eq!(
        plane.snapshots().into_iter().collect::<Vec<_>>(),
        [format!("{zvol}@snap-1")]
    );
}
