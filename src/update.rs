//! Read, change, write back one object without losing a concurrent write: the write carries
//! the resourceVersion that was read, a 409 Conflict re-reads and applies the change again.
//! Status is not a subresource on the cStor kinds, so every controller writing a field of an
//! object shares it with the others writing other fields of the same object.

use kube::{Api, Resource, api::PostParams};
use serde::{Serialize, de::DeserializeOwned};

/// How many conflicts in a row before giving up.
pub const TRIES: usize = 10;

/// What [`modify`] did.
#[derive(Debug)]
pub enum Modified<K> {
    /// The object does not exist.
    Absent,
    /// The change asked for no write; the object as read.
    Unchanged(K),
    /// Written; the object as the API server returned it.
    Written(K),
}

/// Why [`modify`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ModifyError {
    #[error(transparent)]
    Api(#[from] kube::Error),
    #[error("{kind} {name} kept changing under the update ({tries} conflicts in a row)")]
    Conflicts {
        kind: String,
        name: String,
        tries: usize,
    },
}

/// Gets `name`, lets `change` edit it (returning whether there is anything to write) and
/// replaces it, guarded by the resourceVersion read; on a conflict, starts over.
pub async fn modify<K, F>(
    api: &Api<K>,
    name: &str,
    mut change: F,
) -> Result<Modified<K>, ModifyError>
where
    K: Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
    K::DynamicType: Default,
    F: FnMut(&mut K) -> bool,
{
    for _ in 0..TRIES {
        let Some(mut obj) = api.get_opt(name).await? else {
            return Ok(Modified::Absent);
        };
        if !change(&mut obj) {
            return Ok(Modified::Unchanged(obj));
        }
        match api.replace(name, &PostParams::default(), &obj).await {
            Ok(written) => return Ok(Modified::Written(written)),
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(Modified::Absent),
            Err(e) => return Err(e.into()),
        }
    }
    Err(ModifyError::Conflicts {
        kind: K::kind(&K::DynamicType::default()).into_owned(),
        name: name.to_owned(),
        tries: TRIES,
    })
}
