//! Where an entry of the workers' shared caches may live: a few slots chosen by its hash.
//!
//! Workers share verified tokens and introspection answers through the host's key-value store,
//! in a fixed number of slots so that its memory stays bounded whatever tokens clients send. An
//! entry may live in any of [`CHOICES`] slots, picked by independent bits of its hash: it goes
//! to the first that is free (or already its own) and is looked for in all of them. An entry
//! that finds all its choices taken evicts a live one, which costs another worker a
//! verification, or another introspection call. With two choices a table a quarter full does
//! so for one in 17 of its last inserts; with four, one in 280, and only a full table evicts in
//! earnest. A lookup stops at the first empty choice ([`find_in_choices`]): in a table half
//! full, a token no worker has seen costs about two reads rather than four.

/// Slots an entry may live in.
pub const CHOICES: usize = 4;

/// The slots (each below `slots`) an entry with this hash may live in, in the order to try
/// them. The hash must be uniform (a SHA-256 prefix is, as `verified::key_of` takes it); four
/// bytes per choice, so two choices of one entry are as independent as two entries.
pub fn slot_choices(hash: &[u8; 16], slots: u32) -> [u32; CHOICES] {
    let slots = slots.max(1);
    let mut choices = [0; CHOICES];
    for (choice, word) in choices.iter_mut().zip(hash.chunks_exact(4)) {
        let word = u32::from_be_bytes(word.try_into().unwrap_or_default());
        *choice = word % slots;
    }
    choices
}

/// A 64-bit hash that is the same in every build and worker, and cheap: FNV-1a, then
/// MurmurHash3's finalizer so that every output bit depends on every input bit (FNV-1a alone
/// leaves the low bits, which a modulus keeps, weakly mixed). Not for adversarial inputs where
/// collisions matter more than spread: those take a SHA-256 prefix.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Where a new entry goes among its choices: the first that `replaceable` accepts (empty, its
/// own older entry, a stale one), else the last, whose entry is evicted.
pub fn slot_to_write<T>(choices: &[T], replaceable: impl Fn(&T) -> bool) -> Option<&T> {
    choices
        .iter()
        .find(|&choice| replaceable(choice))
        .or(choices.last())
}

/// What `found` makes of the first of an entry's `choices` it accepts, reading (`read`) no
/// further than the first empty one. [`slot_to_write`] puts an entry in the first choice that
/// is free or replaceable, and nothing empties a slot (entries are only overwritten), so no
/// entry lies beyond an empty choice of its own. A read that fails counts as empty: the entry
/// is then missed, which costs a verification or a call, never a wrong answer.
pub fn find_in_choices<C, V, T>(
    choices: &[C],
    mut read: impl FnMut(&C) -> Option<V>,
    mut found: impl FnMut(V) -> Option<T>,
) -> Option<T> {
    for choice in choices {
        if let Some(hit) = found(read(choice)?) {
            return Some(hit);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verified::token_key;

    #[test]
    fn the_stable_hash_does_not_change() {
        // FNV-1a 64 then MurmurHash3's fmix64, computed independently.
        assert_eq!(stable_hash(b""), 0xefd0_1f60_ba99_2926);
        assert_eq!(stable_hash(b"sub:alice"), 0xc891_d126_0d46_b47c);
    }

    #[test]
    fn choices_are_in_range_stable_and_spread() {
        assert_eq!(slot_choices(&token_key("x"), 0), [0; CHOICES]);
        assert_eq!(slot_choices(&token_key("x"), 1), [0; CHOICES]);
        let h = token_key("same");
        assert_eq!(slot_choices(&h, 4096), slot_choices(&h, 4096));
        let slots = 16;
        let mut seen = [[0u32; 16]; CHOICES];
        for i in 0..1600 {
            for (k, slot) in slot_choices(&token_key(&format!("token-{i}")), slots)
                .into_iter()
                .enumerate()
            {
                assert!(slot < slots);
                if let Some(n) = seen.get_mut(k).and_then(|s| s.get_mut(slot as usize)) {
                    *n += 1;
                }
            }
        }
        for per_choice in seen {
            assert!(
                per_choice.iter().all(|&n| n > 50 && n < 150),
                "{per_choice:?}"
            );
        }
    }

    #[test]
    fn choices_of_one_entry_are_independent() {
        // Were two choices derived from each other, entries sharing one would share the other.
        let slots = 64;
        let mut both = 0;
        let mut first = 0;
        let a = slot_choices(&token_key("anchor"), slots);
        for i in 0..20_000 {
            let b = slot_choices(&token_key(&format!("other-{i}")), slots);
            if b.first() == a.first() {
                first += 1;
                both += usize::from(b.get(1) == a.get(1));
            }
        }
        assert!(first > 200, "{first}");
        assert!(
            both * 16 < first,
            "{both} of {first} also share the second choice"
        );
    }

    #[test]
    fn a_new_entry_takes_the_first_free_choice_or_evicts_the_last() {
        let choices = [7, 3, 9, 1];
        assert_eq!(slot_to_write(&choices, |&s| s == 9 || s == 1), Some(&9));
        assert_eq!(slot_to_write(&choices, |_| true), Some(&7));
        assert_eq!(slot_to_write(&choices, |_| false), Some(&1));
        assert_eq!(slot_to_write(&[] as &[u32], |_| true), None);
    }

    /// Writers place entries as the workers do, replacing their own and evicting when full;
    /// a lookup that stops at the first empty choice finds whatever a look at every choice
    /// finds, at every fill level, and reads fewer slots for tokens never stored.
    #[test]
    fn a_lookup_that_stops_at_an_empty_choice_misses_nothing() {
        let slots = 512u32;
        let mut table: Vec<Option<usize>> = vec![None; slots as usize];
        let choices_of = |i: usize| slot_choices(&token_key(&format!("t{i}")), slots);
        let cell = |table: &Vec<Option<usize>>, s: u32| table.get(s as usize).copied().flatten();
        let (mut reads_of_misses, mut misses) = (0, 0);
        for i in 0..1200 {
            // Every tenth write is an older entry written again (its own slot is replaceable).
            let entry = if i % 10 == 9 { i / 2 } else { i };
            let choices = choices_of(entry);
            let slot = slot_to_write(&choices, |&s| cell(&table, s).is_none_or(|e| e == entry));
            if let Some(c) = slot.and_then(|&s| table.get_mut(s as usize)) {
                *c = Some(entry);
            }
            for probe in [entry, i / 3, i + 100_000] {
                let choices = choices_of(probe);
                let everywhere = choices.iter().any(|&s| cell(&table, s) == Some(probe));
                let mut reads = 0;
                let early = find_in_choices(
                    &choices,
                    |&s| {
                        reads += 1;
                        cell(&table, s)
                    },
                    |e| (e == probe).then_some(e),
                );
                assert_eq!(
                    early.is_some(),
                    everywhere,
                    "entry {probe} after {i} writes"
                );
                if probe >= 100_000 && i < 256 {
                    (reads_of_misses, misses) = (reads_of_misses + reads, misses + 1);
                }
            }
        }
        // Filling up to half full, a token never stored is known absent after 1.4 reads on
        // average, not 4.
        assert!(
            reads_of_misses * 10 < misses * 20,
            "{reads_of_misses} reads, {misses} misses"
        );
    }

    /// The figure in the module doc: four choices, 1,000 entries in 4,096 slots.
    #[test]
    fn four_choices_rarely_evict_at_a_quarter_full() {
        let slots = 4096;
        let mut table: Vec<Option<usize>> = vec![None; slots as usize];
        let mut evicted = 0;
        for i in 0..1000 {
            let choices = slot_choices(&token_key(&format!("t{i}")), slots);
            let slot = slot_to_write(&choices, |&s| {
                table.get(s as usize).is_some_and(Option::is_none)
            });
            if let Some(cell) = slot.and_then(|&s| table.get_mut(s as usize)) {
                evicted += usize::from(cell.is_some());
                *cell = Some(i);
            }
        }
        assert!(evicted <= 3, "{evicted} of 1000 evicted");
    }
}
