//! Build information printed by `version [--detailed]` of every binary and returned by the API's
//! index. Kept in its own tiny crate because it changes with every commit.

use std::fmt::Write;

// Used by build.rs; compiled here only for its tests.
#[cfg(test)]
mod git_watch;
#[cfg(test)]
mod git_watch_tests;

/// The product version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// `git describe --tags --always --dirty` of the build.
pub const GIT_TAG: &str = env!("KUMA_GIT_TAG");
/// The commit built.
pub const GIT_COMMIT: &str = env!("KUMA_GIT_COMMIT");
/// The commit's date (RFC 3339).
pub const BUILD_DATE: &str = env!("KUMA_BUILD_DATE");

/// What `version --detailed` prints, one `Key: value` line each.
/// What `version` prints: the version, or with `detailed` the full build description.
pub fn version_text(detailed: bool) -> String {
    if detailed {
        self::detailed("Kuma")
    } else {
        format!("{VERSION}\n")
    }
}

pub fn detailed(product: &str) -> String {
    let mut out = String::new();
    for (key, value) in [
        ("Product", product),
        ("Version", VERSION),
        ("Git Tag", GIT_TAG),
        ("Git Commit", GIT_COMMIT),
        ("Build Date", BUILD_DATE),
    ] {
        let _ = writeln!(out, "{:<12}{value}", format!("{key}:"));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn detailed_lists_every_field() {
        let text = super::detailed("Kuma");
        for key in ["Product:", "Version:", "Git Tag:", "Git Commit:", "Build Date:"] {
            assert!(text.contains(key), "{key} missing from {text}");
        }
    }
}
