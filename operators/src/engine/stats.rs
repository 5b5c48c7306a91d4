//! cStor replica statistics: `zfs stats` and `zfs listsnap` JSON (uZFS extensions).

use serde::Deserialize;

/// `status` of one replica in `zfs stats`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplicaStatus {
    Healthy,
    Offline,
    Degraded,
    Rebuilding,
    /// Anything else, including an empty status.
    Other(String),
}

impl ReplicaStatus {
    fn parse(s: &str) -> Self {
        match s {
            "Healthy" => ReplicaStatus::Healthy,
            "Offline" => ReplicaStatus::Offline,
            "Degraded" => ReplicaStatus::Degraded,
            "Rebuilding" => ReplicaStatus::Rebuilding,
            other => ReplicaStatus::Other(other.to_string()),
        }
    }
}

/// One entry of `zfs stats` (fields cStor may omit default to zero).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaStats {
    /// `<pool>/<volume>`.
    pub name: String,
    pub status: ReplicaStatus,
    pub rebuild_status: String,
    /// `1` once the replica has joined the quorum.
    pub quorum: u64,
    pub is_io_ack_sender_created: bool,
    pub is_io_receiver_created: bool,
    pub running_io_num: u64,
    pub checkpointed_io_num: u64,
    pub degraded_checkpointed_io_num: u64,
    pub checkpointed_time: u64,
    pub rebuild_bytes: u64,
    pub rebuild_cnt: u64,
    pub rebuild_done_cnt: u64,
    pub rebuild_failed_cnt: u64,
    /// The replica's IO counters (the metrics exporter reports them).
    pub io: ReplicaIo,
}

/// IO counters of one replica in `zfs stats` (zero when the engine does not print them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplicaIo {
    pub read_count: u64,
    pub read_bytes: u64,
    pub read_latency: u64,
    pub write_count: u64,
    pub write_bytes: u64,
    pub write_latency: u64,
    pub sync_count: u64,
    pub sync_latency: u64,
    pub inflight_io_count: u64,
    pub dispatched_io_count: u64,
}

impl ReplicaStats {
    /// Upstream's CVR phase for this status: Healthy, Offline, Degraded / NewReplicaDegraded,
    /// Rebuilding / ReconstructingNewReplica (by quorum), else Error.
    pub fn cvr_phase(&self) -> &'static str {
        let in_quorum = self.quorum == 1;
        match self.status {
            ReplicaStatus::Healthy => "Healthy",
            ReplicaStatus::Offline => "Offline",
            ReplicaStatus::Degraded if in_quorum => "Degraded",
            ReplicaStatus::Degraded => "NewReplicaDegraded",
            ReplicaStatus::Rebuilding if in_quorum => "Rebuilding",
            ReplicaStatus::Rebuilding => "ReconstructingNewReplica",
            ReplicaStatus::Other(_) => "Error",
        }
    }
}

/// A JSON number or a number in a string (uZFS prints both styles in different versions).
#[derive(Deserialize)]
#[serde(untagged)]
enum Num {
    U(u64),
    B(bool),
    S(String),
    F(f64),
}

impl Num {
    fn get(&self, field: &str) -> Result<u64, String> {
        match self {
            Num::U(n) => Ok(*n),
            Num::B(b) => Ok(u64::from(*b)),
            Num::S(s) => s
                .trim()
                .parse()
                .map_err(|_| format!("`{field}` is not a number: `{s}`")),
            Num::F(f) if *f >= 0.0 && f.fract() == 0.0 && *f < u64::MAX as f64 => Ok(*f as u64),
            Num::F(f) => Err(format!("`{field}` is not a non-negative integer: {f}")),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawStats {
    name: String,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    rebuild_status: Option<String>,
    #[serde(default)]
    quorum: Option<Num>,
    #[serde(default, rename = "isIOAckSenderCreated")]
    is_io_ack_sender_created: Option<Num>,
    #[serde(default, rename = "isIOReceiverCreated")]
    is_io_receiver_created: Option<Num>,
    #[serde(default, rename = "runningIONum")]
    running_io_num: Option<Num>,
    #[serde(default, rename = "checkpointedIONum")]
    checkpointed_io_num: Option<Num>,
    #[serde(default, rename = "degradedCheckpointedIONum")]
    degraded_checkpointed_io_num: Option<Num>,
    #[serde(default)]
    checkpointed_time: Option<Num>,
    #[serde(default)]
    rebuild_bytes: Option<Num>,
    #[serde(default)]
    rebuild_cnt: Option<Num>,
    #[serde(default)]
    rebuild_done_cnt: Option<Num>,
    #[serde(default)]
    rebuild_failed_cnt: Option<Num>,
    #[serde(default)]
    read_count: Option<Num>,
    #[serde(default)]
    read_byte: Option<Num>,
    #[serde(default)]
    read_latency: Option<Num>,
    #[serde(default)]
    write_count: Option<Num>,
    #[serde(default)]
    write_byte: Option<Num>,
    #[serde(default)]
    write_latency: Option<Num>,
    #[serde(default)]
    sync_count: Option<Num>,
    #[serde(default)]
    sync_latency: Option<Num>,
    #[serde(default, rename = "inflightIOCnt")]
    inflight_io_cnt: Option<Num>,
    #[serde(default, rename = "dispatchedIOCnt")]
    dispatched_io_cnt: Option<Num>,
}

fn opt(n: &Option<Num>, field: &str) -> Result<u64, String> {
    n.as_ref().map_or(Ok(0), |n| n.get(field))
}

fn replica_io(r: &RawStats) -> Result<ReplicaIo, String> {
    Ok(ReplicaIo {
        read_count: opt(&r.read_count, "readCount")?,
        read_bytes: opt(&r.read_byte, "readByte")?,
        read_latency: opt(&r.read_latency, "readLatency")?,
        write_count: opt(&r.write_count, "writeCount")?,
        write_bytes: opt(&r.write_byte, "writeByte")?,
        write_latency: opt(&r.write_latency, "writeLatency")?,
        sync_count: opt(&r.sync_count, "syncCount")?,
        sync_latency: opt(&r.sync_latency, "syncLatency")?,
        inflight_io_count: opt(&r.inflight_io_cnt, "inflightIOCnt")?,
        dispatched_io_count: opt(&r.dispatched_io_cnt, "dispatchedIOCnt")?,
    })
}

#[derive(Deserialize)]
struct RawStatsDoc {
    #[serde(default)]
    stats: Option<Vec<serde_json::Value>>,
}

fn json_start(text: &str) -> Result<&str, String> {
    let start = text
        .find('{')
        .ok_or_else(|| "no JSON object in the output".to_string())?;
    Ok(text[start..].trim_end())
}

/// Parses `zfs stats [<zvol>]`: `{"stats":[{"name":..,"status":..,...}]}`.
///
/// The real uZFS ends the list of `zfs stats <zvol>` with a `{"pool":{}}` element, and a zvol
/// that is not opened for a target (no `io.openebs:targetip`) has no element at all
/// (`{"stats":[{"pool":{}}]}`): elements without a `name` are not replicas and are skipped.
pub fn parse_stats(text: &str) -> Result<Vec<ReplicaStats>, String> {
    let doc: RawStatsDoc =
        serde_json::from_str(json_start(text)?).map_err(|e| format!("invalid JSON: {e}"))?;
    doc.stats
        .unwrap_or_default()
        .into_iter()
        .filter(|v| v.get("name").is_some())
        .enumerate()
        .map(|(i, v)| {
            let r: RawStats =
                serde_json::from_value(v).map_err(|e| format!("invalid JSON: stats[{i}]: {e}"))?;
            Ok(ReplicaStats {
                io: replica_io(&r)?,
                status: ReplicaStatus::parse(r.status.as_deref().unwrap_or("")),
                rebuild_status: r.rebuild_status.unwrap_or_default(),
                quorum: opt(&r.quorum, "quorum")?,
                is_io_ack_sender_created: opt(&r.is_io_ack_sender_created, "isIOAckSenderCreated")?
                    != 0,
                is_io_receiver_created: opt(&r.is_io_receiver_created, "isIOReceiverCreated")? != 0,
                running_io_num: opt(&r.running_io_num, "runningIONum")?,
                checkpointed_io_num: opt(&r.checkpointed_io_num, "checkpointedIONum")?,
                degraded_checkpointed_io_num: opt(
                    &r.degraded_checkpointed_io_num,
                    "degradedCheckpointedIONum",
                )?,
                checkpointed_time: opt(&r.checkpointed_time, "checkpointedTime")?,
                rebuild_bytes: opt(&r.rebuild_bytes, "rebuildBytes")?,
                rebuild_cnt: opt(&r.rebuild_cnt, "rebuildCnt")?,
                rebuild_done_cnt: opt(&r.rebuild_done_cnt, "rebuildDoneCnt")?,
                rebuild_failed_cnt: opt(&r.rebuild_failed_cnt, "rebuildFailedCnt")?,
                name: r.name,
            })
        })
        .collect()
}

/// `zfs listsnap <zvol>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotList {
    pub dataset: String,
    /// Snapshot names (without `<dataset>@`), sorted.
    pub snapshots: Vec<String>,
}

#[derive(Deserialize)]
struct RawSnapList {
    name: String,
    #[serde(default)]
    snaplist: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Parses `{"name":"pool/vol","snaplist":{"snap1":null,...}}`.
pub fn parse_listsnap(text: &str) -> Result<SnapshotList, String> {
    let raw: RawSnapList =
        serde_json::from_str(json_start(text)?).map_err(|e| format!("invalid JSON: {e}"))?;
    let mut snapshots: Vec<String> = raw
        .snaplist
        .unwrap_or_default()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    snapshots.sort();
    Ok(SnapshotList {
        dataset: raw.name,
        snapshots,
    })
}
