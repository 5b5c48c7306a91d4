//! The metrics exporters render what the real engine printed (`tests/fixtures/real-engine/
//! exporter`, made by `record-exporter.sh`): the pool exporter gets the recorded `zpool list -Hp`,
//! `zfs stats` and `zfs list -Hp` outputs through the runner seam for its exact command lines,
//! the volume exporter reads the recorded bytes of istgt's `IOSTATS` reply from a unix socket.
//! The metric names, labels and values checked are upstream m-exporter's.

use std::{path::PathBuf, sync::Arc, time::Duration};

use cstor_api::exec::{Output, ScriptedRunner};
use cstor_operators::{
    exporter::Collect,
    pool_manager::exporter::PoolExporter,
    volume_manager::{ControlClient, exporter::VolumeExporter},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::UnixListener,
};

const POOL: &str = "cstor-6b1f2d3c-4e5a-4b7c-9d8e-0f1a2b3c4d5e";
const VOL: &str = "pvc-9c8b7a6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d";

fn dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/real-engine/exporter"
    ))
}

fn read(rel: &str) -> String {
    let p = dir().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// The recorded output `name` as the runner returns it, with its recorded exit code.
fn recorded(name: &str) -> Output {
    let index = read("index.tsv");
    let code = index
        .lines()
        .find_map(|l| {
            let mut f = l.split('\t');
            (f.next() == Some(name)).then(|| f.next().unwrap().parse().unwrap())
        })
        .unwrap_or_else(|| panic!("{name} not in index.tsv"));
    Output {
        code: Some(code),
        stdout: read(&format!("cli/{name}.stdout")),
        stderr: read(&format!("cli/{name}.stderr")),
    }
}

/// The value of the sample `series` (`name{labels}` exactly as rendered), if present.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

fn assert_values(text: &str, expected: &[(&str, f64)]) {
    for (series, want) in expected {
        assert_eq!(value(text, series), Some(*want), "{series} in:\n{text}");
    }
}

fn replica(name: &str) -> String {
    format!("{name}{{vol=\"{VOL}\",pool=\"{POOL}\"}}")
}

fn pool_runner(zpool: &str, stats: &str, list: &str) -> Arc<ScriptedRunner> {
    let r = ScriptedRunner::new();
    r.on_line(format!("zpool list -Hp {POOL}"), recorded(zpool));
    r.on_line("zfs stats", recorded(stats));
    r.on_line("zfs list -Hp -o name,used,available", recorded(list));
    Arc::new(r)
}

#[tokio::test]
async fn pool_metrics_of_the_real_engine_after_io() {
    let runner = pool_runner(
        "zpool-list-Hp-after-io",
        "zfs-stats-after-io",
        "zfs-list-Hp-after-io",
    );
    let text = PoolExporter::new(runner, POOL).scrape().await;
    let zvol = format!("{POOL}/{VOL}");
    let size =
        |kind: &str, name: &str| format!("openebs_volume_replica_{kind}_size{{name=\"{name}\"}}");
    assert_values(
        &text,
        &[
            ("openebs_pool_size", 2_130_706_432.0),
            (&format!("openebs_pool_status{{pool=\"{POOL}\"}}"), 1.0),
            ("openebs_used_pool_capacity", 94_208.0),
            ("openebs_free_pool_capacity", 2_130_612_224.0),
            ("openebs_used_pool_capacity_percent", 0.0),
            (&replica("openebs_total_write_bytes"), 50_540_544.0),
            (&replica("openebs_total_read_bytes"), 33_693_696.0),
            (&replica("openebs_total_write_count"), 768.0),
            (&replica("openebs_total_read_count"), 512.0),
            (&replica("openebs_write_latency"), 354_392_265.0),
            (&replica("openebs_read_latency"), 63_073_119.0),
            (&replica("openebs_replica_status"), 1.0),
            (&replica("openebs_rebuild_status"), 1.0),
            (&replica("openebs_total_rebuild_done"), 0.0),
            (&size("used", POOL), 81_920.0),
            (&size("used", &zvol), 6_144.0),
            (&size("available", &zvol), 1_996_406_784.0),
            ("openebs_zpool_list_command_error", 0.0),
            ("openebs_zfs_stats_parse_error_counter", 0.0),
            ("openebs_zfs_list_parse_error", 0.0),
        ],
    );
    for family in [
        "openebs_pool_size",
        "openebs_pool_status",
        "openebs_replica_status",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} gauge\n")),
            "{family} type in:\n{text}"
        );
    }
}

#[tokio::test]
async fn pool_metrics_of_a_replica_without_target_are_offline_init() {
    let runner = pool_runner("zpool-list-Hp", "zfs-stats-no-target", "zfs-list-Hp");
    let text = PoolExporter::new(runner, POOL).scrape().await;
    assert_values(
        &text,
        &[
            ("openebs_used_pool_capacity", 350_720.0),
            (&replica("openebs_replica_status"), 0.0),
            (&replica("openebs_rebuild_status"), 0.0),
            (&replica("openebs_total_write_count"), 0.0),
        ],
    );
}

/// No pool imported (the real `zpool list` answer), `zfs stats` failing and `zfs list`
/// unreadable: the pool is reported as NoPoolsAvailable (6), each failure counted, and the
/// exporter keeps answering.
#[tokio::test]
async fn failed_commands_are_counted_and_the_rest_served() {
    let runner = ScriptedRunner::new();
    runner.on_line(
        format!("zpool list -Hp {POOL}"),
        recorded("zpool-list-Hp-missing"),
    );
    runner.on_line("zfs stats", Output::fail(1, "internal error: Broken pipe"));
    runner.on_line(
        "zfs list -Hp -o name,used,available",
        Output::ok("cstor-x\tnot-a-number\t1\n"),
    );
    let exporter = PoolExporter::new(Arc::new(runner), POOL);
    for scrape in 1..=2 {
        let text = exporter.scrape().await;
        let n = f64::from(scrape);
        assert_values(
            &text,
            &[
                (&format!("openebs_pool_status{{pool=\"{POOL}\"}}"), 6.0),
                ("openebs_zpool_list_no_pool_available_error", n),
                ("openebs_zfs_stats_command_error", n),
                ("openebs_zfs_list_parse_error", n),
                ("openebs_zpool_list_command_error", 0.0),
            ],
        );
        assert_eq!(value(&text, "openebs_pool_size"), None, "{text}");
        assert!(!text.contains("openebs_replica_status"), "{text}");
    }
}

/// A command that never answers costs the scrape at most the collection timeout.
#[tokio::test]
async fn a_hanging_command_is_cut_at_the_timeout() {
    let slow = Arc::new(Slow);
    let exporter = PoolExporter::new(slow, POOL).with_timeout(Duration::from_millis(200));
    let started = std::time::Instant::now();
    let text = exporter.scrape().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_values(
        &text,
        &[
            ("openebs_zpool_list_command_error", 1.0),
            ("openebs_zfs_stats_command_error", 1.0),
            ("openebs_zfs_list_command_error", 1.0),
        ],
    );
}

/// A runner whose commands never finish.
#[derive(Debug)]
struct Slow;

#[async_trait::async_trait]
impl cstor_api::exec::Runner for Slow {
    async fn run(&self, _cmd: &cstor_api::exec::Cmd) -> Result<Output, cstor_api::exec::ExecError> {
        std::future::pending().await
    }
}

/// Serves the recorded bytes of `names` (in turn, one per connection) on a unix socket as istgt
/// would: reads the command line, then writes everything istgt wrote, banner included.
async fn recorded_istgt(dir: &tempfile::TempDir, names: &[&str]) -> PathBuf {
    let path = dir.path().join("istgt_ctl_sock");
    let listener = UnixListener::bind(&path).unwrap();
    let replies: Vec<(Vec<u8>, Vec<u8>)> = names
        .iter()
        .map(|n| {
            let base = dir_file(&format!("istgt/{n}"));
            (
                std::fs::read(format!("{base}.sent")).unwrap(),
                std::fs::read(format!("{base}.recv")).unwrap(),
            )
        })
        .collect();
    tokio::spawn(async move {
        for (sent, recv) in replies {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut got = vec![0; sent.len()];
            sock.read_exact(&mut got).await.unwrap();
            assert_eq!(got, sent, "the exporter sends what was recorded");
            sock.write_all(&recv).await.unwrap();
        }
    });
    path
}

fn dir_file(rel: &str) -> String {
    dir().join(rel).display().to_string()
}

#[tokio::test]
async fn volume_metrics_of_real_istgt_iostats() {
    let tmp = tempfile::tempdir().unwrap();
    let socket = recorded_istgt(&tmp, &["iostats-after-io", "iostats-starting"]).await;
    let exporter = VolumeExporter::new(ControlClient::new(&socket));
    let text = exporter.scrape().await;
    assert_values(
        &text,
        &[
            ("openebs_reads", 512.0),
            ("openebs_writes", 768.0),
            ("openebs_total_read_bytes", 33_685_504.0),
            ("openebs_total_write_bytes", 50_528_256.0),
            ("openebs_read_time", 261_449_825.0),
            ("openebs_write_time", 619_496_385.0),
            ("openebs_read_block_count", 65_792.0),
            ("openebs_write_block_count", 98_688.0),
            ("openebs_sector_size", 512.0),
            // Upstream reports sizes in GiB: 1 GiB volume, 12 blocks of 512 bytes used.
            ("openebs_size_of_volume", 1.0),
            ("openebs_actual_used", 12.0 * 512.0 / 1_073_741_824.0),
            ("openebs_logical_size", 0.0),
            ("openebs_volume_status", 3.0),
            (
                &format!("openebs_volume_uptime{{volName=\"{VOL}\",castype=\"cstor\"}}"),
                17.0,
            ),
            ("openebs_total_replica_count", 1.0),
            ("openebs_healthy_replica_count", 1.0),
            ("openebs_degraded_replica_count", 0.0),
            ("openebs_connection_error_total", 0.0),
            ("openebs_parse_error_total", 0.0),
            ("openebs_target_reject_request_counter", 0.0),
        ],
    );
    // While istgt starts: Offline (1), no replica.
    let text = exporter.scrape().await;
    assert_values(
        &text,
        &[
            ("openebs_volume_status", 1.0),
            ("openebs_total_replica_count", 0.0),
            ("openebs_healthy_replica_count", 0.0),
            ("openebs_size_of_volume", 1.0),
        ],
    );
}

#[tokio::test]
async fn unreachable_istgt_is_unknown_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let exporter = VolumeExporter::new(ControlClient::new(tmp.path().join("no-socket")));
    for scrape in 1..=2 {
        let text = exporter.scrape().await;
        let n = f64::from(scrape);
        assert_values(
            &text,
            &[
                ("openebs_volume_status", 4.0),
                ("openebs_connection_error_total", n),
                ("openebs_connection_retry_total", n),
            ],
        );
        assert_eq!(value(&text, "openebs_reads"), None, "{text}");
    }
}
