//! The stand-in data plane: zvols, snapshots and clones as sparse image files.
//!
//! zfs-fuse has no zvols, and there is no uZFS replica or istgt target here, so the volume data
//! lives in image files under one directory:
//!
//! - a replica zvol `<pool>/<pv>` is `zvols/<pool>__<pv>.img`, a sparse file of the volume size,
//!   with the properties `zfs create -o k=v` set on it;
//! - a zvol snapshot `<pool>/<pv>@<snap>` is `snapshots/<pool>__<pv>@<snap>.img`, a sparse copy;
//! - `zfs clone <pool>/<src>@<snap> <pool>/<new>` makes the new zvol a sparse copy of the
//!   snapshot.
//!
//! [`ZvolShim`] answers the zvol commands of the pool manager's engine from this store and runs
//! everything else (`zpool create/add/destroy/...`, the pool's own datasets) on the real tools.
//! The target stand-in ([`crate::istgt`]) and the recorded `iscsiadm` ([`crate::iscsi`]) use the
//! same store: a volume's LUN is the image of one of its replicas ([`DataPlane::lun`]).

use std::{
    collections::{BTreeMap, BTreeSet},
    fs::File,
    io::{Read, Seek, SeekFrom, Write},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use async_trait::async_trait;
use cstor_api::exec::{Cmd, ExecError, Output, Runner};

/// One replica zvol.
#[derive(Clone, Debug)]
pub struct Zvol {
    pub image: PathBuf,
    pub size: u64,
    pub props: BTreeMap<String, String>,
}

#[derive(Debug, Default)]
struct State {
    zvols: BTreeMap<String, Zvol>,
    /// `<pool>/<pv>@<snap>` → image.
    snapshots: BTreeMap<String, PathBuf>,
    /// pv → the zvol dataset the target serves as the volume's LUN.
    luns: BTreeMap<String, String>,
}

/// The image store shared by the zvol shim, the target stand-ins and the recorded iscsiadm.
#[derive(Debug)]
pub struct DataPlane {
    root: PathBuf,
    state: Mutex<State>,
}

/// Parses a zfs size (`512M`, `1G`, `1Gi`, `2048`, `1.5G` is refused).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim().trim_end_matches('i').trim_end_matches('B');
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => return Err(format!("size `{text}` has an unknown unit `{c}`")),
            };
            (&t[..i], m)
        }
        _ => (t, 1),
    };
    num.parse::<u64>()
        .map(|n| n * mult)
        .map_err(|_| format!("size `{text}` is not a whole number with an optional K/M/G/T unit"))
}

/// Copies `from` to `to` keeping holes: only the data extents (`SEEK_DATA`/`SEEK_HOLE`) are
/// read, and 1 MiB chunks of zeros inside them are skipped too.
pub fn sparse_copy(from: &Path, to: &Path) -> std::io::Result<u64> {
    use nix::unistd::{Whence, lseek};
    let mut src = File::open(from)?;
    let len = src.metadata()?.len();
    let mut dst = File::create(to)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0u64;
    while off < len {
        let data = match lseek(&src, off as i64, Whence::SeekData) {
            Ok(d) => d as u64,
            Err(nix::errno::Errno::ENXIO) => break,
            Err(e) => return Err(e.into()),
        };
        let hole = (lseek(&src, data as i64, Whence::SeekHole)? as u64).min(len);
        let mut pos = data;
        src.seek(SeekFrom::Start(pos))?;
        while pos < hole {
            let want = buf.len().min((hole - pos) as usize);
            src.read_exact(&mut buf[..want])?;
            if buf[..want].iter().any(|b| *b != 0) {
                dst.seek(SeekFrom::Start(pos))?;
                dst.write_all(&buf[..want])?;
            }
            pos += want as u64;
        }
        off = hole;
    }
    dst.set_len(len)?;
    dst.sync_all()?;
    Ok(len)
}

fn file_name(dataset: &str) -> String {
    dataset.replace('/', "__")
}

impl DataPlane {
    /// A store under `root` (created).
    pub fn new(root: impl Into<PathBuf>) -> std::io::Result<Arc<Self>> {
        let root = root.into();
        std::fs::create_dir_all(root.join("zvols"))?;
        std::fs::create_dir_all(root.join("snapshots"))?;
        Ok(Arc::new(Self {
            root,
            state: Mutex::default(),
        }))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every zvol dataset.
    pub fn zvols(&self) -> BTreeMap<String, Zvol> {
        self.lock().zvols.clone()
    }

    /// Every snapshot (`<pool>/<pv>@<snap>`).
    pub fn snapshots(&self) -> BTreeSet<String> {
        self.lock().snapshots.keys().cloned().collect()
    }

    /// The replica zvols of volume `pv` (datasets `<pool>/<pv>`).
    pub fn replicas_of(&self, pv: &str) -> BTreeMap<String, Zvol> {
        let suffix = format!("/{pv}");
        self.lock()
            .zvols
            .iter()
            .filter(|(d, _)| d.ends_with(&suffix))
            .map(|(d, z)| (d.clone(), z.clone()))
            .collect()
    }

    /// The image the target serves as `pv`'s LUN: chosen once (the first replica by dataset
    /// name) and kept while that zvol exists. `None` while the volume has no replica.
    pub fn lun(&self, pv: &str) -> Option<PathBuf> {
        let replicas = self.replicas_of(pv);
        let mut st = self.lock();
        if let Some(ds) = st.luns.get(pv)
            && let Some(z) = st.zvols.get(ds)
        {
            return Some(z.image.clone());
        }
        let (ds, z) = replicas.into_iter().next()?;
        st.luns.insert(pv.to_owned(), ds);
        Some(z.image)
    }

    /// Creates a sparse zvol image.
    pub fn create_zvol(
        &self,
        dataset: &str,
        size: u64,
        props: BTreeMap<String, String>,
    ) -> Result<(), String> {
        if self.lock().zvols.contains_key(dataset) {
            return Err(format!("cannot create '{dataset}': dataset already exists"));
        }
        let image = self
            .root
            .join("zvols")
            .join(format!("{}.img", file_name(dataset)));
        let f = File::create(&image).map_err(|e| format!("{}: {e}", image.display()))?;
        f.set_len(size)
            .map_err(|e| format!("{}: {e}", image.display()))?;
        self.lock()
            .zvols
            .insert(dataset.to_owned(), Zvol { image, size, props });
        Ok(())
    }

    /// `zfs clone <snapshot> <dataset>`: the new zvol is a sparse copy of the snapshot.
    pub fn clone_zvol(
        &self,
        snapshot: &str,
        dataset: &str,
        props: BTreeMap<String, String>,
    ) -> Result<(), String> {
        let Some(src) = self.lock().snapshots.get(snapshot).cloned() else {
            return Err(format!("cannot open '{snapshot}': dataset does not exist"));
        };
        if self.lock().zvols.contains_key(dataset) {
            return Err(format!("cannot create '{dataset}': dataset already exists"));
        }
        let image = self
            .root
            .join("zvols")
            .join(format!("{}.img", file_name(dataset)));
        let size = sparse_copy(&src, &image).map_err(|e| format!("clone {snapshot}: {e}"))?;
        self.lock()
            .zvols
            .insert(dataset.to_owned(), Zvol { image, size, props });
        Ok(())
    }

    /// `zfs destroy -R <dataset>`: the zvol and its snapshots. `false` when it did not exist.
    pub fn destroy_zvol(&self, dataset: &str) -> bool {
        let mut st = self.lock();
        let Some(z) = st.zvols.remove(dataset) else {
            return false;
        };
        let _ = std::fs::remove_file(&z.image);
        let prefix = format!("{dataset}@");
        let snaps: Vec<String> = st
            .snapshots
            .keys()
            .filter(|s| s.starts_with(&prefix))
            .cloned()
            .collect();
        for s in snaps {
            if let Some(p) = st.snapshots.remove(&s) {
                let _ = std::fs::remove_file(p);
            }
        }
        st.luns.retain(|_, ds| ds != dataset);
        true
    }

    /// The target's SNAPCREATE: every replica of `pv` gets `<pool>/<pv>@<snap>`, a copy of the
    /// LUN image as it is now (the target quiesces I/O meanwhile: here, nothing else writes
    /// while the copy runs because the test waits for the RPC).
    pub fn snapshot_volume(&self, pv: &str, snap: &str) -> Result<usize, String> {
        let lun = self
            .lun(pv)
            .ok_or_else(|| format!("volume {pv} has no replica to snapshot"))?;
        let replicas = self.replicas_of(pv);
        for ds in replicas.keys() {
            let name = format!("{ds}@{snap}");
            let image = self
                .root
                .join("snapshots")
                .join(format!("{}.img", file_name(&name)));
            sparse_copy(&lun, &image).map_err(|e| format!("snapshot {name}: {e}"))?;
            self.lock().snapshots.insert(name, image);
        }
        Ok(replicas.len())
    }

    /// The target's SNAPDESTROY: removes `<pool>/<pv>@<snap>` on every replica.
    pub fn destroy_volume_snapshot(&self, pv: &str, snap: &str) -> usize {
        let suffix = format!("/{pv}@{snap}");
        let mut st = self.lock();
        let names: Vec<String> = st
            .snapshots
            .keys()
            .filter(|s| s.ends_with(&suffix))
            .cloned()
            .collect();
        for n in &names {
            if let Some(p) = st.snapshots.remove(n) {
                let _ = std::fs::remove_file(p);
            }
        }
        names.len()
    }

    /// The target's RESIZE: every replica of `pv` grows to `size` bytes (never shrinks).
    pub fn resize_volume(&self, pv: &str, size: u64) -> Result<(), String> {
        let suffix = format!("/{pv}");
        let mut st = self.lock();
        for (ds, z) in st.zvols.iter_mut().filter(|(d, _)| d.ends_with(&suffix)) {
            if size > z.size {
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&z.image)
                    .map_err(|e| format!("resize {ds}: {e}"))?;
                f.set_len(size).map_err(|e| format!("resize {ds}: {e}"))?;
                z.size = size;
            }
        }
        Ok(())
    }

    /// Image files left in the store (zvols and snapshots).
    pub fn files_on_disk(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for dir in ["zvols", "snapshots"] {
            if let Ok(rd) = std::fs::read_dir(self.root.join(dir)) {
                out.extend(rd.filter_map(|e| e.ok()).map(|e| e.path()));
            }
        }
        out
    }
}

/// Plays the uZFS zvol commands zfs-fuse lacks from a [`DataPlane`]; everything else runs on
/// `inner` (the real `zpool`/`zfs`).
#[derive(Debug)]
pub struct ZvolShim {
    inner: Arc<dyn Runner>,
    plane: Arc<DataPlane>,
}

impl ZvolShim {
    pub fn new(inner: Arc<dyn Runner>, plane: Arc<DataPlane>) -> Self {
        Self { inner, plane }
    }
}

/// `-o k=v` pairs of a zfs command line.
fn props_of(args: &[&str]) -> BTreeMap<String, String> {
    args.windows(2)
        .filter(|w| w[0] == "-o")
        .filter_map(|w| w[1].split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn result(r: Result<(), String>) -> Output {
    match r {
        Ok(()) => Output::ok(""),
        Err(e) => Output::fail(1, e),
    }
}

#[async_trait]
impl Runner for ZvolShim {
    async fn run(&self, cmd: &Cmd) -> Result<Output, ExecError> {
        if cmd.program != "zfs" {
            return self.inner.run(cmd).await;
        }
        let a: Vec<&str> = cmd.args.iter().map(String::as_str).collect();
        let plane = &self.plane;
        let is_zvol = |ds: &str| plane.zvols().contains_key(ds);
        match a.as_slice() {
            ["create", .., "-V", size, ds] => {
                let size = match parse_size(size) {
                    Ok(s) => s,
                    Err(e) => return Ok(Output::fail(2, e)),
                };
                let props = props_of(&a);
                let (p, ds2) = (plane.clone(), ds.to_string());
                let r = tokio::task::spawn_blocking(move || p.create_zvol(&ds2, size, props))
                    .await
                    .unwrap_or_else(|e| Err(e.to_string()));
                Ok(result(r))
            }
            ["clone", .., snap, ds] if snap.contains('@') => {
                let props = props_of(&a);
                let (p, snap, ds) = (plane.clone(), snap.to_string(), ds.to_string());
                let r = tokio::task::spawn_blocking(move || p.clone_zvol(&snap, &ds, props))
                    .await
                    .unwrap_or_else(|e| Err(e.to_string()));
                Ok(result(r))
            }
            ["stats", ds] if is_zvol(ds) => Ok(Output::ok(format!(
                r#"{{"stats":[{{"name":"{ds}","status":"Healthy","rebuildStatus":"DONE","quorum":1,"isIOAckSenderCreated":1,"isIOReceiverCreated":1,"runningIONum":0,"checkpointedIONum":0,"degradedCheckpointedIONum":0,"checkpointedTime":0,"rebuildBytes":0,"rebuildCnt":0,"rebuildDoneCnt":0,"rebuildFailedCnt":0}}]}}"#
            ))),
            ["stats"] => {
                let list: Vec<String> = plane
                    .zvols()
                    .keys()
                    .map(|z| format!(r#"{{"name":"{z}","status":"Healthy","quorum":1}}"#))
                    .collect();
                Ok(Output::ok(format!(r#"{{"stats":[{}]}}"#, list.join(","))))
            }
            ["get", "used,logicalreferenced", ds] if is_zvol(ds) => {
                let z = plane.zvols()[*ds].clone();
                // Allocated bytes of the sparse image: what the replica really holds.
                let used = std::fs::metadata(&z.image)
                    .map(|m| m.blocks() * 512)
                    .unwrap_or(0);
                Ok(Output::ok(format!(
                    "NAME PROPERTY VALUE SOURCE\n{ds} used {used} -\n{ds} logicalreferenced {used} -\n"
                )))
            }
            ["get", "-H", "-o", "property,value", keys, ds] if is_zvol(ds) => {
                let z = plane.zvols()[*ds].clone();
                let out: String = keys
                    .split(',')
                    .map(|k| {
                        let v = match k {
                            "volsize" => z.size.to_string(),
                            _ => z.props.get(k).cloned().unwrap_or_else(|| "-".into()),
                        };
                        format!("{k}\t{v}\n")
                    })
                    .collect();
                Ok(Output::ok(out))
            }
            ["listsnap", ds] if is_zvol(ds) => {
                let prefix = format!("{ds}@");
                let snaps: Vec<String> = plane
                    .snapshots()
                    .iter()
                    .filter_map(|s| s.strip_prefix(&prefix))
                    .map(|s| format!(r#""{s}":null"#))
                    .collect();
                Ok(Output::ok(format!(
                    r#"{{"name":"{ds}","snaplist":{{{}}}}}"#,
                    snaps.join(",")
                )))
            }
            ["destroy", "-R", ds] if is_zvol(ds) => {
                plane.destroy_zvol(ds);
                Ok(Output::ok(""))
            }
            ["get", "-Hp", "name", "-o", "name"] | ["list", "-H", "-o", "name"] => {
                let mut out = self.inner.run(cmd).await?;
                for z in plane.zvols().keys() {
                    out.stdout.push_str(z);
                    out.stdout.push('\n');
                }
                Ok(out)
            }
            _ => self.inner.run(cmd).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("1Gi"), Ok(1 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("1.5G").is_err());
        assert!(parse_size("3X").is_err());
    }

    #[test]
    fn snapshot_clone_destroy_keep_data_and_holes() {
        let dir = tempfile::tempdir().unwrap();
        let plane = DataPlane::new(dir.path()).unwrap();
        plane
            .create_zvol("p1/pv", 8 << 20, BTreeMap::new())
            .unwrap();
        let lun = plane.lun("pv").unwrap();
        let mut f = std::fs::OpenOptions::new().write(true).open(&lun).unwrap();
        f.seek(SeekFrom::Start(3 << 20)).unwrap();
        f.write_all(b"hello").unwrap();
        drop(f);
        assert_eq!(plane.snapshot_volume("pv", "s1"), Ok(1));
        plane
            .clone_zvol("p1/pv@s1", "p1/pv2", BTreeMap::new())
            .unwrap();
        let copy = std::fs::read(plane.lun("pv2").unwrap()).unwrap();
        assert_eq!(copy.len(), 8 << 20);
        assert_eq!(&copy[3 << 20..(3 << 20) + 5], b"hello");
        let meta = std::fs::metadata(plane.lun("pv2").unwrap()).unwrap();
        assert!(meta.blocks() * 512 < 2 << 20, "the copy stays sparse");
        plane.resize_volume("pv", 16 << 20).unwrap();
        assert_eq!(std::fs::metadata(&lun).unwrap().len(), 16 << 20);
        assert!(plane.destroy_zvol("p1/pv"));
        assert!(plane.destroy_zvol("p1/pv2"));
        assert!(plane.files_on_disk().is_empty());
        assert!(plane.snapshots().is_empty());
    }
}
