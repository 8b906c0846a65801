//! Introspection answers: `parse_answer` on arbitrary bodies, `CachedAnswer::decode` on
//! arbitrary cache entries, `check_active` on what parses, and a whole `Gate::decide` for an
//! opaque token whose (fuzzed) answer the host holds.
//!
//! Invariants: an active answer says `active: true`, an inactive one keeps nothing; a cache
//! entry round-trips through `encode`/`decode`; `check_active` accepts only answers naming an
//! accepted audience, the provider's issuer (if any) and the required `token_type`; the gate
//! allows the opaque token exactly when `check_active` accepts its answer, and decides the same
//! with the answer's `check_answer` handed in (as a worker does for the answers it keeps).
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value};
use std::sync::OnceLock;
use tollgate::claims::Claims;
use tollgate::config::{Config, ProviderId};
use tollgate::denial::Denial;
use tollgate::gate::{Gate, Host, IntrospectionView, KeysView, TokenDigest, Verdict};
use tollgate::introspection::{
    check_active, check_answer, parse_answer, token_hash, Answer, CachedAnswer, CheckedAnswer,
    MAX_CACHED_BYTES,
};
use tollgate::request::Request;
use tollgate_fuzz::{audience_holds, has_float, NOW};

const ISS: &str = "https://op.fuzz.example";
const OPAQUE: &str = "opaque-access-token";

/// Two introspecting providers: `strict` wants `token_type: Bearer` and bounds lifetimes;
/// `plain` checks only what every answer is held to.
fn gates() -> &'static [Gate; 2] {
    static GATES: OnceLock<[Gate; 2]> = OnceLock::new();
    GATES.get_or_init(|| {
        let provider = |extra: Value| {
            let mut p = json!({
                "issuer": ISS,
                "audiences": ["api://fuzz", "other"],
                "verify": "introspection",
                "introspection": {"endpoint": "https://op.fuzz.example/token/introspection",
                                  "cluster": "op", "client_id": "gateway",
                                  "client_secret": "s3cret"}
            });
            if let (Some(p), Value::Object(extra)) = (p.as_object_mut(), extra) {
                for (k, v) in extra {
                    match (k.as_str(), p.get_mut("introspection")) {
                        ("token_type", Some(Value::Object(i))) => {
                            i.insert(k, v);
                        }
                        _ => {
                            p.insert(k, v);
                        }
                    }
                }
            }
            let config = json!({
                "providers": {"op": p},
                "headers": {"claims": {"x-user": "sub", "x-client": "client_id"}}
            });
            match Config::from_json(config.to_string().as_bytes()) {
                Ok(c) => Gate::new(c),
                Err(e) => panic!("fuzz configuration refused: {e:?}"),
            }
        };
        [
            provider(json!({"token_type": "Bearer", "max_lifetime_seconds": 3600,
                            "clock_skew_seconds": 0})),
            provider(json!({})),
        ]
    })
}

struct AnswerHost {
    claims: std::rc::Rc<Claims>,
    checked: Option<Result<CheckedAnswer, Denial>>,
}

impl Host for AnswerHost {
    fn keys(&self, _: ProviderId) -> KeysView<'_> {
        KeysView::Unavailable
    }
    fn may_refetch(&self, _: ProviderId) -> bool {
        false
    }
    fn introspection(&self, _: ProviderId, digest: &TokenDigest) -> IntrospectionView {
        if *digest.get() == token_hash(OPAQUE) {
            IntrospectionView::Active {
                claims: std::rc::Rc::clone(&self.claims),
                cached: true,
                checked: self.checked.clone(),
            }
        } else {
            IntrospectionView::Unknown
        }
    }
}

fn check_claims(claims: &Map<String, Value>) {
    assert_eq!(claims.get("active"), Some(&Value::Bool(true)));
    for gate in gates() {
        let provider = &gate.config.providers[0];
        let Some(cfg) = &provider.introspection else {
            panic!("the fuzz provider does not introspect");
        };
        let verdict = check_active(claims, provider, cfg, NOW);
        if verdict.is_ok() {
            assert!(audience_holds(claims, &["api://fuzz", "other"]));
            assert!(claims.get("iss").is_none_or(|i| i == ISS));
            assert!(claims.get("client_id").is_none_or(Value::is_string));
            if let Some(required) = &cfg.token_type {
                let t = claims.get("token_type").and_then(Value::as_str);
                assert!(t.is_some_and(|t| t.eq_ignore_ascii_case(required)));
            }
        }
        let authorization = format!("Bearer {OPAQUE}");
        let headers = [("authorization", authorization.as_str())];
        let req = Request {
            method: "GET",
            path: "/anything",
            authority: "api.example.com",
            headers: tollgate::request::Headers::Pairs(&headers),
        };
        let mut host = AnswerHost {
            claims: std::rc::Rc::new(Claims::from(claims.clone())),
            checked: None,
        };
        let decision = gate.decide(&req, &host, NOW);
        match (&decision.verdict, &verdict) {
            (Verdict::Allow(_), Ok(())) | (Verdict::Deny(_), Err(_)) => {}
            (got, want) => panic!("gate says {got:?}, check_active says {want:?}"),
        }
        host.checked = Some(check_answer(claims, provider, cfg));
        let kept = gate.decide(&req, &host, NOW);
        assert_eq!(
            kept.verdict, decision.verdict,
            "the kept check decides otherwise"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    assert!(parse_answer(None, data).is_err());
    assert!(parse_answer(Some(500), data).is_err());
    match parse_answer(Some(200), data) {
        Ok(Answer::Active(claims)) => {
            check_claims(&claims);
            let answer = Answer::Active(claims);
            let entry = CachedAnswer::new(token_hash(OPAQUE), &answer, NOW * 1000 + 1);
            if let Some(bytes) = entry.encode() {
                assert!(bytes.len() <= MAX_CACHED_BYTES);
                let back = CachedAnswer::decode(&bytes);
                assert!(back.is_some(), "an encoded answer does not decode");
                if !entry.claims.iter().any(|(_, v)| has_float(v)) {
                    assert_eq!(back.as_ref(), Some(&entry));
                }
            }
        }
        Ok(Answer::Inactive) => {
            let v: Value = serde_json::from_slice(data).unwrap_or_default();
            assert_eq!(v.get("active"), Some(&Value::Bool(false)));
        }
        Err(_) => {}
    }
    if let Some(entry) = CachedAnswer::decode(data) {
        assert!(data.len() <= MAX_CACHED_BYTES);
        if entry.active {
            check_claims(&entry.claims.to_map());
        } else {
            assert!(entry.claims.is_empty());
        }
        assert_eq!(entry.answer() == Answer::Inactive, !entry.active);
        // Re-encoding may grow (`1e2` is written `100.0`) past the cap: then it is not cached.
        if let Some(bytes) = entry.encode() {
            let again = CachedAnswer::decode(&bytes);
            assert!(
                again.is_some(),
                "a decoded entry does not decode once re-encoded"
            );
            if !entry.claims.iter().any(|(_, v)| has_float(v)) {
                assert_eq!(again.as_ref(), Some(&entry));
            }
        }
        assert!(!entry.fresh_for(&[0xff; 32], 0) || entry.token_hash == [0xff; 32]);
    }
});
