//! Filesystem operations on a block device, every one an external command through the runner
//! seam: probe (blkid), format (mkfs.ext4 / mkfs.xfs), check (fsck), mount, bind, unmount,
//! grow (resize2fs / xfs_growfs) and the device size (blockdev).

use std::{path::Path, sync::Arc, time::Duration};

use cstor_api::exec::{Cmd, ExecError, Runner};

/// Filesystems the driver creates and grows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsType {
    Ext4,
    Xfs,
}

impl FsType {
    pub const SUPPORTED: &'static str = "ext4, xfs";

    /// Parses a CSI `fs_type`; empty means the default, ext4 (as upstream).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "" | "ext4" => Some(FsType::Ext4),
            "xfs" => Some(FsType::Xfs),
            _ => None,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            FsType::Ext4 => "ext4",
            FsType::Xfs => "xfs",
        }
    }
}

impl std::fmt::Display for FsType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What blkid found on a device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probe {
    /// Nothing recognisable: safe to format.
    Empty,
    /// A filesystem (or other signature) of this type.
    Filesystem(String),
    /// A partition table of this type: never formatted.
    PartitionTable(String),
}

#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error(
        "device {device} holds a {found} filesystem but {wanted} was requested; it is never reformatted: \
         request fsType {found} or wipe the device yourself"
    )]
    OtherFilesystem {
        device: String,
        found: String,
        wanted: FsType,
    },
    #[error(
        "device {device} holds a {table} partition table; it is never formatted: use an empty device or remove the partitions"
    )]
    Partitioned { device: String, table: String },
    #[error(
        "fsck found errors on {device} it could not correct (exit {code}): repair it by hand (fsck -y {device}) before staging: {output}"
    )]
    Uncorrectable {
        device: String,
        code: i32,
        output: String,
    },
    #[error("`blockdev --getsize64 {device}` printed {output:?}, not a size")]
    BadSize { device: String, output: String },
}

/// Runs filesystem tools through the runner.
#[derive(Clone, Debug)]
pub struct Fs {
    runner: Arc<dyn Runner>,
}

/// mkfs of a large device can take a while.
const MKFS_TIMEOUT: Duration = Duration::from_secs(600);

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

impl Fs {
    pub fn new(runner: Arc<dyn Runner>) -> Self {
        Self { runner }
    }

    pub fn runner(&self) -> &Arc<dyn Runner> {
        &self.runner
    }

    /// `blkid -p -s TYPE -s PTTYPE -o export <dev>`; exit 2 means nothing was found.
    pub async fn probe(&self, device: &Path) -> Result<Probe, FsError> {
        let cmd = Cmd::new("blkid").args([
            "-p",
            "-s",
            "TYPE",
            "-s",
            "PTTYPE",
            "-o",
            "export",
            &path_str(device),
        ]);
        let out = self.runner.run(&cmd).await?;
        if out.code == Some(2) {
            return Ok(Probe::Empty);
        }
        let out = out.check(&cmd)?;
        let mut fs = None;
        let mut pt = None;
        for line in out.stdout.lines() {
            if let Some(v) = line.strip_prefix("TYPE=") {
                fs = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("PTTYPE=") {
                pt = Some(v.trim().to_string());
            }
        }
        Ok(match (fs, pt) {
            (Some(t), _) if !t.is_empty() => Probe::Filesystem(t),
            (_, Some(t)) if !t.is_empty() => Probe::PartitionTable(t),
            _ => Probe::Empty,
        })
    }

    /// Creates a filesystem. Callers must have probed the device empty first.
    pub async fn format(&self, device: &Path, fs: FsType) -> Result<(), FsError> {
        let dev = path_str(device);
        let cmd = match fs {
            FsType::Ext4 => Cmd::new("mkfs.ext4").args(["-F", "-m0", &dev]),
            FsType::Xfs => Cmd::new("mkfs.xfs").arg(&dev),
        }
        .timeout(MKFS_TIMEOUT);
        self.runner.run_ok(&cmd).await?;
        Ok(())
    }

    /// Makes sure `device` holds a filesystem of type `fs`: formats it when (and only when) it
    /// holds nothing, checks it with fsck otherwise. Returns true when it formatted.
    pub async fn ensure_filesystem(&self, device: &Path, fs: FsType) -> Result<bool, FsError> {
        match self.probe(device).await? {
            Probe::Empty => {
                tracing::info!(device = %device.display(), %fs, "no filesystem found, formatting");
                self.format(device, fs).await?;
                Ok(true)
            }
            Probe::PartitionTable(table) => Err(FsError::Partitioned {
                device: path_str(device),
                table,
            }),
            Probe::Filesystem(found) if found != fs.as_str() => Err(FsError::OtherFilesystem {
                device: path_str(device),
                found,
                wanted: fs,
            }),
            Probe::Filesystem(_) => {
                self.fsck(device).await?;
                Ok(false)
            }
        }
    }

    /// `fsck -a <dev>`: 0 clean, 1 errors corrected (fine); 4 and up is a failure.
    pub async fn fsck(&self, device: &Path) -> Result<(), FsError> {
        let cmd = Cmd::new("fsck")
            .args(["-a", &path_str(device)])
            .timeout(MKFS_TIMEOUT);
        let out = self.runner.run(&cmd).await?;
        match out.code {
            Some(0) => Ok(()),
            Some(1) => {
                tracing::warn!(device = %device.display(), "fsck corrected errors");
                Ok(())
            }
            Some(code) if code & 4 != 0 => Err(FsError::Uncorrectable {
                device: path_str(device),
                code,
                output: format!("{}{}", out.stdout.trim(), out.stderr.trim()),
            }),
            _ => {
                out.check(&cmd)?;
                Ok(())
            }
        }
    }

    /// `mount -t <fs> [-o <opts>] <dev> <target>`.
    pub async fn mount(
        &self,
        device: &Path,
        target: &Path,
        fs: Option<&str>,
        options: &[String],
    ) -> Result<(), FsError> {
        let mut cmd = Cmd::new("mount");
        if let Some(fs) = fs {
            cmd = cmd.args(["-t", fs]);
        }
        if !options.is_empty() {
            cmd = cmd.args(["-o".to_string(), options.join(",")]);
        }
        cmd = cmd.args([path_str(device), path_str(target)]);
        self.runner.run_ok(&cmd).await?;
        Ok(())
    }

    /// Bind-mounts `source` on `target`; with `readonly` or extra `options` the bind is then
    /// remounted with them (a bind mount ignores options given on its first mount).
    pub async fn bind(
        &self,
        source: &Path,
        target: &Path,
        readonly: bool,
        options: &[String],
    ) -> Result<(), FsError> {
        let cmd =
            Cmd::new("mount").args(["--bind".to_string(), path_str(source), path_str(target)]);
        self.runner.run_ok(&cmd).await?;
        if readonly || !options.is_empty() {
            let mut opts = vec!["remount".to_string(), "bind".to_string()];
            if readonly {
                opts.push("ro".into());
            }
            opts.extend(
                options
                    .iter()
                    .filter(|o| *o != "bind" && *o != "remount")
                    .cloned(),
            );
            let cmd = Cmd::new("mount").args(["-o".to_string(), opts.join(","), path_str(target)]);
            if let Err(e) = self.runner.run_ok(&cmd).await {
                // Do not leave a writable bind behind when read-only was asked for.
                let _ = self.umount(target).await;
                return Err(e.into());
            }
        }
        Ok(())
    }

    /// `mount -o remount,<opts> <target>`.
    pub async fn remount(&self, target: &Path, options: &[&str]) -> Result<(), FsError> {
        let mut opts = vec!["remount"];
        opts.extend_from_slice(options);
        let cmd = Cmd::new("mount").args(["-o".to_string(), opts.join(","), path_str(target)]);
        self.runner.run_ok(&cmd).await?;
        Ok(())
    }

    /// `umount <target>`.
    pub async fn umount(&self, target: &Path) -> Result<(), FsError> {
        self.runner
            .run_ok(&Cmd::new("umount").arg(path_str(target)))
            .await?;
        Ok(())
    }

    /// Grows the filesystem to fill its device: `xfs_growfs <mount point>` (online) or
    /// `resize2fs <device>`.
    pub async fn grow(&self, fs: FsType, device: &Path, mount_point: &Path) -> Result<(), FsError> {
        let cmd = match fs {
            FsType::Xfs => Cmd::new("xfs_growfs").arg(path_str(mount_point)),
            FsType::Ext4 => Cmd::new("resize2fs").arg(path_str(device)),
        }
        .timeout(MKFS_TIMEOUT);
        self.runner.run_ok(&cmd).await?;
        Ok(())
    }

    /// Marks a block device read-only or read-write in the kernel (`blockdev --setro/--setrw`).
    /// A read-only bind of a device node does not stop writes through it; this does.
    pub async fn set_read_only(&self, device: &Path, read_only: bool) -> Result<(), FsError> {
        let flag = if read_only { "--setro" } else { "--setrw" };
        self.runner
            .run_ok(&Cmd::new("blockdev").args([flag, &path_str(device)]))
            .await?;
        Ok(())
    }

    /// Size of a block device in bytes (`blockdev --getsize64`).
    pub async fn device_size(&self, device: &Path) -> Result<u64, FsError> {
        let out = self
            .runner
            .run_ok(&Cmd::new("blockdev").args(["--getsize64", &path_str(device)]))
            .await?;
        out.stdout.trim().parse().map_err(|_| FsError::BadSize {
            device: path_str(device),
            output: out.stdout.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cstor_api::exec::{Output, RecordingRunner, ScriptedRunner};

    fn fs_with(s: ScriptedRunner) -> (Fs, RecordingRunner) {
        let rec = RecordingRunner::new(Arc::new(s));
        (Fs::new(Arc::new(rec.clone())), rec)
    }

    #[tokio::test]
    async fn formats_only_an_empty_device() {
        let s = ScriptedRunner::new();
        s.on_line(
            "blkid -p -s TYPE -s PTTYPE -o export /dev/x",
            Output::fail(2, ""),
        );
        s.on_line("mkfs.xfs /dev/x", Output::ok(""));
        let (fs, rec) = fs_with(s);
        assert!(
            fs.ensure_filesystem(Path::new("/dev/x"), FsType::Xfs)
                .await
                .unwrap()
        );
        assert_eq!(rec.lines().last().unwrap(), "mkfs.xfs /dev/x");
    }

    #[tokio::test]
    async fn never_formats_another_filesystem_or_a_partition_table() {
        let s = ScriptedRunner::new();
        s.on_line(
            "blkid -p -s TYPE -s PTTYPE -o export /dev/x",
            Output::ok("DEVNAME=/dev/x\nTYPE=xfs\n"),
        );
        s.on_line(
            "blkid -p -s TYPE -s PTTYPE -o export /dev/p",
            Output::ok("DEVNAME=/dev/p\nPTTYPE=gpt\n"),
        );
        let (fs, rec) = fs_with(s);
        let err = fs
            .ensure_filesystem(Path::new("/dev/x"), FsType::Ext4)
            .await
            .unwrap_err();
        assert!(matches!(err, FsError::OtherFilesystem { .. }), "{err}");
        assert!(err.to_string().contains("holds a xfs filesystem"), "{err}");
        let err = fs
            .ensure_filesystem(Path::new("/dev/p"), FsType::Ext4)
            .await
            .unwrap_err();
        assert!(matches!(err, FsError::Partitioned { .. }), "{err}");
        assert!(rec.lines().iter().all(|l| !l.starts_with("mkfs")));
    }

    #[tokio::test]
    async fn fsck_exit_codes() {
        let s = ScriptedRunner::new();
        s.on_line("fsck -a /dev/ok", Output::fail(1, "fixed"));
        s.on_line("fsck -a /dev/bad", Output::fail(4, "uncorrected"));
        s.on_line("fsck -a /dev/gone", Output::fail(8, "no such device"));
        let (fs, _) = fs_with(s);
        fs.fsck(Path::new("/dev/ok")).await.unwrap();
        let e = fs.fsck(Path::new("/dev/bad")).await.unwrap_err();
        assert!(matches!(e, FsError::Uncorrectable { code: 4, .. }), "{e}");
        let e = fs.fsck(Path::new("/dev/gone")).await.unwrap_err();
        assert!(matches!(e, FsError::Exec(_)), "{e}");
    }

    #[tokio::test]
    async fn readonly_bind_is_remounted_and_undone_on_failure() {
        let s = ScriptedRunner::new();
        s.on_line("mount --bind /s /t", Output::ok(""));
        s.on_line(
            "mount -o remount,bind,ro,noatime /t",
            Output::fail(32, "nope"),
        );
        s.on_line("umount /t", Output::ok(""));
        let (fs, rec) = fs_with(s);
        fs.bind(
            Path::new("/s"),
            Path::new("/t"),
            true,
            &["noatime".into(), "bind".into()],
        )
        .await
        .unwrap_err();
        assert_eq!(
            rec.lines(),
            vec![
                "mount --bind /s /t",
                "mount -o remount,bind,ro,noatime /t",
                "umount /t"
            ]
        );
    }
}
