//! Volume capabilities cStor volumes support: the single-node access modes, as a mount volume
//! (ext4 or xfs) or a raw block device.

use cstor_api::proto::csi::v1::{
    VolumeCapability,
    volume_capability::{AccessType, access_mode::Mode},
};

use crate::params::FsType;

/// Access modes a cStor volume supports (one iSCSI initiator at a time).
pub const SUPPORTED_MODES: [Mode; 4] = [
    Mode::SingleNodeWriter,
    Mode::SingleNodeReaderOnly,
    Mode::SingleNodeSingleWriter,
    Mode::SingleNodeMultiWriter,
];

/// How a capability asks to use the volume.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// A filesystem of this type.
    Mount(FsType),
    /// A raw block device.
    Block,
}

/// Why a capability is unusable. `index` is the position in the request's list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapabilityError {
    /// No capability at all.
    #[error("volume_capabilities is empty: at least one capability is required")]
    Empty,
    /// `access_mode` is absent.
    #[error("volume_capabilities[{index}]: access_mode is missing")]
    MissingMode {
        /// Position.
        index: usize,
    },
    /// An access mode we do not serve.
    #[error(
        "volume_capabilities[{index}]: access mode {mode} is not supported; cStor volumes are single-node \
         (SINGLE_NODE_WRITER, SINGLE_NODE_READER_ONLY, SINGLE_NODE_SINGLE_WRITER, SINGLE_NODE_MULTI_WRITER)"
    )]
    Mode {
        /// Position.
        index: usize,
        /// The mode's name (or number when unknown).
        mode: String,
    },
    /// Neither `mount` nor `block`.
    #[error("volume_capabilities[{index}]: access_type is missing (set mount or block)")]
    MissingType {
        /// Position.
        index: usize,
    },
    /// A filesystem we cannot create.
    #[error(
        "volume_capabilities[{index}]: filesystem {fs_type:?} is not supported; use ext4 or xfs"
    )]
    FsType {
        /// Position.
        index: usize,
        /// The filesystem asked for.
        fs_type: String,
    },
}

/// Checks every capability; an empty `mount.fs_type` resolves to `default_fs` (the StorageClass
/// `fsType`, else ext4).
pub fn check_all(
    caps: &[VolumeCapability],
    default_fs: Option<FsType>,
) -> Result<Vec<Access>, CapabilityError> {
    if caps.is_empty() {
        return Err(CapabilityError::Empty);
    }
    caps.iter()
        .enumerate()
        .map(|(index, cap)| check_one(index, cap, default_fs))
        .collect()
}

/// Checks one capability (see [`check_all`]).
pub fn check_one(
    index: usize,
    cap: &VolumeCapability,
    default_fs: Option<FsType>,
) -> Result<Access, CapabilityError> {
    let mode = cap
        .access_mode
        .as_ref()
        .ok_or(CapabilityError::MissingMode { index })?
        .mode;
    match Mode::try_from(mode) {
        Ok(m) if SUPPORTED_MODES.contains(&m) => {}
        Ok(m) => {
            return Err(CapabilityError::Mode {
                index,
                mode: m.as_str_name().to_owned(),
            });
        }
        Err(_) => {
            return Err(CapabilityError::Mode {
                index,
                mode: format!("{mode} (unknown)"),
            });
        }
    }
    match cap
        .access_type
        .as_ref()
        .ok_or(CapabilityError::MissingType { index })?
    {
        AccessType::Block(_) => Ok(Access::Block),
        AccessType::Mount(m) if m.fs_type.is_empty() => {
            Ok(Access::Mount(default_fs.unwrap_or(FsType::Ext4)))
        }
        AccessType::Mount(m) => {
            FsType::parse(&m.fs_type)
                .map(Access::Mount)
                .ok_or_else(|| CapabilityError::FsType {
                    index,
                    fs_type: m.fs_type.clone(),
                })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cstor_api::proto::csi::v1::volume_capability::{AccessMode, BlockVolume, MountVolume};

    fn cap(mode: i32, access: Option<AccessType>) -> VolumeCapability {
        VolumeCapability {
            access_mode: Some(AccessMode { mode }),
            access_type: access,
        }
    }

    fn mount(fs: &str) -> Option<AccessType> {
        Some(AccessType::Mount(MountVolume {
            fs_type: fs.into(),
            ..Default::default()
        }))
    }

    #[test]
    fn single_node_modes_with_mount_or_block() {
        for m in SUPPORTED_MODES {
            assert_eq!(
                check_one(0, &cap(m as i32, mount("xfs")), None),
                Ok(Access::Mount(FsType::Xfs))
            );
            assert_eq!(
                check_one(
                    0,
                    &cap(m as i32, Some(AccessType::Block(BlockVolume {}))),
                    None
                ),
                Ok(Access::Block)
            );
        }
        assert_eq!(
            check_one(0, &cap(1, mount("")), Some(FsType::Xfs)),
            Ok(Access::Mount(FsType::Xfs))
        );
        assert_eq!(
            check_one(0, &cap(1, mount("")), None),
            Ok(Access::Mount(FsType::Ext4))
        );
    }

    #[test]
    fn refusals_name_the_capability_and_the_problem() {
        let err = check_all(&[cap(1, mount("ext4")), cap(5, mount("ext4"))], None).unwrap_err();
        assert!(
            err.to_string()
                .contains("volume_capabilities[1]: access mode MULTI_NODE_MULTI_WRITER"),
            "{err}"
        );
        assert!(
            check_one(0, &cap(0, mount("ext4")), None)
                .unwrap_err()
                .to_string()
                .contains("UNKNOWN")
        );
        assert!(
            check_one(0, &cap(42, mount("ext4")), None)
                .unwrap_err()
                .to_string()
                .contains("42 (unknown)")
        );
        assert!(
            check_one(0, &cap(1, mount("btrfs")), None)
                .unwrap_err()
                .to_string()
                .contains("\"btrfs\"")
        );
        assert_eq!(
            check_one(2, &cap(1, None), None),
            Err(CapabilityError::MissingType { index: 2 })
        );
        let no_mode = VolumeCapability {
            access_mode: None,
            access_type: mount("ext4"),
        };
        assert_eq!(
            check_one(0, &no_mode, None),
            Err(CapabilityError::MissingMode { index: 0 })
        );
        assert_eq!(check_all(&[], None), Err(CapabilityError::Empty));
    }
}
