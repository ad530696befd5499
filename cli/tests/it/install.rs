//! `kumactl install crds` and `kumactl install control-plane`: the control plane's manifest
//! against its golden file (with fixed TLS files), the certificate kumactl generates, one-line
//! refusals of wrong flags, and both manifests applied twice to a real kube-apiserver (built by
//! `.ci/kube-apiserver`), where Kuma-shaped objects (`mesh` beside `spec`) are then stored and
//! read back as written and the injector webhook is registered for exactly the pods it should see.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use kuma_test_support::{try_poll_until, KubeApiServer};
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use serde_json::{json, Value};

use crate::support::Ctl;

/// The golden manifest, for the fixed TLS files of `testdata/install/`.
const GOLDEN: &str = "install-control-plane.golden.yaml";

fn testdata(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/testdata").join(name)
}

fn documents(yaml: &str) -> Vec<Value> {
    kuma_model::parse_resources_yaml(yaml).expect("kumactl prints YAML")
}

fn must_find<'a>(documents: &'a [Value], kind: &str) -> &'a Value {
    documents.iter().find(|d| d["kind"] == kind).unwrap_or_else(|| panic!("no {kind}"))
}

fn base64_decoded(value: &Value) -> String {
    let bytes = base64::engine::general_purpose::STANDARD.decode(value.as_str().unwrap()).unwrap();
    String::from_utf8(bytes).unwrap()
}

#[test]
fn install_control_plane_matches_the_golden_file() {
    let file = |name: &str| testdata(&format!("install/{name}")).display().to_string();
    let (cert, key, ca) = (file("tls.crt"), file("tls.key"), file("ca.crt"));
    let out = Ctl::new().must_run(&[
        "install",
        "control-plane",
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--ca-cert",
        &ca,
    ]);
    // The default images carry kumactl's version; a release must not need a new golden file.
    let actual = out.replace(&format!(":{}\n", env!("CARGO_PKG_VERSION")), ":VERSION\n");
    kuma_test_support::golden::must_match(&testdata(GOLDEN), &actual);
}

#[test]
fn the_generated_certificate_chains_to_the_webhooks_ca_and_names_the_service() {
    let documents =
        documents(&Ctl::new().must_run(&["install", "control-plane", "--namespace", "demo"]));
    let data = &must_find(&documents, "Secret")["data"];
    let (cert_pem, key_pem, ca_pem) = (
        base64_decoded(&data["tls.crt"]),
        base64_decoded(&data["tls.key"]),
        base64_decoded(&data["ca.crt"]),
    );
    let webhooks = must_find(&documents, "MutatingWebhookConfiguration")["webhooks"].clone();
    for webhook in webhooks.as_array().unwrap() {
        assert_eq!(base64_decoded(&webhook["clientConfig"]["caBundle"]), ca_pem);
    }

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap()).unwrap();
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    for name in ["kuma-control-plane.demo.svc", "kuma-control-plane.demo", "kuma-control-plane"] {
        let name = ServerName::try_from(name).unwrap();
        verifier
            .verify_server_cert(&cert, &[], &name, &[], UnixTime::now())
            .unwrap_or_else(|e| panic!("not valid for {name:?}: {e}"));
    }
    let other = ServerName::try_from("kuma-control-plane.kuma-system.svc").unwrap();
    assert!(verifier.verify_server_cert(&cert, &[], &other, &[], UnixTime::now()).is_err());

    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let signing_key = provider.key_provider.load_private_key(key).unwrap();
    assert_eq!(signing_key.algorithm(), rustls::SignatureAlgorithm::ECDSA);
    assert_eq!(
        rcgen::KeyPair::from_pem(&key_pem).unwrap().algorithm(),
        &rcgen::PKCS_ECDSA_P256_SHA256
    );
    rustls::sign::CertifiedKey::new(vec![cert.clone()], signing_key)
        .keys_match()
        .expect("the key is the certificate's");

    // Valid for ten years, the CA too (a chain is valid only while each of its certificates is).
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    let day = Duration::from_secs(24 * 60 * 60);
    let name = ServerName::try_from("kuma-control-plane.demo.svc").unwrap();
    let in_days = |days| UnixTime::since_unix_epoch(since_epoch + day * days);
    verifier.verify_server_cert(&cert, &[], &name, &[], in_days(3651)).expect("valid in 3651 days");
    let err = verifier.verify_server_cert(&cert, &[], &name, &[], in_days(3653)).unwrap_err();
    assert!(err.to_string().contains("expired"), "{err}");
}

#[test]
fn wrong_flags_are_refused_on_one_line() {
    let ca = testdata("install/ca.crt").display().to_string();
    let cert = testdata("install/tls.crt").display().to_string();
    for (flags, expected) in [
        (vec!["--tls-cert", cert.as_str()], "--tls-cert, --tls-key and --ca-cert go together"),
        (vec!["--replicas", "0"], "--replicas \"0\" is not valid"),
        (vec!["--namespace", "Kuma_System"], "--namespace \"Kuma_System\" is not a valid"),
        (vec!["--tls-cert", &cert, "--tls-key", &cert, "--ca-cert", &ca], "holds no private key"),
    ] {
        let mut args = vec!["install", "control-plane"];
        args.extend(&flags);
        let stderr = Ctl::new().run(&args).must_fail();
        assert!(stderr.starts_with("Error: ") && stderr.contains(expected), "{flags:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
    // The fixed files are for kuma-system: the apiserver could not call the webhook in demo.
    let key = testdata("install/tls.key").display().to_string();
    let stderr = Ctl::new()
        .run(&[
            "install",
            "control-plane",
            "--namespace",
            "demo",
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--ca-cert",
            &ca,
        ])
        .must_fail();
    assert!(stderr.contains("is not valid for kuma-control-plane.demo.svc"), "{stderr}");
}

/// Where a manifest document is created: `/api/v1` for the core group, else
/// `/apis/<group>/<version>`, under its namespace if it has one. Every kind kumactl prints
/// pluralises by adding an `s` to its lowercase name.
fn collection(document: &Value) -> String {
    let api_version = document["apiVersion"].as_str().unwrap();
    let group = if api_version.contains('/') { "apis" } else { "api" };
    let namespace = match document["metadata"]["namespace"].as_str() {
        Some(ns) => format!("/namespaces/{ns}"),
        None => String::new(),
    };
    let plural = format!("{}s", document["kind"].as_str().unwrap().to_ascii_lowercase());
    format!("/{group}/{api_version}{namespace}/{plural}")
}

/// What `must_apply` did.
#[derive(Debug, PartialEq)]
enum Applied {
    Created,
    Replaced,
}

/// `kubectl create`, or `kubectl replace` when the object exists: a PUT with the stored
/// resourceVersion, as some kinds (CRDs) refuse an unconditional update.
fn must_apply(server: &KubeApiServer, document: &Value) -> Applied {
    let collection = collection(document);
    let name = document["metadata"]["name"].as_str().unwrap();
    let what = format!("{} {name}", document["kind"]);
    let reply = server.request("POST", &collection, Some(&document.to_string())).unwrap();
    match reply.status {
        201 => return Applied::Created,
        409 => {}
        status => panic!("creating {what}: {status} {}", reply.body),
    }
    let item = format!("{collection}/{name}");
    let stored: Value =
        serde_json::from_str(&server.request("GET", &item, None).unwrap().body).unwrap();
    let mut document = document.clone();
    document["metadata"]["resourceVersion"] = stored["metadata"]["resourceVersion"].clone();
    if document["kind"] == "Service" {
        // The apiserver allocated it and refuses to unset it; `kubectl apply` keeps it by merging.
        document["spec"]["clusterIP"] = stored["spec"]["clusterIP"].clone();
    }
    let reply = server.request("PUT", &item, Some(&document.to_string())).unwrap();
    assert_eq!(reply.status, 200, "replacing {what}: {}", reply.body);
    Applied::Replaced
}

fn must_get(server: &KubeApiServer, path: &str) -> Value {
    let reply = server.request("GET", path, None).unwrap();
    assert_eq!(reply.status, 200, "GET {path}: {}", reply.body);
    serde_json::from_str(&reply.body).unwrap()
}

fn must_be_established(server: &KubeApiServer, crds: &[Value]) {
    for crd in crds {
        let name = crd["metadata"]["name"].as_str().unwrap();
        try_poll_until(Duration::from_secs(20), || {
            let path = format!("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}");
            let reply = server.request("GET", &path, None).map_err(|e| e.to_string())?;
            let crd: Value = serde_json::from_str(&reply.body).map_err(|e| e.to_string())?;
            let established = crd["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Established" && c["status"] == "True");
            if established {
                Ok(())
            } else {
                Err(reply.body)
            }
        })
        .unwrap_or_else(|e| panic!("{name} is not established: {e}"));
    }
}

/// A pod with one container, in `namespace`, with `labels`.
fn pod(namespace: &str, name: &str, labels: Value) -> String {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"containers": [{"name": "app", "image": "app:1"}]},
    })
    .to_string()
}

#[test]
fn both_manifests_apply_twice_to_a_real_apiserver_and_keep_kumas_object_shape() {
    let ctl = Ctl::new();
    let crds = documents(&ctl.must_run(&["install", "crds"]));
    assert_eq!(crds.len(), 9, "one CRD per type kept as a Kubernetes object");
    let manifest = documents(&ctl.must_run(&["install", "control-plane"]));
    let in_manifest: Vec<Value> =
        manifest.iter().filter(|d| d["kind"] == "CustomResourceDefinition").cloned().collect();
    assert_eq!(in_manifest, crds, "the control plane's manifest holds install crds's CRDs");

    let server = KubeApiServer::must_start();
    for document in &manifest {
        assert_eq!(must_apply(&server, document), Applied::Created, "{document}");
    }
    must_be_established(&server, &crds);
    // Again, as after an upgrade: kumactl generates a new certificate and CA this time.
    let again = documents(&ctl.must_run(&["install", "control-plane"]));
    for document in again.iter().chain(&crds) {
        assert_eq!(must_apply(&server, document), Applied::Replaced, "{document}");
    }
    let secret = must_get(&server, "/api/v1/namespaces/kuma-system/secrets/kuma-tls-cert");
    let webhooks = must_get(
        &server,
        "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/\
         kuma-admission-mutating-webhook-configuration",
    );
    assert_eq!(secret["data"], must_find(&again, "Secret")["data"], "the new certificate");
    assert_eq!(webhooks["webhooks"][0]["clientConfig"]["caBundle"], secret["data"]["ca.crt"]);
    let deployment =
        must_get(&server, "/apis/apps/v1/namespaces/kuma-system/deployments/kuma-control-plane");
    assert_eq!(deployment["spec"]["template"]["spec"]["serviceAccountName"], "kuma-control-plane");

    // The webhooks are live: with no kuma-cp behind the Service, pods that asked for a sidecar
    // are refused (failurePolicy Fail) by the webhook of their namespace or of their label, and
    // other pods are created.
    let namespace = json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "demo", "labels": {"kuma.io/sidecar-injection": "enabled"}}});
    assert_eq!(must_apply(&server, &namespace), Applied::Created);
    let plain = json!({"app": "web"});
    let enabled = json!({"app": "web", "kuma.io/sidecar-injection": "enabled"});
    let reply = try_poll_until(Duration::from_secs(20), || {
        // The `default` namespace appears shortly after the apiserver is ready.
        let reply = server
            .request(
                "POST",
                "/api/v1/namespaces/default/pods",
                Some(&pod("default", "plain", plain.clone())),
            )
            .map_err(|e| e.to_string())?;
        if reply.status == 201 {
            Ok(reply)
        } else {
            Err(reply.body)
        }
    });
    assert!(reply.is_ok(), "a pod that asked for nothing is created: {reply:?}");
    for (namespace, labels, webhook) in [
        ("demo", plain, "namespace-kuma-injector.kuma.io"),
        ("default", enabled, "pods-kuma-injector.kuma.io"),
    ] {
        let path = format!("/api/v1/namespaces/{namespace}/pods");
        let reply = server.request("POST", &path, Some(&pod(namespace, "meshed", labels))).unwrap();
        assert_ne!(reply.status, 201, "{namespace}: {}", reply.body);
        assert!(reply.body.contains(webhook), "{namespace}: {}", reply.body);
    }

    let mesh = r#"{"apiVersion":"kuma.io/v1alpha1","kind":"Mesh","metadata":{"name":"default"},"spec":{"mtls":{"enabledBackend":"ca-1","backends":[{"name":"ca-1","type":"builtin"}]}}}"#;
    let reply = server.request("POST", "/apis/kuma.io/v1alpha1/meshes", Some(mesh)).unwrap();
    assert_eq!(reply.status, 201, "{}", reply.body);
    let dataplane = r#"{"apiVersion":"kuma.io/v1alpha1","kind":"Dataplane","metadata":{"name":"redis-1","namespace":"default"},"mesh":"default","spec":{"networking":{"address":"10.0.0.7","inbound":[{"port":6379,"tags":{"kuma.io/service":"redis_default_svc_6379"}}]}}}"#;
    let reply = server
        .request("POST", "/apis/kuma.io/v1alpha1/namespaces/default/dataplanes", Some(dataplane))
        .unwrap();
    assert_eq!(reply.status, 201, "{}", reply.body);
    let got = must_get(&server, "/apis/kuma.io/v1alpha1/namespaces/default/dataplanes/redis-1");
    assert_eq!(got["mesh"], "default", "the top-level mesh survives: {got}");
    assert_eq!(got["spec"]["networking"]["inbound"][0]["port"], 6379);
    let meshes = must_get(&server, "/apis/kuma.io/v1alpha1/meshes");
    assert_eq!(meshes["items"][0]["spec"]["mtls"]["enabledBackend"], "ca-1");
    // Meshes are cluster-scoped: there is no namespaced path for them.
    let namespaced =
        server.request("GET", "/apis/kuma.io/v1alpha1/namespaces/default/meshes", None).unwrap();
    assert_eq!(namespaced.status, 404, "{}", namespaced.body);
}

#[test]
fn install_postgres_schema_prints_the_checked_in_schema_which_psql_applies() {
    let out = Ctl::new().must_run(&["install", "postgres-schema"]);
    let checked_in = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../crates/store-postgres/schema.sql"),
    )
    .unwrap();
    assert_eq!(out, checked_in);
    let version = out
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("-- The PostgreSQL schema of kuma-rs, version "))
        .and_then(|v| v.strip_suffix('.'))
        .expect("the first line names the schema version");

    // A user pipes it into psql: it applies to an empty database and records its version.
    let pg = kuma_test_support::PgServer::must_start();
    pg.must_create_database("fresh");
    pg.must_psql("fresh", &out);
    assert_eq!(pg.must_psql("fresh", "SELECT max(version) FROM kuma_schema_migrations"), version);
}
