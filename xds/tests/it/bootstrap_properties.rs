//! Property tests of the bootstrap request (`POST /bootstrap`), over a socket as kuma-dp sends
//! it: bodies of any shape, self-registered Dataplanes of any shape, and tokens of any text. Never
//! a 5xx; every refusal a 4xx in Kuma's error body (a 400 for a malformed request, whose causes
//! name the Dataplane's fields); a bootstrap only for the genuine token of the dataplane asking.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use kuma_model::rest::ErrorBody;
use kuma_model::{parse_resource, MeshSpec, ResourceKey, ResourceType, Spec};
use kuma_store::{MemoryStore, ResourceStore};
use kuma_xds::{
    BootstrapServer, BootstrapServerConfig, DataplaneAuth, DpAuthType, SinglePeer, TokenRequest,
};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Map, Value};

/// `cases` per property unless `PROPTEST_CASES` asks for a longer run; a failure prints its
/// minimal input rather than writing a regressions file into a shared tree.
fn config(cases: u32) -> Config {
    let mut config = Config { failure_persistence: None, ..Config::default() };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    config
}

const REDIS_1: &str = "type: Dataplane
mesh: default
name: redis-1
networking:
  inbound:
  - interface: 127.0.0.1:9000:6379
    tags:
      service: redis
";

/// A bootstrap server on a free port, its store holding the default mesh and `default/redis-1`;
/// with tokens on, the mesh's signing key and genuine tokens for `redis-1` and `web-1`.
struct Served {
    runtime: tokio::runtime::Runtime,
    store: Arc<MemoryStore>,
    port: u16,
    tokens: Vec<(String, String)>,
}

fn must_serve(kind: DpAuthType) -> Served {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let (store, port, tokens) = runtime.block_on(async {
        let store = Arc::new(MemoryStore::new());
        store.create(ResourceKey::mesh("default"), Spec::Mesh(MeshSpec::default())).await.unwrap();
        let redis = parse_resource(serde_yaml::from_str(REDIS_1).unwrap()).unwrap();
        store.create(redis.key, redis.spec).await.unwrap();
        let auth = DataplaneAuth::new(kind);
        let mut tokens = Vec::new();
        if kind == DpAuthType::DpToken {
            kuma_xds::ensure_signing_keys(store.as_ref()).await.unwrap();
            let secrets = kuma_store::list_all(store.as_ref(), ResourceType::Secret, None).await;
            auth.reset(&secrets.unwrap());
            for name in ["redis-1", "web-1"] {
                let request = TokenRequest {
                    mesh: "default".into(),
                    name: name.into(),
                    valid_for: Duration::from_secs(3600),
                    ..Default::default()
                };
                let token = kuma_xds::issue_dataplane_token(store.as_ref(), &request).await;
                tokens.push((name.to_string(), token.unwrap()));
            }
        }
        let dyn_store: Arc<dyn ResourceStore> = store.clone();
        let peers = Arc::new(SinglePeer { host: String::new(), port: 5678 });
        let params = BootstrapServerConfig::default().params;
        let server = BootstrapServer::new(dyn_store, params, peers, Arc::new(auth));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, server.router()).await });
        (store, port, tokens)
    });
    Served { runtime, store, port, tokens }
}

struct Reply {
    status: u16,
    content_type: String,
    body: String,
}

/// One `POST /bootstrap` (HTTP/1.1, `Connection: close`) with raw bytes and an optional
/// `Authorization` header, as any client could send it.
fn post(port: u16, body: &[u8], authorization: Option<&str>) -> Reply {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("the server listens");
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = format!(
        "POST /bootstrap HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(value) = authorization {
        head.push_str(&format!("Authorization: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).expect("a reply");
    let raw = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw.as_str(), ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let header = |name: &str| {
        head.lines()
            .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case(name)))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default()
    };
    assert!(!header("transfer-encoding").contains("chunked"), "a chunked reply: {raw}");
    Reply { status, content_type: header("content-type"), body: body.to_string() }
}

/// A refusal in Kuma's error body: a title, details, and causes each naming a field.
fn must_be_kuma_error(reply: &Reply, context: &str) -> Result<ErrorBody, TestCaseError> {
    let body: ErrorBody = serde_json::from_str(&reply.body).map_err(|e| {
        TestCaseError::fail(format!("{context}: {} is not Kuma's error body ({e})", reply.body))
    })?;
    prop_assert!(!body.title.is_empty() && !body.details.is_empty(), "{}: {}", context, reply.body);
    for cause in &body.causes {
        prop_assert!(
            !cause.field.is_empty() && !cause.message.is_empty(),
            "{}: {}",
            context,
            reply.body
        );
    }
    Ok(body)
}

fn must_hold<S: Strategy>(
    cases: u32,
    strategy: S,
    property: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let mut runner = TestRunner::new(config(cases));
    if let Err(e) = runner.run(&strategy, property) {
        panic!("{e}");
    }
}

// ---------------------------------------------------------------------------------------------
// Request bodies

fn wrong_value() -> impl Strategy<Value = Value> {
    select(vec![
        Value::Null,
        json!(-1),
        json!(0),
        json!(65536),
        json!(u64::MAX),
        json!(1.5),
        json!(true),
        json!(""),
        json!("🦀"),
        json!([]),
        json!({}),
        json!({"unexpected": [1]}),
    ])
}

const NOT_DATAPLANES: &[&str] =
    &["", "   ", "---\n", "null", "[]", "{", "*a", "type: Dataplane", "\u{0}"];

/// A Dataplane for `mesh`/`name` as kuma-dp's `--dataplane-file` could hold it: sound, damaged at
/// one field, for another dataplane or of another type, several documents, or not YAML at all.
fn dataplane_resource(mesh: String, name: String) -> impl Strategy<Value = String> {
    let value = json!({
        "type": "Dataplane", "mesh": mesh, "name": name,
        "networking": {
            "inbound": [{
                "interface": "10.0.0.1:9000:6379",
                "tags": {"service": "redis", "version": "1"},
            }],
            "outbound": [{"interface": ":10000", "service": "backend"}],
        },
    });
    let sound = serde_yaml::to_string(&value).expect("YAML");
    let mut pointers = Vec::new();
    collect_pointers(&value, "", &mut pointers);
    let damaged = (any::<Index>(), wrong_value()).prop_map(move |(at, wrong)| {
        let mut damaged = value.clone();
        *damaged.pointer_mut(at.get(&pointers).as_str()).expect("the pointer exists") = wrong;
        serde_yaml::to_string(&damaged).expect("YAML")
    });
    let interface = prop_oneof![
        Just("1.2.3.4:80:81".to_string()),
        select(vec![
            "1.2.3.4:+80:81",
            "1.2.3.4:80",
            "1.2.3.4:0:81",
            "[::1]:80:80",
            "localhost:1:2",
            "1.2.3.4:80:70000",
            ":80:81",
            "🦀"
        ])
        .prop_map(str::to_string),
        "[0-9.:\\[\\]]{0,20}",
    ];
    let sound_2 = sound.clone();
    let sound_3 = sound.clone();
    prop_oneof![
        3 => Just(sound.clone()),
        4 => damaged,
        2 => interface.prop_map(move |i| sound_2.replace("10.0.0.1:9000:6379", &i)),
        1 => Just(sound.replace("name: ", "name: other-")),
        1 => Just(sound.replace("type: Dataplane", "type: Mesh")),
        1 => Just(format!("{sound_3}---\n{sound_3}")),
        1 => select(NOT_DATAPLANES).prop_map(str::to_string),
        1 => "\\PC{0,40}",
    ]
}

fn collect_pointers(value: &Value, prefix: &str, out: &mut Vec<String>) {
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
        collect_pointers(child, &pointer, out);
    }
}

/// Meshes and names: registered, unknown, invalid as resource names, or no text for one.
const NAMES: &[&str] =
    &["default", "redis-1", "ghost", "web.ns-1", "UPPER", "nomesh", "", " ", "a/b", "../x", "🦀"];

/// Bodies that are no bootstrap request: not an object, cut short, or with a duplicated field.
const NOT_REQUESTS: &[&str] = &[
    "",
    "null",
    "[]",
    "1",
    "\"x\"",
    "{",
    "{\"name\":",
    "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
    "{\"name\": \"redis-1\", \"name\": 1}",
];

/// A bootstrap request body: a JSON object with each field present or not, right or wrong in
/// type and value, maybe a Dataplane to register; or a body that is no such object.
fn request_body() -> impl Strategy<Value = Vec<u8>> {
    let text = || {
        prop_oneof![
            4 => select(NAMES).prop_map(str::to_string),
            1 => "\\PC{0,12}",
            1 => Just("x".repeat(300)),
        ]
    };
    let names = (
        prop_oneof![4 => Just("default".to_string()), 1 => text()],
        prop_oneof![2 => Just("redis-1".to_string()), 1 => text()],
    );
    let object = names.prop_flat_map(move |(mesh, name)| {
        // Mostly well-typed, so that most requests get past the first check.
        let field = |right: Value| {
            prop_oneof![
                10 => Just(Some(right)),
                1 => Just(None),
                1 => wrong_value().prop_map(Some),
            ]
        };
        let (mesh_field, name_field) = (field(mesh.clone().into()), field(name.clone().into()));
        let admin_port = prop_oneof![
            8 => (0..=65535u32).prop_map(|p| Some(Value::from(p))),
            2 => Just(None),
            1 => select(vec![
                json!(65536), json!(u32::MAX), json!(u64::MAX), json!(-1), json!(1.5),
                json!("9901"), Value::Null,
            ])
            .prop_map(Some),
        ];
        let string_field = || {
            prop_oneof![
                6 => Just(None),
                3 => text().prop_map(|t| Some(Value::from(t))),
                1 => wrong_value().prop_map(Some),
            ]
        };
        let resource = prop_oneof![
            6 => Just(None),
            12 => dataplane_resource(mesh.clone(), name.clone()).prop_map(|r| Some(Value::from(r))),
            1 => wrong_value().prop_map(Some),
        ];
        let extra = btree_map("[a-zA-Z]{1,8}", wrong_value(), 0..2);
        (
            mesh_field,
            name_field,
            admin_port,
            string_field(),
            string_field(),
            string_field(),
            resource,
            extra,
        )
            .prop_map(
                |(mesh, name, admin_port, token_path, token, ca, resource, extra)| {
                    let mut object: Map<String, Value> = extra.into_iter().collect();
                    for (field, value) in [
                        ("mesh", mesh),
                        ("name", name),
                        ("adminPort", admin_port),
                        ("dataplaneTokenPath", token_path),
                        ("dataplaneToken", token),
                        ("caCert", ca),
                        ("dataplaneResource", resource),
                    ] {
                        if let Some(value) = value {
                            object.insert(field.to_string(), value);
                        }
                    }
                    serde_json::to_vec(&Value::Object(object)).expect("JSON")
                },
            )
    });
    prop_oneof![
        8 => object,
        1 => vec(any::<u8>(), 0..64),
        1 => select(NOT_REQUESTS).prop_map(|s| s.as_bytes().to_vec()),
    ]
}

/// Whether `body` is malformed before anything is looked up: not a JSON object, a field of the
/// wrong type, no name, or an admin port past 65535.
fn is_malformed(body: &[u8]) -> bool {
    let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(body) else { return true };
    let string = |field: &str| object.get(field).is_none_or(Value::is_string);
    let strings_ok =
        ["mesh", "name", "dataplaneTokenPath", "dataplaneToken", "caCert", "dataplaneResource"]
            .iter()
            .all(|f| string(f));
    let port_ok = object.get("adminPort").is_none_or(|p| p.as_u64().is_some_and(|p| p <= 65535));
    let named = object.get("name").and_then(Value::as_str).is_some_and(|n| !n.is_empty());
    !(strings_ok && port_ok && named)
}

#[test]
fn a_bootstrap_request_of_any_shape_is_served_or_refused_with_a_4xx_error_body() {
    let served = must_serve(DpAuthType::None);
    must_hold(192, request_body(), |body| {
        let reply = post(served.port, &body, None);
        let context = String::from_utf8_lossy(&body).into_owned();
        if is_malformed(&body) {
            prop_assert_eq!(reply.status, 400, "{}: {}", context, reply.body);
        }
        match reply.status {
            200 => {
                prop_assert_eq!(&reply.content_type, "text/x-yaml");
                let request: Value = serde_json::from_slice(&body).expect("it was served");
                let mesh = request["mesh"].as_str().unwrap_or("default");
                let name = request["name"].as_str().expect("a name");
                let bootstrap: serde_yaml::Value = serde_yaml::from_str(&reply.body)
                    .map_err(|e| TestCaseError::fail(format!("{context}: not YAML ({e})")))?;
                let node_id = format!("{mesh}.{name}");
                prop_assert_eq!(bootstrap["node"]["id"].as_str(), Some(node_id.as_str()));
                // A registered Dataplane is stored as it was sent.
                if let Some(resource) =
                    request["dataplaneResource"].as_str().filter(|r| !r.trim().is_empty())
                {
                    let sent = parse_resource(serde_yaml::from_str(resource).expect("it was read"))
                        .expect("it was read");
                    let stored = served.runtime.block_on(served.store.get(&sent.key));
                    prop_assert_eq!(stored.map(|r| r.spec).ok(), Some(sent.spec), "{}", context);
                }
            }
            400 | 404 => {
                let error = must_be_kuma_error(&reply, &context)?;
                if error.title == "Could not register the Dataplane" {
                    prop_assert!(!error.causes.is_empty(), "{}: {}", context, reply.body);
                }
            }
            other => prop_assert!(false, "{}: {} {}", context, other, reply.body),
        }
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// Tokens

#[derive(Clone, Debug)]
enum TokenText {
    /// The genuine token of a dataplane, by name.
    Genuine(&'static str),
    /// The genuine token of `redis-1` with a character replaced, inserted or removed.
    Mutated(Index, Option<char>, bool),
    Text(String),
}

/// An unsigned token (`alg: none`), empty ones, and others that are no JWT.
const NOT_TOKENS: &[&str] =
    &["", " ", "Bearer", "Bearer ", "eyJhbGciOiJub25lIn0.eyJNZXNoIjoiZGVmYXVsdCJ9.", "a.b.c", "é"];

fn token_text() -> impl Strategy<Value = TokenText> {
    let character = select(vec!['A', 'z', '0', '-', '_', '.', '=', ' ', '+', '/']);
    prop_oneof![
        2 => select(vec!["redis-1", "web-1"]).prop_map(TokenText::Genuine),
        3 => (any::<Index>(), proptest::option::of(character), any::<bool>())
            .prop_map(|(at, c, insert)| TokenText::Mutated(at, c, insert)),
        1 => "[ -~]{0,60}".prop_map(TokenText::Text),
        1 => select(NOT_TOKENS).prop_map(|s| TokenText::Text(s.to_string())),
    ]
}

/// Where the token goes: the `Authorization` header (with `Bearer ` or bare), the body, or both.
#[derive(Clone, Copy, Debug)]
enum Carrier {
    Bearer,
    BareHeader,
    Body,
    BearerAndBody,
}

fn token_of(served: &Served, text: &TokenText) -> String {
    let genuine = |name: &str| {
        served.tokens.iter().find(|(n, _)| n == name).map(|(_, t)| t.clone()).expect("issued")
    };
    match text {
        TokenText::Genuine(name) => genuine(name),
        TokenText::Mutated(at, c, insert) => {
            let mut chars: Vec<char> = genuine("redis-1").chars().collect();
            let i = at.index(chars.len());
            match (c, insert) {
                (Some(c), true) => chars.insert(i, *c),
                (Some(c), false) => chars[i] = *c,
                (None, _) => {
                    chars.remove(i);
                }
            }
            chars.into_iter().collect()
        }
        TokenText::Text(text) => text.clone(),
    }
}

#[test]
fn a_bootstrap_is_served_only_for_the_genuine_token_of_the_dataplane_asking() {
    let served = must_serve(DpAuthType::DpToken);
    let strategy = (
        select(vec!["redis-1", "web-1"]),
        token_text(),
        token_text(),
        select(vec![Carrier::Bearer, Carrier::BareHeader, Carrier::Body, Carrier::BearerAndBody]),
    );
    must_hold(128, strategy, |(name, first, second, carrier)| {
        let (first, second) = (token_of(&served, &first), token_of(&served, &second));
        let (header, body_token) = match carrier {
            Carrier::Bearer => (Some(format!("Bearer {first}")), String::new()),
            Carrier::BareHeader => (Some(first.clone()), String::new()),
            Carrier::Body => (None, first.clone()),
            Carrier::BearerAndBody => (Some(format!("Bearer {first}")), second.clone()),
        };
        let body = json!({
            "mesh": "default", "name": name, "adminPort": 9901, "dataplaneToken": body_token,
        });
        let reply = post(served.port, body.to_string().as_bytes(), header.as_deref());
        let context = format!("{name} with {carrier:?} {first:?} / {second:?}");
        // The header wins when it is readable text; a bare token is taken as well as a Bearer one.
        let from_header = header
            .as_deref()
            .filter(|h| h.bytes().all(|b| b == b'\t' || (32..127).contains(&b)))
            .map(|h| h.trim().strip_prefix("Bearer ").unwrap_or(h.trim()).trim().to_string());
        let effective = from_header.or(Some(body_token)).filter(|t| !t.is_empty());
        let genuine_for =
            |n: &str| served.tokens.iter().any(|(tn, t)| tn == n && Some(t) == effective.as_ref());
        match reply.status {
            200 => prop_assert!(name == "redis-1" && genuine_for("redis-1"), "{}: served", context),
            // web-1 has a genuine token but no Dataplane yet.
            404 => {
                prop_assert!(name == "web-1" && genuine_for("web-1"), "{}: {}", context, reply.body)
            }
            401 | 403 => {
                must_be_kuma_error(&reply, &context)?;
                prop_assert!(
                    !genuine_for(name),
                    "{}: refused its own token: {}",
                    context,
                    reply.body
                );
            }
            other => prop_assert!(false, "{}: {} {}", context, other, reply.body),
        }
        Ok(())
    });
}
