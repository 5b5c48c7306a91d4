//! The pool-manager Deployment of a CSPI (upstream `GetPoolDeploySpec`).

use std::collections::BTreeMap;

use cstor_api::{
    constants::{annotation as annotations, engine, env, label as labels, value as values},
    cstor::{CStorPoolCluster, CStorPoolInstance, PoolConfig},
    health,
};
use k8s_openapi::{
    api::{
        apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy},
        core::v1::{
            Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource, ExecAction,
            HostPathVolumeSource, Lifecycle, LifecycleHandler, LocalObjectReference,
            ObjectFieldSelector, PodSpec, PodTemplateSpec, Probe, SecurityContext, Volume,
            VolumeMount,
        },
    },
    apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta},
};
use kube::{Resource, ResourceExt};

use crate::exporter;

/// Images and host paths, from the operator's environment (upstream defaults).
#[derive(Clone, Debug)]
pub struct DeployConfig {
    pub pool_manager_image: String,
    pub pool_image: String,
    pub service_account: String,
    pub image_pull_secrets: Vec<String>,
    pub base_dir: String,
    pub sparse_dir: String,
}

impl Default for DeployConfig {
    fn default() -> Self {
        Self {
            pool_manager_image: "quay.io/openebs/cstor-pool-manager-amd64:ci".into(),
            pool_image: "quay.io/openebs/cstor-pool:ci".into(),
            service_account: "openebs-maya-operator".into(),
            image_pull_secrets: vec![],
            base_dir: "/var/openebs".into(),
            sparse_dir: "/var/openebs/sparse".into(),
        }
    }
}

impl DeployConfig {
    /// Reads the upstream environment variables, keeping defaults for the unset ones.
    pub fn from_env() -> Self {
        let d = Self::default();
        let get = |k: &str, dflt: String| {
            std::env::var(k)
                .ok()
                .filter(|v| !v.is_empty())
                .unwrap_or(dflt)
        };
        Self {
            pool_manager_image: get(env::OPENEBS_IO_CSPI_MGMT_IMAGE, d.pool_manager_image),
            pool_image: get(env::OPENEBS_IO_CSTOR_POOL_IMAGE, d.pool_image),
            service_account: get(env::OPENEBS_SERVICEACCOUNT_NAME, d.service_account),
            image_pull_secrets: std::env::var(env::OPENEBS_IO_IMAGE_PULL_SECRETS)
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            base_dir: get(env::OPENEBS_IO_BASE_DIR, d.base_dir),
            sparse_dir: get(env::OPENEBS_IO_CSTOR_POOL_SPARSE_DIR, d.sparse_dir),
        }
    }
}

fn env_var(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..Default::default()
    }
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn mounts(sparse: &str) -> Vec<VolumeMount> {
    [
        ("device", "/dev"),
        ("tmp", "/tmp"),
        ("udev", "/run/udev"),
        ("storagepath", "/var/openebs/cstor-pool"),
        ("sockfile", "/var/tmp/sock"),
        ("sparse", sparse),
    ]
    .into_iter()
    .map(|(n, p)| VolumeMount {
        name: n.into(),
        mount_path: p.into(),
        ..Default::default()
    })
    .collect()
}

fn host_path(name: &str, path: &str, type_: &str) -> Volume {
    Volume {
        name: name.into(),
        host_path: Some(HostPathVolumeSource {
            path: path.into(),
            type_: Some(type_.into()),
        }),
        ..Default::default()
    }
}

fn privileged() -> Option<SecurityContext> {
    Some(SecurityContext {
        privileged: Some(true),
        ..Default::default()
    })
}

fn shell(cmd: &str) -> Option<ExecAction> {
    Some(ExecAction {
        command: Some(vec!["/bin/sh".into(), "-c".into(), cmd.into()]),
    })
}

fn tcp_port(port: i32) -> ContainerPort {
    ContainerPort {
        container_port: port,
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

/// The Deployment for `cspi` (name = CSPI name, controller reference to the CSPI).
pub fn build(
    cfg: &DeployConfig,
    version: &str,
    cspc: &CStorPoolCluster,
    cspi: &CStorPoolInstance,
) -> Deployment {
    let labels_map = pool_labels(version, cspc, cspi);
    let pod = pod_spec(cfg, cspc, cspi);
    let mut deployment_annotations = monitoring();
    deployment_annotations.insert(
        annotations::APPLIED_POOL_TEMPLATE.to_string(),
        super::sync::owned_hash(&pod),
    );
    Deployment {
        metadata: ObjectMeta {
            name: Some(cspi.name_any()),
            namespace: cspi.namespace(),
            labels: Some(labels_map.clone()),
            annotations: Some(deployment_annotations),
            owner_references: cspi.controller_owner_ref(&()).map(|r| vec![r]),
            ..Default::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            strategy: Some(DeploymentStrategy {
                type_: Some("Recreate".into()),
                ..Default::default()
            }),
            selector: LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    labels::APP.to_string(),
                    values::APP_CSTOR_POOL.to_string(),
                )])),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels_map),
                    annotations: Some(pod_annotations()),
                    ..Default::default()
                }),
                spec: Some(pod),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Labels of the Deployment and its pods: CSPC, app, CSPI and operator version.
fn pool_labels(
    version: &str,
    cspc: &CStorPoolCluster,
    cspi: &CStorPoolInstance,
) -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::CSTOR_POOL_CLUSTER.to_string(), cspc.name_any()),
        (labels::APP.to_string(), values::APP_CSTOR_POOL.to_string()),
        (labels::CSTOR_POOL_INSTANCE.to_string(), cspi.name_any()),
        (labels::VERSION.to_string(), version.to_string()),
    ])
}

/// The monitoring annotation, on the Deployment and its pods.
fn monitoring() -> BTreeMap<String, String> {
    BTreeMap::from([(
        annotations::MONITORING.to_string(),
        values::MONITORING_POOL_EXPORTER.to_string(),
    )])
}

/// Pod annotations: monitoring, where Prometheus scrapes the exporter, and not safe to evict.
fn pod_annotations() -> BTreeMap<String, String> {
    let mut pod_annotations = monitoring();
    pod_annotations.extend([
        (
            annotations::PROMETHEUS_PATH.to_string(),
            "/metrics".to_string(),
        ),
        (annotations::PROMETHEUS_PORT.to_string(), "9500".to_string()),
        (
            annotations::PROMETHEUS_SCRAPE.to_string(),
            "true".to_string(),
        ),
        (annotations::SAFE_TO_EVICT.to_string(), "false".to_string()),
    ]);
    pod_annotations
}

/// The pod: pool manager and pool containers on the CSPI's node, with the pool config's
/// priority class and tolerations. The pool manager serves the metrics upstream's
/// `maya-exporter` sidecar served (port 9500, `/metrics`), so there is no sidecar.
fn pod_spec(cfg: &DeployConfig, cspc: &CStorPoolCluster, cspi: &CStorPoolInstance) -> PodSpec {
    let config = cspi.spec.pool_config.clone().unwrap_or_default();
    let cspc_uid = cspc.uid().unwrap_or_default();
    let cspi_uid = cspi.uid().unwrap_or_default();
    PodSpec {
        priority_class_name: Some(config.priority_class_name.clone().unwrap_or_default()),
        node_selector: Some(cspi.spec.node_selector.clone()),
        service_account_name: Some(cfg.service_account.clone()),
        tolerations: config.tolerations.clone(),
        image_pull_secrets: (!cfg.image_pull_secrets.is_empty()).then(|| {
            cfg.image_pull_secrets
                .iter()
                .map(|s| LocalObjectReference { name: s.clone() })
                .collect()
        }),
        containers: vec![
            manager_container(cfg, &config, &cspi_uid, &cspc_uid),
            pool_container(cfg, &config, &cspi_uid, &cspc_uid),
        ],
        volumes: Some(pod_volumes(cfg, &cspc.name_any())),
        ..Default::default()
    }
}

/// The pool manager, which drives the pool from the CSPI.
fn manager_container(
    cfg: &DeployConfig,
    config: &PoolConfig,
    cspi_uid: &str,
    cspc_uid: &str,
) -> Container {
    Container {
        name: "cstor-pool-mgmt".into(),
        image: Some(cfg.pool_manager_image.clone()),
        image_pull_policy: Some("IfNotPresent".into()),
        security_context: privileged(),
        env: Some(vec![
            env_var(env::OPENEBS_IO_CSPI_ID, cspi_uid),
            env_var(env::RESYNC_INTERVAL, "30"),
            field_env(env::POD_NAME, "metadata.name"),
            field_env(env::NAMESPACE, "metadata.namespace"),
            env_var(env::OPENEBS_IO_POOL_NAME, cspc_uid),
            env_var(exporter::ADDR_ENV, exporter::DEFAULT_ADDR),
        ]),
        resources: Some(config.aux_resources.clone().unwrap_or_default()),
        volume_mounts: Some(mounts(&cfg.sparse_dir)),
        // The pod has its own network namespace: every pool pod on a node can use these ports.
        ports: Some(vec![
            tcp_port(i32::from(health::ports::POOL_MANAGER)),
            tcp_port(i32::from(engine::EXPORTER_PORT)),
        ]),
        liveness_probe: Some(health::liveness_probe(health::ports::POOL_MANAGER)),
        readiness_probe: Some(health::readiness_probe(health::ports::POOL_MANAGER)),
        ..Default::default()
    }
}

/// The pool itself (the storage engine), with a liveness probe that writes a timestamp
/// property on the pool.
fn pool_container(
    cfg: &DeployConfig,
    config: &PoolConfig,
    cspi_uid: &str,
    cspc_uid: &str,
) -> Container {
    Container {
        name: "cstor-pool".into(),
        image: Some(cfg.pool_image.clone()),
        image_pull_policy: Some("IfNotPresent".into()),
        security_context: privileged(),
        resources: Some(config.resources.clone().unwrap_or_default()),
        ports: Some(vec![tcp_port(12000), tcp_port(3232), tcp_port(3233)]),
        env: Some(vec![
            env_var(env::OPENEBS_IO_CSTOR_ID, cspi_uid),
            env_var(env::OPENEBS_IO_POOL_NAME, cspc_uid),
        ]),
        lifecycle: Some(Lifecycle {
            post_start: Some(LifecycleHandler {
                exec: shell("sleep 2"),
                ..Default::default()
            }),
            ..Default::default()
        }),
        liveness_probe: Some(Probe {
            exec: shell(
                "timeout 120 zfs set io.openebs:livenesstimestamp=\"$(date +%s)\" cstor-$OPENEBS_IO_POOL_NAME",
            ),
            failure_threshold: Some(3),
            initial_delay_seconds: Some(300),
            period_seconds: Some(60),
            timeout_seconds: Some(150),
            ..Default::default()
        }),
        volume_mounts: Some(mounts(&cfg.sparse_dir)),
        ..Default::default()
    }
}

/// Host devices and udev, the CSPC's storage directory (as `tmp` and `storagepath`), the sparse
/// file directory, and an empty directory for the engine's socket.
fn pod_volumes(cfg: &DeployConfig, cspc_name: &str) -> Vec<Volume> {
    let storage = format!("{}/cstor-pool/{cspc_name}", cfg.base_dir);
    vec![
        host_path("device", "/dev", "Directory"),
        host_path("udev", "/run/udev", "Directory"),
        host_path("tmp", &storage, "DirectoryOrCreate"),
        host_path("storagepath", &storage, "DirectoryOrCreate"),
        host_path("sparse", &cfg.sparse_dir, "DirectoryOrCreate"),
        Volume {
            name: "sockfile".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        },
    ]
}
