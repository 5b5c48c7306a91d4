//! The kubelet of the local runtime: runs every Pod bound to one of its nodes (in the
//! namespaces it manages) as processes, one network namespace per Pod, one mount namespace per
//! container with the Pod's volumes bound where the spec mounts them; restarts containers that
//! exit; writes Pod status (phase, IP, container states) back; stops and cleans up Pods that are
//! deleted.

use std::{
    collections::{BTreeMap, BTreeSet},
    ffi::CString,
    fs::File,
    net::{Ipv4Addr, SocketAddr},
    os::{fd::AsRawFd, unix::process::CommandExt as _},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context as _;
use futures::StreamExt;
use k8s_openapi::{
    ByteString,
    api::{
        authentication::v1::{TokenRequest, TokenRequestSpec},
        core::v1::{ConfigMap, Container, Pod, Secret, Service, ServiceAccount},
    },
    jiff::Timestamp,
};
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, Patch, PatchParams, PostParams},
    runtime::{WatchStreamExt, watcher},
};
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};

use crate::{
    images::{Launch, Programs},
    netns::{Network, in_netns, netns_path},
    podspec::{self, PodFacts, Refs, VolumeSource},
};

/// How Pods reach the API server: a forwarder on `127.0.0.1:<port>` inside each Pod's network
/// namespace, to `upstream` (the server, seen from this machine), and the credentials they use.
#[derive(Clone, Debug)]
pub enum ApiAccess {
    /// The embedded API server: plain HTTP, no credentials.
    Plain { upstream: SocketAddr },
    /// A real API server: HTTPS with this CA, a token of the Pod's ServiceAccount (TokenRequest).
    Tls {
        upstream: SocketAddr,
        ca_data: String,
    },
}

impl ApiAccess {
    fn upstream(&self) -> SocketAddr {
        match self {
            ApiAccess::Plain { upstream } | ApiAccess::Tls { upstream, .. } => *upstream,
        }
    }
}

/// Settings of the node runtime.
#[derive(Clone, Debug)]
pub struct KubeletConfig {
    pub state_dir: PathBuf,
    pub nodes: Vec<String>,
    /// Pods of these namespaces are run; others bound to our nodes are reported and left alone.
    pub namespaces: BTreeSet<String>,
    pub programs: Programs,
    pub api: ApiAccess,
    /// `RUST_LOG` given to our binaries.
    pub rust_log: Option<String>,
}

/// A container this runtime did not start, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    pub pod: String,
    pub container: String,
    pub reason: String,
}

struct RunningPod {
    key: String,
    uid: String,
    netns: String,
    ip: Ipv4Addr,
    labels: BTreeMap<String, String>,
    namespace: String,
    stopping: watch::Sender<bool>,
    pids: Arc<Mutex<BTreeMap<String, u32>>>,
    /// The API forwarder first, then one supervisor per container.
    tasks: Vec<JoinHandle<()>>,
    pod_dir: PathBuf,
}

/// The node runtime.
pub struct Kubelet {
    client: Client,
    cfg: KubeletConfig,
    network: Arc<Network>,
    pods: Mutex<BTreeMap<String, RunningPod>>,
    skipped: Mutex<Vec<Skipped>>,
    restarts: Mutex<BTreeMap<String, u32>>,
}

impl std::fmt::Debug for Kubelet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kubelet")
            .field("nodes", &self.cfg.nodes)
            .finish()
    }
}

fn pod_key(pod: &Pod) -> String {
    format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any())
}

impl Kubelet {
    pub fn new(client: Client, cfg: KubeletConfig, network: Arc<Network>) -> Arc<Kubelet> {
        Arc::new(Kubelet {
            client,
            cfg,
            network,
            pods: Mutex::new(BTreeMap::new()),
            skipped: Mutex::new(Vec::new()),
            restarts: Mutex::new(BTreeMap::new()),
        })
    }

    /// Containers not run, with the reason.
    pub fn skipped(&self) -> Vec<Skipped> {
        self.skipped.lock().unwrap().clone()
    }

    /// `ns/pod` of every running Pod.
    pub fn running(&self) -> Vec<String> {
        self.pods.lock().unwrap().keys().cloned().collect()
    }

    /// How often each container (`ns/pod/container`) was restarted after exiting.
    pub fn restarts(&self) -> BTreeMap<String, u32> {
        self.restarts.lock().unwrap().clone()
    }

    /// The network namespace and address of a running Pod.
    pub fn pod_network(&self, key: &str) -> Option<(String, Ipv4Addr)> {
        self.pods
            .lock()
            .unwrap()
            .get(key)
            .map(|p| (p.netns.clone(), p.ip))
    }

    /// The pid of a running container (`ns/pod`, container name).
    pub fn container_pid(&self, key: &str, container: &str) -> Option<u32> {
        let pods = self.pods.lock().unwrap();
        let p = pods.get(key)?;
        p.pids.lock().unwrap().get(container).copied()
    }

    /// The directory of a Pod's volume on this machine (emptyDir and friends).
    pub fn pod_dir(&self, key: &str) -> Option<PathBuf> {
        self.pods
            .lock()
            .unwrap()
            .get(key)
            .map(|p| p.pod_dir.clone())
    }

    /// A node's directory (its hostPath volumes live below it).
    pub fn node_dir(&self, node: &str) -> PathBuf {
        self.cfg.state_dir.join("nodes").join(node)
    }

    /// The log file of a container.
    pub fn log_path(&self, namespace: &str, pod: &str, container: &str) -> PathBuf {
        self.cfg
            .state_dir
            .join("logs")
            .join(format!("{namespace}_{pod}_{container}.log"))
    }

    /// Watches Pods and Services until the stream ends.
    pub async fn run(self: Arc<Self>) {
        let pods: Api<Pod> = Api::all(self.client.clone());
        let svcs: Api<Service> = Api::all(self.client.clone());
        let me = self.clone();
        let svc_task = tokio::spawn(async move {
            let mut s = std::pin::pin!(
                watcher(svcs, watcher::Config::default())
                    .default_backoff()
                    .applied_objects()
            );
            while let Some(ev) = s.next().await {
                if let Ok(svc) = ev {
                    me.service_changed(&svc);
                }
            }
        });
        let mut stream =
            std::pin::pin!(watcher(pods, watcher::Config::default()).default_backoff());
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => {
                    self.clone().pod_seen(p).await
                }
                Ok(watcher::Event::Delete(p)) => {
                    let key = pod_key(&p);
                    self.stop(&key, p.uid().as_deref()).await;
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "pod watch"),
            }
        }
        svc_task.abort();
    }

    fn ours(&self, pod: &Pod) -> bool {
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .unwrap_or("");
        self.cfg.nodes.iter().any(|n| n == node)
            && self
                .cfg
                .namespaces
                .contains(pod.namespace().as_deref().unwrap_or(""))
    }

    async fn pod_seen(self: Arc<Self>, pod: Pod) {
        if !self.ours(&pod) {
            return;
        }
        let key = pod_key(&pod);
        if pod.metadata.deletion_timestamp.is_some() {
            self.stop(&key, pod.uid().as_deref()).await;
            // The kubelet confirms a graceful deletion once the containers are gone.
            let api: Api<Pod> =
                Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
            let mut dp = DeleteParams::default().grace_period(0);
            dp.preconditions = Some(kube::api::Preconditions {
                uid: pod.uid(),
                resource_version: None,
            });
            let _ = api.delete(&pod.name_any(), &dp).await;
            return;
        }
        let phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .unwrap_or("Pending");
        if matches!(phase, "Succeeded" | "Failed") {
            return;
        }
        {
            let pods = self.pods.lock().unwrap();
            if pods.contains_key(&key) {
                return;
            }
        }
        if let Err(e) = self.clone().start(pod.clone()).await {
            tracing::warn!(pod = %key, error = format!("{e:#}"), "cannot start pod");
            let api: Api<Pod> =
                Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
            let _ = api
                .patch_status(
                    &pod.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(serde_json::json!({"status": {"phase": "Pending", "message": format!("local runtime: {e:#}")}})),
                )
                .await;
        }
    }

    fn service_changed(&self, svc: &Service) {
        let Some(spec) = &svc.spec else { return };
        let Some(ip) = spec
            .cluster_ip
            .as_deref()
            .filter(|ip| !ip.is_empty() && *ip != "None")
        else {
            return;
        };
        let Some(sel) = spec.selector.as_ref().filter(|s| !s.is_empty()) else {
            return;
        };
        let ns = svc.namespace().unwrap_or_default();
        let pods = self.pods.lock().unwrap();
        for p in pods.values() {
            if p.namespace == ns
                && sel.iter().all(|(k, v)| p.labels.get(k) == Some(v))
                && let Err(e) = self.network.add_address(&p.netns, ip)
            {
                tracing::warn!(pod = %p.key, error = %e, "cannot add the Service address");
            }
        }
    }

    async fn start(self: Arc<Self>, pod: Pod) -> anyhow::Result<()> {
        let key = pod_key(&pod);
        let ns = pod.namespace().unwrap_or_default();
        let name = pod.name_any();
        let spec = pod.spec.clone().unwrap_or_default();
        let node = spec.node_name.clone().unwrap_or_default();
        let uid = pod.uid().unwrap_or_default();
        // Short: unix sockets in these directories are reached by path (at most 107 bytes).
        let pod_dir = self.cfg.state_dir.join("p").join(&uid[..uid.len().min(8)]);
        let node_dir = self.node_dir(&node);
        std::fs::create_dir_all(&pod_dir)?;
        std::fs::create_dir_all(self.cfg.state_dir.join("logs"))?;

        let (netns, ip) = self.network.add(&name)?;
        let labels = pod.labels().clone();
        // Service addresses of the Services selecting this Pod.
        let svcs: Api<Service> = Api::namespaced(self.client.clone(), &ns);
        for svc in svcs.list(&Default::default()).await?.items {
            let Some(s) = svc.spec else { continue };
            let (Some(sel), Some(cip)) = (s.selector, s.cluster_ip) else {
                continue;
            };
            if !sel.is_empty()
                && cip != "None"
                && !cip.is_empty()
                && sel.iter().all(|(k, v)| labels.get(k) == Some(v))
            {
                self.network.add_address(&netns, &cip)?;
            }
        }
        // The API server, on the Pod's loopback.
        let upstream = self.cfg.api.upstream();
        let port = upstream.port();
        let listener = in_netns(&netns, move || {
            let l = std::net::TcpListener::bind(("127.0.0.1", port))?;
            l.set_nonblocking(true)?;
            Ok(l)
        })?;
        let listener = TcpListener::from_std(listener)?;
        let proxy = tokio::spawn(forward(listener, upstream));
        let kubeconfig = pod_dir.join("kubeconfig");
        let sa = spec
            .service_account_name
            .clone()
            .unwrap_or_else(|| "default".into());
        self.write_kubeconfig(&kubeconfig, &ns, &sa, port).await?;

        // Volumes.
        let mut vol_dirs = BTreeMap::new();
        for v in spec.volumes.iter().flatten() {
            match podspec::volume_dir(v, &node_dir, &pod_dir) {
                VolumeSource::Dir(d) => {
                    std::fs::create_dir_all(&d)
                        .with_context(|| format!("volume {}: {}", v.name, d.display()))?;
                    if let Some(cm) = &v.config_map {
                        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &ns);
                        if let Some(c) = api.get_opt(&cm.name).await? {
                            let mode = cm.default_mode.unwrap_or(0o644) as u32;
                            for (k, val) in c.data.unwrap_or_default() {
                                std::fs::write(d.join(&k), val)?;
                                std::fs::set_permissions(
                                    d.join(&k),
                                    std::os::unix::fs::PermissionsExt::from_mode(mode),
                                )?;
                            }
                        }
                    }
                    if let Some(sec) = &v.secret {
                        let api: Api<Secret> = Api::namespaced(self.client.clone(), &ns);
                        if let Some(s) = api
                            .get_opt(sec.secret_name.as_deref().unwrap_or(""))
                            .await?
                        {
                            for (k, ByteString(val)) in s.data.unwrap_or_default() {
                                std::fs::write(d.join(k), val)?;
                            }
                        }
                    }
                    vol_dirs.insert(v.name.clone(), d);
                }
                VolumeSource::Unsupported(why) => anyhow::bail!(why),
            }
        }
        let refs = self.env_refs(&pod).await?;
        let facts = PodFacts {
            pod_ip: ip.to_string(),
            host_ip: self.network.host_ip().to_string(),
        };

        let (stopping, stop_rx) = watch::channel(false);
        let pids = Arc::new(Mutex::new(BTreeMap::new()));
        let mut tasks = vec![proxy];
        let statuses: Arc<Mutex<Vec<serde_json::Value>>> = Arc::new(Mutex::new(Vec::new()));
        let (started, started_rx) = watch::channel(false);
        let writer = StatusWriter {
            api: Api::namespaced(self.client.clone(), &ns),
            pod: name.clone(),
            statuses: statuses.clone(),
            started: started_rx,
        };
        let restart = RestartPolicy::of(&spec);
        for c in &spec.containers {
            let env = podspec::container_env(&pod, c, &facts, &refs).map_err(anyhow::Error::msg)?;
            let (command, args) = podspec::command_line(c, &env);
            let launch = self
                .cfg
                .programs
                .launch(c.image.as_deref().unwrap_or(""), command, args);
            match launch {
                Launch::Skip(reason) => {
                    tracing::info!(pod = %key, container = %c.name, %reason, "container not run");
                    self.skipped.lock().unwrap().push(Skipped {
                        pod: key.clone(),
                        container: c.name.clone(),
                        reason: reason.clone(),
                    });
                    statuses.lock().unwrap().push(serde_json::json!({
                        "name": c.name, "image": c.image, "imageID": "", "ready": false, "restartCount": 0,
                        "state": {"waiting": {"reason": "NotRunLocally", "message": reason}},
                    }));
                }
                Launch::Run {
                    program,
                    args,
                    env: extra,
                    defaults,
                    path,
                    pod_dirs,
                    node_env,
                } => {
                    let mut mounts = container_mounts(c, &vol_dirs)?;
                    for (dir, target) in pod_dirs {
                        mounts.push(Mount {
                            source: pod_dir.join(dir),
                            target: PathBuf::from(target),
                            read_only: false,
                        });
                    }
                    let sa_dir = pod_dir.join("serviceaccount");
                    let in_cluster = sa_dir.exists();
                    if in_cluster {
                        mounts.push(Mount {
                            source: sa_dir,
                            target: PathBuf::from(SERVICE_ACCOUNT_DIR),
                            read_only: true,
                        });
                    }
                    let mut full_env = vec![
                        ("PATH".to_string(), path_var(&path)),
                        ("HOME".into(), "/root".into()),
                        ("HOSTNAME".into(), name.clone()),
                        (
                            "KUBECONFIG".into(),
                            kubeconfig.to_string_lossy().into_owned(),
                        ),
                    ];
                    if in_cluster {
                        full_env.push(("KUBERNETES_SERVICE_HOST".into(), "127.0.0.1".into()));
                        full_env.push(("KUBERNETES_SERVICE_PORT".into(), port.to_string()));
                    }
                    if let Some(l) = &self.cfg.rust_log {
                        full_env.push(("RUST_LOG".into(), l.clone()));
                    }
                    full_env.extend(env);
                    full_env.extend(extra);
                    let node_dir = self.node_dir(&node);
                    full_env.extend(
                        node_env
                            .into_iter()
                            .map(|(k, rel)| (k, node_dir.join(rel).to_string_lossy().into_owned())),
                    );
                    let spec = ProcSpec {
                        key: key.clone(),
                        container: c.name.clone(),
                        program,
                        args,
                        env: full_env,
                        netns: netns.clone(),
                        mounts,
                        defaults,
                        log: self.log_path(&ns, &name, &c.name),
                        restart,
                    };
                    statuses.lock().unwrap().push(serde_json::json!({
                        "name": c.name, "image": c.image, "imageID": "", "ready": true, "started": true, "restartCount": 0,
                        "state": {"running": {"startedAt": Timestamp::now().to_string()}},
                    }));
                    tasks.push(tokio::spawn(supervise(
                        self.clone(),
                        spec,
                        stop_rx.clone(),
                        pids.clone(),
                        writer.clone(),
                    )));
                }
            }
        }
        self.pods.lock().unwrap().insert(
            key.clone(),
            RunningPod {
                key: key.clone(),
                uid: uid.clone(),
                netns,
                ip,
                labels,
                namespace: ns.clone(),
                stopping,
                pids,
                tasks,
                pod_dir,
            },
        );
        let now = Timestamp::now().to_string();
        let cond =
            |t: &str| serde_json::json!({"type": t, "status": "True", "lastTransitionTime": now});
        let status = serde_json::json!({"status": {
            "phase": "Running",
            "podIP": ip.to_string(),
            "podIPs": [{"ip": ip.to_string()}],
            "hostIP": self.network.host_ip().to_string(),
            "startTime": now,
            "conditions": [cond("Initialized"), cond("Ready"), cond("ContainersReady"), cond("PodScheduled")],
            "containerStatuses": statuses.lock().unwrap().clone(),
        }});
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(status))
            .await?;
        // A container that already ended writes its state after this.
        let _ = started.send(true);
        tracing::info!(pod = %key, %ip, node = %node, "pod running");
        Ok(())
    }

    async fn env_refs(&self, pod: &Pod) -> anyhow::Result<Refs> {
        let ns = pod.namespace().unwrap_or_default();
        let mut refs = Refs::default();
        for c in pod.spec.iter().flat_map(|s| &s.containers) {
            for e in c.env.iter().flatten() {
                let Some(from) = &e.value_from else { continue };
                if let Some(r) = &from.config_map_key_ref {
                    let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &ns);
                    if let Some(cm) = api.get_opt(&r.name).await? {
                        refs.config_maps
                            .insert(format!("{ns}/{}", r.name), cm.data.unwrap_or_default());
                    }
                }
                if let Some(r) = &from.secret_key_ref {
                    let api: Api<Secret> = Api::namespaced(self.client.clone(), &ns);
                    if let Some(s) = api.get_opt(&r.name).await? {
                        let data = s
                            .data
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(k, ByteString(v))| (k, String::from_utf8_lossy(&v).into_owned()))
                            .collect();
                        refs.secrets.insert(format!("{ns}/{}", r.name), data);
                    }
                }
            }
        }
        Ok(refs)
    }

    async fn write_kubeconfig(
        &self,
        path: &Path,
        ns: &str,
        sa: &str,
        port: u16,
    ) -> anyhow::Result<()> {
        let text = match &self.cfg.api {
            ApiAccess::Plain { .. } => format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: local\n  cluster:\n    server: http://127.0.0.1:{port}\nusers:\n- name: pod\n  user: {{}}\ncontexts:\n- name: pod\n  context:\n    cluster: local\n    user: pod\n    namespace: {ns}\ncurrent-context: pod\n"
            ),
            ApiAccess::Tls { ca_data, .. } => {
                let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), ns);
                let req = TokenRequest {
                    spec: TokenRequestSpec {
                        audiences: vec![],
                        expiration_seconds: Some(24 * 3600),
                        ..Default::default()
                    },
                    ..Default::default()
                };
                let tr = api
                    .create_token_request(sa, &PostParams::default(), &req)
                    .await
                    .with_context(|| format!("token for ServiceAccount {ns}/{sa}"))?;
                let token = tr.status.map(|s| s.token).unwrap_or_default();
                // The in-cluster files, as the kubelet projects them (for programs that use the
                // in-cluster configuration rather than KUBECONFIG, like the CSI sidecars).
                let sa_dir = path.with_file_name("serviceaccount");
                std::fs::create_dir_all(&sa_dir)?;
                std::fs::write(sa_dir.join("token"), &token)?;
                std::fs::write(sa_dir.join("namespace"), ns)?;
                std::fs::write(
                    sa_dir.join("ca.crt"),
                    base64_decode(ca_data)
                        .context("the kubeconfig's certificate-authority-data")?,
                )?;
                let ca = ca_data;
                format!(
                    "apiVersion: v1\nkind: Config\nclusters:\n- name: local\n  cluster:\n    server: https://127.0.0.1:{port}\n    certificate-authority-data: {ca}\nusers:\n- name: pod\n  user:\n    token: {token}\ncontexts:\n- name: pod\n  context:\n    cluster: local\n    user: pod\n    namespace: {ns}\ncurrent-context: pod\n"
                )
            }
        };
        std::fs::write(path, text)?;
        Ok(())
    }

    /// Stops a Pod's containers (TERM, then KILL after 10 s), its forwarder and network.
    /// With `uid`, only the Pod of that uid: a Pod recreated under the same name (a StatefulSet's)
    /// is not stopped by its predecessor's deletion.
    pub async fn stop(&self, key: &str, uid: Option<&str>) {
        let p = {
            let mut pods = self.pods.lock().unwrap();
            match pods.get(key) {
                Some(p) if uid.is_none_or(|u| u == p.uid) => pods.remove(key),
                _ => None,
            }
        };
        let Some(p) = p else {
            return;
        };
        let mut p = p;
        let _ = p.stopping.send(true);
        let signal = |sig| {
            for pid in p.pids.lock().unwrap().values() {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid as i32), sig);
            }
        };
        signal(nix::sys::signal::Signal::SIGTERM);
        // Each supervisor returns once its process has exited; KILL what is left after 10 s.
        {
            let supervisors = futures::future::join_all(p.tasks.iter_mut().skip(1));
            tokio::pin!(supervisors);
            if tokio::time::timeout(Duration::from_secs(10), &mut supervisors)
                .await
                .is_err()
            {
                signal(nix::sys::signal::Signal::SIGKILL);
                let _ = tokio::time::timeout(Duration::from_secs(5), supervisors).await;
            }
        }
        for t in &p.tasks {
            t.abort();
        }
        self.network.remove(&p.netns);
        let _ = std::fs::remove_dir_all(&p.pod_dir);
        tracing::info!(pod = %key, "pod stopped");
    }

    /// Stops every Pod.
    pub async fn shutdown(&self) {
        let keys = self.running();
        futures::future::join_all(keys.iter().map(|k| self.stop(k, None))).await;
    }
}

/// Where the kubelet projects a Pod's ServiceAccount token, CA and namespace.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Standard base64 (with padding; whitespace ignored).
fn base64_decode(text: &str) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
    {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => anyhow::bail!("invalid base64 character {:?}", c as char),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Ok(out)
}

fn path_var(first: &[PathBuf]) -> String {
    let mut parts: Vec<String> = first
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    parts.extend(
        [
            "/usr/local/sbin",
            "/usr/local/bin",
            "/usr/sbin",
            "/usr/bin",
            "/sbin",
            "/bin",
        ]
        .map(String::from),
    );
    parts.join(":")
}

/// One bind mount of a container: host source → container path.
#[derive(Clone, Debug)]
pub struct Mount {
    pub source: PathBuf,
    pub target: PathBuf,
    pub read_only: bool,
}

fn container_mounts(c: &Container, vols: &BTreeMap<String, PathBuf>) -> anyhow::Result<Vec<Mount>> {
    let mut out = Vec::new();
    for m in c.volume_mounts.iter().flatten() {
        let src = vols.get(&m.name).with_context(|| {
            format!(
                "container {}: volumeMount {} names no volume",
                c.name, m.name
            )
        })?;
        let src = match m.sub_path.as_deref().filter(|s| !s.is_empty()) {
            Some(sp) => src.join(sp),
            None => src.clone(),
        };
        out.push(Mount {
            source: src,
            target: PathBuf::from(&m.mount_path),
            read_only: m.read_only == Some(true),
        });
    }
    // Shorter targets first, so nested mounts land on top of their parents.
    out.sort_by_key(|m| m.target.components().count());
    Ok(out)
}

/// Where a container path is on this machine, through the container's mounts.
pub fn host_path_of(mounts: &[Mount], container_path: &str) -> PathBuf {
    let p = Path::new(container_path);
    mounts
        .iter()
        .rev()
        .find_map(|m| {
            p.strip_prefix(&m.target)
                .ok()
                .map(|rest| m.source.join(rest))
        })
        .unwrap_or_else(|| p.to_path_buf())
}

struct ProcSpec {
    key: String,
    container: String,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    netns: String,
    mounts: Vec<Mount>,
    defaults: Vec<(String, String)>,
    log: PathBuf,
    restart: RestartPolicy,
}

/// The Pod's `restartPolicy`: what happens when a container exits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

impl RestartPolicy {
    fn of(spec: &k8s_openapi::api::core::v1::PodSpec) -> Self {
        match spec.restart_policy.as_deref() {
            Some("Never") => Self::Never,
            Some("OnFailure") => Self::OnFailure,
            _ => Self::Always,
        }
    }

    /// Whether a container that exited with `code` runs again.
    fn restarts(self, code: i32) -> bool {
        match self {
            Self::Always => true,
            Self::OnFailure => code != 0,
            Self::Never => false,
        }
    }
}

/// Runs a container until its Pod stops, restarting it (with back-off) when it exits.
async fn supervise(
    kubelet: Arc<Kubelet>,
    spec: ProcSpec,
    mut stop: watch::Receiver<bool>,
    pids: Arc<Mutex<BTreeMap<String, u32>>>,
    writer: StatusWriter,
) {
    for (path, content) in &spec.defaults {
        let file = host_path_of(&spec.mounts, path);
        if !file.exists()
            && let Err(e) = std::fs::write(&file, content)
        {
            tracing::warn!(pod = %spec.key, container = %spec.container, file = %file.display(), error = %e, "cannot write the image's default file");
        }
    }
    let mut backoff = Duration::from_millis(500);
    loop {
        if *stop.borrow() {
            return;
        }
        let started = tokio::time::Instant::now();
        match spawn(&spec) {
            Ok(mut child) => {
                if let Some(pid) = child.id() {
                    pids.lock().unwrap().insert(spec.container.clone(), pid);
                }
                // The Pod's stop signals the process; either way it is reaped here.
                let status = child.wait().await;
                pids.lock().unwrap().remove(&spec.container);
                if *stop.borrow() {
                    return;
                }
                let code = status.as_ref().ok().and_then(|s| s.code()).unwrap_or(-1);
                if !spec.restart.restarts(code) {
                    tracing::info!(pod = %spec.key, container = %spec.container, code, "container ended");
                    writer.terminated(&spec.container, code, &mut stop).await;
                    return;
                }
                tracing::warn!(pod = %spec.key, container = %spec.container, status = ?status, log = %spec.log.display(), "container exited; restarting");
                *kubelet
                    .restarts
                    .lock()
                    .unwrap()
                    .entry(format!("{}/{}", spec.key, spec.container))
                    .or_default() += 1;
                writer.restarted(&spec.container, code).await;
            }
            Err(e) => {
                tracing::warn!(pod = %spec.key, container = %spec.container, error = format!("{e:#}"), "cannot start container")
            }
        }
        if started.elapsed() > Duration::from_secs(30) {
            backoff = Duration::from_millis(500);
        }
        // Restart back-off, cut short when the Pod stops.
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

/// Writes a Pod's container statuses back when a container restarts.
#[derive(Clone)]
struct StatusWriter {
    api: Api<Pod>,
    pod: String,
    statuses: Arc<Mutex<Vec<serde_json::Value>>>,
    /// True once the Pod's Running status is written.
    started: watch::Receiver<bool>,
}

impl StatusWriter {
    /// A container ended for good (restartPolicy Never, or OnFailure and exit 0); once every
    /// container has, the Pod's phase is Succeeded (all exited 0) or Failed.
    async fn terminated(&self, container: &str, exit_code: i32, stop: &mut watch::Receiver<bool>) {
        let now = Timestamp::now().to_string();
        let (list, phase) = {
            let mut st = self.statuses.lock().unwrap();
            for c in st.iter_mut().filter(|c| c["name"] == container) {
                c["ready"] = false.into();
                c["started"] = false.into();
                c["state"] = serde_json::json!({"terminated": {"exitCode": exit_code, "finishedAt": now,
                    "reason": if exit_code == 0 { "Completed" } else { "Error" }}});
            }
            let codes: Vec<Option<i64>> = st
                .iter()
                .map(|c| c["state"]["terminated"]["exitCode"].as_i64())
                .collect();
            let phase = codes.iter().all(Option::is_some).then(|| {
                if codes.iter().all(|c| *c == Some(0)) {
                    "Succeeded"
                } else {
                    "Failed"
                }
            });
            (st.clone(), phase)
        };
        let mut started = self.started.clone();
        tokio::select! {
            _ = started.wait_for(|s| *s) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let mut patch = serde_json::json!({"status": {"containerStatuses": list}});
        if let Some(p) = phase {
            patch["status"]["phase"] = p.into();
            // A merge patch replaces the list: all four, as a kubelet reports a finished Pod.
            let cond = |t: &str, ok: bool| {
                serde_json::json!({"type": t, "status": if ok { "True" } else { "False" },
                    "lastTransitionTime": now, "reason": if ok { "" } else { "PodCompleted" }})
            };
            patch["status"]["conditions"] = serde_json::json!([
                cond("Initialized", true),
                cond("Ready", false),
                cond("ContainersReady", false),
                cond("PodScheduled", true)
            ]);
        }
        if let Err(e) = self
            .api
            .patch_status(&self.pod, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            tracing::warn!(pod = %self.pod, error = %e, "writing the ended container's status");
        }
    }

    async fn restarted(&self, container: &str, exit_code: i32) {
        let now = Timestamp::now().to_string();
        let list = {
            let mut st = self.statuses.lock().unwrap();
            for c in st.iter_mut().filter(|c| c["name"] == container) {
                let n = c["restartCount"].as_i64().unwrap_or(0) + 1;
                c["restartCount"] = n.into();
                c["lastState"] = serde_json::json!({"terminated": {"exitCode": exit_code, "finishedAt": now, "reason": if exit_code == 0 { "Completed" } else { "Error" }}});
                c["state"] = serde_json::json!({"running": {"startedAt": now}});
            }
            st.clone()
        };
        let patch = serde_json::json!({"status": {"containerStatuses": list}});
        if let Err(e) = self
            .api
            .patch_status(&self.pod, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            tracing::debug!(pod = %self.pod, error = %e, "writing container statuses");
        }
    }
}

fn cstring(p: &Path) -> anyhow::Result<CString> {
    Ok(CString::new(p.as_os_str().as_encoded_bytes())?)
}

/// Starts the container's process in the Pod's network namespace and a mount namespace of its
/// own with the volumes bound at their mount paths.
fn spawn(spec: &ProcSpec) -> anyhow::Result<tokio::process::Child> {
    let netns =
        File::open(netns_path(&spec.netns)).with_context(|| format!("netns {}", spec.netns))?;
    let mut binds = Vec::new();
    for m in &spec.mounts {
        if m.source == m.target {
            continue;
        }
        if !m.source.exists() {
            std::fs::create_dir_all(&m.source)?;
        }
        if !m.source.is_dir() && !m.target.exists() {
            // A file mount needs an existing file to land on; creating one on the host would
            // leave an empty file behind (the host's root is the containers' root here).
            tracing::warn!(pod = %spec.key, container = %spec.container, target = %m.target.display(), "file mount skipped: no such file on this machine");
            continue;
        }
        // Mount points must exist: the target and its missing parents are created (empty
        // directories; the host's root is the containers' root here).
        let mut dirs = Vec::new();
        if m.source.is_dir() {
            for a in m
                .target
                .ancestors()
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .skip(1)
            {
                dirs.push(cstring(a)?);
            }
        }
        binds.push((cstring(&m.source)?, cstring(&m.target)?, m.read_only, dirs));
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&spec.log)?;
    let mut cmd = std::process::Command::new(&spec.program);
    cmd.args(&spec.args)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .current_dir("/")
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let fd = netns.as_raw_fd();
    // SAFETY: between fork and exec only system calls run, on data prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            use nix::{
                mount::{MsFlags, mount},
                sched::{CloneFlags, setns, unshare},
            };
            // The container goes when the runtime goes.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let nsfd = std::os::fd::BorrowedFd::borrow_raw(fd);
            setns(nsfd, CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
            unshare(CloneFlags::CLONE_NEWNS).map_err(std::io::Error::from)?;
            mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                None::<&str>,
            )
            .map_err(std::io::Error::from)?;
            for (src, dst, ro, dirs) in &binds {
                for d in dirs {
                    let _ = nix::unistd::mkdir(
                        d.as_c_str(),
                        nix::sys::stat::Mode::from_bits_truncate(0o755),
                    );
                }
                mount(
                    Some(src.as_c_str()),
                    dst.as_c_str(),
                    None::<&str>,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None::<&str>,
                )
                .map_err(std::io::Error::from)?;
                if *ro {
                    mount(
                        None::<&str>,
                        dst.as_c_str(),
                        None::<&str>,
                        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                        None::<&str>,
                    )
                    .map_err(std::io::Error::from)?;
                }
            }
            Ok(())
        });
    }
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.kill_on_drop(true);
    let child = cmd.spawn().with_context(|| {
        let mounts: Vec<String> = spec
            .mounts
            .iter()
            .map(|m| format!("{}→{}", m.source.display(), m.target.display()))
            .collect();
        format!(
            "starting {} for {}/{} (mounts {})",
            spec.program.display(),
            spec.key,
            spec.container,
            mounts.join(", ")
        )
    })?;
    drop(netns);
    Ok(child)
}

/// Forwards connections accepted inside a Pod's namespace to the API server.
async fn forward(listener: TcpListener, upstream: SocketAddr) {
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            if let Ok(mut out) = tokio::net::TcpStream::connect(upstream).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_the_standard_alphabet() {
        assert_eq!(base64_decode("Zm9vYmFy").unwrap(), b"foobar");
        assert_eq!(base64_decode("Zm9vYg==").unwrap(), b"foob");
        assert_eq!(base64_decode("Zm9v\nYmE=").unwrap(), b"fooba");
        assert!(base64_decode("Zm9v*").is_err());
    }

    #[test]
    fn container_paths_resolve_through_mounts() {
        let m = vec![
            Mount {
                source: "/s/p/volumes/sockfile".into(),
                target: "/var/run".into(),
                read_only: false,
            },
            Mount {
                source: "/s/p/volumes/conf".into(),
                target: "/usr/local/etc/istgt".into(),
                read_only: false,
            },
        ];
        assert_eq!(
            host_path_of(&m, "/usr/local/etc/istgt/istgt.conf"),
            PathBuf::from("/s/p/volumes/conf/istgt.conf")
        );
        assert_eq!(host_path_of(&m, "/etc/x"), PathBuf::from("/etc/x"));
    }
}
