//! Snapshot migration, the last step of a volume's: each legacy snapshot of the volume
//! (`volumesnapshot.external-storage.k8s.io/v1` VolumeSnapshot with its VolumeSnapshotData)
//! becomes a pre-provisioned CSI snapshot of the same name: a VolumeSnapshotContent whose
//! handle is `<pv>@<snapshot id>` (the zvol snapshot the legacy one made, which the CSI driver
//! finds on the replicas) and a VolumeSnapshot bound to it. Once the snapshot controller says
//! it is bound and ready, the legacy one goes.
//!
//! The CSI objects are `snapshot.storage.k8s.io/v1` (upstream wrote v1beta1, which snapshot
//! controllers from v6 no longer serve); the class is `csi-cstor-snapshotclass`, as upstream.

use anyhow::{Context as _, bail};
use kube::{
    Api, ResourceExt,
    api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, PostParams},
};
use serde_json::{Value, json};

use super::{Migrator, delete_if_present, is_conflict, list_or_empty, str_at, wait_for};

/// The VolumeSnapshotClass the migrated snapshots name.
pub const SNAPSHOT_CLASS: &str = "csi-cstor-snapshotclass";
/// Label of a legacy snapshot naming its volume.
pub const PV_LABEL: &str = "SnapshotMetadata-PVName";
/// Group of the legacy snapshot kinds.
pub const LEGACY_GROUP: &str = "volumesnapshot.external-storage.k8s.io";
/// Group of the CSI snapshot kinds.
pub const CSI_GROUP: &str = "snapshot.storage.k8s.io";

fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

/// The legacy VolumeSnapshot kind.
pub fn legacy_snapshot() -> ApiResource {
    resource(LEGACY_GROUP, "v1", "VolumeSnapshot", "volumesnapshots")
}

/// The legacy VolumeSnapshotData kind.
pub fn legacy_snapshot_data() -> ApiResource {
    resource(
        LEGACY_GROUP,
        "v1",
        "VolumeSnapshotData",
        "volumesnapshotdatas",
    )
}

/// The CSI VolumeSnapshot kind.
pub fn csi_snapshot() -> ApiResource {
    resource(CSI_GROUP, "v1", "VolumeSnapshot", "volumesnapshots")
}

/// The CSI VolumeSnapshotContent kind.
pub fn csi_content() -> ApiResource {
    resource(
        CSI_GROUP,
        "v1",
        "VolumeSnapshotContent",
        "volumesnapshotcontents",
    )
}

/// The CSI VolumeSnapshotClass kind.
pub fn csi_class() -> ApiResource {
    resource(
        CSI_GROUP,
        "v1",
        "VolumeSnapshotClass",
        "volumesnapshotclasses",
    )
}

/// Moves every legacy snapshot of `pv` (none, or the legacy kind not served: nothing to do).
pub async fn migrate(m: &Migrator, pv: &str) -> anyhow::Result<()> {
    let legacy: Api<DynamicObject> = Api::all_with(m.client.clone(), &legacy_snapshot());
    let lp = ListParams::default().labels(&format!("{PV_LABEL}={pv}"));
    let snaps = list_or_empty(&legacy, &lp).await?;
    if snaps.is_empty() {
        return Ok(());
    }
    let classes: Api<DynamicObject> = Api::all_with(m.client.clone(), &csi_class());
    classes
        .get(SNAPSHOT_CLASS)
        .await
        .with_context(|| format!("failed to get snapshotclass {SNAPSHOT_CLASS}"))?;
    for snap in snaps {
        let data_name = str_at(&snap.data, "/spec/snapshotDataName").to_owned();
        if data_name.is_empty() {
            // Never bound to data: nothing on the replicas to point at.
            continue;
        }
        move_one(m, &snap, &data_name)
            .await
            .with_context(|| format!("snapshot {}", snap.name_any()))?;
    }
    Ok(())
}

async fn move_one(m: &Migrator, snap: &DynamicObject, data_name: &str) -> anyhow::Result<()> {
    let name = snap.name_any();
    let ns = snap.namespace().unwrap_or_default();
    let contents: Api<DynamicObject> = Api::all_with(m.client.clone(), &csi_content());
    if contents.get_opt(data_name).await?.is_none() {
        let datas: Api<DynamicObject> = Api::all_with(m.client.clone(), &legacy_snapshot_data());
        let data = datas
            .get(data_name)
            .await
            .with_context(|| format!("volumesnapshotdata {data_name}"))?;
        let volume = str_at(&data.data, "/spec/persistentVolumeRef/name");
        let id = str_at(&data.data, "/spec/openebsVolume/snapshotId");
        if volume.is_empty() || id.is_empty() {
            bail!(
                "volumesnapshotdata {data_name} names no volume (spec.persistentVolumeRef.name) or no snapshot (spec.openebsVolume.snapshotId)"
            );
        }
        let content: DynamicObject = serde_json::from_value(json!({
            "apiVersion": format!("{CSI_GROUP}/v1"), "kind": "VolumeSnapshotContent",
            "metadata": {"name": data_name},
            "spec": {
                "deletionPolicy": "Delete",
                "driver": super::volume::CSI_DRIVER,
                "volumeSnapshotClassName": SNAPSHOT_CLASS,
                "source": {"snapshotHandle": cstor_api::naming::snapshot_id(volume, id)},
                "volumeSnapshotRef": {"apiVersion": format!("{CSI_GROUP}/v1"),
                    "kind": "VolumeSnapshot", "name": name, "namespace": ns},
            }
        }))?;
        create(&contents, &content).await?;
    }
    let snapshots: Api<DynamicObject> =
        Api::namespaced_with(m.client.clone(), &ns, &csi_snapshot());
    if snapshots.get_opt(&name).await?.is_none() {
        let vs: DynamicObject = serde_json::from_value(json!({
            "apiVersion": format!("{CSI_GROUP}/v1"), "kind": "VolumeSnapshot",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"volumeSnapshotClassName": SNAPSHOT_CLASS,
                "source": {"volumeSnapshotContentName": data_name}},
        }))?;
        create(&snapshots, &vs).await?;
    }
    wait_for(
        m,
        &format!("volumesnapshot {ns}/{name} to be bound and ready"),
        || async {
            let vs = snapshots.get(&name).await?;
            let bound = str_at(&vs.data, "/status/boundVolumeSnapshotContentName");
            let ready = vs
                .data
                .pointer("/status/readyToUse")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            if !bound.is_empty() && bound != data_name {
                bail!(
                    "volumesnapshot {name} is bound to incorrect volumesnapshotcontent: expected {data_name} got {bound}"
                );
            }
            Ok(if !bound.is_empty() && ready {
                Ok(())
            } else {
                Err(format!("bound to {bound:?}, readyToUse {ready}"))
            })
        },
    )
    .await?;
    let legacy: Api<DynamicObject> =
        Api::namespaced_with(m.client.clone(), &ns, &legacy_snapshot());
    delete_if_present(&legacy, &name).await
}

async fn create(api: &Api<DynamicObject>, obj: &DynamicObject) -> anyhow::Result<()> {
    match api.create(&PostParams::default(), obj).await {
        Ok(_) => Ok(()),
        Err(e) if is_conflict(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
