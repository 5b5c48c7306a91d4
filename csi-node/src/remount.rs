//! Read-only remount recovery (upstream's `REMOUNT=true` monitor) and the start-up cleanup.
//!
//! A pass looks at this node's CStorVolumeAttachments and the mount table. A staged
//! filesystem whose staging mount went read-only (ext4 `errors=remount-ro`, xfs shutdown after
//! the target was lost) or vanished is remounted once its volume is Healthy/Degraded again and
//! the portal answers: the publish binds and the staging mount are unmounted, the device is
//! mounted read-write at the staging path and the publish target bound again (read-only if it
//! was). Attachments marked for deletion (another node staged the volume while this one was
//! away) are detached and their finalizer released.

use std::{path::Path, time::Duration};

use crate::{
    attach::IscsiTarget,
    error::{NodeError, Result},
    guard::Operation,
    kube::{AccessType, Attachment},
    node::NodeDriver,
};

/// What a pass did with one volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PassOutcome {
    Remounted {
        volume: String,
    },
    /// Not healthy, but not remounted now (volume not ready, busy, failure); retried next pass.
    Deferred {
        volume: String,
        reason: String,
    },
    CleanedUp {
        volume: String,
    },
}

impl NodeDriver {
    /// One monitor pass over this node's attachments.
    pub async fn remount_pass(&self) -> Result<Vec<PassOutcome>> {
        let cvas = self
            .inner
            .api
            .attachments_of_node(self.node())
            .await
            .map_err(NodeError::api(format!(
                "cannot list the CStorVolumeAttachments of node {}",
                self.node()
            )))?;
        let mut out = Vec::new();
        for cva in cvas {
            if cva.node != self.node() {
                continue;
            }
            if cva.deleting {
                match self.cleanup_one(&cva).await {
                    Ok(()) => out.push(PassOutcome::CleanedUp {
                        volume: cva.volume.clone(),
                    }),
                    Err(e) => out.push(PassOutcome::Deferred {
                        volume: cva.volume.clone(),
                        reason: e.to_string(),
                    }),
                }
                continue;
            }
            if cva.access_type != AccessType::Mount || cva.staging_target_path.is_empty() {
                continue;
            }
            let staging = Path::new(&cva.staging_target_path);
            let healthy = self
                .mounts()?
                .at(staging)
                .is_some_and(|m| !m.is_read_only());
            if healthy {
                continue;
            }
            match self.remount_one(&cva).await {
                Ok(()) => {
                    tracing::info!(volume = %cva.volume, "Remount successful for vol: {}", cva.volume);
                    out.push(PassOutcome::Remounted {
                        volume: cva.volume.clone(),
                    });
                }
                Err(e) => {
                    tracing::warn!(volume = %cva.volume, error = %e, "Remount failed for vol: {}", cva.volume);
                    out.push(PassOutcome::Deferred {
                        volume: cva.volume.clone(),
                        reason: e.to_string(),
                    });
                }
            }
        }
        Ok(out)
    }

    async fn remount_one(&self, cva: &Attachment) -> Result<()> {
        let volume = cva.volume.as_str();
        let _guard = self.guards().try_lock(volume, Operation::Remount)?;
        // Re-read under the guard: a stage or unstage may have finished meanwhile.
        let staging = Path::new(&cva.staging_target_path);
        if self
            .mounts()?
            .at(staging)
            .is_some_and(|m| !m.is_read_only())
        {
            return Ok(());
        }
        let target = self
            .inner
            .api
            .volume_target(volume)
            .await
            .map_err(NodeError::api(format!("cannot read CStorVolume {volume}")))?
            .filter(|t| t.is_ready())
            .ok_or_else(|| NodeError::NotReady(format!("Volume {volume} is not ready")))?;
        let reach = tokio::time::timeout(
            Duration::from_secs(2),
            tokio::net::TcpStream::connect(&target.target_portal),
        )
        .await;
        if !matches!(reach, Ok(Ok(_))) {
            return Err(NodeError::NotReady(format!(
                "Volume {volume} is not reachable at {}",
                target.target_portal
            )));
        }
        let device = Path::new(&cva.device_path);
        if !device.exists() {
            return Err(NodeError::Precondition(format!(
                "the device {} of volume {volume} is gone; the iSCSI session must be re-established (restart the pod to stage again)",
                cva.device_path
            )));
        }
        let pub_target = (!cva.target_path.is_empty()).then(|| Path::new(&cva.target_path));
        let table = self.mounts()?;
        let pub_ro = pub_target
            .and_then(|t| table.at(t))
            .is_some_and(|m| m.mount_options.contains_key("ro"));
        if let Some(t) = pub_target {
            self.unmount_all(t).await?;
        }
        self.unmount_all(staging).await?;
        let fs = (!cva.fs_type.is_empty()).then_some(cva.fs_type.as_str());
        self.inner
            .fs
            .mount(device, staging, fs, &["rw".to_string()])
            .await
            .map_err(NodeError::fs(format!(
                "cannot mount {} at {}",
                device.display(),
                staging.display()
            )))?;
        if let Some(t) = pub_target
            && t.exists()
        {
            self.inner
                .fs
                .bind(staging, t, pub_ro, &[])
                .await
                .map_err(NodeError::fs(format!(
                    "cannot bind {} at {}",
                    staging.display(),
                    t.display()
                )))?;
        }
        Ok(())
    }

    /// Detaches a volume whose attachment is being deleted, then releases the finalizer.
    async fn cleanup_one(&self, cva: &Attachment) -> Result<()> {
        let volume = cva.volume.as_str();
        let _guard = self.guards().try_lock(volume, Operation::Cleanup)?;
        if !cva.target_path.is_empty() {
            self.unmount_all(Path::new(&cva.target_path)).await?;
        }
        if !cva.staging_target_path.is_empty() {
            self.unmount_staging(volume, Path::new(&cva.staging_target_path))
                .await?;
        }
        if !cva.iqn.is_empty() && !cva.target_portal.is_empty() {
            self.inner
                .attacher
                .detach(&IscsiTarget::new(&cva.iqn, &cva.target_portal))
                .await
                .map_err(NodeError::attach(format!("cannot detach volume {volume}")))?;
        }
        let mut c = cva.clone();
        c.finalizers.retain(|f| f != self.node());
        c.staging_target_path.clear();
        c.target_path.clear();
        self.inner
            .api
            .update_attachment(&c)
            .await
            .map_err(NodeError::api(format!(
                "cannot release CStorVolumeAttachment {}",
                cva.name
            )))?;
        tracing::info!(volume, cva = %cva.name, "cleaned up an attachment being deleted");
        Ok(())
    }

    /// Start-up cleanup: detach every attachment of this node that is being deleted.
    pub async fn cleanup(&self) -> Result<Vec<PassOutcome>> {
        let cvas = self
            .inner
            .api
            .attachments_of_node(self.node())
            .await
            .map_err(NodeError::api(format!(
                "cannot list the CStorVolumeAttachments of node {}",
                self.node()
            )))?;
        let mut out = Vec::new();
        for cva in cvas
            .into_iter()
            .filter(|c| c.deleting && c.node == self.node())
        {
            match self.cleanup_one(&cva).await {
                Ok(()) => out.push(PassOutcome::CleanedUp { volume: cva.volume }),
                Err(e) => out.push(PassOutcome::Deferred {
                    volume: cva.volume,
                    reason: e.to_string(),
                }),
            }
        }
        Ok(out)
    }

    /// Runs [`NodeDriver::remount_pass`] every `interval` until `shutdown` resolves.
    pub async fn run_remount_monitor(
        &self,
        interval: Duration,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tick.tick() => {
                    if let Err(e) = self.remount_pass().await {
                        tracing::warn!(error = %e, "remount monitor pass failed");
                    }
                }
            }
        }
    }
}
