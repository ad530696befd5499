//! Property tests of what users write: the Dataplane `interface` forms, resources read from JSON
//! and YAML, and their validation. Never a panic; every refusal of a resource names the field it
//! is about; a valid resource reads back as itself through JSON and through YAML.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use base64::Engine;
use proptest::collection::{btree_map, btree_set, vec};
use proptest::option;
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::test_runner::Config;
use serde_json::{json, Map, Value};

use crate::{
    parse_inbound_interface, parse_outbound_interface, parse_resource, parse_resources_yaml,
    validate, InboundInterface, OutboundInterface, ParseError, ResourceInput, ResourceType,
    ValidationContext,
};

/// `cases` per property unless `PROPTEST_CASES` asks for a longer run. A failure prints its
/// minimal input rather than writing a regressions file into a tree several engineers share:
/// pin it as a named test instead.
fn config(cases: u32) -> Config {
    let mut config = Config { failure_persistence: None, ..Config::default() };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    config
}

// ---------------------------------------------------------------------------------------------
// The interface forms

/// A port as written, with the port it names when Kuma takes it (digits only, 1-65535).
fn port_part() -> impl Strategy<Value = (String, Option<u16>)> {
    prop_oneof![
        6 => (1..=u16::MAX).prop_map(|p| (p.to_string(), Some(p))),
        1 => select(vec![1, 80, u16::MAX]).prop_map(|p| (p.to_string(), Some(p))),
        1 => (1..=9999u16).prop_map(|p| (format!("0{p}"), Some(p))),
        3 => select(vec![
            "0", "00000", "65536", "70000", "99999", "4294967295", "4294967296",
            "18446744073709551616", "-1", "-0", "+80", "", " 80", "80 ", "８０", "٨٠", "0x50",
            "80.0", "1e3", "+", "\u{0}80",
        ])
        .prop_map(|s| (s.to_string(), None)),
        1 => (u64::from(u16::MAX) + 1..).prop_map(|n| (n.to_string(), None)),
        1 => "[^0-9:\\[\\]]{1,8}".prop_map(|s| (s, None)),
    ]
}

/// A dataplane IP as written, with the address it names when it is one.
fn ip_part() -> impl Strategy<Value = (String, Option<IpAddr>)> {
    prop_oneof![
        4 => any::<Ipv4Addr>().prop_map(|ip| (ip.to_string(), Some(IpAddr::V4(ip)))),
        2 => any::<Ipv6Addr>().prop_map(|ip| (format!("[{ip}]"), Some(IpAddr::V6(ip)))),
        // Without brackets, an IPv6 address's own ':' make the interface ambiguous.
        1 => any::<Ipv6Addr>().prop_map(|ip| (ip.to_string(), None)),
        2 => select(vec![
            "localhost", "1.2.3", "1.2.3.4.5", "256.1.1.1", "1.2.3.-4", "١.٢.٣.٤", " 1.2.3.4",
            "1.2.3.4 ", "[::1", "::1]", "[]", "[localhost]", "[fe80::1%eth0]", "[::1]x",
            "example.com", "🦀", "0x7f.1",
        ])
        .prop_map(|s| (s.to_string(), None)),
    ]
}

/// Whitespace around an interface, mostly none.
fn padding() -> impl Strategy<Value = &'static str> {
    prop_oneof![8 => Just(""), 1 => select(vec![" ", "\n", "\t", "\r\n"])]
}

/// `IP:PORT:PORT` and near misses (a part missing, one too many, padding), with what it names.
fn inbound_interface() -> impl Strategy<Value = (String, Option<InboundInterface>)> {
    (padding(), ip_part(), vec(port_part(), 0..=3), padding()).prop_map(
        |(before, (ip, ip_ok), ports, after)| {
            let mut text = format!("{before}{ip}");
            for (port, _) in &ports {
                text = format!("{text}:{port}");
            }
            text.push_str(after);
            let unpadded = before.is_empty() && after.is_empty();
            let expected = match (ip_ok, ports.as_slice()) {
                (Some(ip), [(_, Some(dp)), (_, Some(svc))]) if unpadded => Some(InboundInterface {
                    dataplane_ip: ip,
                    dataplane_port: *dp,
                    workload_port: *svc,
                }),
                _ => None,
            };
            (text, expected)
        },
    )
}

/// `[IP]:PORT` and near misses, with what it names (no IP is 127.0.0.1).
fn outbound_interface() -> impl Strategy<Value = (String, Option<OutboundInterface>)> {
    let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let ip = prop_oneof![1 => Just((String::new(), Some(localhost))), 4 => ip_part()];
    (padding(), ip, vec(port_part(), 0..=2), padding()).prop_map(
        |(before, (ip, ip_ok), ports, after)| {
            let mut text = format!("{before}{ip}");
            for (port, _) in &ports {
                text = format!("{text}:{port}");
            }
            text.push_str(after);
            let unpadded = before.is_empty() && after.is_empty();
            let expected = match (ip_ok, ports.as_slice()) {
                (Some(ip), [(_, Some(port))]) if unpadded => {
                    Some(OutboundInterface { ip, port: *port })
                }
                _ => None,
            };
            (text, expected)
        },
    )
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn an_inbound_interface_parses_exactly_when_its_ip_and_both_ports_are_valid(
        (text, expected) in inbound_interface()
    ) {
        let parsed = parse_inbound_interface(&text);
        match expected {
            Some(want) => prop_assert_eq!(parsed, Ok(want), "{:?}", text),
            None => match parsed {
                Ok(accepted) => prop_assert!(false, "{:?} was accepted as {:?}", text, accepted),
                Err(reason) => prop_assert!(!reason.is_empty()),
            },
        }
    }

    #[test]
    fn an_outbound_interface_parses_exactly_when_its_port_and_any_ip_are_valid(
        (text, expected) in outbound_interface()
    ) {
        let parsed = parse_outbound_interface(&text);
        match expected {
            Some(want) => prop_assert_eq!(parsed, Ok(want), "{:?}", text),
            None => match parsed {
                Ok(accepted) => prop_assert!(false, "{:?} was accepted as {:?}", text, accepted),
                Err(reason) => prop_assert!(!reason.is_empty()),
            },
        }
    }

    #[test]
    fn interface_parsers_never_panic_on_any_text(
        text in prop_oneof![any::<String>(), "[0-9a-f:.\\[\\]%+ -]{0,40}", "\\PC{0,40}"]
    ) {
        let _ = parse_inbound_interface(&text);
        let _ = parse_outbound_interface(&text);
    }

    #[test]
    fn a_broken_interface_is_reported_at_its_own_field_and_a_sound_one_is_not(
        inbounds in vec(inbound_interface(), 1..4),
        outbounds in vec(outbound_interface(), 0..3),
    ) {
        let inbound: Vec<Value> = inbounds
            .iter()
            .map(|(text, _)| json!({"interface": text, "tags": {"service": "web"}}))
            .collect();
        let outbound: Vec<Value> = outbounds
            .iter()
            .map(|(text, _)| json!({"interface": text, "service": "backend"}))
            .collect();
        let value = json!({
            "type": "Dataplane", "mesh": "default", "name": "dp-1",
            "networking": {"inbound": inbound, "outbound": outbound},
        });
        let input = parse_resource(value).expect("every interface is a string");
        let violations = validate(&input, &ValidationContext::default())
            .err()
            .map(|e| e.violations)
            .unwrap_or_default();
        for v in &violations {
            prop_assert!(!v.field.is_empty() && !v.message.is_empty(), "{:?}", violations);
        }
        let broken = |field: &str| {
            violations.iter().any(|v| v.field == field && v.message.starts_with("invalid format"))
        };
        for (i, (text, expected)) in inbounds.iter().enumerate() {
            let field = format!("networking.inbound[{i}].interface");
            prop_assert_eq!(broken(&field), expected.is_none(), "{:?}: {:?}", text, violations);
        }
        for (i, (text, expected)) in outbounds.iter().enumerate() {
            let field = format!("networking.outbound[{i}].interface");
            prop_assert_eq!(broken(&field), expected.is_none(), "{:?}: {:?}", text, violations);
        }
    }
}

/// Regression: Rust's `u32` parse takes a sign, so `1.2.3.4:+80:81` was accepted; Kuma's pattern
/// (`[0-9]{1,5}`) refuses it. Found by the interface properties above.
#[test]
fn a_port_with_a_plus_sign_is_refused_as_kuma_refuses_it() {
    assert!(parse_inbound_interface("1.2.3.4:+80:81").is_err());
    assert!(parse_inbound_interface("1.2.3.4:80:+81").is_err());
    assert!(parse_outbound_interface(":+80").is_err());
}

// ---------------------------------------------------------------------------------------------
// Valid resources, generated

/// A resource name: lower case letters, digits, '-', '_' and (except for a Mesh) '.'.
fn name(dots: bool) -> impl Strategy<Value = String> {
    let chars = if dots { "[a-z0-9._-]" } else { "[a-z0-9_-]" };
    let regex =
        |n: &str| proptest::string::string_regex(&format!("{chars}{n}")).expect("a valid regex");
    prop_oneof![9 => regex("{1,24}"), 1 => regex("{253}")]
}

/// A tag value, including ones YAML would read as something else if they were not quoted.
fn tag_value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[A-Za-z0-9._:-]{1,16}",
        2 => select(vec![
            "1", "1.10", "0.1", "true", "false", "null", "yes", "no", "on", "off", "y", "n", "1e3",
            "0x1F", "0o17", "012", ".inf", "-.inf", ".nan", "-", ":", "::", "-1", "1_000",
            "12:30:00", "2001-12-14", "v1.2.3-rc.1",
        ])
        .prop_map(str::to_string),
    ]
}

const PROTOCOLS: &[&str] = &["http", "http2", "grpc", "tcp", "kafka"];

/// A tag name other than the service and protocol tags (generated on purpose where they belong).
fn tag_key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[A-Za-z0-9._:/-]{1,16}",
        1 => select(vec!["version", "kuma.io/zone", "team", "1", "true", "null", ":", "-", "a/b"])
            .prop_map(str::to_string),
    ]
    .prop_filter("the service and protocol tags are generated where they belong", |k| {
        !matches!(k.as_str(), "service" | "kuma.io/service" | "protocol" | "kuma.io/protocol")
    })
}

/// Tags carrying a service under either spelling (or both), maybe a protocol, and others.
fn tags_with_service(wildcards: bool) -> impl Strategy<Value = Value> {
    let value = move || {
        if wildcards {
            prop_oneof![4 => tag_value(), 1 => Just("*".to_string())].boxed()
        } else {
            tag_value().boxed()
        }
    };
    (value(), 0..3u8, btree_map(tag_key(), value(), 0..4), option::of(select(PROTOCOLS))).prop_map(
        |(service, spelling, extra, protocol)| {
            let mut tags: Map<String, Value> =
                extra.into_iter().map(|(k, v)| (k, Value::from(v))).collect();
            let spellings: &[&str] = match spelling {
                0 => &["service"],
                1 => &["kuma.io/service"],
                _ => &["service", "kuma.io/service"],
            };
            for key in spellings {
                tags.insert(key.to_string(), service.clone().into());
            }
            if let Some(protocol) = protocol {
                tags.insert("protocol".into(), protocol.into());
            }
            Value::Object(tags)
        },
    )
}

/// Policy selectors: `match` with the service tag, and other tags unless only the service is
/// allowed.
fn selectors(only_service: bool) -> impl Strategy<Value = Value> {
    let selector =
        prop_oneof![4 => tag_value(), 1 => Just("*".to_string())].prop_flat_map(move |service| {
            let extra = if only_service {
                Just(Map::new()).boxed()
            } else {
                btree_map(tag_key(), tag_value(), 0..3)
                    .prop_map(|m| m.into_iter().map(|(k, v)| (k, Value::from(v))).collect())
                    .boxed()
            };
            extra.prop_map(move |mut tags| {
                tags.insert("service".into(), service.clone().into());
                json!({"match": tags})
            })
        });
    vec(selector, 1..3).prop_map(Value::Array)
}

fn ip_text(ip: IpAddr, bracketed: bool) -> String {
    match ip {
        IpAddr::V6(v6) if bracketed => format!("[{v6}]"),
        ip => ip.to_string(),
    }
}

fn valid_dataplane() -> impl Strategy<Value = Value> {
    (
        (name(true), name(false), any::<IpAddr>(), any::<bool>(), any::<bool>()),
        btree_set(1..=u16::MAX, 5..8),
        vec((tags_with_service(false), 1..=u16::MAX, any::<bool>()), 1..4),
        vec((tag_value(), 0..3u8), 0..3),
        option::of(1..=u16::MAX),
    )
        .prop_map(
            |((name, mesh, ip, legacy, gateway), ports, inbounds, outbounds, redirect)| {
                // Every listener (IP, port) is unique: each takes its own port from the set.
                let mut ports = ports.into_iter();
                let mut networking = Map::new();
                if gateway {
                    networking.insert("gateway".into(), json!({"tags": inbounds[0].0}));
                } else {
                    let inbound: Vec<Value> = inbounds
                        .iter()
                        .map(|(tags, service_port, with_service_port)| {
                            let port = ports.next().expect("enough distinct ports");
                            let mut service_port = *service_port;
                            if ip.is_loopback() && service_port == port {
                                service_port = port % u16::MAX + 1;
                            }
                            if legacy {
                                let interface =
                                    format!("{}:{port}:{service_port}", ip_text(ip, true));
                                json!({"interface": interface, "tags": tags})
                            } else if *with_service_port {
                                json!({"port": port, "servicePort": service_port, "tags": tags})
                            } else {
                                json!({"port": port, "tags": tags})
                            }
                        })
                        .collect();
                    networking.insert("inbound".into(), inbound.into());
                }
                if !legacy {
                    networking.insert("address".into(), ip_text(ip, false).into());
                }
                if !outbounds.is_empty() {
                    let outbound: Vec<Value> = outbounds
                    .iter()
                    .map(|(service, shape)| {
                        let port = ports.next().expect("enough distinct ports");
                        let (local, any_ip) = (format!(":{port}"), format!("127.0.0.1:{port}"));
                        match (legacy, shape) {
                            (true, 0) => json!({"interface": local, "service": service}),
                            (true, _) => json!({"interface": any_ip, "service": service}),
                            (false, 0) => json!({"port": port, "service": service}),
                            (false, 1) => {
                                json!({"port": port, "address": "127.0.0.1", "service": service})
                            }
                            (false, _) => {
                                json!({"port": port, "tags": {"kuma.io/service": service}})
                            }
                        }
                    })
                    .collect();
                    networking.insert("outbound".into(), outbound.into());
                }
                if let Some(port) = redirect {
                    networking.insert("transparentProxying".into(), json!({"redirectPort": port}));
                }
                json!({"type": "Dataplane", "mesh": mesh, "name": name, "networking": networking})
            },
        )
}

const DURATIONS: &[&str] = &["1s", "10s", "1.5s", "500ms", "1h30m", "30d", "1y", "90m"];

fn valid_mesh() -> impl Strategy<Value = Value> {
    let backend_names = || btree_set("[a-z0-9-]{1,10}", 1..3);
    (
        name(false),
        option::of((backend_names(), any::<Index>(), any::<bool>(), select(DURATIONS))),
        option::of((backend_names(), any::<bool>())),
        // As users write a percentage: a few decimals (17-digit floats have a test of their own).
        option::of((backend_names(), (0..=100_000u32).prop_map(|n| f64::from(n) / 1000.0))),
        option::of((backend_names(), 1..=u16::MAX)),
    )
        .prop_map(|(name, mtls, logging, tracing, metrics)| {
            let first = |names: &BTreeSet<String>| names.iter().next().cloned();
            let mut mesh = json!({"type": "Mesh", "name": name});
            if let Some((names, enabled, rotation, expiration)) = mtls {
                let names: Vec<String> = names.into_iter().collect();
                let backends: Vec<Value> = names
                    .iter()
                    .map(|n| {
                        let mut backend = json!({"name": n, "type": "builtin"});
                        if rotation {
                            backend["dpCert"] = json!({"rotation": {"expiration": expiration}});
                        }
                        backend
                    })
                    .collect();
                mesh["mtls"] = json!({"enabledBackend": enabled.get(&names), "backends": backends});
            }
            if let Some((names, tcp)) = logging {
                let backends: Vec<Value> = names
                    .iter()
                    .map(|n| match tcp {
                        true => json!({"name": n, "type": "tcp", "conf": {"address": "log:5000"}}),
                        false => json!({"name": n, "type": "file", "conf": {"path": "/tmp/log"}}),
                    })
                    .collect();
                mesh["logging"] = json!({"defaultBackend": first(&names), "backends": backends});
            }
            if let Some((names, sampling)) = tracing {
                let backends: Vec<Value> = names
                    .iter()
                    .map(|n| {
                        let conf = json!({"url": "http://zipkin:9411/api/v2/spans"});
                        json!({"name": n, "type": "zipkin", "sampling": sampling, "conf": conf})
                    })
                    .collect();
                mesh["tracing"] = json!({"defaultBackend": first(&names), "backends": backends});
            }
            if let Some((names, port)) = metrics {
                let backends: Vec<Value> = names
                    .iter()
                    .map(|n| {
                        let conf = json!({"port": port, "path": "/metrics"});
                        json!({"name": n, "type": "prometheus", "conf": conf})
                    })
                    .collect();
                mesh["metrics"] = json!({"enabledBackend": first(&names), "backends": backends});
            }
            mesh
        })
}

fn policy_header(kind: &'static str) -> impl Strategy<Value = Value> {
    (name(false), name(true))
        .prop_map(move |(mesh, name)| json!({"type": kind, "mesh": mesh, "name": name}))
}

fn with(mut base: Value, fields: Value) -> Value {
    if let (Value::Object(base), Value::Object(fields)) = (&mut base, fields) {
        base.extend(fields);
    }
    base
}

fn traffic_permission() -> impl Strategy<Value = Value> {
    (policy_header("TrafficPermission"), selectors(true), selectors(false)).prop_map(
        |(h, sources, destinations)| {
            with(h, json!({"sources": sources, "destinations": destinations}))
        },
    )
}

fn traffic_route() -> impl Strategy<Value = Value> {
    let weighted = (0..=100u32, tags_with_service(false))
        .prop_map(|(weight, destination)| json!({"weight": weight, "destination": destination}));
    let header = policy_header("TrafficRoute");
    (header, selectors(false), selectors(true), vec(weighted, 1..3), 1..=100u32).prop_map(
        |(h, sources, destinations, mut conf, weight)| {
            conf[0]["weight"] = weight.into();
            with(h, json!({"sources": sources, "destinations": destinations, "conf": conf}))
        },
    )
}

fn health_check() -> impl Strategy<Value = Value> {
    let header = policy_header("HealthCheck");
    let checks =
        (select(DURATIONS), 1..10u32, any::<bool>()).prop_map(|(interval, threshold, passive)| {
            match passive {
                true => json!({"passiveChecks": {
                    "unhealthyThreshold": threshold, "penaltyInterval": interval,
                }}),
                false => json!({"activeChecks": {
                    "interval": interval, "timeout": "1s",
                    "unhealthyThreshold": threshold, "healthyThreshold": threshold,
                }}),
            }
        });
    (header, selectors(false), selectors(true), checks).prop_map(
        |(h, sources, destinations, conf)| {
            with(h, json!({"sources": sources, "destinations": destinations, "conf": conf}))
        },
    )
}

fn traffic_log() -> impl Strategy<Value = Value> {
    let header = policy_header("TrafficLog");
    (header, selectors(false), selectors(true), option::of("[a-z0-9-]{1,10}")).prop_map(
        |(h, sources, destinations, backend)| {
            let mut log = with(h, json!({"sources": sources, "destinations": destinations}));
            if let Some(backend) = backend {
                log["conf"] = json!({"backend": backend});
            }
            log
        },
    )
}

fn traffic_trace() -> impl Strategy<Value = Value> {
    (policy_header("TrafficTrace"), selectors(false), option::of("[a-z0-9-]{1,10}")).prop_map(
        |(h, selectors, backend)| {
            let mut trace = with(h, json!({"selectors": selectors}));
            if let Some(backend) = backend {
                trace["conf"] = json!({"backend": backend});
            }
            trace
        },
    )
}

fn proxy_template() -> impl Strategy<Value = Value> {
    let names = btree_set("[a-z0-9:_-]{1,12}", 0..3);
    (policy_header("ProxyTemplate"), selectors(false), names).prop_map(|(h, selectors, names)| {
        let resources: Vec<Value> = names
            .iter()
            .map(|n| {
                let resource = json!({
                    "@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster", "name": n,
                });
                let resource = serde_yaml::to_string(&resource).expect("YAML");
                json!({"name": n, "version": "v3", "resource": resource})
            })
            .collect();
        let mut conf = json!({"imports": ["default-proxy"]});
        if !resources.is_empty() {
            conf["resources"] = resources.into();
        }
        with(h, json!({"selectors": selectors, "conf": conf}))
    })
}

fn secrets() -> impl Strategy<Value = Value> {
    let data = vec(any::<u8>(), 1..64)
        .prop_map(|bytes| Value::from(base64::engine::general_purpose::STANDARD.encode(bytes)));
    let global = name(true).prop_map(|name| json!({"type": "GlobalSecret", "name": name}));
    (prop_oneof![policy_header("Secret"), global], data)
        .prop_map(|(h, data)| with(h, json!({"data": data})))
}

fn valid_policy() -> impl Strategy<Value = Value> {
    prop_oneof![
        traffic_permission(),
        traffic_route(),
        health_check(),
        traffic_log(),
        traffic_trace(),
        proxy_template(),
        secrets(),
    ]
}

/// A valid resource of any type, in its flat REST form.
fn valid_resource() -> impl Strategy<Value = Value> {
    prop_oneof![2 => valid_dataplane(), 1 => valid_mesh(), 3 => valid_policy()]
}

fn must_read(value: Value) -> ResourceInput {
    match parse_resource(value.clone()) {
        Ok(input) => input,
        Err(e) => panic!("{value} was not read: {e}"),
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn a_valid_resource_is_echoed_as_written_and_reads_back_through_json_and_yaml(
        value in valid_resource()
    ) {
        let input = must_read(value.clone());
        prop_assert_eq!(validate(&input, &ValidationContext::default()), Ok(()), "{}", value);
        prop_assert_eq!(&input.to_rest_json(), &value);

        let json_text = serde_json::to_string(&input.to_rest_json()).expect("JSON");
        let from_json = must_read(serde_json::from_str(&json_text).expect("JSON reads back"));
        prop_assert_eq!(&from_json, &input, "through JSON text {}", json_text);

        let yaml = serde_yaml::to_string(&input.to_rest_json()).expect("YAML");
        let documents = parse_resources_yaml(&yaml)
            .map_err(|e| TestCaseError::fail(format!("{yaml}: {e}")))?;
        prop_assert_eq!(documents.len(), 1);
        let from_yaml = must_read(documents.into_iter().next().expect("one document"));
        prop_assert_eq!(&from_yaml, &input, "through YAML\n{}", yaml);
    }
}

// ---------------------------------------------------------------------------------------------
// Damaged resources

/// The map-typed fields whose keys Kuma writes as `tags["key"]` rather than `.key`.
const TAG_MAPS: &[&str] = &["tags", "match", "destination"];

/// Every node below the root: its JSON pointer and its field path in Kuma's syntax.
fn nodes(value: &Value, pointer: &str, path: &str, tag_map: bool, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let child_pointer =
                    format!("{pointer}/{}", k.replace('~', "~0").replace('/', "~1"));
                let child_path = match (tag_map, path.is_empty()) {
                    (true, _) => format!("{path}[{k:?}]"),
                    (false, true) => k.clone(),
                    (false, false) => format!("{path}.{k}"),
                };
                out.push((child_pointer.clone(), child_path.clone()));
                let child_is_tag_map = !tag_map && TAG_MAPS.contains(&k.as_str());
                nodes(v, &child_pointer, &child_path, child_is_tag_map, out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                let child_pointer = format!("{pointer}/{i}");
                let child_path = format!("{path}[{i}]");
                out.push((child_pointer.clone(), child_path.clone()));
                nodes(v, &child_pointer, &child_path, false, out);
            }
        }
        _ => {}
    }
}

/// Values of shapes a field may not expect.
fn wrong_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        select(vec![
            Value::Null,
            json!(-1),
            json!(0),
            json!(65536),
            json!(4_294_967_296u64),
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
            json!([]),
            json!([{}]),
            json!([null]),
            json!({}),
            json!({"unexpected": {"deeply": [1, 2, 3]}}),
        ]),
        "\\PC{0,12}".prop_map(Value::from),
        Just(Value::String("x".repeat(300))),
    ]
}

#[derive(Clone, Debug)]
enum Damage {
    Replace(Value),
    Remove,
    AddField(String, Value),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        4 => wrong_value().prop_map(Damage::Replace),
        1 => Just(Damage::Remove),
        1 => ("[a-zA-Z]{1,12}", wrong_value()).prop_map(|(k, v)| Damage::AddField(k, v)),
    ]
}

/// Applies `damage` at the node `pointer`.
fn apply(value: &mut Value, pointer: &str, damage: &Damage) {
    match damage {
        Damage::Replace(wrong) => {
            if let Some(node) = value.pointer_mut(pointer) {
                *node = wrong.clone();
            }
        }
        Damage::Remove => {
            let (parent, last) = pointer.rsplit_once('/').expect("below the root");
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
        Damage::AddField(key, extra) => match value.pointer_mut(pointer) {
            Some(Value::Object(map)) => {
                map.insert(key.clone(), extra.clone());
            }
            Some(other) => *other = json!({ key.clone(): extra.clone() }),
            None => {}
        },
    }
}

/// Reads and validates `value` as the API does; every refusal must name a field.
fn must_refuse_with_fields(value: &Value) -> Result<Option<Vec<String>>, TestCaseError> {
    let input = match parse_resource(value.clone()) {
        Ok(input) => input,
        Err(ParseError::Syntax(reason)) => {
            prop_assert!(!value.is_object(), "an object refused as syntax: {reason}");
            return Ok(None);
        }
        Err(ParseError::Invalid(e)) => {
            prop_assert!(!e.violations.is_empty());
            for v in &e.violations {
                prop_assert!(!v.field.is_empty() && !v.message.is_empty(), "{:?} in {}", v, value);
            }
            return Ok(Some(e.violations.into_iter().map(|v| v.field).collect()));
        }
    };
    if let Err(e) = validate(&input, &ValidationContext::default()) {
        prop_assert!(!e.violations.is_empty());
        for v in &e.violations {
            prop_assert!(!v.field.is_empty() && !v.message.is_empty(), "{:?} in {}", v, value);
        }
    }
    Ok(None)
}

/// A resource-shaped tree of arbitrary shapes at Kuma's field names.
fn resource_shaped_tree() -> impl Strategy<Value = Value> {
    const KEYS: &[&str] = &[
        "networking",
        "inbound",
        "outbound",
        "interface",
        "port",
        "servicePort",
        "address",
        "tags",
        "service",
        "kuma.io/service",
        "gateway",
        "transparentProxying",
        "redirectPort",
        "metrics",
        "mtls",
        "backends",
        "enabledBackend",
        "defaultBackend",
        "name",
        "type",
        "conf",
        "sources",
        "destinations",
        "selectors",
        "match",
        "weight",
        "destination",
        "activeChecks",
        "passiveChecks",
        "interval",
        "timeout",
        "data",
        "logging",
        "tracing",
        "url",
        "sampling",
        "imports",
        "resources",
        "resource",
        "version",
        "protocol",
        "rules",
        "subscriptions",
    ];
    let key = prop_oneof![4 => select(KEYS).prop_map(str::to_string), 1 => "[a-zA-Z]{1,8}"];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        tag_value().prop_map(Value::from),
        inbound_interface().prop_map(|(text, _)| Value::from(text)),
        "\\PC{0,10}".prop_map(Value::from),
    ];
    let tree = leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            btree_map(key.clone(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    let types = prop_oneof![
        4 => select(ResourceType::all().map(|t| t.name()).collect::<Vec<_>>())
            .prop_map(Value::from),
        1 => wrong_value(),
    ];
    let names = prop_oneof![name(true).prop_map(Value::from), wrong_value()];
    (types, names, option::of(name(false)), btree_map(top_level_key(), tree, 0..5)).prop_map(
        |(kind, name, mesh, fields)| {
            let mut object: Map<String, Value> = fields.into_iter().collect();
            object.insert("type".into(), kind);
            object.insert("name".into(), name);
            if let Some(mesh) = mesh {
                object.insert("mesh".into(), mesh.into());
            }
            Value::Object(object)
        },
    )
}

fn top_level_key() -> impl Strategy<Value = String> {
    select(vec![
        "networking",
        "mtls",
        "logging",
        "tracing",
        "metrics",
        "sources",
        "destinations",
        "selectors",
        "conf",
        "data",
        "subscriptions",
        "rules",
        "unexpected",
    ])
    .prop_map(str::to_string)
}

/// YAML's own syntax, inserted anywhere into a resource's YAML text.
const YAML_FRAGMENTS: &[&str] = &[
    "&a ",
    "*a",
    "*undefined",
    "!!binary ",
    "!!str ",
    "!!int ",
    "!custom ",
    "!!map ",
    "{",
    "}",
    "[",
    "]",
    "'",
    "\"",
    ": ",
    "- ",
    "? ",
    "\n---\n",
    "\n...\n",
    "%YAML 1.1\n",
    "<<: *a\n",
    "\t",
    "#",
    "|\n",
    ">-\n",
    "99999999999999999999999",
    "1.10",
    ".nan",
    "~",
    "\u{feff}",
    "\u{0}",
    "\\u0000",
    "🦀",
    "\n  ",
    "\nnetworking:\n  inbound: 1\n",
    "\ntags: {service: [1]}\n",
];

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn a_damaged_resource_is_refused_at_or_below_the_damaged_field(
        value in valid_resource(),
        at in any::<Index>(),
        damage in damage(),
    ) {
        let mut all = Vec::new();
        nodes(&value, "", "", false, &mut all);
        let (pointer, path) = at.get(&all).clone();
        let mut damaged = value.clone();
        apply(&mut damaged, &pointer, &damage);
        if let Some(fields) = must_refuse_with_fields(&damaged)? {
            // Reading stops at the first field of the wrong shape: the one damaged, or inside it.
            prop_assert!(
                fields.iter().any(|f| f.starts_with(&path)),
                "{:?} at {} ({}) was reported at {:?}", damage, path, damaged, fields
            );
        }
    }

    #[test]
    fn a_resource_of_any_shape_is_read_or_refused_with_field_paths(
        value in resource_shaped_tree()
    ) {
        must_refuse_with_fields(&value)?;
    }

    #[test]
    fn yaml_text_of_any_shape_is_read_or_refused_and_never_panics(
        value in prop_oneof![valid_resource(), resource_shaped_tree()],
        damage in vec((any::<Index>(), select(YAML_FRAGMENTS)), 0..4),
    ) {
        let mut text = serde_yaml::to_string(&value).expect("YAML");
        for (at, fragment) in damage {
            let mut i = at.index(text.len() + 1);
            while !text.is_char_boundary(i) {
                i -= 1;
            }
            text.insert_str(i, fragment);
        }
        if let Ok(documents) = parse_resources_yaml(&text) {
            for document in &documents {
                must_refuse_with_fields(document)?;
            }
        }
    }
}

/// Regression: an unknown top-level field whose name is empty was reported at the empty path, so
/// the API answered a 400 whose cause named no field. Found by the YAML property: `? ` inserted
/// into a resource's YAML makes a `""` key.
#[test]
fn an_unknown_field_with_an_empty_name_is_refused_with_a_field_path() {
    let err = parse_resource(json!({"type": "Mesh", "name": "m", "": null})).unwrap_err();
    let ParseError::Invalid(e) = err else { panic!("{err:?}") };
    assert!(e.violations.iter().all(|v| !v.field.is_empty()), "{:?}", e.violations);
}

#[test]
fn a_yaml_alias_bomb_is_refused_rather_than_expanded() {
    let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for level in 1..12 {
        let previous = (b'a' + level - 1) as char;
        let this = (b'a' + level) as char;
        let aliases = vec![format!("*{previous}"); 10].join(", ");
        text.push_str(&format!("{this}: &{this} [{aliases}]\n"));
    }
    let started = std::time::Instant::now();
    assert!(parse_resources_yaml(&text).is_err());
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

proptest! {
    #![proptest_config(config(256))]

    /// Regression: serde_json without its `float_roundtrip` feature read a float written with 17
    /// significant digits 1 ULP off (`12.799451744581333` came back as `12.799451744581331`).
    #[test]
    fn any_tracing_sampling_reads_back_bit_for_bit_through_json_text(sampling in 0.0f64..=100.0) {
        let value = json!({
            "type": "Mesh", "name": "m",
            "tracing": {"backends": [{
                "name": "z", "type": "zipkin", "sampling": sampling,
                "conf": {"url": "http://z:9411/api"},
            }]},
        });
        let input = must_read(value);
        let text = serde_json::to_string(&input.to_rest_json()).expect("JSON");
        let read_back = must_read(serde_json::from_str(&text).expect("JSON reads back"));
        prop_assert_eq!(read_back, input, "{}", text);
    }
}
