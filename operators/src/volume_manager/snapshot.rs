//! The target's snapshot gRPC service (`/v1alpha1.RunSnapCommand/*`, TCP :7777), used by the
//! CSI controller's CreateSnapshot/DeleteSnapshot.
//!
//! Each call sends `SNAPCREATE|SNAPDESTROY <volume> <snap> 10 60` on istgt's control socket.
//! As upstream: the response's `status` is the JSON `{"response":"<reply line 1>"}` where line 0
//! is istgt's banner, so a success carries `"OK SNAPCREATE\r\n"` and a refusal carries istgt's
//! `ERR …` line (the caller looks for `ERR`); `"ERR"` when the reply had no second line (e.g.
//! istgt closed the connection after its banner). Only failing to reach istgt (connect, I/O,
//! deadline) is a gRPC error (`UNAVAILABLE`). `version` is left 0, as upstream leaves it.

use std::{future::Future, net::SocketAddr};

use cstor_api::proto::snapshot::v1alpha1::{
    VolumeSnapCreateRequest, VolumeSnapCreateResponse, VolumeSnapDeleteRequest,
    VolumeSnapDeleteResponse,
    run_snap_command_server::{RunSnapCommand, RunSnapCommandServer},
};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

use super::control::{ControlClient, ControlError, Reply};

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:7777";

/// JSON carried in the responses' `status` bytes.
#[derive(Debug, Serialize)]
struct CommandStatus<'a> {
    response: &'a str,
}

/// `{"response":"<line 1 of the reply with \r\n, or ERR>"}`.
pub fn status_json(reply: &Reply) -> Vec<u8> {
    let line = reply.upstream_line(1).unwrap_or_else(|| "ERR".to_owned());
    serde_json::to_vec(&CommandStatus { response: &line })
        .unwrap_or_else(|_| br#"{"response":"ERR"}"#.to_vec())
}

/// The reply as upstream's reader would have returned it when istgt closed the connection
/// early: the complete lines received (so a bare banner gives the default `"ERR"`).
fn closed_reply(word: &str, received: &str) -> Reply {
    let complete = received.rfind("\r\n").map_or("", |i| &received[..i]);
    Reply {
        command: word.to_owned(),
        lines: complete
            .split("\r\n")
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect(),
    }
}

/// Runs one snapshot command; only a failure to talk to istgt at all is a gRPC error.
async fn snap_reply(
    control: &ControlClient,
    word: &str,
    volume: &str,
    snap: &str,
) -> Result<Reply, Status> {
    let result = match word {
        "SNAPCREATE" => control.snap_create(volume, snap).await,
        _ => control.snap_destroy(volume, snap).await,
    };
    match result {
        Ok(reply) => {
            if reply.is_error() {
                tracing::warn!(volume, snapshot = snap, reply = %reply.final_line(), "istgt refused {word}");
            }
            Ok(reply)
        }
        Err(ControlError::Closed { received, .. }) => {
            tracing::warn!(volume, snapshot = snap, received = %received, "istgt closed the connection during {word}");
            Ok(closed_reply(word, &received))
        }
        Err(e) => Err(to_status(e)),
    }
}

fn to_status(e: ControlError) -> Status {
    match e {
        ControlError::InvalidCommand { .. } => Status::invalid_argument(e.to_string()),
        _ => Status::unavailable(e.to_string()),
    }
}

fn check_names(volume: &str, snap: &str) -> Result<(), Status> {
    for (field, v) in [("volume", volume), ("snapname", snap)] {
        if v.is_empty() || v.contains(char::is_whitespace) {
            return Err(Status::invalid_argument(format!(
                "{field} {v:?} must be non-empty and free of whitespace; it is sent to istgt as one word"
            )));
        }
    }
    Ok(())
}

/// The `RunSnapCommand` implementation.
#[derive(Clone, Debug)]
pub struct SnapshotService {
    control: ControlClient,
}

impl SnapshotService {
    /// A service forwarding to istgt through `control`.
    pub fn new(control: ControlClient) -> Self {
        Self { control }
    }

    /// The tonic server wrapping this service.
    pub fn into_server(self) -> RunSnapCommandServer<Self> {
        RunSnapCommandServer::new(self)
    }
}

#[tonic::async_trait]
impl RunSnapCommand for SnapshotService {
    async fn run_volume_snap_create_command(
        &self,
        request: Request<VolumeSnapCreateRequest>,
    ) -> Result<Response<VolumeSnapCreateResponse>, Status> {
        let req = request.into_inner();
        check_names(&req.volume, &req.snapname)?;
        tracing::info!(volume = %req.volume, snapshot = %req.snapname, version = req.version, "snapshot create");
        let reply = snap_reply(&self.control, "SNAPCREATE", &req.volume, &req.snapname).await?;
        Ok(Response::new(VolumeSnapCreateResponse {
            version: 0,
            status: status_json(&reply),
        }))
    }

    async fn run_volume_snap_delete_command(
        &self,
        request: Request<VolumeSnapDeleteRequest>,
    ) -> Result<Response<VolumeSnapDeleteResponse>, Status> {
        let req = request.into_inner();
        check_names(&req.volume, &req.snapname)?;
        tracing::info!(volume = %req.volume, snapshot = %req.snapname, version = req.version, "snapshot delete");
        let reply = snap_reply(&self.control, "SNAPDESTROY", &req.volume, &req.snapname).await?;
        Ok(Response::new(VolumeSnapDeleteResponse {
            version: 0,
            status: status_json(&reply),
        }))
    }
}

/// Binds `addr` for [`serve`].
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves the snapshot service on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    control: ControlClient,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .add_service(SnapshotService::new(control).into_server())
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_json_is_line_one_with_crlf_or_err() {
        let ok = Reply {
            command: "SNAPCREATE".into(),
            lines: vec![
                "iSCSI Target Controller version x".into(),
                "OK SNAPCREATE".into(),
            ],
        };
        assert_eq!(
            status_json(&ok),
            br#"{"response":"OK SNAPCREATE\r\n"}"#.to_vec()
        );
        let short = Reply {
            command: "SNAPCREATE".into(),
            lines: vec!["iSCSI Target Controller version x".into()],
        };
        assert_eq!(status_json(&short), br#"{"response":"ERR"}"#.to_vec());
    }

    #[test]
    fn closed_reply_keeps_complete_lines_only() {
        let r = closed_reply(
            "SNAPCREATE",
            "iSCSI Target Controller version x\r\nSNAPCREATE  busy\r\nOK SNAP",
        );
        assert_eq!(
            r.lines,
            vec!["iSCSI Target Controller version x", "SNAPCREATE  busy"]
        );
        assert_eq!(
            status_json(&closed_reply(
                "SNAPCREATE",
                "iSCSI Target Controller version x\r\n"
            )),
            br#"{"response":"ERR"}"#.to_vec()
        );
    }

    #[test]
    fn names_with_spaces_are_refused() {
        assert!(check_names("pvc-1", "snap 1").is_err());
        assert!(check_names("", "s").is_err());
        assert!(check_names("pvc-1", "snapshot-1").is_ok());
    }
}
