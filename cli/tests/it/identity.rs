//! `kumactl generate dataplane-token`, `kumactl generate signing-key` and `kumactl inspect
//! control-plane-ca` against a real kuma-cp: the token is a JWT for the dataplane, good for its
//! bootstrap; a new signing key signs the next tokens; the CA is what the bootstrap server
//! presents.

use base64::Engine;
use kuma_test_support::{https_request, KumaCp};
use serde_json::Value;

use crate::support::Ctl;

fn claims(token: &str) -> Value {
    let payload = token.trim().split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn header(token: &str) -> Value {
    let header = token.trim().split('.').next().unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[test]
fn a_generated_token_names_the_dataplane_and_bootstraps_it_over_verified_tls() {
    let cp = KumaCp::must_start();
    let ctl = Ctl::for_cp(&cp);
    ctl.must_apply("type: Dataplane\nmesh: default\nname: redis-1\nnetworking:\n  inbound:\n  - interface: 127.0.0.1:9000:6379\n    tags:\n      service: redis\n");
    let ca = ctl.must_run(&["inspect", "control-plane-ca"]);
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");
    let token =
        ctl.must_run(&["generate", "dataplane-token", "--name", "redis-1", "--valid-for", "1h"]);
    let c = claims(&token);
    assert_eq!((c["Mesh"].as_str(), c["Name"].as_str()), (Some("default"), Some("redis-1")));
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 3600);
    assert_eq!(header(&token)["kid"], "1");

    let body =
        format!(r#"{{"mesh":"default","name":"redis-1","dataplaneToken":"{}"}}"#, token.trim());
    let reply = https_request(cp.bootstrap_port, &ca, "POST", "/bootstrap", Some(&body)).unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.body.contains("initial_metadata"), "the token goes to Envoy: {}", reply.body);

    let tagged = ctl.must_run(&["generate", "dataplane-token", "--tag", "kuma.io/service=redis"]);
    assert_eq!(claims(&tagged)["Tags"]["kuma.io/service"], serde_json::json!(["redis"]));
    assert!(claims(&tagged).get("Name").is_none());
}

#[test]
fn a_new_signing_key_signs_the_next_tokens() {
    let cp = KumaCp::must_start();
    let ctl = Ctl::for_cp(&cp);
    let first = ctl.must_run(&["generate", "dataplane-token", "--name", "a"]);
    let out = ctl.must_run(&["generate", "signing-key"]);
    assert!(out.contains("created signing key 2"), "{out}");
    assert!(
        out.contains(
            "kumactl delete secret dataplane-token-signing-key-default-<id> --mesh default"
        ),
        "{out}"
    );
    let second = ctl.must_run(&["generate", "dataplane-token", "--name", "a"]);
    assert_eq!(
        (header(&first)["kid"].as_str(), header(&second)["kid"].as_str()),
        (Some("1"), Some("2"))
    );
    let secrets = ctl.must_run(&["get", "secrets"]);
    assert!(
        secrets.contains("dataplane-token-signing-key-default-1")
            && secrets.contains("dataplane-token-signing-key-default-2"),
        "{secrets}"
    );
    let globals = ctl.must_run(&["get", "global-secrets"]);
    assert!(globals.starts_with("NAME") && globals.contains("control-plane-ca"), "{globals}");
}

#[test]
fn a_token_for_a_missing_mesh_or_a_bad_validity_is_refused_with_the_reason() {
    let cp = KumaCp::must_start();
    let ctl = Ctl::for_cp(&cp);
    let err =
        ctl.run(&["generate", "dataplane-token", "--name", "a", "--mesh", "nope"]).must_fail();
    assert!(err.contains("nope"), "{err}");
    let err =
        ctl.run(&["generate", "dataplane-token", "--name", "a", "--valid-for", "soon"]).must_fail();
    assert!(err.contains("validFor") && err.contains("soon"), "{err}");
}
