//! Scale down (as upstream, with the replica guard in the operator): a CSPI no pool spec
//! matches is deleted only when no CVR lives on it; otherwise it is kept and reported.

use cstor_api::{
    constants::label as labels,
    cstor::{CStorPoolCluster, CStorPoolInstance, CStorVolumeReplica},
};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, ListParams},
    runtime::events::EventType,
};

use super::{Context, Result};

/// Deletes orphaned CSPIs; returns the messages of those kept because replicas remain.
pub async fn scale_down(
    ctx: &Context,
    cspc: &CStorPoolCluster,
    orphans: &[CStorPoolInstance],
) -> Result<Vec<String>> {
    let ns = cspc.namespace().unwrap_or_default();
    let cspis: Api<CStorPoolInstance> = ctx.api(&ns);
    let cvrs: Api<CStorVolumeReplica> = ctx.api(&ns);
    let mut blocked = Vec::new();
    for cspi in orphans {
        if cspi.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let name = cspi.name_any();
        let on_pool = cvrs
            .list(&ListParams::default().labels(&format!("{}={name}", labels::CSPI_NAME)))
            .await?;
        if !on_pool.items.is_empty() {
            let msg = format!(
                "pool {name} was removed from spec.pools but still holds {} volume replica(s) ({}); it is kept until they are moved or deleted",
                on_pool.items.len(),
                on_pool
                    .items
                    .iter()
                    .map(|c| c.name_any())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            ctx.event(cspc, EventType::Warning, "ScaleDownBlocked", msg.clone())
                .await;
            blocked.push(msg);
            continue;
        }
        match cspis.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {
                ctx.event(
                    cspc,
                    EventType::Normal,
                    "ScaleDown",
                    format!("De-provisioning pool {name}"),
                )
                .await
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(blocked)
}
