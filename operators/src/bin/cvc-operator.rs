//! `cvc-operator`: provisions cStor volumes from CStorVolumeConfigs (see
//! `cstor_operators::cvc_operator`).

use std::process::ExitCode;

use clap::Parser;
use cstor_api::{
    leader::{self, LeaderOutcome},
    process,
};
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
    let mut config = Config::from_env()?;
    config.resync = std::time::Duration::from_secs(args.resync_interval.max(1));
    let client = process::kube_client().await?;
    tracing::info!(namespace = %config.namespace, "starting cvc-operator");
    let lease = args.leader.config("cstor-cvc-operator", &config.namespace);
    let ctx = Context::new(client.clone(), config);
    match lease {
        None => cvc_operator::run(ctx, shutdown).await,
        Some(lease) => {
            let outcome = leader::run_as_leader(client, &lease, shutdown, |stop| {
                cvc_operator::run(ctx, stop)
            })
            .await?;
            if outcome == LeaderOutcome::Lost {
                return Err("lost the leader lease; restarting as a follower".into());
            }
        }
    }
    tracing::info!("stopped");
    Ok(())
}
