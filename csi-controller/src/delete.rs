//! DeleteVolume: idempotent; refuses while the volume is staged on a node or while volumes
//! restored or cloned from its snapshots exist (destroying its zvol would take them along).

use cstor_api::{
    constants::label,
    naming::parse_snapshot_id,
    proto::csi::v1::{DeleteVolumeRequest, DeleteVolumeResponse},
};
use kube::api::{DeleteParams, ListParams};

use crate::{
    error::{DeleteError, KubeError},
    params::check_volume_name,
    records::clone_snapshot_name,
    server::ControllerService,
};

impl ControllerService {
    /// DeleteVolume.
    pub async fn delete_volume(
        &self,
        req: DeleteVolumeRequest,
    ) -> Result<DeleteVolumeResponse, DeleteError> {
        let id = req.volume_id.as_str();
        if id.is_empty() {
            return Err(DeleteError::MissingId);
        }
        if check_volume_name(id).is_err() {
            tracing::info!(volume_id = id, "not a cStor volume id: nothing to delete");
            return Ok(DeleteVolumeResponse {});
        }
        let token = self.guard().try_lock(id, "DeleteVolume")?;
        let Some(cvc) = self.get_cvc(id).await? else {
            tracing::info!(volume = id, "volume does not exist: nothing to delete");
            return Ok(DeleteVolumeResponse {});
        };
        if cvc.metadata.deletion_timestamp.is_some() {
            // Deleted before; finish what a restart may have cut short.
            if let Err(e) = self.remove_records_of(id).await {
                tracing::warn!(
                    volume = id,
                    "snapshot records left for the garbage collector: {e}"
                );
            }
            return Ok(DeleteVolumeResponse {});
        }

        let lp = ListParams::default().labels(&format!("{}={id}", label::CVA_VOLNAME));
        let cvas = self.cvas().list(&lp).await.map_err(|e| {
            KubeError::new(format!("listing CStorVolumeAttachments of volume {id}"), e)
        })?;
        if !cvas.items.is_empty() {
            let mut nodes: Vec<String> = cvas
                .items
                .iter()
                .map(|c| c.spec.volume.owner_node_id.clone())
                .collect();
            nodes.sort();
            nodes.dedup();
            return Err(DeleteError::Staged {
                volume: id.to_owned(),
                nodes: nodes.join(", "),
            });
        }

        let dependents = self.dependents_of(id).await?;
        if !dependents.is_empty() {
            let described: Vec<String> = dependents
                .iter()
                .map(|d| {
                    let name = d.metadata.name.clone().unwrap_or_default();
                    let src = d.spec.cstor_volume_source.as_deref().unwrap_or_default();
                    let how = match parse_snapshot_id(src) {
                        Ok((_, snap)) if snap == clone_snapshot_name(&name) => "a clone".to_owned(),
                        Ok((_, snap)) => format!("restored from snapshot {snap}"),
                        Err(_) => "restored from it".to_owned(),
                    };
                    format!("{name} ({how})")
                })
                .collect();
            return Err(DeleteError::Dependents {
                volume: id.to_owned(),
                dependents: described.join(", "),
            });
        }

        match self.cvcs().delete(id, &DeleteParams::foreground()).await {
            Ok(_) => {
                tracing::info!(volume = id, "deleted CStorVolumeConfig");
                // Its snapshots go with its replicas; so do their records (the API server's
                // garbage collector would also take them, as the CVC owns them).
                if let Err(e) = self.remove_records_of(id).await {
                    tracing::warn!(
                        volume = id,
                        "snapshot records left for the garbage collector: {e}"
                    );
                }
            }
            Err(kube::Error::Api(s)) if s.is_not_found() => {}
            Err(e) => {
                return Err(KubeError::new(
                    format!("deleting CStorVolumeConfig {}/{id}", self.ns()),
                    e,
                )
                .into());
            }
        }
        drop(token);

        // A clone no longer needs the snapshot it was made from once its replicas are gone.
        if let Some((source, snap)) = cvc
            .spec
            .cstor_volume_source
            .as_deref()
            .and_then(|s| parse_snapshot_id(s).ok())
            && snap == clone_snapshot_name(id)
            && let Err(e) = self.sweep_clone_snapshots(Some(source)).await
        {
            tracing::warn!(
                volume = id,
                source,
                "clean-up of the clone's snapshot deferred to the next sweep: {e}"
            );
        }
        Ok(DeleteVolumeResponse {})
    }
}
