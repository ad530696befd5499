//! `kumactl install crds` against a real kube-apiserver (built by `.ci/kube-apiserver`): every CRD
//! is accepted and becomes Established, and Kuma-shaped objects (`mesh` beside `spec`) are stored
//! and read back as written, cluster-scoped Meshes and namespaced Dataplanes.

use std::time::Duration;

use kuma_test_support::{try_poll_until, KubeApiServer};
use serde_json::Value;

use crate::support::Ctl;

fn documents(yaml: &str) -> Vec<Value> {
    kuma_model::parse_resources_yaml(yaml).expect("kumactl prints YAML")
}

#[test]
fn the_crds_install_on_a_real_apiserver_and_keep_kumas_object_shape() {
    let crds = documents(&Ctl::new().must_run(&["install", "crds"]));
    assert_eq!(crds.len(), 9, "one CRD per type kept as a Kubernetes object");
    let server = KubeApiServer::must_start();
    for crd in &crds {
        let reply = server
            .request(
                "POST",
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                Some(&crd.to_string()),
            )
            .expect("the apiserver answers");
        assert_eq!(reply.status, 201, "{}: {}", crd["metadata"]["name"], reply.body);
    }
    for crd in &crds {
        let name = crd["metadata"]["name"].as_str().unwrap();
        try_poll_until(Duration::from_secs(20), || {
            let reply = server
                .request(
                    "GET",
                    &format!("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"),
                    None,
                )
                .map_err(|e| e.to_string())?;
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

    let mesh = r#"{"apiVersion":"kuma.io/v1alpha1","kind":"Mesh","metadata":{"name":"default"},"spec":{"mtls":{"enabledBackend":"ca-1","backends":[{"name":"ca-1","type":"builtin"}]}}}"#;
    let reply = server.request("POST", "/apis/kuma.io/v1alpha1/meshes", Some(mesh)).unwrap();
    assert_eq!(reply.status, 201, "{}", reply.body);
    let dataplane = r#"{"apiVersion":"kuma.io/v1alpha1","kind":"Dataplane","metadata":{"name":"redis-1","namespace":"default"},"mesh":"default","spec":{"networking":{"address":"10.0.0.7","inbound":[{"port":6379,"tags":{"kuma.io/service":"redis_default_svc_6379"}}]}}}"#;
    let reply = try_poll_until(Duration::from_secs(20), || {
        let reply = server
            .request(
                "POST",
                "/apis/kuma.io/v1alpha1/namespaces/default/dataplanes",
                Some(dataplane),
            )
            .map_err(|e| e.to_string())?;
        // The `default` namespace appears shortly after the apiserver is ready.
        if reply.status == 201 {
            Ok(reply)
        } else {
            Err(reply.body)
        }
    })
    .expect("the Dataplane is created");
    assert_eq!(reply.status, 201);
    let got = server
        .request("GET", "/apis/kuma.io/v1alpha1/namespaces/default/dataplanes/redis-1", None)
        .unwrap();
    let got: Value = serde_json::from_str(&got.body).unwrap();
    assert_eq!(got["mesh"], "default", "the top-level mesh survives: {got}");
    assert_eq!(got["spec"]["networking"]["inbound"][0]["port"], 6379);
    let meshes = server.request("GET", "/apis/kuma.io/v1alpha1/meshes", None).unwrap();
    let meshes: Value = serde_json::from_str(&meshes.body).unwrap();
    assert_eq!(meshes["items"][0]["spec"]["mtls"]["enabledBackend"], "ca-1");
    // Meshes are cluster-scoped: there is no namespaced path for them.
    let namespaced =
        server.request("GET", "/apis/kuma.io/v1alpha1/namespaces/default/meshes", None).unwrap();
    assert_eq!(namespaced.status, 404, "{}", namespaced.body);
}
