//! cspc-operator: one CStorPoolInstance per `spec.pools[]` entry of a CStorPoolCluster, with its
//! BlockDeviceClaims (created before the CSPI) and its pool-manager Deployment.
//!
//! Event driven: a kube-runtime Controller on CSPCs that owns CSPIs and BDCs and watches pool
//! Deployments, BlockDevices and Nodes (see [`run`]), plus a slow resync (`Action::requeue`).

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
    constants::label,
    cstor::{CStorPoolCluster, CStorPoolInstance},
    ndm::{BlockDevice, BlockDeviceClaim},
};
use futures::StreamExt;
use k8s_openapi::api::{apps::v1::Deployment, core::v1::Node};
use kube::{
    Api, Client, Resource, ResourceExt,
    runtime::{Controller, events::EventType, reflector::ObjectRef, watcher},
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
    pub events: crate::events::Events,
    /// Per-CSPC retry delays after errors.
    pub backoff: Arc<crate::backoff::Backoff>,
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
        let events = crate::events::Events::new(client.clone(), "cspc-operator");
        Self {
            client,
            events,
            version: cstor_api::constants::version::current(),
            deploy,
            resync: Duration::from_secs(30),
            backoff: Arc::default(),
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

    /// Publishes an Event about `obj` (action = reason); failures are logged, never fatal.
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        note: impl Into<String>,
    ) {
        self.events.publish(obj, type_, reason, reason, note).await
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("waiting: {0}")]
    Waiting(String),
    #[error(transparent)]
    Finalizer(#[from] crate::finalizer::Misuse),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where the watched objects live: one namespace or all of them.
enum ScopedApi {
    Namespaced(Client, String),
    All(Client),
}

impl ScopedApi {
    fn api<K>(self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match self {
            ScopedApi::Namespaced(c, ns) => Api::namespaced(c, &ns),
            ScopedApi::All(c) => Api::all(c),
        }
    }
}

/// The CSPCs (of those given) whose pools name block device `bd`.
pub fn cspcs_naming<'a>(
    bd: &str,
    cspcs: impl IntoIterator<Item = &'a CStorPoolCluster>,
) -> Vec<ObjectRef<CStorPoolCluster>> {
    cspcs
        .into_iter()
        .filter(|c| {
            c.spec
                .pools()
                .iter()
                .any(|p| p.block_device_names().any(|n| n == bd))
        })
        .map(ObjectRef::from_obj)
        .collect()
}

/// The CSPCs (of those given) with a pool whose node selector matches `node`'s labels: the
/// ones a change of that node can concern. (A node that stops matching a selector is noticed by
/// the CSPC's next resync.)
pub fn cspcs_on_node<'a>(
    node: &Node,
    cspcs: impl IntoIterator<Item = &'a CStorPoolCluster>,
) -> Vec<ObjectRef<CStorPoolCluster>> {
    let labels = node.labels();
    cspcs
        .into_iter()
        .filter(|c| {
            c.spec.pools().iter().any(|p| {
                !p.node_selector.is_empty()
                    && p.node_selector
                        .iter()
                        .all(|(k, v)| labels.get(k) == Some(v))
            })
        })
        .map(ObjectRef::from_obj)
        .collect()
}

/// Runs the controller on CSPCs of `namespace` (all namespaces with `None`).
///
/// Triggers: CSPCs; the CSPIs and BDCs they own; pool Deployments (owned by a CSPI, mapped to
/// their CSPC through the `openebs.io/cstor-pool-cluster` label); BlockDevices (mapped to every
/// CSPC that names them — a claim being bound or a disk going inactive); Nodes (label changes
/// decide which node a pool's selector matches: only the CSPCs with a pool on that node).
pub async fn run(ctx: Context, namespace: Option<String>) {
    run_until(ctx, namespace, std::future::pending()).await
}

/// [`run`] until `shutdown` completes: no new reconcile starts after it, the ones in flight
/// finish, then this returns.
pub async fn run_until(
    ctx: Context,
    namespace: Option<String>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let shutdown = crate::shutdown::shared(shutdown);
    let client = ctx.client.clone();
    let scoped = |client: Client| match &namespace {
        Some(ns) => ScopedApi::Namespaced(client, ns.clone()),
        None => ScopedApi::All(client),
    };
    let cspcs: Api<CStorPoolCluster> = scoped(client.clone()).api();
    let cspis: Api<CStorPoolInstance> = scoped(client.clone()).api();
    let bdcs: Api<BlockDeviceClaim> = scoped(client.clone()).api();
    let deps: Api<Deployment> = scoped(client.clone()).api();
    let bds: Api<BlockDevice> = scoped(client.clone()).api();
    let nodes: Api<Node> = Api::all(client);
    let controller = Controller::new(cspcs, watcher::Config::default());
    let cspc_store = controller.store();
    let bd_store = cspc_store.clone();
    let node_store = cspc_store.clone();
    let ready_store = cspc_store.clone();
    let stream = controller
        .owns(cspis, watcher::Config::default())
        .owns(bdcs, watcher::Config::default())
        .watches(
            deps,
            watcher::Config::default().labels(label::CSTOR_POOL_CLUSTER),
            |d: Deployment| {
                let ns = d.namespace();
                d.labels().get(label::CSTOR_POOL_CLUSTER).map(|cspc| {
                    ObjectRef::<CStorPoolCluster>::new(cspc)
                        .within(ns.as_deref().unwrap_or_default())
                })
            },
        )
        .watches(bds, watcher::Config::default(), move |bd: BlockDevice| {
            cspcs_naming(&bd.name_any(), bd_store.state().iter().map(|c| &**c))
        })
        .watches(nodes, watcher::Config::default(), move |node: Node| {
            cspcs_on_node(&node, node_store.state().iter().map(|c| &**c))
        })
        .graceful_shutdown_on(shutdown.clone())
        .run(reconcile, error_policy, Arc::new(ctx))
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "cspc reconcile");
            }
        });
    crate::shutdown::drive(stream, shutdown, || {
        futures::FutureExt::now_or_never(ready_store.wait_until_ready()).is_some_and(|r| r.is_ok())
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use cstor_api::cstor::{
        CStorPoolClusterSpec, CStorPoolInstanceBlockDevice, PoolSpec, RaidGroup,
    };

    fn cspc(name: &str, disks: &[&str]) -> CStorPoolCluster {
        CStorPoolCluster::namespaced(
            name,
            "openebs",
            CStorPoolClusterSpec {
                pools: Some(vec![PoolSpec {
                    data_raid_groups: vec![RaidGroup {
                        block_devices: disks
                            .iter()
                            .map(|d| CStorPoolInstanceBlockDevice::named(*d))
                            .collect(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }]),
                ..Default::default()
            },
        )
    }

    #[test]
    fn block_devices_map_to_the_cspcs_that_name_them() {
        let all = [
            cspc("a", &["bd-1", "bd-2"]),
            cspc("b", &["bd-3"]),
            cspc("c", &["bd-2"]),
        ];
        let names = |bd: &str| -> Vec<String> {
            cspcs_naming(bd, all.iter())
                .into_iter()
                .map(|r| r.name)
                .collect()
        };
        assert_eq!(names("bd-2"), vec!["a", "c"]);
        assert_eq!(names("bd-3"), vec!["b"]);
        assert!(names("bd-9").is_empty());
    }

    #[test]
    fn a_node_maps_to_the_cspcs_with_a_pool_on_it() {
        let on = |name: &str, hosts: &[&str]| {
            let mut c = cspc(name, &["bd"]);
            let pool = c.spec.pools.as_mut().unwrap()[0].clone();
            c.spec.pools = Some(
                hosts
                    .iter()
                    .map(|h| {
                        let mut p = pool.clone();
                        p.node_selector =
                            [("kubernetes.io/hostname".to_owned(), (*h).to_owned())].into();
                        p
                    })
                    .collect(),
            );
            c
        };
        let all = [
            on("a", &["n1", "n2"]),
            on("b", &["n3"]),
            on("c", &["n2"]),
            cspc("no-selector", &["bd"]),
        ];
        let node = |name: &str, zone: Option<&str>| {
            let mut n = Node::default();
            n.metadata.name = Some(name.into());
            let mut labels: std::collections::BTreeMap<String, String> =
                [("kubernetes.io/hostname".to_owned(), name.to_owned())].into();
            if let Some(z) = zone {
                labels.insert("topology.kubernetes.io/zone".into(), z.into());
            }
            n.metadata.labels = Some(labels);
            n
        };
        let names = |n: &Node| -> Vec<String> {
            cspcs_on_node(n, all.iter())
                .into_iter()
                .map(|r| r.name)
                .collect()
        };
        assert_eq!(names(&node("n2", Some("z1"))), vec!["a", "c"]);
        assert_eq!(names(&node("n3", None)), vec!["b"]);
        assert!(names(&node("n9", None)).is_empty());
    }
}
