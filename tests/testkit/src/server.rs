//! [`TestApiServer`]: the in-process API server on 127.0.0.1 and the knobs tests use on it.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::Value;
use tokio::{sync::oneshot, task::JoinHandle};

use crate::{
    resources::ResourceDef,
    routes::{self, Shared},
    store::{Key, Signal, State},
};

/// Settings of a [`TestApiServer`].
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// How many change events the watch history keeps; watching from a version older than the
    /// oldest kept event answers 410 Expired. Default 1000.
    pub history_limit: usize,
    /// How often watches with `allowWatchBookmarks=true` get a BOOKMARK. Default 1 s.
    pub bookmark_interval: Duration,
    /// Delete objects whose owners are gone and run foreground deletion. Default `true`.
    pub garbage_collection: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            history_limit: 1000,
            bookmark_interval: Duration::from_secs(1),
            garbage_collection: true,
        }
    }
}

impl ServerConfig {
    /// Sets [`ServerConfig::history_limit`].
    pub fn history_limit(mut self, events: usize) -> Self {
        self.history_limit = events;
        self
    }

    /// Sets [`ServerConfig::bookmark_interval`].
    pub fn bookmark_interval(mut self, every: Duration) -> Self {
        self.bookmark_interval = every;
        self
    }

    /// Sets [`ServerConfig::garbage_collection`].
    pub fn garbage_collection(mut self, enabled: bool) -> Self {
        self.garbage_collection = enabled;
        self
    }
}

struct Inner {
    shared: Arc<Shared>,
    url: String,
    shutdown: Mutex<Option<oneshot::Sender<()>>>,
    _task: JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(tx) = self
            .shutdown
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            let _ = tx.send(());
        }
        let _ = self.shared.lock().tx.send(Signal::Close);
    }
}

/// An in-process Kubernetes API server for tests, listening on `127.0.0.1:<random port>` (plain
/// HTTP). It stops when the last clone is dropped.
///
/// ```no_run
/// # async fn demo() {
/// let srv = cstor_testkit::TestApiServer::start().await;
/// let client: kube::Client = srv.client();
/// # }
/// ```
#[derive(Clone)]
pub struct TestApiServer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TestApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestApiServer")
            .field("url", &self.inner.url)
            .finish()
    }
}

impl TestApiServer {
    /// Starts a server with [`ServerConfig::default`]. Panics if 127.0.0.1 cannot be bound.
    pub async fn start() -> Self {
        Self::start_with(ServerConfig::default()).await
    }

    /// Starts a server with the given settings. Panics if 127.0.0.1 cannot be bound.
    pub async fn start_with(config: ServerConfig) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect(
            "binding 127.0.0.1:0 for the test API server failed: is the loopback interface up?",
        );
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(config.history_limit, config.garbage_collection)),
            config,
            address: addr.to_string(),
            calls: Mutex::default(),
        });
        let app = axum::Router::new()
            .fallback(routes::handle)
            .with_state(shared.clone());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = rx.await;
            });
            if let Err(e) = serve.await {
                tracing::error!("test API server stopped: {e}");
            }
        });
        TestApiServer {
            inner: Arc::new(Inner {
                shared,
                url: format!("http://{addr}"),
                shutdown: Mutex::new(Some(tx)),
                _task: task,
            }),
        }
    }

    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// A `kube::Config` for this server (no TLS, no auth, default namespace `default`).
    pub fn kube_config(&self) -> kube::Config {
        let uri = self
            .inner
            .url
            .parse()
            .expect("the server URL is a valid URI");
        let mut config = kube::Config::new(uri);
        config.default_namespace = "default".to_string();
        config
    }

    /// A `kube::Client` built the normal way (`Client::try_from(Config::new(url))`). Must be called
    /// inside a tokio runtime.
    pub fn client(&self) -> kube::Client {
        kube::Client::try_from(self.kube_config())
            .expect("building a kube client for the test server failed")
    }

    /// Serves an extra resource (for example a custom resource without creating its CRD).
    pub fn register(&self, def: ResourceDef) {
        self.inner.shared.lock().registry.insert(def);
    }

    /// A client whose requests are recorded as made by `component` (see [`Self::calls`]).
    pub fn client_as(&self, component: &str) -> kube::Client {
        let mut config = self.kube_config();
        config.headers.push((
            http::HeaderName::from_static(crate::routes::COMPONENT_HEADER),
            http::HeaderValue::from_str(component).expect("component names are header-safe"),
        ));
        kube::Client::try_from(config).expect("building a kube client for the test server failed")
    }

    /// Every resource request served so far (verb, group, resource, component).
    pub fn calls(&self) -> Vec<crate::routes::ApiCall> {
        self.inner
            .shared
            .calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The current (latest) resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.inner.shared.lock().rv
    }

    /// Forgets the watch history and ends every open watch, as an API server restart after an etcd
    /// compaction does: a watch resumed from any version handed out so far gets a 410 ERROR
    /// event, and clients must list again.
    pub fn expire_watch_history(&self) {
        self.inner.shared.lock().expire_history();
    }

    /// Ends every open watch stream (clients re-watch from their last version).
    pub fn close_watches(&self) {
        let _ = self.inner.shared.lock().tx.send(Signal::Close);
    }

    /// Sends a BOOKMARK now to every watch opened with `allowWatchBookmarks=true`.
    pub fn send_bookmarks(&self) {
        let st = self.inner.shared.lock();
        let _ = st.tx.send(Signal::Bookmark(st.rv));
    }

    /// The stored object, read without going through HTTP (`group` is empty for core kinds,
    /// `namespace` is empty for cluster-scoped kinds).
    pub fn object(&self, group: &str, plural: &str, namespace: &str, name: &str) -> Option<Value> {
        let key = Key {
            group: group.to_string(),
            plural: plural.to_string(),
            namespace: namespace.to_string(),
            name: name.to_string(),
        };
        self.inner.shared.lock().objects.get(&key).cloned()
    }

    /// Every stored object of a group/plural (all namespaces), in namespace/name order.
    pub fn objects(&self, group: &str, plural: &str) -> Vec<Value> {
        let st = self.inner.shared.lock();
        st.objects
            .iter()
            .filter(|(k, _)| k.group == group && k.plural == plural)
            .map(|(_, o)| o.clone())
            .collect()
    }

    /// Every served resource, built-in and learnt from CRDs.
    pub fn resources(&self) -> Vec<ResourceDef> {
        self.inner.shared.lock().registry.all().cloned().collect()
    }
}
