//! One error enum per RPC family, each with one exhaustive `From<E> for tonic::Status` that
//! picks the CSI error code and logs the error (warnings for caller mistakes and retryable
//! conflicts, errors for failures on our side).

use tonic::{Code, Status};

use crate::{
    capability::CapabilityError, guard::Busy, params::ParamError, quantity::SizeError,
    target::TargetError,
};

/// A Kubernetes API call that failed, with what we were doing.
#[derive(Debug, thiserror::Error)]
#[error("{action}: {source}")]
pub struct KubeError {
    /// What the call was for, e.g. "reading CStorVolumeConfig openebs/pvc-1".
    pub action: String,
    /// The client error.
    #[source]
    pub source: kube::Error,
}

impl KubeError {
    /// Wraps `source` with a description of the call.
    pub fn new(action: impl Into<String>, source: kube::Error) -> Self {
        Self {
            action: action.into(),
            source,
        }
    }

    /// `UNAVAILABLE` when the API server is unreachable, overloaded or failing (the CO
    /// retries), `ABORTED` on a write conflict, `INTERNAL` otherwise.
    pub fn code(&self) -> Code {
        match &self.source {
            kube::Error::Api(s) if s.code == 429 || s.code >= 500 => Code::Unavailable,
            kube::Error::Api(s) if s.code == 409 => Code::Aborted,
            kube::Error::Api(_) => Code::Internal,
            kube::Error::HyperError(_) | kube::Error::Service(_) => Code::Unavailable,
            _ => Code::Internal,
        }
    }
}

/// Builds the status and logs the error.
fn status(code: Code, rpc: &str, message: String) -> Status {
    match code {
        Code::Internal | Code::Unavailable | Code::Unknown => {
            tracing::error!(rpc, ?code, "{message}")
        }
        _ => tracing::warn!(rpc, ?code, "{message}"),
    }
    Status::new(code, message)
}

/// Failures of CreateVolume.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// The volume name is missing or unusable as a Kubernetes name.
    #[error("volume name {name:?} {reason}")]
    Name {
        /// The name (truncated to 64 characters).
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// StorageClass parameters.
    #[error(transparent)]
    Params(#[from] ParamError),
    /// Volume capabilities.
    #[error(transparent)]
    Capability(#[from] CapabilityError),
    /// Capacity range.
    #[error(transparent)]
    Size(#[from] SizeError),
    /// A malformed content source.
    #[error("volume_content_source: {0}")]
    InvalidSource(String),
    /// The content source does not exist.
    #[error("volume_content_source: {0}")]
    SourceNotFound(String),
    /// The request is smaller than the content source.
    #[error("volume_content_source: {0}")]
    SourceTooLarge(String),
    /// The source volume cannot be cloned yet.
    #[error("volume_content_source: {0}")]
    SourceNotReady(String),
    /// A volume of that name exists with incompatible properties.
    #[error(
        "volume {volume} already exists with a different {what}; use another name or delete the existing volume"
    )]
    Exists {
        /// The volume.
        volume: String,
        /// What differs.
        what: String,
    },
    /// A volume of that name is still being deleted.
    #[error("volume {0} is being deleted; retry once it is gone")]
    Deleting(String),
    /// Another operation holds the volume.
    #[error(transparent)]
    Busy(#[from] Busy),
    /// Reading or taking the source's snapshot failed (restore, clone).
    #[error("snapshot of source volume {source_volume}: {error}")]
    SourceSnapshot {
        /// Source volume.
        source_volume: String,
        /// The snapshot failure.
        #[source]
        error: Box<SnapshotError>,
    },
    /// Kubernetes API.
    #[error(transparent)]
    Kube(#[from] KubeError),
}

impl From<CreateError> for Status {
    fn from(e: CreateError) -> Status {
        let code = match &e {
            CreateError::Name { .. }
            | CreateError::Params(_)
            | CreateError::Capability(_)
            | CreateError::InvalidSource(_) => Code::InvalidArgument,
            CreateError::Size(s) if s.is_invalid_argument() => Code::InvalidArgument,
            CreateError::Size(_) | CreateError::SourceTooLarge(_) => Code::OutOfRange,
            CreateError::SourceNotFound(_) => Code::NotFound,
            CreateError::SourceNotReady(_) => Code::Unavailable,
            CreateError::Exists { .. } => Code::AlreadyExists,
            CreateError::Deleting(_) | CreateError::Busy(_) => Code::Aborted,
            CreateError::SourceSnapshot { error, .. } => error.code(),
            CreateError::Kube(k) => k.code(),
        };
        status(code, "CreateVolume", e.to_string())
    }
}

/// Failures of DeleteVolume.
#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    /// `volume_id` is empty.
    #[error("volume_id is missing")]
    MissingId,
    /// The volume is staged on nodes.
    #[error(
        "volume {volume} is still staged on node(s) {nodes} (CStorVolumeAttachment present); \
         it must be unstaged (NodeUnstageVolume) before it can be deleted"
    )]
    Staged {
        /// The volume.
        volume: String,
        /// Comma-separated node names.
        nodes: String,
    },
    /// Volumes restored or cloned from this one's snapshots still exist.
    #[error(
        "volume {volume} has snapshots that other volumes depend on: {dependents}; \
         delete those volumes before this one"
    )]
    Dependents {
        /// The volume.
        volume: String,
        /// Description of the dependent volumes.
        dependents: String,
    },
    /// Another operation holds the volume.
    #[error(transparent)]
    Busy(#[from] Busy),
    /// Kubernetes API.
    #[error(transparent)]
    Kube(#[from] KubeError),
}

impl From<DeleteError> for Status {
    fn from(e: DeleteError) -> Status {
        let code = match &e {
            DeleteError::MissingId => Code::InvalidArgument,
            DeleteError::Staged { .. } | DeleteError::Dependents { .. } => Code::FailedPrecondition,
            DeleteError::Busy(_) => Code::Aborted,
            DeleteError::Kube(k) => k.code(),
        };
        status(code, "DeleteVolume", e.to_string())
    }
}

/// Failures of ControllerExpandVolume.
#[derive(Debug, thiserror::Error)]
pub enum ExpandError {
    /// `volume_id` is empty.
    #[error("volume_id is missing")]
    MissingId,
    /// Capacity range.
    #[error(transparent)]
    Size(#[from] SizeError),
    /// The capability is malformed or unsupported.
    #[error(transparent)]
    Capability(#[from] CapabilityError),
    /// No such volume.
    #[error("volume {0} not found")]
    NotFound(String),
    /// The volume is being deleted.
    #[error("volume {0} is being deleted and cannot be expanded")]
    Deleting(String),
    /// Another operation holds the volume.
    #[error(transparent)]
    Busy(#[from] Busy),
    /// Kubernetes API.
    #[error(transparent)]
    Kube(#[from] KubeError),
}

impl From<ExpandError> for Status {
    fn from(e: ExpandError) -> Status {
        let code = match &e {
            ExpandError::MissingId | ExpandError::Capability(_) => Code::InvalidArgument,
            ExpandError::Size(s) if s.is_invalid_argument() => Code::InvalidArgument,
            ExpandError::Size(_) => Code::OutOfRange,
            ExpandError::NotFound(_) => Code::NotFound,
            ExpandError::Deleting(_) => Code::FailedPrecondition,
            ExpandError::Busy(_) => Code::Aborted,
            ExpandError::Kube(k) => k.code(),
        };
        status(code, "ControllerExpandVolume", e.to_string())
    }
}

/// Failures of CreateSnapshot, DeleteSnapshot, ListSnapshots and GetSnapshot.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// A required field is empty.
    #[error("{0} is missing")]
    Missing(&'static str),
    /// The snapshot name is unusable.
    #[error("snapshot name {name:?} {reason}")]
    InvalidName {
        /// The name (truncated to 64 characters).
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// `max_entries` is negative.
    #[error("max_entries is {0}; it must be zero (no limit) or positive")]
    MaxEntries(i32),
    /// A `starting_token` we did not hand out.
    #[error("starting_token {0:?} was not returned by ListSnapshots; start again without a token")]
    Token(String),
    /// The source volume does not exist.
    #[error("source volume {0} not found")]
    SourceNotFound(String),
    /// The snapshot does not exist (GetSnapshot).
    #[error("snapshot {0} not found")]
    NotFound(String),
    /// The source volume is being deleted.
    #[error("source volume {0} is being deleted; no snapshot can be taken")]
    SourceDeleting(String),
    /// The name is taken by a snapshot of another volume.
    #[error(
        "a snapshot named {name} already exists for volume {volume} (id {volume}@{name}); snapshot names must be unique"
    )]
    AlreadyExists {
        /// Snapshot name.
        name: String,
        /// The other volume.
        volume: String,
    },
    /// Volumes were restored or cloned from the snapshot.
    #[error("snapshot {id} is the origin of volume(s) {volumes}; delete them before the snapshot")]
    InUse {
        /// Snapshot id.
        id: String,
        /// Comma-separated volume names.
        volumes: String,
    },
    /// The volume has no reachable target (not bound yet).
    #[error(
        "volume {0} has no target yet (CStorVolume missing or without spec.targetIP); \
         snapshots can be taken once the volume is provisioned"
    )]
    NoTarget(String),
    /// The target's snapshot service failed or refused.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// Our snapshot record on the CVC is unreadable.
    #[error("{0}")]
    Record(String),
    /// Another operation holds the volume.
    #[error(transparent)]
    Busy(#[from] Busy),
    /// Kubernetes API.
    #[error(transparent)]
    Kube(#[from] KubeError),
}

impl SnapshotError {
    /// The CSI code of this error.
    pub fn code(&self) -> Code {
        match self {
            SnapshotError::Missing(_)
            | SnapshotError::InvalidName { .. }
            | SnapshotError::MaxEntries(_) => Code::InvalidArgument,
            SnapshotError::Token(_) | SnapshotError::Busy(_) => Code::Aborted,
            SnapshotError::SourceNotFound(_) | SnapshotError::NotFound(_) => Code::NotFound,
            SnapshotError::SourceDeleting(_) | SnapshotError::InUse { .. } => {
                Code::FailedPrecondition
            }
            SnapshotError::AlreadyExists { .. } => Code::AlreadyExists,
            SnapshotError::NoTarget(_) => Code::Unavailable,
            SnapshotError::Target(t) => t.code(),
            SnapshotError::Record(_) => Code::Internal,
            SnapshotError::Kube(k) => k.code(),
        }
    }
}

impl From<SnapshotError> for Status {
    fn from(e: SnapshotError) -> Status {
        status(e.code(), "Snapshot", e.to_string())
    }
}

/// Failures of ValidateVolumeCapabilities, ControllerGetVolume, ListVolumes and GetCapacity.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// A required field is empty.
    #[error("{0} is missing")]
    Missing(&'static str),
    /// No such volume.
    #[error("volume {0} not found")]
    NotFound(String),
    /// Malformed capabilities.
    #[error(transparent)]
    Capability(#[from] CapabilityError),
    /// Malformed parameters.
    #[error(transparent)]
    Params(#[from] ParamError),
    /// `max_entries` is negative.
    #[error("max_entries is {0}; it must be zero (no limit) or positive")]
    MaxEntries(i32),
    /// A `starting_token` we did not hand out.
    #[error("starting_token {0:?} was not returned by ListVolumes; start again without a token")]
    Token(String),
    /// Kubernetes API.
    #[error(transparent)]
    Kube(#[from] KubeError),
}

impl From<QueryError> for Status {
    fn from(e: QueryError) -> Status {
        let code = match &e {
            QueryError::Missing(_)
            | QueryError::Capability(_)
            | QueryError::Params(_)
            | QueryError::MaxEntries(_) => Code::InvalidArgument,
            QueryError::NotFound(_) => Code::NotFound,
            QueryError::Token(_) => Code::Aborted,
            QueryError::Kube(k) => k.code(),
        };
        status(code, "Query", e.to_string())
    }
}
