//! The command line: commands, options and their help texts.

use lexopt::prelude::*;
use std::ffi::OsString;

pub const MAIN_HELP: &str = "\
tollgate: check a configuration, explain a decision, print the configuration's JSON Schema.
The decisions come from the same engine as the gateway filter, so the two cannot disagree.

Usage:
  tollgate check [--json] CONFIG
  tollgate explain --config CONFIG [OPTIONS] [TOKEN]
  tollgate schema
  tollgate help [COMMAND]

Commands:
  check     validate a configuration; list every problem with its path
  explain   show, check by check, how the filter decides a request carrying TOKEN
  schema    print the JSON Schema of the configuration

Options:
  -h, --help       print help (after a command: that command's help)
  -V, --version    print the version

Exit codes:
  0   success: the configuration is valid, the request is allowed, the output is printed
  1   explain: the request is refused
  2   usage error: unknown command or option, missing or malformed argument
  3   the configuration is invalid
  4   an input cannot be read: a missing file, a --jwks file that is not a usable JWKS
  5   explain: undecided: the filter would first wait for keys or introspect the token
  70  internal error: the explanation and the engine's decision differ (a bug: report it)

More: docs/cli.md
";

pub const CHECK_HELP: &str = "\
Usage: tollgate check [--json] CONFIG

Validates a configuration the way the filter does when it loads it, and prints every problem
on its own line, named by its path:

  providers.corp.jwks.uri: not an absolute URL
  rules[0].match.prefix: must start with \"/\"

CONFIG is a JSON file, or - for standard input. `client_secret_env` is read from this
process's environment.

Options:
      --json    print {\"valid\": ..., \"problems\": [{\"path\": ..., \"message\": ...}]}
  -h, --help    print this help

Exit codes: 0 valid, 3 invalid, 4 CONFIG cannot be read, 2 usage error.
";

pub const EXPLAIN_HELP: &str = "\
Usage: tollgate explain --config CONFIG [OPTIONS] [TOKEN]

Shows how the filter decides one request: the token's header and claims (decoded, and marked
verified only once its signature is), every check that ran with pass or fail and why, the
rule, provider and policy that applied, the headers that would go upstream, and the answer.

TOKEN is the access token, or - to read it from standard input. It is put where its
provider reads tokens (by default `Authorization: Bearer TOKEN`). Without TOKEN the request
carries none (unless --header adds one).

Options:
  -c, --config FILE          the filter's configuration (JSON); required
      --jwks [NAME=]FILE     the keys of every provider configured with jwks or discovery, or
                             of provider NAME only (repeatable); inline_jwks are always used
      --fetch                fetch the keys of the token's provider over HTTP from its
                             jwks.uri or discovery document, as the filter would
      --now TIME             when the request is decided: seconds since the epoch, or RFC 3339
                             (2026-01-02T03:04:05Z); default: now
  -X, --method METHOD        the request method (default GET)
  -p, --path PATH            the request path, with its query (default /)
      --host HOST            the request's host (:authority) (default localhost)
  -H, --header 'NAME: VALUE' a request header (repeatable)
      --json                 print the explanation as one JSON document
  -h, --help                 print this help

Keys: providers with inline_jwks use them; the others need --jwks or --fetch, else the
filter would wait for their keys and the answer is undecided (exit 5). The CLI does not call
introspection endpoints: a token that needs introspection is undecided too.

Exit codes: 0 allowed, 1 refused, 5 undecided, 3 invalid configuration, 4 unreadable input,
2 usage error, 70 internal error.
";

pub const SCHEMA_HELP: &str = "\
Usage: tollgate schema

Prints the JSON Schema of the configuration, generated from the Rust types that parse it
(docs/config.schema.json is this output).

Options:
  -h, --help    print this help
";

/// What to do.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Help(&'static str),
    Version,
    Check { config: String, json: bool },
    Explain(ExplainArgs),
    Schema,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct ExplainArgs {
    pub config: String,
    /// (provider name, file); no name: every provider with remote keys.
    pub jwks: Vec<(Option<String>, String)>,
    pub fetch: bool,
    pub now: Option<u64>,
    pub method: String,
    pub path: String,
    pub host: String,
    /// Lower-case name, value.
    pub headers: Vec<(String, String)>,
    pub json: bool,
    pub token: Option<String>,
}

/// A usage error, already worded for the user.
#[derive(Debug, PartialEq, Eq)]
pub struct Usage(pub String);

impl From<lexopt::Error> for Usage {
    fn from(e: lexopt::Error) -> Usage {
        Usage(e.to_string())
    }
}

fn unexpected(command: &str, arg: lexopt::Arg) -> Usage {
    let shown = match arg {
        Short(c) => format!("-{c}"),
        Long(l) => format!("--{l}"),
        Value(v) => format!("argument {:?}", v.to_string_lossy()),
    };
    Usage(format!(
        "unexpected {shown} (see tollgate {command} --help)"
    ))
}

fn string(v: OsString, what: &str) -> Result<String, Usage> {
    v.into_string()
        .map_err(|_| Usage(format!("{what} is not valid UTF-8")))
}

/// Parses the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, Usage> {
    let mut p = lexopt::Parser::from_args(args);
    let command = match p.next()? {
        None => {
            return Err(Usage(
                "a command is needed: check, explain or schema (see tollgate --help)".into(),
            ))
        }
        Some(Short('h') | Long("help")) => return Ok(Command::Help(MAIN_HELP)),
        Some(Short('V') | Long("version")) => return Ok(Command::Version),
        Some(Value(v)) => string(v, "the command")?,
        Some(other) => return Err(unexpected("", other)),
    };
    match command.as_str() {
        "help" => help(&mut p),
        "check" => check(&mut p),
        "explain" => explain(&mut p),
        "schema" => schema(&mut p),
        other => Err(Usage(format!(
            "unknown command {other:?}: use check, explain or schema (see tollgate --help)"
        ))),
    }
}

fn help(p: &mut lexopt::Parser) -> Result<Command, Usage> {
    let text = match p.next()? {
        None => MAIN_HELP,
        Some(Value(v)) => match v.to_string_lossy().as_ref() {
            "check" => CHECK_HELP,
            "explain" => EXPLAIN_HELP,
            "schema" => SCHEMA_HELP,
            "help" => MAIN_HELP,
            other => {
                return Err(Usage(format!(
                    "unknown command {other:?}: use check, explain or schema"
                )))
            }
        },
        Some(other) => return Err(unexpected("help", other)),
    };
    Ok(Command::Help(text))
}

fn check(p: &mut lexopt::Parser) -> Result<Command, Usage> {
    let (mut config, mut json) = (None, false);
    while let Some(arg) = p.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help(CHECK_HELP)),
            Long("json") => json = true,
            Value(v) if config.is_none() => config = Some(string(v, "CONFIG")?),
            other => return Err(unexpected("check", other)),
        }
    }
    let config = config
        .ok_or_else(|| Usage("check needs the configuration file: tollgate check CONFIG".into()))?;
    Ok(Command::Check { config, json })
}

fn schema(p: &mut lexopt::Parser) -> Result<Command, Usage> {
    match p.next()? {
        None => Ok(Command::Schema),
        Some(Short('h') | Long("help")) => Ok(Command::Help(SCHEMA_HELP)),
        Some(other) => Err(unexpected("schema", other)),
    }
}

fn explain(p: &mut lexopt::Parser) -> Result<Command, Usage> {
    let mut a = ExplainArgs {
        method: "GET".into(),
        path: "/".into(),
        host: "localhost".into(),
        ..ExplainArgs::default()
    };
    let mut config = None;
    while let Some(arg) = p.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help(EXPLAIN_HELP)),
            Short('c') | Long("config") => config = Some(string(p.value()?, "--config")?),
            Long("jwks") => {
                let v = string(p.value()?, "--jwks")?;
                a.jwks.push(match v.split_once('=') {
                    Some((name, file)) if is_provider_name(name) && !file.is_empty() => {
                        (Some(name.to_string()), file.to_string())
                    }
                    _ => (None, v),
                });
            }
            Long("fetch") => a.fetch = true,
            Long("now") => {
                let v = string(p.value()?, "--now")?;
                a.now =
                    Some(crate::time::parse(&v).map_err(|e| Usage(format!("--now {v:?}: {e}")))?);
            }
            Short('X') | Long("method") => a.method = string(p.value()?, "--method")?,
            Short('p') | Long("path") => a.path = string(p.value()?, "--path")?,
            Long("host") => a.host = string(p.value()?, "--host")?,
            Short('H') | Long("header") => {
                let v = string(p.value()?, "--header")?;
                let Some((name, value)) = v.split_once(':') else {
                    return Err(Usage(format!("--header {v:?}: write it as 'NAME: VALUE'")));
                };
                let name = name.trim().to_ascii_lowercase();
                if name.is_empty() {
                    return Err(Usage(format!("--header {v:?}: the name is empty")));
                }
                a.headers.push((name, value.trim_start().to_string()));
            }
            Long("json") => a.json = true,
            Value(v) if a.token.is_none() => a.token = Some(string(v, "TOKEN")?),
            other => return Err(unexpected("explain", other)),
        }
    }
    a.config = config
        .ok_or_else(|| Usage("explain needs --config FILE (see tollgate explain --help)".into()))?;
    if a.method.is_empty() {
        return Err(Usage("--method: empty".into()));
    }
    Ok(Command::Explain(a))
}

/// Provider names as the configuration allows them (so `--jwks ./a=b.json` stays a file).
fn is_provider_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Command, Usage> {
        parse(args.iter().map(OsString::from))
    }

    #[test]
    fn commands_and_help() {
        assert_eq!(run(&["--help"]), Ok(Command::Help(MAIN_HELP)));
        assert_eq!(run(&["help", "explain"]), Ok(Command::Help(EXPLAIN_HELP)));
        assert_eq!(run(&["check", "--help"]), Ok(Command::Help(CHECK_HELP)));
        assert_eq!(run(&["schema", "-h"]), Ok(Command::Help(SCHEMA_HELP)));
        assert_eq!(run(&["schema"]), Ok(Command::Schema));
        assert_eq!(
            run(&["check", "--json", "c.json"]),
            Ok(Command::Check {
                config: "c.json".into(),
                json: true
            })
        );
        assert!(run(&[]).is_err());
        assert!(run(&["frobnicate"]).is_err());
        assert!(run(&["check"]).is_err());
        assert!(run(&["check", "a", "b"]).is_err());
    }

    #[test]
    fn explain_options() {
        let Ok(Command::Explain(a)) = run(&[
            "explain",
            "--config=c.json",
            "--jwks",
            "keys.json",
            "--jwks",
            "corp=corp.json",
            "--jwks",
            "./x=y.json",
            "--now",
            "1700000000",
            "-X",
            "POST",
            "--path",
            "/orders?x=1",
            "-H",
            "X-Trace: a:b",
            "--json",
            "tok",
        ]) else {
            panic!("parsed")
        };
        assert_eq!(a.config, "c.json");
        assert_eq!(
            a.jwks,
            vec![
                (None, "keys.json".to_string()),
                (Some("corp".to_string()), "corp.json".to_string()),
                (None, "./x=y.json".to_string())
            ]
        );
        assert_eq!(a.now, Some(1_700_000_000));
        assert_eq!(
            (a.method.as_str(), a.path.as_str()),
            ("POST", "/orders?x=1")
        );
        assert_eq!(a.headers, vec![("x-trace".to_string(), "a:b".to_string())]);
        assert!(a.json && !a.fetch);
        assert_eq!(a.token.as_deref(), Some("tok"));
        assert!(run(&["explain", "tok"]).is_err(), "--config is required");
        assert!(run(&["explain", "-c", "c", "-H", "nocolon"]).is_err());
        assert!(run(&["explain", "-c", "c", "--now", "yesterday"]).is_err());
        assert!(run(&["explain", "-c", "c", "a", "b"]).is_err());
    }
}
