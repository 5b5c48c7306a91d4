//! One disk-count rule for raid groups: the admission webhook, the cspc-operator (its CSPC
//! validation) and the pool-manager's engine (before any `zpool` command) accept the same
//! counts and refuse the others with the same message.

use std::sync::Arc;

use cstor_api::{
    cstor::RaidGroupType,
    exec::{RecordingRunner, ScriptedRunner},
};
use cstor_operators::{
    cspc_operator::cspi::check_group,
    engine::{CstorEngine, DataEngine, PoolSpec, RaidGroup, RaidType},
    webhook::cspc::raid_group_disk_count_error,
};

/// What the engine says of one data raid group of `raid` with `n` disks: `None` when it went
/// on to run `zpool` (the scripted runner then refuses the unrecorded command), else the
/// validation message; and whether any command ran.
async fn engine_verdict(raid: RaidType, n: usize) -> (Option<String>, bool) {
    let rec = RecordingRunner::new(Arc::new(ScriptedRunner::new()));
    let engine = CstorEngine::new(Arc::new(rec.clone()));
    let disks: Vec<String> = (0..n).map(|i| format!("/dev/disk{i}")).collect();
    let spec = PoolSpec {
        name: "cstor-raid-rules".into(),
        data_groups: vec![RaidGroup::new(raid, disks)],
        write_cache_groups: vec![],
        compression: None,
        dev_dir: None,
    };
    let err = engine
        .create_pool(&spec)
        .await
        .expect_err("nothing is recorded");
    let ran = !rec.lines().is_empty();
    (if ran { None } else { Some(err.to_string()) }, ran)
}

#[tokio::test]
async fn webhook_cspc_operator_and_pool_manager_share_one_rule() {
    let types = [
        (RaidGroupType::Stripe, RaidType::Stripe),
        (RaidGroupType::Mirror, RaidType::Mirror),
        (RaidGroupType::Raidz, RaidType::Raidz),
        (RaidGroupType::Raidz2, RaidType::Raidz2),
    ];
    let mut accepted = Vec::new();
    for (group_type, raid) in types {
        for n in 0..=19 {
            let webhook = raid_group_disk_count_error(&group_type, n).map(str::to_owned);
            let operator = check_group(&group_type, n);
            assert_eq!(webhook, operator, "{group_type:?} with {n} disks");
            let (engine, ran) = engine_verdict(raid, n).await;
            match &webhook {
                None => assert!(
                    ran,
                    "{group_type:?} with {n} disks: the engine refused: {engine:?}"
                ),
                Some(msg) => {
                    let engine = engine.unwrap_or_default();
                    assert!(
                        engine.contains(msg.as_str()),
                        "{group_type:?} with {n} disks: webhook says {msg:?}, engine {engine:?}"
                    );
                }
            }
            if webhook.is_none() {
                accepted.push(format!("{}:{n}", raid.as_str()));
            }
        }
    }
    // Upstream's rule, spelled out: any stripe, even mirrors, raidz 2^n+1, raidz2 2^n+2 (n>1).
    let expected: Vec<String> = [
        (1..=19).map(|n| format!("stripe:{n}")).collect::<Vec<_>>(),
        [2, 4, 6, 8, 10, 12, 14, 16, 18]
            .iter()
            .map(|n| format!("mirror:{n}"))
            .collect(),
        [3, 5, 9, 17].iter().map(|n| format!("raidz:{n}")).collect(),
        [6, 10, 18].iter().map(|n| format!("raidz2:{n}")).collect(),
    ]
    .concat();
    assert_eq!(accepted, expected);
}
