//! `volume-manager`: the cstor-volume-mgmt container of a cStor target pod (see
//! `cstor_operators::volume_manager`).

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use clap::Parser;
use cstor_operators::volume_manager::{
    self, ConfOptions, ManagerConfig, Settings, control, istgt_conf, known_replicas, snapshot,
};

/// Keeps a cStor volume's target (istgt) configured and its CStorVolume status true.
#[derive(Debug, Parser)]
#[command(name = "volume-manager", version)]
struct Args {
    /// UID of the CStorVolume this target serves.
    #[arg(long, env = "OPENEBS_IO_CSTOR_VOLUME_ID")]
    volume_id: String,
    /// Namespace of the CStorVolume.
    #[arg(long, env = "OPENEBS_NAMESPACE", default_value = "openebs")]
    namespace: String,
    /// Seconds between status syncs.
    #[arg(long, env = "RESYNC_INTERVAL", default_value_t = 30)]
    resync_interval: u64,
    /// istgt's control socket.
    #[arg(long, env = "ISTGT_CONTROL_SOCKET", default_value = control::DEFAULT_SOCKET)]
    istgt_socket: PathBuf,
    /// Socket istgt reports trusted replicas to.
    #[arg(long, env = "VOLUME_MGMT_SOCKET", default_value = known_replicas::DEFAULT_SOCKET)]
    known_replica_socket: PathBuf,
    /// istgt.conf written for the volume.
    #[arg(long, env = "ISTGT_CONF", default_value = istgt_conf::DEFAULT_CONF_PATH)]
    conf_path: PathBuf,
    /// Listen address of the snapshot gRPC service.
    #[arg(long, env = "SNAPSHOT_GRPC_LISTEN", default_value = snapshot::DEFAULT_LISTEN)]
    grpc_listen: SocketAddr,
    /// Event source component.
    #[arg(long, env = "POD_NAME", default_value = "")]
    pod_name: String,
    /// Event source host.
    #[arg(long, env = "NODE_NAME", default_value = "")]
    node_name: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let client = match kube::Client::try_default().await {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "volume-manager: cannot build a Kubernetes client (in-cluster config or KUBECONFIG): {e}"
            );
            return ExitCode::FAILURE;
        }
    };
    let settings = Settings {
        istgt_socket: args.istgt_socket,
        known_replica_socket: args.known_replica_socket,
        conf_path: args.conf_path,
        grpc_listen: args.grpc_listen,
        manager: ManagerConfig {
            namespace: args.namespace,
            volume_uid: args.volume_id,
            resync_interval: Duration::from_secs(args.resync_interval.max(1)),
            istgt_retry_interval: Duration::from_secs(3),
            pod_name: args.pod_name,
            node_name: args.node_name,
            conf_options: ConfOptions::default(),
        },
    };
    match volume_manager::run(client, settings, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("volume-manager: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
