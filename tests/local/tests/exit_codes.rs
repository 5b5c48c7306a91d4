//! Every long-running binary follows one `main` convention (`cstor_api::process`): a
//! configuration or start-up error is printed once as `<binary>: <error>` and exits 1; a
//! command-line usage error exits 2 before anything starts. (A SIGTERM exits 0:
//! `operators/tests/sigterm.rs`.)

use std::{path::PathBuf, process::Command};

fn bin(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_cstor-local"))
        .parent()
        .expect("bin dir")
        .join(name);
    assert!(
        path.exists(),
        "{} is not built: run the workspace's tests (`cargo test --workspace`), which build \
         every binary",
        path.display()
    );
    path
}

/// Each binary with the least it needs to get as far as the Kubernetes client.
fn binaries() -> Vec<(&'static str, Vec<&'static str>)> {
    vec![
        ("cspc-operator", vec![]),
        ("cvc-operator", vec![]),
        (
            "pool-manager",
            vec!["--cspi-id", "u-1", "--pool-name", "u-2"],
        ),
        ("volume-manager", vec!["--volume-id", "u-3"]),
        ("cstor-webhook", vec![]),
        ("cstor-csi-controller", vec![]),
        ("cstor-csi-node", vec!["--nodeid", "node-1"]),
    ]
}

fn run(name: &str, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(bin(name))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("OPENEBS_NAMESPACE", "openebs")
        .env("KUBECONFIG", "/nonexistent/cstor-exit-codes/kubeconfig")
        .env("RUST_LOG", "off")
        .output()
        .unwrap_or_else(|e| panic!("running {name}: {e}"));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_start_up_error_is_one_line_naming_the_binary_and_exit_code_1() {
    for (name, args) in binaries() {
        let (code, stderr) = run(name, &args);
        assert_eq!(code, Some(1), "{name}: {stderr}");
        let prefix = format!("{name}: ");
        let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with(&prefix)).collect();
        assert_eq!(lines.len(), 1, "{name}: one error line expected: {stderr}");
        assert!(
            lines[0].contains("Kubernetes client") || lines[0].contains("kubeconfig"),
            "{name}: the error says what is missing: {stderr}"
        );
    }
}

#[test]
fn a_usage_error_exits_2_before_anything_starts() {
    for (name, args) in binaries() {
        let mut args = args.clone();
        args.push("--no-such-flag");
        let (code, stderr) = run(name, &args);
        assert_eq!(code, Some(2), "{name}: {stderr}");
        assert!(stderr.contains("--no-such-flag"), "{name}: {stderr}");
    }
}
