//! Property tests of the API's parsers, driven through its router: the `size`, `offset`, `tag` and
//! `consistency` parameters of lists, and resource bodies of any shape. Never a 5xx; every refusal
//! is a 400 in Kuma's error body whose causes name the parameter or field at fault; whatever is
//! accepted reads back as it was written, and every `next` link it gives is one it accepts.

use axum::http::{Method, StatusCode};
use kuma_model::rest::ErrorBody;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Value};

use crate::support::{must_api, path_of, Api, Reply};

/// `cases` per property unless `PROPTEST_CASES` asks for a longer run; a failure prints its
/// minimal input rather than writing a regressions file into a shared tree.
fn config(cases: u32) -> Config {
    let mut config = Config { failure_persistence: None, ..Config::default() };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    config
}

/// Runs `property` on values of `strategy` against one API (built once: building it renders the
/// OpenAPI document), each case on the same single-threaded runtime.
fn must_hold<S, F>(cases: u32, strategy: S, property: F)
where
    S: Strategy,
    F: AsyncFn(&Api, S::Value) -> Result<(), TestCaseError>,
{
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let api = runtime.block_on(async {
        let api = must_api().await;
        for (name, service) in [("web-1", "web"), ("web-2", "web"), ("db-1", "db"), ("db-2", "db")]
        {
            for i in 0..2 {
                let dataplane = json!({
                    "type": "Dataplane", "mesh": "default", "name": format!("{name}-{i}"),
                    "networking": {"inbound": [{
                        "interface": format!("127.0.0.1:900{i}:6379"),
                        "tags": {"service": service, "version": format!("v{i}")},
                    }]},
                });
                api.must_put_yaml(&dataplane.to_string()).await;
            }
        }
        api
    });
    let mut runner = TestRunner::new(config(cases));
    let result = runner.run(&strategy, |value| runtime.block_on(property(&api, value)));
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// A refusal in Kuma's error body: a title, details, and causes each naming a field.
fn must_be_kuma_error(reply: &Reply, context: &str) -> Result<Vec<String>, TestCaseError> {
    let body: ErrorBody = serde_json::from_value(reply.body.clone()).map_err(|e| {
        TestCaseError::fail(format!("{context}: {} is not Kuma's error body ({e})", reply.body))
    })?;
    prop_assert!(!body.title.is_empty(), "{}: {}", context, reply.body);
    for cause in &body.causes {
        prop_assert!(
            !cause.field.is_empty() && !cause.message.is_empty(),
            "{}: {}",
            context,
            reply.body
        );
    }
    Ok(body.causes.into_iter().map(|c| c.field).collect())
}

// ---------------------------------------------------------------------------------------------
// List parameters

const SIZES_REFUSED: &[&str] = &[
    "0",
    "1001",
    "-1",
    "",
    "abc",
    " 5",
    "5 ",
    "١",
    "1e2",
    "0x10",
    "1.0",
    "18446744073709551616",
    "99999999999999999999999999",
];
const OFFSETS: &[&str] =
    &["default/web-1-0", "default/", "/", "/web", "a/b/c", "default/🦀", "garbage", "", "🦀", ".."];
const TAGS: &[&str] = &[
    "service:web",
    "kuma.io/service:web",
    "version:v1",
    "service:",
    ":",
    "a:b:c",
    "🦀:🦀",
    "service",
    "",
    "🦀",
];
const CONSISTENCIES: &[&str] = &["consistent", "stale", "", "STALE", "eventual", " stale"];

/// One `key=value` pair, encoded as a client might: form-encoded, every byte percent-encoded, or
/// raw junk that the decoder has to cope with.
fn query_pair() -> impl Strategy<Value = String> {
    let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let pair = prop_oneof![
        5 => (1..=5usize).prop_map(|n| ("size".to_string(), n.to_string())),
        1 => (1..=1000usize).prop_map(|n| ("size".to_string(), n.to_string())),
        2 => select(SIZES_REFUSED).prop_map(|v| ("size".to_string(), v.to_string())),
        1 => any::<u64>().prop_map(|n| ("size".to_string(), n.to_string())),
        3 => select(OFFSETS).prop_map(|v| ("offset".to_string(), v.to_string())),
        3 => select(TAGS).prop_map(|v| ("tag".to_string(), v.to_string())),
        2 => select(CONSISTENCIES).prop_map(|v| ("consistency".to_string(), v.to_string())),
        2 => ("[a-zA-Z]{1,6}", "\\PC{0,8}"),
        1 => ("\\PC{0,4}", "\\PC{0,8}"),
    ];
    prop_oneof![
        8 => pair.clone().prop_map(move |(k, v)| format!("{}={}", encode(&k), encode(&v))),
        1 => pair.prop_map(|(k, v)| {
            let all = |s: &str| s.bytes().map(|b| format!("%{b:02X}")).collect::<String>();
            format!("{}={}", all(&k), all(&v))
        }),
        1 => select(RAW_PAIRS).prop_map(str::to_string),
    ]
}

/// Pieces of a query a decoder has to cope with: no value, no key, broken percent-encoding.
const RAW_PAIRS: &[&str] = &[
    "",
    "=",
    "size",
    "size=",
    "tag",
    "%",
    "%zz",
    "size=%FF",
    "tag=%C3%28",
    "offset=%2F",
    "tag=a%3Ab",
    "size=1%00",
];

const LISTS: &[&str] = &[
    "/meshes/default/dataplanes",
    "/meshes/default/dataplanes+insights",
    "/dataplanes+insights",
    "/dataplanes",
    "/meshes",
    "/meshes/default/traffic-permissions",
];

/// Which parameters of `query` are wrong for the list at `path`, by the API's documented rules.
fn faults(path: &str, query: &str) -> Vec<&'static str> {
    let pairs: Vec<(String, String)> =
        form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    let mut faults = Vec::new();
    if let Some((_, c)) = pairs.iter().find(|(k, _)| k == "consistency") {
        if c != "consistent" && c != "stale" {
            faults.push("consistency");
        }
    }
    let size_ok = |v: &str| v.parse::<usize>().is_ok_and(|n| (1..=1000).contains(&n));
    if pairs.iter().any(|(k, v)| k == "size" && !size_ok(v)) {
        faults.push("size");
    }
    let tags: Vec<&String> = pairs.iter().filter(|(k, _)| k == "tag").map(|(_, v)| v).collect();
    if tags.iter().any(|t| !t.contains(':')) || (!tags.is_empty() && !path.ends_with("+insights")) {
        faults.push("tag");
    }
    let offset = pairs.iter().rev().find(|(k, _)| k == "offset").map(|(_, v)| v.as_str());
    if offset.is_some_and(|o| !o.is_empty() && !o.contains('/')) {
        faults.push("offset");
    }
    faults
}

#[test]
fn list_parameters_are_answered_or_refused_with_a_400_naming_the_parameter() {
    let strategy = (select(LISTS), vec(query_pair(), 0..5));
    must_hold(256, strategy, async |api, (path, pairs)| {
        let query = pairs.join("&");
        let url = format!("{path}?{query}");
        let expected = faults(path, &query);
        let reply = api.get(&url).await;
        if expected.is_empty() {
            prop_assert_eq!(reply.status, StatusCode::OK, "{}: {}", url, reply.body);
        } else {
            prop_assert_eq!(
                reply.status,
                StatusCode::BAD_REQUEST,
                "{} (wrong: {:?}): {}",
                url,
                expected,
                reply.body
            );
            let fields = must_be_kuma_error(&reply, &url)?;
            prop_assert!(!fields.is_empty(), "{}: no cause in {}", url, reply.body);
            for field in &fields {
                prop_assert!(
                    expected.contains(&field.as_str()),
                    "{} blamed {} (wrong: {:?})",
                    url,
                    field,
                    expected
                );
            }
            return Ok(());
        }
        // A page never holds more than asked for, and its next link is one this API accepts.
        let size = form_urlencoded::parse(query.as_bytes())
            .filter(|(k, _)| k == "size")
            .last()
            .map_or(100, |(_, v)| v.parse::<usize>().expect("checked above"));
        let items = reply.body["items"].as_array().map_or(usize::MAX, Vec::len);
        prop_assert!(items <= size, "{}: {} items", url, items);
        if let Some(next) = reply.body["next"].as_str() {
            let next = next.strip_prefix("http://cp.test:5681").unwrap_or(next);
            let followed = api.get(next).await;
            prop_assert_eq!(
                followed.status,
                StatusCode::OK,
                "{} from {}: {}",
                next,
                url,
                followed.body
            );
        }
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// Resource bodies

const SEEDS: &[&str] = &[
    "type: Dataplane\nmesh: default\nname: backend-1\nnetworking:\n  inbound:\n  - interface: 127.0.0.1:8000:80\n    tags:\n      service: backend\n      version: '2'\n  outbound:\n  - interface: :10000\n    service: redis\n",
    "type: Dataplane\nmesh: default\nname: web-9\nnetworking:\n  address: 10.0.0.2\n  inbound:\n  - port: 8080\n    servicePort: 80\n    tags:\n      kuma.io/service: web\n      kuma.io/protocol: http\n  transparentProxying:\n    redirectPort: 15001\n",
    "type: Mesh\nname: prod\nmtls:\n  enabledBackend: ca-1\n  backends:\n  - name: ca-1\n    type: builtin\n    dpCert:\n      rotation:\n        expiration: 1d\nlogging:\n  defaultBackend: tcp-1\n  backends:\n  - name: tcp-1\n    type: tcp\n    conf:\n      address: 127.0.0.1:5000\ntracing:\n  backends:\n  - name: z\n    type: zipkin\n    sampling: 50.5\n    conf:\n      url: http://z:9411/api\nmetrics:\n  enabledBackend: prom\n  backends:\n  - name: prom\n    type: prometheus\n    conf:\n      port: 5670\n      path: /metrics\n",
    "type: TrafficRoute\nmesh: default\nname: r\nsources:\n- match:\n    service: web\ndestinations:\n- match:\n    service: redis\nconf:\n- weight: 90\n  destination:\n    service: redis\n    version: '1.0'\n",
    "type: TrafficPermission\nmesh: default\nname: p\nsources:\n- match:\n    service: '*'\ndestinations:\n- match:\n    service: backend\n    version: '2'\n",
    "type: HealthCheck\nmesh: default\nname: hc\nsources:\n- match:\n    service: web\ndestinations:\n- match:\n    service: backend\nconf:\n  activeChecks:\n    interval: 10s\n    timeout: 2s\n    unhealthyThreshold: 3\n    healthyThreshold: 1\n  passiveChecks:\n    unhealthyThreshold: 3\n    penaltyInterval: 5s\n",
    "type: ProxyTemplate\nmesh: default\nname: pt\nselectors:\n- match:\n    service: web\nconf:\n  imports:\n  - default-proxy\n",
    "type: Secret\nmesh: default\nname: s\ndata: aGVsbG8=\n",
];

/// Every JSON pointer below the root of `value`.
fn pointers(value: &Value, prefix: &str, out: &mut Vec<String>) {
    let children: Vec<(String, &Value)> = match value {
        Value::Object(map) => {
            map.iter().map(|(k, v)| (k.replace('~', "~0").replace('/', "~1"), v)).collect()
        }
        Value::Array(items) => items.iter().enumerate().map(|(i, v)| (i.to_string(), v)).collect(),
        _ => Vec::new(),
    };
    for (segment, child) in children {
        let pointer = format!("{prefix}/{segment}");
        out.push(pointer.clone());
        pointers(child, &pointer, out);
    }
}

fn wrong_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        select(vec![
            Value::Null,
            json!(-1),
            json!(0),
            json!(65536),
            json!(u64::MAX),
            json!(i64::MIN),
            json!(1.5),
            json!(1e300),
            json!(true),
            json!(""),
            json!("*"),
            json!("\u{0}"),
            json!("🦀"),
            json!("1.10"),
            json!("127.0.0.1:1:1"),
            json!([]),
            json!([{}]),
            json!({}),
            json!({"unexpected": [1]}),
        ]),
        "\\PC{0,12}".prop_map(Value::from),
    ]
}

#[derive(Clone, Debug)]
enum Edit {
    Keep,
    Remove,
    Replace(Value),
}

/// A seed, maybe with one node replaced by a value of another shape or removed; and the path of
/// the seed it is PUT to.
fn damaged_seed() -> impl Strategy<Value = (String, Value)> {
    let edit = prop_oneof![
        1 => Just(Edit::Keep),
        1 => Just(Edit::Remove),
        4 => wrong_value().prop_map(Edit::Replace),
    ];
    (select(SEEDS), any::<Index>(), edit).prop_map(|(seed, at, edit)| {
        let original: Value = serde_yaml::from_str(seed).expect("a seed");
        let mut all = Vec::new();
        pointers(&original, "", &mut all);
        let pointer = at.get(&all);
        let mut damaged = original.clone();
        match edit {
            Edit::Keep => {}
            Edit::Replace(wrong) => {
                *damaged.pointer_mut(pointer).expect("the pointer exists") = wrong
            }
            Edit::Remove => {
                let (parent, last) = pointer.rsplit_once('/').expect("below the root");
                let last = last.replace("~1", "/").replace("~0", "~");
                match damaged.pointer_mut(parent) {
                    Some(Value::Object(map)) => {
                        map.remove(&last);
                    }
                    Some(Value::Array(items)) => {
                        items.remove(last.parse::<usize>().expect("an index"));
                    }
                    _ => {}
                }
            }
        }
        (path_of(&original), damaged)
    })
}

/// A body as it is sent: JSON or YAML text, damaged or not, or text that is neither.
#[derive(Clone, Debug)]
struct Body {
    path: String,
    text: String,
    yaml: bool,
}

fn body() -> impl Strategy<Value = Body> {
    let yaml_fragments = select(vec![
        "&a ",
        "*a",
        "!!binary ",
        "!custom ",
        "{",
        "]",
        "'",
        "\"",
        ": ",
        "- ",
        "\n---\n",
        "\t",
        "#",
        "|\n",
        "99999999999999999999999",
        "~",
        "\u{feff}",
        "🦀",
        "\n  ",
    ]);
    let yaml = (damaged_seed(), vec((any::<Index>(), yaml_fragments), 0..3)).prop_map(
        |((path, value), damage)| {
            let mut text = serde_yaml::to_string(&value).expect("YAML");
            for (at, fragment) in damage {
                let mut i = at.index(text.len() + 1);
                while !text.is_char_boundary(i) {
                    i -= 1;
                }
                text.insert_str(i, fragment);
            }
            Body { path, text, yaml: true }
        },
    );
    let junk = prop_oneof![
        vec(any::<u8>(), 0..64).prop_map(|bytes| String::from_utf8_lossy(&bytes).into_owned()),
        select(NOT_RESOURCES).prop_map(str::to_string),
    ];
    let junk = (select(SEEDS), junk, any::<bool>()).prop_map(|(seed, text, yaml)| {
        let value: Value = serde_yaml::from_str(seed).expect("a seed");
        Body { path: path_of(&value), text, yaml }
    });
    prop_oneof![
        4 => damaged_seed().prop_map(|(path, value)| {
            Body { path, text: value.to_string(), yaml: false }
        }),
        2 => yaml,
        2 => junk,
    ]
}

/// Bodies that are no resource at all.
const NOT_RESOURCES: &[&str] =
    &["", "null", "[]", "1", "\"x\"", "{", "[[[[[[[[[[[[[[[[[[[[", "{\"type\":", "---\n---\n"];

#[test]
fn a_resource_body_of_any_shape_is_stored_as_sent_or_refused_with_field_paths() {
    must_hold(192, body(), async |api, body| {
        let content_type = if body.yaml { "application/yaml" } else { "application/json" };
        let reply = api
            .send(
                Method::PUT,
                &body.path,
                Some(body.text.clone()),
                &[("content-type", content_type)],
            )
            .await;
        let context = format!("PUT {} {}", body.path, body.text);
        match reply.status {
            StatusCode::OK | StatusCode::CREATED => {}
            StatusCode::BAD_REQUEST => {
                let fields = must_be_kuma_error(&reply, &context)?;
                if reply.body["details"] == "Resource is not valid" {
                    prop_assert!(!fields.is_empty(), "{}: {}", context, reply.body);
                }
                return Ok(());
            }
            other => prop_assert!(false, "{}: {} {}", context, other, reply.body),
        }
        // Accepted: it reads back as it was sent (a Secret's bytes are never shown, so not those).
        let sent: Value = if body.yaml {
            serde_yaml::from_str(&body.text).expect("the server read it")
        } else {
            serde_json::from_str(&body.text).expect("the server read it")
        };
        let stored = api.get(&body.path).await;
        prop_assert_eq!(stored.status, StatusCode::OK, "{}: {}", context, stored.body);
        if sent["type"] != "Secret" {
            let sent = kuma_model::parse_resource(sent).expect("the server read it");
            let stored = kuma_model::parse_resource(stored.body).expect("the server's own form");
            prop_assert_eq!(stored, sent, "{}", context);
        }
        Ok(())
    });
}
