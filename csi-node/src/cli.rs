//! The command line of `cstor-csi-node` (`src/main.rs` parses it and runs). It lives in the
//! library so that tests can parse the exact arguments the manifests in `deploy/` pass
//! (`tests/e2e/tests/manifest_args.rs`). Flag names and environment variables follow upstream's
//! driver; boolean flags take Go's forms `--flag`, `--flag=true` and `--flag=false`.

use clap::Parser;
use cstor_api::{
    constants::{csi::DRIVER_NAME, env},
    health::{HealthAddr, defaults},
};

#[derive(Debug, Parser)]
#[command(
    name = "cstor-csi-node",
    version,
    about = "CSI node plugin of cstor.csi.openebs.io"
)]
pub struct NodeArgs {
    /// CSI endpoint: unix:///path/to/csi.sock.
    #[arg(
        long,
        env = "OPENEBS_CSI_ENDPOINT",
        default_value = "unix:///plugin/csi.sock"
    )]
    pub endpoint: String,
    /// This node's Kubernetes name.
    #[arg(long = "nodeid", env = env::OPENEBS_NODE_ID)]
    pub node_id: String,
    /// CSI driver name.
    #[arg(long, default_value = DRIVER_NAME)]
    pub name: String,
    /// Plugin role; this binary serves the node role only.
    #[arg(long, env = env::OPENEBS_NODE_DRIVER, default_value = "node", value_parser = ["node"])]
    pub plugin: String,
    /// Namespace of the cStor objects (CVC, CStorVolume, CVA).
    #[arg(long, env = env::OPENEBS_NAMESPACE)]
    pub namespace: String,
    /// Remount staged filesystems that went read-only once their volume is healthy again.
    #[arg(
        long,
        env = env::REMOUNT,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        default_value_t = true,
        default_missing_value = "true"
    )]
    pub remount: bool,
    /// How often the remount monitor looks at the mounts.
    #[arg(long, env = "REMOUNT_INTERVAL_SECONDS", default_value_t = 5)]
    pub remount_interval_seconds: u64,
    /// max_volumes_per_node reported by NodeGetInfo (0 = no limit).
    #[arg(long, env = "CSTOR_MAX_VOLUMES", default_value_t = 0)]
    pub max_volumes: i64,
    /// iscsiadm to run (a chroot wrapper in the DaemonSet).
    #[arg(long, env = "ISCSIADM", default_value = "iscsiadm")]
    pub iscsiadm: String,
    /// Directory of the iSCSI by-path device links.
    #[arg(long, env = "DEVICE_ROOT", default_value = cstor_iscsi::DEFAULT_DEVICE_ROOT)]
    pub device_root: String,
    /// Legacy maya-apiserver URL; accepted and ignored.
    #[arg(long, env = "OPENEBS_CSI_API_URL", hide = true, default_value = "")]
    pub url: String,
    /// Version string reported by GetPluginInfo.
    #[arg(long = "version-string", hide = true, default_value = env!("CARGO_PKG_VERSION"))]
    pub version_string: String,
    /// Log as JSON lines instead of text.
    #[arg(
        long,
        env = "LOG_JSON",
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        default_value_t = false,
        default_missing_value = "true"
    )]
    pub log_json: bool,
    /// Address of the /healthz and /readyz server (`host:port`, `:port`; empty: none). The
    /// plugin runs on the host network: the port must be free on every node.
    #[arg(long, env = "HEALTH_ADDR", default_value = defaults::CSI_NODE)]
    pub health_addr: HealthAddr,
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::NodeArgs;

    #[test]
    fn definition_is_consistent() {
        NodeArgs::command().debug_assert();
    }

    #[test]
    fn booleans_take_every_go_form() {
        let parse = |extra: &[&str]| {
            NodeArgs::try_parse_from(
                ["cstor-csi-node", "--nodeid=n1", "--namespace=openebs"]
                    .iter()
                    .chain(extra),
            )
            .map(|a| (a.remount, a.log_json))
            .map_err(|e| e.to_string())
        };
        assert_eq!(parse(&[]), Ok((true, false)));
        assert_eq!(parse(&["--remount=false", "--log-json"]), Ok((false, true)));
        assert_eq!(parse(&["--remount", "--log-json=true"]), Ok((true, true)));
        assert_eq!(
            parse(&["--remount=true", "--log-json=false"]),
            Ok((true, false))
        );
    }
}
