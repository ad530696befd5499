//! The envtest equivalent: a real kube-apiserver and etcd on loopback, built by
//! `.ci/kube-apiserver`.

use std::time::{Duration, Instant};

use kuma_test_support::{eventually, KubeApiServer};

#[test]
fn a_namespace_created_through_the_real_apiserver_comes_back() {
    let started = Instant::now();
    let server = KubeApiServer::must_start();
    eprintln!("kube-apiserver ready at {} in {:?}", server.url(), started.elapsed());

    let ready = server.request("GET", "/readyz", None).expect("GET /readyz");
    assert_eq!((ready.status, ready.body.as_str()), (200, "ok"));
    let list = server.request("GET", "/api/v1/namespaces", None).expect("GET namespaces");
    assert_eq!(list.status, 200, "{}", list.body);
    let list: serde_json::Value = serde_json::from_str(&list.body).expect("a JSON list");
    assert_eq!(list["kind"], "NamespaceList");

    let namespace = r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"kuma-demo","labels":{"kuma.io/sidecar-injection":"enabled"}}}"#;
    let created = server.request("POST", "/api/v1/namespaces", Some(namespace)).expect("POST");
    assert_eq!(created.status, 201, "{}", created.body);

    let got = server.request("GET", "/api/v1/namespaces/kuma-demo", None).expect("GET");
    assert_eq!(got.status, 200, "{}", got.body);
    let got: serde_json::Value = serde_json::from_str(&got.body).expect("a JSON namespace");
    assert_eq!(got["metadata"]["name"], "kuma-demo");
    assert_eq!(got["metadata"]["labels"]["kuma.io/sidecar-injection"], "enabled");
    assert_eq!(got["status"]["phase"], "Active");
    // The apiserver's bootstrap controller creates `default` shortly after it is ready.
    let names = eventually!(Duration::from_secs(10), || {
        let reply = server.request("GET", "/api/v1/namespaces", None).map_err(|e| e.to_string())?;
        let list: serde_json::Value =
            serde_json::from_str(&reply.body).map_err(|e| e.to_string())?;
        let names: Vec<String> = list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|ns| ns["metadata"]["name"].as_str().map(str::to_string))
            .collect();
        if names.iter().any(|n| n == "default") {
            Ok(names)
        } else {
            Err(names.join(","))
        }
    });
    assert!(names.iter().any(|n| n == "kuma-demo"), "{names:?}");

    let kubeconfig = std::fs::read_to_string(server.kubeconfig()).expect("a kubeconfig");
    assert!(kubeconfig.contains(&server.url()) && kubeconfig.contains(server.token()));
}
