//! Typed errors of the data-engine seam.

use cstor_api::exec::ExecError;

/// What went wrong talking to the data engine. Every variant names the pool, dataset or
/// command concerned and, where the caller can do something, says what.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The command could not be run at all (spawn failure, deadline, no recorded answer).
    #[error(transparent)]
    Exec(#[from] ExecError),

    /// The command ran and failed for a reason this seam does not classify further.
    #[error("`{command}` exited with {}: {}", code.map_or("a signal".to_string(), |c| format!("code {c}")), message.trim())]
    Failed {
        command: String,
        code: Option<i32>,
        /// stderr, or stdout when stderr was empty.
        message: String,
    },

    #[error(
        "pool `{pool}` does not exist (it is neither imported nor importable by name); import or create it first"
    )]
    PoolNotFound { pool: String },

    #[error("pool `{pool}` already exists; import it instead of creating it")]
    PoolExists { pool: String },

    /// Upstream's safety check before `zpool create`: the name shows up in the import listing.
    #[error(
        "Pool {{{pool}}} is in faulty state.. it is importable but not imported, refusing to create over it: {output}"
    )]
    PoolImportable { pool: String, output: String },

    #[error("pool `{pool}` is busy; retry the command later")]
    PoolBusy { pool: String },

    #[error("dataset `{dataset}` already exists")]
    DatasetExists { dataset: String },

    #[error("dataset `{dataset}` does not exist")]
    DatasetNotFound { dataset: String },

    /// `zpool add` failed for one or more raid groups after the pool itself was created.
    #[error("pool `{pool}` was created but {} raid group(s) could not be added: {}", failures.len(), failures.join("; "))]
    RaidGroupsNotAdded { pool: String, failures: Vec<String> },

    /// The data engine on this host does not implement the command (zfs-fuse has no zvols,
    /// `zpool dump`, `zfs stats`, `zfs listsnap`).
    #[error("`{command}` is not supported by this zfs/zpool build: {detail}")]
    Unsupported { command: String, detail: String },

    /// The command succeeded but its output could not be understood.
    #[error("cannot parse the output of `{command}`: {detail}")]
    Parse { command: String, detail: String },

    /// The request itself is wrong; nothing was run.
    #[error("invalid {field}: {reason}")]
    InvalidRequest { field: String, reason: String },

    /// A local file operation (legacy label clearing) failed.
    #[error("cannot {action} `{path}`: {source}")]
    Io {
        action: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl EngineError {
    /// The exit code of a command that ran and failed.
    pub fn code(&self) -> Option<i32> {
        match self {
            EngineError::Failed { code, .. } => *code,
            EngineError::Exec(e) => e.code(),
            _ => None,
        }
    }

    /// cStor's `zfs listsnap`/`zfs stats` return 11 (EAGAIN) while the replica is busy; retry later.
    pub fn is_try_again(&self) -> bool {
        self.code() == Some(11)
    }

    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        EngineError::InvalidRequest {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn parse(command: impl Into<String>, detail: impl Into<String>) -> Self {
        EngineError::Parse {
            command: command.into(),
            detail: detail.into(),
        }
    }
}
