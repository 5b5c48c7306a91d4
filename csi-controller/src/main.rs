//! `cstor-csi-controller`: the CSI Controller (and Identity) plugin of cstor.csi.openebs.io.
//! Flag names follow upstream's `cstor-csi-driver`.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::Parser;
use cstor_api::{
    constants::env::OPENEBS_NAMESPACE,
    health::{self, Health},
    leader::{self, LeaderConfig, LeaderOutcome},
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
    process::client_from(config)
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
    let lease = args
        .leader
        .config("cstor-csi-controller", &config.namespace);
    let service = ControllerService::new(client.clone(), config);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let _sweeper = (controller && args.clone_sweep_interval > 0).then(|| {
        let every = Duration::from_secs(args.clone_sweep_interval);
        match lease {
            None => service.spawn_clone_sweeper(every),
            Some(lease) => tokio::spawn(sweep_as_leader(
                client,
                lease,
                service.clone(),
                every,
                stopped(stop_rx.clone()),
            )),
        }
    });
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    cstor_csi_controller::serve_reporting(&endpoint, service, controller, stopped(stop_rx), || {
        health.set_ready()
    })
    .await
    .map_err(|e| e.to_string())
}

/// Every replica serves its own sidecars; only the holder of the Lease sweeps clone snapshots.
/// A lost lease is waited for again.
async fn sweep_as_leader(
    client: kube::Client,
    lease: LeaderConfig,
    service: ControllerService,
    every: Duration,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        stop.await;
        let _ = tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    loop {
        let svc = service.clone();
        let outcome = leader::run_as_leader(
            client.clone(),
            &lease,
            stopped(rx.clone()),
            |lost| async move {
                let sweeper = svc.spawn_clone_sweeper(every);
                lost.await;
                sweeper.abort();
            },
        )
        .await;
        match outcome {
            Ok(LeaderOutcome::Shutdown) => return,
            Ok(LeaderOutcome::Lost) => {
                tracing::warn!("lost the leader lease; waiting for it again")
            }
            Err(e) => {
                tracing::warn!(error = %e, "leader election failed; retrying");
                let retry = tokio::time::sleep(lease.duration);
                tokio::select! {
                    () = retry => {}
                    () = stopped(rx.clone()) => return,
                }
            }
        }
    }
}
