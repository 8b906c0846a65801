//! `KeysRecord::decode` on arbitrary shared state, then `apply_jwks` with an arbitrary answer.
//!
//! Input: the record's JSON, a 0 byte, then the JWKS body (no 0 byte: no answer at all).
//!
//! Invariants: the scheduling queries never panic on any record; a good answer leaves keys
//! that are ready now and that `key_set` parses again; a bad one keeps the last good keys,
//! counts a failure and backs off into the future; the record round-trips through
//! `encode`/`decode`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use tollgate::config::{Config, KeySource, RemoteKeys};
use tollgate::keys::{Availability, FetchAnswer, FetchReason, KeysRecord};

const NOW_MS: u64 = tollgate_fuzz::NOW * 1000;

fn remote() -> &'static RemoteKeys {
    static REMOTE: OnceLock<RemoteKeys> = OnceLock::new();
    REMOTE.get_or_init(|| {
        let config = br#"{"providers": {"p": {"issuer": "https://idp.fuzz.example",
            "audiences": ["a"], "jwks": {"uri": "https://idp.fuzz.example/jwks",
            "cluster": "idp"}}}}"#;
        match Config::from_json(config).map(|mut c| c.providers.remove(0).keys) {
            Ok(Some(KeySource::Remote(r))) => r,
            other => panic!("fuzz configuration: {other:?}"),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let (record, answer) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    let Some(mut record) = KeysRecord::decode(record) else {
        return;
    };
    let cfg = remote();
    assert_eq!(KeysRecord::decode(&record.encode()).as_ref(), Some(&record));
    for now in [0, NOW_MS, NOW_MS * 10] {
        let _ = record.availability(now);
        let _ = record.availability_for_request(now, false, 5000, false);
        let _ = record.fetch_due(now);
        let _ = record.may_refetch_for_kid(now, cfg);
        let _ = record.needs_discovery(cfg);
        let _ = record.jwks_url(cfg);
    }
    let before = record.clone();
    record.start_fetch(FetchReason::UnknownKid, NOW_MS);
    let answer = FetchAnswer {
        status: answer.map(|_| 200),
        cache_control: Some("public, max-age=300"),
        body: answer.unwrap_or_default(),
        oversized: false,
    };
    match record.apply_jwks(answer, cfg, NOW_MS, 12345) {
        Ok(set) => {
            assert!(!set.is_empty());
            assert_eq!(record.availability(NOW_MS), Availability::Ready);
            let again = record.key_set(NOW_MS);
            assert_eq!(
                again.map(|s| s.len()),
                Some(set.len()),
                "stored keys do not parse"
            );
            assert_eq!(record.failures, 0);
        }
        Err(_) => {
            assert_eq!(record.jwks, before.jwks, "a bad answer replaced the keys");
            assert!(record.failures >= 1);
            assert!(record.next_attempt_ms > NOW_MS);
        }
    }
    assert_eq!(KeysRecord::decode(&record.encode()).as_ref(), Some(&record));
});
