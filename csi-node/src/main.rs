//! `cstor-csi-node`: the CSI node plugin of cstor.csi.openebs.io (Identity + Node services on a
//! unix socket, the read-only remount monitor, and the start-up cleanup). Flag names and
//! environment variables follow upstream's driver.

use std::{process::ExitCode, sync::Arc, time::Duration};

use clap::Parser;
use cstor_api::{
    exec::{HostRunner, Runner},
    health::{self, Health},
    process,
};
use cstor_csi_node::{
    NodeConfig, NodeDriver, NodeService, cli::NodeArgs, iscsi::IscsiAttacher,
    kube_client::KubeVolumeApi, server,
};

#[tokio::main]
async fn main() -> ExitCode {
    // Listening from the start: a SIGTERM during start-up ends the process cleanly too.
    let shutdown = process::shutdown_signal();
    let args = NodeArgs::parse();
    process::init_tracing(args.log_json);
    process::exit("cstor-csi-node", run(args, shutdown).await)
}

async fn run(
    args: NodeArgs,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    if args.node_id.is_empty() {
        return Err("--nodeid / OPENEBS_NODE_ID is empty: set it to this node's name".into());
    }
    if args.namespace.is_empty() {
        return Err("OPENEBS_NAMESPACE environment variable not set".into());
    }
    let _ = &args.url;
    let client = process::kube_client().await?;
    // Ready once the CSI socket is bound (after the start-up cleanup).
    let health = Health::new("the CSI socket is not listening yet");
    health::start(args.health_addr, health.clone(), process::shutdown_signal()).await?;
    let runner: Arc<dyn Runner> = Arc::new(HostRunner::new());
    let attacher =
        IscsiAttacher::new(runner.clone(), &args.device_root).with_program(&args.iscsiadm);
    let mut cfg = NodeConfig::new(&args.node_id, &args.namespace);
    cfg.driver_name = args.name.clone();
    cfg.version = args.version_string.clone();
    cfg.max_volumes = args.max_volumes;
    let driver = NodeDriver::new(
        cfg,
        runner,
        Arc::new(KubeVolumeApi::new(client, &args.namespace)),
        Arc::new(attacher),
    );
    match driver.cleanup().await {
        Ok(done) if !done.is_empty() => tracing::info!(?done, "start-up cleanup"),
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(error = %e, "start-up cleanup failed; the remount monitor retries it")
        }
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let monitor = args.remount.then(|| {
        let d = driver.clone();
        let mut rx = stop_rx.clone();
        let every = Duration::from_secs(args.remount_interval_seconds.max(1));
        tokio::spawn(async move {
            d.run_remount_monitor(every, async move {
                let _ = rx.wait_for(|s| *s).await;
            })
            .await
        })
    });
    tracing::info!(node = %args.node_id, endpoint = %args.endpoint, remount = args.remount, "starting");
    let stop = async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    };
    let res = server::serve_reporting(NodeService::new(driver), &args.endpoint, stop, || {
        health.set_ready()
    })
    .await;
    if let Some(m) = monitor {
        let _ = m.await;
    }
    res.map_err(|e| e.to_string())
}
