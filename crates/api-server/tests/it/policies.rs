//! `GET /meshes/{mesh}/dataplanes/{name}/policies`.

use axum::http::StatusCode;

use crate::support::must_api;

const BACKEND: &str = "type: Dataplane\nmesh: default\nname: backend-1\nnetworking:\n  inbound:\n  - interface: 127.0.0.1:8000:80\n    tags:\n      service: backend\n  outbound:\n  - interface: :10000\n    service: redis\n";

#[tokio::test]
async fn policies_of_a_dataplane_name_the_most_specific_choice_and_its_rank() {
    let api = must_api().await;
    api.must_put_yaml(BACKEND).await;
    api.must_put_yaml("type: TrafficPermission\nmesh: default\nname: allow-all\nsources:\n- match:\n    service: '*'\ndestinations:\n- match:\n    service: '*'\n").await;
    api.must_put_yaml("type: TrafficPermission\nmesh: default\nname: to-backend\nsources:\n- match:\n    service: web\ndestinations:\n- match:\n    service: backend\n").await;
    api.must_put_yaml("type: HealthCheck\nmesh: default\nname: hc\nsources:\n- match:\n    service: '*'\ndestinations:\n- match:\n    service: redis\nconf:\n  activeChecks:\n    interval: 1s\n    timeout: 1s\n    unhealthyThreshold: 2\n    healthyThreshold: 1\n").await;

    let reply = api.get("/meshes/default/dataplanes/backend-1/policies").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let body = reply.body;
    let permission = &body["inbounds"][0]["policies"]["TrafficPermission"];
    assert_eq!(permission["name"], "to-backend");
    assert_eq!(permission["rank"]["exact"], 1);
    assert_eq!(permission["otherMatches"][0], "allow-all");
    assert!(permission["reason"].as_str().unwrap().contains("beats \"allow-all\""), "{permission}");
    let check = &body["outbounds"][0]["policies"]["HealthCheck"];
    assert_eq!((check["name"].as_str(), check["rank"]["total"].as_u64()), (Some("hc"), Some(2)));
    assert!(body["outbounds"][0]["policies"].get("TrafficRoute").is_none());
}

#[tokio::test]
async fn policies_of_a_missing_dataplane_is_404() {
    let api = must_api().await;
    let reply = api.get("/meshes/default/dataplanes/nope/policies").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.body);
}

#[tokio::test]
async fn extra_validation_violations_are_reported_with_the_model_ones() {
    use std::sync::Arc;

    use kuma_api_server::{ApiServer, ApiServerConfig, ServerInfo};
    use kuma_model::{Spec, Violation};

    let api = must_api().await;
    let info = ServerInfo { version: "1".into(), hostname: "cp".into() };
    let router = ApiServer::new(api.store.clone(), ApiServerConfig::default(), info)
        .with_validation(Arc::new(|spec: &Spec| match spec {
            Spec::ProxyTemplate(_) => vec![Violation::new("conf.resources[0].resource", "bad")],
            _ => Vec::new(),
        }))
        .router();
    let checked = crate::support::Api { router, ..api.clone() };
    let reply = checked
        .put_yaml(
            "type: ProxyTemplate\nmesh: default\nname: pt\nconf:\n  imports:\n  - default-proxy\n",
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    assert_eq!(reply.cause_fields(), ["conf.resources[0].resource"]);
    checked.must_put_yaml(BACKEND).await;
}
