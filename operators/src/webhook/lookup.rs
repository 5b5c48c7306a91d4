//! What the webhook rules read from (and the two things they write to) the cluster.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use async_trait::async_trait;
use cstor_api::{
    constants::{annotation as annotations, label as labels},
    cstor::{CStorPoolInstance, CStorVolume, CStorVolumeConfig, CStorVolumeReplica},
    ndm::{BlockDevice, BlockDeviceClaim},
};
use k8s_openapi::api::{
    admissionregistration::v1::ValidatingWebhookConfiguration,
    core::v1::{Node, PersistentVolumeClaim},
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{DeleteParams, ListParams, PostParams},
};

/// A failed cluster read or write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LookupError(pub String);

impl From<kube::Error> for LookupError {
    fn from(e: kube::Error) -> Self {
        LookupError(e.to_string())
    }
}

/// The cluster as the webhook rules see it.
#[async_trait]
pub trait ClusterLookup: Send + Sync {
    /// Nodes whose labels contain every entry of `selector`.
    async fn nodes_matching(
        &self,
        selector: &BTreeMap<String, String>,
    ) -> Result<Vec<Node>, LookupError>;
    /// A BlockDevice, `None` when it does not exist.
    async fn block_device(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<BlockDevice>, LookupError>;
    /// A BlockDeviceClaim, `None` when it does not exist.
    async fn block_device_claim(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<BlockDeviceClaim>, LookupError>;
    /// The BlockDeviceClaims labelled `openebs.io/cstor-pool-cluster=<cspc>` in `namespace`.
    async fn block_device_claims_of(
        &self,
        namespace: &str,
        cspc: &str,
    ) -> Result<Vec<BlockDeviceClaim>, LookupError>;
    /// CStorPoolInstances in `namespace` carrying every label of `selector`.
    async fn pool_instances(
        &self,
        namespace: &str,
        selector: &BTreeMap<String, String>,
    ) -> Result<Vec<CStorPoolInstance>, LookupError>;
    /// Number of CStorVolumeReplicas (all namespaces) labelled
    /// `cstorpoolinstance.openebs.io/name=<cspi>`.
    async fn replicas_on_pool(&self, cspi: &str) -> Result<usize, LookupError>;
    /// A PersistentVolumeClaim, `None` when it does not exist.
    async fn persistent_volume_claim(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<PersistentVolumeClaim>, LookupError>;
    /// Number of CStorVolumes plus CStorVolumeConfigs (all namespaces) labelled
    /// `openebs.io/source-volume=<pv>`.
    async fn clones_of(&self, pv: &str) -> Result<usize, LookupError>;
    /// Creates `claim`, or when a claim of that name exists adds `claim`'s
    /// `openebs.io/bd-predecessor` annotation to it.
    async fn save_replacement_claim(&self, claim: &BlockDeviceClaim) -> Result<(), LookupError>;
    /// Deletes a ValidatingWebhookConfiguration (absent is fine).
    async fn delete_webhook_configuration(&self, name: &str) -> Result<(), LookupError>;
}

fn has_labels<K: Resource>(object: &K, selector: &BTreeMap<String, String>) -> bool {
    let own = object.meta().labels.as_ref();
    selector
        .iter()
        .all(|(k, v)| own.and_then(|l| l.get(k)) == Some(v))
}

fn label_selector(selector: &BTreeMap<String, String>) -> String {
    selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// An in-memory cluster for tests and dry runs: plain vectors, writes recorded in place.
#[derive(Debug, Default, Clone)]
pub struct MemoryLookup {
    /// Nodes.
    pub nodes: Vec<Node>,
    /// BlockDevices.
    pub block_devices: Vec<BlockDevice>,
    /// BlockDeviceClaims (also receives the claims the webhook saves).
    pub claims: Arc<Mutex<Vec<BlockDeviceClaim>>>,
    /// CStorPoolInstances.
    pub pool_instances: Vec<CStorPoolInstance>,
    /// CStorVolumeReplicas.
    pub replicas: Vec<CStorVolumeReplica>,
    /// PersistentVolumeClaims.
    pub pvcs: Vec<PersistentVolumeClaim>,
    /// CStorVolumes.
    pub volumes: Vec<CStorVolume>,
    /// CStorVolumeConfigs.
    pub volume_configs: Vec<CStorVolumeConfig>,
    /// Names of the ValidatingWebhookConfigurations that exist.
    pub webhook_configurations: Arc<Mutex<Vec<String>>>,
}

impl MemoryLookup {
    /// A snapshot of the claims (including the ones the webhook saved).
    pub fn claims(&self) -> Vec<BlockDeviceClaim> {
        self.claims.lock().expect("claims lock").clone()
    }
}

fn same_place<K: Resource>(object: &K, namespace: &str, name: &str) -> bool {
    object.meta().name.as_deref() == Some(name)
        && object.meta().namespace.as_deref().unwrap_or_default() == namespace
}

#[async_trait]
impl ClusterLookup for MemoryLookup {
    async fn nodes_matching(
        &self,
        selector: &BTreeMap<String, String>,
    ) -> Result<Vec<Node>, LookupError> {
        Ok(self
            .nodes
            .iter()
            .filter(|n| has_labels(*n, selector))
            .cloned()
            .collect())
    }

    async fn block_device(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<BlockDevice>, LookupError> {
        Ok(self
            .block_devices
            .iter()
            .find(|b| same_place(*b, namespace, name))
            .cloned())
    }

    async fn block_device_claim(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<BlockDeviceClaim>, LookupError> {
        Ok(self
            .claims()
            .into_iter()
            .find(|c| same_place(c, namespace, name)))
    }

    async fn block_device_claims_of(
        &self,
        namespace: &str,
        cspc: &str,
    ) -> Result<Vec<BlockDeviceClaim>, LookupError> {
        let selector = BTreeMap::from([(labels::CSTOR_POOL_CLUSTER.to_owned(), cspc.to_owned())]);
        Ok(self
            .claims()
            .into_iter()
            .filter(|c| {
                c.metadata.namespace.as_deref().unwrap_or_default() == namespace
                    && has_labels(c, &selector)
            })
            .collect())
    }

    async fn pool_instances(
        &self,
        namespace: &str,
        selector: &BTreeMap<String, String>,
    ) -> Result<Vec<CStorPoolInstance>, LookupError> {
        Ok(self
            .pool_instances
            .iter()
            .filter(|c| {
                c.metadata.namespace.as_deref().unwrap_or_default() == namespace
                    && has_labels(*c, selector)
            })
            .cloned()
            .collect())
    }

    async fn replicas_on_pool(&self, cspi: &str) -> Result<usize, LookupError> {
        let selector = BTreeMap::from([(labels::CSPI_NAME.to_owned(), cspi.to_owned())]);
        Ok(self
            .replicas
            .iter()
            .filter(|r| has_labels(*r, &selector))
            .count())
    }

    async fn persistent_volume_claim(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<PersistentVolumeClaim>, LookupError> {
        Ok(self
            .pvcs
            .iter()
            .find(|p| same_place(*p, namespace, name))
            .cloned())
    }

    async fn clones_of(&self, pv: &str) -> Result<usize, LookupError> {
        let selector = BTreeMap::from([(labels::SOURCE_VOLUME.to_owned(), pv.to_owned())]);
        Ok(self
            .volumes
            .iter()
            .filter(|v| has_labels(*v, &selector))
            .count()
            + self
                .volume_configs
                .iter()
                .filter(|v| has_labels(*v, &selector))
                .count())
    }

    async fn save_replacement_claim(&self, claim: &BlockDeviceClaim) -> Result<(), LookupError> {
        let mut claims = self.claims.lock().expect("claims lock");
        let namespace = claim.metadata.namespace.clone().unwrap_or_default();
        let name = claim.name_any();
        match claims
            .iter_mut()
            .find(|c| same_place(*c, &namespace, &name))
        {
            Some(existing) => {
                let predecessor = claim
                    .annotations()
                    .get(annotations::BD_PREDECESSOR)
                    .cloned()
                    .unwrap_or_default();
                existing
                    .annotations_mut()
                    .insert(annotations::BD_PREDECESSOR.to_owned(), predecessor);
            }
            None => claims.push(claim.clone()),
        }
        Ok(())
    }

    async fn delete_webhook_configuration(&self, name: &str) -> Result<(), LookupError> {
        self.webhook_configurations
            .lock()
            .expect("webhook configurations lock")
            .retain(|n| n != name);
        Ok(())
    }
}

/// The live cluster behind a `kube::Client`.
#[derive(Clone)]
pub struct KubeLookup {
    client: Client,
}

impl KubeLookup {
    /// Reads and writes through `client`.
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

async fn get_opt<K>(api: &Api<K>, name: &str) -> Result<Option<K>, LookupError>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    Ok(api.get_opt(name).await?)
}

#[async_trait]
impl ClusterLookup for KubeLookup {
    async fn nodes_matching(
        &self,
        selector: &BTreeMap<String, String>,
    ) -> Result<Vec<Node>, LookupError> {
        let api: Api<Node> = Api::all(self.client.clone());
        let params = ListParams::default().labels(&label_selector(selector));
        Ok(api.list(&params).await?.items)
    }

    async fn block_device(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<BlockDevice>, LookupError> {
        get_opt(&Api::namespaced(self.client.clone(), namespace), name).await
    }

    async fn block_device_claim(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<BlockDeviceClaim>, LookupError> {
        get_opt(&Api::namespaced(self.client.clone(), namespace), name).await
    }

    async fn block_device_claims_of(
        &self,
        namespace: &str,
        cspc: &str,
    ) -> Result<Vec<BlockDeviceClaim>, LookupError> {
        let api: Api<BlockDeviceClaim> = Api::namespaced(self.client.clone(), namespace);
        let params =
            ListParams::default().labels(&format!("{}={cspc}", labels::CSTOR_POOL_CLUSTER));
        Ok(api.list(&params).await?.items)
    }

    async fn pool_instances(
        &self,
        namespace: &str,
        selector: &BTreeMap<String, String>,
    ) -> Result<Vec<CStorPoolInstance>, LookupError> {
        let api: Api<CStorPoolInstance> = Api::namespaced(self.client.clone(), namespace);
        let params = ListParams::default().labels(&label_selector(selector));
        Ok(api.list(&params).await?.items)
    }

    async fn replicas_on_pool(&self, cspi: &str) -> Result<usize, LookupError> {
        let api: Api<CStorVolumeReplica> = Api::all(self.client.clone());
        let params = ListParams::default().labels(&format!("{}={cspi}", labels::CSPI_NAME));
        Ok(api.list(&params).await?.items.len())
    }

    async fn persistent_volume_claim(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<PersistentVolumeClaim>, LookupError> {
        get_opt(&Api::namespaced(self.client.clone(), namespace), name).await
    }

    async fn clones_of(&self, pv: &str) -> Result<usize, LookupError> {
        let params = ListParams::default().labels(&format!("{}={pv}", labels::SOURCE_VOLUME));
        let volumes: Api<CStorVolume> = Api::all(self.client.clone());
        let configs: Api<CStorVolumeConfig> = Api::all(self.client.clone());
        Ok(volumes.list(&params).await?.items.len() + configs.list(&params).await?.items.len())
    }

    async fn save_replacement_claim(&self, claim: &BlockDeviceClaim) -> Result<(), LookupError> {
        let namespace = claim.metadata.namespace.clone().unwrap_or_default();
        let api: Api<BlockDeviceClaim> = Api::namespaced(self.client.clone(), &namespace);
        let name = claim.name_any();
        match api.get_opt(&name).await? {
            Some(mut existing) => {
                let predecessor = claim
                    .annotations()
                    .get(annotations::BD_PREDECESSOR)
                    .cloned()
                    .unwrap_or_default();
                existing
                    .annotations_mut()
                    .insert(annotations::BD_PREDECESSOR.to_owned(), predecessor);
                api.replace(&name, &PostParams::default(), &existing)
                    .await?;
            }
            None => {
                api.create(&PostParams::default(), claim).await?;
            }
        }
        Ok(())
    }

    async fn delete_webhook_configuration(&self, name: &str) -> Result<(), LookupError> {
        let api: Api<ValidatingWebhookConfiguration> = Api::all(self.client.clone());
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
