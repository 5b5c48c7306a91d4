//! Validated iSCSI addressing: target names (IQN/EUI/NAA), portals and the [`Target`] triple
//! (IQN, portal, iface) every node-mode `iscsiadm` call is keyed on.

use std::{fmt, net::IpAddr, str::FromStr};

use crate::Error;

/// Default iSCSI port (RFC 7143).
pub const DEFAULT_PORT: u16 = 3260;

/// The open-iscsi interface used when none is given (software TCP over the default route).
pub const DEFAULT_IFACE: &str = "default";

/// Longest iSCSI name RFC 7143 allows, in bytes.
const MAX_NAME_LEN: usize = 223;

fn invalid(field: &'static str, value: &str, reason: impl Into<String>) -> Error {
    Error::Invalid {
        field,
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// An iSCSI target name in one of the RFC 3720/7143 forms: `iqn.YYYY-MM.reversed.domain[:anything]`,
/// `eui.<16 hex>` or `naa.<16 or 32 hex>`.
///
/// The name is used verbatim in `iscsiadm` arguments and in `/dev/disk/by-path` link names, so
/// only the characters RFC 3722 allows after normalisation are accepted (lower-case ASCII
/// letters, digits, `-`, `.`, `:`), which also keeps `/` and whitespace out of file names.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Iqn(String);

impl Iqn {
    /// Validates `name`; the error names the field `iqn` and says what is wrong.
    pub fn new(name: impl Into<String>) -> Result<Self, Error> {
        let name = name.into();
        validate_name(&name)?;
        Ok(Self(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn validate_name(name: &str) -> Result<(), Error> {
    const FIELD: &str = "iqn";
    if name.is_empty() {
        return Err(invalid(
            FIELD,
            name,
            "is empty: give the target's iSCSI name, e.g. iqn.2016-09.com.openebs.cstor:pvc-1",
        ));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(invalid(
            FIELD,
            name,
            format!(
                "is {} bytes long; iSCSI names are at most {MAX_NAME_LEN} bytes",
                name.len()
            ),
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | ':')))
    {
        let hint = if bad.is_ascii_uppercase() {
            "iSCSI names are case-insensitive and must be written in lower case"
        } else {
            "only lower-case letters, digits, '-', '.' and ':' are allowed"
        };
        return Err(invalid(FIELD, name, format!("contains {bad:?}: {hint}")));
    }
    let hex = |s: &str| s.chars().all(|c| c.is_ascii_hexdigit());
    if let Some(rest) = name.strip_prefix("iqn.") {
        // iqn.YYYY-MM.<reversed domain>[:<unique>]
        let bytes = rest.as_bytes();
        let date_ok = bytes.len() > 8
            && bytes[..4].iter().all(u8::is_ascii_digit)
            && bytes[4] == b'-'
            && bytes[5..7].iter().all(u8::is_ascii_digit)
            && matches!(
                &rest[5..7],
                "01" | "02" | "03" | "04" | "05" | "06" | "07" | "08" | "09" | "10" | "11" | "12"
            )
            && bytes[7] == b'.';
        if !date_ok {
            return Err(invalid(
                FIELD,
                name,
                "must look like iqn.YYYY-MM.<reversed domain>[:<unique name>], e.g. iqn.2016-09.com.openebs.cstor:pvc-1",
            ));
        }
        let authority = rest[8..].split(':').next().unwrap_or_default();
        if authority.is_empty()
            || authority.starts_with('.')
            || authority.ends_with('.')
            || authority.contains("..")
        {
            return Err(invalid(
                FIELD,
                name,
                "has no valid naming authority after the date (a reversed domain name such as com.openebs.cstor)",
            ));
        }
        Ok(())
    } else if let Some(rest) = name.strip_prefix("eui.") {
        if rest.len() == 16 && hex(rest) {
            Ok(())
        } else {
            Err(invalid(
                FIELD,
                name,
                "an eui. name needs exactly 16 hex digits after `eui.`",
            ))
        }
    } else if let Some(rest) = name.strip_prefix("naa.") {
        if (rest.len() == 16 || rest.len() == 32) && hex(rest) {
            Ok(())
        } else {
            Err(invalid(
                FIELD,
                name,
                "a naa. name needs 16 or 32 hex digits after `naa.`",
            ))
        }
    } else {
        Err(invalid(
            FIELD,
            name,
            "must start with `iqn.`, `eui.` or `naa.` (e.g. iqn.2016-09.com.openebs.cstor:pvc-1)",
        ))
    }
}

impl fmt::Display for Iqn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Iqn {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::new(s)
    }
}

impl AsRef<str> for Iqn {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// A target portal: an IP address and a TCP port.
///
/// Only IP addresses are accepted (no host names): the kernel records the portal address of a
/// session and udev builds the `/dev/disk/by-path` name from it, so the address given here must be
/// the one that appears there. Written `10.0.0.5:3260` or `[fd00::5]:3260`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Portal {
    pub ip: IpAddr,
    pub port: u16,
}

impl Portal {
    pub fn new(ip: IpAddr, port: u16) -> Self {
        Self { ip, port }
    }

    /// Parses `ip:port` (IPv4) or `[ip]:port` (IPv6). The port is required; the error names the
    /// field `portal`.
    pub fn parse(s: &str) -> Result<Self, Error> {
        const FIELD: &str = "portal";
        let text = s.trim();
        if text.is_empty() {
            return Err(invalid(
                FIELD,
                s,
                "is empty: give the target portal as <ip>:<port>, e.g. 10.0.0.5:3260",
            ));
        }
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let Some((host, after)) = rest.split_once(']') else {
                return Err(invalid(
                    FIELD,
                    s,
                    "has `[` without a closing `]`: write IPv6 portals as [addr]:port",
                ));
            };
            let Some(port) = after.strip_prefix(':') else {
                return Err(invalid(
                    FIELD,
                    s,
                    "has no port: write it as [addr]:port, e.g. [fd00::5]:3260",
                ));
            };
            (host, port)
        } else {
            match text.rsplit_once(':') {
                Some((host, _)) if host.contains(':') => {
                    return Err(invalid(
                        FIELD,
                        s,
                        "looks like a bare IPv6 address: write it as [addr]:port, e.g. [fd00::5]:3260",
                    ));
                }
                Some((host, port)) => (host, port),
                None => {
                    return Err(invalid(
                        FIELD,
                        s,
                        format!("has no port: write it as <ip>:<port>, e.g. {text}:{DEFAULT_PORT}"),
                    ));
                }
            }
        };
        let ip: IpAddr = host.parse().map_err(|_| {
            invalid(FIELD, s, format!("`{host}` is not an IP address (host names are not accepted: the by-path device name is built from the address)"))
        })?;
        if matches!(ip, IpAddr::V6(_)) && !text.starts_with('[') {
            return Err(invalid(FIELD, s, "write IPv6 portals as [addr]:port"));
        }
        if ip.is_unspecified() || ip.is_multicast() {
            return Err(invalid(
                FIELD,
                s,
                format!("`{ip}` cannot be a target address"),
            ));
        }
        let port: u16 = port.parse().ok().filter(|p| *p != 0).ok_or_else(|| {
            invalid(
                FIELD,
                s,
                format!("port `{port}` is not a TCP port (1-65535)"),
            )
        })?;
        Ok(Self { ip, port })
    }

    /// The address as udev writes it into by-path names (IPv6 without brackets).
    pub fn address(&self) -> String {
        match self.ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => v6.to_string(),
        }
    }
}

impl fmt::Display for Portal {
    /// The form `iscsiadm -p` takes and prints: `10.0.0.5:3260`, `[fd00::5]:3260`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ip {
            IpAddr::V4(v4) => write!(f, "{v4}:{}", self.port),
            IpAddr::V6(v6) => write!(f, "[{v6}]:{}", self.port),
        }
    }
}

impl FromStr for Portal {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

/// What a node record and a session are keyed on: target name, portal and open-iscsi iface.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    pub iqn: Iqn,
    pub portal: Portal,
    /// open-iscsi interface name (`default` for software TCP).
    pub iface: String,
}

impl Target {
    /// Validates all three parts; the error names the bad field (`iqn`, `portal`, `iface`).
    pub fn new(iqn: &str, portal: &str, iface: &str) -> Result<Self, Error> {
        let iqn = Iqn::new(iqn)?;
        let portal = Portal::parse(portal)?;
        validate_iface(iface)?;
        Ok(Self {
            iqn,
            portal,
            iface: iface.to_string(),
        })
    }

    /// A target on the `default` iface.
    pub fn with_default_iface(iqn: &str, portal: &str) -> Result<Self, Error> {
        Self::new(iqn, portal, DEFAULT_IFACE)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {} (iface {})", self.iqn, self.portal, self.iface)
    }
}

/// iface names are file names under open-iscsi's `ifaces/` directory.
fn validate_iface(iface: &str) -> Result<(), Error> {
    const FIELD: &str = "iface";
    if iface.is_empty() {
        return Err(invalid(
            FIELD,
            iface,
            format!("is empty: use `{DEFAULT_IFACE}` for software iSCSI over TCP"),
        ));
    }
    if iface.len() > 64 {
        return Err(invalid(FIELD, iface, "is longer than 64 characters"));
    }
    if iface.starts_with('.') || iface.starts_with('-') {
        return Err(invalid(FIELD, iface, "must not start with '.' or '-'"));
    }
    if let Some(bad) = iface
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')))
    {
        return Err(invalid(
            FIELD,
            iface,
            format!("contains {bad:?}: only letters, digits, '-', '_', '.' and ':' are allowed"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(e: Error) -> &'static str {
        match e {
            Error::Invalid { field, .. } => field,
            other => panic!("expected Invalid, got {other}"),
        }
    }

    #[test]
    fn accepts_cstor_and_other_name_forms() {
        for ok in [
            "iqn.2016-09.com.openebs.cstor:pvc-3f1c2f2e-0d3a-4b7e-9c55-0b4a3c1d2e3f",
            "iqn.2003-01.org.linux-iscsi.host:sn.1234",
            "iqn.1993-08.org.debian:01:3273fb0fb40",
            "iqn.2001-05.com.doe",
            "eui.02004567a425678d",
            "naa.52004567ba64678d",
            "naa.62004567ba64678d0123456789abcdef",
        ] {
            Iqn::new(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
    }

    #[test]
    fn rejects_bad_names_naming_the_field() {
        for bad in [
            "",
            "pvc-1",
            "iqn.2016-9.com.x:a",
            "iqn.2016-13.com.x:a",
            "iqn.2016-09:foo",
            "iqn.2016-09..com:foo",
            "iqn.2016-09.com.openebs.cstor:PVC",
            "iqn.2016-09.com.x:a b",
            "iqn.2016-09.com.x:a/b",
            "eui.123",
            "naa.zz004567ba64678d",
        ] {
            let e = Iqn::new(bad).expect_err(bad);
            let text = e.to_string();
            assert_eq!(field(e), "iqn", "{bad}");
            assert!(text.contains("iqn"), "{text}");
        }
        let long = format!("iqn.2016-09.com.x:{}", "a".repeat(300));
        assert!(
            Iqn::new(long)
                .unwrap_err()
                .to_string()
                .contains("at most 223")
        );
        let upper = Iqn::new("iqn.2016-09.com.X:a").unwrap_err().to_string();
        assert!(upper.contains("lower case"), "{upper}");
    }

    #[test]
    fn portal_parses_v4_and_bracketed_v6() {
        let p = Portal::parse("10.0.0.5:3260").unwrap();
        assert_eq!(p.to_string(), "10.0.0.5:3260");
        assert_eq!(p.address(), "10.0.0.5");
        let p = Portal::parse("[fd00::5]:3261").unwrap();
        assert_eq!(p.port, 3261);
        assert_eq!(p.to_string(), "[fd00::5]:3261");
        assert_eq!(p.address(), "fd00::5");
    }

    #[test]
    fn portal_errors_name_the_field_and_the_fix() {
        for (bad, hint) in [
            ("", "is empty"),
            ("10.0.0.5", "has no port"),
            ("10.0.0.5:", "not a TCP port"),
            ("10.0.0.5:0", "not a TCP port"),
            ("10.0.0.5:70000", "not a TCP port"),
            ("target.svc:3260", "not an IP address"),
            ("fd00::5", "bare IPv6"),
            ("[fd00::5]", "has no port"),
            ("[fd00::5:3260", "closing"),
            ("0.0.0.0:3260", "cannot be a target"),
        ] {
            let e = Portal::parse(bad).expect_err(bad);
            let text = e.to_string();
            assert!(text.contains(hint), "{bad}: {text}");
            assert_eq!(field(e), "portal", "{bad}");
        }
    }

    #[test]
    fn target_validates_every_field() {
        let t = Target::with_default_iface("iqn.2016-09.com.openebs.cstor:pvc-1", "10.0.0.5:3260")
            .unwrap();
        assert_eq!(t.iface, "default");
        assert_eq!(
            t.to_string(),
            "iqn.2016-09.com.openebs.cstor:pvc-1 at 10.0.0.5:3260 (iface default)"
        );
        assert_eq!(
            field(Target::new("bad", "10.0.0.5:3260", "default").unwrap_err()),
            "iqn"
        );
        assert_eq!(
            field(Target::new("iqn.2016-09.com.x:a", "10.0.0.5", "default").unwrap_err()),
            "portal"
        );
        for iface in ["", "a/b", "-x", "with space"] {
            assert_eq!(
                field(Target::new("iqn.2016-09.com.x:a", "10.0.0.5:3260", iface).unwrap_err()),
                "iface",
                "{iface:?}"
            );
        }
        Target::new("iqn.2016-09.com.x:a", "10.0.0.5:3260", "iface0.eth1_x").unwrap();
    }
}
