//! CreateVolume: validate, then create the CStorVolumeConfig exactly as upstream shapes it
//! (the cvc-operator does the rest). Restores and clones are expressed through
//! `spec.cstorVolumeSource = <source pv>@<snapshot>`; a PVC→PVC clone first takes an internal
//! snapshot of the source (see [`crate::records::clone_snapshot_name`]).

use std::collections::{BTreeMap, HashMap};

use cstor_api::{
    constants::{
        annotation,
        csi::{TOPOLOGY_NODE_KEY, TOPOLOGY_ZONE_KEY},
        finalizer, label,
    },
    cstor::{
        CStorVolumeConfig, CStorVolumeConfigPhase, CStorVolumeConfigPublish, CStorVolumeConfigSpec,
        CStorVolumeConfigStatus, VersionDetails, VersionStatus, VolumeProvision,
    },
    naming::{parse_snapshot_id, snapshot_id},
    proto::csi::v1::{
        CreateVolumeRequest, CreateVolumeResponse, Topology, TopologyRequirement, Volume,
        VolumeContentSource, volume_content_source::Type as SourceType,
    },
};
use k8s_openapi::{api::core::v1::Node, apimachinery::pkg::api::resource::Quantity};
use kube::api::{ListParams, PostParams};

use crate::{
    capability,
    error::{CreateError, KubeError},
    params::{
        MAX_MAP_BYTES, ParamError, VolumeParams, check_volume_name, map_bytes, volume_object_name,
    },
    quantity::{GIB, gib_quantity, parse_bytes, plan_size},
    records::{self, clone_snapshot_name},
    server::{ControllerService, TopologyMode},
};

/// Key of the volume context entry every volume carries (upstream's).
pub const CONTEXT_CAS_TYPE: &str = "openebs.io/cas-type";

/// What the new volume is made from.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Source {
    Empty,
    Snapshot { volume: String, snapshot: String },
    Clone { volume: String },
}

impl Source {
    fn parse(name: &str, content: Option<&VolumeContentSource>) -> Result<Source, CreateError> {
        let Some(content) = content else {
            return Ok(Source::Empty);
        };
        match &content.r#type {
            None => Err(CreateError::InvalidSource(
                "neither snapshot nor volume is set".into(),
            )),
            Some(SourceType::Snapshot(s)) => {
                if s.snapshot_id.is_empty() {
                    return Err(CreateError::InvalidSource(
                        "snapshot.snapshot_id is empty".into(),
                    ));
                }
                match parse_snapshot_id(&s.snapshot_id) {
                    Ok((v, snap))
                        if check_volume_name(v).is_ok()
                            && !snap.starts_with(records::CLONE_SNAPSHOT_PREFIX) =>
                    {
                        Ok(Source::Snapshot {
                            volume: v.to_owned(),
                            snapshot: snap.to_owned(),
                        })
                    }
                    _ => Err(CreateError::SourceNotFound(format!(
                        "snapshot {:?} not found (cStor snapshot ids have the form <volume>@<snapshot>)",
                        s.snapshot_id
                    ))),
                }
            }
            Some(SourceType::Volume(v)) => {
                if v.volume_id.is_empty() {
                    return Err(CreateError::InvalidSource(
                        "volume.volume_id is empty".into(),
                    ));
                }
                if v.volume_id == name {
                    return Err(CreateError::InvalidSource(format!(
                        "volume {name} cannot be cloned from itself"
                    )));
                }
                if check_volume_name(&v.volume_id).is_err() {
                    return Err(CreateError::SourceNotFound(format!(
                        "source volume {:?} not found",
                        v.volume_id
                    )));
                }
                Ok(Source::Clone {
                    volume: v.volume_id.clone(),
                })
            }
        }
    }

    fn volume(&self) -> Option<&str> {
        match self {
            Source::Empty => None,
            Source::Snapshot { volume, .. } | Source::Clone { volume } => Some(volume),
        }
    }

    /// `spec.cstorVolumeSource` of the new CVC named `name`.
    fn cvc_source(&self, name: &str) -> Option<String> {
        match self {
            Source::Empty => None,
            Source::Snapshot { volume, snapshot } => Some(snapshot_id(volume, snapshot)),
            Source::Clone { volume } => Some(snapshot_id(volume, &clone_snapshot_name(name))),
        }
    }
}

/// Everything the new CVC needs.
struct Plan<'a> {
    name: &'a str,
    /// The CSI name, when it differs from `name` (a derived object name).
    csi_name: Option<&'a str>,
    params: &'a VolumeParams,
    size_bytes: u64,
    node: Option<String>,
    source: &'a Source,
    created_through: Option<String>,
}

/// The CVC upstream's CSI controller writes for a new volume.
fn build_cvc(namespace: &str, plan: &Plan<'_>) -> CStorVolumeConfig {
    let storage: BTreeMap<String, Quantity> = [(
        "storage".to_owned(),
        Quantity(gib_quantity(plan.size_bytes / GIB)),
    )]
    .into();
    let mut cvc = CStorVolumeConfig::namespaced(
        plan.name,
        namespace,
        CStorVolumeConfigSpec {
            capacity: storage.clone(),
            cstor_volume_source: plan.source.cvc_source(plan.name),
            provision: VolumeProvision {
                capacity: storage,
                replica_count: i64::from(plan.params.replica_count),
                ..Default::default()
            },
            ..Default::default()
        },
    );
    let mut labels = BTreeMap::from([(
        label::CSTOR_POOL_CLUSTER.to_owned(),
        plan.params.pool_cluster.clone(),
    )]);
    if let Some(src) = plan.source.volume() {
        labels.insert(label::SOURCE_VOLUME.to_owned(), src.to_owned());
    }
    let mut annotations = BTreeMap::from([
        (annotation::VOLUME_ID.to_owned(), plan.name.to_owned()),
        (
            annotation::VOLUME_POLICY.to_owned(),
            plan.params.volume_policy.clone().unwrap_or_default(),
        ),
        (
            annotation::PERSISTENT_VOLUME_CLAIM.to_owned(),
            plan.params.pvc_name.clone().unwrap_or_default(),
        ),
    ]);
    if let Some(csi) = plan.csi_name {
        annotations.insert(annotation::CSI_NAME.to_owned(), csi.to_owned());
    }
    if let Some(ct) = &plan.created_through {
        annotations.insert(annotation::CREATED_THROUGH.to_owned(), ct.clone());
    }
    cvc.metadata.labels = Some(labels);
    cvc.metadata.annotations = Some(annotations);
    cvc.metadata.finalizers = Some(vec![finalizer::CVC.to_owned()]);
    cvc.publish = plan.node.clone().map(|n| CStorVolumeConfigPublish {
        node_id: Some(n),
        ..Default::default()
    });
    cvc.status = CStorVolumeConfigStatus {
        phase: Some(CStorVolumeConfigPhase::Pending),
        ..Default::default()
    };
    cvc.version_details = VersionDetails {
        status: Some(VersionStatus {
            dependents_upgraded: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    };
    cvc
}

/// Size of a CVC (`spec.capacity.storage`) in bytes.
pub(crate) fn cvc_capacity(cvc: &CStorVolumeConfig) -> Option<u64> {
    cvc.spec
        .capacity
        .get("storage")
        .and_then(|q| parse_bytes(&q.0))
}

/// The CSPC a CVC names.
pub(crate) fn cvc_pool_cluster(cvc: &CStorVolumeConfig) -> &str {
    cvc.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(label::CSTOR_POOL_CLUSTER))
        .map(String::as_str)
        .unwrap_or("")
}

fn cvc_annotation<'a>(cvc: &'a CStorVolumeConfig, key: &str) -> &'a str {
    cvc.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
        .unwrap_or("")
}

/// The CSI content source of an existing CVC named `name`.
pub(crate) fn content_source_of(cvc: &CStorVolumeConfig) -> Option<VolumeContentSource> {
    use cstor_api::proto::csi::v1::volume_content_source::{SnapshotSource, VolumeSource};
    let name = cvc.metadata.name.as_deref().unwrap_or_default();
    let src = cvc
        .spec
        .cstor_volume_source
        .as_deref()
        .filter(|s| !s.is_empty())?;
    let (volume, snapshot) = parse_snapshot_id(src).ok()?;
    let r#type = if snapshot == clone_snapshot_name(name) {
        SourceType::Volume(VolumeSource {
            volume_id: volume.to_owned(),
        })
    } else {
        SourceType::Snapshot(SnapshotSource {
            snapshot_id: src.to_owned(),
        })
    };
    Some(VolumeContentSource {
        r#type: Some(r#type),
    })
}

/// Whether `existing` can stand for the requested volume; `Err(what differs)` otherwise.
fn check_compatible(
    existing: &CStorVolumeConfig,
    wanted: &CStorVolumeConfig,
    required: i64,
    limit: i64,
) -> Result<u64, String> {
    let csi_name = |c: &CStorVolumeConfig| {
        c.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(annotation::CSI_NAME))
            .or(c.metadata.name.as_ref())
            .cloned()
            .unwrap_or_default()
    };
    let names = (csi_name(existing), csi_name(wanted));
    if names.0 != names.1 {
        return Err(format!(
            "CSI name (existing {:?}, requested {:?}; both derive this object name)",
            names.0, names.1
        ));
    }
    let pool = (cvc_pool_cluster(existing), cvc_pool_cluster(wanted));
    if pool.0 != pool.1 {
        return Err(format!(
            "cstorPoolCluster (existing {:?}, requested {:?})",
            pool.0, pool.1
        ));
    }
    let replicas = (
        existing.spec.provision.replica_count,
        wanted.spec.provision.replica_count,
    );
    if replicas.0 != replicas.1 {
        return Err(format!(
            "replicaCount (existing {}, requested {})",
            replicas.0, replicas.1
        ));
    }
    let policy = (
        cvc_annotation(existing, annotation::VOLUME_POLICY),
        cvc_annotation(wanted, annotation::VOLUME_POLICY),
    );
    if policy.0 != policy.1 {
        return Err(format!(
            "cstorVolumePolicy (existing {:?}, requested {:?})",
            policy.0, policy.1
        ));
    }
    let source = (
        existing.spec.cstor_volume_source.as_deref().unwrap_or(""),
        wanted.spec.cstor_volume_source.as_deref().unwrap_or(""),
    );
    if source.0 != source.1 {
        return Err(format!(
            "content source (existing {:?}, requested {:?})",
            source.0, source.1
        ));
    }
    let size = cvc_capacity(existing).unwrap_or(0);
    if size < required as u64 || (limit > 0 && size > limit as u64) {
        let limit = if limit > 0 {
            limit.to_string()
        } else {
            "unlimited".into()
        };
        return Err(format!(
            "size (existing {size} bytes, requested at least {required} and at most {limit})"
        ));
    }
    Ok(size)
}

/// Whether a Node's labels (plus the driver's node-name key) satisfy every segment.
pub(crate) fn node_matches(node: &Node, segments: &HashMap<String, String>) -> bool {
    let name = node.metadata.name.as_deref().unwrap_or_default();
    let labels = node.metadata.labels.as_ref();
    segments.iter().all(|(k, v)| {
        if k == TOPOLOGY_NODE_KEY && v == name {
            return true;
        }
        labels.and_then(|l| l.get(k)).is_some_and(|lv| lv == v)
    })
}

impl ControllerService {
    /// CreateVolume.
    pub async fn create_volume(
        &self,
        req: CreateVolumeRequest,
    ) -> Result<CreateVolumeResponse, CreateError> {
        let csi_name = req.name.as_str();
        if csi_name.is_empty() {
            return Err(CreateError::Name {
                name: String::new(),
                reason: "is empty: CreateVolumeRequest.name is required".into(),
            });
        }
        let object = volume_object_name(csi_name).map_err(|reason| CreateError::Name {
            name: csi_name.chars().take(64).collect(),
            reason,
        })?;
        let name = object.as_ref();
        let derived = (name != csi_name).then_some(csi_name);
        let params = VolumeParams::try_from(&req.parameters)?;
        if !req.mutable_parameters.is_empty() {
            let size = map_bytes(&req.mutable_parameters);
            return Err(ParamError::Invalid {
                name: "mutable_parameters",
                value: format!(
                    "{} entries, {size} bytes (limit {MAX_MAP_BYTES})",
                    req.mutable_parameters.len()
                ),
                reason: "this driver has no mutable parameters (MODIFY_VOLUME is not supported)"
                    .into(),
            }
            .into());
        }
        let range = req.capacity_range.unwrap_or_default();
        let size_bytes = plan_size(range.required_bytes, range.limit_bytes)?;
        capability::check_all(&req.volume_capabilities, params.fs_type)?;
        let source = Source::parse(name, req.volume_content_source.as_ref())?;

        let mut locked = vec![name];
        if let Source::Clone { volume } = &source {
            locked.push(volume);
        }
        let _token = self.guard().try_lock_all(&locked, "CreateVolume")?;

        let topology = req.accessibility_requirements.as_ref();
        let respond = |capacity: u64| CreateVolumeResponse {
            volume: Some(Volume {
                capacity_bytes: capacity as i64,
                volume_id: name.to_owned(),
                volume_context: [(CONTEXT_CAS_TYPE.to_owned(), params.cas_type.clone())].into(),
                content_source: req.volume_content_source.clone(),
                accessible_topology: self.accessible_topology(topology),
            }),
        };

        // A clone takes a snapshot before its CVC exists: look for the CVC first so that a
        // repeated call does not touch the source again.
        if matches!(source, Source::Clone { .. })
            && let Some(existing) = self.get_cvc(name).await?
        {
            let wanted = self.wanted_cvc((name, derived), &params, size_bytes, None, &source, None);
            return self
                .compare_existing(&existing, &wanted, range.required_bytes, range.limit_bytes)
                .map(respond);
        }

        self.check_source(name, &source, &params, size_bytes)
            .await?;
        let node = self.choose_node(topology).await?;
        let created_through = self.created_through(&params).await?;
        let cvc = self.wanted_cvc(
            (name, derived),
            &params,
            size_bytes,
            node,
            &source,
            created_through,
        );

        match self.cvcs().create(&PostParams::default(), &cvc).await {
            Ok(_) => {
                tracing::info!(volume = name, size_bytes, pool_cluster = %params.pool_cluster, "created CStorVolumeConfig");
                Ok(respond(size_bytes))
            }
            Err(kube::Error::Api(s)) if s.is_already_exists() => {
                let existing = self
                    .get_cvc(name)
                    .await?
                    .ok_or_else(|| CreateError::Deleting(name.to_owned()))?;
                self.compare_existing(&existing, &cvc, range.required_bytes, range.limit_bytes)
                    .map(respond)
            }
            Err(e) => Err(KubeError::new(
                format!("creating CStorVolumeConfig {}/{name}", self.ns()),
                e,
            )
            .into()),
        }
    }

    /// The CVC for object name `names.0` (CSI name `names.1` when it differs).
    fn wanted_cvc(
        &self,
        names: (&str, Option<&str>),
        params: &VolumeParams,
        size_bytes: u64,
        node: Option<String>,
        source: &Source,
        created_through: Option<String>,
    ) -> CStorVolumeConfig {
        build_cvc(
            self.ns(),
            &Plan {
                name: names.0,
                csi_name: names.1,
                params,
                size_bytes,
                node,
                source,
                created_through,
            },
        )
    }

    fn compare_existing(
        &self,
        existing: &CStorVolumeConfig,
        wanted: &CStorVolumeConfig,
        required: i64,
        limit: i64,
    ) -> Result<u64, CreateError> {
        let name = existing.metadata.name.clone().unwrap_or_default();
        if existing.metadata.deletion_timestamp.is_some() {
            return Err(CreateError::Deleting(name));
        }
        check_compatible(existing, wanted, required, limit)
            .map_err(|what| CreateError::Exists { volume: name, what })
    }

    pub(crate) async fn get_cvc(&self, name: &str) -> Result<Option<CStorVolumeConfig>, KubeError> {
        self.cvcs().get_opt(name).await.map_err(|e| {
            KubeError::new(format!("reading CStorVolumeConfig {}/{name}", self.ns()), e)
        })
    }

    /// Checks a restore / clone source; for a clone, takes the internal snapshot.
    async fn check_source(
        &self,
        name: &str,
        source: &Source,
        params: &VolumeParams,
        size: u64,
    ) -> Result<(), CreateError> {
        let Some(src) = source.volume() else {
            return Ok(());
        };
        let src_cvc = match self.get_cvc(src).await? {
            Some(c) if c.metadata.deletion_timestamp.is_none() => c,
            _ => {
                return Err(CreateError::SourceNotFound(format!(
                    "source volume {src} not found"
                )));
            }
        };
        let src_pool = cvc_pool_cluster(&src_cvc);
        if src_pool != params.pool_cluster {
            return Err(CreateError::InvalidSource(format!(
                "source volume {src} lives in cStorPoolCluster {src_pool:?} but the StorageClass names {:?}; \
                 restores and clones are placed on the source's pools, use a StorageClass with the same cstorPoolCluster",
                params.pool_cluster
            )));
        }
        let src_replicas = src_cvc.spec.provision.replica_count;
        if i64::from(params.replica_count) > src_replicas {
            return Err(CreateError::InvalidSource(format!(
                "replicaCount {} exceeds the {src_replicas} replica(s) of source volume {src}; \
                 restored replicas can only be placed on pools holding a replica of the source",
                params.replica_count
            )));
        }
        let snap_err = |error| CreateError::SourceSnapshot {
            source_volume: src.to_owned(),
            error: Box::new(error),
        };
        match source {
            Source::Empty => Ok(()),
            Source::Snapshot { volume, snapshot } => {
                let known = self
                    .known_snapshot(&src_cvc, snapshot)
                    .await
                    .map_err(snap_err)?;
                let Some(snap_size) = known else {
                    return Err(CreateError::SourceNotFound(format!(
                        "snapshot {} not found",
                        snapshot_id(volume, snapshot)
                    )));
                };
                if size < snap_size {
                    return Err(CreateError::SourceTooLarge(format!(
                        "snapshot {} holds {snap_size} bytes but only {size} bytes were requested; \
                         a restored volume must be at least as large as its snapshot",
                        snapshot_id(volume, snapshot)
                    )));
                }
                Ok(())
            }
            Source::Clone { volume } => {
                let src_size = cvc_capacity(&src_cvc).unwrap_or(0);
                if size < src_size {
                    return Err(CreateError::SourceTooLarge(format!(
                        "source volume {volume} holds {src_size} bytes but only {size} bytes were requested; \
                         a clone must be at least as large as its source"
                    )));
                }
                match self
                    .take_snapshot(src_cvc, &clone_snapshot_name(name), Some(name), None)
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(crate::error::SnapshotError::NoTarget(v)) => {
                        Err(CreateError::SourceNotReady(format!(
                            "source volume {v} is not provisioned yet (no CStorVolume target); retry once it is bound"
                        )))
                    }
                    Err(e) => Err(snap_err(e)),
                }
            }
        }
    }

    /// The accessible topology reported for a new volume.
    fn accessible_topology(&self, req: Option<&TopologyRequirement>) -> Vec<Topology> {
        match (self.config().topology, req) {
            (TopologyMode::Requisite, Some(r)) => {
                let mut out: Vec<Topology> = Vec::new();
                for t in &r.requisite {
                    if !t.segments.is_empty() && !out.contains(t) {
                        out.push(t.clone());
                    }
                }
                out
            }
            (TopologyMode::Zone, Some(r)) => {
                let from = if r.requisite.is_empty() {
                    &r.preferred
                } else {
                    &r.requisite
                };
                let mut out: Vec<Topology> = Vec::new();
                for zone in from
                    .iter()
                    .filter_map(|t| t.segments.get(TOPOLOGY_ZONE_KEY))
                {
                    let t = Topology {
                        segments: [(TOPOLOGY_ZONE_KEY.to_owned(), zone.clone())].into(),
                    };
                    if !out.contains(&t) {
                        out.push(t);
                    }
                }
                out
            }
            _ => Vec::new(),
        }
    }

    /// `publish.nodeId`: the first node satisfying a preferred topology (in order), else a
    /// requisite one; `None` without requirements or when no node matches (the volume is
    /// reachable from every node over iSCSI, so this only guides replica affinity).
    async fn choose_node(
        &self,
        req: Option<&TopologyRequirement>,
    ) -> Result<Option<String>, CreateError> {
        let Some(req) = req else { return Ok(None) };
        let mut nodes: Option<Vec<Node>> = None;
        for topology in req.preferred.iter().chain(&req.requisite) {
            let segs = &topology.segments;
            if segs.is_empty() {
                continue;
            }
            if segs.len() == 1
                && let Some(node) = segs.get(TOPOLOGY_NODE_KEY)
            {
                return Ok(Some(node.clone()));
            }
            if nodes.is_none() {
                let mut list = self
                    .nodes()
                    .list(&ListParams::default())
                    .await
                    .map_err(|e| {
                        KubeError::new("listing Nodes to match accessibility_requirements", e)
                    })?
                    .items;
                list.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
                nodes = Some(list);
            }
            if let Some(node) = nodes
                .as_deref()
                .unwrap_or_default()
                .iter()
                .find(|n| node_matches(n, segs))
            {
                return Ok(node.metadata.name.clone());
            }
        }
        tracing::info!(
            "no node satisfies the accessibility requirements; publish.nodeId stays unset"
        );
        Ok(None)
    }

    /// The PVC's `openebs.io/created-through` annotation (velero restores), copied to the CVC.
    async fn created_through(&self, params: &VolumeParams) -> Result<Option<String>, CreateError> {
        let (Some(pvc), Some(ns)) = (&params.pvc_name, &params.pvc_namespace) else {
            return Ok(None);
        };
        let found =
            self.pvcs(ns).get_opt(pvc).await.map_err(|e| {
                KubeError::new(format!("reading PersistentVolumeClaim {ns}/{pvc}"), e)
            })?;
        Ok(found.and_then(|p| {
            p.metadata
                .annotations
                .and_then(|mut a| a.remove(annotation::CREATED_THROUGH))
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> VolumeParams {
        VolumeParams::try_from(&HashMap::from([
            ("cstorPoolCluster".to_string(), "cspc".to_string()),
            ("replicaCount".to_string(), "1".to_string()),
            ("cas-type".to_string(), "cstor".to_string()),
        ]))
        .unwrap()
    }

    #[test]
    fn compatibility_names_what_differs() {
        let p = params();
        let plan = Plan {
            name: "pvc-1",
            csi_name: None,
            params: &p,
            size_bytes: 2 * GIB,
            node: None,
            source: &Source::Empty,
            created_through: None,
        };
        let a = build_cvc("ns", &plan);
        assert_eq!(check_compatible(&a, &a, GIB as i64, 0), Ok(2 * GIB));
        assert!(
            check_compatible(&a, &a, 3 * GIB as i64, 0)
                .unwrap_err()
                .starts_with("size")
        );
        assert!(
            check_compatible(&a, &a, 0, GIB as i64)
                .unwrap_err()
                .starts_with("size")
        );
        let mut other = p.clone();
        other.replica_count = 3;
        let b = build_cvc(
            "ns",
            &Plan {
                params: &other,
                ..plan
            },
        );
        assert!(
            check_compatible(&a, &b, 0, 0)
                .unwrap_err()
                .starts_with("replicaCount")
        );
    }

    #[test]
    fn content_source_round_trips_through_the_cvc() {
        let p = params();
        let clone = Source::Clone {
            volume: "pvc-src".into(),
        };
        let cvc = build_cvc(
            "ns",
            &Plan {
                name: "pvc-2",
                csi_name: None,
                params: &p,
                size_bytes: GIB,
                node: None,
                source: &clone,
                created_through: None,
            },
        );
        assert_eq!(
            cvc.spec.cstor_volume_source.as_deref(),
            Some("pvc-src@cstor-clone-pvc-2")
        );
        assert!(
            matches!(content_source_of(&cvc).unwrap().r#type, Some(SourceType::Volume(v)) if v.volume_id == "pvc-src")
        );
        let snap = Source::Snapshot {
            volume: "pvc-src".into(),
            snapshot: "s1".into(),
        };
        let cvc = build_cvc(
            "ns",
            &Plan {
                name: "pvc-3",
                csi_name: None,
                params: &p,
                size_bytes: GIB,
                node: None,
                source: &snap,
                created_through: None,
            },
        );
        assert!(
            matches!(content_source_of(&cvc).unwrap().r#type, Some(SourceType::Snapshot(s)) if s.snapshot_id == "pvc-src@s1")
        );
    }
}
