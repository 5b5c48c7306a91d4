//! The target stand-in: istgt's control socket for one volume, answered from the
//! [`DataPlane`] (the real volume manager talks to it exactly as it talks to istgt).
//!
//! Replies are those of `cstor_local::standin::protocol` (checked there against the recordings
//! of the real istgt in `tests/fixtures/real-engine/istgt`):
//! - `VERSION`, `STATUS` (with the volume's target line), `REFRESH`, `DRF`: accepted; a command
//!   naming another volume fails with istgt's message (`ERR no target`, `ERR target not found`).
//! - `REPLICA`: every replica zvol of the volume that exists in the data plane is "connected"
//!   and reported `Healthy` under its **zvol guid** (as istgt does; not its replica id); each
//!   newly connected replica is also reported to the volume manager's known-replica socket
//!   (replica id and guid), as istgt does when it trusts a replica.
//! - `RESIZE <pv> <size>`: grows every replica image (the LUN included) before answering.
//! - `SNAPCREATE <pv> <snap>` / `SNAPDESTROY <pv> <snap>`: copy the LUN to a snapshot image on
//!   every replica / remove those images, before answering.

use std::{
    collections::BTreeSet,
    hash::{Hash, Hasher},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Instant,
};

use cstor_api::cstor::CStorVolume;
use cstor_local::standin::protocol::{
    FAKE_BANNER, known_replica_line, replica_reply, static_answer,
};
use kube::Api;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream},
    task::JoinHandle,
};

use crate::dataplane::{DataPlane, parse_size};

struct Shared {
    pv: String,
    plane: Arc<DataPlane>,
    cvs: Api<CStorVolume>,
    known_socket: PathBuf,
    reported: Mutex<BTreeSet<String>>,
    started: Instant,
    requests: Mutex<Vec<String>>,
    /// `false` holds `RESIZE` commands until it turns `true` again.
    resize_open: tokio::sync::watch::Sender<bool>,
}

/// istgt's control socket for one volume; stops and removes the socket when dropped.
pub struct IstgtStandIn {
    path: PathBuf,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for IstgtStandIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IstgtStandIn")
            .field("pv", &self.shared.pv)
            .field("path", &self.path)
            .finish()
    }
}

impl IstgtStandIn {
    /// Listens on `path` for volume `pv`; known replicas are reported to `known_socket`.
    pub fn start(
        path: &Path,
        pv: &str,
        plane: Arc<DataPlane>,
        cvs: Api<CStorVolume>,
        known_socket: &Path,
    ) -> std::io::Result<Self> {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)?;
        let shared = Arc::new(Shared {
            pv: pv.to_owned(),
            plane,
            cvs,
            known_socket: known_socket.to_path_buf(),
            reported: Mutex::default(),
            started: Instant::now(),
            requests: Mutex::default(),
            resize_open: tokio::sync::watch::Sender::new(true),
        });
        let sh = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(serve(sock, sh.clone()));
            }
        });
        Ok(Self {
            path: path.to_path_buf(),
            shared,
            task,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every command line received (without `\r\n`).
    pub fn requests(&self) -> Vec<String> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Holds (`true`) or releases (`false`) `RESIZE`: a held RESIZE is answered only once
    /// released, as a target whose replicas are slow to grow.
    pub fn hold_resize(&self, hold: bool) {
        self.shared.resize_open.send_replace(!hold);
    }

    /// Replica ids reported to the known-replica socket and accepted.
    pub fn known(&self) -> BTreeSet<String> {
        self.shared.reported.lock().unwrap().clone()
    }
}

impl Drop for IstgtStandIn {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

fn guid(dataset: &str) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    dataset.hash(&mut h);
    (h.finish() >> 1).to_string()
}

/// Connected replicas: `(replica id, dataset)` of every replica zvol of the volume.
fn connected(sh: &Shared) -> Vec<(String, String)> {
    sh.plane
        .replicas_of(&sh.pv)
        .into_iter()
        .filter_map(|(ds, z)| {
            z.props
                .get("io.openebs:zvol_replica_id")
                .map(|id| (id.clone(), ds))
        })
        .collect()
}

async fn report_known(sh: Arc<Shared>, replicas: Vec<(String, String)>) {
    let Ok(cv) = sh.cvs.get(&sh.pv).await else {
        return;
    };
    let rf = cv
        .spec
        .replication_factor
        .unwrap_or(0)
        .max(cv.spec.desired_replication_factor.unwrap_or(0))
        .max(1);
    let cf = cv.spec.consistency_factor.unwrap_or(0).max(rf / 2 + 1);
    for (id, ds) in replicas {
        if sh.reported.lock().unwrap().contains(&id) {
            continue;
        }
        let line = known_replica_line(&id, &guid(&ds), &sh.pv, rf, cf);
        let Ok(mut sock) = UnixStream::connect(&sh.known_socket).await else {
            return;
        };
        if sock
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .is_err()
        {
            return;
        }
        let mut answer = String::new();
        let _ = sock.read_to_string(&mut answer).await;
        if answer.starts_with("Ok") {
            sh.reported.lock().unwrap().insert(id);
        } else {
            tracing::info!(pv = sh.pv, id, answer, "known replica refused");
        }
    }
}

fn answer(sh: &Arc<Shared>, word: &str, args: &[&str]) -> Vec<String> {
    if let Some(lines) = static_answer(&sh.pv, word, args) {
        return lines;
    }
    match word {
        "REPLICA" => {
            let replicas = connected(sh);
            let up = sh.started.elapsed().as_secs();
            let guids: Vec<String> = replicas.iter().map(|(_, ds)| guid(ds)).collect();
            let lines = replica_reply(&sh.pv, &guids, up);
            tokio::spawn(report_known(sh.clone(), replicas));
            lines
        }
        "RESIZE" if args.len() >= 2 => {
            match parse_size(args[1]).and_then(|s| sh.plane.resize_volume(&sh.pv, s)) {
                Ok(()) => vec!["OK RESIZE".into()],
                Err(e) => vec![format!("ERR {e}")],
            }
        }
        "SNAPCREATE" if args.len() >= 2 => match sh.plane.snapshot_volume(&sh.pv, args[1]) {
            Ok(_) => vec!["OK SNAPCREATE".into()],
            Err(e) => vec![format!("ERR failed SNAPCREATE: {e}")],
        },
        "SNAPDESTROY" if args.len() >= 2 => {
            sh.plane.destroy_volume_snapshot(&sh.pv, args[1]);
            vec!["OK SNAPDESTROY".into()]
        }
        _ => vec!["ERR invalid param".into()],
    }
}

async fn serve(sock: UnixStream, sh: Arc<Shared>) {
    let mut reader = BufReader::new(sock);
    if reader
        .get_mut()
        .write_all(format!("{FAKE_BANNER}\r\n").as_bytes())
        .await
        .is_err()
    {
        return;
    }
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let line = line.trim_end_matches(['\r', '\n']).to_owned();
        sh.requests.lock().unwrap().push(line.clone());
        let mut parts = line.split_whitespace();
        let word = parts.next().unwrap_or_default().to_ascii_uppercase();
        let args: Vec<String> = parts.map(str::to_owned).collect();
        if word == "RESIZE" {
            let mut open = sh.resize_open.subscribe();
            let _ = open.wait_for(|o| *o).await;
        }
        let lines = if matches!(word.as_str(), "SNAPCREATE" | "RESIZE" | "SNAPDESTROY") {
            // Data-plane work (image copies) is blocking file I/O.
            let (sh2, handle) = (sh.clone(), tokio::runtime::Handle::current());
            tokio::task::spawn_blocking(move || {
                let _enter = handle.enter();
                let a: Vec<&str> = args.iter().map(String::as_str).collect();
                answer(&sh2, &word, &a)
            })
            .await
            .unwrap_or_else(|e| vec![format!("ERR {e}")])
        } else {
            let a: Vec<&str> = args.iter().map(String::as_str).collect();
            answer(&sh, &word, &a)
        };
        let mut out = String::new();
        for l in lines {
            out.push_str(&l);
            out.push_str("\r\n");
        }
        if reader.get_mut().write_all(out.as_bytes()).await.is_err() {
            return;
        }
    }
}
