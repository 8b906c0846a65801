//! `tollgate`: the command line over the engine the gateway filter runs.
//!
//! - `tollgate check CONFIG`: the configuration, validated as the filter validates it at load.
//! - `tollgate explain --config CONFIG [...] TOKEN`: a decision, check by check
//!   ([`tollgate::explain`]), next to the engine's own decision for the same inputs.
//! - `tollgate schema`: the JSON Schema of the configuration.
//!
//! Errors are one line on standard error, `tollgate: ...`; the exit codes are in [`args::MAIN_HELP`]
//! and docs/cli.md.

mod args;
#[cfg(all(feature = "fetch", not(target_family = "wasm")))]
mod fetch;
mod host;
mod render;
mod time;

use args::{Command, ExplainArgs, Usage};
use std::io::{Read, Write};
use std::process::ExitCode;
use tollgate::config::Config;
use tollgate::explain::{default_token_source, explain, put_token};
use tollgate::gate::{Gate, Verdict};
use tollgate::request::{header_pairs, Request};

/// Exit codes (docs/cli.md).
mod exit {
    pub const OK: u8 = 0;
    pub const REFUSED: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const INVALID_CONFIG: u8 = 3;
    pub const INPUT: u8 = 4;
    pub const UNDECIDED: u8 = 5;
    pub const INTERNAL: u8 = 70;
}

/// Why a command stopped: a one-line message and its exit code.
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }
}

impl From<Usage> for Failure {
    fn from(u: Usage) -> Failure {
        Failure::new(exit::USAGE, u.0)
    }
}

fn main() -> ExitCode {
    let code = match run() {
        Ok(code) => code,
        Err(f) => {
            eprintln!("tollgate: {}", f.message);
            f.code
        }
    };
    ExitCode::from(code)
}

fn run() -> Result<u8, Failure> {
    match args::parse(std::env::args_os().skip(1))? {
        Command::Help(text) => {
            out(text)?;
            Ok(exit::OK)
        }
        Command::Version => {
            out(&format!("tollgate {}\n", env!("CARGO_PKG_VERSION")))?;
            Ok(exit::OK)
        }
        Command::Schema => {
            out(&format!("{}\n", tollgate::config::schema_json()))?;
            Ok(exit::OK)
        }
        Command::Check { config, json } => check(&config, json),
        Command::Explain(a) => run_explain(&a),
    }
}

/// Writes to standard output; a closed pipe is not worth a panic.
fn out(text: &str) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| Failure::new(exit::INPUT, format!("cannot write the output: {e}")))
}

/// A file's bytes, or standard input's for `-`.
fn read(name: &str, what: &str) -> Result<Vec<u8>, Failure> {
    let mut bytes = Vec::new();
    let result = if name == "-" {
        std::io::stdin().read_to_end(&mut bytes).map(|_| ())
    } else {
        std::fs::read(name).map(|b| bytes = b)
    };
    result.map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::NotFound => "no such file".to_string(),
            std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
            _ => e.to_string(),
        };
        Failure::new(exit::INPUT, format!("cannot read {what} {name}: {why}"))
    })?;
    Ok(bytes)
}

fn check(file: &str, json: bool) -> Result<u8, Failure> {
    let bytes = read(file, "the configuration")?;
    match Config::from_json(&bytes) {
        Ok(config) => {
            out(&render::check_ok(file, &config, json))?;
            Ok(exit::OK)
        }
        Err(errors) => {
            out(&render::check_problems(&errors, json))?;
            if !json {
                let n = errors.0.len();
                eprintln!(
                    "tollgate: {file} is invalid: {n} problem{}",
                    if n == 1 { "" } else { "s" }
                );
            }
            Ok(exit::INVALID_CONFIG)
        }
    }
}

fn run_explain(a: &ExplainArgs) -> Result<u8, Failure> {
    if a.fetch && !cfg!(all(feature = "fetch", not(target_family = "wasm"))) {
        return Err(Failure::new(
            exit::USAGE,
            "--fetch: this tollgate was built without the `fetch` feature",
        ));
    }
    let bytes = read(&a.config, "the configuration")?;
    let config = Config::from_json(&bytes).map_err(|errors| {
        let first = errors
            .0
            .first()
            .map(ToString::to_string)
            .unwrap_or_default();
        let more = match errors.0.len() {
            0 | 1 => String::new(),
            n => format!(" (and {} more)", n - 1),
        };
        Failure::new(
            exit::INVALID_CONFIG,
            format!(
                "{} is invalid: {first}{more}; see tollgate check {}",
                a.config, a.config
            ),
        )
    })?;
    let mut jwks = Vec::new();
    for (name, file) in &a.jwks {
        jwks.push((name.clone(), file.clone(), read(file, "the JWKS")?));
    }
    let token = match a.token.as_deref() {
        Some("-") => {
            let bytes = read("-", "the token from")?;
            let text = String::from_utf8(bytes)
                .map_err(|_| Failure::new(exit::INPUT, "the token is not UTF-8"))?;
            Some(text.trim().to_string())
        }
        other => other.map(str::to_string),
    };
    let now = match a.now {
        Some(now) => now,
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .map_err(|_| Failure::new(exit::INPUT, "the system clock is before 1970"))?,
    };

    let gate = Gate::new(config);
    let config = &gate.config;
    let mut path = a.path.clone();
    let mut headers = a.headers.clone();
    let placed = match &token {
        Some(token) if !token.is_empty() => {
            let source = default_token_source(config, token);
            if let Some(source) = &source {
                put_token(source, token, &mut path, &mut headers);
            }
            source
        }
        _ => None,
    };
    let host = host::CliHost::new(config, &jwks, a.fetch, now).map_err(|e| match e {
        host::KeysError::Usage(m) => Failure::new(exit::USAGE, m),
        host::KeysError::Input(m) => Failure::new(exit::INPUT, m),
    })?;
    let headers = header_pairs(&headers);
    let req = Request {
        method: &a.method,
        path: &path,
        authority: &a.host,
        headers: (&headers).into(),
    };
    let explanation = explain(&gate, &req, &host, now);
    let context = render::Context {
        config,
        method: &a.method,
        path: &path,
        host: &a.host,
        placed: placed.as_ref(),
    };
    if a.json {
        out(&format!(
            "{}\n",
            serde_json::to_string_pretty(&render::explain_json(&explanation, &context))
                .unwrap_or_default()
        ))?;
    } else {
        out(&render::explain_text(&explanation, &context))?;
    }
    if !explanation.agrees() {
        return Err(Failure::new(
            exit::INTERNAL,
            "internal error: the explanation does not reach the engine's decision (the answer \
             shown is the engine's); please report this with the command line",
        ));
    }
    Ok(match explanation.decision.verdict {
        Verdict::Allow(_) => exit::OK,
        Verdict::Deny(_) => exit::REFUSED,
        Verdict::Wait { .. } | Verdict::Introspect { .. } => exit::UNDECIDED,
    })
}
