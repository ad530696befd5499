//! The command line: wrong flags and an unreachable control plane end in one line and a non-zero
//! exit.

use std::process::Command;

use kuma_test_support::{bin_path, free_port};

fn run(args: &[&str]) -> (i32, String) {
    let output = Command::new(bin_path("kuma-prometheus-sd"))
        .args(args)
        .env_clear()
        .output()
        .expect("kuma-prometheus-sd runs");
    (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn wrong_flags_are_refused_in_one_line_saying_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("f.json");
    let out = out.to_str().unwrap();
    for (args, says) in [
        (vec!["run", "--no-such-flag"], "--no-such-flag"),
        (vec!["run", "--cp-address", "http://cp:5681", "--output-file", out], "MADS address"),
        (vec!["run", "--cp-address", "grpcs://cp:5676", "--output-file", out], "--ca-cert-file"),
        (vec!["run", "--output-file", "/no/such/dir/f.json"], "--output-file"),
    ] {
        let (code, stderr) = run(&args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

#[test]
fn an_unreachable_control_plane_ends_it_with_what_to_check() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("f.json");
    let cp = format!("grpc://127.0.0.1:{}", free_port());
    let args = [
        "run",
        "--cp-address",
        &cp,
        "--output-file",
        out.to_str().unwrap(),
        "--startup-timeout",
        "2s",
    ];
    let (code, stderr) = run(&args);
    assert_eq!(code, 1, "{stderr}");
    let last = stderr.trim().lines().last().unwrap_or_default().to_string();
    assert!(last.contains("no control plane answered") && last.contains(&cp), "{stderr}");
    assert!(!out.exists(), "no file is written before a control plane answers");
}
