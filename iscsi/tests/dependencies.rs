//! `cstor-iscsi` only runs commands: it depends on the runner seam (`cstor-exec`), never on the
//! Kubernetes or gRPC stack (with `cstor-api` it pulled 221 crates).

use std::{collections::BTreeSet, process::Command};

#[test]
fn iscsi_does_not_pull_kubernetes_or_grpc() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(&cargo)
        .args([
            "tree",
            "-p",
            "cstor-iscsi",
            "--edges",
            "normal",
            "--prefix",
            "none",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cargo} tree: {e}"));
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let crates: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    println!("cstor-iscsi builds {} crates: {crates:?}", crates.len());
    assert!(crates.contains("cstor-exec"), "{crates:?}");
    for heavy in [
        "cstor-api",
        "kube",
        "kube-client",
        "k8s-openapi",
        "tonic",
        "prost",
        "hyper",
    ] {
        assert!(
            !crates.contains(heavy),
            "cstor-iscsi depends on {heavy}: use cstor-exec for the runner seam"
        );
    }
}
