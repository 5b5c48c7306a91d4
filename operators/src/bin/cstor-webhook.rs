//! `cstor-webhook`: the cStor validating admission webhook (see `cstor_operators::webhook`).

use std::{net::SocketAddr, process::ExitCode, sync::Arc};

use clap::Parser;
use cstor_api::{
    health::{self, Health},
    leader, process,
};
use cstor_operators::{
    cli::WebhookArgs,
    webhook::{
        WEBHOOK_CONFIG_NAME,
        bootstrap::{self, BootstrapConfig},
        lookup::KubeLookup,
        server::{self, WebhookState},
        tls,
    },
};

#[tokio::main]
async fn main() -> ExitCode {
    // Listening from the start: a SIGTERM during start-up ends the process cleanly too.
    let shutdown = process::shutdown_signal();
    process::init_tracing(false);
    let args = WebhookArgs::parse();
    process::exit("cstor-webhook", run(args, shutdown).await)
}

async fn run(
    args: WebhookArgs,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), String> {
    let client = process::kube_client().await?;
    // Ready once the HTTPS listener is bound (after the certificate is in place).
    let health = Health::new("preparing the serving certificate");
    health::start(args.health_addr, health.clone(), process::shutdown_signal()).await?;
    let tls_config = match (&args.tls_cert_file, &args.tls_key_file) {
        (Some(cert), Some(key)) => {
            let read = |p: &std::path::Path| {
                std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
            };
            tls::server_config(&read(cert)?, &read(key)?).map_err(|e| e.to_string())?
        }
        _ => {
            let mut cfg = BootstrapConfig::new(&args.namespace);
            cfg.service_name = args.webhook_name.clone();
            cfg.failure_policy =
                bootstrap::failure_policy(args.failure_policy.as_deref()).to_owned();
            cfg.target_port = args.port;
            // With several replicas, one at a time: the first creates the certificate, the
            // others find and use it.
            let bundle = match args
                .leader
                .config("cstor-webhook-bootstrap", &args.namespace)
            {
                None => bootstrap::bootstrap(&client, &cfg).await,
                Some(lease) => {
                    leader::exclusively(client.clone(), &lease, bootstrap::bootstrap(&client, &cfg))
                        .await?
                }
            }
            .map_err(|e| e.to_string())?;
            tls::server_config(bundle.cert_pem.as_bytes(), bundle.key_pem.as_bytes())
                .map_err(|e| e.to_string())?
        }
    };
    let state = WebhookState {
        lookup: Arc::new(KubeLookup::new(client)),
        openebs_namespace: args.namespace.clone(),
        webhook_config_name: WEBHOOK_CONFIG_NAME.to_owned(),
    };
    let addr = SocketAddr::new(args.bind_address, args.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    health.set_ready();
    tracing::info!(%addr, "serving the admission webhook");
    server::serve_tls(listener, tls_config, server::router(state), shutdown)
        .await
        .map_err(|e| format!("server on {addr} failed: {e}"))
}
