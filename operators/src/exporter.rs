//! The metrics exporters of the pool and target pods, in place of upstream's `m-exporter`
//! sidecar (`maya-exporter -e=pool` / `-e=cstor`): `GET /metrics` on `--exporter-addr`
//! (`EXPORTER_ADDR`; the pods the operators build set [`DEFAULT_ADDR`], `0.0.0.0:9500`, the port
//! the pods' `prometheus.io/port` annotation names) answers with upstream's metric names,
//! labels and value encodings in the Prometheus text format.
//!
//! Every scrape collects afresh (the engine commands or istgt's `IOSTATS`) within
//! [`COLLECT_TIMEOUT`]; what fails is counted in upstream's error metrics and the rest is still
//! served. Scrapes are serialised: one that waits longer than the timeout for the one in
//! progress is answered with the error counters only and counted as rejected (upstream's
//! `*_reject_request_count`).
//!
//! When the port is taken (an adopted pod still runs upstream's sidecar on it), [`start`] logs a
//! warning and the binary runs on without its exporter.

use std::{
    fmt::Write as _,
    future::Future,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use axum::{Router, extract::State, http::header, response::IntoResponse, routing::get};
use cstor_api::health::{HealthAddr, METRICS_PATH, serve_router};
use tokio::net::TcpListener;

/// The `--exporter-addr` the operators put into the pool and target pods they build: upstream's
/// exporter port on every address. The binaries' own default is empty (no exporter), so that in
/// a pod still carrying upstream's `m-exporter` sidecar they never race it for the port.
pub const DEFAULT_ADDR: &str = "0.0.0.0:9500";
/// Environment variable of `--exporter-addr`.
pub const ADDR_ENV: &str = "EXPORTER_ADDR";
/// The longest one collection may take (each engine command and the istgt call are bounded by
/// it; a scrape waiting for another one gives up after it too).
pub const COLLECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Content type of the Prometheus text format.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What a Prometheus sample's family is declared as. Upstream declares almost everything,
/// counters included, as a gauge; the names and types here are upstream's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    Counter,
}

/// A Prometheus text-format document under construction.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    pub fn new() -> Self {
        Self::default()
    }

    /// One family with a single unlabelled sample.
    pub fn single(&mut self, name: &str, help: &str, kind: Kind, value: f64) {
        self.family(name, help, kind, &[(Vec::new(), value)]);
    }

    /// One family: `# HELP`, `# TYPE` and one line per sample (labels in the order given).
    pub fn family(
        &mut self,
        name: &str,
        help: &str,
        kind: Kind,
        samples: &[(Vec<(&str, String)>, f64)],
    ) {
        let kind = match kind {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
        };
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        // Writing into a String cannot fail.
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            self.out.push_str(name);
            if !labels.is_empty() {
                let inner: Vec<String> = labels
                    .iter()
                    .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
                    .collect();
                let _ = write!(self.out, "{{{}}}", inner.join(","));
            }
            let _ = writeln!(self.out, " {}", format_value(*value));
        }
    }

    /// The document.
    pub fn finish(self) -> String {
        self.out
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A sample value as Prometheus reads it: integers without a fraction, `NaN`, `+Inf`, `-Inf`.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        // Exact: |v| < 2^53.
        #[allow(clippy::cast_possible_truncation)]
        let i = v as i64;
        i.to_string()
    } else {
        v.to_string()
    }
}

/// A process-lifetime error counter (upstream keeps them as gauges that only grow).
#[derive(Debug, Default)]
pub struct ErrorCounter(AtomicU64);

impl ErrorCounter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    #[allow(clippy::cast_precision_loss)]
    pub fn get(&self) -> f64 {
        self.0.load(Ordering::Relaxed) as f64
    }
}

/// An exporter: collects and renders one scrape.
#[async_trait]
pub trait Collect: Send + Sync + 'static {
    /// The whole `/metrics` document; never fails (what could not be collected is counted).
    async fn scrape(&self) -> String;
}

/// The `/metrics` route over `exporter`.
pub fn router(exporter: Arc<dyn Collect>) -> Router {
    Router::new()
        .route(METRICS_PATH, get(metrics))
        .with_state(exporter)
}

async fn metrics(State(exporter): State<Arc<dyn Collect>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, TEXT_FORMAT)],
        exporter.scrape().await,
    )
}

/// Binds `addr` and serves `exporter` there until `shutdown` completes. Returns the bound
/// address; `None` when disabled, and `None` with a warning when the address cannot be bound
/// (the port is taken by upstream's sidecar in an adopted pod): the exporter is optional, the
/// binary never exits over it.
pub async fn start(
    addr: HealthAddr,
    exporter: Arc<dyn Collect>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Option<SocketAddr> {
    let addr = addr.get()?;
    let listener = match TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(
                %addr, error = %e,
                "cannot listen on --exporter-addr (is upstream's m-exporter sidecar still in this pod?); running without the metrics exporter"
            );
            return None;
        }
    };
    let bound = listener.local_addr().unwrap_or(addr);
    tracing::info!(addr = %bound, "serving the metrics exporter at {METRICS_PATH}");
    tokio::spawn(serve_router(listener, router(exporter), shutdown));
    Some(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_labels_are_written_as_prometheus_reads_them() {
        assert_eq!(format_value(10.0), "10");
        assert_eq!(format_value(-3.0), "-3");
        assert_eq!(format_value(0.5), "0.5");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(1e20), "100000000000000000000");
        let mut e = Exposition::new();
        e.family(
            "openebs_x",
            "Help with \\ and\nnewline",
            Kind::Gauge,
            &[(
                vec![("pool", "a\"b\\c".to_owned()), ("vol", "v".to_owned())],
                2.0,
            )],
        );
        e.single("openebs_y", "Y", Kind::Counter, 1.25);
        assert_eq!(
            e.finish(),
            "# HELP openebs_x Help with \\\\ and\\nnewline\n# TYPE openebs_x gauge\n\
             openebs_x{pool=\"a\\\"b\\\\c\",vol=\"v\"} 2\n\
             # HELP openebs_y Y\n# TYPE openebs_y counter\nopenebs_y 1.25\n"
        );
    }
}
