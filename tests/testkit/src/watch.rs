//! Watches: `?watch=1` on a collection URL streams newline-separated JSON `WatchEvent`s.
//!
//! - `resourceVersion` empty or `0`: synthetic ADDED events for the current objects, then changes;
//!   otherwise every change after that version, replayed from the bounded history, then live.
//! - A version older than the history answers one `ERROR` event carrying a 410 `Expired` Status
//!   ("too old resource version: X (Y)") and ends the stream, as the real API does. A watcher that
//!   falls behind the live broadcast gets the same.
//! - `allowWatchBookmarks=true`: BOOKMARK events every [`crate::ServerConfig::bookmark_interval`]
//!   and whenever [`crate::TestApiServer::send_bookmarks`] is called.
//! - `sendInitialEvents=true`: the synthetic ADDED events end with a BOOKMARK annotated
//!   `k8s.io/initial-events-end: "true"` (streaming lists).
//! - `timeoutSeconds`: the stream ends after that long.
//! - Label and field selectors apply; an object that starts or stops matching after a change is
//!   sent as ADDED or DELETED, like the real API.

use std::{convert::Infallible, time::Duration};

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use crate::{
    resources::ResourceDef,
    selectors::{FieldSelector, LabelSelector},
    status::ApiError,
    store::{EventType, Key, Record, Signal, State, as_version},
};

/// Which objects one watch sees.
#[derive(Clone, Debug)]
pub(crate) struct WatchFilter {
    pub def: ResourceDef,
    /// `None` for a cluster-wide watch.
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    /// Send `PartialObjectMetadata` instead of whole objects (metadata-only watches).
    pub metadata_only: bool,
}

impl WatchFilter {
    fn render(&self, obj: &Value) -> Value {
        let v = as_version(&self.def, obj);
        if self.metadata_only {
            partial_metadata(&v)
        } else {
            v
        }
    }

    fn matches_key(&self, key: &Key) -> bool {
        key.group == self.def.group
            && key.plural == self.def.plural
            && self
                .namespace
                .as_ref()
                .is_none_or(|ns| *ns == key.namespace)
    }

    fn matches(&self, obj: &Value) -> bool {
        self.labels.matches(obj) && self.fields.matches(obj)
    }

    /// The event this watch sees for a change, if any.
    fn translate(&self, rec: &Record) -> Option<(EventType, Value)> {
        if !self.matches_key(&rec.key) {
            return None;
        }
        let now = self.matches(&rec.object);
        let ty = match rec.ty {
            EventType::Modified => {
                let before = rec.old.as_ref().is_some_and(|o| self.matches(o));
                match (before, now) {
                    (true, true) => EventType::Modified,
                    (false, true) => EventType::Added,
                    (true, false) => EventType::Deleted,
                    (false, false) => return None,
                }
            }
            other if now => other,
            _ => return None,
        };
        Some((ty, self.render(&rec.object)))
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Value {
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        json!({"type": "BOOKMARK", "object": {"kind": self.def.kind, "apiVersion": self.def.api_version(), "metadata": meta}})
    }
}

/// Query options of one watch.
#[derive(Clone, Debug)]
pub(crate) struct WatchOptions {
    pub resource_version: String,
    pub bookmarks: bool,
    pub send_initial_events: bool,
    pub timeout: Option<Duration>,
    pub bookmark_interval: Duration,
}

fn line(v: &Value) -> Bytes {
    let mut b = serde_json::to_vec(v).expect("JSON values serialise");
    b.push(b'\n');
    Bytes::from(b)
}

fn event(ty: EventType, obj: Value) -> Value {
    json!({"type": ty.as_str(), "object": obj})
}

fn expired_event(asked: &str, oldest: u64) -> Value {
    let status =
        ApiError::expired(format!("too old resource version: {asked} ({oldest})")).to_status();
    json!({"type": "ERROR", "object": status})
}

/// A watch prepared under the store lock.
pub(crate) struct Started {
    /// Events to send before the live ones.
    first: Vec<Value>,
    /// The version the live part starts after.
    start_rv: u64,
    /// The live subscription; `None` when the stream ends after `first` (410).
    rx: Option<broadcast::Receiver<Signal>>,
}

/// Prepares a watch under the store lock: the events to send first and the live subscription.
pub(crate) fn start(
    st: &State,
    filter: &WatchFilter,
    opts: &WatchOptions,
) -> Result<Started, ApiError> {
    let rv = opts.resource_version.as_str();
    let mut first = Vec::new();
    if rv.is_empty() || rv == "0" || opts.send_initial_events {
        let start_rv = st.rv;
        for (k, o) in &st.objects {
            if filter.matches_key(k) && filter.matches(o) {
                first.push(event(EventType::Added, filter.render(o)));
            }
        }
        if opts.send_initial_events && opts.bookmarks {
            first.push(filter.bookmark(start_rv, true));
        }
        return Ok(Started {
            first,
            start_rv,
            rx: Some(st.tx.subscribe()),
        });
    }
    let since: u64 = rv.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "resourceVersion {rv:?} is not a valid resource version: pass a value returned by the server"
        ))
    })?;
    if since < st.compacted {
        return Ok(Started {
            first: vec![expired_event(rv, st.compacted)],
            start_rv: since,
            rx: None,
        });
    }
    for rec in st.history.iter().filter(|r| r.rv > since) {
        if let Some((ty, obj)) = filter.translate(rec) {
            first.push(event(ty, obj));
        }
    }
    Ok(Started {
        first,
        start_rv: since.max(st.rv),
        rx: Some(st.tx.subscribe()),
    })
}

/// Streams the events of one watch into the response body until the timeout, a Close signal, or
/// the client going away.
pub(crate) fn stream(
    filter: WatchFilter,
    opts: WatchOptions,
    started: Started,
) -> mpsc::Receiver<Result<Bytes, Infallible>> {
    let (out, body) = mpsc::channel::<Result<Bytes, Infallible>>(256);
    let Started {
        first,
        start_rv,
        rx,
    } = started;
    tokio::spawn(async move {
        for ev in &first {
            if out.send(Ok(line(ev))).await.is_err() {
                return;
            }
        }
        let Some(mut rx) = rx else { return };
        let deadline = opts.timeout.map(|t| tokio::time::Instant::now() + t);
        let mut last_rv = start_rv;
        let mut ticker = tokio::time::interval(opts.bookmark_interval);
        ticker.tick().await;
        loop {
            let sleep_until = deadline
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(86_400));
            let msg = tokio::select! {
                m = rx.recv() => m,
                _ = ticker.tick() => {
                    if opts.bookmarks && out.send(Ok(line(&filter.bookmark(last_rv, false)))).await.is_err() {
                        return;
                    }
                    continue;
                }
                _ = tokio::time::sleep_until(sleep_until) => return,
                _ = out.closed() => return,
            };
            match msg {
                Ok(Signal::Event(rec)) => {
                    last_rv = last_rv.max(rec.rv);
                    if let Some((ty, obj)) = filter.translate(&rec)
                        && out.send(Ok(line(&event(ty, obj)))).await.is_err()
                    {
                        return;
                    }
                }
                Ok(Signal::Bookmark(rv)) => {
                    last_rv = last_rv.max(rv);
                    if opts.bookmarks
                        && out
                            .send(Ok(line(&filter.bookmark(last_rv, false))))
                            .await
                            .is_err()
                    {
                        return;
                    }
                }
                Ok(Signal::Close) | Err(broadcast::error::RecvError::Closed) => return,
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let _ = out
                        .send(Ok(line(&expired_event(&last_rv.to_string(), last_rv + 1))))
                        .await;
                    return;
                }
            }
        }
    });
    body
}

/// The `PartialObjectMetadata` form of an object (`Accept: ...;as=PartialObjectMetadata`).
pub(crate) fn partial_metadata(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}
