//! What the commands print: text for people, JSON for machines (`--json`).

use serde_json::{json, Map, Value};
use tollgate::config::{Config, ConfigErrors, TokenSource};
use tollgate::explain::{
    describe_match, describe_source, human_time, CheckResult, Explanation, TokenView,
};
use tollgate::gate::Verdict;
use tollgate::request::HeaderEdit;

/// Where the CLI's requests come from: a budget of the client address is charged to it.
const CLIENT_ADDRESS: &str = "127.0.0.1";

/// The request as the CLI built it, and the configuration it was decided under.
pub struct Context<'a> {
    pub config: &'a Config,
    pub method: &'a str,
    /// With the token, when it was put in the query.
    pub path: &'a str,
    pub host: &'a str,
    /// Where the TOKEN argument was put.
    pub placed: Option<&'a TokenSource>,
}

fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

pub fn check_ok(file: &str, config: &Config, as_json: bool) -> String {
    if as_json {
        let body = json!({
            "valid": true,
            "problems": [],
            "providers": config.providers.iter().map(|p| p.name.clone()).collect::<Vec<_>>(),
            "rules": config.rules.len(),
            "policies": config.policies.len(),
        });
        return format!(
            "{}\n",
            serde_json::to_string_pretty(&body).unwrap_or_default()
        );
    }
    let names: Vec<&str> = config.providers.iter().map(|p| p.name.as_str()).collect();
    format!(
        "{file}: valid: {} ({}), {}, {}\n",
        plural(config.providers.len(), "provider"),
        names.join(", "),
        plural(config.rules.len(), "rule"),
        plural(config.policies.len(), "policy").replace("policys", "policies"),
    )
}

/// One problem per line, `path: message` (the message alone when it has no path).
pub fn check_problems(errors: &ConfigErrors, as_json: bool) -> String {
    if as_json {
        let problems: Vec<Value> = errors
            .0
            .iter()
            .map(|e| json!({"path": e.path, "message": e.message}))
            .collect();
        let body = json!({"valid": false, "problems": problems});
        return format!(
            "{}\n",
            serde_json::to_string_pretty(&body).unwrap_or_default()
        );
    }
    errors.0.iter().map(|e| format!("{e}\n")).collect()
}

fn route(e: &Explanation, config: &Config) -> String {
    match e.rule.and_then(|i| config.rules.get(i).map(|r| (i, r))) {
        Some((i, r)) => format!(
            "rules[{i}] ({}){}",
            describe_match(&r.matcher),
            if r.anonymous { ", anonymous" } else { "" }
        ),
        None if e.normalized_path.is_some() => "default (no rule matches)".to_string(),
        None => "none (the path was refused)".to_string(),
    }
}

fn indent(text: &str, by: &str) -> String {
    text.lines().map(|l| format!("{by}{l}\n")).collect()
}

fn pretty(map: &Map<String, Value>) -> String {
    serde_json::to_string_pretty(map).unwrap_or_default()
}

fn trust(view: &TokenView) -> &'static str {
    if view.signature_verified {
        "decoded; signature verified"
    } else {
        "decoded; NOT verified"
    }
}

fn token_text(e: &Explanation) -> String {
    let Some(view) = &e.token else {
        return if e.anonymous {
            "Token     not looked at: the rule is anonymous\n".to_string()
        } else {
            "Token     none used (see the token check)\n".to_string()
        };
    };
    let mut s = format!(
        "Token     in {}, sha256 {}\n",
        describe_source(&view.source),
        view.sha256
    );
    if let Some(header) = &view.header {
        s.push_str(&format!("  header ({}):\n", trust(view)));
        s.push_str(&indent(&pretty(header), "    "));
    }
    if let Some(claims) = &view.claims {
        s.push_str(&format!("  claims ({}):\n", trust(view)));
        s.push_str(&indent(&pretty(claims), "    "));
    }
    if let Some(why) = &view.decode_error {
        s.push_str(&format!("  {why}\n"));
    }
    if let Some(answer) = &view.introspected {
        s.push_str("  introspection answer (active):\n");
        s.push_str(&indent(&pretty(answer), "    "));
    }
    s
}

fn edit_text(edit: &HeaderEdit) -> String {
    match edit {
        HeaderEdit::Remove(name) => format!("remove  {name}"),
        HeaderEdit::Set(name, value) => format!("set     {name}: {value}"),
    }
}

fn undecided(e: &Explanation, config: &Config) -> Option<String> {
    let name = |id: usize| {
        config
            .provider(id)
            .map_or_else(|| format!("#{id}"), |p| p.name.clone())
    };
    match &e.decision.verdict {
        Verdict::Wait { provider, .. } => Some(format!(
            "the filter would wait for the keys of {} (give them with --jwks FILE or --fetch)",
            name(*provider)
        )),
        Verdict::Introspect { provider, .. } => Some(format!(
            "the filter would ask the introspection endpoint of {} (the CLI does not call it)",
            name(*provider)
        )),
        _ => None,
    }
}

pub fn explain_text(e: &Explanation, cx: &Context) -> String {
    let mut s = format!(
        "Request   {} {} (host {}) at {} ({})\n",
        cx.method,
        cx.path,
        cx.host,
        human_time(e.now),
        e.now
    );
    if let Some(source) = cx.placed {
        s.push_str(&format!(
            "          TOKEN sent in {}\n",
            describe_source(source)
        ));
    }
    s.push('\n');
    s.push_str(&token_text(e));
    s.push_str("\nChecks\n");
    let width = e.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
    for c in &e.checks {
        let result = match c.result {
            CheckResult::Pass => "pass",
            CheckResult::Fail => "FAIL",
            CheckResult::Pending => "wait",
        };
        s.push_str(&format!(
            "  {result}  {:width$}  {}\n",
            c.name,
            c.detail,
            width = width
        ));
    }
    s.push('\n');
    s.push_str(&format!("Rule      {}\n", route(e, cx.config)));
    s.push_str(&format!(
        "Provider  {}\n",
        e.decision.facts.provider.as_deref().unwrap_or("none")
    ));
    s.push_str(&format!(
        "Policy    {}\n",
        e.decision.facts.policy.as_deref().unwrap_or("none")
    ));
    match &e.decision.verdict {
        Verdict::Allow(allowed) => {
            s.push_str("\nUpstream headers\n");
            if allowed.edits.is_empty() {
                s.push_str("  (none changed)\n");
            }
            for edit in &allowed.edits {
                s.push_str(&format!("  {}\n", edit_text(edit)));
            }
            let limits = allowed
                .policy
                .and_then(|i| cx.config.policies.get(i))
                .map(|p| &p.limits);
            for (limit, key) in limits.into_iter().flatten().zip(allowed.charges.iter()) {
                s.push_str(&format!(
                    "Limit     {}: charged to {:?} (not counted by the CLI)\n",
                    limit.name,
                    key.text(|| CLIENT_ADDRESS)
                ));
            }
            s.push_str("\nAnswer    allowed: the request goes upstream\n");
        }
        Verdict::Deny(denial) => {
            let response = denial.response(&cx.config.realm, None);
            s.push_str(&format!(
                "\nAnswer    refused: {} {}: {}\n",
                response.status,
                denial.code(),
                denial.description()
            ));
            for (name, value) in &response.headers {
                if name != "content-type" && name != "cache-control" {
                    s.push_str(&format!("          {name}: {value}\n"));
                }
            }
        }
        Verdict::Wait { .. } | Verdict::Introspect { .. } => {
            s.push_str(&format!(
                "\nAnswer    undecided: {}\n",
                undecided(e, cx.config).unwrap_or_default()
            ));
        }
    }
    s
}

fn token_json(view: &TokenView) -> Value {
    json!({
        "found_in": describe_source(&view.source),
        "sha256": view.sha256,
        "header": view.header,
        "claims": view.claims,
        "decode_error": view.decode_error,
        "signature_verified": view.signature_verified,
        "introspection": view.introspected,
    })
}

pub fn explain_json(e: &Explanation, cx: &Context) -> Value {
    let checks: Vec<Value> = e
        .checks
        .iter()
        .map(|c| json!({"check": c.name, "result": c.result.as_str(), "detail": c.detail}))
        .collect();
    let answer = match &e.decision.verdict {
        Verdict::Allow(allowed) => {
            let upstream: Vec<Value> = allowed
                .edits
                .iter()
                .map(|edit| match edit {
                    HeaderEdit::Remove(name) => json!({"remove": &**name}),
                    HeaderEdit::Set(name, value) => json!({"set": &**name, "value": value}),
                })
                .collect();
            let limits = allowed
                .policy
                .and_then(|i| cx.config.policies.get(i))
                .map(|p| &p.limits);
            let charges: Vec<Value> = limits
                .into_iter()
                .flatten()
                .zip(allowed.charges.iter())
                .map(|(l, key)| json!({"limit": l.name, "key": key.text(|| CLIENT_ADDRESS)}))
                .collect();
            json!({
                "decision": "allow",
                "status": 200,
                "reason": "ok",
                "upstream_headers": upstream,
                "charges": charges,
            })
        }
        Verdict::Deny(denial) => {
            let response = denial.response(&cx.config.realm, None);
            let headers: Map<String, Value> = response
                .headers
                .iter()
                .map(|(n, v)| (n.clone(), Value::String(v.clone())))
                .collect();
            let body: Value = serde_json::from_str(&response.body).unwrap_or(Value::Null);
            json!({
                "decision": "deny",
                "status": response.status,
                "reason": denial.code(),
                "detail": denial.description(),
                "response_headers": headers,
                "body": body,
            })
        }
        Verdict::Wait { .. } => json!({
            "decision": "wait_for_keys",
            "status": null,
            "reason": null,
            "detail": undecided(e, cx.config),
        }),
        Verdict::Introspect { .. } => json!({
            "decision": "introspect",
            "status": null,
            "reason": null,
            "detail": undecided(e, cx.config),
        }),
    };
    json!({
        "request": {
            "method": cx.method,
            "path": cx.path,
            "host": cx.host,
            "normalized_path": e.normalized_path,
            "token_sent_in": cx.placed.map(describe_source),
        },
        "now": e.now,
        "time": human_time(e.now),
        "token": e.token.as_ref().map(token_json),
        "checks": checks,
        "rule": e.rule.map_or_else(|| "default".to_string(), |i| format!("rules[{i}]")),
        "anonymous": e.anonymous,
        "provider": e.decision.facts.provider.as_deref(),
        "policy": e.decision.facts.policy.as_deref(),
        "answer": answer,
        "agrees": e.agrees(),
    })
}
