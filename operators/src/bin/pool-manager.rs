//! `pool-manager`: the cstor-pool-mgmt container of a cStor pool pod (see
//! `cstor_operators::pool_manager`).

use std::{process::ExitCode, sync::Arc, time::Duration};

use clap::Parser;
use cstor_api::{
    exec::HostRunner,
    health::{self, Health},
    process,
    served::{self, answers},
};
use cstor_operators::{
    cli::PoolManagerArgs,
    engine::CstorEngine,
    exporter,
    pool_manager::{self, exporter::PoolExporter},
};

/// How often readiness is checked again until the API server serves what the manager needs.
const READY_RETRY: Duration = Duration::from_secs(5);

#[tokio::main]
async fn main() -> ExitCode {
    // Listening from the start: a SIGTERM during start-up ends the process cleanly too.
    let shutdown = process::shutdown_signal();
    process::init_tracing(false);
    let args = PoolManagerArgs::parse();
    process::exit("pool-manager", run(args, shutdown).await)
}

async fn run(
    args: PoolManagerArgs,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), String> {
    let client = process::kube_client().await?;
    let health = Health::new("not yet checked that the API server serves the cStor pool CRDs");
    health::start(args.health_addr, health.clone(), process::shutdown_signal()).await?;
    let runner = Arc::new(HostRunner::new());
    let pool = cstor_api::naming::pool_name(&args.pool_name);
    let metrics = Arc::new(PoolExporter::new(runner.clone(), pool));
    exporter::start(args.exporter_addr, metrics, process::shutdown_signal()).await;
    let engine = Arc::new(CstorEngine::new(runner).with_cache_file(args.cache_file));
    let ctx = pool_manager::Context::new(
        client,
        engine,
        args.namespace,
        args.cspi_id,
        &args.pool_name,
    )
    .with_resync(Duration::from_secs(args.resync_interval.max(1)));
    // Ready: the API server lists the CSPIs and replicas this manager watches.
    let (cspis, cvrs) = (ctx.cspis(), ctx.cvrs());
    tokio::spawn(async move {
        health::ready_when(&health, READY_RETRY, || {
            let (cspis, cvrs) = (cspis.clone(), cvrs.clone());
            async move { served::all([answers(cspis).await, answers(cvrs).await]) }
        })
        .await
    });
    tokio::select! {
        () = pool_manager::run(ctx.clone()) => {}
        () = shutdown => {}
    }
    // The CSPI is reported OFFLINE before the process goes (upstream behaviour).
    let _guard = ctx.lock.lock().await;
    if let Err(e) = pool_manager::mark_offline(&ctx).await {
        tracing::warn!(error = %e, "marking the CSPI OFFLINE on shutdown failed");
    }
    Ok(())
}
