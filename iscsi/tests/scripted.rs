//! attach/detach against the simulated initiator of `cstor_iscsi::fake`: node records and
//! sessions kept like iscsiadm does, a login that makes the by-path link (under a temporary
//! device root) point at a real file standing in for /dev/sdX. Exact command lines are asserted
//! with a RecordingRunner; per-test answers are ScriptedRunner rules in front of the simulation.

use std::{
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use cstor_exec::{ExecError, Output, RecordingRunner, ScriptedRunner};
use cstor_iscsi::{
    AttachOptions, Chap, Detached, DeviceWaiter, Error, Iscsiadm, Login, Logout, Portal, Target,
    by_path_name, fake::FakeIscsiadm,
};

const IQN: &str = "iqn.2016-09.com.openebs.cstor:pvc-6f1d0c1e";
const PORTAL: &str = "127.0.0.1:3260";
const NODE: &str =
    "iscsiadm -m node -T iqn.2016-09.com.openebs.cstor:pvc-6f1d0c1e -p 127.0.0.1:3260 -I default";

/// A simulated open-iscsi with a device root.
struct Sim {
    fake: FakeIscsiadm,
    /// When set, `--login` answers this instead of logging in.
    login_failure: Arc<Mutex<Option<Output>>>,
    /// When false, a login does not make the by-path link appear.
    link_on_login: Arc<AtomicBool>,
    dir: tempfile::TempDir,
    recorder: RecordingRunner,
    scripted: ScriptedRunner,
}

impl Sim {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("by-path")).unwrap();
        let disk = dir.path().join("sdb");
        std::fs::write(&disk, b"disk").unwrap();
        let login_failure: Arc<Mutex<Option<Output>>> = Arc::default();
        let link_on_login = Arc::new(AtomicBool::new(true));
        let (fail, link) = (login_failure.clone(), link_on_login.clone());
        let fake = FakeIscsiadm::new(dir.path().join("by-path"))
            .on_login(move |_, _| {
                if let Some(out) = fail.lock().unwrap().clone() {
                    return Err(out);
                }
                Ok(link.load(Ordering::SeqCst).then(|| disk.clone()))
            })
            .on_discovery(|portal| {
                if portal.port == 3260 {
                    Ok(vec![IQN.to_string(), format!("{IQN}-2")])
                } else {
                    Err(Output::fail(
                        12,
                        "iscsiadm: Could not insert module tcp. Kmod error -2\niscsiadm: iSCSI driver tcp is not loaded. Load the module then retry the command.\niscsiadm: Could not perform SendTargets discovery: iSCSI driver not found. Please make sure it is loaded, and retry the operation\n",
                    ))
                }
            });
        let scripted = ScriptedRunner::new().with_fallback(Arc::new(fake.clone()));
        let recorder = RecordingRunner::new(Arc::new(scripted.clone()));
        Self {
            fake,
            login_failure,
            link_on_login,
            dir,
            recorder,
            scripted,
        }
    }

    fn adm(&self) -> Iscsiadm {
        Iscsiadm::new(Arc::new(self.recorder.clone()))
            .with_timeout(Duration::from_secs(7))
            .with_device_waiter(
                DeviceWaiter::new(self.dir.path().join("by-path"))
                    .with_poll_interval(Duration::from_millis(5)),
            )
    }

    fn disk(&self) -> PathBuf {
        self.dir.path().join("sdb").canonicalize().unwrap()
    }

    fn link(&self, t: &Target, lun: u64) -> PathBuf {
        self.dir
            .path()
            .join("by-path")
            .join(by_path_name(&t.portal, &t.iqn, lun))
    }

    fn lines(&self) -> Vec<String> {
        let l = self.recorder.lines();
        self.recorder.clear();
        l
    }

    fn records(&self) -> usize {
        self.fake.records().len()
    }

    fn sessions(&self) -> usize {
        self.fake.sessions().len()
    }
}

fn target() -> Target {
    Target::with_default_iface(IQN, PORTAL).unwrap()
}

fn node(rest: &str) -> String {
    format!("{NODE} {rest}")
}

#[tokio::test]
async fn attach_logs_in_and_resolves_the_device() {
    let sim = Sim::new();
    let adm = sim.adm();
    let t = target();
    let dev = adm.attach(&t, 0, &AttachOptions::default()).await.unwrap();
    assert_eq!(
        sim.lines(),
        vec![
            "iscsiadm -m session".to_string(),
            node("-o new"),
            node("-o update -n node.startup -v manual"),
            node("--login"),
        ]
    );
    assert_eq!(dev.device, sim.disk());
    assert_eq!(dev.by_path, sim.link(&t, 0));
    assert!(dev.by_path.to_string_lossy().ends_with(
        "/by-path/ip-127.0.0.1:3260-iscsi-iqn.2016-09.com.openebs.cstor:pvc-6f1d0c1e-lun-0"
    ));
    assert!(dev.logged_in);
    assert_eq!(dev.sid, None);
    assert_eq!(dev.lun, 0);
    assert_eq!(dev.target, t);
    // Every call carried the per-call timeout.
    assert!(
        sim.recorder
            .calls()
            .iter()
            .all(|(c, _)| c.timeout == Duration::from_secs(7)),
    );
    let rec = adm
        .node_record(&t)
        .await
        .unwrap()
        .expect("record kept while attached");
    assert_eq!(rec["node.startup"], "manual");
}

#[tokio::test]
async fn second_attach_reuses_the_session_without_a_second_login() {
    let sim = Sim::new();
    let adm = sim.adm();
    let t = target();
    let first = adm.attach(&t, 0, &AttachOptions::default()).await.unwrap();
    sim.lines();
    let again = adm.attach(&t, 0, &AttachOptions::default()).await.unwrap();
    assert_eq!(sim.lines(), vec!["iscsiadm -m session".to_string()]);
    assert_eq!(again.device, first.device);
    assert_eq!(again.by_path, first.by_path);
    assert!(!again.logged_in);
    assert_eq!(again.sid, Some(1));
    assert_eq!(sim.sessions(), 1);
}

#[tokio::test]
async fn detach_twice_is_idempotent() {
    let sim = Sim::new();
    let adm = sim.adm();
    let t = target();
    let dev = adm.attach(&t, 0, &AttachOptions::default()).await.unwrap();
    sim.lines();

    let d = adm.detach(&t).await.unwrap();
    assert_eq!(
        d,
        Detached {
            logged_out: true,
            record_deleted: true
        }
    );
    assert_eq!(sim.lines(), vec![node("--logout"), node("-o delete")]);
    assert!(!dev.by_path.exists(), "link goes away with the session");
    assert_eq!((sim.records(), sim.sessions()), (0, 0));

    let d = adm.detach(&t).await.unwrap();
    assert_eq!(
        d,
        Detached {
            logged_out: false,
            record_deleted: false
        }
    );
    assert_eq!(sim.lines(), vec![node("--logout"), node("-o delete")]);
    assert_eq!(adm.logout(&t).await.unwrap(), Logout::NotLoggedIn);
    assert!(!adm.node_delete(&t).await.unwrap());
}

#[tokio::test]
async fn failed_login_deletes_the_node_record_and_keeps_code_and_message() {
    let sim = Sim::new();
    *sim.login_failure.lock().unwrap() = Some(Output {
        code: Some(24),
        stdout: "Logging in to [iface: default, target: x, portal: 127.0.0.1,3260]\n".into(),
        stderr: "iscsiadm: Could not login to [iface: default, target: x, portal: 127.0.0.1,3260].\n\
                 iscsiadm: initiator reported error (24 - iSCSI login failed due to authorization failure)\n\
                 iscsiadm: Could not log into all portals\n"
            .into(),
    });
    let adm = sim.adm();
    let t = target();
    let opts = AttachOptions {
        chap: Some(Chap {
            username: "user".into(),
            password: "wrong-secret".into(),
        }),
        ..AttachOptions::default()
    };
    let err = adm.attach(&t, 0, &opts).await.unwrap_err();
    assert!(matches!(err, Error::AuthFailed(_)), "{err:?}");
    assert_eq!(err.code(), Some(24));
    assert_eq!(
        err.message(),
        Some(
            "iscsiadm: initiator reported error (24 - iSCSI login failed due to authorization failure)"
        )
    );
    let text = err.to_string();
    assert!(text.contains("CHAP"), "{text}");
    assert!(!text.contains("wrong-secret"), "{text}");
    // The secret reaches iscsiadm but is shown as *** in every line.
    assert!(
        sim.recorder
            .calls()
            .iter()
            .any(|(c, _)| c.args.last().map(String::as_str) == Some("wrong-secret"))
    );
    assert_eq!(
        sim.lines(),
        vec![
            "iscsiadm -m session".to_string(),
            node("-o new"),
            node("-o update -n node.startup -v manual"),
            node("-o update -n node.session.auth.authmethod -v CHAP"),
            node("-o update -n node.session.auth.username -v user"),
            node("-o update -n node.session.auth.password -v ***"),
            node("--login"),
            node("-o delete"),
        ]
    );
    assert_eq!((sim.records(), sim.sessions()), (0, 0));
}

#[tokio::test]
async fn login_without_iscsid_is_daemon_unavailable_and_cleans_up() {
    let sim = Sim::new();
    *sim.login_failure.lock().unwrap() = Some(Output::fail(
        20,
        "iscsiadm: can not connect to iSCSI daemon (111)!\n\
         iscsiadm: Could not login to [iface: default, target: x, portal: 127.0.0.1,3260].\n\
         iscsiadm: initiator reported error (20 - could not connect to iscsid)\n\
         iscsiadm: Could not log into all portals\n",
    ));
    let adm = sim.adm();
    let err = adm
        .attach(&target(), 0, &AttachOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::DaemonUnavailable(_)), "{err:?}");
    assert_eq!(err.code(), Some(20));
    assert!(err.to_string().contains("start iscsid"), "{err}");
    assert_eq!(sim.lines().last().unwrap(), &node("-o delete"));
    assert_eq!(sim.records(), 0);
}

#[tokio::test]
async fn a_bad_setting_fails_after_create_and_the_record_is_removed() {
    let sim = Sim::new();
    let adm = sim.adm();
    let opts = AttachOptions {
        settings: vec![("node.bogus".into(), "1".into())],
        ..AttachOptions::default()
    };
    let err = adm.attach(&target(), 0, &opts).await.unwrap_err();
    assert!(matches!(err, Error::Failed(_)), "{err:?}");
    assert_eq!(err.code(), Some(7));
    assert_eq!(
        err.message(),
        Some("iscsiadm: Cannot modify node.bogus. Invalid param name.")
    );
    let lines = sim.lines();
    assert!(!lines.iter().any(|l| l.ends_with("--login")), "{lines:?}");
    assert_eq!(lines.last().unwrap(), &node("-o delete"));
    assert_eq!(sim.records(), 0);

    // A malformed key is refused before anything runs.
    let opts = AttachOptions {
        settings: vec![("node.a b".into(), "1".into())],
        ..AttachOptions::default()
    };
    let err = adm.attach(&target(), 0, &opts).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Invalid {
                field: "setting",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(sim.lines().is_empty());
}

#[tokio::test]
async fn device_that_never_appears_times_out_and_undoes_the_login() {
    let sim = Sim::new();
    sim.link_on_login.store(false, Ordering::SeqCst);
    let adm = sim.adm();
    let t = target();
    let opts = AttachOptions {
        device_timeout: Duration::from_millis(150),
        ..AttachOptions::default()
    };
    let err = adm.attach(&t, 0, &opts).await.unwrap_err();
    match &err {
        Error::DeviceTimeout { path, after } => {
            assert_eq!(path, &sim.link(&t, 0));
            assert_eq!(*after, Duration::from_millis(150));
        }
        other => panic!("expected DeviceTimeout, got {other:?}"),
    }
    let lines = sim.lines();
    assert_eq!(
        lines[lines.len() - 2..],
        [node("--logout"), node("-o delete")]
    );
    assert_eq!((sim.records(), sim.sessions()), (0, 0));
}

#[tokio::test]
async fn existing_session_without_link_is_rescanned() {
    let sim = Sim::new();
    let adm = sim.adm();
    let t = target();
    adm.attach(&t, 0, &AttachOptions::default()).await.unwrap();
    std::fs::remove_file(sim.link(&t, 0)).unwrap();
    sim.lines();
    let dev = adm.attach(&t, 0, &AttachOptions::default()).await.unwrap();
    assert_eq!(
        sim.lines(),
        vec![
            "iscsiadm -m session".to_string(),
            "iscsiadm -m session -r 1 --rescan".to_string()
        ]
    );
    assert_eq!(dev.device, sim.disk());
    assert!(!dev.logged_in);
}

#[tokio::test]
async fn login_answering_session_exists_counts_as_logged_in() {
    let sim = Sim::new();
    let t = target();
    // A session iscsiadm -m session did not list yet (race with another login).
    std::os::unix::fs::symlink("../sdb", sim.link(&t, 0)).unwrap();
    sim.scripted.on(|cmd| {
        cmd.args.iter().any(|a| a == "--login").then(|| {
            Ok(Output::fail(
                15,
                "iscsiadm: default: 1 session requested, but 1 already present.\n",
            ))
        })
    });
    let adm = sim.adm();
    assert_eq!(adm.login(&t).await.unwrap(), Login::AlreadyLoggedIn);
    sim.lines();
    let dev = adm.attach(&t, 0, &AttachOptions::default()).await.unwrap();
    assert!(!dev.logged_in);
    assert_eq!(dev.device, sim.disk());
    assert_eq!(sim.lines().last().unwrap(), &node("--login"));
}

#[tokio::test]
async fn a_killed_login_logs_out_and_deletes_the_record() {
    let sim = Sim::new();
    sim.scripted.on(|cmd| {
        cmd.args.iter().any(|a| a == "--login").then(|| {
            Err(ExecError::Timeout {
                command: cmd.line(),
                after: cmd.timeout,
            })
        })
    });
    let adm = sim.adm();
    let err = adm
        .attach(&target(), 0, &AttachOptions::default())
        .await
        .unwrap_err();
    match &err {
        Error::Timeout { command, after } => {
            assert_eq!(command, &node("--login"));
            assert_eq!(*after, Duration::from_secs(7));
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
    let lines = sim.lines();
    assert_eq!(
        lines[lines.len() - 2..],
        [node("--logout"), node("-o delete")]
    );
    assert_eq!(sim.records(), 0);
}

#[tokio::test]
async fn discovery_parses_targets_and_cleans_up_after_failure() {
    let sim = Sim::new();
    let adm = sim.adm();
    let found = adm
        .discover(&Portal::parse("127.0.0.1:3260").unwrap())
        .await
        .unwrap();
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].iqn, IQN);
    assert_eq!(found[0].portal, "127.0.0.1:3260");
    assert_eq!(
        sim.lines(),
        vec!["iscsiadm -m discovery -t sendtargets -p 127.0.0.1:3260"]
    );

    let err = adm
        .discover(&Portal::parse("127.0.0.1:3999").unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::TransportMissing(_)), "{err:?}");
    assert_eq!(err.code(), Some(12));
    assert!(err.to_string().contains("modprobe iscsi_tcp"), "{err}");
    assert_eq!(
        err.message(),
        Some("iscsiadm: iSCSI driver tcp is not loaded. Load the module then retry the command.")
    );
    assert_eq!(
        sim.lines(),
        vec![
            "iscsiadm -m discovery -t sendtargets -p 127.0.0.1:3999",
            "iscsiadm -m discoverydb -t sendtargets -p 127.0.0.1:3999 -o delete"
        ]
    );
    assert!(!sim.fake.discovery_records().contains("127.0.0.1:3999"));
}

#[tokio::test]
async fn rescans_and_session_lookup() {
    let sim = Sim::new();
    let adm = sim.adm();
    let t = target();
    assert!(adm.sessions().await.unwrap().is_empty());
    assert!(adm.session_for(&t).await.unwrap().is_none());
    let err = adm.rescan_target(&t).await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    adm.attach(&t, 0, &AttachOptions::default()).await.unwrap();
    let s = adm.session_for(&t).await.unwrap().expect("session");
    assert_eq!((s.sid, s.iqn.as_str()), (1, IQN));
    sim.lines();
    adm.rescan(&s).await.unwrap();
    adm.rescan_target(&t).await.unwrap();
    assert_eq!(
        sim.lines(),
        vec![
            "iscsiadm -m session -r 1 --rescan".to_string(),
            node("--rescan")
        ]
    );
}

#[tokio::test]
async fn program_name_is_configurable() {
    let rec = RecordingRunner::new(Arc::new(
        ScriptedRunner::new()
            .on_line(
                "/host/iscsiadm -m session",
                Output::fail(21, "iscsiadm: No active sessions."),
            )
            .clone(),
    ));
    let adm = Iscsiadm::new(Arc::new(rec.clone())).with_program("/host/iscsiadm");
    assert!(adm.sessions().await.unwrap().is_empty());
    assert_eq!(rec.lines(), vec!["/host/iscsiadm -m session"]);
    assert_eq!(rec.calls()[0].0.timeout, cstor_iscsi::DEFAULT_CALL_TIMEOUT);
}

#[tokio::test]
async fn device_waiter_follows_a_link_that_was_dangling() {
    let dir = tempfile::tempdir().unwrap();
    let waiter = DeviceWaiter::new(dir.path()).with_poll_interval(Duration::from_millis(2));
    let link = dir
        .path()
        .join("ip-127.0.0.1:3260-iscsi-iqn.2016-09.x:y-lun-0");
    std::os::unix::fs::symlink("sdz", &link).unwrap();
    assert_eq!(
        waiter.resolve(&link).await.unwrap(),
        None,
        "dangling link is not a device"
    );

    let create = async {
        tokio::task::yield_now().await;
        tokio::fs::write(dir.path().join("sdz"), b"x")
            .await
            .unwrap();
    };
    let (found, ()) = tokio::join!(waiter.wait(&link, Duration::from_secs(10)), create);
    assert_eq!(
        found.unwrap(),
        dir.path().join("sdz").canonicalize().unwrap()
    );
}

#[tokio::test]
async fn device_waiter_times_out_at_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let waiter = DeviceWaiter::new(dir.path()).with_poll_interval(Duration::from_millis(10));
    let link = dir.path().join("missing");
    let started = std::time::Instant::now();
    let err = waiter
        .wait(&link, Duration::from_millis(120))
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, Error::DeviceTimeout { .. }), "{err:?}");
    assert!(
        took >= Duration::from_millis(120),
        "returned early: {took:?}"
    );
    assert!(
        took < Duration::from_secs(5),
        "overshot the deadline: {took:?}"
    );
    assert!(
        err.to_string().contains("did not appear within 120ms"),
        "{err}"
    );
}

/// Exit 6 from a node-record command (iscsiadm walked over a record another iscsiadm deleted) is
/// retried a bounded number of times; a lasting 6 is returned typed after the last try.
#[tokio::test]
async fn record_database_failures_are_retried_a_bounded_number_of_times() {
    let busy = || {
        Output::fail(
            6,
            "iscsiadm: iface iter could not stat /etc/iscsi/nodes/iqn.x/::1,33213.\niscsiadm: Could not execute operation on all records: encountered iSCSI database failure",
        )
    };
    let failures_left = Arc::new(Mutex::new(2));
    let left = failures_left.clone();
    let delete = format!("{NODE} -o delete");
    let scripted = ScriptedRunner::new();
    scripted.on(move |cmd| {
        (cmd.line() == delete).then(|| {
            let mut left = left.lock().unwrap();
            if *left > 0 {
                *left -= 1;
                Ok(busy())
            } else {
                Ok(Output::ok(""))
            }
        })
    });
    let rec = RecordingRunner::new(Arc::new(scripted.clone()));
    let adm = Iscsiadm::new(Arc::new(rec.clone()));
    let target = Target::with_default_iface(IQN, PORTAL).unwrap();
    assert!(adm.node_delete(&target).await.unwrap());
    let codes: Vec<_> = rec.calls().into_iter().map(|(_, c)| c).collect();
    assert_eq!(codes, vec![Some(6), Some(6), Some(0)]);

    *failures_left.lock().unwrap() = u32::MAX;
    rec.clear();
    let err = adm.node_delete(&target).await.unwrap_err();
    assert_eq!(err.code(), Some(6), "{err:?}");
    assert!(err.to_string().contains("could not stat"), "{err}");
    assert_eq!(
        rec.calls().len(),
        cstor_iscsi::RECORD_DB_ATTEMPTS as usize,
        "bounded"
    );
}
