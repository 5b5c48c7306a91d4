//! Shared harness of the cvc-operator scenario tests and benchmark: a [`TestCluster`], the
//! operator running as a task that can be killed and restarted, and a simulation of what the
//! rest of the cluster writes (ClusterIP allocation on the in-process server, the pool managers
//! removing CVR finalizers and reporting replicas, the volume manager reporting CV status).
#![allow(dead_code)]

use std::{sync::Arc, time::Duration};

use cstor_api::{
    constants::{annotation, finalizer, label},
    cstor::{
        CStorPoolCluster, CStorPoolInstance, CStorVolume, CStorVolumeConfig,
        CStorVolumeConfigPhase, CStorVolumeReplica, from_value,
    },
};
use cstor_operators::cvc_operator::{self, Config, Context};
use cstor_testkit::{TestCluster, wait_until};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::{
    Api, Client, ResourceExt,
    api::{ListParams, Patch, PatchParams, PostParams},
    runtime::{WatchStreamExt, watcher},
};
use serde_json::json;
use tokio::task::JoinHandle;

/// Deadline of every wait in the scenarios.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Annotation that makes the simulated pool and volume managers leave an object's status alone,
/// so a test can write an unhealthy status itself.
pub const HOLD_STATUS: &str = "cstor-test.openebs.io/hold-status";

fn held<K: ResourceExt>(obj: &K) -> bool {
    obj.annotations().contains_key(HOLD_STATUS)
}

pub struct Harness {
    pub cluster: TestCluster,
    pub client: Client,
    pub ns: String,
    pub ctx: Arc<Context>,
    controller: Option<JoinHandle<()>>,
    sim: Vec<JoinHandle<()>>,
}

impl Harness {
    /// Cluster + simulated surroundings + a running operator.
    pub async fn start() -> Self {
        let mut h = Self::start_without_operator().await;
        h.start_operator();
        h
    }

    pub async fn start_without_operator() -> Self {
        let cluster = TestCluster::start().await;
        let client = cluster.client();
        let ns = cluster.namespace().to_owned();
        let ctx = Self::context(&client, &ns);
        let sim = simulate(client.clone(), ns.clone(), !cluster.is_real());
        Self {
            cluster,
            client,
            ns,
            ctx,
            controller: None,
            sim,
        }
    }

    fn context(client: &Client, ns: &str) -> Arc<Context> {
        let mut config = Config::new(ns);
        config.retry = Duration::from_millis(300);
        config.wait_retry = Duration::from_millis(100);
        Context::new(client.clone(), config)
    }

    /// Starts the operator with a fresh context (as a restarted process would).
    pub fn start_operator(&mut self) {
        self.start_operator_as(self.client.clone());
    }

    /// [`Self::start_operator`] with its own `client` (to tell its API calls apart).
    pub fn start_operator_as(&mut self, client: Client) {
        assert!(self.controller.is_none(), "operator already running");
        self.ctx = Self::context(&client, &self.ns);
        let ctx = self.ctx.clone();
        self.controller = Some(tokio::spawn(cvc_operator::run(ctx, std::future::pending())));
    }

    /// Kills the operator task wherever it is.
    pub async fn kill_operator(&mut self) {
        if let Some(h) = self.controller.take() {
            h.abort();
            let _ = h.await;
        }
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    pub async fn create_cspc(&self, name: &str) {
        let cspc: CStorPoolCluster = from_value(json!({
            "apiVersion": "cstor.openebs.io/v1", "kind": "CStorPoolCluster",
            "metadata": {"name": name, "namespace": self.ns},
            "spec": {"pools": []}
        }))
        .unwrap();
        self.api::<CStorPoolCluster>()
            .create(&PostParams::default(), &cspc)
            .await
            .unwrap();
    }

    /// Creates `n` ONLINE CSPIs (with capacity) of `cspc`, named `<cspc>-p<i>` from `first`.
    pub async fn create_pools(&self, cspc: &str, first: usize, n: usize) -> Vec<String> {
        let mut names = Vec::new();
        for i in first..first + n {
            let name = format!("{cspc}-p{i}");
            let host = format!("{}-node{i}", self.ns);
            let cspi: CStorPoolInstance = from_value(json!({
                "apiVersion": "cstor.openebs.io/v1", "kind": "CStorPoolInstance",
                "metadata": {"name": name, "namespace": self.ns, "labels": {
                    label::CSTOR_POOL_CLUSTER: cspc, label::HOSTNAME: host}},
                "spec": {"hostName": host, "nodeSelector": {label::HOSTNAME: host}, "dataRaidGroups": []},
                "status": {"phase": "ONLINE", "readOnly": false, "provisionedReplicas": 0, "healthyReplicas": 0,
                    "capacity": {"used": "0", "free": "100Gi", "total": "100Gi", "zfs": {"logicalUsed": "0"}}}
            }))
            .unwrap();
            self.api::<CStorPoolInstance>()
                .create(&PostParams::default(), &cspi)
                .await
                .unwrap();
            names.push(name);
        }
        names
    }

    /// Sets a pool's phase.
    pub async fn set_pool_phase(&self, pool: &str, phase: &str) {
        self.api::<CStorPoolInstance>()
            .patch(
                pool,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"phase": phase}})),
            )
            .await
            .unwrap();
    }

    /// A CVC as the CSI controller writes it.
    pub fn cvc(&self, name: &str, cspc: &str, replicas: i64, size: &str) -> CStorVolumeConfig {
        from_value(json!({
            "apiVersion": "cstor.openebs.io/v1", "kind": "CStorVolumeConfig",
            "metadata": {"name": name, "namespace": self.ns,
                "labels": {label::CSTOR_POOL_CLUSTER: cspc},
                "annotations": {annotation::VOLUME_ID: name, annotation::VOLUME_POLICY: "",
                    annotation::PERSISTENT_VOLUME_CLAIM: format!("claim-{name}")},
                "finalizers": [finalizer::CVC]},
            "spec": {"capacity": {"storage": size}, "provision": {"capacity": {"storage": size}, "replicaCount": replicas}, "policy": {}},
            "publish": {"nodeId": ""},
            "status": {"phase": "Pending"},
            "versionDetails": {"status": {"dependentsUpgraded": true}}
        }))
        .unwrap()
    }

    pub async fn create_cvc(&self, cvc: &CStorVolumeConfig) {
        self.api::<CStorVolumeConfig>()
            .create(&PostParams::default(), cvc)
            .await
            .unwrap();
    }

    /// Waits until the CVC satisfies `pred`; returns it.
    pub async fn wait_cvc(
        &self,
        name: &str,
        what: &str,
        pred: impl Fn(&CStorVolumeConfig) -> bool,
    ) -> CStorVolumeConfig {
        let api = self.api::<CStorVolumeConfig>();
        let pred = &pred;
        let res = wait_until(&format!("cvc {name}: {what}"), DEADLINE, || {
            let api = api.clone();
            async move { api.get_opt(name).await.ok().flatten().filter(|c| pred(c)) }
        })
        .await;
        match res {
            Ok(c) => c,
            Err(e) => {
                let now = api.get_opt(name).await;
                panic!("{e}; cvc now: {now:#?}")
            }
        }
    }

    pub async fn wait_bound(&self, name: &str) -> CStorVolumeConfig {
        self.wait_cvc(name, "Bound", |c| {
            c.status.phase == Some(CStorVolumeConfigPhase::Bound)
        })
        .await
    }

    /// CVRs of a volume.
    pub async fn cvrs(&self, pv: &str) -> Vec<CStorVolumeReplica> {
        self.api::<CStorVolumeReplica>()
            .list(&ListParams::default().labels(&format!("{}={pv}", label::PERSISTENT_VOLUME)))
            .await
            .unwrap()
            .items
    }

    /// Pools of the CVRs of a volume (sorted, duplicates kept so a test can detect them).
    pub async fn cvr_pools(&self, pv: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .cvrs(pv)
            .await
            .iter()
            .filter_map(|c| c.labels().get(label::CSPI_NAME).cloned())
            .collect();
        v.sort();
        v
    }

    pub async fn stop(mut self) {
        self.kill_operator().await;
        for s in self.sim.drain(..) {
            s.abort();
        }
        self.cluster.cleanup().await.unwrap();
    }
}

/// Runs the simulated surroundings: returns the task handles.
pub fn simulate(client: Client, ns: String, assign_cluster_ips: bool) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    if assign_cluster_ips {
        let svcs: Api<Service> = Api::namespaced(client.clone(), &ns);
        tasks.push(tokio::spawn(async move {
            let mut next: u32 = 1;
            let mut stream =
                std::pin::pin!(watcher(svcs.clone(), watcher::Config::default()).applied_objects());
            while let Some(Ok(svc)) = stream.next().await {
                let has_ip = svc
                    .spec
                    .as_ref()
                    .and_then(|s| s.cluster_ip.as_deref())
                    .is_some_and(|ip| !ip.is_empty());
                if !has_ip {
                    let ip = format!("10.96.{}.{}", next / 250, next % 250 + 1);
                    next += 1;
                    let _ = svcs
                        .patch(
                            &svc.name_any(),
                            &PatchParams::default(),
                            &Patch::Merge(json!({"spec": {"clusterIP": ip}})),
                        )
                        .await;
                }
            }
        }));
    }
    // Pool managers: report replicas Healthy (replica id from the uid), remove the finalizer of
    // deleted CVRs.
    let cvrs: Api<CStorVolumeReplica> = Api::namespaced(client.clone(), &ns);
    tasks.push(tokio::spawn(async move {
        let mut stream =
            std::pin::pin!(watcher(cvrs.clone(), watcher::Config::default()).applied_objects());
        while let Some(Ok(cvr)) = stream.next().await {
            let name = cvr.name_any();
            if cvr.metadata.deletion_timestamp.is_some() {
                if !cvr.finalizers().is_empty() {
                    let _ = cvrs
                        .patch(
                            &name,
                            &PatchParams::default(),
                            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
                        )
                        .await;
                }
                continue;
            }
            if held(&cvr) {
                continue;
            }
            let phase = cvr.status.as_ref().and_then(|s| s.phase.clone());
            if phase.as_ref().is_none_or(|p| p.as_str() != "Healthy") {
                let id = cvr
                    .spec
                    .replica_id
                    .clone()
                    .filter(|i| !i.is_empty())
                    .unwrap_or_else(|| {
                        cstor_api::naming::replica_id_from_uid(
                            cvr.metadata.uid.as_deref().unwrap_or_default(),
                        )
                    });
                let _ = cvrs
                    .patch(
                        &name,
                        &PatchParams::default(),
                        &Patch::Merge(
                            json!({"spec": {"replicaid": id}, "status": {"phase": "Healthy"}}),
                        ),
                    )
                    .await;
            }
        }
    }));
    // Volume manager: CV status follows the spec (phase Healthy, capacity, known replicas).
    let cvs: Api<CStorVolume> = Api::namespaced(client, &ns);
    tasks.push(tokio::spawn(async move {
        let mut stream =
            std::pin::pin!(watcher(cvs.clone(), watcher::Config::default()).applied_objects());
        while let Some(Ok(cv)) = stream.next().await {
            if cv.metadata.deletion_timestamp.is_some() || held(&cv) {
                continue;
            }
            let st = cv.status.clone().unwrap_or_default();
            let healthy = st.phase.as_ref().is_some_and(|p| p.as_str() == "Healthy");
            if !healthy
                || st.capacity != cv.spec.capacity
                || st.replica_details != cv.spec.replica_details
            {
                // A full replace (not a merge patch): removed known replicas must disappear.
                let mut cv = cv;
                let st = cv.status.get_or_insert_with(Default::default);
                st.phase = Some("Healthy".into());
                st.capacity = cv.spec.capacity.clone();
                st.replica_details = cv.spec.replica_details.clone();
                let _ = cvs
                    .replace(&cv.name_any(), &PostParams::default(), &cv)
                    .await;
            }
        }
    }));
    tasks
}
