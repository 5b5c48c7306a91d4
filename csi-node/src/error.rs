//! Errors of the node service and their CSI status codes. Every message names the field or
//! object that is wrong and says what to do; `From<NodeError> for tonic::Status` is the one place
//! codes are chosen.

use tonic::{Code, Status};

use crate::{
    attach::AttachError, fs::FsError, guard::Busy, kube::ApiError, mount_table::MountTableError,
};

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A request field is missing or malformed (INVALID_ARGUMENT).
    #[error("{0}")]
    Invalid(String),
    /// Another operation runs on the volume (ABORTED).
    #[error(transparent)]
    Busy(#[from] Busy),
    /// The volume or path does not exist (NOT_FOUND).
    #[error("{0}")]
    NotFound(String),
    /// The request cannot be served in the current state (FAILED_PRECONDITION).
    #[error("{0}")]
    Precondition(String),
    /// Already published/staged differently (ALREADY_EXISTS).
    #[error("{0}")]
    AlreadyExists(String),
    /// Waiting for something outside this node (CVC bound, replicas, target); retry (UNAVAILABLE).
    #[error("{0}")]
    NotReady(String),
    #[error("{what}: {source}")]
    Fs {
        what: String,
        #[source]
        source: FsError,
    },
    #[error("{what}: {source}")]
    Attach {
        what: String,
        #[source]
        source: AttachError,
    },
    #[error(transparent)]
    MountTable(#[from] MountTableError),
    #[error("{what}: {source}")]
    Api {
        what: String,
        #[source]
        source: ApiError,
    },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl NodeError {
    pub fn fs(what: impl Into<String>) -> impl FnOnce(FsError) -> NodeError {
        let what = what.into();
        move |source| NodeError::Fs { what, source }
    }

    pub fn api(what: impl Into<String>) -> impl FnOnce(ApiError) -> NodeError {
        let what = what.into();
        move |source| NodeError::Api { what, source }
    }

    pub fn attach(what: impl Into<String>) -> impl FnOnce(AttachError) -> NodeError {
        let what = what.into();
        move |source| NodeError::Attach { what, source }
    }

    pub fn io(
        what: &'static str,
        path: &std::path::Path,
    ) -> impl FnOnce(std::io::Error) -> NodeError {
        let path = path.display().to_string();
        move |source| NodeError::Io { what, path, source }
    }

    /// The gRPC code this error is reported with.
    pub fn code(&self) -> Code {
        match self {
            NodeError::Invalid(_) => Code::InvalidArgument,
            NodeError::Busy(_) => Code::Aborted,
            NodeError::NotFound(_) => Code::NotFound,
            NodeError::Precondition(_) => Code::FailedPrecondition,
            NodeError::AlreadyExists(_) => Code::AlreadyExists,
            NodeError::NotReady(_) => Code::Unavailable,
            NodeError::Fs { source, .. } => match source {
                // The device holds data we refuse to touch: a human must act.
                FsError::OtherFilesystem { .. }
                | FsError::Partitioned { .. }
                | FsError::Uncorrectable { .. } => Code::FailedPrecondition,
                _ => Code::Internal,
            },
            NodeError::Attach { .. } => Code::Internal,
            NodeError::MountTable(_) => Code::Internal,
            NodeError::Api { source, .. } => {
                if source.is_transient() {
                    Code::Unavailable
                } else {
                    Code::Internal
                }
            }
            NodeError::Io { .. } => Code::Internal,
        }
    }
}

impl From<NodeError> for Status {
    fn from(e: NodeError) -> Status {
        let code = e.code();
        // The whole chain, so the CO's events carry the cause.
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            let text = s.to_string();
            if !msg.contains(&text) {
                msg.push_str(": ");
                msg.push_str(&text);
            }
            src = s.source();
        }
        tracing::warn!(code = ?code, error = %msg, "request failed");
        Status::new(code, msg)
    }
}

pub type Result<T, E = NodeError> = std::result::Result<T, E>;
