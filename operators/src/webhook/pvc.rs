//! PersistentVolumeClaim and Namespace rules.

use super::{Denial, lookup::ClusterLookup};

/// Reason of a refused PVC deletion.
pub const CLONED_PVC_REASON: &str = "PVC with cloned volumes can't be deleted";

/// Namespaces whose PVC deletions are never checked.
pub const SKIPPED_NAMESPACES: &[&str] = &["kube-system", "kube-public"];

/// Validates a PVC DELETE: refused (403) while CStorVolumes or CStorVolumeConfigs are clones of
/// its volume.
pub async fn validate_pvc_delete(
    namespace: &str,
    name: &str,
    lookup: &dyn ClusterLookup,
) -> Result<(), Denial> {
    if SKIPPED_NAMESPACES.contains(&namespace) {
        return Ok(());
    }
    let pvc = lookup
        .persistent_volume_claim(namespace, name)
        .await
        .map_err(|e| Denial::bad_request(format!("failed to get pvc {namespace}/{name}: {e}")))?;
    let Some(volume) = pvc
        .and_then(|p| p.spec)
        .and_then(|s| s.volume_name)
        .filter(|v| !v.is_empty())
    else {
        return Ok(());
    };
    let clones = lookup.clones_of(&volume).await.map_err(|e| {
        Denial::bad_request(format!("failed to list clones of volume {volume}: {e}"))
    })?;
    if clones > 0 {
        return Err(Denial::forbidden(
            CLONED_PVC_REASON,
            format!("pvc \"{name}\" has '{clones}' cloned volume(s)"),
        ));
    }
    Ok(())
}

/// Handles a Namespace DELETE: when the OpenEBS namespace goes, the webhook removes its own
/// ValidatingWebhookConfiguration (so it cannot block the teardown). Always allowed; a failed
/// removal is returned for logging.
pub async fn handle_namespace_delete(
    name: &str,
    openebs_namespace: &str,
    webhook_config: &str,
    lookup: &dyn ClusterLookup,
) -> Result<(), String> {
    if name != openebs_namespace {
        return Ok(());
    }
    lookup
        .delete_webhook_configuration(webhook_config)
        .await
        .map_err(|e| format!("deleting ValidatingWebhookConfiguration {webhook_config}: {e}"))
}
