//! Bad input never crashes the API or corrupts what is stored: every field of valid resources is
//! replaced by values of the wrong shape, or removed, and each request must end in a success or a
//! 400 in Kuma's error body; afterwards every stored resource still reads back and re-applies.

use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::support::{must_api, path_of};

const SEEDS: &[&str] = &[
    "type: Dataplane\nmesh: default\nname: backend-1\nnetworking:\n  inbound:\n  - interface: 127.0.0.1:8000:80\n    tags:\n      service: backend\n  outbound:\n  - interface: :10000\n    service: redis\n",
    "type: Dataplane\nmesh: default\nname: web-1\nnetworking:\n  address: 10.0.0.2\n  inbound:\n  - port: 8080\n    servicePort: 80\n    tags:\n      kuma.io/service: web\n",
    "type: Mesh\nname: prod\nmtls:\n  enabledBackend: ca-1\n  backends:\n  - name: ca-1\n    type: builtin\nlogging:\n  backends:\n  - name: tcp-1\n    type: tcp\n    conf:\n      address: 127.0.0.1:5000\ntracing:\n  backends:\n  - name: z\n    type: zipkin\n    conf:\n      url: http://z:9411/api\n",
    "type: TrafficRoute\nmesh: default\nname: r\nsources:\n- match:\n    service: web\ndestinations:\n- match:\n    service: redis\nconf:\n- weight: 90\n  destination:\n    service: redis\n",
    "type: HealthCheck\nmesh: default\nname: hc\nsources:\n- match:\n    service: web\ndestinations:\n- match:\n    service: backend\nconf:\n  activeChecks:\n    interval: 10s\n    timeout: 2s\n    unhealthyThreshold: 3\n    healthyThreshold: 1\n",
];

/// Every JSON pointer in `value`, except the root.
fn pointers(value: &Value, prefix: String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let p = format!("{prefix}/{}", k.replace('~', "~0").replace('/', "~1"));
                out.push(p.clone());
                pointers(v, p, out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                let p = format!("{prefix}/{i}");
                out.push(p.clone());
                pointers(v, p, out);
            }
        }
        _ => {}
    }
}

fn remove(value: &mut Value, pointer: &str) {
    let (parent, last) = pointer.rsplit_once('/').expect("not the root");
    let last = last.replace("~1", "/").replace("~0", "~");
    match value.pointer_mut(parent) {
        Some(Value::Object(map)) => {
            map.remove(&last);
        }
        Some(Value::Array(items)) => {
            if let Ok(i) = last.parse::<usize>() {
                items.remove(i);
            }
        }
        _ => {}
    }
}

#[tokio::test]
async fn wrong_shapes_and_missing_fields_never_crash_or_corrupt() {
    let api = must_api().await;
    let replacements = [
        Value::Null,
        json!(-1),
        json!(4_294_967_296u64),
        json!(1.5),
        json!(true),
        json!(""),
        json!("*"),
        json!("x".repeat(300)),
        json!([]),
        json!([{}]),
        json!({}),
        json!({"unexpected": {"deeply": [1, 2, 3]}}),
    ];
    let mut requests = 0;
    for seed in SEEDS {
        let original: Value = serde_yaml::from_str(seed).unwrap();
        let path = path_of(&original);
        let mut all = Vec::new();
        pointers(&original, String::new(), &mut all);
        for pointer in &all {
            let mut variants = Vec::new();
            let mut removed = original.clone();
            remove(&mut removed, pointer);
            variants.push(removed);
            for replacement in &replacements {
                let mut changed = original.clone();
                *changed.pointer_mut(pointer).expect("pointer exists") = replacement.clone();
                variants.push(changed);
            }
            for body in variants {
                let reply = api.put_json(&path, &body).await;
                requests += 1;
                match reply.status {
                    StatusCode::OK | StatusCode::CREATED => {}
                    StatusCode::BAD_REQUEST => {
                        assert!(
                            reply.body["title"].is_string() && reply.body["details"].is_string(),
                            "{body}: {}",
                            reply.body
                        );
                    }
                    other => panic!("{other} for {body}: {}", reply.body),
                }
            }
        }
    }
    assert!(requests > 500, "only {requests} requests were tried");

    // Whatever was accepted reads back and can be written again unchanged.
    for collection in ["/meshes", "/dataplanes", "/traffic-routes", "/health-checks"] {
        let list = api.get(&format!("{collection}?size=1000")).await;
        assert_eq!(list.status, StatusCode::OK);
        for item in list.body["items"].as_array().unwrap() {
            let reply = api.put_json(&path_of(item), item).await;
            assert_eq!(reply.status, StatusCode::OK, "{item}: {}", reply.body);
        }
    }
}
