//! Identity service: plugin name and version, plugin capabilities, readiness.

use cstor_api::proto::csi::v1::{
    GetPluginCapabilitiesRequest, GetPluginCapabilitiesResponse, GetPluginInfoRequest,
    GetPluginInfoResponse, PluginCapability, ProbeRequest, ProbeResponse,
    identity_server::Identity,
    plugin_capability::{self, service, volume_expansion},
};
use cstor_api::served::{self, answers};
use tonic::{Request, Response, Status};

use crate::server::{Config, ControllerService};

/// The Identity service of the controller process.
#[derive(Clone)]
pub struct IdentityGrpc {
    name: String,
    version: String,
    controller: bool,
    service: ControllerService,
}

impl ControllerService {
    /// Why the controller cannot serve now: the API server does not answer, or a resource
    /// it works with (CVC, CV, CVR, CSPI, Node) is not served.
    pub async fn readiness(&self) -> Result<(), String> {
        let (cvc, cv, cvr, cspi, node) = tokio::join!(
            answers(self.cvcs()),
            answers(self.cvs()),
            answers(self.cvrs()),
            answers(self.cspis()),
            answers(self.nodes()),
        );
        served::all([cvc, cv, cvr, cspi, node])
    }
}

impl IdentityGrpc {
    /// Identity of `service`; `controller` tells whether the Controller service is served too.
    pub fn new(service: ControllerService, controller: bool) -> Self {
        let config: Config = service.config().clone();
        IdentityGrpc {
            name: config.driver_name,
            version: config.vendor_version,
            controller,
            service,
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

    /// Ready only while the API server answers for every resource the driver works with;
    /// otherwise `ready: false`, with the reason in the log.
    async fn probe(&self, _: Request<ProbeRequest>) -> Result<Response<ProbeResponse>, Status> {
        let ready = match self.service.readiness().await {
            Ok(()) => true,
            Err(why) => {
                tracing::warn!("Probe: not ready: {why}");
                false
            }
        };
        Ok(Response::new(ProbeResponse { ready: Some(ready) }))
    }
}
