//! Shared data across worker VMs: read, compare-and-swap update, and leases.
//!
//! Envoy runs one VM per worker; the only state they share is the host's key-value store, whose
//! writes can be conditional on a version (CAS). [`update`] turns that into "apply this pure
//! function atomically", which is how rate-limit counters stay exact across workers, and
//! [`Lease`] into "exactly one worker does this now", which is how one JWKS fetch or one
//! introspection call serves every worker. A lease whose holder died expires by itself.

use crate::abi;
use crate::abi::Status;
use tollgate::slots::{find_in_choices, slot_choices, slot_to_write, CHOICES};

/// A CAS value no entry has: a write with it succeeds only when the key does not exist yet
/// (the host ignores the CAS of a new key, and refuses a mismatching one on an existing key).
const CREATE_ONLY: u32 = u32::MAX;
/// Conflicting writers retried before giving up (each retry means another worker won).
const MAX_CAS_TRIES: usize = 64;

/// The value under `key` (`None`: absent, or the host failed).
pub fn read(key: &str) -> Option<Vec<u8>> {
    abi::get_shared_data(key).ok().and_then(|(value, _)| value)
}

/// Sets `key` unconditionally.
pub fn write(key: &str, value: &[u8]) {
    let _ = abi::set_shared_data(key, value, None);
}

/// The keys of the slots (of `slots`) that the entry with this `hash` may live in, in a shared
/// cache: each is `t`, the cache's `kind`, its `tag` (what names its configuration) in
/// base64url, `.` and the slot, at most 20 bytes with the largest caches (400,000 slots).
/// Envoy's strings (libc++) hold up to 22 bytes inside themselves, so a key allocates nothing,
/// where a longer one cost ~48 bytes of Envoy's heap for each entry.
pub fn slot_keys(kind: char, tag: u64, hash: &[u8; 16], slots: u32) -> [String; CHOICES] {
    let tag = tollgate::b64::encode(&tag.to_le_bytes());
    slot_choices(hash, slots).map(|slot| format!("t{kind}{tag}.{slot}"))
}

/// Stores `value` in one of its `slots` (see `tollgate::slots::slot_to_write`): the first that is
/// empty or whose value `replaceable` accepts (its own older entry, a stale one), else the last.
pub fn place(slots: &[String], value: &[u8], replaceable: impl Fn(&[u8]) -> bool) {
    let slot = slot_to_write(slots, |slot| read(slot).is_none_or(|old| replaceable(&old)));
    if let Some(slot) = slot {
        write(slot, value);
    }
}

/// What `found` makes of the first value among an entry's `slots` it accepts, reading no
/// further than the first empty slot (see `tollgate::slots::find_in_choices`).
pub fn find<T>(slots: &[String], found: impl FnMut(Vec<u8>) -> Option<T>) -> Option<T> {
    find_in_choices(slots, |slot| read(slot), found)
}

/// Applies `f` to the value under `key` atomically: `f` gets the current value and returns
/// the value to store (`None`: leave it) and a result. Retries when another worker wrote in
/// between; `None` when the host failed or conflicts did not stop.
pub fn update<T>(key: &str, mut f: impl FnMut(Option<&[u8]>) -> (Option<Vec<u8>>, T)) -> Option<T> {
    for _ in 0..MAX_CAS_TRIES {
        let (current, cas) = match abi::get_shared_data(key) {
            Ok(found) => found,
            Err(Status::NOT_FOUND) => (None, None),
            Err(_) => return None,
        };
        let (next, result) = f(current.as_deref());
        let Some(next) = next else {
            return Some(result);
        };
        match abi::set_shared_data(key, &next, Some(cas.unwrap_or(CREATE_ONLY))) {
            Ok(()) => return Some(result),
            Err(Status::CAS_MISMATCH) => continue,
            Err(_) => return None,
        }
    }
    None
}

/// Stable across builds and workers, for naming shared keys.
pub fn fingerprint(text: &str) -> u64 {
    tollgate::slots::stable_hash(text.as_bytes())
}

/// "Exactly one worker does this until the deadline", stored as the deadline in ms.
pub struct Lease {
    key: String,
}

impl Lease {
    pub fn new(key: String) -> Lease {
        Lease { key }
    }

    /// Takes the lease until `now + hold_ms` if it is free or expired.
    pub fn acquire(&self, now_ms: u64, hold_ms: u64) -> bool {
        update(&self.key, |current| {
            let held_until = current
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            if held_until > now_ms {
                (None, false)
            } else {
                (Some((now_ms + hold_ms).to_string().into_bytes()), true)
            }
        })
        .unwrap_or(false)
    }

    pub fn release(&self) {
        write(&self.key, b"0");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slots_key_fits_inside_an_envoy_string_and_names_one_slot() {
        // Twice the largest `token_cache_entries`: slots of six digits, as this hash picks.
        let longest = slot_keys('v', u64::MAX, &[0xff; 16], 400_000);
        assert!(longest.iter().all(|k| k.len() <= 22), "{longest:?}");
        let digits = |k: &String| k.rsplit('.').next().map_or(0, str::len);
        assert!(longest.iter().all(|k| digits(k) == 6), "{longest:?}");
        let hash = *b"0123456789abcdef";
        let keys: Vec<String> = [
            slot_keys('v', 1, &hash, 1 << 20),
            slot_keys('v', 2, &hash, 1 << 20),
            slot_keys('v', 1 << 63, &hash, 1 << 20),
            slot_keys('i', 1, &hash, 1 << 20),
        ]
        .concat();
        for (i, key) in keys.iter().enumerate() {
            assert!(
                keys.iter().skip(i + 1).all(|other| key != other),
                "{keys:?}"
            );
        }
    }
}
