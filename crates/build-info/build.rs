//! Records the git tag, commit and commit date of the checkout being built. Outside a git checkout
//! (a source tarball) the values are "unknown".

use std::process::Command;

fn git(args: &[&str]) -> String {
    Command::new("git")
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

fn main() {
    let git_dir = git(&["rev-parse", "--absolute-git-dir"]);
    if git_dir != "unknown" {
        // A commit moves the branch's ref (loose or packed), a checkout moves HEAD, and staging
        // or editing changes the index, which `--dirty` reflects.
        println!("cargo:rerun-if-changed={git_dir}/HEAD");
        println!("cargo:rerun-if-changed={git_dir}/packed-refs");
        println!("cargo:rerun-if-changed={git_dir}/index");
        let head_ref = git(&["symbolic-ref", "-q", "HEAD"]);
        if head_ref != "unknown" {
            println!("cargo:rerun-if-changed={git_dir}/{head_ref}");
        }
    }
    println!(
        "cargo:rustc-env=KUMA_GIT_TAG={}",
        git(&["describe", "--tags", "--always", "--dirty"])
    );
    println!("cargo:rustc-env=KUMA_GIT_COMMIT={}", git(&["rev-parse", "HEAD"]));
    // The commit date, not the wall clock, so rebuilding the same commit gives the same binary.
    println!("cargo:rustc-env=KUMA_BUILD_DATE={}", git(&["show", "-s", "--format=%cI", "HEAD"]));
}
