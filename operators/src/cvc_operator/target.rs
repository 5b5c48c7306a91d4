//! Target Service and Deployment, and the policy sync of the Deployment.

use std::collections::BTreeMap;

use cstor_api::{
    constants::{annotation, engine, env, label, value},
    cstor::{CStorVolume, CStorVolumeConfig, CStorVolumePolicySpec, TargetSpec},
    health, naming,
};
use k8s_openapi::{
    api::{
        apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy},
        core::v1::{
            Affinity, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource,
            HostPathVolumeSource, LocalObjectReference, ObjectFieldSelector, PodSpec,
            PodTemplateSpec, SecurityContext, Service, ServicePort, ServiceSpec, Toleration,
            Volume, VolumeMount,
        },
    },
    apimachinery::pkg::{apis::meta::v1::LabelSelector, util::intstr::IntOrString},
};
use kube::{
    Resource, ResourceExt,
    api::{ObjectMeta, Patch, PatchParams},
    runtime::events::EventType,
};

use super::{Context, Error, pv_name};
use crate::exporter;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The target Service `<pv>` (ClusterIP; iSCSI 3260, gRPC 7777, mgmt 6060, exporter 9500).
pub fn build_service(cvc: &CStorVolumeConfig, version: &str) -> Service {
    let pv = pv_name(cvc);
    let port = |name: &str, p: u16| ServicePort {
        name: Some(name.to_owned()),
        port: i32::from(p),
        target_port: Some(IntOrString::Int(i32::from(p))),
        protocol: Some("TCP".to_owned()),
        ..Default::default()
    };
    Service {
        metadata: ObjectMeta {
            name: Some(pv.clone()),
            namespace: cvc.namespace(),
            labels: Some(labels(&[
                (label::TARGET_SERVICE, value::TARGET_SERVICE_CSTOR),
                (label::STORAGE_ENGINE_TYPE, value::STORAGE_ENGINE_CSTOR),
                (label::CAS_TYPE, value::CAS_TYPE_CSTOR),
                (label::PERSISTENT_VOLUME, &pv),
                (label::VERSION, version),
            ])),
            owner_references: cvc.controller_owner_ref(&()).map(|o| vec![o]),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            selector: Some(labels(&[
                (label::APP, value::APP_VOLUME_MANAGER),
                (label::TARGET, value::TARGET_CSTOR),
                (label::PERSISTENT_VOLUME, &pv),
            ])),
            ports: Some(vec![
                port("cstor-iscsi", engine::ISCSI_PORT),
                port("cstor-grpc", engine::SNAPSHOT_GRPC_PORT),
                port("mgmt", engine::MGMT_PORT),
                port("exporter", engine::EXPORTER_PORT),
            ]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn default_tolerations() -> Vec<Toleration> {
    [
        "node.alpha.kubernetes.io/notReady",
        "node.alpha.kubernetes.io/unreachable",
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ]
    .iter()
    .map(|key| Toleration {
        key: Some((*key).to_owned()),
        operator: Some("Exists".to_owned()),
        effect: Some("NoExecute".to_owned()),
        toleration_seconds: Some(30),
        ..Default::default()
    })
    .collect()
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_owned(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn plain_env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.into()),
        ..Default::default()
    }
}

/// The target Deployment `<pv>-target` for the CV and the (defaulted) policy.
pub fn build_deployment(
    cvc: &CStorVolumeConfig,
    cv: &CStorVolume,
    policy: &CStorVolumePolicySpec,
    config: &super::Config,
) -> Deployment {
    let pv = pv_name(cvc);
    let pvc = cvc
        .annotations()
        .get(annotation::PERSISTENT_VOLUME_CLAIM)
        .cloned()
        .unwrap_or_default();
    let version = config.version.as_str();
    let target = policy.target.clone().unwrap_or_default();
    let selector = target_selector(&pv);
    Deployment {
        metadata: ObjectMeta {
            name: Some(naming::target_deployment_name(&pv)),
            namespace: cvc.namespace(),
            labels: Some(deployment_labels(&pv, &pvc, version)),
            annotations: Some(labels(&[
                (annotation::VOLUME_MONITOR, value::TRUE),
                (annotation::VOLUME_TYPE, value::CAS_TYPE_CSTOR),
            ])),
            owner_references: cv.controller_owner_ref(&()).map(|o| vec![o]),
            ..Default::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            strategy: Some(DeploymentStrategy {
                type_: Some("Recreate".to_owned()),
                ..Default::default()
            }),
            selector: LabelSelector {
                match_labels: Some(selector.clone()),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels(selector, pvc, version)),
                    annotations: Some(labels(&[
                        (annotation::PROMETHEUS_PATH, "/metrics"),
                        (annotation::PROMETHEUS_PORT, "9500"),
                        (annotation::PROMETHEUS_SCRAPE, "true"),
                    ])),
                    ..Default::default()
                }),
                spec: Some(pod_spec(&pv, cv, &target, config)),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The labels the target Service and Deployment select the target pod by.
fn target_selector(pv: &str) -> BTreeMap<String, String> {
    labels(&[
        (label::APP, value::APP_VOLUME_MANAGER),
        (label::TARGET, value::TARGET_CSTOR),
        (label::PERSISTENT_VOLUME, pv),
    ])
}

/// Labels of the target Deployment: the volume's, its PVC's and the operator version.
fn deployment_labels(pv: &str, pvc: &str, version: &str) -> BTreeMap<String, String> {
    let mut deploy_labels = labels(&[
        (label::APP, value::APP_VOLUME_MANAGER),
        (label::TARGET, value::TARGET_CSTOR),
        (label::STORAGE_ENGINE_TYPE, value::STORAGE_ENGINE_CSTOR),
        (label::CAS_TYPE, value::CAS_TYPE_CSTOR),
        (label::PERSISTENT_VOLUME, pv),
        (label::VERSION, version),
    ]);
    deploy_labels.insert(label::PERSISTENT_VOLUME_CLAIM.to_owned(), pvc.to_owned());
    deploy_labels
}

/// Labels of the target pod: the selector's, plus monitoring, the PVC and the version.
fn pod_labels(
    selector: BTreeMap<String, String>,
    pvc: String,
    version: &str,
) -> BTreeMap<String, String> {
    let mut pod_labels = selector;
    pod_labels.insert(
        label::MONITORING.to_owned(),
        value::MONITORING_VOLUME_EXPORTER.to_owned(),
    );
    pod_labels.insert(label::PERSISTENT_VOLUME_CLAIM.to_owned(), pvc);
    pod_labels.insert(label::VERSION.to_owned(), version.to_owned());
    pod_labels
}

/// The target pod: istgt and the volume manager (which also serves the metrics of upstream's
/// `maya-volume-exporter` sidecar on 9500), placed and tolerated as the policy says (default
/// tolerations: 30 s on a not-ready or unreachable node).
fn pod_spec(pv: &str, cv: &CStorVolume, target: &TargetSpec, config: &super::Config) -> PodSpec {
    let tolerations = match &target.tolerations {
        Some(t) if !t.is_empty() => t.clone(),
        _ => default_tolerations(),
    };
    PodSpec {
        service_account_name: config.service_account.clone(),
        affinity: Some(Affinity {
            pod_affinity: target.affinity.clone(),
            ..Default::default()
        }),
        priority_class_name: target.priority_class_name.clone(),
        node_selector: target.node_selector.clone(),
        tolerations: Some(tolerations),
        image_pull_secrets: (!config.image_pull_secrets.is_empty()).then(|| {
            config
                .image_pull_secrets
                .iter()
                .map(|s| LocalObjectReference { name: s.clone() })
                .collect()
        }),
        containers: vec![
            istgt_container(target, config),
            mgmt_container(cv, target, config),
        ],
        volumes: Some(pod_volumes(pv, config)),
        ..Default::default()
    }
}

/// The mounts every target container shares: the sockets, istgt's config and its storage.
fn target_mounts() -> Vec<VolumeMount> {
    [
        ("sockfile", "/var/run"),
        ("conf", "/usr/local/etc/istgt"),
        ("storagepath", "/var/openebs/cstor-target"),
    ]
    .into_iter()
    .map(|(name, path)| VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        ..Default::default()
    })
    .collect()
}

fn privileged() -> Option<SecurityContext> {
    Some(SecurityContext {
        privileged: Some(true),
        ..Default::default()
    })
}

fn container_port(port: u16) -> Option<Vec<ContainerPort>> {
    Some(vec![ContainerPort {
        container_port: i32::from(port),
        ..Default::default()
    }])
}

/// The iSCSI target (istgt), with the policy's queue depth and LU workers.
fn istgt_container(target: &TargetSpec, config: &super::Config) -> Container {
    Container {
        name: "cstor-istgt".to_owned(),
        image: Some(config.target_image.clone()),
        image_pull_policy: Some("IfNotPresent".to_owned()),
        ports: container_port(engine::ISCSI_PORT),
        env: Some(vec![
            plain_env(
                env::QUEUE_DEPTH,
                target
                    .queue_depth
                    .clone()
                    .unwrap_or_else(|| "32".to_owned()),
            ),
            plain_env(env::LU_WORKERS, target.lu_workers.unwrap_or(6).to_string()),
        ]),
        resources: target.resources.clone(),
        security_context: privileged(),
        volume_mounts: Some(target_mounts()),
        ..Default::default()
    }
}

/// The volume manager, which drives istgt from the CStorVolume.
fn mgmt_container(cv: &CStorVolume, target: &TargetSpec, config: &super::Config) -> Container {
    Container {
        name: "cstor-volume-mgmt".to_owned(),
        image: Some(config.volume_mgmt_image.clone()),
        image_pull_policy: Some("IfNotPresent".to_owned()),
        ports: Some(vec![
            ContainerPort {
                container_port: 80,
                ..Default::default()
            },
            ContainerPort {
                name: Some("health".to_owned()),
                container_port: i32::from(health::ports::VOLUME_MANAGER),
                ..Default::default()
            },
            ContainerPort {
                name: Some("exporter".to_owned()),
                container_port: i32::from(engine::EXPORTER_PORT),
                ..Default::default()
            },
        ]),
        liveness_probe: Some(health::liveness_probe(health::ports::VOLUME_MANAGER)),
        readiness_probe: Some(health::readiness_probe(health::ports::VOLUME_MANAGER)),
        env: Some(vec![
            plain_env(
                env::OPENEBS_IO_CSTOR_VOLUME_ID,
                cv.metadata.uid.clone().unwrap_or_default(),
            ),
            plain_env(env::RESYNC_INTERVAL, "30"),
            field_env(env::NODE_NAME, "spec.nodeName"),
            field_env(env::POD_NAME, "metadata.name"),
            field_env(env::OPENEBS_NAMESPACE, "metadata.namespace"),
            plain_env(exporter::ADDR_ENV, exporter::DEFAULT_ADDR),
        ]),
        resources: target.aux_resources.clone(),
        security_context: privileged(),
        volume_mounts: Some(target_mounts()),
        ..Default::default()
    }
}

/// Empty directories for the sockets and istgt's config; the volume's directory on the host.
fn pod_volumes(pv: &str, config: &super::Config) -> Vec<Volume> {
    vec![
        Volume {
            name: "sockfile".to_owned(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        },
        Volume {
            name: "conf".to_owned(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        },
        Volume {
            name: "storagepath".to_owned(),
            host_path: Some(HostPathVolumeSource {
                path: format!("{}/cstor-target/{pv}", config.base_dir),
                type_: Some("DirectoryOrCreate".to_owned()),
            }),
            ..Default::default()
        },
    ]
}

/// Stable hash of a policy ([`crate::stable_hash`] of its JSON), recorded in our annotation
/// [`annotation::APPLIED_POLICY`]. `replicaPoolInfo` is left out: it does not shape the target,
/// and scaling must not look like a policy change. Upstream's label
/// `cstor.openebs.io/template-hash` holds a hash of a Go dump of the policy that cannot be
/// reproduced here, so it is never compared with this one.
pub fn policy_hash(policy: &CStorVolumePolicySpec) -> String {
    let mut policy = policy.clone();
    policy.replica_pool_info = None;
    crate::stable_hash::of(&policy)
}

/// The value of [`annotation::APPLIED_POLICY`]: our policy hash, and upstream's template-hash
/// label as it was when we applied (or adopted) the target.
pub fn applied_record(policy_hash: &str, upstream_label: &str) -> String {
    format!("{policy_hash}/{upstream_label}")
}

/// What the policy sync does with a bound volume.
#[derive(Debug, PartialEq, Eq)]
pub enum PolicyStep {
    /// The target has the policy: nothing to do.
    InSync,
    /// The target was last shaped by someone else (upstream's operator: no record of ours, or
    /// upstream's label changed since, i.e. upstream re-applied the policy): keep the running
    /// target as it is and record the current policy as applied.
    Adopt,
    /// `spec.policy` changed since we applied it: rebuild the pod template.
    Apply,
}

/// Decides the policy sync from our record (`applied`), our hash of the current policy and
/// upstream's template-hash label (empty when absent).
pub fn policy_step(applied: Option<&str>, hash: &str, upstream_label: &str) -> PolicyStep {
    let Some(applied) = applied else {
        return PolicyStep::Adopt;
    };
    let (ours, theirs) = applied.split_once('/').unwrap_or((applied, ""));
    if theirs != upstream_label {
        PolicyStep::Adopt
    } else if ours != hash {
        PolicyStep::Apply
    } else {
        PolicyStep::InSync
    }
}

/// Policy sync: when `spec.policy` changed since we last applied it (our annotation
/// [`annotation::APPLIED_POLICY`]), rebuild the target pod template and replace it on the
/// Deployment, then record the hash. A volume we have no record of (adopted from upstream's
/// operator) keeps its running target: only the record is written. Upstream's
/// `cstor.openebs.io/template-hash` label is never written.
pub async fn sync_policy(cvc: &mut CStorVolumeConfig, ctx: &Context) -> Result<(), Error> {
    let hash = policy_hash(&cvc.spec.policy);
    let upstream = cvc
        .labels()
        .get(label::TEMPLATE_HASH)
        .cloned()
        .unwrap_or_default();
    let applied = cvc.annotations().get(annotation::APPLIED_POLICY).cloned();
    let step = policy_step(applied.as_deref(), &hash, &upstream);
    if step == PolicyStep::InSync {
        return Ok(());
    }
    let pv = pv_name(cvc);
    if step == PolicyStep::Apply {
        apply_policy(cvc, ctx, &pv).await?;
    } else {
        tracing::info!(cvc = %pv, "adopting the running target as it is (policy recorded, template kept)");
    }
    cvc.annotations_mut().insert(
        annotation::APPLIED_POLICY.to_owned(),
        applied_record(&hash, &upstream),
    );
    super::status::replace_cvc(cvc, ctx).await?;
    if step == PolicyStep::Apply {
        ctx.event(
            cvc,
            EventType::Normal,
            "PolicySync",
            format!("successfully sync policy for cvc {pv}"),
        )
        .await;
    }
    Ok(())
}

/// Replaces the target Deployment's pod template with the one `spec.policy` asks for, when it
/// differs.
async fn apply_policy(cvc: &CStorVolumeConfig, ctx: &Context, pv: &str) -> Result<(), Error> {
    let cv = super::bound_cv(ctx, pv).await?;
    let name = naming::target_deployment_name(pv);
    // From the API: the cache keeps Deployments' metadata only.
    let current = ctx
        .api::<Deployment>()
        .get_opt(&name)
        .await
        .map_err(Error::kube(format!("get Deployment {name}")))?;
    let Some(current) = current else {
        ctx.event(
            cvc,
            EventType::Warning,
            "PolicySync",
            format!("target deployment {name} not found: cannot apply spec.policy"),
        )
        .await;
        return Err(Error::Waiting {
            reason: "TargetDeploymentMissing",
            message: format!("target deployment {name} of cvc {pv} does not exist"),
        });
    };
    let wanted = build_deployment(cvc, &cv, &cvc.spec.policy, &ctx.config);
    if let (Some(spec), Some(w)) = (current.spec.as_ref(), wanted.spec)
        && spec.template != w.template
    {
        // Exactly the new pod template, nothing else of the Deployment.
        let patch: json_patch::Patch = serde_json::from_value(serde_json::json!([
            {"op": "replace", "path": "/spec/template", "value": w.template}
        ]))
        .expect("a JSON patch");
        ctx.count_write();
        ctx.api::<Deployment>()
            .patch(&name, &PatchParams::default(), &Patch::<()>::Json(patch))
            .await
            .map_err(Error::kube(format!("patch Deployment {name}")))?;
    }
    Ok(())
}

/// Fills the policy defaults.
pub fn with_defaults(mut policy: CStorVolumePolicySpec) -> CStorVolumePolicySpec {
    use k8s_openapi::{
        api::core::v1::ResourceRequirements, apimachinery::pkg::api::resource::Quantity,
    };
    let zero = || {
        let list: BTreeMap<String, Quantity> = [
            ("cpu".to_owned(), Quantity("0".to_owned())),
            ("memory".to_owned(), Quantity("0".to_owned())),
        ]
        .into();
        ResourceRequirements {
            limits: Some(list.clone()),
            requests: Some(list),
            ..Default::default()
        }
    };
    let target = policy.target.get_or_insert_with(Default::default);
    if target.resources.is_none() {
        target.resources = Some(zero());
    }
    if target.aux_resources.is_none() {
        target.aux_resources = Some(zero());
    }
    if target.lu_workers.unwrap_or(0) == 0 {
        target.lu_workers = Some(6);
    }
    if target.queue_depth.as_deref().unwrap_or("").is_empty() {
        target.queue_depth = Some("32".to_owned());
    }
    policy
}

#[cfg(test)]
mod tests {
    use super::{PolicyStep, applied_record, policy_step};

    #[test]
    fn policy_sync_adopts_what_it_did_not_shape() {
        // Upstream-created volume: upstream's label, no record of ours.
        assert_eq!(policy_step(None, "7", "2953539981"), PolicyStep::Adopt);
        let rec = applied_record("7", "2953539981");
        assert_eq!(
            policy_step(Some(&rec), "7", "2953539981"),
            PolicyStep::InSync
        );
        // The policy changed under us.
        assert_eq!(
            policy_step(Some(&rec), "8", "2953539981"),
            PolicyStep::Apply
        );
        // Upstream re-applied a changed policy meanwhile (its label moved): keep its target.
        assert_eq!(policy_step(Some(&rec), "8", "1111"), PolicyStep::Adopt);
        // A volume we created: no upstream label.
        let ours = applied_record("7", "");
        assert_eq!(policy_step(Some(&ours), "7", ""), PolicyStep::InSync);
        assert_eq!(policy_step(Some(&ours), "9", ""), PolicyStep::Apply);
    }
}
