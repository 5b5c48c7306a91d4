//! Leader election on a `coordination.k8s.io/v1` Lease (through the maintained
//! `kube-lease-manager` crate), so a component can run with several replicas and only one of
//! them acts: the others wait, ready to take over within the lease duration.
//!
//! [`run_as_leader`] waits for the lease, runs the work while it is held, and ends it when the
//! lease is lost (the caller then exits with an error and is restarted as a follower, as
//! client-go's leader election does) or on shutdown (the lease is released; a follower looks
//! again when the lease it saw would have expired, so it takes over within one lease duration).

use std::{future::Future, time::Duration};

use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;

/// The leader-election flags every HA component takes (upstream's manifests write
/// `--leader-election=false`; `--leader-election` and `--leader-election=true` switch it on).
#[derive(Clone, Debug, Default, clap::Args)]
pub struct LeaderArgs {
    /// Run as one of several replicas: only the holder of the component's Lease acts.
    #[arg(
        long,
        env = "LEADER_ELECTION",
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        default_value_t = false,
        default_missing_value = "true"
    )]
    pub leader_election: bool,
    /// Namespace of the Lease (default: the component's namespace).
    #[arg(long, env = "LEADER_ELECTION_NAMESPACE", default_value = "")]
    pub leader_election_namespace: String,
}

impl LeaderArgs {
    /// The Lease `name` when leader election is on: in `--leader-election-namespace`, else in
    /// `namespace`, else in `openebs`.
    pub fn config(&self, name: &str, namespace: &str) -> Option<LeaderConfig> {
        let ns = [self.leader_election_namespace.as_str(), namespace]
            .into_iter()
            .find(|n| !n.is_empty())
            .unwrap_or("openebs");
        self.leader_election.then(|| LeaderConfig::new(name, ns))
    }
}

/// Where the lease lives and who this replica is.
#[derive(Clone, Debug)]
pub struct LeaderConfig {
    /// Lease name (one per component, e.g. `cvc-operator`).
    pub lease_name: String,
    /// Namespace of the Lease.
    pub namespace: String,
    /// This replica's identity (its pod name; unique among the replicas).
    pub identity: String,
    /// How long a lease stays valid after its last renewal.
    pub duration: Duration,
    /// How long before expiry the holder renews.
    pub grace: Duration,
}

impl LeaderConfig {
    /// A lease `lease_name` in `namespace`, held as this pod (`POD_NAME`, else the host name).
    pub fn new(lease_name: impl Into<String>, namespace: impl Into<String>) -> Self {
        let identity = std::env::var(crate::constants::env::POD_NAME)
            .ok()
            .filter(|s| !s.is_empty())
            .or_else(|| {
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .ok()
                    .map(|h| h.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned());
        Self {
            lease_name: lease_name.into(),
            namespace: namespace.into(),
            identity: format!("{identity}-{}", std::process::id()),
            duration: Duration::from_secs(15),
            grace: Duration::from_secs(5),
        }
    }
}

/// How leading ended.
#[derive(Debug, PartialEq, Eq)]
pub enum LeaderOutcome {
    /// Shutdown came (before or while leading); the lease, if held, was released.
    Shutdown,
    /// The lease was lost while leading: the work was stopped.
    Lost,
}

/// Waits for the lease, then runs `work(stop)` while it is held. `stop` completes when the
/// lease is lost or `shutdown` completes; `work` must then wind down and return.
pub async fn run_as_leader<W, Fut>(
    client: kube::Client,
    config: &LeaderConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
    work: W,
) -> Result<LeaderOutcome, String>
where
    W: FnOnce(std::pin::Pin<Box<dyn Future<Output = ()> + Send>>) -> Fut,
    Fut: Future<Output = ()>,
{
    let manager = manager(client, config).await?;
    let (mut leading, task) = manager.watch().await;
    let (stop_tx, stop_rx) = watch::channel(false);
    // Shutdown flips `stop`; it is also what ends the wait for the lease.
    let shutdown_task = tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let outcome = wait_and_lead(&mut leading, stop_rx, config, work).await;
    shutdown_task.abort();
    release(leading, task, config).await;
    Ok(outcome)
}

/// Runs `f` while holding the lease, then releases it: a mutex across replicas for one-off
/// work (the webhook's certificate bootstrap), waiting for the holder before it.
pub async fn exclusively<T>(
    client: kube::Client,
    config: &LeaderConfig,
    f: impl Future<Output = T>,
) -> Result<T, String> {
    let manager = manager(client, config).await?;
    let (mut leading, task) = manager.watch().await;
    tracing::info!(lease = %config.lease_name, identity = %config.identity, "waiting for the lease");
    leading.wait_for(|l| *l).await.map_err(|_| {
        format!(
            "leader election: the lease manager of {} stopped",
            config.lease_name
        )
    })?;
    let out = f.await;
    release(leading, task, config).await;
    Ok(out)
}

type LeaseTask = tokio::task::JoinHandle<
    Result<kube_lease_manager::LeaseManager, kube_lease_manager::LeaseManagerError>,
>;

async fn manager(
    client: kube::Client,
    config: &LeaderConfig,
) -> Result<kube_lease_manager::LeaseManager, String> {
    let duration = config.duration.as_secs().max(2);
    LeaseManagerBuilder::new(client, &config.lease_name)
        .with_namespace(&config.namespace)
        .with_identity(&config.identity)
        .with_duration(duration)
        .with_grace(config.grace.as_secs().clamp(1, duration - 1))
        .build()
        .await
        .map_err(|e| {
            format!(
                "leader election: cannot use Lease {}/{}: {e}",
                config.namespace, config.lease_name
            )
        })
}

/// Closing the channel makes the lease manager release the lease and stop.
async fn release(leading: watch::Receiver<bool>, task: LeaseTask, config: &LeaderConfig) {
    drop(leading);
    match tokio::time::timeout(Duration::from_secs(10), task).await {
        Ok(Ok(Ok(_))) => tracing::info!(lease = %config.lease_name, "lease released"),
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "releasing the lease failed"),
        Ok(Err(e)) => tracing::warn!(error = %e, "lease task failed"),
        Err(_) => tracing::warn!("releasing the lease timed out; it expires on its own"),
    }
}

async fn wait_and_lead<W, Fut>(
    leading: &mut watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
    config: &LeaderConfig,
    work: W,
) -> LeaderOutcome
where
    W: FnOnce(std::pin::Pin<Box<dyn Future<Output = ()> + Send>>) -> Fut,
    Fut: Future<Output = ()>,
{
    tracing::info!(lease = %config.lease_name, identity = %config.identity, "waiting for the leader lease");
    tokio::select! {
        r = leading.wait_for(|l| *l) => if r.is_err() { return LeaderOutcome::Lost },
        _ = stop.wait_for(|s| *s) => return LeaderOutcome::Shutdown,
    }
    tracing::info!(lease = %config.lease_name, "leading");
    let mut lost = leading.clone();
    let mut stop_seen = stop.clone();
    let stop_fut = Box::pin(async move {
        tokio::select! {
            _ = lost.wait_for(|l| !*l) => {},
            _ = stop_seen.wait_for(|s| *s) => {},
        }
    });
    work(stop_fut).await;
    if *stop.borrow_and_update() {
        LeaderOutcome::Shutdown
    } else {
        tracing::warn!(lease = %config.lease_name, "lost the leader lease");
        LeaderOutcome::Lost
    }
}
