//! `cspc-operator`: turns CStorPoolClusters into CStorPoolInstances, claims and pool-manager
//! Deployments (see `cstor_operators::cspc_operator`).

use std::{process::ExitCode, time::Duration};

use clap::Parser;
use cstor_operators::{
    cli::CspcOperatorArgs,
    cspc_operator::{self, DeployConfig},
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
    let args = CspcOperatorArgs::parse();
    let client = match kube::Client::try_default().await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "no Kubernetes client configuration");
            return ExitCode::FAILURE;
        }
    };
    let ctx = cspc_operator::Context::new(client, DeployConfig::from_env())
        .with_resync(Duration::from_secs(args.resync_interval.max(1)));
    let ns = (!args.namespace.is_empty()).then_some(args.namespace);
    tracing::info!(namespace = ?ns, "starting cspc-operator");
    cspc_operator::run_until(ctx, ns, shutdown).await;
    tracing::info!("stopped");
    ExitCode::SUCCESS
}
