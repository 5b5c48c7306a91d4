//! Material kept beside the repository in `../shared` (upstream's CRDs and example objects, the
//! real parts). A fresh clone without it still passes: a test that needs it says `SKIPPED` and
//! why. CI, which has it, sets [`REQUIRE_ENV`]`=1`, and then its absence fails the test instead.

use std::path::{Path, PathBuf};

/// Set to `1` where `../shared` must be present (CI): a missing piece fails instead of skipping.
pub const REQUIRE_ENV: &str = "CSTOR_REQUIRE_SHARED";

/// The repository's `../shared` directory.
pub fn shared_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared")
}

/// `path` when it exists; otherwise prints `SKIPPED <test>: <path> is absent (<what>)` and gives
/// `None`, or panics when [`REQUIRE_ENV`] is `1`.
pub fn require(path: PathBuf, test: &str, what: &str) -> Option<PathBuf> {
    let required = std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1");
    match decide(path, test, what, required) {
        Ok(found) => found,
        Err(message) => panic!("{message}"),
    }
}

/// `Ok(Some(path))` when it exists, `Ok(None)` after printing `SKIPPED` when it may be absent,
/// `Err(message)` when it is required.
fn decide(
    path: PathBuf,
    test: &str,
    what: &str,
    required: bool,
) -> Result<Option<PathBuf>, String> {
    if path.exists() {
        return Ok(Some(path));
    }
    let why = format!("{} is absent ({what})", path.display());
    if required {
        return Err(format!("{test}: {REQUIRE_ENV}=1 but {why}"));
    }
    println!("SKIPPED {test}: {why}");
    Ok(None)
}

/// Upstream's CRDs and example objects (`../shared/fixtures/upstream`), or `None` after saying
/// `SKIPPED`.
pub fn upstream_fixtures(test: &str) -> Option<PathBuf> {
    require(
        shared_dir().join("fixtures/upstream"),
        test,
        "upstream's CRDs and examples, kept beside the repository",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_material_skips_unless_required() {
        let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        assert_eq!(decide(here.clone(), "t", "w", true), Ok(Some(here)));
        let gone = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("no-such-dir");
        assert_eq!(decide(gone.clone(), "t", "w", false), Ok(None));
        let err = decide(gone, "t", "what it is", true).unwrap_err();
        assert!(
            err.contains("CSTOR_REQUIRE_SHARED=1") && err.contains("what it is"),
            "{err}"
        );
    }
}
