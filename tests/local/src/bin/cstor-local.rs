//! `cstor-local`: runs the deployed cStor system on this machine and tells its story.

use std::path::PathBuf;

use clap::Parser;
use cstor_local::{
    cluster::{LocalCluster, Options, real_dir, workspace_root},
    story::Story,
};

/// Runs deploy/ on a local node runtime (embedded API server by default, or the cluster of
/// --kubeconfig) with the cStor engine (the real one when unpacked, else the stand-in: zfs-fuse
/// pools, image-file zvols, Debian's istgt serving the LUN), then the system story: pools, a 3-replica volume, I/O,
/// resize, snapshots, restore, clone, replica scaling, a pool pod killed, deletion.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// A real API server's kubeconfig (its controller-manager and scheduler must run); without
    /// it an embedded API server is started.
    #[arg(long, env = "CSTOR_LOCAL_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// The unpacked cStor engine (`cstor-engine/bin/zrepl` below it); default: target/cstor-real
    /// (`bash ../shared/real/unpack.sh` with CSTOR_REAL_DIR=target/cstor-real) when it is there,
    /// else the engine stand-in.
    #[arg(long, env = "CSTOR_REAL_DIR")]
    engine_dir: Option<PathBuf>,
    /// Our binaries; default: the directory of this program.
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// The deploy/ directory to apply.
    #[arg(long)]
    deploy_dir: Option<PathBuf>,
    /// Node, pod and log directories.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Number of nodes.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Keep the system running after the story until Ctrl-C.
    #[arg(long)]
    keep: bool,
    /// Run the engine stand-in even when the real engine is unpacked.
    #[arg(long)]
    standin: bool,
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let root = workspace_root();
    let engine_dir = if args.standin {
        None
    } else {
        args.engine_dir.or_else(real_dir)
    };
    let bin_dir = args.bin_dir.unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(PathBuf::from))
            .unwrap_or_else(|| root.join("target/debug"))
    });
    let opts = Options {
        kubeconfig: args.kubeconfig,
        deploy_dir: args.deploy_dir.unwrap_or_else(|| root.join("deploy")),
        bin_dir,
        engine_dir,
        state_dir: args
            .state_dir
            .unwrap_or_else(|| root.join("target/cstor-local")),
        nodes: args.nodes,
        namespace: "openebs".into(),
    };
    println!(
        "cstor-local: starting {} nodes, API server: {}, engine: {}",
        opts.nodes,
        opts.kubeconfig
            .as_ref()
            .map_or("embedded".into(), |p| p.display().to_string()),
        opts.engine_dir.as_ref().map_or(
            "the stand-in (zfs-fuse pools, image-file zvols, Debian istgt)".into(),
            |p| format!("cStor (zrepl, istgt) from {}", p.display())
        )
    );
    let cluster = match LocalCluster::start(opts).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cstor-local: cannot start: {e:#}");
            std::process::exit(1);
        }
    };
    println!(
        "cstor-local: deploy/ applied; state and logs in {}",
        cluster.state_dir.display()
    );
    if let Some(srv) = cluster.server() {
        println!(
            "cstor-local: embedded API server at {} (kubectl --server {} get pods -n openebs)",
            srv.url(),
            srv.url()
        );
    }
    for s in &cluster.not_applied {
        println!("cstor-local: not applied: {s}");
    }
    let story = Story::new(&cluster, |line| println!("{line}")).run();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    let result = tokio::select! {
        r = story => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        _ = term.recv() => Err(anyhow::anyhow!("terminated")),
    };
    for s in cluster.kubelet.skipped() {
        println!(
            "cstor-local: not run: {}/{}: {}",
            s.pod, s.container, s.reason
        );
    }
    let code = match result {
        Ok(summary) => {
            print!("{summary}");
            0
        }
        Err(e) => {
            eprintln!(
                "cstor-local: {e:#}\n(container logs: {}/logs)",
                cluster.state_dir.display()
            );
            1
        }
    };
    if args.keep && code == 0 {
        println!("cstor-local: running until Ctrl-C");
        let _ = tokio::signal::ctrl_c().await;
    }
    cluster.shutdown().await;
    std::process::exit(code);
}
