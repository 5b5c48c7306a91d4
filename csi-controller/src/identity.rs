//! Identity service: plugin name and version, plugin capabilities, readiness.

use cstor_api::proto::csi::v1::{
    GetPluginCapabilitiesRequest, GetPluginCapabilitiesResponse, GetPluginInfoRequest,
    GetPluginInfoResponse, PluginCapability, ProbeRequest, ProbeResponse,
    identity_server::Identity,
    plugin_capability::{self, service, volume_expansion},
};
use tonic::{Request, Response, Status};

use crate::server::Config;

/// The Identity service of the controller process.
#[derive(Clone, Debug)]
pub struct IdentityGrpc {
    name: String,
    version: String,
    controller: bool,
}

impl IdentityGrpc {
    /// Identity for `config`; `controller` tells whether the Controller service is served too.
    pub fn new(config: Config, controller: bool) -> Self {
        IdentityGrpc {
            name: config.driver_name,
            version: config.vendor_version,
            controller,
        }
    }

    /// The plugin capabilities advertised: the controller service (when served), topology
    /// constraints, and online expansion (ControllerExpandVolume raises the CVC's size while the
    /// volume stays in use; the node plugin grows the filesystem).
    pub fn capabilities(&self) -> Vec<PluginCapability> {
        let svc = |t: service::Type| PluginCapability {
            r#type: Some(plugin_capability::Type::Service(
                plugin_capability::Service { r#type: t as i32 },
            )),
        };
        let mut caps = Vec::new();
        if self.controller {
            caps.push(svc(service::Type::ControllerService));
        }
        caps.push(svc(service::Type::VolumeAccessibilityConstraints));
        if self.controller {
            caps.push(PluginCapability {
                r#type: Some(plugin_capability::Type::VolumeExpansion(
                    plugin_capability::VolumeExpansion {
                        r#type: volume_expansion::Type::Online as i32,
                    },
                )),
            });
        }
        caps
    }
}

#[tonic::async_trait]
impl Identity for IdentityGrpc {
    async fn get_plugin_info(
        &self,
        _: Request<GetPluginInfoRequest>,
    ) -> Result<Response<GetPluginInfoResponse>, Status> {
        if self.name.is_empty() {
            tracing::error!("GetPluginInfo: the driver name is empty");
            return Err(Status::unavailable(
                "driver name is not configured (--name)",
            ));
        }
        if self.version.is_empty() {
            tracing::error!("GetPluginInfo: the driver version is empty");
            return Err(Status::unavailable(
                "driver version is not configured (--version)",
            ));
        }
        Ok(Response::new(GetPluginInfoResponse {
            name: self.name.clone(),
            vendor_version: self.version.clone(),
            manifest: Default::default(),
        }))
    }

    async fn get_plugin_capabilities(
        &self,
        _: Request<GetPluginCapabilitiesRequest>,
    ) -> Result<Response<GetPluginCapabilitiesResponse>, Status> {
        Ok(Response::new(GetPluginCapabilitiesResponse {
            capabilities: self.capabilities(),
        }))
    }

    async fn probe(&self, _: Request<ProbeRequest>) -> Result<Response<ProbeResponse>, Status> {
        Ok(Response::new(ProbeResponse { ready: Some(true) }))
    }
}
