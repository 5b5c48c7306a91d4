//! Kubernetes resource quantities (`5Gi`, `9.62G`, `1500M`, `10737418240`) as byte counts, and
//! the GiB rounding upstream applies to every volume size.

/// One gibibyte.
pub const GIB: u64 = 1 << 30;

/// Largest size we hand to the data engine: 1 EiB. Anything larger is refused as out of range
/// (it would also overflow the `int64` CSI fields once rounded up).
pub const MAX_VOLUME_BYTES: u64 = 1 << 60;

/// Parses a Kubernetes quantity into bytes, rounding a fractional result up (as
/// `resource.Quantity.Value()` does). `None` for anything that is not a non-negative quantity.
pub fn parse_bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let number = number.strip_prefix('+').unwrap_or(number);
    if number.is_empty() {
        return None;
    }
    let (int_part, frac_part) = match number.split_once('.') {
        Some((i, f)) => (i, f),
        None => (number, ""),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    if !int_part.bytes().all(|b| b.is_ascii_digit())
        || !frac_part.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    // value = digits / 10^frac_len * multiplier_num / multiplier_den
    let digits: u128 = format!("{int_part}{frac_part}").parse().ok()?;
    let mut den: u128 = 10u128.checked_pow(frac_part.len() as u32)?;
    let mut num: u128 = 1;
    match suffix {
        "" => {}
        "Ki" => num = 1 << 10,
        "Mi" => num = 1 << 20,
        "Gi" => num = 1 << 30,
        "Ti" => num = 1 << 40,
        "Pi" => num = 1 << 50,
        "Ei" => num = 1 << 60,
        "m" => den = den.checked_mul(1000)?,
        "k" => num = 1_000,
        "M" => num = 1_000_000,
        "G" => num = 1_000_000_000,
        "T" => num = 1_000_000_000_000,
        "P" => num = 1_000_000_000_000_000,
        "E" => num = 1_000_000_000_000_000_000,
        exp if exp.starts_with(['e', 'E']) => {
            let e: u32 = exp[1..].parse().ok()?;
            num = 10u128.checked_pow(e)?;
        }
        _ => return None,
    }
    let scaled = digits.checked_mul(num)?;
    let value = scaled.div_ceil(den);
    u64::try_from(value).ok()
}

/// `bytes` rounded up to whole GiB, in GiB.
pub fn gib_ceil(bytes: u64) -> u64 {
    bytes.div_ceil(GIB)
}

/// The quantity string upstream writes for a size of `gib` GiB: `"<n>Gi"`.
pub fn gib_quantity(gib: u64) -> String {
    format!("{gib}Gi")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_binary_decimal_and_fractional_quantities() {
        assert_eq!(parse_bytes("5Gi"), Some(5 * GIB));
        assert_eq!(parse_bytes("10737418240"), Some(10 * GIB));
        assert_eq!(parse_bytes("1k"), Some(1000));
        assert_eq!(parse_bytes("9.62G"), Some(9_620_000_000));
        assert_eq!(parse_bytes("1.5Ki"), Some(1536));
        assert_eq!(parse_bytes("1500m"), Some(2), "fractions round up");
        assert_eq!(parse_bytes("1e3"), Some(1000));
        assert_eq!(parse_bytes(".5Ki"), Some(512));
        for bad in ["", "Gi", "-1Gi", "5GB", "1.2.3", "abc", "."] {
            assert_eq!(parse_bytes(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn rounds_up_to_gib() {
        assert_eq!(gib_ceil(1), 1);
        assert_eq!(gib_ceil(GIB), 1);
        assert_eq!(gib_ceil(GIB + 1), 2);
        assert_eq!(gib_quantity(3), "3Gi");
    }
}

/// A CSI `capacity_range` that cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    /// `capacity_range` is required here (ControllerExpandVolume).
    #[error("capacity_range is missing: give required_bytes and/or limit_bytes")]
    Missing,
    /// A negative byte count.
    #[error("capacity_range.{field} is {value}; sizes cannot be negative")]
    Negative {
        /// `required_bytes` or `limit_bytes`.
        field: &'static str,
        /// The value.
        value: i64,
    },
    /// `limit_bytes` below `required_bytes`.
    #[error("capacity_range.limit_bytes ({limit}) is smaller than required_bytes ({required})")]
    LimitBelowRequired {
        /// required_bytes.
        required: i64,
        /// limit_bytes.
        limit: i64,
    },
    /// Rounding up to whole GiB (the data engine's unit) exceeds `limit_bytes`.
    #[error(
        "cStor volumes are sized in whole GiB: required_bytes {required} rounds up to {rounded} bytes, \
         which exceeds limit_bytes {limit}; allow at least {rounded} bytes"
    )]
    AboveLimit {
        /// required_bytes.
        required: i64,
        /// The rounded size.
        rounded: u64,
        /// limit_bytes.
        limit: i64,
    },
    /// More than [`MAX_VOLUME_BYTES`].
    #[error(
        "requested size {0} bytes exceeds the largest supported volume ({MAX_VOLUME_BYTES} bytes)"
    )]
    TooLarge(u64),
}

impl SizeError {
    /// Whether the range itself is malformed (`INVALID_ARGUMENT`) rather than unsatisfiable
    /// (`OUT_OF_RANGE`).
    pub fn is_invalid_argument(&self) -> bool {
        matches!(
            self,
            Self::Missing | Self::Negative { .. } | Self::LimitBelowRequired { .. }
        )
    }
}

/// The size to provision for a `capacity_range`: `required_bytes` rounded up to whole GiB;
/// without a requirement, 1 GiB (or the largest whole GiB under `limit_bytes`).
pub fn plan_size(required: i64, limit: i64) -> Result<u64, SizeError> {
    if required < 0 {
        return Err(SizeError::Negative {
            field: "required_bytes",
            value: required,
        });
    }
    if limit < 0 {
        return Err(SizeError::Negative {
            field: "limit_bytes",
            value: limit,
        });
    }
    if limit > 0 && limit < required {
        return Err(SizeError::LimitBelowRequired { required, limit });
    }
    let (required_u, limit_u) = (required as u64, limit as u64);
    if required_u > MAX_VOLUME_BYTES {
        return Err(SizeError::TooLarge(required_u));
    }
    let rounded = if required_u == 0 {
        if limit_u == 0 {
            GIB
        } else {
            (limit_u / GIB).min(MAX_VOLUME_BYTES / GIB) * GIB
        }
    } else {
        gib_ceil(required_u) * GIB
    };
    if rounded == 0 || (limit_u > 0 && rounded > limit_u) {
        let rounded = rounded.max(GIB);
        return Err(SizeError::AboveLimit {
            required,
            rounded,
            limit,
        });
    }
    Ok(rounded)
}

#[cfg(test)]
mod size_tests {
    use super::*;

    #[test]
    fn plans_whole_gib_within_the_range() {
        assert_eq!(plan_size(0, 0), Ok(GIB), "no range: 1 GiB default");
        assert_eq!(plan_size(1, 0), Ok(GIB));
        assert_eq!(plan_size(5 * GIB as i64, 0), Ok(5 * GIB));
        assert_eq!(plan_size(5 * GIB as i64 + 1, 0), Ok(6 * GIB));
        assert_eq!(
            plan_size(0, 3 * GIB as i64 + 7),
            Ok(3 * GIB),
            "only a limit: largest GiB under it"
        );
        assert_eq!(plan_size(GIB as i64, GIB as i64), Ok(GIB));
    }

    #[test]
    fn refuses_bad_ranges_with_the_right_kind() {
        let neg = plan_size(-1, 0).unwrap_err();
        assert!(neg.is_invalid_argument() && neg.to_string().contains("required_bytes is -1"));
        assert!(
            plan_size(0, -5)
                .unwrap_err()
                .to_string()
                .contains("limit_bytes is -5")
        );
        let below = plan_size(10, 5).unwrap_err();
        assert!(below.is_invalid_argument(), "{below}");
        let above = plan_size(1, 100 << 20).unwrap_err();
        assert!(
            !above.is_invalid_argument(),
            "unsatisfiable, not malformed: {above}"
        );
        assert!(matches!(
            plan_size(0, 100 << 20),
            Err(SizeError::AboveLimit { .. })
        ));
        assert!(matches!(
            plan_size(i64::MAX, 0),
            Err(SizeError::TooLarge(_))
        ));
    }
}
