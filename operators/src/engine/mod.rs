//! The data-engine seam: zpool/zfs commands of the cStor data engine.
