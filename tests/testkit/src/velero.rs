//! A stand-in for the Velero plugin `openebs.io/cstor-blockstore` (velero-plugin 3.6): the REST
//! calls it makes to the cvc-operator (found by its Service label) and the TCP data servers the
//! pool managers stream to and from (backups in on 9001, restores out on 9000). Object storage is a map in
//! memory. Tests drive backups and restores through it exactly as Velero would; what it does
//! not do is Velero's own work (creating the PVC of a restore and waiting for it to bind).
//!
//! Sockets are made through a [`Net`], so a test can place the plugin in a network namespace
//! of its own (a pod network) or on the host's loopback ([`HostNet`]).

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context as _;
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    task::JoinHandle,
};

/// Label of the cvc-operator's REST Service, the only way the plugin finds it.
pub const REST_SERVICE_LABEL: &str = "openebs.io/component-name=cvc-operator-svc";

/// Where the plugin's sockets live.
pub trait Net: Send + Sync {
    /// A connection to `addr`, in blocking mode.
    fn connect(&self, addr: SocketAddr) -> std::io::Result<std::net::TcpStream>;
    /// A listener on `addr`.
    fn listen(&self, addr: SocketAddr) -> std::io::Result<std::net::TcpListener>;
}

/// The host's network (tests on 127.0.0.1).
#[derive(Debug, Default)]
pub struct HostNet;

impl Net for HostNet {
    fn connect(&self, addr: SocketAddr) -> std::io::Result<std::net::TcpStream> {
        std::net::TcpStream::connect(addr)
    }

    fn listen(&self, addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
        std::net::TcpListener::bind(addr)
    }
}

/// The stand-in plugin.
pub struct Plugin {
    /// The cvc-operator's REST server (`<service ClusterIP>:<ports[0]>`).
    pub rest: SocketAddr,
    /// The plugin's own address, which the pools connect to.
    pub ip: IpAddr,
    /// Backup server port (upstream: 9001; 0 picks a free one).
    pub backup_port: u16,
    /// Restore server port (upstream: 9000; 0 picks a free one).
    pub restore_port: u16,
    /// Status poll period (upstream: 5 s).
    pub poll_every: Duration,
    /// How long a backup or restore may take before the plugin gives up.
    pub deadline: Duration,
    net: Arc<dyn Net>,
    /// The object store: object name → bytes.
    objects: Arc<Mutex<BTreeMap<String, Vec<u8>>>>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("rest", &self.rest)
            .field("ip", &self.ip)
            .finish()
    }
}

/// The schedule a Velero backup belongs to: its name without a trailing `-<YYYYMMDDhhmmss>`.
pub fn schedule_of(backup: &str) -> &str {
    match backup.rsplit_once('-') {
        Some((schedule, stamp))
            if stamp.len() == 14 && stamp.bytes().all(|b| b.is_ascii_digit()) =>
        {
            schedule
        }
        _ => backup,
    }
}

/// The remote object of a volume's snapshot (no prefix configured: the name starts with `-`).
pub fn object_name(pv: &str, backup: &str) -> String {
    format!("backups/{backup}/-{pv}-{backup}")
}

/// What a REST call answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

impl Plugin {
    pub fn new(rest: SocketAddr, ip: IpAddr, net: Arc<dyn Net>) -> Self {
        Self {
            rest,
            ip,
            backup_port: 9001,
            restore_port: 9000,
            poll_every: Duration::from_secs(5),
            deadline: Duration::from_secs(300),
            net,
            objects: Arc::default(),
        }
    }

    /// The stored object of a volume's snapshot.
    pub fn object(&self, pv: &str, backup: &str) -> Option<Vec<u8>> {
        self.objects
            .lock()
            .unwrap()
            .get(&object_name(pv, backup))
            .cloned()
    }

    /// One REST request as the plugin makes it (JSON body, even on GET).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Reply> {
        let body = body.map(Value::to_string).unwrap_or_default();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: cvc-operator-service\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let (net, rest) = (self.net.clone(), self.rest);
        let std = tokio::task::spawn_blocking(move || net.connect(rest))
            .await?
            .with_context(|| format!("connecting to the cvc-operator at {rest}"))?;
        std.set_nonblocking(true)?;
        let mut tcp = tokio::net::TcpStream::from_std(std)?;
        tcp.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        tcp.read_to_end(&mut raw).await?;
        parse_response(&raw)
    }

    /// A backup as `CreateSnapshot` makes it: POST, then (remote) serve the stream, poll until
    /// a final status, clean up with DELETE. Returns the snapshot ID.
    pub async fn backup(
        &self,
        pvc_ns: &str,
        pv: &str,
        backup: &str,
        local: bool,
    ) -> anyhow::Result<String> {
        let schedule = schedule_of(backup);
        let server = if local {
            None
        } else {
            Some(
                self.serve(
                    self.backup_port,
                    Direction::Receive(object_name(pv, backup)),
                )
                .await?,
            )
        };
        let dest = server
            .as_ref()
            .map(|s| s.addr.to_string())
            .unwrap_or_default();
        let body = json!({
            "apiVersion": "openebs.io/v1alpha1", "kind": "CStorBackup",
            "metadata": {"namespace": pvc_ns},
            "spec": {"backupName": schedule, "volumeName": pv, "snapName": backup,
                "prevSnapName": "", "backupDest": dest, "localSnap": local},
            "status": ""
        });
        let reply = self.call("POST", "/latest/backups/", Some(&body)).await?;
        if reply.status != 200 {
            return Err(anyhow::anyhow!(
                "backup POST: status {}, response={}",
                reply.status,
                reply.body
            ));
        }
        let id = format!("{pv}-velero-bkp-{backup}");
        let Some(server) = server else {
            return Ok(id);
        };
        let (status, prev) = self
            .poll("/latest/backups/", &body, |v| {
                let s = v["status"].as_str().unwrap_or_default().to_string();
                let prev = v["spec"]["prevSnapName"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                (s, prev)
            })
            .await;
        server.stop().await;
        // Clean-up as the plugin does it: a scheduled Done backup removes the previous one.
        let cleanup = if schedule != backup && status == "Done" {
            (!prev.is_empty()).then_some(prev)
        } else {
            Some(backup.to_string())
        };
        if let Some(snap) = cleanup {
            let path =
                format!("/latest/backups/{snap}?volume={pv}&namespace={pvc_ns}&schedule={backup}");
            match self.call("DELETE", &path, None).await {
                Ok(r) if r.status == 200 => {}
                other => tracing::warn!(?other, "backup clean-up DELETE failed"),
            }
        }
        if status == "Done" {
            Ok(id)
        } else {
            Err(anyhow::anyhow!(
                "Failed to upload snapshot, status:{{{status}}}"
            ))
        }
    }

    /// A remote restore of `source_pv`'s snapshot `backup` into `new_pv` (whose PVC the
    /// caller created and bound): POST, serve the stream to every replica, poll to a final
    /// status.
    pub async fn restore(
        &self,
        openebs_ns: &str,
        source_pv: &str,
        backup: &str,
        new_pv: &str,
        storage_class: &str,
    ) -> anyhow::Result<()> {
        let object = object_name(source_pv, backup);
        if !self.objects.lock().unwrap().contains_key(&object) {
            return Err(anyhow::anyhow!("no object {object} in the store"));
        }
        let server = self
            .serve(self.restore_port, Direction::Send(object))
            .await?;
        let body = json!({
            "apiVersion": "openebs.io/v1alpha1", "kind": "CStorRestore",
            "metadata": {"namespace": openebs_ns},
            "spec": {"restoreName": backup, "volumeName": new_pv,
                "restoreSrc": server.addr.to_string(), "maxretrycount": 0, "retrycount": 0,
                "storageClass": storage_class, "size": "0", "localRestore": false},
            "status": ""
        });
        let reply = self.call("POST", "/latest/restore/", Some(&body)).await?;
        if reply.status != 200 {
            server.stop().await;
            return Err(anyhow::anyhow!(
                "restore POST: status {}, response={}",
                reply.status,
                reply.body
            ));
        }
        let (status, ()) = self
            .poll("/latest/restore/", &body, |v| {
                (v.as_str().unwrap_or_default().to_string(), ())
            })
            .await;
        server.stop().await;
        if status == "Done" {
            Ok(())
        } else {
            Err(anyhow::anyhow!("failed to restore.. status {{{status}}}"))
        }
    }

    /// A local restore (`local: true`): the REST server makes `cstor-clone-<uuid>`, a clone of
    /// `source_pv`'s snapshot `backup`, in the StorageClass's pool cluster; no data moves.
    /// Returns the clone's volume name.
    pub async fn restore_local(
        &self,
        openebs_ns: &str,
        source_pv: &str,
        backup: &str,
        storage_class: &str,
        size: &str,
    ) -> anyhow::Result<String> {
        let clone = format!("cstor-clone-{}", uuid::Uuid::new_v4());
        let body = json!({
            "apiVersion": "openebs.io/v1alpha1", "kind": "CStorRestore",
            "metadata": {"namespace": openebs_ns},
            "spec": {"restoreName": backup, "volumeName": clone, "restoreSrc": source_pv,
                "maxretrycount": 0, "retrycount": 0, "storageClass": storage_class,
                "size": size, "localRestore": true},
            "status": ""
        });
        let reply = self.call("POST", "/latest/restore/", Some(&body)).await?;
        if reply.status != 200 {
            return Err(anyhow::anyhow!(
                "local restore POST: status {}, response={}",
                reply.status,
                reply.body
            ));
        }
        Ok(clone)
    }

    /// Polls a status route until `Done`, `Failed` or `Invalid` (or the deadline: `Timeout`).
    async fn poll<T: Default>(
        &self,
        path: &str,
        body: &Value,
        read: impl Fn(&Value) -> (String, T),
    ) -> (String, T) {
        let end = tokio::time::Instant::now() + self.deadline;
        loop {
            match self.call("GET", path, Some(body)).await {
                Ok(r) if r.status == 200 => {
                    if let Ok(v) = serde_json::from_str::<Value>(&r.body) {
                        let (status, extra) = read(&v);
                        if matches!(status.as_str(), "Done" | "Failed" | "Invalid") {
                            return (status, extra);
                        }
                    }
                }
                other => tracing::debug!(?other, path, "status poll"),
            }
            if tokio::time::Instant::now() >= end {
                return ("Timeout".into(), T::default());
            }
            tokio::time::sleep(self.poll_every).await;
        }
    }

    /// Starts a data server on `<ip>:<port>`.
    async fn serve(&self, port: u16, direction: Direction) -> anyhow::Result<Server> {
        let (net, addr) = (self.net.clone(), SocketAddr::new(self.ip, port));
        let std = tokio::task::spawn_blocking(move || net.listen(addr)).await??;
        std.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(std)?;
        let addr = listener.local_addr()?;
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let objects = self.objects.clone();
        let task = tokio::spawn(async move {
            let mut connections: Vec<JoinHandle<()>> = Vec::new();
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    accepted = listener.accept() => {
                        let Ok((tcp, peer)) = accepted else { continue };
                        let (objects, direction) = (objects.clone(), direction.clone());
                        connections.push(tokio::spawn(async move {
                            if let Err(e) = direction.run(tcp, &objects).await {
                                tracing::warn!(%peer, error = %e, "data connection failed");
                            }
                        }));
                    }
                }
            }
            // Streams already connected run to their end.
            for c in connections {
                let _ = c.await;
            }
        });
        Ok(Server { addr, stop, task })
    }
}

/// Marks the CVRs of `pv` `openebs.io/restore-completed: "true"` (the plugin's
/// `autoSetTargetIP`), so their pools point them at the target.
pub async fn complete_restore(
    client: &kube::Client,
    ns: &str,
    pv: &str,
) -> Result<usize, kube::Error> {
    use kube::api::{ListParams, Patch, PatchParams};
    let api: kube::Api<kube::api::DynamicObject> = kube::Api::namespaced_with(
        client.clone(),
        ns,
        &kube::api::ApiResource {
            group: "cstor.openebs.io".into(),
            version: "v1".into(),
            api_version: "cstor.openebs.io/v1".into(),
            kind: "CStorVolumeReplica".into(),
            plural: "cstorvolumereplicas".into(),
        },
    );
    let list = api
        .list(&ListParams::default().labels(&format!("openebs.io/persistent-volume={pv}")))
        .await?;
    let patch = json!({"metadata": {"annotations": {"openebs.io/restore-completed": "true"}}});
    for cvr in &list.items {
        let name = cvr.metadata.name.clone().unwrap_or_default();
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    Ok(list.items.len())
}

#[derive(Clone)]
enum Direction {
    /// Backup: store what the pool sends under this object name (the last connection wins).
    Receive(String),
    /// Restore: send this object to every connection, then close.
    Send(String),
}

impl Direction {
    async fn run(
        &self,
        mut tcp: tokio::net::TcpStream,
        objects: &Mutex<BTreeMap<String, Vec<u8>>>,
    ) -> std::io::Result<()> {
        match self {
            Direction::Receive(name) => {
                let mut data = Vec::new();
                tcp.read_to_end(&mut data).await?;
                objects.lock().unwrap().insert(name.clone(), data);
            }
            Direction::Send(name) => {
                tcp.set_nodelay(true)?;
                let data = objects
                    .lock()
                    .unwrap()
                    .get(name)
                    .cloned()
                    .unwrap_or_default();
                tcp.write_all(&data).await?;
                tcp.shutdown().await?;
            }
        }
        Ok(())
    }
}

struct Server {
    addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Server {
    /// Stops accepting; waits for the connected streams to end.
    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

fn parse_response(raw: &[u8]) -> anyhow::Result<Reply> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("no HTTP header in {text:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no status in {head:?}"))?;
    let chunked = head
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding:") && l.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok(Reply { status, body })
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_drop_only_a_timestamp_suffix() {
        assert_eq!(schedule_of("nightly-20240102000000"), "nightly");
        assert_eq!(schedule_of("nightly-2024"), "nightly-2024");
        assert_eq!(schedule_of("one-off"), "one-off");
    }

    #[test]
    fn responses_parse_with_and_without_chunking() {
        let r =
            parse_response(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 3\r\n\r\nbad").unwrap();
        assert_eq!((r.status, r.body.as_str()), (400, "bad"));
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4\r\n\"Don\r\n2\r\ne\"\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, "\"Done\""));
    }
}
