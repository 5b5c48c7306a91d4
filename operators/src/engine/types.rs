//! Typed requests and answers of the data-engine seam.

use std::{fmt, path::PathBuf, str::FromStr};

use super::{error::EngineError, units::Size};

/// Where upstream keeps the pool cache file inside the pool-manager container.
pub const DEFAULT_CACHE_FILE: &str = "/var/openebs/cstor-pool/pool.cache";

/// The raid layout of one raid group, as spelled in a CSPC (`dataRaidGroupType`,
/// `writeCacheGroupType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RaidType {
    Stripe,
    Mirror,
    Raidz,
    Raidz2,
}

impl RaidType {
    pub fn as_str(self) -> &'static str {
        match self {
            RaidType::Stripe => "stripe",
            RaidType::Mirror => "mirror",
            RaidType::Raidz => "raidz",
            RaidType::Raidz2 => "raidz2",
        }
    }

    /// The vdev keyword on a `zpool create/add` line; a stripe has none.
    pub fn vdev_keyword(self) -> Option<&'static str> {
        match self {
            RaidType::Stripe => None,
            other => Some(other.as_str()),
        }
    }

    /// The CSPC's name for this raid type, whose disk-count rule applies.
    pub fn group_type(self) -> cstor_api::cstor::RaidGroupType {
        use cstor_api::cstor::RaidGroupType;
        match self {
            RaidType::Stripe => RaidGroupType::Stripe,
            RaidType::Mirror => RaidGroupType::Mirror,
            RaidType::Raidz => RaidGroupType::Raidz,
            RaidType::Raidz2 => RaidGroupType::Raidz2,
        }
    }
}

impl fmt::Display for RaidType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RaidType {
    type Err = EngineError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "stripe" => Ok(RaidType::Stripe),
            "mirror" => Ok(RaidType::Mirror),
            "raidz" => Ok(RaidType::Raidz),
            "raidz2" => Ok(RaidType::Raidz2),
            other => Err(EngineError::invalid(
                "raid group type",
                format!("`{other}` is not one of stripe, mirror, raidz, raidz2"),
            )),
        }
    }
}

/// Whether a raid group holds data or is a write cache (ZFS `log`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VdevClass {
    Data,
    WriteCache,
}

/// One raid group: its layout and its device paths (block device paths or, in tests, files).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RaidGroup {
    pub raid_type: RaidType,
    pub disks: Vec<String>,
}

impl RaidGroup {
    pub fn new<I, S>(raid_type: RaidType, disks: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            raid_type,
            disks: disks.into_iter().map(Into::into).collect(),
        }
    }
}

/// Everything `create_pool` needs (upstream `Create()`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolSpec {
    /// `cstor-<CSPC uid>`.
    pub name: String,
    /// Data raid groups; the first one goes on the `zpool create` line, the others are added.
    pub data_groups: Vec<RaidGroup>,
    /// Write-cache raid groups, added as `log` vdevs.
    pub write_cache_groups: Vec<RaidGroup>,
    /// `poolConfig.compression`; upstream defaults to `lz4` when empty.
    pub compression: Option<String>,
    /// Directory to scan for importable pools before creating (upstream's "devID": the
    /// directory of sparse-file vdevs); `None` for device pools.
    pub dev_dir: Option<PathBuf>,
}

/// `import_pool` request (upstream `Import()`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportRequest {
    /// The name the pool must have once imported.
    pub pool: String,
    /// Annotation `import.cspi.cstor.openebs.io/existing-pool-name`: import this pool and
    /// rename it to `pool`.
    pub existing_name: Option<String>,
    /// `-d <dir>` for sparse-file pools; `None` lets zpool scan `/dev`.
    pub dev_dir: Option<PathBuf>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImportOutcome {
    /// The pool was already imported; nothing ran but the existence check.
    AlreadyImported,
    /// Imported now. `renamed_from` is the existing name when the rename annotation was used
    /// (the caller drops the annotation).
    Imported {
        renamed_from: Option<String>,
        /// Whether the cache-file import worked (else the device scan did).
        from_cache_file: bool,
    },
    /// No pool of that name (or existing name) could be found to import.
    NotFound,
}

/// One entry of the `zpool import` listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportablePool {
    pub name: String,
    pub id: Option<String>,
    /// `ONLINE`, `DEGRADED`, `UNAVAIL (DESTROYED)`, ...
    pub state: Option<String>,
}

/// `zpool get health,io.openebs:readonly`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolHealth {
    /// Raw zpool health (`ONLINE`, `DEGRADED`, `FAULTED`, `OFFLINE`, `UNAVAIL`, `REMOVED`);
    /// upstream writes it as the CSPI phase.
    pub health: String,
    /// `io.openebs:readonly` is `on`.
    pub read_only: bool,
}

/// `zfs get used,logicalused,available <pool>` (values as printed, plus bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolCapacity {
    pub used: Size,
    /// `None` when the zfs build has no `logicalused` property (zfs-fuse).
    pub logical_used: Option<Size>,
    pub available: Size,
}

impl PoolCapacity {
    /// used + available, in bytes, when both are known.
    pub fn total_bytes(&self) -> Option<u64> {
        Some(self.used.bytes?.saturating_add(self.available.bytes?))
    }

    /// used * 100 / (used + available), the read-only threshold input.
    pub fn used_percent(&self) -> Option<u64> {
        let total = self.total_bytes()?;
        if total == 0 {
            return Some(0);
        }
        Some(((self.used.bytes? as u128 * 100) / total as u128) as u64)
    }
}

/// A replica volume (zvol) to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaVolumeSpec {
    pub pool: String,
    /// The PV name; the zvol is `<pool>/<volume>`.
    pub volume: String,
    /// CVR `spec.capacity` (`5Gi`; a trailing `i` is dropped on the command line).
    pub capacity: String,
    /// `quorum=on` for a fresh replica, `off` for a recreated one.
    pub quorum: bool,
    /// `io.openebs:zvol_replica_id`.
    pub replica_id: String,
    /// `io.openebs:volname` (the CVR name).
    pub cvr_name: String,
    /// `io.openebs:zvol_workers`.
    pub zvol_workers: Option<String>,
    /// `io.openebs:targetip`; `None` for a restore volume (`isRestoreVol=true`).
    pub target_ip: Option<String>,
}

impl ReplicaVolumeSpec {
    pub fn dataset(&self) -> String {
        format!("{}/{}", self.pool, self.volume)
    }
}

/// A replica cloned from a snapshot of another volume's replica on the same pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaCloneSpec {
    pub pool: String,
    pub volume: String,
    /// Annotation `openebs.io/source-volume`.
    pub source_volume: String,
    /// Annotation `openebs.io/snapshot`.
    pub snapshot: String,
    pub target_ip: String,
    pub zvol_workers: Option<String>,
    pub replica_id: String,
    pub cvr_name: String,
}

impl ReplicaCloneSpec {
    pub fn dataset(&self) -> String {
        format!("{}/{}", self.pool, self.volume)
    }

    pub fn origin(&self) -> String {
        format!("{}/{}@{}", self.pool, self.source_volume, self.snapshot)
    }
}

/// `zfs get used,logicalreferenced <zvol>` as upstream stores it in CVR `status.capacity`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaCapacity {
    /// `used` (CVR `status.capacity.total`).
    pub total: Size,
    /// `logicalreferenced` (CVR `status.capacity.used`).
    pub used: Size,
}

/// `zfs get -H -p -o value logicalreferenced,used <zvol>@<snap>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotSizes {
    pub logical_referenced: u64,
    pub used: u64,
}
