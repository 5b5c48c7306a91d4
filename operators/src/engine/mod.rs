//! The data-engine seam: the pool and replica commands of the cStor data engine
//! (`zpool`/`zfs`, the uZFS builds talking to `zrepl`).
//!
//! The pool-manager and the CVR controller hold an `Arc<dyn DataEngine>`. Production uses
//! [`CstorEngine`], which builds upstream's command lines (exec, no shell) through the shared
//! [`Runner`](cstor_api::exec::Runner) and parses their outputs into the types below.
//!
//! Idempotency follows upstream: destroying a pool, dataset or snapshot that does not exist
//! succeeds; creating one that exists fails with [`EngineError::PoolExists`] /
//! [`EngineError::DatasetExists`] (callers check existence first, as upstream does);
//! creating a pool whose name is importable fails with [`EngineError::PoolImportable`].
//!
//! Older CLIs (zfs-fuse 0.7, used by the tests on this project's machines) lack some cStor
//! commands and options. `CstorEngine` always runs the cStor command first; only when the CLI
//! answers with a usage error naming the missing command/option does it run the documented
//! equivalent (see each method of [`CstorEngine`]). Commands with no equivalent (zvols,
//! `zfs stats`, `zfs listsnap`, pool user properties) return the CLI's error.

mod cstor;
mod error;
mod import;
mod labels;
mod stats;
mod topology;
mod types;
mod units;

use std::{collections::BTreeMap, path::Path};

use async_trait::async_trait;
use cstor_api::exec::Fd;

pub use cstor::CstorEngine;
pub use error::EngineError;
pub use import::parse_import_listing;
pub use stats::{
    ReplicaIo, ReplicaStats, ReplicaStatus, SnapshotList, parse_listsnap, parse_stats,
};
pub use topology::{
    PoolTopology, ResilverProgress, ScanFunc, ScanState, ScanStats, Vdev, VdevState, parse_dump,
    parse_scan_text, parse_status, strip_partition_suffix,
};
pub use types::{
    DEFAULT_CACHE_FILE, ImportOutcome, ImportRequest, ImportablePool, PoolCapacity, PoolHealth,
    PoolSpec, RaidGroup, RaidType, ReplicaCapacity, ReplicaCloneSpec, ReplicaVolumeSpec,
    SnapshotSizes, VdevClass,
};
pub use units::{Size, parse_size};

/// The zvol property naming the target a replica connects to.
pub const TARGET_IP_PROPERTY: &str = "io.openebs:targetip";

/// Pool and replica operations of the data engine, in typed form.
#[async_trait]
pub trait DataEngine: Send + Sync + std::fmt::Debug {
    // ---- pools ----

    /// Whether the pool is imported (upstream's existence check).
    async fn pool_exists(&self, pool: &str) -> Result<bool, EngineError>;

    /// Names of all imported pools.
    async fn list_pools(&self) -> Result<Vec<String>, EngineError>;

    /// Pools that could be imported (`zpool import [-d dir]`).
    async fn importable_pools(
        &self,
        dev_dir: Option<&Path>,
    ) -> Result<Vec<ImportablePool>, EngineError>;

    /// Imports the pool if it is not imported yet: by cache file first, then by device scan;
    /// with `existing_name`, imports that pool under the new name.
    async fn import_pool(&self, req: &ImportRequest) -> Result<ImportOutcome, EngineError>;

    /// Creates the pool from its first data raid group and adds the others (data, then
    /// write cache). Refuses when the name is importable.
    async fn create_pool(&self, spec: &PoolSpec) -> Result<(), EngineError>;

    /// Adds one raid group (`zpool add [log] [<type>] <disks>`), for expansion.
    async fn add_raid_group(
        &self,
        pool: &str,
        class: VdevClass,
        group: &RaidGroup,
    ) -> Result<(), EngineError>;

    /// Starts replacing `old` by `new`; follow the resilver with [`Self::pool_topology`].
    async fn replace_disk(&self, pool: &str, old: &str, new: &str) -> Result<(), EngineError>;

    /// Clears the ZFS labels of a device that no longer belongs to a pool.
    async fn labelclear(&self, device: &str) -> Result<(), EngineError>;

    /// Destroys the pool; a missing pool is success.
    async fn destroy_pool(&self, pool: &str) -> Result<(), EngineError>;

    /// Exports the pool; a missing pool is success.
    async fn export_pool(&self, pool: &str) -> Result<(), EngineError>;

    /// Health and the `io.openebs:readonly` flag.
    async fn pool_health(&self, pool: &str) -> Result<PoolHealth, EngineError>;

    /// Sets or clears `io.openebs:readonly` on the pool.
    async fn set_pool_read_only(&self, pool: &str, read_only: bool) -> Result<(), EngineError>;

    /// used / logicalused / available of the pool's root dataset.
    async fn pool_capacity(&self, pool: &str) -> Result<PoolCapacity, EngineError>;

    /// The vdev tree with states and scan progress.
    async fn pool_topology(&self, pool: &str) -> Result<PoolTopology, EngineError>;

    // ---- datasets and replica volumes ----

    /// Every dataset name (upstream's listing for existence checks and the import record).
    async fn list_datasets(&self) -> Result<Vec<String>, EngineError>;

    /// Provisioned replicas of `pool`: child datasets except `_rebuild_clone` ones.
    async fn provisioned_replicas(&self, pool: &str) -> Result<Vec<String>, EngineError>;

    async fn dataset_exists(&self, dataset: &str) -> Result<bool, EngineError>;

    /// Property values (`None` for an unset user property: `-` on OpenZFS/zfs-fuse, an empty
    /// value on uZFS).
    async fn get_properties(
        &self,
        dataset: &str,
        properties: &[&str],
    ) -> Result<BTreeMap<String, Option<String>>, EngineError>;

    async fn set_property(&self, dataset: &str, key: &str, value: &str) -> Result<(), EngineError>;

    /// The target a replica zvol connects to (`io.openebs:targetip`), `None` when unset.
    async fn target_ip(&self, dataset: &str) -> Result<Option<String>, EngineError> {
        let props = self.get_properties(dataset, &[TARGET_IP_PROPERTY]).await?;
        Ok(props.get(TARGET_IP_PROPERTY).cloned().flatten())
    }

    /// Points a replica zvol at `ip` (empty: at no target). uZFS refuses to change the
    /// property from one address to another (`internal error: Invalid argument`, exit 134), so
    /// a set address is cleared first (`zfs set io.openebs:targetip= <zvol>`) and the new one
    /// set after. Returns whether the zvol changed.
    async fn set_target_ip(&self, dataset: &str, ip: &str) -> Result<bool, EngineError> {
        let current = self.target_ip(dataset).await?;
        if current.as_deref().unwrap_or("") == ip {
            return Ok(false);
        }
        if current.is_some() {
            self.set_property(dataset, TARGET_IP_PROPERTY, "").await?;
        }
        if !ip.is_empty() {
            self.set_property(dataset, TARGET_IP_PROPERTY, ip).await?;
        }
        Ok(true)
    }

    /// Creates a replica zvol with upstream's exact options.
    async fn create_replica(&self, spec: &ReplicaVolumeSpec) -> Result<(), EngineError>;

    /// Creates a replica zvol as a clone of a snapshot of another volume.
    async fn clone_replica(&self, spec: &ReplicaCloneSpec) -> Result<(), EngineError>;

    /// `zfs destroy -R`; a missing dataset is success.
    async fn destroy_dataset(&self, dataset: &str) -> Result<(), EngineError>;

    /// A plain filesystem dataset with properties (restores, tests, zvol stand-ins).
    async fn create_filesystem(
        &self,
        dataset: &str,
        properties: &[(&str, &str)],
    ) -> Result<(), EngineError>;

    /// Clones `snapshot` (`ds@snap`) as `target` with properties.
    async fn clone_dataset(
        &self,
        snapshot: &str,
        target: &str,
        properties: &[(&str, &str)],
    ) -> Result<(), EngineError>;

    async fn create_snapshot(&self, dataset: &str, snapshot: &str) -> Result<(), EngineError>;

    /// Destroys `dataset@snapshot`; a missing one is success; dependent clones are an error.
    async fn destroy_snapshot(&self, dataset: &str, snapshot: &str) -> Result<(), EngineError>;

    /// Writes the stream of `dataset@snapshot` to `out` (`zfs send`); with `previous`, only
    /// the changes since `dataset@previous` (`zfs send -i`). Success is the sender's own exit
    /// status (upstream's `| nc` pipeline reported nc's).
    async fn send_snapshot(
        &self,
        dataset: &str,
        snapshot: &str,
        previous: Option<&str>,
        out: Fd,
    ) -> Result<(), EngineError>;

    /// Receives a stream read from `input` into `dataset`, replacing its contents
    /// (`zfs recv -F`).
    async fn receive(&self, dataset: &str, input: Fd) -> Result<(), EngineError>;

    /// `zfs stats` for one replica, or all with `None`.
    async fn replica_stats(&self, dataset: Option<&str>) -> Result<Vec<ReplicaStats>, EngineError>;

    /// `zfs listsnap`.
    async fn list_snapshots(&self, dataset: &str) -> Result<SnapshotList, EngineError>;

    /// logicalreferenced and used of one snapshot, in bytes.
    async fn snapshot_sizes(
        &self,
        dataset: &str,
        snapshot: &str,
    ) -> Result<SnapshotSizes, EngineError>;

    /// used and logicalreferenced of a replica, as printed (CVR `status.capacity`).
    async fn replica_capacity(&self, dataset: &str) -> Result<ReplicaCapacity, EngineError>;
}
