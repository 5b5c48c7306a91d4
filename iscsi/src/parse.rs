//! Parsers for `iscsiadm` output. They never panic: lines they do not understand are skipped.

use std::collections::BTreeMap;

use crate::target::{Portal, Target};

/// One line of `iscsiadm -m session`:
/// `tcp: [1] 10.0.0.5:3260,1 iqn.2016-09.com.openebs.cstor:pvc-x (non-flash)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// Transport name (`tcp`, `iser`, ...; `<unknown>` if iscsiadm could not tell).
    pub transport: String,
    pub sid: u32,
    /// The persistent portal as printed: `10.0.0.5:3260` or `[fd00::5]:3260`.
    pub portal: String,
    /// Target portal group tag.
    pub tpgt: i64,
    pub iqn: String,
    /// `Some(true)` for `(flash)`, `Some(false)` for `(non-flash)`, `None` if not printed
    /// (open-iscsi before 2.0.874).
    pub flash: Option<bool>,
}

impl Session {
    /// The portal as a typed address, if it is an IP address.
    pub fn portal_addr(&self) -> Option<Portal> {
        Portal::parse(&self.portal).ok()
    }

    /// True when this session is to `target`'s IQN through `target`'s portal.
    pub fn is_for(&self, target: &Target) -> bool {
        self.iqn == target.iqn.as_str() && self.portal_addr() == Some(target.portal)
    }
}

/// Parses `iscsiadm -m session` (print level 0) output.
pub fn parse_sessions(text: &str) -> Vec<Session> {
    text.lines().filter_map(parse_session_line).collect()
}

fn parse_session_line(line: &str) -> Option<Session> {
    let line = line.trim();
    let (transport, rest) = line.split_once(": [")?;
    if transport.is_empty() || transport.contains(char::is_whitespace) {
        return None;
    }
    let (sid, rest) = rest.split_once(']')?;
    let sid: u32 = sid.trim().parse().ok()?;
    let mut words = rest.split_whitespace();
    let (portal, tpgt) = split_portal_tpgt(words.next()?)?;
    let iqn = words.next()?.to_string();
    let flash = match words.next() {
        Some("(non-flash)") => Some(false),
        Some("(flash)") => Some(true),
        Some(_) => return None,
        None => None,
    };
    if words.next().is_some() {
        return None;
    }
    Some(Session {
        transport: transport.to_string(),
        sid,
        portal,
        tpgt,
        iqn,
        flash,
    })
}

/// `10.0.0.5:3260,1` → (`10.0.0.5:3260`, 1).
fn split_portal_tpgt(word: &str) -> Option<(String, i64)> {
    let (portal, tpgt) = word.rsplit_once(',')?;
    let tpgt: i64 = tpgt.parse().ok()?;
    let (host, port) = portal.rsplit_once(':')?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return None;
    }
    Some((portal.to_string(), tpgt))
}

/// One line of `iscsiadm -m discovery -t sendtargets` or `iscsiadm -m node`:
/// `127.0.0.1:3260,1 iqn.2016-09.com.openebs.cstor:pvc-x`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortalTarget {
    /// `10.0.0.5:3260` or `[fd00::5]:3260` (or a host name, as the target reported it).
    pub portal: String,
    /// Target portal group tag (`-1`, printed as 4294967295, for records created by hand).
    pub tpgt: i64,
    pub iqn: String,
}

impl PortalTarget {
    pub fn portal_addr(&self) -> Option<Portal> {
        Portal::parse(&self.portal).ok()
    }
}

/// Parses sendtargets discovery output or a `-m node` listing.
pub fn parse_portal_targets(text: &str) -> Vec<PortalTarget> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let (portal, tpgt) = split_portal_tpgt(words.next()?)?;
            let iqn = words.next()?;
            if words.next().is_some() || iqn.starts_with('(') {
                return None;
            }
            Some(PortalTarget {
                portal,
                tpgt,
                iqn: iqn.to_string(),
            })
        })
        .collect()
}

/// A SCSI device of a session, from the `Attached SCSI devices` block of `-P 3`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScsiDevice {
    pub host: u32,
    pub channel: u32,
    pub id: u32,
    pub lun: u64,
    /// Block device name (`sdb`) when the LUN is a disk.
    pub disk: Option<String>,
    /// Device state (`running`, `offline`, ...).
    pub state: Option<String>,
}

/// One session from `iscsiadm -m session -P 3` (fields iscsiadm did not print stay `None`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionDetail {
    pub sid: u32,
    pub iqn: String,
    pub flash: Option<bool>,
    /// `Current Portal` without the tag.
    pub current_portal: Option<String>,
    /// `Persistent Portal` without the tag.
    pub persistent_portal: Option<String>,
    pub tpgt: Option<i64>,
    pub iface_name: Option<String>,
    pub iface_transport: Option<String>,
    pub iface_initiator_name: Option<String>,
    pub iface_ip: Option<String>,
    /// `iSCSI Connection State` (`LOGGED IN`, `TRANSPORT WAIT`, ...).
    pub connection_state: Option<String>,
    /// `iSCSI Session State` (`LOGGED_IN`, `FAILED`, `FREE`).
    pub session_state: Option<String>,
    pub host_number: Option<u32>,
    pub host_state: Option<String>,
    pub devices: Vec<ScsiDevice>,
}

impl SessionDetail {
    /// The disk (`sdb`) attached for `lun`, if any.
    pub fn disk_for_lun(&self, lun: u64) -> Option<&str> {
        self.devices
            .iter()
            .find(|d| d.lun == lun)
            .and_then(|d| d.disk.as_deref())
    }
}

#[derive(Default)]
struct Context {
    iqn: Option<String>,
    flash: Option<bool>,
    current: Option<String>,
    persistent: Option<String>,
    tpgt: Option<i64>,
    iface: Iface,
}

#[derive(Default)]
struct Iface {
    name: Option<String>,
    transport: Option<String>,
    initiator: Option<String>,
    ip: Option<String>,
}

fn value(v: &str) -> Option<String> {
    let v = v.trim();
    (!v.is_empty() && v != "<empty>").then(|| v.to_string())
}

/// `iqn.x (non-flash)` → (`iqn.x`, Some(false)).
fn split_flash(s: &str) -> (String, Option<bool>) {
    let s = s.trim();
    if let Some(name) = s.strip_suffix("(non-flash)") {
        (name.trim().to_string(), Some(false))
    } else if let Some(name) = s.strip_suffix("(flash)") {
        (name.trim().to_string(), Some(true))
    } else {
        (s.to_string(), None)
    }
}

/// Parses `iscsiadm -m session -P 1`, `-P 2` or `-P 3` output. A session starts at its `SID:`
/// line and takes the target, portal and iface printed before it; iscsiadm omits the portal
/// lines for a second session to the same portal, so the last portal carries over.
pub fn parse_session_details(text: &str) -> Vec<SessionDetail> {
    let mut out: Vec<SessionDetail> = Vec::new();
    let mut ctx = Context::default();
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('*') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("Target:") {
            let (iqn, flash) = split_flash(rest);
            ctx = Context {
                iqn: value(&iqn),
                flash,
                ..Context::default()
            };
        } else if let Some(rest) = line.strip_prefix("Current Portal:") {
            if let Some((p, t)) = split_portal_tpgt(rest.trim()) {
                ctx.current = Some(p);
                ctx.tpgt = Some(t);
            }
        } else if let Some(rest) = line.strip_prefix("Persistent Portal:") {
            if let Some((p, t)) = split_portal_tpgt(rest.trim()) {
                ctx.persistent = Some(p);
                ctx.tpgt = ctx.tpgt.or(Some(t));
            }
        } else if let Some(rest) = line.strip_prefix("Iface Name:") {
            ctx.iface = Iface {
                name: value(rest),
                ..Iface::default()
            };
        } else if let Some(rest) = line.strip_prefix("Iface Transport:") {
            ctx.iface.transport = value(rest);
        } else if let Some(rest) = line.strip_prefix("Iface Initiatorname:") {
            ctx.iface.initiator = value(rest);
        } else if let Some(rest) = line.strip_prefix("Iface IPaddress:") {
            ctx.iface.ip = value(rest);
        } else if let Some(rest) = line.strip_prefix("SID:") {
            let (Some(sid), Some(iqn)) = (rest.trim().parse::<u32>().ok(), ctx.iqn.clone()) else {
                continue;
            };
            let iface = std::mem::take(&mut ctx.iface);
            out.push(SessionDetail {
                sid,
                iqn,
                flash: ctx.flash,
                current_portal: ctx.current.clone(),
                persistent_portal: ctx.persistent.clone(),
                tpgt: ctx.tpgt,
                iface_name: iface.name,
                iface_transport: iface.transport,
                iface_initiator_name: iface.initiator,
                iface_ip: iface.ip,
                ..SessionDetail::default()
            });
        } else if let Some(s) = out.last_mut() {
            parse_session_body_line(s, line);
        }
    }
    out
}

fn parse_session_body_line(s: &mut SessionDetail, line: &str) {
    if let Some(rest) = line.strip_prefix("iSCSI Connection State:") {
        s.connection_state = value(rest);
    } else if let Some(rest) = line.strip_prefix("iSCSI Session State:") {
        s.session_state = value(rest);
    } else if let Some(rest) = line.strip_prefix("Host Number:") {
        // `Host Number: 2\tState: running`
        let (num, state) = match rest.split_once("State:") {
            Some((n, st)) => (n, value(st)),
            None => (rest, None),
        };
        s.host_number = num.trim().parse().ok();
        s.host_state = state;
    } else if let Some(rest) = line.strip_prefix("Attached scsi disk") {
        // `Attached scsi disk sdb\t\tState: running`
        let (disk, state) = match rest.split_once("State:") {
            Some((d, st)) => (d, value(st)),
            None => (rest, None),
        };
        if let (Some(dev), Some(disk)) = (s.devices.last_mut(), value(disk))
            && !disk.contains(char::is_whitespace)
        {
            dev.disk = Some(disk);
            dev.state = state;
        }
    } else if let Some(dev) = parse_scsi_address(line) {
        s.devices.push(dev);
    }
}

/// `scsi2 Channel 00 Id 0 Lun: 0`
fn parse_scsi_address(line: &str) -> Option<ScsiDevice> {
    let rest = line.strip_prefix("scsi")?;
    let words: Vec<&str> = rest.split_whitespace().collect();
    match words.as_slice() {
        [host, "Channel", channel, "Id", id, "Lun:", lun] => Some(ScsiDevice {
            host: host.parse().ok()?,
            channel: channel.parse().ok()?,
            id: id.parse().ok()?,
            lun: lun.parse().ok()?,
            disk: None,
            state: None,
        }),
        _ => None,
    }
}

/// Parses a record printed by `iscsiadm -m node ... -o show` (`key = value` lines; `<empty>`
/// becomes the empty string; a key printed twice keeps its last value).
pub fn parse_record(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let (k, v) = l.split_once(" = ")?;
            let k = k.trim();
            if k.is_empty() || k.contains(char::is_whitespace) {
                return None;
            }
            let v = v.trim();
            Some((
                k.to_string(),
                if v == "<empty>" {
                    String::new()
                } else {
                    v.to_string()
                },
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_line_variants() {
        let s = parse_sessions(
            "tcp: [1] 10.0.0.5:3260,1 iqn.2016-09.com.openebs.cstor:pvc-x (non-flash)\n\
             tcp: [12] [fd00::5]:3260,1 iqn.2016-09.com.openebs.cstor:pvc-y\n\
             <unknown>: [3] 10.0.0.6:3261,4294967295 iqn.2016-09.com.openebs.cstor:pvc-z (flash)\n",
        );
        assert_eq!(s.len(), 3);
        assert_eq!(
            s[0],
            Session {
                transport: "tcp".into(),
                sid: 1,
                portal: "10.0.0.5:3260".into(),
                tpgt: 1,
                iqn: "iqn.2016-09.com.openebs.cstor:pvc-x".into(),
                flash: Some(false),
            }
        );
        assert_eq!(s[1].portal, "[fd00::5]:3260");
        assert_eq!(s[1].portal_addr().unwrap().port, 3260);
        assert_eq!(s[1].flash, None);
        assert_eq!(s[2].transport, "<unknown>");
        assert_eq!(s[2].tpgt, 4_294_967_295);
        assert_eq!(s[2].flash, Some(true));
    }

    #[test]
    fn garbage_session_lines_are_skipped() {
        for bad in [
            "",
            "iscsiadm: No active sessions.",
            "tcp: [x] 10.0.0.5:3260,1 iqn.a",
            "tcp: [1] 10.0.0.5:3260 iqn.a",
            "tcp: [1] 10.0.0.5:99999,1 iqn.a",
            "tcp: [1] 10.0.0.5:3260,1",
            "tcp: [1] 10.0.0.5:3260,1 iqn.a (weird)",
            "tcp: [1] 10.0.0.5:3260,1 iqn.a (non-flash) extra",
            ": [1] 10.0.0.5:3260,1 iqn.a",
        ] {
            assert!(parse_sessions(bad).is_empty(), "{bad:?}");
        }
    }

    #[test]
    fn record_parsing() {
        let r = parse_record(
            "# BEGIN RECORD 2.1.8\nnode.name = iqn.a\nnode.startup = automatic\nnode.startup = manual\niface.hwaddress = <empty>\nnonsense\n# END RECORD\n",
        );
        assert_eq!(r["node.name"], "iqn.a");
        assert_eq!(r["node.startup"], "manual");
        assert_eq!(r["iface.hwaddress"], "");
        assert_eq!(r.len(), 3);
    }
}
