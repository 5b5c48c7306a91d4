//! Makes sure a zfs-fuse daemon answers (the testkit's shared start-up).

/// `Ok` once `zpool list` answers; `Err(reason)` when zfs-fuse is missing.
pub async fn ensure_zfs_fuse() -> Result<(), String> {
    cstor_testkit::zfs_fuse::ensure_zfs_fuse()
        .await
        .map_err(|m| m.to_string())
}
