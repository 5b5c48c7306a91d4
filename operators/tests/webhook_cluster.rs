//! The webhook against a cluster (in-process API server, or the real one named by
//! CSTOR_TEST_KUBECONFIG): the rules through `KubeLookup`, and the bootstrap (certificate
//! Secret, Service, ValidatingWebhookConfiguration with the CA bundle, owner references).

#[path = "webhook_common.rs"]
mod common;

use std::{collections::BTreeMap, net::IpAddr, sync::Arc};

use common::*;
use cstor_api::{
    constants::{annotation, label},
    cstor::{
        CStorPoolCluster, CStorPoolInstance, CStorPoolInstanceSpec, CStorVolume,
        CStorVolumeReplica, CStorVolumeReplicaSpec, CStorVolumeSpec,
    },
    naming,
    ndm::{BlockDevice, BlockDeviceClaim},
};
use cstor_operators::webhook::{
    SECRET_CA_KEY, SECRET_CERT_KEY, SECRET_KEY_KEY,
    bootstrap::{self, BootstrapConfig},
    cspc::{validate_cspc_create, validate_cspc_delete, validate_cspc_update},
    lookup::{KubeLookup, MemoryLookup},
    pvc::validate_pvc_delete,
    server::{WebhookState, router, serve_tls},
    tls,
};
use cstor_testkit::{ResourceDef, Scope, TestCluster};
use k8s_openapi::{
    ByteString,
    api::{
        admissionregistration::v1::ValidatingWebhookConfiguration,
        apps::v1::{Deployment, DeploymentSpec},
        core::v1::{
            Container, Node, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSpec,
            PodTemplateSpec, Secret, Service, VolumeResourceRequirements,
        },
    },
    apimachinery::pkg::{api::resource::Quantity, apis::meta::v1::LabelSelector},
};
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams},
};
use rustls_pki_types::ServerName;
use serde_json::json;

async fn create<K>(api: &Api<K>, object: &K) -> K
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.create(&PostParams::default(), object)
        .await
        .unwrap_or_else(|e| panic!("creating {}: {e}", object.name_any()))
}

async fn create_bd(api: &Api<BlockDevice>, mut device: BlockDevice) -> BlockDevice {
    device.metadata.uid = None;
    create(api, &device).await
}

async fn drop_claim_finalizers(client: &Client, ns: &str) {
    let api: Api<BlockDeviceClaim> = Api::namespaced(client.clone(), ns);
    for c in api.list(&Default::default()).await.unwrap() {
        api.patch(
            &c.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn rules_against_the_cluster() {
    let cluster = TestCluster::start().await;
    let client = cluster.client();
    let ns = cluster.namespace().to_owned();
    let (n1, n2) = (format!("{ns}-n1"), format!("{ns}-n2"));
    let nodes: Api<Node> = Api::all(client.clone());
    create(&nodes, &node(&n1, &n1)).await;
    create(&nodes, &node(&n2, &n2)).await;

    let bds: Api<BlockDevice> = Api::namespaced(client.clone(), &ns);
    for name in ["bd-a", "bd-b", "bd-c"] {
        create_bd(&bds, bd(&ns, name, &n1, 10 * GIB)).await;
    }
    create_bd(&bds, claimed(bd(&ns, "bd-d", &n1, 10 * GIB), "bdc-other")).await;
    create_bd(&bds, bd(&ns, "bd-x", &n2, 10 * GIB)).await;
    let claims: Api<BlockDeviceClaim> = Api::namespaced(client.clone(), &ns);
    create(
        &claims,
        &claim(&ns, "bdc-other", "bd-d", "another-cspc", None),
    )
    .await;

    let lookup = KubeLookup::new(client.clone());
    let p = "invalid cspc specification: ";
    let good = cspc(&ns, "c1", vec![pool(&n1, "mirror", &[&["bd-a", "bd-b"]])]);
    validate_cspc_create(&good, &lookup)
        .await
        .expect("valid cspc");

    let denied = |c: CStorPoolCluster| {
        let lookup = lookup.clone();
        async move {
            validate_cspc_create(&c, &lookup)
                .await
                .expect_err("denied")
                .message
        }
    };
    let ghost = format!("{ns}-ghost");
    assert_eq!(
        denied(cspc(&ns, "c1", vec![pool(&ghost, "stripe", &[&["bd-a"]])])).await,
        format!(
            "{p}failed to get node from pool nodeSelector: {{map[kubernetes.io/hostname:{ghost}]}} error: {{no node has these labels: set nodeSelector to the labels of an existing node}}"
        )
    );
    assert_eq!(
        denied(cspc(&ns, "c1", vec![pool(&n1, "stripe", &[&["bd-none"]])])).await,
        format!(
            "{p}invalid pool spec: failed to get block device: {{bd-none}} details error: blockdevices.openebs.io \"bd-none\" not found"
        )
    );
    assert_eq!(
        denied(cspc(&ns, "c1", vec![pool(&n1, "stripe", &[&["bd-x"]])])).await,
        format!("{p}invalid pool spec: block device bd-x doesn't belongs to node {n1}")
    );
    assert_eq!(
        denied(cspc(
            &ns,
            "c1",
            vec![pool(&n1, "mirror", &[&["bd-a", "bd-b", "bd-c"]])]
        ))
        .await,
        format!("{p}invalid pool spec: mirror raid group should have disks in multiple of 2")
    );
    assert_eq!(
        denied(cspc(&ns, "c1", vec![pool(&n1, "stripe", &[&["bd-d"]])])).await,
        format!("{p}invalid pool spec: error: can't use claimed blockdevice bd-d")
    );

    // Replacement: the claim of the new device is created in the cluster.
    let cspcs: Api<CStorPoolCluster> = Api::namespaced(client.clone(), &ns);
    let mut stored = good.clone();
    stored.metadata.uid = None;
    let old = create(&cspcs, &stored).await;
    let mut new = old.clone();
    new.spec.pools.as_mut().unwrap()[0].data_raid_groups[0] = group(&["bd-a", "bd-c"]);
    validate_cspc_update(&old, &new, &lookup, true)
        .await
        .expect("valid replacement");
    let bd_c = bds.get("bd-c").await.unwrap();
    let saved = claims
        .get(&naming::bdc_name(bd_c.metadata.uid.as_deref().unwrap()))
        .await
        .expect("replacement claim created");
    assert_eq!(saved.annotations()[annotation::BD_PREDECESSOR], "bd-b");
    assert_eq!(saved.labels()[label::CSTOR_POOL_CLUSTER], "c1");
    assert_eq!(saved.spec.block_device_name.as_deref(), Some("bd-c"));
    assert_eq!(
        saved.owner_references()[0].uid,
        old.metadata.uid.clone().unwrap()
    );
    // While it is in progress, the group cannot be changed again.
    let mut again = new.clone();
    again.spec.pools.as_mut().unwrap()[0].data_raid_groups[0] = group(&["bd-b", "bd-c"]);
    let d = validate_cspc_update(&new, &again, &lookup, true)
        .await
        .expect_err("in progress");
    assert_eq!(
        d.message,
        format!(
            "{p}cannot replace blockdevice as a background replacement may be in progress in the raid group: blockdevice bd-c is replacing bd-b"
        )
    );

    // Deletion with a replica on one of the pools.
    let cspis: Api<CStorPoolInstance> = Api::namespaced(client.clone(), &ns);
    let mut instance =
        CStorPoolInstance::namespaced("c1-wxyz", &ns, CStorPoolInstanceSpec::default());
    instance.metadata.labels = Some(BTreeMap::from([
        (label::CSTOR_POOL_CLUSTER.to_owned(), "c1".to_owned()),
        (label::HOSTNAME.to_owned(), n1.clone()),
    ]));
    create(&cspis, &instance).await;
    validate_cspc_delete(&ns, "c1", &lookup)
        .await
        .expect("no replica yet");
    let cvrs: Api<CStorVolumeReplica> = Api::namespaced(client.clone(), &ns);
    let mut replica =
        CStorVolumeReplica::namespaced("pvc-1-c1-wxyz", &ns, CStorVolumeReplicaSpec::default());
    replica.metadata.labels = Some(BTreeMap::from([(
        label::CSPI_NAME.to_owned(),
        "c1-wxyz".to_owned(),
    )]));
    create(&cvrs, &replica).await;
    let d = validate_cspc_delete(&ns, "c1", &lookup)
        .await
        .expect_err("replica exists");
    assert_eq!(
        d.message,
        "invalid cspc c1 deletion: volume still exists on pool c1-wxyz"
    );

    // PVC whose volume has a clone.
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    let source = format!("pvc-src-{ns}");
    create(
        &pvcs,
        &PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some("data".into()),
                ..Default::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                volume_name: Some(source.clone()),
                resources: Some(VolumeResourceRequirements {
                    requests: Some(BTreeMap::from([("storage".into(), Quantity("1Gi".into()))])),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .await;
    validate_pvc_delete(&ns, "data", &lookup)
        .await
        .expect("no clone yet");
    let cvs: Api<CStorVolume> = Api::namespaced(client.clone(), &ns);
    let mut clone = CStorVolume::namespaced("pvc-clone", &ns, CStorVolumeSpec::default());
    clone.metadata.labels = Some(BTreeMap::from([(
        label::SOURCE_VOLUME.to_owned(),
        source.clone(),
    )]));
    create(&cvs, &clone).await;
    let d = validate_pvc_delete(&ns, "data", &lookup)
        .await
        .expect_err("clone exists");
    assert_eq!(
        (d.code, d.message.as_str()),
        (403, "pvc \"data\" has '1' cloned volume(s)")
    );

    drop_claim_finalizers(&client, &ns).await;
    for n in [&n1, &n2] {
        nodes.delete(n, &DeleteParams::default()).await.unwrap();
    }
    cluster.cleanup().await.unwrap();
}

fn owner_deployment(ns: &str) -> Deployment {
    let labels = BTreeMap::from([
        ("app".to_owned(), "cstor-admission-webhook".to_owned()),
        (
            "openebs.io/component-name".to_owned(),
            "cstor-admission-webhook".to_owned(),
        ),
    ]);
    Deployment {
        metadata: ObjectMeta {
            name: Some("openebs-cstor-admission-server".into()),
            namespace: Some(ns.into()),
            labels: Some(labels.clone()),
            ..Default::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(0),
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "webhook".into(),
                        image: Some("registry.invalid/cstor-webhook:none".into()),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn bootstrap_registers_certificate_service_and_webhook() {
    let cluster = TestCluster::start().await;
    if let Some(server) = cluster.server() {
        server.register(ResourceDef::new(
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingWebhookConfiguration",
            "validatingwebhookconfigurations",
            Scope::Cluster,
        ));
    }
    let client = cluster.client();
    let ns = cluster.namespace().to_owned();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let owner = create(&deployments, &owner_deployment(&ns)).await;
    let owner_uid = owner.metadata.uid.clone().unwrap();

    let mut cfg = BootstrapConfig::new(&ns);
    cfg.webhook_config_name = format!("{ns}-validation-webhook");
    cfg.failure_policy = bootstrap::failure_policy(Some("ignore")).to_owned();
    assert_eq!(bootstrap::failure_policy(Some("Fail")), "Fail");
    assert_eq!(bootstrap::failure_policy(None), "Fail");
    assert_eq!(bootstrap::failure_policy(Some("false")), "Ignore");

    let bundle = bootstrap::bootstrap(&client, &cfg)
        .await
        .expect("bootstrap");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let secret = secrets.get(&cfg.secret_name).await.unwrap();
    let data = secret.data.as_ref().unwrap();
    assert_eq!(data[SECRET_CERT_KEY].0, bundle.cert_pem.as_bytes());
    assert_eq!(data[SECRET_KEY_KEY].0, bundle.key_pem.as_bytes());
    assert_eq!(data[SECRET_CA_KEY].0, bundle.ca_pem.as_bytes());
    assert_eq!(secret.owner_references()[0].uid, owner_uid);
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let svc = services.get(&cfg.service_name).await.unwrap();
    assert_eq!(
        svc.spec.as_ref().unwrap().ports.as_ref().unwrap()[0].port,
        443
    );
    assert_eq!(svc.owner_references()[0].uid, owner_uid);
    let vwcs: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let vwc = vwcs.get(&cfg.webhook_config_name).await.unwrap();
    let hook = &vwc.webhooks.as_ref().unwrap()[0];
    assert_eq!(
        hook.client_config.ca_bundle.as_ref().unwrap().0,
        bundle.ca_pem.as_bytes()
    );
    assert_eq!(hook.failure_policy.as_deref(), Some("Ignore"));
    assert_eq!(vwc.owner_references()[0].uid, owner_uid);

    // Idempotent: the stored certificate is reused.
    assert_eq!(bootstrap::bootstrap(&client, &cfg).await.unwrap(), bundle);

    // A stale CA bundle is corrected.
    let mut stale = vwc.clone();
    stale.webhooks.as_mut().unwrap()[0].client_config.ca_bundle =
        Some(ByteString(b"stale".to_vec()));
    vwcs.replace(&cfg.webhook_config_name, &PostParams::default(), &stale)
        .await
        .unwrap();
    bootstrap::bootstrap(&client, &cfg).await.unwrap();
    let vwc = vwcs.get(&cfg.webhook_config_name).await.unwrap();
    assert_eq!(
        vwc.webhooks.as_ref().unwrap()[0]
            .client_config
            .ca_bundle
            .as_ref()
            .unwrap()
            .0,
        bundle.ca_pem.as_bytes()
    );

    // A Secret with a broken key is regenerated and the new CA registered.
    let mut broken = secrets.get(&cfg.secret_name).await.unwrap();
    broken
        .data
        .as_mut()
        .unwrap()
        .insert(SECRET_KEY_KEY.into(), ByteString(b"garbage".to_vec()));
    secrets
        .replace(&cfg.secret_name, &PostParams::default(), &broken)
        .await
        .unwrap();
    let renewed = bootstrap::bootstrap(&client, &cfg).await.unwrap();
    assert_ne!(renewed.ca_pem, bundle.ca_pem);
    let vwc = vwcs.get(&cfg.webhook_config_name).await.unwrap();
    assert_eq!(
        vwc.webhooks.as_ref().unwrap()[0]
            .client_config
            .ca_bundle
            .as_ref()
            .unwrap()
            .0,
        renewed.ca_pem.as_bytes()
    );

    // The generated certificate is valid for the Service's DNS name, as the API server calls it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config =
        tls::server_config(renewed.cert_pem.as_bytes(), renewed.key_pem.as_bytes()).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let app = router(WebhookState::new(Arc::new(MemoryLookup::default()), &ns));
    let task = tokio::spawn(serve_tls(listener, config, app, async {
        let _ = stopped.await;
    }));
    let connector =
        tokio_rustls::TlsConnector::from(tls::client_config(renewed.ca_pem.as_bytes()).unwrap());
    let host = format!("{}.{ns}.svc", cfg.service_name);
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    connector
        .connect(ServerName::try_from(host.clone()).unwrap(), tcp)
        .await
        .unwrap_or_else(|e| panic!("TLS handshake as {host}: {e}"));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let wrong: IpAddr = "127.0.0.1".parse().unwrap();
    assert!(
        connector
            .connect(ServerName::IpAddress(wrong.into()), tcp)
            .await
            .is_err(),
        "the certificate must not be valid for 127.0.0.1"
    );
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();

    vwcs.delete(&cfg.webhook_config_name, &DeleteParams::default())
        .await
        .unwrap();
    cluster.cleanup().await.unwrap();
}
