//! The unix socket istgt dials (`/var/run/volume_mgmt_sock`) when a replica becomes trusted
//! ("known"): the volume manager persists it in the CStorVolume (`spec` and `status`
//! `replicaDetails.knownReplicas`, `spec.replicationFactor`/`consistencyFactor`) and in
//! `istgt.conf`, so a restarted target trusts the same replicas.
//!
//! Wire format: istgt sends one line
//! `{"replicaId":"…","replicaZvolGuid":"…","volumeName":"…","replicationFactor":3,"consistencyFactor":2}\r\n`;
//! the answer is `Ok\r\n` or `Err\r\n`, then the connection is closed.

use std::{future::Future, path::Path, sync::Arc, time::Duration};

use cstor_api::cstor::{CStorVolume, CStorVolumeReplicaDetails};
use kube::{Api, Client};
use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream},
};

use super::{
    istgt_conf::{ConfError, IstgtConf, replica_line, update_or_append},
    update_cv,
};

/// Default socket path inside the target pod.
pub const DEFAULT_SOCKET: &str = "/var/run/volume_mgmt_sock";

/// Connections handled at once on the known-replica socket (istgt opens one per report).
pub const MAX_CONNECTIONS: usize = 32;

/// Pause after a failed accept before the next one.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// How long istgt gets to send its line (istgt itself uses 20 s / 10 s timeouts).
pub const READ_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest request line accepted.
pub const MAX_LINE: usize = 4096;

/// What istgt sends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KnownReplicaRequest {
    /// `io.openebs:zvol_replica_id` of the replica.
    pub replica_id: String,
    /// GUID of the replica's zvol.
    pub replica_zvol_guid: String,
    /// CStorVolume name.
    pub volume_name: String,
    /// Replication factor istgt runs with.
    pub replication_factor: i64,
    /// Consistency factor istgt runs with.
    pub consistency_factor: i64,
}

/// Why a known-replica report was refused (the answer is then `Err`).
#[derive(Debug, thiserror::Error)]
pub enum KnownReplicaError {
    /// The line is not the expected JSON.
    #[error("known-replica request is not valid JSON: {0}")]
    Decode(String),
    /// A required field is empty or zero.
    #[error("known-replica request has an empty or zero `{0}`")]
    Invalid(&'static str),
    /// A new replica would exceed the desired replication factor.
    #[error(
        "CStorVolume {volume} already knows {known} replicas (desiredReplicationFactor {drf}); refusing new replica {id}"
    )]
    TooManyReplicas {
        /// CV name.
        volume: String,
        /// Known replica count.
        known: usize,
        /// Desired replication factor.
        drf: i64,
        /// The refused replica.
        id: String,
    },
    /// istgt reports lower factors than the CV holds.
    #[error(
        "istgt reports replicationFactor {rf}/consistencyFactor {cf} for {volume}, below the CStorVolume's {cv_rf}/{cv_cf}"
    )]
    FactorsDecreased {
        /// CV name.
        volume: String,
        /// Reported RF.
        rf: i64,
        /// Reported CF.
        cf: i64,
        /// CV RF.
        cv_rf: i64,
        /// CV CF.
        cv_cf: i64,
    },
    /// Reading or updating the CV failed.
    #[error("cannot persist known replica in CStorVolume {volume}: {source}")]
    Api {
        /// CV name.
        volume: String,
        /// API error.
        source: kube::Error,
    },
    /// istgt.conf could not be updated.
    #[error(transparent)]
    Conf(#[from] ConfError),
    /// The socket failed or timed out.
    #[error("known-replica connection failed: {0}")]
    Io(String),
}

/// Decodes and validates one request line.
pub fn parse_request(line: &str) -> Result<KnownReplicaRequest, KnownReplicaError> {
    let req: KnownReplicaRequest = serde_json::from_str(line.trim_end_matches(['\r', '\n']))
        .map_err(|e| KnownReplicaError::Decode(e.to_string()))?;
    if req.volume_name.is_empty() {
        return Err(KnownReplicaError::Invalid("volumeName"));
    }
    if req.replica_id.is_empty() {
        return Err(KnownReplicaError::Invalid("replicaId"));
    }
    if req.replica_zvol_guid.is_empty() {
        return Err(KnownReplicaError::Invalid("replicaZvolGuid"));
    }
    if req.replication_factor == 0 {
        return Err(KnownReplicaError::Invalid("replicationFactor"));
    }
    if req.consistency_factor == 0 {
        return Err(KnownReplicaError::Invalid("consistencyFactor"));
    }
    Ok(req)
}

/// Records `req` in `cv` (upstream's rules; a `desiredReplicationFactor` of 0 counts as the
/// replication factor).
pub fn apply_known_replica(
    cv: &mut CStorVolume,
    req: &KnownReplicaRequest,
) -> Result<(), KnownReplicaError> {
    let volume = cv.metadata.name.clone().unwrap_or_default();
    let rf = cv.spec.replication_factor.unwrap_or(0);
    let cf = cv.spec.consistency_factor.unwrap_or(0);
    let drf = match cv.spec.desired_replication_factor.unwrap_or(0) {
        0 => rf,
        n => n,
    };
    let spec_known = cv
        .spec
        .replica_details
        .get_or_insert_with(CStorVolumeReplicaDetails::default)
        .known_replicas
        .get_or_insert_with(Default::default);
    if !spec_known.contains_key(&req.replica_id)
        && i64::try_from(spec_known.len()).unwrap_or(i64::MAX) >= drf
    {
        return Err(KnownReplicaError::TooManyReplicas {
            volume,
            known: spec_known.len(),
            drf,
            id: req.replica_id.clone(),
        });
    }
    if req.replication_factor < rf || req.consistency_factor < cf {
        return Err(KnownReplicaError::FactorsDecreased {
            volume,
            rf: req.replication_factor,
            cf: req.consistency_factor,
            cv_rf: rf,
            cv_cf: cf,
        });
    }
    spec_known.insert(req.replica_id.clone(), req.replica_zvol_guid.clone());
    cv.spec.replication_factor = Some(req.replication_factor);
    cv.spec.consistency_factor = Some(req.consistency_factor);
    cv.status
        .get_or_insert_with(Default::default)
        .replica_details
        .get_or_insert_with(CStorVolumeReplicaDetails::default)
        .known_replicas
        .get_or_insert_with(Default::default)
        .insert(req.replica_id.clone(), req.replica_zvol_guid.clone());
    Ok(())
}

/// The `istgt.conf` edits that follow a persisted known replica.
pub fn conf_edits(req: &KnownReplicaRequest) -> Vec<(String, String)> {
    vec![
        (
            "  ReplicationFactor".into(),
            format!("  ReplicationFactor {}", req.replication_factor),
        ),
        (
            "  ConsistencyFactor".into(),
            format!("  ConsistencyFactor {}", req.consistency_factor),
        ),
        (
            format!("  Replica {}", req.replica_id),
            format!(
                "  {}",
                replica_line(&req.replica_id, &req.replica_zvol_guid)
            ),
        ),
    ]
}

/// Serves istgt's known-replica reports.
#[derive(Clone)]
pub struct KnownReplicaServer {
    api: Api<CStorVolume>,
    conf: Arc<IstgtConf>,
}

impl KnownReplicaServer {
    /// A server persisting into CVs of `namespace` and into `conf`.
    pub fn new(client: Client, namespace: &str, conf: Arc<IstgtConf>) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            conf,
        }
    }

    /// Binds the socket at `path`, replacing a stale socket file left by a previous run.
    pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            use std::os::unix::fs::FileTypeExt;
            if meta.file_type().is_socket() {
                std::fs::remove_file(path)?;
            }
        }
        UnixListener::bind(path)
    }

    /// Handles one decoded request: CV first, then `istgt.conf`.
    pub async fn handle(&self, req: &KnownReplicaRequest) -> Result<(), KnownReplicaError> {
        let api_err = |source| KnownReplicaError::Api {
            volume: req.volume_name.clone(),
            source,
        };
        update_cv(&self.api, &req.volume_name, |cv| {
            apply_known_replica(cv, req).map(|_| true)
        })
        .await
        .map_err(|e| match e {
            super::UpdateError::Api(source) => api_err(source),
            super::UpdateError::Refused(r) => r,
        })?;
        let edits = conf_edits(req);
        self.conf
            .edit(|text| Ok(update_or_append(text, &edits)))
            .await?;
        tracing::info!(volume = %req.volume_name, replica = %req.replica_id, "persisted known replica");
        Ok(())
    }

    /// Reads one request from `sock`, handles it and answers `Ok`/`Err`.
    pub async fn handle_connection(&self, sock: UnixStream) -> Result<(), KnownReplicaError> {
        let mut reader = BufReader::new(sock);
        let mut raw = Vec::new();
        let read = tokio::time::timeout(READ_TIMEOUT, async {
            let mut limited = (&mut reader).take(MAX_LINE as u64);
            limited.read_until(b'\n', &mut raw).await
        })
        .await;
        let result = match read {
            Err(_) => Err(KnownReplicaError::Io(format!(
                "no request line within {READ_TIMEOUT:?}"
            ))),
            Ok(Err(e)) => Err(KnownReplicaError::Io(e.to_string())),
            Ok(Ok(_)) => match parse_request(&String::from_utf8_lossy(&raw)) {
                Ok(req) => self.handle(&req).await,
                Err(e) => Err(e),
            },
        };
        let answer: &[u8] = if result.is_ok() {
            b"Ok\r\n"
        } else {
            b"Err\r\n"
        };
        let sock = reader.get_mut();
        let _ = sock.write_all(answer).await;
        let _ = sock.shutdown().await;
        if let Err(e) = &result {
            tracing::warn!(error = %e, "refused known-replica report from istgt");
        }
        result
    }

    /// Accepts connections until `shutdown` completes; each is handled on its own task, at
    /// most [`MAX_CONNECTIONS`] at once (each bounded by the read deadline); a failed accept
    /// pauses briefly instead of spinning.
    pub async fn serve(self, listener: UnixListener, shutdown: impl Future<Output = ()>) {
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
        tokio::pin!(shutdown);
        loop {
            let slot = tokio::select! {
                _ = &mut shutdown => return,
                slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            };
            tokio::select! {
                _ = &mut shutdown => return,
                accepted = listener.accept() => match accepted {
                    Ok((sock, _)) => {
                        let me = self.clone();
                        tokio::spawn(async move {
                            let _slot = slot;
                            let _ = me.handle_connection(sock).await;
                        });
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "accept on the known-replica socket failed");
                        tokio::select! {
                            _ = &mut shutdown => return,
                            () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => {}
                        }
                    }
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn cv(rf: i64, cf: i64, drf: i64, known: &[(&str, &str)]) -> CStorVolume {
        let mut cv = CStorVolume::new("pvc-1", Default::default());
        cv.spec.replication_factor = Some(rf);
        cv.spec.consistency_factor = Some(cf);
        cv.spec.desired_replication_factor = Some(drf);
        let map: BTreeMap<String, String> = known
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        cv.spec.replica_details = Some(CStorVolumeReplicaDetails {
            known_replicas: Some(map),
            ..Default::default()
        });
        cv
    }

    fn req(id: &str, rf: i64, cf: i64) -> KnownReplicaRequest {
        KnownReplicaRequest {
            replica_id: id.into(),
            replica_zvol_guid: format!("g{id}"),
            volume_name: "pvc-1".into(),
            replication_factor: rf,
            consistency_factor: cf,
        }
    }

    #[test]
    fn parse_validates_fields() {
        let ok = r#"{"replicaId":"1","replicaZvolGuid":"2","volumeName":"v","replicationFactor":3,"consistencyFactor":2}"#;
        assert_eq!(
            parse_request(&format!("{ok}\r\n"))
                .unwrap()
                .replica_zvol_guid,
            "2"
        );
        assert!(matches!(
            parse_request(
                r#"{"replicaId":"","replicaZvolGuid":"2","volumeName":"v","replicationFactor":3,"consistencyFactor":2}"#
            ),
            Err(KnownReplicaError::Invalid("replicaId"))
        ));
        assert!(matches!(
            parse_request(
                r#"{"replicaId":"1","replicaZvolGuid":"2","volumeName":"v","replicationFactor":0,"consistencyFactor":2}"#
            ),
            Err(KnownReplicaError::Invalid("replicationFactor"))
        ));
        assert!(matches!(
            parse_request("nope"),
            Err(KnownReplicaError::Decode(_))
        ));
    }

    #[test]
    fn records_in_spec_and_status() {
        let mut v = cv(3, 2, 3, &[("a", "ga")]);
        apply_known_replica(&mut v, &req("b", 3, 2)).unwrap();
        let spec = v
            .spec
            .replica_details
            .as_ref()
            .unwrap()
            .known_replicas
            .as_ref()
            .unwrap();
        assert_eq!(spec.get("b").map(String::as_str), Some("gb"));
        let st = v
            .status
            .as_ref()
            .unwrap()
            .replica_details
            .as_ref()
            .unwrap()
            .known_replicas
            .as_ref()
            .unwrap();
        assert_eq!(st.len(), 1);
        assert_eq!(st.get("b").map(String::as_str), Some("gb"));
    }

    #[test]
    fn refuses_beyond_drf_and_lower_factors() {
        let mut v = cv(1, 1, 1, &[("a", "ga")]);
        assert!(matches!(
            apply_known_replica(&mut v, &req("b", 1, 1)),
            Err(KnownReplicaError::TooManyReplicas { .. })
        ));
        // a known ID may be re-reported (replacement GUID)
        apply_known_replica(&mut v, &req("a", 1, 1)).unwrap();
        let mut v = cv(3, 2, 3, &[]);
        assert!(matches!(
            apply_known_replica(&mut v, &req("b", 2, 2)),
            Err(KnownReplicaError::FactorsDecreased { .. })
        ));
    }

    #[test]
    fn conf_edits_use_upstream_keys() {
        let e = conf_edits(&req("7", 3, 2));
        assert_eq!(
            e[2],
            ("  Replica 7".to_string(), "  Replica 7 g7".to_string())
        );
    }
}
