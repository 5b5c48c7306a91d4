//! The system suite: the deployed system (deploy/ rendered and applied, every Pod run as
//! processes by the local node runtime) on the real cStor engine, through the whole story —
//! pools, a 3-replica volume, I/O through the target, resize, snapshots, restore, clone,
//! replica scale 3→2→3, a pool pod killed and rebuilt, deletion.
//!
//! API server: the embedded one, or the cluster of `CSTOR_TEST_KUBECONFIG` (its
//! controller-manager and scheduler must run). Engine: `target/cstor-real` (or `CSTOR_REAL_DIR`),
//! unpacked from `../shared/real`; without it the test says SKIPPED and why, unless
//! `CSTOR_REQUIRE_SHARED=1` (CI with ../shared present), which makes its absence a failure.
//! The same story on the engine stand-in (zfs-fuse pools, image-file zvols, Debian's istgt
//! serving the LUN) is `tests/system_standin.rs`.

use std::path::PathBuf;

use cstor_local::{
    cluster::{LocalCluster, Options, real_dir, workspace_root},
    kubelet::Skipped,
    story::Story,
};

fn bin_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cstor-local"))
        .parent()
        .expect("bin dir")
        .to_path_buf()
}

/// Containers the runtime may leave out: exporters and the CSI sidecars (no kubelet plugin
/// registration here).
fn expected_skip(s: &Skipped) -> bool {
    s.reason.starts_with("metrics exporter image") || s.reason.starts_with("CSI sidecar")
}

#[test]
fn system_story_on_the_real_engine() {
    let Some(engine) = real_dir() else {
        let why = "the real cStor engine is not unpacked (CSTOR_REAL_DIR=target/cstor-real bash ../shared/real/unpack.sh)";
        if std::env::var(cstor_testkit::shared::REQUIRE_ENV).is_ok_and(|v| v == "1") {
            panic!("{}=1 but {why}", cstor_testkit::shared::REQUIRE_ENV);
        }
        println!("SKIPPED system_story_on_the_real_engine: {why}");
        return;
    };
    run_story(Some(engine), "target/cstor-local");
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
    });
}
