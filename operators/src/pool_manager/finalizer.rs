//! A finalizer helper with the semantics of `kube::runtime::finalizer` (add the finalizer before
//! the first apply; on deletion run cleanup, then remove it), written with plain replaces of the
//! whole object, so the operators need `update` but no `patch` on their objects. It was written
//! while the in-process test server still refused kube's JSON-patch `test` of a missing
//! `/metadata/finalizers`; the server now accepts it as the real API does, so switching to kube's
//! helper (and granting `patch` in deploy/'s RBAC) is possible.

use std::{fmt::Debug, future::Future, sync::Arc};

use kube::{Api, Resource, ResourceExt, api::PostParams, runtime::controller::Action};
use serde::{Serialize, de::DeserializeOwned};

/// What the reconciler must do.
pub enum Step<K> {
    Apply(Arc<K>),
    Cleanup(Arc<K>),
}

pub async fn finalized<K, F, Fut, E>(
    api: &Api<K>,
    finalizer: &str,
    obj: Arc<K>,
    f: F,
) -> Result<Action, E>
where
    K: Resource + Clone + Serialize + DeserializeOwned + Debug,
    F: FnOnce(Step<K>) -> Fut,
    Fut: Future<Output = Result<Action, E>>,
    E: From<kube::Error>,
{
    let has = obj.finalizers().iter().any(|x| x == finalizer);
    let deleting = obj.meta().deletion_timestamp.is_some();
    match (deleting, has) {
        (false, false) => {
            let mut o = (*obj).clone();
            o.finalizers_mut().push(finalizer.to_owned());
            let o = api
                .replace(&o.name_any(), &PostParams::default(), &o)
                .await?;
            f(Step::Apply(Arc::new(o))).await
        }
        (false, true) => f(Step::Apply(obj)).await,
        (true, true) => {
            let name = obj.name_any();
            let action = f(Step::Cleanup(obj)).await?;
            let Some(mut o) = api.get_opt(&name).await? else {
                return Ok(action);
            };
            o.finalizers_mut().retain(|x| x != finalizer);
            match api.replace(&name, &PostParams::default(), &o).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
            Ok(action)
        }
        (true, false) => Ok(Action::await_change()),
    }
}
