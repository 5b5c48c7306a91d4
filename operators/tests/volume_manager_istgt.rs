//! `istgt.conf` as the volume manager renders it: byte-for-byte against upstream's layout
//! (golden file), and served for real by Debian's istgt 0.4 on 127.0.0.1.
//!
//! Needs the apt packages `istgt` and `libiscsi-bin`. Every libiscsi call runs under a
//! deadline (the runner's timeout); no discovery session is opened (libiscsi's discovery
//! logout loops forever against istgt).

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use cstor_api::{
    cstor::{self, CStorVolume},
    exec::{Cmd, HostRunner, Runner},
};
use cstor_operators::volume_manager::{ConfOptions, LunStorage, render};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/volume_manager")
        .join(name)
}

fn fixture_cv() -> CStorVolume {
    cstor::from_yaml(&std::fs::read_to_string(fixture("cv-pvc-1.yaml")).unwrap()).unwrap()
}

#[test]
fn render_matches_upstream_layout_exactly() {
    let golden = std::fs::read_to_string(fixture("istgt-pvc-1.conf")).unwrap();
    let got = render(&fixture_cv(), &ConfOptions::default()).unwrap();
    if got != golden {
        for (i, (a, b)) in got.lines().zip(golden.lines()).enumerate() {
            assert_eq!(a, b, "line {} differs", i + 1);
        }
        assert_eq!(
            got.lines().count(),
            golden.lines().count(),
            "line counts differ"
        );
        assert_eq!(got, golden);
    }
}

#[test]
fn render_defaults_drf_to_rf_and_names_missing_fields() {
    let mut cv = fixture_cv();
    cv.spec.desired_replication_factor = Some(0);
    cv.spec.replica_details = None;
    let text = render(&cv, &ConfOptions::default()).unwrap();
    assert!(text.contains("\n  DesiredReplicationFactor 3\n"));
    assert!(!text.contains("Replica "));
    assert!(text.ends_with("  LUN0 Option XCOPY Disable\n"));
    cv.spec.target_ip = None;
    let err = render(&cv, &ConfOptions::default()).unwrap_err();
    assert!(err.to_string().contains("spec.targetIP"), "{err}");
}

/// Keys of the rendered file that only cStor's istgt interprets. Stock istgt 0.4 skips the
/// unknown section keys silently and warns `unknown key(...)` for the unknown `LUN0 Option`s;
/// the test checks they are present and that the LUN is still served.
const CSTOR_ONLY_KEYS: &[&str] = &[
    "  LogFile ",
    "  Luworkers 6",
    "  TCPUserTimeout 120",
    "  OperationalMode 0",
    "  DesiredReplicationFactor ",
    "  ReplicationFactor ",
    "  ConsistencyFactor ",
    "  PhysRecordLength 4096",
    "  LUN0 Option Unmap Disable",
    "  LUN0 Option WZero Disable",
    "  LUN0 Option ATS Disable",
    "  LUN0 Option XCOPY Disable",
    "  Replica ",
];

const LUN_BYTES: u64 = 64 << 20;
const INITIATOR: &str = "iqn.2024-01.io.cstor-rs:volume-manager-test";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Stops the daemonised istgt (by its own pid) even when the test panics.
struct IstgtGuard {
    pid: Option<i32>,
}

impl Drop for IstgtGuard {
    fn drop(&mut self) {
        if let Some(pid) = self.pid.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
}

async fn run(runner: &HostRunner, cmd: Cmd) -> String {
    let out = runner.run(&cmd).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(out.success(), "`{cmd}` failed: {out:?}");
    out.stdout
}

#[tokio::test]
async fn stock_istgt_serves_the_rendered_lun() {
    let runner = HostRunner::new();
    for (tool, pkg) in [
        ("istgt", "istgt"),
        ("iscsi-inq", "libiscsi-bin"),
        ("iscsi-readcapacity16", "libiscsi-bin"),
    ] {
        let found = runner
            .run(&Cmd::new("sh").args(["-c", &format!("command -v {tool}")]))
            .await;
        assert!(
            found.is_ok_and(|o| o.success()),
            "{tool} is not installed: run `apt-get install -y {pkg}` (this test needs Debian's istgt and libiscsi-bin)"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let lun = d.join("lun0.img");
    std::fs::File::create(&lun)
        .unwrap()
        .set_len(LUN_BYTES)
        .unwrap();
    std::fs::write(d.join("auth.conf"), "").unwrap();
    let (iscsi_port, uc_port) = (free_port(), free_port());
    let mut cv = fixture_cv();
    cv.spec.target_ip = Some("127.0.0.1".into());
    let opts = ConfOptions {
        pid_file: d.join("istgt.pid").display().to_string(),
        auth_file: d.join("auth.conf").display().to_string(),
        log_file: d.join("logfile").display().to_string(),
        media_directory: d.display().to_string(),
        unit_control_port: uc_port,
        iscsi_port,
        lun_storage: LunStorage::File {
            path: lun.clone(),
            size: "Auto".into(),
        },
    };
    let conf = render(&cv, &opts).unwrap();
    for key in CSTOR_ONLY_KEYS {
        assert!(conf.contains(key), "rendered istgt.conf lacks {key:?}");
    }
    let conf_path = d.join("istgt.conf");
    std::fs::write(&conf_path, &conf).unwrap();

    // istgt daemonises; the pid file tells which process to stop.
    let pid_file = d.join("istgt.pid");
    let start = Cmd::new("istgt")
        .args([
            "-c",
            &conf_path.display().to_string(),
            "-p",
            &pid_file.display().to_string(),
        ])
        .timeout(Duration::from_secs(30));
    run(&runner, start).await;
    let pid: i32 = cstor_testkit::wait_for(Duration::from_secs(20), || {
        let pid_file = pid_file.clone();
        async move {
            std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|s| s.trim().parse().ok())
        }
    })
    .await
    .expect("istgt wrote no pid file");
    let _guard = IstgtGuard { pid: Some(pid) };
    let addr: SocketAddr = format!("127.0.0.1:{iscsi_port}").parse().unwrap();
    cstor_testkit::wait_for(Duration::from_secs(20), || async move {
        tokio::net::TcpStream::connect(addr).await.is_ok()
    })
    .await
    .expect("istgt does not listen on the rendered portal");

    let name = cv.metadata.name.clone().unwrap();
    let uid = cv.metadata.uid.clone().unwrap();
    let url = format!("iscsi://127.0.0.1:{iscsi_port}/iqn.2016-09.com.openebs.cstor:{name}/0");
    let libiscsi = |tool: &str, extra: &[&str]| {
        Cmd::new(tool)
            .args(["-i", INITIATOR])
            .args(extra.iter().copied())
            .arg(&url)
            .timeout(Duration::from_secs(30))
    };

    // Standard INQUIRY: UnitInquiry "OpenEBS" "iscsi" "0" "<uid>" from the rendered file.
    let inq = run(&runner, libiscsi("iscsi-inq", &[])).await;
    assert!(
        inq.contains("Peripheral Device Type:DIRECT_ACCESS"),
        "{inq}"
    );
    assert!(inq.contains("Vendor:OpenEBS"), "{inq}");
    assert!(inq.contains("Product:iscsi"), "{inq}");
    // Unit serial number VPD page (0x80): istgt keeps the first 32 characters of the CV uid.
    let serial = run(&runner, libiscsi("iscsi-inq", &["-e", "1", "-c", "128"])).await;
    assert!(
        serial.contains(&format!("Unit Serial Number:[{}]", &uid[..32])),
        "{serial}"
    );
    // Capacity: the backing file, 512-byte blocks (BlockLength 512).
    let cap = run(&runner, libiscsi("iscsi-readcapacity16", &[])).await;
    assert!(cap.contains(&format!("Total size:{LUN_BYTES}")), "{cap}");
    assert!(cap.contains("LOGICAL BLOCK LENGTH IN BYTES:512"), "{cap}");

    // Stop by pid and wait for it to go.
    drop(_guard);
    cstor_testkit::wait_for(Duration::from_secs(20), || async move {
        !Path::new(&format!("/proc/{pid}")).exists()
    })
    .await
    .expect("istgt did not exit after SIGTERM");
}
