//! The pod network: a bridge inside a network namespace of its own, and one network namespace
//! per Pod joined to it by a veth pair. Nothing is added to the machine's own namespace: every
//! address lives inside namespaces this runtime created, and they go away with it.

use std::{
    collections::BTreeMap, fs::File, net::Ipv4Addr, os::fd::AsFd, process::Command, sync::Mutex,
};

use anyhow::{Context, bail};

/// The Service range (as the real control plane's `--service-cluster-ip-range`).
pub const SERVICE_CIDR: &str = "10.96.0.0/16";

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip (iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The bridge and the namespaces attached to it.
#[derive(Debug)]
pub struct Network {
    prefix: String,
    bridge_ns: String,
    /// The first three octets of the pod /24.
    base: [u8; 3],
    state: Mutex<NetState>,
}

#[derive(Debug, Default)]
struct NetState {
    next: u8,
    /// netns name → (address, veth index)
    members: BTreeMap<String, (Ipv4Addr, u8)>,
}

impl Network {
    /// Creates the bridge namespace `<prefix>-br`. `prefix` must be short (interface and
    /// namespace names derive from it).
    pub fn create(prefix: &str) -> anyhow::Result<Network> {
        let bridge_ns = format!("{prefix}-br");
        let _ = ip(&["netns", "del", &bridge_ns]);
        ip(&["netns", "add", &bridge_ns])?;
        ip(&["-n", &bridge_ns, "link", "set", "lo", "up"])?;
        ip(&["-n", &bridge_ns, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &bridge_ns, "link", "set", "br0", "up"])?;
        Ok(Network {
            prefix: prefix.to_string(),
            bridge_ns,
            base: [10, 244, 0],
            state: Mutex::new(NetState {
                next: 2,
                ..Default::default()
            }),
        })
    }

    /// The pod subnet (`10.244.0.0/24`; private to the bridge namespace).
    pub fn host_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(self.base[0], self.base[1], self.base[2], 1)
    }

    /// Creates a network namespace on the bridge and returns its name and address.
    pub fn add(&self, label: &str) -> anyhow::Result<(String, Ipv4Addr)> {
        let (index, addr) = {
            let mut st = self.state.lock().unwrap();
            if st.next == 255 {
                bail!("the local pod network is full (253 namespaces)");
            }
            let i = st.next;
            st.next += 1;
            (
                i,
                Ipv4Addr::new(self.base[0], self.base[1], self.base[2], i),
            )
        };
        let ns = format!("{}-{index}", self.prefix);
        let _ = ip(&["netns", "del", &ns]);
        ip(&["netns", "add", &ns])?;
        let host_end = format!("v{index}");
        ip(&[
            "-n",
            &self.bridge_ns,
            "link",
            "add",
            &host_end,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &ns,
        ])?;
        ip(&[
            "-n",
            &self.bridge_ns,
            "link",
            "set",
            &host_end,
            "master",
            "br0",
            "up",
        ])?;
        for sysctl in [
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
        ] {
            let _ = Command::new("ip")
                .args(["netns", "exec", &ns, "sysctl", "-qw", sysctl])
                .status();
        }
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "eth0",
        ])?;
        ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        // Service addresses are carried by the pods that back them: reach them on the link.
        ip(&["-n", &ns, "route", "add", SERVICE_CIDR, "dev", "eth0"])?;
        self.state
            .lock()
            .unwrap()
            .members
            .insert(ns.clone(), (addr, index));
        tracing::debug!(netns = %ns, %addr, label, "network namespace ready");
        Ok((ns, addr))
    }

    /// Adds `addr` (a Service ClusterIP) to the namespace's interface.
    pub fn add_address(&self, ns: &str, addr: &str) -> anyhow::Result<()> {
        match ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("{addr}/32"),
            "dev",
            "eth0",
        ]) {
            Err(e) if e.to_string().contains("File exists") => Ok(()),
            other => other,
        }
    }

    /// Deletes a namespace created by [`Self::add`] (its veth pair goes with it).
    pub fn remove(&self, ns: &str) {
        if self.state.lock().unwrap().members.remove(ns).is_some() {
            let _ = ip(&["netns", "del", ns]);
        }
    }

    /// Deletes every namespace, the bridge's last (also done on drop; idempotent).
    pub fn teardown(&self) {
        let names: Vec<String> = self.state.lock().unwrap().members.keys().cloned().collect();
        for ns in names {
            self.remove(&ns);
        }
        if std::path::Path::new(&netns_path(&self.bridge_ns)).exists() {
            let _ = ip(&["netns", "del", &self.bridge_ns]);
        }
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// The path of a named network namespace.
pub fn netns_path(ns: &str) -> String {
    format!("/run/netns/{ns}")
}

/// Runs `f` on a thread that has entered network namespace `ns` (e.g. to bind a listening socket
/// there; the socket stays in that namespace).
pub fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    let file = File::open(netns_path(ns)).with_context(|| format!("opening netns {ns}"))?;
    let handle = std::thread::spawn(move || -> anyhow::Result<T> {
        nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
            .context("setns(CLONE_NEWNET)")?;
        Ok(f()?)
    });
    handle
        .join()
        .map_err(|_| anyhow::anyhow!("netns thread panicked"))?
}
