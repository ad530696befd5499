use std::fs;
use std::path::{Path, PathBuf};

use crate::git_watch::watched_files;

/// Creates each path under `root`: a trailing `/` makes a directory, anything else a file.
fn layout(root: &Path, paths: &[&str]) {
    for path in paths {
        let full = root.join(path.trim_end_matches('/'));
        if path.ends_with('/') {
            fs::create_dir_all(full).unwrap();
        } else {
            fs::create_dir_all(full.parent().unwrap()).unwrap();
            fs::write(full, "").unwrap();
        }
    }
}

fn relative(root: &Path, watched: Vec<PathBuf>) -> Vec<String> {
    watched.iter().map(|p| p.strip_prefix(root).unwrap().display().to_string()).collect()
}

#[test]
fn a_working_clone_watches_the_loose_branch_and_the_packed_refs() {
    let git = tempfile::tempdir().unwrap();
    layout(git.path(), &["HEAD", "refs/heads/main", "refs/tags/", "packed-refs", "index"]);
    assert_eq!(
        relative(git.path(), watched_files(git.path(), git.path(), Some("refs/heads/main"))),
        ["HEAD", "refs/heads/main", "packed-refs", "refs/tags"]
    );
}

#[test]
fn a_fresh_clone_with_a_packed_branch_watches_where_the_next_commit_writes_it() {
    let git = tempfile::tempdir().unwrap();
    layout(git.path(), &["HEAD", "refs/heads/", "refs/tags/", "packed-refs"]);
    assert_eq!(
        relative(git.path(), watched_files(git.path(), git.path(), Some("refs/heads/main"))),
        ["HEAD", "refs/heads", "packed-refs", "refs/tags"]
    );
}

#[test]
fn a_new_repository_without_packed_refs_or_commits_watches_only_what_exists() {
    let git = tempfile::tempdir().unwrap();
    layout(git.path(), &["HEAD", "refs/heads/"]);
    assert_eq!(
        relative(git.path(), watched_files(git.path(), git.path(), Some("refs/heads/topic/x"))),
        ["HEAD", "refs/heads"]
    );
}

#[test]
fn a_linked_worktree_watches_its_own_head_and_the_shared_branch() {
    let git = tempfile::tempdir().unwrap();
    layout(git.path(), &["HEAD", "refs/heads/feature", "worktrees/wt/HEAD", "worktrees/wt/index"]);
    let worktree = git.path().join("worktrees/wt");
    assert_eq!(
        relative(git.path(), watched_files(&worktree, git.path(), Some("refs/heads/feature"))),
        ["worktrees/wt/HEAD", "refs/heads/feature"]
    );
}

#[test]
fn a_detached_head_is_watched_alone_with_the_tags() {
    let git = tempfile::tempdir().unwrap();
    layout(git.path(), &["HEAD", "refs/heads/main", "refs/tags/v1"]);
    assert_eq!(
        relative(git.path(), watched_files(git.path(), git.path(), None)),
        ["HEAD", "refs/tags"]
    );
}

#[test]
fn a_reftable_repository_watches_its_tables() {
    let git = tempfile::tempdir().unwrap();
    layout(git.path(), &["HEAD", "refs/heads", "reftable/tables.list"]);
    assert_eq!(
        relative(git.path(), watched_files(git.path(), git.path(), Some("refs/heads/main"))),
        ["HEAD", "reftable"]
    );
}
