//! Byte values of Kubernetes quantities (`5Gi`, `10G`, `1073741824`, `1e9`), enough to compare
//! `status.capacity` with `spec.capacity` for resize detection.

/// The number of bytes `q` stands for, or `None` when it is not a valid quantity (fractions of
/// a byte are rounded up).
pub fn to_bytes(q: &str) -> Option<u128> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    if num.is_empty() || num.matches('.').count() > 1 {
        return None;
    }
    let (int_part, frac_part) = num.split_once('.').unwrap_or((num, ""));
    let digits = format!("{int_part}{frac_part}");
    let mantissa: u128 = digits.parse().ok()?;
    let scale_down = 10u128.checked_pow(u32::try_from(frac_part.len()).ok()?)?;
    let (mult, exp10): (u128, i32) = match suffix {
        "" => (1, 0),
        "Ki" => (1 << 10, 0),
        "Mi" => (1 << 20, 0),
        "Gi" => (1 << 30, 0),
        "Ti" => (1 << 40, 0),
        "Pi" => (1 << 50, 0),
        "Ei" => (1 << 60, 0),
        "k" => (1, 3),
        "M" => (1, 6),
        "G" => (1, 9),
        "T" => (1, 12),
        "P" => (1, 15),
        "E" => (1, 18),
        s if s.starts_with(['e', 'E']) => (1, s[1..].parse().ok()?),
        _ => return None,
    };
    let mut value = mantissa.checked_mul(mult)?;
    let mut denom = scale_down;
    if exp10 >= 0 {
        value = value.checked_mul(10u128.checked_pow(exp10.unsigned_abs())?)?;
    } else {
        denom = denom.checked_mul(10u128.checked_pow(exp10.unsigned_abs())?)?;
    }
    Some(value.div_ceil(denom))
}

#[cfg(test)]
mod tests {
    use super::to_bytes;

    #[test]
    fn binary_decimal_plain_and_exponent() {
        assert_eq!(to_bytes("5Gi"), Some(5 << 30));
        assert_eq!(to_bytes("10G"), Some(10_000_000_000));
        assert_eq!(to_bytes("1.5Gi"), Some(3 << 29));
        assert_eq!(to_bytes("4096"), Some(4096));
        assert_eq!(to_bytes("1e3"), Some(1000));
        assert_eq!(to_bytes("512Mi"), Some(512 << 20));
        assert_eq!(to_bytes("5Xi"), None);
        assert_eq!(to_bytes(""), None);
        assert_eq!(to_bytes("Gi"), None);
    }
}
