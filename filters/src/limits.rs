//! Charging a request's rate limits and quotas, exactly, across workers.
//!
//! Each (policy, limit, slot) counter is one small value in shared data, changed only through
//! compare-and-swap with the engine's pure `ratelimit::charge`, so two workers can never both
//! spend the last request of a budget. The number of counters is bounded by each limit's
//! `max_keys`. Counting that cannot complete (the host keeps refusing the swap) refuses the
//! request: failing closed.
//!
//! A limit with a `batch` above 1 trades that exactness for speed: a worker takes several
//! requests from the counter at once and spends them from its own [`HeldBatch`], so under
//! heavy traffic most requests cost no shared-data call (see `tollgate::ratelimit::HeldBatch`
//! for the sizes and the bounds on the error).

use crate::host;
use crate::shared;
use crate::worker::{ResponseHeaders, Worker};
use tollgate::config::Limit;
use tollgate::denial::{Denial, RateLimitDenial};
use tollgate::ratelimit::{self, BudgetKey, Charge, HeldBatch, RATE_BATCH_HOLD_MS};

/// Retry-After when a counter could not be updated at all.
const UNCOUNTED_RETRY_MS: u64 = 1000;

impl Worker {
    /// Charges every limit of the policy, in order, for the identities the engine named.
    /// `Ok`: the response headers that report the budget (`None` unless the configuration
    /// sends them). `Err`: the limit that refused, and the 429 to answer with.
    pub fn charge_limits(
        &mut self,
        policy_index: usize,
        keys: &[BudgetKey],
    ) -> Result<Option<ResponseHeaders>, (String, Denial)> {
        let Some(gate) = self.gate.clone() else {
            return Ok(None);
        };
        let Some(policy) = gate.config.policies.get(policy_index) else {
            return Ok(None);
        };
        if policy.limits.is_empty() {
            return Ok(None);
        }
        // Counters are charged at the time of now, read once: the tick clock of one worker can be
        // up to a tick behind another's, and GCRA would then refuse a request within its
        // budget. A held batch is spent without it, at the request's clock.
        let mut exact_now = None;
        // Reports are built only to be sent: they are most of the work of an allowed charge.
        // (Without them nothing is allocated or dropped: in a size build each is a call.)
        let mut reports = gate
            .config
            .rate_limit_headers
            .then(|| Vec::with_capacity(policy.limits.len()));
        // Read once, and only for a budget of the client address: the property read calls back
        // into the module, as costly as the rest of a decision.
        let mut address: Option<String> = None;
        for (index, (limit, key)) in policy.limits.iter().zip(keys).enumerate() {
            let address = &mut address;
            let slot = key.slot(limit.max_keys, move || {
                address.get_or_insert_with(|| host::client_address().unwrap_or_default())
            });
            let counter = Counter {
                policy: policy_index,
                limit: index,
                slot,
            };
            let outcome = if limit.batch > 1 {
                self.charge_batched(&counter, &policy.name, limit, &mut exact_now)
            } else {
                let now = *exact_now.get_or_insert_with(host::now_ms);
                shared::update(&counter.key(&policy.name, &limit.name), |state| {
                    ratelimit::charge(&limit.kind, state, now)
                })
            };
            let outcome = outcome.unwrap_or(Charge::Limited {
                retry_after_ms: UNCOUNTED_RETRY_MS,
                reset_ms: UNCOUNTED_RETRY_MS,
            });
            if outcome.is_limited() {
                let policy_header = gate.rate_limit_policy(policy_index);
                let denial = Denial::RateLimited(Box::new(RateLimitDenial {
                    policy: policy.name.clone(),
                    limit: limit.name.clone(),
                    retry_after: ratelimit::retry_after_seconds(&outcome).unwrap_or(1),
                    policy_header: policy_header.to_string(),
                    ratelimit_header: ratelimit::ratelimit_header(&limit.name, &outcome),
                }));
                return Err((limit.name.clone(), denial));
            }
            if let Some(reports) = &mut reports {
                reports.push(ratelimit::ratelimit_header(&limit.name, &outcome));
            }
        }
        Ok(reports.map(|reports| {
            let policy_header = gate.rate_limit_policy(policy_index);
            vec![
                ("ratelimit-policy".to_string(), policy_header.to_string()),
                ("ratelimit".to_string(), reports.join(", ")),
            ]
        }))
    }
}

/// One counter: a limit of a policy, and the slot of the identity that spends it.
struct Counter {
    policy: usize,
    limit: usize,
    slot: u32,
}

impl Counter {
    /// Its shared-data key: `tollgate.rl.<policy>.<limit>.<slot>` (made for every counted
    /// request, so without `format!`).
    fn key(&self, policy: &str, limit: &str) -> String {
        let mut key = ["tollgate.rl.", policy, ".", limit, "."].concat();
        tollgate::decimal::push_u64(&mut key, u64::from(self.slot), 1);
        key
    }

    /// Its name among a worker's held batches (slots are below 2^20, limits and policies are
    /// far fewer than 2^20).
    fn id(&self) -> u64 {
        ((self.policy as u64) << 40) | ((self.limit as u64) << 20) | u64::from(self.slot)
    }
}

impl Worker {
    /// Charges a request to a batched limit: from the batch this worker holds for the counter
    /// while it lasts, else from a new batch taken from the shared counter (at the exact time,
    /// which is then kept in `exact_now`). `None`: the counter could not be updated.
    fn charge_batched(
        &mut self,
        counter: &Counter,
        policy: &str,
        limit: &Limit,
        exact_now: &mut Option<u64>,
    ) -> Option<Charge> {
        let id = counter.id();
        let held = self.batches.get_mut(&id);
        let wanted = match held {
            Some(held) => match held.spend(exact_now.unwrap_or(self.now_ms)) {
                Some(outcome) => return Some(outcome),
                None => held.next_size(limit.batch),
            },
            None => 1,
        };
        let now = *exact_now.get_or_insert_with(host::now_ms);
        let batch = shared::update(&counter.key(policy, &limit.name), |state| {
            ratelimit::take_batch(&limit.kind, state, now, wanted)
        })?;
        let Some(mut held) = HeldBatch::new(&limit.kind, &batch, now) else {
            // Limited: the next batch starts small again.
            self.batches.remove(&id);
            return Some(batch.outcome);
        };
        self.metrics.batch_taken(policy, &limit.name);
        let outcome = held.spend(now);
        self.batches.insert(id, held);
        outcome
    }

    /// Forgets batches that hold nothing to spend and were not used for a hold
    /// (`HeldBatch::worth_keeping`), at most once per hold (called at ticks): what remains is
    /// the counters this worker is busy with and the quota batches it still holds requests of,
    /// at most the limits' `max_keys` each.
    pub fn drop_old_batches(&mut self) {
        let now = self.now_ms;
        if self.batches.is_empty() || now < self.batches_pruned_ms + RATE_BATCH_HOLD_MS {
            return;
        }
        self.batches_pruned_ms = now;
        self.batches.retain(|_, held| held.worth_keeping(now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_named_by_policy_limit_and_slot() {
        let counter = |slot| Counter {
            policy: 2,
            limit: 1,
            slot,
        };
        assert_eq!(
            counter(0).key("gold", "per-minute"),
            "tollgate.rl.gold.per-minute.0"
        );
        assert_eq!(counter(16_383).key("p", "l"), "tollgate.rl.p.l.16383");
        assert_ne!(counter(1).id(), counter(2).id());
        let other_limit = Counter {
            policy: 2,
            limit: 2,
            slot: 1,
        };
        assert_ne!(counter(1).id(), other_limit.id());
    }
}
