//! The pool pod's metrics exporter (upstream: `maya-exporter -e=pool` in the `maya-exporter`
//! sidecar): pool capacity and health from `zpool list -Hp <pool>`, per-replica IO and rebuild
//! counters from `zfs stats`, and per-dataset sizes from `zfs list -Hp -o name,used,available`,
//! under upstream's names (see README "Metrics").
//!
//! The three commands run concurrently through the [`Runner`] seam, each bounded by the
//! collection timeout. A command that fails or prints something unreadable only loses its own
//! metrics and increments upstream's error counter for it.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use cstor_api::exec::{Cmd, Output, Runner};
use tokio::sync::Mutex;

use crate::{
    engine::{ReplicaStats, ReplicaStatus, parse_stats},
    exporter::{COLLECT_TIMEOUT, Collect, ErrorCounter, Exposition, Kind},
};

/// Upstream's `openebs_pool_status` value when no pool is imported (`NoPoolsAvailable`).
pub const NO_POOL: f64 = 6.0;

/// One line of `zpool list -Hp`: `NAME SIZE ALLOC FREE EXPANDSZ FRAG CAP DEDUP HEALTH ALTROOT`.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolListing {
    pub name: String,
    pub size: f64,
    pub used: f64,
    pub free: f64,
    pub used_percent: f64,
    pub health: String,
}

/// Why `zpool list -Hp` gave no pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListingError {
    /// No pool imported (empty listing, `no such pool`, `no pools available`).
    NoPool,
    /// Fewer columns than a pool line has.
    Incomplete(String),
    /// A number column is not a number.
    Parse(String),
}

/// Upstream's encoding of a pool's health: OFFLINE 0, ONLINE 1, DEGRADED 2, FAULTED 3,
/// REMOVED 4, UNAVAIL 5 (anything else too, as the pool cannot be used).
pub fn pool_status_value(health: &str) -> f64 {
    match health {
        "OFFLINE" => 0.0,
        "ONLINE" => 1.0,
        "DEGRADED" => 2.0,
        "FAULTED" => 3.0,
        "REMOVED" => 4.0,
        _ => 5.0,
    }
}

/// Upstream's encoding of a replica's status: Offline 0, Healthy 1, Degraded 2, Rebuilding 3
/// (anything else 0, as upstream).
pub fn replica_status_value(status: &ReplicaStatus) -> f64 {
    match status {
        ReplicaStatus::Healthy => 1.0,
        ReplicaStatus::Degraded => 2.0,
        ReplicaStatus::Rebuilding => 3.0,
        ReplicaStatus::Offline | ReplicaStatus::Other(_) => 0.0,
    }
}

/// Upstream's encoding of a replica's rebuild status: INIT 0, DONE 1, SNAP REBUILD INPROGRESS 2,
/// ACTIVE DATASET REBUILD INPROGRESS 3, ERRORED 4, FAILED 5, UNKNOWN (and anything else) 6.
pub fn rebuild_status_value(status: &str) -> f64 {
    match status.trim() {
        "INIT" => 0.0,
        "DONE" => 1.0,
        "SNAP REBUILD INPROGRESS" => 2.0,
        "ACTIVE DATASET REBUILD INPROGRESS" => 3.0,
        "ERRORED" => 4.0,
        "FAILED" => 5.0,
        _ => 6.0,
    }
}

fn number(field: &str, what: &str) -> Result<f64, ListingError> {
    field
        .parse::<f64>()
        .map_err(|_| ListingError::Parse(format!("{what} is not a number: {field:?}")))
}

/// Parses the first line of `zpool list -Hp [<pool>]`.
pub fn parse_zpool_list(stdout: &str) -> Result<PoolListing, ListingError> {
    if stdout.contains("no pools available") {
        return Err(ListingError::NoPool);
    }
    let Some(line) = stdout.lines().find(|l| !l.trim().is_empty()) else {
        return Err(ListingError::NoPool);
    };
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() < 9 {
        return Err(ListingError::Incomplete(line.to_owned()));
    }
    Ok(PoolListing {
        name: f[0].to_owned(),
        size: number(f[1], "SIZE")?,
        used: number(f[2], "ALLOC")?,
        free: number(f[3], "FREE")?,
        used_percent: number(f[6].trim_end_matches('%'), "CAP")?,
        health: f[8].to_owned(),
    })
}

/// One line of `zfs list -Hp -o name,used,available`.
#[derive(Clone, Debug, PartialEq)]
pub struct DatasetSize {
    pub name: String,
    pub used: f64,
    pub available: f64,
}

/// Parses `zfs list -Hp -o name,used,available`; an unreadable line is an error.
pub fn parse_zfs_list(stdout: &str) -> Result<Vec<DatasetSize>, String> {
    stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let num = |i: usize| {
                f.get(i)
                    .and_then(|v| v.parse::<f64>().ok())
                    .ok_or_else(|| format!("unreadable zfs list line {l:?}"))
            };
            Ok(DatasetSize {
                name: f[0].to_owned(),
                used: num(1)?,
                available: num(2)?,
            })
        })
        .collect()
}

/// Upstream's error counters of the pool exporter, for one family each.
#[derive(Debug, Default)]
struct Errors {
    zpool_command: ErrorCounter,
    zpool_parse: ErrorCounter,
    zpool_reject: ErrorCounter,
    zpool_no_pool: ErrorCounter,
    zpool_incomplete: ErrorCounter,
    zpool_libuzfs: ErrorCounter,
    stats_command: ErrorCounter,
    stats_parse: ErrorCounter,
    stats_reject: ErrorCounter,
    stats_no_dataset: ErrorCounter,
    stats_libuzfs: ErrorCounter,
    list_command: ErrorCounter,
    list_parse: ErrorCounter,
    list_reject: ErrorCounter,
    list_no_dataset: ErrorCounter,
    list_libuzfs: ErrorCounter,
}

/// The error counters of one `zfs` listing.
#[derive(Clone, Copy)]
struct ZfsCounters<'a> {
    command: &'a ErrorCounter,
    parse: &'a ErrorCounter,
    no_dataset: &'a ErrorCounter,
    libuzfs: &'a ErrorCounter,
}

/// What one collection found; `None` where the command failed.
#[derive(Debug, Default)]
struct Collected {
    /// `Some(None)`: the command ran and no pool is imported.
    pool: Option<Option<PoolListing>>,
    replicas: Option<Vec<ReplicaStats>>,
    datasets: Option<Vec<DatasetSize>>,
}

/// The pool exporter of one pool (`cstor-<cspc uid>`).
#[derive(Debug)]
pub struct PoolExporter {
    runner: Arc<dyn Runner>,
    pool: String,
    timeout: Duration,
    busy: Mutex<()>,
    errors: Errors,
}

const LIBUZFS: &str = "libuzfs client";
const NO_DATASETS: &str = "no datasets available";

fn message(out: &Output) -> String {
    format!("{}\n{}", out.stdout, out.stderr)
}

impl PoolExporter {
    /// Exports `pool`, running `zpool`/`zfs` through `runner`.
    pub fn new(runner: Arc<dyn Runner>, pool: impl Into<String>) -> Self {
        Self {
            runner,
            pool: pool.into(),
            timeout: COLLECT_TIMEOUT,
            busy: Mutex::new(()),
            errors: Errors::default(),
        }
    }

    /// Another collection timeout (tests).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    async fn run(&self, cmd: Cmd) -> Option<Output> {
        let cmd = cmd.timeout(self.timeout);
        match tokio::time::timeout(self.timeout, self.runner.run(&cmd)).await {
            Ok(Ok(out)) => Some(out),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "exporter: {} failed", cmd.line());
                None
            }
            Err(_) => {
                tracing::warn!(
                    "exporter: {} took longer than {:?}",
                    cmd.line(),
                    self.timeout
                );
                None
            }
        }
    }

    async fn zpool_list(&self) -> Option<Option<PoolListing>> {
        let e = &self.errors;
        let Some(out) = self
            .run(Cmd::new("zpool").args(["list", "-Hp", &self.pool]))
            .await
        else {
            e.zpool_command.inc();
            return None;
        };
        let msg = message(&out);
        if msg.contains(LIBUZFS) {
            e.zpool_libuzfs.inc();
            return None;
        }
        if !out.success() {
            if msg.contains("no such pool") || msg.contains("no pools available") {
                e.zpool_no_pool.inc();
                return Some(None);
            }
            e.zpool_command.inc();
            return None;
        }
        match parse_zpool_list(&out.stdout) {
            Ok(p) => Some(Some(p)),
            Err(ListingError::NoPool) => {
                e.zpool_no_pool.inc();
                Some(None)
            }
            Err(ListingError::Incomplete(_)) => {
                e.zpool_incomplete.inc();
                None
            }
            Err(ListingError::Parse(_)) => {
                e.zpool_parse.inc();
                None
            }
        }
    }

    /// Runs a `zfs` listing and parses its output, counting each way it can fail in `c`; a
    /// pool without datasets is an empty listing.
    async fn zfs_listing<T>(
        &self,
        cmd: Cmd,
        c: ZfsCounters<'_>,
        parse: fn(&str) -> Result<Vec<T>, String>,
    ) -> Option<Vec<T>> {
        let line = cmd.line();
        let Some(out) = self.run(cmd).await else {
            c.command.inc();
            return None;
        };
        let msg = message(&out);
        let counter = if msg.contains(LIBUZFS) {
            c.libuzfs
        } else if msg.contains(NO_DATASETS) {
            c.no_dataset.inc();
            return Some(Vec::new());
        } else if !out.success() {
            c.command
        } else {
            match parse(&out.stdout) {
                Ok(v) => return Some(v),
                Err(err) => {
                    tracing::warn!(error = %err, "exporter: unreadable output of {line}");
                    c.parse
                }
            }
        };
        counter.inc();
        None
    }

    async fn zfs_stats(&self) -> Option<Vec<ReplicaStats>> {
        let e = &self.errors;
        let c = ZfsCounters {
            command: &e.stats_command,
            parse: &e.stats_parse,
            no_dataset: &e.stats_no_dataset,
            libuzfs: &e.stats_libuzfs,
        };
        self.zfs_listing(Cmd::new("zfs").arg("stats"), c, parse_stats)
            .await
    }

    async fn zfs_list(&self) -> Option<Vec<DatasetSize>> {
        let e = &self.errors;
        let c = ZfsCounters {
            command: &e.list_command,
            parse: &e.list_parse,
            no_dataset: &e.list_no_dataset,
            libuzfs: &e.list_libuzfs,
        };
        let cmd = Cmd::new("zfs").args(["list", "-Hp", "-o", "name,used,available"]);
        self.zfs_listing(cmd, c, parse_zfs_list).await
    }

    async fn collect(&self) -> Collected {
        let (pool, replicas, datasets) =
            tokio::join!(self.zpool_list(), self.zfs_stats(), self.zfs_list());
        Collected {
            pool,
            replicas,
            datasets,
        }
    }

    fn render_pool(&self, x: &mut Exposition, pool: Option<&Option<PoolListing>>) {
        let label = |name: &str| vec![("pool", name.to_owned())];
        match pool {
            Some(Some(p)) => {
                x.single("openebs_pool_size", "Size of pool", Kind::Gauge, p.size);
                let status = pool_status_value(&p.health);
                x.family(
                    "openebs_pool_status",
                    POOL_STATUS_HELP,
                    Kind::Gauge,
                    &[(label(&p.name), status)],
                );
                x.single(
                    "openebs_used_pool_capacity",
                    "Capacity used by pool",
                    Kind::Gauge,
                    p.used,
                );
                x.single(
                    "openebs_free_pool_capacity",
                    "Free capacity in pool",
                    Kind::Gauge,
                    p.free,
                );
                x.single(
                    "openebs_used_pool_capacity_percent",
                    "Capacity used by pool in percent",
                    Kind::Gauge,
                    p.used_percent,
                );
            }
            Some(None) => x.family(
                "openebs_pool_status",
                POOL_STATUS_HELP,
                Kind::Gauge,
                &[(label(&self.pool), NO_POOL)],
            ),
            None => {}
        }
    }

    fn render_errors(&self, x: &mut Exposition) {
        let e = &self.errors;
        for (name, help, c) in [
            (
                "openebs_zpool_list_command_error",
                "Total no of zpool command errors",
                &e.zpool_command,
            ),
            (
                "openebs_zpool_list_parse_error_count",
                "Total no of parsing errors",
                &e.zpool_parse,
            ),
            (
                "openebs_zpool_list_reject_request_count",
                "Total no of rejected requests of zpool command",
                &e.zpool_reject,
            ),
            (
                "openebs_zpool_list_no_pool_available_error",
                "Total no of no pool available errors",
                &e.zpool_no_pool,
            ),
            (
                "openebs_zpool_list_incomplete_stdout_error",
                "Total no of incomplete stdout errors",
                &e.zpool_incomplete,
            ),
            (
                "openebs_zpool_list_failed_to_initialize_libuzfs_client_error_counter",
                "Total no of initialize libuzfs client error",
                &e.zpool_libuzfs,
            ),
            (
                "openebs_zfs_stats_command_error",
                "Total no of zfs command errors",
                &e.stats_command,
            ),
            (
                "openebs_zfs_stats_parse_error_counter",
                "Total no of zfs stats parse errors",
                &e.stats_parse,
            ),
            (
                "openebs_zfs_stats_reject_request_count",
                "Total no of rejected requests of zfs stats",
                &e.stats_reject,
            ),
            (
                "openebs_zfs_stats_no_dataset_available_error_counter",
                "Total no of no datasets error in zfs stats command",
                &e.stats_no_dataset,
            ),
            (
                "openebs_zfs_stats_failed_to_initialize_libuzfs_client_error_counter",
                "Total no of failed to initialize libuzfs client error in zfs stats command",
                &e.stats_libuzfs,
            ),
            (
                "openebs_zfs_list_command_error",
                "Total no of zfs command errors",
                &e.list_command,
            ),
            (
                "openebs_zfs_list_parse_error",
                "Total no of zfs list parse errors",
                &e.list_parse,
            ),
            (
                "openebs_zfs_list_request_reject_count",
                "Total no of rejected requests of zfs list",
                &e.list_reject,
            ),
            (
                "openebs_zfs_list_no_dataset_available_error_counter",
                "Total no of no datasets error in zfs list command",
                &e.list_no_dataset,
            ),
            (
                "openebs_zfs_list_failed_to_initialize_libuzfs_client_error_counter",
                "Total no of failed to initialize libuzfs client error in zfs list command",
                &e.list_libuzfs,
            ),
        ] {
            x.single(name, help, Kind::Gauge, c.get());
        }
    }

    fn render(&self, c: &Collected) -> String {
        let mut x = Exposition::new();
        self.render_pool(&mut x, c.pool.as_ref());
        if let Some(replicas) = &c.replicas {
            render_replicas(&mut x, replicas);
        }
        if let Some(datasets) = &c.datasets {
            render_datasets(&mut x, &self.pool, datasets);
        }
        self.render_errors(&mut x);
        x.finish()
    }
}

const POOL_STATUS_HELP: &str = r#"Status of pool (0, 1, 2, 3, 4, 5, 6)= {"Offline", "Online", "Degraded", "Faulted", "Removed", "Unavail", "NoPoolsAvailable"}"#;

type ReplicaValue = fn(&ReplicaStats) -> f64;

#[allow(clippy::cast_precision_loss)]
fn replica_families() -> [(&'static str, &'static str, ReplicaValue); 16] {
    [
        (
            "openebs_total_read_bytes",
            "Total read in bytes of volume replica",
            |r| r.io.read_bytes as f64,
        ),
        (
            "openebs_total_write_bytes",
            "Total write in bytes of volume replica",
            |r| r.io.write_bytes as f64,
        ),
        (
            "openebs_total_read_count",
            "Total read io count of volume replica",
            |r| r.io.read_count as f64,
        ),
        (
            "openebs_total_write_count",
            "Total write io count of volume replica",
            |r| r.io.write_count as f64,
        ),
        (
            "openebs_sync_count",
            "Total sync io count of volume replica",
            |r| r.io.sync_count as f64,
        ),
        (
            "openebs_sync_latency",
            "Sync latency on volume replica",
            |r| r.io.sync_latency as f64,
        ),
        (
            "openebs_read_latency",
            "Read latency on volume replica",
            |r| r.io.read_latency as f64,
        ),
        (
            "openebs_write_latency",
            "Write latency on volume replica",
            |r| r.io.write_latency as f64,
        ),
        (
            "openebs_replica_status",
            r#"Status of volume replica (0, 1, 2, 3) = {"Offline", "Healthy", "Degraded", "Rebuilding"}"#,
            |r| replica_status_value(&r.status),
        ),
        (
            "openebs_inflight_io_count",
            "Inflight IO's count of volume replica",
            |r| r.io.inflight_io_count as f64,
        ),
        (
            "openebs_dispatched_io_count",
            "Dispatched IO's count of volume replica",
            |r| r.io.dispatched_io_count as f64,
        ),
        (
            "openebs_rebuild_count",
            "Rebuild count of volume replica",
            |r| r.rebuild_cnt as f64,
        ),
        (
            "openebs_rebuild_bytes",
            "Rebuild bytes of volume replica",
            |r| r.rebuild_bytes as f64,
        ),
        (
            "openebs_rebuild_status",
            r#"Status of rebuild on volume replica (0, 1, 2, 3, 4, 5, 6)= {"INIT", "DONE", "SNAP REBUILD INPROGRESS", "ACTIVE DATASET REBUILD INPROGRESS", "ERRORED", "FAILED", "UNKNOWN"}"#,
            |r| rebuild_status_value(&r.rebuild_status),
        ),
        (
            "openebs_total_rebuild_done",
            "Total no of rebuild done on volume replica",
            |r| r.rebuild_done_cnt as f64,
        ),
        (
            "openebs_total_failed_rebuild",
            "Total no of failed rebuilds on volume replica",
            |r| r.rebuild_failed_cnt as f64,
        ),
    ]
}

/// Per-replica families labelled `vol` and `pool` (`<pool>/<vol>` split at the first `/`).
fn render_replicas(x: &mut Exposition, replicas: &[ReplicaStats]) {
    if replicas.is_empty() {
        return;
    }
    let labels: Vec<Vec<(&str, String)>> = replicas
        .iter()
        .map(|r| {
            let (pool, vol) = r.name.split_once('/').unwrap_or(("", r.name.as_str()));
            vec![("vol", vol.to_owned()), ("pool", pool.to_owned())]
        })
        .collect();
    for (name, help, value) in replica_families() {
        let samples: Vec<_> = replicas
            .iter()
            .zip(&labels)
            .map(|(r, l)| (l.clone(), value(r)))
            .collect();
        x.family(name, help, Kind::Gauge, &samples);
    }
}

/// `openebs_volume_replica_{used,available}_size{name}` of the pool and its datasets.
fn render_datasets(x: &mut Exposition, pool: &str, datasets: &[DatasetSize]) {
    let ours: Vec<&DatasetSize> = datasets
        .iter()
        .filter(|d| d.name == pool || d.name.starts_with(&format!("{pool}/")))
        .collect();
    if ours.is_empty() {
        return;
    }
    let samples = |f: fn(&DatasetSize) -> f64| -> Vec<(Vec<(&str, String)>, f64)> {
        ours.iter()
            .map(|d| (vec![("name", d.name.clone())], f(d)))
            .collect()
    };
    x.family(
        "openebs_volume_replica_used_size",
        "Used size of volume replica on a pool",
        Kind::Gauge,
        &samples(|d| d.used),
    );
    x.family(
        "openebs_volume_replica_available_size",
        "Available size of volume replica on a pool",
        Kind::Gauge,
        &samples(|d| d.available),
    );
}

#[async_trait]
impl Collect for PoolExporter {
    async fn scrape(&self) -> String {
        let Ok(_turn) = tokio::time::timeout(self.timeout, self.busy.lock()).await else {
            let e = &self.errors;
            e.zpool_reject.inc();
            e.stats_reject.inc();
            e.list_reject.inc();
            let mut x = Exposition::new();
            self.render_errors(&mut x);
            return x.finish();
        };
        let collected = self.collect().await;
        self.render(&collected)
    }
}
