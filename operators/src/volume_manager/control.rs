//! Client of istgt's control socket (`/var/run/istgt_ctl_sock`).
//!
//! Protocol (as cStor's istgt speaks it): one unix-stream connection per command. On accept
//! istgt writes a banner line `iSCSI Target Controller version <ver> on <saddr> from <caddr>`;
//! the client writes `<CMD> <args>\r\n`; istgt answers with lines ending in `\r\n`: data lines
//! that start with the command word (`REPLICA  {json}`), then one final line, `OK <CMD>` on
//! success or `ERR …` / `Error …` on failure. A reply is complete at the first line that
//! starts neither with the banner prefix nor with the command word (upstream's rule).
//!
//! Every call has a deadline; a connection that closes before the final line is a
//! [`ControlError::Closed`] carrying what had arrived, never a silently short reply.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWriteExt},
    net::UnixStream,
};

use super::status::{ReplicaReport, StatusError, parse_replica_payload};

/// Default socket path inside the target pod.
pub const DEFAULT_SOCKET: &str = "/var/run/istgt_ctl_sock";
/// Prefix of the banner line istgt writes on accept.
pub const BANNER_PREFIX: &str = "iSCSI Target Controller version";
/// Default deadline of one command.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Seconds istgt may stop IO for a snapshot or resize (upstream `IoWaitTime`).
pub const IO_WAIT_SECS: u64 = 10;
/// Seconds istgt may take for a snapshot or resize on all replicas (upstream `TotalWaitTime`).
pub const TOTAL_WAIT_SECS: u64 = 60;

/// The lines of one reply, without their `\r\n`; the banner (when istgt sent one) is first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The command word the reply answers (upper case).
    pub command: String,
    /// Every non-empty line received, in order.
    pub lines: Vec<String>,
}

impl Reply {
    /// The banner line, when present.
    pub fn banner(&self) -> Option<&str> {
        self.lines
            .first()
            .map(String::as_str)
            .filter(|l| l.starts_with(BANNER_PREFIX))
    }

    /// The final line (`OK <CMD>`, `ERR …`).
    pub fn final_line(&self) -> &str {
        self.lines.last().map(String::as_str).unwrap_or("")
    }

    /// Whether the final line is an error (`ERR …` or `Error …`).
    pub fn is_error(&self) -> bool {
        let l = self.final_line();
        l.starts_with("ERR") || l.starts_with("Error")
    }

    /// The payload of the first data line (`<CMD>  <payload>` → `<payload>`, leading spaces
    /// removed).
    pub fn payload(&self) -> Option<&str> {
        self.lines
            .iter()
            .find(|l| !l.starts_with(BANNER_PREFIX) && l.starts_with(self.command.as_str()))
            .map(|l| l[self.command.len()..].trim_start())
    }

    /// Line `index` as upstream's Go reader returns it (with `\r\n`); index 0 is the banner.
    pub fn upstream_line(&self, index: usize) -> Option<String> {
        self.lines.get(index).map(|l| format!("{l}\r\n"))
    }
}

/// Failure of a control command.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The command would not be one line, or has no command word.
    #[error("invalid istgt control command {command:?}: {reason}")]
    InvalidCommand {
        /// The command as given.
        command: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The socket could not be opened.
    #[error(
        "cannot connect to istgt's control socket {path}: {source}; check that istgt runs and shares this socket path"
    )]
    Connect {
        /// Socket path.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// Writing the command or reading the reply failed.
    #[error("istgt control command `{command}` failed on the socket: {source}")]
    Io {
        /// The command line.
        command: String,
        /// OS error.
        source: std::io::Error,
    },
    /// No complete reply within the deadline.
    #[error("istgt did not complete its reply to `{command}` within {after:?}")]
    Timeout {
        /// The command line.
        command: String,
        /// The deadline.
        after: Duration,
    },
    /// The connection closed before the final line.
    #[error(
        "istgt closed the control connection before finishing its reply to `{command}`; received {received:?}"
    )]
    Closed {
        /// The command line.
        command: String,
        /// Everything received, raw.
        received: String,
    },
    /// istgt answered with `ERR …`/`Error …`.
    #[error("istgt refused `{command}`: {line}")]
    Rejected {
        /// The command line.
        command: String,
        /// The error line.
        line: String,
        /// The whole reply.
        reply: Reply,
    },
    /// The reply's payload could not be decoded.
    #[error("istgt's reply to `{command}` is not usable: {source}")]
    BadPayload {
        /// The command line.
        command: String,
        /// The decoding error.
        source: StatusError,
    },
}

/// Async client of istgt's control socket.
#[derive(Clone, Debug)]
pub struct ControlClient {
    path: PathBuf,
    timeout: Duration,
}

impl ControlClient {
    /// A client of the socket at `path` with [`DEFAULT_TIMEOUT`] per call.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Sets the per-call deadline (commands that make istgt wait for replicas get at least
    /// [`TOTAL_WAIT_SECS`] + 15 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The per-call deadline.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sends one command line (without `\r\n`) and returns the complete reply, `ERR` or not.
    pub async fn exchange(&self, command: &str) -> Result<Reply, ControlError> {
        self.exchange_within(command, self.timeout).await
    }

    /// [`ControlClient::exchange`] with an explicit deadline.
    pub async fn exchange_within(
        &self,
        command: &str,
        deadline: Duration,
    ) -> Result<Reply, ControlError> {
        let word = command_word(command)?;
        match tokio::time::timeout(deadline, self.exchange_inner(command, &word)).await {
            Ok(r) => r,
            Err(_) => Err(ControlError::Timeout {
                command: command.to_owned(),
                after: deadline,
            }),
        }
    }

    async fn exchange_inner(&self, command: &str, word: &str) -> Result<Reply, ControlError> {
        let mut sock =
            UnixStream::connect(&self.path)
                .await
                .map_err(|source| ControlError::Connect {
                    path: self.path.clone(),
                    source,
                })?;
        let io = |source| ControlError::Io {
            command: command.to_owned(),
            source,
        };
        sock.write_all(format!("{command}\r\n").as_bytes())
            .await
            .map_err(io)?;
        sock.flush().await.map_err(io)?;
        let lines = read_reply(&mut sock, word, command).await?;
        // Dropping the stream closes the connection, as upstream does after each command.
        Ok(Reply {
            command: word.to_owned(),
            lines,
        })
    }

    /// Sends `command` and turns an `ERR`/`Error` final line into [`ControlError::Rejected`].
    pub async fn call(&self, command: &str, deadline: Duration) -> Result<Reply, ControlError> {
        let reply = self.exchange_within(command, deadline).await?;
        if reply.is_error() {
            return Err(ControlError::Rejected {
                command: command.to_owned(),
                line: reply.final_line().to_owned(),
                reply,
            });
        }
        Ok(reply)
    }

    fn long_deadline(&self) -> Duration {
        self.timeout.max(Duration::from_secs(TOTAL_WAIT_SECS + 15))
    }

    /// `STATUS`: liveness of istgt.
    pub async fn status(&self) -> Result<Reply, ControlError> {
        self.call("STATUS", self.timeout).await
    }

    /// `REFRESH`: make istgt re-read `istgt.conf`.
    pub async fn refresh(&self) -> Result<(), ControlError> {
        self.call("REFRESH", self.timeout).await.map(drop)
    }

    /// `REPLICA`: the volume's and its replicas' state (upstream sends it without arguments
    /// and reads the first volume of the payload).
    pub async fn replica(&self) -> Result<ReplicaReport, ControlError> {
        let command = "REPLICA";
        let reply = self.call(command, self.timeout).await?;
        let joined = reply.lines.join("\r\n");
        parse_replica_payload(&joined).map_err(|source| ControlError::BadPayload {
            command: command.to_owned(),
            source,
        })
    }

    /// `RESIZE <vol> <size> 10 60`. Any reply line containing `ERR` is a failure (upstream's rule).
    pub async fn resize(&self, volume: &str, size: &str) -> Result<(), ControlError> {
        let command = format!("RESIZE {volume} {size} {IO_WAIT_SECS} {TOTAL_WAIT_SECS}");
        let reply = self.exchange_within(&command, self.long_deadline()).await?;
        if let Some(line) = reply
            .lines
            .iter()
            .skip(1)
            .find(|l| l.contains("ERR"))
            .cloned()
        {
            return Err(ControlError::Rejected {
                command,
                line,
                reply,
            });
        }
        if reply.is_error() {
            let line = reply.final_line().to_owned();
            return Err(ControlError::Rejected {
                command,
                line,
                reply,
            });
        }
        Ok(())
    }

    /// `DRF <vol> <drf> [<replicaId>…]`.
    pub async fn drf(&self, volume: &str, drf: i64, keep: &[String]) -> Result<(), ControlError> {
        let mut command = format!("DRF {volume} {drf}");
        for id in keep {
            command.push(' ');
            command.push_str(id);
        }
        self.call(&command, self.timeout).await.map(drop)
    }

    /// `SNAPCREATE <vol> <snap> 10 60`; the raw reply (`ERR` included) is returned because the
    /// snapshot service forwards it to its caller.
    pub async fn snap_create(&self, volume: &str, snap: &str) -> Result<Reply, ControlError> {
        let command = format!("SNAPCREATE {volume} {snap} {IO_WAIT_SECS} {TOTAL_WAIT_SECS}");
        self.exchange_within(&command, self.long_deadline()).await
    }

    /// `SNAPDESTROY <vol> <snap> 10 60`; raw reply as for [`ControlClient::snap_create`].
    pub async fn snap_destroy(&self, volume: &str, snap: &str) -> Result<Reply, ControlError> {
        let command = format!("SNAPDESTROY {volume} {snap} {IO_WAIT_SECS} {TOTAL_WAIT_SECS}");
        self.exchange_within(&command, self.long_deadline()).await
    }
}

fn command_word(command: &str) -> Result<String, ControlError> {
    let bad = |reason| ControlError::InvalidCommand {
        command: command.to_owned(),
        reason,
    };
    if command.contains(['\r', '\n']) {
        return Err(bad("it must be a single line without CR/LF"));
    }
    let word = command.split(' ').next().unwrap_or("");
    if word.is_empty() {
        return Err(bad("it has no command word"));
    }
    Ok(word.to_ascii_uppercase())
}

/// Reads reply lines until the final one (see the module docs).
async fn read_reply<R: AsyncRead + Unpin>(
    r: &mut R,
    word: &str,
    command: &str,
) -> Result<Vec<String>, ControlError> {
    let mut pending: Vec<u8> = Vec::new();
    let mut lines: Vec<String> = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = match r.read(&mut chunk).await {
            Ok(n) => n,
            Err(source) => {
                return Err(ControlError::Io {
                    command: command.to_owned(),
                    source,
                });
            }
        };
        if n == 0 {
            let mut received = lines.iter().map(|l| format!("{l}\r\n")).collect::<String>();
            received.push_str(&String::from_utf8_lossy(&pending));
            return Err(ControlError::Closed {
                command: command.to_owned(),
                received,
            });
        }
        pending.extend_from_slice(&chunk[..n]);
        while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
            let mut raw: Vec<u8> = pending.drain(..=pos).collect();
            raw.pop();
            if raw.last() == Some(&b'\r') {
                raw.pop();
            }
            if raw.is_empty() {
                continue;
            }
            let line = String::from_utf8_lossy(&raw).into_owned();
            let is_final = !line.starts_with(BANNER_PREFIX) && !line.starts_with(word);
            lines.push(line);
            if is_final {
                return Ok(lines);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(bytes: &[u8], word: &str) -> Result<Vec<String>, ControlError> {
        let mut r = bytes;
        read_reply(&mut r, word, word).await
    }

    #[tokio::test]
    async fn reply_ends_at_first_line_not_banner_or_word() {
        let got = read(
            b"iSCSI Target Controller version X on a from b\r\nSTATUS Running:NORMAL\r\nSTATUS LU1\r\nOK STATUS\r\nextra\r\n",
            "STATUS",
        )
        .await
        .unwrap();
        assert_eq!(got.len(), 4);
        assert_eq!(got[3], "OK STATUS");
    }

    #[tokio::test]
    async fn eof_before_final_line_is_closed_with_partial_data() {
        let err = read(
            b"iSCSI Target Controller version X\r\nREPLICA  {\"volumeSt",
            "REPLICA",
        )
        .await
        .unwrap_err();
        match err {
            ControlError::Closed { received, .. } => {
                assert_eq!(
                    received,
                    "iSCSI Target Controller version X\r\nREPLICA  {\"volumeSt"
                )
            }
            other => panic!("expected Closed, got {other:?}"),
        }
    }

    #[test]
    fn command_word_rejects_multi_line_and_empty() {
        assert!(command_word("STATUS\r\nREFRESH").is_err());
        assert!(command_word("").is_err());
        assert_eq!(command_word("snapcreate a b").unwrap(), "SNAPCREATE");
    }

    #[test]
    fn payload_strips_word_and_spaces() {
        let r = Reply {
            command: "REPLICA".into(),
            lines: vec![
                "iSCSI Target Controller version 1".into(),
                "REPLICA  {}".into(),
                "OK REPLICA".into(),
            ],
        };
        assert_eq!(r.payload(), Some("{}"));
        assert_eq!(r.upstream_line(2).as_deref(), Some("OK REPLICA\r\n"));
        assert!(!r.is_error());
    }
}
