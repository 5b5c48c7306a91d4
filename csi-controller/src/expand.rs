//! ControllerExpandVolume: records the new size in the CVC's `spec.capacity` and returns at
//! once; the cvc-operator resizes the target and replicas, the node plugin the filesystem.

use cstor_api::proto::csi::v1::{
    ControllerExpandVolumeRequest, ControllerExpandVolumeResponse, volume_capability::AccessType,
};
use kube::api::{Patch, PatchParams};

use crate::{
    capability,
    create::cvc_capacity,
    error::{ExpandError, KubeError},
    params::check_volume_name,
    quantity::{GIB, gib_quantity, plan_size},
    server::ControllerService,
};

impl ControllerService {
    /// ControllerExpandVolume.
    pub async fn expand_volume(
        &self,
        req: ControllerExpandVolumeRequest,
    ) -> Result<ControllerExpandVolumeResponse, ExpandError> {
        let id = req.volume_id.as_str();
        if id.is_empty() {
            return Err(ExpandError::MissingId);
        }
        let range = req
            .capacity_range
            .ok_or(crate::quantity::SizeError::Missing)?;
        let desired = plan_size(range.required_bytes, range.limit_bytes)?;
        if let Some(cap) = &req.volume_capability {
            capability::check_one(0, cap, None)?;
        }
        let node_expansion_required = !matches!(
            req.volume_capability
                .as_ref()
                .and_then(|c| c.access_type.as_ref()),
            Some(AccessType::Block(_))
        );
        if check_volume_name(id).is_err() {
            return Err(ExpandError::NotFound(id.to_owned()));
        }
        let _token = self.guard().try_lock(id, "ControllerExpandVolume")?;
        let cvc = match self.get_cvc(id).await? {
            None => return Err(ExpandError::NotFound(id.to_owned())),
            Some(c) if c.metadata.deletion_timestamp.is_some() => {
                return Err(ExpandError::Deleting(id.to_owned()));
            }
            Some(c) => c,
        };
        let current = cvc_capacity(&cvc).unwrap_or(0);
        if current >= desired {
            // Already that large (a repeated call, or a shrink request the volume satisfies).
            return Ok(ControllerExpandVolumeResponse {
                capacity_bytes: current as i64,
                node_expansion_required,
            });
        }
        let patch = serde_json::json!({ "spec": { "capacity": { "storage": gib_quantity(desired / GIB) } } });
        self.cvcs()
            .patch(id, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| {
                KubeError::new(
                    format!(
                        "raising spec.capacity of CStorVolumeConfig {}/{id}",
                        self.ns()
                    ),
                    e,
                )
            })?;
        tracing::info!(
            volume = id,
            from = current,
            to = desired,
            "expansion recorded"
        );
        Ok(ControllerExpandVolumeResponse {
            capacity_bytes: desired as i64,
            node_expansion_required,
        })
    }
}
