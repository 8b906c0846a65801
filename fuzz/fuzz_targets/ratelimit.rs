//! `ratelimit::charge` with arbitrary stored state, for rate limits and quotas within the
//! configuration's bounds.
//!
//! Input: 1 selector byte (bit 0: quota; bits 1-2: window; bit 7: no state), then
//! `requests`, `period_ms`, `burst`, `now_ms` as 8 little-endian bytes each, then the state.
//!
//! Invariants: an allowed request with `remaining = r` is followed, at the same instant, by an
//! allowed one with `r - 1` or (when `r` was 0) by a refusal; a refusal stays a refusal and
//! then writes nothing; waits are at least 1 ms and never beyond the full reset.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::config::{CalendarWindow, LimitKind};
use tollgate::ratelimit::{charge, Charge};

fn word(data: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    if let Some(s) = data.get(at..at + 8) {
        b.copy_from_slice(s);
    }
    u64::from_le_bytes(b)
}

fn check(kind: &LimitKind, outcome: Charge) {
    match outcome {
        Charge::Allowed {
            remaining,
            reset_ms,
        } => {
            assert!(reset_ms >= 1, "{kind:?}: {outcome:?}");
            let most = match *kind {
                LimitKind::Rate { burst, .. } => burst,
                LimitKind::Quota { requests, .. } => requests,
            };
            assert!(remaining < most, "{kind:?}: {outcome:?}");
        }
        Charge::Limited {
            retry_after_ms,
            reset_ms,
        } => {
            assert!(retry_after_ms >= 1, "{kind:?}: {outcome:?}");
            assert!(retry_after_ms <= reset_ms, "{kind:?}: {outcome:?}");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(&selector) = data.first() else {
        return;
    };
    let requests = word(data, 1);
    let kind = if selector & 1 == 0 {
        LimitKind::Rate {
            requests: 1 + requests % 1_000_000_000,
            period_ms: 1 + word(data, 9) % 86_400_000,
            burst: 1 + word(data, 17) % 1_000_000_000,
        }
    } else {
        let window = match (selector >> 1) % 3 {
            0 => CalendarWindow::Hour,
            1 => CalendarWindow::Day,
            _ => CalendarWindow::Month,
        };
        LimitKind::Quota {
            requests: 1 + requests % 1_000_000_000_000,
            window,
        }
    };
    // Up to about the year 37000: any clock a gateway may have.
    let now_ms = word(data, 25) % (1 << 50);
    let state = (selector & 0x80 == 0).then(|| data.get(33..).unwrap_or_default());

    let (written, first) = charge(&kind, state, now_ms);
    check(&kind, first);
    if let (Some(new), Some(old)) = (&written, state) {
        assert_ne!(new.as_slice(), old, "an unchanged state was written");
    }
    let after = written.as_deref().or(state);
    let (written2, second) = charge(&kind, after, now_ms);
    check(&kind, second);
    match (first, second) {
        (Charge::Allowed { remaining: 0, .. }, Charge::Limited { .. }) => {}
        (Charge::Allowed { remaining: r, .. }, Charge::Allowed { remaining: r2, .. })
            if r > 0 && r2 == r - 1 => {}
        (Charge::Limited { .. }, Charge::Limited { .. }) => {
            assert!(written2.is_none(), "a repeated refusal wrote state");
        }
        _ => panic!("{kind:?} at {now_ms}: {first:?} then {second:?} (state {state:?})"),
    }
});
