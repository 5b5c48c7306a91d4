//! `GET /healthz` and `GET /readyz` of every long-running binary, on `--health-addr`.
//!
//! - `/healthz` answers 200 `ok` whenever the process's runtime answers at all: it is served by
//!   the same runtime as the binary's main loop, so a wedged or dead process fails it.
//! - `/readyz` answers 200 `ok` once the binary has called [`Health::set_ready`], and 503 with
//!   a one-line reason before that (or after [`Health::set_not_ready`]). What "ready" means is
//!   the binary's business; this module knows nothing of operators or CSI.
//!
//! The server is bounded: at most [`MAX_CONNECTIONS`] connections are served at once (further
//! ones wait in the listen backlog), each connection carries one request and is closed after
//! [`CONNECTION_TIMEOUT`] whatever state it is in. It stops accepting when its shutdown future
//! completes.

use std::{
    fmt,
    future::Future,
    net::{Ipv4Addr, SocketAddr},
    str::FromStr,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use axum::{Router, extract::State, http::StatusCode, routing::get};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use k8s_openapi::{
    api::core::v1::{HTTPGetAction, Probe},
    apimachinery::pkg::util::intstr::IntOrString,
};
use tokio::{net::TcpListener, sync::Semaphore};

/// Liveness path.
pub const LIVE_PATH: &str = "/healthz";
/// Readiness path.
pub const READY_PATH: &str = "/readyz";
/// Prometheus metrics path ([`crate::metrics`]).
pub const METRICS_PATH: &str = "/metrics";
/// The longest one connection (reading the request, answering) may take.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 16;
/// Pause after a failed accept, so that a persistent error does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// The default `--health-addr` of each binary: one port per component, none of them a port the
/// pods already use (istgt 3260/6060, snapshot gRPC 7777, exporters 9500, the webhook 8443, the
/// CSI liveness-probe sidecar 9809). The CSI node plugin runs on the host network, so its port
/// must also be free on every node.
pub mod defaults {
    /// `cspc-operator`.
    pub const CSPC_OPERATOR: &str = "0.0.0.0:9501";
    /// `cvc-operator`.
    pub const CVC_OPERATOR: &str = "0.0.0.0:9502";
    /// `pool-manager` (the `cstor-pool-mgmt` container of a pool pod).
    pub const POOL_MANAGER: &str = "0.0.0.0:9503";
    /// `volume-manager` (the `cstor-volume-mgmt` container of a target pod).
    pub const VOLUME_MANAGER: &str = "0.0.0.0:9504";
    /// `cstor-webhook`.
    pub const WEBHOOK: &str = "0.0.0.0:9505";
    /// `cstor-csi-controller`.
    pub const CSI_CONTROLLER: &str = "0.0.0.0:9506";
    /// `cstor-csi-node` (host network).
    pub const CSI_NODE: &str = "0.0.0.0:9507";
}

/// The ports of [`defaults`], for the probes the operators put into the pool and target pods.
pub mod ports {
    /// `pool-manager`.
    pub const POOL_MANAGER: u16 = 9503;
    /// `volume-manager`.
    pub const VOLUME_MANAGER: u16 = 9504;
}

/// `httpGet` `path` on `port`, every 10 s with a 3 s timeout.
fn http_probe(path: &str, port: u16) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::Int(i32::from(port)),
            ..Default::default()
        }),
        period_seconds: Some(10),
        timeout_seconds: Some(3),
        ..Default::default()
    }
}

/// The liveness probe of a container serving health on `port`: `/healthz`, restarted after
/// three failures in a row.
pub fn liveness_probe(port: u16) -> Probe {
    Probe {
        failure_threshold: Some(3),
        ..http_probe(LIVE_PATH, port)
    }
}

/// The readiness probe of a container serving health on `port`: `/readyz`.
pub fn readiness_probe(port: u16) -> Probe {
    http_probe(READY_PATH, port)
}

/// The value of `--health-addr`: `host:port`, `:port` (all IPv4 addresses), or empty for no
/// health server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HealthAddr(Option<SocketAddr>);

impl HealthAddr {
    /// The address to listen on; `None` when disabled.
    pub fn get(&self) -> Option<SocketAddr> {
        self.0
    }

    /// No health server.
    pub const fn disabled() -> Self {
        Self(None)
    }
}

impl From<SocketAddr> for HealthAddr {
    fn from(addr: SocketAddr) -> Self {
        Self(Some(addr))
    }
}

impl FromStr for HealthAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(Self(None));
        }
        let parsed = match s.strip_prefix(':') {
            Some(port) => port
                .parse::<u16>()
                .map(|p| SocketAddr::from((Ipv4Addr::UNSPECIFIED, p)))
                .map_err(|e| e.to_string()),
            None => s.parse::<SocketAddr>().map_err(|e| e.to_string()),
        };
        parsed.map(|a| Self(Some(a))).map_err(|e| {
            format!("{s:?}: {e}; expected host:port, :port, or empty to disable the health server")
        })
    }
}

impl fmt::Display for HealthAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(a) => write!(f, "{a}"),
            None => Ok(()),
        }
    }
}

/// The readiness a binary reports; clones share it.
#[derive(Clone, Debug)]
pub struct Health {
    state: Arc<Mutex<Result<(), String>>>,
}

impl Health {
    /// Not ready yet, because of `reason`.
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            state: Arc::new(Mutex::new(Err(reason.into()))),
        }
    }

    /// `/readyz` answers 200 from now on.
    pub fn set_ready(&self) {
        *self.lock() = Ok(());
    }

    /// `/readyz` answers 503 with `reason` from now on.
    pub fn set_not_ready(&self, reason: impl Into<String>) {
        *self.lock() = Err(reason.into());
    }

    /// `Ok` when ready, otherwise why not.
    pub fn readiness(&self) -> Result<(), String> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Result<(), String>> {
        // The value is replaced whole, so a panicking writer cannot leave it half written.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Runs `check` until it passes, `every` apart, with `health` not ready for the reason the last
/// attempt gave; then marks `health` ready.
pub async fn ready_when<F, Fut>(health: &Health, every: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match check().await {
            Ok(()) => {
                health.set_ready();
                return;
            }
            Err(reason) => health.set_not_ready(reason),
        }
    }
}

/// The two routes.
pub fn router(health: Health) -> Router {
    Router::new()
        .route(LIVE_PATH, get(|| async { "ok" }))
        .route(READY_PATH, get(ready))
        .route(METRICS_PATH, get(|| async { crate::metrics::render() }))
        .with_state(health)
}

async fn ready(State(health): State<Health>) -> (StatusCode, String) {
    match health.readiness() {
        Ok(()) => (StatusCode::OK, "ok".to_owned()),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            // One line, whatever the reason holds.
            reason.split_whitespace().collect::<Vec<_>>().join(" "),
        ),
    }
}

/// Serves [`router`] on `listener` until `shutdown` completes; the listener is closed then.
pub async fn serve(listener: TcpListener, health: Health, shutdown: impl Future<Output = ()>) {
    serve_router(listener, router(health), shutdown).await;
}

/// Serves any `app` on `listener` with the bounds of this module ([`MAX_CONNECTIONS`] at once,
/// one request per connection, [`CONNECTION_TIMEOUT`] each) until `shutdown` completes. The
/// metrics exporters of the pool and target pods use it too.
pub async fn serve_router(listener: TcpListener, app: Router, shutdown: impl Future<Output = ()>) {
    serve_bounded(listener, app, Bounds::default(), shutdown).await;
}

/// How many connections [`serve_bounded`] serves at once and how long each may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// Connections served at once; further ones wait in the listen backlog.
    pub max_connections: usize,
    /// The longest one connection (reading the request, answering) may take.
    pub connection_timeout: Duration,
}

impl Default for Bounds {
    fn default() -> Self {
        Self {
            max_connections: MAX_CONNECTIONS,
            connection_timeout: CONNECTION_TIMEOUT,
        }
    }
}

/// [`serve_router`] with other [`Bounds`] (one request per connection, the request head read
/// within [`CONNECTION_TIMEOUT`]).
pub async fn serve_bounded(
    listener: TcpListener,
    app: Router,
    bounds: Bounds,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(bounds.max_connections.max(1)));
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            () = &mut shutdown => return,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => return, // never closed
            },
        };
        let accepted = tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "HTTP server: accepting a connection failed");
                tokio::select! {
                    () = &mut shutdown => return,
                    () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => continue,
                }
            }
        };
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(CONNECTION_TIMEOUT)
                .keep_alive(false)
                .serve_connection(TokioIo::new(tcp), service);
            match tokio::time::timeout(bounds.connection_timeout, conn).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "HTTP connection failed"),
                Err(_) => tracing::debug!(%peer, "HTTP connection timed out"),
            }
        });
    }
}

/// Binds `addr` and serves `health` there in a task until `shutdown` completes. Returns the
/// bound address; `None` (and nothing started) when `addr` is disabled.
pub async fn start(
    addr: HealthAddr,
    health: Health,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Option<SocketAddr>, String> {
    let Some(addr) = addr.get() else {
        return Ok(None);
    };
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr} (--health-addr): {e}"))?;
    let bound = listener.local_addr().unwrap_or(addr);
    tracing::info!(addr = %bound, "serving {LIVE_PATH} and {READY_PATH}");
    tokio::spawn(serve(listener, health, shutdown));
    Ok(Some(bound))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse() {
        assert_eq!("".parse::<HealthAddr>(), Ok(HealthAddr::disabled()));
        assert_eq!(
            ":9501".parse::<HealthAddr>().map(|a| a.get()),
            Ok(Some("0.0.0.0:9501".parse().unwrap()))
        );
        assert_eq!(
            "127.0.0.1:1".parse::<HealthAddr>().map(|a| a.get()),
            Ok(Some("127.0.0.1:1".parse().unwrap()))
        );
        for bad in ["9501", "host", ":x", "1.2.3.4:70000"] {
            assert!(bad.parse::<HealthAddr>().is_err(), "{bad}");
        }
        for d in [
            defaults::CSPC_OPERATOR,
            defaults::CVC_OPERATOR,
            defaults::POOL_MANAGER,
            defaults::VOLUME_MANAGER,
            defaults::WEBHOOK,
            defaults::CSI_CONTROLLER,
            defaults::CSI_NODE,
        ] {
            assert_eq!(d.parse::<HealthAddr>().unwrap().to_string(), d);
        }
        for (d, port) in [
            (defaults::POOL_MANAGER, ports::POOL_MANAGER),
            (defaults::VOLUME_MANAGER, ports::VOLUME_MANAGER),
        ] {
            assert_eq!(d.parse::<HealthAddr>().unwrap().get().unwrap().port(), port);
        }
    }

    #[test]
    fn readiness_is_shared_by_clones() {
        let h = Health::new("starting");
        let other = h.clone();
        assert_eq!(other.readiness(), Err("starting".to_owned()));
        h.set_ready();
        assert_eq!(other.readiness(), Ok(()));
        h.set_not_ready("gone");
        assert_eq!(other.readiness(), Err("gone".to_owned()));
    }
}
