//! Benchmark: N CVCs (default 200, env `CVC_BENCH_N`) from Pending to Bound against the
//! in-process API server (or the real one named by `CSTOR_TEST_KUBECONFIG`), pool and volume
//! managers simulated. The operator is the `cvc-operator` binary run as a process, as deployed
//! (`CVC_BENCH_OPERATOR=task` runs it as a task of the bench instead).
//!
//! Prints volumes/s, p50/p99 time to Bound, the operator's API requests per volume until all
//! are Bound (by verb, from its own `/metrics`; watches excluded), its requests per idle volume
//! per minute once all are Bound (window `CVC_BENCH_IDLE_SECS`, default 60 s: two resync
//! periods), and its peak RSS (VmHWM).

#[path = "../tests/cvc_support.rs"]
mod support;

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use cstor_api::cstor::{CStorVolumeConfig, CStorVolumeConfigPhase};
use futures::StreamExt;
use kube::{
    ResourceExt,
    runtime::{WatchStreamExt, watcher},
};
use support::Harness;

/// Component name the operator's calls are recorded under.
const OPERATOR: &str = "cvc-operator-bench";

struct Calls {
    total: usize,
    reads: usize,
    watches: usize,
    /// (verb, resource) → count, watches excluded.
    by_kind: std::collections::BTreeMap<(String, String), usize>,
}

/// Prints the requests of `after` not in `before`, by verb and resource.
fn print_breakdown(label: &str, before: &Calls, after: &Calls) {
    let mut parts = Vec::new();
    for (k, n) in &after.by_kind {
        let d = n - before.by_kind.get(k).copied().unwrap_or(0);
        if d > 0 {
            parts.push(format!("{} {} {d}", k.0, k.1));
        }
    }
    println!("    {label}: {}", parts.join(", "));
}

/// The operator's calls so far, on the in-process server.
fn operator_calls(server: Option<&cstor_testkit::TestApiServer>) -> Option<Calls> {
    let calls: Vec<_> = server?
        .calls()
        .into_iter()
        .filter(|c| c.component == OPERATOR)
        .collect();
    Some(Calls {
        total: calls.len(),
        reads: calls
            .iter()
            .filter(|c| c.verb == "get" || c.verb == "list")
            .count(),
        watches: calls.iter().filter(|c| c.verb == "watch").count(),
        by_kind: calls
            .iter()
            .filter(|c| c.verb != "watch")
            .fold(Default::default(), |mut m, c| {
                *m.entry((c.verb.clone(), c.resource.clone())).or_default() += 1;
                m
            }),
    })
}

/// The operator running as a process of its own, on a kubeconfig file, with `/metrics` on
/// a loopback port.
struct OperatorProcess {
    child: std::process::Child,
    health: std::net::SocketAddr,
    _kubeconfig: Option<tempfile::NamedTempFile>,
}

impl OperatorProcess {
    fn start(server: Option<&cstor_testkit::TestApiServer>, ns: &str) -> Self {
        let (path, file) = match server {
            Some(srv) => {
                let mut f = tempfile::NamedTempFile::new().expect("kubeconfig file");
                let yaml = format!(
                    "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster: {{server: \"{}\"}}\nusers:\n- name: test\n  user: {{}}\ncontexts:\n- name: test\n  context: {{cluster: test, user: test, namespace: {ns}}}\ncurrent-context: test\n",
                    srv.url()
                );
                std::io::Write::write_all(&mut f, yaml.as_bytes()).expect("kubeconfig written");
                (f.path().to_path_buf(), Some(f))
            }
            None => (
                std::env::var_os("CSTOR_TEST_KUBECONFIG")
                    .expect("a real cluster's kubeconfig")
                    .into(),
                None,
            ),
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let health: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_cvc-operator"))
            .env("KUBECONFIG", &path)
            .env("OPENEBS_NAMESPACE", ns)
            .env("RUST_LOG", "warn")
            .args([
                "--leader-election=false",
                "--health-addr",
                &health.to_string(),
            ])
            .spawn()
            .expect("cvc-operator started");
        Self {
            child,
            health,
            _kubeconfig: file,
        }
    }

    /// `cstor_kube_api_requests_total` by verb, from the operator's `/metrics`.
    async fn requests(&self) -> HashMap<String, f64> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match cstor_testkit::http_get::get(self.health, "/metrics", Duration::from_secs(5))
                .await
            {
                Ok((200, body)) => return parse_requests(&body),
                other if Instant::now() > deadline => {
                    panic!("cvc-operator /metrics not served: {other:?}")
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    fn peak_rss_kib(&self) -> Option<u64> {
        self.status_kib("VmHWM:")
    }

    fn rss_kib(&self) -> Option<u64> {
        self.status_kib("VmRSS:")
    }

    fn status_kib(&self, field: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn parse_requests(metrics: &str) -> HashMap<String, f64> {
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix("cstor_kube_api_requests_total{verb=\""))
        .filter_map(|rest| {
            let (verb, value) = rest.split_once("\"}")?;
            Some((verb.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

/// Requests of `after` minus `before`: (reads, writes), watches excluded.
fn request_delta(before: &HashMap<String, f64>, after: &HashMap<String, f64>) -> (f64, f64) {
    let d = |v: &str| after.get(v).copied().unwrap_or(0.0) - before.get(v).copied().unwrap_or(0.0);
    (
        d("get") + d("list"),
        d("create") + d("update") + d("patch") + d("delete"),
    )
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn main() {
    let n: usize = std::env::var("CVC_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let idle_secs: u64 = std::env::var("CVC_BENCH_IDLE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let as_task = std::env::var("CVC_BENCH_OPERATOR").as_deref() == Ok("task");
    rt.block_on(async move {
        let mut h = Harness::start_without_operator().await;
        let server = h.cluster.server().cloned();
        // The operator as deployed: its own process (or, on request, a task with its own
        // client, so that the in-process server tells its calls apart).
        let process = if as_task {
            match &server {
                Some(srv) => h.start_operator_as(srv.client_as(OPERATOR)),
                None => h.start_operator(),
            }
            None
        } else {
            Some(OperatorProcess::start(server.as_ref(), &h.ns))
        };
        h.create_cspc("bench").await;
        h.create_pools("bench", 0, 6).await;
        let api = h.api::<CStorVolumeConfig>();
        let mut bound_stream =
            std::pin::pin!(watcher(api.clone(), watcher::Config::default()).applied_objects());
        let requests_before = match &process {
            Some(p) => Some(p.requests().await),
            None => None,
        };
        let calls_before = operator_calls(server.as_ref());
        let rss_empty = process.as_ref().and_then(OperatorProcess::peak_rss_kib);
        let start = Instant::now();
        let mut created: HashMap<String, Instant> = HashMap::new();
        for i in 0..n {
            let name = format!("pvc-bench-{i:04}");
            created.insert(name.clone(), Instant::now());
            h.create_cvc(&h.cvc(&name, "bench", 3, "1Gi")).await;
        }
        let mut latencies = Vec::with_capacity(n);
        let mut done: HashMap<String, ()> = HashMap::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
        while done.len() < n {
            let next = tokio::time::timeout_at(deadline, bound_stream.next()).await;
            let Ok(Some(Ok(cvc))) = next else {
                panic!(
                    "only {} of {n} volumes bound before the deadline",
                    done.len()
                );
            };
            let name = cvc.name_any();
            if cvc.status.phase == Some(CStorVolumeConfigPhase::Bound)
                && let Some(t0) = created.get(&name)
                && done.insert(name, ()).is_none()
            {
                latencies.push(t0.elapsed());
            }
        }
        let total = start.elapsed();
        latencies.sort();
        let where_ = if server.is_some() {
            "in-process test API server"
        } else {
            "real API server"
        };
        let how = if as_task { "a task" } else { "a process" };
        println!("cvc-operator bench: {n} volumes (3 replicas each, 6 pools), {where_}, operator as {how}");
        println!("  all Bound in      {:.2?}", total);
        println!("  volumes/s         {:.1}", n as f64 / total.as_secs_f64());
        println!("  time to Bound p50 {:.2?}", percentile(&latencies, 0.50));
        println!("  time to Bound p99 {:.2?}", percentile(&latencies, 0.99));
        let per = |x: f64| x / n as f64;
        let requests_bound = match &process {
            Some(p) => Some(p.requests().await),
            None => None,
        };
        let calls_bound = operator_calls(server.as_ref());
        if let (Some(before), Some(after)) = (&requests_before, &requests_bound) {
            let (reads, writes) = request_delta(before, after);
            println!(
                "  API requests/volume {:.1} until all Bound: {:.1} reads (get, list), {:.1} writes incl. events; watches excluded",
                per(reads + writes),
                per(reads),
                per(writes)
            );
        } else if let (Some(before), Some(after)) = (&calls_before, &calls_bound) {
            println!(
                "  API requests/volume {:.1} until all Bound: {:.1} reads (get, list); watches excluded",
                per((after.total - after.watches - before.total + before.watches) as f64),
                per((after.reads - before.reads) as f64)
            );
            print_breakdown("until Bound", before, after);
        }
        // Idle: once the surroundings settled (the simulated managers' last status writes
        // answered), no request of the operator for 5 s; then the measured window.
        let settle = Instant::now();
        if let Some(p) = &process {
            let mut last = p.requests().await;
            let mut quiet_since = Instant::now();
            while quiet_since.elapsed() < Duration::from_secs(5)
                && settle.elapsed() < Duration::from_secs(180)
            {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let now = p.requests().await;
                if request_delta(&last, &now) != (0.0, 0.0) {
                    quiet_since = Instant::now();
                    last = now;
                }
            }
            println!("  settled           {:.1?} after all Bound", settle.elapsed());
        }
        let requests_bound = match &process {
            Some(p) => Some(p.requests().await),
            None => requests_bound,
        };
        // The measurement itself is this window of idleness.
        tokio::time::sleep(Duration::from_secs(idle_secs)).await;
        let minutes = idle_secs as f64 / 60.0;
        if let (Some(p), Some(after)) = (&process, &requests_bound) {
            let (reads, writes) = request_delta(after, &p.requests().await);
            println!(
                "  idle requests     {:.2} per volume per minute (watches excluded; {idle_secs} s window)",
                per(reads + writes) / minutes
            );
        } else if let (Some(after), Some(idle)) = (calls_bound, operator_calls(server.as_ref())) {
            println!(
                "  idle requests     {:.2} per volume per minute (watches excluded; {idle_secs} s window)",
                per((idle.total - idle.watches - (after.total - after.watches)) as f64) / minutes
            );
            print_breakdown("idle", &after, &idle);
        }
        if let Some(kib) = process.as_ref().and_then(OperatorProcess::peak_rss_kib) {
            println!(
                "  cvc-operator peak RSS (VmHWM) {:.1} MiB ({:.1} MiB before the first volume, {:.1} MiB resident when idle)",
                kib as f64 / 1024.0,
                rss_empty.unwrap_or(0) as f64 / 1024.0,
                process.as_ref().and_then(OperatorProcess::rss_kib).unwrap_or(0) as f64 / 1024.0
            );
        }
        drop(process);
        // What the operator told users, by reason (each event is one write).
        let events = h
            .api::<k8s_openapi::api::events::v1::Event>()
            .list(&Default::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        let mut reasons: std::collections::BTreeMap<String, usize> = Default::default();
        for e in events {
            *reasons.entry(e.reason.unwrap_or_default()).or_default() += 1;
        }
        println!("  events by reason  {reasons:?}");
        h.stop().await;
    });
}
