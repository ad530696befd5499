//! A real Prometheus server (Debian's `prometheus` package, installed by `.ci/setup --tests`) on
//! a free 127.0.0.1 port, with the scrape config a test gives it, and its HTTP API to query.

use std::path::PathBuf;
use std::time::Duration;

use crate::{free_port, http_get, try_poll_until, Proc};

/// The `prometheus` binary: `KUMA_RS_PROMETHEUS`, else Debian's `/usr/bin/prometheus`.
pub fn prometheus_path() -> PathBuf {
    std::env::var_os("KUMA_RS_PROMETHEUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/prometheus"))
}

/// A running Prometheus; dropping it stops it.
#[derive(Debug)]
pub struct Prometheus {
    proc: Proc,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus with `config_yaml` (its `prometheus.yml`) and waits until it is ready;
    /// panics with its log otherwise, or with what to install when the binary is missing.
    pub fn must_start(config_yaml: &str) -> Prometheus {
        let binary = prometheus_path();
        assert!(
            binary.exists(),
            "{} is missing: run .ci/setup --tests (it installs Debian's prometheus package) or set KUMA_RS_PROMETHEUS",
            binary.display()
        );
        let dir = tempfile::tempdir().expect("a temp dir");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, config_yaml).expect("write prometheus.yml");
        let port = free_port();
        let data = dir.path().join("data");
        let proc = Proc::spawn(
            &binary,
            &[
                &format!("--config.file={}", config.display()),
                &format!("--web.listen-address=127.0.0.1:{port}"),
                &format!("--storage.tsdb.path={}", data.display()),
                "--log.level=warn",
            ],
            &[],
        );
        let prometheus = Prometheus { proc, port, _dir: dir };
        try_poll_until(Duration::from_secs(30), || match http_get(port, "/-/ready") {
            Ok(reply) if reply.status == 200 => Ok(()),
            other => Err(format!("{other:?}")),
        })
        .unwrap_or_else(|e| {
            panic!("Prometheus did not become ready ({e}); its log:\n{}", prometheus.log())
        });
        prometheus
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        self.proc.log()
    }

    /// `GET /api/v1/<path>` (e.g. `query?query=up`, already encoded) as JSON: its `data` when
    /// the status is `success`.
    pub fn api(&self, path: &str) -> Result<serde_json::Value, String> {
        let reply = http_get(self.port, &format!("/api/v1/{path}")).map_err(|e| e.to_string())?;
        let body: serde_json::Value =
            serde_json::from_str(&reply.body).map_err(|e| format!("{e}: {}", reply.body))?;
        match body["status"].as_str() {
            Some("success") => Ok(body["data"].clone()),
            _ => Err(format!("{}: {}", reply.status, reply.body)),
        }
    }

    /// The series an instant query returns (`data.result`).
    pub fn query(&self, promql: &str) -> Result<Vec<serde_json::Value>, String> {
        let data = self.api(&format!("query?query={}", encode(promql)))?;
        Ok(data["result"].as_array().cloned().unwrap_or_default())
    }

    /// The targets Prometheus scrapes now (`data.activeTargets`).
    pub fn active_targets(&self) -> Result<Vec<serde_json::Value>, String> {
        let data = self.api("targets?state=active")?;
        Ok(data["activeTargets"].as_array().cloned().unwrap_or_default())
    }
}

/// Percent-encodes a query parameter's value.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
