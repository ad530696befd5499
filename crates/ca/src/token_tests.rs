use super::*;

const NOW: i64 = 1_800_000_000;
const DAY: Duration = Duration::from_secs(24 * 3600);

fn claims(mesh: &str, name: &str, valid_for: Duration) -> DataplaneClaims {
    DataplaneClaims {
        mesh: mesh.into(),
        name: name.into(),
        tags: BTreeMap::new(),
        times: TokenTimes::starting(NOW, valid_for),
    }
}

fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, BTreeSet<String>> {
    let mut tags: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (k, v) in pairs {
        tags.entry(k.to_string()).or_default().insert(v.to_string());
    }
    tags
}

fn check(token: &str, key: &VerifyingKey, now: i64) -> Result<DataplaneClaims, TokenError> {
    verify::<DataplaneClaims>(token, key, "default", now)
}

#[test]
fn a_token_round_trips_with_its_key_id_and_claims() {
    let key = SigningKey::generate("1").unwrap();
    let token = key.sign(&claims("default", "redis-1", DAY)).unwrap();
    assert_eq!(token_kid(&token).unwrap(), "1");
    let got = check(&token, &key.verifying_key().unwrap(), NOW).unwrap();
    assert_eq!(got.mesh, "default");
    assert_eq!(got.name, "redis-1");
    assert_eq!(got.times.exp, NOW + 24 * 3600);
    assert_eq!(got.times.jti.len(), 32);
    got.check_scope("default", "redis-1", &BTreeMap::new()).unwrap();
    assert!(!format!("{key:?}").contains("PRIVATE"));
}

#[test]
fn token_ids_differ() {
    assert_ne!(TokenTimes::starting(NOW, DAY).jti, TokenTimes::starting(NOW, DAY).jti);
}

#[test]
fn expiry_is_checked_with_the_clock_skew_at_the_boundary() {
    let key = SigningKey::generate("1").unwrap();
    let verifying = key.verifying_key().unwrap();
    let token = key.sign(&claims("default", "a", Duration::from_secs(60))).unwrap();
    let skew = TOKEN_CLOCK_SKEW.as_secs() as i64;
    let exp = NOW + 60;
    assert!(check(&token, &verifying, exp).is_ok());
    assert!(check(&token, &verifying, exp + skew).is_ok(), "the last second of the skew");
    assert_eq!(
        check(&token, &verifying, exp + skew + 1),
        Err(TokenError::Expired { expired_at: exp })
    );
    // Issued by a peer whose clock runs ahead: accepted within the skew, refused beyond it.
    assert!(check(&token, &verifying, NOW - skew).is_ok());
    assert_eq!(
        check(&token, &verifying, NOW - skew - 1),
        Err(TokenError::NotYetValid { not_before: NOW })
    );
}

#[test]
fn a_token_signed_by_another_key_with_the_same_id_is_a_bad_signature() {
    let key = SigningKey::generate("1").unwrap();
    let other = SigningKey::generate("1").unwrap();
    let token = other.sign(&claims("default", "a", DAY)).unwrap();
    assert_eq!(
        check(&token, &key.verifying_key().unwrap(), NOW),
        Err(TokenError::BadSignature { mesh: "default".into(), kid: "1".into() })
    );
}

#[test]
fn a_tampered_payload_is_a_bad_signature() {
    let key = SigningKey::generate("1").unwrap();
    let token = key.sign(&claims("default", "a", DAY)).unwrap();
    let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
    let forged = key.sign(&claims("default", "admin", DAY)).unwrap();
    parts[1] = forged.split('.').nth(1).unwrap().to_string();
    let tampered = parts.join(".");
    let err = check(&tampered, &key.verifying_key().unwrap(), NOW);
    // The forged payload carries another name; the signature of the first token does not fit it.
    assert!(matches!(err, Err(TokenError::BadSignature { .. })), "{err:?}");
}

#[test]
fn garbage_and_unsigned_tokens_are_malformed() {
    for bad in ["", "abc", "a.b.c", "eyJhbGciOiJub25lIn0.e30."] {
        assert!(matches!(token_kid(bad), Err(TokenError::Malformed { .. })), "{bad:?}");
    }
    // An HS256 header naming a key id is refused before any key is looked up.
    let hs = jsonwebtoken::encode(
        &Header { kid: Some("1".into()), ..Header::new(Algorithm::HS256) },
        &claims("default", "a", DAY),
        &EncodingKey::from_secret(b"secret"),
    )
    .unwrap();
    assert!(matches!(token_kid(&hs), Err(TokenError::Malformed { .. })));
    let key = SigningKey::generate("1").unwrap();
    assert!(matches!(
        check(&hs, &key.verifying_key().unwrap(), NOW),
        Err(TokenError::Malformed { .. })
    ));
}

#[test]
fn a_token_without_a_key_id_is_malformed() {
    let key = SigningKey::generate("1").unwrap();
    let no_kid = jsonwebtoken::encode(
        &Header::new(Algorithm::ES256),
        &claims("default", "a", DAY),
        &EncodingKey::from_ec_pem(key.key_pem().as_bytes()).unwrap(),
    )
    .unwrap();
    assert!(matches!(token_kid(&no_kid), Err(TokenError::Malformed { .. })));
}

#[test]
fn the_scope_names_the_mesh_the_dataplane_or_its_tags() {
    let by_name = claims("default", "redis-1", DAY);
    assert_eq!(
        by_name.check_scope("other", "redis-1", &BTreeMap::new()),
        Err(TokenError::WrongMesh { token: "default".into(), requested: "other".into() })
    );
    let err = by_name.check_scope("default", "web-1", &BTreeMap::new()).unwrap_err();
    assert_eq!(err, TokenError::WrongName { token: "redis-1".into(), requested: "web-1".into() });
    assert!(err.is_permission());

    let mut by_tags = claims("default", "", DAY);
    by_tags.tags = tags(&[("kuma.io/service", "redis")]);
    by_tags.check_scope("default", "any-name", &tags(&[("kuma.io/service", "redis")])).unwrap();
    let err = by_tags
        .check_scope(
            "default",
            "x",
            &tags(&[("kuma.io/service", "redis"), ("kuma.io/service", "web")]),
        )
        .unwrap_err();
    assert!(matches!(err, TokenError::WrongTags { .. }), "every value must be allowed: {err}");
    assert!(by_tags.check_scope("default", "x", &BTreeMap::new()).is_err());

    let mesh_wide = claims("default", "", DAY);
    mesh_wide.check_scope("default", "anything", &tags(&[("a", "b")])).unwrap();
}

#[test]
fn refusals_say_what_to_do_and_only_scope_errors_are_permission_errors() {
    let unauthenticated = [
        TokenError::Missing,
        TokenError::Malformed { reason: "x".into() },
        TokenError::UnknownKey { mesh: "m".into(), kid: "1".into() },
        TokenError::BadSignature { mesh: "m".into(), kid: "1".into() },
        TokenError::Expired { expired_at: 1 },
        TokenError::Revoked { id: "abc".into() },
    ];
    for e in unauthenticated {
        assert!(!e.is_permission(), "{e}");
        assert!(e.to_string().contains(':'), "says what to do: {e}");
    }
}

#[test]
fn the_claimed_mesh_is_readable_before_the_signature_is_checked() {
    let key = SigningKey::generate("1").unwrap();
    let token = key.sign(&claims("other", "a", DAY)).unwrap();
    assert_eq!(unverified_mesh(&token).as_deref(), Some("other"));
    assert_eq!(unverified_mesh("garbage"), None);
}
