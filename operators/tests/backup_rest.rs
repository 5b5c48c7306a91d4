//! cvc-operator's backup/restore REST server (`cvc_operator::rest`), driven over plain HTTP as
//! the Velero plugin drives it, on the in-process API server, with a fake target snapshot
//! service recording the SNAPCREATE/SNAPDESTROY calls. The pool managers are simulated by
//! writing the CStorBackup / CStorRestore / CStorCompletedBackup fields they would write.

mod support;

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use cstor_api::{
    cstor::{
        CStorBackup, CStorBackupStatus, CStorCompletedBackup, CStorPoolInstance, CStorRestore,
        CStorVolume, CStorVolumeConfig, CStorVolumeReplica, from_value,
    },
    proto::snapshot::v1alpha1::{
        VolumeSnapCreateRequest, VolumeSnapCreateResponse, VolumeSnapDeleteRequest,
        VolumeSnapDeleteResponse, run_snap_command_server::RunSnapCommand,
    },
};
use cstor_testkit::TestCluster;
use kube::{
    Api, Client,
    api::{ListParams, PostParams},
};
use serde_json::{Value, json};
use tonic::{Request, Response, Status};

const PV: &str = "pvc-1";
const APP_NS_SUFFIX: &str = "app";

/// The snapshot commands the fake target received: (`create`|`delete`, volume, snapshot).
#[derive(Clone, Default)]
struct FakeTarget(Arc<Mutex<Vec<(String, String, String)>>>);

impl FakeTarget {
    fn calls(&self) -> Vec<(String, String, String)> {
        self.0.lock().unwrap().clone()
    }
    fn record(&self, op: &str, volume: &str, snap: &str) -> Vec<u8> {
        self.0
            .lock()
            .unwrap()
            .push((op.into(), volume.into(), snap.into()));
        if snap.contains("refuse") {
            br#"{"response":"ERR snapshot refused"}"#.to_vec()
        } else {
            br#"{"response":"OK\r\n"}"#.to_vec()
        }
    }
}

#[tonic::async_trait]
impl RunSnapCommand for FakeTarget {
    async fn run_volume_snap_create_command(
        &self,
        r: Request<VolumeSnapCreateRequest>,
    ) -> Result<Response<VolumeSnapCreateResponse>, Status> {
        let r = r.into_inner();
        let status = self.record("create", &r.volume, &r.snapname);
        Ok(Response::new(VolumeSnapCreateResponse {
            version: 0,
            status,
        }))
    }
    async fn run_volume_snap_delete_command(
        &self,
        r: Request<VolumeSnapDeleteRequest>,
    ) -> Result<Response<VolumeSnapDeleteResponse>, Status> {
        let r = r.into_inner();
        let status = self.record("delete", &r.volume, &r.snapname);
        Ok(Response::new(VolumeSnapDeleteResponse {
            version: 0,
            status,
        }))
    }
}

struct Setup {
    _cluster: TestCluster,
    client: Client,
    ns: String,
    app_ns: String,
    addr: SocketAddr,
    target: FakeTarget,
}

impl Setup {
    /// Cluster, fake target, REST server on 127.0.0.1:0, a CSPC of two pools, volume `PV`
    /// (CV with target IP 127.0.0.1) with one replica on each pool.
    async fn start() -> Self {
        let cluster = TestCluster::start().await;
        let client = cluster.client();
        let ns = cluster.namespace().to_owned();
        let target = FakeTarget::default();
        let addr = support::rest_server(&client, &ns, target.clone()).await;
        let s = Self {
            app_ns: format!("{ns}-{APP_NS_SUFFIX}"),
            _cluster: cluster,
            client,
            ns,
            addr,
            target,
        };
        s.objects().await;
        s
    }

    async fn create<K>(&self, value: Value)
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + serde::de::DeserializeOwned
            + serde::Serialize
            + Clone
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        let obj: K = serde_json::from_value(value).unwrap();
        Api::<K>::namespaced(self.client.clone(), &self.ns)
            .create(&PostParams::default(), &obj)
            .await
            .unwrap();
    }

    async fn objects(&self) {
        let ns = &self.ns;
        let app: k8s_openapi::api::core::v1::Namespace =
            serde_json::from_value(json!({"metadata": {"name": self.app_ns}})).unwrap();
        Api::all(self.client.clone())
            .create(&PostParams::default(), &app)
            .await
            .unwrap();
        for i in 0..2 {
            self.create::<CStorPoolInstance>(json!({
                "apiVersion": "cstor.openebs.io/v1", "kind": "CStorPoolInstance",
                "metadata": {"name": format!("cspc-a-p{i}"), "namespace": ns,
                    "labels": {"openebs.io/cstor-pool-cluster": "cspc-a"}},
                "spec": {"hostName": "h", "nodeSelector": {}, "dataRaidGroups": []},
                "versionDetails": {"status": {"current": "3.6.0"}}
            }))
            .await;
            self.create::<CStorVolumeReplica>(json!({
                "apiVersion": "cstor.openebs.io/v1", "kind": "CStorVolumeReplica",
                "metadata": {"name": format!("{PV}-cspc-a-p{i}"), "namespace": ns, "labels": {
                    "openebs.io/persistent-volume": PV,
                    "cstorpoolinstance.openebs.io/name": format!("cspc-a-p{i}"),
                    "cstorpoolinstance.openebs.io/uid": format!("uid-{i}")}},
                "spec": {"targetIP": "10.0.0.9", "capacity": "1Gi", "replicaid": format!("r{i}")},
                "status": {"phase": if i == 0 { "Offline" } else { "Healthy" }}
            }))
            .await;
        }
        self.create::<CStorVolume>(json!({
            "apiVersion": "cstor.openebs.io/v1", "kind": "CStorVolume",
            "metadata": {"name": PV, "namespace": ns},
            "spec": {"targetIP": "127.0.0.1", "targetPortal": "10.0.0.9:3260",
                "iqn": format!("iqn.2016-09.com.openebs.cstor:{PV}"), "capacity": "1Gi",
                "targetPort": "3260", "replicationFactor": 2, "consistencyFactor": 2}
        }))
        .await;
    }

    /// One request as the plugin sends it; returns status and body.
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, String) {
        let tcp = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                .await
                .unwrap();
        tokio::spawn(conn);
        let bytes = body.map(|b| b.to_string()).unwrap_or_default();
        let req = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "cvc-operator-service")
            .header("content-type", "application/json")
            .body(axum::body::Body::from(bytes))
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        let status = resp.status().as_u16();
        let body = axum::body::to_bytes(axum::body::Body::new(resp.into_body()), usize::MAX)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    fn backup_body(&self, schedule: &str, snap: &str) -> Value {
        json!({
            "apiVersion": "openebs.io/v1alpha1", "kind": "CStorBackup",
            "metadata": {"namespace": self.app_ns},
            "spec": {"backupName": schedule, "volumeName": PV, "snapName": snap,
                "prevSnapName": "", "backupDest": "10.1.1.1:9001", "localSnap": false},
            "status": ""
        })
    }

    fn backups(&self) -> Api<CStorBackup> {
        Api::namespaced(self.client.clone(), &self.app_ns)
    }

    fn records(&self) -> Api<CStorCompletedBackup> {
        Api::namespaced(self.client.clone(), &self.app_ns)
    }

    fn restores(&self) -> Api<CStorRestore> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// What the chosen pool manager writes after a successful send.
    async fn pool_sent(&self, schedule: &str, snap: &str) {
        let name = format!("{snap}-{PV}");
        let mut b = self.backups().get(&name).await.unwrap();
        b.status = Some(CStorBackupStatus::Done);
        self.backups()
            .replace(&name, &PostParams::default(), &b)
            .await
            .unwrap();
        let rec = format!("{schedule}-{PV}");
        let mut r = self.records().get(&rec).await.unwrap();
        r.spec.second_last_snap_name = r.spec.last_snap_name.take();
        r.spec.last_snap_name = Some(snap.to_owned());
        self.records()
            .replace(&rec, &PostParams::default(), &r)
            .await
            .unwrap();
    }

    async fn count_objects(&self) -> (usize, usize, usize) {
        let lp = ListParams::default();
        (
            self.backups().list(&lp).await.unwrap().items.len(),
            self.records().list(&lp).await.unwrap().items.len(),
            self.restores().list(&lp).await.unwrap().items.len(),
        )
    }
}

fn status_of(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap();
    v["status"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn scheduled_backups_are_incremental_and_cleaned_up() {
    let s = Setup::start().await;
    let (s1, s2, s3) = (
        "sch-20240101000000",
        "sch-20240102000000",
        "sch-20240103000000",
    );
    // 1st backup: snapshot taken, CStorBackup Pending on the Healthy replica's pool, empty record.
    assert_eq!(
        s.call("POST", "/latest/backups/", Some(s.backup_body("sch", s1)))
            .await,
        (200, "\"\"".into())
    );
    assert_eq!(
        s.target.calls(),
        vec![("create".into(), PV.into(), s1.into())]
    );
    let b1 = s.backups().get(&format!("{s1}-{PV}")).await.unwrap();
    assert_eq!(b1.status, Some(CStorBackupStatus::Pending));
    assert_eq!(b1.spec.prev_snap_name.as_deref(), Some(""));
    assert_eq!(b1.spec.backup_dest.as_deref(), Some("10.1.1.1:9001"));
    let labels = b1.metadata.labels.clone().unwrap();
    assert_eq!(labels["cstorpoolinstance.openebs.io/name"], "cspc-a-p1");
    assert_eq!(labels["cstorpoolinstance.openebs.io/uid"], "uid-1");
    assert_eq!(labels["openebs.io/persistent-volume"], PV);
    assert_eq!(labels["openebs.io/backup"], "sch");
    assert_eq!(labels.len(), 4);
    let rec = s.records().get(&format!("sch-{PV}")).await.unwrap();
    assert_eq!(rec.spec.last_snap_name, None);
    assert_eq!(rec.metadata.labels.unwrap(), labels);

    s.pool_sent("sch", s1).await;
    let (code, body) = s
        .call("GET", "/latest/backups/", Some(s.backup_body("sch", s1)))
        .await;
    assert_eq!((code, status_of(&body)), (200, "Done".to_owned()));

    // 2nd backup: incremental from the 1st; the plugin's clean-up removes the 1st.
    assert_eq!(
        s.call("POST", "/latest/backups/", Some(s.backup_body("sch", s2)))
            .await
            .0,
        200
    );
    let b2 = s.backups().get(&format!("{s2}-{PV}")).await.unwrap();
    assert_eq!(b2.spec.prev_snap_name.as_deref(), Some(s1));
    s.pool_sent("sch", s2).await;
    let (_, body) = s
        .call("GET", "/latest/backups/", Some(s.backup_body("sch", s2)))
        .await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["spec"]["prevSnapName"], s1);
    let del = format!(
        "/latest/backups/{s1}?volume={PV}&namespace={}&schedule=sch",
        s.app_ns
    );
    assert_eq!(s.call("DELETE", &del, None).await, (200, "\"\"".into()));
    assert!(
        s.backups()
            .get_opt(&format!("{s1}-{PV}"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.records()
            .get_opt(&format!("sch-{PV}"))
            .await
            .unwrap()
            .is_some(),
        "record kept"
    );
    assert_eq!(
        s.target.calls().last().unwrap(),
        &("delete".into(), PV.into(), s1.into())
    );

    // 3rd backup: the pool pod is gone, so GET infers Failed from the record and persists it.
    assert_eq!(
        s.call("POST", "/latest/backups/", Some(s.backup_body("sch", s3)))
            .await
            .0,
        200
    );
    assert_eq!(
        s.backups()
            .get(&format!("{s3}-{PV}"))
            .await
            .unwrap()
            .spec
            .prev_snap_name
            .as_deref(),
        Some(s2)
    );
    let (_, body) = s
        .call("GET", "/latest/backups/", Some(s.backup_body("sch", s3)))
        .await;
    assert_eq!(status_of(&body), "Failed");
    let stored = s.backups().get(&format!("{s3}-{PV}")).await.unwrap();
    assert_eq!(stored.status, Some(CStorBackupStatus::Failed));
    let del3 = format!(
        "/latest/backups/{s3}?volume={PV}&namespace={}&schedule=sch",
        s.app_ns
    );
    assert_eq!(s.call("DELETE", &del3, None).await.0, 200);
    assert!(
        s.records()
            .get_opt(&format!("sch-{PV}"))
            .await
            .unwrap()
            .is_some()
    );

    // Deleting the newest backup of the schedule drops the record: the next backup is full.
    let del2 = format!(
        "/latest/backups/{s2}?volume={PV}&namespace={}&schedule=sch",
        s.app_ns
    );
    assert_eq!(s.call("DELETE", &del2, None).await, (200, "\"\"".into()));
    assert!(
        s.records()
            .get_opt(&format!("sch-{PV}"))
            .await
            .unwrap()
            .is_none()
    );
    // Already deleted: 200, and no snapshot call.
    let calls = s.target.calls().len();
    assert_eq!(s.call("DELETE", &del2, None).await, (200, "\"\"".into()));
    assert_eq!(s.target.calls().len(), calls);
    assert_eq!(s.count_objects().await, (0, 0, 0));

    // A non-scheduled backup: its clean-up deletes the record too (last == snap).
    assert_eq!(
        s.call(
            "POST",
            "/latest/backups/",
            Some(s.backup_body("one", "one"))
        )
        .await
        .0,
        200
    );
    s.pool_sent("one", "one").await;
    let del = format!(
        "/latest/backups/one?volume={PV}&namespace={}&schedule=one",
        s.app_ns
    );
    assert_eq!(s.call("DELETE", &del, None).await.0, 200);
    assert_eq!(s.count_objects().await, (0, 0, 0));
}

#[tokio::test]
async fn local_snapshot_creates_no_object() {
    let s = Setup::start().await;
    let mut body = s.backup_body("loc", "loc");
    body["spec"]["localSnap"] = json!(true);
    body["spec"]["backupDest"] = json!("");
    assert_eq!(
        s.call("POST", "/latest/backups/", Some(body)).await,
        (200, "\"\"".into())
    );
    assert_eq!(
        s.target.calls(),
        vec![("create".into(), PV.into(), "loc".into())]
    );
    assert_eq!(s.count_objects().await, (0, 0, 0));
    // Velero deleting it: no CStorBackup, so "already deleted" and the snapshot stays (as
    // upstream). `?pretty` indents and ends the value with a newline.
    let del = format!(
        "/latest/backups/loc?volume={PV}&namespace={}&schedule=loc&pretty",
        s.app_ns
    );
    assert_eq!(s.call("DELETE", &del, None).await, (200, "\"\"\n".into()));
    assert_eq!(s.target.calls().len(), 1);
}

#[tokio::test]
async fn bad_backup_requests_get_upstreams_errors_and_create_nothing() {
    let s = Setup::start().await;
    let with = |f: &dyn Fn(&mut Value)| {
        let mut b = s.backup_body("sch", "sch-1");
        f(&mut b);
        b
    };
    let cases: Vec<(&str, Value, u16, String)> = vec![
        (
            "POST",
            with(&|b| b["spec"]["backupName"] = json!("")),
            400,
            "Failed to create backup: missing backup name ".into(),
        ),
        (
            "POST",
            with(&|b| b["metadata"] = json!({})),
            400,
            "Failed to create backup 'sch': missing namespace".into(),
        ),
        (
            "POST",
            with(&|b| b["spec"]["volumeName"] = json!("")),
            400,
            "Failed to create backup 'sch': missing volume name".into(),
        ),
        (
            "POST",
            with(&|b| b["spec"]["backupDest"] = json!("")),
            400,
            "Failed to create backup 'sch': missing backupIP".into(),
        ),
        (
            "POST",
            with(&|b| b["spec"]["snapName"] = json!("")),
            400,
            "Failed to create backup 'sch': missing snapName".into(),
        ),
        (
            "GET",
            with(&|b| b["spec"]["backupName"] = json!("")),
            400,
            "Failed to get backup: missing backup name ".into(),
        ),
        (
            "GET",
            with(&|b| b["metadata"] = json!({})),
            400,
            "Failed to get backup 'sch': missing namespace".into(),
        ),
        (
            "GET",
            with(&|b| b["spec"]["volumeName"] = json!("")),
            400,
            "Failed to get backup 'sch': missing volume name".into(),
        ),
    ];
    for (method, body, code, msg) in cases {
        assert_eq!(
            s.call(method, "/latest/backups/", Some(body)).await,
            (code, msg),
            "{method}"
        );
    }
    // Validation failures never reach the target.
    assert!(s.target.calls().is_empty());
    let insufficient = "failed to delete backup: Insufficient info -- required values volume_name, backup_name, namespace, schedule_name";
    let ns = s.app_ns.clone();
    for path in [
        format!("/latest/backups/?volume={PV}&namespace={ns}&schedule=s"),
        format!("/latest/backups/x?namespace={ns}&schedule=s"),
        format!("/latest/backups/x?volume={PV}&schedule=s"),
        format!("/latest/backups/x?volume={PV}&namespace={ns}"),
    ] {
        assert_eq!(
            s.call("DELETE", &path, None).await,
            (405, insufficient.to_owned()),
            "{path}"
        );
    }
    assert_eq!(
        s.call("PUT", "/latest/backups/", None).await,
        (405, "Invalid http method".into())
    );
    assert_eq!(
        s.call("DELETE", "/latest/restore/", None).await,
        (405, "Invalid http method".into())
    );
    let (code, _) = s
        .call("POST", "/latest/backups/", Some(json!("not an object")))
        .await;
    assert_eq!(code, 500, "undecodable body");
    assert_eq!(
        s.call("GET", "/latest/other/", None).await,
        (404, "404 page not found\n".into())
    );
    assert_eq!(s.call("POST", "/latest/backups", None).await.0, 301);
    // GET of a backup that does not exist: 404 (upstream drops the connection).
    assert_eq!(
        s.call(
            "GET",
            "/latest/backups/",
            Some(s.backup_body("sch", "nope"))
        )
        .await
        .0,
        404
    );
    // The target refuses the snapshot: 400, nothing created.
    let (code, msg) = s
        .call(
            "POST",
            "/latest/backups/",
            Some(s.backup_body("sch", "refuse-1")),
        )
        .await;
    assert_eq!(code, 400);
    assert!(msg.starts_with("Failed to create snapshot '"), "{msg}");
    assert_eq!(s.count_objects().await, (0, 0, 0));
    // No Healthy replica: 400 after the snapshot (as upstream), no object.
    let cvrs: Api<CStorVolumeReplica> = Api::namespaced(s.client.clone(), &s.ns);
    let mut cvr = cvrs.get(&format!("{PV}-cspc-a-p1")).await.unwrap();
    cvr.status.as_mut().unwrap().phase = None;
    cvrs.replace(&format!("{PV}-cspc-a-p1"), &PostParams::default(), &cvr)
        .await
        .unwrap();
    assert_eq!(
        s.call(
            "POST",
            "/latest/backups/",
            Some(s.backup_body("sch", "sch-2"))
        )
        .await,
        (
            400,
            format!("Failed to find healthy replica for volume {PV}")
        )
    );
    assert_eq!(s.count_objects().await, (0, 0, 0));
}

fn restore_body(ns: &str, restore: &str) -> Value {
    json!({
        "apiVersion": "openebs.io/v1alpha1", "kind": "CStorRestore",
        "metadata": {"namespace": ns},
        "spec": {"restoreName": restore, "volumeName": PV, "restoreSrc": "10.1.1.1:9000",
            "maxretrycount": 0, "retrycount": 0, "storageClass": "cstor-sc", "size": "0", "localRestore": false},
        "status": ""
    })
}

impl Setup {
    async fn bind_cvc(&self, name: &str) {
        let cvc: CStorVolumeConfig = from_value(json!({
            "apiVersion": "cstor.openebs.io/v1", "kind": "CStorVolumeConfig",
            "metadata": {"name": name, "namespace": self.ns},
            "spec": {"capacity": {"storage": "1Gi"}, "provision": {"capacity": {"storage": "1Gi"}, "replicaCount": 2}, "policy": {}},
            "publish": {"nodeId": ""},
            "status": {"phase": "Bound"}
        }))
        .unwrap();
        let api: Api<CStorVolumeConfig> = Api::namespaced(self.client.clone(), &self.ns);
        // No status subresource: the status is stored as created.
        api.create(&PostParams::default(), &cvc).await.unwrap();
    }

    async fn set_restore_status(&self, name: &str, status: CStorBackupStatus) {
        let mut r = self.restores().get(name).await.unwrap();
        r.status = Some(status);
        self.restores()
            .replace(name, &PostParams::default(), &r)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn remote_restore_creates_one_restore_per_replica_and_aggregates() {
    let s = Setup::start().await;
    // The CVC is not Bound: 400, nothing created.
    let body = restore_body(&s.ns, "bkp-1");
    assert_eq!(
        s.call("POST", "/latest/restore/", Some(body.clone())).await,
        (
            400,
            format!(
                "Failed to create resources for volume: {{CVC {PV} in namespace {} is not in Bound status}}",
                s.ns
            )
        )
    );
    assert_eq!(s.count_objects().await, (0, 0, 0));
    s.bind_cvc(PV).await;
    let (code, out) = s.call("POST", "/latest/restore/", Some(body.clone())).await;
    assert_eq!(code, 200, "{out}");
    let iscsi: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        iscsi,
        json!({"targetPortal": "10.0.0.9:3260", "iqn": format!("iqn.2016-09.com.openebs.cstor:{PV}"), "lun": 0})
    );
    let items = s
        .restores()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    assert_eq!(items.len(), 2, "one per replica");
    let mut pools = Vec::new();
    for r in &items {
        let name = r.metadata.name.clone().unwrap();
        assert!(
            name.starts_with("bkp-1-") && name.len() == "bkp-1-".len() + 36,
            "{name}"
        );
        assert_eq!(r.status, Some(CStorBackupStatus::Pending));
        assert_eq!(r.spec.restore_src, "10.1.1.1:9000");
        let l = r.metadata.labels.clone().unwrap();
        assert_eq!(l["openebs.io/restore"], "bkp-1");
        assert_eq!(l["openebs.io/persistent-volume"], PV);
        assert_eq!(
            l["cstorpoolinstance.openebs.io/uid"],
            l["cstorpoolinstance.openebs.io/name"].replace("cspc-a-p", "uid-")
        );
        pools.push(l["cstorpoolinstance.openebs.io/name"].clone());
    }
    pools.sort();
    assert_eq!(pools, ["cspc-a-p0", "cspc-a-p1"]);
    // Simulated pool managers: one in progress → InProgress; both Done → Done.
    let names: Vec<String> = items
        .iter()
        .map(|r| r.metadata.name.clone().unwrap())
        .collect();
    s.set_restore_status(&names[0], CStorBackupStatus::Done)
        .await;
    s.set_restore_status(&names[1], CStorBackupStatus::InProgress)
        .await;
    assert_eq!(
        s.call("GET", "/latest/restore/", Some(body.clone())).await,
        (200, "\"InProgress\"".into())
    );
    s.set_restore_status(&names[1], CStorBackupStatus::Done)
        .await;
    assert_eq!(
        s.call("GET", "/latest/restore/", Some(body.clone())).await,
        (200, "\"Done\"".into())
    );
    // No restore of that name: "".
    assert_eq!(
        s.call(
            "GET",
            "/latest/restore/",
            Some(restore_body(&s.ns, "other"))
        )
        .await,
        (200, "\"\"".into())
    );
    // Pending restores on pools without a pool pod are Failed, and stay so.
    let second = restore_body(&s.ns, "bkp-2");
    assert_eq!(
        s.call("POST", "/latest/restore/", Some(second.clone()))
            .await
            .0,
        200
    );
    assert_eq!(
        s.call("GET", "/latest/restore/", Some(second)).await,
        (200, "\"Failed\"".into())
    );
    let lp = ListParams::default().labels("openebs.io/restore=bkp-2");
    for r in s.restores().list(&lp).await.unwrap().items {
        assert_eq!(r.status, Some(CStorBackupStatus::Failed));
    }
}

#[tokio::test]
async fn bad_restore_requests_get_upstreams_errors_and_create_nothing() {
    let s = Setup::start().await;
    s.bind_cvc(PV).await;
    let with = |f: &dyn Fn(&mut Value)| {
        let mut b = restore_body(&s.ns, "bkp-1");
        f(&mut b);
        b
    };
    let v = "restore create validation failed error: ";
    let cases: Vec<(Value, String)> = vec![
        (
            with(&|b| b["metadata"] = json!({})),
            format!("{v}{{failed to create restore '': missing namespace}}"),
        ),
        (
            with(&|b| b["spec"]["restoreName"] = json!("")),
            format!("{v}{{failed to create restore: missing restore name}}"),
        ),
        (
            with(&|b| b["spec"]["volumeName"] = json!("")),
            format!("{v}{{failed to create restore '': missing volume name}}"),
        ),
        (
            with(&|b| b["spec"]["restoreSrc"] = json!("")),
            format!("{v}{{failed to create restore '': missing restoreSrc}}"),
        ),
        (
            with(&|b| {
                b["spec"]["localRestore"] = json!(true);
                b["spec"]["storageClass"] = json!("");
            }),
            format!("{v}{{failed to create restore '': missing storageClass}}"),
        ),
        (
            with(&|b| {
                b["spec"]["localRestore"] = json!(true);
                b["spec"]["size"] = json!("");
            }),
            format!("{v}{{failed to create restore '': missing size}}"),
        ),
        (
            with(&|b| b["metadata"]["name"] = json!("r1")).pipe_clear_ns(),
            format!("{v}{{failed to create restore 'r1': missing namespace}}"),
        ),
    ];
    for (body, msg) in cases {
        assert_eq!(
            s.call("POST", "/latest/restore/", Some(body)).await,
            (400, msg)
        );
    }
    let get_cases: Vec<(Value, String)> = vec![
        (
            with(&|b| b["spec"]["restoreName"] = json!("")),
            "Failed to get restore: missing restore name ".into(),
        ),
        (
            with(&|b| b["metadata"] = json!({})),
            "Failed to get restore 'bkp-1': missing namespace".into(),
        ),
        (
            with(&|b| b["spec"]["volumeName"] = json!("")),
            "Failed to get restore 'bkp-1': missing volume name".into(),
        ),
    ];
    for (body, msg) in get_cases {
        assert_eq!(
            s.call("GET", "/latest/restore/", Some(body)).await,
            (400, msg)
        );
    }
    // A Bound volume without replicas: 500, nothing created.
    s.bind_cvc("pvc-none").await;
    let mut none = restore_body(&s.ns, "bkp-1");
    none["spec"]["volumeName"] = json!("pvc-none");
    assert_eq!(
        s.call("POST", "/latest/restore/", Some(none)).await,
        (500, "CVRs doesn't exist for volume pvc-none".into())
    );
    assert_eq!(s.count_objects().await, (0, 0, 0));
}

trait ClearNs {
    fn pipe_clear_ns(self) -> Self;
}

impl ClearNs for Value {
    fn pipe_clear_ns(mut self) -> Self {
        self["metadata"]["namespace"] = json!("");
        self
    }
}

#[tokio::test]
async fn local_restore_creates_the_clone_cvc() {
    let s = Setup::start().await;
    let sc: k8s_openapi::api::storage::v1::StorageClass = serde_json::from_value(json!({
        "metadata": {"name": "cstor-sc"}, "provisioner": "cstor.csi.openebs.io",
        "parameters": {"cstorPoolCluster": "cspc-a", "replicaCount": "2", "cas-type": "cstor"}
    }))
    .unwrap();
    Api::all(s.client.clone())
        .create(&PostParams::default(), &sc)
        .await
        .unwrap();
    // The simulated cvc-operator binds the clone once it exists (the CV is `PV`'s, reused).
    let cvcs: Api<CStorVolumeConfig> = Api::namespaced(s.client.clone(), &s.ns);
    let binder = {
        let cvcs = cvcs.clone();
        tokio::spawn(async move {
            let mut cvc = cstor_testkit::wait_until("clone CVC", Duration::from_secs(30), || {
                let cvcs = cvcs.clone();
                async move { cvcs.get_opt(PV).await.ok().flatten() }
            })
            .await
            .unwrap();
            cvc.status.phase = Some(cstor_api::cstor::CStorVolumeConfigPhase::Bound);
            cvcs.replace(PV, &PostParams::default(), &cvc)
                .await
                .unwrap();
        })
    };
    let mut body = restore_body(&s.ns, "bkp-1");
    body["spec"]["localRestore"] = json!(true);
    body["spec"]["restoreSrc"] = json!("pvc-src");
    body["spec"]["size"] = json!("1Gi");
    let (code, out) = s.call("POST", "/latest/restore/", Some(body)).await;
    assert_eq!(code, 200, "{out}");
    binder.await.unwrap();
    let cvc = cvcs.get(PV).await.unwrap();
    assert_eq!(
        cvc.spec.cstor_volume_source.as_deref(),
        Some("pvc-src@bkp-1")
    );
    let labels = cvc.metadata.labels.clone().unwrap();
    assert_eq!(labels["openebs.io/cstor-pool-cluster"], "cspc-a");
    assert_eq!(labels["openebs.io/source-volume"], "pvc-src");
    let annotations = cvc.metadata.annotations.clone().unwrap();
    assert_eq!(annotations["openebs.io/volumeID"], PV);
    assert_eq!(annotations["openebs.io/volume-policy"], "");
    assert_eq!(
        cvc.metadata.finalizers,
        Some(vec!["cvc.openebs.io/finalizer".to_owned()])
    );
    // Local restores create no CStorRestore.
    assert_eq!(s.count_objects().await, (0, 0, 0));
    // A StorageClass without the pool cluster: 400.
    let bare: k8s_openapi::api::storage::v1::StorageClass = serde_json::from_value(json!({
        "metadata": {"name": "bare-sc"}, "provisioner": "cstor.csi.openebs.io"
    }))
    .unwrap();
    Api::all(s.client.clone())
        .create(&PostParams::default(), &bare)
        .await
        .unwrap();
    let mut body = restore_body(&s.ns, "bkp-2");
    body["spec"]["localRestore"] = json!(true);
    body["spec"]["volumeName"] = json!("pvc-other");
    body["spec"]["storageClass"] = json!("bare-sc");
    body["spec"]["size"] = json!("1Gi");
    assert_eq!(
        s.call("POST", "/latest/restore/", Some(body)).await,
        (400, "Failed to create resources for volume: {storageclass bare-sc doesn't have cstorPoolCluster details}".into())
    );
    assert!(cvcs.get_opt("pvc-other").await.unwrap().is_none());
}

#[tokio::test]
async fn a_running_pool_keeps_its_backup_in_progress() {
    let s = Setup::start().await;
    support::running_pool_pods(&s.client, &s.ns, &[("pool-p1", "cspc-a-p1")]).await;

    assert_eq!(
        s.call(
            "POST",
            "/latest/backups/",
            Some(s.backup_body("sch", "sch-1"))
        )
        .await
        .0,
        200
    );
    let name = format!("sch-1-{PV}");
    let mut b = s.backups().get(&name).await.unwrap();
    b.status = Some(CStorBackupStatus::InProgress);
    s.backups()
        .replace(&name, &PostParams::default(), &b)
        .await
        .unwrap();
    let (_, body) = s
        .call(
            "GET",
            "/latest/backups/",
            Some(s.backup_body("sch", "sch-1")),
        )
        .await;
    assert_eq!(status_of(&body), "InProgress", "pool up: status left alone");
    // The pool-management container stops being ready: the pool counts as down.
    support::set_pool_pod_ready(&s.client, &s.ns, "pool-p1", false).await;
    let (_, body) = s
        .call(
            "GET",
            "/latest/backups/",
            Some(s.backup_body("sch", "sch-1")),
        )
        .await;
    assert_eq!(
        status_of(&body),
        "Failed",
        "pool down, snapshot not in the record"
    );
}
