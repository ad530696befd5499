use std::path::{Path, PathBuf};

use clap::Parser;
use serde_json::Value;

use super::tls::{service_dns_names, TlsFiles, WebhookTls};
use super::*;
use crate::args::{Args, Command, InstallControlPlaneArgs};

fn args(flags: &[&str]) -> InstallControlPlaneArgs {
    let argv = ["kumactl", "install", "control-plane"].iter().chain(flags);
    match Args::try_parse_from(argv).unwrap().command {
        Command::Install(InstallCommand::ControlPlane(args)) => args,
        other => panic!("not install control-plane: {other:?}"),
    }
}

fn documents(flags: &[&str]) -> Vec<Value> {
    ControlPlaneManifest::from_args(&args(flags)).unwrap().documents()
}

fn must_find<'a>(documents: &'a [Value], kind: &str) -> &'a Value {
    documents.iter().find(|d| d["kind"] == kind).unwrap_or_else(|| panic!("no {kind}"))
}

fn env(deployment: &Value, name: &str) -> Value {
    let env = &deployment["spec"]["template"]["spec"]["containers"][0]["env"];
    env.as_array().unwrap().iter().find(|e| e["name"] == name).cloned().unwrap_or_default()
}

#[test]
fn the_objects_come_in_apply_order_with_the_crds_of_install_crds_in_the_middle() {
    let documents = documents(&[]);
    let crds = kuma_model::crds();
    let kinds: Vec<&str> = documents.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    let mut expected = vec!["Namespace", "ServiceAccount", "Secret", "ConfigMap"];
    expected.extend(crds.iter().map(|_| "CustomResourceDefinition"));
    expected.extend([
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Service",
        "Deployment",
        "MutatingWebhookConfiguration",
    ]);
    assert_eq!(kinds, expected);
    assert_eq!(documents[4..4 + crds.len()], crds[..], "the same CRDs as kumactl install crds");
}

#[test]
fn the_flags_reach_every_object() {
    let documents = documents(&[
        "--namespace",
        "mesh-cp",
        "--control-plane-image",
        "registry.local/cp:1",
        "--dataplane-image",
        "registry.local/dp:1",
        "--dataplane-init-image",
        "registry.local/init:1",
        "--replicas",
        "3",
    ]);
    assert_eq!(documents[0]["metadata"]["name"], "mesh-cp");
    assert_eq!(documents[0]["metadata"]["labels"]["kuma.io/sidecar-injection"], "disabled");
    for document in &documents {
        let kind = document["kind"].as_str().unwrap();
        let cluster_scoped = matches!(
            kind,
            "Namespace"
                | "CustomResourceDefinition"
                | "ClusterRole"
                | "ClusterRoleBinding"
                | "MutatingWebhookConfiguration"
        );
        let expected = if cluster_scoped { Value::Null } else { "mesh-cp".into() };
        assert_eq!(document["metadata"]["namespace"], expected, "{kind}");
    }
    let deployment = must_find(&documents, "Deployment");
    assert_eq!(deployment["spec"]["replicas"], 3);
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "registry.local/cp:1");
    assert_eq!(env(deployment, "KUMA_STORE_KUBERNETES_SYSTEM_NAMESPACE")["value"], "mesh-cp");
    assert_eq!(
        env(deployment, "KUMA_RUNTIME_KUBERNETES_INJECTOR_SIDECAR_CONTAINER_IMAGE")["value"],
        "registry.local/dp:1"
    );
    assert_eq!(
        env(deployment, "KUMA_RUNTIME_KUBERNETES_INJECTOR_INIT_CONTAINER_IMAGE")["value"],
        "registry.local/init:1"
    );
    assert_eq!(
        env(deployment, "KUMA_BOOTSTRAP_SERVER_PARAMS_XDS_HOST")["value"],
        "kuma-control-plane.mesh-cp"
    );
    for binding in ["ClusterRoleBinding", "RoleBinding"] {
        assert_eq!(must_find(&documents, binding)["subjects"][0]["namespace"], "mesh-cp");
    }
    let webhooks = &must_find(&documents, "MutatingWebhookConfiguration")["webhooks"];
    for webhook in webhooks.as_array().unwrap() {
        assert_eq!(webhook["clientConfig"]["service"]["namespace"], "mesh-cp");
    }
}

#[test]
fn the_defaults_are_one_replica_of_this_versions_images() {
    let documents = documents(&[]);
    let deployment = must_find(&documents, "Deployment");
    assert_eq!(deployment["spec"]["replicas"], 1);
    let version = kuma_build_info::VERSION;
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], format!("kuma-rs/kuma-cp:{version}"));
    assert_eq!(
        env(deployment, "KUMA_RUNTIME_KUBERNETES_INJECTOR_SIDECAR_CONTAINER_IMAGE")["value"],
        format!("kuma-rs/kuma-dp:{version}")
    );
    assert_eq!(documents[0]["metadata"]["name"], "kuma-system");
}

#[test]
fn the_webhooks_trust_the_ca_of_the_secret() {
    let documents = documents(&[]);
    let secret = &must_find(&documents, "Secret")["data"];
    let webhooks = &must_find(&documents, "MutatingWebhookConfiguration")["webhooks"];
    assert_eq!(webhooks.as_array().unwrap().len(), 2);
    for webhook in webhooks.as_array().unwrap() {
        assert_eq!(webhook["clientConfig"]["caBundle"], secret["ca.crt"]);
    }
}

#[test]
fn the_cluster_role_covers_every_kuma_resource_but_no_secrets() {
    let documents = documents(&[]);
    let rules = must_find(&documents, "ClusterRole")["rules"].as_array().unwrap().clone();
    let kuma = rules.iter().find(|r| r["apiGroups"][0] == "kuma.io").unwrap();
    for crd in kuma_model::crds() {
        let plural = crd["spec"]["names"]["plural"].as_str().unwrap();
        for resource in
            [plural.to_string(), format!("{plural}/status"), format!("{plural}/finalizers")]
        {
            let covered = kuma["resources"].as_array().unwrap().iter().any(|r| r == &resource);
            assert!(covered, "{resource} is not in the ClusterRole");
        }
    }
    assert!(
        !rules.iter().any(|r| r["resources"].as_array().unwrap().iter().any(|r| r == "secrets")),
        "secrets only through the namespaced Role"
    );
    let role = must_find(&documents, "Role");
    assert!(role["rules"][0]["resources"].as_array().unwrap().iter().any(|r| r == "secrets"));
}

#[test]
fn wrong_flags_are_refused_with_one_line_naming_the_flag() {
    let long = "a".repeat(64);
    for (flags, expected) in [
        (vec!["--namespace", "Kuma"], "--namespace \"Kuma\" is not a valid namespace name"),
        (vec!["--namespace", "kuma.system"], "other than lowercase letters"),
        (vec!["--namespace", "-kuma"], "starts or ends with '-'"),
        (vec!["--namespace", ""], "it is empty"),
        (vec!["--namespace", &long], "longer than 63 characters"),
        (vec!["--replicas", "0"], "--replicas \"0\" is not valid: give a whole number, 1 or more"),
        (vec!["--replicas", "-1"], "--replicas \"-1\" is not valid"),
        (vec!["--replicas", "two"], "--replicas \"two\" is not valid"),
        (vec!["--control-plane-image", ""], "--control-plane-image \"\" is not an image"),
        (vec!["--dataplane-image", "a b"], "--dataplane-image \"a b\" is not an image"),
        (vec!["--tls-cert", "c.pem"], "(--tls-key and --ca-cert not given)"),
        (vec!["--tls-cert", "c.pem", "--tls-key", "k.pem"], "(--ca-cert not given)"),
        (vec!["--ca-cert", "ca.pem"], "(--tls-cert and --tls-key not given)"),
    ] {
        let err = ControlPlaneManifest::from_args(&args(&flags)).unwrap_err().to_string();
        assert!(err.contains(expected), "{flags:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

fn must_write(dir: &Path, tls: &WebhookTls) -> (PathBuf, PathBuf, PathBuf) {
    let (cert, key, ca) = (dir.join("tls.crt"), dir.join("tls.key"), dir.join("ca.crt"));
    std::fs::write(&cert, &tls.cert_pem).unwrap();
    std::fs::write(&key, &tls.key_pem).unwrap();
    std::fs::write(&ca, &tls.ca_pem).unwrap();
    (cert, key, ca)
}

#[test]
fn generated_tls_files_pass_the_checks_of_provided_ones() {
    let dir = tempfile::tempdir().unwrap();
    let tls = WebhookTls::generate("mesh-cp").unwrap();
    let (cert, key, ca) = must_write(dir.path(), &tls);
    let read = WebhookTls::from_files(TlsFiles { cert: &cert, key: &key, ca: &ca }, "mesh-cp");
    assert_eq!(read.unwrap().cert_pem, tls.cert_pem);
    assert!(!format!("{tls:?}").contains("PRIVATE KEY"), "the key is never printed");
    assert_eq!(
        service_dns_names("mesh-cp"),
        ["kuma-control-plane.mesh-cp.svc", "kuma-control-plane.mesh-cp", "kuma-control-plane"]
    );
}

#[test]
fn a_certificate_for_another_namespace_is_refused_with_the_name_it_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, ca) = must_write(dir.path(), &WebhookTls::generate("other").unwrap());
    let files = TlsFiles { cert: &cert, key: &key, ca: &ca };
    let err = WebhookTls::from_files(files, "kuma-system").unwrap_err().to_string();
    assert!(err.contains("is not valid for kuma-control-plane.kuma-system.svc"), "{err}");
    assert!(!err.contains("peer"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn a_key_or_a_ca_of_another_pair_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, ca) = must_write(dir.path(), &WebhookTls::generate("kuma-system").unwrap());
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let (_, other_key, other_ca) =
        must_write(&other, &WebhookTls::generate("kuma-system").unwrap());

    let files = TlsFiles { cert: &cert, key: &other_key, ca: &ca };
    let err = WebhookTls::from_files(files, "kuma-system").unwrap_err();
    assert!(matches!(err, InstallError::KeyMismatch { .. }), "{err}");

    let files = TlsFiles { cert: &cert, key: &key, ca: &other_ca };
    let err = WebhookTls::from_files(files, "kuma-system").unwrap_err();
    assert!(matches!(err, InstallError::NotValidForService { .. }), "{err}");
}

#[test]
fn tls_files_without_pem_or_missing_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, ca) = must_write(dir.path(), &WebhookTls::generate("kuma-system").unwrap());
    let files = TlsFiles { cert: &key, key: &cert, ca: &ca };
    let err = WebhookTls::from_files(files, "kuma-system").unwrap_err().to_string();
    assert!(err.contains("--tls-cert") && err.contains("holds no certificate"), "{err}");
    let missing = dir.path().join("missing.crt");
    let files = TlsFiles { cert: &cert, key: &key, ca: &missing };
    let err = WebhookTls::from_files(files, "kuma-system").unwrap_err().to_string();
    assert!(err.starts_with("could not read --ca-cert"), "{err}");
}
