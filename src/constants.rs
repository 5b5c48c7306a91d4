//! Every label, annotation, finalizer, environment variable and well-known value that cStor
//! components exchange through the Kubernetes API. Upstream's Go operators read and write exactly
//! these strings, so they must never change.

/// API groups and versions.
pub mod group {
    pub const CSTOR: &str = "cstor.openebs.io";
    pub const CSTOR_VERSION: &str = "v1";
    pub const CSTOR_API_VERSION: &str = "cstor.openebs.io/v1";
    pub const NDM: &str = "openebs.io";
    pub const NDM_VERSION: &str = "v1alpha1";
    pub const NDM_API_VERSION: &str = "openebs.io/v1alpha1";
}

/// Label keys.
pub mod label {
    /// CSPC name, on CSPI, pool Deployment and pod, BDC, CVC, PDB.
    pub const CSTOR_POOL_CLUSTER: &str = "openebs.io/cstor-pool-cluster";
    /// CSPI name, on the pool Deployment and pod.
    pub const CSTOR_POOL_INSTANCE: &str = "openebs.io/cstor-pool-instance";
    /// Node hostname label (the label's value, not the node name).
    pub const HOSTNAME: &str = "kubernetes.io/hostname";
    pub const VERSION: &str = "openebs.io/version";
    pub const CAS_TYPE: &str = "openebs.io/cas-type";
    pub const APP: &str = "app";
    /// CSPI name, on CVR and CStorBackup.
    pub const CSPI_NAME: &str = "cstorpoolinstance.openebs.io/name";
    /// CSPI UID, on CVR and CStorBackup: a pool-manager selects its own replicas with it.
    pub const CSPI_UID: &str = "cstorpoolinstance.openebs.io/uid";
    /// Legacy (pre-CSPC) pool UID label, still recognised on old CVRs.
    pub const LEGACY_CSP_UID: &str = "cstorpool.openebs.io/uid";
    /// PV name on a CVR: forms the zvol name.
    pub const CSTOR_VOLUME_NAME: &str = "cstorvolume.openebs.io/name";
    pub const PERSISTENT_VOLUME: &str = "openebs.io/persistent-volume";
    pub const PERSISTENT_VOLUME_CLAIM: &str = "openebs.io/persistent-volume-claim";
    pub const SOURCE_VOLUME: &str = "openebs.io/source-volume";
    pub const CLONED: &str = "openebs.io/cloned";
    pub const POD_DISRUPTION_BUDGET: &str = "openebs.io/pod-disruption-budget";
    pub const TEMPLATE_HASH: &str = "cstor.openebs.io/template-hash";
    pub const TARGET_SERVICE: &str = "openebs.io/target-service";
    pub const STORAGE_ENGINE_TYPE: &str = "openebs.io/storage-engine-type";
    pub const TARGET: &str = "openebs.io/target";
    pub const MONITORING: &str = "monitoring";
    pub const BLOCK_DEVICE_TAG: &str = "openebs.io/block-device-tag";
    pub const COMPONENT_NAME: &str = "openebs.io/component-name";
    pub const BACKUP: &str = "openebs.io/backup";
    /// Restore (Velero backup) name, on CStorRestore.
    pub const RESTORE: &str = "openebs.io/restore";
    /// CVA labels written by the CSI node plugin (upstream's exact, oddly cased keys).
    pub const CVA_NODE_ID: &str = "nodeID";
    pub const CVA_VOLNAME: &str = "Volname";
}

/// Well-known label values.
pub mod value {
    pub const CAS_TYPE_CSTOR: &str = "cstor";
    pub const APP_CSTOR_POOL: &str = "cstor-pool";
    pub const APP_VOLUME_MANAGER: &str = "cstor-volume-manager";
    pub const APP_ADMISSION_WEBHOOK: &str = "cstor-admission-webhook";
    pub const TARGET_SERVICE_CSTOR: &str = "cstor-target-svc";
    pub const STORAGE_ENGINE_CSTOR: &str = "cstor";
    pub const TARGET_CSTOR: &str = "cstor-target";
    pub const MONITORING_VOLUME_EXPORTER: &str = "volume_exporter_prometheus";
    pub const MONITORING_POOL_EXPORTER: &str = "pool_exporter_prometheus";
    pub const TRUE: &str = "true";
    pub const CREATED_THROUGH_RESTORE: &str = "restore";
}

/// Annotation keys.
pub mod annotation {
    pub const RECONCILE_DISABLE: &str = "reconcile.openebs.io/disable";
    pub const RECONCILE_DISABLE_DEPENDANTS: &str = "reconcile.openebs.io/disable-dependants";
    pub const ALLOWED_BD_TAGS: &str = "openebs.io/allowed-bd-tags";
    pub const EXISTING_POOL_NAME: &str = "import.cspi.cstor.openebs.io/existing-pool-name";
    pub const BD_PREDECESSOR: &str = "openebs.io/bd-predecessor";
    pub const CSPI_HOSTNAME: &str = "cstorpoolinstance.openebs.io/hostname";
    pub const SOURCE_VOLUME: &str = "openebs.io/source-volume";
    pub const SNAPSHOT: &str = "openebs.io/snapshot";
    pub const IS_RESTORE_VOL: &str = "isRestoreVol";
    pub const RESTORE_COMPLETED: &str = "openebs.io/restore-completed";
    pub const VOLUME_POLICY: &str = "openebs.io/volume-policy";
    pub const VOLUME_ID: &str = "openebs.io/volumeID";
    /// Ours: the CSI name a volume was created with, when it could not name the CVC itself
    /// (the CVC then carries a derived name; see `naming::derived_volume_name`).
    pub const CSI_NAME: &str = "cstor.openebs.io/csi-name";
    pub const PERSISTENT_VOLUME_CLAIM: &str = "openebs.io/persistent-volume-claim";
    pub const CREATED_THROUGH: &str = "openebs.io/created-through";
    pub const MONITORING: &str = "openebs.io/monitoring";
    pub const PROMETHEUS_PATH: &str = "prometheus.io/path";
    pub const PROMETHEUS_PORT: &str = "prometheus.io/port";
    pub const PROMETHEUS_SCRAPE: &str = "prometheus.io/scrape";
    pub const SAFE_TO_EVICT: &str = "cluster-autoscaler.kubernetes.io/safe-to-evict";
    pub const VOLUME_MONITOR: &str = "openebs.io/volume-monitor";
    pub const VOLUME_TYPE: &str = "openebs.io/volume-type";
    /// Ours, on a CVC: what the cvc-operator last applied to the target Deployment's pod
    /// template, as `<policy hash>/<upstream template-hash label then>` (the label part empty
    /// when the CVC had none). Upstream never reads or writes the `cstor-rs.openebs.io/` prefix;
    /// its own label `cstor.openebs.io/template-hash` is left as upstream wrote it. A CVC
    /// without this annotation is adopted: the running target is kept as it is.
    pub const APPLIED_POLICY: &str = "cstor-rs.openebs.io/applied-policy";
    /// Ours, on a pool Deployment: hash of the pool settings and images the cspc-operator last
    /// applied to its pod template. A pool Deployment without it is adopted as it is.
    pub const APPLIED_POOL_TEMPLATE: &str = "cstor-rs.openebs.io/applied-pool-template";
}

/// Finalizers.
pub mod finalizer {
    /// cspc-operator: on CSPC, CSPI (at creation) and BDC (at creation).
    pub const CSPC: &str = "cstorpoolcluster.openebs.io/finalizer";
    /// pool-manager: on CSPI, removed after `zpool destroy` and labelclear.
    pub const POOL_PROTECTION: &str = "openebs.io/pool-protection";
    /// CSI controller, at CVC creation; removed by the cvc-operator on deletion.
    pub const CVC: &str = "cvc.openebs.io/finalizer";
    /// cvc-operator, on CVR; removed by the pool-manager after `zfs destroy -R`.
    pub const CVR: &str = "cstorvolumereplica.openebs.io/finalizer";
}

/// Environment variables the components read (names kept from upstream).
/// The OpenEBS version every component stamps on the objects it writes (label
/// `openebs.io/version`, `versionDetails`): the upstream release whose objects ours are
/// interchangeable with, so that upstream's operators and ours accept each other's objects.
pub mod version {
    /// Upstream release this control plane is compatible with.
    pub const OPENEBS_VERSION: &str = "3.6.0";
    /// Environment variable that overrides it (as upstream's operators honour).
    pub const ENV: &str = "OPENEBS_IO_VERSION";

    /// The version to stamp: `$OPENEBS_IO_VERSION` when set and non-empty, else
    /// [`OPENEBS_VERSION`].
    pub fn current() -> String {
        from(std::env::var(ENV).ok())
    }

    /// [`current`] for a given value of the environment variable.
    pub fn from(env: Option<String>) -> String {
        env.map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| OPENEBS_VERSION.to_owned())
    }

    /// The oldest version an object may be upgraded from (upstream's lower bound).
    pub const MIN_UPGRADABLE: &str = "1.10.0";

    /// `v` without its suffix: everything from the first `-` is dropped (`3.6.0-RC1` →
    /// `3.6.0`).
    pub fn strip(v: &str) -> &str {
        v.split('-').next().unwrap_or(v)
    }

    /// Whether `a` and `b` name the same release once their suffixes are stripped.
    pub fn same_release(a: &str, b: &str) -> bool {
        strip(a) == strip(b)
    }

    /// Compares two stripped versions numerically component by component; a component that
    /// is not a number counts as 0, missing components too.
    pub fn compare(a: &str, b: &str) -> std::cmp::Ordering {
        let parts = |v: &str| -> Vec<u64> {
            strip(v)
                .split('.')
                .map(|c| c.trim().parse().unwrap_or(0))
                .collect()
        };
        let (a, b) = (parts(a), parts(b));
        (0..a.len().max(b.len()))
            .map(|i| {
                let x = a.get(i).copied().unwrap_or(0);
                let y = b.get(i).copied().unwrap_or(0);
                x.cmp(&y)
            })
            .find(|o| o.is_ne())
            .unwrap_or(std::cmp::Ordering::Equal)
    }

    /// Whether an operator at version `operator` may reconcile an object whose
    /// `versionDetails.status.current` is `v`: [`MIN_UPGRADABLE`] ≤ `v` ≤ `operator`, the upper
    /// bound dropped for a development build (`develop`, `master`).
    pub fn is_current_version_valid(v: &str, operator: &str) -> bool {
        use std::cmp::Ordering::{Greater, Less};
        if compare(v, MIN_UPGRADABLE) == Less {
            return false;
        }
        let first = strip(operator).split('.').next().unwrap_or("");
        matches!(first, "develop" | "master") || compare(v, operator) != Greater
    }

    /// Whether an operator at version `operator` may move an object to `versionDetails.desired
    /// = v`: only to its own release.
    pub fn is_desired_version_valid(v: &str, operator: &str) -> bool {
        same_release(v, operator)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn suffix_is_stripped() {
            assert_eq!(strip("3.6.0-RC1"), "3.6.0");
            assert_eq!(strip("3.6.0"), "3.6.0");
            assert_eq!(strip("develop"), "develop");
            assert!(same_release("3.6.0", "3.6.0-ee"));
            assert!(!same_release("3.5.0", "3.6.0"));
        }

        #[test]
        fn comparison_is_numeric_per_component() {
            use std::cmp::Ordering::*;
            assert_eq!(compare("1.10.0", "1.9.0"), Greater);
            assert_eq!(compare("2.0.0", "10.0.0"), Less);
            assert_eq!(compare("3.6", "3.6.0"), Equal);
            assert_eq!(compare("3.x.1", "3.0.1"), Equal);
            assert_eq!(compare("3.6.0-RC2", "3.6.0"), Equal);
        }

        #[test]
        fn current_version_bounds() {
            assert!(is_current_version_valid("1.10.0", "3.6.0"));
            assert!(is_current_version_valid("3.5.0", "3.6.0"));
            assert!(is_current_version_valid("3.6.0-RC1", "3.6.0"));
            assert!(is_current_version_valid("3.6.0", "3.6.0-RC1"));
            assert!(!is_current_version_valid("1.9.0", "3.6.0"));
            assert!(!is_current_version_valid("3.7.0", "3.6.0"));
            assert!(!is_current_version_valid("", "3.6.0"));
            assert!(!is_current_version_valid("garbage", "3.6.0"));
            assert!(is_current_version_valid("9.9.9", "develop"));
            assert!(is_current_version_valid("9.9.9", "master-abc"));
            assert!(!is_current_version_valid("1.2.0", "develop"));
        }

        #[test]
        fn desired_version_is_the_operators_release() {
            assert!(is_desired_version_valid("3.6.0", "3.6.0"));
            assert!(is_desired_version_valid("3.6.0-RC1", "3.6.0"));
            assert!(!is_desired_version_valid("3.5.0", "3.6.0"));
            assert!(!is_desired_version_valid("", "3.6.0"));
        }
    }
}

pub mod env {
    pub const OPENEBS_NAMESPACE: &str = "OPENEBS_NAMESPACE";
    pub const OPENEBS_NODE_ID: &str = "OPENEBS_NODE_ID";
    pub const OPENEBS_NODE_DRIVER: &str = "OPENEBS_NODE_DRIVER";
    pub const REMOUNT: &str = "REMOUNT";
    pub const RESYNC_INTERVAL: &str = "RESYNC_INTERVAL";
    pub const OPENEBS_IO_CSPI_ID: &str = "OPENEBS_IO_CSPI_ID";
    pub const OPENEBS_IO_POOL_NAME: &str = "OPENEBS_IO_POOL_NAME";
    pub const OPENEBS_IO_CSTOR_ID: &str = "OPENEBS_IO_CSTOR_ID";
    pub const OPENEBS_IO_CSTOR_VOLUME_ID: &str = "OPENEBS_IO_CSTOR_VOLUME_ID";
    pub const OPENEBS_IO_BASE_DIR: &str = "OPENEBS_IO_BASE_DIR";
    pub const OPENEBS_IO_CSTOR_POOL_SPARSE_DIR: &str = "OPENEBS_IO_CSTOR_POOL_SPARSE_DIR";
    pub const OPENEBS_IO_CSPI_MGMT_IMAGE: &str = "OPENEBS_IO_CSPI_MGMT_IMAGE";
    pub const OPENEBS_IO_CSTOR_POOL_IMAGE: &str = "OPENEBS_IO_CSTOR_POOL_IMAGE";
    pub const OPENEBS_IO_CSTOR_POOL_EXPORTER_IMAGE: &str = "OPENEBS_IO_CSTOR_POOL_EXPORTER_IMAGE";
    pub const OPENEBS_IO_CSTOR_TARGET_IMAGE: &str = "OPENEBS_IO_CSTOR_TARGET_IMAGE";
    pub const OPENEBS_IO_VOLUME_MONITOR_IMAGE: &str = "OPENEBS_IO_VOLUME_MONITOR_IMAGE";
    pub const OPENEBS_IO_CSTOR_VOLUME_MGMT_IMAGE: &str = "OPENEBS_IO_CSTOR_VOLUME_MGMT_IMAGE";
    pub const OPENEBS_IO_IMAGE_PULL_SECRETS: &str = "OPENEBS_IO_IMAGE_PULL_SECRETS";
    pub const OPENEBS_SERVICEACCOUNT_NAME: &str = "OPENEBS_SERVICEACCOUNT_NAME";
    pub const POD_NAME: &str = "POD_NAME";
    pub const NAMESPACE: &str = "NAMESPACE";
    pub const NODE_NAME: &str = "NODE_NAME";
    pub const QUEUE_DEPTH: &str = "QueueDepth";
    pub const LU_WORKERS: &str = "Luworkers";
}

/// CSI-side names.
pub mod csi {
    pub const DRIVER_NAME: &str = "cstor.csi.openebs.io";
    /// Topology key owned by the driver; StorageClasses in the field use it in `allowedTopologies`.
    pub const TOPOLOGY_NODE_KEY: &str = "topology.cstor.openebs.io/nodeName";
    /// The well-known zone label; a node reports it in its topology when its Node has it.
    pub const TOPOLOGY_ZONE_KEY: &str = "topology.kubernetes.io/zone";
    /// StorageClass parameters.
    pub const PARAM_CSPC: &str = "cstorPoolCluster";
    pub const PARAM_REPLICA_COUNT: &str = "replicaCount";
    pub const PARAM_CAS_TYPE: &str = "cas-type";
    pub const PARAM_FS_TYPE: &str = "fsType";
    pub const PARAM_VOLUME_POLICY: &str = "cstorVolumePolicy";
    /// Passed by external-provisioner with `--extra-create-metadata`.
    pub const PARAM_PVC_NAME: &str = "csi.storage.k8s.io/pvc/name";
    pub const PARAM_PVC_NAMESPACE: &str = "csi.storage.k8s.io/pvc/namespace";
    pub const PARAM_PV_NAME: &str = "csi.storage.k8s.io/pv/name";
}

/// Data-engine facts shared by operators and the CSI driver.
pub mod engine {
    /// Prefix of every cStor zpool name: `cstor-<CSPC uid>`.
    pub const POOL_PREFIX: &str = "cstor-";
    /// IQN prefix of every cStor target (`NodeBase` in istgt.conf).
    pub const IQN_PREFIX: &str = "iqn.2016-09.com.openebs.cstor";
    pub const ISCSI_PORT: u16 = 3260;
    pub const SNAPSHOT_GRPC_PORT: u16 = 7777;
    pub const MGMT_PORT: u16 = 6060;
    pub const EXPORTER_PORT: u16 = 9500;
    pub const ISCSI_INTERFACE: &str = "default";
    pub const LUN: u32 = 0;
}
