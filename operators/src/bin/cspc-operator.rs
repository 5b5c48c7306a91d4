//! `cspc-operator`: turns CStorPoolClusters into CStorPoolInstances, claims and pool-manager
//! Deployments (see `cstor_operators::cspc_operator`).

use std::{process::ExitCode, time::Duration};

use clap::Parser;
use cstor_api::{
    cstor::{CStorPoolCluster, CStorPoolInstance},
    health::{self, Health},
    leader::{self, LeaderOutcome},
    process,
    served::{self, answers},
};
use cstor_operators::{
    cli::CspcOperatorArgs,
    cspc_operator::{self, DeployConfig},
};
use kube::{Api, Client, Resource};

/// How often readiness is checked again until the API server serves what the operator needs.
const READY_RETRY: Duration = Duration::from_secs(5);

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
    let ns = (!args.namespace.is_empty()).then_some(args.namespace);
    let health = Health::new("not yet checked that the API server serves the cStor pool CRDs");
    health::start(args.health_addr, health.clone(), process::shutdown_signal()).await?;
    let (c, scope) = (client.clone(), ns.clone());
    tokio::spawn(async move {
        health::ready_when(&health, READY_RETRY, || served(c.clone(), scope.clone())).await
    });
    let ctx = cspc_operator::Context::new(client.clone(), DeployConfig::from_env())
        .with_resync(Duration::from_secs(args.resync_interval.max(1)));
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

/// Ready: the API server lists the CSPCs and CSPIs the operator watches, where it watches them.
async fn served(client: Client, ns: Option<String>) -> Result<(), String> {
    fn api<K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>>(
        client: &Client,
        ns: Option<&str>,
    ) -> Api<K> {
        match ns {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let ns = ns.as_deref();
    served::all([
        answers(api::<CStorPoolCluster>(&client, ns)).await,
        answers(api::<CStorPoolInstance>(&client, ns)).await,
    ])
}
