//! The reader against serde's derived readers (with `serde_path_to_error` naming the path),
//! which it replaced: named cases, every small edit of realistic configurations, every value of
//! them swapped for another type, and random documents. Where serde reads a configuration, the
//! reader reads the same; where serde stops at a mistake, the reader names that mistake too
//! (among the others it finds). The one difference allowed: serde also read a struct from an
//! array of its fields, which the reader refuses.

use super::{config_file, MAX_DEPTH};
use crate::config::ConfigFile;
use proptest::prelude::*;
use serde_json::{json, Value};

/// Every mistake the reader names in `json` as (path, message); empty when it reads.
fn mistakes(json: &str) -> Vec<(String, String)> {
    match config_file(json.as_bytes()) {
        Ok(_) => vec![],
        Err(errors) => errors.0.into_iter().map(|e| (e.path, e.message)).collect(),
    }
}

/// The one mistake the reader names in `json`.
fn mistake(json: &str) -> (String, String) {
    let found = mistakes(json);
    assert_eq!(found.len(), 1, "{json}: {found:?}");
    found.into_iter().next().unwrap_or_default()
}

/// What serde's derived readers made of `json`: the file, or the path and message of the
/// first mistake (without serde_json's position).
fn serde_reads(json: &[u8]) -> Result<String, (String, String)> {
    let mut de = serde_json::Deserializer::from_slice(json);
    let read = serde_path_to_error::deserialize::<_, ConfigFile>(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let message = e.inner().to_string();
        let message = message.split(" at line ").next().unwrap_or("").to_string();
        (path, message)
    })?;
    de.end().map_err(|e| (String::new(), e.to_string()))?;
    Ok(format!("{read:?}"))
}

/// The refusal of an array where a struct belongs, which serde accepted.
fn struct_from_array(message: &str) -> bool {
    message.starts_with("invalid type: sequence, expected struct ")
}

/// Compares the reader with serde's on `json`; 1 when the reader refuses it, 0 when it reads.
fn compare(json: &[u8], mismatches: &mut Vec<String>) -> usize {
    let text = String::from_utf8_lossy(json);
    let theirs = serde_reads(json);
    let mut differ = |why: String| mismatches.push(format!("{text}\n  {why}"));
    // Not JSON, or a name given twice, or nested deeper than the reader allows: the parse's
    // message, at the root. serde refuses the same text unless it is one of the last two.
    if let Err(parse) = crate::json::parse_strict(json, MAX_DEPTH) {
        let ours = config_file(json).map(|_| ()).map_err(|e| e.0);
        let at_root = vec![crate::config::ConfigError {
            path: String::new(),
            message: parse.clone(),
        }];
        if ours != Err(at_root) {
            differ(format!("the parse said {parse:?}, the reader {ours:?}"));
        }
        let strict_only = parse.starts_with("duplicate member") || parse.starts_with("JSON nested");
        if theirs.is_ok() && !strict_only {
            differ(format!("serde read what the parse refused: {parse:?}"));
        }
        return 1;
    }
    match (config_file(json), theirs) {
        (Ok(ours), Ok(theirs)) => {
            if format!("{ours:?}") != theirs {
                differ(format!("read differently:\n  {ours:?}\n  {theirs}"));
            }
            0
        }
        (Ok(_), Err(theirs)) => {
            differ(format!("serde refused it, {theirs:?}"));
            0
        }
        (Err(ours), theirs) => {
            let ours: Vec<(String, String)> =
                ours.0.into_iter().map(|e| (e.path, e.message)).collect();
            let array = ours.iter().any(|(_, m)| struct_from_array(m));
            match theirs {
                Ok(_) if !array => differ(format!("serde read it, the reader said {ours:?}")),
                Err(theirs) if !array && !ours.contains(&theirs) => {
                    differ(format!("serde said {theirs:?}, the reader {ours:?}"))
                }
                _ => {}
            }
            1
        }
    }
}

fn assert_none(mismatches: &[String], errors: usize) {
    assert!(
        mismatches.is_empty(),
        "{} of {errors} differ, e.g.\n{}",
        mismatches.len(),
        mismatches[..mismatches.len().min(8)].join("\n")
    );
}

#[test]
fn nested_objects_and_arrays_are_named_by_their_path() {
    assert_eq!(
        mistake(
            r#"{"providers": {"corp": {"issuer": "x", "audiences": ["a"], "jwks": {"uri": 5, "cluster": "c"}}}}"#
        ),
        (
            "providers.corp.jwks.uri".into(),
            "invalid type: integer `5`, expected a string".into()
        )
    );
    let json = r#"{
        "providers": {},
        "policies": [
            {"name": "a"},
            {"name": "b", "rate_limits": [{"requests": 5, "per": "1s"}, {"requests": "5", "per": "1s"}]}
        ]
    }"#;
    assert_eq!(
        mistake(json),
        (
            "policies[1].rate_limits[1].requests".into(),
            "invalid type: string \"5\", expected u64".into()
        )
    );
    let json = r#"{"providers": {}, "policies": [{"name": "a", "when": [{"claim": "x", "any_of": [[]]}]}]}"#;
    assert_eq!(mistake(json).0, "policies[0].when[0].any_of[0]");
    let json = r#"{"providers": {}, "rules": [{"match": {"methods": {}}}]}"#;
    assert_eq!(
        mistake(json),
        (
            "rules[0].match.methods".into(),
            "invalid type: map, expected a sequence".into()
        )
    );
    let json =
        r#"{"providers": {"we\"ird[0].name}": {"issuer": "a\"}]\\", "audiences": ["\\\"[{", 7]}}}"#;
    assert_eq!(mistake(json).0, "providers.we\"ird[0].name}.audiences[1]");
}

#[test]
fn unknown_and_missing_fields() {
    assert_eq!(
        mistake(r#"{"providers": {}, "rules": [{"match": {}, "scope": []}]}"#),
        (
            "rules[0].scope".into(),
            "unknown field `scope`, expected one of `match`, `anonymous`, `providers`, `scopes`, `claims`".into()
        )
    );
    assert_eq!(
        mistake(r#"{"providers": {"a": {"issuer": "x", "audiences": [], "jwks": {"uri": "u"}}}}"#),
        ("providers.a.jwks".into(), "missing field `cluster`".into())
    );
    assert_eq!(
        mistake(r#"{"providers": {}, "rules": [{"match": {}}, {"anonymous": true}  ]}"#),
        ("rules[1]".into(), "missing field `match`".into())
    );
    assert_eq!(
        mistake("{}"),
        ("".into(), "missing field `providers`".into())
    );
}

#[test]
fn numbers_out_of_their_range_or_of_the_wrong_kind() {
    for (value, message) in [
        (
            "5000000000",
            "invalid value: integer `5000000000`, expected u32",
        ),
        ("-1", "invalid value: integer `-1`, expected u32"),
        ("1.5", "invalid type: floating point `1.5`, expected u32"),
        ("1e2", "invalid type: floating point `100.0`, expected u32"),
        ("-0", "invalid type: floating point `-0.0`, expected u32"),
        ("\"5\"", "invalid type: string \"5\", expected u32"),
        ("true", "invalid type: boolean `true`, expected u32"),
    ] {
        let json = format!(r#"{{"providers": {{}}, "token_cache_entries": {value}}}"#);
        assert_eq!(
            mistake(&json),
            ("token_cache_entries".into(), message.into()),
            "{json}"
        );
    }
    let json = r#"{"providers": {}, "token_cache_bytes": 18446744073709551615}"#;
    assert!(mistakes(json).is_empty());
    let json = r#"{"providers": {}, "audit": {"sample_allowed": 1}}"#;
    assert!(mistakes(json).is_empty(), "an integer is an f64 too");
}

#[test]
fn null_is_none_for_an_optional_field_and_a_wrong_type_elsewhere() {
    assert!(mistakes(r#"{"providers": {}, "realm": null, "default_policy": null}"#).is_empty());
    assert_eq!(
        mistake(r#"{"providers": {}, "rules": null}"#),
        (
            "rules".into(),
            "invalid type: null, expected a sequence".into()
        )
    );
    assert_eq!(
        mistake(r#"{"providers": null}"#),
        (
            "providers".into(),
            "invalid type: null, expected a map".into()
        )
    );
}

#[test]
fn claim_values_are_named_by_their_member() {
    let bad = "data did not match any variant of untagged enum ClaimValuesFile";
    for (claims, at) in [
        (r#"{"roles": 5}"#, "roles"),
        (r#"{"roles": ["a", 1]}"#, "roles"),
        (r#"{"roles": {"a": ["b"]}}"#, "roles"),
        (r#"{"roles": [], "x": null }"#, "x"),
        (r#"{"roles": [["a"]] , "x": "y"}"#, "roles"),
    ] {
        let json =
            format!(r#"{{"providers": {{}}, "rules": [{{"match": {{}}, "claims": {claims}}}]}}"#);
        assert_eq!(
            mistake(&json),
            (format!("rules[0].claims.{at}"), bad.to_string()),
            "{json}"
        );
    }
}

#[test]
fn every_mistake_is_named_not_only_the_first() {
    let json = r#"{
        "providers": {"a": {"issuer": 1, "audience": ["x"]}},
        "rules": [{"match": {"prefix": 2}}, {"anonymous": "yes"}],
        "realm": false
    }"#;
    assert_eq!(
        mistakes(json),
        vec![
            ("providers.a.audience".into(), "unknown field `audience`, expected one of `issuer`, `audiences`, `algorithms`, `token_from`, `clock_skew_seconds`, `require_exp`, `max_lifetime_seconds`, `token_type`, `jwks`, `discovery`, `inline_jwks`, `verify`, `introspection`".into()),
            ("providers.a.issuer".into(), "invalid type: integer `1`, expected a string".into()),
            ("providers.a".into(), "missing field `audiences`".into()),
            ("rules[0].match.prefix".into(), "invalid type: integer `2`, expected a string".into()),
            ("rules[1]".into(), "missing field `match`".into()),
            ("rules[1].anonymous".into(), "invalid type: string \"yes\", expected a boolean".into()),
            ("realm".into(), "invalid type: boolean `false`, expected a string".into()),
        ]
    );
}

#[test]
fn text_that_is_not_one_json_object_is_refused_with_its_position() {
    for (json, message) in [
        ("", "EOF while parsing a value at line 1 column 0"),
        ("{\"providers\": {},}", "trailing comma at line 1 column 18"),
        (
            "{\"providers\": {}} x",
            "trailing characters at line 1 column 19",
        ),
        (
            "\"x\"",
            "invalid type: string \"x\", expected struct ConfigFile",
        ),
        ("[]", "invalid type: sequence, expected struct ConfigFile"),
    ] {
        assert_eq!(mistake(json), ("".into(), message.into()), "{json:?}");
    }
}

#[test]
fn a_name_given_twice_is_refused_even_where_serde_kept_the_last() {
    let (at, message) = mistake(r#"{"providers": {"a": {}, "a": {}}}"#);
    assert_eq!(at, "");
    assert!(message.starts_with("duplicate member \"a\""), "{message}");
    assert!(serde_reads(br#"{"providers": {"a": {"issuer": "i", "audiences": []}, "a": {"issuer": "j", "audiences": []}}}"#).is_ok());
}

#[test]
fn a_struct_is_an_object_not_a_list_of_its_fields() {
    let json = r#"{"providers": {}, "audit": [true, 0.5]}"#;
    assert!(serde_reads(json.as_bytes()).is_ok(), "serde took it");
    assert_eq!(
        mistake(json),
        (
            "audit".into(),
            "invalid type: sequence, expected struct AuditFile".into()
        )
    );
}

#[test]
fn the_seeds_read_as_serde_read_them() {
    let mut mismatches = Vec::new();
    for text in seed_texts() {
        assert!(mistakes(&text).is_empty(), "{text}: {:?}", mistakes(&text));
        assert_eq!(compare(text.as_bytes(), &mut mismatches), 0);
    }
    assert_none(&mismatches, 0);
}

/// Realistic configurations, every field used.
fn seeds() -> Vec<Value> {
    vec![
        json!({
            "providers": {
                "corp": {
                    "issuer": "https://idp.example.com",
                    "audiences": ["api://orders", "x\"y"],
                    "algorithms": ["RS256", "ES256"],
                    "token_from": [{"header": "authorization", "prefix": "Bearer "}, {"cookie": "t"}],
                    "clock_skew_seconds": 30,
                    "require_exp": true,
                    "token_type": "at+jwt",
                    "jwks": {"uri": "https://idp.example.com/jwks", "cluster": "idp", "timeout_ms": 100},
                    "introspection": {"cluster": "idp", "client_id": "gw", "client_secret": "s",
                                      "cache_entries": 10, "introspect_jwts": false}
                },
                "lab[1].x": {
                    "issuer": "https://lab",
                    "audiences": [],
                    "inline_jwks": {"keys": [{"kty": "oct", "k": "AAAA", "n": [1, 2.5, -3e2, null, {"a": [true]}]}]}
                }
            },
            "rules": [
                {"match": {"prefix": "/health"}, "anonymous": true},
                {"match": {"prefix": "/orders", "methods": ["POST"], "host": "*.example.com"},
                 "providers": ["corp"], "scopes": ["orders:write"],
                 "claims": {"roles": ["admin", "buyer"], "tier": "gold"}}
            ],
            "headers": {"claims": {"X-User": "sub"}, "payload": "x-jwt-payload", "strip_token": true},
            "realm": "tollgate",
            "keys_wait_timeout_ms": 5000,
            "audit": {"enabled": true, "sample_allowed": 0.5},
            "policies": [
                {"name": "gold", "when": [{"claim": "scope", "contains": "gold"}, {"claim": "g", "any_of": ["a"]}],
                 "allow": [{"prefix": "/"}], "deny": [{"path": "/admin"}], "headers": {"x-plan": "gold"},
                 "rate_limits": [{"name": "r", "requests": 10, "per": "1s", "burst": 20, "key": "sub", "max_keys": 8}],
                 "quotas": [{"requests": 1000, "per": "day"}]}
            ],
            "default_policy": "gold",
            "rate_limit_headers": false,
            "token_cache_entries": 100
        }),
        json!({"providers": {"a": {"issuer": "https://a", "audiences": ["x"],
               "discovery": {"cluster": "c"}}}, "rules": [], "policies": []}),
    ]
}

/// The seeds as text: compact, pretty (errors on later lines) and with escapes in names.
fn seed_texts() -> Vec<String> {
    let mut texts = Vec::new();
    for seed in seeds() {
        texts.push(seed.to_string());
        texts.push(serde_json::to_string_pretty(&seed).unwrap());
    }
    texts.push(
        "{\"providers\":{\"c\\u006frp\":{\"issuer\":\"https://a\",\"audiences\":[\"a\"],\r\n\t\"jwks\":{\"uri\":\"https://a/k\",\"cluster\":\"c\"}}},\"rules\":[{\"match\":{\"prefix\":\"/\"},\"claims\":{\"r\\\"\":\"v\"}}]}"
            .to_string(),
    );
    texts
}

/// The pieces inserted and swapped in by the byte-level edits.
const PIECES: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\"",
    "\\",
    " ",
    "\n",
    "x",
    "0",
    "-",
    "1e999",
    "null",
    "[1]",
    "{}",
    "\"zz\":1,",
    "\"realm\":\"r\",",
    "\"issuer\":\"i\",",
    "\u{1}",
];

/// A quarter of the edits in wasm32 (`make unit-wasm`, debug code under V8).
const SPREAD: usize = if cfg!(target_arch = "wasm32") { 4 } else { 1 };

#[test]
fn every_small_edit_of_a_config_reads_as_serde_read_it() {
    let mut mismatches = Vec::new();
    let mut errors = 0;
    for (t, text) in seed_texts().iter().enumerate() {
        let bytes = text.as_bytes();
        // Each position is cut, loses its byte, and gets every `spread`th piece inserted and
        // swapped in, the next position the next ones: every piece meets every kind of place.
        // Multi-line texts are longer and spread thinner.
        let spread = SPREAD * if text.contains('\n') { 8 } else { 3 };
        for i in (0..=bytes.len()).step_by(SPREAD) {
            let (head, tail) = bytes.split_at(i);
            let after = tail.get(1..).unwrap_or_default();
            let mut docs = vec![head.to_vec(), [head, after].concat()];
            for piece in PIECES
                .iter()
                .skip((i / SPREAD + t) % spread)
                .step_by(spread)
            {
                docs.push([head, piece.as_bytes(), tail].concat());
                docs.push([head, piece.as_bytes(), after].concat());
            }
            for doc in docs {
                errors += compare(&doc, &mut mismatches);
            }
        }
    }
    assert!(errors > 30_000 / SPREAD / SPREAD, "only {errors} errors");
    assert_none(&mismatches, errors);
}

/// Every node of `value` replaced by `with`, one at a time.
fn replacements(value: &Value, with: &Value, out: &mut Vec<Value>) {
    out.push(with.clone());
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let mut inner = Vec::new();
                replacements(v, with, &mut inner);
                for r in inner {
                    let mut m = map.clone();
                    m.insert(k.clone(), r);
                    out.push(Value::Object(m));
                }
                let mut without = map.clone();
                without.remove(k);
                out.push(Value::Object(without));
            }
            let mut extra = map.clone();
            extra.insert("zz".into(), json!(1));
            out.push(Value::Object(extra));
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                let mut inner = Vec::new();
                replacements(v, with, &mut inner);
                for r in inner {
                    let mut a = items.clone();
                    a[i] = r;
                    out.push(Value::Array(a));
                }
            }
        }
        _ => {}
    }
}

#[test]
fn every_value_of_another_type_reads_as_serde_read_it() {
    let mut mismatches = Vec::new();
    let mut errors = 0;
    for seed in seeds() {
        for with in [
            json!(1),
            json!(-1),
            json!(1.5),
            json!(5_000_000_000u64),
            json!("s"),
            json!(true),
            json!(null),
            json!([]),
            json!(["s"]),
            json!([{}]),
            json!({}),
            json!({"zz": [1]}),
        ] {
            let mut docs = Vec::new();
            replacements(&seed, &with, &mut docs);
            for doc in docs.iter().step_by(SPREAD) {
                for text in [doc.to_string(), serde_json::to_string_pretty(doc).unwrap()] {
                    errors += compare(text.as_bytes(), &mut mismatches);
                }
            }
        }
    }
    assert!(errors > 2_000 / SPREAD, "only {errors} errors");
    assert_none(&mismatches, errors);
}

/// JSON-ish text from tokens: mostly well formed, sometimes not.
fn jsonish() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("{"),
        Just("}"),
        Just("["),
        Just("]"),
        Just(","),
        Just(":"),
        Just(" "),
        Just("\n"),
        Just("\"a\""),
        Just("\"b\\\"]\""),
        Just("\"providers\""),
        Just("\"rules\""),
        Just("\"match\""),
        Just("\"claims\""),
        Just("\"realm\""),
        Just("1"),
        Just("-2.5e3"),
        Just("true"),
        Just("null"),
        Just("\""),
        Just("x"),
    ];
    proptest::collection::vec(token, 0..40).prop_map(|tokens| tokens.concat())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: if cfg!(target_arch = "wasm32") { 128 } else { 512 },
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_documents_read_as_serde_read_them(text in jsonish()) {
        let mut mismatches = Vec::new();
        compare(text.as_bytes(), &mut mismatches);
        prop_assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    }

    #[test]
    fn random_edits_of_a_config_read_as_serde_read_them(
        edits in proptest::collection::vec(
            (any::<prop::sample::Index>(), 0usize..4, prop::sample::select(PIECES)),
            1..4,
        ),
        which in any::<prop::sample::Index>(),
    ) {
        let texts = seed_texts();
        let mut doc = texts[which.index(texts.len())].clone().into_bytes();
        for (at, cut, piece) in edits {
            let i = at.index(doc.len() + 1);
            let j = (i + cut).min(doc.len());
            doc.splice(i..j, piece.bytes());
        }
        let mut mismatches = Vec::new();
        compare(&doc, &mut mismatches);
        prop_assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    }
}
