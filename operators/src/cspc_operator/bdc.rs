//! BlockDeviceClaims `bdc-cstor-<bd uid>`: created before the CSPI; a
//! block device is usable once NDM bound it to a claim of this CSPC.

use std::collections::BTreeMap;

use cstor_api::{
    constants::{annotation as annotations, finalizer as finalizers, label as labels},
    cstor::CStorPoolCluster,
    ndm::{
        BlockDevice, BlockDeviceClaim, BlockDeviceNodeAttributes, DeviceClaimResources,
        DeviceClaimSpec, DeviceClaimState,
    },
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::{
    Api, Resource, ResourceExt,
    api::{DeleteParams, ListParams, PostParams},
};

use super::{Context, Result};

/// State of one block device for this CSPC.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// Bound to a claim of this CSPC.
    Usable,
    /// Claim created or waiting for NDM to bind it.
    Pending,
    /// Claimed by somebody else.
    Foreign(String),
}

/// Makes sure `bd` is claimed for `cspc` (creating the claim when needed). With
/// `predecessor = Some(old)` the claim marks `bd` as the replacement of block device `old`
/// (annotation `openebs.io/bd-predecessor`, added to an existing claim of this CSPC as well);
/// the pool manager drops the annotation once the resilver has completed.
pub async fn claim(
    ctx: &Context,
    cspc: &CStorPoolCluster,
    bd: &str,
    predecessor: Option<&str>,
) -> Result<Claim> {
    let ns = cspc.namespace().unwrap_or_default();
    let bds: Api<BlockDevice> = ctx.api(&ns);
    let bdcs: Api<BlockDeviceClaim> = ctx.api(&ns);
    let device = bds.get(bd).await?;
    let claimed = device
        .status
        .as_ref()
        .map(|s| s.claim_state == DeviceClaimState::Claimed)
        .unwrap_or(false);
    if claimed {
        let claim_name = device
            .spec
            .claim_ref
            .as_ref()
            .and_then(|r| r.name.clone())
            .unwrap_or_default();
        let ours = match bdcs.get_opt(&claim_name).await? {
            Some(c) if c.labels().get(labels::CSTOR_POOL_CLUSTER) == Some(&cspc.name_any()) => {
                if let Some(old) = predecessor {
                    mark_predecessor(&bdcs, c, old).await?;
                }
                true
            }
            _ => false,
        };
        return Ok(if ours {
            Claim::Usable
        } else {
            Claim::Foreign(format!(
                "block device {bd} is already claimed by {claim_name}"
            ))
        });
    }
    let name = cstor_api::naming::bdc_name(&device.uid().unwrap_or_default());
    let existing = bdcs.get_opt(&name).await?;
    if let (Some(c), Some(old)) = (&existing, predecessor) {
        mark_predecessor(&bdcs, c.clone(), old).await?;
    }
    if existing.is_none() {
        let host = device.labels().get(labels::HOSTNAME).cloned();
        let mut c = BlockDeviceClaim::namespaced(
            &name,
            &ns,
            DeviceClaimSpec {
                block_device_name: Some(bd.into()),
                block_device_node_attributes: Some(BlockDeviceNodeAttributes {
                    host_name: host,
                    ..Default::default()
                }),
                resources: Some(DeviceClaimResources {
                    requests: BTreeMap::from([(
                        "storage".into(),
                        Quantity(byte_count(device.spec.capacity.storage)),
                    )]),
                    ..Default::default()
                }),
                ..Default::default()
            },
        );
        c.metadata.labels = Some(BTreeMap::from([(
            labels::CSTOR_POOL_CLUSTER.into(),
            cspc.name_any(),
        )]));
        if let Some(old) = predecessor {
            c.metadata.annotations = Some(BTreeMap::from([(
                annotations::BD_PREDECESSOR.into(),
                old.to_owned(),
            )]));
        }
        c.metadata.owner_references = cspc.controller_owner_ref(&()).map(|r| vec![r]);
        c.metadata.finalizers = Some(vec![finalizers::CSPC.into()]);
        match bdcs.create(&PostParams::default(), &c).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Claim::Pending)
}

/// Sets `openebs.io/bd-predecessor=<old>` on claim `c` unless it is already there.
async fn mark_predecessor(
    bdcs: &Api<BlockDeviceClaim>,
    mut c: BlockDeviceClaim,
    old: &str,
) -> Result<()> {
    if c.annotations()
        .get(annotations::BD_PREDECESSOR)
        .map(String::as_str)
        == Some(old)
    {
        return Ok(());
    }
    c.annotations_mut()
        .insert(annotations::BD_PREDECESSOR.into(), old.to_owned());
    bdcs.replace(&c.name_any(), &PostParams::default(), &c)
        .await?;
    Ok(())
}

/// upstream `ByteCount`: binary units truncated, rendered with a decimal suffix letter.
pub fn byte_count(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["K", "M", "G", "T", "P", "E"];
    if bytes < 1024 {
        return bytes.to_string();
    }
    let mut div = 1024u64;
    let mut exp = 0;
    while bytes / div >= 1024 && exp < UNITS.len() - 1 {
        div *= 1024;
        exp += 1;
    }
    format!("{}{}", bytes / div, UNITS[exp])
}

/// Drops the CSPC finalizer from the claims of `bd_names` (all claims of the CSPC with `None`)
/// and deletes them.
pub async fn release(
    ctx: &Context,
    cspc: &CStorPoolCluster,
    bd_names: Option<&[String]>,
) -> Result<()> {
    let ns = cspc.namespace().unwrap_or_default();
    let bdcs: Api<BlockDeviceClaim> = ctx.api(&ns);
    let list = bdcs
        .list(&ListParams::default().labels(&format!(
            "{}={}",
            labels::CSTOR_POOL_CLUSTER,
            cspc.name_any()
        )))
        .await?;
    for mut c in list.items {
        let bd = c.spec.block_device_name.clone().unwrap_or_default();
        if bd_names.is_some_and(|names| !names.contains(&bd)) {
            continue;
        }
        let name = c.name_any();
        if c.finalizers().iter().any(|f| f == finalizers::CSPC) {
            c.finalizers_mut().retain(|f| f != finalizers::CSPC);
            bdcs.replace(&name, &PostParams::default(), &c).await?;
        }
        match bdcs.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
