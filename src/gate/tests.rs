//! The decision, end to end inside the engine: real Ed25519 and HMAC signatures, a fake keyring.

use super::*;
use crate::b64;
use crate::jwk::{JwksLimits, KeyOrigin};
use ed25519_dalek::{Signer, SigningKey};
use hmac::{KeyInit, Mac};
use serde_json::json;

const NOW: u64 = 1_700_000_000;
const ISS: &str = "https://idp.example.com";
const HMAC_SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

fn signing_key() -> SigningKey {
    SigningKey::from_bytes(&[7u8; 32])
}

fn public_jwks() -> Value {
    let x = b64::encode(signing_key().verifying_key().as_bytes());
    json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k1", "use": "sig", "x": x}]})
}

fn config(extra: Value) -> Config {
    let mut c = json!({
        "providers": {
            "corp": {"issuer": ISS, "audiences": ["api://orders"], "token_type": "at+jwt",
                     "jwks": {"uri": "https://idp.example.com/jwks", "cluster": "idp"}},
            "partner": {"issuer": "https://partner.example", "audiences": ["api://orders"],
                        "algorithms": ["HS256"],
                        "token_from": [{"header": "x-partner-token"}],
                        "inline_jwks": {"keys": [{"kty": "oct", "kid": "p1", "k": b64::encode(HMAC_SECRET)}]}}
        },
        "rules": [
            {"match": {"prefix": "/health"}, "anonymous": true},
            {"match": {"prefix": "/orders", "methods": ["POST"]}, "providers": ["corp"], "scopes": ["orders:write"]},
            {"match": {"prefix": "/admin"}, "claims": {"roles": "admin"}}
        ],
        "headers": {"claims": {"x-user": "sub", "x-roles": "roles", "x-plan": "tenant.plan"}, "payload": "x-jwt-payload"}
    });
    if let (Some(target), Value::Object(extra)) = (c.as_object_mut(), extra) {
        target.extend(extra);
    }
    Config::from_json(c.to_string().as_bytes()).unwrap()
}

fn sign_eddsa(header: Value, claims: Value) -> String {
    let input = format!(
        "{}.{}",
        b64::encode(header.to_string().as_bytes()),
        b64::encode(claims.to_string().as_bytes())
    );
    let sig = signing_key().sign(input.as_bytes());
    format!("{input}.{}", b64::encode(&sig.to_bytes()))
}

fn sign_hs256(header: Value, claims: Value, secret: &[u8]) -> String {
    let input = format!(
        "{}.{}",
        b64::encode(header.to_string().as_bytes()),
        b64::encode(claims.to_string().as_bytes())
    );
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    mac.update(input.as_bytes());
    format!("{input}.{}", b64::encode(&mac.finalize().into_bytes()))
}

fn claims() -> Value {
    json!({"iss": ISS, "aud": "api://orders", "sub": "alice", "client_id": "orders-app",
           "exp": NOW + 300, "iat": NOW, "scope": "orders:read orders:write",
           "roles": ["admin", "buyer"], "tenant": {"plan": "gold"}})
}

fn good_token() -> String {
    sign_eddsa(
        json!({"alg": "EdDSA", "kid": "k1", "typ": "at+jwt"}),
        claims(),
    )
}

/// A keyring whose remote provider (index 0, "corp") is in a chosen state.
struct FakeKeys {
    remote: Option<JwkSet>,
    pending: bool,
    may_refetch: bool,
    inline: JwkSet,
    /// The one introspection answer the host knows, by token hash.
    introspected: Option<([u8; 32], Introspected)>,
    /// The check of the answer the host kept with it (as a worker does for the answers it keeps).
    checked: Option<Result<crate::introspection::CheckedAnswer, Denial>>,
    /// The one token the host remembers as verified, and the key-set generation.
    remembered: Option<(String, std::rc::Rc<crate::verified::VerifiedIdentity>)>,
    generation: u64,
}

impl FakeKeys {
    fn ready() -> FakeKeys {
        FakeKeys {
            remote: Some(
                JwkSet::from_value(&public_jwks(), KeyOrigin::Remote, &JwksLimits::default())
                    .unwrap(),
            ),
            pending: false,
            may_refetch: true,
            introspected: None,
            checked: None,
            remembered: None,
            generation: 7,
            inline: JwkSet::from_value(
                &json!({"keys": [{"kty": "oct", "kid": "p1", "k": b64::encode(HMAC_SECRET)}]}),
                KeyOrigin::Inline,
                &JwksLimits::default(),
            )
            .unwrap(),
        }
    }
}

impl Host for FakeKeys {
    fn keys(&self, provider: ProviderId) -> KeysView<'_> {
        match (provider, &self.remote) {
            (1, _) => KeysView::Ready(&self.inline),
            (_, Some(set)) => KeysView::Ready(set),
            (_, None) if self.pending => KeysView::Pending,
            _ => KeysView::Unavailable,
        }
    }
    fn may_refetch(&self, _: ProviderId) -> bool {
        self.may_refetch
    }
    fn keys_generation(&self, _: ProviderId) -> u64 {
        self.generation
    }
    fn verified(
        &self,
        token: &str,
        _digest: &TokenDigest,
    ) -> Option<std::rc::Rc<crate::verified::VerifiedIdentity>> {
        match &self.remembered {
            Some((t, v)) if t == token => Some(std::rc::Rc::clone(v)),
            _ => None,
        }
    }
    fn introspection(&self, _: ProviderId, digest: &TokenDigest) -> IntrospectionView {
        match &self.introspected {
            Some((h, _)) if h != digest.get() => IntrospectionView::Unknown,
            Some((_, Introspected::Active(claims))) => IntrospectionView::Active {
                claims: std::rc::Rc::new(crate::claims::Claims::from((**claims).clone())),
                cached: true,
                checked: self.checked.clone(),
            },
            Some((_, Introspected::Inactive)) => IntrospectionView::Inactive,
            Some((_, Introspected::Failed)) => IntrospectionView::Failed("timeout"),
            None => IntrospectionView::Unknown,
        }
    }
}

enum Introspected {
    Active(std::rc::Rc<serde_json::Map<String, Value>>),
    Inactive,
    Failed,
}

fn run(
    gate: &Gate,
    keys: &FakeKeys,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Decision {
    let req = Request {
        method,
        path,
        authority: "api.example.com",
        headers: headers.into(),
    };
    gate.decide(&req, keys, NOW)
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn denial(d: &Decision) -> Denial {
    match &d.verdict {
        Verdict::Deny(d) => d.clone(),
        other => panic!("expected a denial, got {other:?}"),
    }
}

#[test]
fn a_valid_token_passes_with_identity_headers_and_spoofed_ones_removed() {
    let gate = Gate::new(config(json!({})));
    let token = good_token();
    let d = run(
        &gate,
        &FakeKeys::ready(),
        "GET",
        "/orders/1",
        &[
            ("authorization", &bearer(&token)),
            ("x-user", "mallory"),
            ("X_Roles", "admin"),
        ],
    );
    let Verdict::Allow(Allowed { edits, .. }) = &d.verdict else {
        panic!("{d:?}")
    };
    let payload = token.split('.').nth(1).unwrap().to_string();
    // Every owned header the request carries is removed, in any case and spelling (an
    // underscore reaches CGI upstreams as a dash); the ones it lacks need no edit.
    assert_eq!(
        edits,
        &vec![
            HeaderEdit::Remove("x-user".into()),
            HeaderEdit::Remove("x_roles".into()),
            HeaderEdit::Set("x-plan".into(), "gold".into()),
            HeaderEdit::Set("x-roles".into(), "admin,buyer".into()),
            HeaderEdit::Set("x-user".into(), "alice".into()),
            HeaderEdit::Set("x-jwt-payload".into(), payload),
        ]
    );
    assert_eq!(d.facts.subject(), Some("alice"));
    assert_eq!(d.facts.client_id(), Some("orders-app"));
    assert_eq!(d.facts.provider.as_deref(), Some("corp"));
    assert_eq!(d.facts.scopes(), vec!["orders:read", "orders:write"]);
}

#[test]
fn anonymous_routes_still_lose_spoofed_identity_headers() {
    let gate = Gate::new(config(json!({})));
    let d = run(
        &gate,
        &FakeKeys::ready(),
        "GET",
        "/health",
        &[("x-user", "root")],
    );
    let Verdict::Allow(Allowed { edits, .. }) = &d.verdict else {
        panic!("{d:?}")
    };
    assert!(edits.contains(&HeaderEdit::Remove("x-user".into())));
    assert!(!edits.iter().any(|e| matches!(e, HeaderEdit::Set(..))));
    // A path trick does not reach a protected route through the anonymous one.
    let d = run(
        &gate,
        &FakeKeys::ready(),
        "GET",
        "/health/..%2F..%2Fadmin",
        &[],
    );
    assert_eq!(denial(&d), Denial::MissingToken);
}

#[test]
fn no_matching_rule_still_needs_a_token() {
    let gate = Gate::new(config(json!({})));
    assert_eq!(
        denial(&run(&gate, &FakeKeys::ready(), "GET", "/elsewhere", &[])),
        Denial::MissingToken
    );
}

#[test]
fn claims_are_checked_after_the_signature() {
    let gate = Gate::new(config(json!({})));
    let keys = FakeKeys::ready();
    let h = json!({"alg": "EdDSA", "kid": "k1", "typ": "at+jwt"});
    let with = |f: &dyn Fn(&mut serde_json::Map<String, Value>)| {
        let mut c = claims();
        f(c.as_object_mut().unwrap());
        bearer(&sign_eddsa(h.clone(), c))
    };
    let cases: Vec<(String, Denial)> = vec![
        (
            with(&|c| {
                c.insert("exp".into(), json!(NOW - 61));
            }),
            Denial::Expired,
        ),
        (
            with(&|c| {
                c.insert("nbf".into(), json!(NOW + 3600));
            }),
            Denial::NotYetValid,
        ),
        (
            with(&|c| {
                c.insert("aud".into(), json!("api://other"));
            }),
            Denial::WrongAudience,
        ),
        (
            with(&|c| {
                c.insert("iss".into(), json!("https://evil.example"));
            }),
            Denial::UnknownIssuer,
        ),
        (
            with(&|c| {
                c.remove("exp");
            }),
            Denial::MissingExp,
        ),
        (
            bearer(&sign_eddsa(
                json!({"alg": "EdDSA", "kid": "k1", "typ": "JWT"}),
                claims(),
            )),
            Denial::WrongTokenType,
        ),
    ];
    for (auth, want) in cases {
        assert_eq!(
            denial(&run(
                &gate,
                &keys,
                "GET",
                "/orders",
                &[("authorization", &auth)]
            )),
            want
        );
    }
}

#[test]
fn a_tampered_token_is_refused() {
    let gate = Gate::new(config(json!({})));
    let token = good_token();
    let mut parts: Vec<String> = token.split('.').map(String::from).collect();
    let mut c = claims();
    c["sub"] = json!("admin");
    parts[1] = b64::encode(c.to_string().as_bytes());
    let tampered = parts.join(".");
    assert_eq!(
        denial(&run(
            &gate,
            &FakeKeys::ready(),
            "GET",
            "/orders",
            &[("authorization", &bearer(&tampered))]
        )),
        Denial::BadSignature
    );
}

#[test]
fn hs256_signed_with_the_public_key_is_refused() {
    let gate = Gate::new(config(json!({})));
    let public = public_jwks().to_string();
    let forged = sign_hs256(
        json!({"alg": "HS256", "kid": "k1", "typ": "at+jwt"}),
        claims(),
        public.as_bytes(),
    );
    // The remote provider does not allow HS256 at all; and no remote `oct` key exists.
    assert_eq!(
        denial(&run(
            &gate,
            &FakeKeys::ready(),
            "GET",
            "/orders",
            &[("authorization", &bearer(&forged))]
        )),
        Denial::AlgorithmNotAllowed
    );
}

#[test]
fn hmac_tokens_verify_only_with_the_inline_secret_of_their_provider() {
    let gate = Gate::new(config(json!({})));
    let mut c = claims();
    c["iss"] = json!("https://partner.example");
    let good = sign_hs256(json!({"alg": "HS256", "kid": "p1"}), c.clone(), HMAC_SECRET);
    let d = run(
        &gate,
        &FakeKeys::ready(),
        "GET",
        "/admin",
        &[("x-partner-token", &good)],
    );
    assert!(matches!(d.verdict, Verdict::Allow(_)), "{d:?}");
    let bad = sign_hs256(
        json!({"alg": "HS256", "kid": "p1"}),
        c,
        b"another-secret-another-secret-xx",
    );
    assert_eq!(
        denial(&run(
            &gate,
            &FakeKeys::ready(),
            "GET",
            "/admin",
            &[("x-partner-token", &bad)]
        )),
        Denial::BadSignature
    );
}

#[test]
fn a_token_in_a_place_its_provider_does_not_read_is_not_accepted() {
    let gate = Gate::new(config(json!({})));
    let mut c = claims();
    c["iss"] = json!("https://partner.example");
    let token = sign_hs256(json!({"alg": "HS256", "kid": "p1"}), c, HMAC_SECRET);
    assert_eq!(
        denial(&run(
            &gate,
            &FakeKeys::ready(),
            "GET",
            "/admin",
            &[("authorization", &bearer(&token))]
        )),
        Denial::ProviderNotAccepted
    );
}

#[test]
fn a_place_two_providers_read_accepts_the_tokens_of_both() {
    // The gate looks at each place once, as the first provider that lists it; the second
    // provider reads it all the same.
    let gate = Gate::new(config(json!({"providers": {
        "corp": {"issuer": ISS, "audiences": ["api://orders"], "token_type": "at+jwt",
                 "jwks": {"uri": "https://idp.example.com/jwks", "cluster": "idp"}},
        "partner": {"issuer": "https://partner.example", "audiences": ["api://orders"],
                    "algorithms": ["HS256"],
                    "token_from": [{"header": "x-partner-token"},
                                   {"header": "authorization", "prefix": "Bearer "}],
                    "inline_jwks": {"keys": [{"kty": "oct", "kid": "p1", "k": b64::encode(HMAC_SECRET)}]}}
    }})));
    let mut c = claims();
    c["iss"] = json!("https://partner.example");
    let partner = sign_hs256(json!({"alg": "HS256", "kid": "p1"}), c, HMAC_SECRET);
    let keys = FakeKeys::ready();
    for (place, value) in [
        ("authorization", bearer(&partner)),
        ("x-partner-token", partner),
    ] {
        let d = run(&gate, &keys, "GET", "/admin", &[(place, &value)]);
        assert!(matches!(d.verdict, Verdict::Allow(_)), "{place}: {d:?}");
    }
    let corp = bearer(&good_token());
    let d = run(&gate, &keys, "GET", "/admin", &[("authorization", &corp)]);
    assert!(matches!(d.verdict, Verdict::Allow(_)), "{d:?}");
}

#[test]
fn routes_limit_providers_scopes_and_claims() {
    let gate = Gate::new(config(json!({})));
    let keys = FakeKeys::ready();
    let mut read_only = claims();
    read_only["scope"] = json!("orders:read");
    read_only["roles"] = json!(["viewer"]);
    let token = bearer(&sign_eddsa(
        json!({"alg": "EdDSA", "kid": "k1", "typ": "at+jwt"}),
        read_only,
    ));
    assert_eq!(
        denial(&run(
            &gate,
            &keys,
            "POST",
            "/orders",
            &[("authorization", &token)]
        )),
        Denial::InsufficientScope(vec!["orders:write".into()])
    );
    assert!(matches!(
        run(&gate, &keys, "GET", "/orders", &[("authorization", &token)]).verdict,
        Verdict::Allow(_)
    ));
    assert_eq!(
        denial(&run(
            &gate,
            &keys,
            "GET",
            "/admin",
            &[("authorization", &token)]
        )),
        Denial::ClaimMismatch("roles".into())
    );
    assert!(matches!(
        run(
            &gate,
            &keys,
            "GET",
            "/admin",
            &[("authorization", &bearer(&good_token()))]
        )
        .verdict,
        Verdict::Allow(_)
    ));
    // The partner provider is not accepted on POST /orders.
    let mut c = claims();
    c["iss"] = json!("https://partner.example");
    let partner = sign_hs256(json!({"alg": "HS256", "kid": "p1"}), c, HMAC_SECRET);
    assert_eq!(
        denial(&run(
            &gate,
            &keys,
            "POST",
            "/orders",
            &[("x-partner-token", &partner)]
        )),
        Denial::MissingToken
    );
}

#[test]
fn tokens_are_capped_and_checked_before_anything_reads_them() {
    let gate = Gate::new(introspecting_config());
    let huge = "o".repeat(crate::jws::MAX_TOKEN_LEN + 1);
    assert_eq!(
        denial(&run(
            &gate,
            &FakeKeys::ready(),
            "GET",
            "/orders",
            &[("authorization", &bearer(&huge))]
        )),
        Denial::TokenTooLarge,
        "an opaque token is capped before it is introspected"
    );
    let spaced = run(
        &gate,
        &FakeKeys::ready(),
        "GET",
        "/orders",
        &[("authorization", "Bearer a b")],
    );
    assert!(matches!(denial(&spaced), Denial::Malformed(_)));
    let jwe = run(
        &gate,
        &FakeKeys::ready(),
        "GET",
        "/orders",
        &[("authorization", "Bearer a.b.c.d.e")],
    );
    assert!(
        matches!(denial(&jwe), Denial::Malformed(_)),
        "a JWE is not introspected"
    );
    // A token with one dot is opaque: introspected.
    let dotted = run(
        &gate,
        &FakeKeys::ready(),
        "GET",
        "/orders",
        &[("authorization", "Bearer ya29.a0Af")],
    );
    assert!(
        matches!(dotted.verdict, Verdict::Introspect { .. }),
        "{dotted:?}"
    );
}

#[test]
fn joined_authorization_headers_are_several_tokens() {
    let gate = Gate::new(config(json!({})));
    let other = sign_eddsa(
        json!({"alg": "EdDSA", "kid": "k1", "typ": "at+jwt"}),
        json!({"iss": ISS}),
    );
    let joined = format!("Bearer {},Bearer {}", good_token(), other);
    let d = run(
        &gate,
        &FakeKeys::ready(),
        "GET",
        "/orders",
        &[("authorization", &joined)],
    );
    assert_eq!(denial(&d), Denial::MultipleTokens);
    let same = format!("Bearer {},Bearer {}", good_token(), good_token());
    let d = run(
        &gate,
        &FakeKeys::ready(),
        "GET",
        "/orders",
        &[("authorization", &same)],
    );
    assert!(
        matches!(d.verdict, Verdict::Allow(_)),
        "the same token twice is one token"
    );
}

#[test]
fn several_different_tokens_are_refused() {
    let gate = Gate::new(config(json!({})));
    let other = sign_eddsa(
        json!({"alg": "EdDSA", "kid": "k1", "typ": "at+jwt"}),
        json!({"iss": ISS}),
    );
    let d = run(
        &gate,
        &FakeKeys::ready(),
        "GET",
        "/orders",
        &[
            ("authorization", &bearer(&good_token())),
            ("authorization", &bearer(&other)),
        ],
    );
    assert_eq!(denial(&d), Denial::MultipleTokens);
}

#[test]
fn keys_that_are_not_there_yet_make_the_request_wait() {
    let gate = Gate::new(config(json!({})));
    let mut keys = FakeKeys::ready();
    keys.remote = None;
    keys.pending = true;
    let auth = bearer(&good_token());
    assert_eq!(
        run(&gate, &keys, "GET", "/orders", &[("authorization", &auth)]).verdict,
        Verdict::Wait {
            provider: 0,
            refetch: false
        }
    );
    keys.pending = false;
    assert_eq!(
        denial(&run(
            &gate,
            &keys,
            "GET",
            "/orders",
            &[("authorization", &auth)]
        )),
        Denial::KeysUnavailable
    );
}

#[test]
fn an_unknown_kid_asks_for_one_refetch_then_is_refused() {
    let gate = Gate::new(config(json!({})));
    let mut keys = FakeKeys::ready();
    let auth = bearer(&sign_eddsa(
        json!({"alg": "EdDSA", "kid": "k2", "typ": "at+jwt"}),
        claims(),
    ));
    assert_eq!(
        run(&gate, &keys, "GET", "/orders", &[("authorization", &auth)]).verdict,
        Verdict::Wait {
            provider: 0,
            refetch: true
        }
    );
    keys.may_refetch = false;
    assert_eq!(
        denial(&run(
            &gate,
            &keys,
            "GET",
            "/orders",
            &[("authorization", &auth)]
        )),
        Denial::UnknownKid
    );
}

#[test]
fn control_characters_in_claims_are_not_forwarded() {
    let gate = Gate::new(config(json!({})));
    let mut c = claims();
    c["sub"] = json!("alice\r\nx-admin: true");
    c["roles"] = json!(["a", {"nested": true}]);
    let auth = bearer(&sign_eddsa(
        json!({"alg": "EdDSA", "kid": "k1", "typ": "at+jwt"}),
        c,
    ));
    let d = run(
        &gate,
        &FakeKeys::ready(),
        "GET",
        "/orders",
        &[("authorization", &auth)],
    );
    let Verdict::Allow(Allowed { edits, .. }) = &d.verdict else {
        panic!("{d:?}")
    };
    assert!(
        !edits
            .iter()
            .any(|e| matches!(e, HeaderEdit::Set(n, _) if &**n == "x-user" || &**n == "x-roles")),
        "{edits:?}"
    );
}

#[test]
fn the_token_can_be_kept_from_the_upstream() {
    let gate = Gate::new(config(json!({"headers": {"strip_token": true}})));
    let d = run(
        &gate,
        &FakeKeys::ready(),
        "GET",
        "/orders",
        &[("authorization", &bearer(&good_token()))],
    );
    let Verdict::Allow(Allowed { edits, .. }) = &d.verdict else {
        panic!("{d:?}")
    };
    assert_eq!(edits, &vec![HeaderEdit::Remove("authorization".into())]);
}

// ---------------------------------------------------------------------------------------------
// Introspection and policies.

const OPAQUE: &str = "opaque-token-0123456789";

fn introspecting_config() -> Config {
    config(json!({
        "providers": {
            "corp": {"issuer": ISS, "audiences": ["api://orders"], "token_type": "at+jwt",
                     "jwks": {"uri": "https://idp.example.com/jwks", "cluster": "idp"},
                     "introspection": {"endpoint": "https://idp.example.com/introspect", "cluster": "idp",
                                       "client_id": "gw", "client_secret": "s3cret"}}
        },
        "policies": [
            {"name": "admins", "when": [{"claim": "roles", "contains": "admin"}],
             "headers": {"x-tier": "admin-plan"},
             "rate_limits": [{"name": "burst", "requests": 10, "per": "1s", "key": "client_id"}]},
            {"name": "viewers", "when": [{"claim": "roles", "contains": "viewer"}], "deny": [{"prefix": "/reports"}]},
            {"name": "anonymous", "rate_limits": [{"requests": 5, "per": "1m", "key": "sub"}]}
        ],
        "default_policy": "anonymous"
    }))
}

fn active_claims() -> serde_json::Map<String, Value> {
    match json!({"active": true, "iss": ISS, "aud": "api://orders", "sub": "svc", "client_id": "orders-app",
                 "exp": NOW + 60, "scope": "orders:read", "roles": ["admin"]})
    {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

#[test]
fn an_opaque_token_is_introspected_first() {
    let gate = Gate::new(introspecting_config());
    let d = run(
        &gate,
        &FakeKeys::ready(),
        "GET",
        "/orders",
        &[("authorization", &bearer(OPAQUE))],
    );
    assert_eq!(
        d.verdict,
        Verdict::Introspect {
            provider: 0,
            token: OPAQUE.into()
        }
    );
}

#[test]
fn an_active_answer_is_an_identity_with_its_policy_and_budgets() {
    let gate = Gate::new(introspecting_config());
    let mut keys = FakeKeys::ready();
    keys.introspected = Some((
        crate::introspection::token_hash(OPAQUE),
        Introspected::Active(active_claims().into()),
    ));
    let d = run(
        &gate,
        &keys,
        "GET",
        "/orders",
        &[("authorization", &bearer(OPAQUE)), ("x-tier", "spoofed")],
    );
    let Verdict::Allow(allowed) = &d.verdict else {
        panic!("{d:?}")
    };
    assert_eq!(allowed.policy, Some(0));
    assert_eq!(
        *allowed.charges,
        [BudgetKey::identity("client:orders-app".into())]
    );
    assert!(allowed.edits.contains(&HeaderEdit::Remove("x-tier".into())));
    assert!(allowed
        .edits
        .contains(&HeaderEdit::Set("x-tier".into(), "admin-plan".into())));
    assert!(allowed
        .edits
        .contains(&HeaderEdit::Set("x-user".into(), "svc".into())));
    assert!(!allowed
        .edits
        .iter()
        .any(|e| matches!(e, HeaderEdit::Set(n, _) if &**n == "x-jwt-payload")));
    assert_eq!(
        (d.facts.source, d.facts.policy.as_deref()),
        (Some("introspection_cache"), Some("admins"))
    );
}

#[test]
fn an_answer_checked_when_kept_decides_as_one_checked_now() {
    let gate = Gate::new(introspecting_config());
    let provider = gate.config.provider(0).unwrap();
    let cfg = provider.introspection.as_ref().unwrap();
    let hash = crate::introspection::token_hash(OPAQUE);
    let auth = bearer(OPAQUE);
    let with = |changes: Value| {
        let mut claims = active_claims();
        claims.extend(changes.as_object().unwrap().clone());
        claims
    };
    let answers = [
        active_claims(),
        with(json!({"aud": "api://other"})),
        with(json!({"iss": "https://elsewhere"})),
        with(json!({"exp": NOW - 1})),
        with(json!({"nbf": NOW + 3600})),
        with(json!({"exp": "soon"})),
        with(json!({"client_id": 7})),
        // Both wrong: the date is reported, as when the whole answer is checked at once.
        with(json!({"exp": NOW - 1, "client_id": 7})),
    ];
    for claims in answers {
        let decide = |checked| {
            let mut keys = FakeKeys::ready();
            keys.introspected = Some((hash, Introspected::Active(claims.clone().into())));
            keys.checked = checked;
            run(&gate, &keys, "GET", "/orders", &[("authorization", &auth)])
        };
        let now = decide(None);
        let kept = decide(Some(crate::introspection::check_answer(
            &claims, provider, cfg,
        )));
        assert_eq!(now.verdict, kept.verdict, "{claims:?}");
    }
    // What the host kept is what decides: the answer is not looked at again.
    let mut keys = FakeKeys::ready();
    keys.introspected = Some((hash, Introspected::Active(active_claims().into())));
    keys.checked = Some(Err(Denial::WrongTokenType));
    let d = run(&gate, &keys, "GET", "/orders", &[("authorization", &auth)]);
    assert_eq!(denial(&d), Denial::WrongTokenType);
}

#[test]
fn inactive_failed_and_mismatched_answers_are_refused() {
    let gate = Gate::new(introspecting_config());
    let hash = crate::introspection::token_hash(OPAQUE);
    let auth = bearer(OPAQUE);
    let mut keys = FakeKeys::ready();
    keys.introspected = Some((hash, Introspected::Inactive));
    assert_eq!(
        denial(&run(
            &gate,
            &keys,
            "GET",
            "/orders",
            &[("authorization", &auth)]
        )),
        Denial::TokenInactive
    );
    keys.introspected = Some((hash, Introspected::Failed));
    assert!(matches!(
        denial(&run(
            &gate,
            &keys,
            "GET",
            "/orders",
            &[("authorization", &auth)]
        )),
        Denial::IntrospectionFailed(_)
    ));
    let mut other_audience = active_claims();
    other_audience.insert("aud".into(), json!("api://billing"));
    keys.introspected = Some((hash, Introspected::Active(other_audience.into())));
    assert_eq!(
        denial(&run(
            &gate,
            &keys,
            "GET",
            "/orders",
            &[("authorization", &auth)]
        )),
        Denial::WrongAudience
    );
}

#[test]
fn an_opaque_token_without_an_introspecting_provider_is_malformed() {
    let gate = Gate::new(config(json!({})));
    assert!(matches!(
        denial(&run(
            &gate,
            &FakeKeys::ready(),
            "GET",
            "/orders",
            &[("authorization", &bearer(OPAQUE))]
        )),
        Denial::Malformed(_)
    ));
}

#[test]
fn policies_refuse_routes_and_anonymous_requests_spend_the_client_address() {
    let gate = Gate::new(introspecting_config());
    let mut viewer = claims();
    viewer["roles"] = json!(["viewer"]);
    let auth = bearer(&sign_eddsa(
        json!({"alg": "EdDSA", "kid": "k1", "typ": "at+jwt"}),
        viewer,
    ));
    assert_eq!(
        denial(&run(
            &gate,
            &FakeKeys::ready(),
            "GET",
            "/reports/1",
            &[("authorization", &auth)]
        )),
        Denial::PolicyDenied("viewers".into())
    );
    let d = run(&gate, &FakeKeys::ready(), "GET", "/health", &[]);
    let Verdict::Allow(allowed) = &d.verdict else {
        panic!("{d:?}")
    };
    assert_eq!(
        (allowed.policy, allowed.charges.to_vec()),
        (Some(2), vec![BudgetKey::ClientAddress])
    );
}

// ---------------------------------------------------------------------------------------------
// Remembered verifications.

#[test]
fn a_verified_token_is_learned_with_only_the_claims_the_configuration_reads() {
    let gate = Gate::new(config(json!({})));
    let token = good_token();
    let d = run(
        &gate,
        &FakeKeys::ready(),
        "GET",
        "/orders",
        &[("authorization", &bearer(&token))],
    );
    let decided_with = d
        .facts
        .claims
        .clone()
        .expect("the audit facts carry the claims");
    let learned = d.learned.expect("a fresh verification is learned");
    let identity = learned.identity;
    assert!(
        Rc::ptr_eq(&decided_with, &identity.claims),
        "the verifying request reads the same claims as the token's remembered requests"
    );
    assert_eq!(learned.key, crate::verified::token_key(&token));
    assert_eq!(learned.token, token);
    assert_eq!(
        identity.fingerprint,
        crate::audit::token_fingerprint(&token)
    );
    let shared = identity.encode(&learned.key).unwrap();
    assert_eq!(
        crate::verified::VerifiedIdentity::decode(&shared, &learned.key),
        Some(identity.clone()),
        "another worker reads the same identity, fingerprint included, from shared data"
    );
    assert_eq!((identity.provider, identity.keys_generation), (0, 7));
    assert_eq!(
        identity.claims.get("tenant"),
        Some(&json!({"plan": "gold"})),
        "read by x-plan"
    );
    for name in ["aud", "iss", "exp", "iat"] {
        assert!(
            identity.claims.get(name).is_none(),
            "{name}: not read by the configuration"
        );
    }
    assert_eq!(identity.dates.exp(), Some(NOW + 300));
    assert_eq!(d.facts.issuer(), Some(ISS));
    assert_eq!(identity.payload_segment.as_deref(), token.split('.').nth(1));
    // A refused token teaches nothing.
    let bad = run(
        &gate,
        &FakeKeys::ready(),
        "GET",
        "/orders",
        &[("authorization", &bearer("a.b.c"))],
    );
    assert!(bad.learned.is_none());
}

#[test]
fn a_remembered_token_skips_the_signature_but_never_the_clock_or_the_key_set() {
    let gate = Gate::new(config(json!({})));
    let token = good_token();
    let first = run(
        &gate,
        &FakeKeys::ready(),
        "GET",
        "/orders",
        &[("authorization", &bearer(&token))],
    );
    let learned = first.learned.unwrap();
    let (key, identity) = (learned.token, learned.identity);
    let mut keys = FakeKeys::ready();
    keys.remembered = Some((key.clone(), std::rc::Rc::new(identity.clone())));
    // With no keys at all the remembered verification still needs the key set to be there.
    keys.remote = None;
    keys.pending = true;
    let waiting = run(
        &gate,
        &keys,
        "GET",
        "/orders",
        &[("authorization", &bearer(&token))],
    );
    assert!(
        matches!(waiting.verdict, Verdict::Wait { .. }),
        "{waiting:?}"
    );
    let mut keys = FakeKeys::ready();
    keys.remembered = Some((key.clone(), std::rc::Rc::new(identity.clone())));
    let hit = run(
        &gate,
        &keys,
        "GET",
        "/orders/1",
        &[("authorization", &bearer(&token))],
    );
    assert!(hit.learned.is_none(), "a hit is not verified again");
    let Verdict::Allow(allowed) = &hit.verdict else {
        panic!("{hit:?}")
    };
    assert!(allowed
        .edits
        .contains(&HeaderEdit::Set("x-plan".into(), "gold".into())));
    assert_eq!(
        hit.facts.issuer(),
        Some(ISS),
        "the audit names the issuer the kept claims leave out"
    );
    assert!(allowed.edits.contains(&HeaderEdit::Set(
        "x-jwt-payload".into(),
        token.split('.').nth(1).unwrap().into()
    )));
    // The clock still applies.
    let mut expired = identity.clone();
    expired.dates = crate::claims::Dates::new(Some(NOW - 61), None, identity.dates.iat());
    keys.remembered = Some((key.clone(), std::rc::Rc::new(expired)));
    assert_eq!(
        denial(&run(
            &gate,
            &keys,
            "GET",
            "/orders",
            &[("authorization", &bearer(&token))]
        )),
        Denial::Expired
    );
    // Another key set: verified again from scratch (and learned again).
    keys.remembered = Some((key.clone(), std::rc::Rc::new(identity)));
    keys.generation = 8;
    let again = run(
        &gate,
        &keys,
        "GET",
        "/orders",
        &[("authorization", &bearer(&token))],
    );
    assert!(matches!(again.verdict, Verdict::Allow(_)));
    assert_eq!(again.learned.map(|l| l.identity.keys_generation), Some(8));
}

#[test]
fn a_remembered_identity_keeps_its_headers_for_the_gate_that_derived_them() {
    let gate = Gate::new(config(json!({})));
    let token = good_token();
    let auth = bearer(&token);
    let mut keys = FakeKeys::ready();
    let first = run(&gate, &keys, "GET", "/orders", &[("authorization", &auth)]);
    let kept = first.learned.clone().unwrap().identity;
    keys.remembered = Some((token.clone(), Rc::new(kept)));
    let edits = |d: &Decision| match &d.verdict {
        Verdict::Allow(allowed) => allowed.edits.clone(),
        other => panic!("{other:?}"),
    };
    // The edits `gate` makes for a request to `path` with the remembered token.
    let edits_at = |gate: &Gate, path: &str| {
        edits(&run(gate, &keys, "GET", path, &[("authorization", &auth)]))
    };
    let hit = edits_at(&gate, "/orders");
    let again = edits_at(&gate, "/orders/2");
    assert_eq!(
        hit,
        edits(&first),
        "a hit forwards what the verifying request did"
    );
    let (Some(verifying), Some(a), Some(b)) =
        (edits(&first).identity, hit.identity, again.identity)
    else {
        panic!("identity headers expected")
    };
    assert!(Rc::ptr_eq(&a, &b), "derived once, then shared");
    assert!(
        Rc::ptr_eq(&verifying, &a),
        "derived by the verifying request, and kept with the identity it learned"
    );
    assert!(a.contains(&HeaderEdit::Set("x-plan".into(), "gold".into())));
    // Another configuration reads the same identity its own way, with the same claims kept.
    let other = Gate::new(config(
        json!({"headers": {"claims": {"x-tenant-plan": "tenant.plan"}}}),
    ));
    let theirs = edits_at(&other, "/orders");
    assert!(theirs.contains(&HeaderEdit::Set("x-tenant-plan".into(), "gold".into())));
    assert!(!theirs
        .iter()
        .any(|e| matches!(e, HeaderEdit::Set(n, _) if &**n == "x-plan")));
    let ours = edits_at(&gate, "/orders");
    assert!(ours.contains(&HeaderEdit::Set("x-plan".into(), "gold".into())));
}

#[test]
fn a_remembered_identity_keeps_its_policy_and_budget_keys_for_the_gate_that_derived_them() {
    let limits = |key: &str| {
        json!({"policies": [
            {"name": "bronze", "when": [{"claim": "tenant.plan", "equals": "bronze"}]},
            {"name": "gold", "when": [{"claim": "tenant.plan", "equals": "gold"}],
             "rate_limits": [{"requests": 10, "per": "1s", "key": key}],
             "quotas": [{"requests": 1000, "per": "day", "key": "client_address"}]}
        ]})
    };
    let gate = Gate::new(config(limits("sub")));
    let token = good_token();
    let auth = bearer(&token);
    let mut keys = FakeKeys::ready();
    let first = run(&gate, &keys, "GET", "/orders", &[("authorization", &auth)]);
    keys.remembered = Some((
        token.clone(),
        Rc::new(first.learned.clone().unwrap().identity),
    ));
    let allowed =
        |gate: &Gate| match run(gate, &keys, "GET", "/orders", &[("authorization", &auth)]).verdict
        {
            Verdict::Allow(allowed) => allowed,
            other => panic!("{other:?}"),
        };
    let (hit, again) = (allowed(&gate), allowed(&gate));
    let Verdict::Allow(fresh) = &first.verdict else {
        panic!("{first:?}")
    };
    assert_eq!((hit.policy, &*hit.charges), (fresh.policy, &*fresh.charges));
    assert_eq!(hit.policy, Some(1));
    assert_eq!(
        *hit.charges,
        [
            BudgetKey::identity("sub:alice".into()),
            BudgetKey::ClientAddress
        ]
    );
    assert!(
        Rc::ptr_eq(&hit.charges, &again.charges) && Rc::ptr_eq(&fresh.charges, &hit.charges),
        "derived once by the verifying request, then shared"
    );
    // Another configuration selects and keys by its own rules, from the same claims kept.
    let other = Gate::new(config(limits("client_id")));
    let theirs = allowed(&other);
    assert_eq!(theirs.policy, Some(1));
    assert_eq!(
        theirs.charges[0],
        BudgetKey::identity("client:orders-app".into())
    );
    assert!(Rc::ptr_eq(&allowed(&other).charges, &theirs.charges));
    assert_eq!(*allowed(&gate).charges, *hit.charges);
}

// One SHA-256 pass for the token and its signing input.

#[test]
fn a_prefix_is_hashed_with_the_token_and_alone_once_the_token_is_known() {
    let token = "header.payload.signature";
    let sha = |b: &str| -> [u8; 32] { Sha256::digest(b.as_bytes()).into() };
    let digest = TokenDigest::new(token);
    assert_eq!(digest.prefix_sha256(14), Some(sha("header.payload")));
    assert_eq!(
        digest.get(),
        &sha(token),
        "the token's own, from the same pass"
    );
    assert_eq!(
        digest.prefix_sha256(6),
        Some(sha("header")),
        "known: the prefix alone"
    );
    assert_eq!(digest.prefix_sha256(token.len()), Some(sha(token)));
    assert_eq!(digest.prefix_sha256(token.len() + 1), None);
    let fresh = TokenDigest::new(token);
    assert_eq!(fresh.prefix_sha256(0), Some(sha("")));
    assert_eq!(fresh.get(), &sha(token));
}

/// ES256 (as RS256 and PS256) signs the SHA-256 of the signing input: the gate hands in the
/// one the token's own SHA-256 pass made. A wrong one could only refuse; this one verifies,
/// and the token's key for the shared cache is still its own SHA-256's.
#[test]
fn an_es256_token_verifies_with_its_signing_input_hashed_on_the_way() {
    use p256::ecdsa::signature::hazmat::PrehashSigner;
    let signing = p256::ecdsa::SigningKey::from_slice(&[9u8; 32]).unwrap();
    let point = signing.verifying_key().to_sec1_point(false);
    let (x, y) = point.as_bytes()[1..].split_at(32);
    let jwk =
        json!({"kty": "EC", "crv": "P-256", "kid": "e1", "x": b64::encode(x), "y": b64::encode(y)});
    let gate = Gate::new(config(json!({})));
    let mut keys = FakeKeys::ready();
    let jwks = json!({"keys": [jwk]});
    keys.remote =
        Some(JwkSet::from_value(&jwks, KeyOrigin::Remote, &JwksLimits::default()).unwrap());
    let header = json!({"alg": "ES256", "kid": "e1", "typ": "at+jwt"});
    let input = format!(
        "{}.{}",
        b64::encode(header.to_string().as_bytes()),
        b64::encode(claims().to_string().as_bytes())
    );
    let sig: p256::ecdsa::Signature = signing
        .sign_prehash(&Sha256::digest(input.as_bytes()))
        .unwrap();
    let token = format!("{input}.{}", b64::encode(&sig.to_bytes()));
    let d = run(
        &gate,
        &keys,
        "GET",
        "/orders",
        &[("authorization", &bearer(&token))],
    );
    assert!(matches!(d.verdict, Verdict::Allow(_)), "{d:?}");
    assert_eq!(
        d.learned.map(|l| l.key),
        Some(crate::verified::token_key(&token))
    );
    // Another payload under the same signature is refused.
    let mut parts: Vec<&str> = token.split('.').collect();
    let other = b64::encode(json!({"iss": ISS, "sub": "mallory"}).to_string().as_bytes());
    parts[1] = &other;
    let forged = parts.join(".");
    let d = run(
        &gate,
        &keys,
        "GET",
        "/orders",
        &[("authorization", &bearer(&forged))],
    );
    assert_eq!(denial(&d), Denial::BadSignature);
}
