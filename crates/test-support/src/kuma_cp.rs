use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{bin_path, free_port, http_get, http_request, poll_until, try_poll_until};

/// A running `kuma-cp run` process on free 127.0.0.1 ports. Dropping it sends SIGTERM and waits.
#[derive(Debug)]
pub struct KumaCp {
    child: Option<Child>,
    pub api_port: u16,
    pub diagnostics_port: u16,
    pub bootstrap_port: u16,
    pub xds_port: u16,
    pub sds_port: u16,
    pub raft_port: u16,
    /// The API over HTTPS.
    pub https_port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
    /// How it was started, to start it again the same way.
    builder: KumaCpBuilder,
}

/// Settings for a `KumaCp` before it starts.
#[derive(Debug, Default, Clone)]
pub struct KumaCpBuilder {
    env: BTreeMap<String, String>,
    /// More arguments of `kuma-cp run`.
    args: Vec<String>,
    config_yaml: Option<String>,
    ports: Option<[u16; 7]>,
}

impl KumaCpBuilder {
    /// Sets a `KUMA_*` environment variable for the process.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.insert(key.to_string(), value.to_string());
        self
    }

    /// Adds an argument to `kuma-cp run` (e.g. `--force-new-cluster`).
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_string());
        self
    }

    /// Uses these ports (API, diagnostics, bootstrap, xDS, SDS, Raft, API over HTTPS) instead of
    /// free ones, e.g. for peers that must know each other's Raft port before they start.
    pub fn ports(mut self, ports: [u16; 7]) -> Self {
        self.ports = Some(ports);
        self
    }

    /// Passes a config file with this content (`-c FILE`).
    pub fn config(mut self, yaml: &str) -> Self {
        self.config_yaml = Some(yaml.to_string());
        self
    }

    /// Starts the process and waits until `/ready` answers 200; panics with its log otherwise.
    /// When a port picked by `free_port` was taken by another test process in the meantime
    /// (kuma-cp then says "could not listen"), it starts again on fresh ports, at most 3 times.
    pub fn must_start(self) -> KumaCp {
        for attempt in 1..=3 {
            let ports = self.ports.unwrap_or_else(|| std::array::from_fn(|_| free_port()));
            match self.try_start(ports) {
                Ok(cp) => return cp,
                Err(cp)
                    if attempt < 3
                        && self.ports.is_none()
                        && cp.log().contains("could not listen") =>
                {
                    continue
                }
                Err(cp) => panic!("kuma-cp did not become ready; its log:\n{}", cp.log()),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    fn try_start(&self, ports: [u16; 7]) -> Result<KumaCp, Box<KumaCp>> {
        let dir = tempfile::tempdir().expect("a temp dir");
        let log = dir.path().join("kuma-cp.log");
        let mut cmd = Command::new(bin_path("kuma-cp"));
        cmd.arg("run").args(&self.args);
        if let Some(yaml) = &self.config_yaml {
            let path = dir.path().join("kuma-cp.yaml");
            std::fs::write(&path, yaml).expect("write config");
            cmd.arg("-c").arg(path);
        }
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("KUMA_API_SERVER_PORT", ports[0].to_string())
            .env("KUMA_DIAGNOSTICS_PORT", ports[1].to_string())
            .env("KUMA_BOOTSTRAP_SERVER_PORT", ports[2].to_string())
            .env("KUMA_XDS_SERVER_GRPC_PORT", ports[3].to_string())
            .env("KUMA_SDS_SERVER_GRPC_PORT", ports[4].to_string())
            .env("KUMA_RAFT_PORT", ports[5].to_string())
            .env("KUMA_API_SERVER_HTTPS_PORT", ports[6].to_string())
            .envs(&self.env)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).expect("log file"))
            .stderr(std::fs::File::options().append(true).open(&log).expect("log file"));
        let child = cmd.spawn().expect("spawn kuma-cp");
        let mut cp = KumaCp {
            child: Some(child),
            api_port: ports[0],
            diagnostics_port: ports[1],
            bootstrap_port: ports[2],
            xds_port: ports[3],
            sds_port: ports[4],
            raft_port: ports[5],
            https_port: ports[6],
            log,
            _dir: dir,
            builder: KumaCpBuilder { ports: Some(ports), ..self.clone() },
        };
        // Ok(true): ready; Ok(false): exited; Err: still starting.
        let outcome = try_poll_until(Duration::from_secs(20), || {
            if let Some(Ok(Some(_))) = cp.child.as_mut().map(|c| c.try_wait()) {
                return Ok(false);
            }
            match http_get(cp.diagnostics_port, "/ready") {
                Ok(r) if r.status == 200 => Ok(true),
                _ => Err(()),
            }
        });
        match outcome {
            Ok(true) => Ok(cp),
            Ok(false) => {
                cp.child = None;
                Err(Box::new(cp))
            }
            Err(()) => Err(Box::new(cp)),
        }
    }
}

impl KumaCp {
    pub fn builder() -> KumaCpBuilder {
        KumaCpBuilder::default()
    }

    /// Starts with default settings.
    pub fn must_start() -> KumaCp {
        KumaCp::builder().must_start()
    }

    /// `http://127.0.0.1:<api port>`.
    pub fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.api_port)
    }

    /// `https://127.0.0.1:<bootstrap port>`: the bootstrap server speaks TLS by default.
    pub fn bootstrap_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.bootstrap_port)
    }

    /// The control plane's CA certificate, as a user gets it (`kumactl inspect
    /// control-plane-ca`, i.e. `GET /control-plane/ca`), written to a file of this process's
    /// temp dir; waits until the leader has generated it.
    pub fn must_ca_file(&self) -> PathBuf {
        let pem =
            poll_until(Duration::from_secs(20), "the control plane's CA", || {
                match http_get(self.api_port, "/control-plane/ca") {
                    Ok(r) if r.status == 200 => Ok(r.body),
                    other => Err(format!("{other:?}")),
                }
            });
        let path = self._dir.path().join("control-plane-ca.crt");
        std::fs::write(&path, pem).expect("write the CA file");
        path
    }

    /// A dataplane token from `POST /tokens/dataplane` with `request` (e.g.
    /// `{"mesh":"default","name":"redis-1"}`), as `kumactl generate dataplane-token` asks for it;
    /// waits until the mesh has a signing key.
    pub fn must_token(&self, request: &str) -> String {
        poll_until(Duration::from_secs(20), "a dataplane token", || {
            match http_request(self.api_port, "POST", "/tokens/dataplane", Some(request)) {
                Ok(r) if r.status == 200 => Ok(r.body.trim().to_string()),
                other => Err(format!("{other:?}")),
            }
        })
    }

    /// `POST /bootstrap` with `body` over TLS, verified against the control plane's CA.
    pub fn bootstrap_request(&self, body: &str) -> std::io::Result<crate::HttpReply> {
        let ca = std::fs::read_to_string(self.must_ca_file())?;
        crate::https_request(self.bootstrap_port, &ca, "POST", "/bootstrap", Some(body))
    }

    /// A token for dataplane `mesh`/`name`, written to a file of this process's temp dir.
    pub fn must_token_file(&self, mesh: &str, name: &str) -> PathBuf {
        let token = self.must_token(&format!(r#"{{"mesh":"{mesh}","name":"{name}"}}"#));
        let path = self._dir.path().join(format!("token-{mesh}-{name}"));
        std::fs::write(&path, token).expect("write the token file");
        path
    }

    /// What a kuma-dp for `mesh`/`name` is given to reach this control plane as a user would run
    /// it: the bootstrap URL, the control plane's CA and a token of its own.
    pub fn must_kuma_dp_env(&self, mesh: &str, name: &str) -> Vec<(String, String)> {
        let path = |p: PathBuf| p.to_str().expect("a UTF-8 path").to_string();
        vec![
            ("KUMA_CONTROL_PLANE_BOOTSTRAP_SERVER_URL".to_string(), self.bootstrap_url()),
            ("KUMA_CONTROL_PLANE_CA_CERT_FILE".to_string(), path(self.must_ca_file())),
            (
                "KUMA_DATAPLANE_RUNTIME_TOKEN_PATH".to_string(),
                path(self.must_token_file(mesh, name)),
            ),
            ("KUMA_DATAPLANE_MESH".to_string(), mesh.to_string()),
            ("KUMA_DATAPLANE_NAME".to_string(), name.to_string()),
        ]
    }

    /// What the process has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the process is running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts it again with the same ports, environment and config (its data stays where the
    /// environment says), after stopping it with SIGKILL if it still runs.
    pub fn must_restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let previous = std::fs::read_to_string(&self.log).unwrap_or_default();
        *self = self.builder.clone().must_start();
        if !previous.is_empty() {
            let now = std::fs::read_to_string(&self.log).unwrap_or_default();
            let _ = std::fs::write(&self.log, format!("{previous}\n--- restarted ---\n{now}"));
        }
    }

    /// `must_restart` with its settings changed by `customize` (e.g. an argument added).
    pub fn must_restart_with(&mut self, customize: impl FnOnce(KumaCpBuilder) -> KumaCpBuilder) {
        self.builder = customize(self.builder.clone());
        self.must_restart();
    }

    /// Sends `signal` (e.g. "TERM", "INT", "KILL", "STOP", "CONT") without waiting.
    pub fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            let _ =
                Command::new("kill").arg(format!("-{signal}")).arg(child.id().to_string()).status();
        }
    }

    /// Sends `signal` (e.g. "TERM", "INT") and waits for the exit status.
    pub fn must_stop_with(&mut self, signal: &str) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("kuma-cp is running");
        let _ = Command::new("kill").arg(format!("-{signal}")).arg(child.id().to_string()).status();
        poll_until(Duration::from_secs(10), "kuma-cp exits", || {
            child.try_wait().map_err(|e| e.to_string())?.ok_or_else(|| "still running".to_string())
        })
    }
}

impl Drop for KumaCp {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            let exited = try_poll_until(Duration::from_secs(5), || match child.try_wait() {
                Ok(Some(_)) => Ok(()),
                _ => Err(()),
            });
            if exited.is_err() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
