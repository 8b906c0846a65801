//! `error_path` against `serde_path_to_error`, the mechanism it replaces: named cases, every
//! small edit of realistic configurations, every value of them swapped for another type, and
//! random documents.

use super::error_path;
use crate::config::ConfigFile;
use proptest::prelude::*;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// (path, message) from `error_path`, `None` when `T` reads `json`.
fn new<T: DeserializeOwned>(json: &[u8]) -> Option<(String, String)> {
    let mut de = serde_json::Deserializer::from_slice(json);
    T::deserialize(&mut de)
        .err()
        .map(|e| (error_path(json, &e), e.to_string()))
}

/// (path, message) from `serde_path_to_error`, as `Config::from_json` used it.
fn old<T: DeserializeOwned>(json: &[u8]) -> Option<(String, String)> {
    let mut de = serde_json::Deserializer::from_slice(json);
    serde_path_to_error::deserialize::<_, T>(&mut de)
        .err()
        .map(|e| {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            (path, e.inner().to_string())
        })
}

/// The path `error_path` gives for `json` read as `T`, checked against the old mechanism.
fn path<T: DeserializeOwned>(json: &str) -> (String, String) {
    let got = new::<T>(json.as_bytes());
    assert_eq!(got, old::<T>(json.as_bytes()), "for {json}");
    let (path, message) = got.unwrap_or_else(|| panic!("{json} was read"));
    let message = match message.find(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message,
    };
    (path, message)
}

fn config(json: &str) -> (String, String) {
    path::<ConfigFile>(json)
}

#[test]
fn nested_objects_and_arrays() {
    assert_eq!(
        config(
            r#"{"providers": {"corp": {"issuer": "x", "audiences": ["a"], "jwks": {"uri": 5, "cluster": "c"}}}}"#
        ),
        (
            "providers.corp.jwks.uri".into(),
            "invalid type: integer `5`, expected a string".into()
        )
    );
    type Nested = BTreeMap<String, Vec<Vec<BTreeMap<String, u8>>>>;
    assert_eq!(
        path::<Nested>(r#"{"a": [[], [{"b": 1}, {"c": 2, "d": 300}]]}"#).0,
        "a[1][1].d"
    );
    assert_eq!(path::<Vec<Vec<u8>>>("[[1], [2, -3]]").0, "[1][1]");
    assert_eq!(path::<Vec<Vec<u8>>>("[[1], [2, 3,]]").0, "[1]");
    assert_eq!(path::<BTreeMap<String, u8>>(r#"{"": 1, "x": true}"#).0, "x");
}

#[test]
fn strings_with_escaped_quotes_and_brackets() {
    let json =
        r#"{"providers": {"we\"ird[0].name}": {"issuer": "a\"}]\\", "audiences": ["\\\"[{", 7]}}}"#;
    assert_eq!(config(json).0, "providers.we\"ird[0].name}.audiences[1]");
    let json = r#"{"providers": {"\u00e9\ud83d\ude00\n\/": {"issuer": 1}}}"#;
    assert_eq!(config(json).0, "providers.é😀\n/.issuer");
    // An error inside a key: the key was not read.
    assert_eq!(config(r#"{"providers": {"a\x": {}}}"#).0, "providers.?");
    assert_eq!(
        config(r#"{"providers": {"a": {"issuer": "\u12"}}}"#).0,
        "providers.a.issuer"
    );
}

#[test]
fn unknown_and_duplicate_fields() {
    assert_eq!(
        config(r#"{"providers": {}, "rules": [{"match": {}, "scope": []}]}"#),
        (
            "rules[0].scope".into(),
            "unknown field `scope`, expected one of `match`, `anonymous`, `providers`, `scopes`, `claims`".into()
        )
    );
    assert_eq!(config(r#"{"providers": {}, "realm" : 1}"#).0, "realm");
    // serde_path_to_error names the object of a duplicate field, not the field.
    assert_eq!(
        config(r#"{"providers": {}, "realm": "a", "realm" : "b"}"#),
        ("".into(), "duplicate field `realm`".into())
    );
    assert_eq!(
        config(r#"{"providers": {}, "audit": {"enabled": true, "enabled": false}}"#).0,
        "audit"
    );
}

#[test]
fn missing_fields_are_reported_at_the_end_of_the_object() {
    assert_eq!(
        config(r#"{"providers": {"a": {"issuer": "x", "audiences": [], "jwks": {"uri": "u"}}}}"#),
        ("providers.a.jwks".into(), "missing field `cluster`".into())
    );
    assert_eq!(
        config(r#"{"providers": {}, "rules": [{"match": {}}, {"anonymous": true}  ]}"#),
        ("rules[1]".into(), "missing field `match`".into())
    );
    assert_eq!(
        config("{}"),
        ("".into(), "missing field `providers`".into())
    );
}

#[test]
fn invalid_type_deep_in_an_array_of_objects() {
    let json = r#"{
        "providers": {},
        "policies": [
            {"name": "a"},
            {"name": "b", "rate_limits": [{"requests": 5, "per": "1s"}, {"requests": "5", "per": "1s"}]}
        ]
    }"#;
    assert_eq!(
        config(json),
        (
            "policies[1].rate_limits[1].requests".into(),
            "invalid type: string \"5\", expected u64".into()
        )
    );
    let json = r#"{"providers": {}, "policies": [{"name": "a", "when": [{"claim": "x", "any_of": [[]]}]}]}"#;
    assert_eq!(config(json).0, "policies[0].when[0].any_of[0]");
    let json = r#"{"providers": {}, "rules": [{"match": {"methods": {}}}]}"#;
    assert_eq!(config(json).0, "rules[0].match.methods");
}

#[test]
fn claim_values_are_named_by_their_member() {
    let bad = "data did not match any variant of untagged enum ClaimValuesFile";
    for (claims, at) in [
        (r#"{"roles": 5}"#, "roles"),
        (r#"{"roles": ["a", 1]}"#, "roles"),
        (r#"{"roles": {"a": ["b"]}}"#, "roles"),
        (r#"{"roles": {"a": ["b"]}, "x": "y"}"#, "roles"),
        (r#"{"roles": [], "x": null }"#, "x"),
        (r#"{"roles": [["a"]] , "x": "y"}"#, "roles"),
    ] {
        let json =
            format!(r#"{{"providers": {{}}, "rules": [{{"match": {{}}, "claims": {claims}}}]}}"#);
        assert_eq!(
            config(&json),
            (format!("rules[0].claims.{at}"), bad.to_string()),
            "{json}"
        );
    }
}

/// The derived form `ClaimValuesFile` had: the written-out one must accept, refuse and name
/// the same.
mod derived {
    #[derive(Debug, serde::Deserialize)]
    #[serde(untagged)]
    #[allow(dead_code)]
    pub enum ClaimValuesFile {
        One(String),
        Any(Vec<String>),
    }
}

#[test]
fn claim_values_read_as_the_derived_untagged_enum_did() {
    type Old = BTreeMap<String, derived::ClaimValuesFile>;
    type New = BTreeMap<String, crate::config::ClaimValuesFile>;
    for value in [
        r#""a""#,
        r#""a\"b""#,
        "[]",
        r#"["a", "b"]"#,
        "null",
        "true",
        "1",
        "-1",
        "1.5",
        "{}",
        r#"{"a": "b"}"#,
        r#"["a", 1]"#,
        r#"[["a"]]"#,
        r#"["a", x]"#,
        r#"{"a": x}"#,
        r#"["a""#,
        r#"[1e999]"#,
        "[\"\u{1}\"]",
    ] {
        for json in [
            format!(r#"{{"k": {value}}}"#),
            format!(r#"{{"k": {value}, "l": "m"}}"#),
            format!("{{\"k\":\n {value} \n}}"),
        ] {
            let mut de = serde_json::Deserializer::from_slice(json.as_bytes());
            let before = serde_path_to_error::deserialize::<_, Old>(&mut de)
                .map(|v| format!("{v:?}"))
                .map_err(|e| (e.path().to_string(), e.inner().to_string()));
            let mut de = serde_json::Deserializer::from_slice(json.as_bytes());
            let after = <New as serde::Deserialize>::deserialize(&mut de)
                .map(|v| format!("{v:?}"))
                .map_err(|e| (error_path(json.as_bytes(), &e), e.to_string()));
            // The message's position moves from past the map to the value at fault.
            let without_position = |r: Result<String, (String, String)>| {
                r.map_err(|(p, m)| (p, m.split(" at line ").next().unwrap_or("").to_string()))
            };
            assert_eq!(without_position(before), without_position(after), "{json}");
        }
    }
}

#[test]
fn errors_at_the_root() {
    // Between members serde_path_to_error names the key it was about to read "?".
    for (json, at, message) in [
        ("", "", "EOF while parsing a value"),
        ("  \n ", "", "EOF while parsing a value"),
        ("x", "", "expected value"),
        ("\u{feff}{}", "", "expected value"),
        (
            "\"x\"",
            "",
            "invalid type: string \"x\", expected struct ConfigFile",
        ),
        (
            "[]",
            "",
            "invalid length 0, expected struct ConfigFile with 11 elements",
        ),
        ("{\"providers\" {}}", "", "expected `:`"),
        ("{", "?", "EOF while parsing an object"),
        ("{,", "?", "key must be a string"),
        ("{\"providers\": {}", "?", "EOF while parsing an object"),
        ("{\"providers\": {},}", "?", "trailing comma"),
        ("{\"providers\": {} \"x\"", "?", "expected `,` or `}`"),
    ] {
        assert_eq!(
            config(json),
            (at.to_string(), message.to_string()),
            "{json:?}"
        );
    }
    // A struct read from an array: the elements are its fields.
    assert_eq!(config("[{\"a\": 1}]").0, "[0].a");
}

#[test]
fn a_struct_read_from_an_array() {
    for (audit, at, message) in [
        ("[true, 0.5]", "", ""),
        (
            "[true, \"x\"]",
            "audit[1]",
            "invalid type: string \"x\", expected f64",
        ),
        ("[true, 0.5, 1]", "audit", "trailing characters"),
        ("[true, 0.5, {\"a\": 1}]", "audit", "trailing characters"),
        ("[true, 0.5, [", "audit", "trailing characters"),
        ("[true, 0.5, ]", "audit", "trailing comma"),
        ("[true, 0.5 x", "audit", "trailing characters"),
    ] {
        let json = format!(r#"{{"providers": {{}}, "audit": {audit}}}"#);
        if at.is_empty() {
            assert!(new::<ConfigFile>(json.as_bytes()).is_none(), "{json}");
        } else {
            assert_eq!(
                config(&json),
                (at.to_string(), message.to_string()),
                "{json}"
            );
        }
    }
}

#[test]
fn truncated_input() {
    for (json, at) in [
        (r#"{"providers": {"a": {"issuer": "x"#, "providers.a.issuer"),
        (r#"{"providers": {"a": {"issuer": "x""#, "providers.a.?"),
        (r#"{"providers": {"a": {"issuer""#, "providers.a"),
        (r#"{"providers": {"a": {"issuer":"#, "providers.a.issuer"),
        (r#"{"providers": {"a": {"iss"#, "providers.a.?"),
        (r#"{"providers": {"a": {"#, "providers.a.?"),
        (r#"{"providers": {}, "keys_wait_timeout_ms": 12"#, "?"),
        (
            r#"{"providers": {}, "keys_wait_timeout_ms": 12."#,
            "keys_wait_timeout_ms",
        ),
        (r#"{"providers": {}, "rules": [{"match": {}}, "#, "rules"),
        (r#"{"providers": {}, "rules": ["#, "rules"),
        (r#"{"providers": {}, "rules": [{"#, "rules[0].?"),
        (r#"{"providers": {}, "rules": [{"match": {}}"#, "rules"),
        (r#"{"providers": {}, "realm": tr"#, "realm"),
    ] {
        assert_eq!(config(json).0, at, "{json}");
    }
}

#[test]
fn numbers_and_nesting() {
    assert_eq!(
        config(r#"{"providers": {}, "keys_wait_timeout_ms": 1e999}"#),
        ("keys_wait_timeout_ms".into(), "number out of range".into())
    );
    assert_eq!(
        config(r#"{"providers": {}, "token_cache_entries": 01}"#).0,
        "token_cache_entries"
    );
    assert_eq!(path::<Vec<f64>>("[-0.5e+1x]").0, "");
    assert_eq!(path::<Vec<f64>>("[1, -0.5e+1").0, "");
    assert_eq!(path::<Vec<f64>>("[1, -0.5e+]").0, "[1]");
    assert_eq!(
        config(r#"{"providers": {}, "token_cache_entries": 5000000000}"#).0,
        "token_cache_entries"
    );
    let deep = format!(
        r#"{{"providers": {{"a": {{"issuer": "x", "audiences": [], "inline_jwks": {{"k": {}1{}}}}}}}}}"#,
        "[".repeat(130),
        "]".repeat(130)
    );
    let (at, message) = config(&deep);
    assert_eq!(message, "recursion limit exceeded");
    assert!(at.starts_with("providers.a.inline_jwks.k[0][0]"), "{at}");
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

/// Compares the two on `json`; 1 when it is an error, 0 when it reads.
fn compare(json: &[u8], mismatches: &mut Vec<String>) -> usize {
    let got = new::<ConfigFile>(json);
    let want = old::<ConfigFile>(json);
    if got != want {
        mismatches.push(format!(
            "{}\n  error_path: {got:?}\n  serde_path_to_error: {want:?}",
            String::from_utf8_lossy(json)
        ));
    }
    usize::from(got.is_some())
}

#[test]
fn every_small_edit_of_a_config_is_named_as_before() {
    let mut mismatches = Vec::new();
    let mut errors = 0;
    for (t, text) in seed_texts().iter().enumerate() {
        let bytes = text.as_bytes();
        assert!(
            new::<ConfigFile>(bytes).is_none(),
            "seed does not read: {text}"
        );
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
    assert!(
        mismatches.is_empty(),
        "{} of {errors} differ, e.g.\n{}",
        mismatches.len(),
        mismatches[..mismatches.len().min(8)].join("\n")
    );
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
fn every_value_of_another_type_is_named_as_before() {
    let mut mismatches = Vec::new();
    let mut errors = 0;
    for seed in seeds() {
        for with in [
            json!(1),
            json!(-1),
            json!(1.5),
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
    assert!(
        mismatches.is_empty(),
        "{} of {errors} differ, e.g.\n{}",
        mismatches.len(),
        mismatches[..mismatches.len().min(8)].join("\n")
    );
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

type Shapes = Vec<BTreeMap<String, Option<Vec<u32>>>>;

proptest! {
    #![proptest_config(ProptestConfig {
        cases: if cfg!(target_arch = "wasm32") { 128 } else { 512 },
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_documents_are_named_as_before(text in jsonish()) {
        let bytes = text.as_bytes();
        prop_assert_eq!(new::<ConfigFile>(bytes), old::<ConfigFile>(bytes));
        prop_assert_eq!(new::<Value>(bytes), old::<Value>(bytes));
        prop_assert_eq!(new::<Shapes>(bytes), old::<Shapes>(bytes));
        prop_assert_eq!(
            new::<BTreeMap<String, crate::config::ClaimValuesFile>>(bytes),
            old::<BTreeMap<String, crate::config::ClaimValuesFile>>(bytes)
        );
    }

    #[test]
    fn random_edits_of_a_config_are_named_as_before(
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
        prop_assert_eq!(new::<ConfigFile>(&doc), old::<ConfigFile>(&doc));
    }
}
