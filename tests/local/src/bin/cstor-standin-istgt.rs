//! Plays the `cstor-istgt` container under the engine stand-in (see `cstor_local::standin`):
//! istgt's control socket for the volume manager, the replicas of every node's store, the LUN
//! over iSCSI through Debian's `istgt`.

use std::path::PathBuf;

use clap::Parser;
use cstor_local::standin::{LUNS_ENV, NODES_ENV, target};

#[derive(Parser, Debug)]
#[command(
    version,
    about = "The `cstor-istgt` container of the engine stand-in: istgt's control socket for the volume manager, the replicas of every node's zvol store, the LUN served over iSCSI by Debian's istgt"
)]
struct Args {
    /// The istgt.conf the volume manager writes.
    #[arg(long, default_value = "/usr/local/etc/istgt/istgt.conf")]
    conf: PathBuf,
    /// istgt's control socket.
    #[arg(long, default_value = "/var/run/istgt_ctl_sock")]
    control_socket: PathBuf,
    /// The volume manager's known-replica socket.
    #[arg(long, default_value = "/var/run/volume_mgmt_sock")]
    known_socket: PathBuf,
    /// The node directories (every `*/cstor-standin` is a node's zvol store).
    #[arg(long, env = NODES_ENV)]
    nodes: PathBuf,
    /// Where the LUN images live.
    #[arg(long, env = LUNS_ENV)]
    luns: PathBuf,
    /// The iSCSI server's own files.
    #[arg(long, default_value = "/var/openebs/cstor-target/standin")]
    work: PathBuf,
    /// Debian's istgt.
    #[arg(long, default_value = "/usr/sbin/istgt")]
    istgt: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let a = Args::parse();
    target::Target::new(target::Config {
        conf: a.conf,
        control_socket: a.control_socket,
        known_socket: a.known_socket,
        nodes: a.nodes,
        luns: a.luns,
        work: a.work,
        istgt: a.istgt,
    })
    .run()
    .await
}
