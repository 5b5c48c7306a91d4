//! `istgt.conf`: rendering it from a CStorVolume in upstream's exact layout, and the
//! line-based edits the volume manager makes to it afterwards (DRF, resize, known replicas).
//!
//! Upstream writes the file once per `add` and then only edits single lines, so the edit
//! helpers here follow its two rules exactly:
//! - [`replace_line_containing`] ("Updatefile"): replace the first line that *contains* the key,
//!   an error when no line does;
//! - [`update_or_append`] ("UpdateOrAppendMultipleLines"): replace the first line that *starts
//!   with* the key, else append; an empty new line deletes the matched line.
//!
//! [`IstgtConf`] owns the file on disk and serialises every read-modify-write behind one mutex,
//! like upstream's process-wide file lock.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
};

use cstor_api::{constants::engine::IQN_PREFIX, cstor::CStorVolume};
use tokio::sync::Mutex;

/// Where the target image reads the file.
pub const DEFAULT_CONF_PATH: &str = "/usr/local/etc/istgt/istgt.conf";

/// Where the backing store of LUN0 comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LunStorage {
    /// cStor's istgt: `LUN0 Storage <capacity> 32k` (the data lives on the replicas).
    Replicated,
    /// Stock istgt (tests only): `LUN0 Storage <path> <size>` backed by a local file; `size` is in
    /// istgt's own syntax (`Auto`, `64MB`, ...).
    File {
        /// The backing file.
        path: PathBuf,
        /// The size argument.
        size: String,
    },
}

/// Everything in `istgt.conf` that does not come from the CStorVolume.
///
/// [`ConfOptions::default`] is upstream's pod layout; tests point the paths into a tempdir and
/// the ports at free ports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfOptions {
    /// `[Global] PidFile`.
    pub pid_file: String,
    /// `[Global] AuthFile`.
    pub auth_file: String,
    /// `[Global] LogFile`.
    pub log_file: String,
    /// `[Global] MediaDirectory`.
    pub media_directory: String,
    /// Port of `[UnitControl] Portal UC1` (upstream 3261).
    pub unit_control_port: u16,
    /// Port of `[PortalGroup1] Portal DA1` (upstream 3260).
    pub iscsi_port: u16,
    /// LUN0 backing store.
    pub lun_storage: LunStorage,
}

impl Default for ConfOptions {
    fn default() -> Self {
        Self {
            pid_file: "/var/run/istgt.pid".into(),
            auth_file: "/usr/local/etc/istgt/auth.conf".into(),
            log_file: "/usr/local/etc/istgt/logfile".into(),
            media_directory: "/mnt".into(),
            unit_control_port: 3261,
            iscsi_port: cstor_api::constants::engine::ISCSI_PORT,
            lun_storage: LunStorage::Replicated,
        }
    }
}

/// A CStorVolume that cannot be turned into `istgt.conf`, or an edit that found nothing to edit.
#[derive(Debug, thiserror::Error)]
pub enum ConfError {
    /// A field the file needs is empty.
    #[error(
        "CStorVolume {name:?} has no {field}; the cvc-operator must set it before the target can start"
    )]
    MissingField {
        /// CV name.
        name: String,
        /// JSON path of the field.
        field: &'static str,
    },
    /// [`replace_line_containing`] found no line with the key.
    #[error("istgt.conf has no line containing {key:?}; rewrite the file from the CStorVolume")]
    KeyNotFound {
        /// The key searched.
        key: String,
    },
    /// Reading or writing the file failed.
    #[error("cannot {action} istgt.conf at {path}: {source}")]
    Io {
        /// `read` or `write`.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

fn required<'a>(
    cv: &CStorVolume,
    value: Option<&'a str>,
    field: &'static str,
) -> Result<&'a str, ConfError> {
    match value {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(ConfError::MissingField {
            name: cv.metadata.name.clone().unwrap_or_default(),
            field,
        }),
    }
}

/// Renders `istgt.conf` for `cv` in upstream's layout (sections, key order, two-space indent).
///
/// `DesiredReplicationFactor` defaults to `replicationFactor` when 0/unset; `Replica` lines come
/// from `spec.replicaDetails.knownReplicas`, sorted by replica ID.
pub fn render(cv: &CStorVolume, opts: &ConfOptions) -> Result<String, ConfError> {
    let unit = LogicalUnit::of(cv, opts)?;
    let mut s = String::new();
    write_global(&mut s, opts);
    s.push('\n');
    write_portals(&mut s, unit.ip, opts);
    s.push('\n');
    write_initiator_groups(&mut s);
    s.push('\n');
    write_logical_unit(&mut s, &unit);
    write_replicas(&mut s, cv);
    Ok(s)
}

/// What the file takes from the CStorVolume.
struct LogicalUnit<'a> {
    name: &'a str,
    uid: &'a str,
    /// The target's IP (its Service's ClusterIP).
    ip: &'a str,
    rf: i64,
    cf: i64,
    drf: i64,
    /// The `LUN0 Storage` argument.
    storage: String,
}

impl<'a> LogicalUnit<'a> {
    /// Reads the fields the file needs; every one must be set.
    fn of(cv: &'a CStorVolume, opts: &ConfOptions) -> Result<Self, ConfError> {
        let name = required(cv, cv.metadata.name.as_deref(), "metadata.name")?;
        let uid = required(cv, cv.metadata.uid.as_deref(), "metadata.uid")?;
        let ip = required(cv, cv.spec.target_ip.as_deref(), "spec.targetIP")?;
        let capacity = required(
            cv,
            cv.spec.capacity.as_ref().map(|q| q.0.as_str()),
            "spec.capacity",
        )?;
        let rf = cv.spec.replication_factor.unwrap_or(0);
        let cf = cv.spec.consistency_factor.unwrap_or(0);
        let drf = match cv.spec.desired_replication_factor.unwrap_or(0) {
            0 => rf,
            n => n,
        };
        let storage = match &opts.lun_storage {
            LunStorage::Replicated => format!("{capacity} 32k"),
            LunStorage::File { path, size } => format!("{} {size}", path.display()),
        };
        Ok(Self {
            name,
            uid,
            ip,
            rf,
            cf,
            drf,
            storage,
        })
    }
}

// `write!` into a String cannot fail: the section writers below ignore its result.

/// `[Global]`: file locations and iSCSI session limits.
fn write_global(s: &mut String, opts: &ConfOptions) {
    let _ = write!(
        s,
        "# Global section\n\
         [Global]\n\
         \x20 NodeBase \"{IQN_PREFIX}\"\n\
         \x20 PidFile \"{pid}\"\n\
         \x20 AuthFile \"{auth}\"\n\
         \x20 LogFile \"{log}\"\n\
         \x20 Luworkers 6\n\
         \x20 MediaDirectory \"{media}\"\n\
         \x20 Timeout 60\n\
         \x20 NopInInterval 20\n\
         \x20 TCPUserTimeout 120\n\
         \x20 MaxR2T 16\n\
         \x20 DiscoveryAuthMethod None\n\
         \x20 DiscoveryAuthGroup None\n\
         \x20 MaxSessions 32\n\
         \x20 MaxConnections 4\n\
         \x20 FirstBurstLength 262144\n\
         \x20 MaxBurstLength 1048576\n\
         \x20 MaxRecvDataSegmentLength 262144\n\
         \x20 MaxOutstandingR2T 16\n\
         \x20 DefaultTime2Wait 2\n\
         \x20 DefaultTime2Retain 20\n\
         \x20 OperationalMode 0\n",
        pid = opts.pid_file,
        auth = opts.auth_file,
        log = opts.log_file,
        media = opts.media_directory,
    );
}

/// `[UnitControl]` and `[PortalGroup1]`: where the target listens, on the volume's IP.
fn write_portals(s: &mut String, ip: &str, opts: &ConfOptions) {
    let _ = write!(
        s,
        "# UnitControl section\n\
         [UnitControl]\n\
         \x20 AuthMethod None\n\
         \x20 AuthGroup None\n\
         \x20 Portal UC1 {ip}:{ucport}\n\
         \x20 Netmask {ip}/8\n\
         \n\
         # PortalGroup section\n\
         [PortalGroup1]\n\
         \x20 Portal DA1 {ip}:{port}\n",
        ucport = opts.unit_control_port,
        port = opts.iscsi_port,
    );
}

/// `[InitiatorGroup1]` lets every initiator in; `[InitiatorGroup2]` none.
fn write_initiator_groups(s: &mut String) {
    s.push_str(
        "# InitiatorGroup section\n\
         [InitiatorGroup1]\n\
         \x20 InitiatorName \"ALL\"\n\
         \x20 Netmask \"ALL\"\n\
         \n\
         [InitiatorGroup2]\n\
         \x20 InitiatorName \"None\"\n\
         \x20 Netmask \"None\"\n",
    );
}

/// `[LogicalUnit1]`: the volume itself, its replication settings and LUN0's storage.
fn write_logical_unit(s: &mut String, unit: &LogicalUnit<'_>) {
    let LogicalUnit {
        name,
        uid,
        rf,
        cf,
        drf,
        storage,
        ..
    } = unit;
    let _ = write!(
        s,
        "# LogicalUnit section\n\
         [LogicalUnit1]\n\
         \x20 TargetName {name}\n\
         \x20 TargetAlias nicknamefor-{name}\n\
         \x20 Mapping PortalGroup1 InitiatorGroup1\n\
         \x20 AuthMethod None\n\
         \x20 AuthGroup None\n\
         \x20 UseDigest Auto\n\
         \x20 ReadOnly No\n\
         \x20 DesiredReplicationFactor {drf}\n\
         \x20 ReplicationFactor {rf}\n\
         \x20 ConsistencyFactor {cf}\n\
         \x20 UnitType Disk\n\
         \x20 UnitOnline Yes\n\
         \x20 BlockLength 512\n\
         \x20 QueueDepth 32\n\
         \x20 Luworkers 6\n\
         \x20 UnitInquiry \"OpenEBS\" \"iscsi\" \"0\" \"{uid}\"\n\
         \x20 PhysRecordLength 4096\n\
         \x20 LUN0 Storage {storage}\n\
         \x20 LUN0 Option Unmap Disable\n\
         \x20 LUN0 Option WZero Disable\n\
         \x20 LUN0 Option ATS Disable\n\
         \x20 LUN0 Option XCOPY Disable\n",
    );
}

/// One `Replica` line (in the logical unit) per known replica, sorted by replica ID.
fn write_replicas(s: &mut String, cv: &CStorVolume) {
    if let Some(known) = cv
        .spec
        .replica_details
        .as_ref()
        .and_then(|d| d.known_replicas.as_ref())
    {
        for (id, guid) in known {
            let _ = writeln!(s, "  {}", replica_line(id, guid));
        }
    }
}

/// `Replica <id> <guid>` (without indentation).
pub fn replica_line(id: &str, guid: &str) -> String {
    format!("Replica {id} {guid}")
}

/// Replaces the first line containing `key` with `new_line` (upstream `Updatefile`).
pub fn replace_line_containing(text: &str, key: &str, new_line: &str) -> Result<String, ConfError> {
    let mut lines: Vec<&str> = text.lines().collect();
    let idx = lines
        .iter()
        .position(|l| l.contains(key))
        .ok_or_else(|| ConfError::KeyNotFound {
            key: key.to_owned(),
        })?;
    lines[idx] = new_line;
    Ok(join(&lines))
}

/// For each `(key, line)`: replaces the first line starting with `key` by `line`, or appends
/// `line` when none does; an empty `line` deletes the matched line (upstream
/// `UpdateOrAppendMultipleLines`). Keys include their indentation (`"  Replica 123"`).
pub fn update_or_append(text: &str, edits: &[(String, String)]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    for (key, line) in edits {
        match lines.iter().position(|l| l.starts_with(key.as_str())) {
            Some(i) if line.is_empty() => {
                lines.remove(i);
            }
            Some(i) => lines[i] = line.clone(),
            None if line.is_empty() => {}
            None => lines.push(line.clone()),
        }
    }
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    join(&refs)
}

fn join(lines: &[&str]) -> String {
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

/// The value at the end of the first line containing `key` (`"  DesiredReplicationFactor 3"` →
/// `"3"`), if any.
pub fn value_of(text: &str, key: &str) -> Option<String> {
    text.lines()
        .find(|l| l.contains(key))
        .and_then(|l| l.split_whitespace().last())
        .map(str::to_owned)
}

/// `istgt.conf` on disk, with every read-modify-write serialised.
#[derive(Debug)]
pub struct IstgtConf {
    path: PathBuf,
    lock: Mutex<()>,
}

impl IstgtConf {
    /// The file at `path` (not touched until used).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            lock: Mutex::new(()),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Current contents.
    pub async fn read(&self) -> Result<String, ConfError> {
        let _g = self.lock.lock().await;
        self.read_unlocked().await
    }

    /// Replaces the whole file (mode 0644).
    pub async fn write(&self, text: &str) -> Result<(), ConfError> {
        let _g = self.lock.lock().await;
        self.write_unlocked(text).await
    }

    /// Applies `edit` to the contents under the lock and writes the result.
    pub async fn edit<F>(&self, edit: F) -> Result<(), ConfError>
    where
        F: FnOnce(&str) -> Result<String, ConfError>,
    {
        let _g = self.lock.lock().await;
        let text = self.read_unlocked().await?;
        let new = edit(&text)?;
        self.write_unlocked(&new).await
    }

    async fn read_unlocked(&self) -> Result<String, ConfError> {
        tokio::fs::read_to_string(&self.path)
            .await
            .map_err(|source| ConfError::Io {
                action: "read",
                path: self.path.clone(),
                source,
            })
    }

    async fn write_unlocked(&self, text: &str) -> Result<(), ConfError> {
        let io = |source| ConfError::Io {
            action: "write",
            path: self.path.clone(),
            source,
        };
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir).await.map_err(io)?;
        }
        let tmp = self.path.with_extension("conf.tmp");
        tokio::fs::write(&tmp, text).await.map_err(io)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            tokio::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644))
                .await
                .map_err(io)?;
        }
        tokio::fs::rename(&tmp, &self.path).await.map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_containing_replaces_first_match_only() {
        let t = "a\n  DesiredReplicationFactor 3\n  DesiredReplicationFactor 9\n";
        let out = replace_line_containing(
            t,
            "  DesiredReplicationFactor",
            "  DesiredReplicationFactor 4",
        )
        .unwrap();
        assert_eq!(
            out,
            "a\n  DesiredReplicationFactor 4\n  DesiredReplicationFactor 9\n"
        );
        assert!(matches!(
            replace_line_containing(t, "Nope", "x"),
            Err(ConfError::KeyNotFound { key }) if key == "Nope"
        ));
    }

    #[test]
    fn update_or_append_replaces_appends_and_deletes() {
        let t = "[LogicalUnit1]\n  ReplicationFactor 3\n  Replica 1 11\n  Replica 2 22\n";
        let out = update_or_append(
            t,
            &[
                ("  ReplicationFactor".into(), "  ReplicationFactor 2".into()),
                ("  Replica 2".into(), String::new()),
                ("  Replica 3".into(), "  Replica 3 33".into()),
                ("  Replica 9".into(), String::new()),
            ],
        );
        assert_eq!(
            out,
            "[LogicalUnit1]\n  ReplicationFactor 2\n  Replica 1 11\n  Replica 3 33\n"
        );
    }

    #[test]
    fn value_of_reads_last_word() {
        assert_eq!(
            value_of("x\n  ConsistencyFactor 2\n", "ConsistencyFactor").as_deref(),
            Some("2")
        );
        assert_eq!(value_of("x\n", "ConsistencyFactor"), None);
    }
}
