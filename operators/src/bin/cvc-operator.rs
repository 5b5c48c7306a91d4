//! `cvc-operator`: provisions cStor volumes from CStorVolumeConfigs (see
//! `cstor_operators::cvc_operator`).

use std::process::ExitCode;

use clap::Parser;
use cstor_api::process;
use cstor_operators::{
    cli::CvcOperatorArgs,
    cvc_operator::{self, Config, Context},
};

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
    config.resync = std::time::Duration::from_secs(args.resync_interval.max(1));
    let client = process::kube_client().await?;
    tracing::info!(namespace = %config.namespace, "starting cvc-operator");
    let ctx = Context::new(client, config);
    cvc_operator::run(ctx, shutdown).await;
    tracing::info!("stopped");
    Ok(())
}
