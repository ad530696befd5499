//! Lists: paging with `{total, items, next}`, cross-mesh lists, and dataplanes+insights.

use axum::http::StatusCode;
use kuma_model::{DataplaneInsightSpec, DiscoverySubscription, ResourceKey, ResourceType, Spec};
use serde_json::Value;

use crate::support::{must_api, Api};

fn dataplane(mesh: &str, name: &str, service: &str, version: &str) -> String {
    format!("type: Dataplane\nmesh: {mesh}\nname: {name}\nnetworking:\n  inbound:\n  - interface: 127.0.0.1:9000:6379\n    tags:\n      service: {service}\n      version: '{version}'\n")
}

/// Follows `next` links from `path`, returning item names and the totals seen.
async fn must_walk(api: &Api, path: &str) -> (Vec<String>, Vec<u64>) {
    let mut names = Vec::new();
    let mut totals = Vec::new();
    let mut next = Some(path.to_string());
    while let Some(url) = next {
        let path = url.strip_prefix("http://cp.test:5681").unwrap_or(&url).to_string();
        let reply = api.get(&path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.body);
        for item in reply.body["items"].as_array().unwrap() {
            names.push(item["name"].as_str().unwrap().to_string());
        }
        totals.push(reply.body["total"].as_u64().unwrap());
        next = reply.body["next"].as_str().map(str::to_string);
    }
    (names, totals)
}

#[tokio::test]
async fn pages_follow_next_links_until_null() {
    let api = must_api().await;
    for i in 0..5 {
        api.must_put_yaml(&dataplane("default", &format!("dp-{i}"), "web", "1")).await;
    }
    let first = api.get("/meshes/default/dataplanes?size=2").await.body;
    assert_eq!(first["total"], 5);
    assert!(first["next"]
        .as_str()
        .unwrap()
        .starts_with("http://cp.test:5681/meshes/default/dataplanes?"));
    let (names, totals) = must_walk(&api, "/meshes/default/dataplanes?size=2").await;
    assert_eq!(names, ["dp-0", "dp-1", "dp-2", "dp-3", "dp-4"]);
    assert_eq!(totals, [5, 5, 5]);
}

#[tokio::test]
async fn next_links_use_the_configured_public_url() {
    let config = kuma_api_server::ApiServerConfig {
        public_url: "https://kuma.example.com/".into(),
        ..Default::default()
    };
    let api = crate::support::must_api_with(config).await;
    for i in 0..3 {
        api.must_put_yaml(&dataplane("default", &format!("dp-{i}"), "web", "1")).await;
    }
    let page = api.get("/meshes/default/dataplanes?size=2").await.body;
    let next = page["next"].as_str().unwrap();
    assert!(next.starts_with("https://kuma.example.com/meshes/default/dataplanes?"), "{next}");
}

#[tokio::test]
async fn default_page_is_100_and_size_above_1000_is_refused() {
    let api = must_api().await;
    for i in 0..101 {
        api.must_put_yaml(&dataplane("default", &format!("dp-{i:03}"), "web", "1")).await;
    }
    let page = api.get("/meshes/default/dataplanes").await.body;
    assert_eq!(page["items"].as_array().unwrap().len(), 100);
    assert!(page["next"].is_string());
    for bad in ["size=1001", "size=0", "size=abc"] {
        let reply = api.get(&format!("/meshes/default/dataplanes?{bad}")).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(reply.body["details"], "Invalid page size");
        assert_eq!(reply.cause_fields(), ["size"]);
    }
    let reply = api.get("/meshes/default/dataplanes?offset=garbage").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.cause_fields(), ["offset"]);
}

#[tokio::test]
async fn cross_mesh_lists_span_every_mesh() {
    let api = must_api().await;
    api.must_put_yaml("type: Mesh\nname: demo\n").await;
    api.must_put_yaml(&dataplane("default", "a", "web", "1")).await;
    api.must_put_yaml(&dataplane("demo", "b", "web", "1")).await;
    let (names, _) = must_walk(&api, "/dataplanes?size=1").await;
    assert_eq!(names, ["a", "b"]);
    let (meshes, _) = must_walk(&api, "/meshes").await;
    assert_eq!(meshes, ["default", "demo"]);
    assert_eq!(api.get("/meshes/demo/dataplanes").await.body["total"], 1);
}

#[tokio::test]
async fn dataplanes_with_insights_are_filtered_by_tags_and_paged() {
    let api = must_api().await;
    api.must_put_yaml(&dataplane("default", "web-1", "web", "1")).await;
    api.must_put_yaml(&dataplane("default", "web-2", "web", "2")).await;
    api.must_put_yaml(&dataplane("default", "web-3", "web", "1")).await;
    api.must_put_yaml(&dataplane("default", "redis-1", "redis", "1")).await;
    let (names, totals) =
        must_walk(&api, "/meshes/default/dataplanes+insights?tag=service:web&tag=version:1&size=1")
            .await;
    assert_eq!(names, ["web-1", "web-3"]);
    assert_eq!(totals, [2, 2]);
    let reply = api.get("/meshes/default/dataplanes+insights?tag=service").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.cause_fields(), ["tag"]);
}

#[tokio::test]
async fn overview_joins_the_insight_and_is_empty_before_a_dataplane_connects() {
    let api = must_api().await;
    api.must_put_yaml(&dataplane("default", "web-1", "web", "1")).await;
    let before = api.get("/meshes/default/dataplanes+insights/web-1").await.body;
    assert_eq!(before["type"], "DataplaneOverview");
    assert_eq!(before["dataplane"]["networking"]["inbound"][0]["tags"]["service"], "web");
    assert_eq!(before["dataplaneInsight"], Value::Object(Default::default()));

    let insight = DataplaneInsightSpec {
        subscriptions: vec![DiscoverySubscription {
            id: "s1".into(),
            connect_time: Some(chrono_now()),
            ..Default::default()
        }],
        mtls: None,
    };
    api.store
        .create(
            ResourceKey::new(ResourceType::DataplaneInsight, "default", "web-1"),
            Spec::DataplaneInsight(insight),
        )
        .await
        .unwrap();
    let after = api.get("/meshes/default/dataplanes+insights").await.body;
    assert_eq!(after["items"][0]["dataplaneInsight"]["subscriptions"][0]["id"], "s1");
    assert_eq!(
        after["items"][0]["dataplaneInsight"]["subscriptions"][0]["status"]["total"]
            ["responsesSent"],
        "0"
    );
    let across = api.get("/dataplanes+insights").await.body;
    assert_eq!(across["total"], 1);
}

fn chrono_now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

#[tokio::test]
async fn tag_filters_on_plain_lists_are_refused() {
    let api = must_api().await;
    let reply = api.get("/meshes/default/dataplanes?tag=service:web").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.cause_fields(), ["tag"]);
}
