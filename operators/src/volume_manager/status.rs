//! The `REPLICA` payload of istgt and how it maps onto `CStorVolume.status` (pure functions).
//!
//! Payload: `{"volumeStatus":[{"name":"<vol>","status":"Healthy|Degraded|Offline",
//! "replicaStatus":[{"replicaId":"<zvol guid>","Address":"…","Mode":"Healthy|Degraded",
//! "checkpointedIOSeq":"<u64>","inflightRead":"<u64>","inflightWrite":"<u64>",
//! "inflightSync":"<u64>","quorum":"0|1","upTime":<secs>}]}]}`.
//! istgt writes its uint64 counters as JSON strings and capitalises `Mode`; this decoder also
//! accepts numbers and a lower-case `mode`, and ignores `Address` and unknown keys.
//! Like upstream, the JSON is taken from the first `{` to the last `}` of the whole reply and
//! only the first volume is used.

use cstor_api::cstor::{CStorVolumePhase, CStorVolumeStatus, ReplicaStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::{Deserialize, Deserializer};

/// The state istgt reports for the volume.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplicaReport {
    /// Volume name.
    pub name: String,
    /// `Healthy`, `Degraded` or `Offline` (istgt's computation).
    pub status: String,
    /// The connected replicas.
    pub replicas: Vec<ReplicaStatus>,
}

impl ReplicaReport {
    /// The connected replica whose zvol guid is `guid`. istgt's `replicaId` is the replica
    /// zvol's guid (decimal), not its `io.openebs:zvol_replica_id`; the CV's
    /// `replicaDetails.knownReplicas` map replica id → guid.
    pub fn replica_by_guid(&self, guid: &str) -> Option<&ReplicaStatus> {
        if guid.is_empty() {
            return None;
        }
        self.replicas.iter().find(|r| r.replica_id == guid)
    }
}

/// A `REPLICA` payload that cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatusError {
    /// No `{…}` in the reply.
    #[error("the REPLICA reply holds no JSON object: {reply:?}")]
    NoJson {
        /// The reply.
        reply: String,
    },
    /// The JSON does not have the expected shape.
    #[error("the REPLICA JSON is not valid: at `{path}`: {message}")]
    Invalid {
        /// JSON path of the offending value.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// `volumeStatus` is empty.
    #[error("the REPLICA JSON lists no volume in `volumeStatus`")]
    NoVolume,
}

#[derive(Deserialize)]
struct Payload {
    #[serde(rename = "volumeStatus", default)]
    volume_status: Vec<WireVolume>,
}

#[derive(Deserialize)]
struct WireVolume {
    #[serde(default)]
    name: String,
    #[serde(default)]
    status: String,
    #[serde(rename = "replicaStatus", default, deserialize_with = "null_as_empty")]
    replica_status: Vec<WireReplica>,
}

#[derive(Deserialize)]
struct WireReplica {
    #[serde(rename = "replicaId", deserialize_with = "string_or_number")]
    replica_id: String,
    #[serde(rename = "Mode", alias = "mode", default)]
    mode: String,
    #[serde(
        rename = "checkpointedIOSeq",
        default,
        deserialize_with = "string_or_number"
    )]
    checkpointed_io_seq: String,
    #[serde(
        rename = "inflightRead",
        default,
        deserialize_with = "string_or_number"
    )]
    inflight_read: String,
    #[serde(
        rename = "inflightWrite",
        default,
        deserialize_with = "string_or_number"
    )]
    inflight_write: String,
    #[serde(
        rename = "inflightSync",
        default,
        deserialize_with = "string_or_number"
    )]
    inflight_sync: String,
    #[serde(rename = "quorum", default, deserialize_with = "string_or_number")]
    quorum: String,
    #[serde(rename = "upTime", default, deserialize_with = "number_or_string")]
    up_time: i64,
}

fn null_as_empty<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => Ok(s),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        serde_json::Value::Null => Ok(String::new()),
        other => Err(serde::de::Error::custom(format!(
            "expected a string or number, found {other}"
        ))),
    }
}

fn number_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| serde::de::Error::custom(format!("{n} is not a 64-bit integer"))),
        serde_json::Value::String(s) => s
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("{s:?} is not an integer"))),
        serde_json::Value::Null => Ok(0),
        other => Err(serde::de::Error::custom(format!(
            "expected a number, found {other}"
        ))),
    }
}

/// Decodes the `REPLICA` reply (any text holding the JSON, e.g. all reply lines joined).
pub fn parse_replica_payload(reply: &str) -> Result<ReplicaReport, StatusError> {
    let (Some(start), Some(end)) = (reply.find('{'), reply.rfind('}')) else {
        return Err(StatusError::NoJson {
            reply: reply.to_owned(),
        });
    };
    if end < start {
        return Err(StatusError::NoJson {
            reply: reply.to_owned(),
        });
    }
    let json = &reply[start..=end];
    let mut de = serde_json::Deserializer::from_str(json);
    let payload: Payload =
        serde_path_to_error::deserialize(&mut de).map_err(|e| StatusError::Invalid {
            path: e.path().to_string(),
            message: e.inner().to_string(),
        })?;
    let vol = payload
        .volume_status
        .into_iter()
        .next()
        .ok_or(StatusError::NoVolume)?;
    Ok(ReplicaReport {
        name: vol.name,
        status: vol.status,
        replicas: vol
            .replica_status
            .into_iter()
            .map(|r| ReplicaStatus {
                replica_id: r.replica_id,
                mode: r.mode,
                checkpointed_io_seq: r.checkpointed_io_seq,
                inflight_read: r.inflight_read,
                inflight_write: r.inflight_write,
                inflight_sync: r.inflight_sync,
                up_time: r.up_time,
                quorum: r.quorum,
                extra: Default::default(),
            })
            .collect(),
    })
}

/// The phase the CV gets from a report: `Init` while no replica is connected, else istgt's
/// volume status.
pub fn phase_of(report: &ReplicaReport) -> CStorVolumePhase {
    if report.replicas.is_empty() {
        CStorVolumePhase::Init
    } else {
        CStorVolumePhase::from(report.status.as_str())
    }
}

/// Writes `report` into `status` (phase, replicaStatuses, lastUpdateTime, and
/// lastTransitionTime when the phase changes). Returns the new phase when it changed.
pub fn apply_report(
    status: &mut CStorVolumeStatus,
    report: &ReplicaReport,
    now: Time,
) -> Option<CStorVolumePhase> {
    status.replica_statuses = Some(report.replicas.clone());
    set_phase(status, phase_of(report), now)
}

/// Marks the status `Error` after a failed `REPLICA` (replica list kept). Returns the new phase
/// when it changed.
pub fn apply_error(status: &mut CStorVolumeStatus, now: Time) -> Option<CStorVolumePhase> {
    set_phase(status, CStorVolumePhase::Error, now)
}

/// Sets the phase and the times; returns the new phase when it changed.
pub fn set_phase(
    status: &mut CStorVolumeStatus,
    phase: CStorVolumePhase,
    now: Time,
) -> Option<CStorVolumePhase> {
    status.last_update_time = Some(now.clone());
    if status.phase.as_ref() == Some(&phase) {
        return None;
    }
    status.phase = Some(phase.clone());
    status.last_transition_time = Some(now);
    Some(phase)
}

/// Event type upstream uses for a phase (`Normal` for Init/Healthy/Degraded).
pub fn event_type(phase: &CStorVolumePhase) -> kube::runtime::events::EventType {
    use kube::runtime::events::EventType;
    match phase {
        CStorVolumePhase::Init | CStorVolumePhase::Healthy | CStorVolumePhase::Degraded => {
            EventType::Normal
        }
        _ => EventType::Warning,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEALTHY: &str = r#"REPLICA  {"volumeStatus":[{"name":"pvc-1","status":"Degraded","replicaStatus":[{"replicaId":"6061","Address":"10.0.0.5","Mode":"Healthy","checkpointedIOSeq":"1000","inflightRead":"0","inflightWrite":"3","inflightSync":"0","quorum":"1","upTime":75},{"replicaId":"7072","Address":"10.0.0.6","Mode":"Degraded","checkpointedIOSeq":"0","inflightRead":"0","inflightWrite":"0","inflightSync":"0","quorum":"0","upTime":5}]}]}"#;

    fn now() -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(1_700_000_000).unwrap())
    }

    #[test]
    fn parses_istgt_payload_with_capital_mode_and_string_counters() {
        let r = parse_replica_payload(&format!(
            "iSCSI Target Controller version x\r\n{HEALTHY}\r\nOK REPLICA"
        ))
        .unwrap();
        assert_eq!(r.name, "pvc-1");
        assert_eq!(r.status, "Degraded");
        assert_eq!(r.replicas.len(), 2);
        assert_eq!(r.replicas[0].replica_id, "6061");
        assert_eq!(r.replicas[0].mode, "Healthy");
        assert_eq!(r.replicas[0].checkpointed_io_seq, "1000");
        assert_eq!(r.replicas[0].inflight_write, "3");
        assert_eq!(r.replicas[0].up_time, 75);
        assert_eq!(r.replicas[1].quorum, "0");
        assert_eq!(r.replicas[1].mode, "Degraded");
        // serialises with upstream's CV keys
        let v = serde_json::to_value(&r.replicas[0]).unwrap();
        assert_eq!(v["mode"], "Healthy");
        assert_eq!(v["checkpointedIOSeq"], "1000");
        assert!(v.get("Address").is_none());
    }

    #[test]
    fn numbers_accepted_where_strings_expected() {
        let r = parse_replica_payload(
            r#"{"volumeStatus":[{"name":"v","status":"Healthy","replicaStatus":[{"replicaId":1,"mode":"Healthy","checkpointedIOSeq":2,"inflightRead":0,"inflightWrite":0,"inflightSync":0,"quorum":1,"upTime":"9"}]}]}"#,
        )
        .unwrap();
        assert_eq!(r.replicas[0].replica_id, "1");
        assert_eq!(r.replicas[0].quorum, "1");
        assert_eq!(r.replicas[0].up_time, 9);
    }

    #[test]
    fn errors_name_the_problem() {
        assert!(matches!(
            parse_replica_payload("OK REPLICA"),
            Err(StatusError::NoJson { .. })
        ));
        assert_eq!(
            parse_replica_payload(r#"{"volumeStatus":[]}"#),
            Err(StatusError::NoVolume)
        );
        match parse_replica_payload(
            r#"{"volumeStatus":[{"replicaStatus":[{"replicaId":"1","upTime":[]}]}]}"#,
        ) {
            Err(StatusError::Invalid { path, .. }) => {
                assert_eq!(path, "volumeStatus[0].replicaStatus[0].upTime")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn empty_replica_list_is_init_and_phase_change_bumps_transition_time() {
        let mut st = CStorVolumeStatus::default();
        let report = ReplicaReport {
            name: "v".into(),
            status: "Offline".into(),
            replicas: vec![],
        };
        assert_eq!(
            apply_report(&mut st, &report, now()),
            Some(CStorVolumePhase::Init)
        );
        assert_eq!(st.last_transition_time, Some(now()));
        assert_eq!(st.replica_statuses, Some(vec![]));
        // same phase again: no change reported, transition time kept
        let later = Time(k8s_openapi::jiff::Timestamp::from_second(1_700_000_100).unwrap());
        assert_eq!(apply_report(&mut st, &report, later.clone()), None);
        assert_eq!(st.last_transition_time, Some(now()));
        assert_eq!(st.last_update_time, Some(later.clone()));
        let degraded = parse_replica_payload(HEALTHY).unwrap();
        assert_eq!(
            apply_report(&mut st, &degraded, later.clone()),
            Some(CStorVolumePhase::Degraded)
        );
        assert_eq!(st.replica_statuses().len(), 2);
        assert_eq!(apply_error(&mut st, later), Some(CStorVolumePhase::Error));
        assert_eq!(st.replica_statuses().len(), 2);
    }

    #[test]
    fn event_types() {
        use kube::runtime::events::EventType;
        assert_eq!(event_type(&CStorVolumePhase::Healthy), EventType::Normal);
        assert_eq!(event_type(&CStorVolumePhase::Offline), EventType::Warning);
        assert_eq!(event_type(&CStorVolumePhase::Error), EventType::Warning);
    }
}
