use std::hash::{BuildHasher, Hasher, RandomState};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{free_port, try_poll_until, HttpReply};

/// How long a fresh etcd and apiserver get to answer `/readyz` (2-8 s on a quiet machine).
const READY_WITHIN: Duration = Duration::from_secs(60);

/// A real kube-apiserver 1.20 with its own etcd, both on free 127.0.0.1 ports, with state in a
/// temp dir: the envtest of this workspace. Requests authenticate with an admin token (group
/// `system:masters`), authorization is `AlwaysAllow`, and no controllers, scheduler or kubelet run.
/// Dropping it kills the apiserver, then etcd, and waits for both.
///
/// The binaries come from `.ci/kube-apiserver` (run by `make setup-tests`), in
/// `$KUMA_RS_K8S` (default `~/.cache/kuma-rs/k8s`).
#[derive(Debug)]
pub struct KubeApiServer {
    apiserver: Option<Child>,
    etcd: Option<Child>,
    port: u16,
    token: String,
    ca_pem: String,
    kubeconfig: PathBuf,
    dir: tempfile::TempDir,
    /// The apiserver's binary and arguments, to start it again.
    command: (PathBuf, Vec<String>),
}

impl KubeApiServer {
    /// Starts etcd and kube-apiserver and waits until `/readyz` says `ok`; panics with the tail of
    /// both logs otherwise. A port taken by another test process meanwhile means fresh ports, at
    /// most 3 times.
    pub fn must_start() -> KubeApiServer {
        let (apiserver, etcd) = binaries();
        for attempt in 1..=3 {
            match KubeApiServer::try_start(&apiserver, &etcd) {
                Ok(server) => return server,
                Err((server, _)) if attempt < 3 && server.lost_a_port() => continue,
                Err((server, why)) => {
                    panic!("kube-apiserver did not become ready: {why}\n{}", server.log_tails(40))
                }
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    fn try_start(
        apiserver: &Path,
        etcd: &Path,
    ) -> Result<KubeApiServer, (Box<KubeApiServer>, String)> {
        let dir = tempfile::tempdir().expect("a temp dir");
        let certs = dir.path().join("certs");
        std::fs::create_dir(&certs).expect("a certs dir");
        let token = format!("kuma-rs-{:016x}", RandomState::new().build_hasher().finish());
        write(&dir.path().join("tokens.csv"), &format!("{token},admin,admin,\"system:masters\"\n"));
        // The service-account key pair: the apiserver refuses to start without one. ECDSA P-256,
        // which it accepts as well as RSA.
        let sa_key = rcgen::KeyPair::generate().expect("an ECDSA key pair");
        write(&certs.join("sa.key"), &sa_key.serialize_pem());
        write(&certs.join("sa.pub"), &sa_key.public_key_pem());

        let [client, peer, port] = [free_port(), free_port(), free_port()];
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let path = |name: &str| dir.path().join(name).display().to_string();
        let etcd = spawn(
            etcd,
            &[
                &format!("--data-dir={}", path("etcd-data")),
                &format!("--listen-client-urls={client_url}"),
                &format!("--advertise-client-urls={client_url}"),
                &format!("--listen-peer-urls={peer_url}"),
                &format!("--initial-advertise-peer-urls={peer_url}"),
                &format!("--initial-cluster=default={peer_url}"),
            ],
            &dir.path().join("etcd.log"),
        );
        let args: Vec<String> = vec![
            format!("--etcd-servers={client_url}"),
            format!("--cert-dir={}", certs.display()),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--secure-port={port}"),
            "--insecure-port=0".into(),
            // Loopback, so an Envoy on this host can listen on a Service's ClusterIP (the
            // outbound of a sidecar without transparent proxying).
            "--service-cluster-ip-range=127.96.0.0/16".into(),
            "--allow-privileged=true".into(),
            "--authorization-mode=AlwaysAllow".into(),
            // No service-account controller runs, so the "default" account never exists.
            "--disable-admission-plugins=ServiceAccount".into(),
            format!("--token-auth-file={}", path("tokens.csv")),
            "--service-account-issuer=https://kubernetes.default.svc".into(),
            format!("--service-account-key-file={}", certs.join("sa.pub").display()),
            format!("--service-account-signing-key-file={}", certs.join("sa.key").display()),
        ];
        let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let apiserver_child = spawn(apiserver, &arg_refs, &dir.path().join("kube-apiserver.log"));
        let command = (apiserver.to_path_buf(), args);
        let apiserver = apiserver_child;
        let kubeconfig = dir.path().join("kubeconfig");
        let mut server = KubeApiServer {
            apiserver: Some(apiserver),
            etcd: Some(etcd),
            port,
            token,
            ca_pem: String::new(),
            kubeconfig,
            dir,
            command,
        };

        // The serving certificate appears in --cert-dir before the port opens: the apiserver's
        // own CA follows the leaf in apiserver.crt.
        let ready = try_poll_until(READY_WITHIN, || {
            if let Some(exited) = server.exited() {
                return Ok(Err(exited));
            }
            if server.ca_pem.is_empty() {
                server.ca_pem = own_ca(&certs.join("apiserver.crt"))?;
            }
            match server.request("GET", "/readyz", None) {
                Ok(reply) if reply.status == 200 && reply.body == "ok" => Ok(Ok(())),
                Ok(reply) => Err(format!("/readyz: {} {}", reply.status, reply.body)),
                Err(e) => Err(format!("/readyz: {e}")),
            }
        });
        match ready {
            Ok(Ok(())) => {
                server.write_kubeconfig();
                Ok(server)
            }
            Ok(Err(exited)) => Err((Box::new(server), exited)),
            Err(last) => {
                Err((Box::new(server), format!("not ready within {READY_WITHIN:?} ({last})")))
            }
        }
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The admin's bearer token (group `system:masters`).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The PEM of the CA that signed the apiserver's serving certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A kubeconfig for the admin (context `local`, namespace `default`) that trusts the
    /// apiserver's CA, for kube-rs's `Kubeconfig::read_from` or `kubectl --kubeconfig`.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// Kills the apiserver (etcd keeps running, with everything in it), runs `while_down`, then
    /// starts the apiserver again on the same port and waits until it is ready.
    pub fn must_restart_apiserver(&mut self, while_down: impl FnOnce()) {
        if let Some(mut child) = self.apiserver.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        while_down();
        let args: Vec<&str> = self.command.1.iter().map(String::as_str).collect();
        let log = self.dir.path().join("kube-apiserver.restarted.log");
        self.apiserver = Some(spawn(&self.command.0, &args, &log));
        let ready = try_poll_until(READY_WITHIN, || match self.request("GET", "/readyz", None) {
            Ok(reply) if reply.status == 200 && reply.body == "ok" => Ok(()),
            Ok(reply) => Err(format!("/readyz: {} {}", reply.status, reply.body)),
            Err(e) => Err(format!("/readyz: {e}")),
        });
        if let Err(why) = ready {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("the restarted kube-apiserver is not ready: {why}\n{log}");
        }
    }

    /// Applies Kuma's CRDs (`kuma_model::crds()`, what `kumactl install crds` prints) and waits
    /// until the apiserver serves every one of them.
    pub fn must_install_kuma_crds(&self) {
        const CRDS: &str = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
        let crds = kuma_model::crds();
        for crd in &crds {
            let reply = self.request("POST", CRDS, Some(&crd.to_string())).expect("POST a CRD");
            assert!(
                reply.status == 201 || reply.status == 409,
                "the CRD {} was refused: {} {}",
                crd["metadata"]["name"],
                reply.status,
                reply.body
            );
        }
        for crd in &crds {
            let plural = crd["spec"]["names"]["plural"].as_str().expect("a plural");
            let path = format!("/apis/kuma.io/v1alpha1/{plural}?limit=1");
            crate::eventually!(READY_WITHIN, || match self.request("GET", &path, None) {
                Ok(reply) if reply.status == 200 => Ok(()),
                Ok(reply) => Err(format!("{path}: {} {}", reply.status, reply.body)),
                Err(e) => Err(e.to_string()),
            });
        }
    }

    /// Creates a namespace with `labels` (kube-rs-free: a plain POST).
    pub fn must_create_namespace(&self, name: &str, labels: &[(&str, &str)]) {
        let labels: serde_json::Map<String, serde_json::Value> =
            labels.iter().map(|(k, v)| (k.to_string(), (*v).into())).collect();
        let body = serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": labels},
        });
        let reply = self
            .request("POST", "/api/v1/namespaces", Some(&body.to_string()))
            .expect("POST a namespace");
        assert_eq!(reply.status, 201, "namespace {name}: {}", reply.body);
    }

    /// The apiserver's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("kube-apiserver.log")).unwrap_or_default()
    }

    /// etcd's log so far.
    pub fn etcd_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default()
    }

    /// One request as the admin over HTTPS (verified against the apiserver's CA), with an
    /// optional JSON body. Errors are returned, not panicked, so it can be polled.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        json: Option<&str>,
    ) -> std::io::Result<HttpReply> {
        crate::process::https_request_as(
            self.port,
            &self.ca_pem,
            method,
            path,
            json,
            Some(&self.token),
        )
    }

    fn write_kubeconfig(&self) {
        let ca = self.dir.path().join("ca.crt");
        write(&ca, &self.ca_pem);
        let yaml = format!(
            "apiVersion: v1\nkind: Config\n\
             clusters:\n- name: local\n  cluster:\n    server: {url}\n    certificate-authority: {ca}\n\
             users:\n- name: admin\n  user:\n    token: {token}\n\
             contexts:\n- name: local\n  context:\n    cluster: local\n    user: admin\n    namespace: default\n\
             current-context: local\n",
            url = self.url(),
            ca = ca.display(),
            token = self.token,
        );
        write(&self.kubeconfig, &yaml);
    }

    /// Which process has exited, and how, if one has.
    fn exited(&mut self) -> Option<String> {
        for (name, child) in [("kube-apiserver", &mut self.apiserver), ("etcd", &mut self.etcd)] {
            if let Some(Ok(Some(status))) = child.as_mut().map(Child::try_wait) {
                return Some(format!("{name} exited ({status})"));
            }
        }
        None
    }

    /// Whether a start failed because another process bound one of the picked ports first.
    fn lost_a_port(&self) -> bool {
        [self.log(), self.etcd_log()].iter().any(|log| log.contains("address already in use"))
    }

    fn log_tails(&self, lines: usize) -> String {
        let tail = |log: String| {
            let all: Vec<&str> = log.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        };
        format!(
            "--- kube-apiserver log (last {lines} lines) ---\n{}\n--- etcd log (last {lines} lines) ---\n{}",
            tail(self.log()),
            tail(self.etcd_log())
        )
    }
}

impl Drop for KubeApiServer {
    fn drop(&mut self) {
        // The apiserver first, so it does not log a storm of etcd connection errors.
        for mut child in [self.apiserver.take(), self.etcd.take()].into_iter().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The two binaries `.ci/kube-apiserver` puts in `$KUMA_RS_K8S` (default `~/.cache/kuma-rs/k8s`);
/// panics with what to run when one is missing: the Kubernetes tests never skip.
fn binaries() -> (PathBuf, PathBuf) {
    let dir = std::env::var_os("KUMA_RS_K8S").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/kuma-rs/k8s")
    });
    let apiserver = dir.join("bin/kube-apiserver");
    let etcd = dir.join("etcd/usr/bin/etcd");
    for binary in [&apiserver, &etcd] {
        assert!(
            binary.is_file(),
            "{} is missing: run .ci/kube-apiserver (or make setup-tests) to build it",
            binary.display()
        );
    }
    (apiserver, etcd)
}

fn spawn(program: &Path, args: &[&str], log: &Path) -> Child {
    let out = std::fs::File::create(log).expect("a log file");
    let err = out.try_clone().expect("a log file");
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()))
}

fn write(path: &Path, content: &str) {
    std::fs::write(path, content).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// The CA certificate in the apiserver's self-signed `apiserver.crt`, which holds the leaf and
/// then the CA that signed it.
fn own_ca(crt: &Path) -> Result<String, String> {
    const END: &str = "-----END CERTIFICATE-----";
    let pem = std::fs::read_to_string(crt).map_err(|e| format!("{}: {e}", crt.display()))?;
    if pem.matches(END).count() < 2 {
        return Err(format!("no leaf and CA (yet) in {}", crt.display()));
    }
    let start = pem.rfind("-----BEGIN CERTIFICATE-----").expect("a BEGIN before each END");
    Ok(pem[start..].trim_end().to_string() + "\n")
}
