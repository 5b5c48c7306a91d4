//! [`VolumeApi`] against a Kubernetes API server with `kube`: CVC and CStorVolume reads, Node
//! reads, and the CStorVolumeAttachments in upstream's exact shape (name `<pv>-<node>`, labels
//! `nodeID`/`Volname`, a Node ownerReference, the node name as finalizer while staged).

use std::collections::BTreeMap;

use async_trait::async_trait;
use cstor_api::{
    constants::label::{CVA_NODE_ID, CVA_VOLNAME},
    cstor::{
        CStorVolume, CStorVolumeAttachment, CStorVolumeAttachmentSpec, CStorVolumeConfig,
        IscsiInfo, VolumeInfo,
    },
};
use k8s_openapi::{api::core::v1::Node, apimachinery::pkg::apis::meta::v1::OwnerReference};
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, PostParams},
};

use crate::kube::{AccessType, ApiError, Attachment, NodeInfo, VolumeApi, VolumeTarget};

const CVA: &str = "CStorVolumeAttachment";

#[derive(Clone)]
pub struct KubeVolumeApi {
    client: Client,
    namespace: String,
}

impl std::fmt::Debug for KubeVolumeApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeVolumeApi")
            .field("namespace", &self.namespace)
            .finish()
    }
}

fn kube_err(e: kube::Error) -> ApiError {
    ApiError::Kube(Box::new(e))
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

impl KubeVolumeApi {
    /// All cStor objects live in `namespace` (OPENEBS_NAMESPACE).
    pub fn new(client: Client, namespace: impl Into<String>) -> Self {
        Self {
            client,
            namespace: namespace.into(),
        }
    }

    fn cvas(&self) -> Api<CStorVolumeAttachment> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    async fn list_cvas(&self, selector: String) -> Result<Vec<Attachment>, ApiError> {
        let list = self
            .cvas()
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(kube_err)?;
        Ok(list.items.iter().map(from_cva).collect())
    }
}

/// Reads the fields the node uses from a CStorVolumeAttachment.
pub fn from_cva(c: &CStorVolumeAttachment) -> Attachment {
    let labels = c.metadata.labels.clone().unwrap_or_default();
    let v = &c.spec.volume;
    let i = &c.spec.iscsi;
    let s = |o: &Option<String>| o.clone().unwrap_or_default();
    Attachment {
        name: c.metadata.name.clone().unwrap_or_default(),
        volume: if v.name.is_empty() {
            labels.get(CVA_VOLNAME).cloned().unwrap_or_default()
        } else {
            v.name.clone()
        },
        node: if v.owner_node_id.is_empty() {
            labels.get(CVA_NODE_ID).cloned().unwrap_or_default()
        } else {
            v.owner_node_id.clone()
        },
        access_type: AccessType::parse(v.access_type.as_deref().unwrap_or("mount"))
            .unwrap_or(AccessType::Mount),
        fs_type: s(&v.fs_type),
        staging_target_path: s(&v.staging_target_path),
        target_path: s(&v.target_path),
        device_path: s(&v.device_path),
        iqn: s(&i.iqn),
        target_portal: s(&i.target_portal),
        lun: s(&i.lun),
        iscsi_interface: s(&i.iscsi_interface),
        finalizers: c.metadata.finalizers.clone().unwrap_or_default(),
        deleting: c.metadata.deletion_timestamp.is_some(),
        extra_labels: labels
            .into_iter()
            .filter(|(k, _)| k != CVA_NODE_ID && k != CVA_VOLNAME)
            .collect(),
    }
}

/// Writes an [`Attachment`] onto a CStorVolumeAttachment, keeping fields it does not model.
pub fn apply_to_cva(a: &Attachment, c: &mut CStorVolumeAttachment) {
    let mut labels: BTreeMap<String, String> = a.extra_labels.clone();
    labels.insert(CVA_NODE_ID.into(), a.node.clone());
    labels.insert(CVA_VOLNAME.into(), a.volume.clone());
    c.metadata.labels = Some(labels);
    c.metadata.finalizers = (!a.finalizers.is_empty()).then(|| a.finalizers.clone());
    let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let v: &mut VolumeInfo = &mut c.spec.volume;
    v.name = a.volume.clone();
    v.owner_node_id = a.node.clone();
    v.access_type = Some(a.access_type.as_str().to_string());
    v.fs_type = opt(&a.fs_type);
    v.read_only = Some(false);
    v.staging_target_path = opt(&a.staging_target_path);
    v.target_path = opt(&a.target_path);
    v.device_path = opt(&a.device_path);
    let i: &mut IscsiInfo = &mut c.spec.iscsi;
    i.iqn = opt(&a.iqn);
    i.target_portal = opt(&a.target_portal);
    i.lun = opt(&a.lun);
    i.iscsi_interface = opt(&a.iscsi_interface);
}

#[async_trait]
impl VolumeApi for KubeVolumeApi {
    async fn readiness(&self) -> Result<(), String> {
        let (ns, c) = (&self.namespace, &self.client);
        let (cvc, cv, cva, node) = tokio::join!(
            cstor_api::served::answers(Api::<CStorVolumeConfig>::namespaced(c.clone(), ns)),
            cstor_api::served::answers(Api::<CStorVolume>::namespaced(c.clone(), ns)),
            cstor_api::served::answers(Api::<CStorVolumeAttachment>::namespaced(c.clone(), ns)),
            cstor_api::served::answers(Api::<Node>::all(c.clone())),
        );
        cstor_api::served::all([cvc, cv, cva, node])
    }

    async fn cvc_phase(&self, volume: &str) -> Result<Option<String>, ApiError> {
        let api: Api<CStorVolumeConfig> = Api::namespaced(self.client.clone(), &self.namespace);
        let cvc = api.get_opt(volume).await.map_err(kube_err)?;
        Ok(cvc.map(|c| {
            c.status
                .phase
                .as_ref()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| "Pending".into())
        }))
    }

    async fn volume_target(&self, volume: &str) -> Result<Option<VolumeTarget>, ApiError> {
        let api: Api<CStorVolume> = Api::namespaced(self.client.clone(), &self.namespace);
        let Some(cv) = api.get_opt(volume).await.map_err(kube_err)? else {
            return Ok(None);
        };
        let phase = cv
            .status
            .as_ref()
            .and_then(|s| s.phase.as_ref())
            .map(|p| p.as_str().to_string())
            .unwrap_or_default();
        let iqn = cv.spec.iqn.clone().unwrap_or_default();
        let portal = cv.spec.target_portal.clone().unwrap_or_default();
        if iqn.is_empty() || portal.is_empty() {
            // The cvc-operator fills both at creation; without them nobody can attach.
            return Err(ApiError::Malformed {
                kind: "CStorVolume",
                name: volume.to_string(),
                message: "spec.iqn or spec.targetPortal is empty".into(),
            });
        }
        Ok(Some(VolumeTarget {
            iqn,
            target_portal: portal,
            phase,
        }))
    }

    async fn node(&self, name: &str) -> Result<Option<NodeInfo>, ApiError> {
        let api: Api<Node> = Api::all(self.client.clone());
        let Some(n) = api.get_opt(name).await.map_err(kube_err)? else {
            return Ok(None);
        };
        let ready = n
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        Ok(Some(NodeInfo {
            name: name.to_string(),
            uid: n.metadata.uid.clone().unwrap_or_default(),
            ready,
            zone: n
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(cstor_api::constants::csi::TOPOLOGY_ZONE_KEY))
                .cloned(),
        }))
    }

    async fn attachments_of_volume(&self, volume: &str) -> Result<Vec<Attachment>, ApiError> {
        self.list_cvas(format!("{CVA_VOLNAME}={volume}")).await
    }

    async fn attachments_of_node(&self, node: &str) -> Result<Vec<Attachment>, ApiError> {
        self.list_cvas(format!("{CVA_NODE_ID}={node}")).await
    }

    async fn attachment(&self, name: &str) -> Result<Option<Attachment>, ApiError> {
        Ok(self
            .cvas()
            .get_opt(name)
            .await
            .map_err(kube_err)?
            .as_ref()
            .map(from_cva))
    }

    async fn create_attachment(&self, a: &Attachment, owner: &NodeInfo) -> Result<(), ApiError> {
        let mut cva = CStorVolumeAttachment::namespaced(
            &a.name,
            &self.namespace,
            CStorVolumeAttachmentSpec::default(),
        );
        apply_to_cva(a, &mut cva);
        cva.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "v1".into(),
            kind: "Node".into(),
            name: owner.name.clone(),
            uid: owner.uid.clone(),
            ..Default::default()
        }]);
        match self.cvas().create(&PostParams::default(), &cva).await {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, 409) => Err(ApiError::Conflict {
                kind: CVA,
                name: a.name.clone(),
            }),
            Err(e) => Err(kube_err(e)),
        }
    }

    async fn update_attachment(&self, a: &Attachment) -> Result<(), ApiError> {
        let api = self.cvas();
        let mut cur = api.get(&a.name).await.map_err(kube_err)?;
        apply_to_cva(a, &mut cur);
        match api.replace(&a.name, &PostParams::default(), &cur).await {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, 409) => Err(ApiError::Conflict {
                kind: CVA,
                name: a.name.clone(),
            }),
            // Clearing the last finalizer of an object being deleted removes it.
            Err(e) if is_status(&e, 404) => Ok(()),
            Err(e) => Err(kube_err(e)),
        }
    }

    async fn delete_attachment(&self, name: &str) -> Result<(), ApiError> {
        match self.cvas().delete(name, &DeleteParams::foreground()).await {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, 404) => Ok(()),
            Err(e) => Err(kube_err(e)),
        }
    }
}
