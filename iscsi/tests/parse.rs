//! Parsers against recorded iscsiadm outputs, and a fuzz test that they never panic.

use cstor_iscsi::{
    Portal, Target,
    error::iscsiadm_message,
    parse::{parse_portal_targets, parse_record, parse_session_details, parse_sessions},
};
use proptest::prelude::*;

const P0: &str = include_str!("fixtures/session-p0.txt");
const P3: &str = include_str!("fixtures/session-p3.txt");
const DISCOVERY: &str = include_str!("fixtures/discovery.txt");

#[test]
fn session_list_is_parsed_into_types() {
    let s = parse_sessions(P0);
    assert_eq!(s.len(), 3);
    assert_eq!(s[0].sid, 1);
    assert_eq!(s[0].transport, "tcp");
    assert_eq!(s[0].portal, "10.96.12.7:3260");
    assert_eq!(s[0].tpgt, 1);
    assert_eq!(s[0].iqn, "iqn.2016-09.com.openebs.cstor:pvc-0a1b2c3d");
    assert_eq!(s[0].flash, Some(false));
    assert_eq!(s[2].sid, 3);
    assert_eq!(
        s[2].portal_addr(),
        Some(Portal::parse("[fd00::10]:3260").unwrap())
    );

    let t = Target::with_default_iface(
        "iqn.2016-09.com.openebs.cstor:pvc-0a1b2c3d",
        "10.96.12.7:3260",
    )
    .unwrap();
    assert!(s[0].is_for(&t));
    assert!(!s[1].is_for(&t));
    let other_port = Target::with_default_iface(
        "iqn.2016-09.com.openebs.cstor:pvc-0a1b2c3d",
        "10.96.12.7:3261",
    )
    .unwrap();
    assert!(!s[0].is_for(&other_port));
}

#[test]
fn p3_details_carry_states_ifaces_and_disks() {
    let d = parse_session_details(P3);
    assert_eq!(d.len(), 3, "{d:#?}");

    let s1 = &d[0];
    assert_eq!(s1.sid, 1);
    assert_eq!(s1.iqn, "iqn.2016-09.com.openebs.cstor:pvc-0a1b2c3d");
    assert_eq!(s1.flash, Some(false));
    assert_eq!(s1.current_portal.as_deref(), Some("10.96.12.7:3260"));
    assert_eq!(s1.persistent_portal.as_deref(), Some("10.96.12.7:3260"));
    assert_eq!(s1.tpgt, Some(1));
    assert_eq!(s1.iface_name.as_deref(), Some("default"));
    assert_eq!(s1.iface_transport.as_deref(), Some("tcp"));
    assert_eq!(
        s1.iface_initiator_name.as_deref(),
        Some("iqn.1993-08.org.debian:01:3273fb0fb40")
    );
    assert_eq!(s1.iface_ip.as_deref(), Some("172.18.0.3"));
    assert_eq!(s1.connection_state.as_deref(), Some("LOGGED IN"));
    assert_eq!(s1.session_state.as_deref(), Some("LOGGED_IN"));
    assert_eq!(s1.host_number, Some(2));
    assert_eq!(s1.host_state.as_deref(), Some("running"));
    assert_eq!(s1.devices.len(), 1);
    assert_eq!(s1.devices[0].lun, 0);
    assert_eq!(s1.devices[0].host, 2);
    assert_eq!(s1.disk_for_lun(0), Some("sdb"));
    assert_eq!(s1.devices[0].state.as_deref(), Some("running"));

    let s2 = &d[1];
    assert_eq!(s2.sid, 2);
    assert_eq!(s2.persistent_portal.as_deref(), Some("[fd00::10]:3260"));
    assert_eq!(s2.session_state.as_deref(), Some("FAILED"));
    assert_eq!(s2.connection_state.as_deref(), Some("TRANSPORT WAIT"));
    assert_eq!(s2.devices.len(), 2);
    assert_eq!(s2.disk_for_lun(0), None, "LUN 0 of tgt is the controller");
    assert_eq!(s2.disk_for_lun(1), Some("sdc"));
    assert_eq!(s2.devices[1].state.as_deref(), Some("transport-offline"));

    // iscsiadm prints no portal lines for a second session to the same portal.
    let s3 = &d[2];
    assert_eq!(s3.sid, 3);
    assert_eq!(s3.iqn, "iqn.2001-04.com.example:storage.disk1");
    assert_eq!(s3.persistent_portal.as_deref(), Some("[fd00::10]:3260"));
    assert_eq!(s3.iface_name.as_deref(), Some("iface1"));
    assert_eq!(s3.iface_ip.as_deref(), Some("fd00::4"));
    assert_eq!(s3.disk_for_lun(1), Some("sdd"));
}

#[test]
fn discovery_output_is_parsed() {
    let t = parse_portal_targets(DISCOVERY);
    assert_eq!(t.len(), 3);
    assert_eq!(t[0].portal, "127.0.0.1:3270");
    assert_eq!(t[0].tpgt, 1);
    assert_eq!(t[0].iqn, "iqn.2016-09.com.openebs.cstor:tgtdisk1");
    assert_eq!(t[1].iqn, "iqn.2016-09.com.openebs.cstor:tgtdisk2");
    assert_eq!(
        t[2].portal_addr(),
        Some(Portal::parse("[::1]:3260").unwrap())
    );
    // `iscsiadm -m node` lists hand-made records with tpgt -1 printed unsigned.
    let n =
        parse_portal_targets("127.0.0.1:39171,4294967295 iqn.2016-09.com.openebs.cstor:probe-x1\n");
    assert_eq!(n[0].tpgt, 4_294_967_295);
}

#[test]
fn recorded_messages_of_this_machine() {
    // Real `iscsiadm -m node -T ... -p ... -o update -n node.bogus -v manual` (rc 7).
    assert_eq!(
        iscsiadm_message(
            "System has not been booted with systemd as init system (PID 1). Can't operate.\n\
             Failed to connect to bus: Host is down\n\
             iscsiadm: can not connect to iSCSI daemon (111)!\n\
             iscsiadm: Cannot modify node.bogus. Invalid param name.\n\
             iscsiadm: Could not execute operation on all records: invalid parameter\n",
            ""
        ),
        "iscsiadm: Cannot modify node.bogus. Invalid param name."
    );
    assert_eq!(
        iscsiadm_message("iscsiadm: No matching sessions found\n", ""),
        "iscsiadm: No matching sessions found"
    );
}

#[test]
fn empty_and_noise_inputs_give_nothing() {
    assert!(parse_sessions("iscsiadm: No active sessions.\n").is_empty());
    assert!(parse_session_details("iscsiadm: No active sessions.\n").is_empty());
    assert!(parse_portal_targets("").is_empty());
    // A SID before any Target line has no IQN: skipped, not invented.
    assert!(parse_session_details("\t\tSID: 4\n").is_empty());
}

fn any_text() -> impl Strategy<Value = String> {
    // Mix arbitrary unicode with fragments of real output so the parsers' branches are reached.
    let fragment = prop_oneof![
        any::<String>(),
        Just("Target: ".to_string()),
        Just("SID: ".to_string()),
        Just("Current Portal: ".to_string()),
        Just("Persistent Portal: ".to_string()),
        Just("Attached scsi disk ".to_string()),
        Just("Host Number: ".to_string()),
        Just("scsi2 Channel 00 Id 0 Lun: ".to_string()),
        Just("State: ".to_string()),
        Just("tcp: [".to_string()),
        Just("] ".to_string()),
        Just(",".to_string()),
        Just(":".to_string()),
        Just(" = ".to_string()),
        Just("(non-flash)".to_string()),
        Just("iscsiadm: ".to_string()),
        Just("\n".to_string()),
        Just("\t".to_string()),
        "[0-9]{1,12}".prop_map(|s| s),
    ];
    prop::collection::vec(fragment, 0..40).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parsers_never_panic(text in any_text()) {
        let _ = parse_sessions(&text);
        let _ = parse_session_details(&text);
        let _ = parse_portal_targets(&text);
        let _ = parse_record(&text);
        let _ = iscsiadm_message(&text, &text);
        let _ = Portal::parse(&text);
        let _ = cstor_iscsi::Iqn::new(text.clone());
    }

    #[test]
    fn session_lines_round_trip(
        sid in 1u32..100_000,
        a in 1u8..=223, b in 0u8..=255, c in 0u8..=255, d in 1u8..=254,
        port in 1u16..,
        tpgt in 0i64..70_000,
        name in "[a-z0-9][a-z0-9.-]{0,40}",
        flash in proptest::option::of(any::<bool>()),
    ) {
        let iqn = format!("iqn.2016-09.com.openebs.cstor:{name}");
        let suffix = match flash { Some(true) => " (flash)", Some(false) => " (non-flash)", None => "" };
        let line = format!("tcp: [{sid}] {a}.{b}.{c}.{d}:{port},{tpgt} {iqn}{suffix}\n");
        let s = parse_sessions(&line);
        prop_assert_eq!(s.len(), 1);
        prop_assert_eq!(s[0].sid, sid);
        prop_assert_eq!(&s[0].iqn, &iqn);
        prop_assert_eq!(s[0].tpgt, tpgt);
        prop_assert_eq!(s[0].flash, flash);
        let portal = s[0].portal_addr().expect("portal parses");
        prop_assert_eq!(portal.port, port);
        prop_assert_eq!(portal.to_string(), format!("{a}.{b}.{c}.{d}:{port}"));
    }
}
