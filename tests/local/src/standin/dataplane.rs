//! The stand-in data plane: zvols, snapshots and clones as sparse image files.
//!
//! The store is a directory; its index (`state.json`) is read and written under an exclusive
//! `flock` of `state.lock` for every operation, so the processes that share a store (the zvol
//! shim the pool manager runs as `zfs`, the target stand-in, the tests) see one state.
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
//! Its answers have the shape of the real uZFS CLI's, as recorded in
//! `tests/fixtures/real-engine` (checked by `tests/real_engine_shapes.rs`): `zfs stats` lists a
//! zvol only while it has a target address and ends a single-zvol listing with `{"pool":{}}`,
//! `zfs listsnap` fails with EAGAIN (exit 11) while the zvol is not connected, `zfs set` refuses
//! to change `io.openebs:targetip` from one address to another (exit 134), an unset user
//! property reads as an empty value.
//! The in-process target stand-in and recorded `iscsiadm` of `cstor-e2e` use the same store: a
//! volume's LUN is the image of one of its replicas ([`DataPlane::lun`]).

use std::{
    collections::{BTreeMap, BTreeSet},
    fs::File,
    io::{Read, Seek, SeekFrom, Write},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use serde::{Deserialize, Serialize};

use async_trait::async_trait;
use cstor_api::exec::{Cmd, ExecError, Output, Runner};

/// First word of a stand-in send stream.
pub const STREAM_MAGIC: &str = "cstor-standin-stream-v1";
/// Block size of a stand-in send stream.
const STREAM_BLOCK: usize = 64 << 10;

/// One replica zvol.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Zvol {
    pub image: PathBuf,
    pub size: u64,
    pub props: BTreeMap<String, String>,
    /// `zfs get guid`: chosen at creation.
    pub guid: u64,
    /// `zfs get origin`: the snapshot a clone was made from.
    pub origin: Option<String>,
    /// Whether the zvol is connected to its target (the stand-in's targets connect at once):
    /// while it has an address and is not connected, `zfs stats` reports it Offline and
    /// `zfs listsnap` answers EAGAIN, as uZFS does before istgt met the replica.
    pub connected: bool,
}

impl Zvol {
    fn new(image: PathBuf, size: u64, props: BTreeMap<String, String>) -> Self {
        use std::hash::BuildHasher;
        let guid = std::collections::hash_map::RandomState::new()
            .hash_one((&image, std::time::SystemTime::now()))
            .max(1);
        Self {
            image,
            size,
            props,
            guid,
            origin: None,
            connected: true,
        }
    }

    /// `io.openebs:targetip`, empty when unset.
    pub fn target_ip(&self) -> &str {
        self.props
            .get(TARGET_IP)
            .map(String::as_str)
            .unwrap_or_default()
    }
}

const TARGET_IP: &str = "io.openebs:targetip";

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct State {
    pub zvols: BTreeMap<String, Zvol>,
    /// `<pool>/<pv>@<snap>` → image.
    pub snapshots: BTreeMap<String, PathBuf>,
    /// pv → the zvol dataset the target serves as the volume's LUN.
    pub luns: BTreeMap<String, String>,
}

/// The store's state, held under the store's lock (in-process mutex, then `flock`) and written
/// back when dropped.
pub struct Locked<'a> {
    state: State,
    root: &'a Path,
    _file: File,
    _guard: std::sync::MutexGuard<'a, ()>,
}

impl std::ops::Deref for Locked<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        &self.state
    }
}

impl std::ops::DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut State {
        &mut self.state
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        let tmp = self.root.join("state.json.tmp");
        let text = serde_json::to_vec_pretty(&self.state).expect("state serializes");
        if let Err(e) = std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, self.root.join("state.json")))
        {
            tracing::error!(root = %self.root.display(), error = %e, "stand-in store: state not saved");
        }
        // The flock goes with the file.
    }
}

/// The image store shared by the zvol shim, the target stand-ins and the recorded iscsiadm.
#[derive(Debug)]
pub struct DataPlane {
    root: PathBuf,
    state: Mutex<()>,
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

    /// The store's state under its lock; written back when the guard drops. Never hold two.
    pub fn lock(&self) -> Locked<'_> {
        let guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.root.join("state.lock"))
            .unwrap_or_else(|e| panic!("stand-in store {}: {e}", self.root.display()));
        file.lock()
            .unwrap_or_else(|e| panic!("stand-in store {}: lock: {e}", self.root.display()));
        let state = match std::fs::read(self.root.join("state.json")) {
            Ok(b) => serde_json::from_slice(&b).unwrap_or_else(|e| {
                panic!("stand-in store {}: state.json: {e}", self.root.display())
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => panic!("stand-in store {}: {e}", self.root.display()),
        };
        Locked {
            state,
            root: &self.root,
            _file: file,
            _guard: guard,
        }
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
            .insert(dataset.to_owned(), Zvol::new(image, size, props));
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
        let mut zvol = Zvol::new(image, size, props);
        zvol.origin = Some(snapshot.to_owned());
        self.lock().zvols.insert(dataset.to_owned(), zvol);
        Ok(())
    }

    /// `zfs snapshot <dataset>@<snap>`: a sparse copy of the zvol's image.
    pub fn snapshot_zvol(&self, full: &str) -> Result<(), String> {
        let (dataset, _) = full
            .split_once('@')
            .ok_or_else(|| format!("'{full}' is not a snapshot name"))?;
        let src = {
            let st = self.lock();
            let Some(z) = st.zvols.get(dataset) else {
                return Err(format!("cannot open '{dataset}': dataset does not exist"));
            };
            if st.snapshots.contains_key(full) {
                return Err(format!(
                    "cannot create snapshot '{full}': dataset already exists"
                ));
            }
            z.image.clone()
        };
        let image = self
            .root
            .join("snapshots")
            .join(format!("{}.img", file_name(full)));
        sparse_copy(&src, &image).map_err(|e| format!("snapshot {full}: {e}"))?;
        self.lock().snapshots.insert(full.to_owned(), image);
        Ok(())
    }

    /// `zfs destroy <dataset>@<snap>`. `false` when there was no such snapshot.
    pub fn destroy_snapshot(&self, full: &str) -> bool {
        let Some(p) = self.lock().snapshots.remove(full) else {
            return false;
        };
        let _ = std::fs::remove_file(p);
        true
    }

    /// Marks a zvol connected to its target or not (see [`Zvol::connected`]); `false` when
    /// there is no such zvol.
    pub fn set_connected(&self, dataset: &str, connected: bool) -> bool {
        match self.lock().zvols.get_mut(dataset) {
            Some(z) => {
                z.connected = connected;
                true
            }
            None => false,
        }
    }

    /// `zfs set <key>=<value> <dataset>` as uZFS does it: changing `io.openebs:targetip` from
    /// one address to another directly aborts (exit 134, `internal error: Invalid argument`);
    /// clearing it and setting it again works. `None` when there is no such zvol.
    pub fn set_property(&self, dataset: &str, key: &str, value: &str) -> Option<Output> {
        let mut st = self.lock();
        let z = st.zvols.get_mut(dataset)?;
        if key == TARGET_IP {
            let current = z.target_ip();
            if !current.is_empty() && !value.is_empty() && current != value {
                return Some(Output::fail(134, "internal error: Invalid argument\n"));
            }
        }
        z.props.insert(key.to_owned(), value.to_owned());
        Some(Output::ok(""))
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
        self.snapshot_from(pv, snap, &lun)
    }

    /// Every replica of `pv` in this store gets `<pool>/<pv>@<snap>`, a sparse copy of `image`
    /// (the volume's LUN as it is now); the number of replicas.
    pub fn snapshot_from(&self, pv: &str, snap: &str, image: &Path) -> Result<usize, String> {
        let replicas = self.replicas_of(pv);
        for ds in replicas.keys() {
            let name = format!("{ds}@{snap}");
            let copy = self
                .root
                .join("snapshots")
                .join(format!("{}.img", file_name(&name)));
            sparse_copy(image, &copy).map_err(|e| format!("snapshot {name}: {e}"))?;
            self.lock().snapshots.insert(name, copy);
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

    /// `zfs send [-i <prev>] <dataset>@<snap>` for the stand-in: a stream of the snapshot
    /// image's blocks, [`STREAM_MAGIC`] `full|incremental <size> <snap>\n` and then records
    /// `<offset u64 LE><length u32 LE><bytes>` ended by a zero length. A full stream carries
    /// every non-zero block; an incremental one every block that differs from `prev`'s.
    pub fn send_stream(
        &self,
        full: &str,
        prev: Option<&str>,
        out: &mut impl Write,
    ) -> Result<(), String> {
        let image = |name: &str| {
            self.lock()
                .snapshots
                .get(name)
                .cloned()
                .ok_or_else(|| format!("cannot open '{name}': dataset does not exist"))
        };
        let snap = image(full)?;
        let base = match prev {
            Some(p) => Some(File::open(image(p)?).map_err(|e| e.to_string())?),
            None => None,
        };
        let io = |e: std::io::Error| format!("send {full}: {e}");
        let mut src = File::open(&snap).map_err(io)?;
        let size = src.metadata().map_err(io)?.len();
        let kind = if base.is_some() {
            "incremental"
        } else {
            "full"
        };
        let short = full.split_once('@').map_or(full, |(_, s)| s);
        out.write_all(format!("{STREAM_MAGIC} {kind} {size} {short}\n").as_bytes())
            .map_err(io)?;
        let mut base = base;
        let (mut block, mut old) = (vec![0u8; STREAM_BLOCK], vec![0u8; STREAM_BLOCK]);
        let mut off = 0u64;
        while off < size {
            let n = (size - off).min(STREAM_BLOCK as u64) as usize;
            src.read_exact(&mut block[..n]).map_err(io)?;
            let send = match base.as_mut() {
                None => block[..n].iter().any(|b| *b != 0),
                Some(b) => {
                    old[..n].fill(0);
                    // A base shorter than the snapshot reads as zeros past its end.
                    let mut got = 0;
                    while got < n {
                        match b.read(&mut old[got..n]).map_err(io)? {
                            0 => break,
                            k => got += k,
                        }
                    }
                    block[..n] != old[..n]
                }
            };
            if send {
                out.write_all(&off.to_le_bytes()).map_err(io)?;
                out.write_all(&(n as u32).to_le_bytes()).map_err(io)?;
                out.write_all(&block[..n]).map_err(io)?;
            }
            off += n as u64;
        }
        out.write_all(&0u64.to_le_bytes()).map_err(io)?;
        out.write_all(&0u32.to_le_bytes()).map_err(io)?;
        out.flush().map_err(io)
    }

    /// `zfs recv -F <dataset>` for the stand-in: applies a [`Self::send_stream`] stream to the
    /// zvol's image (a full stream replaces its contents) and keeps the stream's snapshot
    /// `<dataset>@<snap>`, as ZFS does.
    pub fn receive_stream(&self, dataset: &str, input: &mut impl Read) -> Result<(), String> {
        let Some(z) = self.lock().zvols.get(dataset).cloned() else {
            return Err(format!("cannot receive: '{dataset}' does not exist"));
        };
        let io = |e: std::io::Error| format!("receive {dataset}: {e}");
        let mut header = Vec::new();
        let mut byte = [0u8; 1];
        while header.len() < 128 {
            input.read_exact(&mut byte).map_err(io)?;
            if byte[0] == b'\n' {
                break;
            }
            header.push(byte[0]);
        }
        let header = String::from_utf8_lossy(&header).into_owned();
        let fields: Vec<&str> = header.split_whitespace().collect();
        let (full, size, snapshot) = match fields.as_slice() {
            [magic, kind, size, snap] if *magic == STREAM_MAGIC => (
                *kind == "full",
                size.parse::<u64>()
                    .map_err(|_| format!("invalid stream header {header:?}"))?,
                snap.to_string(),
            ),
            _ => return Err(format!("invalid stream header {header:?}")),
        };
        let mut dst = std::fs::OpenOptions::new()
            .write(true)
            .open(&z.image)
            .map_err(io)?;
        if full {
            dst.set_len(0).map_err(io)?;
        }
        dst.set_len(size.max(z.size)).map_err(io)?;
        let mut block = vec![0u8; STREAM_BLOCK];
        loop {
            let (mut o, mut l) = ([0u8; 8], [0u8; 4]);
            input.read_exact(&mut o).map_err(io)?;
            input.read_exact(&mut l).map_err(io)?;
            let (off, len) = (u64::from_le_bytes(o), u32::from_le_bytes(l) as usize);
            if len == 0 {
                break;
            }
            if len > STREAM_BLOCK || off + len as u64 > size {
                return Err(format!("invalid stream record at {off} of {len} bytes"));
            }
            input.read_exact(&mut block[..len]).map_err(io)?;
            dst.seek(SeekFrom::Start(off)).map_err(io)?;
            dst.write_all(&block[..len]).map_err(io)?;
        }
        dst.sync_all().map_err(io)?;
        drop(dst);
        let name = format!("{dataset}@{snapshot}");
        if !self.lock().snapshots.contains_key(&name) {
            self.snapshot_zvol(&name)?;
        }
        Ok(())
    }

    /// `zpool import <old> <new>` for the stand-in: the zvols and snapshots of pool `old` are
    /// the new pool's (their images stay where they are). Returns how many zvols moved.
    pub fn rename_pool(&self, old: &str, new: &str) -> usize {
        let moved = |name: &str| {
            name.strip_prefix(old)
                .filter(|rest| rest.starts_with('/') || rest.starts_with('@'))
                .map(|rest| format!("{new}{rest}"))
        };
        let mut st = self.lock();
        let zvols = std::mem::take(&mut st.zvols);
        let mut count = 0;
        for (name, mut z) in zvols {
            z.origin = z.origin.map(|o| moved(&o).unwrap_or(o));
            match moved(&name) {
                Some(n) => {
                    count += 1;
                    st.zvols.insert(n, z);
                }
                None => {
                    st.zvols.insert(name, z);
                }
            }
        }
        let snapshots = std::mem::take(&mut st.snapshots);
        st.snapshots = snapshots
            .into_iter()
            .map(|(name, image)| (moved(&name).unwrap_or(name), image))
            .collect();
        for ds in st.luns.values_mut() {
            if let Some(n) = moved(ds) {
                *ds = n;
            }
        }
        count
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

/// A failed command with a message line, as the zfs CLI prints it (exit 1).
fn fail(message: &str) -> Output {
    Output::fail(1, format!("{}\n", message.trim_end()))
}

fn result(r: Result<(), String>) -> Output {
    match r {
        Ok(()) => Output::ok(""),
        Err(e) => fail(&e),
    }
}

/// libzfs's message for a dataset that is not there.
fn not_found(dataset: &str) -> Output {
    fail(&format!("cannot open '{dataset}': dataset does not exist"))
}

/// A name as uZFS's JSON writer prints it (`/` escaped as `\/`).
fn json_name(name: &str) -> String {
    serde_json::Value::from(name)
        .to_string()
        .replace('/', r"\/")
}

/// A size as `zfs get` prints it without `-p` (libzfs `zfs_nicenum`: `6K`, `75.5K`, `1.86G`).
pub fn nicenum(n: u64) -> String {
    const UNITS: [&str; 7] = ["", "K", "M", "G", "T", "P", "E"];
    let mut index = 0;
    while index < 6 && n >> (10 * (index + 1)) > 0 {
        index += 1;
    }
    if index == 0 {
        return n.to_string();
    }
    let unit = UNITS[index];
    let scale = 1u64 << (10 * index);
    if n.is_multiple_of(scale) {
        return format!("{}{unit}", n / scale);
    }
    (0..=2)
        .rev()
        .map(|prec| format!("{:.*}{unit}", prec, n as f64 / scale as f64))
        .find(|s| s.len() <= 5)
        .unwrap_or_else(|| format!("{}{unit}", n / scale))
}

/// uZFS's `zfs stats` entry of a zvol (the keys and types of the real one).
fn stats_entry(dataset: &str, z: &Zvol) -> String {
    let (status, rebuild, created) = if z.connected {
        ("Healthy", "DONE", 1)
    } else {
        ("Offline", "INIT", 0)
    };
    let quorum = u8::from(z.props.get("quorum").is_none_or(|q| q == "on"));
    let workers: u32 = z
        .props
        .get("io.openebs:zvol_workers")
        .and_then(|w| w.parse().ok())
        .unwrap_or(2);
    let name = json_name(dataset);
    format!(
        r#"{{"name":{name},"status":"{status}","readOnly":"off","rebuildStatus":"{rebuild}","isIOAckSenderCreated":{created},"isIOReceiverCreated":{created},"runningIONum":0,"checkpointedIONum":0,"degradedCheckpointedIONum":0,"checkpointedTime":0,"zvol_workers":{workers},"quorum":{quorum},"rebuildBytes":0,"rebuildCnt":0,"rebuildDoneCnt":0,"rebuildFailedCnt":0,"readCount":0,"readLatency":0,"readByte":0,"writeCount":0,"writeLatency":0,"writeByte":0,"syncCount":0,"syncLatency":0,"inflightIOCnt":0,"dispatchedIOCnt":0,"ruio":{{}},"wuio":{{}}}}"#
    )
}

/// Allocated bytes of an image: what the replica really holds.
fn allocated(image: &Path) -> u64 {
    std::fs::metadata(image)
        .map(|m| m.blocks() * 512)
        .unwrap_or(0)
}

/// A `zfs get` command line: `[-H] [-p] [-o field,...] prop,... dataset...` (options anywhere).
#[derive(Debug)]
struct Get<'a> {
    scripted: bool,
    parsable: bool,
    fields: Vec<&'a str>,
    props: Vec<&'a str>,
    datasets: Vec<&'a str>,
}

impl<'a> Get<'a> {
    /// `None` for options the shim does not play (`-r`, `-t`, `-s`, ...).
    fn parse(args: &[&'a str]) -> Option<Self> {
        let mut g = Get {
            scripted: false,
            parsable: false,
            fields: vec!["name", "property", "value", "source"],
            props: Vec::new(),
            datasets: Vec::new(),
        };
        let mut positional = Vec::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.strip_prefix('-').filter(|f| !f.is_empty()) {
                Some(flags) => {
                    for c in flags.chars() {
                        match c {
                            'H' => g.scripted = true,
                            'p' => g.parsable = true,
                            'o' => g.fields = it.next()?.split(',').collect(),
                            _ => return None,
                        }
                    }
                }
                None => positional.push(*a),
            }
        }
        let (props, datasets) = positional.split_first()?;
        g.props = props.split(',').collect();
        g.datasets = datasets.to_vec();
        Some(g)
    }
}

/// What `zfs get` reads: a zvol or one of its snapshots.
enum Dataset {
    Zvol(Zvol),
    Snapshot(PathBuf),
}

/// `(value, source)` of `prop` on `d`, as uZFS prints it.
fn value_of(name: &str, d: &Dataset, prop: &str, parsable: bool) -> (String, &'static str) {
    let bytes = |n: u64| if parsable { n.to_string() } else { nicenum(n) };
    let (image, size) = match d {
        Dataset::Zvol(z) => (z.image.clone(), z.size),
        Dataset::Snapshot(p) => (
            p.clone(),
            std::fs::metadata(p).map(|m| m.len()).unwrap_or(0),
        ),
    };
    match (prop, d) {
        ("name", _) => (name.to_owned(), "-"),
        ("type", Dataset::Zvol(_)) => ("volume".into(), "-"),
        ("type", Dataset::Snapshot(_)) => ("snapshot".into(), "-"),
        ("used" | "logicalused" | "referenced" | "logicalreferenced", _) => {
            (bytes(allocated(&image)), "-")
        }
        ("volsize", Dataset::Zvol(_)) => (bytes(size), "local"),
        ("volsize", Dataset::Snapshot(_)) => (bytes(size), "-"),
        ("guid", Dataset::Zvol(z)) => (z.guid.to_string(), "-"),
        ("origin", Dataset::Zvol(z)) => (z.origin.clone().unwrap_or_else(|| "-".into()), "-"),
        (k, Dataset::Zvol(z)) if z.props.contains_key(k) => (z.props[k].clone(), "local"),
        // uZFS prints an unset user property as an empty value (OpenZFS prints `-`).
        (k, _) if k.contains(':') => (String::new(), "-"),
        _ => ("-".into(), "-"),
    }
}

/// The rows of `zfs get` as the CLI prints them: tab-separated with `-H`, else a header and
/// columns padded to their widest cell plus two spaces (the last one unpadded).
fn get_table(g: &Get, name: &str, d: &Dataset) -> String {
    let rows: Vec<Vec<String>> = g
        .props
        .iter()
        .map(|prop| {
            let (value, source) = value_of(name, d, prop, g.parsable);
            g.fields
                .iter()
                .map(|f| match *f {
                    "name" => name.to_owned(),
                    "property" => prop.to_string(),
                    "value" => value.clone(),
                    "source" => source.to_owned(),
                    _ => "-".to_owned(),
                })
                .collect()
        })
        .collect();
    if g.scripted {
        return rows.iter().map(|r| format!("{}\n", r.join("\t"))).collect();
    }
    let header: Vec<String> = g.fields.iter().map(|f| f.to_uppercase()).collect();
    let all: Vec<&Vec<String>> = std::iter::once(&header).chain(rows.iter()).collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| all.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    all.iter()
        .map(|r| {
            let last = r.len() - 1;
            let mut line = String::new();
            for (i, cell) in r.iter().enumerate() {
                if i == last {
                    line.push_str(cell);
                } else {
                    line.push_str(&format!("{cell:<w$}", w = widths[i] + 2));
                }
            }
            line + "\n"
        })
        .collect()
}

/// A name in the shim's part of the namespace: below a pool (`<pool>/<zvol>[@<snap>]`). The
/// pools themselves are zfs-fuse's.
fn below_pool(name: &str) -> bool {
    name.contains('/')
}

#[async_trait]
impl Runner for ZvolShim {
    async fn run(&self, cmd: &Cmd) -> Result<Output, ExecError> {
        if cmd.program != "zfs" {
            return self.inner.run(cmd).await;
        }
        let a: Vec<&str> = cmd.args.iter().map(String::as_str).collect();
        let plane = &self.plane;
        let zvol = |ds: &str| plane.zvols().get(ds).cloned();
        match a.as_slice() {
            ["create", .., "-V", size, ds] => {
                let size = match parse_size(size) {
                    Ok(s) => s,
                    Err(e) => return Ok(Output::fail(2, format!("{e}\n"))),
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
            ["snapshot", full] if below_pool(full) && full.contains('@') => {
                let (p, full) = (plane.clone(), full.to_string());
                let r = tokio::task::spawn_blocking(move || p.snapshot_zvol(&full))
                    .await
                    .unwrap_or_else(|e| Err(e.to_string()));
                Ok(result(r))
            }
            // A single zvol: its entry while it has a target, then uZFS's pool element.
            ["stats", ds] => {
                let entry = zvol(ds)
                    .filter(|z| !z.target_ip().is_empty())
                    .map(|z| format!("{},", stats_entry(ds, &z)))
                    .unwrap_or_default();
                Ok(Output::ok(format!(
                    "{{\"stats\":[{entry}{{\"pool\":{{}}}}]}}\n"
                )))
            }
            // Every zvol with a target; no pool element.
            ["stats"] => {
                let list: Vec<String> = plane
                    .zvols()
                    .iter()
                    .filter(|(_, z)| !z.target_ip().is_empty())
                    .map(|(ds, z)| stats_entry(ds, z))
                    .collect();
                Ok(Output::ok(format!("{{\"stats\":[{}]}}\n", list.join(","))))
            }
            ["listsnap", ds] if below_pool(ds) => {
                let busy = |err: i32| {
                    Output::fail(
                        err,
                        format!("failed listsnap command for {ds} with err {err}\n"),
                    )
                };
                let Some(z) = zvol(ds) else {
                    return Ok(busy(2));
                };
                if !z.connected || z.target_ip().is_empty() {
                    return Ok(busy(11));
                }
                let prefix = format!("{ds}@");
                let snaps: Vec<String> = plane
                    .snapshots()
                    .iter()
                    .filter_map(|s| s.strip_prefix(&prefix))
                    .map(|s| format!("{}:null", json_name(s)))
                    .collect();
                Ok(Output::ok(format!(
                    "{{\"name\":{},\"snaplist\":{{{}}}}}\n",
                    json_name(ds),
                    snaps.join(",")
                )))
            }
            ["set", kv, ds] if below_pool(ds) && !ds.contains('@') && kv.contains('=') => {
                let (k, v) = kv.split_once('=').unwrap_or_default();
                Ok(plane
                    .set_property(ds, k, v)
                    .unwrap_or_else(|| not_found(ds)))
            }
            ["destroy", "-R", ds] if below_pool(ds) && !ds.contains('@') => {
                Ok(if plane.destroy_zvol(ds) {
                    Output::ok("")
                } else {
                    not_found(ds)
                })
            }
            ["destroy", full] | ["destroy", "-R", full] if below_pool(full) => {
                let Some((ds, _)) = full.split_once('@') else {
                    return self.inner.run(cmd).await;
                };
                Ok(if zvol(ds).is_none() {
                    not_found(ds)
                } else if plane.destroy_snapshot(full) {
                    Output::ok("")
                } else {
                    fail("could not find any snapshots to destroy; check snapshot names.")
                })
            }
            ["list", "-H", "-t", types, "-o", "name"] => {
                // The pools' own datasets from zfs-fuse, then the zvols and snapshots of the
                // pools that are there.
                let pools = self
                    .inner
                    .run(&Cmd::new("zfs").args(["list", "-H", "-o", "name"]))
                    .await?;
                if !pools.success() {
                    return Ok(pools);
                }
                let pools: BTreeSet<String> = pools.stdout.lines().map(str::to_owned).collect();
                let want = |t: &str| types.split(',').any(|x| x == t || x == "all");
                let mut out = if want("filesystem") {
                    self.inner
                        .run(&Cmd::new("zfs").args(["list", "-H", "-o", "name"]))
                        .await?
                } else {
                    Output::ok("")
                };
                let in_pool = |n: &str| {
                    n.split(['/', '@'])
                        .next()
                        .is_some_and(|p| pools.contains(p))
                };
                let mut names: Vec<String> = Vec::new();
                if want("volume") {
                    names.extend(plane.zvols().into_keys());
                }
                if want("snapshot") {
                    names.extend(plane.snapshots());
                }
                names.sort();
                for n in names.into_iter().filter(|n| in_pool(n)) {
                    out.stdout.push_str(&n);
                    out.stdout.push('\n');
                }
                Ok(out)
            }
            ["get", "-Hp", "name", "-o", "name"] | ["list", "-H", "-o", "name"] => {
                let mut out = self.inner.run(cmd).await?;
                if !out.success() {
                    return Ok(out);
                }
                // The zvols of the pools that are there (an exported pool's zvols are not).
                let pools: BTreeSet<String> = out.stdout.lines().map(str::to_owned).collect();
                for z in plane.zvols().keys() {
                    if z.split_once('/').is_some_and(|(p, _)| pools.contains(p)) {
                        out.stdout.push_str(z);
                        out.stdout.push('\n');
                    }
                }
                Ok(out)
            }
            ["get", rest @ ..] => {
                let Some(g) = Get::parse(rest) else {
                    return self.inner.run(cmd).await;
                };
                let [name] = g.datasets.as_slice() else {
                    return self.inner.run(cmd).await;
                };
                if !below_pool(name) {
                    return self.inner.run(cmd).await;
                }
                let d = match name.split_once('@') {
                    Some(_) => plane
                        .lock()
                        .snapshots
                        .get(*name)
                        .cloned()
                        .map(Dataset::Snapshot),
                    None => zvol(name).map(Dataset::Zvol),
                };
                Ok(match d {
                    Some(d) => Output::ok(get_table(&g, name, &d)),
                    None => not_found(name),
                })
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

    /// The sizes the real engine printed (tests/fixtures/real-engine/cli/zfs-get-*).
    #[test]
    fn sizes_print_as_zfs_prints_them() {
        assert_eq!(nicenum(0), "0");
        assert_eq!(nicenum(512), "512");
        assert_eq!(nicenum(6 << 10), "6K");
        assert_eq!(nicenum(12 << 10), "12K");
        assert_eq!(nicenum(77_312), "75.5K");
        assert_eq!(nicenum(25 << 10 | 512), "25.5K");
        assert_eq!(nicenum(1_997_159_793), "1.86G");
        assert_eq!(nicenum(1 << 30), "1G");
    }

    #[test]
    fn a_renamed_pool_keeps_its_zvols_snapshots_and_data() {
        let dir = tempfile::tempdir().unwrap();
        let plane = DataPlane::new(dir.path()).unwrap();
        plane
            .create_zvol("cstor-old/pv", 1 << 20, BTreeMap::new())
            .unwrap();
        plane
            .create_zvol("cstor-older/pv", 1 << 20, BTreeMap::new())
            .unwrap();
        let image = plane.zvols()["cstor-old/pv"].image.clone();
        std::fs::write(&image, b"kept").unwrap();
        plane.snapshot_zvol("cstor-old/pv@s1").unwrap();
        assert_eq!(plane.rename_pool("cstor-old", "cstor-new"), 1);
        let zvols = plane.zvols();
        assert!(zvols.contains_key("cstor-new/pv"));
        assert!(!zvols.contains_key("cstor-old/pv"));
        // Another pool whose name starts the same is not touched.
        assert!(zvols.contains_key("cstor-older/pv"));
        assert_eq!(
            std::fs::read(&zvols["cstor-new/pv"].image).unwrap(),
            b"kept"
        );
        assert!(plane.snapshots().contains("cstor-new/pv@s1"));
        assert_eq!(plane.rename_pool("cstor-old", "cstor-new"), 0);
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
