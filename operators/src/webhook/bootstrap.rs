//! Start-up registration: certificate Secret, Service and
//! ValidatingWebhookConfiguration, all owned by the webhook's own Deployment.

use std::collections::BTreeMap;

use cstor_api::constants::{label, value};
use k8s_openapi::{
    ByteString,
    api::{
        admissionregistration::v1::{
            RuleWithOperations, ServiceReference, ValidatingWebhook,
            ValidatingWebhookConfiguration, WebhookClientConfig,
        },
        apps::v1::Deployment,
        core::v1::{Secret, Service, ServicePort, ServiceSpec},
    },
    apimachinery::pkg::{apis::meta::v1::OwnerReference, util::intstr::IntOrString},
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{ListParams, ObjectMeta, PostParams},
};

use super::{
    CA_COMMON_NAME, DEFAULT_PORT, SECRET_CA_KEY, SECRET_CERT_KEY, SECRET_KEY_KEY, SECRET_NAME,
    SERVER_NAME, VALIDATE_PATH, WEBHOOK_CONFIG_NAME, WEBHOOK_NAME,
    tls::{self, CertBundle},
};

/// A bootstrap failure.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// An API call failed.
    #[error("{action} failed: {source}")]
    Api {
        /// What was being done.
        action: String,
        /// The API error.
        source: kube::Error,
    },
    /// Certificates could not be generated or read.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

fn api_err(action: impl Into<String>) -> impl FnOnce(kube::Error) -> BootstrapError {
    let action = action.into();
    move |source| BootstrapError::Api { action, source }
}

/// Names and settings of the registered objects.
#[derive(Clone, Debug)]
pub struct BootstrapConfig {
    /// OpenEBS namespace.
    pub namespace: String,
    /// Service (and certificate host) name.
    pub service_name: String,
    /// Certificate Secret name.
    pub secret_name: String,
    /// ValidatingWebhookConfiguration name.
    pub webhook_config_name: String,
    /// `Fail` or `Ignore`.
    pub failure_policy: String,
    /// Value of the `openebs.io/version` label.
    pub version: String,
    /// Port the server listens on (the Service's targetPort).
    pub target_port: u16,
}

impl BootstrapConfig {
    /// Upstream's names in `namespace`, failure policy `Fail`.
    pub fn new(namespace: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            service_name: SERVER_NAME.to_owned(),
            secret_name: SECRET_NAME.to_owned(),
            webhook_config_name: WEBHOOK_CONFIG_NAME.to_owned(),
            failure_policy: "Fail".to_owned(),
            version: cstor_api::constants::version::current(),
            target_port: DEFAULT_PORT,
        }
    }
}

/// `ADMISSION_WEBHOOK_FAILURE_POLICY` → policy: `no`/`false`/`ignore` (any case) → `Ignore`,
/// anything else or unset → `Fail`.
pub fn failure_policy(env_value: Option<&str>) -> &'static str {
    match env_value.map(|v| v.trim().to_ascii_lowercase()) {
        Some(v) if v == "no" || v == "false" || v == "ignore" => "Ignore",
        _ => "Fail",
    }
}

fn object_labels(version: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            label::APP.to_owned(),
            value::APP_ADMISSION_WEBHOOK.to_owned(),
        ),
        (
            label::COMPONENT_NAME.to_owned(),
            value::APP_ADMISSION_WEBHOOK.to_owned(),
        ),
        (label::VERSION.to_owned(), version.to_owned()),
    ])
}

fn meta(
    name: &str,
    namespace: Option<&str>,
    cfg: &BootstrapConfig,
    owner: Option<&OwnerReference>,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        labels: Some(object_labels(&cfg.version)),
        owner_references: owner.map(|o| vec![o.clone()]),
        ..Default::default()
    }
}

/// The owner of the registered objects: the Deployment labelled
/// `openebs.io/component-name=cstor-admission-webhook` in the namespace (none when absent,
/// e.g. when run outside the cluster).
pub async fn find_owner(
    client: &Client,
    namespace: &str,
) -> Result<Option<OwnerReference>, BootstrapError> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let params = ListParams::default().labels(&format!(
        "{}={}",
        label::COMPONENT_NAME,
        value::APP_ADMISSION_WEBHOOK
    ));
    let list = api.list(&params).await.map_err(api_err(format!(
        "listing webhook Deployments in {namespace}"
    )))?;
    Ok(list.items.first().and_then(|d| d.controller_owner_ref(&())))
}

fn bundle_from_secret(secret: &Secret) -> Option<CertBundle> {
    let data = secret.data.as_ref()?;
    let text = |k: &str| {
        data.get(k)
            .and_then(|b| String::from_utf8(b.0.clone()).ok())
    };
    let bundle = CertBundle {
        ca_pem: text(SECRET_CA_KEY)?,
        cert_pem: text(SECRET_CERT_KEY)?,
        key_pem: text(SECRET_KEY_KEY)?,
    };
    // Only reuse a bundle rustls accepts.
    tls::server_config(bundle.cert_pem.as_bytes(), bundle.key_pem.as_bytes()).ok()?;
    Some(bundle)
}

/// Gets the certificate Secret, or generates a CA + serving certificate and stores them
/// (`app.crt`, `app.pem`, `ca.crt`). An existing Secret with missing or unusable keys is
/// replaced with a fresh bundle.
pub async fn ensure_certificate(
    client: &Client,
    cfg: &BootstrapConfig,
    owner: Option<&OwnerReference>,
) -> Result<CertBundle, BootstrapError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &cfg.namespace);
    let existing = api
        .get_opt(&cfg.secret_name)
        .await
        .map_err(api_err(format!(
            "reading Secret {}/{}",
            cfg.namespace, cfg.secret_name
        )))?;
    if let Some(bundle) = existing.as_ref().and_then(bundle_from_secret) {
        return Ok(bundle);
    }
    let bundle = tls::generate(
        CA_COMMON_NAME,
        &tls::service_dns_names(&cfg.service_name, &cfg.namespace),
        &[],
    )?;
    let mut secret = Secret {
        metadata: meta(&cfg.secret_name, Some(&cfg.namespace), cfg, owner),
        type_: Some("Opaque".to_owned()),
        data: Some(BTreeMap::from([
            (
                SECRET_CERT_KEY.to_owned(),
                ByteString(bundle.cert_pem.clone().into_bytes()),
            ),
            (
                SECRET_KEY_KEY.to_owned(),
                ByteString(bundle.key_pem.clone().into_bytes()),
            ),
            (
                SECRET_CA_KEY.to_owned(),
                ByteString(bundle.ca_pem.clone().into_bytes()),
            ),
        ])),
        ..Default::default()
    };
    let action = format!("saving Secret {}/{}", cfg.namespace, cfg.secret_name);
    match existing {
        Some(old) => {
            secret.metadata.resource_version = old.metadata.resource_version;
            api.replace(&cfg.secret_name, &PostParams::default(), &secret)
                .await
                .map_err(api_err(action))?;
        }
        None => {
            api.create(&PostParams::default(), &secret)
                .await
                .map_err(api_err(action))?;
        }
    }
    Ok(bundle)
}

/// The webhook Service: port 443 → `target_port`, selector `app=cstor-admission-webhook`.
pub fn service(cfg: &BootstrapConfig, owner: Option<&OwnerReference>) -> Service {
    Service {
        metadata: meta(&cfg.service_name, Some(&cfg.namespace), cfg, owner),
        spec: Some(ServiceSpec {
            selector: Some(BTreeMap::from([(
                label::APP.to_owned(),
                value::APP_ADMISSION_WEBHOOK.to_owned(),
            )])),
            ports: Some(vec![ServicePort {
                port: 443,
                target_port: Some(IntOrString::Int(i32::from(cfg.target_port))),
                protocol: Some("TCP".to_owned()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Creates the Service unless it exists.
pub async fn ensure_service(
    client: &Client,
    cfg: &BootstrapConfig,
    owner: Option<&OwnerReference>,
) -> Result<(), BootstrapError> {
    let api: Api<Service> = Api::namespaced(client.clone(), &cfg.namespace);
    let action = format!("creating Service {}/{}", cfg.namespace, cfg.service_name);
    if api
        .get_opt(&cfg.service_name)
        .await
        .map_err(api_err(action.clone()))?
        .is_none()
    {
        api.create(&PostParams::default(), &service(cfg, owner))
            .await
            .map_err(api_err(action))?;
    }
    Ok(())
}

fn rule(groups: &str, versions: &str, resources: &str, operations: &[&str]) -> RuleWithOperations {
    RuleWithOperations {
        api_groups: Some(vec![groups.to_owned()]),
        api_versions: Some(vec![versions.to_owned()]),
        resources: Some(vec![resources.to_owned()]),
        operations: Some(operations.iter().map(|o| (*o).to_owned()).collect()),
        scope: None,
    }
}

/// The ValidatingWebhookConfiguration with `ca_pem` as the CA bundle.
pub fn webhook_configuration(
    cfg: &BootstrapConfig,
    ca_pem: &str,
    owner: Option<&OwnerReference>,
) -> ValidatingWebhookConfiguration {
    ValidatingWebhookConfiguration {
        metadata: meta(&cfg.webhook_config_name, None, cfg, owner),
        webhooks: Some(vec![ValidatingWebhook {
            name: WEBHOOK_NAME.to_owned(),
            client_config: WebhookClientConfig {
                service: Some(ServiceReference {
                    name: cfg.service_name.clone(),
                    namespace: cfg.namespace.clone(),
                    path: Some(VALIDATE_PATH.to_owned()),
                    port: Some(443),
                }),
                ca_bundle: Some(ByteString(ca_pem.as_bytes().to_vec())),
                url: None,
            },
            rules: Some(vec![
                rule("*", "*", "persistentvolumeclaims", &["CREATE", "DELETE"]),
                rule(
                    "cstor.openebs.io",
                    "v1",
                    "cstorpoolclusters",
                    &["CREATE", "UPDATE", "DELETE"],
                ),
                rule("cstor.openebs.io", "v1", "cstorvolumeconfigs", &["UPDATE"]),
                rule("", "v1", "namespaces", &["DELETE"]),
            ]),
            side_effects: "None".to_owned(),
            admission_review_versions: vec!["v1".to_owned()],
            timeout_seconds: Some(5),
            failure_policy: Some(cfg.failure_policy.clone()),
            ..Default::default()
        }]),
    }
}

/// Creates the ValidatingWebhookConfiguration, or sets the CA bundle of every webhook of an
/// existing one to `ca_pem` (replacing it only when something changed).
pub async fn ensure_webhook_configuration(
    client: &Client,
    cfg: &BootstrapConfig,
    ca_pem: &str,
    owner: Option<&OwnerReference>,
) -> Result<ValidatingWebhookConfiguration, BootstrapError> {
    let api: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let action = format!(
        "saving ValidatingWebhookConfiguration {}",
        cfg.webhook_config_name
    );
    match api
        .get_opt(&cfg.webhook_config_name)
        .await
        .map_err(api_err(action.clone()))?
    {
        None => api
            .create(
                &PostParams::default(),
                &webhook_configuration(cfg, ca_pem, owner),
            )
            .await
            .map_err(api_err(action)),
        Some(mut existing) => {
            let bundle = ByteString(ca_pem.as_bytes().to_vec());
            let mut changed = false;
            for hook in existing.webhooks.iter_mut().flatten() {
                if hook.client_config.ca_bundle.as_ref() != Some(&bundle) {
                    hook.client_config.ca_bundle = Some(bundle.clone());
                    changed = true;
                }
            }
            if !changed {
                return Ok(existing);
            }
            let name = existing.name_any();
            api.replace(&name, &PostParams::default(), &existing)
                .await
                .map_err(api_err(action))
        }
    }
}

/// The whole start-up: owner lookup, certificate, Service, webhook configuration. Returns
/// the certificate bundle to serve.
pub async fn bootstrap(
    client: &Client,
    cfg: &BootstrapConfig,
) -> Result<CertBundle, BootstrapError> {
    let owner = find_owner(client, &cfg.namespace).await?;
    if owner.is_none() {
        tracing::warn!(namespace = %cfg.namespace, "no Deployment labelled {}={}: registered objects get no owner", label::COMPONENT_NAME, value::APP_ADMISSION_WEBHOOK);
    }
    let bundle = ensure_certificate(client, cfg, owner.as_ref()).await?;
    ensure_service(client, cfg, owner.as_ref()).await?;
    ensure_webhook_configuration(client, cfg, &bundle.ca_pem, owner.as_ref()).await?;
    Ok(bundle)
}
