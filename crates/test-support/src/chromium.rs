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

/// A page open in a headless Chromium driven in real time through the DevTools protocol over
/// a pipe (`--remote-debugging-pipe`: JSON messages ended by a NUL byte, on file descriptors 3
/// and 4, which a shell maps onto the child's stdin and stdout). For what virtual time cannot
/// show: how long the page really takes, and what it does by itself while the test changes the
/// mesh. Dropping it kills the browser.
pub struct Page {
    child: std::process::Child,
    to_browser: std::process::ChildStdin,
    from_browser: std::sync::mpsc::Receiver<serde_json::Value>,
    session: String,
    next_id: u64,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for Page {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Page").field("pid", &self.child.id()).finish_non_exhaustive()
    }
}

/// How long one DevTools command may take.
const COMMAND_DEADLINE: Duration = Duration::from_secs(20);

impl Chromium {
    /// Opens `url` in a new browser; panics when the browser does not start or answer.
    pub fn must_open(&self, url: &str) -> Page {
        let dir = tempfile::tempdir().expect("a temp dir");
        let profile = format!("--user-data-dir={}", dir.path().join("profile").display());
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(r#"exec "$0" "$@" 3<&0 4>&1 >/dev/null 2>/dev/null"#)
            .arg(&self.path)
            .args(["--no-sandbox", "--disable-gpu", "--no-first-run", "--remote-debugging-pipe"])
            .arg(profile)
            .arg("about:blank")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromium");
        let to_browser = child.stdin.take().expect("piped stdin");
        let mut stdout = child.stdout.take().expect("piped stdout");
        let (tx, from_browser) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::Read;
            let mut pending = Vec::new();
            let mut chunk = [0u8; 64 * 1024];
            while let Ok(n) = stdout.read(&mut chunk) {
                if n == 0 {
                    return;
                }
                pending.extend_from_slice(&chunk[..n]);
                while let Some(end) = pending.iter().position(|b| *b == 0) {
                    let message: Vec<u8> = pending.drain(..=end).collect();
                    let parsed = serde_json::from_slice(&message[..message.len() - 1]);
                    if parsed.map(|m| tx.send(m)).is_ok_and(|sent| sent.is_err()) {
                        return;
                    }
                }
            }
        });
        let mut page =
            Page { child, to_browser, from_browser, session: String::new(), next_id: 0, _dir: dir };
        let targets = page.must_send("Target.getTargets", serde_json::json!({}));
        let target = targets["targetInfos"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["type"] == "page")
            .and_then(|t| t["targetId"].as_str())
            .expect("the browser has a page")
            .to_string();
        let attached = page.must_send(
            "Target.attachToTarget",
            serde_json::json!({"targetId": target, "flatten": true}),
        );
        page.session = attached["sessionId"].as_str().expect("a session").to_string();
        page.must_send("Page.navigate", serde_json::json!({"url": url}));
        page
    }
}

impl Page {
    /// The value of the JavaScript expression `expression` in the page (`null` when undefined).
    pub fn evaluate(&mut self, expression: &str) -> Result<serde_json::Value, String> {
        let params = serde_json::json!({"expression": expression, "returnByValue": true});
        let reply = self.send("Runtime.evaluate", params)?;
        if let Some(exception) = reply.get("exceptionDetails") {
            return Err(format!("{expression} threw: {exception}"));
        }
        Ok(reply["result"].get("value").cloned().unwrap_or_default())
    }

    fn must_send(&mut self, method: &str, params: serde_json::Value) -> serde_json::Value {
        self.send(method, params).unwrap_or_else(|e| panic!("{method}: {e}"))
    }

    fn send(
        &mut self,
        method: &str,
        params: serde_json::Value,
    ) -> Result<serde_json::Value, String> {
        use std::io::Write;
        self.next_id += 1;
        let id = self.next_id;
        let mut message = serde_json::json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            message["sessionId"] = self.session.clone().into();
        }
        let mut bytes = message.to_string().into_bytes();
        bytes.push(0);
        self.to_browser.write_all(&bytes).map_err(|e| format!("the browser is gone: {e}"))?;
        let deadline = std::time::Instant::now() + COMMAND_DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let reply = self
                .from_browser
                .recv_timeout(left)
                .map_err(|e| format!("no answer to {method} within {COMMAND_DEADLINE:?}: {e}"))?;
            if reply["id"] != id {
                continue; // an event, or the answer to an earlier command
            }
            if let Some(error) = reply.get("error") {
                return Err(format!("{method} failed: {error}"));
            }
            return Ok(reply["result"].clone());
        }
    }
}

impl Drop for Page {
    /// Closes the browser (which ends its renderer and helper processes too); kills it if it is
    /// still there after 5 s.
    fn drop(&mut self) {
        self.session.clear();
        let _ = self.send("Browser.close", serde_json::json!({}));
        let child = &mut self.child;
        if try_poll_until(Duration::from_secs(5), || child.try_wait().ok().flatten().ok_or(()))
            .is_err()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
