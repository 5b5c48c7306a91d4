//! Deletion: release the PDB when no other CVC uses it, then drop the CVC
//! finalizer. CV, Service, target Deployment and CVRs go by owner-reference garbage collection
//! (CVRs wait for the pool manager to remove their finalizer after destroying the zvol).
//!
//! Unlike upstream (which removes every finalizer), only `cvc.openebs.io/finalizer` is removed,
//! with a resourceVersion precondition so a concurrent finalizer change is not lost.

use cstor_api::{constants::finalizer, constants::label, cstor::CStorVolumeConfig};
use kube::{
    ResourceExt,
    api::{Patch, PatchParams},
    runtime::events::EventType,
};
use serde_json::json;

use super::{Context, Error, is_not_found, pdb};

/// Finalizes a CVC being deleted.
pub async fn finalize(cvc: &CStorVolumeConfig, ctx: &Context) -> Result<(), Error> {
    if !cvc.finalizers().iter().any(|f| f == finalizer::CVC) {
        return Ok(());
    }
    let name = cvc.name_any();
    if let Some(p) = cvc.labels().get(label::POD_DISRUPTION_BUDGET)
        && let Err(e) = pdb::release(ctx, p, &name).await
    {
        ctx.event(cvc, EventType::Warning, "DeProvisioning", e.to_string())
            .await;
        return Err(e);
    }
    let remaining: Vec<&String> = cvc
        .finalizers()
        .iter()
        .filter(|f| *f != finalizer::CVC)
        .collect();
    let patch = json!({
        "metadata": {
            "resourceVersion": cvc.resource_version(),
            "finalizers": remaining,
        }
    });
    ctx.count_write();
    match ctx
        .api::<CStorVolumeConfig>()
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {
            ctx.caches().forget(&name);
            Ok(())
        }
        Err(e) if is_not_found(&e) => {
            ctx.caches().forget(&name);
            Ok(())
        }
        Err(e) => {
            ctx.event(
                cvc,
                EventType::Warning,
                "DeProvisioning",
                format!("failed to remove finalizer {}: {e}", finalizer::CVC),
            )
            .await;
            Err(Error::kube(format!(
                "remove finalizer of CStorVolumeConfig {name}"
            ))(e))
        }
    }
}
