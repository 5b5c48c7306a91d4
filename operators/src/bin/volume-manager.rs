//! `volume-manager`: the cstor-volume-mgmt container of a cStor target pod (see
//! `cstor_operators::volume_manager`).

use std::{process::ExitCode, time::Duration};

use clap::Parser;
use cstor_operators::{
    cli::VolumeManagerArgs,
    volume_manager::{self, ConfOptions, ManagerConfig, Settings},
};

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    // Listening from the start: a SIGTERM during start-up ends the process cleanly too.
    let shutdown = cstor_operators::shutdown::signal();
    let args = VolumeManagerArgs::parse();
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
    match volume_manager::run(client, settings, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("volume-manager: {e}");
            ExitCode::FAILURE
        }
    }
}
