//! `pool-manager`: the cstor-pool-mgmt container of a cStor pool pod (see
//! `cstor_operators::pool_manager`).

use std::{process::ExitCode, sync::Arc, time::Duration};

use clap::Parser;
use cstor_api::exec::HostRunner;
use cstor_operators::{cli::PoolManagerArgs, engine::CstorEngine, pool_manager};

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    // Listening from the start: a SIGTERM during start-up ends the process cleanly too.
    let shutdown = cstor_operators::shutdown::signal();
    let args = PoolManagerArgs::parse();
    let client = match kube::Client::try_default().await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "no Kubernetes client configuration");
            return ExitCode::FAILURE;
        }
    };
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
    ExitCode::SUCCESS
}
