//! `cstor-csi-node`: the CSI node plugin of cstor.csi.openebs.io (Identity + Node services on a
//! unix socket, the read-only remount monitor, and the start-up cleanup). Flag names and
//! environment variables follow upstream's driver.

use std::{sync::Arc, time::Duration};

use clap::Parser;
use cstor_api::exec::{HostRunner, Runner};
use cstor_csi_node::{
    NodeConfig, NodeDriver, NodeService, cli::NodeArgs, iscsi::IscsiAttacher,
    kube_client::KubeVolumeApi, server,
};

fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt().with_env_filter(filter);
    if json {
        b.json().init();
    } else {
        b.init();
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
    tracing::info!("shutting down");
}

#[tokio::main]
async fn main() -> anyhow_free::Result {
    let args = NodeArgs::parse();
    init_tracing(args.log_json);
    if args.node_id.is_empty() {
        return Err("--nodeid / OPENEBS_NODE_ID is empty: set it to this node's name".into());
    }
    if args.namespace.is_empty() {
        return Err("OPENEBS_NAMESPACE environment variable not set".into());
    }
    let _ = &args.url;
    let client = kube::Client::try_default().await.map_err(|e| {
        format!("cannot build a Kubernetes client (in-cluster config or KUBECONFIG): {e}")
    })?;
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
    let res = server::serve(NodeService::new(driver), &args.endpoint, async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    })
    .await;
    if let Some(m) = monitor {
        let _ = m.await;
    }
    res.map_err(|e| e.to_string().into())
}

/// `main`'s error: printed as its message.
mod anyhow_free {
    pub struct Error(String);
    impl std::fmt::Debug for Error {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }
    impl From<String> for Error {
        fn from(s: String) -> Self {
            Error(s)
        }
    }
    impl From<&str> for Error {
        fn from(s: &str) -> Self {
            Error(s.to_string())
        }
    }
    pub type Result = std::result::Result<(), Error>;
}
