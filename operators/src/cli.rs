//! Command lines of the operator binaries (`src/bin/*.rs` parse these and run).
//!
//! They live in the library so that tests can parse the exact arguments the manifests in
//! `deploy/` pass (`tests/e2e/tests/manifest_args.rs`).
//!
//! Boolean flags take upstream's (Go `flag` package) forms: `--flag`, `--flag=true` and
//! `--flag=false`.

/// The argument parser, for callers of `Parser::try_parse_from` on these types.
pub use clap;

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
};

use clap::Parser;
use cstor_api::{
    constants::env,
    health::{HealthAddr, defaults},
    leader::LeaderArgs,
};

use crate::{
    engine::DEFAULT_CACHE_FILE,
    exporter,
    volume_manager::{control, istgt_conf, known_replicas, snapshot},
    webhook::{DEFAULT_PORT, SERVER_NAME},
};

/// Reconciles CStorPoolClusters.
#[derive(Debug, Parser)]
#[command(name = "cspc-operator", version)]
pub struct CspcOperatorArgs {
    /// Namespace to watch (all namespaces when empty).
    #[arg(long, env = "OPENEBS_NAMESPACE", default_value = "")]
    pub namespace: String,
    /// Seconds between resyncs.
    #[arg(long, env = "RESYNC_INTERVAL", default_value_t = 30)]
    pub resync_interval: u64,
    #[command(flatten)]
    pub leader: LeaderArgs,
    /// Address of the /healthz and /readyz server (`host:port`, `:port`; empty: none).
    #[arg(long, env = "HEALTH_ADDR", default_value = defaults::CSPC_OPERATOR)]
    pub health_addr: HealthAddr,
}

/// Realises one CStorPoolInstance as a zpool and its volume replicas as zvols.
#[derive(Debug, Parser)]
#[command(name = "pool-manager", version)]
pub struct PoolManagerArgs {
    /// UID of the CStorPoolInstance this pool manager serves.
    #[arg(long, env = "OPENEBS_IO_CSPI_ID")]
    pub cspi_id: String,
    /// UID of the CStorPoolCluster; the pool is `cstor-<uid>`.
    #[arg(long, env = "OPENEBS_IO_POOL_NAME")]
    pub pool_name: String,
    /// Namespace of the CSPI, CVRs and block devices.
    #[arg(long, env = "NAMESPACE", default_value = "openebs")]
    pub namespace: String,
    /// Seconds between resyncs.
    #[arg(long, env = "RESYNC_INTERVAL", default_value_t = 30)]
    pub resync_interval: u64,
    /// zpool cache file.
    #[arg(long, env = "CSTOR_POOL_CACHE_FILE", default_value = DEFAULT_CACHE_FILE)]
    pub cache_file: String,
    /// Address of the /healthz and /readyz server (`host:port`, `:port`; empty: none).
    #[arg(long, env = "HEALTH_ADDR", default_value = defaults::POOL_MANAGER)]
    pub health_addr: HealthAddr,
    /// Address of the Prometheus metrics exporter, `GET /metrics` with upstream's m-exporter
    /// metric names (`host:port`, `:port`; empty: none). The operators' pods set 0.0.0.0:9500.
    /// When it cannot be bound the binary runs on without it.
    #[arg(long, env = exporter::ADDR_ENV, default_value = "")]
    pub exporter_addr: HealthAddr,
}

/// Turns Pending CStorVolumeConfigs into cStor volumes and keeps them in line with their spec.
#[derive(Debug, Parser)]
#[command(name = "cvc-operator", version)]
pub struct CvcOperatorArgs {
    /// Seconds between periodic resyncs of every CVC.
    #[arg(long, env = "RESYNC_INTERVAL", default_value_t = 30)]
    pub resync_interval: u64,
    /// Address of the backup/restore REST server for the Velero plugin: an IP (served on port
    /// 5757, as upstream), `ip:port`, or empty for no REST server. Served on every replica,
    /// leader or not.
    #[arg(long, default_value = "")]
    pub bind: crate::cvc_operator::rest::BindAddr,
    #[command(flatten)]
    pub leader: LeaderArgs,
    /// Address of the /healthz and /readyz server (`host:port`, `:port`; empty: none).
    #[arg(long, env = "HEALTH_ADDR", default_value = defaults::CVC_OPERATOR)]
    pub health_addr: HealthAddr,
}

/// Keeps a cStor volume's target (istgt) configured and its CStorVolume status true.
#[derive(Debug, Parser)]
#[command(name = "volume-manager", version)]
pub struct VolumeManagerArgs {
    /// UID of the CStorVolume this target serves.
    #[arg(long, env = "OPENEBS_IO_CSTOR_VOLUME_ID")]
    pub volume_id: String,
    /// Namespace of the CStorVolume.
    #[arg(long, env = "OPENEBS_NAMESPACE", default_value = "openebs")]
    pub namespace: String,
    /// Seconds between status syncs.
    #[arg(long, env = "RESYNC_INTERVAL", default_value_t = 30)]
    pub resync_interval: u64,
    /// istgt's control socket.
    #[arg(long, env = "ISTGT_CONTROL_SOCKET", default_value = control::DEFAULT_SOCKET)]
    pub istgt_socket: PathBuf,
    /// Socket istgt reports trusted replicas to.
    #[arg(long, env = "VOLUME_MGMT_SOCKET", default_value = known_replicas::DEFAULT_SOCKET)]
    pub known_replica_socket: PathBuf,
    /// istgt.conf written for the volume.
    #[arg(long, env = "ISTGT_CONF", default_value = istgt_conf::DEFAULT_CONF_PATH)]
    pub conf_path: PathBuf,
    /// Listen address of the snapshot gRPC service.
    #[arg(long, env = "SNAPSHOT_GRPC_LISTEN", default_value = snapshot::DEFAULT_LISTEN)]
    pub grpc_listen: SocketAddr,
    /// Event source component.
    #[arg(long, env = "POD_NAME", default_value = "")]
    pub pod_name: String,
    /// Event source host.
    #[arg(long, env = "NODE_NAME", default_value = "")]
    pub node_name: String,
    /// Address of the /healthz and /readyz server (`host:port`, `:port`; empty: none).
    #[arg(long, env = "HEALTH_ADDR", default_value = defaults::VOLUME_MANAGER)]
    pub health_addr: HealthAddr,
    /// Address of the Prometheus metrics exporter, `GET /metrics` with upstream's m-exporter
    /// metric names (`host:port`, `:port`; empty: none). The operators' pods set 0.0.0.0:9500.
    /// When it cannot be bound the binary runs on without it.
    #[arg(long, env = exporter::ADDR_ENV, default_value = "")]
    pub exporter_addr: HealthAddr,
}

/// Validates CStorPoolClusters, CStorVolumeConfigs, PVC and namespace deletions.
#[derive(Debug, Parser)]
#[command(name = "cstor-webhook", version)]
pub struct WebhookArgs {
    /// HTTPS port.
    #[arg(long, default_value_t = DEFAULT_PORT)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_address: IpAddr,
    /// PEM serving certificate. With --tls-key-file, the webhook serves these files and does
    /// not register anything (the webhook configuration must then carry the matching CA).
    /// Without them it generates a CA + certificate into its Secret and registers itself.
    #[arg(long, requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of --tls-cert-file.
    #[arg(long, requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,
    /// OpenEBS namespace.
    #[arg(long, env = env::OPENEBS_NAMESPACE)]
    pub namespace: String,
    /// Name of the Service (and of the certificate's host).
    #[arg(long, env = "ADMISSION_WEBHOOK_NAME", default_value = SERVER_NAME)]
    pub webhook_name: String,
    /// `no`/`false`/`ignore` → failurePolicy Ignore; anything else → Fail.
    #[arg(long, env = "ADMISSION_WEBHOOK_FAILURE_POLICY")]
    pub failure_policy: Option<String>,
    #[command(flatten)]
    pub leader: LeaderArgs,
    /// Address of the /healthz and /readyz server (`host:port`, `:port`; empty: none).
    #[arg(long, env = "HEALTH_ADDR", default_value = defaults::WEBHOOK)]
    pub health_addr: HealthAddr,
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[test]
    fn definitions_are_consistent() {
        CspcOperatorArgs::command().debug_assert();
        PoolManagerArgs::command().debug_assert();
        CvcOperatorArgs::command().debug_assert();
        VolumeManagerArgs::command().debug_assert();
        WebhookArgs::command().debug_assert();
    }

    #[test]
    fn leader_election_takes_every_upstream_form() {
        let parse = |args: &[&str]| {
            CvcOperatorArgs::try_parse_from(
                std::iter::once("cvc-operator").chain(args.iter().copied()),
            )
            .map(|a| a.leader.leader_election)
            .map_err(|e| e.to_string())
        };
        assert_eq!(parse(&[]), Ok(false));
        assert_eq!(parse(&["--leader-election=false"]), Ok(false));
        assert_eq!(parse(&["--leader-election=true"]), Ok(true));
        assert_eq!(parse(&["--leader-election"]), Ok(true));
        assert_eq!(parse(&["--leader-election", "--bind=10.0.0.1"]), Ok(true));
        assert_eq!(parse(&["--leader-election", "false"]), Ok(false));
        assert!(parse(&["--leader-election=maybe"]).is_err());
    }

    /// The example Jobs (`deploy/examples/*-job.yaml`) run `cstor-migrate` with arguments
    /// this CLI takes and the checks of the run accept.
    #[test]
    fn example_jobs_parse_with_the_migrate_cli() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples");
        let mut seen = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let file = path.file_name().unwrap().to_string_lossy().into_owned();
            if !file.ends_with("-job.yaml") {
                continue;
            }
            let job: serde_json::Value =
                serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let c = &job["spec"]["template"]["spec"]["containers"][0];
            let argv: Vec<String> = c["command"]
                .as_array()
                .into_iter()
                .chain(c["args"].as_array())
                .flatten()
                .map(|a| a.as_str().unwrap().to_owned())
                .collect();
            assert_eq!(
                argv.first().map(String::as_str),
                Some("cstor-migrate"),
                "{file}"
            );
            let args = MigrateArgs::try_parse_from(&argv)
                .unwrap_or_else(|e| panic!("{file}: {argv:?}: {e}"));
            let what = match &args.command {
                MigrateCommand::CstorSpc { spc_name, .. } => {
                    assert!(!spc_name.is_empty(), "{file}");
                    "migrate cstor-spc"
                }
                MigrateCommand::CstorVolume { pv_name } => {
                    assert!(!pv_name.is_empty(), "{file}");
                    "migrate cstor-volume"
                }
                MigrateCommand::Resource { .. } => "migrate resource",
                MigrateCommand::Upgrade(up) => {
                    crate::upgrade::validate("openebs", up)
                        .unwrap_or_else(|e| panic!("{file}: {e}"));
                    match up.command {
                        crate::upgrade::UpgradeCommand::CstorCspc { .. } => "upgrade cstor-cspc",
                        crate::upgrade::UpgradeCommand::CstorVolume { .. } => {
                            "upgrade cstor-volume"
                        }
                        crate::upgrade::UpgradeCommand::Resource => "upgrade resource",
                    }
                }
            };
            seen.push(what);
        }
        seen.sort();
        assert_eq!(
            seen,
            [
                "migrate cstor-spc",
                "migrate cstor-volume",
                "upgrade cstor-cspc",
                "upgrade cstor-volume"
            ]
        );
    }
}

/// Moves legacy cStor objects to the CSI world (upstream's `migrate`).
#[derive(Debug, Parser)]
#[command(name = "cstor-migrate", version)]
pub struct MigrateArgs {
    /// The OpenEBS namespace.
    #[arg(
        long,
        env = "OPENEBS_NAMESPACE",
        default_value = "openebs",
        global = true
    )]
    pub openebs_namespace: String,
    /// Check the preconditions and print what would be created; write nothing.
    #[arg(long, global = true)]
    pub dry_run: bool,
    /// Failed runs after which the MigrationTask is marked `Error` (the Job's backoffLimit).
    #[arg(long, env = "BACKOFF_LIMIT", default_value_t = 6, global = true)]
    pub backoff_limit: i64,
    /// Seconds to wait for each thing the operators, pool managers or Kubernetes do (a pod
    /// gone, a pool imported, a volume Bound and Healthy, a snapshot ready) before giving up.
    #[arg(long, default_value_t = 1800, global = true)]
    pub timeout_seconds: u64,
    #[command(subcommand)]
    pub command: MigrateCommand,
}

/// What to migrate.
#[derive(Debug, clap::Subcommand)]
pub enum MigrateCommand {
    /// A StoragePoolClaim and its CStorPools → a CStorPoolCluster (pools imported under their
    /// new names, data kept).
    CstorSpc {
        /// The StoragePoolClaim.
        #[arg(long, default_value = "")]
        spc_name: String,
        /// Name of the CStorPoolCluster (default: the SPC's).
        #[arg(long)]
        cspc_name: Option<String>,
    },
    /// A legacy (external-provisioner) cStor volume → a CSI volume with a CStorVolumeConfig;
    /// its snapshots → CSI VolumeSnapshots. Its pools must be migrated first.
    CstorVolume {
        /// The PersistentVolume.
        #[arg(long, default_value = "")]
        pv_name: String,
    },
    /// Runs the migration a MigrationTask in the namespace describes.
    Resource {
        /// The MigrationTask.
        name: String,
    },
    /// Moves pools and volumes of an older OpenEBS release to this one (upstream's `upgrade`).
    Upgrade(crate::upgrade::UpgradeArgs),
}
