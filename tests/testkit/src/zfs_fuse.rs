//! A zfs-fuse daemon shared by every test binary that drives real `zpool`/`zfs`: started when
//! `zpool list` does not answer, once across processes (a lock file), after removing the stale
//! pid file the daemon leaves behind when it was stopped (a new daemon exits at once otherwise).

use std::{path::PathBuf, process::Stdio, time::Duration};

use tokio::process::Command;

use crate::wait_until;

const PID_FILE: &str = "/var/run/zfs-fuse.pid";
const START_LOCK: &str = "/var/lock/cstor-zfs-fuse-start.lock";

/// zfs-fuse is not installed: the only reason a zfs-fuse test may skip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZfsFuseMissing;

impl std::fmt::Display for ZfsFuseMissing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("zfs-fuse is not installed (apt-get install -y zfs-fuse)")
    }
}

fn binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join("zfs-fuse"))
        .find(|p| p.is_file())
}

async fn answering() -> bool {
    let run = Command::new("zpool")
        .arg("list")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .status();
    matches!(
        tokio::time::timeout(Duration::from_secs(10), run).await,
        Ok(Ok(s)) if s.success()
    )
}

/// `Ok` once a zfs-fuse daemon answers; `Err` only when zfs-fuse is not installed. A daemon that
/// cannot be started is a test failure (panic), never a skip.
pub async fn ensure_zfs_fuse() -> Result<(), ZfsFuseMissing> {
    static IN_PROCESS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let binary = binary().ok_or(ZfsFuseMissing)?;
    if answering().await {
        return Ok(());
    }
    let _in_process = IN_PROCESS.lock().await;
    let lock = tokio::task::spawn_blocking(|| -> std::io::Result<std::fs::File> {
        let f = std::fs::File::create(START_LOCK)?;
        f.lock()?;
        Ok(f)
    })
    .await
    .expect("lock task")
    .unwrap_or_else(|e| panic!("take {START_LOCK}: {e}"));
    if !answering().await {
        match std::fs::remove_file(PID_FILE) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("remove stale {PID_FILE}: {e}"),
        }
        // zfs-fuse daemonizes: the command returns once the daemon is forked.
        let start = Command::new(&binary)
            .args(["-p", PID_FILE, "--no-kstat-mount", "-m", "256"])
            .stdin(Stdio::null())
            .kill_on_drop(false)
            .output();
        let out = tokio::time::timeout(Duration::from_secs(30), start)
            .await
            .expect("zfs-fuse start timed out")
            .expect("run zfs-fuse");
        assert!(out.status.success(), "zfs-fuse did not start: {out:?}");
        wait_until("zpool list answering", Duration::from_secs(30), answering)
            .await
            .expect("zfs-fuse started but `zpool list` did not answer");
    }
    drop(lock);
    Ok(())
}
