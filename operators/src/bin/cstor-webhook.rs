//! `cstor-webhook`: the cStor validating admission webhook (see `cstor_operators::webhook`).

use std::{net::SocketAddr, process::ExitCode, sync::Arc};

use clap::Parser;
use cstor_api::constants::env;
use cstor_operators::webhook::{
    DEFAULT_PORT, WEBHOOK_CONFIG_NAME,
    bootstrap::{self, BootstrapConfig},
    lookup::KubeLookup,
    server::{self, WebhookState},
    tls,
};

/// Validates CStorPoolClusters, CStorVolumeConfigs, PVC and namespace deletions.
#[derive(Debug, Parser)]
#[command(name = "cstor-webhook", version)]
struct Args {
    /// HTTPS port.
    #[arg(long, default_value_t = DEFAULT_PORT)]
    port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    bind_address: std::net::IpAddr,
    /// PEM serving certificate. With --tls-key-file, the webhook serves these files and does
    /// not register anything (the webhook configuration must then carry the matching CA).
    /// Without them it generates a CA + certificate into its Secret and registers itself.
    #[arg(long, requires = "tls_key_file")]
    tls_cert_file: Option<std::path::PathBuf>,
    /// PEM private key of --tls-cert-file.
    #[arg(long, requires = "tls_cert_file")]
    tls_key_file: Option<std::path::PathBuf>,
    /// OpenEBS namespace.
    #[arg(long, env = env::OPENEBS_NAMESPACE)]
    namespace: String,
    /// Name of the Service (and of the certificate's host).
    #[arg(long, env = "ADMISSION_WEBHOOK_NAME", default_value = cstor_operators::webhook::SERVER_NAME)]
    webhook_name: String,
    /// `no`/`false`/`ignore` → failurePolicy Ignore; anything else → Fail.
    #[arg(long, env = "ADMISSION_WEBHOOK_FAILURE_POLICY")]
    failure_policy: Option<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cstor-webhook: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let client = kube::Client::try_default().await.map_err(|e| {
        format!("cannot build a Kubernetes client (in-cluster config or KUBECONFIG): {e}")
    })?;
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
            let bundle = bootstrap::bootstrap(&client, &cfg)
                .await
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
    tracing::info!(%addr, "serving the admission webhook");
    server::serve_tls(listener, tls_config, server::router(state), async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
    .map_err(|e| format!("server on {addr} failed: {e}"))
}
