//! `volume-manager`: the cstor-volume-mgmt container of a cStor target pod (see
//! `cstor_operators::volume_manager`).

use std::{process::ExitCode, sync::Arc, time::Duration};

use clap::Parser;
use cstor_api::{
    health::{self, Health},
    process,
};
use cstor_operators::{
    cli::VolumeManagerArgs,
    exporter,
    volume_manager::{
        self, ConfOptions, ControlClient, ManagerConfig, Settings, exporter::VolumeExporter,
    },
};

#[tokio::main]
async fn main() -> ExitCode {
    // Listening from the start: a SIGTERM during start-up ends the process cleanly too.
    let shutdown = process::shutdown_signal();
    process::init_tracing(false);
    let args = VolumeManagerArgs::parse();
    process::exit("volume-manager", run(args, shutdown).await)
}

async fn run(
    args: VolumeManagerArgs,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let client = process::kube_client().await?;
    // Ready once istgt answers STATUS (the volume manager waits for that before it starts).
    let health = Health::new("waiting for istgt to answer STATUS");
    health::start(args.health_addr, health.clone(), process::shutdown_signal()).await?;
    let metrics = Arc::new(VolumeExporter::new(ControlClient::new(&args.istgt_socket)));
    exporter::start(args.exporter_addr, metrics, process::shutdown_signal()).await;
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
    volume_manager::run_with_health(client, settings, health, shutdown)
        .await
        .map_err(|e| e.to_string())
}
