//! Kubernetes resource quantities (`5Gi`, `9.62G`, `1500m`, `10737418240`, `1e9`) as byte
//! counts: the one parser every component uses (CSI sizes, CVC and CV capacities, resize
//! detection). All arithmetic is checked: a quantity too large for `u64` bytes is refused like
//! a malformed one, never wrapped.

/// One gibibyte.
pub const GIB: u64 = 1 << 30;

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

/// [`parse_bytes`] of a [`Quantity`](k8s_openapi::apimachinery::pkg::api::resource::Quantity).
pub fn bytes_of(q: &k8s_openapi::apimachinery::pkg::api::resource::Quantity) -> Option<u64> {
    parse_bytes(&q.0)
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
        for bad in [
            "",
            "Gi",
            "-1Gi",
            "5GB",
            "1.2.3",
            "abc",
            ".",
            // Beyond u64 bytes: refused, never wrapped.
            "16Ei",
            "18446744073709551616",
            "1e20",
            "99999999999999999999999999999999999999999Ei",
            "1e99999",
        ] {
            assert_eq!(parse_bytes(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn largest_values_are_exact() {
        assert_eq!(parse_bytes("18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_bytes("15Ei"), Some(15 << 60));
        assert_eq!(parse_bytes("1e19"), Some(10_000_000_000_000_000_000));
    }

    #[test]
    fn rounds_up_to_gib() {
        assert_eq!(gib_ceil(1), 1);
        assert_eq!(gib_ceil(GIB), 1);
        assert_eq!(gib_ceil(GIB + 1), 2);
        assert_eq!(gib_quantity(3), "3Gi");
    }
}
