//! Policies: from a verified identity to what it may do and how much.
//!
//! Precedence is the configuration's order: the first policy whose `when` conditions all hold
//! applies; when none does (and for anonymous requests) the `default_policy` applies, if any.
//! One policy per request keeps the outcome explainable in one audit line ("policy gold, limit
//! per-minute"), unlike merging several. Conditions read claims by the same paths as rules and
//! headers (`claims::lookup`), with `scope` read as the token's list of scopes.

use crate::claims::{self, Members};
use crate::config::{Condition, ConditionTest, Config, Policy};
use serde_json::Value;

/// The policy for a request: `claims` is `None` for an anonymous request.
pub fn select<'c, C: Members + ?Sized>(
    config: &'c Config,
    claims: Option<&C>,
) -> Option<(usize, &'c Policy)> {
    let matched = claims.and_then(|c| {
        config
            .policies
            .iter()
            .enumerate()
            .find(|(_, p)| p.when.iter().all(|cond| holds(c, cond)))
    });
    matched.or_else(|| {
        let i = config.default_policy?;
        Some((i, config.policies.get(i)?))
    })
}

/// The claim's values as text: the scopes for "scope", an array's scalars, or one scalar.
fn values<'c>(claims: &'c (impl Members + ?Sized), path: &str) -> Vec<std::borrow::Cow<'c, str>> {
    if path == "scope" {
        return claims::scopes(claims).into_iter().map(Into::into).collect();
    }
    match claims::lookup(claims, path) {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(claims::scalar_text)
            .map(Into::into)
            .collect(),
        Some(v) => claims::scalar_text(v).map(Into::into).into_iter().collect(),
        None => Vec::new(),
    }
}

/// Whether one condition holds for these claims.
pub fn holds(claims: &(impl Members + ?Sized), condition: &Condition) -> bool {
    let is_scalar = condition.claim != "scope"
        && !matches!(
            claims::lookup(claims, &condition.claim),
            Some(Value::Array(_))
        );
    let have = values(claims, &condition.claim);
    match &condition.test {
        ConditionTest::Equals(v) => is_scalar && have.len() == 1 && have.iter().any(|h| h == v),
        ConditionTest::Contains(v) => have.iter().any(|h| h == v),
        ConditionTest::AnyOf(vs) => have.iter().any(|h| vs.iter().any(|v| v == h)),
    }
}

/// Whether the policy lets the request use this route: `deny` wins over `allow`; no `allow`
/// list means every route.
pub fn route_allowed(
    policy: &Policy,
    method: &str,
    normalized_path: &str,
    authority: &str,
) -> bool {
    if policy
        .deny
        .iter()
        .any(|m| m.matches(method, normalized_path, authority))
    {
        return false;
    }
    match &policy.allow {
        None => true,
        Some(allowed) => allowed
            .iter()
            .any(|m| m.matches(method, normalized_path, authority)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use serde_json::Map;

    fn config() -> Config {
        let json = json!({
            "providers": {"p": {"issuer": "https://idp", "audiences": ["a"],
                                "jwks": {"uri": "https://idp/jwks", "cluster": "idp"}}},
            "policies": [
                {"name": "admins", "when": [{"claim": "realm_access.roles", "contains": "admin"}],
                 "headers": {"x-plan": "admin"}},
                {"name": "gold", "when": [{"claim": "tenant.plan", "equals": "gold"},
                                          {"claim": "scope", "contains": "orders:read"}],
                 "allow": [{"prefix": "/orders"}], "deny": [{"prefix": "/orders/export", "methods": ["POST"]}]},
                {"name": "partners", "when": [{"claim": "client_id", "any_of": ["acme", "globex"]}]},
                {"name": "free"}
            ],
            "default_policy": "free"
        });
        Config::from_json(json.to_string().as_bytes()).unwrap()
    }

    fn claims(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("object expected"),
        }
    }

    fn name(c: &Config, claims: Option<&Map<String, Value>>) -> Option<String> {
        select(c, claims).map(|(_, p)| p.name.clone())
    }

    #[test]
    fn the_first_matching_policy_wins() {
        let c = config();
        let admin_and_gold = claims(
            json!({"realm_access": {"roles": ["admin"]}, "tenant": {"plan": "gold"}, "scope": "orders:read"}),
        );
        assert_eq!(name(&c, Some(&admin_and_gold)).as_deref(), Some("admins"));
        let gold = claims(json!({"tenant": {"plan": "gold"}, "scope": "x orders:read"}));
        assert_eq!(name(&c, Some(&gold)).as_deref(), Some("gold"));
    }

    #[test]
    fn every_condition_must_hold() {
        let c = config();
        let gold_without_scope =
            claims(json!({"tenant": {"plan": "gold"}, "scope": "orders:write"}));
        assert_eq!(name(&c, Some(&gold_without_scope)).as_deref(), Some("free"));
    }

    #[test]
    fn any_of_and_the_default_policy() {
        let c = config();
        assert_eq!(
            name(&c, Some(&claims(json!({"client_id": "globex"})))).as_deref(),
            Some("partners")
        );
        assert_eq!(
            name(&c, Some(&claims(json!({"client_id": "initech"})))).as_deref(),
            Some("free")
        );
        assert_eq!(
            name(&c, None).as_deref(),
            Some("free"),
            "anonymous requests get the default"
        );
    }

    #[test]
    fn equals_needs_a_scalar_and_contains_reads_arrays_and_scopes() {
        let eq = |v: &str| Condition {
            claim: "plan".into(),
            test: ConditionTest::Equals(v.into()),
        };
        assert!(holds(&claims(json!({"plan": "gold"})), &eq("gold")));
        assert!(!holds(&claims(json!({"plan": ["gold"]})), &eq("gold")));
        assert!(!holds(&claims(json!({"plan": "golden"})), &eq("gold")));
        assert!(!holds(&claims(json!({})), &eq("gold")));
        assert!(holds(&claims(json!({"plan": 3})), &eq("3")));
        let has = |claim: &str, v: &str| Condition {
            claim: claim.into(),
            test: ConditionTest::Contains(v.into()),
        };
        assert!(holds(
            &claims(json!({"groups": ["a", "b"]})),
            &has("groups", "b")
        ));
        assert!(!holds(
            &claims(json!({"groups": {"b": true}})),
            &has("groups", "b")
        ));
        assert!(holds(
            &claims(json!({"scp": ["orders:read"]})),
            &has("scope", "orders:read")
        ));
        assert!(!holds(
            &claims(json!({"scope": "orders:readonly"})),
            &has("scope", "orders:read")
        ));
    }

    #[test]
    fn deny_wins_over_allow() {
        let c = config();
        let gold = &c.policies[1];
        assert!(route_allowed(gold, "GET", "/orders/1", "h"));
        assert!(route_allowed(gold, "GET", "/orders/export", "h"));
        assert!(!route_allowed(gold, "POST", "/orders/export", "h"));
        assert!(!route_allowed(gold, "GET", "/admin", "h"), "not in allow");
        assert!(
            route_allowed(&c.policies[3], "GET", "/anything", "h"),
            "no allow list: every route"
        );
    }
}
