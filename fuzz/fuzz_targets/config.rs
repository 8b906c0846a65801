//! `Config::from_json` on arbitrary documents; each configuration that loads then decides a
//! few requests (no token, a junk token) through a `Gate`.
//!
//! Invariants: a loaded configuration has providers with distinct issuers, rules that name
//! existing providers, and owns every header it may set; a request without a valid token is
//! allowed only by an anonymous rule.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::config::Config;
use tollgate::gate::{Gate, Verdict};
use tollgate::request::Request;
use tollgate_fuzz::{FixedHost, NOW};

fuzz_target!(|data: &[u8]| {
    let Ok(config) = Config::from_json(data) else {
        return;
    };
    assert!(!config.providers.is_empty());
    for (i, a) in config.providers.iter().enumerate() {
        for b in config.providers.iter().skip(i + 1) {
            assert_ne!(a.issuer, b.issuer);
        }
    }
    for rule in &config.rules {
        assert!(rule.providers.iter().all(|&p| p < config.providers.len()));
    }
    for name in config.headers.owned_headers() {
        assert!(config.owned_headers.iter().any(|h| h == name));
    }
    if let Some(p) = config.default_policy {
        assert!(p < config.policies.len());
    }
    let gate = Gate::new(config);
    let host = FixedHost {
        config: &gate.config,
    };
    // An unsigned-looking JWT ({} . {} . 3 bytes) and an opaque token, in the default places.
    let junk = [
        vec![],
        vec![(
            "authorization".to_string(),
            "Bearer e30.e30.AAAA".to_string(),
        )],
        vec![
            ("authorization".to_string(), "Bearer opaque".to_string()),
            ("cookie".to_string(), "session=e30.e30.AAAA".to_string()),
        ],
    ];
    for headers in &junk {
        let headers = tollgate::request::header_pairs(headers);
        for (method, path) in [("GET", "/health"), ("POST", "/orders/1?access_token=x")] {
            let req = Request {
                method,
                path,
                authority: "api.example.com",
                headers: (&headers).into(),
            };
            let decision = gate.decide(&req, &host, NOW);
            if let Verdict::Allow(_) = decision.verdict {
                let rule = decision.facts.rule.and_then(|i| gate.config.rules.get(i));
                assert!(
                    rule.is_some_and(|r| r.anonymous),
                    "allowed {method} {path} without a valid token, not by an anonymous rule"
                );
            }
        }
    }
});
