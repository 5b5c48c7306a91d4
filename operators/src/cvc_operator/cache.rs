//! Watch caches of the cvc-operator: what a reconcile reads comes from reflector stores fed by
//! the same watches that wake the controller, so a bound volume that nothing changed costs no
//! API request at all, and provisioning one reads only what must be exact (the CVRs a placement
//! is decided from).
//!
//! Until [`super::run`] starts the reflectors (tests that call [`super::reconcile`] directly), or
//! while a store has not finished its first list, every read goes to the API instead.
//!
//! Staleness: a store can lag behind this operator's own last write to a CVC. The resource
//! version of every CVC this operator wrote is remembered ([`Caches::wrote`]); a reconcile handed
//! an older copy waits for the watch to deliver the newer one instead of acting on it.

use std::{collections::HashMap, fmt::Debug, sync::Mutex};

use cstor_api::cstor::{
    CStorPoolCluster, CStorPoolInstance, CStorVolume, CStorVolumeConfig, CStorVolumePolicy,
    CStorVolumeReplica,
};
use futures::{FutureExt, Stream, StreamExt};
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{Node, Service},
    policy::v1::PodDisruptionBudget,
};
use kube::{
    Api, Resource, ResourceExt,
    runtime::{
        WatchStreamExt,
        reflector::{self, ObjectRef, Store, store::Writer},
        watcher,
    },
};
use serde::de::DeserializeOwned;

use super::Error;

/// A namespaced kind a cache holds (what [`super::Context::cached`] and friends need of it).
pub use crate::Namespaced;

/// One cached kind: its store, and the writer until the reflector takes it.
pub struct Cached<K: Resource<DynamicType = ()> + Clone + 'static> {
    store: Store<K>,
    writer: Mutex<Option<Writer<K>>>,
}

impl<K> Default for Cached<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    fn default() -> Self {
        let (store, writer) = reflector::store();
        Self {
            store,
            writer: Mutex::new(Some(writer)),
        }
    }
}

impl<K> Cached<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    /// Whether the store holds a complete first list (reads can be answered from it).
    pub fn ready(&self) -> bool {
        self.store
            .wait_until_ready()
            .now_or_never()
            .is_some_and(|r| r.is_ok())
    }

    /// The watch stream of `api` that fills this store (applied objects), or `None` when it was
    /// taken already. What is kept of each object is what `keep` leaves of it (managed fields
    /// are always dropped: reads never need them, and they are most of an object's size).
    pub fn reflect(
        &self,
        api: Api<K>,
        config: watcher::Config,
        keep: fn(&mut K),
    ) -> Option<impl Stream<Item = Result<K, watcher::Error>> + Send + use<K>> {
        let writer = self.writer.lock().expect("cache writer lock").take()?;
        Some(
            watcher(api, config)
                .default_backoff()
                .modify(move |o| {
                    o.meta_mut().managed_fields = None;
                    keep(o);
                })
                .reflect(writer)
                .applied_objects(),
        )
    }

    /// Object `name` (in `ns`, `None` for cluster-scoped kinds) from the store when it is ready,
    /// else from `api`.
    pub async fn get(
        &self,
        api: &Api<K>,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Option<K>, Error> {
        if self.ready() {
            let key = match ns {
                Some(ns) => ObjectRef::new(name).within(ns),
                None => ObjectRef::new(name),
            };
            return Ok(self.store.get(&key).map(|o| (*o).clone()));
        }
        let kind = K::kind(&());
        api.get_opt(name)
            .await
            .map_err(Error::kube(format!("get {kind} {name}")))
    }

    /// The objects carrying every label of `labels` (`(key, Some(value))`: with that value,
    /// `(key, None)`: with any value), from the store when it is ready, else from `api`.
    pub async fn list(
        &self,
        api: &Api<K>,
        labels: &[(&str, Option<&str>)],
    ) -> Result<Vec<K>, Error> {
        if self.ready() {
            return Ok(self
                .store
                .state()
                .into_iter()
                .filter(|o| {
                    let have = o.labels();
                    labels.iter().all(|(k, want)| match (have.get(*k), want) {
                        (Some(v), Some(want)) => v == want,
                        (Some(_), None) => true,
                        (None, _) => false,
                    })
                })
                .map(|o| (*o).clone())
                .collect());
        }
        let selector = labels
            .iter()
            .map(|(k, v)| match v {
                Some(v) => format!("{k}={v}"),
                None => (*k).to_owned(),
            })
            .collect::<Vec<_>>()
            .join(",");
        let kind = K::kind(&());
        Ok(api
            .list(&kube::api::ListParams::default().labels(&selector))
            .await
            .map_err(Error::kube(format!("list {kind} ({selector})")))?
            .items)
    }
}

/// Keeps the whole object (but its managed fields).
pub fn whole<K>(_: &mut K) {}

/// Keeps a Deployment's metadata only: reads need to know the target Deployment exists; the
/// policy sync, which needs its pod template, reads it from the API (rarely).
pub fn metadata_only(d: &mut Deployment) {
    d.spec = None;
    d.status = None;
}

/// Keeps what reads need of a target Service: its metadata and ClusterIP.
pub fn cluster_ip_only(s: &mut Service) {
    s.spec = s
        .spec
        .take()
        .map(|spec| k8s_openapi::api::core::v1::ServiceSpec {
            cluster_ip: spec.cluster_ip,
            ..Default::default()
        });
    s.status = None;
}

/// Keeps what reads need of a replica: labels, finalizers and owners (not annotations), its
/// replica id and phase.
pub fn replica_essentials(r: &mut CStorVolumeReplica) {
    r.metadata.annotations = None;
    r.spec = cstor_api::cstor::CStorVolumeReplicaSpec {
        replica_id: r.spec.replica_id.take(),
        ..Default::default()
    };
    r.status = r
        .status
        .take()
        .map(|st| cstor_api::cstor::CStorVolumeReplicaStatus {
            phase: st.phase,
            ..Default::default()
        });
}

/// The stores a reconcile reads from.
#[derive(Default)]
pub struct Caches {
    pub volumes: Cached<CStorVolume>,
    pub replicas: Cached<CStorVolumeReplica>,
    pub services: Cached<Service>,
    pub deployments: Cached<Deployment>,
    pub pools: Cached<CStorPoolInstance>,
    pub pool_clusters: Cached<CStorPoolCluster>,
    pub policies: Cached<CStorVolumePolicy>,
    pub nodes: Cached<Node>,
    pub disruption_budgets: Cached<PodDisruptionBudget>,
    /// Resource versions of the CVCs this operator wrote last.
    written: Mutex<HashMap<String, u64>>,
}

impl Caches {
    /// Remembers the resource version a write of `cvc` returned.
    pub fn wrote(&self, cvc: &CStorVolumeConfig) {
        if let Some(rv) = parse_rv(cvc) {
            self.written
                .lock()
                .expect("written lock")
                .insert(cvc.name_any(), rv);
        }
    }

    /// Whether `cvc` is older than what this operator wrote last (the watch has not delivered
    /// our own write yet). Forgets the record once the cache caught up.
    pub fn is_stale(&self, cvc: &CStorVolumeConfig) -> bool {
        let mut written = self.written.lock().expect("written lock");
        let name = cvc.name_any();
        match (written.get(&name), parse_rv(cvc)) {
            (Some(&ours), Some(seen)) if seen < ours => true,
            (Some(_), _) => {
                written.remove(&name);
                false
            }
            _ => false,
        }
    }

    /// Forgets a deleted CVC.
    pub fn forget(&self, name: &str) {
        self.written.lock().expect("written lock").remove(name);
    }
}

/// The numeric resource version of an object (etcd revisions are numbers; anything else
/// disables the staleness check for it).
fn parse_rv<K: Resource>(obj: &K) -> Option<u64> {
    obj.meta().resource_version.as_deref()?.parse().ok()
}

/// Drives a reflector stream that no controller consumes (stores read but not watched for
/// triggers).
pub async fn drain<S, K>(stream: Option<S>)
where
    S: Stream<Item = Result<K, watcher::Error>> + Send + 'static,
    K: Send + 'static,
{
    if let Some(s) = stream {
        s.for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "watch error (retried)");
            }
        })
        .await;
    }
}
