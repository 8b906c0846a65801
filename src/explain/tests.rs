//! The account must reach the gate's verdict: a table of requests, each explained and decided.

use super::*;
use crate::b64;
use crate::config::Config;
use crate::jwk::{JwksLimits, KeyOrigin};
use crate::request::header_pairs;
use ed25519_dalek::{Signer, SigningKey};
use hmac::{KeyInit, Mac};
use serde_json::json;

const NOW: u64 = 1_700_000_000;
const ISS: &str = "https://idp.example.com";
const HMAC_SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn jwk(seed: u8, kid: &str) -> Value {
    let x = b64::encode(key(seed).verifying_key().as_bytes());
    json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": x})
}

fn config() -> Config {
    let c = json!({
        "providers": {
            "corp": {"issuer": ISS, "audiences": ["api://orders"], "token_type": "at+jwt",
                     "max_lifetime_seconds": 3600,
                     "jwks": {"uri": "https://idp.example.com/jwks", "cluster": "idp"}},
            "partner": {"issuer": "https://partner.example", "audiences": ["api://orders"],
                        "algorithms": ["HS256"],
                        "token_from": [{"header": "x-partner-token"}],
                        "inline_jwks": {"keys": [{"kty": "oct", "kid": "p1", "k": b64::encode(HMAC_SECRET)}]}},
            "opaque": {"issuer": "https://opaque.example", "audiences": ["api://orders"],
                       "verify": "introspection",
                       "introspection": {"endpoint": "https://opaque.example/introspect",
                                         "cluster": "opaque", "client_id": "gw",
                                         "client_secret": "s3cret"}}
        },
        "rules": [
            {"match": {"prefix": "/health"}, "anonymous": true},
            {"match": {"prefix": "/orders", "methods": ["POST"]}, "providers": ["corp"], "scopes": ["orders:write"]},
            {"match": {"prefix": "/admin"}, "claims": {"roles": "admin"}}
        ],
        "headers": {"claims": {"x-user": "sub", "x-roles": "roles"}},
        "policies": [
            {"name": "readers", "when": [{"claim": "client_id", "equals": "reader-app"}],
             "deny": [{"prefix": "/orders", "methods": ["POST", "DELETE"]}]},
            {"name": "gold", "when": [{"claim": "tenant.plan", "equals": "gold"}]},
            {"name": "free", "when": [{"claim": "tenant.plan", "equals": "never"}], "allow": [{"prefix": "/health"}]}
        ],
        "default_policy": "free"
    });
    Config::from_json(c.to_string().as_bytes()).unwrap()
}

fn sign(seed: u8, header: Value, claims: Value) -> String {
    let input = format!(
        "{}.{}",
        b64::encode(header.to_string().as_bytes()),
        b64::encode(claims.to_string().as_bytes())
    );
    let sig = key(seed).sign(input.as_bytes());
    format!("{input}.{}", b64::encode(&sig.to_bytes()))
}

fn sign_hs256(header: Value, claims: Value) -> String {
    let input = format!(
        "{}.{}",
        b64::encode(header.to_string().as_bytes()),
        b64::encode(claims.to_string().as_bytes())
    );
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(HMAC_SECRET).unwrap();
    mac.update(input.as_bytes());
    format!("{input}.{}", b64::encode(&mac.finalize().into_bytes()))
}

fn claims() -> Value {
    json!({"iss": ISS, "aud": "api://orders", "sub": "alice", "client_id": "orders-app",
           "exp": NOW + 300, "iat": NOW - 60, "scope": "orders:read orders:write",
           "roles": ["admin", "buyer"], "tenant": {"plan": "gold"}})
}

fn with(changes: Value) -> Value {
    let mut c = claims();
    if let (Some(target), Value::Object(changes)) = (c.as_object_mut(), changes) {
        for (k, v) in changes {
            if v.is_null() {
                target.remove(&k);
            } else {
                target.insert(k, v);
            }
        }
    }
    c
}

fn header() -> Value {
    json!({"alg": "EdDSA", "kid": "k1", "typ": "at+jwt"})
}

fn token(claims: Value) -> String {
    sign(1, header(), claims)
}

struct FakeHost {
    /// Keys of "corp" (index 0); `None`: see `pending`.
    remote: Option<JwkSet>,
    pending: bool,
    may_refetch: bool,
    inline: JwkSet,
    introspected: Option<Introspected>,
}

enum Introspected {
    Active(std::rc::Rc<Map<String, Value>>),
    Inactive,
    Failed,
}

impl FakeHost {
    fn ready() -> FakeHost {
        FakeHost {
            remote: Some(
                JwkSet::from_value(
                    &json!({"keys": [jwk(1, "k1"), jwk(3, "k3")]}),
                    KeyOrigin::Remote,
                    &JwksLimits::default(),
                )
                .unwrap(),
            ),
            pending: false,
            may_refetch: false,
            inline: JwkSet::from_value(
                &json!({"keys": [{"kty": "oct", "kid": "p1", "k": b64::encode(HMAC_SECRET)}]}),
                KeyOrigin::Inline,
                &JwksLimits::default(),
            )
            .unwrap(),
            introspected: None,
        }
    }
}

impl Host for FakeHost {
    fn keys(&self, provider: ProviderId) -> KeysView<'_> {
        match (provider, &self.remote) {
            (2, _) => KeysView::Ready(&self.inline), // "partner" (providers sort by name)
            (0, Some(set)) => KeysView::Ready(set),
            (0, None) if self.pending => KeysView::Pending,
            _ => KeysView::Unavailable,
        }
    }
    fn may_refetch(&self, _: ProviderId) -> bool {
        self.may_refetch
    }
    fn introspection(&self, _: ProviderId, _: &TokenDigest) -> IntrospectionView {
        match &self.introspected {
            None => IntrospectionView::Unknown,
            Some(Introspected::Active(claims)) => IntrospectionView::Active {
                claims: std::rc::Rc::new(crate::claims::Claims::from((**claims).clone())),
                cached: false,
                checked: None,
            },
            Some(Introspected::Inactive) => IntrospectionView::Inactive,
            Some(Introspected::Failed) => IntrospectionView::Failed("timeout"),
        }
    }
}

impl ExplainHost for FakeHost {
    fn keys_origin(&self, provider: ProviderId) -> Option<String> {
        (provider == 0).then(|| "from a test".to_string())
    }
}

struct Case {
    name: &'static str,
    method: &'static str,
    path: &'static str,
    headers: Vec<(String, String)>,
    host: FakeHost,
    /// The reason code, or "allow", "wait", "refetch", "introspect".
    want: &'static str,
    /// Text the deciding check's detail must hold.
    detail: &'static str,
}

fn bearer(token: &str) -> Vec<(String, String)> {
    vec![("authorization".into(), format!("Bearer {token}"))]
}

fn case(name: &'static str, path: &'static str, token: &str, want: &'static str) -> Case {
    Case {
        name,
        method: "GET",
        path,
        headers: bearer(token),
        host: FakeHost::ready(),
        want,
        detail: "",
    }
}

impl Case {
    fn method(mut self, m: &'static str) -> Case {
        self.method = m;
        self
    }
    fn host(mut self, f: impl FnOnce(&mut FakeHost)) -> Case {
        f(&mut self.host);
        self
    }
    fn headers(mut self, h: Vec<(String, String)>) -> Case {
        self.headers = h;
        self
    }
    fn detail(mut self, d: &'static str) -> Case {
        self.detail = d;
        self
    }
}

fn outcome_name(o: &Outcome) -> String {
    match o {
        Outcome::Allow { .. } => "allow".into(),
        Outcome::Deny(d) => d.code().into(),
        Outcome::Wait { refetch: false, .. } => "wait".into(),
        Outcome::Wait { refetch: true, .. } => "refetch".into(),
        Outcome::Introspect { .. } => "introspect".into(),
    }
}

fn cases() -> Vec<Case> {
    let good = token(claims());
    let hs = sign_hs256(
        json!({"alg": "HS256", "kid": "p1"}),
        with(json!({"iss": "https://partner.example"})),
    );
    let active = json!({"active": true, "aud": "api://orders", "sub": "bob", "exp": NOW + 60,
                        "client_id": "orders-app", "tenant": {"plan": "gold"}});
    vec![
        case("valid", "/orders/1", &good, "allow").detail("gold"),
        case(
            "expired",
            "/orders/1",
            &token(with(json!({"exp": NOW - 192, "iat": NOW - 600}))),
            "token_expired",
        )
        .detail("expired 3m12s ago"),
        case(
            "wrong audience",
            "/orders/1",
            &token(with(json!({"aud": "api://a"}))),
            "wrong_audience",
        )
        .detail(r#"aud "api://a" not in ["api://orders"]"#),
        case(
            "unknown kid",
            "/orders/1",
            &sign(
                1,
                json!({"alg": "EdDSA", "kid": "k2", "typ": "at+jwt"}),
                claims(),
            ),
            "unknown_kid",
        )
        .detail(r#"kid "k2" not in JWKS (keys: k1, k3)"#),
        case(
            "unknown kid, refetch allowed",
            "/orders/1",
            &sign(
                1,
                json!({"alg": "EdDSA", "kid": "k2", "typ": "at+jwt"}),
                claims(),
            ),
            "refetch",
        )
        .host(|h| h.may_refetch = true),
        case(
            "no kid, two keys",
            "/orders/1",
            &sign(1, json!({"alg": "EdDSA", "typ": "at+jwt"}), claims()),
            "kid_required",
        ),
        case(
            "bad signature",
            "/orders/1",
            &sign(2, header(), claims()),
            "bad_signature",
        )
        .detail(r#"does not verify with kid "k1""#),
        case(
            "missing scope",
            "/orders",
            &token(with(json!({"scope": "orders:read"}))),
            "insufficient_scope",
        )
        .method("POST")
        .detail("missing orders:write (token has: orders:read)"),
        case("scope present", "/orders", &good, "allow").method("POST"),
        case(
            "policy denied",
            "/orders",
            &token(with(json!({"client_id": "reader-app"}))),
            "policy_denied",
        )
        .method("POST")
        .detail("readers (the first policy whose conditions hold): its deny list names POST"),
        case(
            "default policy does not allow the route",
            "/orders/1",
            &token(with(json!({"tenant": null}))),
            "policy_denied",
        )
        .detail("free (the default policy)"),
        case(
            "claim mismatch",
            "/admin/x",
            &token(with(json!({"roles": ["buyer"]}))),
            "claim_mismatch",
        )
        .detail(r#"roles is ["buyer"], not one of ["admin"]"#),
        case("claim present", "/admin/x", &good, "allow"),
        case("missing token", "/orders/1", "", "missing_token").headers(vec![]),
        case("two tokens", "/orders/1", &good, "multiple_tokens").headers(vec![
            ("authorization".into(), format!("Bearer {good}")),
            ("x-partner-token".into(), hs.clone()),
        ]),
        case("malformed", "/orders/1", "abc.def.ghi", "malformed_token"),
        case(
            "alg none",
            "/orders/1",
            &format!(
                "{}.{}.c2ln",
                b64::encode(br#"{"alg":"none"}"#),
                b64::encode(claims().to_string().as_bytes())
            ),
            "alg_none",
        ),
        case(
            "unknown issuer",
            "/orders/1",
            &token(with(json!({"iss": "https://evil.example"}))),
            "unknown_issuer",
        )
        .detail(r#"iss "https://evil.example" is no provider's issuer"#),
        case(
            "provider not accepted on the route",
            "/orders",
            "",
            "provider_not_accepted",
        )
        .method("POST")
        .headers(vec![("authorization".into(), format!("Bearer {hs}"))]),
        case(
            "partner token in the partner header",
            "/orders/1",
            "",
            "allow",
        )
        .headers(vec![("x-partner-token".into(), hs.clone())]),
        case(
            "partner token in the bearer header",
            "/orders/1",
            &hs,
            "provider_not_accepted",
        )
        .detail("which provider partner does not read"),
        case(
            "algorithm not allowed",
            "/orders/1",
            &sign_hs256(
                json!({"alg": "HS256", "kid": "k1", "typ": "at+jwt"}),
                claims(),
            ),
            "algorithm_not_allowed",
        ),
        case("keys pending", "/orders/1", &good, "wait").host(|h| {
            h.remote = None;
            h.pending = true;
        }),
        case("keys unavailable", "/orders/1", &good, "keys_unavailable").host(|h| h.remote = None),
        case(
            "wrong typ",
            "/orders/1",
            &sign(
                1,
                json!({"alg": "EdDSA", "kid": "k1", "typ": "JWT"}),
                claims(),
            ),
            "wrong_token_type",
        )
        .detail(r#"typ "jwt" is not "at+jwt""#),
        case(
            "not yet valid",
            "/orders/1",
            &token(with(json!({"nbf": NOW + 600, "exp": NOW + 900}))),
            "token_not_yet_valid",
        ),
        case(
            "lifetime too long",
            "/orders/1",
            &token(with(json!({"iat": NOW - 10, "exp": NOW + 7200}))),
            "token_lifetime_too_long",
        ),
        case(
            "missing exp",
            "/orders/1",
            &token(with(json!({"exp": null}))),
            "missing_exp",
        ),
        case(
            "exp of the wrong type",
            "/orders/1",
            &token(with(json!({"exp": "soon"}))),
            "invalid_claim",
        ),
        case("anonymous", "/health", "", "allow").headers(vec![]),
        case("bad path", "/a%zz", &good, "bad_request"),
        case(
            "opaque token, not introspected yet",
            "/o",
            "opaque-1",
            "introspect",
        ),
        case("opaque token, active", "/o", "opaque-1", "allow").host(|h| {
            h.introspected = Some(Introspected::Active(
                active.as_object().cloned().unwrap_or_default().into(),
            ))
        }),
        case("opaque token, inactive", "/o", "opaque-1", "token_inactive")
            .host(|h| h.introspected = Some(Introspected::Inactive)),
        case(
            "opaque token, introspection failed",
            "/o",
            "opaque-1",
            "introspection_unavailable",
        )
        .host(|h| h.introspected = Some(Introspected::Failed)),
        case(
            "one dot: not a JWS, introspected",
            "/o",
            "opaque.1",
            "introspect",
        ),
        case(
            "four dots (JWE): refused, never introspected",
            "/o",
            "a.b.c.d.e",
            "malformed_token",
        ),
        case(
            "four dots on a JWT-only route",
            "/orders",
            "a.b.c.d.e",
            "malformed_token",
        )
        .method("POST")
        .detail("encrypted tokens (JWE) are not accepted"),
        case(
            "opaque token on a JWT-only route",
            "/orders",
            "opaque-1",
            "malformed_token",
        )
        .method("POST"),
    ]
}

fn request<'a>(c: &'a Case, headers: &'a [(&'a str, &'a str)]) -> Request<'a> {
    Request {
        method: c.method,
        path: c.path,
        authority: "api.example.com",
        headers: headers.into(),
    }
}

#[test]
fn the_account_reaches_the_gates_verdict_for_every_case() {
    let gate = Gate::new(config());
    for c in cases() {
        let pairs = header_pairs(&c.headers);
        let e = explain(&gate, &request(&c, &pairs), &c.host, NOW);
        assert!(
            e.agrees(),
            "{}: account {:?} but gate {:?}\n{:#?}",
            c.name,
            e.outcome,
            e.decision.verdict,
            e.checks
        );
        assert_eq!(
            outcome_name(&e.outcome),
            c.want,
            "{}: {:#?}",
            c.name,
            e.checks
        );
        assert_eq!(
            e.provider.as_deref(),
            e.decision.facts.provider.as_deref(),
            "{}",
            c.name
        );
        let last = e.checks.last().unwrap();
        match &e.outcome {
            Outcome::Allow { .. } => assert!(
                e.checks.iter().all(|k| k.result == CheckResult::Pass),
                "{}: {:#?}",
                c.name,
                e.checks
            ),
            Outcome::Deny(_) => assert_eq!(last.result, CheckResult::Fail, "{}", c.name),
            _ => assert_eq!(last.result, CheckResult::Pending, "{}", c.name),
        }
        assert!(
            e.checks.iter().any(|k| k.detail.contains(c.detail)),
            "{}: no check says {:?}\n{:#?}",
            c.name,
            c.detail,
            e.checks
        );
    }
}

#[test]
fn the_token_is_shown_decoded_and_verified_only_after_its_signature() {
    let gate = Gate::new(config());
    let good = case("valid", "/orders/1", &token(claims()), "allow");
    let pairs = header_pairs(&good.headers);
    let e = explain(&gate, &request(&good, &pairs), &good.host, NOW);
    let view = e.token.unwrap();
    assert!(view.signature_verified);
    assert_eq!(view.header.unwrap()["kid"], "k1");
    assert_eq!(view.claims.unwrap()["sub"], "alice");

    let forged = case(
        "bad",
        "/orders/1",
        &sign(2, header(), claims()),
        "bad_signature",
    );
    let pairs = header_pairs(&forged.headers);
    let e = explain(&gate, &request(&forged, &pairs), &forged.host, NOW);
    let view = e.token.unwrap();
    assert!(!view.signature_verified, "a forged token is never verified");
    assert_eq!(view.claims.unwrap()["sub"], "alice", "but it is shown");

    let broken = case("broken", "/orders/1", "e30.!!.x", "malformed_token");
    let pairs = header_pairs(&broken.headers);
    let e = explain(&gate, &request(&broken, &pairs), &broken.host, NOW);
    let view = e.token.unwrap();
    assert!(view
        .decode_error
        .unwrap()
        .contains("payload is not base64url"));
}

#[test]
fn a_token_given_alone_goes_where_its_provider_reads_it() {
    let c = config();
    let hs = sign_hs256(
        json!({"alg": "HS256"}),
        json!({"iss": "https://partner.example"}),
    );
    assert_eq!(
        default_token_source(&c, &hs),
        Some(TokenSource::Header {
            name: "x-partner-token".into(),
            prefix: None
        })
    );
    let bearer = Some(TokenSource::Header {
        name: "authorization".into(),
        prefix: Some("Bearer ".into()),
    });
    assert_eq!(default_token_source(&c, &token(claims())), bearer);
    assert_eq!(default_token_source(&c, "opaque"), bearer);

    let (mut path, mut headers) = ("/x?a=1".to_string(), vec![("cookie".into(), "a=1".into())]);
    put_token(
        &TokenSource::Query("t".into()),
        "a b",
        &mut path,
        &mut headers,
    );
    put_token(
        &TokenSource::Cookie("at".into()),
        "tok",
        &mut path,
        &mut headers,
    );
    assert_eq!(path, "/x?a=1&t=a%20b");
    assert_eq!(
        headers,
        vec![("cookie".to_string(), "a=1; at=tok".to_string())]
    );
}

#[test]
fn durations_read_like_a_person_would_say_them() {
    assert_eq!(human_duration(0), "0s");
    assert_eq!(human_duration(45), "45s");
    assert_eq!(human_duration(192), "3m12s");
    assert_eq!(human_duration(3600), "1h");
    assert_eq!(human_duration(3725), "1h2m");
    assert_eq!(human_duration(86_400 * 2 + 3 * 3600 + 59), "2d3h");
    assert_eq!(human_time(NOW), "2023-11-14T22:13:20Z");
}
