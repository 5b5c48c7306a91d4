//! Per-volume operation guard: a mutating RPC takes the guard of every volume it touches for
//! its whole duration; a concurrent call for one of those volumes is refused at once with
//! `ABORTED` (the CO retries it), instead of racing on the same Kubernetes objects.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

/// The set of volumes with an operation in flight.
#[derive(Clone, Debug, Default)]
pub struct VolumeGuard {
    busy: Arc<Mutex<HashMap<String, &'static str>>>,
}

/// Another operation holds the volume.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "an operation ({operation}) is already in progress for volume {volume}; retry after it finishes"
)]
pub struct Busy {
    /// The volume.
    pub volume: String,
    /// The RPC holding it.
    pub operation: &'static str,
}

/// Held volumes; released when dropped.
#[derive(Debug)]
pub struct GuardToken {
    busy: Arc<Mutex<HashMap<String, &'static str>>>,
    volumes: Vec<String>,
}

impl Drop for GuardToken {
    fn drop(&mut self) {
        let mut busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        for v in &self.volumes {
            busy.remove(v);
        }
    }
}

impl VolumeGuard {
    /// A guard with no volume held.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes `volume` for `operation`, or reports who holds it.
    pub fn try_lock(&self, volume: &str, operation: &'static str) -> Result<GuardToken, Busy> {
        self.try_lock_all(&[volume], operation)
    }

    /// Takes all `volumes` at once (all or none).
    pub fn try_lock_all(
        &self,
        volumes: &[&str],
        operation: &'static str,
    ) -> Result<GuardToken, Busy> {
        let mut busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((volume, op)) = volumes
            .iter()
            .find_map(|v| busy.get(*v).map(|op| (*v, *op)))
        {
            return Err(Busy {
                volume: volume.to_owned(),
                operation: op,
            });
        }
        let mut held = Vec::new();
        for v in volumes {
            if busy.insert((*v).to_owned(), operation).is_none() {
                held.push((*v).to_owned());
            }
        }
        Ok(GuardToken {
            busy: self.busy.clone(),
            volumes: held,
        })
    }

    /// Whether `volume` is held.
    pub fn is_busy(&self, volume: &str) -> bool {
        self.busy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(volume)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_caller_is_refused_until_the_first_finishes() {
        let g = VolumeGuard::new();
        let t = g.try_lock("pvc-1", "CreateVolume").unwrap();
        let err = g.try_lock("pvc-1", "DeleteVolume").unwrap_err();
        assert_eq!(
            err,
            Busy {
                volume: "pvc-1".into(),
                operation: "CreateVolume"
            }
        );
        assert!(
            g.try_lock("pvc-2", "DeleteVolume").is_ok(),
            "other volumes are independent"
        );
        assert!(g.try_lock_all(&["pvc-3", "pvc-1"], "CreateVolume").is_err());
        assert!(!g.is_busy("pvc-3"), "a refused multi-lock holds nothing");
        drop(t);
        assert!(g.try_lock("pvc-1", "DeleteVolume").is_ok());
    }
}
