//! The system suite: the deployed system (deploy/ rendered and applied, every Pod run as
//! processes by the local node runtime) on the real cStor engine, through the whole story —
//! pools, a 3-replica volume, I/O through the target, resize, snapshots, restore, clone,
//! replica scale 3→2→3, a pool pod killed and rebuilt, deletion.
//!
//! API server: the embedded one, or the cluster of `CSTOR_TEST_KUBECONFIG` (its
//! controller-manager and scheduler must run). Engine: `target/cstor-real` (or `CSTOR_REAL_DIR`),
//! unpacked from `../shared/real`; without it the test says SKIPPED and why, unless
//! `CSTOR_REQUIRE_SHARED=1` (CI with ../shared present), which makes its absence a failure.
//! The same story on the engine stand-in (zfs-fuse pools, image-file zvols, Debian's istgt
//! serving the LUN) is `tests/system_standin.rs`.

mod common;

use cstor_local::cluster::real_dir;

#[test]
fn system_story_on_the_real_engine() {
    let Some(engine) = real_dir() else {
        let why = "the real cStor engine is not unpacked (CSTOR_REAL_DIR=target/cstor-real bash ../shared/real/unpack.sh)";
        if std::env::var(cstor_testkit::shared::REQUIRE_ENV).is_ok_and(|v| v == "1") {
            panic!("{}=1 but {why}", cstor_testkit::shared::REQUIRE_ENV);
        }
        println!("SKIPPED system_story_on_the_real_engine: {why}");
        return;
    };
    common::run_story(Some(engine), "target/cstor-local");
}
