//! Prometheus metrics of every long-running binary, served as text at `GET /metrics` on its
//! `--health-addr` (next to `/healthz` and `/readyz`). One process-wide registry; every metric
//! name starts with `cstor_`.
//!
//! - `cstor_kube_api_requests_total{verb}`: requests to the Kubernetes API by verb (`get`,
//!   `list`, `watch`, `create`, `update`, `patch`, `delete`), counted in the client that
//!   [`crate::process::kube_client`] builds.
//! - `cstor_reconcile_total{controller,result}`, `cstor_reconcile_duration_seconds{controller}`,
//!   `cstor_reconcile_failing_objects{controller}` (objects waiting out an error backoff):
//!   recorded by the operators through [`Reconciles`].

use std::{
    sync::{LazyLock, Mutex, PoisonError},
    time::Instant,
};

use prometheus_client::{
    encoding::text::encode,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

type Labels = Vec<(&'static str, String)>;
type Histograms = Family<Labels, Histogram, fn() -> Histogram>;

struct Metrics {
    registry: Mutex<Registry>,
    api_requests: Family<Labels, Counter>,
    reconciles: Family<Labels, Counter>,
    reconcile_seconds: Histograms,
    failing: Family<Labels, Gauge>,
}

fn reconcile_buckets() -> Histogram {
    // 1 ms .. ~33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let mut registry = Registry::with_prefix("cstor");
    let api_requests = Family::<Labels, Counter>::default();
    registry.register(
        "kube_api_requests",
        "Requests to the Kubernetes API server, by verb",
        api_requests.clone(),
    );
    let reconciles = Family::<Labels, Counter>::default();
    registry.register(
        "reconcile",
        "Reconcile passes, by controller and result (ok, error)",
        reconciles.clone(),
    );
    let reconcile_seconds: Histograms = Family::new_with_constructor(reconcile_buckets);
    registry.register(
        "reconcile_duration_seconds",
        "Duration of reconcile passes, by controller",
        reconcile_seconds.clone(),
    );
    let failing = Family::<Labels, Gauge>::default();
    registry.register(
        "reconcile_failing_objects",
        "Objects whose last reconcile failed and that wait out a backoff, by controller",
        failing.clone(),
    );
    Metrics {
        registry: Mutex::new(registry),
        api_requests,
        reconciles,
        reconcile_seconds,
        failing,
    }
});

/// Every metric in the Prometheus text format.
pub fn render() -> String {
    let mut out = String::new();
    let registry = METRICS
        .registry
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    // Writing into a String cannot fail.
    let _ = encode(&mut out, &registry);
    out
}

/// The Kubernetes verb of an API request: the HTTP method, and for a GET whether it watches,
/// names one object or lists a collection.
pub fn kube_verb(method: &http::Method, uri: &http::Uri) -> &'static str {
    match *method {
        http::Method::POST => "create",
        http::Method::PUT => "update",
        http::Method::PATCH => "patch",
        http::Method::DELETE => "delete",
        http::Method::GET => {
            let query = uri.query().unwrap_or("");
            if query
                .split('&')
                .any(|kv| kv == "watch=true" || kv == "watch=1")
            {
                return "watch";
            }
            // /api/v1/... or /apis/<group>/<version>/...; then [namespaces/<ns>/]<plural>[/<name>...]
            let segments: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
            let rest = match segments.first() {
                Some(&"api") => segments.get(2..),
                Some(&"apis") => segments.get(3..),
                _ => None,
            }
            .unwrap_or(&[]);
            let rest = match rest {
                ["namespaces", _ns, tail @ ..] if !tail.is_empty() => tail,
                other => other,
            };
            if rest.len() >= 2 { "get" } else { "list" }
        }
        _ => "other",
    }
}

/// Counts one API request (see [`kube_verb`]).
pub fn count_api_request(method: &http::Method, uri: &http::Uri) {
    METRICS
        .api_requests
        .get_or_create(&vec![("verb", kube_verb(method, uri).to_owned())])
        .inc();
}

/// Reconcile metrics of one controller (`cspc`, `cspi`, `cvr`, `cvc`, ...).
#[derive(Clone, Debug)]
pub struct Reconciles {
    controller: &'static str,
}

impl Reconciles {
    pub const fn new(controller: &'static str) -> Self {
        Self { controller }
    }

    fn labels(&self) -> Labels {
        vec![("controller", self.controller.to_owned())]
    }

    /// Records a pass that started at `started` and ended `ok` or not.
    pub fn observe(&self, started: Instant, ok: bool) {
        let mut labels = self.labels();
        METRICS
            .reconcile_seconds
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
        labels.push(("result", if ok { "ok" } else { "error" }.to_owned()));
        METRICS.reconciles.get_or_create(&labels).inc();
    }

    /// How many objects of this controller wait out an error backoff now.
    pub fn set_failing(&self, objects: usize) {
        METRICS
            .failing
            .get_or_create(&self.labels())
            .set(i64::try_from(objects).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verb(method: http::Method, uri: &str) -> &'static str {
        kube_verb(&method, &uri.parse().unwrap())
    }

    #[test]
    fn verbs_of_api_requests() {
        use http::Method;
        let cvc = "/apis/cstor.openebs.io/v1/namespaces/openebs/cstorvolumeconfigs";
        assert_eq!(verb(Method::GET, cvc), "list");
        assert_eq!(
            verb(Method::GET, &format!("{cvc}?watch=true&resourceVersion=1")),
            "watch"
        );
        assert_eq!(verb(Method::GET, &format!("{cvc}/pvc-1")), "get");
        assert_eq!(verb(Method::GET, &format!("{cvc}/pvc-1/status")), "get");
        assert_eq!(verb(Method::GET, "/api/v1/nodes"), "list");
        assert_eq!(verb(Method::GET, "/api/v1/nodes/n1"), "get");
        assert_eq!(verb(Method::GET, "/api/v1/namespaces/openebs"), "get");
        assert_eq!(
            verb(Method::GET, "/apis/cstor.openebs.io/v1/cstorvolumes"),
            "list"
        );
        assert_eq!(verb(Method::POST, cvc), "create");
        assert_eq!(verb(Method::PUT, &format!("{cvc}/pvc-1")), "update");
        assert_eq!(verb(Method::PATCH, &format!("{cvc}/pvc-1")), "patch");
        assert_eq!(verb(Method::DELETE, &format!("{cvc}/pvc-1")), "delete");
    }

    #[test]
    fn reconciles_and_requests_show_in_the_text() {
        let r = Reconciles::new("unit-test");
        r.observe(Instant::now(), true);
        r.observe(Instant::now(), false);
        r.set_failing(3);
        count_api_request(
            &http::Method::GET,
            &"/api/v1/nodes?watch=true".parse().unwrap(),
        );
        let text = render();
        for line in [
            "cstor_reconcile_total{controller=\"unit-test\",result=\"ok\"} 1",
            "cstor_reconcile_total{controller=\"unit-test\",result=\"error\"} 1",
            "cstor_reconcile_failing_objects{controller=\"unit-test\"} 3",
            "cstor_reconcile_duration_seconds_count{controller=\"unit-test\"} 2",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        assert!(
            text.contains("cstor_kube_api_requests_total{verb=\"watch\"}"),
            "{text}"
        );
    }
}
