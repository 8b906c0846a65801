//! `UntrustedToken::parse` on arbitrary strings, then `verify` against one key of every type.
//!
//! Invariants: a parsed token is a compact JWS of exactly three non-empty segments within the
//! length cap; each segment re-encodes (strict base64url) to exactly what was sent; `alg` is
//! never `none`, `kid` is short; `claimed_issuer` is the payload's `iss`; a key verifies a
//! token only under an algorithm that fits it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use tollgate::b64;
use tollgate::jwk::{JwkSet, JwksLimits, KeyOrigin, KeySelection};
use tollgate::jws::{UntrustedToken, MAX_KID_LEN, MAX_TOKEN_LEN};

/// A key for every algorithm: the fixed Ed25519 and HS256 keys, and `keys/verify_keys.json`
/// (the RSA, EC and HS384/512 keys `seeds.py` signed the corpus tokens with, and the keys of the
/// Wycheproof JWK groups whose tokens are valid), so the seed tokens verify.
fn keys() -> &'static JwkSet {
    static KEYS: OnceLock<JwkSet> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut jwks = tollgate_fuzz::fixed_jwks();
        let extra: serde_json::Value =
            serde_json::from_str(include_str!("../keys/verify_keys.json")).unwrap_or_default();
        if let (Some(keys), Some(more)) = (
            jwks.get_mut("keys").and_then(|k| k.as_array_mut()),
            extra.get("keys").and_then(|k| k.as_array()),
        ) {
            keys.extend(more.iter().cloned());
        }
        match JwkSet::from_value(&jwks, KeyOrigin::Inline, &JwksLimits::default()) {
            Ok(set) => set,
            Err(e) => panic!("fuzz keys refused: {e}"),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(token) = UntrustedToken::parse(text) else {
        return;
    };
    assert!(text.len() <= MAX_TOKEN_LEN);
    let segments: Vec<&str> = text.split('.').collect();
    assert_eq!(segments.len(), 3, "not three segments: {text:?}");
    for seg in &segments {
        assert!(!seg.is_empty(), "empty segment in {text:?}");
        let bytes = b64::decode(seg).unwrap_or_else(|e| panic!("segment {seg:?}: {e}"));
        assert_eq!(&b64::encode(&bytes), seg, "non-canonical segment accepted");
    }
    assert_eq!(token.payload_segment, segments[1]);
    // The payload the token carries is exactly the claims that were parsed.
    let payload: serde_json::Value =
        serde_json::from_slice(&b64::decode(segments[1]).unwrap_or_default()).unwrap_or_default();
    assert_eq!(
        payload.as_object().map(|m| m.len()),
        Some(token.unverified_claims.len())
    );
    assert_eq!(
        token.claimed_issuer(),
        token.unverified_claims.get("iss").and_then(|v| v.as_str())
    );
    assert!(!token.header.alg.name().eq_ignore_ascii_case("none"));
    if let Some(kid) = &token.header.kid {
        assert!(!kid.is_empty() && kid.len() <= MAX_KID_LEN);
    }
    let alg = token.header.alg;
    match keys().select(token.header.kid.as_deref(), alg) {
        KeySelection::Found(key) => {
            assert!(key.fits(alg), "selected a key that does not fit {alg:?}");
            if let Some(kid) = &token.header.kid {
                assert_eq!(key.kid.as_ref(), Some(kid));
            }
            if let Ok(verified) = token.verify(key) {
                assert_eq!(verified.header.alg, alg);
            }
        }
        _ => {
            // No key by kid: still run the signature code of a key of the right type.
            if let KeySelection::Found(key) = keys().select(None, alg) {
                let _ = token.verify(key);
            }
        }
    }
});
