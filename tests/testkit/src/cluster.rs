//! The cluster-backed test switch.
//!
//! [`TestCluster::start`] talks to a real cluster when `CSTOR_TEST_KUBECONFIG` names a kubeconfig
//! file, and to an in-process [`TestApiServer`] otherwise. Either way it installs every CRD found
//! in the repository's `deploy/crds/` directory (server-side apply, field manager
//! `cstor-testkit`), waits until each is `Established`, and creates a fresh namespace
//! `cstor-test-<random>` for the test; [`TestCluster::cleanup`] deletes that namespace.

use serde::Deserialize;
use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use k8s_openapi::{
    api::core::v1::Namespace,
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client,
    api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
    runtime::wait::conditions,
};

use crate::{TestApiServer, store::random_suffix, wait::wait_for_object};

/// Environment variable naming the kubeconfig of a real cluster to test against.
pub const KUBECONFIG_ENV: &str = "CSTOR_TEST_KUBECONFIG";
/// Field manager used to apply CRDs.
pub const FIELD_MANAGER: &str = "cstor-testkit";
/// How long a CRD may take to become Established.
pub const CRD_ESTABLISH_DEADLINE: Duration = Duration::from_secs(60);

/// The repository's CRD directory (`deploy/crds`), found from this crate's manifest directory.
pub fn crd_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/crds")
}

/// Failure to set up a [`TestCluster`].
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The kubeconfig named by `CSTOR_TEST_KUBECONFIG` could not be read or used.
    #[error("kubeconfig {path} (from {KUBECONFIG_ENV}) is not usable: {message}")]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// A file in the CRD directory is not a readable CRD manifest.
    #[error("CRD manifest {path} is not usable: {message}")]
    CrdFile {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// Applying a CRD failed.
    #[error("applying CRD {name} failed: {source}")]
    Apply {
        /// CRD name.
        name: String,
        /// The API error.
        source: kube::Error,
    },
    /// A CRD did not become Established in time.
    #[error("CRD {name} did not become Established: {message}")]
    Established {
        /// CRD name.
        name: String,
        /// Why.
        message: String,
    },
    /// Creating the test namespace failed.
    #[error("creating test namespace {name} failed: {source}")]
    Namespace {
        /// Namespace name.
        name: String,
        /// The API error.
        source: kube::Error,
    },
}

/// Reads every CRD in `*.yaml`/`*.yml` files of `dir` (multi-document files allowed, sorted by
/// file name). A missing directory yields no CRD.
pub fn load_crds(dir: &Path) -> Result<Vec<CustomResourceDefinition>, ClusterError> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    let mut crds = Vec::new();
    for path in files {
        let bad = |message: String| ClusterError::CrdFile {
            path: path.clone(),
            message,
        };
        let text = std::fs::read_to_string(&path).map_err(|e| bad(e.to_string()))?;
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = serde_json::Value::deserialize(doc).map_err(|e| bad(e.to_string()))?;
            if value.is_null() {
                continue;
            }
            let kind = value
                .get("kind")
                .and_then(|k| k.as_str())
                .unwrap_or_default();
            if kind != "CustomResourceDefinition" {
                return Err(bad(format!(
                    "found kind {kind:?}; only CustomResourceDefinition manifests belong in the CRD directory"
                )));
            }
            crds.push(serde_json::from_value(value).map_err(|e| bad(e.to_string()))?);
        }
    }
    Ok(crds)
}

/// Applies the CRDs (server-side apply, forced) and waits until each is Established.
pub async fn install_crds(
    client: &Client,
    crds: &[CustomResourceDefinition],
) -> Result<Vec<String>, ClusterError> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let mut names = Vec::new();
    for crd in crds {
        let name = crd.metadata.name.clone().unwrap_or_default();
        api.patch(&name, &params, &Patch::Apply(crd))
            .await
            .map_err(|source| ClusterError::Apply {
                name: name.clone(),
                source,
            })?;
        names.push(name);
    }
    for name in &names {
        wait_for_object(
            &api,
            name,
            CRD_ESTABLISH_DEADLINE,
            conditions::is_crd_established(),
        )
        .await
        .map_err(|e| ClusterError::Established {
            name: name.clone(),
            message: e.to_string(),
        })?;
    }
    Ok(names)
}

/// Installs each CRD that the cluster does not have yet (never replacing one it has: on a real
/// cluster that one is the real definition) and waits until it is Established.
pub async fn ensure_crds(
    client: &Client,
    crds: &[CustomResourceDefinition],
) -> Result<(), ClusterError> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut missing = Vec::new();
    for crd in crds {
        let name = crd.metadata.name.clone().unwrap_or_default();
        let present = api
            .get_opt(&name)
            .await
            .map_err(|source| ClusterError::Apply {
                name: name.clone(),
                source,
            })?;
        if present.is_none() {
            missing.push(crd.clone());
        }
    }
    install_crds(client, &missing).await.map(drop)
}

/// A cluster for one test: a real one (`CSTOR_TEST_KUBECONFIG`) or the in-process server.
pub struct TestCluster {
    client: Client,
    namespace: String,
    server: Option<TestApiServer>,
    crds: Vec<String>,
}

impl std::fmt::Debug for TestCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCluster")
            .field("namespace", &self.namespace)
            .field("server", &self.server)
            .field("crds", &self.crds)
            .finish()
    }
}

impl TestCluster {
    /// Starts (or connects to) the cluster, installs `deploy/crds/*` and creates the test
    /// namespace. Panics with the reason when that fails: use [`TestCluster::try_start`] to handle it.
    pub async fn start() -> Self {
        match Self::try_start().await {
            Ok(c) => c,
            Err(e) => panic!("test cluster setup failed: {e}"),
        }
    }

    /// [`TestCluster::start`] returning the error.
    pub async fn try_start() -> Result<Self, ClusterError> {
        Self::try_start_with_crds(&crd_dir()).await
    }

    /// Like [`TestCluster::try_start`] with the CRDs of another directory.
    pub async fn try_start_with_crds(dir: &Path) -> Result<Self, ClusterError> {
        let crds = load_crds(dir)?;
        let (client, server) = match std::env::var_os(KUBECONFIG_ENV) {
            Some(path) if !path.is_empty() => (real_client(Path::new(&path)).await?, None),
            _ => {
                let srv = TestApiServer::start().await;
                (srv.client(), Some(srv))
            }
        };
        let crd_names = install_crds(&client, &crds).await?;
        let namespace = format!("cstor-test-{}", random_suffix(8));
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(namespace.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .map_err(|source| ClusterError::Namespace {
                name: namespace.clone(),
                source,
            })?;
        Ok(TestCluster {
            client,
            namespace,
            server,
            crds: crd_names,
        })
    }

    /// `Some(cluster)` when `CSTOR_TEST_KUBECONFIG` is set; otherwise prints
    /// `SKIPPED <test>: CSTOR_TEST_KUBECONFIG is not set (runs only against a real cluster)` and
    /// returns `None`.
    pub async fn real_only(test_name: &str) -> Option<Self> {
        if std::env::var_os(KUBECONFIG_ENV).is_none_or(|v| v.is_empty()) {
            println!(
                "SKIPPED {test_name}: {KUBECONFIG_ENV} is not set (runs only against a real cluster)"
            );
            return None;
        }
        Some(Self::start().await)
    }

    /// A client for the cluster.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The test's own namespace (`cstor-test-<random>`).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// `true` when running against a real cluster.
    pub fn is_real(&self) -> bool {
        self.server.is_none()
    }

    /// The in-process server, when not running against a real cluster.
    pub fn server(&self) -> Option<&TestApiServer> {
        self.server.as_ref()
    }

    /// Names of the CRDs installed from `deploy/crds`.
    pub fn crds(&self) -> &[String] {
        &self.crds
    }

    /// Deletes the test namespace (and with it everything the test created in it).
    pub async fn cleanup(&self) -> Result<(), kube::Error> {
        let api = Api::<Namespace>::all(self.client.clone());
        match api.delete(&self.namespace, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e),
        }
    }
}

async fn real_client(path: &Path) -> Result<Client, ClusterError> {
    let bad = |message: String| ClusterError::Kubeconfig {
        path: path.to_path_buf(),
        message,
    };
    let kubeconfig = Kubeconfig::read_from(path).map_err(|e| bad(e.to_string()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| bad(e.to_string()))?;
    Client::try_from(config).map_err(|e| bad(e.to_string()))
}
