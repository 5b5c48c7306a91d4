//! What the kubelet derives from a Pod spec before it starts a container: environment variables
//! (plain values, `fieldRef`, ConfigMap and Secret keys), `$(VAR)` expansion of env values,
//! command and args, and where each volume lives on this machine.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use k8s_openapi::api::core::v1::{Container, Pod, Volume};

/// Kubernetes' dependent-variable expansion: `$(NAME)` becomes the value of `NAME` when it is
/// defined and stays as written otherwise; `$$` is an escaped `$` (so `$$(NAME)` gives
/// `$(NAME)`).
pub fn expand(input: &str, vars: &BTreeMap<String, String>) -> String {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' && i + 1 < bytes.len() {
            match bytes[i + 1] {
                b'$' => {
                    out.push('$');
                    i += 2;
                    continue;
                }
                b'(' => {
                    if let Some(end) = input[i + 2..].find(')') {
                        let name = &input[i + 2..i + 2 + end];
                        match vars.get(name) {
                            Some(v) => out.push_str(v),
                            None => out.push_str(&input[i..i + 3 + end]),
                        }
                        i += 3 + end;
                        continue;
                    }
                }
                _ => {}
            }
        }
        let ch = input[i..].chars().next().expect("in bounds");
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// Values a `fieldRef` can name, known once the Pod has an address.
#[derive(Clone, Debug, Default)]
pub struct PodFacts {
    pub pod_ip: String,
    pub host_ip: String,
}

/// The value of `fieldRef.fieldPath` for `pod`.
pub fn field_ref(pod: &Pod, facts: &PodFacts, path: &str) -> Result<String, String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let indexed = |map: &Option<BTreeMap<String, String>>, rest: &str| {
        let key = rest
            .strip_prefix("['")
            .and_then(|r| r.strip_suffix("']"))
            .ok_or_else(|| format!("fieldRef {path}: expected ['key']"))?;
        Ok::<_, String>(
            map.as_ref()
                .and_then(|m| m.get(key).cloned())
                .unwrap_or_default(),
        )
    };
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".into()),
        "status.podIP" | "status.podIPs" => facts.pod_ip.clone(),
        "status.hostIP" | "status.hostIPs" => facts.host_ip.clone(),
        p if p.starts_with("metadata.labels") => indexed(&meta.labels, &p[15..])?,
        p if p.starts_with("metadata.annotations") => indexed(&meta.annotations, &p[20..])?,
        other => {
            return Err(format!(
                "fieldRef {other} is not supported by the local runtime"
            ));
        }
    })
}

/// ConfigMap and Secret data a container's env may refer to (`namespace/name` → key → value).
#[derive(Clone, Debug, Default)]
pub struct Refs {
    pub config_maps: BTreeMap<String, BTreeMap<String, String>>,
    pub secrets: BTreeMap<String, BTreeMap<String, String>>,
}

/// The container's environment in declaration order, each value expanded against the ones
/// before it (as the kubelet does).
pub fn container_env(
    pod: &Pod,
    container: &Container,
    facts: &PodFacts,
    refs: &Refs,
) -> Result<Vec<(String, String)>, String> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let mut vars = BTreeMap::new();
    let mut out = Vec::new();
    for e in container.env.iter().flatten() {
        let value = if let Some(v) = &e.value {
            expand(v, &vars)
        } else if let Some(from) = &e.value_from {
            if let Some(f) = &from.field_ref {
                field_ref(pod, facts, &f.field_path)?
            } else if let Some(c) = &from.config_map_key_ref {
                let key = format!("{ns}/{}", c.name);
                match refs.config_maps.get(&key).and_then(|d| d.get(&c.key)) {
                    Some(v) => v.clone(),
                    None if c.optional == Some(true) => continue,
                    None => {
                        return Err(format!(
                            "env {}: ConfigMap key {key}[{}] not found",
                            e.name, c.key
                        ));
                    }
                }
            } else if let Some(s) = &from.secret_key_ref {
                let key = format!("{ns}/{}", s.name);
                match refs.secrets.get(&key).and_then(|d| d.get(&s.key)) {
                    Some(v) => v.clone(),
                    None if s.optional == Some(true) => continue,
                    None => {
                        return Err(format!(
                            "env {}: Secret key {key}[{}] not found",
                            e.name, s.key
                        ));
                    }
                }
            } else if from.resource_field_ref.is_some() {
                // limits.cpu and friends: the runtime sets no limits; report "0" (unbounded).
                "0".into()
            } else {
                return Err(format!("env {}: unsupported valueFrom", e.name));
            }
        } else {
            String::new()
        };
        vars.insert(e.name.clone(), value.clone());
        out.push((e.name.clone(), value));
    }
    Ok(out)
}

/// `command` and `args` of a container after `$(VAR)` expansion against its environment.
pub fn command_line(
    container: &Container,
    env: &[(String, String)],
) -> (Option<Vec<String>>, Option<Vec<String>>) {
    let vars: BTreeMap<String, String> = env.iter().cloned().collect();
    let ex = |v: &Option<Vec<String>>| {
        v.as_ref()
            .map(|l| l.iter().map(|s| expand(s, &vars)).collect())
    };
    (ex(&container.command), ex(&container.args))
}

/// Host paths that are the machine's own devices and kernel interfaces: a pod that mounts them
/// gets the real thing (as on a real node).
const HOST_SHARED: &[&str] = &["/dev", "/sys", "/proc", "/run/udev", "/lib/modules"];

/// Where a volume lives on this machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VolumeSource {
    /// A directory (or file) on this machine.
    Dir(PathBuf),
    /// The volume type is not supported here (its name and why).
    Unsupported(String),
}

/// Maps `volume` of a pod to this machine: a hostPath to `<node dir>/<path>` (but devices and
/// kernel interfaces, and `/` itself, to themselves), an emptyDir or projected/ConfigMap/Secret volume to
/// `<pod dir>/<name>` (whose content the caller writes).
pub fn volume_dir(volume: &Volume, node_dir: &Path, pod_dir: &Path) -> VolumeSource {
    if let Some(h) = &volume.host_path {
        let p = h.path.trim_end_matches('/');
        if p.is_empty()
            || HOST_SHARED
                .iter()
                .any(|s| p == *s || p.starts_with(&format!("{s}/")))
        {
            return VolumeSource::Dir(PathBuf::from(if p.is_empty() { "/" } else { p }));
        }
        return VolumeSource::Dir(node_dir.join(p.trim_start_matches('/')));
    }
    if volume.empty_dir.is_some()
        || volume.config_map.is_some()
        || volume.secret.is_some()
        || volume.projected.is_some()
        || volume.downward_api.is_some()
    {
        return VolumeSource::Dir(pod_dir.join(&volume.name));
    }
    VolumeSource::Unsupported(format!(
        "volume {}: only hostPath, emptyDir, configMap, secret, projected and downwardAPI volumes run locally",
        volume.name
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, PodSpec};

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn expansion_follows_kubernetes_rules() {
        let v = vars(&[("A", "x"), ("B", "y")]);
        assert_eq!(expand("--a=$(A)", &v), "--a=x");
        assert_eq!(expand("$(A)$(B)", &v), "xy");
        assert_eq!(expand("$(C)", &v), "$(C)", "undefined stays");
        assert_eq!(expand("$$(A)", &v), "$(A)", "escaped");
        assert_eq!(expand("$(A", &v), "$(A", "unterminated stays");
        assert_eq!(expand("a$b", &v), "a$b");
        assert_eq!(expand("ü$(A)é", &v), "üxé");
    }

    #[test]
    fn env_resolves_field_refs_and_earlier_variables() {
        let field = |p: &str| EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: p.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let c = Container {
            name: "c".into(),
            env: Some(vec![
                EnvVar {
                    name: "IP".into(),
                    value_from: Some(field("status.podIP")),
                    ..Default::default()
                },
                EnvVar {
                    name: "NODE".into(),
                    value_from: Some(field("spec.nodeName")),
                    ..Default::default()
                },
                EnvVar {
                    name: "ADDR".into(),
                    value: Some("$(IP):5757".into()),
                    ..Default::default()
                },
            ]),
            args: Some(vec![
                "--bind=$(IP)".into(),
                "--node=$(NODE)".into(),
                "--x=$(NOPE)".into(),
            ]),
            ..Default::default()
        };
        let pod = Pod {
            spec: Some(PodSpec {
                node_name: Some("n1".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let facts = PodFacts {
            pod_ip: "10.0.0.5".into(),
            host_ip: "10.0.0.1".into(),
        };
        let env = container_env(&pod, &c, &facts, &Refs::default()).unwrap();
        assert_eq!(env[2], ("ADDR".into(), "10.0.0.5:5757".into()));
        let (_, args) = command_line(&c, &env);
        assert_eq!(
            args.unwrap(),
            vec!["--bind=10.0.0.5", "--node=n1", "--x=$(NOPE)"]
        );
    }

    #[test]
    fn volumes_map_to_node_and_pod_directories() {
        let hp = |p: &str| Volume {
            name: "v".into(),
            host_path: Some(k8s_openapi::api::core::v1::HostPathVolumeSource {
                path: p.into(),
                type_: None,
            }),
            ..Default::default()
        };
        let node = Path::new("/s/nodes/n1");
        let pod = Path::new("/s/pods/p");
        assert_eq!(
            volume_dir(&hp("/dev"), node, pod),
            VolumeSource::Dir("/dev".into())
        );
        assert_eq!(
            volume_dir(&hp("/var/openebs/sparse"), node, pod),
            VolumeSource::Dir("/s/nodes/n1/var/openebs/sparse".into())
        );
        let ed = Volume {
            name: "sock".into(),
            empty_dir: Some(Default::default()),
            ..Default::default()
        };
        assert_eq!(
            volume_dir(&ed, node, pod),
            VolumeSource::Dir("/s/pods/p/sock".into())
        );
    }
}
