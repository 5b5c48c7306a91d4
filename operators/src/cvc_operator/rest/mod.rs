//! cvc-operator's REST server for the Velero plugin (`openebs.io/cstor-blockstore`): plain HTTP
//! on `--bind` (port [`PORT`]), two prefix routes, `/latest/backups/` ([`backup`]) and
//! `/latest/restore/` ([`restore`]).
//!
//! Behaviour is upstream's (cstor-operators v3.6.0): request bodies are CStorBackup or
//! CStorRestore objects (JSON, or YAML when the `Content-Type` says so), even on `GET`; errors
//! are the bare message as `text/plain` with status 400, 405 or 500; `POST` backup and `DELETE`
//! answer the JSON empty string `""`. Deliberate differences: a `GET` of a backup that does not
//! exist answers 404 (upstream's handler panics and drops the connection), and only the
//! `cstor.openebs.io/v1` kinds are used (the legacy `openebs.io/v1alpha1` ones are treated as
//! absent, as on every cluster installed from 3.x).
//!
//! Every handler is a few API calls and at most one gRPC call to a target, with no state of its
//! own, so the server runs on every replica of the operator whether or not it holds the leader
//! lease: the Service `cvc-operator-service` selects all of them.

pub mod backup;
pub mod restore;

use std::{
    fmt,
    future::Future,
    net::{IpAddr, SocketAddr},
    str::FromStr,
    sync::Arc,
    time::Duration,
};

use axum::{
    Router,
    body::{Body, to_bytes},
    extract::{Request, State},
    http::{HeaderMap, Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use cstor_api::{
    constants::{label, value},
    health::{self, Bounds},
    proto::snapshot::v1alpha1::{
        VolumeSnapCreateRequest, VolumeSnapDeleteRequest,
        run_snap_command_client::RunSnapCommandClient,
    },
};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::{Api, Client, api::ListParams};
use serde::{Serialize, de::DeserializeOwned};
use tokio::net::TcpListener;

/// The port of the REST server (fixed upstream).
pub const PORT: u16 = 5757;
/// Prefix of the backup routes.
pub const BACKUPS_PATH: &str = "/latest/backups/";
/// Prefix of the restore routes.
pub const RESTORE_PATH: &str = "/latest/restore/";
/// Largest request body read.
pub const MAX_BODY: usize = 1 << 20;
/// Container of a pool pod whose readiness tells whether the pool processes backups.
pub const POOL_MGMT_CONTAINER: &str = "cstor-pool-mgmt";
/// Port of a target's snapshot gRPC service.
pub const SNAPSHOT_PORT: u16 = 7777;
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 16;
/// The longest one request may take: above the plugin's default 60 s client timeout, since a
/// snapshot call may wait for the target that long.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(90);

/// `--bind`: an IP (served on [`PORT`]), `ip:port`, or empty (no REST server).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BindAddr(Option<SocketAddr>);

impl BindAddr {
    /// The address to listen on; `None` when empty.
    pub fn get(&self) -> Option<SocketAddr> {
        self.0
    }
}

impl FromStr for BindAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(Self(None));
        }
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Ok(Self(Some(addr)));
        }
        s.parse::<IpAddr>()
            .map(|ip| Self(Some(SocketAddr::new(ip, PORT))))
            .map_err(|e| format!("{s:?}: {e}; expected an IP address (served on port {PORT})"))
    }
}

impl fmt::Display for BindAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(a) => write!(f, "{a}"),
            None => Ok(()),
        }
    }
}

/// What the handlers need.
#[derive(Clone)]
pub struct Rest {
    /// API client.
    pub client: Client,
    /// OpenEBS namespace: CVs, CVRs, CVCs, CSPIs and pool pods.
    pub namespace: String,
    /// Operator version (`versionDetails` of the CVCs of local restores).
    pub version: String,
    /// Port of the targets' snapshot service ([`SNAPSHOT_PORT`] in production).
    pub snapshot_port: u16,
    /// Deadline of one snapshot call.
    pub snapshot_timeout: Duration,
    /// How often a restore checks its CVC for `Bound`, and how long apart.
    pub bound_tries: u32,
    /// Pause between two checks.
    pub bound_interval: Duration,
}

impl Rest {
    /// Upstream's timings.
    pub fn new(client: Client, namespace: &str, version: &str) -> Self {
        Self {
            client,
            namespace: namespace.to_owned(),
            version: version.to_owned(),
            snapshot_port: SNAPSHOT_PORT,
            snapshot_timeout: Duration::from_secs(70),
            // About 50 s: a clone's CVC is Bound once its target and replicas exist, which
            // takes longer than upstream's 10 s on a busy cluster; the plugin's request
            // timeout (`restApiTimeout`) is 60 s by default.
            bound_tries: 25,
            bound_interval: Duration::from_secs(2),
        }
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }
}

/// An error answer: status and bare text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    /// Status code.
    pub status: StatusCode,
    /// Body.
    pub message: String,
}

impl HttpError {
    /// 400.
    pub fn bad(message: impl Into<String>) -> Self {
        Self::with(StatusCode::BAD_REQUEST, message)
    }

    /// 500.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::with(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// Any status.
    pub fn with(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    fn method() -> Self {
        Self::with(StatusCode::METHOD_NOT_ALLOWED, "Invalid http method")
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        text(self.status, self.message)
    }
}

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

/// A handler's value as JSON (`?pretty`: indented, with a trailing newline).
fn json_value<T: Serialize>(value: &T, pretty: bool) -> Response {
    let body = if pretty {
        serde_json::to_string_pretty(value).map(|s| s + "\n")
    } else {
        serde_json::to_string(value)
    };
    match body {
        Ok(b) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            b,
        )
            .into_response(),
        Err(e) => HttpError::internal(e.to_string()).into_response(),
    }
}

/// What a `GET` handler writes itself: JSON without a declared type (Go sniffs plain text).
fn json_written<T: Serialize>(value: &T) -> Result<Response, HttpError> {
    let body = serde_json::to_string(value)
        .map_err(|_| HttpError::bad("Failed to encode response data"))?;
    Ok(text(StatusCode::OK, body))
}

/// `?pretty` with any value but `0`.
fn pretty(query: Option<&str>) -> bool {
    query_pairs(query).any(|(k, v)| k == "pretty" && v != "0")
}

/// The decoded `k=v` pairs of a query string.
fn query_pairs(query: Option<&str>) -> impl Iterator<Item = (String, String)> + '_ {
    query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Decodes a request body: YAML when the `Content-Type` mentions yaml, else JSON. A failure is
/// a 500 with the decoder's text.
fn decode<T: DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Result<T, HttpError> {
    let yaml = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("yaml"));
    if yaml {
        serde_yaml::from_slice(body).map_err(|e| HttpError::internal(e.to_string()))
    } else {
        serde_json::from_slice(body).map_err(|e| HttpError::internal(e.to_string()))
    }
}

/// The router: everything goes through [`dispatch`], which reproduces Go's prefix mux.
pub fn router(rest: Arc<Rest>) -> Router {
    Router::new().fallback(dispatch).with_state(rest)
}

async fn dispatch(State(rest): State<Arc<Rest>>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().map(str::to_owned);
    if let Some(unslashed) = ["/latest/backups", "/latest/restore"]
        .into_iter()
        .find(|p| path == *p)
    {
        let location = match &query {
            Some(q) => format!("{unslashed}/?{q}"),
            None => format!("{unslashed}/"),
        };
        return (
            StatusCode::MOVED_PERMANENTLY,
            [(header::LOCATION, location)],
            "",
        )
            .into_response();
    }
    let is_backup = path.starts_with(BACKUPS_PATH);
    if !is_backup && !path.starts_with(RESTORE_PATH) {
        return text(StatusCode::NOT_FOUND, "404 page not found\n".to_owned());
    }
    let (parts, body) = req.into_parts();
    let body = match read_body(body).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let call = Call {
        method: parts.method,
        path,
        query,
        headers: parts.headers,
        body,
    };
    let result = if is_backup {
        backup::handle(&rest, &call).await
    } else {
        restore::handle(&rest, &call).await
    };
    result.unwrap_or_else(|e| {
        tracing::info!(method = %call.method, path = %call.path, status = %e.status, error = %e.message, "REST request failed");
        e.into_response()
    })
}

async fn read_body(body: Body) -> Result<Vec<u8>, HttpError> {
    to_bytes(body, MAX_BODY)
        .await
        .map(|b| b.to_vec())
        .map_err(|e| HttpError::internal(e.to_string()))
}

/// One request, read whole.
#[derive(Debug)]
pub struct Call {
    /// Method.
    pub method: Method,
    /// Path.
    pub path: String,
    /// Raw query.
    pub query: Option<String>,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Vec<u8>,
}

impl Call {
    fn decode<T: DeserializeOwned>(&self) -> Result<T, HttpError> {
        decode(&self.headers, &self.body)
    }

    fn pretty(&self) -> bool {
        pretty(self.query.as_deref())
    }

    fn query(&self, key: &str) -> String {
        query_pairs(self.query.as_deref())
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
            .unwrap_or_default()
    }
}

/// Serves the REST API on `listener` until `shutdown` completes.
pub async fn serve(listener: TcpListener, rest: Arc<Rest>, shutdown: impl Future<Output = ()>) {
    let bounds = Bounds {
        max_connections: MAX_CONNECTIONS,
        connection_timeout: REQUEST_TIMEOUT,
    };
    health::serve_bounded(listener, router(rest), bounds, shutdown).await;
}

/// Binds `addr` and serves the REST API there in a task until `shutdown` completes. Returns
/// the bound address.
pub async fn start(
    addr: SocketAddr,
    rest: Arc<Rest>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<SocketAddr, String> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr} (--bind): {e}"))?;
    let bound = listener.local_addr().unwrap_or(addr);
    tracing::info!(addr = %bound, "serving the backup/restore REST API");
    tokio::spawn(serve(listener, rest, shutdown));
    Ok(bound)
}

/// Whether the pool of CSPI `cspi` cannot process a transfer: not exactly one pool pod, a pod
/// without node, a node not Ready (or unreadable), or its `cstor-pool-mgmt` container not ready.
pub async fn pool_down(rest: &Rest, cspi: &str) -> bool {
    let selector = format!(
        "{}={},{}={cspi}",
        label::APP,
        value::APP_CSTOR_POOL,
        label::CSTOR_POOL_INSTANCE
    );
    let pods = match rest
        .api::<Pod>()
        .list(&ListParams::default().labels(&selector))
        .await
    {
        Ok(l) if l.items.len() == 1 => l.items,
        _ => return true,
    };
    let pod = &pods[0];
    let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
        return true;
    };
    let node_ready = match Api::<Node>::all(rest.client.clone()).get(&node).await {
        Ok(n) => n
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True"),
        Err(_) => false,
    };
    let mgmt_ready = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.name == POOL_MGMT_CONTAINER && c.ready));
    !(node_ready && mgmt_ready)
}

/// Which snapshot command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapCommand {
    /// `RunVolumeSnapCreateCommand`.
    Create,
    /// `RunVolumeSnapDeleteCommand`.
    Delete,
}

/// Runs `command` for `volume@snap` on the volume's target (`<CV spec.targetIP>:7777`). A reply
/// containing `ERR` is a failure.
pub async fn snapshot(
    rest: &Rest,
    volume: &str,
    snap: &str,
    command: SnapCommand,
) -> Result<(), String> {
    use cstor_api::cstor::CStorVolume;
    let cv = rest
        .api::<CStorVolume>()
        .get(volume)
        .await
        .map_err(|e| format!("failed to get cstorvolume {volume}: {e}"))?;
    let ip = cv
        .spec
        .target_ip
        .filter(|ip| !ip.is_empty())
        .ok_or_else(|| format!("cstorvolume {volume} has no target IP"))?;
    let address = SocketAddr::new(
        ip.parse::<IpAddr>()
            .map_err(|e| format!("target IP {ip:?} of {volume}: {e}"))?,
        rest.snapshot_port,
    );
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .map_err(|e| e.to_string())?
        .connect_timeout(rest.snapshot_timeout)
        .timeout(rest.snapshot_timeout)
        .connect()
        .await
        .map_err(|e| format!("cannot reach the target of {volume} at {address}: {e}"))?;
    let mut client = RunSnapCommandClient::new(channel);
    let (volume, snapname) = (volume.to_owned(), snap.to_owned());
    let status = match command {
        SnapCommand::Create => client
            .run_volume_snap_create_command(VolumeSnapCreateRequest {
                version: 1,
                volume,
                snapname,
            })
            .await
            .map(|r| r.into_inner().status),
        SnapCommand::Delete => client
            .run_volume_snap_delete_command(VolumeSnapDeleteRequest {
                version: 1,
                volume,
                snapname,
            })
            .await
            .map(|r| r.into_inner().status),
    }
    .map_err(|e| format!("snapshot command failed: {}", e.message()))?;
    let reply = String::from_utf8_lossy(&status).into_owned();
    if reply.contains("ERR") {
        return Err(format!("target answered {reply}"));
    }
    Ok(())
}

/// Whether a CSPI version (suffix after `-` dropped) is usable: empty, `dev`, or `x.y.z`.
pub fn check_pool_version(version: &str) -> Result<(), String> {
    if version.is_empty() || version.contains("dev") {
        return Ok(());
    }
    let base = version.split('-').next().unwrap_or_default();
    let parts: Vec<_> = base.trim_start_matches('v').split('.').collect();
    if parts.is_empty() || parts.len() > 3 || parts.iter().any(|p| p.parse::<u64>().is_err()) {
        return Err(format!("invalid version {version:?}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_addresses() {
        assert_eq!("".parse::<BindAddr>().unwrap().get(), None);
        assert_eq!(
            "10.0.0.1".parse::<BindAddr>().unwrap().get(),
            Some("10.0.0.1:5757".parse().unwrap())
        );
        assert_eq!(
            "127.0.0.1:0".parse::<BindAddr>().unwrap().get(),
            Some("127.0.0.1:0".parse().unwrap())
        );
        assert_eq!(
            "fd00::1".parse::<BindAddr>().unwrap().get(),
            Some("[fd00::1]:5757".parse().unwrap())
        );
        assert!("host".parse::<BindAddr>().is_err());
    }

    #[test]
    fn queries_and_versions() {
        let q = Some("volume=pv%2D1&namespace=a+b&pretty");
        let pairs: Vec<_> = query_pairs(q).collect();
        assert_eq!(pairs[0], ("volume".into(), "pv-1".into()));
        assert_eq!(pairs[1], ("namespace".into(), "a b".into()));
        assert!(pretty(q));
        assert!(!pretty(Some("pretty=0")));
        assert!(check_pool_version("3.6.0").is_ok());
        assert!(check_pool_version("").is_ok());
        assert!(check_pool_version("dev-abc").is_ok());
        assert!(check_pool_version("2.2.0-RC1").is_ok());
        assert!(check_pool_version("x.y").is_err());
    }
}
