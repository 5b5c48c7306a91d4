//! Whether the API server serves a resource: the readiness check of the CSI plugins' Probe.

use kube::{
    Resource,
    api::{Api, ListParams},
};

/// `Ok` when `api` can be listed; otherwise why not, naming the resource: the API server does
/// not answer, or the resource is not served (its CustomResourceDefinition is not installed).
pub async fn answers<K>(api: Api<K>) -> Result<(), String>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let what = format!("{}.{}", K::plural(&()), K::group(&()));
    match api.list(&ListParams::default().limit(1)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Err(format!(
            "{what} is not served: is its CustomResourceDefinition installed?"
        )),
        Err(e) => Err(format!("cannot list {what}: {e}")),
    }
}

/// The problems of several [`answers`], joined; `Ok` when there are none.
pub fn all(results: impl IntoIterator<Item = Result<(), String>>) -> Result<(), String> {
    let problems: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}
