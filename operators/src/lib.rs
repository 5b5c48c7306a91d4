//! cStor operators: cspc-operator, pool-manager, cvc-operator and volume-manager.

#![warn(clippy::too_many_lines)]

pub mod backoff;
pub mod cli;
pub mod conditions;
pub mod cspc_operator;
pub mod cvc_operator;
pub mod engine;
pub mod events;
pub mod exporter;
pub mod finalizer;
pub mod migrate;
pub mod pool_manager;
pub mod shutdown;
pub mod stable_hash;
pub mod upgrade;
pub mod version;
pub mod volume_manager;
pub mod webhook;

/// A namespaced kind our controllers read, cache and watch: what `kube::Api`, the watch
/// caches and the controllers need of it.
pub trait Namespaced:
    kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
    + Clone
    + serde::de::DeserializeOwned
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
}

impl<K> Namespaced for K where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static
{
}
