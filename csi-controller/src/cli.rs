//! The command line of `cstor-csi-controller` (`src/main.rs` parses it and runs). It lives in
//! the library so that tests can parse the exact arguments the manifests in `deploy/` pass
//! (`tests/e2e/tests/manifest_args.rs`). Flag names follow upstream's `cstor-csi-driver`;
//! boolean flags take Go's forms `--flag`, `--flag=true` and `--flag=false`.

use std::path::PathBuf;

use clap::Parser;
use cstor_api::{
    constants::{csi::DRIVER_NAME, engine::SNAPSHOT_GRPC_PORT, env::OPENEBS_NAMESPACE},
    health::{HealthAddr, defaults},
};

use crate::TopologyMode;

#[derive(Parser, Debug)]
#[command(
    name = "cstor-csi-controller",
    about = "CSI controller plugin of cstor.csi.openebs.io",
    disable_version_flag = true
)]
pub struct ControllerArgs {
    /// CSI endpoint: unix:///path/to/csi.sock or tcp://ip:port.
    #[arg(
        long,
        env = "OPENEBS_CSI_ENDPOINT",
        default_value = "unix://csi/csi.sock"
    )]
    pub endpoint: String,
    /// Node this process runs on (kept for upstream compatibility; the controller does not use it).
    #[arg(long, env = "OPENEBS_NODE_ID", default_value = "node1")]
    pub nodeid: String,
    /// CSI driver name.
    #[arg(long, default_value = DRIVER_NAME)]
    pub name: String,
    /// `controller` serves Identity and Controller; anything else serves Identity only.
    #[arg(long, env = "OPENEBS_CONTROLLER_DRIVER", default_value = "controller")]
    pub plugin: String,
    /// Legacy maya-apiserver URL (accepted and ignored, as upstream).
    #[arg(long, env = "OPENEBS_CSI_API_URL", default_value = "")]
    pub url: String,
    /// Vendor version reported by GetPluginInfo (defaults to the build's version), as upstream's --version.
    #[arg(long = "version", env = "OPENEBS_CSI_VERSION")]
    pub vendor_version: Option<String>,
    /// Namespace of the cStor objects.
    #[arg(long, env = OPENEBS_NAMESPACE)]
    pub namespace: String,
    /// TCP port of the targets' snapshot service.
    #[arg(long, env = "CSTOR_SNAPSHOT_PORT", default_value_t = SNAPSHOT_GRPC_PORT)]
    pub snapshot_port: u16,
    /// Host to dial for snapshot commands instead of each CStorVolume's target IP (only for a
    /// controller run outside the cluster behind a forwarder).
    #[arg(long, env = "CSTOR_SNAPSHOT_HOST")]
    pub snapshot_host: Option<String>,
    /// Deadline of one snapshot command, in seconds.
    #[arg(long, env = "CSTOR_SNAPSHOT_TIMEOUT", default_value_t = 90)]
    pub snapshot_timeout: u64,
    /// Accessible topology reported for new volumes: none (reachable from every node), zone, or
    /// requisite (the CO's requisite topologies as given).
    #[arg(long, env = "CSTOR_VOLUME_TOPOLOGY", value_enum, default_value_t = TopologyMode::None)]
    pub volume_topology: TopologyMode,
    /// Seconds between sweeps for snapshots of deleted clones (0 disables the sweep).
    #[arg(long, env = "CSTOR_CLONE_SWEEP_INTERVAL", default_value_t = 300)]
    pub clone_sweep_interval: u64,
    /// Kubeconfig for running outside the cluster (default: in-cluster or $KUBECONFIG).
    #[arg(long, env = "OPENEBS_IO_KUBE_CONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Log as JSON lines.
    #[arg(
        long,
        env = "CSTOR_LOG_JSON",
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        default_value_t = false,
        default_missing_value = "true"
    )]
    pub log_json: bool,
    /// Leader election among controller replicas (only the leader runs the background clone
    /// sweeper; every replica serves its own sidecars, which elect their leader themselves).
    #[command(flatten)]
    pub leader: cstor_api::leader::LeaderArgs,
    /// Address of the /healthz and /readyz server (`host:port`, `:port`; empty: none).
    #[arg(long, env = "HEALTH_ADDR", default_value = defaults::CSI_CONTROLLER)]
    pub health_addr: HealthAddr,
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::ControllerArgs;

    #[test]
    fn definition_is_consistent() {
        ControllerArgs::command().debug_assert();
    }

    #[test]
    fn log_json_takes_every_go_form() {
        let parse = |extra: &[&str]| {
            ControllerArgs::try_parse_from(
                ["cstor-csi-controller", "--namespace=openebs"]
                    .iter()
                    .chain(extra),
            )
            .map(|a| a.log_json)
            .map_err(|e| e.to_string())
        };
        assert_eq!(parse(&[]), Ok(false));
        assert_eq!(parse(&["--log-json"]), Ok(true));
        assert_eq!(parse(&["--log-json=true"]), Ok(true));
        assert_eq!(parse(&["--log-json=false"]), Ok(false));
    }
}
