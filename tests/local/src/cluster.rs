//! A whole local cluster: the API server (embedded, or a real one from a kubeconfig), Node
//! objects, the pod network, the kubelet, the stand-ins of what a bare API server lacks, and the
//! rendered `deploy/` applied to it.

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
};

use anyhow::{Context as _, bail};
use cstor_testkit::TestApiServer;
use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api, Client,
    api::{DynamicObject, Patch, PatchParams},
    discovery::Discovery,
};
use tokio::task::JoinHandle;

use crate::{
    controllers,
    images::Programs,
    kubelet::{ApiAccess, Kubelet, KubeletConfig},
    netns::Network,
};

/// Field manager of everything the runtime applies.
pub const MANAGER: &str = "cstor-local";

/// How to start the local cluster.
#[derive(Clone, Debug)]
pub struct Options {
    /// A real API server's kubeconfig; `None` starts the embedded one.
    pub kubeconfig: Option<PathBuf>,
    /// The repository's `deploy/` directory.
    pub deploy_dir: PathBuf,
    /// Our binaries.
    pub bin_dir: PathBuf,
    /// The cStor engine (`bin/`, `lib/`).
    pub engine_dir: Option<PathBuf>,
    /// Where node and pod directories and logs go.
    pub state_dir: PathBuf,
    /// Number of nodes.
    pub nodes: usize,
    /// The OpenEBS namespace of `deploy/`.
    pub namespace: String,
}

/// A running local cluster.
pub struct LocalCluster {
    pub client: Client,
    pub namespace: String,
    pub nodes: Vec<String>,
    pub kubelet: Arc<Kubelet>,
    pub network: Arc<Network>,
    pub state_dir: PathBuf,
    /// The real cStor engine; `None` runs the stand-in ([`crate::standin`]).
    pub engine_dir: Option<PathBuf>,
    /// Our binaries.
    pub bin_dir: PathBuf,
    /// Objects of `deploy/` that were not applied, and why.
    pub not_applied: Vec<String>,
    /// Whether the CSI controller sidecars run (real API server with ../shared/real's sidecars).
    pub sidecars: bool,
    server: Option<TestApiServer>,
    tasks: Vec<JoinHandle<()>>,
    snapshot_controller: Option<tokio::process::Child>,
    kubelet_task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for LocalCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCluster")
            .field("nodes", &self.nodes)
            .finish()
    }
}

fn short_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..4].to_string()
}

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| PathBuf::from("."))
}

/// The real cStor engine unpacked by `../shared/real/unpack.sh` into `target/cstor-real`
/// (`CSTOR_REAL_DIR` overrides), when it is there.
pub fn real_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("CSTOR_REAL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/cstor-real"));
    dir.join("cstor-engine/bin/zrepl").exists().then_some(dir)
}

impl LocalCluster {
    /// Starts everything and applies `deploy/`.
    pub async fn start(opts: Options) -> anyhow::Result<LocalCluster> {
        let id = short_id();
        let state_dir = opts.state_dir.join(format!("run-{id}"));
        std::fs::create_dir_all(&state_dir)?;
        let (client, server, access, builtin) = match &opts.kubeconfig {
            None => {
                let srv = TestApiServer::start().await;
                let url: http::Uri = srv.url().parse()?;
                let upstream: SocketAddr = format!(
                    "{}:{}",
                    url.host().unwrap_or("127.0.0.1"),
                    url.port_u16().unwrap_or(80)
                )
                .parse()?;
                (srv.client(), Some(srv), ApiAccess::Plain { upstream }, true)
            }
            Some(path) => {
                let kc = kube::config::Kubeconfig::read_from(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                let cluster = kc
                    .clusters
                    .first()
                    .and_then(|c| c.cluster.clone())
                    .context("the kubeconfig names no cluster")?;
                let server: http::Uri = cluster
                    .server
                    .clone()
                    .context("cluster without server")?
                    .parse()?;
                let host = server.host().unwrap_or("127.0.0.1");
                let upstream: SocketAddr = format!("{host}:{}", server.port_u16().unwrap_or(443))
                    .parse()
                    .with_context(|| {
                        format!("the API server address {host} must be an IP address")
                    })?;
                let ca_data = cluster
                    .certificate_authority_data
                    .clone()
                    .context("the kubeconfig's cluster needs certificate-authority-data")?;
                let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
                (
                    Client::try_from(config)?,
                    None,
                    ApiAccess::Tls { upstream, ca_data },
                    false,
                )
            }
        };
        // The CSI sidecars of ../shared/real run only on a real API server (protobuf, in-cluster
        // configuration).
        let sidecars = opts
            .engine_dir
            .as_ref()
            .map(|d| d.join("sidecars"))
            .filter(|d| !builtin && d.join("csi-provisioner").exists());
        let nodes: Vec<String> = (1..=opts.nodes)
            .map(|i| format!("csl{id}-node{i}"))
            .collect();
        let standin = match &opts.engine_dir {
            Some(_) => None,
            None => {
                for (tool, package) in [
                    ("/usr/sbin/zfs-fuse", "zfs-fuse"),
                    ("/usr/sbin/istgt", "istgt"),
                ] {
                    anyhow::ensure!(
                        Path::new(tool).exists(),
                        "the engine stand-in needs {tool} (apt-get install {package}; `bash .ci/install-deps` installs it)"
                    );
                }
                for b in [crate::standin::ZFS_SHIM, crate::standin::ISTGT_SHIM] {
                    anyhow::ensure!(
                        opts.bin_dir.join(b).exists(),
                        "{} is not built (cargo build --workspace)",
                        opts.bin_dir.join(b).display()
                    );
                }
                Some(
                    crate::images::StandIn::prepare(
                        &state_dir,
                        &opts.bin_dir,
                        &state_dir.join("nodes"),
                    )
                    .context("preparing the engine stand-in")?,
                )
            }
        };
        let network = Arc::new(Network::create(&format!("csl{id}"))?);
        let kcfg = KubeletConfig {
            state_dir: state_dir.clone(),
            nodes: nodes.clone(),
            namespaces: BTreeSet::from([opts.namespace.clone()]),
            programs: Programs {
                bin_dir: opts.bin_dir.clone(),
                engine_dir: opts.engine_dir.as_ref().map(|d| d.join("cstor-engine")),
                sidecar_dir: sidecars.clone(),
                standin,
            },
            api: access,
            rust_log: Some(std::env::var("CSTOR_LOCAL_POD_LOG").unwrap_or_else(|_| "info".into())),
        };
        let kubelet = Kubelet::new(client.clone(), kcfg, network.clone());
        let mut me = LocalCluster {
            client: client.clone(),
            namespace: opts.namespace.clone(),
            nodes: nodes.clone(),
            kubelet: kubelet.clone(),
            network,
            state_dir,
            engine_dir: opts.engine_dir.clone(),
            bin_dir: opts.bin_dir.clone(),
            not_applied: vec![],
            sidecars: sidecars.is_some(),
            snapshot_controller: None,
            server,
            tasks: vec![],
            kubelet_task: None,
        };
        controllers::nodes(&client, &nodes)
            .await
            .context("creating Node objects")?;
        me.tasks.push(tokio::spawn(controllers::heartbeat(
            client.clone(),
            nodes.clone(),
        )));
        if builtin {
            me.tasks.push(tokio::spawn(controllers::workloads(
                client.clone(),
                BTreeSet::from([opts.namespace.clone()]),
                nodes.clone(),
            )));
            me.tasks
                .push(tokio::spawn(controllers::cluster_ips(client.clone())));
        }
        me.kubelet_task = Some(tokio::spawn(kubelet.clone().run()));
        let node_dirs = nodes
            .iter()
            .map(|n| (n.clone(), kubelet.node_dir(n)))
            .collect();
        me.tasks.push(tokio::spawn(crate::registration::run(
            client.clone(),
            node_dirs,
        )));
        me.not_applied = apply_deploy(&client, &opts.deploy_dir, &opts.namespace).await?;
        me.tasks.push(tokio::spawn(controllers::ndm(
            client.clone(),
            opts.namespace.clone(),
        )));
        if let (Some(dir), Some(kubeconfig)) = (&sidecars, &opts.kubeconfig) {
            me.snapshot_controller =
                Some(snapshot_controller(&client, dir, kubeconfig, &me.state_dir).await?);
        }
        Ok(me)
    }

    /// The embedded API server, when it is the one in use.
    pub fn server(&self) -> Option<&TestApiServer> {
        self.server.as_ref()
    }

    /// Stops every pod and task and removes the network.
    pub async fn shutdown(mut self) {
        if let Some(mut c) = self.snapshot_controller.take() {
            let _ = c.kill().await;
        }
        if let Some(t) = self.kubelet_task.take() {
            t.abort();
        }
        self.kubelet.shutdown().await;
        // The nodes go with their kubelet: on a real cluster the pod garbage collector then
        // removes the Pods bound to them, and the next run's nodes get new ones.
        let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(self.client.clone());
        for n in &self.nodes {
            let _ = nodes.delete(n, &Default::default()).await;
        }
        for t in self.tasks.drain(..) {
            t.abort();
        }
        self.network.teardown();
    }
}

/// Renders a Kustomize directory with `kubectl kustomize`.
pub fn kustomize(dir: &Path) -> anyhow::Result<Vec<serde_json::Value>> {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .context(
            "running kubectl kustomize (install kubectl: apt-get install kubernetes-client)",
        )?;
    if !out.status.success() {
        bail!(
            "kubectl kustomize {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8(out.stdout)?;
    let mut docs = Vec::new();
    for d in serde_yaml::Deserializer::from_str(&text) {
        let v = <serde_json::Value as serde::Deserialize>::deserialize(d)?;
        if !v.is_null() {
            docs.push(v);
        }
    }
    Ok(docs)
}

/// Applies the CRDs of `deploy/crds`, the Namespace and the base components (server-side apply).
/// The admission webhook (`deploy/webhook`) is left out: the API server could not reach a pod
/// address of this runtime. Returns what was not applied and why.
pub async fn apply_deploy(
    client: &Client,
    deploy: &Path,
    namespace: &str,
) -> anyhow::Result<Vec<String>> {
    let crds = cstor_testkit::cluster::load_crds(&deploy.join("crds"))?;
    cstor_testkit::cluster::install_crds(client, &crds).await?;
    let mut docs = kustomize(&deploy.join("namespace"))?;
    docs.extend(kustomize(&deploy.join("base"))?);
    let discovery = Discovery::new(client.clone()).run().await?;
    let mut skipped = vec![
        "deploy/webhook: the API server cannot call a webhook on this runtime's pod network"
            .to_string(),
    ];
    let pp = PatchParams::apply(MANAGER).force();
    for doc in docs {
        let obj: DynamicObject = serde_json::from_value(doc.clone())?;
        let Some(tm) = obj.types.clone() else {
            continue;
        };
        let (group, version) = match tm.api_version.split_once('/') {
            Some((g, v)) => (g.to_string(), v.to_string()),
            None => (String::new(), tm.api_version.clone()),
        };
        let gvk = kube::api::GroupVersionKind::gvk(&group, &version, &tm.kind);
        let Some((ar, caps)) = discovery.resolve_gvk(&gvk) else {
            skipped.push(format!(
                "{}/{}: kind not served by this API server",
                tm.kind,
                obj.metadata.name.clone().unwrap_or_default()
            ));
            continue;
        };
        let name = obj.metadata.name.clone().unwrap_or_default();
        let api: Api<DynamicObject> = if caps.scope == kube::discovery::Scope::Namespaced {
            Api::namespaced_with(
                client.clone(),
                obj.metadata.namespace.as_deref().unwrap_or(namespace),
                &ar,
            )
        } else {
            Api::all_with(client.clone(), &ar)
        };
        api.patch(&name, &pp, &Patch::Apply(&doc))
            .await
            .with_context(|| format!("applying {} {name}", tm.kind))?;
    }
    // The namespace exists once applied; wait until it is usable.
    let ns_api: Api<Namespace> = Api::all(client.clone());
    cstor_testkit::wait_for(std::time::Duration::from_secs(30), || async {
        ns_api.get_opt(namespace).await.ok().flatten().map(|_| ())
    })
    .await
    .map_err(|e| anyhow::anyhow!("namespace {namespace}: {e}"))?;
    Ok(skipped)
}

/// The snapshot CRDs and the snapshot-controller of external-snapshotter (a cluster add-on, as in
/// a cluster where snapshots are used), run as a process of this machine with the admin
/// kubeconfig.
async fn snapshot_controller(
    client: &Client,
    sidecars: &Path,
    kubeconfig: &Path,
    state: &Path,
) -> anyhow::Result<tokio::process::Child> {
    let docs = kustomize(&sidecars.join("snapshot-crds"))?;
    let crds: Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        docs.into_iter().map(serde_json::from_value).collect::<Result<_, _>>()?;
    cstor_testkit::cluster::install_crds(client, &crds).await?;
    std::fs::create_dir_all(state.join("logs"))?;
    let log = std::fs::File::create(state.join("logs/snapshot-controller.log"))?;
    let child = tokio::process::Command::new(sidecars.join("snapshot-controller"))
        .arg(format!(
            "--kubeconfig={}",
            kubeconfig.canonicalize()?.display()
        ))
        .arg("--leader-election=false")
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .context("starting snapshot-controller")?;
    Ok(child)
}
