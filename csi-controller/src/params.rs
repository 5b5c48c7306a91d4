//! StorageClass parameters of CreateVolume (and GetCapacity / ValidateVolumeCapabilities),
//! decoded once into [`VolumeParams`] through `TryFrom<&HashMap<String, String>>`, plus the
//! checks on names that end up in Kubernetes objects.

use std::{borrow::Cow, collections::HashMap};

use cstor_api::{
    constants::{csi as keys, value::CAS_TYPE_CSTOR},
    naming,
};

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
    /// A key this driver does not know (a typo would otherwise be silently ignored).
    #[error(
        "unknown StorageClass parameter {key:?}{}; known parameters: {}",
        closest.map(|c| format!(" (did you mean {c:?}?)")).unwrap_or_default(),
        KNOWN_KEYS.join(", ")
    )]
    Unknown {
        /// The key (truncated to 64 characters).
        key: String,
        /// The known key it most resembles.
        closest: Option<&'static str>,
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

/// Every parameter key this driver understands: the StorageClass keys and the keys
/// external-provisioner adds with `--extra-create-metadata`.
pub const KNOWN_KEYS: &[&str] = &[
    keys::PARAM_CSPC,
    keys::PARAM_REPLICA_COUNT,
    keys::PARAM_CAS_TYPE,
    keys::PARAM_FS_TYPE,
    keys::PARAM_VOLUME_POLICY,
    keys::PARAM_PVC_NAME,
    keys::PARAM_PVC_NAMESPACE,
    keys::PARAM_PV_NAME,
];

/// Most replicas a volume may have (the CStorVolume's replication factor is a byte in istgt).
pub const MAX_REPLICAS: u32 = 255;

/// Edit distance between two keys, doubled so that a difference of case alone can count half
/// a step (`replicacount` is closer to `replicaCount` than any other typo).
fn distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut prev: Vec<usize> = (0..=b.len()).map(|j| j * 2).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![(i + 1) * 2; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let subst = if ca == cb {
                0
            } else if ca.eq_ignore_ascii_case(cb) {
                1
            } else {
                2
            };
            cur[j + 1] = (prev[j] + subst).min(prev[j + 1] + 2).min(cur[j] + 2);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The known key closest to `key`, when one is close enough to be a likely typo.
pub fn closest_key(key: &str) -> Option<&'static str> {
    let lower = key.to_ascii_lowercase();
    KNOWN_KEYS
        .iter()
        .filter(|k| {
            let known = k.to_ascii_lowercase();
            distance(key, k) <= 6.max(k.len()) || lower.contains(&known) || known.contains(&lower)
        })
        .map(|k| (distance(key, k), *k))
        .min()
        .map(|(_, k)| k)
}

/// Parses a replica count strictly: decimal digits only, 1 to [`MAX_REPLICAS`].
fn parse_replica_count(value: &str) -> Result<u32, ParamError> {
    let reason = format!("must be a whole number from 1 to {MAX_REPLICAS}, written in digits only");
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(keys::PARAM_REPLICA_COUNT, value, reason));
    }
    match value.parse::<u32>() {
        Ok(n) if (1..=MAX_REPLICAS).contains(&n) => Ok(n),
        _ => Err(invalid(keys::PARAM_REPLICA_COUNT, value, reason)),
    }
}

impl TryFrom<&HashMap<String, String>> for VolumeParams {
    type Error = ParamError;

    fn try_from(map: &HashMap<String, String>) -> Result<Self, ParamError> {
        let size = map_bytes(map);
        if size > MAX_MAP_BYTES {
            return Err(ParamError::TooLarge(size));
        }
        // Unknown keys first, in a stable order, so a typo is reported rather than the
        // "missing" error of the key it was meant to be.
        let mut unknown: Vec<&String> = map
            .keys()
            .filter(|k| !KNOWN_KEYS.contains(&k.as_str()))
            .collect();
        unknown.sort();
        if let Some(key) = unknown.first() {
            return Err(ParamError::Unknown {
                key: key.chars().take(64).collect(),
                closest: closest_key(key),
            });
        }
        // Values are taken as written: surrounding spaces are an error, an empty value is
        // as good as a missing one.
        let get = |key: &'static str| -> Result<Option<&str>, ParamError> {
            match map.get(key).map(String::as_str) {
                None | Some("") => Ok(None),
                Some(v) if v.trim() != v => Err(invalid(
                    key,
                    v,
                    "has leading or trailing whitespace; remove it",
                )),
                Some(v) => Ok(Some(v)),
            }
        };
        let required = |key: &'static str| -> Result<&str, ParamError> {
            get(key)?.ok_or(ParamError::Missing(key))
        };

        let pool_cluster = required(keys::PARAM_CSPC)?;
        if let Err(reason) = check_label_value_name(pool_cluster) {
            return Err(invalid(
                keys::PARAM_CSPC,
                pool_cluster,
                format!("{reason} (it must name a CStorPoolCluster)"),
            ));
        }

        let replica_count = parse_replica_count(required(keys::PARAM_REPLICA_COUNT)?)?;

        let cas_type = required(keys::PARAM_CAS_TYPE)?;
        if cas_type != CAS_TYPE_CSTOR {
            return Err(invalid(
                keys::PARAM_CAS_TYPE,
                cas_type,
                format!("this driver provisions only {CAS_TYPE_CSTOR:?} volumes"),
            ));
        }

        let fs_type = match get(keys::PARAM_FS_TYPE)? {
            None => None,
            Some(fs) => Some(FsType::parse(fs).ok_or_else(|| {
                invalid(
                    keys::PARAM_FS_TYPE,
                    fs,
                    format!(
                        "supported filesystems are {} (lowercase)",
                        FsType::SUPPORTED
                    ),
                )
            })?),
        };

        let volume_policy = match get(keys::PARAM_VOLUME_POLICY)? {
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
        let pvc_name = get(keys::PARAM_PVC_NAME)?;
        let pvc_namespace = get(keys::PARAM_PVC_NAMESPACE)?;
        get(keys::PARAM_PV_NAME)?;

        Ok(VolumeParams {
            pool_cluster: pool_cluster.to_owned(),
            replica_count,
            cas_type: cas_type.to_owned(),
            fs_type,
            volume_policy,
            pvc_name: pvc_name.map(str::to_owned),
            pvc_namespace: pvc_namespace.map(str::to_owned),
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

/// The longest CSI volume or snapshot name accepted (the CSI spec's guarantee to a CO).
pub const MAX_CSI_NAME: usize = 128;

fn check_csi_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("is empty".into());
    }
    let n = name.chars().count();
    if n > MAX_CSI_NAME {
        return Err(format!(
            "is {n} characters long; CSI names are at most {MAX_CSI_NAME}"
        ));
    }
    Ok(())
}

/// The name of the CVC (and CStorVolume, target Service, volume id) for CSI volume name
/// `csi_name`: the name itself when it can name those objects (Kubernetes' `pvc-<uid>`),
/// otherwise a deterministic derived name ([`naming::derived_volume_name`]). `Borrowed` means
/// the name is used as it is.
pub fn volume_object_name(csi_name: &str) -> Result<Cow<'_, str>, String> {
    check_csi_name(csi_name)?;
    if check_volume_name(csi_name).is_ok() {
        Ok(Cow::Borrowed(csi_name))
    } else {
        Ok(Cow::Owned(naming::derived_volume_name(csi_name)))
    }
}

/// The snapshot name (on the replicas, in the snapshot id) for CSI snapshot name `csi_name`:
/// the name itself when it is a valid snapshot name outside the reserved clone prefix,
/// otherwise a deterministic derived name ([`naming::derived_snapshot_name`]).
pub fn snapshot_object_name(csi_name: &str) -> Result<Cow<'_, str>, String> {
    check_csi_name(csi_name)?;
    if check_snapshot_name(csi_name).is_ok()
        && !csi_name.starts_with(crate::records::CLONE_SNAPSHOT_PREFIX)
    {
        Ok(Cow::Borrowed(csi_name))
    } else {
        Ok(Cow::Owned(naming::derived_snapshot_name(csi_name)))
    }
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
    fn unknown_keys_are_refused_naming_the_closest_known_one() {
        for (key, closest) in [
            ("replicacount", Some("replicaCount")),
            ("replicaCont", Some("replicaCount")),
            ("poolCluster", Some("cstorPoolCluster")),
            ("openebs.io/cas-type", Some("cas-type")),
            ("fstype", Some("fsType")),
            (
                "csi.storage.k8s.io/pvc/nam",
                Some("csi.storage.k8s.io/pvc/name"),
            ),
            ("zzzzzzzzzzzzzzzzzzzz", None),
        ] {
            let mut map = good();
            map.insert(key.into(), "x".into());
            let err = VolumeParams::try_from(&map).unwrap_err();
            assert_eq!(
                err,
                ParamError::Unknown {
                    key: key.into(),
                    closest
                },
                "{key}"
            );
            let text = err.to_string();
            assert!(text.contains(&format!("{key:?}")), "{text}");
            if let Some(c) = closest {
                assert!(text.contains(&format!("did you mean {c:?}")), "{text}");
            }
        }
        // The keys external-provisioner adds are known.
        let mut map = good();
        map.insert("csi.storage.k8s.io/pv/name".into(), "pvc-1".into());
        assert!(VolumeParams::try_from(&map).is_ok());
    }

    #[test]
    fn values_are_parsed_strictly() {
        for (key, value) in [
            ("replicaCount", " 3"),
            ("replicaCount", "+3"),
            ("replicaCount", "3.0"),
            ("replicaCount", "0x3"),
            ("replicaCount", "256"),
            ("replicaCount", "99999999999"),
            ("cas-type", "CStor"),
            ("cas-type", "cstor "),
            ("fsType", "EXT4"),
            ("cstorPoolCluster", " cspc-a"),
        ] {
            let mut map = good();
            map.insert(key.into(), value.into());
            let err = VolumeParams::try_from(&map).unwrap_err().to_string();
            assert!(
                err.contains(&format!("{key}={value:?}")),
                "{key}={value:?}: {err}"
            );
        }
        let mut map = good();
        map.insert("replicaCount".into(), "255".into());
        assert_eq!(VolumeParams::try_from(&map).unwrap().replica_count, 255);
    }

    #[test]
    fn csi_names_map_to_object_names() {
        let pv = "pvc-0a1b2c3d-aaaa-bbbb-cccc-000000000001";
        assert!(matches!(volume_object_name(pv), Ok(Cow::Borrowed(n)) if n == pv));
        let long = "V".repeat(128);
        for name in [
            "Upper",
            long.as_str(),
            "9starts-with-digit",
            "has space",
            "a/b",
        ] {
            let obj = volume_object_name(name).unwrap();
            assert!(matches!(obj, Cow::Owned(_)), "{name}");
            assert!(check_volume_name(&obj).is_ok(), "{obj}");
            assert_eq!(volume_object_name(name).unwrap(), obj, "deterministic");
        }
        assert_ne!(
            volume_object_name("Upper").unwrap(),
            volume_object_name("upper").unwrap()
        );
        assert!(
            volume_object_name(&"v".repeat(129))
                .unwrap_err()
                .contains("129 characters")
        );
        assert!(volume_object_name("").unwrap_err().contains("empty"));

        assert!(matches!(
            snapshot_object_name("snapshot-1"),
            Ok(Cow::Borrowed(_))
        ));
        assert!(matches!(
            snapshot_object_name("Snap_1.a:b"),
            Ok(Cow::Borrowed(_))
        ));
        for name in ["two words", "a@b", "cstor-clone-pvc-1", long.as_str()] {
            let obj = snapshot_object_name(name).unwrap();
            if name != long {
                assert!(matches!(obj, Cow::Owned(_)), "{name}");
            }
            assert!(check_snapshot_name(&obj).is_ok(), "{obj}");
        }
        assert!(snapshot_object_name(&"s".repeat(129)).is_err());
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
