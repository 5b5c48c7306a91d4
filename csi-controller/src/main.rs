//! `cstor-csi-controller`: the CSI Controller (and Identity) plugin of cstor.csi.openebs.io.
//! Flag names follow upstream's `cstor-csi-driver`.

use std::{path::PathBuf, time::Duration};

use clap::Parser;
use cstor_api::constants::{csi::DRIVER_NAME, engine::SNAPSHOT_GRPC_PORT, env::OPENEBS_NAMESPACE};
use cstor_csi_controller::{Config, ControllerService, CsiEndpoint, TopologyMode};

#[derive(Parser, Debug)]
#[command(
    name = "cstor-csi-controller",
    about = "CSI controller plugin of cstor.csi.openebs.io",
    disable_version_flag = true
)]
struct Args {
    /// CSI endpoint: unix:///path/to/csi.sock or tcp://ip:port.
    #[arg(
        long,
        env = "OPENEBS_CSI_ENDPOINT",
        default_value = "unix://csi/csi.sock"
    )]
    endpoint: String,
    /// Node this process runs on (kept for upstream compatibility; the controller does not use it).
    #[arg(long, env = "OPENEBS_NODE_ID", default_value = "node1")]
    nodeid: String,
    /// CSI driver name.
    #[arg(long, default_value = DRIVER_NAME)]
    name: String,
    /// `controller` serves Identity and Controller; anything else serves Identity only.
    #[arg(long, env = "OPENEBS_CONTROLLER_DRIVER", default_value = "controller")]
    plugin: String,
    /// Legacy maya-apiserver URL (accepted and ignored, as upstream).
    #[arg(long, env = "OPENEBS_CSI_API_URL", default_value = "")]
    url: String,
    /// Vendor version reported by GetPluginInfo (defaults to the build's version), as upstream's --version.
    #[arg(long = "version", env = "OPENEBS_CSI_VERSION")]
    vendor_version: Option<String>,
    /// Namespace of the cStor objects.
    #[arg(long, env = OPENEBS_NAMESPACE)]
    namespace: String,
    /// TCP port of the targets' snapshot service.
    #[arg(long, env = "CSTOR_SNAPSHOT_PORT", default_value_t = SNAPSHOT_GRPC_PORT)]
    snapshot_port: u16,
    /// Host to dial for snapshot commands instead of each CStorVolume's target IP (only for a
    /// controller run outside the cluster behind a forwarder).
    #[arg(long, env = "CSTOR_SNAPSHOT_HOST")]
    snapshot_host: Option<String>,
    /// Deadline of one snapshot command, in seconds.
    #[arg(long, env = "CSTOR_SNAPSHOT_TIMEOUT", default_value_t = 90)]
    snapshot_timeout: u64,
    /// Accessible topology reported for new volumes.
    #[arg(long, env = "CSTOR_VOLUME_TOPOLOGY", value_enum, default_value_t = TopologyMode::Requisite)]
    volume_topology: TopologyMode,
    /// Seconds between sweeps for snapshots of deleted clones (0 disables the sweep).
    #[arg(long, env = "CSTOR_CLONE_SWEEP_INTERVAL", default_value_t = 300)]
    clone_sweep_interval: u64,
    /// Kubeconfig for running outside the cluster (default: in-cluster or $KUBECONFIG).
    #[arg(long, env = "OPENEBS_IO_KUBE_CONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Log as JSON lines.
    #[arg(long, env = "CSTOR_LOG_JSON", default_value_t = false)]
    log_json: bool,
}

async fn kube_client(kubeconfig: Option<&PathBuf>) -> Result<kube::Client, String> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| format!("reading kubeconfig {}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .map_err(|e| format!("using kubeconfig {}: {e}", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| format!("no Kubernetes configuration found: {e}"))?,
    };
    kube::Client::try_from(config).map_err(|e| format!("building the Kubernetes client: {e}"))
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    if args.log_json {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    if let Err(e) = run(args).await {
        tracing::error!("{e}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<(), String> {
    if args.namespace.is_empty() {
        return Err(format!(
            "{OPENEBS_NAMESPACE} is empty: set it to the namespace of the cStor objects"
        ));
    }
    let endpoint: CsiEndpoint = args.endpoint.parse().map_err(|e| format!("{e}"))?;
    let controller = args.plugin == "controller";
    if !controller {
        tracing::warn!(plugin = %args.plugin, "--plugin is not \"controller\": serving the Identity service only");
    }
    let client = kube_client(args.kubeconfig.as_ref()).await?;
    let mut config = Config::new(args.namespace);
    config.driver_name = args.name;
    if let Some(v) = args.vendor_version {
        config.vendor_version = v;
    }
    config.snapshot_port = args.snapshot_port;
    config.snapshot_timeout = Duration::from_secs(args.snapshot_timeout);
    config.snapshot_host = args.snapshot_host;
    config.topology = args.volume_topology;
    tracing::info!(node = %args.nodeid, namespace = %config.namespace, driver = %config.driver_name, "starting");
    let service = ControllerService::new(client, config);
    let _sweeper = (controller && args.clone_sweep_interval > 0)
        .then(|| service.spawn_clone_sweeper(Duration::from_secs(args.clone_sweep_interval)));
    cstor_csi_controller::serve(&endpoint, service, controller, shutdown_signal())
        .await
        .map_err(|e| e.to_string())
}
