//! An in-process stand-in for cStor's istgt control socket, speaking the protocol byte for byte
//! (banner on accept, `\r\n` line endings, data lines prefixed by the command word, `OK <CMD>` /
//! `ERR …` final lines, several commands per connection). For tests of the volume manager and
//! of its clients (the CSI controller's snapshot calls go through the same socket).
//!
//! Every request line is recorded verbatim (with its `\r\n`). Replies can be scripted per
//! command word, including broken ones: a connection that closes in the middle of a reply, or
//! one that never answers. Replies are written in chunks of a configurable size so readers are
//! exercised with partial reads.

use std::{
    collections::{HashMap, VecDeque},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream},
    sync::watch,
    task::JoinHandle,
};

/// The banner the fake writes on accept (cStor istgt's format).
pub const FAKE_BANNER: &str =
    "iSCSI Target Controller version istgt:0.5.20121028:13:43:08:Jun 15 2021 on  from ";
/// The version the fake reports to `VERSION` (the banner's).
pub const FAKE_VERSION: &str = "istgt:0.5.20121028:13:43:08:Jun 15 2021";
/// istgt's node base: targets are `<NODE_BASE>:<volume>`.
pub const NODE_BASE: &str = "iqn.2016-09.com.openebs.cstor";

/// What the fake answers to one command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FakeReply {
    /// These lines, each followed by `\r\n`.
    Lines(Vec<String>),
    /// These exact bytes, then the connection is closed (e.g. half a line).
    RawThenClose(Vec<u8>),
    /// Nothing; the connection stays open until the client gives up.
    Silent,
}

impl FakeReply {
    /// `OK <word>`.
    pub fn ok(word: &str) -> Self {
        FakeReply::Lines(vec![format!("OK {word}")])
    }

    /// A single error line.
    pub fn err(line: &str) -> Self {
        FakeReply::Lines(vec![line.to_owned()])
    }
}

#[derive(Default)]
struct State {
    requests: Vec<String>,
    once: HashMap<String, VecDeque<FakeReply>>,
    always: HashMap<String, FakeReply>,
    replica_json: String,
    chunk: Option<usize>,
    /// The volume istgt serves; commands naming another one fail as istgt's do.
    volume: Option<String>,
}

/// The fake istgt control socket; stops and removes its socket when dropped.
pub struct FakeIstgt {
    path: PathBuf,
    state: Arc<Mutex<State>>,
    seen: watch::Receiver<usize>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for FakeIstgt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeIstgt")
            .field("path", &self.path)
            .finish()
    }
}

/// A `REPLICA` payload for one volume (`replicas` are istgt-style replica objects, see
/// [`replica_entry`]).
pub fn replica_json(volume: &str, status: &str, replicas: &[serde_json::Value]) -> String {
    serde_json::json!({"volumeStatus": [{"name": volume, "status": status, "replicaStatus": replicas}]}).to_string()
}

/// One replica of a `REPLICA` payload exactly as istgt writes it: `replicaId` is the replica
/// **zvol's guid** (decimal), not its `io.openebs:zvol_replica_id`; the uint64 counters are JSON
/// strings, `upTime` a number, `Mode` capitalised.
pub fn replica_entry(
    zvol_guid: &str,
    address: &str,
    mode: &str,
    checkpointed_io_seq: u64,
    quorum: bool,
    up_time: i64,
) -> serde_json::Value {
    serde_json::json!({
        "replicaId": zvol_guid, "Address": address, "Mode": mode,
        "checkpointedIOSeq": checkpointed_io_seq.to_string(), "inflightRead": "0",
        "inflightWrite": "0", "inflightSync": "0", "quorum": if quorum { "1" } else { "0" },
        "upTime": up_time,
    })
}

/// The shape of one control-socket reply, for comparing a stand-in with a recording of the
/// real istgt: one entry per line; the banner and payload-less data lines by their command
/// word, JSON payloads by their keys and value types, final lines (`OK …`, `ERR …`) verbatim.
/// Fails when a line does not end in `\r\n`.
pub fn reply_shape(raw: &[u8]) -> Result<Vec<String>, String> {
    let text = String::from_utf8_lossy(raw);
    if !text.ends_with("\r\n") {
        return Err(format!("reply does not end in CRLF: {text:?}"));
    }
    let body = &text[..text.len() - 2];
    let mut shape = Vec::new();
    for line in body.split("\r\n") {
        if line.contains('\n') || line.contains('\r') {
            return Err(format!("line {line:?} is not CRLF-framed"));
        }
        if line.starts_with("iSCSI Target Controller version ") {
            shape.push("<banner>".to_owned());
        } else if line.starts_with("OK ") || line.starts_with("ERR") || line.starts_with("Error") {
            shape.push(line.to_owned());
        } else {
            let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
            match rest
                .strip_prefix(' ')
                .map(serde_json::from_str::<serde_json::Value>)
            {
                Some(Ok(v)) => shape.push(format!("{word}  {}", json_shape(&v))),
                _ => shape.push(format!("{word} <text>")),
            }
        }
    }
    Ok(shape)
}

/// Keys and value types of a JSON value (array elements must all have one shape).
pub fn json_shape(v: &serde_json::Value) -> String {
    use serde_json::Value;
    match v {
        Value::Null => "null".into(),
        Value::Bool(_) => "bool".into(),
        Value::Number(_) => "number".into(),
        Value::String(_) => "string".into(),
        Value::Array(items) => {
            let mut shapes: Vec<String> = items.iter().map(json_shape).collect();
            shapes.dedup();
            format!("[{}]", shapes.join(" | "))
        }
        Value::Object(m) => {
            let fields: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{k}:{}", json_shape(v)))
                .collect();
            format!("{{{}}}", fields.join(","))
        }
    }
}

impl FakeIstgt {
    /// Listens on `path` (a stale socket file there is replaced).
    pub async fn start(path: impl AsRef<Path>) -> std::io::Result<Self> {
        let path = path.as_ref().to_path_buf();
        if path.exists() {
            std::fs::remove_file(&path)?;
        }
        let listener = UnixListener::bind(&path)?;
        let state = Arc::new(Mutex::new(State {
            replica_json: replica_json("", "Offline", &[]),
            ..Default::default()
        }));
        let (tx, seen) = watch::channel(0usize);
        let tx = Arc::new(tx);
        let st = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(serve(sock, st.clone(), tx.clone()));
            }
        });
        Ok(Self {
            path,
            state,
            seen,
            task,
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every request line received so far, verbatim (`"SNAPCREATE v s 10 60\r\n"`).
    pub fn requests(&self) -> Vec<String> {
        self.lock().requests.clone()
    }

    /// The JSON the default `REPLICA` handler returns.
    pub fn set_replica_json(&self, json: impl Into<String>) {
        self.lock().replica_json = json.into();
    }

    /// Answers the next command with this word (upper case) with `reply`, once.
    pub fn push_reply(&self, word: &str, reply: FakeReply) {
        self.lock()
            .once
            .entry(word.to_owned())
            .or_default()
            .push_back(reply);
    }

    /// Answers every command with this word with `reply` (after the one-shot replies).
    pub fn set_reply(&self, word: &str, reply: FakeReply) {
        self.lock().always.insert(word.to_owned(), reply);
    }

    /// Serves `volume` as the real istgt does: `STATUS` lists its target, and `SNAPCREATE`,
    /// `SNAPDESTROY`, `RESIZE`, `DRF` naming another volume fail with istgt's messages.
    pub fn set_volume(&self, volume: &str) {
        self.lock().volume = Some(volume.to_owned());
    }

    /// Writes replies in chunks of `n` bytes (`None`: one write per line, as istgt does).
    pub fn set_chunk_size(&self, n: Option<usize>) {
        self.lock().chunk = n;
    }

    /// Waits until a request line satisfying `pred` has arrived; returns it.
    pub async fn wait_for_request<F>(&self, deadline: Duration, pred: F) -> Option<String>
    where
        F: Fn(&str) -> bool,
    {
        let mut seen = self.seen.clone();
        let find = |st: &State| st.requests.iter().find(|r| pred(r)).cloned();
        tokio::time::timeout(deadline, async {
            loop {
                if let Some(r) = find(&self.lock()) {
                    return Some(r);
                }
                if seen.changed().await.is_err() {
                    return None;
                }
            }
        })
        .await
        .ok()
        .flatten()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for FakeIstgt {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

fn default_reply(word: &str, args: &str, st: &State) -> FakeReply {
    let other_volume = st
        .volume
        .as_deref()
        .is_some_and(|v| args.split(' ').next() != Some(v));
    match word {
        "VERSION" => FakeReply::Lines(vec![format!("VERSION {FAKE_VERSION}"), "OK VERSION".into()]),
        "STATUS" => {
            let mut lines = vec!["STATUS Running:NORMAL MODE OF OPERATION".to_owned()];
            if let Some(v) = &st.volume {
                lines.push(format!("STATUS {NODE_BASE}:{v} REAL"));
            }
            lines.push("OK STATUS".into());
            FakeReply::Lines(lines)
        }
        "REPLICA" => FakeReply::Lines(vec![
            format!("REPLICA  {}", st.replica_json),
            "OK REPLICA".into(),
        ]),
        "REFRESH" => FakeReply::ok(word),
        "RESIZE" | "DRF" | "SNAPCREATE" | "SNAPDESTROY" if args.is_empty() => {
            FakeReply::err("ERR invalid param")
        }
        "SNAPCREATE" | "SNAPDESTROY" if other_volume => FakeReply::err("ERR no target"),
        "RESIZE" | "DRF" if other_volume => FakeReply::err("ERR target not found"),
        "RESIZE" | "DRF" | "SNAPCREATE" | "SNAPDESTROY" => FakeReply::ok(word),
        _ => FakeReply::err("ERR unknown command"),
    }
}

async fn write_chunked(
    sock: &mut UnixStream,
    bytes: &[u8],
    chunk: Option<usize>,
) -> std::io::Result<()> {
    match chunk {
        Some(n) if n > 0 => {
            for part in bytes.chunks(n) {
                sock.write_all(part).await?;
                sock.flush().await?;
                // Give the reader a chance to see each chunk separately.
                tokio::task::yield_now().await;
            }
            Ok(())
        }
        _ => sock.write_all(bytes).await,
    }
}

async fn serve(sock: UnixStream, state: Arc<Mutex<State>>, seen: Arc<watch::Sender<usize>>) {
    let lock = || state.lock().unwrap_or_else(|p| p.into_inner());
    let mut reader = BufReader::new(sock);
    let chunk = lock().chunk;
    if write_chunked(
        reader.get_mut(),
        format!("{FAKE_BANNER}\r\n").as_bytes(),
        chunk,
    )
    .await
    .is_err()
    {
        return;
    }
    loop {
        let mut raw = Vec::new();
        match reader.read_until(b'\n', &mut raw).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let line = String::from_utf8_lossy(&raw).into_owned();
        let trimmed = line.trim_end_matches(['\r', '\n']);
        let (word, args) = trimmed.split_once(' ').unwrap_or((trimmed, ""));
        let word = word.to_ascii_uppercase();
        let (reply, chunk) = {
            let mut st = lock();
            st.requests.push(line.clone());
            let scripted = st.once.get_mut(&word).and_then(VecDeque::pop_front);
            let reply = scripted
                .or_else(|| st.always.get(&word).cloned())
                .unwrap_or_else(|| default_reply(&word, args, &st));
            (reply, st.chunk)
        };
        seen.send_modify(|n| *n += 1);
        match reply {
            FakeReply::Lines(lines) => {
                let mut out = String::new();
                for l in lines {
                    out.push_str(&l);
                    out.push_str("\r\n");
                }
                if write_chunked(reader.get_mut(), out.as_bytes(), chunk)
                    .await
                    .is_err()
                {
                    return;
                }
            }
            FakeReply::RawThenClose(bytes) => {
                let _ = write_chunked(reader.get_mut(), &bytes, chunk).await;
                let _ = reader.get_mut().shutdown().await;
                return;
            }
            FakeReply::Silent => {}
        }
    }
}
