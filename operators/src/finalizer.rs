//! kube's finalizer helper (`kube::runtime::finalizer`), with its errors folded into each
//! operator's own error type: the finalizer is added (a JSON patch) before the first apply; on
//! deletion the cleanup runs and then the finalizer is removed (a JSON patch that checks its
//! position, so a concurrent change to the list is never overwritten).

use std::{fmt::Debug, future::Future, sync::Arc};

use kube::{
    Api, Resource,
    runtime::{controller::Action, finalizer},
};
use serde::{Serialize, de::DeserializeOwned};

pub use kube::runtime::finalizer::Event as Step;

/// A finalizer the helper refused to handle (an object without a name, an invalid finalizer
/// name); neither happens for objects from a watch and our constant finalizer names.
#[derive(Debug, thiserror::Error)]
#[error("finalizer {finalizer}: {reason}")]
pub struct Misuse {
    pub finalizer: String,
    pub reason: &'static str,
}

/// Runs `reconcile` under `finalizer_name` on `obj`; the apply and cleanup errors come back as
/// they are, the finalizer patches' errors as [`kube::Error`].
pub async fn finalized<K, E, F, Fut>(
    api: &Api<K>,
    finalizer_name: &str,
    obj: Arc<K>,
    reconcile: F,
) -> Result<Action, E>
where
    K: Resource + Clone + DeserializeOwned + Serialize + Debug,
    F: FnOnce(Step<K>) -> Fut,
    Fut: Future<Output = Result<Action, E>>,
    E: std::error::Error + From<kube::Error> + From<Misuse> + 'static,
{
    let misuse = |reason| {
        E::from(Misuse {
            finalizer: finalizer_name.to_owned(),
            reason,
        })
    };
    match finalizer::finalizer(api, finalizer_name, obj, reconcile).await {
        Ok(action) => Ok(action),
        Err(finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e)) => Err(e),
        Err(finalizer::Error::AddFinalizer(e) | finalizer::Error::RemoveFinalizer(e)) => {
            Err(E::from(e))
        }
        Err(finalizer::Error::UnnamedObject) => Err(misuse("the object has no name")),
        Err(finalizer::Error::InvalidFinalizer) => Err(misuse("not a valid finalizer name")),
    }
}
