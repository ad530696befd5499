//! Which git files the build script watches so that a build reruns it exactly when HEAD may name
//! another commit or tag. Compiled into build.rs (`#[path]`) and into this crate's tests; it only
//! looks at the filesystem, so the tests can hand it any `.git` layout.

use std::path::{Path, PathBuf};

/// The git files whose change may change what `git rev-parse HEAD` and `git describe --tags`
/// print, keeping only those that exist: cargo takes a watched path that is missing for a
/// changed one and would rerun the script, and relink every binary, on every build.
///
/// `git_dir` is this worktree's git directory (HEAD is there); `common_dir` is the repository's
/// (refs and packed-refs are there; the same directory outside a linked worktree); `head_ref`
/// is the branch HEAD points to (`refs/heads/main`), `None` when HEAD is detached.
pub fn watched_files(git_dir: &Path, common_dir: &Path, head_ref: Option<&str>) -> Vec<PathBuf> {
    let refs = common_dir.join("refs");
    // A checkout or a commit on a detached HEAD rewrites HEAD.
    let mut watched = vec![git_dir.join("HEAD")];
    if let Some(head_ref) = head_ref {
        let loose = common_dir.join(head_ref);
        if loose.is_file() {
            // A commit rewrites it; packing it deletes it, which cargo sees as a change too.
            watched.push(loose);
        } else if let Some(dir) = loose
            .ancestors()
            .skip(1)
            .take_while(|d| d.starts_with(&refs) && *d != refs)
            .find(|d| d.is_dir())
        {
            // Packed (a fresh clone) or without a commit yet: the next commit writes the
            // branch as a new loose file in this directory.
            watched.push(dir.to_path_buf());
        }
    }
    // Packed branches and tags; a new loose tag changes what `describe` prints.
    watched.push(common_dir.join("packed-refs"));
    watched.push(refs.join("tags"));
    // A repository with the reftable backend keeps every ref there instead.
    watched.push(common_dir.join("reftable"));
    watched.retain(|p| p.exists());
    watched
}
