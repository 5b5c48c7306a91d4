//! `pool-manager`: the cstor-pool-mgmt container of a cStor pool pod (see
//! `cstor_operators::pool_manager`).

use std::{process::ExitCode, sync::Arc, time::Duration};

use clap::Parser;
use cstor_api::{exec::HostRunner, process};
use cstor_operators::{cli::PoolManagerArgs, engine::CstorEngine, pool_manager};

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
    let engine =
        Arc::new(CstorEngine::new(Arc::new(HostRunner::new())).with_cache_file(args.cache_file));
    let ctx = pool_manager::Context::new(
        client,
        engine,
        args.namespace,
        args.cspi_id,
        &args.pool_name,
    )
    .with_resync(Duration::from_secs(args.resync_interval.max(1)));
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
