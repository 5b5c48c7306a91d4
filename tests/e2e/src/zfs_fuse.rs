//! Makes sure a zfs-fuse daemon answers (started when `zpool list` does not answer).

use std::{path::PathBuf, time::Duration};

use cstor_api::exec::{Cmd, HostRunner, Runner};

const PID_FILE: &str = "/var/run/zfs-fuse.pid";
const START_LOCK: &str = "/var/lock/cstor-zfs-fuse-start.lock";

fn zfs_fuse_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join("zfs-fuse"))
        .find(|p| p.is_file())
}

async fn answering(runner: &HostRunner) -> bool {
    let cmd = Cmd::new("zpool")
        .arg("list")
        .timeout(Duration::from_secs(10));
    runner.run(&cmd).await.is_ok_and(|o| o.success())
}

/// `Ok` once `zpool list` answers; `Err(reason)` when zfs-fuse is missing or does not start.
pub async fn ensure_zfs_fuse() -> Result<(), String> {
    let Some(binary) = zfs_fuse_binary() else {
        return Err("zfs-fuse is not installed (apt-get install -y zfs-fuse)".into());
    };
    let runner = HostRunner::new();
    if answering(&runner).await {
        return Ok(());
    }
    // The same lock file as the operators' tests: one starter at a time across processes.
    let lock = tokio::task::spawn_blocking(|| -> std::io::Result<std::fs::File> {
        let f = std::fs::File::create(START_LOCK)?;
        f.lock()?;
        Ok(f)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("take {START_LOCK}: {e}"))?;
    if !answering(&runner).await {
        match std::fs::remove_file(PID_FILE) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("remove stale {PID_FILE}: {e}")),
        }
        let start = Cmd::new(binary.to_string_lossy())
            .args(["-p", PID_FILE, "--no-kstat-mount", "-m", "256"])
            .timeout(Duration::from_secs(30));
        let out = runner
            .run(&start)
            .await
            .map_err(|e| format!("start zfs-fuse: {e}"))?;
        if !out.success() {
            return Err(format!("zfs-fuse did not start: {out:?}"));
        }
        cstor_testkit::wait_until("zpool list answering", Duration::from_secs(30), || {
            answering(&runner)
        })
        .await
        .map_err(|e| format!("zfs-fuse started but `zpool list` did not answer: {e}"))?;
    }
    drop(lock);
    Ok(())
}
