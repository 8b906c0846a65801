//! What the fuzz targets share: the fixed keys and configuration, a fake host, and an
//! independent oracle for "this token really is signed by the fixed keys".
//!
//! The keys are fixed so that the committed seed corpus (`fuzz/seeds.py`) can hold tokens that
//! verify: the fuzzer then starts from inputs that reach the claim checks and the header
//! mapping, and every mutation of them must be refused again.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use hmac::{KeyInit, Mac};
use serde_json::{json, Map, Value};
use tollgate::config::{Config, KeySource, ProviderId};
use tollgate::gate::{Host, KeysView};

/// "now" for every decision, in seconds since the epoch (the seeds' tokens are valid then).
pub const NOW: u64 = 1_700_000_000;
/// The fixed provider's issuer.
pub const ISS: &str = "https://idp.fuzz.example";
/// The fixed provider's audience.
pub const AUD: &str = "api://fuzz";
/// The Ed25519 private key seed (kid "ed"); `fuzz/seeds.py` uses the same bytes.
pub const ED25519_SEED: [u8; 32] = [7u8; 32];
/// The HS256 secret (kid "hs"); `fuzz/seeds.py` uses the same bytes.
pub const HMAC_SECRET: &[u8] = b"tollgate-fuzz-hs256-secret-0123456789";
/// The largest skew a configuration may set: claims are judged no stricter than this.
const MAX_SKEW: u64 = 600;

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn ed25519_public() -> VerifyingKey {
    SigningKey::from_bytes(&ED25519_SEED).verifying_key()
}

/// The inline JWKS of the fixed provider: one Ed25519 key, one HS256 secret.
pub fn fixed_jwks() -> Value {
    json!({"keys": [
        {"kty": "OKP", "crv": "Ed25519", "kid": "ed", "use": "sig",
         "x": b64(ed25519_public().as_bytes())},
        {"kty": "oct", "kid": "hs", "alg": "HS256", "k": b64(HMAC_SECRET)}
    ]})
}

/// One provider with inline keys, a few rules (scopes, claims), claim headers and the payload
/// header, so an allowed request exercises the whole header mapping.
pub fn fixed_config_json() -> Value {
    json!({
        "providers": {
            "fixed": {
                "issuer": ISS,
                "audiences": [AUD],
                "algorithms": ["EdDSA", "HS256"],
                "inline_jwks": fixed_jwks()
            }
        },
        "rules": [
            {"match": {"prefix": "/orders", "methods": ["POST"]}, "scopes": ["orders:write"]},
            {"match": {"prefix": "/admin"}, "claims": {"roles": "admin"}}
        ],
        "headers": {
            "claims": {"x-user": "sub", "x-roles": "roles", "x-plan": "tenant.plan"},
            "payload": "x-jwt-payload"
        }
    })
}

pub fn fixed_config() -> Config {
    match Config::from_json(fixed_config_json().to_string().as_bytes()) {
        Ok(c) => c,
        Err(e) => panic!("the fixed fuzz configuration is refused: {e:?}"),
    }
}

/// The gateway as the engine sees it: inline keys are ready, remote keys are unavailable, no
/// refetch is allowed, and nothing is known of introspection.
pub struct FixedHost<'c> {
    pub config: &'c Config,
}

impl Host for FixedHost<'_> {
    fn keys(&self, provider: ProviderId) -> KeysView<'_> {
        match self.config.provider(provider).and_then(|p| p.keys.as_ref()) {
            Some(KeySource::Inline(set)) => KeysView::Ready(set),
            _ => KeysView::Unavailable,
        }
    }
    fn may_refetch(&self, _: ProviderId) -> bool {
        false
    }
}

/// The token the engine reads from an `Authorization` value with the default `Bearer ` prefix.
/// A proxy may have joined several values with ","; each part (spaces trimmed at its start)
/// that starts with `Bearer ` (any case) carries a token, and they must all be the same one.
pub fn bearer_token(header: &str) -> Option<&str> {
    let mut found: Option<&str> = None;
    for part in header.split(',') {
        let part = part.trim_start_matches(' ');
        let Some(head) = part.get(..7) else { continue };
        if !head.eq_ignore_ascii_case("Bearer ") {
            continue;
        }
        let Some(token) = part
            .get(7..)
            .map(|t| t.trim_matches(' '))
            .filter(|t| !t.is_empty())
        else {
            continue;
        };
        match found {
            None => found = Some(token),
            Some(seen) if seen == token => {}
            Some(_) => return None,
        }
    }
    found
}

/// Independent of the engine: whether `token` is a strict compact JWS signed with one of the
/// fixed keys under the algorithm its header names, whose claims are from the fixed issuer
/// and not expired at [`NOW`] (within the largest skew). Anything the engine allows must pass.
pub fn signed_by_fixed_keys(token: &str) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    let [h, p, s] = parts.as_slice() else {
        return false;
    };
    let decode = |seg: &str| URL_SAFE_NO_PAD.decode(seg).ok();
    let (Some(header), Some(payload), Some(sig)) = (decode(h), decode(p), decode(s)) else {
        return false;
    };
    let Ok(Value::Object(header)) = serde_json::from_slice::<Value>(&header) else {
        return false;
    };
    let signing_input = format!("{h}.{p}");
    let signed = match header.get("alg").and_then(Value::as_str) {
        Some("EdDSA") => Signature::from_slice(&sig).is_ok_and(|sig| {
            ed25519_public()
                .verify_strict(signing_input.as_bytes(), &sig)
                .is_ok()
        }),
        Some("HS256") => {
            hmac::Hmac::<sha2::Sha256>::new_from_slice(HMAC_SECRET).is_ok_and(|mut mac| {
                mac.update(signing_input.as_bytes());
                mac.verify_slice(&sig).is_ok()
            })
        }
        _ => false,
    };
    if !signed {
        return false;
    }
    let Ok(Value::Object(claims)) = serde_json::from_slice::<Value>(&payload) else {
        return false;
    };
    claims.get("iss").and_then(Value::as_str) == Some(ISS)
        && audience_holds(&claims, &[AUD])
        && claims
            .get("exp")
            .and_then(Value::as_f64)
            .is_some_and(|exp| exp + MAX_SKEW as f64 > NOW as f64)
}

/// Whether `aud` (a string, or an array of strings) names one of `audiences`.
pub fn audience_holds(claims: &Map<String, Value>, audiences: &[&str]) -> bool {
    match claims.get("aud") {
        Some(Value::String(a)) => audiences.contains(&a.as_str()),
        Some(Value::Array(items)) => {
            items.iter().all(Value::is_string)
                && items
                    .iter()
                    .any(|a| a.as_str().is_some_and(|a| audiences.contains(&a)))
        }
        _ => false,
    }
}

/// Whether a JSON value holds a floating-point number anywhere (serde_json's default float
/// parsing is not exactly round-trip, so such values are left out of equality checks).
pub fn has_float(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.is_f64(),
        Value::Array(items) => items.iter().any(has_float),
        Value::Object(map) => map.values().any(has_float),
        _ => false,
    }
}
