//! The target pod's metrics exporter (upstream: `maya-exporter -e=cstor` in the
//! `maya-volume-exporter` sidecar): the volume's IO counters, size and replica counts from
//! istgt's `IOSTATS` control command, under upstream's names (see README "Metrics").
//!
//! istgt answers `IOSTATS  {json}` then `OK IOSTATS`; the JSON's numbers are mostly strings
//! (`"WriteIOPS": "768"`), `ReplicaCounter` a number. Sizes are reported in GiB as upstream does
//! (`openebs_size_of_volume`, `openebs_actual_used`). When istgt cannot be reached or answers
//! something unreadable, the scrape serves the error counters and `openebs_volume_status` 4
//! (Unknown) instead of upstream's zeroed gauges, so counters never appear to reset.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::Mutex;

use super::control::{ControlClient, ControlError};
use crate::exporter::{COLLECT_TIMEOUT, Collect, ErrorCounter, Exposition, Kind};

/// Bytes in upstream's "GB".
const GIB: f64 = 1_073_741_824.0;
/// `openebs_volume_status` when istgt's state is not known.
pub const STATUS_UNKNOWN: f64 = 4.0;
const VOLUME_STATUS_HELP: &str =
    "Status of volume: (1, 2, 3, 4) = {Offline, Degraded, Healthy, Unknown}";

/// istgt's `IOSTATS` answer, with the values upstream exports.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IoStats {
    pub iqn: String,
    pub reads: f64,
    pub writes: f64,
    pub read_bytes: f64,
    pub write_bytes: f64,
    pub read_time: f64,
    pub write_time: f64,
    pub read_blocks: f64,
    pub write_blocks: f64,
    pub size: f64,
    pub used_logical_blocks: f64,
    pub sector_size: f64,
    pub uptime: f64,
    pub replica_counter: f64,
    /// `Status`: `Healthy`, `Degraded`, `Offline` (upstream also knows `RW`/`RO`).
    pub status: String,
    /// `Mode` of each connected replica.
    pub replica_modes: Vec<String>,
}

impl IoStats {
    /// The volume name: the IQN after its `:`.
    pub fn volume(&self) -> &str {
        self.iqn.split_once(':').map_or("", |(_, v)| v)
    }

    /// Upstream's `openebs_volume_status`: Offline/RO 1, Degraded 2, Healthy/RW 3, else 4.
    pub fn status_value(&self) -> f64 {
        match self.status.as_str() {
            "Offline" | "RO" => 1.0,
            "Degraded" => 2.0,
            "Healthy" | "RW" => 3.0,
            _ => STATUS_UNKNOWN,
        }
    }

    /// Replicas in mode Healthy/RW, and in mode Degraded/RO/WO/ERR (upstream's two counts).
    pub fn replica_counts(&self) -> (f64, f64) {
        let mut healthy = 0.0;
        let mut degraded = 0.0;
        for mode in &self.replica_modes {
            match mode.as_str() {
                "Healthy" | "RW" => healthy += 1.0,
                "Degraded" | "RO" | "WO" | "ERR" => degraded += 1.0,
                _ => {}
            }
        }
        (healthy, degraded)
    }
}

fn num(doc: &Value, key: &str) -> Result<f64, String> {
    match doc.get(key) {
        None | Some(Value::Null) => Ok(0.0),
        Some(Value::Number(n)) => n.as_f64().ok_or_else(|| format!("{key}: {n}")),
        Some(Value::String(s)) => s
            .trim()
            .parse::<f64>()
            .map_err(|_| format!("`{key}` is not a number: {s:?}")),
        Some(other) => Err(format!("`{key}` is not a number: {other}")),
    }
}

/// Parses the JSON payload of an `IOSTATS` reply.
pub fn parse_iostats(payload: &str) -> Result<IoStats, String> {
    let doc: Value = serde_json::from_str(payload).map_err(|e| format!("invalid JSON: {e}"))?;
    if !doc.is_object() {
        return Err("IOSTATS payload is not a JSON object".to_owned());
    }
    let text = |key: &str| {
        doc.get(key)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let replica_modes = doc
        .get("Replicas")
        .and_then(Value::as_array)
        .map(|rs| {
            rs.iter()
                .map(|r| {
                    r.get("Mode")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned()
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(IoStats {
        iqn: text("iqn"),
        reads: num(&doc, "ReadIOPS")?,
        writes: num(&doc, "WriteIOPS")?,
        read_bytes: num(&doc, "TotalReadBytes")?,
        write_bytes: num(&doc, "TotalWriteBytes")?,
        read_time: num(&doc, "TotalReadTime")?,
        write_time: num(&doc, "TotalWriteTime")?,
        read_blocks: num(&doc, "TotalReadBlockCount")?,
        write_blocks: num(&doc, "TotalWriteBlockCount")?,
        size: num(&doc, "Size")?,
        used_logical_blocks: num(&doc, "UsedLogicalBlocks")?,
        sector_size: num(&doc, "SectorSize")?,
        uptime: num(&doc, "UpTime")?,
        replica_counter: num(&doc, "ReplicaCounter")?,
        status: text("Status"),
        replica_modes,
    })
}

/// Renders one successful collection's families (the error counters come after).
pub fn render_stats(x: &mut Exposition, s: &IoStats) {
    let g = Kind::Gauge;
    x.single("openebs_reads", "Read Input/Outputs on Volume", g, s.reads);
    x.single(
        "openebs_writes",
        "Write Input/Outputs on Volume",
        g,
        s.writes,
    );
    x.single(
        "openebs_total_read_bytes",
        "Total read bytes",
        g,
        s.read_bytes,
    );
    x.single(
        "openebs_total_write_bytes",
        "Total write bytes",
        g,
        s.write_bytes,
    );
    x.single("openebs_read_time", "Read time on volume", g, s.read_time);
    x.single(
        "openebs_write_time",
        "Write time on volume",
        g,
        s.write_time,
    );
    x.single(
        "openebs_read_block_count",
        "Read Block count of volume",
        g,
        s.read_blocks,
    );
    x.single(
        "openebs_write_block_count",
        "Write Block count of volume",
        g,
        s.write_blocks,
    );
    let actual = s.used_logical_blocks * s.sector_size / GIB;
    x.single("openebs_actual_used", "Actual volume size used", g, actual);
    // istgt reports no logical size; upstream leaves it 0 for cStor volumes too.
    x.single("openebs_logical_size", "Logical size of volume", g, 0.0);
    x.single(
        "openebs_sector_size",
        "sector size of volume",
        g,
        s.sector_size,
    );
    x.single(
        "openebs_size_of_volume",
        "Size of the volume requested",
        g,
        s.size / GIB,
    );
    x.single(
        "openebs_volume_status",
        VOLUME_STATUS_HELP,
        g,
        s.status_value(),
    );
    x.family(
        "openebs_volume_uptime",
        "Time since volume has registered",
        g,
        &[(
            vec![
                ("volName", s.volume().to_owned()),
                ("castype", "cstor".to_owned()),
            ],
            s.uptime,
        )],
    );
    let (healthy, degraded) = s.replica_counts();
    x.single(
        "openebs_total_replica_count",
        "Total no of replicas connected to cas",
        g,
        s.replica_counter,
    );
    x.single(
        "openebs_healthy_replica_count",
        "Total no of healthy replicas",
        g,
        healthy,
    );
    x.single(
        "openebs_degraded_replica_count",
        "Total no of degraded/ro replicas",
        g,
        degraded,
    );
}

/// The target's exporter, reading istgt's control socket.
#[derive(Debug)]
pub struct VolumeExporter {
    control: ControlClient,
    timeout: Duration,
    busy: Mutex<()>,
    connection_errors: ErrorCounter,
    connection_retries: ErrorCounter,
    parse_errors: ErrorCounter,
    rejected: ErrorCounter,
}

impl VolumeExporter {
    /// Exports the volume istgt serves behind `control`.
    pub fn new(control: ControlClient) -> Self {
        Self {
            control,
            timeout: COLLECT_TIMEOUT,
            busy: Mutex::new(()),
            connection_errors: ErrorCounter::default(),
            connection_retries: ErrorCounter::default(),
            parse_errors: ErrorCounter::default(),
            rejected: ErrorCounter::default(),
        }
    }

    /// Another collection timeout (tests).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    async fn collect(&self) -> Option<IoStats> {
        let reply = match self.control.call("IOSTATS", self.timeout).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "exporter: IOSTATS failed");
                self.connection_errors.inc();
                // Upstream counts a retry for every failure to reach istgt.
                if !matches!(e, ControlError::Rejected { .. }) {
                    self.connection_retries.inc();
                }
                return None;
            }
        };
        let parsed = reply
            .payload()
            .ok_or_else(|| "IOSTATS reply without a payload".to_owned())
            .and_then(parse_iostats);
        match parsed {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "exporter: unreadable IOSTATS reply");
                self.parse_errors.inc();
                None
            }
        }
    }

    fn render_errors(&self, x: &mut Exposition) {
        let g = Kind::Gauge;
        x.single(
            "openebs_connection_error_total",
            "Total no of connection errors",
            g,
            self.connection_errors.get(),
        );
        x.single(
            "openebs_connection_retry_total",
            "Total no of connection retry requests",
            g,
            self.connection_retries.get(),
        );
        x.single(
            "openebs_parse_error_total",
            "Total no of parsing errors",
            g,
            self.parse_errors.get(),
        );
        x.single(
            "openebs_target_reject_request_counter",
            "Total no of rejected GET http requests if a request is already in progress",
            Kind::Counter,
            self.rejected.get(),
        );
    }
}

#[async_trait]
impl Collect for VolumeExporter {
    async fn scrape(&self) -> String {
        let mut x = Exposition::new();
        let Ok(_turn) = tokio::time::timeout(self.timeout, self.busy.lock()).await else {
            self.rejected.inc();
            self.render_errors(&mut x);
            return x.finish();
        };
        match self.collect().await {
            Some(stats) => render_stats(&mut x, &stats),
            None => x.single(
                "openebs_volume_status",
                VOLUME_STATUS_HELP,
                Kind::Gauge,
                STATUS_UNKNOWN,
            ),
        }
        self.render_errors(&mut x);
        x.finish()
    }
}
