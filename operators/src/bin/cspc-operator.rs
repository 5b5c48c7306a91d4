//! `cspc-operator`: turns CStorPoolClusters into CStorPoolInstances, claims and pool-manager
//! Deployments (see `cstor_operators::cspc_operator`).

use std::{process::ExitCode, time::Duration};

use clap::Parser;
use cstor_api::{
    leader::{self, LeaderOutcome},
    process,
};
use cstor_operators::{
    cli::CspcOperatorArgs,
    cspc_operator::{self, DeployConfig},
};

#[tokio::main]
async fn main() -> ExitCode {
    // Listening from the start: a SIGTERM during start-up ends the process cleanly too.
    let shutdown = process::shutdown_signal();
    process::init_tracing(false);
    let args = CspcOperatorArgs::parse();
    process::exit("cspc-operator", run(args, shutdown).await)
}

async fn run(
    args: CspcOperatorArgs,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), String> {
    let client = process::kube_client().await?;
    let lease = args.leader.config("cstor-cspc-operator", &args.namespace);
    let ctx = cspc_operator::Context::new(client.clone(), DeployConfig::from_env())
        .with_resync(Duration::from_secs(args.resync_interval.max(1)));
    let ns = (!args.namespace.is_empty()).then_some(args.namespace);
    tracing::info!(namespace = ?ns, "starting cspc-operator");
    match lease {
        None => cspc_operator::run_until(ctx, ns, shutdown).await,
        Some(lease) => {
            let outcome = leader::run_as_leader(client, &lease, shutdown, |stop| {
                cspc_operator::run_until(ctx, ns, stop)
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
