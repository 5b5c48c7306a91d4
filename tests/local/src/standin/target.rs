//! The target stand-in for one volume (what `cstor-local` runs for the `cstor-istgt` image when
//! the real engine is absent).
//!
//! - Reads the `istgt.conf` the volume manager writes (target name, size, replication and
//!   consistency factors, portal) whenever it looks at the volume.
//! - Answers istgt's control socket ([`super::protocol`]) for the volume manager.
//! - Connects the replicas: every zvol `<pool>/<pv>` of every node's store whose
//!   `io.openebs:targetip` is set; they are listed in `REPLICA` under their zvol guids and
//!   reported once each to the volume manager's known-replica socket, as istgt does.
//! - Serves the LUN over iSCSI through Debian's `istgt`, on the portal of the conf: the LUN is
//!   an image of the target's own, seeded from a connected replica's image (so a clone or a
//!   restore starts with its snapshot's data) and removed once no replica of the volume exists.
//! - `SNAPCREATE` copies the LUN into `<pool>/<pv>@<snap>` of every replica; `SNAPDESTROY`
//!   removes those; `RESIZE` grows the replicas and the LUN and restarts the iSCSI server,
//!   which reads a LUN's size when it starts.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::Context;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream},
    process::{Child, Command},
};

use super::{
    STORE_DIR,
    dataplane::{DataPlane, parse_size, sparse_copy},
    protocol::{FAKE_BANNER, NODE_BASE, framed, known_replica_line, replica_reply, static_answer},
};

/// Where the target stand-in finds and puts things.
#[derive(Clone, Debug)]
pub struct Config {
    /// The `istgt.conf` the volume manager writes.
    pub conf: PathBuf,
    /// istgt's control socket.
    pub control_socket: PathBuf,
    /// The volume manager's known-replica socket.
    pub known_socket: PathBuf,
    /// The node directories: every `*/cstor-standin` below is a node's zvol store.
    pub nodes: PathBuf,
    /// The LUN images (`<pv>.img`).
    pub luns: PathBuf,
    /// The iSCSI server's own files (its configuration, pid file).
    pub work: PathBuf,
    /// Debian's `istgt`.
    pub istgt: PathBuf,
}

/// What the volume manager's `istgt.conf` says about the volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Volume {
    pub pv: String,
    pub size: u64,
    pub rf: i64,
    pub cf: i64,
    /// `ip:port` of the iSCSI portal.
    pub portal: String,
}

/// Reads the volume of an `istgt.conf`; `None` while it has no logical unit.
pub fn volume_of(conf: &str) -> anyhow::Result<Option<Volume>> {
    let words = |key: &str| -> Option<Vec<String>> {
        conf.lines()
            .map(str::split_whitespace)
            .map(|w| w.map(str::to_owned).collect::<Vec<_>>())
            .find(|w| w.first().is_some_and(|k| k == key))
    };
    let Some(name) = words("TargetName").and_then(|w| w.get(1).cloned()) else {
        return Ok(None);
    };
    let storage = conf
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|w| w.len() >= 3 && w[0] == "LUN0" && w[1] == "Storage")
        .context("istgt.conf: no `LUN0 Storage` line")?;
    let size =
        parse_size(storage[2]).map_err(|e| anyhow::anyhow!("istgt.conf LUN0 Storage: {e}"))?;
    let number = |key: &str| -> anyhow::Result<i64> {
        words(key)
            .and_then(|w| w.get(1).cloned())
            .with_context(|| format!("istgt.conf: no {key}"))?
            .parse()
            .with_context(|| format!("istgt.conf: {key} is not a number"))
    };
    let portal = conf
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|w| w.len() >= 3 && w[0] == "Portal" && w[1].starts_with("DA"))
        .map(|w| w[2].to_owned())
        .context("istgt.conf: no `Portal DA1 <ip>:<port>` line")?;
    Ok(Some(Volume {
        pv: name,
        size,
        rf: number("ReplicationFactor")?,
        cf: number("ConsistencyFactor")?,
        portal,
    }))
}

/// A connected replica: the store it is in, its dataset, replica id and zvol guid.
#[derive(Clone, Debug)]
struct Replica {
    store: PathBuf,
    id: String,
    guid: String,
    image: PathBuf,
}

struct Inner {
    server: Option<Child>,
    /// The size the running server was started with.
    served: u64,
    reported: BTreeSet<String>,
}

/// The target of one volume.
pub struct Target {
    cfg: Config,
    started: Instant,
    inner: tokio::sync::Mutex<Inner>,
    requests: Mutex<Vec<String>>,
}

impl Target {
    pub fn new(cfg: Config) -> Arc<Self> {
        Arc::new(Self {
            cfg,
            started: Instant::now(),
            inner: tokio::sync::Mutex::new(Inner {
                server: None,
                served: 0,
                reported: BTreeSet::new(),
            }),
            requests: Mutex::default(),
        })
    }

    fn volume(&self) -> anyhow::Result<Option<Volume>> {
        match std::fs::read_to_string(&self.cfg.conf) {
            Ok(t) => volume_of(&t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| self.cfg.conf.display().to_string()),
        }
    }

    /// Every node's store.
    fn stores(&self) -> Vec<Arc<DataPlane>> {
        let Ok(rd) = std::fs::read_dir(&self.cfg.nodes) else {
            return vec![];
        };
        let mut dirs: Vec<PathBuf> = rd
            .filter_map(|e| e.ok())
            .map(|e| e.path().join(STORE_DIR))
            .filter(|d| d.join("state.json").exists())
            .collect();
        dirs.sort();
        dirs.into_iter()
            .filter_map(|d| DataPlane::new(d).ok())
            .collect()
    }

    /// `(every zvol of pv, the connected ones)` over every store.
    fn replicas(&self, pv: &str) -> (usize, Vec<Replica>) {
        let mut all = 0;
        let mut connected = Vec::new();
        for store in self.stores() {
            for (_, z) in store.replicas_of(pv) {
                all += 1;
                if z.target_ip().is_empty() || !z.connected {
                    continue;
                }
                let Some(id) = z.props.get("io.openebs:zvol_replica_id") else {
                    continue;
                };
                connected.push(Replica {
                    store: store.root().to_path_buf(),
                    id: id.clone(),
                    guid: z.guid.to_string(),
                    image: z.image.clone(),
                });
            }
        }
        (all, connected)
    }

    fn lun(&self, pv: &str) -> PathBuf {
        self.cfg.luns.join(format!("{pv}.img"))
    }

    /// Brings the LUN and its iSCSI server in line with the conf and the replicas.
    pub async fn sync(&self) -> anyhow::Result<()> {
        let Some(vol) = self.volume()? else {
            return Ok(());
        };
        let (all, connected) = self.replicas(&vol.pv);
        let lun = self.lun(&vol.pv);
        let mut inner = self.inner.lock().await;
        if all == 0 {
            if lun.exists() {
                // The volume's replicas are gone: so is the volume.
                stop(&mut inner).await;
                std::fs::remove_file(&lun).with_context(|| lun.display().to_string())?;
                tracing::info!(pv = vol.pv, "no replica left: LUN removed");
            }
            return Ok(());
        }
        if !lun.exists() {
            let Some(seed) = connected.first() else {
                return Ok(());
            };
            std::fs::create_dir_all(&self.cfg.luns)?;
            let tmp = lun.with_extension("seeding");
            sparse_copy(&seed.image, &tmp)
                .with_context(|| format!("seed the LUN from {}", seed.image.display()))?;
            std::fs::rename(&tmp, &lun)?;
            tracing::info!(pv = vol.pv, seed = %seed.image.display(), "LUN seeded");
        }
        let len = std::fs::metadata(&lun)?.len();
        if len < vol.size {
            std::fs::OpenOptions::new()
                .write(true)
                .open(&lun)?
                .set_len(vol.size)?;
        }
        let size = len.max(vol.size);
        let running = match inner.server.as_mut() {
            Some(c) => c.try_wait()?.is_none(),
            None => false,
        };
        if !running || inner.served != size {
            stop(&mut inner).await;
            inner.server = Some(self.serve(&vol, &lun).await?);
            inner.served = size;
            tracing::info!(pv = vol.pv, size, portal = vol.portal, "LUN served");
        }
        drop(inner);
        self.report_known(&vol, &connected).await;
        Ok(())
    }

    /// Starts Debian's istgt serving `lun` as `<NODE_BASE>:<pv>` LUN 0 on the volume's portal.
    async fn serve(&self, vol: &Volume, lun: &Path) -> anyhow::Result<Child> {
        std::fs::create_dir_all(&self.cfg.work)?;
        let auth = self.cfg.work.join("auth.conf");
        std::fs::write(&auth, "")?;
        let conf = self.cfg.work.join("istgt.conf");
        let pid = self.cfg.work.join("istgt.pid");
        std::fs::write(
            &conf,
            format!(
                "[Global]\n  NodeBase \"{NODE_BASE}\"\n  PidFile \"{pid}\"\n  AuthFile \"{auth}\"\n  MediaDirectory \"{work}\"\n  Timeout 30\n  NopInInterval 20\n  DiscoveryAuthMethod None\n  MaxSessions 16\n  MaxConnections 4\n  FirstBurstLength 65536\n  MaxBurstLength 262144\n  MaxRecvDataSegmentLength 262144\n\n[UnitControl]\n  AuthMethod None\n  Portal UC1 127.0.0.1:3261\n  Netmask 127.0.0.1\n\n[PortalGroup1]\n  Portal DA1 {portal}\n\n[InitiatorGroup1]\n  InitiatorName \"ALL\"\n  Netmask ALL\n\n[LogicalUnit1]\n  TargetName {pv}\n  Mapping PortalGroup1 InitiatorGroup1\n  AuthMethod None\n  UseDigest Auto\n  UnitType Disk\n  LUN0 Storage {lun} Auto\n",
                pid = pid.display(),
                auth = auth.display(),
                work = self.cfg.work.display(),
                portal = vol.portal,
                pv = vol.pv,
                lun = lun.display(),
            ),
        )?;
        let mut cmd = Command::new(&self.cfg.istgt);
        cmd.args(["-D", "-c"])
            .arg(&conf)
            .arg("-p")
            .arg(&pid)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        // istgt goes with this container also when it is killed (kill_on_drop needs a clean
        // exit): otherwise a stopped target pod leaves its istgt running on the machine.
        // SAFETY: only a system call runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("start {}", self.cfg.istgt.display()))?;
        // Serving once the portal accepts connections.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if tokio::net::TcpStream::connect(&vol.portal).await.is_ok() {
                return Ok(child);
            }
            if let Some(status) = child.try_wait()? {
                anyhow::bail!(
                    "istgt exited with {status} (configuration {})",
                    conf.display()
                );
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "istgt does not listen on {} after 20 s",
                vol.portal
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn report_known(&self, vol: &Volume, replicas: &[Replica]) {
        for r in replicas {
            if self.inner.lock().await.reported.contains(&r.id) {
                continue;
            }
            let line = known_replica_line(&r.id, &r.guid, &vol.pv, vol.rf, vol.cf);
            let Ok(mut sock) = UnixStream::connect(&self.cfg.known_socket).await else {
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
                self.inner.lock().await.reported.insert(r.id.clone());
            } else {
                tracing::info!(pv = vol.pv, id = r.id, answer, "known replica refused");
            }
        }
    }

    /// Every control command received (without `\r\n`).
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    async fn answer(&self, word: &str, args: &[&str]) -> Vec<String> {
        let vol = match self.volume() {
            Ok(v) => v,
            Err(e) => return vec![format!("ERR {e:#}")],
        };
        let pv = vol.as_ref().map(|v| v.pv.clone()).unwrap_or_default();
        if let Some(lines) = static_answer(&pv, word, args) {
            return lines;
        }
        let Some(vol) = vol else {
            return vec!["ERR no target".into()];
        };
        match word {
            "REPLICA" => {
                if let Err(e) = self.sync().await {
                    tracing::warn!(pv, error = %format!("{e:#}"), "target sync");
                }
                let (_, connected) = self.replicas(&pv);
                let guids: Vec<String> = connected.iter().map(|r| r.guid.clone()).collect();
                replica_reply(&pv, &guids, self.started.elapsed().as_secs())
            }
            "RESIZE" if args.len() >= 2 => match self.resize(&vol, args[1]).await {
                Ok(()) => vec!["OK RESIZE".into()],
                Err(e) => vec![format!("ERR {e:#}")],
            },
            "SNAPCREATE" if args.len() >= 2 => match self.snapshot(&vol, args[1]).await {
                Ok(()) => vec!["OK SNAPCREATE".into()],
                Err(e) => vec![format!("ERR failed SNAPCREATE: {e:#}")],
            },
            "SNAPDESTROY" if args.len() >= 2 => {
                let (pv, snap) = (pv.clone(), args[1].to_owned());
                let stores = self.stores();
                let _ = tokio::task::spawn_blocking(move || {
                    for s in stores {
                        s.destroy_volume_snapshot(&pv, &snap);
                    }
                })
                .await;
                vec!["OK SNAPDESTROY".into()]
            }
            _ => vec!["ERR invalid param".into()],
        }
    }

    async fn resize(&self, vol: &Volume, size: &str) -> anyhow::Result<()> {
        let size = parse_size(size).map_err(anyhow::Error::msg)?;
        let (pv, stores, lun) = (vol.pv.clone(), self.stores(), self.lun(&vol.pv));
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            for s in stores {
                s.resize_volume(&pv, size).map_err(anyhow::Error::msg)?;
            }
            if let Ok(m) = std::fs::metadata(&lun)
                && m.len() < size
            {
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&lun)?
                    .set_len(size)?;
            }
            Ok(())
        })
        .await??;
        // The server reads the LUN's size when it starts.
        let mut resized = vol.clone();
        resized.size = resized.size.max(size);
        let lun = self.lun(&vol.pv);
        let mut inner = self.inner.lock().await;
        if lun.exists() && inner.served < size {
            stop(&mut inner).await;
            inner.server = Some(self.serve(&resized, &lun).await?);
            inner.served = size;
        }
        Ok(())
    }

    async fn snapshot(&self, vol: &Volume, snap: &str) -> anyhow::Result<()> {
        let lun = self.lun(&vol.pv);
        anyhow::ensure!(lun.exists(), "volume {} has no replica yet", vol.pv);
        let (_, connected) = self.replicas(&vol.pv);
        anyhow::ensure!(
            !connected.is_empty(),
            "volume {} has no connected replica",
            vol.pv
        );
        let stores: BTreeSet<PathBuf> = connected.into_iter().map(|r| r.store).collect();
        let (pv, snap) = (vol.pv.clone(), snap.to_owned());
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            for s in stores {
                DataPlane::new(s)?
                    .snapshot_from(&pv, &snap, &lun)
                    .map_err(anyhow::Error::msg)?;
            }
            Ok(())
        })
        .await?
    }

    async fn serve_control(self: Arc<Self>, sock: UnixStream) {
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
            self.requests.lock().unwrap().push(line.clone());
            let mut parts = line.split_whitespace();
            let word = parts.next().unwrap_or_default().to_ascii_uppercase();
            let args: Vec<&str> = parts.collect();
            let lines = self.answer(&word, &args).await;
            if reader
                .get_mut()
                .write_all(framed(&lines).as_bytes())
                .await
                .is_err()
            {
                return;
            }
        }
    }

    /// Serves the control socket and keeps the LUN in line, until the process ends.
    pub async fn run(self: Arc<Self>) -> anyhow::Result<()> {
        let path = &self.cfg.control_socket;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let _ = std::fs::remove_file(path);
        let listener =
            UnixListener::bind(path).with_context(|| format!("listen on {}", path.display()))?;
        tracing::info!(socket = %path.display(), "istgt stand-in listening");
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = me.sync().await {
                    tracing::warn!(error = %format!("{e:#}"), "target sync");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        loop {
            let (sock, _) = listener.accept().await?;
            tokio::spawn(self.clone().serve_control(sock));
        }
    }
}

async fn stop(inner: &mut Inner) {
    if let Some(mut c) = inner.server.take() {
        let _ = c.kill().await;
        let _ = c.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_volume_managers_conf() {
        let cv: cstor_api::cstor::CStorVolume = serde_json::from_value(serde_json::json!({
            "apiVersion": "cstor.openebs.io/v1", "kind": "CStorVolume",
            "metadata": {"name": "pvc-1", "uid": "u-1"},
            "spec": {"targetIP": "10.96.0.7", "capacity": "1Gi", "replicationFactor": 3,
                     "consistencyFactor": 2},
        }))
        .unwrap();
        let conf = cstor_operators::volume_manager::render(&cv, &Default::default()).unwrap();
        assert_eq!(
            volume_of(&conf).unwrap(),
            Some(Volume {
                pv: "pvc-1".into(),
                size: 1 << 30,
                rf: 3,
                cf: 2,
                portal: "10.96.0.7:3260".into(),
            })
        );
        assert_eq!(volume_of(crate::images::DEFAULT_ISTGT_CONF).unwrap(), None);
        let broken = conf.replace("ReplicationFactor 3", "ReplicationFactor x");
        let err = volume_of(&broken).unwrap_err().to_string();
        assert!(err.contains("ReplicationFactor"), "{err}");
    }
}
