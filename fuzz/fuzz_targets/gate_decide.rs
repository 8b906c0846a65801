//! A full `Gate::decide` under a fixed configuration whose only keys are an inline Ed25519 key
//! and an HS256 secret (`tollgate_fuzz::fixed_config`), for three requests (no rule, a rule
//! with a scope, a rule with a claim value).
//!
//! Two kinds of input:
//!
//! - **Raw** (anything not starting with `{`): the input is the `Authorization` header. The
//!   verdict is never `Allow` unless the token is, by an independent check, a strict compact
//!   JWS signed by one of the fixed keys, from the fixed issuer, for the fixed audience and not
//!   expired. Random input can only be refused.
//! - **Signed** (`{header JSON}` newline `{payload JSON}`): the harness signs exactly those
//!   bytes with the fixed key the header's `alg` names (the Ed25519 key for any other `alg`),
//!   so the fuzzer reaches every claim check. An allowed token must then name a fitting `alg`
//!   and `kid`, carry the fixed issuer and audience, be within its dates, hold the route's
//!   scope or claim, and be forwarded as exactly its payload segment.
//!
//! Either way the engine never waits or introspects (inline keys only), and an allowed request
//! first removes every owned header and sets only safe header values.
#![no_main]

use ed25519_dalek::{Signer, SigningKey};
use hmac::{KeyInit, Mac};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use std::sync::OnceLock;
use tollgate::gate::{Allowed, Gate, Verdict};
use tollgate::request::{HeaderEdit, Request};
use tollgate_fuzz::{
    audience_holds, b64, bearer_token, fixed_config, signed_by_fixed_keys, FixedHost, ED25519_SEED,
    HMAC_SECRET, ISS, NOW,
};

/// The fixed configuration's skew (the default), plus one for NumericDate fractions.
const SKEW: f64 = 61.0;

fn gate() -> &'static Gate {
    static GATE: OnceLock<Gate> = OnceLock::new();
    GATE.get_or_init(|| Gate::new(fixed_config()))
}

const REQUESTS: [(&str, &str); 3] = [
    ("GET", "/orders/1"),
    ("POST", "/orders"),
    ("GET", "/admin/x"),
];

/// Decides the three requests with `authorization` as the header; returns what was allowed.
fn decide(authorization: &str) -> Vec<(&'static str, Allowed)> {
    let gate = gate();
    let host = FixedHost {
        config: &gate.config,
    };
    let headers = [("authorization", authorization)];
    let mut allowed = Vec::new();
    for (method, path) in REQUESTS {
        let req = Request {
            method,
            path,
            authority: "api.example.com",
            headers: tollgate::request::Headers::Pairs(&headers),
        };
        let decision = gate.decide(&req, &host, NOW);
        match decision.verdict {
            Verdict::Allow(a) => {
                assert!(decision.facts.token_sha256.is_some());
                // Every owned header the request carries is removed, before anything is set.
                let removed: Vec<&str> = a
                    .edits
                    .iter()
                    .map_while(|e| match e {
                        HeaderEdit::Remove(name) => Some(&**name),
                        HeaderEdit::Set(..) => None,
                    })
                    .collect();
                for name in &gate.config.owned_headers {
                    if req.header_values(name).next().is_some() {
                        assert!(removed.contains(&name.as_str()), "{name} kept");
                    }
                }
                for edit in &a.edits {
                    if let HeaderEdit::Set(_, value) = edit {
                        assert!(!value.is_empty() && !value.chars().any(char::is_control));
                    }
                }
                allowed.push((path, a));
            }
            Verdict::Deny(_) => {}
            other => panic!("inline keys only, yet {other:?} for {authorization:?}"),
        }
    }
    allowed
}

fn raw(header: &str) {
    if !decide(header).is_empty() {
        assert!(
            bearer_token(header).is_some_and(signed_by_fixed_keys),
            "allowed a request whose token is not signed by the fixed keys: {header:?}"
        );
    }
}

fn date(claims: &Map<String, Value>, name: &str) -> Option<f64> {
    claims.get(name).and_then(Value::as_f64)
}

/// Whether `claim` (a space-separated string or an array of strings) holds `wanted`.
fn holds(claims: &Map<String, Value>, claim: &str, wanted: &str) -> bool {
    match claims.get(claim) {
        Some(Value::String(s)) => s.split(' ').any(|s| s == wanted),
        Some(Value::Array(items)) => items.iter().any(|i| i.as_str() == Some(wanted)),
        _ => false,
    }
}

fn signed(header: &[u8], payload: &[u8]) {
    let h: Value = serde_json::from_slice(header).unwrap_or_default();
    let alg = h.get("alg").and_then(Value::as_str);
    let input = format!("{}.{}", b64(header), b64(payload));
    let signature = if alg == Some("HS256") {
        let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(HMAC_SECRET) else {
            return;
        };
        mac.update(input.as_bytes());
        mac.finalize().into_bytes().to_vec()
    } else {
        SigningKey::from_bytes(&ED25519_SEED)
            .sign(input.as_bytes())
            .to_bytes()
            .to_vec()
    };
    let token = format!("{input}.{}", b64(&signature));
    let allowed = decide(&format!("Bearer {token}"));
    if allowed.is_empty() {
        return;
    }
    let kid = h.get("kid").and_then(Value::as_str);
    assert!(
        matches!(
            (alg, kid),
            (Some("EdDSA"), None | Some("ed")) | (Some("HS256"), None | Some("hs"))
        ),
        "allowed alg {alg:?} with kid {kid:?}"
    );
    let Ok(Value::Object(claims)) = serde_json::from_slice::<Value>(payload) else {
        panic!("allowed a payload that is not a JSON object: {payload:?}");
    };
    assert_eq!(claims.get("iss").and_then(Value::as_str), Some(ISS));
    assert!(audience_holds(&claims, &[tollgate_fuzz::AUD]));
    let now = NOW as f64;
    assert!(
        date(&claims, "exp").is_some_and(|exp| exp + SKEW > now),
        "{claims:?}"
    );
    for name in ["nbf", "iat"] {
        if claims.contains_key(name) {
            assert!(
                date(&claims, name).is_some_and(|d| d <= now + SKEW),
                "{claims:?}"
            );
        }
    }
    for (path, a) in allowed {
        match path {
            "/orders" => assert!(
                holds(&claims, "scope", "orders:write") || holds(&claims, "scp", "orders:write"),
                "{claims:?}"
            ),
            "/admin/x" => assert!(
                claims.get("roles") == Some(&Value::String("admin".into()))
                    || holds(&claims, "roles", "admin"),
                "{claims:?}"
            ),
            _ => {}
        }
        let segment = b64(payload);
        assert!(a
            .edits
            .contains(&HeaderEdit::Set("x-jwt-payload".into(), segment)));
    }
}

fuzz_target!(|data: &[u8]| {
    if data.first() == Some(&b'{') {
        let mut parts = data.splitn(2, |&b| b == b'\n');
        if let (Some(header), Some(payload)) = (parts.next(), parts.next()) {
            signed(header, payload);
        }
    } else if let Ok(header) = std::str::from_utf8(data) {
        raw(header);
    }
});
