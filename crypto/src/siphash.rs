//! SipHash-2-4 with its 128-bit output: the keyed PRF a worker files verified tokens under.
//!
//! Why a keyed PRF and not the token: a worker kept each verified token's text (~0.65 KB of a
//! ~1.2 KB entry) only to compare a later request's token with it, byte for byte. A 128-bit
//! PRF of the text under a secret key drawn at random for each worker's cache identifies it as
//! well for this purpose: a client that does not know the key cannot make another token file
//! under a remembered one's value except by guessing, with a chance of about `n / 2^128` a try
//! for `n` remembered tokens, and the filter never shows the value. SipHash-2-4 is the PRF its
//! designers claim for this (Aumasson and Bernstein, 2012; the 128-bit output is their
//! reference code's `outlen = 16`), and it is cheap where this runs: 64-bit additions, xors and
//! rotations, which wasm has natively; V8 runs ~45 instructions per 8 bytes (4.1k for the bench's
//! 650-byte token, table lookup included). SHA-256's 64 rounds per 64 bytes cost several times
//! that, which is why a hit never computes one.
//!
//! The whole input is read at once (no streaming state): a token is one slice.

/// A SipHash key: two 64-bit words, little-endian from 16 bytes.
#[derive(Clone, Copy)]
pub struct SipKey {
    k0: u64,
    k1: u64,
}

impl SipKey {
    pub fn new(bytes: [u8; 16]) -> SipKey {
        let key = u128::from_le_bytes(bytes);
        SipKey {
            k0: key as u64,
            k1: (key >> 64) as u64,
        }
    }
}

/// Printed without the key: a key in a log would end the guessing game.
impl std::fmt::Debug for SipKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SipKey(..)")
    }
}

struct State([u64; 4]);

impl State {
    #[inline(always)]
    fn round(&mut self) {
        let [v0, v1, v2, v3] = &mut self.0;
        *v0 = v0.wrapping_add(*v1);
        *v1 = v1.rotate_left(13) ^ *v0;
        *v0 = v0.rotate_left(32);
        *v2 = v2.wrapping_add(*v3);
        *v3 = v3.rotate_left(16) ^ *v2;
        *v0 = v0.wrapping_add(*v3);
        *v3 = v3.rotate_left(21) ^ *v0;
        *v2 = v2.wrapping_add(*v1);
        *v1 = v1.rotate_left(17) ^ *v2;
        *v2 = v2.rotate_left(32);
    }

    /// Two compression rounds over one word.
    #[inline(always)]
    fn absorb(&mut self, m: u64) {
        self.0[3] ^= m;
        self.round();
        self.round();
        self.0[0] ^= m;
    }

    fn squeeze(&mut self) -> u64 {
        for _ in 0..4 {
            self.round();
        }
        self.0.iter().fold(0, |out, v| out ^ v)
    }
}

/// SipHash-2-4 of `data` under `key`, 128 bits: the reference's 16 output bytes, read as a
/// little-endian number.
pub fn siphash128(key: &SipKey, data: &[u8]) -> u128 {
    let mut s = State([
        key.k0 ^ 0x736f_6d65_7073_6575,
        key.k1 ^ 0x646f_7261_6e64_6f6d ^ 0xee,
        key.k0 ^ 0x6c79_6765_6e65_7261,
        key.k1 ^ 0x7465_6462_7974_6573,
    ]);
    let mut words = data.chunks_exact(8);
    for word in &mut words {
        s.absorb(u64::from_le_bytes(word.try_into().unwrap_or_default()));
    }
    // The last word: the bytes left, and the length's low byte on top.
    let last = words
        .remainder()
        .iter()
        .rev()
        .fold(0u64, |m, &b| (m << 8) | u64::from(b));
    s.absorb(last | ((data.len() as u64) << 56));
    s.0[2] ^= 0xee;
    let low = s.squeeze();
    s.0[1] ^= 0xdd;
    let high = s.squeeze();
    (u128::from(high) << 64) | u128::from(low)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use siphasher::sip128::{Hasher128, SipHasher24};
    use std::hash::Hasher;

    fn reference(key: [u8; 16], data: &[u8]) -> u128 {
        let mut hasher = SipHasher24::new_with_key(&key);
        hasher.write(data);
        u128::from_le_bytes(hasher.finish128().as_bytes())
    }

    fn key_0_to_15() -> [u8; 16] {
        std::array::from_fn(|i| i as u8)
    }

    #[test]
    fn the_reference_vectors_hold() {
        // The first and last entries of `vectors_sip128` in the designers' reference code:
        // key 00..0f, message 00..(n-1) for n = 0 and n = 63.
        let key = SipKey::new(key_0_to_15());
        assert_eq!(
            siphash128(&key, &[]).to_le_bytes(),
            [
                0xa3, 0x81, 0x7f, 0x04, 0xba, 0x25, 0xa8, 0xe6, 0x6d, 0xf6, 0x72, 0x14, 0xc7, 0x55,
                0x02, 0x93
            ]
        );
        let message: Vec<u8> = (0..63).collect();
        assert_eq!(
            siphash128(&key, &message),
            reference(key_0_to_15(), &message)
        );
    }

    #[test]
    fn every_length_around_a_word_matches_the_reference() {
        let message: Vec<u8> = (0..=255).collect();
        for len in 0..=message.len() {
            let data = &message[..len];
            assert_eq!(
                siphash128(&SipKey::new(key_0_to_15()), data),
                reference(key_0_to_15(), data),
                "length {len}"
            );
        }
    }

    #[test]
    fn the_key_is_not_printed() {
        assert_eq!(format!("{:?}", SipKey::new([7; 16])), "SipKey(..)");
    }

    proptest! {
        #[test]
        fn random_keys_and_messages_match_the_reference(
            key in any::<[u8; 16]>(),
            data in proptest::collection::vec(any::<u8>(), 0..2048),
        ) {
            prop_assert_eq!(siphash128(&SipKey::new(key), &data), reference(key, &data));
        }

        #[test]
        fn one_changed_bit_changes_the_value(
            key in any::<[u8; 16]>(),
            data in proptest::collection::vec(any::<u8>(), 1..1024),
            at in any::<prop::sample::Index>(),
            bit in 0..8u8,
        ) {
            let mut changed = data.clone();
            changed[at.index(data.len())] ^= 1 << bit;
            let key = SipKey::new(key);
            prop_assert_ne!(siphash128(&key, &data), siphash128(&key, &changed));
        }
    }
}
