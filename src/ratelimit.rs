//! Rate limits and quotas: the arithmetic, the stored state, the keying and the headers.
//!
//! # Where the counters live, and why the state is shaped so
//!
//! Envoy runs the filter on several worker threads, each with its own Wasm VM, so a counter
//! must live in the host's shared key-value store. The filter keeps **one small value per
//! (limit, slot)** and updates it with compare-and-swap: it reads `(value, cas)`, calls
//! [`charge`], and writes the returned value with the `cas`, retrying on conflict. That shape
//! drives every choice here:
//!
//! - **One value, one CAS.** Everything a decision needs fits in a single value, so a charge
//!   is one read and at most one conditional write; no second key can go stale between them.
//! - **Small and self-contained.** A rate limit stores only its theoretical arrival time
//!   (GCRA), a quota only its window start and count: a few dozen ASCII bytes, and no
//!   background task is needed to expire or refill anything (time is an argument).
//! - **Bounded keys.** Identities are hashed into `max_keys` slots ([`slot`]), so the number
//!   of stored values per limit is bounded whatever the traffic. Identities that share a slot
//!   share a counter, which can only make counting stricter, never looser.
//! - **Writes only on change.** [`charge`] returns `None` when the value would not change (a
//!   limited request), so rejected traffic costs a read and no write.
//! - **Untrusted bytes.** A value that does not parse is treated as never used, and a value
//!   that claims a time far in the future is clamped, so corrupt state can neither panic nor
//!   lock an identity out for longer than one full period.
//!
//! # State encodings (ASCII)
//!
//! - Rate: `"<numerator>/<requests>"`, the theoretical arrival time (TAT) in milliseconds since
//!   the epoch as an exact fraction whose denominator is the limit's `requests`. In those
//!   units of `1/requests` ms the emission interval `period_ms / requests` is the whole number
//!   `period_ms`, so "3 per 1000 ms" accumulates no rounding error however long it runs. The
//!   denominator is stored so that a configuration change of `requests` rescales the time
//!   (rounding up, the stricter way) instead of misreading it.
//! - Quota: `"<window start ms>:<count>"`, the UTC calendar window's start and the requests
//!   counted in it.
//!
//! The two use different separators, so a limit that changes kind under the same name reads
//! the other kind's value as unparseable and starts fresh.
//!
//! # Headers
//!
//! `RateLimit-Policy` and `RateLimit` follow draft-ietf-httpapi-ratelimit-headers-11 (May
//! 2026): each is a Structured Fields List (RFC 9651) of items whose value is a String (the
//! limit name), serialized canonically as `", "`-separated members:
//!
//! ```text
//! RateLimit-Policy: "burst";q=10;w=1;tollgate-burst=20, "daily";q=1000;w=86400
//! RateLimit: "burst";r=0;t=1
//! Retry-After: 1
//! ```
//!
//! - Rate: `q` = `requests` and `w` = `period_ms` in seconds, rounded up (so the advertised
//!   rate is never higher than the enforced one). When `burst` differs from `requests`, the
//!   vendor parameter `tollgate-burst` (the draft asks for a vendor prefix) gives it.
//! - Quota: `q` = `requests`; `w` = 3600 for hours and 86400 for days. Calendar months last
//!   28 to 31 days, so they carry no `w` (it is optional); the `RateLimit` `t` gives the exact
//!   time to their reset.
//! - `RateLimit`: `r` = requests still allowed now; `t` = seconds (rounded up) until the
//!   limit is fully restored for an allowed request, and until the next request would be
//!   allowed for a limited one. The latter keeps `Retry-After` equal to `t`: the draft says a
//!   `Retry-After` SHOULD NOT point earlier than the end of the effective window (section 6).
//! - `Retry-After` is delay-seconds, rounded up and at least 1.

use crate::civil::{civil_from_days, days_from_civil};
use crate::claims::{lookup, scalar_text, Members};
use crate::config::{CalendarWindow, Limit, LimitKey, LimitKind};
use crate::decimal::{parse_u128, push_u128, push_u64};
use crate::slots::stable_hash;
use std::borrow::Cow;
use std::net::{IpAddr, Ipv6Addr};

const MS_PER_HOUR: u64 = 3_600_000;
const MS_PER_DAY: u64 = 86_400_000;
/// Largest Integer a Structured Field may carry (RFC 9651 section 3.3.1).
const SF_INTEGER_MAX: u64 = 999_999_999_999_999;
/// Longest decimal state field read (u128::MAX has 39 digits).
const MAX_DIGITS: usize = 39;

/// The outcome of charging one request against one limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charge {
    /// The request is counted. `remaining`: requests still allowed right now; `reset_ms`:
    /// time until the limit is fully restored (the bucket is full, or the quota window ends).
    Allowed { remaining: u64, reset_ms: u64 },
    /// The request is refused. `retry_after_ms`: time until the next request would be
    /// allowed; `reset_ms`: time until the limit is fully restored.
    Limited { retry_after_ms: u64, reset_ms: u64 },
}

impl Charge {
    pub fn is_limited(&self) -> bool {
        matches!(self, Charge::Limited { .. })
    }
}

/// Charges one request: given the stored state (`None` = never used), returns the state to
/// store (`None` when it does not change, as for most limited requests) and the outcome.
///
/// Unparseable state counts as never used; state that claims a time far in the future is
/// clamped, and then the clamped value is returned for storing even when limited.
pub fn charge(kind: &LimitKind, state: Option<&[u8]>, now_ms: u64) -> (Option<Vec<u8>>, Charge) {
    let (state, batch) = take_batch(kind, state, now_ms, 1);
    (state, batch.outcome)
}

/// A worker's batch may hold at most this share of what a limit allows at the moment it is
/// taken, so that batches shrink to single requests as a budget runs out, and the requests
/// other workers wait for while one holds a batch stay a small part of the budget.
pub const BATCH_SHARE: u64 = 16;

/// Requests taken from a counter at once (see [`take_batch`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batch {
    /// Requests counted: 0 when limited, else between 1 and the size asked for.
    pub requests: u64,
    /// The outcome as of the batch's last request: `remaining` excludes the whole batch.
    pub outcome: Charge,
}

/// Counts up to `wanted` requests at once, as if they all arrived at `now_ms`: at least one
/// when the limit allows one, and never more than a [`BATCH_SHARE`]th of what it allows right
/// now. A worker then spends the batch without touching the shared counter; `wanted` = 1 is
/// [`charge`]. Taking `n` at once leaves the same state as charging one request `n` times at
/// `now_ms`.
pub fn take_batch(
    kind: &LimitKind,
    state: Option<&[u8]>,
    now_ms: u64,
    wanted: u64,
) -> (Option<Vec<u8>>, Batch) {
    let (new_state, batch) = match *kind {
        LimitKind::Rate {
            requests,
            period_ms,
            burst,
        } => charge_rate(requests, period_ms, burst, state, now_ms, wanted),
        LimitKind::Quota { requests, window } => {
            charge_quota(requests, window, state, now_ms, wanted)
        }
    };
    let changed = new_state.filter(|s| state != Some(s.as_slice()));
    (changed, batch)
}

/// How many of `available` requests a batch asking for `wanted` takes (at least one).
fn batch_size(available: u64, wanted: u64) -> u64 {
    wanted.min(available / BATCH_SHARE).max(1)
}

/// How long a worker may spend a rate limit's batch: beyond it, what is left is dropped, so
/// requests counted at the batch's moment are never spent much later (which could exceed a
/// burst). A quota's batch lasts until its window ends: a count has no moments to respect.
/// Also how long a spent batch is kept to size the next one.
pub const RATE_BATCH_HOLD_MS: u64 = 1000;

/// A batch one worker holds and spends without the shared counter.
///
/// Its size follows the worker's traffic: the first is one request; one spent in full is
/// followed by one twice as large (up to the limit's `batch`), one that ran out of time by one
/// the size of what was spent. A worker with little traffic thus counts exactly, and one with
/// much touches the counter once per `batch` requests. Requests counted but not spent are lost
/// to the budget, and those spent late were counted early: either way at most a batch per
/// worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldBatch {
    /// Requests left to spend.
    left: u64,
    /// The requests it was taken with.
    size: u64,
    /// The end of its time to be spent (ms).
    until_ms: u64,
    /// When it was taken or last spent from (ms).
    used_ms: u64,
    /// What the counter had left when it was taken, and when it would be fully restored:
    /// what the `RateLimit` header reports.
    remaining: u64,
    reset_at_ms: u64,
}

impl HeldBatch {
    /// A batch just taken at `now_ms`, before any of it is spent; `None` when it holds none.
    pub fn new(kind: &LimitKind, batch: &Batch, now_ms: u64) -> Option<HeldBatch> {
        let Charge::Allowed {
            remaining,
            reset_ms,
        } = batch.outcome
        else {
            return None;
        };
        let until_ms = match kind {
            LimitKind::Rate { .. } => now_ms.saturating_add(RATE_BATCH_HOLD_MS),
            LimitKind::Quota { .. } => now_ms.saturating_add(reset_ms),
        };
        (batch.requests > 0).then_some(HeldBatch {
            left: batch.requests,
            size: batch.requests,
            until_ms,
            used_ms: now_ms,
            remaining,
            reset_at_ms: now_ms.saturating_add(reset_ms),
        })
    }

    /// Spends one request at `now_ms`: its outcome, or `None` when the batch is spent or its
    /// time is over (take another). Inlined: it runs for every batched limit of every request,
    /// and a size build would call it.
    #[inline(always)]
    pub fn spend(&mut self, now_ms: u64) -> Option<Charge> {
        if self.left == 0 || now_ms >= self.until_ms {
            return None;
        }
        self.left -= 1;
        self.used_ms = now_ms;
        Some(Charge::Allowed {
            remaining: self.remaining.saturating_add(self.left),
            reset_ms: self.reset_at_ms.saturating_sub(now_ms),
        })
    }

    /// The size to ask for next, at most `most`.
    pub fn next_size(&self, most: u64) -> u64 {
        let wanted = if self.left == 0 {
            self.size.saturating_mul(2)
        } else {
            self.size - self.left
        };
        wanted.clamp(1, most.max(1))
    }

    /// Whether it is worth keeping at `now_ms`: it still holds requests to spend (dropping them
    /// would lose them), or it was used within a hold, so that the next batch's size follows
    /// from it. A spent quota batch is not kept for the rest of its window.
    pub fn worth_keeping(&self, now_ms: u64) -> bool {
        (self.left > 0 && now_ms < self.until_ms)
            || now_ms < self.used_ms.saturating_add(RATE_BATCH_HOLD_MS)
    }
}

/// GCRA (virtual scheduling) in units of `1/requests` ms, where the emission interval is
/// exactly `period_ms` units and a full bucket is `burst` intervals ahead of now.
fn charge_rate(
    requests: u64,
    period_ms: u64,
    burst: u64,
    state: Option<&[u8]>,
    now_ms: u64,
    wanted: u64,
) -> (Option<Vec<u8>>, Batch) {
    let per_ms = u128::from(requests.max(1));
    let interval = u128::from(period_ms.max(1));
    let capacity = u128::from(burst.max(1)) * interval;
    let now = u128::from(now_ms) * per_ms;
    let to_ms = |units: u128| saturate(units.div_ceil(per_ms));

    let stored = state.and_then(|s| parse_rate_state(s, per_ms));
    // A TAT more than a full bucket ahead cannot come from this clock going forward: the
    // clock went back, or the value is corrupt. An empty bucket is the strictest state that
    // can honestly exist, so clamp to it (and store the clamp, or it would never expire).
    let limit = now + capacity;
    let (tat, clamped) = match stored {
        Some(tat) if tat > limit => (limit, true),
        Some(tat) => (tat.max(now), false),
        None => (now, false),
    };
    // Requests that conform now: the k-th does while `tat + k * interval - now <= capacity`.
    let available = saturate((capacity - (tat - now)) / interval);
    if available > 0 {
        let taken = batch_size(available, wanted);
        let next = tat + u128::from(taken) * interval;
        let ahead = next - now;
        let outcome = Charge::Allowed {
            remaining: saturate((capacity - ahead) / interval),
            reset_ms: to_ms(ahead),
        };
        let batch = Batch {
            requests: taken,
            outcome,
        };
        (Some(rate_state(next, per_ms)), batch)
    } else {
        let next = tat + interval;
        let outcome = Charge::Limited {
            retry_after_ms: to_ms(next - capacity - now),
            reset_ms: to_ms(tat - now),
        };
        let batch = Batch {
            requests: 0,
            outcome,
        };
        (clamped.then(|| rate_state(tat, per_ms)), batch)
    }
}

fn rate_state(tat: u128, per_ms: u128) -> Vec<u8> {
    state_text(tat, '/', per_ms)
}

/// A counter's stored text: two decimal numbers and a separator (`/` for a rate's fraction,
/// `:` for a quota's window and count).
fn state_text(first: u128, separator: char, second: u128) -> Vec<u8> {
    let mut out = String::with_capacity(48);
    push_u128(&mut out, first);
    out.push(separator);
    push_u128(&mut out, second);
    out.into_bytes()
}

/// Reads `"<numerator>/<denominator>"` as a time in units of `1/per_ms` ms, rounding up.
fn parse_rate_state(state: &[u8], per_ms: u128) -> Option<u128> {
    let text = std::str::from_utf8(state).ok()?;
    let (num, den) = text.split_once('/')?;
    let (num, den) = (parse_digits(num)?, parse_digits(den)?);
    if den == 0 {
        return None;
    }
    if den == per_ms {
        return Some(num);
    }
    // Saturation only happens for absurd values, which the caller then clamps.
    Some(num.saturating_mul(per_ms).div_ceil(den))
}

fn charge_quota(
    requests: u64,
    window: CalendarWindow,
    state: Option<&[u8]>,
    now_ms: u64,
    wanted: u64,
) -> (Option<Vec<u8>>, Batch) {
    let current = window_start(window, now_ms);
    let next = window_end(window, current);
    let (start, count) = match state.and_then(|s| parse_quota_state(s, window)) {
        // An earlier window has ended: this one starts from zero.
        Some((start, _)) if start < current => (current, 0),
        Some((start, count)) if start == current => (current, count),
        // A later window: the clock went back across a boundary, or the value is corrupt.
        // Keep counting there (a fresh count would grant a second budget), but never further
        // ahead than the next window.
        Some((start, count)) => (start.min(next), count),
        None => (current, 0),
    };
    let reset_ms = window_end(window, start).saturating_sub(now_ms).max(1);
    let available = requests.saturating_sub(count);
    if available > 0 {
        let taken = batch_size(available, wanted);
        let count = count + taken;
        let outcome = Charge::Allowed {
            remaining: requests - count,
            reset_ms,
        };
        let batch = Batch {
            requests: taken,
            outcome,
        };
        (Some(quota_state(start, count)), batch)
    } else {
        let outcome = Charge::Limited {
            retry_after_ms: reset_ms,
            reset_ms,
        };
        let batch = Batch {
            requests: 0,
            outcome,
        };
        (Some(quota_state(start, count)), batch)
    }
}

fn quota_state(start: u64, count: u64) -> Vec<u8> {
    state_text(start.into(), ':', count.into())
}

/// Reads `"<window start ms>:<count>"`; a start that is not a window boundary is corrupt.
fn parse_quota_state(state: &[u8], window: CalendarWindow) -> Option<(u64, u64)> {
    let text = std::str::from_utf8(state).ok()?;
    let (start, count) = text.split_once(':')?;
    let start = u64::try_from(parse_digits(start)?).ok()?;
    let count = u64::try_from(parse_digits(count)?).ok()?;
    (window_start(window, start) == start).then_some((start, count))
}

/// Plain ASCII digits only (`str::parse` would also take a leading `+`).
fn parse_digits(s: &str) -> Option<u128> {
    if s.len() > MAX_DIGITS {
        return None;
    }
    parse_u128(s)
}

fn saturate(v: u128) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}

/// Start (ms since the epoch) of the UTC calendar window holding `ms`.
fn window_start(window: CalendarWindow, ms: u64) -> u64 {
    match window {
        CalendarWindow::Hour => ms - ms % MS_PER_HOUR,
        CalendarWindow::Day => ms - ms % MS_PER_DAY,
        CalendarWindow::Month => {
            let (year, month, _) = civil_from_days(ms / MS_PER_DAY);
            day_ms(days_from_civil(year, month, 1))
        }
    }
}

/// End (exclusive) of the UTC calendar window holding `ms`, saturating at the end of time.
fn window_end(window: CalendarWindow, ms: u64) -> u64 {
    match window {
        CalendarWindow::Hour => window_start(window, ms).saturating_add(MS_PER_HOUR),
        CalendarWindow::Day => window_start(window, ms).saturating_add(MS_PER_DAY),
        CalendarWindow::Month => {
            let (year, month, _) = civil_from_days(ms / MS_PER_DAY);
            let (year, month) = if month == 12 {
                (year + 1, 1)
            } else {
                (year, month + 1)
            };
            day_ms(days_from_civil(year, month, 1))
        }
    }
}

fn day_ms(days: i64) -> u64 {
    u64::try_from(days).map_or(0, |d| d.saturating_mul(MS_PER_DAY))
}

/// Whose budget a request spends: an identity the token names (the key's text), or the client
/// address, which the host reads only when a budget needs it (a property read costs a call into
/// the module in Envoy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BudgetKey {
    /// An identity's key, and its hash (what its counter's slot is taken from).
    Identity {
        text: String,
        hash: u64,
    },
    ClientAddress,
}

impl BudgetKey {
    pub fn identity(text: String) -> BudgetKey {
        let hash = stable_hash(text.as_bytes());
        BudgetKey::Identity { text, hash }
    }

    /// The key's text (see [`key_value`]). `client_address` is asked only for the client
    /// address's budget.
    pub fn text<'a>(&self, client_address: impl FnOnce() -> &'a str) -> Cow<'_, str> {
        match self {
            BudgetKey::Identity { text, .. } => Cow::Borrowed(text),
            BudgetKey::ClientAddress => Cow::Owned(address_text(client_address())),
        }
    }

    /// The counter slot among `max_keys` (see [`slot`]), without hashing an identity again.
    /// Inlined, as `HeldBatch::spend` is.
    #[inline(always)]
    pub fn slot<'a>(&self, max_keys: u32, client_address: impl FnOnce() -> &'a str) -> u32 {
        match self {
            BudgetKey::Identity { hash, .. } => slot_of_hash(*hash, max_keys),
            BudgetKey::ClientAddress => slot(&address_text(client_address()), max_keys),
        }
    }
}

fn address_text(address: &str) -> String {
    ["addr:", &address_key(address)].concat()
}

/// The identity whose budget a request spends, namespaced by kind (`sub:`, `client:`,
/// `claim:`, `addr:`) so that, say, a subject spelled like an IP address never shares a
/// counter with that address.
///
/// `claims` is `None` for anonymous requests. An identity that is missing, empty or not a
/// scalar falls back to the client address. `client_id` falls back to `azp` (OIDC) first.
/// The address drops its port (a client opens many connections) and an IPv6 address counts
/// by its /64 (one host commonly owns a whole /64); IPv4-mapped IPv6 counts as IPv4.
pub fn key_value<C: Members + ?Sized>(
    key: &LimitKey,
    claims: Option<&C>,
    client_address: &str,
) -> String {
    budget_key(key, claims).text(|| client_address).into_owned()
}

/// [`key_value`] before the client address is known: whose budget, the address's included.
pub fn budget_key<C: Members + ?Sized>(key: &LimitKey, claims: Option<&C>) -> BudgetKey {
    let text = |path: &str| {
        claims
            .and_then(|c| lookup(c, path))
            .and_then(scalar_text)
            .filter(|t| !t.is_empty())
    };
    let identity = match key {
        LimitKey::Subject => text("sub").map(|t| ["sub:", &t].concat()),
        LimitKey::ClientId => text("client_id")
            .or_else(|| text("azp"))
            .map(|t| ["client:", &t].concat()),
        LimitKey::Claim(path) => text(path).map(|t| ["claim:", &t].concat()),
        LimitKey::ClientAddress => None,
    };
    identity.map_or(BudgetKey::ClientAddress, BudgetKey::identity)
}

/// The address part of a key: without port, IPv6 reduced to its /64.
fn address_key(address: &str) -> String {
    let address = address.trim();
    let host = if let Some(rest) = address.strip_prefix('[') {
        rest.split_once(']').map_or(rest, |(host, _)| host)
    } else if address.matches(':').count() == 1 {
        address.split_once(':').map_or(address, |(host, _)| host)
    } else {
        address
    };
    // A zone ("fe80::1%eth0") names an interface, not a host.
    let host = host.split_once('%').map_or(host, |(h, _)| h);
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.to_string(),
        Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let prefix = u128::from(v6) & !u128::from(u64::MAX);
                format!("{}/64", Ipv6Addr::from(prefix))
            }
        },
        Err(_) => host.to_string(),
    }
}

/// The slot (`0..max_keys`) whose counter a key value spends: its [`stable_hash`] modulo
/// `max_keys`. The hash spreads keys uniformly, so the stored counters per limit stay at most
/// `max_keys`; keys that share a slot share a counter (stricter, never looser). A client that
/// picks its key (its address) can find one that shares a victim's slot whatever the hash, as
/// the modulus is small and public; a cryptographic hash would cost ~0.25 us a limit and
/// request in wasm for no protection.
pub fn slot(key_value: &str, max_keys: u32) -> u32 {
    slot_of_hash(stable_hash(key_value.as_bytes()), max_keys)
}

#[inline(always)]
fn slot_of_hash(hash: u64, max_keys: u32) -> u32 {
    // The remainder is below max_keys, which fits u32.
    u32::try_from(hash % u64::from(max_keys.max(1))).unwrap_or(0)
}

/// `RateLimit-Policy` field value for these limits (see the module documentation).
pub fn policy_header(limits: &[&Limit]) -> String {
    let items: Vec<String> = limits
        .iter()
        .map(|limit| {
            let name = sf_string(&limit.name);
            match limit.kind {
                LimitKind::Rate {
                    requests,
                    period_ms,
                    burst,
                } => {
                    let w = period_ms.div_ceil(1000).max(1);
                    let mut item = format!("{name};q={};w={}", sf_int(requests), sf_int(w));
                    if burst != requests {
                        item.push_str(&format!(";tollgate-burst={}", sf_int(burst)));
                    }
                    item
                }
                LimitKind::Quota { requests, window } => {
                    let q = sf_int(requests);
                    match window {
                        CalendarWindow::Hour => format!("{name};q={q};w=3600"),
                        CalendarWindow::Day => format!("{name};q={q};w=86400"),
                        CalendarWindow::Month => format!("{name};q={q}"),
                    }
                }
            }
        })
        .collect();
    items.join(", ")
}

/// One `RateLimit` list member for the limit `name`; join several with `", "`.
pub fn ratelimit_header(name: &str, charge: &Charge) -> String {
    let (remaining, t) = match *charge {
        Charge::Allowed {
            remaining,
            reset_ms,
        } => (remaining, reset_ms.div_ceil(1000)),
        Charge::Limited { retry_after_ms, .. } => (0, retry_seconds(retry_after_ms)),
    };
    // Built piece by piece: it is made for every request a policy with limits allows.
    let mut out = String::with_capacity(name.len() + 32);
    push_sf_string(&mut out, name);
    out.push_str(";r=");
    push_u64(&mut out, sf_int(remaining), 1);
    out.push_str(";t=");
    push_u64(&mut out, sf_int(t), 1);
    out
}

/// `Retry-After` in seconds (rounded up, at least 1) for a limited request.
pub fn retry_after_seconds(charge: &Charge) -> Option<u64> {
    match *charge {
        Charge::Allowed { .. } => None,
        Charge::Limited { retry_after_ms, .. } => Some(retry_seconds(retry_after_ms)),
    }
}

fn retry_seconds(ms: u64) -> u64 {
    ms.div_ceil(1000).clamp(1, SF_INTEGER_MAX)
}

fn sf_int(v: u64) -> u64 {
    v.min(SF_INTEGER_MAX)
}

/// A Structured Fields String: printable ASCII, with `"` and `\` escaped; anything else is
/// dropped (limit names are validated to `[A-Za-z0-9_-]` anyway).
fn sf_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    push_sf_string(&mut out, s);
    out
}

fn push_sf_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars().filter(|c| (' '..='~').contains(c)) {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Map, Value};

    /// No claims: an anonymous request.
    const ANONYMOUS: Option<&Map<String, Value>> = None;

    /// 2030-01-01T00:00:00Z, so the rate arithmetic runs at realistic clock magnitudes.
    const BASE: u64 = 1_893_456_000_000;

    fn rate(requests: u64, period_ms: u64, burst: u64) -> LimitKind {
        LimitKind::Rate {
            requests,
            period_ms,
            burst,
        }
    }

    fn quota(requests: u64, window: CalendarWindow) -> LimitKind {
        LimitKind::Quota { requests, window }
    }

    /// What the filter does: read, charge, write back what `charge` returns.
    fn hit(kind: &LimitKind, state: &mut Option<Vec<u8>>, now_ms: u64) -> Charge {
        let (new_state, outcome) = charge(kind, state.as_deref(), now_ms);
        if let Some(s) = new_state {
            *state = Some(s);
        }
        outcome
    }

    /// Requests every `step_ms` from `from` to `to` inclusive; returns how many were allowed.
    fn steady(
        kind: &LimitKind,
        state: &mut Option<Vec<u8>>,
        from: u64,
        to: u64,
        step_ms: u64,
    ) -> u64 {
        (from..=to)
            .step_by(step_ms as usize)
            .filter(|&t| !hit(kind, state, t).is_limited())
            .count() as u64
    }

    fn allowed(remaining: u64, reset_ms: u64) -> Charge {
        Charge::Allowed {
            remaining,
            reset_ms,
        }
    }

    fn limited(retry_after_ms: u64, reset_ms: u64) -> Charge {
        Charge::Limited {
            retry_after_ms,
            reset_ms,
        }
    }

    /// Seconds since the epoch of a UTC date (values from `date -u -d <date> +%s`).
    fn utc(secs: u64) -> u64 {
        secs * 1000
    }
    const FEB_1_2028: u64 = 1_832_976_000;
    const FEB_29_2028: u64 = 1_835_395_200;
    const MAR_1_2028: u64 = 1_835_481_600;
    const DEC_1_2027: u64 = 1_827_619_200;
    const DEC_31_2027: u64 = 1_830_211_200;
    const JAN_1_2028: u64 = 1_830_297_600;
    const FEB_1_2100: u64 = 4_105_123_200;
    const MAR_1_2100: u64 = 4_107_542_400;
    const FEB_1_2000: u64 = 949_363_200;
    const MAR_1_2000: u64 = 951_868_800;

    // ---- rate (GCRA) ----

    #[test]
    fn the_request_at_exactly_the_period_boundary_is_allowed() {
        let kind = rate(1, 1000, 1);
        let mut s = None;
        assert_eq!(hit(&kind, &mut s, BASE), allowed(0, 1000));
        assert_eq!(hit(&kind, &mut s, BASE + 999), limited(1, 1));
        assert_eq!(hit(&kind, &mut s, BASE + 1000), allowed(0, 1000));
        assert_eq!(hit(&kind, &mut s, BASE + 1000), limited(1000, 1000));
        assert_eq!(hit(&kind, &mut s, BASE + 2000), allowed(0, 1000));
    }

    #[test]
    fn a_burst_arrives_at_once_then_refills_at_the_rate() {
        let kind = rate(10, 1000, 20);
        let mut s = None;
        for i in 0..20 {
            assert_eq!(
                hit(&kind, &mut s, BASE),
                allowed(19 - i, (i + 1) * 100),
                "request {i}"
            );
        }
        assert_eq!(hit(&kind, &mut s, BASE), limited(100, 2000));
        assert_eq!(hit(&kind, &mut s, BASE + 99), limited(1, 1901));
        // One interval later, exactly one more.
        assert_eq!(hit(&kind, &mut s, BASE + 100), allowed(0, 2000));
        assert!(hit(&kind, &mut s, BASE + 100).is_limited());
        // 900 ms later, nine more.
        let later: Vec<Charge> = (0..10).map(|_| hit(&kind, &mut s, BASE + 1000)).collect();
        assert_eq!(later.iter().filter(|c| !c.is_limited()).count(), 9);
        assert_eq!(later[0], allowed(8, 1200));
        assert_eq!(later[8], allowed(0, 2000));
        assert_eq!(later[9], limited(100, 2000));
        // Idle for the full reset time: the whole burst again.
        assert_eq!(hit(&kind, &mut s, BASE + 3000), allowed(19, 100));
    }

    #[test]
    fn sustained_traffic_gets_exactly_the_rate_plus_the_burst() {
        // 10/s, burst 20, 60 s of traffic at 100/s (0 ms through 60 000 ms).
        let kind = rate(10, 1000, 20);
        let mut s = None;
        assert_eq!(steady(&kind, &mut s, BASE, BASE + 60_000, 10), 600 + 20);
        // 3 per 1000 ms is an interval of 333.33.. ms: exact over an hour, no drift. (With a
        // burst of 1 there is no tolerance at all, so a request arriving a fraction after its
        // slot loses that fraction: GCRA's definition, not rounding.)
        let kind = rate(3, 1000, 2);
        let mut s = None;
        assert_eq!(
            steady(&kind, &mut s, BASE, BASE + 3_600_000, 10),
            3 * 3600 + 2
        );
        // And it keeps being exact when the run continues.
        assert_eq!(
            steady(&kind, &mut s, BASE + 3_600_010, BASE + 7_200_000, 10),
            3 * 3600
        );
        // 7 per minute, burst 2.
        let kind = rate(7, 60_000, 2);
        let mut s = None;
        assert_eq!(steady(&kind, &mut s, BASE, BASE + 600_000, 250), 70 + 2);
    }

    #[test]
    fn limited_requests_do_not_write() {
        let kind = rate(1, 1000, 1);
        let (state, _) = charge(&kind, None, BASE);
        let state = state.unwrap();
        let (again, outcome) = charge(&kind, Some(&state), BASE + 10);
        assert!(outcome.is_limited());
        assert_eq!(again, None);
    }

    #[test]
    fn the_state_is_the_tat_as_an_exact_fraction() {
        let (state, _) = charge(&rate(3, 1000, 1), None, 1000);
        // TAT = 1000 ms + 333.33.. ms = 4000/3 ms, in thirds of a millisecond.
        assert_eq!(state.unwrap(), b"4000/3");
        // A third of a millisecond early is early.
        let (state, outcome) = charge(&rate(3, 1000, 1), Some(b"4000/3"), 1333);
        assert_eq!((state, outcome), (None, limited(1, 1)));
        // Later than the TAT: the next slot counts from now.
        let (state, _) = charge(&rate(3, 1000, 1), Some(b"4000/3"), 1334);
        assert_eq!(state.unwrap(), b"5002/3");
    }

    #[test]
    fn a_changed_request_count_rescales_the_stored_time() {
        // TAT 1 300 ms stored in thousandths; read with requests = 10 (tenths): 13 000.
        let kind = rate(10, 1000, 5);
        let (state, outcome) = charge(&kind, Some(b"1300000/1000"), 1000);
        assert_eq!(outcome, allowed(1, 400));
        assert_eq!(state.unwrap(), b"14000/10");
        // Rescaling rounds up (stricter): 1/3 ms is 4/10 ms here, not 3/10.
        let (state, _) = charge(&rate(10, 1, 1000), Some(b"1/3"), 0);
        assert_eq!(state.unwrap(), b"5/10");
    }

    #[test]
    fn a_clock_going_backwards_grants_nothing_extra() {
        let kind = rate(10, 1000, 20);
        let mut s = None;
        assert_eq!(steady(&kind, &mut s, BASE, BASE + 10_000, 10), 20 + 100);
        // A small step back: still limited.
        assert!(hit(&kind, &mut s, BASE + 9_000).is_limited());
        // Five seconds back, then ten more seconds of real time at 100/s.
        let after = steady(&kind, &mut s, BASE + 5_000, BASE + 15_000, 10);
        // 20 s of real time at 10/s with a burst of 20 is at most 220 in all.
        assert!(120 + after <= 20 + 200, "{after}");
        assert_eq!(after, 100);
    }

    #[test]
    fn a_tat_far_in_the_future_is_clamped_to_an_empty_bucket() {
        let kind = rate(10, 1000, 20);
        for corrupt in [
            format!("{}/10", u128::from(u64::MAX) * 10),
            format!("{}/10", u128::MAX),
            format!("{}/7", u128::MAX),
            format!("{}/10", (BASE + 86_400_000) * 10),
        ] {
            let (state, outcome) = charge(&kind, Some(corrupt.as_bytes()), BASE);
            assert_eq!(outcome, limited(100, 2000), "{corrupt}");
            // The clamp is stored, so the lock-out ends after one interval.
            let state = state.unwrap();
            assert_eq!(state, format!("{}/10", (BASE + 2000) * 10).as_bytes());
            let (_, outcome) = charge(&kind, Some(&state), BASE + 100);
            assert_eq!(outcome, allowed(0, 2000));
        }
    }

    #[test]
    fn corrupt_rate_state_counts_as_never_used() {
        let kind = rate(10, 1000, 20);
        let fresh = charge(&kind, None, BASE);
        assert_eq!(fresh.1, allowed(19, 100));
        let forty_digits = "1".repeat(40);
        for bad in [
            &b""[..],
            b"abc",
            b"\xff\xfe",
            b"12/0",
            b"/10",
            b"12/",
            b"+5/10",
            b"-1/10",
            b" 5/10",
            b"1/2/3",
            b"1.5/10",
            b"5:10",
            forty_digits.as_bytes(),
        ] {
            assert_eq!(
                charge(&kind, Some(bad), BASE),
                fresh,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = format!("{forty_digits}/10");
        assert_eq!(charge(&kind, Some(long.as_bytes()), BASE), fresh);
    }

    #[test]
    fn a_tat_in_the_past_is_a_full_bucket() {
        let kind = rate(10, 1000, 20);
        assert_eq!(charge(&kind, Some(b"0/10"), BASE).1, allowed(19, 100));
    }

    #[test]
    fn degenerate_rates_do_not_panic() {
        for kind in [
            rate(0, 0, 0),
            rate(1_000_000_000, 86_400_000, 1_000_000_000),
            rate(1, 1, u64::MAX),
        ] {
            for now in [0, 1, BASE, u64::MAX] {
                let (state, _) = charge(&kind, None, now);
                let _ = charge(&kind, state.as_deref(), now);
                let _ = charge(
                    &kind,
                    Some(b"340282366920938463463374607431768211455/1"),
                    now,
                );
            }
        }
    }

    // ---- quotas (UTC calendar windows) ----

    #[test]
    fn an_hourly_quota_resets_on_the_hour() {
        let kind = quota(2, CalendarWindow::Hour);
        let ten = BASE + 10 * 3_600_000;
        let mut s = None;
        assert_eq!(hit(&kind, &mut s, ten + 1000), allowed(1, 3_599_000));
        assert_eq!(hit(&kind, &mut s, ten + 3_599_999), allowed(0, 1));
        assert_eq!(hit(&kind, &mut s, ten + 3_599_999), limited(1, 1));
        assert_eq!(s.as_deref(), Some(format!("{ten}:2").as_bytes()));
        // Exactly on the boundary: a new window.
        assert_eq!(hit(&kind, &mut s, ten + 3_600_000), allowed(1, 3_600_000));
        assert_eq!(
            s.as_deref(),
            Some(format!("{}:1", ten + 3_600_000).as_bytes())
        );
    }

    #[test]
    fn a_daily_quota_resets_at_midnight_utc_including_feb_29() {
        let kind = quota(1, CalendarWindow::Day);
        let mut s = None;
        assert_eq!(hit(&kind, &mut s, utc(FEB_29_2028) - 1), allowed(0, 1));
        assert_eq!(hit(&kind, &mut s, utc(FEB_29_2028)), allowed(0, 86_400_000));
        assert_eq!(hit(&kind, &mut s, utc(MAR_1_2028) - 1), limited(1, 1));
        assert_eq!(hit(&kind, &mut s, utc(MAR_1_2028)), allowed(0, 86_400_000));
        let mut s = None;
        assert_eq!(hit(&kind, &mut s, utc(JAN_1_2028) - 1), allowed(0, 1));
        assert_eq!(hit(&kind, &mut s, utc(JAN_1_2028)), allowed(0, 86_400_000));
    }

    #[test]
    fn a_monthly_quota_follows_the_calendar() {
        let kind = quota(3, CalendarWindow::Month);
        let day = 86_400_000;
        // February 2028 has 29 days.
        let mut s = None;
        assert_eq!(hit(&kind, &mut s, utc(FEB_1_2028)), allowed(2, 29 * day));
        assert_eq!(
            hit(&kind, &mut s, utc(FEB_29_2028) + 3_600_000),
            allowed(1, 23 * 3_600_000)
        );
        assert_eq!(hit(&kind, &mut s, utc(MAR_1_2028) - 1), allowed(0, 1));
        assert_eq!(hit(&kind, &mut s, utc(MAR_1_2028) - 1), limited(1, 1));
        assert_eq!(
            s.as_deref(),
            Some(format!("{}:3", utc(FEB_1_2028)).as_bytes())
        );
        assert_eq!(hit(&kind, &mut s, utc(MAR_1_2028)), allowed(2, 31 * day));
        // December 31 to January 1.
        let mut s = None;
        assert_eq!(hit(&kind, &mut s, utc(DEC_31_2027)), allowed(2, day));
        assert_eq!(
            s.as_deref(),
            Some(format!("{}:1", utc(DEC_1_2027)).as_bytes())
        );
        assert_eq!(hit(&kind, &mut s, utc(JAN_1_2028) - 1), allowed(1, 1));
        assert_eq!(hit(&kind, &mut s, utc(JAN_1_2028)), allowed(2, 31 * day));
        assert_eq!(
            s.as_deref(),
            Some(format!("{}:1", utc(JAN_1_2028)).as_bytes())
        );
        // 2100 is not a leap year; 2000 is.
        assert_eq!(charge(&kind, None, utc(FEB_1_2100)).1, allowed(2, 28 * day));
        assert_eq!(utc(MAR_1_2100) - utc(FEB_1_2100), 28 * day);
        assert_eq!(
            charge(&kind, None, utc(FEB_1_2000) + 5).1,
            allowed(2, 29 * day - 5)
        );
        assert_eq!(utc(MAR_1_2000) - utc(FEB_1_2000), 29 * day);
    }

    #[test]
    fn month_starts_agree_with_the_audit_calendar() {
        let day = 86_400_000;
        for d in (0..200_000u64).step_by(7) {
            let ms = d * day + 12_345;
            let start = window_start(CalendarWindow::Month, ms);
            let end = window_end(CalendarWindow::Month, ms);
            assert!(start <= ms && ms < end);
            assert!(crate::audit::rfc3339(start).ends_with("-01T00:00:00.000Z"));
            assert!(crate::audit::rfc3339(end).ends_with("-01T00:00:00.000Z"));
            assert!((28..=31).contains(&((end - start) / day)));
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d as i64);
        }
    }

    #[test]
    fn a_quota_clock_going_backwards_keeps_the_later_window() {
        let kind = quota(2, CalendarWindow::Hour);
        let eleven = BASE + 11 * 3_600_000;
        let mut s = None;
        assert!(!hit(&kind, &mut s, eleven).is_limited());
        assert!(!hit(&kind, &mut s, eleven).is_limited());
        // Back to 10:59:59: the 11:00 window's count still applies, no second budget.
        assert_eq!(
            hit(&kind, &mut s, eleven - 1000),
            limited(3_601_000, 3_601_000)
        );
        assert!(hit(&kind, &mut s, eleven + 10).is_limited());
        assert!(!hit(&kind, &mut s, eleven + 3_600_000).is_limited());
    }

    #[test]
    fn corrupt_quota_state_is_fresh_or_clamped() {
        let kind = quota(5, CalendarWindow::Day);
        let fresh = charge(&kind, None, BASE + 10);
        assert_eq!(fresh.1, allowed(4, 86_400_000 - 10));
        let unaligned = format!("{}:2", BASE + 1);
        for bad in [
            &b""[..],
            b"x",
            b"1:",
            b":1",
            b"+1:1",
            b"1/1",
            b"1:2:3",
            unaligned.as_bytes(),
            b"\xff:1",
        ] {
            assert_eq!(
                charge(&kind, Some(bad), BASE + 10),
                fresh,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        // An aligned start years ahead: clamped to the next window, the count kept.
        let far = format!("{}:5", BASE + 1000 * 86_400_000);
        let (state, outcome) = charge(&kind, Some(far.as_bytes()), BASE + 10);
        assert_eq!(outcome, limited(2 * 86_400_000 - 10, 2 * 86_400_000 - 10));
        assert_eq!(
            state.unwrap(),
            format!("{}:5", BASE + 86_400_000).as_bytes()
        );
        // A count beyond the quota is simply limited, without a write.
        let over = format!("{BASE}:99");
        assert_eq!(
            charge(&kind, Some(over.as_bytes()), BASE + 10),
            (None, limited(86_399_990, 86_399_990))
        );
    }

    #[test]
    fn quotas_at_the_ends_of_time_do_not_panic() {
        for window in [
            CalendarWindow::Hour,
            CalendarWindow::Day,
            CalendarWindow::Month,
        ] {
            let kind = quota(1, window);
            for now in [0, 1, u64::MAX - 1, u64::MAX] {
                let (state, _) = charge(&kind, None, now);
                let _ = charge(&kind, state.as_deref(), now);
                let _ = charge(
                    &kind,
                    Some(b"18446744073709551615:18446744073709551615"),
                    now,
                );
            }
        }
    }

    // ---- keys and slots ----

    #[test]
    fn keys_come_from_the_identity_or_fall_back_to_the_address() {
        let claims = json!({"sub": "alice", "azp": "web", "tenant": {"id": 42}, "groups": ["a"], "empty": ""});
        let claims = claims.as_object();
        let addr = "10.0.0.1:5555";
        assert_eq!(key_value(&LimitKey::Subject, claims, addr), "sub:alice");
        assert_eq!(key_value(&LimitKey::ClientId, claims, addr), "client:web");
        let with_client = json!({"client_id": "cli", "azp": "web"});
        assert_eq!(
            key_value(&LimitKey::ClientId, with_client.as_object(), addr),
            "client:cli"
        );
        assert_eq!(
            key_value(&LimitKey::Claim("tenant.id".into()), claims, addr),
            "claim:42"
        );
        // Missing, non-scalar and empty identities, anonymous requests, and address keys.
        assert_eq!(
            key_value(&LimitKey::Subject, with_client.as_object(), addr),
            "addr:10.0.0.1"
        );
        assert_eq!(
            key_value(&LimitKey::Claim("groups".into()), claims, addr),
            "addr:10.0.0.1"
        );
        assert_eq!(
            key_value(&LimitKey::Claim("empty".into()), claims, addr),
            "addr:10.0.0.1"
        );
        assert_eq!(
            key_value(&LimitKey::Subject, ANONYMOUS, addr),
            "addr:10.0.0.1"
        );
        // Before the address is read: it is named, not read.
        assert_eq!(
            budget_key(&LimitKey::Subject, ANONYMOUS),
            BudgetKey::ClientAddress
        );
        assert_eq!(
            budget_key(&LimitKey::Subject, claims),
            BudgetKey::identity("sub:alice".into())
        );
        assert_eq!(
            key_value(&LimitKey::ClientAddress, claims, addr),
            "addr:10.0.0.1"
        );
        // A subject spelled like an address does not share its counter.
        let tricky = json!({"sub": "10.0.0.1"});
        assert_ne!(
            key_value(&LimitKey::Subject, tricky.as_object(), addr),
            key_value(&LimitKey::Subject, ANONYMOUS, addr)
        );
    }

    #[test]
    fn addresses_drop_the_port_and_ipv6_counts_by_its_64() {
        let key = |a: &str| key_value(&LimitKey::ClientAddress, ANONYMOUS, a);
        assert_eq!(key("192.0.2.7"), "addr:192.0.2.7");
        assert_eq!(key("192.0.2.7:40000"), "addr:192.0.2.7");
        assert_eq!(key("[2001:db8:1:2:3:4:5:6]:443"), "addr:2001:db8:1:2::/64");
        assert_eq!(key("2001:db8:1:2:ffff::1"), "addr:2001:db8:1:2::/64");
        assert_eq!(key("[fe80::1%eth0]:80"), "addr:fe80::/64");
        assert_eq!(key("[::ffff:192.0.2.7]:1234"), "addr:192.0.2.7");
        assert_eq!(key("unix:/tmp/sock"), "addr:unix");
        assert_eq!(key("not an address"), "addr:not an address");
        assert_eq!(key(""), "addr:");
    }

    #[test]
    fn a_budget_key_finds_the_slot_of_its_text() {
        let alice = BudgetKey::identity("sub:alice".into());
        let address = || -> &str { panic!("an identity's slot reads no address") };
        for slots in [1u32, 61, 1 << 20] {
            assert_eq!(alice.slot(slots, address), slot("sub:alice", slots));
            assert_eq!(
                BudgetKey::ClientAddress.slot(slots, || "10.0.0.1:5000"),
                slot("addr:10.0.0.1", slots)
            );
        }
    }

    #[test]
    fn slots_spread_keys_over_all_of_them() {
        // Keys that differ only in their last characters, as subjects, addresses and numbers
        // do, over a power of two and another modulus. 10,000 keys in 64 slots: 156 expected
        // per slot; a uniform hash stays well within these bounds.
        let keys: [fn(u32) -> String; 3] = [
            |i| format!("sub:user-{i}"),
            |i| format!("addr:10.0.{}.{}", i / 256, i % 256),
            |i| i.to_string(),
        ];
        for key in keys {
            for slots in [64u32, 61] {
                let mut counts = vec![0u32; slots as usize];
                for i in 0..10_000 {
                    counts[slot(&key(i), slots) as usize] += 1;
                }
                let expected = 10_000 / slots;
                assert!(
                    counts
                        .iter()
                        .all(|&c| c.abs_diff(expected) <= expected * 2 / 5),
                    "{slots} slots, {}: {counts:?}",
                    key(0)
                );
            }
        }
        assert_eq!(slot("sub:alice", 64), slot("sub:alice", 64));
        assert_eq!(slot("sub:alice", 1), 0);
        assert_eq!(slot("sub:alice", 0), 0);
        assert!((0..1000).all(|i| slot(&i.to_string(), 1 << 20) < 1 << 20));
    }

    // ---- headers ----

    fn limit(name: &str, kind: LimitKind) -> Limit {
        Limit {
            name: name.into(),
            kind,
            key: LimitKey::Subject,
            max_keys: 16_384,
            batch: 1,
        }
    }

    #[test]
    fn the_policy_header_lists_every_limit() {
        let limits = [
            limit("burst", rate(10, 1000, 20)),
            limit("steady", rate(3, 1500, 3)),
            limit("hourly", quota(100, CalendarWindow::Hour)),
            limit("daily", quota(1000, CalendarWindow::Day)),
            limit("monthly", quota(20_000, CalendarWindow::Month)),
        ];
        let refs: Vec<&Limit> = limits.iter().collect();
        assert_eq!(
            policy_header(&refs),
            "\"burst\";q=10;w=1;tollgate-burst=20, \"steady\";q=3;w=2, \"hourly\";q=100;w=3600, \
             \"daily\";q=1000;w=86400, \"monthly\";q=20000"
        );
        assert_eq!(policy_header(&[]), "");
    }

    #[test]
    fn the_ratelimit_header_gives_remaining_and_seconds() {
        assert_eq!(
            ratelimit_header("burst", &allowed(19, 100)),
            "\"burst\";r=19;t=1"
        );
        assert_eq!(
            ratelimit_header("burst", &allowed(0, 2000)),
            "\"burst\";r=0;t=2"
        );
        assert_eq!(
            ratelimit_header("daily", &allowed(999, 86_400_000)),
            "\"daily\";r=999;t=86400"
        );
        assert_eq!(
            ratelimit_header("burst", &allowed(5, 0)),
            "\"burst\";r=5;t=0"
        );
        // Limited: t is the wait, the same as Retry-After.
        assert_eq!(
            ratelimit_header("burst", &limited(100, 2000)),
            "\"burst\";r=0;t=1"
        );
        assert_eq!(
            ratelimit_header("daily", &limited(3_601_000, 3_601_000)),
            "\"daily\";r=0;t=3601"
        );
        assert_eq!(
            ratelimit_header("x", &allowed(u64::MAX, u64::MAX)),
            "\"x\";r=999999999999999;t=999999999999999"
        );
        // Names are SF Strings.
        assert_eq!(
            ratelimit_header("a\"b\\c\u{e9}\n", &allowed(1, 1)),
            "\"a\\\"b\\\\c\";r=1;t=1"
        );
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up() {
        assert_eq!(retry_after_seconds(&allowed(0, 5000)), None);
        assert_eq!(retry_after_seconds(&limited(0, 0)), Some(1));
        assert_eq!(retry_after_seconds(&limited(1, 1)), Some(1));
        assert_eq!(retry_after_seconds(&limited(1000, 2000)), Some(1));
        assert_eq!(retry_after_seconds(&limited(1001, 2000)), Some(2));
        assert_eq!(
            retry_after_seconds(&limited(86_400_000, 86_400_000)),
            Some(86_400)
        );
    }

    #[test]
    fn a_full_round_trip_reads_as_the_draft_shows() {
        let kind = rate(20, 1000, 20);
        let mut s = None;
        let mut last = None;
        for _ in 0..21 {
            last = Some(hit(&kind, &mut s, BASE));
        }
        let last = last.unwrap();
        assert_eq!(ratelimit_header("burst", &last), "\"burst\";r=0;t=1");
        assert_eq!(retry_after_seconds(&last), Some(1));
    }

    // ---- batches ----

    /// What a worker does with a batch: take it, write back what `take_batch` returns.
    fn take(kind: &LimitKind, state: &mut Option<Vec<u8>>, now_ms: u64, wanted: u64) -> Batch {
        let (new_state, batch) = take_batch(kind, state.as_deref(), now_ms, wanted);
        if let Some(s) = new_state {
            *state = Some(s);
        }
        batch
    }

    #[test]
    fn a_batch_counts_like_its_requests_one_by_one() {
        for kind in [rate(1000, 1000, 1000), quota(1000, CalendarWindow::Day)] {
            let (mut batched, mut single) = (None, None);
            let batch = take(&kind, &mut batched, BASE, 40);
            assert_eq!(batch.requests, 40, "{kind:?}");
            let last = (0..40).map(|_| hit(&kind, &mut single, BASE)).last();
            assert_eq!(Some(batch.outcome), last, "{kind:?}");
            assert_eq!(batched, single, "{kind:?}");
        }
    }

    #[test]
    fn a_batch_is_at_most_a_sixteenth_of_what_is_left_and_at_least_one() {
        let kind = rate(100, 1000, 100);
        let mut s = None;
        // 100 allowed now: a batch of at most 6.
        assert_eq!(take(&kind, &mut s, BASE, 50).requests, 6);
        // 94 left: 5; then the batches shrink to single requests.
        assert_eq!(take(&kind, &mut s, BASE, 50).requests, 5);
        let sizes: Vec<u64> = (0..100)
            .map(|_| take(&kind, &mut s, BASE, 50).requests)
            .take_while(|&n| n > 0)
            .collect();
        assert_eq!(
            sizes.iter().sum::<u64>(),
            89,
            "never more than the bucket: {sizes:?}"
        );
        assert_eq!(sizes.iter().filter(|&&n| n == 1).count(), 31, "{sizes:?}");
        let limited = take(&kind, &mut s, BASE, 50);
        assert_eq!(limited.requests, 0);
        assert!(limited.outcome.is_limited());

        let kind = quota(10, CalendarWindow::Hour);
        let mut s = None;
        assert_eq!(
            take(&kind, &mut s, BASE, 8).requests,
            1,
            "10 / 16 rounds down to 1"
        );
    }

    #[test]
    fn a_limited_batch_leaves_the_state_alone() {
        let kind = rate(2, 1000, 2);
        let mut s = None;
        assert_eq!(take(&kind, &mut s, BASE, 2).requests, 1);
        assert_eq!(take(&kind, &mut s, BASE, 2).requests, 1);
        let (new_state, batch) = take_batch(&kind, s.as_deref(), BASE + 1, 2);
        assert_eq!((new_state, batch.requests), (None, 0));
        assert_eq!(batch.outcome, limited(499, 999));
    }

    #[test]
    fn a_held_batch_is_spent_request_by_request_and_then_asks_for_more() {
        let kind = rate(1000, 1000, 1000);
        let mut s = None;
        let batch = take(&kind, &mut s, BASE, 4);
        let mut held = HeldBatch::new(&kind, &batch, BASE).unwrap();
        // The headers count what the counter had plus what the batch still holds.
        assert_eq!(held.spend(BASE), Some(allowed(999, 4)));
        assert_eq!(held.spend(BASE + 1), Some(allowed(998, 3)));
        assert_eq!(held.spend(BASE + 2), Some(allowed(997, 2)));
        assert_eq!(held.spend(BASE + 3), Some(allowed(996, 1)));
        assert_eq!(held.spend(BASE + 3), None, "spent");
        assert_eq!(held.next_size(64), 8, "spent in full: twice the size");
        assert_eq!(held.next_size(5), 5, "never beyond the limit's batch");
    }

    #[test]
    fn a_rate_batch_ends_after_its_hold_and_the_next_is_what_was_spent() {
        let kind = rate(1000, 1000, 1000);
        let mut s = None;
        let batch = take(&kind, &mut s, BASE, 40);
        let mut held = HeldBatch::new(&kind, &batch, BASE).unwrap();
        for _ in 0..3 {
            assert!(held.spend(BASE + 10).is_some());
        }
        assert_eq!(
            held.spend(BASE + RATE_BATCH_HOLD_MS),
            None,
            "its time is over"
        );
        assert_eq!(held.next_size(64), 3);
        // Kept for a hold after its last use (BASE + 10), for the next one's size.
        assert!(held.worth_keeping(BASE + RATE_BATCH_HOLD_MS + 9));
        assert!(!held.worth_keeping(BASE + RATE_BATCH_HOLD_MS + 10));
    }

    #[test]
    fn a_quota_batch_lasts_until_its_window_ends() {
        let kind = quota(1_000_000, CalendarWindow::Hour);
        let start = utc(JAN_1_2028);
        let mut s = None;
        let batch = take(&kind, &mut s, start + 1000, 10);
        let mut held = HeldBatch::new(&kind, &batch, start + 1000).unwrap();
        assert_eq!(
            held.spend(start + MS_PER_HOUR - 1),
            Some(allowed(999_999, 1))
        );
        assert_eq!(held.spend(start + MS_PER_HOUR), None, "the next window");
    }

    #[test]
    fn a_quota_batch_is_kept_while_it_holds_requests_and_briefly_once_spent() {
        let kind = quota(1_000_000, CalendarWindow::Hour);
        let start = utc(JAN_1_2028);
        let mut s = None;
        let batch = take(&kind, &mut s, start, 2);
        let mut held = HeldBatch::new(&kind, &batch, start).unwrap();
        assert!(held.spend(start).is_some());
        // One request left: kept however long its identity stays away, within the window.
        assert!(held.worth_keeping(start + MS_PER_HOUR - 1));
        assert!(!held.worth_keeping(start + MS_PER_HOUR));
        assert!(held.spend(start + 5000).is_some());
        // Spent: kept for a hold after its last use, not for the rest of the window.
        assert!(held.worth_keeping(start + 5000 + RATE_BATCH_HOLD_MS - 1));
        assert!(!held.worth_keeping(start + 5000 + RATE_BATCH_HOLD_MS));
    }

    #[test]
    fn a_limited_take_holds_nothing() {
        let kind = rate(1, 1000, 1);
        let mut s = None;
        assert_eq!(take(&kind, &mut s, BASE, 1).requests, 1);
        let batch = take(&kind, &mut s, BASE, 1);
        assert_eq!(HeldBatch::new(&kind, &batch, BASE), None);
    }

    proptest::proptest! {
        /// Whatever sizes workers ask for and whenever they ask, a batch of `n` is `n` single
        /// charges at its moment, each of them allowed: batching never grants more.
        #[test]
        fn batches_never_grant_more_than_single_charges(
            requests in 1u64..200,
            burst in 1u64..200,
            asks in proptest::collection::vec((0u64..300, 1u64..64), 1..60),
        ) {
            for kind in [rate(requests, 1000, burst), quota(requests, CalendarWindow::Hour)] {
                let (mut batched, mut single) = (None, None);
                let mut now = BASE;
                for &(step, wanted) in &asks {
                    now += step;
                    let batch = take(&kind, &mut batched, now, wanted);
                    proptest::prop_assert!(batch.requests <= wanted);
                    for _ in 0..batch.requests {
                        proptest::prop_assert!(!hit(&kind, &mut single, now).is_limited());
                    }
                    proptest::prop_assert_eq!(&batched, &single);
                }
            }
        }
    }
}
