//! Benchmark: N CVCs (default 200, env `CVC_BENCH_N`) from Pending to Bound against the
//! in-process API server (or `CSTOR_TEST_KUBECONFIG`), pool and volume managers simulated.
//! Prints volumes/s, p50/p99 time to Bound and the operator's API writes per volume; on the
//! in-process server (which records every call by component) also its reads per volume, and
//! its requests per idle volume per minute once all are Bound (window `CVC_BENCH_IDLE_SECS`,
//! default 60 s: two resync periods).

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
    })
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
    rt.block_on(async move {
        let mut h = Harness::start_without_operator().await;
        // The operator's own client, so that the in-process server tells its calls apart.
        let server = h.cluster.server().cloned();
        match &server {
            Some(srv) => h.start_operator_as(srv.client_as(OPERATOR)),
            None => h.start_operator(),
        }
        h.create_cspc("bench").await;
        h.create_pools("bench", 0, 6).await;
        let api = h.api::<CStorVolumeConfig>();
        let mut bound_stream =
            std::pin::pin!(watcher(api.clone(), watcher::Config::default()).applied_objects());
        let writes_before = h.ctx.api_writes();
        let calls_before = operator_calls(server.as_ref());
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
        let writes = h.ctx.api_writes() - writes_before;
        let calls_bound = operator_calls(server.as_ref());
        latencies.sort();
        println!("cvc-operator bench: {n} volumes (3 replicas each, 6 pools)");
        println!("  all Bound in      {:.2?}", total);
        println!("  volumes/s         {:.1}", n as f64 / total.as_secs_f64());
        println!("  time to Bound p50 {:.2?}", percentile(&latencies, 0.50));
        println!("  time to Bound p99 {:.2?}", percentile(&latencies, 0.99));
        println!(
            "  API writes/volume {:.1} (operator writes incl. events, until all Bound)",
            writes as f64 / n as f64
        );
        if let (Some(before), Some(after)) = (calls_before, calls_bound) {
            println!(
                "  API reads/volume  {:.1} (get, list; watches excluded), requests {:.1}, until all Bound",
                (after.reads - before.reads) as f64 / n as f64,
                (after.total - before.total) as f64 / n as f64
            );
            // The measurement itself is this window of idleness.
            tokio::time::sleep(Duration::from_secs(idle_secs)).await;
            if let Some(idle) = operator_calls(server.as_ref()) {
                println!(
                    "  idle requests     {:.2} per volume per minute (watches excluded; {idle_secs} s window)",
                    (idle.total - idle.watches - (after.total - after.watches)) as f64
                        / n as f64
                        / (idle_secs as f64 / 60.0)
                );
            }
        }
        h.stop().await;
    });
}
