//! What kuma-cp checks beyond the model when a resource is applied: ProxyTemplate raw resources
//! against Envoy's schema, and provided CAs that must load.

use kuma_test_support::{http_request, KumaCp};
use serde_json::Value;

#[test]
fn a_proxy_template_with_an_invalid_raw_resource_is_rejected_with_its_field_path() {
    let cp = KumaCp::must_start();
    let template = |resource: &str| {
        serde_json::json!({
            "type": "ProxyTemplate", "mesh": "default", "name": "pt",
            "conf": {"imports": ["default-proxy"], "resources": [
                {"name": "extra", "version": "v1", "resource": resource}
            ]}
        })
        .to_string()
    };
    let bad = "'@type': type.googleapis.com/envoy.config.cluster.v3.Cluster\nname: extra\nconect_timeout: 1s\n";
    let reply =
        http_request(cp.api_port, "PUT", "/meshes/default/proxytemplates/pt", Some(&template(bad)))
            .unwrap();
    assert_eq!(reply.status, 400, "{}", reply.body);
    let body: Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(body["causes"][0]["field"], "conf.resources[0].resource", "{body}");
    assert!(body["causes"][0]["message"].as_str().unwrap().contains("conect_timeout"), "{body}");

    let good = "'@type': type.googleapis.com/envoy.config.cluster.v3.Cluster\nname: extra\nconnect_timeout: 1s\n";
    let reply = http_request(
        cp.api_port,
        "PUT",
        "/meshes/default/proxytemplates/pt",
        Some(&template(good)),
    )
    .unwrap();
    assert_eq!(reply.status, 201, "{}", reply.body);
}

#[test]
fn a_mesh_whose_provided_ca_does_not_load_is_rejected_at_its_backend() {
    let cp = KumaCp::must_start();
    let mesh = r#"{"type":"Mesh","name":"default","mtls":{"enabledBackend":"ca-1","backends":[{"name":"ca-1","type":"provided","conf":{"cert":{"inline":"not a certificate"},"key":{"inline":"not a key"}}}]}}"#;
    let reply = http_request(cp.api_port, "PUT", "/meshes/default", Some(mesh)).unwrap();
    assert_eq!(reply.status, 400, "{}", reply.body);
    let body: Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(body["causes"][0]["field"], "mtls.backends[0].conf", "{body}");
}
