//! The node runtime on its own: a Pod of a stand-in "our image" binary (a shell script in a
//! scratch bin directory) runs with the Pod spec's exact command line and environment, in its own
//! network namespace with its IP written back, its volume bound at the mount path, and is
//! restarted (restart count written back) when it exits.

use std::{collections::BTreeSet, os::unix::fs::PermissionsExt, sync::Arc, time::Duration};

use cstor_local::{
    images::Programs,
    kubelet::{ApiAccess, Kubelet, KubeletConfig},
    netns::Network,
};
use cstor_testkit::{TestApiServer, wait_until};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::{Api, api::PostParams};

const SCRIPT: &str = r#"#!/bin/sh
# Records how it was started into the volume mounted at /out, then exits (the kubelet restarts it).
{ for a in "$0" "$@"; do echo "arg=$a"; done; env | sort | sed 's/^/env=/'; ip -4 -o addr show dev eth0 | awk '{print "ip="$4}'; } > /out/run.$$
exit 3
"#;

/// A test API server, a kubelet of node `n1` for namespace `ns1` (created) running the
/// programs of `bin` for our image, and its network.
async fn fixture(
    tmp: &std::path::Path,
    prefix: &str,
) -> (
    TestApiServer,
    Arc<Kubelet>,
    Arc<Network>,
    tokio::task::JoinHandle<()>,
) {
    let srv = TestApiServer::start().await;
    let client = srv.client();
    let url: http::Uri = srv.url().parse().unwrap();
    let upstream = format!("127.0.0.1:{}", url.port_u16().unwrap())
        .parse()
        .unwrap();
    let prefix = format!("{prefix}{}", std::process::id() % 10000);
    let network = Arc::new(Network::create(&prefix).expect("network (needs root and iproute2)"));
    let kubelet = Kubelet::new(
        client.clone(),
        KubeletConfig {
            state_dir: tmp.join("state"),
            nodes: vec!["n1".into()],
            namespaces: BTreeSet::from(["ns1".to_string()]),
            programs: Programs {
                bin_dir: tmp.join("bin"),
                engine_dir: None,
                sidecar_dir: None,
                standin: None,
            },
            api: ApiAccess::Plain { upstream },
            rust_log: None,
        },
        network.clone(),
    );
    let task = tokio::spawn(kubelet.clone().run());
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "ns1"}})).unwrap();
    Api::<Namespace>::all(client)
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    (srv, kubelet, network, task)
}

/// Writes an executable script `name` into `<tmp>/bin`.
fn program(tmp: &std::path::Path, name: &str, script: &str) {
    let bin = tmp.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::write(bin.join(name), script).unwrap();
    std::fs::set_permissions(bin.join(name), std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_runs_with_exact_args_env_volume_and_network_and_restarts() {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    program(tmp.path(), "recorder", SCRIPT);
    let (srv, kubelet, network, task) = fixture(tmp.path(), "ckt").await;
    let client = srv.client();
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "p1", "namespace": "ns1", "labels": {"app": "x"}},
        "spec": {
            "nodeName": "n1",
            "containers": [
                {"name": "c", "image": "cstor-rs:0.1.0", "command": ["recorder"],
                 "args": ["--bind=$(POD_IP)", "--node=$(NODE)", "--keep=$(UNDEFINED)", "--escaped=$$(POD_IP)"],
                 "env": [
                    {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                    {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                    {"name": "ADDR", "value": "$(POD_IP):5757"},
                 ],
                 "volumeMounts": [{"name": "out", "mountPath": "/out"}]},
                {"name": "exporter", "image": "openebs/m-exporter:3.6.0"}
            ],
            "volumes": [{"name": "out", "emptyDir": {}}]
        }
    }))
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "ns1");
    pods.create(&PostParams::default(), &pod).await.unwrap();

    let deadline = Duration::from_secs(60);
    let ip = wait_until(
        "the pod's IP and a restart written back",
        deadline,
        || async {
            let p = pods.get("p1").await.ok()?;
            let st = p.status?;
            let restarts = st
                .container_statuses
                .as_ref()?
                .iter()
                .find(|c| c.name == "c")?
                .restart_count;
            (st.phase.as_deref() == Some("Running") && restarts >= 1).then_some(st.pod_ip?)
        },
    )
    .await
    .expect("pod status");
    let dir = kubelet.pod_dir("ns1/p1").expect("running pod").join("out");
    let runs: Vec<String> = wait_until("the second run's record", deadline, || async {
        let runs: Vec<String> = std::fs::read_dir(&dir)
            .ok()?
            .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
            .filter(|r| r.contains("ip="))
            .collect();
        (runs.len() >= 2).then_some(runs)
    })
    .await
    .expect("the container ran and was restarted");
    let run = &runs[0];
    let args: Vec<&str> = run.lines().filter_map(|l| l.strip_prefix("arg=")).collect();
    assert_eq!(
        args[1..],
        [
            format!("--bind={ip}").as_str(),
            "--node=n1",
            "--keep=$(UNDEFINED)",
            "--escaped=$(POD_IP)"
        ],
        "{run}"
    );
    for want in [
        format!("env=POD_IP={ip}"),
        "env=NODE=n1".into(),
        "env=NS=ns1".into(),
        format!("env=ADDR={ip}:5757"),
    ] {
        assert!(run.lines().any(|l| l == want), "missing {want} in:\n{run}");
    }
    assert!(
        run.lines().any(|l| l == format!("ip={ip}/24")),
        "the container runs in the pod's network namespace:\n{run}"
    );
    assert!(
        run.lines().any(|l| l.starts_with("env=KUBECONFIG=")),
        "{run}"
    );
    let skipped = kubelet.skipped();
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert_eq!(skipped[0].container, "exporter");

    // Deleting the Pod stops it and removes its network namespace.
    let (netns, _) = kubelet.pod_network("ns1/p1").expect("network");
    pods.delete("p1", &Default::default()).await.unwrap();
    let path = format!("/run/netns/{netns}");
    wait_until(
        "the pod stopped and its network namespace gone",
        deadline,
        || async {
            (kubelet.running().is_empty() && !std::path::Path::new(&path).exists()).then_some(())
        },
    )
    .await
    .expect("stopped");
    task.abort();
    network.teardown();
}

/// Pods of Jobs: a container that ends is restarted only as `restartPolicy` says, and a Pod
/// whose containers all ended says Succeeded (all exited 0) or Failed, with each exit code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_end_as_the_restart_policy_says() {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    program(tmp.path(), "ends", "#!/bin/sh\nexit \"$1\"\n");
    let (srv, kubelet, network, task) = fixture(tmp.path(), "ckr").await;
    let client = srv.client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "ns1");
    for (name, policy, code) in [
        ("ok", "Never", "0"),
        ("bad", "Never", "3"),
        ("done", "OnFailure", "0"),
        ("retry", "OnFailure", "3"),
    ] {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "ns1"},
            "spec": {"nodeName": "n1", "restartPolicy": policy,
                "containers": [{"name": "c", "image": "cstor-rs:0.1.0", "command": ["ends"], "args": [code]}]}
        }))
        .unwrap();
        pods.create(&PostParams::default(), &pod).await.unwrap();
    }
    let deadline = Duration::from_secs(60);
    let state = |name: &'static str| {
        let pods = pods.clone();
        async move {
            let st = pods.get(name).await.ok()?.status?;
            let c = st.container_statuses?.into_iter().find(|c| c.name == "c")?;
            let code = c.state?.terminated.map(|t| t.exit_code);
            Some((st.phase?, code, c.restart_count))
        }
    };
    for (name, phase, code) in [
        ("ok", "Succeeded", 0),
        ("bad", "Failed", 3),
        ("done", "Succeeded", 0),
    ] {
        let got = wait_until(&format!("pod {name} {phase}"), deadline, || async {
            state(name).await.filter(|(p, _, _)| p == phase)
        })
        .await
        .expect("the pod ended");
        assert_eq!(got, (phase.to_string(), Some(code), 0), "pod {name}");
    }
    let retry = wait_until("pod retry restarted", deadline, || async {
        state("retry")
            .await
            .filter(|(_, _, restarts)| *restarts >= 1)
    })
    .await
    .expect("an OnFailure container that fails is restarted");
    assert_eq!(retry.0, "Running");
    for p in ["ok", "bad", "done", "retry"] {
        pods.delete(p, &Default::default()).await.unwrap();
    }
    wait_until("every pod stopped", deadline, || async {
        kubelet.running().is_empty().then_some(())
    })
    .await
    .expect("deleted pods stop");
    task.abort();
    network.teardown();
}
