//! Client of the cStor target's snapshot service (`v1alpha1.RunSnapCommand` on the target's
//! ClusterIP, port 7777 in production): the target forwards `SNAPCREATE` / `SNAPDESTROY` to
//! istgt, which fans it out to every replica.

use std::time::Duration;

use cstor_api::proto::snapshot::v1alpha1::{
    VolumeSnapCreateRequest, VolumeSnapDeleteRequest, run_snap_command_client::RunSnapCommandClient,
};
use tonic::{Code, transport::Endpoint};

/// Protocol version sent in every request (upstream's value).
pub const SNAP_PROTOCOL_VERSION: i32 = 1;

/// Failure of a snapshot command.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// No connection to the target.
    #[error("cannot reach the snapshot service of volume {volume} at {address}: {message}")]
    Connect {
        /// Volume.
        volume: String,
        /// `ip:port`.
        address: String,
        /// Why.
        message: String,
    },
    /// The call failed at the gRPC level.
    #[error("snapshot call to the target of volume {volume} at {address} failed: {status}")]
    Call {
        /// Volume.
        volume: String,
        /// `ip:port`.
        address: String,
        /// The gRPC status.
        status: tonic::Status,
    },
    /// The target answered with an error reply.
    #[error(
        "the target of volume {volume} refused to {action} snapshot {snapshot}: {reply} \
         (istgt takes and destroys snapshots only while the volume is Healthy)"
    )]
    Refused {
        /// Volume.
        volume: String,
        /// Snapshot name.
        snapshot: String,
        /// "create" or "delete".
        action: &'static str,
        /// The target's reply.
        reply: String,
    },
}

impl TargetError {
    /// `UNAVAILABLE` for connection and transport trouble (retryable), `INTERNAL` for refusals.
    pub fn code(&self) -> Code {
        match self {
            TargetError::Connect { .. } => Code::Unavailable,
            TargetError::Call { status, .. } => match status.code() {
                Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => Code::Unavailable,
                _ => Code::Internal,
            },
            TargetError::Refused { .. } => Code::Internal,
        }
    }
}

/// Where and how to reach targets.
#[derive(Clone, Debug)]
pub struct TargetClient {
    /// TCP port of the snapshot service (7777 in production).
    pub port: u16,
    /// Deadline of one command (connect included). The target itself waits up to 60 s.
    pub timeout: Duration,
    /// Host dialled instead of the CStorVolume's target IP (a controller running outside the
    /// cluster reaches the targets through a forwarder); `None` in production.
    pub host: Option<String>,
}

/// Which command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapAction {
    /// `RunVolumeSnapCreateCommand`.
    Create,
    /// `RunVolumeSnapDeleteCommand`.
    Delete,
}

impl TargetClient {
    fn address(&self, ip: &str) -> String {
        let ip = self.host.as_deref().unwrap_or(ip);
        if ip.contains(':') {
            format!("[{ip}]:{}", self.port)
        } else {
            format!("{ip}:{}", self.port)
        }
    }

    /// Runs `action` for `volume@snapshot` on the target at `target_ip`.
    pub async fn run(
        &self,
        target_ip: &str,
        volume: &str,
        snapshot: &str,
        action: SnapAction,
    ) -> Result<(), TargetError> {
        let address = self.address(target_ip);
        let connect_err = |message: String| TargetError::Connect {
            volume: volume.to_owned(),
            address: address.clone(),
            message,
        };
        let endpoint = Endpoint::from_shared(format!("http://{address}"))
            .map_err(|e| connect_err(e.to_string()))?
            .connect_timeout(self.timeout)
            .timeout(self.timeout);
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| connect_err(format!("{e} ({e:?})")))?;
        let mut client = RunSnapCommandClient::new(channel);
        let call_err = |status: tonic::Status| TargetError::Call {
            volume: volume.to_owned(),
            address: address.clone(),
            status,
        };
        let status_bytes = match action {
            SnapAction::Create => {
                let req = VolumeSnapCreateRequest {
                    version: SNAP_PROTOCOL_VERSION,
                    volume: volume.to_owned(),
                    snapname: snapshot.to_owned(),
                };
                client
                    .run_volume_snap_create_command(req)
                    .await
                    .map_err(call_err)?
                    .into_inner()
                    .status
            }
            SnapAction::Delete => {
                let req = VolumeSnapDeleteRequest {
                    version: SNAP_PROTOCOL_VERSION,
                    volume: volume.to_owned(),
                    snapname: snapshot.to_owned(),
                };
                client
                    .run_volume_snap_delete_command(req)
                    .await
                    .map_err(call_err)?
                    .into_inner()
                    .status
            }
        };
        let reply = reply_text(&status_bytes);
        if reply.contains("ERR") {
            return Err(TargetError::Refused {
                volume: volume.to_owned(),
                snapshot: snapshot.to_owned(),
                action: match action {
                    SnapAction::Create => "create",
                    SnapAction::Delete => "delete",
                },
                reply,
            });
        }
        tracing::info!(
            volume,
            snapshot,
            ?action,
            reply = reply.trim(),
            "target ran the snapshot command"
        );
        Ok(())
    }
}

/// The `response` of the target's JSON status (`{"response": "..."}`), or the raw bytes
/// when they are not that JSON.
pub fn reply_text(status: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Reply {
        response: String,
    }
    match serde_json::from_slice::<Reply>(status) {
        Ok(r) => r.response,
        Err(_) => String::from_utf8_lossy(status).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_json_reply() {
        assert_eq!(
            reply_text(br#"{"response":"OK SNAPCREATE\r\n"}"#),
            "OK SNAPCREATE\r\n"
        );
        assert_eq!(reply_text(b"garbage"), "garbage");
        let mut c = TargetClient {
            port: 7777,
            timeout: Duration::from_secs(1),
            host: None,
        };
        assert_eq!(c.address("10.0.0.1"), "10.0.0.1:7777");
        assert_eq!(c.address("fd00::1"), "[fd00::1]:7777");
        c.host = Some("127.0.0.1".into());
        assert_eq!(c.address("10.0.0.1"), "127.0.0.1:7777", "host override");
    }
}
