//! What several process tests share: kumactl with a config of its own, a Dataplane in the seeds'
//! form, writes through the API, the backend -> redis pair, and a kuma-dp given every peer.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use kuma_test_support::{
    bin_path, envoy_path, free_port, http_request, try_poll_until, EchoServer, KumaCpCluster, Proc,
};

/// How long a write may be retried while the leader has not created the default mesh yet.
const WRITABLE_WITHIN: Duration = Duration::from_secs(30);

/// kumactl with its own `~/.kumactl/config`.
pub struct Kumactl {
    pub home: tempfile::TempDir,
}

impl Kumactl {
    pub fn new() -> Kumactl {
        Kumactl { home: tempfile::tempdir().unwrap() }
    }

    /// A kumactl whose active control plane is `api_url`.
    pub fn must_connect(api_url: &str) -> Kumactl {
        let ctl = Kumactl::new();
        ctl.must_add(api_url, &[]);
        ctl
    }

    pub fn run(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = Command::new(bin_path("kumactl"))
            .args(args)
            .env("HOME", self.home.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kumactl");
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        child.wait_with_output().expect("kumactl runs")
    }

    pub fn must_succeed(&self, args: &[&str], stdin: &str) -> String {
        let out = self.run(args, stdin);
        assert!(out.status.success(), "kumactl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// Its standard error, after asserting it failed.
    pub fn must_fail(&self, args: &[&str], stdin: &str) -> String {
        let out = self.run(args, stdin);
        assert!(!out.status.success(), "kumactl {args:?} should fail");
        String::from_utf8(out.stderr).unwrap()
    }

    /// `config control-planes add --name cp --address URL` with `flags`.
    pub fn add(&self, url: &str, flags: &[&str]) -> Output {
        let mut args = vec!["config", "control-planes", "add", "--name", "cp", "--address", url];
        args.extend_from_slice(flags);
        self.run(&args, "")
    }

    pub fn must_add(&self, url: &str, flags: &[&str]) {
        let out = self.add(url, flags);
        assert!(out.status.success(), "adding {url}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// A Dataplane of mesh `default` in the seeds' form (JSON), with one inbound and maybe an
/// outbound to `redis`.
pub fn dataplane(name: &str, inbound: &str, service: &str, outbound: Option<u16>) -> String {
    let outbound = outbound
        .map(|port| format!(r#","outbound":[{{"interface":":{port}","service":"redis"}}]"#))
        .unwrap_or_default();
    format!(
        r#"{{"type":"Dataplane","mesh":"default","name":"{name}","networking":{{"inbound":[{{"interface":"{inbound}","tags":{{"service":"{service}"}}}}]{outbound}}}}}"#
    )
}

/// A PUT through the API (as admin, from loopback) that must create or update at once.
pub fn put(port: u16, path: &str, body: &str) {
    let reply = http_request(port, "PUT", path, Some(body)).expect("the API answers");
    assert!(
        reply.status == 201 || reply.status == 200,
        "PUT {path}: {} {}",
        reply.status,
        reply.body
    );
}

/// A PUT through the API (as admin, from loopback), retried until it succeeds: the leader (or
/// the lease holder) creates the default mesh shortly after it starts.
pub fn must_put(port: u16, path: &str, body: &str) {
    try_poll_until(WRITABLE_WITHIN, || match http_request(port, "PUT", path, Some(body)) {
        Ok(r) if (200..300).contains(&r.status) => Ok(()),
        other => Err(format!("{other:?}")),
    })
    .unwrap_or_else(|e| panic!("PUT {path}: {e}"));
}

/// redis-1 (its inbound is the echo server itself, so only the backend needs a sidecar) and
/// backend-1 with an outbound to redis on a free port, which is returned.
pub fn must_create_backend_and_redis(api: u16, echo: &EchoServer) -> u16 {
    let outbound = free_port();
    must_put(
        api,
        "/meshes/default/dataplanes/redis-1",
        &dataplane("redis-1", &format!("127.0.0.1:{}:6379", echo.port), "redis", None),
    );
    let backend_in = free_port();
    must_put(
        api,
        "/meshes/default/dataplanes/backend-1",
        &dataplane(
            "backend-1",
            &format!("127.0.0.1:{backend_in}:{}", backend_in + 1),
            "backend",
            Some(outbound),
        ),
    );
    outbound
}

/// A kuma-dp for `name` given every peer's bootstrap URL, as a user runs it: TLS with the
/// control plane's CA and a token issued through `peer`; Envoy verifies every peer against the
/// one CA.
pub fn must_spawn_sidecar(cluster: &KumaCpCluster, peer: usize, name: &str, dir: &Path) -> Proc {
    let urls = cluster.peers.iter().map(|p| p.bootstrap_url()).collect::<Vec<_>>().join(",");
    let mut env = cluster.peers[peer].must_kuma_dp_env("default", name);
    env.retain(|(k, _)| k != "KUMA_CONTROL_PLANE_BOOTSTRAP_SERVER_URL");
    env.push(("KUMA_CONTROL_PLANE_BOOTSTRAP_SERVER_URL".into(), urls));
    env.push(("KUMA_DATAPLANE_ADMIN_PORT".into(), free_port().to_string()));
    spawn_kuma_dp(&env, dir)
}

/// `kuma-dp run` with the real Envoy, its config in `dir`, configured by `env` alone (the
/// variables `KumaCp::must_kuma_dp_env` gives, and whatever a test adds).
pub fn spawn_kuma_dp(env: &[(String, String)], dir: &Path) -> Proc {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let envoy = envoy_path();
    let args =
        ["run", "--binary-path", envoy.to_str().unwrap(), "--config-dir", dir.to_str().unwrap()];
    Proc::spawn(&bin_path("kuma-dp"), &args, &env)
}
