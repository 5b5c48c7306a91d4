//! An in-memory [`VolumeApi`] with the API server's finalizer semantics (a deleted object that
//! still has finalizers only gets marked deleting; it goes away when they are cleared). For
//! tests of the node's filesystem and iSCSI logic that need no API server, and for the
//! benchmark.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use async_trait::async_trait;

use crate::kube::{ApiError, Attachment, NodeInfo, VolumeApi, VolumeTarget};

#[derive(Debug, Default)]
struct State {
    cvc: BTreeMap<String, String>,
    cv: BTreeMap<String, VolumeTarget>,
    nodes: BTreeMap<String, NodeInfo>,
    cva: BTreeMap<String, Attachment>,
}

#[derive(Clone, Debug, Default)]
pub struct MemoryVolumeApi {
    state: Arc<Mutex<State>>,
}

impl MemoryVolumeApi {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set_cvc_phase(&self, volume: &str, phase: &str) {
        self.lock().cvc.insert(volume.into(), phase.into());
    }

    pub fn set_volume(&self, volume: &str, target: VolumeTarget) {
        self.lock().cv.insert(volume.into(), target);
    }

    pub fn set_volume_phase(&self, volume: &str, phase: &str) {
        if let Some(v) = self.lock().cv.get_mut(volume) {
            v.phase = phase.into();
        }
    }

    pub fn set_node(&self, node: NodeInfo) {
        self.lock().nodes.insert(node.name.clone(), node);
    }

    /// Puts a CVA in place as it is (for multi-attach scenarios).
    pub fn put_attachment(&self, cva: Attachment) {
        self.lock().cva.insert(cva.name.clone(), cva);
    }

    /// A ready volume: CVC Bound, CV Healthy.
    pub fn add_ready_volume(&self, volume: &str, target_portal: &str) {
        self.set_cvc_phase(volume, "Bound");
        self.set_volume(
            volume,
            VolumeTarget {
                iqn: cstor_api::naming::iqn(volume),
                target_portal: target_portal.into(),
                phase: "Healthy".into(),
            },
        );
    }

    pub fn attachments(&self) -> Vec<Attachment> {
        self.lock().cva.values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("memory api lock")
    }
}

#[async_trait]
impl VolumeApi for MemoryVolumeApi {
    async fn cvc_phase(&self, volume: &str) -> Result<Option<String>, ApiError> {
        Ok(self.lock().cvc.get(volume).cloned())
    }

    async fn volume_target(&self, volume: &str) -> Result<Option<VolumeTarget>, ApiError> {
        Ok(self.lock().cv.get(volume).cloned())
    }

    async fn node(&self, name: &str) -> Result<Option<NodeInfo>, ApiError> {
        Ok(self.lock().nodes.get(name).cloned())
    }

    async fn attachments_of_volume(&self, volume: &str) -> Result<Vec<Attachment>, ApiError> {
        Ok(self
            .lock()
            .cva
            .values()
            .filter(|a| a.volume == volume)
            .cloned()
            .collect())
    }

    async fn attachments_of_node(&self, node: &str) -> Result<Vec<Attachment>, ApiError> {
        Ok(self
            .lock()
            .cva
            .values()
            .filter(|a| a.node == node)
            .cloned()
            .collect())
    }

    async fn attachment(&self, name: &str) -> Result<Option<Attachment>, ApiError> {
        Ok(self.lock().cva.get(name).cloned())
    }

    async fn create_attachment(&self, cva: &Attachment, _owner: &NodeInfo) -> Result<(), ApiError> {
        let mut s = self.lock();
        if s.cva.contains_key(&cva.name) {
            return Err(ApiError::Conflict {
                kind: "CStorVolumeAttachment",
                name: cva.name.clone(),
            });
        }
        let mut cva = cva.clone();
        cva.deleting = false;
        s.cva.insert(cva.name.clone(), cva);
        Ok(())
    }

    async fn update_attachment(&self, cva: &Attachment) -> Result<(), ApiError> {
        let mut s = self.lock();
        let Some(old) = s.cva.get(&cva.name) else {
            return Err(ApiError::Kube(
                format!("cstorvolumeattachments {} not found", cva.name).into(),
            ));
        };
        let deleting = old.deleting;
        let mut cva = cva.clone();
        cva.deleting = deleting;
        if deleting && cva.finalizers.is_empty() {
            s.cva.remove(&cva.name);
        } else {
            s.cva.insert(cva.name.clone(), cva);
        }
        Ok(())
    }

    async fn delete_attachment(&self, name: &str) -> Result<(), ApiError> {
        let mut s = self.lock();
        match s.cva.get_mut(name) {
            Some(a) if !a.finalizers.is_empty() => a.deleting = true,
            Some(_) => {
                s.cva.remove(name);
            }
            None => {}
        }
        Ok(())
    }
}
