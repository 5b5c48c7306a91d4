//! NodeStageVolume and NodeUnstageVolume.
//!
//! Stage: validate → per-volume guard → CVC Bound and CStorVolume Healthy/Degraded (waiting
//! with a deadline) → multi-attach check and this node's CStorVolumeAttachment written (with
//! the node name as finalizer) → already mounted at the staging path? done → target reachable →
//! iSCSI attach → (block: done) → blkid, mkfs only on an empty device, fsck otherwise → mount.
//! Every decision is taken from the mount table and the objects in the API, so a repeat, or a
//! retry after the plugin died half-way, converges.

use std::{path::Path, time::Duration};

use cstor_api::{
    naming::cva_name,
    proto::csi::v1::{
        NodeStageVolumeRequest, NodeStageVolumeResponse, NodeUnstageVolumeRequest,
        NodeUnstageVolumeResponse,
    },
};
use tokio::time::Instant;

use crate::{
    attach::IscsiTarget,
    error::{NodeError, Result},
    guard::Operation,
    kube::{Attachment, VolumeTarget},
    mount_table::device_majmin,
    node::{Capability, NodeDriver, require_id, require_path},
};

impl NodeDriver {
    pub async fn stage(&self, req: NodeStageVolumeRequest) -> Result<NodeStageVolumeResponse> {
        let volume = require_id(&req.volume_id, "volume_id")?;
        let staging = require_path(&req.staging_target_path, "staging_target_path")?;
        let cap = Capability::from_request(req.volume_capability.as_ref())?;
        require_dir(staging, "staging_target_path")?;
        let _guard = self.guards().try_lock(volume, Operation::Stage)?;

        let target = self.ready_target(volume).await?;
        let itarget = IscsiTarget::new(&target.iqn, &target.target_portal);
        let link = self.inner.attacher.device_link(&itarget);
        let mut cva = self
            .record_attachment(volume, staging, &cap, &target, &link)
            .await?;

        if let Capability::Mount { .. } = cap
            && let Some(m) = self.mounts()?.at(staging)
        {
            match device_majmin(&link) {
                Some(mm) if mm != m.majmin => {
                    return Err(NodeError::AlreadyExists(format!(
                        "staging_target_path {} already has {} mounted, not volume {volume}: unstage whatever is mounted there first",
                        staging.display(),
                        m.source
                    )));
                }
                _ => {
                    tracing::info!(volume, staging = %staging.display(), "already staged");
                    return Ok(NodeStageVolumeResponse {});
                }
            }
        }

        if let Err(e) = self.wait_reachable(volume, &target).await {
            self.release_attachment(&mut cva).await;
            return Err(e);
        }
        let device = match self.inner.attacher.attach(&itarget).await {
            Ok(d) => d,
            Err(e) => {
                // The attacher undoes its own half-done login; nothing is held on this node.
                self.release_attachment(&mut cva).await;
                return Err(NodeError::attach(format!(
                    "cannot attach volume {volume} (iSCSI {} at {})",
                    itarget.iqn, itarget.portal
                ))(e));
            }
        };
        tracing::info!(volume, device = %device.display(), "attached");

        let Capability::Mount { fs, flags } = cap else {
            return Ok(NodeStageVolumeResponse {});
        };
        let result = async {
            let formatted =
                self.inner
                    .fs
                    .ensure_filesystem(&device, fs)
                    .await
                    .map_err(NodeError::fs(format!(
                        "cannot prepare a {fs} filesystem for volume {volume}"
                    )))?;
            if formatted {
                tracing::info!(volume, %fs, "created filesystem");
            }
            self.inner
                .fs
                .mount(&device, staging, Some(fs.as_str()), &flags)
                .await
                .map_err(NodeError::fs(format!(
                    "cannot mount volume {volume} at {}",
                    staging.display()
                )))
        }
        .await;
        if let Err(e) = result {
            // Nothing is mounted: leave the node as it was before this call.
            if let Err(d) = self.inner.attacher.detach(&itarget).await {
                tracing::warn!(volume, error = %d, "detach after a failed stage failed");
            } else {
                self.release_attachment(&mut cva).await;
            }
            return Err(e);
        }
        tracing::info!(volume, staging = %staging.display(), "staged");
        Ok(NodeStageVolumeResponse {})
    }

    pub async fn unstage(
        &self,
        req: NodeUnstageVolumeRequest,
    ) -> Result<NodeUnstageVolumeResponse> {
        let volume = require_id(&req.volume_id, "volume_id")?;
        let staging = require_path(&req.staging_target_path, "staging_target_path")?;
        let _guard = self.guards().try_lock(volume, Operation::Unstage)?;
        let name = cva_name(volume, self.node());
        let cva = self
            .inner
            .api
            .attachment(&name)
            .await
            .map_err(NodeError::api(format!(
                "cannot read CStorVolumeAttachment {name}"
            )))?;

        if let Some(cva) = &cva
            && !cva.target_path.is_empty()
            && self.mounts()?.is_mount_point(Path::new(&cva.target_path))
        {
            return Err(NodeError::Precondition(format!(
                "volume {volume} is still published at {}: call NodeUnpublishVolume for it first",
                cva.target_path
            )));
        }
        self.unmount_staging(volume, staging).await?;

        let target = match &cva {
            Some(c) if !c.iqn.is_empty() && !c.target_portal.is_empty() => {
                Some(IscsiTarget::new(&c.iqn, &c.target_portal))
            }
            _ => self
                .inner
                .api
                .volume_target(volume)
                .await
                .map_err(NodeError::api(format!("cannot read CStorVolume {volume}")))?
                .map(|t| IscsiTarget::new(&t.iqn, &t.target_portal)),
        };
        if let Some(t) = &target {
            self.inner
                .attacher
                .detach(t)
                .await
                .map_err(NodeError::attach(format!("cannot detach volume {volume}")))?;
        }
        if let Some(mut cva) = cva {
            cva.staging_target_path.clear();
            cva.target_path.clear();
            cva.finalizers.retain(|f| f != self.node());
            self.inner
                .api
                .update_attachment(&cva)
                .await
                .map_err(NodeError::api(format!(
                    "cannot update CStorVolumeAttachment {name}"
                )))?;
            self.inner
                .api
                .delete_attachment(&name)
                .await
                .map_err(NodeError::api(format!(
                    "cannot delete CStorVolumeAttachment {name}"
                )))?;
        }
        tracing::info!(volume, "unstaged");
        Ok(NodeUnstageVolumeResponse {})
    }

    /// Unmounts everything stacked at the staging path, refusing while the filesystem is still
    /// in use by a publish bind elsewhere.
    pub(crate) async fn unmount_staging(&self, volume: &str, staging: &Path) -> Result<()> {
        for _ in 0..crate::node::MAX_STACKED_MOUNTS {
            let table = self.mounts()?;
            let Some(m) = table.at(staging) else {
                return Ok(());
            };
            let others: Vec<_> = table
                .of_majmin(&m.majmin)
                .into_iter()
                .filter(|o| o.mount_point != staging && o.root == m.root)
                .map(|o| o.mount_point.display().to_string())
                .collect();
            if !others.is_empty() {
                return Err(NodeError::Precondition(format!(
                    "volume {volume} is still mounted at {}: unpublish it (NodeUnpublishVolume) before unstaging",
                    others.join(", ")
                )));
            }
            self.unmount_once(staging).await?;
        }
        self.still_mounted(staging)
    }

    /// Waits (with deadlines) for the CVC to be Bound and the CStorVolume to be Healthy or
    /// Degraded; the errors carry upstream's messages.
    pub(crate) async fn ready_target(&self, volume: &str) -> Result<VolumeTarget> {
        let waits = &self.config().waits;
        let ns = &self.config().namespace;
        let api = &self.inner.api;
        let deadline = Instant::now() + waits.cvc_bound;
        loop {
            let phase = api.cvc_phase(volume).await.map_err(NodeError::api(format!(
                "cannot read CStorVolumeConfig {volume}"
            )))?;
            match phase.as_deref() {
                None => {
                    return Err(NodeError::NotFound(format!(
                        "volume {volume} not found: there is no CStorVolumeConfig {volume} in namespace {ns}; was the volume deleted?"
                    )));
                }
                Some("Bound") => break,
                Some(p) => {
                    if Instant::now() >= deadline {
                        return Err(NodeError::NotReady(format!(
                            "Waiting for {volume}'s CVC to be bound (phase {p:?}); check `kubectl describe cvc {volume} -n {ns}` and the pools of its CStorPoolCluster"
                        )));
                    }
                    tracing::info!(volume, phase = p, "waiting for the CVC to be bound");
                }
            }
            sleep_until_next(waits.poll, deadline).await;
        }
        let deadline = Instant::now() + waits.volume_ready;
        loop {
            let cv = api
                .volume_target(volume)
                .await
                .map_err(NodeError::api(format!("cannot read CStorVolume {volume}")))?;
            match cv {
                Some(t) if t.is_ready() => return Ok(t),
                other => {
                    if Instant::now() >= deadline {
                        let phase = other.map(|t| t.phase).unwrap_or_else(|| "absent".into());
                        return Err(NodeError::NotReady(format!(
                            "Volume {volume} is not ready: Replicas yet to connect to controller (CStorVolume phase {phase:?}); check `kubectl get cvr -n {ns} -l cstorvolume.openebs.io/name={volume}`"
                        )));
                    }
                    tracing::info!(volume, "waiting for the volume to be Healthy or Degraded");
                }
            }
            sleep_until_next(waits.poll, deadline).await;
        }
    }

    /// TCP reachability of the target portal, retried until the deadline.
    pub(crate) async fn wait_reachable(&self, volume: &str, target: &VolumeTarget) -> Result<()> {
        let waits = &self.config().waits;
        let deadline = Instant::now() + waits.portal_reachable;
        loop {
            let attempt = tokio::time::timeout(
                waits.poll.max(Duration::from_millis(200)),
                tokio::net::TcpStream::connect(&target.target_portal),
            )
            .await;
            let err = match attempt {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(e)) => e.to_string(),
                Err(_) => "connect timed out".to_string(),
            };
            if Instant::now() >= deadline {
                return Err(NodeError::NotReady(format!(
                    "iSCSI Target not reachable for {volume}, TargetPortal {}, err: {err}; check the target pod {} and network policies",
                    target.target_portal,
                    cstor_api::naming::target_deployment_name(volume)
                )));
            }
            sleep_until_next(waits.poll, deadline).await;
        }
    }

    /// Multi-attach check, then this node's CVA created or updated with the staging path,
    /// device path and the node name as finalizer.
    async fn record_attachment(
        &self,
        volume: &str,
        staging: &Path,
        cap: &Capability,
        target: &VolumeTarget,
        link: &Path,
    ) -> Result<Attachment> {
        let api = &self.inner.api;
        let me = self.node();
        let ns = &self.config().namespace;
        let name = cva_name(volume, me);
        let all = api
            .attachments_of_volume(volume)
            .await
            .map_err(NodeError::api(format!(
                "cannot list CStorVolumeAttachments of {volume}"
            )))?;
        let mut mine = None;
        for a in all {
            if a.name == name {
                if a.deleting {
                    return Err(NodeError::Precondition(format!(
                        "Volume {volume} still mounted on node: {me} (its CStorVolumeAttachment {name} is being deleted); the node plugin's cleanup detaches it, retry shortly"
                    )));
                }
                mine = Some(a);
                continue;
            }
            let other = api.node(&a.node).await.map_err(NodeError::api(format!(
                "failed to get node {} details to know previous mounts",
                a.node
            )))?;
            match other {
                Some(n) if n.ready && a.node != me => {
                    return Err(NodeError::Precondition(format!(
                        "Volume {volume} still mounted on node {}: unmount it there first; if that node is gone for good, delete the stale attachment: kubectl delete cva {} -n {ns}",
                        a.node, a.name
                    )));
                }
                gone => {
                    tracing::warn!(volume, stale = %a.name, "removing the attachment of a node that is not ready");
                    if gone.is_none() && !a.finalizers.is_empty() {
                        // Nobody is left to clear it.
                        let mut a2 = a.clone();
                        a2.finalizers.clear();
                        api.update_attachment(&a2)
                            .await
                            .map_err(NodeError::api(format!(
                                "cannot update CStorVolumeAttachment {}",
                                a.name
                            )))?;
                    }
                    api.delete_attachment(&a.name)
                        .await
                        .map_err(NodeError::api(format!(
                            "cannot delete CStorVolumeAttachment {}",
                            a.name
                        )))?;
                }
            }
        }
        let link = link.to_string_lossy().into_owned();
        let mut cva = mine.clone().unwrap_or_else(|| {
            Attachment::new(
                volume,
                me,
                cap.access_type(),
                cap.fs_type(),
                target,
                link.clone(),
            )
        });
        cva.access_type = cap.access_type();
        cva.fs_type = cap.fs_type().to_string();
        cva.staging_target_path = staging.to_string_lossy().into_owned();
        cva.device_path = link;
        cva.iqn = target.iqn.clone();
        cva.target_portal = target.target_portal.clone();
        if !cva.finalizers.iter().any(|f| f == me) {
            cva.finalizers.push(me.to_string());
        }
        if mine.is_some() {
            if mine.as_ref() != Some(&cva) {
                api.update_attachment(&cva)
                    .await
                    .map_err(NodeError::api(format!(
                        "cannot update CStorVolumeAttachment {name}"
                    )))?;
            }
        } else {
            let node = api
                .node(me)
                .await
                .map_err(NodeError::api(format!("cannot read Node {me}")))?
                .ok_or_else(|| {
                    NodeError::Precondition(format!(
                        "Node {me} does not exist: --nodeid / OPENEBS_NODE_ID must be this node's Kubernetes name"
                    ))
                })?;
            api.create_attachment(&cva, &node)
                .await
                .map_err(NodeError::api(format!(
                    "cannot create CStorVolumeAttachment {name}"
                )))?;
        }
        Ok(cva)
    }

    /// Drops this node's finalizer after a stage that attached nothing.
    async fn release_attachment(&self, cva: &mut Attachment) {
        cva.finalizers.retain(|f| f != self.node());
        if let Err(e) = self.inner.api.update_attachment(cva).await {
            tracing::warn!(cva = %cva.name, error = %e, "cannot clear the finalizer after a failed stage");
        }
    }
}

/// Sleeps one poll interval, never past the deadline (plus a hair so the loop sees it passed).
pub(crate) async fn sleep_until_next(poll: Duration, deadline: Instant) {
    let now = Instant::now();
    let wake = (now + poll).min(deadline.max(now) + Duration::from_millis(1));
    tokio::time::sleep_until(wake).await;
}

pub(crate) fn require_dir(path: &Path, field: &str) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(NodeError::Invalid(format!(
            "{field} {} is not a directory",
            path.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(NodeError::Invalid(format!(
            "{field} {} does not exist: the CO must create the directory before the call",
            path.display()
        ))),
        Err(e) => Err(NodeError::io("cannot inspect", path)(e)),
    }
}
