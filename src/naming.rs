//! Naming rules shared with upstream cStor. Objects written by the Go operators are found and
//! adopted by ours only because these names are computed the same way.

use crate::constants::engine::{IQN_PREFIX, ISCSI_PORT, LUN, POOL_PREFIX};
use xxhash_rust::xxh64::xxh64;

/// Alphabet of Kubernetes' `rand.String`, used for CSPI name suffixes.
pub const RAND_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// zpool name of a CSPC: `cstor-<CSPC uid>`.
pub fn pool_name(cspc_uid: &str) -> String {
    format!("{POOL_PREFIX}{cspc_uid}")
}

/// Replica dataset (zvol) of a volume in a pool: `cstor-<CSPC uid>/<pv>`.
pub fn zvol_name(cspc_uid: &str, pv: &str) -> String {
    format!("{}/{pv}", pool_name(cspc_uid))
}

/// CSPI name: `<cspc>-<4 chars of RAND_ALPHABET>`; `entropy` supplies the randomness (four
/// bytes are used), so callers choose the source and tests are deterministic.
pub fn cspi_name(cspc: &str, entropy: [u8; 4]) -> String {
    let suffix: String = entropy
        .iter()
        .map(|b| RAND_ALPHABET[*b as usize % RAND_ALPHABET.len()] as char)
        .collect();
    format!("{cspc}-{suffix}")
}

/// BlockDeviceClaim created for a block device: `bdc-cstor-<BlockDevice uid>`.
pub fn bdc_name(block_device_uid: &str) -> String {
    format!("bdc-cstor-{block_device_uid}")
}

/// CStorVolumeReplica of a volume on a pool instance: `<pv>-<cspi>`.
pub fn cvr_name(pv: &str, cspi: &str) -> String {
    format!("{pv}-{cspi}")
}

/// Target Deployment of a volume: `<pv>-target`.
pub fn target_deployment_name(pv: &str) -> String {
    format!("{pv}-target")
}

/// CStorVolumeAttachment of a volume on a node: `<pv>-<node>`.
pub fn cva_name(pv: &str, node: &str) -> String {
    format!("{pv}-{node}")
}

/// iSCSI qualified name of a volume's target.
pub fn iqn(pv: &str) -> String {
    format!("{IQN_PREFIX}:{pv}")
}

/// Target portal `<ip>:3260`.
pub fn target_portal(target_ip: &str) -> String {
    format!("{target_ip}:{ISCSI_PORT}")
}

/// Device link the kernel initiator creates for LUN 0 of a volume:
/// `/dev/disk/by-path/ip-<ip>:3260-iscsi-<iqn>-lun-0`.
pub fn by_path_device(portal: &str, iqn: &str) -> String {
    format!("/dev/disk/by-path/ip-{portal}-iscsi-{iqn}-lun-{LUN}")
}

/// CStorBackup name: `<snapshot>-<volume>`.
pub fn backup_name(snap: &str, volume: &str) -> String {
    format!("{snap}-{volume}")
}

/// CStorCompletedBackup name: `<backup>-<volume>`.
pub fn completed_backup_name(backup: &str, volume: &str) -> String {
    format!("{backup}-{volume}")
}

/// CSI snapshot id: `<pv>@<snapshot name>`.
pub fn snapshot_id(pv: &str, snap: &str) -> String {
    format!("{pv}@{snap}")
}

/// Splits a CSI snapshot id (or a CVC `spec.cstorVolumeSource`) into volume and snapshot name.
/// Exactly one `@` with non-empty sides is accepted.
pub fn parse_snapshot_id(id: &str) -> Result<(&str, &str), NameError> {
    let mut parts = id.split('@');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(v), Some(s), None) if !v.is_empty() && !s.is_empty() => Ok((v, s)),
        _ => Err(NameError::SnapshotId(id.to_string())),
    }
}

/// Prefix of the object name derived for a CSI volume name that cannot name objects itself.
pub const DERIVED_VOLUME_PREFIX: &str = "csi-";
/// Prefix of the snapshot name derived for a CSI snapshot name that cannot name a snapshot.
pub const DERIVED_SNAPSHOT_PREFIX: &str = "snap-";

/// 32 lowercase hex digits of xxh3-128 of `s` (deterministic across versions and machines).
pub fn name_digest(s: &str) -> String {
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(s.as_bytes()))
}

/// The object name derived for CSI volume name `csi_name`: `csi-<32 hex digits>` (36
/// characters, a valid DNS-1035 label). The same name always gives the same object name.
pub fn derived_volume_name(csi_name: &str) -> String {
    format!("{DERIVED_VOLUME_PREFIX}{}", name_digest(csi_name))
}

/// The snapshot name derived for CSI snapshot name `csi_name`: `snap-<32 hex digits>`.
pub fn derived_snapshot_name(csi_name: &str) -> String {
    format!("{DERIVED_SNAPSHOT_PREFIX}{}", name_digest(csi_name))
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    #[error("snapshot id {0:?} is not of the form <volume>@<snapshot>")]
    SnapshotId(String),
}

/// Go's `json.Marshal` of a string: quotes, escapes, and (unlike serde_json) HTML-safe
/// escapes of `<`, `>`, `&` and the line/paragraph separators. Replica IDs hash these bytes.
fn go_json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Replica ID of a new CVR, as the pool-manager derives it: the decimal xxhash64 (seed 0) of the
/// JSON encoding of the CVR's UID (upstream upper-cases the decimal string, which changes nothing).
pub fn replica_id_from_uid(cvr_uid: &str) -> String {
    xxh64(go_json_string(cvr_uid).as_bytes(), 0)
        .to_string()
        .to_uppercase()
}

/// Replica ID of a replica added by scale-up: the decimal xxhash64 of the JSON string
/// `"<pv>-<pool>"`.
pub fn replica_id_for_scale_up(pv: &str, cspi: &str) -> String {
    xxh64(go_json_string(&format!("{pv}-{cspi}")).as_bytes(), 0).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected hashes were computed independently (Python's `xxhash.xxh64(json.dumps(s))`),
    // not with this code.
    #[test]
    fn replica_id_matches_upstream_rule() {
        assert_eq!(
            replica_id_from_uid("6b3d4f2a-1c2e-4d5f-9a8b-0c1d2e3f4a5b"),
            "12674910075256991868"
        );
        assert_eq!(
            replica_id_for_scale_up("pvc-0a1b2c3d", "cstor-disk-pool-x7k2"),
            "16912193459704758771"
        );
        assert_eq!(xxh64(b"", 0), 17241709254077376921);
    }

    #[test]
    fn replica_id_hashes_go_json_escapes() {
        // Go escapes <, > and & in JSON strings; the hash must see the escaped bytes.
        assert_eq!(go_json_string("a<b>&c"), r#""a\u003cb\u003e\u0026c""#);
        assert_eq!(replica_id_from_uid("a<b>&c"), "8674105934622155338");
        assert_eq!(go_json_string("q\"\\\n"), r#""q\"\\\n""#);
    }

    #[test]
    fn object_names() {
        let uid = "0e1b2c3d-aaaa-bbbb-cccc-000000000001";
        assert_eq!(pool_name(uid), format!("cstor-{uid}"));
        assert_eq!(zvol_name(uid, "pvc-1"), format!("cstor-{uid}/pvc-1"));
        assert_eq!(bdc_name("bd-uid"), "bdc-cstor-bd-uid");
        assert_eq!(
            cvr_name("pvc-1", "cspc-stripe-b2xj"),
            "pvc-1-cspc-stripe-b2xj"
        );
        assert_eq!(target_deployment_name("pvc-1"), "pvc-1-target");
        assert_eq!(cva_name("pvc-1", "node-a"), "pvc-1-node-a");
        assert_eq!(iqn("pvc-1"), "iqn.2016-09.com.openebs.cstor:pvc-1");
        assert_eq!(target_portal("10.0.0.7"), "10.0.0.7:3260");
        assert_eq!(
            by_path_device("10.0.0.7:3260", &iqn("pvc-1")),
            "/dev/disk/by-path/ip-10.0.0.7:3260-iscsi-iqn.2016-09.com.openebs.cstor:pvc-1-lun-0"
        );
        assert_eq!(backup_name("snap1", "pvc-1"), "snap1-pvc-1");
        assert_eq!(completed_backup_name("b1", "pvc-1"), "b1-pvc-1");
    }

    #[test]
    fn cspi_names_use_the_kubernetes_alphabet() {
        assert_eq!(cspi_name("cspc-a", [0, 1, 26, 27]), "cspc-a-bc9b");
        let n = cspi_name("x", [200, 13, 99, 255]);
        assert!(n[2..].bytes().all(|b| RAND_ALPHABET.contains(&b)), "{n}");
    }

    #[test]
    fn derived_names_are_stable_valid_and_distinct() {
        let a = derived_volume_name("My-Volume_01");
        assert_eq!(a, derived_volume_name("My-Volume_01"));
        assert_ne!(a, derived_volume_name("my-volume_01"));
        assert_eq!(a.len(), 36);
        assert!(a.starts_with("csi-"));
        assert!(
            a[4..]
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
        let s = derived_snapshot_name(&"S".repeat(128));
        assert!(s.starts_with("snap-") && s.len() == 37, "{s}");
        // Pinned: a change of the digest would orphan every volume created with a derived name.
        assert_eq!(
            derived_volume_name(""),
            format!("csi-{:032x}", xxhash_rust::xxh3::xxh3_128(b""))
        );
    }

    #[test]
    fn snapshot_ids() {
        assert_eq!(snapshot_id("pvc-1", "snap"), "pvc-1@snap");
        assert_eq!(parse_snapshot_id("pvc-1@snap"), Ok(("pvc-1", "snap")));
        for bad in ["", "pvc-1", "@s", "v@", "a@b@c"] {
            assert!(parse_snapshot_id(bad).is_err(), "{bad:?} must be refused");
        }
    }
}
