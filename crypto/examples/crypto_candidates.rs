//! Side-by-side timing of JWS signature verification candidates, natively and in wasm under V8.
//!
//! ```text
//! cargo run --release -p tollgate-crypto --example crypto_candidates      # native
//! cargo build --release -p tollgate-crypto --example crypto_candidates --target wasm32-wasip1
//! node tests/wasm/run-wasi.mjs target/wasm32-wasip1/release/examples/crypto_candidates.wasm
//! ```
//!
//! (`cargo run --target wasm32-wasip1` does the same through the runner in `.cargo/config.toml`.)
//! Arguments: an optional substring that selects candidates, `--samples N` (default 31).
//!
//! Every candidate verifies the same ~480-byte signing input (hashing included, as in a real
//! request), first once to check it accepts the signature, then in warm-up rounds (so that V8
//! has tiered the code up to TurboFan), then in `N` timed samples; each sample times a batch
//! long enough (>= 2 ms) for the clock's cost not to matter. The table shows the median and the
//! fastest sample, per verification. "tollgate" rows go through `tollgate_crypto::PublicKey`,
//! the code the filter runs; the other rows call a crate directly, for comparison.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::hint::black_box;

use tollgate_crypto::{Algorithm, PublicKey};

use p256::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
use sha2::{Digest, Sha256, Sha384, Sha512};

/// The clock: on wasm32 the process CPU-time clock of WASI (`clock_time_get` with
/// `CLOCK_PROCESS_CPUTIME_ID`, which Node implements with getrusage), so that other processes
/// competing for the machine's cores do not inflate the numbers; natively the monotonic clock.
mod clock {
    #[cfg(target_arch = "wasm32")]
    pub fn now_ns() -> u64 {
        #[link(wasm_import_module = "wasi_snapshot_preview1")]
        extern "C" {
            fn clock_time_get(id: u32, precision: u64, time: *mut u64) -> u16;
        }
        const CLOCK_PROCESS_CPUTIME_ID: u32 = 2;
        let mut time = 0u64;
        // SAFETY: a WASI preview1 import; `time` is a valid, aligned u64.
        let errno = unsafe { clock_time_get(CLOCK_PROCESS_CPUTIME_ID, 1, &mut time) };
        assert_eq!(errno, 0, "clock_time_get");
        time
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn now_ns() -> u64 {
        use std::sync::OnceLock;
        static START: OnceLock<std::time::Instant> = OnceLock::new();
        START
            .get_or_init(std::time::Instant::now)
            .elapsed()
            .as_nanos() as u64
    }

    pub struct Instant(u64);

    impl Instant {
        pub fn now() -> Instant {
            Instant(now_ns())
        }
        pub fn elapsed(&self) -> std::time::Duration {
            std::time::Duration::from_nanos(now_ns().saturating_sub(self.0))
        }
    }

    pub const KIND: &str = if cfg!(target_arch = "wasm32") {
        "process CPU time"
    } else {
        "wall clock"
    };
}

use clock::Instant;

const KEYS: &str = include_str!("../../tests/vectors/rsa_test_keys.json");

fn hex(text: &str) -> Vec<u8> {
    let text = if text.len() % 2 == 1 {
        format!("0{text}")
    } else {
        text.to_string()
    };
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// A JWS signing input of typical size: base64url header "." base64url claims.
fn signing_input() -> Vec<u8> {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out: Vec<u8> = (0..480).map(|i| alphabet[(i * 7 + 3) % 64]).collect();
    out[64] = b'.';
    out
}

struct Candidate {
    alg: &'static str,
    name: String,
    /// The crate tollgate used before (the "vs crate" column divides by it).
    baseline: bool,
    run: Box<dyn Fn() -> bool>,
}

fn candidate(alg: &'static str, name: &str, run: impl Fn() -> bool + 'static) -> Candidate {
    Candidate {
        alg,
        name: name.to_string(),
        baseline: false,
        run: Box::new(run),
    }
}

fn baseline(alg: &'static str, name: &str, run: impl Fn() -> bool + 'static) -> Candidate {
    Candidate {
        baseline: true,
        ..candidate(alg, name, run)
    }
}

fn tollgate(alg: Algorithm, key: PublicKey, msg: &[u8], sig: &[u8]) -> Candidate {
    let (msg, sig) = (msg.to_vec(), sig.to_vec());
    candidate(alg.name(), "tollgate PublicKey::verify", move || {
        key.verify(alg, black_box(&msg), black_box(&sig)).is_ok()
    })
}

struct RsaFixture {
    private: rsa::PrivateKey,
    n: Vec<u8>,
    e: Vec<u8>,
}

fn rsa_fixture(bits: u64) -> RsaFixture {
    let keys: serde_json::Value = serde_json::from_str(KEYS).unwrap();
    let key = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["bits"] == bits && k["e"] == "10001")
        .unwrap();
    let big = |name: &str| rsa::BoxedUint::from_be_slice_vartime(&hex(key[name].as_str().unwrap()));
    let private =
        rsa::PrivateKey::from_components(big("n"), big("e"), big("d"), vec![big("p"), big("q")])
            .unwrap();
    RsaFixture {
        private,
        n: hex(key["n"].as_str().unwrap()),
        e: hex(key["e"].as_str().unwrap()),
    }
}

/// A deterministic `rand_core` RNG for PSS salts (benchmark data only).
struct CounterRng(u64);

impl rand_core::TryRng for CounterRng {
    type Error = core::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(self.try_next_u64()? as u32)
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        Ok(self.0 >> 11)
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        for b in dst {
            *b = self.try_next_u64()? as u8;
        }
        Ok(())
    }
}
impl rand_core::TryCryptoRng for CounterRng {}

fn candidates() -> Vec<Candidate> {
    let msg = signing_input();
    let mut out = Vec::new();

    // ---- RSA ----
    for bits in [2048u64, 3072, 4096] {
        let fx = rsa_fixture(bits);
        let public = fx.private.to_public_key();
        let digest = Sha256::digest(&msg);
        let rs = fx
            .private
            .sign(rsa::Pkcs1v15Sign::new::<Sha256>(), &digest)
            .unwrap();
        let ps = fx
            .private
            .sign_with_rng(&mut CounterRng(1), rsa::Pss::<Sha256>::new(), &digest)
            .unwrap();
        let (alg_rs, alg_ps) = match bits {
            2048 => ("RS256", "PS256"),
            3072 => ("RS256/3072", "PS256/3072"),
            _ => ("RS256/4096", "PS256/4096"),
        };
        let key = PublicKey::rsa(&fx.n, &fx.e).unwrap();
        let mut t = tollgate(Algorithm::Rs256, key.clone(), &msg, &rs);
        t.alg = alg_rs;
        out.push(t);
        {
            let (public, msg, rs) = (public.clone(), msg.clone(), rs.clone());
            out.push(baseline(alg_rs, "rsa 0.10", move || {
                let digest = Sha256::digest(black_box(&msg));
                public
                    .verify(rsa::Pkcs1v15Sign::new::<Sha256>(), &digest, black_box(&rs))
                    .is_ok()
            }));
        }
        let mut t = tollgate(Algorithm::Ps256, key, &msg, &ps);
        t.alg = alg_ps;
        out.push(t);
        {
            let (public, msg, ps) = (public.clone(), msg.clone(), ps.clone());
            out.push(baseline(alg_ps, "rsa 0.10", move || {
                let digest = Sha256::digest(black_box(&msg));
                public
                    .verify(rsa::Pss::<Sha256>::new(), &digest, black_box(&ps))
                    .is_ok()
            }));
        }
    }

    // ---- ECDSA ----
    {
        let sk = p256::ecdsa::SigningKey::from_slice(&[0x11; 32]).unwrap();
        let sig: p256::ecdsa::Signature = sk.sign_prehash(&Sha256::digest(&msg)).unwrap();
        let sig = sig.to_bytes().to_vec();
        let point = sk.verifying_key().to_sec1_point(false);
        let bytes = point.as_bytes();
        let key = PublicKey::ec("P-256", &bytes[1..33], &bytes[33..]).unwrap();
        out.push(tollgate(Algorithm::Es256, key, &msg, &sig));
        let vk = *sk.verifying_key();
        let (m, s) = (msg.clone(), sig.clone());
        out.push(baseline("ES256", "p256 0.14", move || {
            let sig = p256::ecdsa::Signature::from_slice(black_box(&s)).unwrap();
            vk.verify_prehash(&Sha256::digest(black_box(&m)), &sig)
                .is_ok()
        }));
    }
    {
        let sk = p384::ecdsa::SigningKey::from_slice(&[0x11; 48]).unwrap();
        let sig: p384::ecdsa::Signature = sk.sign_prehash(&Sha384::digest(&msg)).unwrap();
        let sig = sig.to_bytes().to_vec();
        let point = sk.verifying_key().to_sec1_point(false);
        let bytes = point.as_bytes();
        let key = PublicKey::ec("P-384", &bytes[1..49], &bytes[49..]).unwrap();
        out.push(tollgate(Algorithm::Es384, key, &msg, &sig));
        let vk = *sk.verifying_key();
        let (m, s) = (msg.clone(), sig.clone());
        out.push(baseline("ES384", "p384 0.14", move || {
            let sig = p384::ecdsa::Signature::from_slice(black_box(&s)).unwrap();
            vk.verify_prehash(&Sha384::digest(black_box(&m)), &sig)
                .is_ok()
        }));
    }
    {
        let sk = p521::ecdsa::SigningKey::from_slice(&[[0x01; 1].as_slice(), &[0x11; 65]].concat())
            .unwrap();
        let sig: p521::ecdsa::Signature = sk.sign_prehash(&Sha512::digest(&msg)).unwrap();
        let sig = sig.to_bytes().to_vec();
        let point = sk.verifying_key().to_sec1_point(false);
        let bytes = point.as_bytes();
        let key = PublicKey::ec("P-521", &bytes[1..67], &bytes[67..]).unwrap();
        out.push(tollgate(Algorithm::Es512, key, &msg, &sig));
        let vk = *sk.verifying_key();
        let (m, s) = (msg.clone(), sig.clone());
        out.push(baseline("ES512", "p521 0.14", move || {
            let sig = p521::ecdsa::Signature::from_slice(black_box(&s)).unwrap();
            vk.verify_prehash(&Sha512::digest(black_box(&m)), &sig)
                .is_ok()
        }));
    }

    // ---- EdDSA ----
    {
        use ed25519_dalek::Signer;
        let sk = ed25519_dalek::SigningKey::from_bytes(&[0x11; 32]);
        let sig = sk.sign(&msg).to_bytes().to_vec();
        let key = PublicKey::ed25519(sk.verifying_key().as_bytes()).unwrap();
        out.push(tollgate(Algorithm::EdDsa, key, &msg, &sig));
        let vk = sk.verifying_key();
        let (m, s) = (msg.clone(), sig.clone());
        out.push(baseline(
            "EdDSA",
            "ed25519-dalek 3 verify_strict",
            move || {
                let sig = ed25519_dalek::Signature::from_slice(black_box(&s)).unwrap();
                vk.verify_strict(black_box(&m), &sig).is_ok()
            },
        ));
        {
            use curve25519_dalek::traits::VartimePrecomputedMultiscalarMul;
            let a = curve25519_dalek::edwards::CompressedEdwardsY(*vk.as_bytes())
                .decompress()
                .unwrap();
            let pre = curve25519_dalek::edwards::VartimeEdwardsPrecomputation::new([
                curve25519_dalek::constants::ED25519_BASEPOINT_POINT,
                -a,
            ]);
            let (m, s) = (msg.clone(), sig.clone());
            let a_bytes = *vk.as_bytes();
            out.push(candidate(
                "EdDSA",
                "dalek precomputed [B, -A] w=8",
                move || {
                    let s = black_box(&s);
                    let r: [u8; 32] = s[..32].try_into().unwrap();
                    let sc = Option::<curve25519_dalek::Scalar>::from(
                        curve25519_dalek::Scalar::from_canonical_bytes(s[32..].try_into().unwrap()),
                    )
                    .unwrap();
                    let mut h = Sha512::new();
                    h.update(r);
                    h.update(a_bytes);
                    h.update(black_box(&m));
                    let k =
                        curve25519_dalek::Scalar::from_bytes_mod_order_wide(&h.finalize().into());
                    pre.vartime_multiscalar_mul([sc, k]).compress().to_bytes() == r
                },
            ));
        }
        let (m, s) = (msg.clone(), sig.clone());
        out.push(candidate(
            "EdDSA",
            "ed25519-dalek verify (not strict)",
            move || {
                use ed25519_dalek::Verifier;
                let sig = ed25519_dalek::Signature::from_slice(black_box(&s)).unwrap();
                vk.verify(black_box(&m), &sig).is_ok()
            },
        ));
    }

    // ---- key import: once per key and JWKS fetch (tables and constants are built here) ----
    for (bits, alg) in [(2048u64, "import RSA"), (4096, "import RSA4k")] {
        let fx = rsa_fixture(bits);
        let (n, e) = (fx.n.clone(), fx.e.clone());
        out.push(candidate(alg, "tollgate PublicKey::rsa", move || {
            PublicKey::rsa(black_box(&n), &e).is_ok()
        }));
        let (n, e) = (fx.n.clone(), fx.e.clone());
        out.push(baseline(alg, "rsa 0.10 PublicKey::new", move || {
            rsa::PublicKey::new(
                rsa::BoxedUint::from_be_slice_vartime(black_box(&n)),
                rsa::BoxedUint::from_be_slice_vartime(&e),
            )
            .is_ok()
        }));
    }
    {
        let sk = p256::ecdsa::SigningKey::from_slice(&[0x11; 32]).unwrap();
        let point = sk.verifying_key().to_sec1_point(false);
        let bytes = point.as_bytes().to_vec();
        let b = bytes.clone();
        out.push(candidate(
            "import P-256",
            "tollgate PublicKey::ec",
            move || PublicKey::ec("P-256", black_box(&b[1..33]), &b[33..]).is_ok(),
        ));
        out.push(baseline(
            "import P-256",
            "p256 0.14 from_sec1_bytes",
            move || p256::ecdsa::VerifyingKey::from_sec1_bytes(black_box(&bytes)).is_ok(),
        ));
    }
    {
        let sk = p384::ecdsa::SigningKey::from_slice(&[0x11; 48]).unwrap();
        let point = sk.verifying_key().to_sec1_point(false);
        let bytes = point.as_bytes().to_vec();
        let b = bytes.clone();
        out.push(candidate(
            "import P-384",
            "tollgate PublicKey::ec",
            move || PublicKey::ec("P-384", black_box(&b[1..49]), &b[49..]).is_ok(),
        ));
        out.push(baseline(
            "import P-384",
            "p384 0.14 from_sec1_bytes",
            move || p384::ecdsa::VerifyingKey::from_sec1_bytes(black_box(&bytes)).is_ok(),
        ));
    }
    {
        let sk = p521::ecdsa::SigningKey::from_slice(&[[0x01; 1].as_slice(), &[0x11; 65]].concat())
            .unwrap();
        let point = sk.verifying_key().to_sec1_point(false);
        let bytes = point.as_bytes().to_vec();
        let b = bytes.clone();
        out.push(candidate(
            "import P-521",
            "tollgate PublicKey::ec",
            move || PublicKey::ec("P-521", black_box(&b[1..67]), &b[67..]).is_ok(),
        ));
        out.push(baseline(
            "import P-521",
            "p521 0.14 from_sec1_bytes",
            move || p521::ecdsa::VerifyingKey::from_sec1_bytes(black_box(&bytes)).is_ok(),
        ));
    }
    {
        let sk = ed25519_dalek::SigningKey::from_bytes(&[0x11; 32]);
        let a = *sk.verifying_key().as_bytes();
        out.push(candidate(
            "import Ed",
            "tollgate PublicKey::ed25519",
            move || PublicKey::ed25519(black_box(&a)).is_ok(),
        ));
        out.push(baseline(
            "import Ed",
            "ed25519-dalek 3 from_bytes",
            move || ed25519_dalek::VerifyingKey::from_bytes(black_box(&a)).is_ok(),
        ));
    }

    // ---- HMAC, for scale ----
    {
        let key = PublicKey::hmac(&[0x42; 32]).unwrap();
        let mut mac = <hmac::Hmac<Sha256> as hmac::KeyInit>::new_from_slice(&[0x42; 32]).unwrap();
        hmac::Mac::update(&mut mac, &msg);
        let tag = hmac::Mac::finalize(mac).into_bytes().to_vec();
        out.push(tollgate(Algorithm::Hs256, key, &msg, &tag));
    }
    out
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

fn main() {
    let mut filter = String::new();
    let mut samples = 31usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--samples" {
            samples = args.next().and_then(|n| n.parse().ok()).unwrap_or(samples);
        } else {
            filter = arg;
        }
    }
    let target = if cfg!(target_arch = "wasm32") {
        "wasm32 (V8 when run by node)"
    } else {
        "native"
    };
    let selected: Vec<Candidate> = candidates()
        .into_iter()
        .filter(|c| format!("{} {}", c.alg, c.name).contains(&filter))
        .collect();
    // Warm-up (so that V8 has tiered the code up) and batch size: ~100 ms each, then batches
    // of >= 2 ms so that the clock's own cost does not matter.
    let batches: Vec<usize> = selected
        .iter()
        .map(|c| {
            assert!((c.run)(), "{} {}: does not accept its input", c.alg, c.name);
            let start = Instant::now();
            let mut warm = 0u32;
            while start.elapsed().as_millis() < 100 || warm < 5 {
                black_box((c.run)());
                warm += 1;
            }
            let per = start.elapsed().as_secs_f64() / f64::from(warm);
            ((0.002 / per).ceil() as usize).max(1)
        })
        .collect();
    // Rounds: one batch of every candidate per round, so that all of them see the same
    // machine (other processes come and go); the median over rounds is reported.
    let mut times = vec![Vec::with_capacity(samples); selected.len()];
    for _ in 0..samples {
        for ((c, &batch), out) in selected.iter().zip(&batches).zip(times.iter_mut()) {
            let t = Instant::now();
            for _ in 0..batch {
                black_box((c.run)());
            }
            out.push(t.elapsed().as_secs_f64() * 1e6 / batch as f64);
        }
    }
    println!(
        "target: {target}; {}; {samples} rounds; us per operation",
        clock::KIND
    );
    println!(
        "{:<12} {:<40} {:>9} {:>9} {:>11}",
        "alg", "candidate", "median", "fastest", "vs crate"
    );
    let medians: Vec<f64> = times.iter_mut().map(|t| median(t)).collect();
    for ((c, t), &med) in selected.iter().zip(&times).zip(&medians) {
        let fastest = t.iter().copied().fold(f64::INFINITY, f64::min);
        // The ratio to the first "crate" row of the same algorithm, if there is one.
        let baseline = selected
            .iter()
            .zip(&medians)
            .find(|(other, _)| other.alg == c.alg && other.baseline)
            .map(|(_, &m)| m);
        let ratio = baseline.map_or(String::new(), |b| format!("{:.2}x", med / b));
        println!(
            "{:<12} {:<40} {:>9.1} {:>9.1} {:>11}",
            c.alg, c.name, med, fastest, ratio
        );
    }
}
