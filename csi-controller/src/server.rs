//! The controller's shared state ([`ControllerService`]), its configuration, the tonic glue
//! ([`ControllerGrpc`]) and serving on the CSI endpoint (a unix socket, or TCP).

use std::{
    future::Future,
    net::SocketAddr,
    os::unix::fs::{FileTypeExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use cstor_api::{
    constants::{csi::DRIVER_NAME, engine::SNAPSHOT_GRPC_PORT},
    cstor::{
        CStorPoolInstance, CStorVolume, CStorVolumeAttachment, CStorVolumeConfig,
        CStorVolumeReplica,
    },
    proto::csi::v1::{
        self as csi,
        controller_server::{Controller, ControllerServer},
        controller_service_capability::{self, rpc::Type as Rpc},
        identity_server::IdentityServer,
    },
};
use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim};
use kube::{Api, Client};
use tokio::net::{TcpListener, UnixListener};
use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};
use tonic::{Request, Response, Status};

use crate::{guard::VolumeGuard, identity::IdentityGrpc, target::TargetClient};

/// What CreateVolume returns as the volume's `accessible_topology`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TopologyMode {
    /// Nothing (the default, and upstream's behaviour): an iSCSI volume is reachable from
    /// every node, so the PV gets no node affinity and survives node replacement.
    None,
    /// The zones (`topology.kubernetes.io/zone`) of the request's requisite topologies (its
    /// preferred ones when it has no requisite): the PV is pinned to zones, never to nodes.
    Zone,
    /// The request's requisite topologies as given (node-level when the CO asks per node).
    Requisite,
}

/// Controller settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// CSI driver name (`cstor.csi.openebs.io`).
    pub driver_name: String,
    /// `GetPluginInfo.vendor_version`.
    pub vendor_version: String,
    /// Namespace of every CVC / CV / CVR / CVA / CSPI (`OPENEBS_NAMESPACE`).
    pub namespace: String,
    /// Port of the targets' snapshot service (7777).
    pub snapshot_port: u16,
    /// Deadline of one snapshot command.
    pub snapshot_timeout: Duration,
    /// Host to dial for snapshot commands instead of each CStorVolume's `spec.targetIP`
    /// (for a controller run outside the cluster behind a forwarder); `None` in production.
    pub snapshot_host: Option<String>,
    /// What CreateVolume reports as accessible topology.
    pub topology: TopologyMode,
}

impl Config {
    /// Production defaults for `namespace`.
    pub fn new(namespace: impl Into<String>) -> Self {
        Config {
            driver_name: DRIVER_NAME.to_owned(),
            vendor_version: env!("CARGO_PKG_VERSION").to_owned(),
            namespace: namespace.into(),
            snapshot_port: SNAPSHOT_GRPC_PORT,
            snapshot_timeout: Duration::from_secs(90),
            snapshot_host: None,
            topology: TopologyMode::None,
        }
    }
}

struct Inner {
    client: Client,
    config: Config,
    guard: VolumeGuard,
    target: TargetClient,
}

/// The CSI controller: every RPC as a method with a typed error (the gRPC layer converts the
/// errors to statuses). Cheap to clone.
#[derive(Clone)]
pub struct ControllerService {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ControllerService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControllerService")
            .field("config", &self.inner.config)
            .finish()
    }
}

impl ControllerService {
    /// A controller talking to the cluster through `client`.
    pub fn new(client: Client, config: Config) -> Self {
        let target = TargetClient {
            port: config.snapshot_port,
            timeout: config.snapshot_timeout,
            host: config.snapshot_host.clone(),
        };
        ControllerService {
            inner: Arc::new(Inner {
                client,
                config,
                guard: VolumeGuard::new(),
                target,
            }),
        }
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The per-volume guard.
    pub fn guard(&self) -> &VolumeGuard {
        &self.inner.guard
    }

    pub(crate) fn target(&self) -> &TargetClient {
        &self.inner.target
    }

    pub(crate) fn ns(&self) -> &str {
        &self.inner.config.namespace
    }

    pub(crate) fn kube_client(&self) -> kube::Client {
        self.inner.client.clone()
    }

    pub(crate) fn cvcs(&self) -> Api<CStorVolumeConfig> {
        Api::namespaced(self.inner.client.clone(), self.ns())
    }

    pub(crate) fn cvs(&self) -> Api<CStorVolume> {
        Api::namespaced(self.inner.client.clone(), self.ns())
    }

    pub(crate) fn cvrs(&self) -> Api<CStorVolumeReplica> {
        Api::namespaced(self.inner.client.clone(), self.ns())
    }

    pub(crate) fn cvas(&self) -> Api<CStorVolumeAttachment> {
        Api::namespaced(self.inner.client.clone(), self.ns())
    }

    pub(crate) fn cspis(&self) -> Api<CStorPoolInstance> {
        Api::namespaced(self.inner.client.clone(), self.ns())
    }

    pub(crate) fn nodes(&self) -> Api<Node> {
        Api::all(self.inner.client.clone())
    }

    pub(crate) fn pvcs(&self, namespace: &str) -> Api<PersistentVolumeClaim> {
        Api::namespaced(self.inner.client.clone(), namespace)
    }

    /// The controller RPCs this service implements, as advertised by
    /// ControllerGetCapabilities.
    pub fn capabilities() -> Vec<Rpc> {
        vec![
            Rpc::CreateDeleteVolume,
            Rpc::CreateDeleteSnapshot,
            Rpc::ListSnapshots,
            Rpc::GetSnapshot,
            Rpc::CloneVolume,
            Rpc::ExpandVolume,
            Rpc::ListVolumes,
            Rpc::GetCapacity,
            Rpc::GetVolume,
            Rpc::VolumeCondition,
            Rpc::SingleNodeMultiWriter,
        ]
    }
}

/// tonic adapter of [`ControllerService`]: logs each call and converts the typed errors.
#[derive(Clone, Debug)]
pub struct ControllerGrpc(pub ControllerService);

macro_rules! rpc {
    ($name:literal, $req:ident, $id:expr, $call:expr) => {{
        let $req = $req.into_inner();
        tracing::debug!(rpc = $name, id = %$id, "request");
        let out = $call.await?;
        tracing::debug!(rpc = $name, "success");
        Ok(Response::new(out))
    }};
}

#[tonic::async_trait]
impl Controller for ControllerGrpc {
    async fn create_volume(
        &self,
        r: Request<csi::CreateVolumeRequest>,
    ) -> Result<Response<csi::CreateVolumeResponse>, Status> {
        rpc!("CreateVolume", r, r.name, self.0.create_volume(r))
    }

    async fn delete_volume(
        &self,
        r: Request<csi::DeleteVolumeRequest>,
    ) -> Result<Response<csi::DeleteVolumeResponse>, Status> {
        rpc!("DeleteVolume", r, r.volume_id, self.0.delete_volume(r))
    }

    async fn controller_publish_volume(
        &self,
        _: Request<csi::ControllerPublishVolumeRequest>,
    ) -> Result<Response<csi::ControllerPublishVolumeResponse>, Status> {
        Err(Status::unimplemented(
            "ControllerPublishVolume is not supported: cstor.csi.openebs.io needs no attach step",
        ))
    }

    async fn controller_unpublish_volume(
        &self,
        _: Request<csi::ControllerUnpublishVolumeRequest>,
    ) -> Result<Response<csi::ControllerUnpublishVolumeResponse>, Status> {
        Err(Status::unimplemented(
            "ControllerUnpublishVolume is not supported: cstor.csi.openebs.io needs no attach step",
        ))
    }

    async fn validate_volume_capabilities(
        &self,
        r: Request<csi::ValidateVolumeCapabilitiesRequest>,
    ) -> Result<Response<csi::ValidateVolumeCapabilitiesResponse>, Status> {
        rpc!(
            "ValidateVolumeCapabilities",
            r,
            r.volume_id,
            self.0.validate_volume_capabilities(r)
        )
    }

    async fn list_volumes(
        &self,
        r: Request<csi::ListVolumesRequest>,
    ) -> Result<Response<csi::ListVolumesResponse>, Status> {
        rpc!("ListVolumes", r, r.starting_token, self.0.list_volumes(r))
    }

    async fn get_capacity(
        &self,
        r: Request<csi::GetCapacityRequest>,
    ) -> Result<Response<csi::GetCapacityResponse>, Status> {
        rpc!("GetCapacity", r, "", self.0.get_capacity(r))
    }

    async fn controller_get_capabilities(
        &self,
        _: Request<csi::ControllerGetCapabilitiesRequest>,
    ) -> Result<Response<csi::ControllerGetCapabilitiesResponse>, Status> {
        let capabilities = ControllerService::capabilities()
            .into_iter()
            .map(|t| csi::ControllerServiceCapability {
                r#type: Some(controller_service_capability::Type::Rpc(
                    controller_service_capability::Rpc { r#type: t as i32 },
                )),
            })
            .collect();
        Ok(Response::new(csi::ControllerGetCapabilitiesResponse {
            capabilities,
        }))
    }

    async fn create_snapshot(
        &self,
        r: Request<csi::CreateSnapshotRequest>,
    ) -> Result<Response<csi::CreateSnapshotResponse>, Status> {
        rpc!("CreateSnapshot", r, r.name, self.0.create_snapshot(r))
    }

    async fn delete_snapshot(
        &self,
        r: Request<csi::DeleteSnapshotRequest>,
    ) -> Result<Response<csi::DeleteSnapshotResponse>, Status> {
        rpc!(
            "DeleteSnapshot",
            r,
            r.snapshot_id,
            self.0.delete_snapshot(r)
        )
    }

    async fn list_snapshots(
        &self,
        r: Request<csi::ListSnapshotsRequest>,
    ) -> Result<Response<csi::ListSnapshotsResponse>, Status> {
        rpc!("ListSnapshots", r, r.snapshot_id, self.0.list_snapshots(r))
    }

    async fn get_snapshot(
        &self,
        r: Request<csi::GetSnapshotRequest>,
    ) -> Result<Response<csi::GetSnapshotResponse>, Status> {
        rpc!("GetSnapshot", r, r.snapshot_id, self.0.get_snapshot(r))
    }

    async fn controller_expand_volume(
        &self,
        r: Request<csi::ControllerExpandVolumeRequest>,
    ) -> Result<Response<csi::ControllerExpandVolumeResponse>, Status> {
        rpc!(
            "ControllerExpandVolume",
            r,
            r.volume_id,
            self.0.expand_volume(r)
        )
    }

    async fn controller_get_volume(
        &self,
        r: Request<csi::ControllerGetVolumeRequest>,
    ) -> Result<Response<csi::ControllerGetVolumeResponse>, Status> {
        rpc!("ControllerGetVolume", r, r.volume_id, self.0.get_volume(r))
    }

    async fn controller_modify_volume(
        &self,
        _: Request<csi::ControllerModifyVolumeRequest>,
    ) -> Result<Response<csi::ControllerModifyVolumeResponse>, Status> {
        Err(Status::unimplemented(
            "ControllerModifyVolume is not supported (MODIFY_VOLUME is not advertised)",
        ))
    }
}

/// Where to serve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CsiEndpoint {
    /// A unix socket path.
    Unix(PathBuf),
    /// A TCP address.
    Tcp(SocketAddr),
}

/// A failure to serve.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The endpoint string is not usable.
    #[error("invalid endpoint {0:?}: use unix:///path/to/csi.sock or tcp://ip:port")]
    Endpoint(String),
    /// Binding failed.
    #[error("cannot listen on {endpoint}: {source}")]
    Bind {
        /// The endpoint.
        endpoint: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The gRPC server failed.
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

impl std::str::FromStr for CsiEndpoint {
    type Err = ServeError;

    /// `unix://<path>` (upstream's form: `unix://csi/csi.sock` means `/csi/csi.sock`,
    /// `unix:///var/lib/csi.sock` means `/var/lib/csi.sock`) or `tcp://<ip>:<port>`.
    fn from_str(s: &str) -> Result<Self, ServeError> {
        if let Some(path) = s.strip_prefix("unix://") {
            let path = path.trim_start_matches('/');
            if path.is_empty() {
                return Err(ServeError::Endpoint(s.to_owned()));
            }
            return Ok(CsiEndpoint::Unix(PathBuf::from(format!("/{path}"))));
        }
        if let Some(addr) = s.strip_prefix("tcp://") {
            return addr
                .parse()
                .map(CsiEndpoint::Tcp)
                .map_err(|_| ServeError::Endpoint(s.to_owned()));
        }
        Err(ServeError::Endpoint(s.to_owned()))
    }
}

/// Binds the unix socket at `path`: creates the parent directory, removes a stale socket
/// (never any other kind of file) and restricts the socket to its owner and group.
pub fn bind_unix(path: &Path) -> Result<UnixListener, ServeError> {
    let bind_err = |source| ServeError::Bind {
        endpoint: path.display().to_string(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(bind_err)?;
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.file_type().is_socket() {
            std::fs::remove_file(path).map_err(bind_err)?;
        } else {
            return Err(bind_err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "a file that is not a socket is in the way; remove it or choose another endpoint",
            )));
        }
    }
    let listener = UnixListener::bind(path).map_err(bind_err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(bind_err)?;
    Ok(listener)
}

fn router(service: &ControllerService, controller: bool) -> tonic::transport::server::Router {
    let identity = IdentityServer::new(IdentityGrpc::new(service.clone(), controller));
    let mut builder = tonic::transport::Server::builder();
    let router = builder.add_service(identity);
    if controller {
        router.add_service(ControllerServer::new(ControllerGrpc(service.clone())))
    } else {
        router
    }
}

/// Serves Identity (and Controller when `controller`) on a bound unix socket until `shutdown`
/// completes.
pub async fn serve_unix(
    listener: UnixListener,
    service: ControllerService,
    controller: bool,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    router(&service, controller)
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await?;
    Ok(())
}

/// Binds `endpoint` and serves until `shutdown` completes.
pub async fn serve(
    endpoint: &CsiEndpoint,
    service: ControllerService,
    controller: bool,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    serve_reporting(endpoint, service, controller, shutdown, || {}).await
}

/// [`serve`], calling `listening` once the endpoint is bound (before the first request).
pub async fn serve_reporting(
    endpoint: &CsiEndpoint,
    service: ControllerService,
    controller: bool,
    shutdown: impl Future<Output = ()>,
    listening: impl FnOnce(),
) -> Result<(), ServeError> {
    match endpoint {
        CsiEndpoint::Unix(path) => {
            let listener = bind_unix(path)?;
            listening();
            tracing::info!(endpoint = %path.display(), controller, "serving CSI");
            serve_unix(listener, service, controller, shutdown).await
        }
        CsiEndpoint::Tcp(addr) => {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| ServeError::Bind {
                    endpoint: addr.to_string(),
                    source,
                })?;
            listening();
            tracing::info!(endpoint = %addr, controller, "serving CSI");
            router(&service, controller)
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
                .await?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_like_upstream() {
        assert_eq!(
            "unix://csi/csi.sock".parse::<CsiEndpoint>().unwrap(),
            CsiEndpoint::Unix("/csi/csi.sock".into())
        );
        assert_eq!(
            "unix:///var/lib/csi/sockets/pluginproxy/csi.sock"
                .parse::<CsiEndpoint>()
                .unwrap(),
            CsiEndpoint::Unix("/var/lib/csi/sockets/pluginproxy/csi.sock".into())
        );
        assert_eq!(
            "tcp://127.0.0.1:10000".parse::<CsiEndpoint>().unwrap(),
            CsiEndpoint::Tcp("127.0.0.1:10000".parse().unwrap())
        );
        for bad in ["/csi.sock", "unix://", "tcp://nohost", "http://x"] {
            assert!(bad.parse::<CsiEndpoint>().is_err(), "{bad}");
        }
    }
}
