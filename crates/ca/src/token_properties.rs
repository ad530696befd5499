//! Property tests of the dataplane tokens: whatever text arrives as a token, `token_kid`,
//! `unverified_mesh` and `verify` never panic, and `verify` accepts nothing but what its key
//! signed: no mutation of a genuine token, no forgery with another algorithm or another key of the
//! same id, no claims of the wrong shape, no time outside the token's window and its skew.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use proptest::collection::{btree_map, btree_set, vec};
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::test_runner::Config;
use serde_json::{json, Value};

use crate::{
    token_kid, unverified_mesh, verify, DataplaneClaims, SigningKey, TokenError, TokenTimes,
    VerifyingKey, TOKEN_CLOCK_SKEW,
};

const NOW: i64 = 1_800_000_000;
const DAY: Duration = Duration::from_secs(24 * 3600);

/// `cases` per property unless `PROPTEST_CASES` asks for a longer run; a failure prints its
/// minimal input rather than writing a regressions file into a shared tree.
fn config(cases: u32) -> Config {
    let mut config = Config { failure_persistence: None, ..Config::default() };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    config
}

/// One signing key for the whole run (generating one per case would dominate the run), an
/// impostor key with the same id, and a genuine token for `default/redis-1`.
struct Fixture {
    key: SigningKey,
    verifying: VerifyingKey,
    impostor: SigningKey,
    /// The public key's PEM, which an algorithm-confusion forger uses as an HMAC secret.
    public_pem: String,
    token: String,
    claims: DataplaneClaims,
    /// Another genuine token of the same key, for transplanting its parts.
    other_token: String,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let key = SigningKey::generate("1").expect("a key");
        let claims = DataplaneClaims {
            mesh: "default".into(),
            name: "redis-1".into(),
            tags: BTreeMap::new(),
            times: TokenTimes::starting(NOW, DAY),
        };
        let other = DataplaneClaims { name: "web-1".into(), ..claims.clone() };
        Fixture {
            verifying: key.verifying_key().expect("its public half"),
            impostor: SigningKey::generate("1").expect("a key"),
            public_pem: rcgen::KeyPair::from_pem(key.key_pem()).expect("a key").public_key_pem(),
            token: key.sign(&claims).expect("signed"),
            other_token: key.sign(&other).expect("signed"),
            claims,
            key,
        }
    })
}

const BASE64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Base64url without padding, as JWT segments are written.
fn base64url(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(BASE64URL[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// Checks `token` the way the servers do, at `NOW`.
fn check(token: &str) -> Result<DataplaneClaims, TokenError> {
    let _ = token_kid(token);
    let _ = unverified_mesh(token);
    verify::<DataplaneClaims>(token, &fixture().verifying, "default", NOW)
}

// ---------------------------------------------------------------------------------------------
// Strategies

/// Headers a forger might try: no algorithm, a symmetric one, a key id of the wrong type, extra
/// critical extensions, and JSON that is not a header at all.
fn header_json() -> impl Strategy<Value = Value> {
    prop_oneof![
        select(vec![
            json!({"alg": "ES256", "kid": "1", "typ": "JWT"}),
            json!({"alg": "none", "kid": "1"}),
            json!({"alg": "HS256", "kid": "1"}),
            json!({"alg": "RS256", "kid": "1"}),
            json!({"alg": "ES384", "kid": "1"}),
            json!({"alg": "ES256", "kid": 1}),
            json!({"alg": "ES256", "kid": null}),
            json!({"alg": "ES256"}),
            json!({"alg": "ES256", "kid": "1", "crit": ["exp"]}),
            json!({"alg": "ES256", "kid": "1", "jku": "http://evil.example/keys"}),
            json!({"alg": ["ES256"], "kid": "1"}),
            json!({}),
            json!([]),
            json!("ES256"),
            json!(null),
        ]),
        "\\PC{0,10}".prop_map(|kid| json!({"alg": "ES256", "kid": kid})),
    ]
}

/// Claims of every shape: right ones, wrong types, out-of-range times, arbitrary JSON.
fn claims_json() -> impl Strategy<Value = Value> {
    let time = prop_oneof![
        Just(json!(NOW)),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        select(vec![
            json!(1.5),
            json!(1e300),
            json!(-1e300),
            json!("1800000000"),
            json!(null),
            json!([]),
            json!({})
        ]),
    ];
    let mesh =
        prop_oneof![Just(json!("default")), Just(json!(1)), "\\PC{0,8}".prop_map(Value::from)];
    let shaped = (time.clone(), time.clone(), time, mesh).prop_map(|(iat, nbf, exp, mesh)| {
        json!({"Mesh": mesh, "Name": "redis-1", "jti": "x", "iat": iat, "nbf": nbf, "exp": exp})
    });
    let with_times = |extra: Value| {
        let mut claims = json!({"jti": "x", "iat": NOW, "nbf": NOW, "exp": NOW + 60});
        claims.as_object_mut().expect("an object").extend(extra.as_object().cloned().expect("one"));
        claims
    };
    prop_oneof![
        shaped,
        // An audience, which nothing here asks for: jsonwebtoken refuses it.
        Just(with_times(json!({"Mesh": "default", "aud": "kuma"}))),
        Just(with_times(json!({"Mesh": "default", "Tags": {"service": "web"}}))),
        select(vec![json!({}), json!([]), json!(null), json!("claims"), json!({"Mesh": "x"})]),
    ]
}

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        header_json().prop_map(|h| base64url(h.to_string().as_bytes())),
        claims_json().prop_map(|c| base64url(c.to_string().as_bytes())),
        vec(any::<u8>(), 0..96).prop_map(|b| base64url(&b)),
        "[A-Za-z0-9_=+/-]{0,40}",
        "\\PC{0,8}",
        Just(String::new()),
    ]
}

/// Text that looks like a JWT: header, claims and signature segments of any content, sometimes
/// the wrong number of them, sometimes with the genuine token's signature transplanted.
fn jwt_shaped() -> impl Strategy<Value = String> {
    (
        header_json(),
        claims_json(),
        prop_oneof![
            vec(any::<u8>(), 0..80).prop_map(|b| base64url(&b)),
            Just(String::new()),
            Just("genuine".to_string())
        ],
        vec(segment(), 0..3),
    )
        .prop_map(|(header, claims, signature, extra)| {
            let signature = if signature == "genuine" {
                fixture().token.rsplit('.').next().expect("a signature").to_string()
            } else {
                signature
            };
            let mut parts = vec![
                base64url(header.to_string().as_bytes()),
                base64url(claims.to_string().as_bytes()),
                signature,
            ];
            parts.extend(extra);
            parts.join(".")
        })
}

/// Tokens signed with a key the verifier does not hold: the symmetric algorithms keyed with the
/// public key's PEM (the classic algorithm confusion), and ES256 from an impostor of the same id.
fn forged() -> impl Strategy<Value = String> {
    (
        select(vec![Algorithm::HS256, Algorithm::HS384, Algorithm::HS512, Algorithm::ES256]),
        claims_json(),
    )
        .prop_map(|(alg, claims)| {
            let f = fixture();
            if alg == Algorithm::ES256 {
                return f.impostor.sign(&claims).expect("signed");
            }
            let mut header = Header::new(alg);
            header.kid = Some("1".into());
            let secret = EncodingKey::from_secret(f.public_pem.as_bytes());
            jsonwebtoken::encode(&header, &claims, &secret).expect("signed")
        })
}

#[derive(Clone, Debug)]
enum Mutation {
    Replace(Index, char),
    Insert(Index, char),
    Delete(Index),
    Truncate(Index),
    SwapSegments(Index, Index),
    DuplicateSegment(Index),
    /// The payload of another genuine token of the same key.
    TransplantPayload,
    /// The signature of another genuine token of the same key.
    TransplantSignature,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let character = prop_oneof![
        6 => select(BASE64URL.to_vec()).prop_map(char::from),
        2 => select(vec!['.', '=', '+', '/', ' ', '\n', '\t', 'é', '\u{0}', '🦀']),
    ];
    prop_oneof![
        6 => (any::<Index>(), character.clone()).prop_map(|(i, c)| Mutation::Replace(i, c)),
        2 => (any::<Index>(), character).prop_map(|(i, c)| Mutation::Insert(i, c)),
        2 => any::<Index>().prop_map(Mutation::Delete),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::SwapSegments(a, b)),
        1 => any::<Index>().prop_map(Mutation::DuplicateSegment),
        1 => Just(Mutation::TransplantPayload),
        1 => Just(Mutation::TransplantSignature),
    ]
}

fn mutate(token: &str, mutation: &Mutation) -> String {
    let mut chars: Vec<char> = token.chars().collect();
    let mut segments: Vec<String> = token.split('.').map(str::to_string).collect();
    let other: Vec<&str> = fixture().other_token.split('.').collect();
    match mutation {
        Mutation::Replace(i, c) if !chars.is_empty() => {
            let i = i.index(chars.len());
            chars[i] = *c;
        }
        Mutation::Insert(i, c) => chars.insert(i.index(chars.len() + 1), *c),
        Mutation::Delete(i) if !chars.is_empty() => {
            chars.remove(i.index(chars.len()));
        }
        Mutation::Truncate(i) => chars.truncate(i.index(chars.len() + 1)),
        Mutation::SwapSegments(a, b) => {
            let (a, b) = (a.index(segments.len()), b.index(segments.len()));
            segments.swap(a, b);
            return segments.join(".");
        }
        Mutation::DuplicateSegment(i) => {
            let i = i.index(segments.len());
            segments.insert(i, segments[i].clone());
            return segments.join(".");
        }
        Mutation::TransplantPayload if segments.len() == 3 => {
            segments[1] = other[1].to_string();
            return segments.join(".");
        }
        Mutation::TransplantSignature if segments.len() == 3 => {
            segments[2] = other[2].to_string();
            return segments.join(".");
        }
        _ => {}
    }
    chars.into_iter().collect()
}

// ---------------------------------------------------------------------------------------------
// Properties

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn any_text_as_a_token_is_refused_without_a_panic(
        text in prop_oneof![
            any::<String>(),
            "\\PC{0,200}",
            "[A-Za-z0-9_.=-]{0,200}",
            "Bearer [A-Za-z0-9_.-]{0,60}",
        ]
    ) {
        prop_assert!(check(&text).is_err(), "{:?} was accepted", text);
    }

    #[test]
    fn a_jwt_shaped_token_the_key_never_signed_is_refused(token in jwt_shaped()) {
        prop_assert!(check(&token).is_err(), "{:?} was accepted", token);
    }

    #[test]
    fn a_token_forged_with_another_algorithm_or_an_impostor_key_of_the_same_id_is_refused(
        token in forged()
    ) {
        match check(&token) {
            Ok(claims) => prop_assert!(false, "{:?} was accepted as {:?}", token, claims),
            Err(TokenError::Malformed { .. } | TokenError::BadSignature { .. }) => {}
            Err(other) => prop_assert!(false, "{:?} refused for another reason: {}", token, other),
        }
    }

    #[test]
    fn a_mutated_genuine_token_is_accepted_only_when_it_is_still_the_same_text(
        mutations in vec(mutation(), 1..4)
    ) {
        let f = fixture();
        let mutated = mutations.iter().fold(f.token.clone(), |token, m| mutate(&token, m));
        match check(&mutated) {
            // Both transplants together rebuild the other genuine token, which is fine.
            Ok(claims) if mutated.trim() == f.other_token => prop_assert_eq!(claims.name, "web-1"),
            Ok(claims) => {
                prop_assert_eq!(mutated.trim(), f.token.as_str(), "a changed token was accepted");
                prop_assert_eq!(claims, f.claims.clone());
            }
            Err(TokenError::Malformed { .. } | TokenError::BadSignature { .. }) => {}
            Err(e) => prop_assert!(false, "{:?} refused for another reason: {}", mutated, e),
        }
    }

    #[test]
    fn any_claims_read_back_with_the_signing_key_and_never_with_an_impostor_of_the_same_id(
        mesh in "\\PC{0,16}",
        name in "\\PC{0,16}",
        tags in btree_map("\\PC{1,8}", btree_set("\\PC{0,8}", 1..3), 0..3),
    ) {
        let f = fixture();
        let tags: BTreeMap<String, BTreeSet<String>> = tags;
        let claims = DataplaneClaims { mesh, name, tags, times: TokenTimes::starting(NOW, DAY) };
        let genuine = f.key.sign(&claims).expect("signed");
        let read = verify::<DataplaneClaims>(&genuine, &f.verifying, "m", NOW);
        prop_assert_eq!(read, Ok(claims.clone()));
        prop_assert_eq!(unverified_mesh(&genuine), Some(claims.mesh.clone()));
        let impostor = f.impostor.sign(&claims).expect("signed");
        prop_assert_eq!(token_kid(&impostor), Ok("1".to_string()));
        let refused = verify::<DataplaneClaims>(&impostor, &f.verifying, "m", NOW);
        let bad_signature = TokenError::BadSignature { mesh: "m".into(), kid: "1".into() };
        prop_assert_eq!(refused, Err(bad_signature));
    }

    #[test]
    fn a_genuine_token_is_accepted_exactly_within_its_times_and_the_clock_skew(
        nbf in prop_oneof![any::<i64>(), NOW - 100..NOW + 100],
        exp in prop_oneof![any::<i64>(), NOW - 100..NOW + 100],
        now in prop_oneof![any::<i64>(), NOW - 200..NOW + 200, select(vec![i64::MIN, i64::MAX, 0])],
    ) {
        let f = fixture();
        let times = TokenTimes { jti: "x".into(), iat: nbf, nbf, exp };
        let claims = DataplaneClaims { times, ..f.claims.clone() };
        let token = f.key.sign(&claims).expect("signed");
        let skew = TOKEN_CLOCK_SKEW.as_secs() as i64;
        let expected = if i128::from(now) > i128::from(exp) + i128::from(skew) {
            Err(TokenError::Expired { expired_at: exp })
        } else if i128::from(now) < i128::from(nbf) - i128::from(skew) {
            Err(TokenError::NotYetValid { not_before: nbf })
        } else {
            Ok(claims)
        };
        prop_assert_eq!(verify::<DataplaneClaims>(&token, &f.verifying, "default", now), expected);
    }
}
