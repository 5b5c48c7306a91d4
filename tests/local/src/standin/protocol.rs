//! istgt's control-socket protocol as the target stand-ins answer it (the in-process one of
//! `cstor-e2e` and the process one of [`super::target`]); replies have the real istgt's shape,
//! checked against `tests/fixtures/real-engine/istgt`.
//!
//! - `VERSION`, `STATUS` (with the volume's target line), `REFRESH`, `DRF`: accepted; a command
//!   naming another volume fails with istgt's message (`ERR no target`, `ERR target not found`).
//! - `REPLICA`: the connected replicas, each under its **zvol guid** (as istgt does; not its
//!   replica id), all `Healthy`.
//! - the known-replica line istgt writes to the volume manager's socket when it trusts a replica.

pub use cstor_operators::volume_manager::fake_istgt::{
    FAKE_BANNER, FAKE_VERSION, NODE_BASE, replica_entry,
};

/// The line istgt writes to the known-replica socket when it trusts a replica.
pub fn known_replica_line(id: &str, guid: &str, pv: &str, rf: i64, cf: i64) -> String {
    serde_json::json!({
        "replicaId": id, "replicaZvolGuid": guid, "volumeName": pv,
        "replicationFactor": rf, "consistencyFactor": cf,
    })
    .to_string()
}

/// istgt's `REPLICA` reply for `pv` with these connected replicas (zvol guids), each seen
/// `up` seconds.
pub fn replica_reply(pv: &str, guids: &[String], up: u64) -> Vec<String> {
    let list: Vec<serde_json::Value> = guids
        .iter()
        .map(|g| replica_entry(g, "127.0.0.1", "Healthy", 0, true, up as i64))
        .collect();
    let status = if list.is_empty() {
        "Offline"
    } else {
        "Healthy"
    };
    let json = serde_json::json!({"volumeStatus": [{"name": pv, "status": status, "replicaStatus": list}]});
    vec![format!("REPLICA  {json}"), "OK REPLICA".into()]
}

/// Replies that need no data plane; `None` for the commands that do (`REPLICA`, `RESIZE`,
/// `SNAPCREATE`, `SNAPDESTROY` with their arguments).
pub fn static_answer(pv: &str, word: &str, args: &[&str]) -> Option<Vec<String>> {
    let pv_matches = args.first().is_some_and(|v| *v == pv);
    let needs_args = matches!(word, "DRF" | "RESIZE" | "SNAPCREATE" | "SNAPDESTROY");
    Some(match word {
        "VERSION" => vec![format!("VERSION {FAKE_VERSION}"), "OK VERSION".into()],
        "STATUS" => vec![
            "STATUS Running:NORMAL MODE OF OPERATION".into(),
            format!("STATUS {NODE_BASE}:{pv} REAL"),
            "OK STATUS".into(),
        ],
        "REFRESH" => vec!["OK REFRESH".into()],
        _ if needs_args && args.is_empty() => vec!["ERR invalid param".into()],
        "SNAPCREATE" | "SNAPDESTROY" if !pv_matches => vec!["ERR no target".into()],
        "DRF" | "RESIZE" if !pv_matches => vec!["ERR target not found".into()],
        "DRF" => vec!["OK DRF".into()],
        "REPLICA" | "RESIZE" | "SNAPCREATE" | "SNAPDESTROY" => return None,
        _ => vec!["ERR unknown command".into()],
    })
}

/// Lines framed as istgt writes them (`\r\n` after each).
pub fn framed(lines: &[String]) -> String {
    let mut out = String::new();
    for l in lines {
        out.push_str(l);
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    //! The stand-in replies against the real istgt's recorded ones.
    use super::*;
    use cstor_operators::volume_manager::fake_istgt::{json_shape, reply_shape};

    fn recording(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/../fixtures/real-engine/istgt/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("read {path}: {e}"))
    }

    /// The recorded volume name and the command line of a recording.
    fn sent(name: &str) -> (String, Vec<String>) {
        let line = String::from_utf8(recording(&format!("{name}.sent"))).unwrap();
        let words: Vec<String> = line.trim_end().split(' ').map(str::to_owned).collect();
        let pv = String::from_utf8(recording("replica.recv"))
            .unwrap()
            .split("\"name\":\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap()
            .to_owned();
        (pv, words)
    }

    fn with_banner(lines: &[String]) -> Vec<u8> {
        format!("{FAKE_BANNER}\r\n{}", framed(lines)).into_bytes()
    }

    #[test]
    fn static_replies_have_the_real_shape() {
        for name in [
            "version",
            "status",
            "refresh",
            "unknown",
            "snapcreate-no-args",
            "snapcreate-other-volume",
            "resize-no-args",
            "resize-other-volume",
            "drf-same",
            "drf-other-volume",
        ] {
            let (pv, words) = sent(name);
            let args: Vec<&str> = words[1..].iter().map(String::as_str).collect();
            let ours = static_answer(&pv, &words[0].to_ascii_uppercase(), &args)
                .unwrap_or_else(|| panic!("{name}: no static answer"));
            assert_eq!(
                reply_shape(&with_banner(&ours)).unwrap(),
                reply_shape(&recording(&format!("{name}.recv"))).unwrap(),
                "{name}"
            );
        }
    }

    #[test]
    fn replica_reply_lists_zvol_guids_in_the_real_shape() {
        let (pv, _) = sent("replica");
        let guids: Vec<String> = (1..=3).map(|i| format!("{i}234567890123")).collect();
        let ours = replica_reply(&pv, &guids, 42);
        assert_eq!(
            reply_shape(&with_banner(&ours)).unwrap(),
            reply_shape(&recording("replica.recv")).unwrap()
        );
        let json: serde_json::Value =
            serde_json::from_str(ours[0].strip_prefix("REPLICA  ").unwrap()).unwrap();
        let ids: Vec<&str> = json["volumeStatus"][0]["replicaStatus"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["replicaId"].as_str().unwrap())
            .collect();
        assert_eq!(ids, guids, "replicas are listed by zvol guid");
        // Nothing connected: the real "starting" reply.
        assert_eq!(
            reply_shape(&with_banner(&replica_reply(&pv, &[], 0))).unwrap(),
            reply_shape(&recording("replica-starting.recv")).unwrap()
        );
    }

    #[test]
    fn known_replica_line_has_the_real_shape() {
        let real = String::from_utf8(recording("known-replica-report-1.recv")).unwrap();
        let real: serde_json::Value = serde_json::from_str(real.trim_end()).unwrap();
        let ours: serde_json::Value =
            serde_json::from_str(&known_replica_line("1", "123", "pvc-1", 3, 2)).unwrap();
        assert_eq!(json_shape(&ours), json_shape(&real));
    }
}
