//! The built `tollgate` binary, run as a user would: exit codes, output lines, JSON.
// Test code: helpers outside `#[test]` functions may unwrap too.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use ed25519_dalek::{Signer, SigningKey};
use hmac::{KeyInit, Mac};
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use tollgate::b64;

const NOW: u64 = 1_700_000_000;
const ISS: &str = "https://idp.example.com";
const HMAC_SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn tollgate(args: &[&str]) -> Run {
    tollgate_with_stdin(args, None)
}

fn tollgate_with_stdin(args: &[&str], stdin: Option<&str>) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// A fresh directory for one test's files.
fn dir() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "tollgate-cli-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn jwks() -> Value {
    let x = b64::encode(key(1).verifying_key().as_bytes());
    json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k1", "use": "sig", "x": x}]})
}

fn config_with(keys: Value) -> Value {
    let mut corp = json!({"issuer": ISS, "audiences": ["api://orders"], "token_type": "at+jwt"});
    if let (Some(corp), Value::Object(keys)) = (corp.as_object_mut(), keys) {
        corp.extend(keys);
    }
    json!({
        "providers": {
            "corp": corp,
            "partner": {"issuer": "https://partner.example", "audiences": ["api://orders"],
                        "algorithms": ["HS256"],
                        "token_from": [{"header": "x-partner-token"}],
                        "inline_jwks": {"keys": [{"kty": "oct", "kid": "p1", "k": b64::encode(HMAC_SECRET)}]}}
        },
        "rules": [
            {"match": {"prefix": "/health"}, "anonymous": true},
            {"match": {"prefix": "/orders", "methods": ["POST"]}, "providers": ["corp"], "scopes": ["orders:write"]}
        ],
        "headers": {"claims": {"x-user": "sub"}},
        "policies": [
            {"name": "readers", "when": [{"claim": "client_id", "equals": "reader-app"}],
             "deny": [{"prefix": "/orders", "methods": ["POST"]}]}
        ]
    })
}

fn config() -> Value {
    config_with(json!({"jwks": {"uri": "https://idp.example.com/jwks", "cluster": "idp"}}))
}

/// A directory with `config.json` and `keys.json`.
fn setup() -> (PathBuf, String, String) {
    let d = dir();
    let config = write(&d, "config.json", &config().to_string());
    let keys = write(&d, "keys.json", &jwks().to_string());
    (d, config, keys)
}

fn sign(seed: u8, header: Value, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        b64::encode(header.to_string().as_bytes()),
        b64::encode(claims.to_string().as_bytes())
    );
    let sig = key(seed).sign(input.as_bytes());
    format!("{input}.{}", b64::encode(&sig.to_bytes()))
}

fn claims() -> Value {
    json!({"iss": ISS, "aud": "api://orders", "sub": "alice", "client_id": "orders-app",
           "exp": NOW + 300, "iat": NOW - 60, "scope": "orders:read orders:write"})
}

fn with(changes: Value) -> Value {
    let mut c = claims();
    if let (Some(c), Value::Object(changes)) = (c.as_object_mut(), changes) {
        c.extend(changes);
    }
    c
}

fn token(claims: &Value) -> String {
    sign(
        1,
        json!({"alg": "EdDSA", "kid": "k1", "typ": "at+jwt"}),
        claims,
    )
}

fn explain(config: &str, keys: &str, extra: &[&str], token: &str) -> Run {
    let mut args = vec![
        "explain",
        "--config",
        config,
        "--jwks",
        keys,
        "--now",
        "1700000000",
    ];
    args.extend_from_slice(extra);
    args.push(token);
    tollgate(&args)
}

/// The line of a check, e.g. `FAIL  aud ...`.
fn check_line<'a>(out: &'a str, result: &str, name: &str) -> Option<&'a str> {
    out.lines().find(|l| {
        let mut words = l.split_whitespace();
        words.next() == Some(result) && words.next() == Some(name)
    })
}

#[test]
fn help_everywhere() {
    for args in [
        &["--help"][..],
        &["-h"],
        &["help"],
        &["help", "check"],
        &["check", "--help"],
        &["explain", "--help"],
        &["explain", "-h"],
        &["schema", "--help"],
    ] {
        let r = tollgate(args);
        assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
        assert!(r.stdout.contains("Usage"), "{args:?}");
        assert!(r.stderr.is_empty(), "{args:?}");
    }
    let main = tollgate(&["--help"]).stdout;
    for code in ["0 ", "1 ", "2 ", "3 ", "4 ", "5 ", "70 "] {
        assert!(
            main.lines().any(|l| l.trim_start().starts_with(code)),
            "exit code {code} documented"
        );
    }
    let v = tollgate(&["--version"]);
    assert_eq!(
        (v.code, v.stdout.trim()),
        (0, concat!("tollgate ", env!("CARGO_PKG_VERSION")))
    );
}

#[test]
fn usage_errors_are_one_line_and_exit_2() {
    for args in [
        &[][..],
        &["frobnicate"],
        &["check"],
        &["check", "--frob", "x.json"],
        &["explain", "tok"],
        &["explain", "--config"],
        &["explain", "-c", "x.json", "--now", "yesterday"],
        &["schema", "extra"],
    ] {
        let r = tollgate(args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert_eq!(r.stderr.lines().count(), 1, "{args:?}: {}", r.stderr);
        assert!(r.stderr.starts_with("tollgate: "), "{args:?}: {}", r.stderr);
        assert!(r.stdout.is_empty());
    }
}

#[test]
fn schema_is_the_committed_one() {
    let r = tollgate(&["schema"]);
    assert_eq!(r.code, 0);
    let committed = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/config.schema.json"),
    )
    .unwrap();
    assert_eq!(
        r.stdout, committed,
        "docs/config.schema.json is `tollgate schema`'s output"
    );
    assert!(serde_json::from_str::<Value>(&r.stdout).is_ok());
}

#[test]
fn check_a_good_configuration() {
    let (_, config, _) = setup();
    let r = tollgate(&["check", &config]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout
            .contains("valid: 2 providers (corp, partner), 2 rules, 1 policy"),
        "{}",
        r.stdout
    );
    let j = tollgate(&["check", "--json", &config]);
    let v: Value = serde_json::from_str(&j.stdout).unwrap();
    assert_eq!((j.code, &v["valid"]), (0, &json!(true)));
}

#[test]
fn check_lists_every_problem_with_its_path() {
    let d = dir();
    let bad = json!({
        "providers": {"a": {"issuer": "x", "audiences": [], "clock_skew_seconds": 3600,
                             "discovery": {"cluster": ""}}},
        "rules": [{"match": {"prefix": "api"}, "providers": ["b"]}],
        "headers": {"claims": {"authorization": "sub"}},
        "keys_wait_timeout_ms": 0
    });
    let file = write(&d, "bad.json", &bad.to_string());
    let r = tollgate(&["check", &file]);
    assert_eq!(r.code, 3);
    let lines: Vec<&str> = r.stdout.lines().collect();
    for expected in [
        "providers.a.issuer: not an absolute URL",
        "providers.a.audiences: at least one audience is required",
        "providers.a.clock_skew_seconds: must be between 0 and 600",
        "providers.a.discovery.cluster: required",
        "rules[0].match.prefix: must start with \"/\"",
        "rules[0].providers[0]: no provider named \"b\"",
        "headers.claims.authorization: a reserved header cannot carry identity",
        "keys_wait_timeout_ms: must be between 1 and 60000",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(expected)),
            "missing {expected:?} in\n{}",
            r.stdout
        );
    }
    assert_eq!(
        r.stderr.trim(),
        format!("tollgate: {file} is invalid: {} problems", lines.len())
    );

    let j = tollgate(&["check", "--json", &file]);
    assert_eq!(j.code, 3);
    let v: Value = serde_json::from_str(&j.stdout).unwrap();
    assert_eq!(v["valid"], false);
    let problems = v["problems"].as_array().unwrap();
    assert_eq!(problems.len(), lines.len());
    assert!(problems
        .iter()
        .any(|p| p["path"] == "rules[0].match.prefix" && p["message"] == "must start with \"/\""));

    let typo = write(
        &d,
        "typo.json",
        r#"{"providers": {"a": {"issuer": "https://a", "audience": "x"}}}"#,
    );
    let r = tollgate(&["check", &typo]);
    assert_eq!(r.code, 3);
    assert!(
        r.stdout
            .starts_with("providers.a.audience: unknown field `audience`"),
        "{}",
        r.stdout
    );
}

#[test]
fn check_from_stdin_and_unreadable_files() {
    let r = tollgate_with_stdin(&["check", "-"], Some(&config().to_string()));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let missing = tollgate(&["check", "/nonexistent/tollgate.json"]);
    assert_eq!(missing.code, 4);
    assert_eq!(
        missing.stderr,
        "tollgate: cannot read the configuration /nonexistent/tollgate.json: no such file\n"
    );
    let not_json = tollgate_with_stdin(&["check", "-"], Some("{"));
    assert_eq!(not_json.code, 3);
    assert_eq!(not_json.stdout.lines().count(), 1);
}

#[test]
fn explain_an_allowed_request() {
    let (_, config, keys) = setup();
    let r = explain(
        &config,
        &keys,
        &["-H", "x-user: mallory"],
        &token(&claims()),
    );
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let out = &r.stdout;
    assert!(out.contains("Token     in header authorization"), "{out}");
    assert!(
        out.contains("claims (decoded; signature verified)"),
        "{out}"
    );
    assert!(out.contains("\"sub\": \"alice\""), "{out}");
    for (name, detail) in [
        ("rule", "no rule matches"),
        ("provider", "corp"),
        ("keys", "keys: k1"),
        ("signature", "valid (EdDSA, kid \"k1\")"),
        ("aud", "aud \"api://orders\" is in [\"api://orders\"]"),
        ("time", "expires in 5m"),
    ] {
        let line = check_line(out, "pass", name).unwrap_or_else(|| panic!("{name}: {out}"));
        assert!(line.contains(detail), "{line}");
    }
    assert!(out.contains("Provider  corp"), "{out}");
    assert!(
        out.contains("  remove  x-user\n  set     x-user: alice\n"),
        "{out}"
    );
    assert!(
        out.trim_end()
            .ends_with("Answer    allowed: the request goes upstream"),
        "{out}"
    );
}

#[test]
fn explain_an_expired_token() {
    let (_, config, keys) = setup();
    let expired = token(&with(json!({"exp": NOW - 192, "iat": NOW - 900})));
    let r = explain(&config, &keys, &[], &expired);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    let line = check_line(&r.stdout, "FAIL", "time").unwrap();
    assert!(
        line.contains("expired 3m12s ago (exp 2023-11-14T22:10:08Z"),
        "{line}"
    );
    assert!(r
        .stdout
        .contains("Answer    refused: 401 token_expired: the token has expired"));
    assert!(r.stdout.contains(
        "www-authenticate: Bearer realm=\"tollgate\", error=\"invalid_token\", error_description=\"the token has expired\""
    ));
    assert!(r.stderr.is_empty());
}

#[test]
fn explain_refusals_say_why() {
    let (_, config, keys) = setup();
    let cases: Vec<(String, Vec<&str>, &str, &str, &str)> =
        vec![
        (
            token(&with(json!({"aud": "api://a"}))),
            vec![],
            "aud",
            r#"aud "api://a" not in ["api://orders"]"#,
            "wrong_audience",
        ),
        (
            sign(1, json!({"alg": "EdDSA", "kid": "k2", "typ": "at+jwt"}), &claims()),
            vec![],
            "key",
            r#"kid "k2" not in JWKS (keys: k1)"#,
            "unknown_kid",
        ),
        (
            sign(2, json!({"alg": "EdDSA", "kid": "k1", "typ": "at+jwt"}), &claims()),
            vec![],
            "signature",
            r#"does not verify with kid "k1""#,
            "bad_signature",
        ),
        (
            token(&with(json!({"scope": "orders:read"}))),
            vec!["-X", "POST", "--path", "/orders"],
            "scopes",
            "missing orders:write (token has: orders:read)",
            "insufficient_scope",
        ),
        (
            token(&with(json!({"client_id": "reader-app"}))),
            vec!["-X", "POST", "--path", "/orders"],
            "policy",
            "readers (the first policy whose conditions hold): its deny list names POST /orders",
            "policy_denied",
        ),
        (
            token(&with(json!({"iss": "https://evil.example"}))),
            vec![],
            "provider",
            r#"iss "https://evil.example" is no provider's issuer"#,
            "unknown_issuer",
        ),
        (
            "not-a-jwt".to_string(),
            vec![],
            "format",
            "not a JWT, and no provider here introspects tokens",
            "malformed_token",
        ),
    ];
    for (tok, extra, check, detail, reason) in cases {
        let r = explain(&config, &keys, &extra, &tok);
        assert_eq!(r.code, 1, "{reason}: {}{}", r.stdout, r.stderr);
        let line = check_line(&r.stdout, "FAIL", check)
            .unwrap_or_else(|| panic!("{reason}: no failed {check} check in\n{}", r.stdout));
        assert!(line.contains(detail), "{reason}: {line}");
        assert!(
            r.stdout.contains(&format!(" {reason}: ")),
            "{reason}: {}",
            r.stdout
        );
    }
    let forged = sign(
        2,
        json!({"alg": "EdDSA", "kid": "k1", "typ": "at+jwt"}),
        &claims(),
    );
    let r = explain(&config, &keys, &[], &forged);
    assert!(
        r.stdout.contains("claims (decoded; NOT verified)"),
        "{}",
        r.stdout
    );
}

#[test]
fn explain_as_json() {
    let (_, config, keys) = setup();
    let cases = [
        (
            token(&claims()),
            "allow",
            Value::from(200),
            Value::from("ok"),
            0,
        ),
        (
            token(&with(json!({"aud": ["api://a", "api://b"]}))),
            "deny",
            Value::from(401),
            Value::from("wrong_audience"),
            1,
        ),
        (
            token(&with(json!({"exp": NOW - 192}))),
            "deny",
            Value::from(401),
            Value::from("token_expired"),
            1,
        ),
    ];
    for (tok, decision, status, reason, code) in cases {
        let r = explain(&config, &keys, &["--json", "-H", "X_User: mallory"], &tok);
        assert_eq!(r.code, code, "{}", r.stderr);
        let v: Value = serde_json::from_str(&r.stdout).unwrap();
        assert_eq!(v["answer"]["decision"], decision);
        assert_eq!(v["answer"]["status"], status);
        assert_eq!(v["answer"]["reason"], reason);
        assert_eq!(v["agrees"], true);
        assert_eq!(v["provider"], "corp");
        assert_eq!(v["rule"], "default");
        assert_eq!(v["now"], NOW);
        assert_eq!(v["token"]["claims"]["sub"], "alice");
        let checks = v["checks"].as_array().unwrap();
        assert_eq!(checks[0]["check"], "path");
        let last = checks.last().unwrap();
        if decision == "deny" {
            assert_eq!(last["result"], "fail");
            assert_eq!(v["token"]["signature_verified"], true);
        } else {
            assert!(checks.iter().all(|c| c["result"] == "pass"));
            assert_eq!(
                v["answer"]["upstream_headers"],
                json!([{"remove": "x_user"}, {"set": "x-user", "value": "alice"}])
            );
        }
    }
    let r = explain(
        &config,
        &keys,
        &["--json"],
        &token(&with(json!({"aud": "api://a"}))),
    );
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    let aud = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "aud")
        .unwrap();
    assert_eq!(aud["detail"], r#"aud "api://a" not in ["api://orders"]"#);
    assert_eq!(
        v["answer"]["response_headers"]["www-authenticate"],
        "Bearer realm=\"tollgate\", error=\"invalid_token\", error_description=\"the token is not meant for this audience\""
    );
}

#[test]
fn explain_without_keys_is_undecided() {
    let (_, config, _) = setup();
    let r = tollgate(&[
        "explain",
        "-c",
        &config,
        "--now",
        "1700000000",
        &token(&claims()),
    ]);
    assert_eq!(r.code, 5, "{}{}", r.stdout, r.stderr);
    let line = check_line(&r.stdout, "wait", "keys").unwrap();
    assert!(
        line.contains("none given: pass --jwks FILE or --fetch"),
        "{line}"
    );
    assert!(r
        .stdout
        .contains("Answer    undecided: the filter would wait for the keys of corp"));
}

#[test]
fn explain_inline_keys_stdin_tokens_and_rfc3339_time() {
    let (_, config, _) = setup();
    let input = format!(
        "{}.{}",
        b64::encode(br#"{"alg":"HS256","kid":"p1"}"#),
        b64::encode(
            json!({"iss": "https://partner.example", "aud": "api://orders", "sub": "p",
                   "exp": NOW + 60})
            .to_string()
            .as_bytes()
        )
    );
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(HMAC_SECRET).unwrap();
    mac.update(input.as_bytes());
    let hs = format!("{input}.{}", b64::encode(&mac.finalize().into_bytes()));
    let r = tollgate_with_stdin(
        &[
            "explain",
            "-c",
            &config,
            "--now",
            "2023-11-14T22:13:20Z",
            "-",
        ],
        Some(&format!("{hs}\n")),
    );
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("TOKEN sent in header x-partner-token"),
        "{}",
        r.stdout
    );
    assert!(check_line(&r.stdout, "pass", "keys")
        .unwrap()
        .contains("(inline_jwks)"));
    assert!(r.stdout.contains("at 2023-11-14T22:13:20Z (1700000000)"));

    let none = tollgate(&["explain", "-c", &config, "--now", "1700000000"]);
    assert_eq!(none.code, 1);
    assert!(check_line(&none.stdout, "FAIL", "token")
        .unwrap()
        .contains("no token in header authorization"));

    let anonymous = tollgate(&["explain", "-c", &config, "--path", "/health/live"]);
    assert_eq!(anonymous.code, 0);
    assert!(anonymous
        .stdout
        .contains("Token     not looked at: the rule is anonymous"));
}

#[test]
fn explain_input_errors() {
    let (d, config, keys) = setup();
    let bad_keys = write(&d, "bad.json", r#"{"keys": [{"kty": "RSA"}]}"#);
    let r = explain(&config, &bad_keys, &[], &token(&claims()));
    assert_eq!(r.code, 4);
    assert!(
        r.stderr.starts_with(&format!(
            "tollgate: --jwks {bad_keys}: JWKS has no usable key"
        )),
        "{}",
        r.stderr
    );
    assert_eq!(r.stderr.lines().count(), 1);

    let r = tollgate(&[
        "explain",
        "-c",
        &config,
        "--jwks",
        &format!("nobody={keys}"),
        "t",
    ]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("no provider \"nobody\""), "{}", r.stderr);
    let named = tollgate(&[
        "explain",
        "-c",
        &config,
        "--jwks",
        &format!("corp={keys}"),
        "--now",
        "1700000000",
        &token(&claims()),
    ]);
    assert_eq!(named.code, 0, "{}", named.stdout);

    let bad_config = write(&d, "c.json", r#"{"providers": {}}"#);
    let r = explain(&bad_config, &keys, &[], "t");
    assert_eq!(r.code, 3);
    assert_eq!(
        r.stderr,
        format!("tollgate: {bad_config} is invalid: providers: at least one provider is required; see tollgate check {bad_config}\n")
    );
}

/// `--fetch` against a loopback server.
#[cfg(feature = "fetch")]
mod fetch {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;
    use std::time::Duration;

    type Routes = Vec<(&'static str, u16, String)>;

    /// Serves routes (path, status, body; made from the port) on loopback, for a bounded number of
    /// requests; anything else is 404. Returns the port.
    fn serve(routes: impl FnOnce(u16) -> Routes, requests: usize) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let routes = routes(port);
        std::thread::spawn(move || {
            for stream in listener.incoming().take(requests) {
                let Ok(mut stream) = stream else { return };
                stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut first = String::new();
                if reader.read_line(&mut first).is_err() {
                    continue;
                }
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                }
                let path = first.split_whitespace().nth(1).unwrap_or("").to_string();
                let (status, body) = routes
                    .iter()
                    .find(|(p, _, _)| *p == path)
                    .map_or((404, String::new()), |(_, s, b)| (*s, b.clone()));
                let answer = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                stream.write_all(answer.as_bytes()).ok();
            }
        });
        port
    }

    fn explain_fetching(config: &str, token: &str) -> Run {
        tollgate(&[
            "explain",
            "-c",
            config,
            "--fetch",
            "--now",
            "1700000000",
            token,
        ])
    }

    #[test]
    fn explain_fetches_keys_from_a_jwks_url() {
        let port = serve(|_| vec![("/jwks", 200, jwks().to_string())], 1);
        let d = dir();
        let uri = format!("http://127.0.0.1:{port}/jwks");
        let c = config_with(json!({"jwks": {"uri": uri, "cluster": "idp"}}));
        let config = write(&d, "config.json", &c.to_string());
        let r = explain_fetching(&config, &token(&claims()));
        assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
        let keys = check_line(&r.stdout, "pass", "keys").unwrap();
        assert!(keys.contains(&format!("fetched from {uri}")), "{keys}");
    }

    #[test]
    fn explain_fetches_keys_through_discovery() {
        let port = serve(
            |port| {
                let issuer = format!("http://127.0.0.1:{port}");
                let discovery = json!({"issuer": issuer, "jwks_uri": format!("{issuer}/keys")});
                vec![
                    (
                        "/.well-known/openid-configuration",
                        200,
                        discovery.to_string(),
                    ),
                    ("/keys", 200, jwks().to_string()),
                ]
            },
            2,
        );
        let issuer = format!("http://127.0.0.1:{port}");
        let mut c = config_with(json!({"discovery": {"cluster": "idp"}}));
        c["providers"]["corp"]["issuer"] = json!(issuer);
        let config = write(&dir(), "config.json", &c.to_string());
        let r = explain_fetching(&config, &token(&with(json!({"iss": issuer}))));
        assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
        let keys = check_line(&r.stdout, "pass", "keys").unwrap();
        assert!(
            keys.contains(&format!(
                "fetched from {issuer}/keys via {issuer}/.well-known/openid-configuration"
            )),
            "{keys}"
        );
    }

    #[test]
    fn explain_reports_a_failed_fetch_as_the_filter_would() {
        // A JWKS URL that answers 404: the filter would have no keys, and answer 503.
        let port = serve(|_| vec![], 1);
        let uri = format!("http://127.0.0.1:{port}/jwks");
        let c = config_with(json!({"jwks": {"uri": uri, "cluster": "idp"}}));
        let config = write(&dir(), "config.json", &c.to_string());
        let r = explain_fetching(&config, &token(&claims()));
        assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
        let keys = check_line(&r.stdout, "FAIL", "keys").unwrap();
        assert!(
            keys.contains("fetching failed: JWKS answered HTTP 404"),
            "{keys}"
        );
        assert!(
            r.stdout.contains("Answer    refused: 503 keys_unavailable"),
            "{}",
            r.stdout
        );
    }
}
