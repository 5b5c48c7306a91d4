//! `cstor-migrate upgrade`: moves pools and volumes written by an older OpenEBS release to the
//! release this control plane stamps (see [`cstor_api::constants::version`]), in upstream's
//! order. The operators freeze an object of an older release (no provisioning, scaling,
//! expansion) until its `versionDetails.desired` is bumped and its controller has reconciled
//! it; the pool-manager and volume-manager only reconcile objects whose `desired` is their own
//! release, so images are swapped before `desired` is bumped:
//!
//! * a CStorPoolCluster ([`cspc`]): per CStorPoolInstance, its pool Deployment gets the new
//!   images and version labels and is rolled out, then the CSPI's label and `desired` move and
//!   the tool waits for its pool-manager to report `current`, and its legacy backup records
//!   (`openebs.io/v1alpha1`) become `cstor.openebs.io/v1` ones; last the CSPC's `desired`,
//!   and the cspc-operator's `current`;
//! * a volume ([`volume`]): its replicas (whose pools must already be upgraded), then the
//!   target Deployment (rollout), its Service label, the CStorVolume, the CStorVolumeConfig.
//!
//! Each object is checked first (its version must be `--from-version` or `--to-version`) and
//! patched only while it is at `--from-version`, so a rerun after success changes nothing.
//! Every wait is bounded by `--timeout-seconds` and its error names what it waited for.
//! Each CSPI and each volume has an UpgradeTask ([`task`]).

pub mod cspc;
pub mod task;
pub mod volume;

use std::{collections::BTreeMap, future::Future, time::Duration};

use anyhow::{Context as _, bail};
use cstor_api::constants::{env, label, version};
use k8s_openapi::api::{apps::v1::Deployment, core::v1::Pod};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{ListParams, Patch, PatchParams, PostParams},
};
use serde_json::json;

/// Environment variable with the label selector of the UpgradeTasks `upgrade resource` runs.
pub const TASK_LABEL_ENV: &str = "UPGRADE_TASK_LABEL";

/// Arguments of `cstor-migrate upgrade`.
#[derive(Debug, clap::Args)]
pub struct UpgradeArgs {
    /// The release the objects are at (e.g. 3.5.0).
    #[arg(long, default_value = "")]
    pub from_version: String,
    /// The release to move them to: the one this control plane stamps on its objects.
    #[arg(long, default_value_t = version::current())]
    pub to_version: String,
    /// Registry/organisation prefix of the new images (e.g. `quay.io/openebs/`); default: each
    /// image keeps its repository.
    #[arg(long)]
    pub to_version_image_prefix: Option<String>,
    /// Tag of the new images (default: `--to-version`).
    #[arg(long)]
    pub to_version_image_tag: Option<String>,
    #[command(subcommand)]
    pub command: UpgradeCommand,
}

/// What to upgrade.
#[derive(Debug, clap::Subcommand)]
pub enum UpgradeCommand {
    /// CStorPoolClusters with their pool instances (run before the volumes).
    CstorCspc {
        /// CSPC names.
        names: Vec<String>,
    },
    /// Volumes (by PV name): replicas, target, CStorVolume, CStorVolumeConfig.
    CstorVolume {
        /// PV names.
        pvs: Vec<String>,
    },
    /// The UpgradeTasks of the namespace selected by `$UPGRADE_TASK_LABEL`.
    Resource,
}

/// What an upgrade run needs.
#[derive(Clone)]
pub struct Upgrader {
    pub client: Client,
    /// The OpenEBS namespace.
    pub namespace: String,
    pub from: String,
    pub to: String,
    pub image_prefix: Option<String>,
    /// Tag of the new images.
    pub image_tag: String,
    /// Whether the new images were named (`--to-version-image-prefix` / `-tag`, or an
    /// UpgradeTask's `imagePrefix` / `imageTag`): then every image follows upstream's rule
    /// (`<repository>:<tag>`); otherwise a container the operator deploys gets the image the
    /// operator is configured with, so it has nothing left to roll out afterwards.
    pub images_named: bool,
    /// The version the cspc-/cvc-operator pods must carry (label `openebs.io/version`): this
    /// tool's build, as our manifests label operator pods with the crate version.
    pub tool_version: String,
    /// Bound of every wait.
    pub deadline: Duration,
    /// Pause between two looks.
    pub poll: Duration,
    /// Failed runs after which a task is `Error` (the Job's backoffLimit).
    pub backoff_limit: i64,
}

impl std::fmt::Debug for Upgrader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upgrader")
            .field("namespace", &self.namespace)
            .field("from", &self.from)
            .field("to", &self.to)
            .finish()
    }
}

/// The upgrade sources this tool accepts: [`version::MIN_UPGRADABLE`] ≤ `from` < `to`.
pub fn valid_versions(from: &str, to: &str) -> bool {
    version::is_current_version_valid(from, to)
        && version::compare(from, to) == std::cmp::Ordering::Less
        && version::same_release(to, &version::current())
}

/// Checks the arguments as upstream's job does, with its messages.
pub fn validate(namespace: &str, args: &UpgradeArgs) -> Result<(), String> {
    let missing = |what: &str| format!("Cannot execute upgrade job: {what} is missing");
    if namespace.is_empty() {
        return Err(missing("namespace"));
    }
    if args.from_version.is_empty() {
        return Err(missing("from-version"));
    }
    if args.to_version.is_empty() {
        return Err(missing("to-version"));
    }
    match &args.command {
        UpgradeCommand::CstorCspc { names: v } | UpgradeCommand::CstorVolume { pvs: v }
            if v.is_empty() || v.iter().any(String::is_empty) =>
        {
            return Err(missing("resource name"));
        }
        UpgradeCommand::Resource
            if std::env::var(TASK_LABEL_ENV).unwrap_or_default().is_empty() =>
        {
            return Err("Cannot execute upgrade job: resource details are missing".into());
        }
        _ => {}
    }
    if !valid_versions(&args.from_version, &args.to_version) {
        return Err(format!(
            "Invalid from version {} or to version {}",
            args.from_version, args.to_version
        ));
    }
    Ok(())
}

impl Upgrader {
    /// An upgrader for checked arguments (see [`validate`]).
    pub fn new(
        client: Client,
        namespace: &str,
        args: &UpgradeArgs,
        backoff_limit: i64,
        deadline: Duration,
    ) -> Result<Self, String> {
        validate(namespace, args)?;
        Ok(Self {
            client,
            namespace: namespace.to_owned(),
            from: args.from_version.clone(),
            to: args.to_version.clone(),
            image_prefix: args.to_version_image_prefix.clone(),
            image_tag: args
                .to_version_image_tag
                .clone()
                .unwrap_or_else(|| args.to_version.clone()),
            images_named: args.to_version_image_tag.is_some()
                || args.to_version_image_prefix.is_some(),
            tool_version: env!("CARGO_PKG_VERSION").to_owned(),
            deadline,
            poll: Duration::from_secs(2),
            backoff_limit,
        })
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// The operator gate: every pod of `component` runs this tool's build.
    pub async fn check_operator(&self, component: &str) -> anyhow::Result<()> {
        let m = crate::migrate::Migrator {
            version: self.tool_version.clone(),
            ..crate::migrate::Migrator::new(self.client.clone(), &self.namespace)
        };
        crate::migrate::check_operator(&m, component).await
    }

    /// The images the operator `component` deploys, by container name (the literal values of
    /// the image variables of its pods, which all run one release: [`Self::check_operator`]):
    /// what a Deployment it owns is moved to.
    pub async fn operator_images(
        &self,
        component: &str,
    ) -> anyhow::Result<BTreeMap<String, String>> {
        let pods = self
            .api::<Pod>()
            .list(&ListParams::default().labels(&format!("{}={component}", label::COMPONENT_NAME)))
            .await?;
        let vars: BTreeMap<&str, &str> = pods
            .items
            .iter()
            .filter_map(|p| p.spec.as_ref())
            .flat_map(|s| &s.containers)
            .flat_map(|c| c.env.iter().flatten())
            .filter_map(|e| Some((e.name.as_str(), e.value.as_deref()?)))
            .collect();
        Ok(OPERATOR_IMAGES
            .iter()
            .filter(|(c, _, _)| *c == component)
            .filter_map(|(_, container, var)| {
                Some(((*container).to_owned(), (*vars.get(var)?).to_owned()))
            })
            .collect())
    }

    /// Upstream's PreChecks: the object's version is `from` or `to` (suffixes ignored).
    pub fn precheck(&self, kind: &str, name: &str, v: &str) -> anyhow::Result<()> {
        if version::same_release(v, &self.from) || version::same_release(v, &self.to) {
            Ok(())
        } else {
            bail!(
                "{kind} {name} version {v:?} is neither {} nor {}",
                self.from,
                self.to
            )
        }
    }

    /// Upstream's patch rule on a recorded version `v` (exact strings): at `to` → already
    /// done, at `from` → patch, anything else → leave alone.
    pub fn should_patch(&self, v: &str) -> bool {
        v == self.from && v != self.to
    }

    /// Polls `check` until it gives a value or the deadline passes; the error names `what`
    /// (the migration's bounded wait, with this run's deadline and pause).
    pub async fn wait<T, F, Fut>(&self, what: &str, mut check: F) -> anyhow::Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = anyhow::Result<Option<T>>>,
    {
        crate::migrate::wait_within(self.deadline, self.poll, what, || {
            let look = check();
            async move { Ok(look.await?.ok_or_else(|| "not yet".to_owned())) }
        })
        .await
    }

    /// The one Deployment labelled `selector`.
    pub async fn deployment_by_label(&self, selector: &str) -> anyhow::Result<Deployment> {
        let list = self
            .api::<Deployment>()
            .list(&ListParams::default().labels(selector))
            .await?;
        match list.items.len() {
            1 => Ok(list.items.into_iter().next().expect("one item")),
            0 => bail!(
                "no deployments found for label: {selector} in {} namespace",
                self.namespace
            ),
            n => bail!(
                "{n} deployments found for label: {selector} in {} namespace, expected one",
                self.namespace
            ),
        }
    }

    /// Moves a Deployment at `from` to the new images and `openebs.io/version = to` (on it and
    /// its pod template, plus `extra_labels`), then waits for its rollout. A Deployment
    /// already at `to` is only waited for.
    pub async fn upgrade_deployment(
        &self,
        name: &str,
        extra_labels: &[(&str, String)],
        operator_images: &BTreeMap<String, String>,
    ) -> anyhow::Result<()> {
        let api = self.api::<Deployment>();
        let mut attempts = 0;
        loop {
            attempts += 1;
            if attempts > 10 {
                bail!("deployment {name} kept changing under the patch");
            }
            let mut d = api.get(name).await?;
            let v = d.labels().get(label::VERSION).cloned().unwrap_or_default();
            if !self.should_patch(&v) {
                break;
            }
            d.labels_mut()
                .insert(label::VERSION.into(), self.to.clone());
            for (k, val) in extra_labels {
                d.labels_mut().insert((*k).into(), val.clone());
            }
            let spec = d.spec.as_mut().context("deployment without spec")?;
            let meta = spec.template.metadata.get_or_insert_with(Default::default);
            let labels = meta.labels.get_or_insert_with(Default::default);
            labels.insert(label::VERSION.into(), self.to.clone());
            for (k, val) in extra_labels {
                labels.insert((*k).into(), val.clone());
            }
            let pod = spec
                .template
                .spec
                .as_mut()
                .context("deployment without pod spec")?;
            for c in pod
                .containers
                .iter_mut()
                .chain(pod.init_containers.iter_mut().flatten())
            {
                let old = c.image.clone().unwrap_or_default();
                c.image = Some(upgraded_image(
                    &c.name,
                    &old,
                    operator_images,
                    self.images_named,
                    self.image_prefix.as_deref(),
                    &self.image_tag,
                )?);
            }
            match api.replace(name, &PostParams::default(), &d).await {
                Ok(_) => {
                    tracing::info!(deployment = name, to = %self.to, "deployment patched");
                    break;
                }
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.wait(&format!("rollout of deployment {name}"), || async {
            let d = api.get(name).await?;
            rollout_complete(&d).map_err(anyhow::Error::msg)
        })
        .await
    }

    /// Merge-patches `versionDetails.desired = to` (and `openebs.io/version = to` with
    /// `labels`) on an object whose `desired` (or version label, for `by_label`) is `from`.
    pub async fn bump_desired<K>(
        &self,
        name: &str,
        recorded: &str,
        labels: serde_json::Value,
    ) -> anyhow::Result<()>
    where
        K: crate::version::Versioned,
    {
        if !self.should_patch(recorded) {
            return Ok(());
        }
        let mut patch = json!({"versionDetails": {"desired": self.to}});
        if !labels.is_null() {
            patch["metadata"] = labels;
        }
        self.api::<K>()
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .with_context(|| format!("patch {} {name}", K::KIND))?;
        Ok(())
    }

    /// Waits until the controller of `name` reports `status.current == to`.
    pub async fn verify_current<K>(&self, name: &str) -> anyhow::Result<()>
    where
        K: crate::version::Versioned,
    {
        let api = self.api::<K>();
        self.wait(
            &format!("{} {name} to report version {}", K::KIND, self.to),
            || async {
                let o = api.get(name).await?;
                if crate::version::current(&o) == self.to {
                    return Ok(Some(()));
                }
                if let Some(st) = o.version_details().and_then(|v| v.status.as_ref())
                    && let Some(m) = &st.message
                {
                    tracing::info!(kind = K::KIND, name, message = %m, reason = ?st.reason, "version not reconciled yet");
                }
                Ok(None)
            },
        )
        .await
    }
}

/// Which image variable of which operator names the image of which container (upstream's
/// container names): `(operator component, container, variable)`.
const OPERATOR_IMAGES: [(&str, &str, &str); 6] = [
    (
        "cspc-operator",
        "cstor-pool-mgmt",
        env::OPENEBS_IO_CSPI_MGMT_IMAGE,
    ),
    (
        "cspc-operator",
        "cstor-pool",
        env::OPENEBS_IO_CSTOR_POOL_IMAGE,
    ),
    (
        "cspc-operator",
        "maya-exporter",
        env::OPENEBS_IO_CSTOR_POOL_EXPORTER_IMAGE,
    ),
    (
        "cvc-operator",
        "cstor-istgt",
        env::OPENEBS_IO_CSTOR_TARGET_IMAGE,
    ),
    (
        "cvc-operator",
        "cstor-volume-mgmt",
        env::OPENEBS_IO_CSTOR_VOLUME_MGMT_IMAGE,
    ),
    (
        "cvc-operator",
        "maya-volume-exporter",
        env::OPENEBS_IO_VOLUME_MONITOR_IMAGE,
    ),
];

/// The image of container `name` (now `old`) after the upgrade: the one the operator deploys
/// for it (`operator`, from [`Upgrader::operator_images`]) unless the images were `named`,
/// else upstream's rule ([`new_image`] with `prefix` and `tag`).
pub fn upgraded_image(
    name: &str,
    old: &str,
    operator: &BTreeMap<String, String>,
    named: bool,
    prefix: Option<&str>,
    tag: &str,
) -> anyhow::Result<String> {
    match operator.get(name) {
        Some(img) if !named => Ok(img.clone()),
        _ => new_image(old, prefix, tag),
    }
}

/// The image `old` after the upgrade: its repository (with `prefix` in place of everything up
/// to the last path segment when given, and a trailing `-amd64` dropped under an `openebs`
/// organisation) and `tag`.
pub fn new_image(old: &str, prefix: Option<&str>, tag: &str) -> anyhow::Result<String> {
    let last_slash = old.rfind('/').map(|i| i + 1).unwrap_or(0);
    let Some(colon) = old[last_slash..].rfind(':').map(|i| i + last_slash) else {
        bail!("no version tag found on image {old}");
    };
    let repo = &old[..colon];
    let segment = &repo[last_slash..];
    let mut repo = match prefix {
        Some(p) if !p.is_empty() => format!("{p}{segment}"),
        _ => repo.to_owned(),
    };
    let parts: Vec<&str> = repo.split('/').collect();
    if parts.len() >= 2 && parts[parts.len() - 2] == "openebs" && repo.ends_with("-amd64") {
        repo.truncate(repo.len() - "-amd64".len());
    }
    Ok(format!("{repo}:{tag}"))
}

/// kubectl's rollout-status rules: `Ok(Some(()))` once the new pods are all updated and
/// available and no old ones are left; an error when the progress deadline was exceeded.
pub fn rollout_complete(d: &Deployment) -> Result<Option<()>, String> {
    let name = d.name_any();
    let Some(st) = d.status.as_ref() else {
        return Ok(None);
    };
    if let Some(c) = st
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Progressing")
        && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    {
        return Err(format!("deployment {name} exceeded its progress deadline"));
    }
    let generation = d.metadata.generation.unwrap_or(0);
    if st.observed_generation.unwrap_or(0) < generation {
        return Ok(None);
    }
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let updated = st.updated_replicas.unwrap_or(0);
    let done = updated >= want
        && st.replicas.unwrap_or(0) <= updated
        && st.available_replicas.unwrap_or(0) >= updated;
    Ok(done.then_some(()))
}

/// Runs the sub-command.
pub async fn run(
    client: Client,
    namespace: &str,
    args: UpgradeArgs,
    backoff_limit: i64,
    deadline: Duration,
) -> Result<(), String> {
    let u = Upgrader::new(client, namespace, &args, backoff_limit, deadline)?;
    match args.command {
        UpgradeCommand::CstorCspc { names } => {
            for n in names {
                cspc::upgrade(&u, &n)
                    .await
                    .map_err(|e| format!("Failed to upgrade cStor CSPC {n}: {e:#}"))?;
                println!("cspc {n} is at version {}", u.to);
            }
        }
        UpgradeCommand::CstorVolume { pvs } => {
            for pv in pvs {
                volume::upgrade(&u, &pv)
                    .await
                    .map_err(|e| format!("Failed to upgrade CStorVolume {pv}: {e:#}"))?;
                println!("volume {pv} is at version {}", u.to);
            }
        }
        UpgradeCommand::Resource => {
            let selector = std::env::var(TASK_LABEL_ENV).unwrap_or_default();
            task::run_selected(&u, &selector).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_images_win_unless_images_were_named() {
        let operator = BTreeMap::from([(
            "cstor-pool-mgmt".to_string(),
            "cstor-rs-pool-manager:0.1.0".to_string(),
        )]);
        let pick = |named: bool, container: &str, old: &str| {
            upgraded_image(container, old, &operator, named, None, "3.6.0").unwrap()
        };
        // Ours: not `cstor-rs-pool-manager:3.6.0`, an image that does not exist.
        assert_eq!(
            pick(false, "cstor-pool-mgmt", "cstor-rs-pool-manager:0.0.9"),
            "cstor-rs-pool-manager:0.1.0"
        );
        // A container the operator does not name keeps upstream's rule.
        assert_eq!(
            pick(false, "maya-exporter", "openebs/m-exporter:3.5.0"),
            "openebs/m-exporter:3.6.0"
        );
        // Named images: upstream's rule for every container.
        assert_eq!(
            pick(true, "cstor-pool-mgmt", "openebs/cstor-pool-manager:3.5.0"),
            "openebs/cstor-pool-manager:3.6.0"
        );
    }

    #[test]
    fn images_get_the_new_tag_and_prefix() {
        assert_eq!(
            new_image("openebs/cstor-pool:3.5.0", None, "3.6.0").unwrap(),
            "openebs/cstor-pool:3.6.0"
        );
        assert_eq!(
            new_image(
                "quay.io/openebs/cstor-pool-manager-amd64:3.5.0",
                None,
                "3.6.0"
            )
            .unwrap(),
            "quay.io/openebs/cstor-pool-manager:3.6.0"
        );
        assert_eq!(
            new_image(
                "localhost:5000/me/cstor-istgt:3.5.0",
                Some("reg.example/team/"),
                "v1"
            )
            .unwrap(),
            "reg.example/team/cstor-istgt:v1"
        );
        assert_eq!(
            new_image("localhost:5000/me/m-exporter-amd64:3.5.0", None, "3.6.0").unwrap(),
            "localhost:5000/me/m-exporter-amd64:3.6.0"
        );
        let e = new_image("localhost:5000/openebs/cstor-pool", None, "3.6.0").unwrap_err();
        assert_eq!(
            e.to_string(),
            "no version tag found on image localhost:5000/openebs/cstor-pool"
        );
    }

    #[test]
    fn preflight_messages() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: UpgradeArgs,
        }
        let check = |ns: &str, argv: &[&str]| {
            let cli = Cli::try_parse_from(std::iter::once("upgrade").chain(argv.iter().copied()))
                .unwrap();
            validate(ns, &cli.args)
        };
        let e = |m: &str| Err(m.to_owned());
        assert_eq!(
            check("", &["--from-version", "3.5.0", "cstor-cspc", "a"]),
            e("Cannot execute upgrade job: namespace is missing")
        );
        assert_eq!(
            check("openebs", &["cstor-cspc", "a"]),
            e("Cannot execute upgrade job: from-version is missing")
        );
        assert_eq!(
            check(
                "openebs",
                &[
                    "--from-version",
                    "3.5.0",
                    "--to-version",
                    "",
                    "cstor-cspc",
                    "a"
                ]
            ),
            e("Cannot execute upgrade job: to-version is missing")
        );
        assert_eq!(
            check("openebs", &["--from-version", "3.5.0", "cstor-volume"]),
            e("Cannot execute upgrade job: resource name is missing")
        );
        assert_eq!(
            check(
                "openebs",
                &["--from-version", "1.9.0", "cstor-volume", "pv"]
            ),
            e("Invalid from version 1.9.0 or to version 3.6.0")
        );
        assert_eq!(
            check(
                "openebs",
                &[
                    "--from-version",
                    "3.5.0",
                    "--to-version",
                    "3.7.0",
                    "cstor-volume",
                    "pv"
                ]
            ),
            e("Invalid from version 3.5.0 or to version 3.7.0")
        );
        assert_eq!(
            check(
                "openebs",
                &["--from-version", "3.5.0", "cstor-cspc", "a", "b"]
            ),
            Ok(())
        );
    }

    #[test]
    fn versions_accepted() {
        assert!(valid_versions("3.5.0", "3.6.0"));
        assert!(valid_versions("1.10.0", "3.6.0-RC1"));
        assert!(valid_versions("2.12.2", "3.6.0"));
        assert!(!valid_versions("3.6.0", "3.6.0"));
        assert!(!valid_versions("1.9.0", "3.6.0"));
        assert!(!valid_versions("3.5.0", "3.7.0"));
    }

    #[test]
    fn rollout_rules() {
        let d = |generation: i64, observed: i64, replicas: i32, updated: i32, available: i32| {
            serde_json::from_value::<Deployment>(json!({
                "metadata": {"name": "d", "generation": generation},
                "spec": {"replicas": 1, "selector": {}, "template": {}},
                "status": {"observedGeneration": observed, "replicas": replicas,
                    "updatedReplicas": updated, "availableReplicas": available}
            }))
            .unwrap()
        };
        assert_eq!(rollout_complete(&d(2, 2, 1, 1, 1)), Ok(Some(())));
        assert_eq!(rollout_complete(&d(2, 1, 1, 1, 1)), Ok(None));
        assert_eq!(
            rollout_complete(&d(2, 2, 2, 1, 1)),
            Ok(None),
            "old pod left"
        );
        assert_eq!(
            rollout_complete(&d(2, 2, 1, 1, 0)),
            Ok(None),
            "not available"
        );
        let mut stuck = d(2, 2, 2, 1, 1);
        stuck.status.as_mut().unwrap().conditions = Some(vec![
            serde_json::from_value(json!({
                "type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"
            }))
            .unwrap(),
        ]);
        assert!(rollout_complete(&stuck).is_err());
    }
}
