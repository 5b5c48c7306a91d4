//! Which program runs for a container image, as the image's entrypoint would.
//!
//! - our images (`cstor-rs`, `cstor-rs-volume-manager`, `cstor-rs-pool-manager`): our binaries,
//!   with the container's command (the images put every binary on `PATH`; the volume-manager and
//!   pool-manager images default to their binary);
//! - `cstor-pool`: the cStor engine's `zrepl` (the image's entrypoint runs it in the foreground);
//! - `cstor-istgt`: the engine's `istgt` in the foreground, as the image's entrypoint starts it:
//!   from a default configuration without a logical unit when `istgt.conf` is absent (the
//!   volume-manager writes the volume's and sends `REFRESH`), with empty `auth.conf` and
//!   `logfile`, and `externalIP=0.0.0.0` (the replica management listener on every address of
//!   the pod, the Service address included);
//! - without the engine, the stand-in of [`crate::standin`]: `cstor-pool` is a `zfs-fuse` daemon
//!   of the Pod's own (private `/var/run/zfs`, `/var/lock/zfs`, `/var/lib/zfs`, shared by the
//!   Pod's pool containers), the pool manager's `zfs` is the zvol shim with the node's store,
//!   and `cstor-istgt` is the target stand-in;
//! - everything else (exporters, the CSI sidecars, which need a kubelet's plugin registration
//!   or the cluster's DNS) is reported and skipped.

use std::path::{Path, PathBuf};

/// The configuration the target image starts from: global settings and the control portal, no
/// logical unit yet.
pub const DEFAULT_ISTGT_CONF: &str = "[Global]
  NodeBase \"iqn.2016-09.com.openebs.cstor\"
  PidFile \"/var/run/istgt.pid\"
  AuthFile \"/usr/local/etc/istgt/auth.conf\"
  LogFile \"/usr/local/etc/istgt/logfile\"
  Luworkers 6
  MediaDirectory \"/mnt\"
  Timeout 60
  NopInInterval 20
  TCPUserTimeout 120
  MaxR2T 16
  DiscoveryAuthMethod None
  DiscoveryAuthGroup None
  MaxSessions 32
  MaxConnections 4
  FirstBurstLength 262144
  MaxBurstLength 1048576
  MaxRecvDataSegmentLength 262144
  MaxOutstandingR2T 16
  DefaultTime2Wait 2
  DefaultTime2Retain 20
  OperationalMode 0

[UnitControl]
  AuthMethod None
  AuthGroup None
  Portal UC1 127.0.0.1:3261
  Netmask 127.0.0.1/8
";

/// Where programs come from.
#[derive(Clone, Debug)]
pub struct Programs {
    /// Our binaries (`target/<profile>`).
    pub bin_dir: PathBuf,
    /// The cStor engine (`bin/zrepl`, `bin/istgt`, `bin/zpool`, `bin/zfs`, ...), when present.
    pub engine_dir: Option<PathBuf>,
    /// The CSI sidecars (`csi-provisioner`, `csi-resizer`, `csi-snapshotter`), when present and
    /// the API server is a real one (they speak protobuf and use the in-cluster configuration).
    pub sidecar_dir: Option<PathBuf>,
    /// The engine stand-in, used when `engine_dir` is `None`.
    pub standin: Option<StandIn>,
}

/// Name/value pairs.
type Pairs = Vec<(String, String)>;

/// Where the engine stand-in keeps its things.
#[derive(Clone, Debug)]
pub struct StandIn {
    /// A directory with `zfs` → our zvol shim (put first on the pool manager's `PATH`).
    pub shim_dir: PathBuf,
    /// The node directories (each node's store is `<node>/cstor-standin`).
    pub nodes_dir: PathBuf,
    /// The targets' LUN images.
    pub luns_dir: PathBuf,
}

/// The directories a stand-in pool Pod's `zfs-fuse` keeps to itself (Pod directory name →
/// container path), bound in both of the Pod's pool containers.
pub const ZFS_FUSE_DIRS: [(&str, &str); 3] = [
    ("zfs-fuse-run", "/var/run/zfs"),
    ("zfs-fuse-lock", "/var/lock/zfs"),
    ("zfs-fuse-lib", "/var/lib/zfs"),
];

impl StandIn {
    /// Creates the shim directory (`zfs` and `zpool` → `<bin_dir>/cstor-standin-zfs`).
    pub fn prepare(state_dir: &Path, bin_dir: &Path, nodes_dir: &Path) -> std::io::Result<Self> {
        let shim_dir = state_dir.join("standin-bin");
        std::fs::create_dir_all(&shim_dir)?;
        // The shim is the pool manager's `zfs` and `zpool` (for a renaming import).
        for name in ["zfs", "zpool"] {
            let link = shim_dir.join(name);
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(bin_dir.join(crate::standin::ZFS_SHIM), &link)?;
        }
        Ok(Self {
            shim_dir,
            nodes_dir: nodes_dir.to_path_buf(),
            luns_dir: state_dir.join("standin-luns"),
        })
    }
}

/// How a container is started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Launch {
    Run {
        program: PathBuf,
        args: Vec<String>,
        /// Added to the container's environment.
        env: Vec<(String, String)>,
        /// Files the image's entrypoint creates when they are absent (container path, content).
        defaults: Vec<(String, String)>,
        /// Directories put first on `PATH`.
        path: Vec<PathBuf>,
        /// Directories of the Pod (name below the Pod's directory) bound at container paths.
        pod_dirs: Vec<(String, String)>,
        /// Variables set to a path below the node's directory (name, relative path).
        node_env: Vec<(String, String)>,
    },
    Skip(String),
}

/// The repository name of an image (`registry/org/name:tag@digest` → `name`).
pub fn image_name(image: &str) -> &str {
    let no_digest = image.split('@').next().unwrap_or(image);
    let last = no_digest.rsplit('/').next().unwrap_or(no_digest);
    last.split(':').next().unwrap_or(last)
}

impl Programs {
    fn ours(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }

    fn engine(&self, name: &str) -> Result<PathBuf, String> {
        match &self.engine_dir {
            Some(d) if d.join("bin").join(name).exists() => Ok(d.join("bin").join(name)),
            Some(d) => Err(format!("{} has no bin/{name}", d.display())),
            None => Err("no cStor engine configured (--engine-dir)".into()),
        }
    }

    fn engine_path(&self) -> Vec<PathBuf> {
        match (&self.engine_dir, &self.standin) {
            (Some(d), _) => vec![d.join("bin")],
            (None, Some(s)) => vec![s.shim_dir.clone()],
            (None, None) => vec![],
        }
    }

    /// The stand-in, when the engine is absent.
    fn standin(&self) -> Option<&StandIn> {
        self.engine_dir.is_none().then_some(self.standin.as_ref())?
    }

    /// The stand-in pool containers' private zfs-fuse directories and store variable.
    fn pool_standin(&self) -> (Pairs, Pairs) {
        if self.standin().is_none() {
            return (vec![], vec![]);
        }
        (
            ZFS_FUSE_DIRS
                .iter()
                .map(|(d, t)| (d.to_string(), t.to_string()))
                .collect(),
            vec![(
                crate::standin::STORE_ENV.to_string(),
                crate::standin::STORE_DIR.to_string(),
            )],
        )
    }

    /// How to run a container of `image` with the (expanded) `command` and `args`.
    pub fn launch(
        &self,
        image: &str,
        command: Option<Vec<String>>,
        args: Option<Vec<String>>,
    ) -> Launch {
        let name = image_name(image);
        let ours = |default: Option<&str>| {
            let argv: Vec<String> = match (&command, default) {
                (Some(c), _) => c.iter().chain(args.iter().flatten()).cloned().collect(),
                (None, Some(d)) => std::iter::once(d.to_string())
                    .chain(args.iter().flatten().cloned())
                    .collect(),
                (None, None) => {
                    return Launch::Skip(format!(
                        "image {image} has no default command; the container must name one"
                    ));
                }
            };
            let program = if argv[0].contains('/') {
                self.ours(
                    Path::new(&argv[0])
                        .file_name()
                        .and_then(|f| f.to_str())
                        .unwrap_or(""),
                )
            } else {
                self.ours(&argv[0])
            };
            if !program.exists() {
                return Launch::Skip(format!(
                    "{} is not built (cargo build --workspace)",
                    program.display()
                ));
            }
            let (pod_dirs, node_env) = if name == "cstor-rs-pool-manager" {
                self.pool_standin()
            } else {
                (vec![], vec![])
            };
            Launch::Run {
                program,
                args: argv[1..].to_vec(),
                env: vec![],
                defaults: vec![],
                path: [self.engine_path(), vec![self.bin_dir.clone()]].concat(),
                pod_dirs,
                node_env,
            }
        };
        match name {
            "cstor-rs" => ours(None),
            "cstor-rs-volume-manager" => ours(Some("volume-manager")),
            "cstor-rs-pool-manager" => ours(Some("pool-manager")),
            "cstor-pool" if self.standin().is_some() => {
                let (pod_dirs, node_env) = self.pool_standin();
                Launch::Run {
                    program: PathBuf::from("/usr/sbin/zfs-fuse"),
                    args: [
                        "-n",
                        "--no-kstat-mount",
                        "-m",
                        "128",
                        "-p",
                        "/var/run/zfs/zfs-fuse.pid",
                    ]
                    .map(String::from)
                    .to_vec(),
                    env: vec![],
                    defaults: vec![],
                    path: vec![],
                    pod_dirs,
                    node_env,
                }
            }
            "cstor-istgt" if let Some(s) = self.standin() => Launch::Run {
                program: self.ours(crate::standin::ISTGT_SHIM),
                args: vec![],
                env: vec![
                    (
                        crate::standin::NODES_ENV.into(),
                        s.nodes_dir.to_string_lossy().into_owned(),
                    ),
                    (
                        crate::standin::LUNS_ENV.into(),
                        s.luns_dir.to_string_lossy().into_owned(),
                    ),
                ],
                defaults: vec![],
                path: vec![],
                pod_dirs: vec![],
                node_env: vec![],
            },
            "cstor-pool" => match self.engine("zrepl") {
                Ok(p) => Launch::Run {
                    program: p,
                    args: args.unwrap_or_default(),
                    env: vec![],
                    defaults: vec![],
                    path: self.engine_path(),
                    pod_dirs: vec![],
                    node_env: vec![],
                },
                Err(e) => Launch::Skip(e),
            },
            "cstor-istgt" => match self.engine("istgt") {
                Ok(p) => Launch::Run {
                    program: p,
                    // The image's istgt reads /usr/local/etc/istgt/istgt.conf by default; this build
                    // was configured with another prefix, so the path is given.
                    args: vec![
                        "-D".into(),
                        "-c".into(),
                        "/usr/local/etc/istgt/istgt.conf".into(),
                    ],
                    env: vec![
                        ("externalIP".into(), "0.0.0.0".into()),
                        ("IO_MAX_WAIT_TIME".into(), "120".into()),
                    ],
                    defaults: vec![
                        (
                            "/usr/local/etc/istgt/istgt.conf".into(),
                            DEFAULT_ISTGT_CONF.into(),
                        ),
                        ("/usr/local/etc/istgt/auth.conf".into(), String::new()),
                        ("/usr/local/etc/istgt/logfile".into(), String::new()),
                    ],
                    path: self.engine_path(),
                    pod_dirs: vec![],
                    node_env: vec![],
                },
                Err(e) => Launch::Skip(e),
            },
            "m-exporter" => Launch::Skip("metrics exporter image: not run locally".into()),
            "cstor-pool-mgmt" | "cstor-volume-mgmt" => Launch::Skip(
                "legacy (pre-CSI) management image: its control plane is not among the parts run locally".into(),
            ),
            n @ ("csi-provisioner" | "csi-resizer" | "csi-snapshotter")
                if self
                    .sidecar_dir
                    .as_ref()
                    .is_some_and(|d| d.join(n).exists()) =>
            {
                let dir = self.sidecar_dir.clone().unwrap_or_default();
                let argv: Vec<String> = command
                    .into_iter()
                    .flatten()
                    .skip(1)
                    .chain(args.into_iter().flatten())
                    .collect();
                Launch::Run {
                    program: dir.join(n),
                    args: argv,
                    env: vec![],
                    defaults: vec![],
                    path: vec![],
                    pod_dirs: vec![],
                    node_env: vec![],
                }
            }
            n if n.starts_with("csi-") || n == "livenessprobe" || n == "snapshot-controller" => {
                Launch::Skip(format!(
                    "CSI sidecar {n}: not run here (node sidecars need a kubelet's plugin registration; controller sidecars need a real API server and ../shared/real's binaries)"
                ))
            }
            _ => Launch::Skip(format!("image {image} is not known to the local runtime")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names() {
        assert_eq!(image_name("cstor-rs:0.1.0"), "cstor-rs");
        assert_eq!(
            image_name("docker.io/openebs/cstor-pool:3.6.0"),
            "cstor-pool"
        );
        assert_eq!(
            image_name("registry.k8s.io/sig-storage/csi-resizer:v1.8.0"),
            "csi-resizer"
        );
        assert_eq!(image_name("r:5000/x/y@sha256:abc"), "y");
    }

    #[test]
    fn our_images_run_the_named_binary_with_exact_args() {
        let dir = std::env::temp_dir().join(format!("cstor-local-img-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cvc-operator"), "").unwrap();
        let p = Programs {
            bin_dir: dir.clone(),
            engine_dir: None,
            sidecar_dir: None,
            standin: None,
        };
        let l = p.launch(
            "cstor-rs:0.1.0",
            Some(vec!["cvc-operator".into()]),
            Some(vec!["--leader-election=false".into()]),
        );
        match l {
            Launch::Run { program, args, .. } => {
                assert_eq!(program, dir.join("cvc-operator"));
                assert_eq!(args, vec!["--leader-election=false"]);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            p.launch("cstor-rs:0.1.0", Some(vec!["nope".into()]), None),
            Launch::Skip(_)
        ));
        assert!(matches!(
            p.launch("openebs/cstor-pool:3.6.0", None, None),
            Launch::Skip(_)
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
