//! Sizes as the ZFS tools print them.
//!
//! `zfs get -Hp` prints exact bytes; `zpool list` (no `-p` on zfs-fuse) and the non-parsable
//! `zfs get` print ZFS "nicenum" values: 1024-based, one letter (`K M G T P E`, optionally
//! followed by `B` or `iB`), up to three significant digits (`250M`, `1.11M`, `6K`, `0B`, `512`).
//! `-` and `none` mean "no value".

/// Bytes of a ZFS size (`-`/`none`/empty → `Ok(None)`).
pub fn parse_size(text: &str) -> Result<Option<u64>, String> {
    let t = text.trim();
    if t.is_empty() || t == "-" || t.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    if number.is_empty() {
        return Err(format!("size `{t}` does not start with a number"));
    }
    let shift = match unit.trim() {
        "" | "B" => 0,
        u => {
            let mut chars = u.chars();
            let letter = chars.next().map(|c| c.to_ascii_uppercase());
            let rest: String = chars.collect();
            if !matches!(rest.as_str(), "" | "B" | "iB") {
                return Err(format!("size `{t}` has an unknown unit `{u}`"));
            }
            match letter {
                Some('K') => 10,
                Some('M') => 20,
                Some('G') => 30,
                Some('T') => 40,
                Some('P') => 50,
                Some('E') => 60,
                _ => return Err(format!("size `{t}` has an unknown unit `{u}`")),
            }
        }
    };
    if let Ok(whole) = number.parse::<u64>() {
        return whole
            .checked_mul(1u64 << shift)
            .map(Some)
            .ok_or_else(|| format!("size `{t}` does not fit in 64 bits"));
    }
    let value: f64 = number
        .parse()
        .map_err(|_| format!("size `{t}` has a malformed number `{number}`"))?;
    let bytes = value * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("size `{t}` does not fit in 64 bits"));
    }
    Ok(Some(bytes.round() as u64))
}

/// A size as printed plus its value in bytes, when it has one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Size {
    /// Exactly what the tool printed (`250M`, `106418176`, `-`).
    pub text: String,
    pub bytes: Option<u64>,
}

impl Size {
    pub fn parse(text: &str) -> Result<Self, String> {
        Ok(Self {
            text: text.trim().to_string(),
            bytes: parse_size(text)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_zfs_nicenums_and_exact_bytes() {
        assert_eq!(parse_size("250M"), Ok(Some(250 << 20)));
        assert_eq!(
            parse_size("1.11M"),
            Ok(Some((1.11f64 * 1048576.0).round() as u64))
        );
        assert_eq!(parse_size("6K"), Ok(Some(6144)));
        assert_eq!(parse_size("6k"), Ok(Some(6144)));
        assert_eq!(parse_size("0B"), Ok(Some(0)));
        assert_eq!(
            parse_size("9.94G"),
            Ok(Some((9.94f64 * 1073741824.0).round() as u64))
        );
        assert_eq!(parse_size("5GiB"), Ok(Some(5 << 30)));
        assert_eq!(parse_size("106418176"), Ok(Some(106418176)));
        assert_eq!(parse_size("-"), Ok(None));
        assert_eq!(parse_size("none"), Ok(None));
        assert!(parse_size("1.00x").is_err());
        assert!(parse_size("M").is_err());
        assert!(parse_size("1..2K").is_err());
        assert!(parse_size("99999999999E").is_err());
        assert!(parse_size("18446744073709551615K").is_err());
    }
}
