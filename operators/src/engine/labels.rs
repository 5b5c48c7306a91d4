//! Clearing ZFS labels where the zpool build has no `labelclear` (zfs-fuse 0.7).
//!
//! A vdev carries four 256 KiB labels: two at the start and two at the end of the device
//! (the end being the size rounded down to 256 KiB). Zeroing them is what `zpool labelclear`
//! does; afterwards `zpool import` no longer finds the device.

use std::{
    fs::OpenOptions,
    io::{Seek, SeekFrom, Write},
};

use super::error::EngineError;

const LABEL_SIZE: u64 = 256 * 1024;

/// Zeroes the four ZFS labels of a file or block device.
pub(crate) fn wipe_labels(path: &str) -> Result<(), EngineError> {
    let io = |action: &'static str| {
        move |source: std::io::Error| EngineError::Io {
            action,
            path: path.to_string(),
            source,
        }
    };
    let mut f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io("open for label clearing"))?;
    let size = f.seek(SeekFrom::End(0)).map_err(io("measure"))?;
    let aligned = size - size % LABEL_SIZE;
    let zeros = vec![0u8; (2 * LABEL_SIZE) as usize];
    let mut offsets = vec![0u64];
    if aligned >= 4 * LABEL_SIZE {
        offsets.push(aligned - 2 * LABEL_SIZE);
    }
    for off in offsets {
        let len = (2 * LABEL_SIZE).min(size.saturating_sub(off)) as usize;
        f.seek(SeekFrom::Start(off)).map_err(io("seek in"))?;
        f.write_all(&zeros[..len]).map_err(io("write zeros to"))?;
    }
    f.sync_all().map_err(io("sync"))?;
    Ok(())
}
