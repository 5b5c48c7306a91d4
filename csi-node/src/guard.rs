//! Per-volume guard: one mutating operation per volume at a time. A second call for a volume
//! that is busy gets `ABORTED` at once (CSI: "operation pending for volume"); the CO retries.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

/// What is running on a volume; shown in the ABORTED message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Stage,
    Unstage,
    Publish,
    Unpublish,
    Expand,
    Remount,
    Cleanup,
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Operation::Stage => "NodeStageVolume",
            Operation::Unstage => "NodeUnstageVolume",
            Operation::Publish => "NodePublishVolume",
            Operation::Unpublish => "NodeUnpublishVolume",
            Operation::Expand => "NodeExpandVolume",
            Operation::Remount => "read-only remount",
            Operation::Cleanup => "start-up cleanup",
        })
    }
}

/// The volume is busy with another operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("volume {volume} is busy with {running}; retry when it has finished")]
pub struct Busy {
    pub volume: String,
    pub running: Operation,
}

/// Set of volumes with an operation in flight. Cheap to clone (shared).
#[derive(Clone, Debug, Default)]
pub struct VolumeGuards {
    busy: Arc<Mutex<HashMap<String, Operation>>>,
}

impl VolumeGuards {
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks `volume` busy with `op` until the returned guard is dropped.
    pub fn try_lock(&self, volume: &str, op: Operation) -> Result<VolumeGuard, Busy> {
        let mut busy = self.busy.lock().expect("guard lock");
        if let Some(running) = busy.get(volume) {
            return Err(Busy {
                volume: volume.to_string(),
                running: *running,
            });
        }
        busy.insert(volume.to_string(), op);
        Ok(VolumeGuard {
            volume: volume.to_string(),
            busy: self.busy.clone(),
        })
    }

    /// The operation running on `volume`, if any.
    pub fn running(&self, volume: &str) -> Option<Operation> {
        self.busy.lock().expect("guard lock").get(volume).copied()
    }
}

/// Releases the volume when dropped (also when the RPC future is cancelled).
#[derive(Debug)]
pub struct VolumeGuard {
    volume: String,
    busy: Arc<Mutex<HashMap<String, Operation>>>,
}

impl Drop for VolumeGuard {
    fn drop(&mut self) {
        if let Ok(mut busy) = self.busy.lock() {
            busy.remove(&self.volume);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_until_release() {
        let g = VolumeGuards::new();
        let first = g.try_lock("pvc-1", Operation::Stage).unwrap();
        let err = g.try_lock("pvc-1", Operation::Publish).unwrap_err();
        assert_eq!(err.running, Operation::Stage);
        assert!(err.to_string().contains("NodeStageVolume"), "{err}");
        let other = g.try_lock("pvc-2", Operation::Publish).unwrap();
        drop(first);
        assert_eq!(g.running("pvc-1"), None);
        g.try_lock("pvc-1", Operation::Unstage).unwrap();
        drop(other);
    }
}
