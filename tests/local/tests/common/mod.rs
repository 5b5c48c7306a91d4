//! What the system suites share: the whole story on a local cluster, and the checks after it.
#![allow(dead_code)]

use std::path::PathBuf;

use cstor_local::{
    cluster::{LocalCluster, Options, workspace_root},
    kubelet::Skipped,
    story::Story,
};

/// Where the deployed binaries are: `$CSTOR_LOCAL_BIN_DIR` when set (a copy that another build
/// into the same target directory cannot change under a running suite), else cargo's.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CSTOR_LOCAL_BIN_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    PathBuf::from(env!("CARGO_BIN_EXE_cstor-local"))
        .parent()
        .expect("bin dir")
        .to_path_buf()
}

/// Containers the runtime may leave out: exporters, the CSI sidecars (no kubelet plugin
/// registration here) and the legacy management containers of the migration step's pools.
pub fn expected_skip(s: &Skipped) -> bool {
    s.reason.starts_with("metrics exporter image")
        || s.reason.starts_with("CSI sidecar")
        || s.reason.starts_with("legacy (pre-CSI) management image")
}

/// The whole story on a local cluster with `engine` (`None`: the stand-in).
pub fn run_story(engine: Option<PathBuf>, state_dir: &str) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "cstor_local=info".into()),
        )
        .with_test_writer()
        .try_init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let root = workspace_root();
        let opts = Options {
            kubeconfig: std::env::var_os("CSTOR_TEST_KUBECONFIG").map(PathBuf::from),
            deploy_dir: root.join("deploy"),
            bin_dir: bin_dir(),
            engine_dir: engine,
            state_dir: root.join(state_dir),
            nodes: 3,
            namespace: "openebs".into(),
        };
        let cluster = LocalCluster::start(opts)
            .await
            .expect("the local cluster starts and deploy/ applies");
        let result = Story::new(&cluster, |line| println!("{line}")).run().await;
        let skipped = cluster.kubelet.skipped();
        let restarts = cluster.kubelet.restarts();
        let logs = cluster.state_dir.join("logs");
        cluster.shutdown().await;
        let summary =
            result.unwrap_or_else(|e| panic!("{e:#}\n(container logs: {})", logs.display()));
        print!("{summary}");
        // Every container of ours and of the engine ran with the Pod spec's exact command line
        // and environment, and none of them exited.
        let unexpected: Vec<&Skipped> = skipped.iter().filter(|s| !expected_skip(s)).collect();
        assert!(unexpected.is_empty(), "containers not run: {unexpected:#?}");
        assert!(
            restarts.is_empty(),
            "containers exited and were restarted (see {}): {restarts:#?}",
            logs.display()
        );
        // Nothing a Pod started outlives it: the stand-in target's istgt goes with its pod.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            let left = processes_with(STANDIN_ISTGT_CONF);
            if left.is_empty() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "processes left running after the cluster stopped: {left:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    });
}

/// The configuration path the stand-in target starts Debian's istgt with.
const STANDIN_ISTGT_CONF: &str = "cstor-target/standin/istgt.conf";

/// `(pid, command line)` of the processes whose command line contains `needle`.
fn processes_with(needle: &str) -> Vec<(u32, String)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let line = String::from_utf8_lossy(&raw).replace('\0', " ");
            line.contains(needle).then_some((pid, line))
        })
        .collect()
}
