//! ValidateVolumeCapabilities, ControllerGetVolume and ListVolumes: read-only views of the
//! volumes (CVCs), with a VolumeCondition derived from each CStorVolume's phase.

use std::collections::HashMap;

use cstor_api::{
    cstor::{
        CStorVolume, CStorVolumeAttachment, CStorVolumeConfig, CStorVolumeConfigPhase,
        CStorVolumePhase,
    },
    proto::csi::v1::{
        ControllerGetVolumeRequest, ControllerGetVolumeResponse, ListVolumesRequest,
        ListVolumesResponse, ValidateVolumeCapabilitiesRequest, ValidateVolumeCapabilitiesResponse,
        Volume, VolumeCondition, controller_get_volume_response, list_volumes_response,
        validate_volume_capabilities_response::Confirmed,
    },
};
use kube::api::ListParams;

use crate::{
    capability::{self, CapabilityError},
    create::{CONTEXT_CAS_TYPE, content_source_of, cvc_capacity, cvc_pool_cluster},
    error::{KubeError, QueryError},
    params::{VolumeParams, check_volume_name},
    quantity::parse_bytes,
    server::ControllerService,
};

/// Prefix of the pagination tokens ListVolumes hands out (`after:<volume id>`).
const TOKEN_PREFIX: &str = "after:";

/// The health of a volume as seen from its CStorVolume (`None` when there is none yet).
pub fn volume_condition(cvc: &CStorVolumeConfig, cv: Option<&CStorVolume>) -> VolumeCondition {
    let (abnormal, message) = match cv.and_then(|cv| cv.status.as_ref()).and_then(|s| s.phase.as_ref()) {
        Some(CStorVolumePhase::Healthy) => (false, "volume is Healthy: all replicas are connected and healthy".to_owned()),
        Some(CStorVolumePhase::Degraded) => {
            (true, "volume is Degraded: some replicas are not healthy; I/O continues with the healthy quorum".to_owned())
        }
        Some(CStorVolumePhase::Init) => {
            (true, "volume is initialising: a quorum of replicas has not connected to the target yet".to_owned())
        }
        Some(CStorVolumePhase::Offline) => (true, "volume is Offline: no quorum of replicas is connected to the target".to_owned()),
        Some(other) => (true, format!("volume status is {other:?}")),
        None if cv.is_some() => (true, "volume target has not reported a status yet".to_owned()),
        None => match cvc.status.phase.as_ref() {
            Some(CStorVolumeConfigPhase::Pending) | None => {
                (true, "volume is being provisioned: its CStorVolumeConfig is Pending and it has no target yet".to_owned())
            }
            Some(phase) => (true, format!("volume target (CStorVolume) not found; CStorVolumeConfig phase is {phase}")),
        },
    };
    VolumeCondition { abnormal, message }
}

/// The size to report: the target's, else the CVC's.
fn reported_capacity(cvc: &CStorVolumeConfig, cv: Option<&CStorVolume>) -> i64 {
    let from_cv = cv
        .and_then(|cv| cv.status.as_ref())
        .and_then(|s| s.capacity.as_ref())
        .and_then(|q| parse_bytes(&q.0));
    let from_status = cvc
        .status
        .capacity
        .as_ref()
        .and_then(|c| c.get("storage"))
        .and_then(|q| parse_bytes(&q.0));
    from_cv
        .or(from_status)
        .or_else(|| cvc_capacity(cvc))
        .unwrap_or(0) as i64
}

fn volume_message(cvc: &CStorVolumeConfig, cv: Option<&CStorVolume>) -> Volume {
    Volume {
        capacity_bytes: reported_capacity(cvc, cv),
        volume_id: cvc.metadata.name.clone().unwrap_or_default(),
        volume_context: [(CONTEXT_CAS_TYPE.to_owned(), "cstor".to_owned())].into(),
        content_source: content_source_of(cvc),
        accessible_topology: Vec::new(),
    }
}

fn nodes_of<'a>(
    volume: &str,
    cvas: impl Iterator<Item = &'a CStorVolumeAttachment>,
) -> Vec<String> {
    let mut nodes: Vec<String> = cvas
        .filter(|c| c.spec.volume.name == volume)
        .map(|c| c.spec.volume.owner_node_id.clone())
        .collect();
    nodes.sort();
    nodes.dedup();
    nodes
}

impl ControllerService {
    async fn existing_cvc(&self, id: &str) -> Result<CStorVolumeConfig, QueryError> {
        if id.is_empty() {
            return Err(QueryError::Missing("volume_id"));
        }
        if check_volume_name(id).is_err() {
            return Err(QueryError::NotFound(id.to_owned()));
        }
        match self.get_cvc(id).await? {
            Some(c) if c.metadata.deletion_timestamp.is_none() => Ok(c),
            _ => Err(QueryError::NotFound(id.to_owned())),
        }
    }

    /// ValidateVolumeCapabilities.
    pub async fn validate_volume_capabilities(
        &self,
        req: ValidateVolumeCapabilitiesRequest,
    ) -> Result<ValidateVolumeCapabilitiesResponse, QueryError> {
        if req.volume_id.is_empty() {
            return Err(QueryError::Missing("volume_id"));
        }
        if req.volume_capabilities.is_empty() {
            return Err(CapabilityError::Empty.into());
        }
        let cvc = self.existing_cvc(&req.volume_id).await?;
        let unconfirmed = |message: String| ValidateVolumeCapabilitiesResponse {
            confirmed: None,
            message,
        };
        for (index, cap) in req.volume_capabilities.iter().enumerate() {
            match capability::check_one(index, cap, None) {
                Ok(_) => {}
                Err(
                    e @ (CapabilityError::MissingMode { .. } | CapabilityError::MissingType { .. }),
                ) => return Err(e.into()),
                Err(e) => return Ok(unconfirmed(e.to_string())),
            }
        }
        if !req.parameters.is_empty() {
            let params = match VolumeParams::try_from(&req.parameters) {
                Ok(p) => p,
                Err(e) => return Ok(unconfirmed(e.to_string())),
            };
            if params.pool_cluster != cvc_pool_cluster(&cvc) {
                return Ok(unconfirmed(format!(
                    "volume {} lives in cStorPoolCluster {:?}, not {:?}",
                    req.volume_id,
                    cvc_pool_cluster(&cvc),
                    params.pool_cluster
                )));
            }
            if i64::from(params.replica_count) != cvc.spec.provision.replica_count {
                return Ok(unconfirmed(format!(
                    "volume {} has {} replica(s), not {}",
                    req.volume_id, cvc.spec.provision.replica_count, params.replica_count
                )));
            }
        }
        Ok(ValidateVolumeCapabilitiesResponse {
            confirmed: Some(Confirmed {
                volume_context: req.volume_context,
                volume_capabilities: req.volume_capabilities,
                parameters: req.parameters,
                mutable_parameters: req.mutable_parameters,
            }),
            message: String::new(),
        })
    }

    /// ControllerGetVolume.
    pub async fn get_volume(
        &self,
        req: ControllerGetVolumeRequest,
    ) -> Result<ControllerGetVolumeResponse, QueryError> {
        let cvc = self.existing_cvc(&req.volume_id).await?;
        let id = req.volume_id.as_str();
        let cv =
            self.cvs().get_opt(id).await.map_err(|e| {
                KubeError::new(format!("reading CStorVolume {}/{id}", self.ns()), e)
            })?;
        let lp = ListParams::default().labels(&format!(
            "{}={id}",
            cstor_api::constants::label::CVA_VOLNAME
        ));
        let cvas = self.cvas().list(&lp).await.map_err(|e| {
            KubeError::new(format!("listing CStorVolumeAttachments of volume {id}"), e)
        })?;
        Ok(ControllerGetVolumeResponse {
            volume: Some(volume_message(&cvc, cv.as_ref())),
            status: Some(controller_get_volume_response::VolumeStatus {
                published_node_ids: nodes_of(id, cvas.items.iter()),
                volume_condition: Some(volume_condition(&cvc, cv.as_ref())),
            }),
        })
    }

    /// ListVolumes: every volume (CVC) of the namespace, sorted by id, paginated.
    pub async fn list_volumes(
        &self,
        req: ListVolumesRequest,
    ) -> Result<ListVolumesResponse, QueryError> {
        if req.max_entries < 0 {
            return Err(QueryError::MaxEntries(req.max_entries));
        }
        let after = match req.starting_token.as_str() {
            "" => None,
            t => Some(
                t.strip_prefix(TOKEN_PREFIX)
                    .ok_or_else(|| QueryError::Token(t.to_owned()))?
                    .to_owned(),
            ),
        };
        let lp = ListParams::default();
        let cvcs = self
            .cvcs()
            .list(&lp)
            .await
            .map_err(|e| KubeError::new("listing CStorVolumeConfigs", e))?;
        let mut cvcs: Vec<CStorVolumeConfig> = cvcs
            .items
            .into_iter()
            .filter(|c| c.metadata.deletion_timestamp.is_none())
            .filter(|c| {
                after
                    .as_deref()
                    .is_none_or(|a| c.metadata.name.as_deref().unwrap_or_default() > a)
            })
            .collect();
        cvcs.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        let limit = if req.max_entries == 0 {
            usize::MAX
        } else {
            req.max_entries as usize
        };
        let next_token = if cvcs.len() > limit {
            format!(
                "{TOKEN_PREFIX}{}",
                cvcs[limit - 1].metadata.name.as_deref().unwrap_or_default()
            )
        } else {
            String::new()
        };
        cvcs.truncate(limit);
        if cvcs.is_empty() {
            return Ok(ListVolumesResponse {
                entries: Vec::new(),
                next_token,
            });
        }
        let cvs = self
            .cvs()
            .list(&lp)
            .await
            .map_err(|e| KubeError::new("listing CStorVolumes", e))?;
        let cvs: HashMap<String, CStorVolume> = cvs
            .items
            .into_iter()
            .filter_map(|cv| cv.metadata.name.clone().map(|n| (n, cv)))
            .collect();
        let cvas = self
            .cvas()
            .list(&lp)
            .await
            .map_err(|e| KubeError::new("listing CStorVolumeAttachments", e))?;
        let entries = cvcs
            .iter()
            .map(|cvc| {
                let name = cvc.metadata.name.as_deref().unwrap_or_default();
                let cv = cvs.get(name);
                list_volumes_response::Entry {
                    volume: Some(volume_message(cvc, cv)),
                    status: Some(list_volumes_response::VolumeStatus {
                        published_node_ids: nodes_of(name, cvas.items.iter()),
                        volume_condition: Some(volume_condition(cvc, cv)),
                    }),
                }
            })
            .collect();
        Ok(ListVolumesResponse {
            entries,
            next_token,
        })
    }
}
