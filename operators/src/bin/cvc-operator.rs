//! `cvc-operator`: provisions cStor volumes from CStorVolumeConfigs (see
//! `cstor_operators::cvc_operator`).

use std::process::ExitCode;

use clap::Parser;
use cstor_operators::{
    cli::CvcOperatorArgs,
    cvc_operator::{self, Config, Context},
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
    let args = CvcOperatorArgs::parse();
    if args.leader_election {
        eprintln!("cvc-operator: --leader-election is not supported; run a single replica");
        return ExitCode::FAILURE;
    }
    let mut config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cvc-operator: {e}");
            return ExitCode::FAILURE;
        }
    };
    config.resync = std::time::Duration::from_secs(args.resync_interval.max(1));
    let client = match kube::Client::try_default().await {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "cvc-operator: cannot build a Kubernetes client (in-cluster config or KUBECONFIG): {e}"
            );
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(namespace = %config.namespace, "starting cvc-operator");
    let ctx = Context::new(client, config);
    cvc_operator::run(ctx, shutdown).await;
    tracing::info!("stopped");
    ExitCode::SUCCESS
}
