//! Every container that runs one of our binaries parses its command line exactly as the pod
//! would give it: the `command` and `args` of the rendered `deploy/` kustomizations (every
//! directory under `deploy/` with a `kustomization.yaml`, rendered with `kubectl kustomize`, the
//! `kubectl` on PATH or `$KUBECTL`) and of the pool and target pods the operators build, with
//! the container's environment set (clap reads flags from it) and `$(VAR)` references expanded
//! as the kubelet does. A clap error fails the test — as `--leader-election=false` did when the
//! flag was a plain switch. Each such container must also probe the health server its command
//! line asks for: readiness on `/readyz` and liveness on `/healthz` of the `--health-addr` port
//! (the CSI node plugin's liveness may be its livenessprobe sidecar's instead).
//!
//! Only one test here touches the process environment (clap reads flags from it), so nothing
//! races with it; keep it that way.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
};

use cstor_api::health::HealthAddr;
use cstor_csi_controller::cli::ControllerArgs;
use cstor_csi_node::cli::NodeArgs;
use cstor_operators::{
    cli::{
        CspcOperatorArgs, CvcOperatorArgs, PoolManagerArgs, VolumeManagerArgs, WebhookArgs,
        clap::{self, CommandFactory, Parser},
    },
    cspc_operator::deployment::{self, DeployConfig},
    cvc_operator::{self, target},
};
use k8s_openapi::{
    api::core::v1::{Container, Probe},
    apimachinery::pkg::util::intstr::IntOrString,
};
use serde_json::{Value, json};

fn deploy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

/// Every directory under `deploy/` holding a kustomization.
fn kustomizations(dir: &Path, out: &mut Vec<PathBuf>) {
    if dir.join("kustomization.yaml").exists() {
        out.push(dir.to_owned());
    }
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_dir())
        .collect();
    entries.sort();
    for d in entries {
        kustomizations(&d, out);
    }
}

fn render(dir: &Path) -> Vec<Value> {
    let kubectl = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".to_owned());
    let out = Command::new(&kubectl)
        .arg("kustomize")
        .arg(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `{kubectl} kustomize`: {e}. Install kubectl (Debian 12: apt-get \
                 install -y kubernetes-client) or point $KUBECTL at one"
            )
        });
    assert!(
        out.status.success(),
        "kubectl kustomize {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_yaml::Deserializer::from_str(&String::from_utf8_lossy(&out.stdout))
        .map(|d| serde::Deserialize::deserialize(d).expect("rendered YAML"))
        .filter(|v: &Value| !v.is_null())
        .collect()
}

/// The containers (and init containers) of a workload or pod, as `(where, container)`.
fn pod_containers(doc: &Value, what: &str) -> Vec<(String, Container)> {
    let spec = match doc["kind"].as_str() {
        Some("Pod") => &doc["spec"],
        Some("CronJob") => &doc["spec"]["jobTemplate"]["spec"]["template"]["spec"],
        _ => &doc["spec"]["template"]["spec"],
    };
    ["initContainers", "containers"]
        .iter()
        .flat_map(|k| spec[k].as_array().cloned().unwrap_or_default())
        .map(|c| {
            let c: Container = serde_json::from_value(c).expect("container");
            let at = format!(
                "{what}: {}/{} container {}",
                doc["kind"].as_str().unwrap_or_default(),
                doc["metadata"]["name"].as_str().unwrap_or_default(),
                c.name
            );
            (at, c)
        })
        .collect()
}

/// A stand-in for an environment value the kubelet fills in from the pod or node.
fn value_from(var: &Value) -> String {
    match var["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
        Some("status.podIP" | "status.hostIP") => "10.0.0.7".to_owned(),
        Some("metadata.namespace") => "openebs".to_owned(),
        Some("spec.nodeName") => "node-1".to_owned(),
        Some("metadata.name") => "pod-1".to_owned(),
        _ => "placeholder".to_owned(),
    }
}

/// Kubernetes' `$(VAR)` expansion of command and args: `$$` is a literal `$`, references to
/// unknown variables stay as written.
fn expand(s: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(end) = inner.find(')')
            && let Some(v) = env.get(&inner[..end])
        {
            out.push_str(v);
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Parses a command line; the result is the binary's `--health-addr`.
type Check = fn(&[String]) -> Result<HealthAddr, String>;

fn parse<T: Parser>(argv: &[String]) -> Result<T, String> {
    T::try_parse_from(argv).map_err(|e| e.render().to_string())
}

/// Every binary a pod may run, with its clap command (for the variables it reads) and the
/// check of a parsed command line.
fn binaries() -> BTreeMap<&'static str, (clap::Command, Check)> {
    BTreeMap::from([
        (
            "cvc-operator",
            (CvcOperatorArgs::command(), {
                fn check(argv: &[String]) -> Result<HealthAddr, String> {
                    parse::<CvcOperatorArgs>(argv).map(|a| a.health_addr)
                }
                check as Check
            }),
        ),
        (
            "cspc-operator",
            (CspcOperatorArgs::command(), |a| {
                parse::<CspcOperatorArgs>(a).map(|a| a.health_addr)
            }),
        ),
        (
            "pool-manager",
            (PoolManagerArgs::command(), |a| {
                parse::<PoolManagerArgs>(a).map(|a| a.health_addr)
            }),
        ),
        (
            "volume-manager",
            (VolumeManagerArgs::command(), |a| {
                parse::<VolumeManagerArgs>(a).map(|a| a.health_addr)
            }),
        ),
        (
            "cstor-webhook",
            (WebhookArgs::command(), |a| {
                parse::<WebhookArgs>(a).map(|a| a.health_addr)
            }),
        ),
        (
            "cstor-csi-controller",
            (ControllerArgs::command(), |a| {
                parse::<ControllerArgs>(a).map(|a| a.health_addr)
            }),
        ),
        (
            "cstor-csi-node",
            (NodeArgs::command(), |a| {
                parse::<NodeArgs>(a).map(|a| a.health_addr)
            }),
        ),
    ])
}

/// Parses `c`'s command line with `c`'s environment: the binary and its `--health-addr`;
/// `Ok(None)` when it runs none of ours.
fn check_container(
    c: &Container,
    default_binary: Option<&str>,
) -> Result<Option<(String, HealthAddr)>, String> {
    let env: BTreeMap<String, String> = c
        .env
        .iter()
        .flatten()
        .map(|e| {
            let raw = serde_json::to_value(e).expect("env var");
            (
                e.name.clone(),
                e.value.clone().unwrap_or_else(|| value_from(&raw)),
            )
        })
        .collect();
    let mut argv: Vec<String> = c.command.clone().unwrap_or_default();
    if argv.is_empty() {
        // No `command`: the image's CMD (our role images run their binary this way).
        match default_binary {
            Some(b) => argv.push(b.to_owned()),
            None => return Ok(None),
        }
    }
    argv.extend(c.args.iter().flatten().cloned());
    let argv: Vec<String> = argv.iter().map(|a| expand(a, &env)).collect();
    let binary = Path::new(&argv[0])
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_owned();
    let all = binaries();
    let Some((cmd, check)) = all.get(binary.as_str()) else {
        return Ok(None);
    };
    // The container sees only its own environment: clear every variable the binary reads
    // (the test runner's may set some), then set the container's.
    let read: Vec<_> = cmd
        .get_arguments()
        .filter_map(|a| a.get_env().map(ToOwned::to_owned))
        .collect();
    // SAFETY: no other test of this binary reads or writes the environment (see the module
    // comment).
    unsafe {
        for v in &read {
            std::env::remove_var(v);
        }
        for (k, v) in &env {
            std::env::set_var(k, v);
        }
    }
    let result = check(&argv).map_err(|e| format!("`{}`: {e}", argv.join(" ")));
    unsafe {
        for k in env.keys() {
            std::env::remove_var(k);
        }
    }
    result.map(|health| Some((binary, health)))
}

/// The pool Deployment cspc-operator builds and the target Deployment cvc-operator builds (their
/// `cstor-pool-mgmt` / `cstor-volume-mgmt` containers have no `command`: the role image's CMD).
fn operator_built_pods() -> Vec<Value> {
    let cspc: cstor_api::cstor::CStorPoolCluster = serde_json::from_value(json!({
        "apiVersion": "cstor.openebs.io/v1", "kind": "CStorPoolCluster",
        "metadata": {"name": "cspc", "namespace": "openebs", "uid": "cspc-uid"},
        "spec": {"pools": []}
    }))
    .expect("CSPC");
    let cspi: cstor_api::cstor::CStorPoolInstance = serde_json::from_value(json!({
        "apiVersion": "cstor.openebs.io/v1", "kind": "CStorPoolInstance",
        "metadata": {"name": "cspc-abcd", "namespace": "openebs", "uid": "cspi-uid"},
        "spec": {"hostName": "node-1", "nodeSelector": {}, "poolConfig": {"dataRaidGroupType": "stripe"}, "dataRaidGroups": []}
    }))
    .expect("CSPI");
    let pool = deployment::build(&DeployConfig::default(), "3.6.0", &cspc, &cspi);
    let cvc: cstor_api::cstor::CStorVolumeConfig = serde_json::from_value(json!({
        "apiVersion": "cstor.openebs.io/v1", "kind": "CStorVolumeConfig",
        "metadata": {"name": "pvc-1", "namespace": "openebs", "uid": "cvc-uid"},
        "spec": {"capacity": {"storage": "1Gi"}, "provision": {"capacity": {"storage": "1Gi"}, "replicaCount": 1}, "policy": {}}
    }))
    .expect("CVC");
    let cv: cstor_api::cstor::CStorVolume = serde_json::from_value(json!({
        "apiVersion": "cstor.openebs.io/v1", "kind": "CStorVolume",
        "metadata": {"name": "pvc-1", "namespace": "openebs", "uid": "cv-uid"},
        "spec": {"capacity": "1Gi", "targetIP": "", "targetPort": "3260", "iqn": "iqn", "targetPortal": "", "replicationFactor": 1, "consistencyFactor": 1, "desiredReplicationFactor": 1}
    }))
    .expect("CV");
    let target = target::build_deployment(
        &cvc,
        &cv,
        &cvc.spec.policy,
        &cvc_operator::Config::new("openebs"),
    );
    vec![
        serde_json::to_value(pool).expect("pool Deployment"),
        serde_json::to_value(target).expect("target Deployment"),
    ]
}

/// The port a probe's `httpGet` targets, a named port resolved through `c`'s ports.
fn probe_port(c: &Container, probe: &Probe, path: &str) -> Result<u16, String> {
    let get = probe
        .http_get
        .as_ref()
        .ok_or_else(|| format!("the probe is not an httpGet of {path}"))?;
    if get.path.as_deref() != Some(path) {
        return Err(format!("the probe asks for {:?}, not {path}", get.path));
    }
    let port = match &get.port {
        IntOrString::Int(p) => *p,
        IntOrString::String(name) => c
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name))
            .map(|p| p.container_port)
            .ok_or_else(|| format!("the probe names port {name:?}, which the container lacks"))?,
    };
    u16::try_from(port).map_err(|_| format!("probe port {port} is out of range"))
}

/// The `--health-port` of the CSI livenessprobe sidecars among `containers`: a plugin's liveness
/// may be that sidecar's check of its CSI socket instead of our `/healthz`.
fn liveness_sidecar_ports(containers: &[(String, Container)]) -> Vec<u16> {
    containers
        .iter()
        .filter(|(_, c)| {
            c.image
                .as_deref()
                .is_some_and(|i| i.contains("sig-storage/livenessprobe"))
        })
        .flat_map(|(_, c)| c.args.iter().flatten())
        .filter_map(|a| a.strip_prefix("--health-port=")?.parse().ok())
        .collect()
}

/// A container running one of our binaries serves health on `health`, declares that port,
/// and has a readiness probe on its `/readyz` and a liveness probe on its `/healthz` (or on a
/// livenessprobe sidecar's port, `sidecars`).
fn check_probes(c: &Container, health: HealthAddr, sidecars: &[u16]) -> Result<(), String> {
    let port = health
        .get()
        .ok_or("the health server is disabled (--health-addr / HEALTH_ADDR empty)")?
        .port();
    if !c
        .ports
        .iter()
        .flatten()
        .any(|p| p.container_port == i32::from(port))
    {
        return Err(format!(
            "health port {port} is not among the container's ports"
        ));
    }
    let ready = c.readiness_probe.as_ref().ok_or("no readinessProbe")?;
    let ready_port = probe_port(c, ready, "/readyz").map_err(|e| format!("readinessProbe: {e}"))?;
    if ready_port != port {
        return Err(format!(
            "readinessProbe on port {ready_port}, the health server on {port}"
        ));
    }
    let live = c.liveness_probe.as_ref().ok_or("no livenessProbe")?;
    let live_port = probe_port(c, live, "/healthz").map_err(|e| format!("livenessProbe: {e}"))?;
    if live_port != port && !sidecars.contains(&live_port) {
        return Err(format!(
            "livenessProbe on port {live_port}, the health server on {port}"
        ));
    }
    Ok(())
}

#[test]
fn every_pod_command_line_parses() {
    let mut failures = Vec::new();
    let mut seen = BTreeMap::<String, usize>::new();
    let mut dirs = Vec::new();
    kustomizations(&deploy_dir(), &mut dirs);
    assert!(
        dirs.len() > 1,
        "no kustomizations under {}",
        deploy_dir().display()
    );
    let mut docs: Vec<(String, Value, Option<&str>)> = Vec::new();
    for dir in &dirs {
        let what = Path::new("deploy")
            .join(dir.strip_prefix(deploy_dir()).unwrap())
            .display()
            .to_string();
        docs.extend(render(dir).into_iter().map(|d| (what.clone(), d, None)));
    }
    let [pool, target] = <[Value; 2]>::try_from(operator_built_pods()).unwrap();
    docs.push(("cspc-operator".into(), pool, Some("pool-manager")));
    docs.push(("cvc-operator".into(), target, Some("volume-manager")));
    for (what, doc, default_binary) in &docs {
        let containers = pod_containers(doc, what);
        for (at, c) in &containers {
            // Only the management container runs the role image's CMD.
            let dflt = default_binary.filter(|_| c.name.ends_with("-mgmt"));
            match check_container(c, dflt) {
                Ok(Some((b, health))) => {
                    *seen.entry(b).or_default() += 1;
                    let sidecars = liveness_sidecar_ports(&containers);
                    if let Err(e) = check_probes(c, health, &sidecars) {
                        failures.push(format!("{at}: {e}"));
                    }
                }
                Ok(None) => {}
                Err(e) => failures.push(format!("{at}: {e}")),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "command lines our binaries refuse, or probes that miss their health server:\n{}",
        failures.join("\n\n")
    );
    let missing: Vec<_> = binaries()
        .into_keys()
        .filter(|b| !seen.contains_key(*b))
        .collect();
    assert!(
        missing.is_empty(),
        "no pod runs {missing:?} (seen: {seen:?})"
    );
}

#[test]
fn kubelet_expansion() {
    let env = BTreeMap::from([("A".to_owned(), "1".to_owned())]);
    assert_eq!(expand("--x=$(A)", &env), "--x=1");
    assert_eq!(expand("--x=$(B)", &env), "--x=$(B)");
    assert_eq!(expand("$$(A)$", &env), "$(A)$");
}
