//! Serving the Identity and Node services on a unix socket: the endpoint is parsed
//! (`unix:///path` or `unix://path`), a stale socket left by a previous run is removed (a live
//! one, or any other file, is not), and the socket is created with mode 0600.

use std::{
    os::unix::fs::{FileTypeExt, PermissionsExt},
    path::{Path, PathBuf},
};

use cstor_api::proto::csi::v1::{identity_server::IdentityServer, node_server::NodeServer};
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;

use crate::service::NodeService;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("invalid endpoint {0:?}: use unix:///path/to/csi.sock")]
    Endpoint(String),
    #[error("{path} exists and is not a socket: refusing to remove it; point --endpoint elsewhere")]
    NotASocket { path: String },
    #[error("another process is serving on {path}: stop it first or use another --endpoint")]
    InUse { path: String },
    #[error("cannot {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// The socket path of a `unix://` endpoint. Like upstream, `unix://csi/csi.sock` means
/// `/csi/csi.sock`.
pub fn socket_path(endpoint: &str) -> Result<PathBuf, ServeError> {
    let rest = endpoint
        .strip_prefix("unix://")
        .ok_or_else(|| ServeError::Endpoint(endpoint.to_string()))?;
    if rest.is_empty() || rest == "/" {
        return Err(ServeError::Endpoint(endpoint.to_string()));
    }
    Ok(if rest.starts_with('/') {
        PathBuf::from(rest)
    } else {
        PathBuf::from("/").join(rest)
    })
}

/// Binds the socket with mode 0600, removing only a stale socket.
pub fn bind(path: &Path) -> Result<UnixListener, ServeError> {
    let p = path.display().to_string();
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(ServeError::InUse { path: p });
            }
            tracing::info!(path = %p, "removing stale socket");
            std::fs::remove_file(path).map_err(|source| ServeError::Io {
                what: "remove stale socket",
                path: p.clone(),
                source,
            })?;
        }
        Ok(_) => return Err(ServeError::NotASocket { path: p }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(ServeError::Io {
                what: "inspect",
                path: p,
                source,
            });
        }
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| ServeError::Io {
            what: "create directory",
            path: dir.display().to_string(),
            source,
        })?;
    }
    // The umask decides the mode the socket is created with; nobody but root may connect, not
    // even for the instant between bind and chmod.
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let listener = UnixListener::bind(path);
    nix::sys::stat::umask(old);
    let listener = listener.map_err(|source| ServeError::Io {
        what: "listen on",
        path: p.clone(),
        source,
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|source| {
        ServeError::Io {
            what: "chmod",
            path: p,
            source,
        }
    })?;
    Ok(listener)
}

/// Serves until `shutdown` resolves; the socket file is removed afterwards.
pub async fn serve(
    service: NodeService,
    endpoint: &str,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ServeError> {
    serve_reporting(service, endpoint, shutdown, || {}).await
}

/// [`serve`], calling `listening` once the socket is bound (before the first request).
pub async fn serve_reporting(
    service: NodeService,
    endpoint: &str,
    shutdown: impl std::future::Future<Output = ()>,
    listening: impl FnOnce(),
) -> Result<(), ServeError> {
    let path = socket_path(endpoint)?;
    let listener = bind(&path)?;
    listening();
    tracing::info!(endpoint, "serving CSI Identity and Node");
    let res = tonic::transport::Server::builder()
        .add_service(IdentityServer::new(service.clone()))
        .add_service(NodeServer::new(service))
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await;
    let _ = std::fs::remove_file(&path);
    res.map_err(ServeError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(
            socket_path("unix:///csi/csi.sock").unwrap(),
            PathBuf::from("/csi/csi.sock")
        );
        assert_eq!(
            socket_path("unix://csi/csi.sock").unwrap(),
            PathBuf::from("/csi/csi.sock")
        );
        assert!(socket_path("tcp://127.0.0.1:10000").is_err());
        assert!(socket_path("unix://").is_err());
    }
}
