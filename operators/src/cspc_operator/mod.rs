//! cspc-operator: one CStorPoolInstance per `spec.pools[]` entry of a CStorPoolCluster, with its
//! BlockDeviceClaims (created before the CSPI) and its pool-manager Deployment.
//!
//! Event driven: a kube-runtime Controller on CSPCs that owns CSPIs, BDCs and Deployments, plus
//! a slow resync (`Action::requeue`).

pub mod bdc;
pub mod cspi;
pub mod deployment;
pub mod reconcile;
pub mod replace;
pub mod scale_down;
pub mod status;
pub mod sync;

use std::{sync::Arc, time::Duration};

use cstor_api::{
    cstor::{CStorPoolCluster, CStorPoolInstance},
    ndm::BlockDeviceClaim,
};
use futures::StreamExt;
use k8s_openapi::api::{apps::v1::Deployment, core::v1::ObjectReference};
use kube::{
    Api, Client, Resource, ResourceExt,
    runtime::{
        Controller,
        events::{Event, EventType, Recorder, Reporter},
        watcher,
    },
};

pub use deployment::DeployConfig;
pub use reconcile::{error_policy, reconcile};

/// CSPC condition reporting pool specs that cannot be provisioned.
pub const POOL_SPEC_VALID: &str = "PoolSpecValid";
/// CSPC condition reporting pools kept by a scale down because replicas live there.
pub const SCALE_DOWN_BLOCKED: &str = "ScaleDownBlocked";

#[derive(Clone)]
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    /// Operator version written in labels and versionDetails.
    pub version: String,
    pub deploy: DeployConfig,
    pub resync: Duration,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("version", &self.version)
            .finish()
    }
}

impl Context {
    pub fn new(client: Client, deploy: DeployConfig) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: "cspc-operator".into(),
                instance: std::env::var("POD_NAME").ok(),
            },
        );
        Self {
            client,
            recorder,
            version: env!("CARGO_PKG_VERSION").into(),
            deploy,
            resync: Duration::from_secs(30),
        }
    }

    pub fn with_resync(mut self, resync: Duration) -> Self {
        self.resync = resync;
        self
    }

    pub fn api<K>(&self, ns: &str) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), ns)
    }

    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        note: impl Into<String>,
    ) {
        let reference: ObjectReference = obj.object_ref(&());
        let ev = Event {
            type_,
            reason: reason.into(),
            note: Some(note.into()),
            action: reason.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &reference).await {
            tracing::warn!(object = %obj.name_any(), reason, error = %e, "publishing event failed");
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("waiting: {0}")]
    Waiting(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Runs the controller on CSPCs of `namespace` (all namespaces with `None`).
pub async fn run(ctx: Context, namespace: Option<String>) {
    let client = ctx.client.clone();
    let (cspcs, cspis, bdcs, deps): (
        Api<CStorPoolCluster>,
        Api<CStorPoolInstance>,
        Api<BlockDeviceClaim>,
        Api<Deployment>,
    ) = match &namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client, ns),
        ),
        None => (
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client),
        ),
    };
    Controller::new(cspcs, watcher::Config::default())
        .owns(cspis, watcher::Config::default())
        .owns(bdcs, watcher::Config::default())
        .owns(deps, watcher::Config::default())
        .run(reconcile, error_policy, Arc::new(ctx))
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "cspc reconcile");
            }
        })
        .await;
}
