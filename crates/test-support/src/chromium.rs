use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::try_poll_until;

/// Debian's headless Chromium (`chromium-headless-shell`, installed by `make setup-tests`), for
/// tests of the web GUI: it loads a page, runs its scripts for a budget of virtual time (timers
/// fire without waiting for them in real time; the clock stands still while requests are in
/// flight), then prints the DOM or saves a screenshot. Every run has its own profile directory
/// and a wall-clock deadline.
#[derive(Debug)]
pub struct Chromium {
    path: PathBuf,
}

/// How long one run may take in real time, whatever the page does.
const DEADLINE: Duration = Duration::from_secs(60);

impl Chromium {
    /// The installed browser; panics saying how to install it when it is not.
    pub fn must_find() -> Chromium {
        let path = PathBuf::from("/usr/bin/chromium-headless-shell");
        assert!(
            path.is_file(),
            "{} is missing: run `make setup-tests` (it installs Debian's chromium-headless-shell)",
            path.display()
        );
        Chromium { path }
    }

    /// The DOM of `url` as HTML after its scripts ran for `budget` of virtual time.
    pub fn dump_dom(&self, url: &str, budget: Duration) -> Result<String, String> {
        self.run(url, budget, &["--dump-dom"], |out| Ok(String::from_utf8_lossy(out).into_owned()))
    }

    /// Saves a PNG of `url` (`width` x `height`) after its scripts ran for `budget`.
    pub fn screenshot(
        &self,
        url: &str,
        budget: Duration,
        file: &Path,
        (width, height): (u32, u32),
    ) -> Result<(), String> {
        let shot = format!("--screenshot={}", file.display());
        let size = format!("--window-size={width},{height}");
        self.run(url, budget, &[&shot, &size], |_| Ok(()))?;
        match std::fs::metadata(file) {
            Ok(meta) if meta.len() > 0 => Ok(()),
            other => Err(format!("no screenshot in {}: {other:?}", file.display())),
        }
    }

    fn run<T>(
        &self,
        url: &str,
        budget: Duration,
        args: &[&str],
        read: impl FnOnce(&[u8]) -> Result<T, String>,
    ) -> Result<T, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out_file = dir.path().join("stdout");
        let err_file = dir.path().join("stderr");
        let file = |p: &Path| std::fs::File::create(p).map_err(|e| e.to_string());
        let mut child = Command::new(&self.path)
            // Tests run as root in CI containers, where Chromium's sandbox cannot start.
            .args(["--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars"])
            .arg(format!("--user-data-dir={}", dir.path().join("profile").display()))
            .arg(format!("--virtual-time-budget={}", budget.as_millis()))
            .args(args)
            .arg(url)
            .stdin(Stdio::null())
            .stdout(file(&out_file)?)
            .stderr(file(&err_file)?)
            .spawn()
            .map_err(|e| format!("start {}: {e}", self.path.display()))?;
        let status = try_poll_until(DEADLINE, || child.try_wait().ok().flatten().ok_or(()));
        let log = || std::fs::read_to_string(&err_file).unwrap_or_default();
        let Ok(status) = status else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("chromium did not finish {url} within {DEADLINE:?}:\n{}", log()));
        };
        if !status.success() {
            return Err(format!("chromium on {url} exited with {status}:\n{}", log()));
        }
        read(&std::fs::read(&out_file).map_err(|e| e.to_string())?)
    }
}
