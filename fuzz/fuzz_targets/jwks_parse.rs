//! `JwkSet::parse` on arbitrary documents, as fetched (Remote) and as configured (Inline), and
//! `select` for every algorithm under every `kid` the document mentions.
//!
//! Invariants: a remote set never holds a symmetric key; a parsed set is never empty; a
//! selected key fits the algorithm and carries the asked `kid`; both origins agree on every
//! document that holds no `oct` key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::crypto::Algorithm;
use tollgate::jwk::{JwkSet, JwksLimits, KeyOrigin, KeySelection};

fn check(set: &JwkSet, kids: &[Option<&str>]) {
    assert!(!set.is_empty());
    for kid in set.kids() {
        assert!(kid.len() <= JwksLimits::default().max_kid_len);
    }
    for &kid in kids {
        for alg in Algorithm::ALL {
            if let KeySelection::Found(key) = set.select(kid, alg) {
                assert!(key.fits(alg), "{alg:?} selected a key that does not fit");
                if let Some(kid) = kid {
                    assert_eq!(key.kid.as_deref(), Some(kid));
                }
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let limits = JwksLimits::default();
    let remote = JwkSet::parse(data, KeyOrigin::Remote, &limits);
    let inline = JwkSet::parse(data, KeyOrigin::Inline, &limits);
    // Every kid the document names (parsed leniently here, so the engine's view is not
    // trusted to find them), plus no kid and one that is surely absent.
    let doc: serde_json::Value = serde_json::from_slice(data).unwrap_or_default();
    let entries = doc.get("keys").and_then(|k| k.as_array());
    let mut kids: Vec<Option<&str>> = vec![None, Some("surely-not-a-kid")];
    kids.extend(
        entries
            .into_iter()
            .flatten()
            .take(64)
            .filter_map(|e| e.get("kid")?.as_str())
            .map(Some),
    );
    let names_oct = entries
        .into_iter()
        .flatten()
        .any(|e| e.get("kty").and_then(|k| k.as_str()) == Some("oct"));
    if let Ok(set) = &remote {
        assert!(!set.has_symmetric(), "a remote JWKS gave a symmetric key");
        check(set, &kids);
        match &inline {
            Ok(inline) => assert!(inline.len() >= set.len()),
            Err(e) => panic!("inline refuses what remote accepts: {e}"),
        }
    }
    if let Ok(set) = &inline {
        check(set, &kids);
        if !names_oct {
            // Without `oct` entries the origin makes no difference.
            assert_eq!(remote.as_ref().map(|r| r.len()).ok(), Some(set.len()));
        }
    }
});
