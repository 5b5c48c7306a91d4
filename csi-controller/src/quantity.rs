//! Volume sizes: the GiB rounding upstream applies to every volume size, and CSI capacity
//! ranges. Quantity parsing itself is `cstor_api::quantity`, shared with the operators.

/// Largest size we hand to the data engine: 1 EiB. Anything larger is refused as out of range
/// (it would also overflow the `int64` CSI fields once rounded up).
pub const MAX_VOLUME_BYTES: u64 = 1 << 60;

pub use cstor_api::quantity::{GIB, gib_ceil, gib_quantity, parse_bytes};

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
