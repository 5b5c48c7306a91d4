//! The real `iscsiadm` (open-iscsi) on this machine: its failure paths and its node database.
//!
//! On the project's machines there is no kernel initiator (no iscsi_tcp, no NETLINK_ISCSI), so
//! iscsid cannot run: discovery fails with 12, login with 20, and `-m session` answers 21. Where
//! a machine does have the kernel side (`/sys/class/iscsi_transport` exists) the exact codes are
//! not asserted, only that the failure is typed and nothing is left behind.
//!
//! Every test uses its own IQN/portal and removes what it created, also when it fails. The
//! tests skip (printing why) only when `iscsiadm` is not installed.

use std::{net::TcpListener, path::Path, sync::Arc, time::Duration};

use cstor_exec::{HostRunner, RecordingRunner, Runner};
use cstor_iscsi::{AttachOptions, Detached, Error, Iscsiadm, Logout, Portal, Target};

fn installed() -> bool {
    let found = std::process::Command::new("iscsiadm")
        .arg("--version")
        .output()
        .is_ok();
    if !found {
        eprintln!("SKIPPED: `iscsiadm` is not installed (apt-get install open-iscsi)");
    }
    found
}

/// No kernel initiator: iscsid cannot run and the tcp transport cannot load.
fn no_kernel_initiator() -> bool {
    !Path::new("/sys/class/iscsi_transport").exists()
}

fn unused_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn unique_target(test: &str) -> Target {
    let iqn = format!(
        "iqn.2016-09.com.openebs.cstor:cstor-rs-test-{}-{test}",
        std::process::id()
    );
    Target::with_default_iface(&iqn, &format!("127.0.0.1:{}", unused_port())).unwrap()
}

/// Deletes the node and discovery records of a test when it ends, whatever happened.
struct Cleanup(Target);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let p = self.0.portal.to_string();
        let _ = std::process::Command::new("iscsiadm")
            .args([
                "-m",
                "node",
                "-T",
                self.0.iqn.as_str(),
                "-p",
                &p,
                "-o",
                "delete",
            ])
            .output();
        let _ = std::process::Command::new("iscsiadm")
            .args([
                "-m",
                "discoverydb",
                "-t",
                "sendtargets",
                "-p",
                &p,
                "-o",
                "delete",
            ])
            .output();
    }
}

fn adm() -> (Iscsiadm, RecordingRunner) {
    let rec = RecordingRunner::new(Arc::new(HostRunner::new()));
    let adm = Iscsiadm::new(Arc::new(rec.clone())).with_timeout(Duration::from_secs(60));
    (adm, rec)
}

/// The calls that settled: a record-database command that another test's iscsiadm made fail
/// with exit 6 is retried by the wrapper, and only its last try counts here.
fn settled(rec: &RecordingRunner) -> Vec<(String, Option<i32>)> {
    rec.calls()
        .into_iter()
        .filter(|(_, code)| *code != Some(6))
        .map(|(cmd, code)| (cmd.line(), code))
        .collect()
}

fn settled_lines(rec: &RecordingRunner) -> Vec<String> {
    settled(rec).into_iter().map(|(line, _)| line).collect()
}

fn node_line(t: &Target, rest: &str) -> String {
    format!(
        "iscsiadm -m node -T {} -p {} -I default {rest}",
        t.iqn, t.portal
    )
}

#[tokio::test]
async fn discovery_against_an_unused_port_fails_typed_and_leaves_no_record() {
    if !installed() {
        return;
    }
    let t = unique_target("discovery");
    let _guard = Cleanup(t.clone());
    let (adm, rec) = adm();
    let err = adm.discover(&t.portal).await.unwrap_err();
    eprintln!("discovery error: {err}");
    assert!(
        err.code().is_some(),
        "an iscsiadm failure with its code: {err:?}"
    );
    assert!(err.message().unwrap().starts_with("iscsiadm:"), "{err:?}");
    if no_kernel_initiator() {
        assert!(matches!(err, Error::TransportMissing(_)), "{err:?}");
        assert_eq!(err.code(), Some(12));
        assert_eq!(
            err.message(),
            Some(
                "iscsiadm: iSCSI driver tcp is not loaded. Load the module then retry the command."
            )
        );
    }
    assert_eq!(
        settled_lines(&rec),
        vec![
            format!("iscsiadm -m discovery -t sendtargets -p {}", t.portal),
            format!(
                "iscsiadm -m discoverydb -t sendtargets -p {} -o delete",
                t.portal
            ),
        ]
    );
    // iscsiadm itself confirms the discovery record is gone (6: "Discovery record ... not found").
    let p = t.portal.to_string();
    let out = HostRunner::new()
        .run(&cstor_exec::Cmd::new("iscsiadm").args([
            "-m",
            "discoverydb",
            "-t",
            "sendtargets",
            "-p",
            &p,
            "-o",
            "show",
        ]))
        .await
        .unwrap();
    assert_ne!(
        out.code,
        Some(0),
        "discovery record left behind: {}",
        out.stdout
    );
}

#[tokio::test]
async fn no_sessions_is_an_empty_list() {
    if !installed() {
        return;
    }
    let has_sessions = std::fs::read_dir("/sys/class/iscsi_session")
        .map(|mut d| d.next().is_some())
        .unwrap_or(false);
    if has_sessions {
        eprintln!("this machine has iSCSI sessions: only checking that listing works");
    }
    let (adm, rec) = adm();
    let sessions = adm.sessions().await.unwrap();
    let details = adm.session_details().await.unwrap();
    if !has_sessions {
        assert!(sessions.is_empty(), "{sessions:?}");
        assert!(details.is_empty(), "{details:?}");
        // The real exit code was 21, and it was not an error.
        assert_eq!(settled(&rec)[0].1, Some(21));
        assert_eq!(settled(&rec)[1].1, Some(21));
    }
    let t = unique_target("nosession");
    assert!(adm.session_for(&t).await.unwrap().is_none());
}

#[tokio::test]
async fn logout_and_detach_when_not_logged_in_are_ok() {
    if !installed() {
        return;
    }
    let t = unique_target("logout");
    let _guard = Cleanup(t.clone());
    let (adm, rec) = adm();
    assert_eq!(adm.logout(&t).await.unwrap(), Logout::NotLoggedIn);
    assert_eq!(
        adm.detach(&t).await.unwrap(),
        Detached {
            logged_out: false,
            record_deleted: false
        }
    );
    let codes: Vec<_> = settled(&rec).into_iter().map(|(_, c)| c).collect();
    assert_eq!(codes, vec![Some(21), Some(21), Some(21)]);
    let err = adm.rescan_target(&t).await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
}

#[tokio::test]
async fn node_records_are_created_updated_and_deleted() {
    if !installed() {
        return;
    }
    let t = unique_target("nodedb");
    let _guard = Cleanup(t.clone());
    let (adm, rec) = adm();

    assert_eq!(adm.node_record(&t).await.unwrap(), None);
    let err = adm
        .node_update(&t, "node.startup", "manual")
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    assert_eq!(err.code(), Some(21));
    assert_eq!(err.message(), Some("iscsiadm: No records found"));

    adm.node_create(&t).await.unwrap();
    adm.node_update(&t, "node.startup", "manual").await.unwrap();
    adm.node_update(&t, "node.session.timeo.replacement_timeout", "77")
        .await
        .unwrap();
    let r = adm.node_record(&t).await.unwrap().expect("record exists");
    assert_eq!(r["node.name"], t.iqn.as_str());
    assert_eq!(r["node.startup"], "manual");
    assert_eq!(r["node.session.timeo.replacement_timeout"], "77");
    assert_eq!(r["node.conn[0].address"], "127.0.0.1");
    assert_eq!(r["node.conn[0].port"], t.portal.port.to_string());
    assert!(
        adm.nodes()
            .await
            .unwrap()
            .iter()
            .any(|n| n.iqn == t.iqn.as_str() && n.portal_addr() == Some(t.portal)),
        "record listed by -m node"
    );

    let err = adm.node_update(&t, "node.bogus", "1").await.unwrap_err();
    assert!(matches!(err, Error::Failed(_)), "{err:?}");
    assert_eq!(err.code(), Some(7));
    assert_eq!(
        err.message(),
        Some("iscsiadm: Cannot modify node.bogus. Invalid param name.")
    );

    assert!(adm.node_delete(&t).await.unwrap());
    assert!(
        !adm.node_delete(&t).await.unwrap(),
        "second delete is a no-op"
    );
    assert_eq!(adm.node_record(&t).await.unwrap(), None);
    assert!(settled_lines(&rec).contains(&node_line(&t, "-o new")));
}

#[tokio::test]
async fn attach_without_iscsid_fails_typed_and_removes_the_node_record() {
    if !installed() {
        return;
    }
    let t = unique_target("attach");
    let _guard = Cleanup(t.clone());
    let (adm, rec) = adm();
    let err = adm
        .attach(&t, 0, &AttachOptions::default())
        .await
        .unwrap_err();
    eprintln!("attach error: {err}");
    assert!(err.code().is_some(), "{err:?}");
    if no_kernel_initiator() {
        assert!(matches!(err, Error::DaemonUnavailable(_)), "{err:?}");
        assert_eq!(err.code(), Some(20));
        assert_eq!(
            err.message(),
            Some("iscsiadm: initiator reported error (20 - could not connect to iscsid)")
        );
        assert_eq!(
            settled_lines(&rec),
            vec![
                "iscsiadm -m session".to_string(),
                node_line(&t, "-o new"),
                node_line(&t, "-o update -n node.startup -v manual"),
                node_line(&t, "--login"),
                node_line(&t, "-o delete"),
            ]
        );
    }
    assert_eq!(
        adm.node_record(&t).await.unwrap(),
        None,
        "node record cleaned after the failed login"
    );
}

#[tokio::test]
async fn ipv6_portal_node_record_round_trip() {
    if !installed() {
        return;
    }
    let mut t = unique_target("v6");
    t.portal = Portal::parse(&format!("[::1]:{}", t.portal.port)).unwrap();
    let _guard = Cleanup(t.clone());
    let (adm, _) = adm();
    adm.node_create(&t).await.unwrap();
    let r = adm.node_record(&t).await.unwrap().expect("record");
    assert_eq!(r["node.conn[0].address"], "::1");
    assert!(adm.node_delete(&t).await.unwrap());
}
