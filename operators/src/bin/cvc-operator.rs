//! `cvc-operator`: provisions cStor volumes from CStorVolumeConfigs (see
//! `cstor_operators::cvc_operator`).

use std::{process::ExitCode, sync::Arc, time::Duration};

use clap::Parser;
use cstor_api::{
    cstor::{CStorVolume, CStorVolumeConfig, CStorVolumeReplica},
    health::{self, Health},
    leader::{self, LeaderOutcome},
    process,
    served::{self, answers},
};
use cstor_operators::{
    cli::CvcOperatorArgs,
    cvc_operator::{
        self, Config, Context,
        rest::{self, Rest},
    },
};
use kube::{Api, Client};

/// How often readiness is checked again until the API server serves what the operator needs.
const READY_RETRY: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    // Before the runtime's threads exist: the malloc settings hold for all of them.
    process::limit_heap_growth();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return process::exit("cvc-operator", Err(format!("tokio runtime: {e}"))),
    };
    runtime.block_on(async {
        // Listening from the start: a SIGTERM during start-up ends the process cleanly too.
        let shutdown = process::shutdown_signal();
        process::init_tracing(false);
        let args = CvcOperatorArgs::parse();
        process::exit("cvc-operator", run(args, shutdown).await)
    })
}

async fn run(
    args: CvcOperatorArgs,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), String> {
    let mut config = Config::from_env()?;
    config.resync = Duration::from_secs(args.resync_interval.max(1));
    let client = process::kube_client().await?;
    let health = Health::new("not yet checked that the API server serves the cStor volume CRDs");
    health::start(args.health_addr, health.clone(), process::shutdown_signal()).await?;
    let (c, ns) = (client.clone(), config.namespace.clone());
    tokio::spawn(async move {
        health::ready_when(&health, READY_RETRY, || served(c.clone(), ns.clone())).await
    });
    // On every replica, leader or not: the Service `cvc-operator-service` selects them all
    // and the handlers keep no state (see `cvc_operator::rest`).
    match args.bind.get() {
        Some(addr) => {
            let api = Rest::new(client.clone(), &config.namespace, &config.version);
            rest::start(addr, Arc::new(api), process::shutdown_signal()).await?;
        }
        None => tracing::warn!("--bind is empty: the backup/restore REST server is not started"),
    }
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

/// Ready: the API server lists the CVCs, CStorVolumes and replicas the operator watches.
async fn served(client: Client, ns: String) -> Result<(), String> {
    served::all([
        answers(Api::<CStorVolumeConfig>::namespaced(client.clone(), &ns)).await,
        answers(Api::<CStorVolume>::namespaced(client.clone(), &ns)).await,
        answers(Api::<CStorVolumeReplica>::namespaced(client, &ns)).await,
    ])
}
