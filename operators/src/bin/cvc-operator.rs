//! `cvc-operator`: provisions cStor volumes from CStorVolumeConfigs (see
//! `cstor_operators::cvc_operator`).

use std::{process::ExitCode, time::Duration};

use clap::Parser;
use cstor_api::{
    cstor::{CStorVolume, CStorVolumeConfig, CStorVolumeReplica},
    health::{self, Health},
    process,
    served::{self, answers},
};
use cstor_operators::{
    cli::CvcOperatorArgs,
    cvc_operator::{self, Config, Context},
};
use kube::{Api, Client};

/// How often readiness is checked again until the API server serves what the operator needs.
const READY_RETRY: Duration = Duration::from_secs(5);

#[tokio::main]
async fn main() -> ExitCode {
    // Listening from the start: a SIGTERM during start-up ends the process cleanly too.
    let shutdown = process::shutdown_signal();
    process::init_tracing(false);
    let args = CvcOperatorArgs::parse();
    process::exit("cvc-operator", run(args, shutdown).await)
}

async fn run(
    args: CvcOperatorArgs,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), String> {
    if args.leader_election {
        return Err("--leader-election is not supported; run a single replica".into());
    }
    let mut config = Config::from_env()?;
    config.resync = Duration::from_secs(args.resync_interval.max(1));
    let client = process::kube_client().await?;
    let health = Health::new("not yet checked that the API server serves the cStor volume CRDs");
    health::start(args.health_addr, health.clone(), process::shutdown_signal()).await?;
    let (c, ns) = (client.clone(), config.namespace.clone());
    tokio::spawn(async move {
        health::ready_when(&health, READY_RETRY, || served(c.clone(), ns.clone())).await
    });
    tracing::info!(namespace = %config.namespace, "starting cvc-operator");
    let ctx = Context::new(client, config);
    cvc_operator::run(ctx, shutdown).await;
    tracing::info!("stopped");
    Ok(())
}

/// Ready: the API server lists the CVCs, CStorVolumes and replicas the operator watches.
async fn served(client: Client, ns: String) -> Result<(), String> {
    served::all([
        answers(Api::<CStorVolumeConfig>::namespaced(client.clone(), &ns)).await,
        answers(Api::<CStorVolume>::namespaced(client.clone(), &ns)).await,
        answers(Api::<CStorVolumeReplica>::namespaced(client, &ns)).await,
    ])
}
