//! volume-manager: the `cstor-volume-mgmt` container of a cStor target pod, next to istgt.
//!
//! It runs three parts (see [`run`]):
//! - the [`manager::VolumeManager`] reconcile loop on the pod's CStorVolume: writes
//!   `istgt.conf` ([`istgt_conf`]), drives `REFRESH`/`RESIZE`/`DRF` over istgt's control socket
//!   ([`control`]) and keeps the CV's status true from istgt's `REPLICA` report ([`status`]);
//! - the [`known_replicas`] unix-socket server istgt reports trusted replicas to;
//! - the [`snapshot`] gRPC service (`RunSnapCommand`, TCP :7777) the CSI controller calls.
//!
//! `fake_istgt` (feature `test-support`) is an in-process istgt control socket for tests.

pub mod control;
pub mod exporter;
#[cfg(feature = "test-support")]
pub mod fake_istgt;
pub mod istgt_conf;
pub mod known_replicas;
pub mod manager;
pub mod snapshot;
pub mod status;

use std::{future::Future, net::SocketAddr, path::PathBuf, sync::Arc};

use cstor_api::cstor::CStorVolume;
use kube::{Api, Client, api::PostParams};

pub use control::{ControlClient, ControlError, Reply};
pub use istgt_conf::{ConfOptions, IstgtConf, LunStorage, render};
pub use known_replicas::{KnownReplicaRequest, KnownReplicaServer};
pub use manager::{ManagerConfig, ManagerError, VolumeManager};
pub use snapshot::SnapshotService;
pub use status::{ReplicaReport, parse_replica_payload};

/// How many times a CV update is re-read and retried after a 409 Conflict.
pub const MAX_CONFLICT_RETRIES: usize = 8;

/// Failure of [`update_cv`].
#[derive(Debug)]
pub enum UpdateError<E> {
    /// The API server failed (including a conflict that outlived the retries).
    Api(kube::Error),
    /// The mutation refused the object.
    Refused(E),
}

/// GETs the CV, applies `mutate` (which returns whether it changed anything) and replaces the
/// whole object, retrying on conflicts. Returns the object as stored.
pub async fn update_cv<E, F>(
    api: &Api<CStorVolume>,
    name: &str,
    mut mutate: F,
) -> Result<CStorVolume, UpdateError<E>>
where
    F: FnMut(&mut CStorVolume) -> Result<bool, E>,
{
    let mut attempt = 0;
    loop {
        let mut cv = api.get(name).await.map_err(UpdateError::Api)?;
        if !mutate(&mut cv).map_err(UpdateError::Refused)? {
            return Ok(cv);
        }
        match api.replace(name, &PostParams::default(), &cv).await {
            Ok(stored) => return Ok(stored),
            Err(kube::Error::Api(s)) if s.code == 409 && attempt + 1 < MAX_CONFLICT_RETRIES => {
                attempt += 1
            }
            Err(e) => return Err(UpdateError::Api(e)),
        }
    }
}

/// Everything the `volume-manager` binary needs.
#[derive(Clone, Debug)]
pub struct Settings {
    /// istgt's control socket.
    pub istgt_socket: PathBuf,
    /// The socket istgt reports known replicas to.
    pub known_replica_socket: PathBuf,
    /// `istgt.conf`.
    pub conf_path: PathBuf,
    /// gRPC snapshot service address.
    pub grpc_listen: SocketAddr,
    /// Reconcile loop settings.
    pub manager: ManagerConfig,
}

/// Failure to start the volume manager.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A socket could not be bound.
    #[error("cannot listen on {what}: {source}")]
    Bind {
        /// Which socket.
        what: String,
        /// OS error.
        source: std::io::Error,
    },
    /// The gRPC server failed.
    #[error("snapshot gRPC server failed: {0}")]
    Grpc(#[from] tonic::transport::Error),
    /// The reconcile loop failed.
    #[error(transparent)]
    Manager(#[from] ManagerError),
}

/// Runs the three parts until `shutdown` completes (then the CV is marked Offline).
pub async fn run(
    client: Client,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let unobserved = cstor_api::health::Health::new("not reported");
    run_with_health(client, settings, unobserved, shutdown).await
}

/// [`run`], marking `health` ready once istgt has answered `STATUS`.
pub async fn run_with_health(
    client: Client,
    settings: Settings,
    health: cstor_api::health::Health,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let control = ControlClient::new(&settings.istgt_socket);
    let conf = Arc::new(IstgtConf::new(&settings.conf_path));
    let uds = KnownReplicaServer::bind(&settings.known_replica_socket).map_err(|source| {
        RunError::Bind {
            what: format!(
                "known-replica socket {}",
                settings.known_replica_socket.display()
            ),
            source,
        }
    })?;
    let grpc = snapshot::bind(settings.grpc_listen)
        .await
        .map_err(|source| RunError::Bind {
            what: format!("gRPC address {}", settings.grpc_listen),
            source,
        })?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|v| *v).await;
        }
    };
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let known = KnownReplicaServer::new(client.clone(), &settings.manager.namespace, conf.clone());
    let manager = VolumeManager::new(client, control.clone(), conf, settings.manager.clone())
        .with_health(health);
    let (_, grpc_result, manager_result) = tokio::join!(
        known.serve(uds, stopped()),
        snapshot::serve(grpc, control, stopped()),
        manager.run(stopped()),
    );
    let _ = std::fs::remove_file(&settings.known_replica_socket);
    grpc_result?;
    manager_result?;
    Ok(())
}
