//! The kernel's mount table, read fresh before every decision (`/proc/thread-self/mountinfo`,
//! parsed with `procfs-core`). Nothing about mounts is remembered between calls, so repeated
//! RPCs and restarts of the plugin see exactly what the kernel sees.

use std::{
    collections::HashMap,
    io::BufReader,
    path::{Path, PathBuf},
};

use procfs_core::{FromBufRead, process::MountInfos};

/// Where the calling thread's mount namespace is described. `thread-self` rather than `self`:
/// a thread that entered its own mount namespace (the tests do) must see its own mounts.
pub const DEFAULT_MOUNTINFO: &str = "/proc/thread-self/mountinfo";

/// One mount, with octal escapes (`\040` for a space, ...) decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// `major:minor` of the filesystem's device.
    pub majmin: String,
    /// Directory of the filesystem mounted here (`/` unless this is a bind of a subdirectory).
    pub root: String,
    pub mount_point: PathBuf,
    pub fs_type: String,
    /// Device or pseudo source (`/dev/loop3`, `tmpfs`, ...); empty when the kernel says `none`.
    pub source: String,
    /// Per-mount options (`rw`/`ro`, `nosuid`, ...).
    pub mount_options: HashMap<String, Option<String>>,
    /// Per-filesystem options; `ro` here means the filesystem itself went read-only (for
    /// example ext4 `errors=remount-ro` after an I/O error).
    pub super_options: HashMap<String, Option<String>>,
}

impl Mount {
    /// True when writes through this mount are refused, by the mount or by the filesystem.
    pub fn is_read_only(&self) -> bool {
        self.mount_options.contains_key("ro") || self.super_options.contains_key("ro")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MountTableError {
    #[error("cannot read the mount table {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot parse the mount table {path}: {message}")]
    Parse { path: String, message: String },
}

/// A snapshot of the mount table.
#[derive(Clone, Debug, Default)]
pub struct MountTable {
    pub mounts: Vec<Mount>,
}

impl MountTable {
    /// Reads the calling thread's mount table.
    pub fn read() -> Result<Self, MountTableError> {
        Self::read_from(Path::new(DEFAULT_MOUNTINFO))
    }

    pub fn read_from(path: &Path) -> Result<Self, MountTableError> {
        let file = std::fs::File::open(path).map_err(|source| MountTableError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(BufReader::new(file), &path.display().to_string())
    }

    /// Parses mountinfo text (`what` names it in errors).
    pub fn parse(text: impl std::io::BufRead, what: &str) -> Result<Self, MountTableError> {
        let infos = MountInfos::from_buf_read(text).map_err(|e| MountTableError::Parse {
            path: what.to_string(),
            message: e.to_string(),
        })?;
        let mounts = infos
            .into_iter()
            .map(|m| Mount {
                majmin: m.majmin,
                root: unescape(&m.root),
                mount_point: PathBuf::from(unescape(&m.mount_point.to_string_lossy())),
                fs_type: m.fs_type,
                source: m.mount_source.as_deref().map(unescape).unwrap_or_default(),
                mount_options: m.mount_options,
                super_options: m.super_options,
            })
            .collect();
        Ok(Self { mounts })
    }

    /// The mount visible at `path` (the last one mounted there, which hides the others).
    pub fn at(&self, path: &Path) -> Option<&Mount> {
        let path = normalize(path);
        self.mounts.iter().rev().find(|m| m.mount_point == path)
    }

    /// Every mount stacked at `path`, oldest first.
    pub fn all_at(&self, path: &Path) -> Vec<&Mount> {
        let path = normalize(path);
        self.mounts
            .iter()
            .filter(|m| m.mount_point == path)
            .collect()
    }

    pub fn is_mount_point(&self, path: &Path) -> bool {
        self.at(path).is_some()
    }

    /// Every mount of the filesystem with device number `majmin` (the device itself, its
    /// binds, ...).
    pub fn of_majmin(&self, majmin: &str) -> Vec<&Mount> {
        self.mounts.iter().filter(|m| m.majmin == majmin).collect()
    }

    /// Every mount of block device `device` (symlinks such as by-path links are resolved).
    pub fn of_device(&self, device: &Path) -> Vec<&Mount> {
        match device_majmin(device) {
            Some(mm) => self.of_majmin(&mm),
            None => Vec::new(),
        }
    }
}

/// `major:minor` of a block device node (following symlinks), as mountinfo writes it.
pub fn device_majmin(device: &Path) -> Option<String> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let meta = std::fs::metadata(device).ok()?;
    if !meta.file_type().is_block_device() {
        return None;
    }
    let rdev = meta.rdev();
    Some(format!(
        "{}:{}",
        nix::sys::stat::major(rdev),
        nix::sys::stat::minor(rdev)
    ))
}

/// Removes a trailing `/` and `.` components so paths compare like the kernel prints them.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Decodes mountinfo's octal escapes (`\040` space, `\011` tab, `\012` newline, `\134` `\`).
fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 4 <= bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (bytes[i + 1] - b'0') as u32 * 64
                + (bytes[i + 2] - b'0') as u32 * 8
                + (bytes[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
101 22 7:3 / /var/lib/kubelet/plugins/kubernetes.io/csi/cstor.csi.openebs.io/abc/globalmount rw,relatime shared:50 - ext4 /dev/loop3 rw
102 22 7:3 / /var/lib/kubelet/pods/p1/volumes/kubernetes.io~csi/pvc-1/mount ro,relatime shared:50 - ext4 /dev/loop3 rw
103 22 7:4 / /mnt/with\\040space rw - xfs /dev/loop4 ro,attr2
104 22 0:5 / /dev/shm rw,nosuid - tmpfs none rw
";

    #[test]
    fn parses_and_queries() {
        let t = MountTable::parse(SAMPLE.as_bytes(), "sample").unwrap();
        assert_eq!(t.mounts.len(), 5);
        let g = t
            .at(Path::new(
                "/var/lib/kubelet/plugins/kubernetes.io/csi/cstor.csi.openebs.io/abc/globalmount/",
            ))
            .expect("trailing slash is ignored");
        assert_eq!(g.source, "/dev/loop3");
        assert!(!g.is_read_only());
        assert_eq!(t.of_majmin("7:3").len(), 2);
        let p = &t.of_majmin("7:3")[1];
        assert!(p.is_read_only(), "per-mount ro");
        let s = t.at(Path::new("/mnt/with space")).expect("unescaped");
        assert!(s.is_read_only(), "filesystem-level ro");
        assert_eq!(t.at(Path::new("/dev/shm")).unwrap().source, "");
        assert!(!t.is_mount_point(Path::new("/mnt")));
    }

    #[test]
    fn refuses_garbage() {
        let err = MountTable::parse("not a mount line\n".as_bytes(), "junk").unwrap_err();
        assert!(err.to_string().contains("junk"), "{err}");
    }

    #[test]
    fn reads_own_table() {
        let t = MountTable::read().unwrap();
        assert!(t.is_mount_point(Path::new("/")) || !t.mounts.is_empty());
    }
}
