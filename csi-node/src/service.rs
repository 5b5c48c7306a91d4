//! The CSI Identity and Node gRPC services over [`NodeDriver`].

use std::collections::HashMap;

use cstor_api::{
    constants::csi::{TOPOLOGY_NODE_KEY, TOPOLOGY_ZONE_KEY},
    proto::csi::v1::{
        GetPluginCapabilitiesRequest, GetPluginCapabilitiesResponse, GetPluginInfoRequest,
        GetPluginInfoResponse, NodeExpandVolumeRequest, NodeExpandVolumeResponse,
        NodeGetCapabilitiesRequest, NodeGetCapabilitiesResponse, NodeGetInfoRequest,
        NodeGetInfoResponse, NodeGetVolumeStatsRequest, NodeGetVolumeStatsResponse,
        NodePublishVolumeRequest, NodePublishVolumeResponse, NodeServiceCapability,
        NodeStageVolumeRequest, NodeStageVolumeResponse, NodeUnpublishVolumeRequest,
        NodeUnpublishVolumeResponse, NodeUnstageVolumeRequest, NodeUnstageVolumeResponse,
        PluginCapability, ProbeRequest, ProbeResponse, Topology, identity_server::Identity,
        node_server::Node, node_service_capability, plugin_capability,
    },
};
use tonic::{Request, Response, Status};

use crate::node::NodeDriver;

/// Serves CSI Identity and Node for a [`NodeDriver`].
#[derive(Clone, Debug)]
pub struct NodeService {
    driver: NodeDriver,
}

impl NodeService {
    pub fn new(driver: NodeDriver) -> Self {
        Self { driver }
    }

    pub fn driver(&self) -> &NodeDriver {
        &self.driver
    }
}

fn log_call(method: &str, volume: &str) {
    tracing::info!(method, volume, "request");
}

#[tonic::async_trait]
impl Node for NodeService {
    async fn node_stage_volume(
        &self,
        request: Request<NodeStageVolumeRequest>,
    ) -> Result<Response<NodeStageVolumeResponse>, Status> {
        let req = request.into_inner();
        log_call("NodeStageVolume", &req.volume_id);
        Ok(Response::new(self.driver.stage(req).await?))
    }

    async fn node_unstage_volume(
        &self,
        request: Request<NodeUnstageVolumeRequest>,
    ) -> Result<Response<NodeUnstageVolumeResponse>, Status> {
        let req = request.into_inner();
        log_call("NodeUnstageVolume", &req.volume_id);
        Ok(Response::new(self.driver.unstage(req).await?))
    }

    async fn node_publish_volume(
        &self,
        request: Request<NodePublishVolumeRequest>,
    ) -> Result<Response<NodePublishVolumeResponse>, Status> {
        let req = request.into_inner();
        log_call("NodePublishVolume", &req.volume_id);
        Ok(Response::new(self.driver.publish(req).await?))
    }

    async fn node_unpublish_volume(
        &self,
        request: Request<NodeUnpublishVolumeRequest>,
    ) -> Result<Response<NodeUnpublishVolumeResponse>, Status> {
        let req = request.into_inner();
        log_call("NodeUnpublishVolume", &req.volume_id);
        Ok(Response::new(self.driver.unpublish(req).await?))
    }

    async fn node_get_volume_stats(
        &self,
        request: Request<NodeGetVolumeStatsRequest>,
    ) -> Result<Response<NodeGetVolumeStatsResponse>, Status> {
        Ok(Response::new(
            self.driver.stats(request.into_inner()).await?,
        ))
    }

    async fn node_expand_volume(
        &self,
        request: Request<NodeExpandVolumeRequest>,
    ) -> Result<Response<NodeExpandVolumeResponse>, Status> {
        let req = request.into_inner();
        log_call("NodeExpandVolume", &req.volume_id);
        Ok(Response::new(self.driver.expand(req).await?))
    }

    async fn node_get_capabilities(
        &self,
        _request: Request<NodeGetCapabilitiesRequest>,
    ) -> Result<Response<NodeGetCapabilitiesResponse>, Status> {
        use node_service_capability::{Rpc, Type, rpc::Type as R};
        let capabilities = [
            R::StageUnstageVolume,
            R::ExpandVolume,
            R::GetVolumeStats,
            R::VolumeCondition,
            R::SingleNodeMultiWriter,
        ]
        .into_iter()
        .map(|t| NodeServiceCapability {
            r#type: Some(Type::Rpc(Rpc { r#type: t as i32 })),
        })
        .collect();
        Ok(Response::new(NodeGetCapabilitiesResponse { capabilities }))
    }

    async fn node_get_info(
        &self,
        _request: Request<NodeGetInfoRequest>,
    ) -> Result<Response<NodeGetInfoResponse>, Status> {
        let cfg = self.driver.config();
        let mut segments = HashMap::from([(TOPOLOGY_NODE_KEY.to_string(), cfg.node_id.clone())]);
        // The zone, so that a controller run with zone topology can pin volumes to zones. A
        // node whose Node object cannot be read reports its name only (and says why).
        match self.driver.node_info().await {
            Ok(Some(info)) => {
                if let Some(zone) = info.zone.filter(|z| !z.is_empty()) {
                    segments.insert(TOPOLOGY_ZONE_KEY.to_string(), zone);
                }
            }
            Ok(None) => {
                tracing::warn!(node = %cfg.node_id, "NodeGetInfo: no Node object of this name; reporting no zone")
            }
            Err(e) => {
                tracing::warn!(node = %cfg.node_id, error = %e, "NodeGetInfo: cannot read the Node; reporting no zone")
            }
        }
        Ok(Response::new(NodeGetInfoResponse {
            node_id: cfg.node_id.clone(),
            max_volumes_per_node: cfg.max_volumes,
            accessible_topology: Some(Topology { segments }),
        }))
    }
}

#[tonic::async_trait]
impl Identity for NodeService {
    async fn get_plugin_info(
        &self,
        _request: Request<GetPluginInfoRequest>,
    ) -> Result<Response<GetPluginInfoResponse>, Status> {
        let cfg = self.driver.config();
        if cfg.driver_name.is_empty() {
            return Err(Status::unavailable("missing driver name: set --name"));
        }
        Ok(Response::new(GetPluginInfoResponse {
            name: cfg.driver_name.clone(),
            vendor_version: cfg.version.clone(),
            manifest: HashMap::new(),
        }))
    }

    async fn get_plugin_capabilities(
        &self,
        _request: Request<GetPluginCapabilitiesRequest>,
    ) -> Result<Response<GetPluginCapabilitiesResponse>, Status> {
        use plugin_capability::{
            Service, Type, VolumeExpansion, service::Type as S, volume_expansion::Type as E,
        };
        let capabilities = vec![
            PluginCapability {
                r#type: Some(Type::Service(Service {
                    r#type: S::ControllerService as i32,
                })),
            },
            PluginCapability {
                r#type: Some(Type::Service(Service {
                    r#type: S::VolumeAccessibilityConstraints as i32,
                })),
            },
            PluginCapability {
                r#type: Some(Type::VolumeExpansion(VolumeExpansion {
                    r#type: E::Online as i32,
                })),
            },
        ];
        Ok(Response::new(GetPluginCapabilitiesResponse {
            capabilities,
        }))
    }

    async fn probe(
        &self,
        _request: Request<ProbeRequest>,
    ) -> Result<Response<ProbeResponse>, Status> {
        // Not ready while the API server (or a CRD the plugin needs) does not answer: staging
        // could not record its attachment.
        let ready = match self.driver.inner.api.readiness().await {
            Ok(()) => true,
            Err(why) => {
                tracing::warn!("Probe: not ready: {why}");
                false
            }
        };
        Ok(Response::new(ProbeResponse { ready: Some(ready) }))
    }
}
