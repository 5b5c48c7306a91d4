//! Building blocks of the scenarios: CSI requests, waits with deadlines, file checks, and
//! [`run`], which runs a scenario in its own mount namespace and always cleans up.

use std::{
    collections::HashMap,
    future::Future,
    io::Write,
    panic::AssertUnwindSafe,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use cstor_api::{
    cstor::{CStorVolumeConfig, CStorVolumeConfigPhase},
    proto::csi::v1::{
        CapacityRange, NodePublishVolumeRequest, NodeStageVolumeRequest,
        NodeUnpublishVolumeRequest, NodeUnstageVolumeRequest, VolumeCapability,
        volume_capability::{AccessMode, AccessType, MountVolume, access_mode::Mode},
    },
};
use cstor_testkit::wait_until;
use futures::FutureExt;
use kube::{Api, ResourceExt, api::ListParams};

use crate::{DEADLINE, Harness, in_mount_ns, init_tracing, zfs_fuse::ensure_zfs_fuse};

pub const GIB: i64 = 1 << 30;
/// The CSPC of the scenarios.
pub const CSPC: &str = "cspc-e2e";

pub fn xfs(flags: &[&str]) -> VolumeCapability {
    VolumeCapability {
        access_mode: Some(AccessMode {
            mode: Mode::SingleNodeWriter as i32,
        }),
        access_type: Some(AccessType::Mount(MountVolume {
            fs_type: "xfs".into(),
            mount_flags: flags.iter().map(|f| f.to_string()).collect(),
            volume_mount_group: String::new(),
        })),
    }
}

pub fn params(replicas: &str) -> HashMap<String, String> {
    [
        ("cstorPoolCluster", CSPC),
        ("replicaCount", replicas),
        ("cas-type", "cstor"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

pub fn range(bytes: i64) -> Option<CapacityRange> {
    Some(CapacityRange {
        required_bytes: bytes,
        limit_bytes: 0,
    })
}

/// Deterministic, incompressible-looking bytes.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub fn write_synced(path: &Path, data: &[u8]) {
    let mut f = std::fs::File::create(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    f.write_all(data).expect("write");
    f.sync_all().expect("fsync");
}

pub fn fs_size(path: &Path) -> u64 {
    let st = nix::sys::statvfs::statvfs(path).expect("statvfs");
    st.blocks() * st.fragment_size()
}

pub fn mount_points_under(dir: &Path) -> Vec<PathBuf> {
    cstor_csi_node::mount_table::MountTable::read()
        .expect("mount table")
        .mounts
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|p| p.starts_with(dir))
        .collect()
}

pub fn step(t0: Instant, what: &str) {
    eprintln!("[{:>6.1}s] {what}", t0.elapsed().as_secs_f64());
}

pub async fn wait<T, F, Fut>(what: &str, f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    wait_until(what, DEADLINE, f)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

pub async fn wait_gone<K>(api: &Api<K>, what: &str, selector: Option<String>)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let lp = match &selector {
        Some(s) => ListParams::default().labels(s),
        None => ListParams::default(),
    };
    let res = wait_until(what, DEADLINE, || async {
        api.list(&lp).await.is_ok_and(|l| l.items.is_empty())
    })
    .await;
    if let Err(e) = res {
        let left: Vec<String> = api
            .list(&lp)
            .await
            .map(|l| l.items.iter().map(|o| o.name_any()).collect())
            .unwrap_or_default();
        panic!("{e}; still there: {left:?}");
    }
}

pub async fn cvc_bound(h: &Harness, pv: &str) -> CStorVolumeConfig {
    let cvcs: Api<CStorVolumeConfig> = h.api();
    wait(&format!("CVC {pv} Bound"), || async {
        cvcs.get_opt(pv)
            .await
            .ok()
            .flatten()
            .filter(|c| c.status.phase == Some(CStorVolumeConfigPhase::Bound))
    })
    .await
}

pub async fn stage_and_publish(h: &Harness, pv: &str, cap: VolumeCapability) -> (PathBuf, PathBuf) {
    let mut node = h.node.clone();
    let staging = h
        .dir
        .path()
        .join(format!("kubelet/plugins/{pv}/globalmount"));
    let target = h
        .dir
        .path()
        .join(format!("kubelet/pods/app/volumes/{pv}/mount"));
    std::fs::create_dir_all(&staging).expect("staging dir");
    std::fs::create_dir_all(&target).expect("target dir");
    node.node_stage_volume(NodeStageVolumeRequest {
        volume_id: pv.into(),
        staging_target_path: staging.display().to_string(),
        volume_capability: Some(cap.clone()),
        ..Default::default()
    })
    .await
    .unwrap_or_else(|s| panic!("NodeStageVolume {pv}: {s:?}"));
    node.node_publish_volume(NodePublishVolumeRequest {
        volume_id: pv.into(),
        staging_target_path: staging.display().to_string(),
        target_path: target.display().to_string(),
        volume_capability: Some(cap),
        readonly: false,
        ..Default::default()
    })
    .await
    .unwrap_or_else(|s| panic!("NodePublishVolume {pv}: {s:?}"));
    let mounts = mount_points_under(h.dir.path());
    assert!(
        mounts.contains(&staging) && mounts.contains(&target),
        "{pv} is staged and published: {mounts:?}"
    );
    (staging, target)
}

pub async fn unpublish_and_unstage(h: &Harness, pv: &str, staging: &Path, target: &Path) {
    let mut node = h.node.clone();
    node.node_unpublish_volume(NodeUnpublishVolumeRequest {
        volume_id: pv.into(),
        target_path: target.display().to_string(),
    })
    .await
    .unwrap_or_else(|s| panic!("NodeUnpublishVolume {pv}: {s:?}"));
    node.node_unstage_volume(NodeUnstageVolumeRequest {
        volume_id: pv.into(),
        staging_target_path: staging.display().to_string(),
    })
    .await
    .unwrap_or_else(|s| panic!("NodeUnstageVolume {pv}: {s:?}"));
}

/// Runs `scenario` on a fresh [`Harness`] with `nodes` nodes, in a private mount namespace,
/// within `limit`; the harness is cleaned up whatever happens. Panics when zfs-fuse is missing.
pub fn run<F>(name: &str, nodes: usize, limit: Duration, scenario: F)
where
    F: for<'a> FnOnce(&'a Harness) -> std::pin::Pin<Box<dyn Future<Output = ()> + 'a>>
        + Send
        + 'static,
{
    init_tracing();
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(ensure_zfs_fuse())
        .unwrap_or_else(|why| panic!("the e2e suite needs zfs-fuse: {why}"));
    let t0 = Instant::now();
    in_mount_ns(move || async move {
        let h = Harness::start(nodes).await;
        let result = AssertUnwindSafe(tokio::time::timeout(limit, scenario(&h)))
            .catch_unwind()
            .await;
        h.cleanup().await;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(_)) => panic!("the scenario did not finish within {limit:?}"),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    });
    eprintln!("{name} took {:.1}s", t0.elapsed().as_secs_f64());
}
