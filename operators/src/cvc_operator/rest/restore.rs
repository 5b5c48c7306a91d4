//! `/latest/restore/`: `POST` creates a restore (local: a clone CVC; remote: one CStorRestore
//! per replica) and answers the volume's iSCSI source, `GET` aggregates the CStorRestores'
//! status into one JSON string.

use std::collections::BTreeMap;

use axum::{http::Method, response::Response};
use cstor_api::{
    constants::{annotation, finalizer, label},
    cstor::{
        CStorBackupStatus, CStorPoolInstance, CStorRestore, CStorRestoreSpec, CStorVolume,
        CStorVolumeConfig, CStorVolumeConfigPhase, CStorVolumeReplica, from_value,
    },
};
use k8s_openapi::api::{core::v1::ISCSIPersistentVolumeSource, storage::v1::StorageClass};
use kube::{
    Api,
    api::{ListParams, PostParams},
};
use serde_json::{Value, json};

use super::{Call, HttpError, Rest, json_value, json_written};

/// A restore request: metadata plus the spec kept as sent (it is copied into each CStorRestore).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct RestoreRequest {
    metadata: super::backup::RequestMeta,
    spec: Value,
}

impl RestoreRequest {
    fn field(&self, key: &str) -> String {
        match self.spec.get(key) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => String::new(),
        }
    }

    fn local(&self) -> bool {
        self.spec
            .get("localRestore")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    fn namespace(&self) -> String {
        self.metadata.namespace.clone().unwrap_or_default()
    }
}

/// Dispatches on the method.
pub async fn handle(rest: &Rest, call: &Call) -> Result<Response, HttpError> {
    match call.method {
        Method::POST => {
            let req: RestoreRequest = call.decode()?;
            validate_create(&req).map_err(|m| {
                HttpError::bad(format!("restore create validation failed error: {{{m}}}"))
            })?;
            let source = create(rest, &req).await?;
            Ok(json_value(&source, call.pretty()))
        }
        Method::GET => {
            let req: RestoreRequest = call.decode()?;
            validate_get(&req)?;
            json_written(&status(rest, &req).await?)
        }
        _ => Err(HttpError::method()),
    }
}

fn validate_create(req: &RestoreRequest) -> Result<(), String> {
    let name = req.metadata.name.clone().unwrap_or_default();
    let blank = |key: &str| req.field(key).trim().is_empty();
    let local = req.local();
    if !local && req.namespace().trim().is_empty() {
        return Err(format!(
            "failed to create restore '{name}': missing namespace"
        ));
    }
    if blank("restoreName") {
        return Err("failed to create restore: missing restore name".to_owned());
    }
    for (key, what) in [("volumeName", "volume name"), ("restoreSrc", "restoreSrc")] {
        if blank(key) {
            return Err(format!("failed to create restore '{name}': missing {what}"));
        }
    }
    if local && blank("storageClass") {
        return Err(format!(
            "failed to create restore '{name}': missing storageClass"
        ));
    }
    if local && blank("size") {
        return Err(format!("failed to create restore '{name}': missing size"));
    }
    Ok(())
}

fn validate_get(req: &RestoreRequest) -> Result<(), HttpError> {
    let restore = req.field("restoreName");
    if restore.trim().is_empty() {
        return Err(HttpError::bad(
            "Failed to get restore: missing restore name ",
        ));
    }
    if req.namespace().trim().is_empty() {
        return Err(HttpError::bad(format!(
            "Failed to get restore '{restore}': missing namespace"
        )));
    }
    if req.field("volumeName").trim().is_empty() {
        return Err(HttpError::bad(format!(
            "Failed to get restore '{restore}': missing volume name"
        )));
    }
    Ok(())
}

async fn create(
    rest: &Rest,
    req: &RestoreRequest,
) -> Result<ISCSIPersistentVolumeSource, HttpError> {
    let volume = req.field("volumeName");
    let wrap =
        |e: String| HttpError::bad(format!("Failed to create resources for volume: {{{e}}}"));
    if req.local() {
        create_clone_cvc(rest, req).await.map_err(wrap)?;
    }
    wait_bound(rest, &volume).await.map_err(wrap)?;
    if !req.local() {
        create_restores(rest, req).await?;
    }
    let cv = rest
        .api::<CStorVolume>()
        .get(&volume)
        .await
        .map_err(|e| HttpError::internal(e.to_string()))?;
    Ok(ISCSIPersistentVolumeSource {
        target_portal: cv.spec.target_portal.unwrap_or_default(),
        iqn: cv.spec.iqn.unwrap_or_default(),
        lun: 0,
        ..Default::default()
    })
}

/// The CVC of a local restore: a clone of `<restoreSrc>@<restoreName>`.
async fn create_clone_cvc(rest: &Rest, req: &RestoreRequest) -> Result<(), String> {
    let (volume, src, snap) = (
        req.field("volumeName"),
        req.field("restoreSrc"),
        req.field("restoreName"),
    );
    let sc_name = req.field("storageClass");
    let sc = Api::<StorageClass>::all(rest.client.clone())
        .get(&sc_name)
        .await
        .map_err(|e| e.to_string())?;
    let params = sc.parameters.unwrap_or_default();
    let cspc = params
        .get("cstorPoolCluster")
        .ok_or_else(|| format!("storageclass {sc_name} doesn't have cstorPoolCluster details"))?;
    let replicas: i64 = params
        .get("replicaCount")
        .ok_or_else(|| format!("storageclass {sc_name} doesn't have replica count"))?
        .parse()
        .map_err(|e: std::num::ParseIntError| e.to_string())?;
    let policy = params.get("cstorVolumePolicy").cloned().unwrap_or_default();
    let size = req.field("size");
    let cvc: CStorVolumeConfig = from_value(json!({
        "apiVersion": CStorVolumeConfig::API_VERSION, "kind": CStorVolumeConfig::KIND,
        "metadata": {"name": volume, "namespace": rest.namespace,
            "labels": {label::CSTOR_POOL_CLUSTER: cspc, label::SOURCE_VOLUME: src},
            "annotations": {annotation::VOLUME_ID: volume, annotation::VOLUME_POLICY: policy},
            "finalizers": [finalizer::CVC]},
        "spec": {"capacity": {"storage": size}, "provision": {"capacity": {"storage": size}, "replicaCount": replicas},
            "cstorVolumeSource": format!("{src}@{snap}"), "policy": {}},
        "publish": {"nodeId": ""},
        "status": {"phase": "Pending"},
        "versionDetails": {"desired": rest.version, "status": {"current": rest.version}}
    }))
    .map_err(|e| e.to_string())?;
    match rest
        .api::<CStorVolumeConfig>()
        .create(&PostParams::default(), &cvc)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

async fn wait_bound(rest: &Rest, volume: &str) -> Result<(), String> {
    let api = rest.api::<CStorVolumeConfig>();
    for attempt in 0..rest.bound_tries {
        if attempt > 0 {
            tokio::time::sleep(rest.bound_interval).await;
        }
        let bound = api
            .get_opt(volume)
            .await
            .ok()
            .flatten()
            .is_some_and(|c| c.status.phase.as_ref() == Some(&CStorVolumeConfigPhase::Bound));
        if bound {
            return Ok(());
        }
    }
    Err(format!(
        "CVC {volume} in namespace {} is not in Bound status",
        rest.namespace
    ))
}

/// One CStorRestore per replica of the volume, in the request namespace.
async fn create_restores(rest: &Rest, req: &RestoreRequest) -> Result<(), HttpError> {
    let (volume, restore) = (req.field("volumeName"), req.field("restoreName"));
    let lp = ListParams::default().labels(&format!("{}={volume}", label::PERSISTENT_VOLUME));
    let cvrs = Api::<CStorVolumeReplica>::all(rest.client.clone())
        .list(&lp)
        .await
        .map_err(|e| HttpError::internal(e.to_string()))?
        .items;
    if cvrs.is_empty() {
        return Err(HttpError::internal(format!(
            "CVRs doesn't exist for volume {volume}"
        )));
    }
    let cvr_label = |cvr: &CStorVolumeReplica, key: &str| {
        cvr.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(key))
            .cloned()
            .unwrap_or_default()
    };
    let first_pool = cvr_label(&cvrs[0], label::CSPI_NAME);
    let cspc = first_pool
        .rsplit_once('-')
        .map_or("", |(c, _)| c)
        .to_owned();
    let lp = ListParams::default().labels(&format!("{}={cspc}", label::CSTOR_POOL_CLUSTER));
    let cspis = Api::<CStorPoolInstance>::all(rest.client.clone())
        .list(&lp)
        .await
        .map_err(|e| {
            HttpError::internal(format!("failed to list CSPIs of CSPC {cspc} error: {e}"))
        })?
        .items;
    for cspi in &cspis {
        let version = cspi
            .version_details
            .as_ref()
            .and_then(|v| v.status.as_ref())
            .and_then(|s| s.current.clone())
            .unwrap_or_default();
        super::check_pool_version(&version).map_err(|e| {
            let name = cspi.metadata.name.clone().unwrap_or_default();
            HttpError::internal(format!(
                "failed to parse pool({name}) version {version} error: {e}"
            ))
        })?;
    }
    let spec: CStorRestoreSpec = serde_json::from_value(req.spec.clone()).map_err(|e| {
        HttpError::internal(format!("failed to create restore for {volume} error: {e}"))
    })?;
    let ns = req.namespace();
    let api = Api::<CStorRestore>::namespaced(rest.client.clone(), &ns);
    for cvr in &cvrs {
        let name = format!("{restore}-{}", uuid::Uuid::new_v4());
        let mut obj = CStorRestore::namespaced(&name, &ns, spec.clone());
        obj.metadata.labels = Some(BTreeMap::from([
            (
                label::CSPI_NAME.to_owned(),
                cvr_label(cvr, label::CSPI_NAME),
            ),
            (label::CSPI_UID.to_owned(), cvr_label(cvr, label::CSPI_UID)),
            (
                label::PERSISTENT_VOLUME.to_owned(),
                cvr_label(cvr, label::PERSISTENT_VOLUME),
            ),
            (label::RESTORE.to_owned(), restore.clone()),
        ]));
        obj.status = Some(CStorBackupStatus::Pending);
        api.create(&PostParams::default(), &obj)
            .await
            .map_err(|e| {
                HttpError::internal(format!("failed to create restore for {volume} error: {e}"))
            })?;
        tracing::info!(restore = name, namespace = ns, "created CStorRestore");
    }
    Ok(())
}

/// `InProgress` if any restore is, else the last one's status (`Failed` when its pool is down);
/// `""` when there is none.
async fn status(rest: &Rest, req: &RestoreRequest) -> Result<String, HttpError> {
    let (volume, restore) = (req.field("volumeName"), req.field("restoreName"));
    let selector = format!(
        "{}={restore},{}={volume}",
        label::RESTORE,
        label::PERSISTENT_VOLUME
    );
    let api = Api::<CStorRestore>::namespaced(rest.client.clone(), &req.namespace());
    let items = api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| {
            HttpError::bad(format!(
                "Failed to fetch status 'Failed to fetch restore error:{e}'"
            ))
        })?
        .items;
    let mut result = CStorBackupStatus::Empty;
    for mut item in items {
        result = item.status.clone().unwrap_or_default();
        if result == CStorBackupStatus::InProgress {
            break;
        }
        if matches!(result, CStorBackupStatus::Done | CStorBackupStatus::Failed) {
            continue;
        }
        let cspi = item
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(label::CSPI_NAME))
            .cloned()
            .unwrap_or_default();
        if super::pool_down(rest, &cspi).await {
            result = CStorBackupStatus::Failed;
            item.status = Some(CStorBackupStatus::Failed);
            let name = item.metadata.name.clone().unwrap_or_default();
            if let Err(e) = api.replace(&name, &PostParams::default(), &item).await {
                tracing::warn!(restore = name, "could not mark the restore Failed: {e}");
            }
        }
    }
    Ok(result.as_ref().to_owned())
}
