//! Fuzzing the engine's parsers: arbitrary text and mutated real outputs must give a value or
//! a typed error, never a panic.

use std::sync::Arc;

use cstor_api::exec::{Output, ScriptedRunner};
use cstor_operators::engine::*;
use proptest::prelude::*;

const FIXTURES: [&str; 10] = [
    "zpool-dump-healthy.json",
    "zpool-dump-replacing.json",
    "zpool-dump-resilvered.json",
    "zpool-dump-raidz-faulted-sparse.json",
    "zpool-status-openzfs-resilvering.txt",
    "zpool-status-zfs-fuse-resilvered.txt",
    "zfs-stats.json",
    "zfs-listsnap.json",
    "zfs-get-replica-capacity.txt",
    "zpool-import-listing.txt",
];

fn fixture(name: &str) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/engine/").to_string() + name;
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read fixture {path}: {e}"))
}

fn parse_everything(text: &str) {
    let _ = parse_dump(text);
    if let Ok(topo) = parse_status(text) {
        // Walking a parsed tree must not panic either.
        let _ = topo.leaves();
        let _ = topo.unhealthy_leaves();
        let _ = topo.resilver_progress("/dev/sdb");
    }
    let _ = parse_stats(text);
    let _ = parse_listsnap(text);
    let _ = parse_import_listing(text);
    let _ = parse_scan_text(text);
    for word in text.split_whitespace().take(64) {
        let _ = parse_size(word);
        let _ = strip_partition_suffix(word);
    }
}

#[derive(Clone, Debug)]
enum Mutation {
    Delete { at: usize, len: usize },
    Insert { at: usize, text: String },
    Truncate { at: usize },
    Duplicate { at: usize, len: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1usize..40).prop_map(|(at, len)| Mutation::Delete { at, len }),
        (any::<usize>(), "[\\PC\t\n{}\\[\\]\":,0-9-]{1,12}")
            .prop_map(|(at, text)| Mutation::Insert { at, text }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        (any::<usize>(), 1usize..200).prop_map(|(at, len)| Mutation::Duplicate { at, len }),
    ]
}

fn char_floor(s: &str, i: usize) -> usize {
    let mut i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn apply(mut s: String, muts: &[Mutation]) -> String {
    for m in muts {
        let n = s.len().max(1);
        match m {
            Mutation::Delete { at, len } => {
                let a = char_floor(&s, at % n);
                let b = char_floor(&s, a + len);
                s.replace_range(a..b, "");
            }
            Mutation::Insert { at, text } => {
                let a = char_floor(&s, at % n);
                s.insert_str(a, text);
            }
            Mutation::Truncate { at } => {
                let a = char_floor(&s, at % n);
                s.truncate(a);
            }
            Mutation::Duplicate { at, len } => {
                let a = char_floor(&s, at % n);
                let b = char_floor(&s, a + len);
                let piece = s[a..b].to_string();
                s.insert_str(b, &piece);
            }
        }
    }
    s
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC*") {
        parse_everything(&text);
    }

    #[test]
    fn structured_noise_never_panics(text in "[ \t\n{}\\[\\]\":,a-z0-9_/.-]{0,400}") {
        parse_everything(&text);
    }

    #[test]
    fn mutated_real_outputs_never_panic(which in 0..FIXTURES.len(), muts in prop::collection::vec(mutation(), 1..6)) {
        parse_everything(&apply(fixture(FIXTURES[which]), &muts));
    }

    #[test]
    fn whole_byte_counts_round_trip(n in any::<u64>()) {
        prop_assert_eq!(parse_size(&n.to_string()), Ok(Some(n)));
    }

    #[test]
    fn unit_sizes_scale_by_1024(n in 0u64..(1 << 20), unit in 0usize..5) {
        let letters = ["K", "M", "G", "T", "P"];
        let want = n.checked_mul(1u64 << (10 * (unit + 1)));
        let got = parse_size(&format!("{n}{}", letters[unit]));
        match want {
            Some(w) => prop_assert_eq!(got, Ok(Some(w))),
            None => prop_assert!(got.is_err()),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Whatever a command prints, with whatever exit code, the engine answers with a value or
    /// a typed error.
    #[test]
    fn engine_methods_survive_any_output(stdout in "\\PC{0,300}", stderr in "\\PC{0,100}", code in prop_oneof![Just(0), Just(1), Just(2), Just(11), any::<i32>()]) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let s = ScriptedRunner::new();
            let out = Output { code: Some(code), stdout: stdout.clone(), stderr: stderr.clone() };
            s.on(move |_| Some(Ok(out.clone())));
            let e = CstorEngine::new(Arc::new(s));
            let _ = e.pool_exists("p").await;
            let _ = e.list_pools().await;
            let _ = e.pool_health("p").await;
            let _ = e.pool_capacity("p").await;
            let _ = e.pool_topology("p").await;
            let _ = e.importable_pools(None).await;
            let _ = e.import_pool(&ImportRequest { pool: "p".into(), existing_name: Some("q".into()), dev_dir: None }).await;
            let _ = e.get_properties("p/v", &["used", "io.openebs:targetip"]).await;
            let _ = e.replica_stats(None).await;
            let _ = e.list_snapshots("p/v").await;
            let _ = e.snapshot_sizes("p/v", "s").await;
            let _ = e.replica_capacity("p/v").await;
            let _ = e.destroy_dataset("p/v").await;
            let _ = e.provisioned_replicas("p").await;
        });
    }
}
