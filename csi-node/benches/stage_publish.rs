//! Prints how long NodeStage + NodePublish take on a ready (attached) device, next to the time
//! of mkfs alone on an equal device. Real loop devices, real mkfs/mount, in a private mount
//! namespace; iSCSI is the recorded iscsiadm of the tests. Run: `cargo bench -p cstor-csi-node`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::*;

const ROUNDS: usize = 3;

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

async fn one(fs: &str, size: u64) -> (Duration, Duration, Duration) {
    let h = Harness::new();
    // mkfs alone on a device of the same size.
    let lone = LoopDevice::new(&h.path("lone.img"), size);
    let mkfs = format!("mkfs.{fs}");
    let mut cmd = std::process::Command::new(&mkfs);
    if fs == "ext4" {
        cmd.args(["-F", "-m0"]);
    }
    let t = Instant::now();
    let out = cmd.arg(&lone.path).output().expect("mkfs");
    let mkfs_time = t.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(lone);

    let pv = format!("pvc-bench-{fs}");
    h.add_volume(&pv, size);
    let staging = h.mkdir("staging");
    h.mkdir("pod");
    let target = h.path("pod/mount");
    let t = Instant::now();
    h.driver
        .stage(stage_req(&pv, &staging, mount_cap(fs)))
        .await
        .expect("stage");
    h.driver
        .publish(publish_req(&pv, &staging, &target, mount_cap(fs), false))
        .await
        .expect("publish");
    let first = t.elapsed();
    h.driver
        .unpublish(unpublish_req(&pv, &target))
        .await
        .expect("unpublish");
    h.driver
        .unstage(unstage_req(&pv, &staging))
        .await
        .expect("unstage");
    // Again, now that the device holds a filesystem (fsck instead of mkfs).
    let t = Instant::now();
    h.driver
        .stage(stage_req(&pv, &staging, mount_cap(fs)))
        .await
        .expect("stage");
    h.driver
        .publish(publish_req(&pv, &staging, &target, mount_cap(fs), false))
        .await
        .expect("publish");
    let again = t.elapsed();
    h.driver
        .unpublish(unpublish_req(&pv, &target))
        .await
        .expect("unpublish");
    h.driver
        .unstage(unstage_req(&pv, &staging))
        .await
        .expect("unstage");
    (mkfs_time, first, again)
}

fn main() {
    // `cargo test --benches` runs this too; keep it to one quick round there.
    let rounds = if std::env::args().any(|a| a == "--bench") {
        ROUNDS
    } else {
        1
    };
    in_mount_ns(move || async move {
        println!(
            "{:<5} {:>8} {:>14} {:>26} {:>28}",
            "fs", "size", "mkfs alone", "stage+publish (formats)", "stage+publish (formatted)"
        );
        for (fs, size) in [("ext4", 320 * MIB), ("xfs", 320 * MIB)] {
            for _ in 0..rounds {
                let (mkfs, first, again) = one(fs, size).await;
                println!(
                    "{fs:<5} {:>6}Mi {:>14} {:>26} {:>28}",
                    size / MIB,
                    ms(mkfs),
                    ms(first),
                    ms(again)
                );
            }
        }
    });
}
