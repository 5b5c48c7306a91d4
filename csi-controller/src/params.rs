//! StorageClass parameters of CreateVolume (and GetCapacity / ValidateVolumeCapabilities),
//! decoded once into [`VolumeParams`] through `TryFrom<&HashMap<String, String>>`, plus the
//! checks on names that end up in Kubernetes objects.

use std::collections::HashMap;

use cstor_api::constants::{csi as keys, value::CAS_TYPE_CSTOR};

/// CSI's limit on the total size of a map field (keys plus values), in bytes.
pub const MAX_MAP_BYTES: usize = 4096;

/// Filesystems a mount volume may carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsType {
    /// `ext4` (the default).
    Ext4,
    /// `xfs`.
    Xfs,
}

impl FsType {
    /// The supported names, for error messages.
    pub const SUPPORTED: &'static str = "ext4 or xfs";

    /// Parses a filesystem name; `None` for an unsupported one.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "ext4" => Some(Self::Ext4),
            "xfs" => Some(Self::Xfs),
            _ => None,
        }
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ext4 => "ext4",
            Self::Xfs => "xfs",
        }
    }
}

/// Decoded StorageClass parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeParams {
    /// `cstorPoolCluster`: the CSPC whose pools hold the replicas.
    pub pool_cluster: String,
    /// `replicaCount`: number of replicas (at least 1).
    pub replica_count: u32,
    /// `cas-type`: always `cstor`.
    pub cas_type: String,
    /// `fsType`: default filesystem for mount capabilities that name none.
    pub fs_type: Option<FsType>,
    /// `cstorVolumePolicy`: name of a CStorVolumePolicy in the OpenEBS namespace.
    pub volume_policy: Option<String>,
    /// `csi.storage.k8s.io/pvc/name` (external-provisioner `--extra-create-metadata`).
    pub pvc_name: Option<String>,
    /// `csi.storage.k8s.io/pvc/namespace`.
    pub pvc_namespace: Option<String>,
}

/// Why the parameters were refused. Every variant names the parameter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    /// A required parameter is absent or empty.
    #[error("missing StorageClass parameter {0}: set it in the StorageClass parameters")]
    Missing(&'static str),
    /// A parameter has a value we cannot use.
    #[error("invalid StorageClass parameter {name}={value:?}: {reason}")]
    Invalid {
        /// Parameter name.
        name: &'static str,
        /// The value given (truncated to 64 characters).
        value: String,
        /// What is wrong and what would be accepted.
        reason: String,
    },
    /// The map exceeds CSI's size limit.
    #[error("parameters map is {0} bytes; CSI limits a map to {MAX_MAP_BYTES} bytes")]
    TooLarge(usize),
}

fn invalid(name: &'static str, value: &str, reason: impl Into<String>) -> ParamError {
    ParamError::Invalid {
        name,
        value: value.chars().take(64).collect(),
        reason: reason.into(),
    }
}

/// Total size of a CSI map (keys plus values).
pub fn map_bytes(map: &HashMap<String, String>) -> usize {
    map.iter().map(|(k, v)| k.len() + v.len()).sum()
}

impl TryFrom<&HashMap<String, String>> for VolumeParams {
    type Error = ParamError;

    fn try_from(map: &HashMap<String, String>) -> Result<Self, ParamError> {
        let size = map_bytes(map);
        if size > MAX_MAP_BYTES {
            return Err(ParamError::TooLarge(size));
        }
        let get = |key: &str| map.get(key).map(|v| v.trim()).filter(|v| !v.is_empty());

        let pool_cluster = get(keys::PARAM_CSPC).ok_or(ParamError::Missing(keys::PARAM_CSPC))?;
        if let Err(reason) = check_label_value_name(pool_cluster) {
            return Err(invalid(
                keys::PARAM_CSPC,
                pool_cluster,
                format!("{reason} (it must name a CStorPoolCluster)"),
            ));
        }

        let replicas =
            get(keys::PARAM_REPLICA_COUNT).ok_or(ParamError::Missing(keys::PARAM_REPLICA_COUNT))?;
        let replica_count = match replicas.parse::<u32>() {
            Ok(n) if n >= 1 => n,
            _ => {
                return Err(invalid(
                    keys::PARAM_REPLICA_COUNT,
                    replicas,
                    "must be a whole number of at least 1",
                ));
            }
        };

        let cas_type =
            get(keys::PARAM_CAS_TYPE).ok_or(ParamError::Missing(keys::PARAM_CAS_TYPE))?;
        if cas_type != CAS_TYPE_CSTOR {
            return Err(invalid(
                keys::PARAM_CAS_TYPE,
                cas_type,
                format!("this driver provisions only {CAS_TYPE_CSTOR:?} volumes"),
            ));
        }

        let fs_type = match get(keys::PARAM_FS_TYPE) {
            None => None,
            Some(fs) => Some(FsType::parse(fs).ok_or_else(|| {
                invalid(
                    keys::PARAM_FS_TYPE,
                    fs,
                    format!("supported filesystems are {}", FsType::SUPPORTED),
                )
            })?),
        };

        let volume_policy = match get(keys::PARAM_VOLUME_POLICY) {
            None => None,
            Some(p) => {
                check_object_name(p).map_err(|reason| {
                    invalid(
                        keys::PARAM_VOLUME_POLICY,
                        p,
                        format!("{reason} (it must name a CStorVolumePolicy)"),
                    )
                })?;
                Some(p.to_owned())
            }
        };

        Ok(VolumeParams {
            pool_cluster: pool_cluster.to_owned(),
            replica_count,
            cas_type: cas_type.to_owned(),
            fs_type,
            volume_policy,
            pvc_name: get(keys::PARAM_PVC_NAME).map(str::to_owned),
            pvc_namespace: get(keys::PARAM_PVC_NAMESPACE).map(str::to_owned),
        })
    }
}

/// Checks a name that becomes a Kubernetes label value and object name (a DNS-1123 label:
/// lowercase letters, digits and `-`, at most 63 characters, alphanumeric at both ends).
pub fn check_label_value_name(name: &str) -> Result<(), String> {
    if name.len() > 63 {
        return Err(format!(
            "is {} characters long; at most 63 are allowed",
            name.len()
        ));
    }
    check_dns_chars(name)
}

/// Checks a Kubernetes object name (DNS-1123 subdomain, at most 253 characters).
pub fn check_object_name(name: &str) -> Result<(), String> {
    if name.len() > 253 {
        return Err(format!(
            "is {} characters long; at most 253 are allowed",
            name.len()
        ));
    }
    if name.split('.').any(|part| check_dns_chars(part).is_err()) {
        return Err("must consist of lowercase letters, digits, '-' and '.', and start and end with a letter or digit".into());
    }
    Ok(())
}

fn check_dns_chars(name: &str) -> Result<(), String> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let ends = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .last()
            .is_some_and(|b| b.is_ascii_alphanumeric());
    if name.is_empty() || !ok_chars || !ends {
        return Err("must consist of lowercase letters, digits and '-', and start and end with a letter or digit".into());
    }
    Ok(())
}

/// Checks a CSI volume name / volume id. It becomes the name of the CVC, the CStorVolume and
/// the target Service (a DNS-1035 label: starts with a letter, at most 63 characters) and the
/// value of `openebs.io/persistent-volume` labels.
pub fn check_volume_name(name: &str) -> Result<(), String> {
    check_label_value_name(name)?;
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(
            "must start with a lowercase letter (it names the volume's target Service)".into(),
        );
    }
    Ok(())
}

/// Checks a CSI snapshot name: it becomes a ZFS snapshot name and a word of the target's
/// `SNAPCREATE` command, so it may only hold letters, digits, `-`, `_`, `.` and `:`, at most
/// 128 characters.
pub fn check_snapshot_name(name: &str) -> Result<(), String> {
    if name.len() > 128 {
        return Err(format!(
            "is {} characters long; at most 128 are allowed",
            name.len()
        ));
    }
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
    {
        return Err("may only contain letters, digits, '-', '_', '.' and ':'".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn good() -> HashMap<String, String> {
        params(&[
            ("cstorPoolCluster", "cspc-a"),
            ("replicaCount", "3"),
            ("cas-type", "cstor"),
        ])
    }

    #[test]
    fn decodes_the_upstream_storage_class() {
        let mut map = good();
        map.insert("cstorVolumePolicy".into(), "policy-1".into());
        map.insert("fsType".into(), "xfs".into());
        map.insert("csi.storage.k8s.io/pvc/name".into(), "data".into());
        map.insert("csi.storage.k8s.io/pvc/namespace".into(), "apps".into());
        map.insert("someFutureKey".into(), "ignored".into());
        let p = VolumeParams::try_from(&map).unwrap();
        assert_eq!(p.pool_cluster, "cspc-a");
        assert_eq!(p.replica_count, 3);
        assert_eq!(p.fs_type, Some(FsType::Xfs));
        assert_eq!(p.volume_policy.as_deref(), Some("policy-1"));
        assert_eq!(p.pvc_name.as_deref(), Some("data"));
        assert_eq!(p.pvc_namespace.as_deref(), Some("apps"));
    }

    #[test]
    fn every_error_names_the_parameter() {
        let cases: Vec<(&str, Option<&str>, &str)> = vec![
            (
                "cstorPoolCluster",
                None,
                "missing StorageClass parameter cstorPoolCluster",
            ),
            (
                "cstorPoolCluster",
                Some("Bad_Name"),
                "cstorPoolCluster=\"Bad_Name\"",
            ),
            (
                "replicaCount",
                None,
                "missing StorageClass parameter replicaCount",
            ),
            ("replicaCount", Some("0"), "replicaCount=\"0\""),
            ("replicaCount", Some("three"), "replicaCount=\"three\""),
            ("replicaCount", Some("-1"), "replicaCount=\"-1\""),
            ("cas-type", None, "missing StorageClass parameter cas-type"),
            ("cas-type", Some("jiva"), "cas-type=\"jiva\""),
            ("fsType", Some("btrfs"), "fsType=\"btrfs\""),
            (
                "cstorVolumePolicy",
                Some("UPPER"),
                "cstorVolumePolicy=\"UPPER\"",
            ),
        ];
        for (key, value, expected) in cases {
            let mut map = good();
            match value {
                Some(v) => map.insert(key.into(), v.into()),
                None => map.remove(key),
            };
            let err = VolumeParams::try_from(&map).unwrap_err().to_string();
            assert!(err.contains(expected), "{key}={value:?}: {err}");
        }
        assert_eq!(
            VolumeParams::try_from(&HashMap::new()).unwrap_err(),
            ParamError::Missing("cstorPoolCluster")
        );
        let mut big = good();
        big.insert("padding".into(), "x".repeat(5000));
        assert!(matches!(VolumeParams::try_from(&big), Err(ParamError::TooLarge(n)) if n > 5000));
    }

    #[test]
    fn volume_and_snapshot_names() {
        assert!(check_volume_name("pvc-0a1b2c3d-aaaa-bbbb-cccc-000000000001").is_ok());
        assert!(
            check_volume_name(&"a".repeat(200))
                .unwrap_err()
                .contains("200 characters")
        );
        assert!(check_volume_name("9abc").is_err());
        assert!(check_volume_name("Pvc").is_err());
        assert!(check_volume_name("").is_err());
        assert!(check_snapshot_name("snapshot-0a1b").is_ok());
        assert!(check_snapshot_name("two words").is_err());
        assert!(check_snapshot_name("a@b").is_err());
        assert!(check_snapshot_name(&"s".repeat(129)).is_err());
        assert!(check_object_name("policy.v1").is_ok());
    }
}
