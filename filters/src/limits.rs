//! Charging a request's rate limits and quotas, exactly, across workers.
//!
//! Each (policy, limit, slot) counter is one small value in shared data, changed only through
//! compare-and-swap with the engine's pure `ratelimit::charge`, so two workers can never both
//! spend the last request of a budget. The number of counters is bounded by each limit's
//! `max_keys`. Counting that cannot complete (the host keeps refusing the swap) refuses the
//! request: failing closed.

use crate::host;
use crate::shared;
use crate::worker::Worker;
use tollgate::denial::{Denial, RateLimitDenial};
use tollgate::ratelimit::{self, BudgetKey, Charge};

/// Retry-After when a counter could not be updated at all.
const UNCOUNTED_RETRY_MS: u64 = 1000;

impl Worker {
    /// Charges every limit of the policy, in order, for the identities the engine named.
    /// `Ok`: the response headers that report the budget (none unless the configuration
    /// sends them). `Err`: the limit that refused, and the 429 to answer with.
    pub fn charge_limits(
        &mut self,
        policy: usize,
        keys: &[BudgetKey],
    ) -> Result<Vec<(String, String)>, (String, Denial)> {
        let Some(gate) = self.gate.clone() else {
            return Ok(Vec::new());
        };
        let policy_header = gate.rate_limit_policy(policy);
        let Some(policy) = gate.config.policies.get(policy) else {
            return Ok(Vec::new());
        };
        if policy.limits.is_empty() {
            return Ok(Vec::new());
        }
        // Budgets are exact only at the time of now: the tick clock of one worker can be up to
        // a tick behind another's, and GCRA would then refuse a request within its budget.
        self.set_clock(host::now_ms());
        let now = self.now_ms;
        // Reports are built only to be sent: they are most of the work of an allowed charge.
        let report = gate.config.rate_limit_headers;
        let mut reports = Vec::with_capacity(if report { policy.limits.len() } else { 0 });
        // Read once, and only for a budget of the client address: the property read calls back
        // into the module, as costly as the rest of a decision.
        let mut address: Option<String> = None;
        for (limit, key) in policy.limits.iter().zip(keys) {
            let address = &mut address;
            let key = key.text(move || {
                address.get_or_insert_with(|| host::client_address().unwrap_or_default())
            });
            let slot = ratelimit::slot(&key, limit.max_keys);
            let outcome = shared::update(&counter_key(&policy.name, &limit.name, slot), |state| {
                ratelimit::charge(&limit.kind, state, now)
            })
            .unwrap_or(Charge::Limited {
                retry_after_ms: UNCOUNTED_RETRY_MS,
                reset_ms: UNCOUNTED_RETRY_MS,
            });
            if outcome.is_limited() {
                let denial = Denial::RateLimited(Box::new(RateLimitDenial {
                    policy: policy.name.clone(),
                    limit: limit.name.clone(),
                    retry_after: ratelimit::retry_after_seconds(&outcome).unwrap_or(1),
                    policy_header: policy_header.to_string(),
                    ratelimit_header: ratelimit::ratelimit_header(&limit.name, &outcome),
                }));
                return Err((limit.name.clone(), denial));
            }
            if report {
                reports.push(ratelimit::ratelimit_header(&limit.name, &outcome));
            }
        }
        if !report {
            return Ok(Vec::new());
        }
        Ok(vec![
            ("ratelimit-policy".to_string(), policy_header.to_string()),
            ("ratelimit".to_string(), reports.join(", ")),
        ])
    }
}

/// The shared-data key of one counter: `tollgate.rl.<policy>.<limit>.<slot>` (made for every
/// limit of every request, so without `format!`).
fn counter_key(policy: &str, limit: &str, slot: u32) -> String {
    let mut key = ["tollgate.rl.", policy, ".", limit, "."].concat();
    tollgate::decimal::push_u64(&mut key, u64::from(slot), 1);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_named_by_policy_limit_and_slot() {
        assert_eq!(
            counter_key("gold", "per-minute", 0),
            "tollgate.rl.gold.per-minute.0"
        );
        assert_eq!(counter_key("p", "l", 16_383), "tollgate.rl.p.l.16383");
    }
}
