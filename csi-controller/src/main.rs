//! `cstor-csi-controller`: the CSI Controller (and Identity) plugin of cstor.csi.openebs.io.
//! Flag names follow upstream's `cstor-csi-driver`.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::Parser;
use cstor_api::{
    constants::env::OPENEBS_NAMESPACE,
    health::{self, Health},
    process,
};
use cstor_csi_controller::{Config, ControllerService, CsiEndpoint, cli::ControllerArgs};

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

#[tokio::main]
async fn main() -> ExitCode {
    // Listening from the start: a SIGTERM during start-up ends the process cleanly too.
    let shutdown = process::shutdown_signal();
    let args = ControllerArgs::parse();
    process::init_tracing(args.log_json);
    process::exit("cstor-csi-controller", run(args, shutdown).await)
}

async fn run(
    args: ControllerArgs,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
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
    // Ready once the CSI endpoint is bound.
    let health = Health::new("the CSI endpoint is not listening yet");
    health::start(args.health_addr, health.clone(), process::shutdown_signal()).await?;
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
    cstor_csi_controller::serve_reporting(&endpoint, service, controller, shutdown, || {
        health.set_ready()
    })
    .await
    .map_err(|e| e.to_string())
}
