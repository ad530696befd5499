//! Kubernetes mode end to end, against a real kube-apiserver with two kuma-cp replicas: the
//! injector mutates pods of an enabled namespace, the Pod controller turns them into
//! Dataplanes, kuma-dp started as the injected sidecar would be (same environment, a
//! service-account token) gets its config from a replica, bytes flow through two real Envoys,
//! and killing the replica holding the leader Lease moves its work while traffic keeps flowing.

use std::path::Path;
use std::time::{Duration, Instant};

use kuma_test_support::{
    bin_path, envoy_path, free_port, poll_until, try_poll_until, EchoServer, KubeApiServer, KumaCp,
    Proc,
};
use serde_json::{json, Value};

use crate::support::Kumactl;

const CONVERGE: Duration = Duration::from_secs(30);

fn must(server: &KubeApiServer, method: &str, path: &str, body: Option<Value>) -> Value {
    let body = body.map(|b| b.to_string());
    let reply = server.request(method, path, body.as_deref()).expect("the apiserver answers");
    assert!(reply.status < 300, "{method} {path}: {} {}", reply.status, reply.body);
    serde_json::from_str(&reply.body).unwrap_or(Value::Null)
}

/// The admission server's certificate for 127.0.0.1 and the CA that signed it (the webhook
/// configuration's caBundle), in `dir` as the install manifest mounts them.
fn admission_certificate(dir: &Path) -> String {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
    let cert = params.signed_by(&key, &issuer).unwrap();
    std::fs::write(dir.join("tls.crt"), cert.pem()).unwrap();
    std::fs::write(dir.join("tls.key"), key.serialize_pem()).unwrap();
    ca.pem()
}

fn replica(server: &KubeApiServer, cert_dir: &Path, admission_port: u16) -> KumaCp {
    KumaCp::builder()
        .env("KUMA_ENVIRONMENT", "kubernetes")
        .env("KUBECONFIG", server.kubeconfig().to_str().unwrap())
        .env("KUMA_RUNTIME_KUBERNETES_ADMISSION_SERVER_PORT", &admission_port.to_string())
        .env("KUMA_RUNTIME_KUBERNETES_ADMISSION_SERVER_CERT_DIR", cert_dir.to_str().unwrap())
        .env("KUMA_BOOTSTRAP_SERVER_PARAMS_XDS_HOST", "127.0.0.1")
        .must_start()
}

fn pod(name: &str, labels: Value, port: u16) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "demo", "labels": labels},
        "spec": {
            "serviceAccountName": "default",
            "containers": [{"name": "app", "image": "app", "ports": [{"containerPort": port}]}]
        }
    })
}

/// Creates a pod (through the webhook) and gives it `ip`, as a kubelet would.
fn must_run_pod(server: &KubeApiServer, manifest: Value, ip: &str) -> Value {
    let name = manifest["metadata"]["name"].as_str().unwrap().to_string();
    let created = must(server, "POST", "/api/v1/namespaces/demo/pods", Some(manifest));
    let mut with_status = created.clone();
    with_status["status"] = json!({"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]});
    must(server, "PUT", &format!("/api/v1/namespaces/demo/pods/{name}/status"), Some(with_status));
    created
}

/// The environment of the injected `kuma-sidecar` container, resolved as the kubelet would
/// (downward API, `$(VAR)` references), with what a test on one host must change: the
/// bootstrap URLs (no cluster DNS here: both replicas' loopback ports), the admin port, and the
/// token file (the pod's service-account token, minted with the TokenRequest API).
fn sidecar_env(
    server: &KubeApiServer,
    pod: &Value,
    ip: &str,
    bootstrap_urls: &str,
    dir: &Path,
) -> Vec<(String, String)> {
    let name = pod["metadata"]["name"].as_str().unwrap();
    let uid = pod["metadata"]["uid"].as_str().unwrap();
    let sidecar = pod["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "kuma-sidecar")
        .expect("the pod was injected");
    let token = must(
        server,
        "POST",
        "/api/v1/namespaces/demo/serviceaccounts/default/token",
        Some(json!({
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {"boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": name, "uid": uid}}
        })),
    );
    let token_file = dir.join("token");
    std::fs::write(&token_file, token["status"]["token"].as_str().unwrap()).unwrap();
    let mut env: Vec<(String, String)> = Vec::new();
    for var in sidecar["env"].as_array().unwrap() {
        let key = var["name"].as_str().unwrap().to_string();
        let value = match var["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            Some("metadata.name") => name.to_string(),
            Some("metadata.namespace") => "demo".to_string(),
            Some("status.podIP") => ip.to_string(),
            Some(other) => panic!("unexpected fieldRef {other}"),
            None => var["value"].as_str().unwrap_or_default().to_string(),
        };
        env.push((key, value));
    }
    let resolved: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| {
            let mut v = v.clone();
            for (name, value) in &env {
                v = v.replace(&format!("$({name})"), value);
            }
            (k.clone(), v)
        })
        .collect();
    let admin = free_port().to_string();
    resolved
        .into_iter()
        .map(|(k, v)| match k.as_str() {
            "KUMA_CONTROL_PLANE_BOOTSTRAP_SERVER_URL" => (k, bootstrap_urls.to_string()),
            "KUMA_DATAPLANE_ADMIN_PORT" => (k, admin.clone()),
            "KUMA_DATAPLANE_RUNTIME_TOKEN_PATH" => (k, token_file.to_str().unwrap().to_string()),
            _ => (k, v),
        })
        .chain([
            (
                "KUMA_DATAPLANE_RUNTIME_BINARY_PATH".to_string(),
                envoy_path().to_str().unwrap().to_string(),
            ),
            ("KUMA_DATAPLANE_RUNTIME_CONFIG_DIR".to_string(), dir.to_str().unwrap().to_string()),
            ("KUMA_CONTROL_PLANE_RETRY_BACKOFF".to_string(), "200ms".to_string()),
        ])
        .collect()
}

fn kuma_dp(env: &[(String, String)]) -> Proc {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Proc::spawn(&bin_path("kuma-dp"), &["run"], &env)
}

/// The `inspect dataplanes` row of `name`: (mesh, status).
fn row(ctl: &Kumactl, name: &str) -> Option<(String, String)> {
    let out = ctl.run(&["inspect", "dataplanes"], "");
    String::from_utf8_lossy(&out.stdout).lines().skip(1).find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let status = cols.iter().find(|c| ["Online", "Offline", "Partially"].contains(c))?;
        (cols.get(1) == Some(&name)).then(|| (cols[0].to_string(), status.to_string()))
    })
}

/// The control-plane instance holding `name`'s open xDS subscription.
fn connected_to(api_port: u16, name: &str) -> String {
    poll_until(CONVERGE, "an open subscription", || {
        let reply = kuma_test_support::http_get(
            api_port,
            &format!("/meshes/default/dataplanes+insights/{name}"),
        )
        .map_err(|e| e.to_string())?;
        let overview: Value = serde_json::from_str(&reply.body).map_err(|e| e.to_string())?;
        overview["dataplaneInsight"]["subscriptions"]
            .as_array()
            .and_then(|subs| subs.iter().rev().find(|s| s["disconnectTime"].is_null()))
            .and_then(|s| s["controlPlaneInstanceId"].as_str())
            .map(str::to_string)
            .ok_or_else(|| format!("no open subscription: {overview}"))
    })
}

fn kill(replicas: &mut [Option<KumaCp>], index: usize) {
    let dead = replicas[index].take().expect("a live replica");
    dead.signal("KILL");
    drop(dead);
}

fn live(replicas: &[Option<KumaCp>]) -> Vec<&KumaCp> {
    replicas.iter().flatten().collect()
}

/// The replica holding the leader Lease.
fn leader_identity(server: &KubeApiServer) -> String {
    let lease = must(
        server,
        "GET",
        "/apis/coordination.k8s.io/v1/namespaces/kuma-system/leases/kuma-cp-leader",
        None,
    );
    lease["spec"]["holderIdentity"].as_str().unwrap_or_default().to_string()
}

#[test]
fn pods_become_dataplanes_whose_injected_sidecars_carry_traffic_across_a_dead_leader() {
    let server = KubeApiServer::must_start();
    server.must_install_kuma_crds();
    server.must_create_namespace("kuma-system", &[]);
    server.must_create_namespace("demo", &[("kuma.io/sidecar-injection", "enabled")]);
    server.must_create_namespace("plain", &[]);
    must(
        &server,
        "POST",
        "/api/v1/namespaces/demo/serviceaccounts",
        Some(json!({"metadata": {"name": "default"}})),
    );
    let dir = tempfile::tempdir().unwrap();
    let ca_bundle = admission_certificate(dir.path());
    let admission_ports = [free_port(), free_port(), free_port()];
    let mut replicas: Vec<Option<KumaCp>> =
        admission_ports.iter().map(|p| Some(replica(&server, dir.path(), *p))).collect();
    let bootstrap_urls =
        replicas.iter().map(|r| r.as_ref().unwrap().bootstrap_url()).collect::<Vec<_>>().join(",");

    // The injector, registered with the apiserver, as the install manifest does (by URL here:
    // no Service routing without kube-proxy); both replicas serve it.
    let webhook = |port: u16, name: &str| {
        json!({
            "name": name,
            "clientConfig": {"url": format!("https://127.0.0.1:{port}/inject-sidecar"),
                             "caBundle": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &ca_bundle)},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}],
            "namespaceSelector": {"matchExpressions": [{"key": "kuma.io/sidecar-injection", "operator": "In", "values": ["enabled", "true"]}]},
            "admissionReviewVersions": ["v1"], "sideEffects": "None", "failurePolicy": "Fail", "timeoutSeconds": 5
        })
    };
    must(
        &server,
        "POST",
        "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations",
        Some(json!({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": "kuma-admission-mutating-webhook-configuration"},
            "webhooks": [webhook(admission_ports[0], "namespace-kuma-injector.kuma.io")]
        })),
    );

    // Both replicas serve the webhook before pods are created.
    for (replica, port) in replicas.iter().flatten().zip(admission_ports) {
        poll_until(CONVERGE, "the admission server answers", || {
            std::net::TcpStream::connect(("127.0.0.1", port))
                .map_err(|e| format!("{e}: {}", replica.log()))
        });
    }

    // The echo app and its Service; a client pod with no Service.
    let echo = EchoServer::start("k8s");
    must(
        &server,
        "POST",
        "/api/v1/namespaces/demo/services",
        Some(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "echo", "namespace": "demo", "annotations": {"80.service.kuma.io/protocol": "tcp"}},
            "spec": {"selector": {"app": "echo"}, "ports": [{"port": 80, "targetPort": echo.port}]}
        })),
    );
    let service = must(&server, "GET", "/api/v1/namespaces/demo/services/echo", None);
    let cluster_ip = service["spec"]["clusterIP"].as_str().unwrap().to_string();
    let echo_pod =
        must_run_pod(&server, pod("echo-1", json!({"app": "echo"}), echo.port), "127.0.0.2");
    let client_pod =
        must_run_pod(&server, pod("client-1", json!({"app": "client"}), 9999), "127.0.0.3");
    let injected = echo_pod["spec"]["containers"][0]["name"].clone();
    assert_eq!(injected, "kuma-sidecar", "the injector put the sidecar first: {echo_pod}");
    // A pod of a namespace without injection is left alone.
    let mut other = pod("other", json!({"app": "x"}), 80);
    other["metadata"]["namespace"] = json!("plain");
    let plain = must(&server, "POST", "/api/v1/namespaces/plain/pods", Some(other));
    assert_eq!(plain["spec"]["containers"].as_array().unwrap().len(), 1, "{plain}");

    // Both pods become Dataplanes, visible through either replica's API.
    let ctl = Kumactl::must_connect(&replicas[1].as_ref().unwrap().api_url());
    let echo_dp = poll_until(CONVERGE, "the echo Dataplane", || {
        let out = ctl.run(&["get", "dataplane", "echo-1.demo", "-o", "json"], "");
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).to_string());
        }
        Ok(serde_json::from_slice::<Value>(&out.stdout).unwrap())
    });
    assert_eq!(echo_dp["networking"]["address"], "127.0.0.2", "{echo_dp}");
    assert_eq!(echo_dp["networking"]["inbound"][0]["tags"]["kuma.io/service"], "echo_demo_svc_80");
    // The API is read-only: resources are changed with kubectl.
    let refused = ctl.run(&["apply", "-f", "-"], "type: Mesh\nname: other\n");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("kubectl apply"), "{refused:?}");

    // Sidecars as the injector describes them, with service-account tokens.
    let bootstrap_urls = bootstrap_urls.as_str();
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let echo_env = sidecar_env(&server, &echo_pod, "127.0.0.2", bootstrap_urls, dirs[0].path());
    let client_env = sidecar_env(&server, &client_pod, "127.0.0.3", bootstrap_urls, dirs[1].path());
    let mut sidecars = [kuma_dp(&echo_env), kuma_dp(&client_env)];
    for name in ["echo-1.demo", "client-1.demo"] {
        poll_until(CONVERGE, "the sidecar online", || match row(&ctl, name) {
            Some((_, status)) if status == "Online" => Ok(()),
            other => Err(format!(
                "{other:?}; logs: {}",
                sidecars.iter().map(Proc::log).collect::<String>()
            )),
        });
    }
    // Bytes through the client's outbound (the Service's ClusterIP) and the echo's inbound.
    let through =
        |payload: &[u8]| try_poll_until(CONVERGE, || tcp_roundtrip_to(&cluster_ip, 80, payload));
    assert_eq!(through(b"hello").unwrap(), b"k8shello");

    // Kill the replica the echo sidecar is connected to: both sidecars end up on live
    // replicas and bytes keep flowing.
    let connected = connected_to(live(&replicas)[0].api_port, "echo-1.demo");
    let holder = |identity: &str, replicas: &[Option<KumaCp>]| {
        replicas.iter().position(|r| {
            r.as_ref().is_some_and(|r| identity.ends_with(&format!(":{}", r.xds_port)))
        })
    };
    let index = holder(&connected, &replicas).expect("the echo sidecar is on one of the replicas");
    kill(&mut replicas, index);
    for name in ["echo-1.demo", "client-1.demo"] {
        poll_until(CONVERGE, "the sidecar on a live replica", || {
            let now = connected_to(live(&replicas)[0].api_port, name);
            match holder(&now, &replicas) {
                Some(_) => Ok(()),
                None => Err(format!("{name} still on {now}")),
            }
        });
    }
    assert_eq!(through(b"after").unwrap(), b"k8safter");

    // Then kill the replica holding the leader Lease (if that was not the one above): the
    // leader-only work moves, and the Pod controller keeps turning new pods into Dataplanes.
    let leader = leader_identity(&server);
    let killed_at = Instant::now();
    if let Some(index) = holder(&leader, &replicas) {
        kill(&mut replicas, index);
    }
    let survivors: Vec<String> =
        live(&replicas).iter().map(|r| format!(":{}", r.xds_port)).collect();
    poll_until(CONVERGE, "a live replica takes the Lease", || {
        let now = leader_identity(&server);
        if survivors.iter().any(|s| now.ends_with(s)) {
            Ok(())
        } else {
            Err(now)
        }
    });
    let moved = killed_at.elapsed();
    let survivor = live(&replicas)[0];
    let ctl = Kumactl::must_connect(&survivor.api_url());
    // A Service would send the webhook calls to a live replica; without kube-proxy here, the
    // webhook's URL is pointed at one.
    let survivor_port = admission_ports[replicas.iter().position(Option::is_some).unwrap()];
    let path = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/kuma-admission-mutating-webhook-configuration";
    let mut config = must(&server, "GET", path, None);
    config["webhooks"][0]["clientConfig"]["url"] =
        json!(format!("https://127.0.0.1:{survivor_port}/inject-sidecar"));
    must(&server, "PUT", path, Some(config));
    let _late =
        must_run_pod(&server, pod("echo-2", json!({"app": "echo"}), echo.port), "127.0.0.4");
    poll_until(CONVERGE, "echo-2's Dataplane from the new leader", || {
        row(&ctl, "echo-2.demo").ok_or("not yet")
    });
    let dataplane_after = killed_at.elapsed();
    for payload in [b"one".as_slice(), b"two", b"three"] {
        let mut expected = b"k8s".to_vec();
        expected.extend_from_slice(payload);
        assert_eq!(through(payload).unwrap(), expected);
    }
    for name in ["echo-1.demo", "client-1.demo"] {
        poll_until(CONVERGE, "the sidecar online on the survivor", || match row(&ctl, name) {
            Some((_, status)) if status == "Online" => Ok(()),
            other => Err(format!("{other:?}")),
        });
    }
    // A renewed admission certificate (kumactl install run again) is served without a restart.
    let old_ca = ca_bundle.clone();
    let new_ca = admission_certificate(dir.path());
    let admission = |ca: &str| {
        kuma_test_support::https_request(survivor_port, ca, "POST", "/inject-sidecar", Some("{}"))
    };
    poll_until(CONVERGE, "the renewed admission certificate", || match admission(&new_ca) {
        Ok(_) => Ok(()),
        Err(e) => Err(e.to_string()),
    });
    assert!(admission(&old_ca).is_err(), "the old certificate is no longer served");
    eprintln!(
        "leader Lease moved {moved:?} after the kill; a new pod's Dataplane {dataplane_after:?}"
    );
    for sidecar in &mut sidecars {
        sidecar.signal(kuma_test_support::Signal::TERM);
    }
}

fn tcp_roundtrip_to(ip: &str, port: u16, payload: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(
        &format!("{ip}:{port}").parse().unwrap(),
        Duration::from_secs(2),
    )?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(payload)?;
    stream.shutdown(std::net::Shutdown::Write)?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply)?;
    if reply.is_empty() {
        return Err(std::io::Error::other("empty reply"));
    }
    Ok(reply)
}

/// kuma-cp in Kubernetes mode on free ports, with `env` on top; returns its one error line.
fn must_fail_to_start(env: &[(&str, &str)]) -> String {
    let ports: Vec<(String, String)> = [
        "KUMA_API_SERVER_PORT",
        "KUMA_API_SERVER_HTTPS_PORT",
        "KUMA_DIAGNOSTICS_PORT",
        "KUMA_BOOTSTRAP_SERVER_PORT",
        "KUMA_XDS_SERVER_GRPC_PORT",
        "KUMA_SDS_SERVER_GRPC_PORT",
        "KUMA_RUNTIME_KUBERNETES_ADMISSION_SERVER_PORT",
    ]
    .iter()
    .map(|var| (var.to_string(), free_port().to_string()))
    .collect();
    let mut all: Vec<(&str, &str)> = vec![("KUMA_ENVIRONMENT", "kubernetes")];
    all.extend(ports.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    all.extend_from_slice(env);
    let mut cp = Proc::spawn(&bin_path("kuma-cp"), &["run"], &all);
    let exited = cp.must_exit_within(CONVERGE);
    assert_ne!(exited.code(), Some(0), "{}", exited.log);
    exited.must_error_line()
}

#[test]
fn without_an_api_server_or_kumas_crds_kuma_cp_says_what_to_do_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-kubeconfig");
    let line = must_fail_to_start(&[("KUBECONFIG", missing.to_str().unwrap())]);
    assert!(line.contains("KUBECONFIG"), "{line}");

    let server = KubeApiServer::must_start();
    let kubeconfig = server.kubeconfig().to_str().unwrap().to_string();
    let line = must_fail_to_start(&[("KUBECONFIG", &kubeconfig)]);
    assert!(
        line.contains("kuma-system") && line.contains("kumactl install control-plane"),
        "{line}"
    );
    server.must_create_namespace("kuma-system", &[]);
    let line = must_fail_to_start(&[("KUBECONFIG", &kubeconfig)]);
    assert!(line.contains("meshes.kuma.io") && line.contains("kumactl install crds"), "{line}");

    // With everything in place but no admission certificate: one line naming the directory.
    server.must_install_kuma_crds();
    let line = must_fail_to_start(&[
        ("KUBECONFIG", &kubeconfig),
        ("KUMA_RUNTIME_KUBERNETES_ADMISSION_SERVER_CERT_DIR", dir.path().to_str().unwrap()),
    ]);
    assert!(
        line.contains("tls.crt")
            && line.contains("KUMA_RUNTIME_KUBERNETES_ADMISSION_SERVER_CERT_DIR"),
        "{line}"
    );
}
