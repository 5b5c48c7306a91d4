//! cStor operators: cspc-operator, pool-manager, cvc-operator and volume-manager.

pub mod engine;
pub mod volume_manager;
