//! Records the git tag, commit and commit date of the checkout being built. Outside a git checkout
//! (a source tarball) the values are "unknown".

use std::path::PathBuf;
use std::process::Command;

#[path = "src/git_watch.rs"]
mod git_watch;

fn git(args: &[&str]) -> Option<String> {
    Command::new("git")
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn main() {
    // Watching only files that exist keeps a build with nothing changed from relinking every
    // binary; the working tree is not watched, so the tag has no `-dirty` suffix, which would
    // be stale as soon as a file is edited after this script ran.
    if let (Some(git_dir), Some(common_dir)) =
        (git(&["rev-parse", "--absolute-git-dir"]), git(&["rev-parse", "--git-common-dir"]))
    {
        // `--git-common-dir` may be relative to the directory git ran in, which is this one.
        let common_dir = std::env::current_dir().unwrap_or_default().join(common_dir);
        let common_dir = common_dir.canonicalize().unwrap_or(common_dir);
        let head_ref = git(&["symbolic-ref", "-q", "HEAD"]);
        for file in
            git_watch::watched_files(&PathBuf::from(git_dir), &common_dir, head_ref.as_deref())
        {
            println!("cargo:rerun-if-changed={}", file.display());
        }
    }
    let unknown = || "unknown".to_string();
    println!(
        "cargo:rustc-env=KUMA_GIT_TAG={}",
        git(&["describe", "--tags", "--always"]).unwrap_or_else(unknown)
    );
    println!(
        "cargo:rustc-env=KUMA_GIT_COMMIT={}",
        git(&["rev-parse", "HEAD"]).unwrap_or_else(unknown)
    );
    // The commit date, not the wall clock, so rebuilding the same commit gives the same binary.
    println!(
        "cargo:rustc-env=KUMA_BUILD_DATE={}",
        git(&["show", "-s", "--format=%cI", "HEAD"]).unwrap_or_else(unknown)
    );
}
