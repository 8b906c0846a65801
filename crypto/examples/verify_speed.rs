//! How long one JWS signature verification takes, per algorithm, with the crates the engine uses.
//!
//! Built for wasm32-wasip1 and run under V8 (Node's WASI) by `make bench-verify`, which also runs
//! it natively for comparison; it is not part of `make test`. Keys, messages and signatures are
//! the first valid vector of the Wycheproof file for each algorithm, so nothing is generated and
//! every timed call must succeed. Each of ITERATIONS calls (after WARMUP untimed ones, which also
//! let V8 tier the hot code up from Liftoff to TurboFan) is timed on its own, by the process CPU
//! clock and by the wall clock. The median CPU time is the figure to read on a busy machine: the
//! wall-clock median also counts time the process spent waiting for a core.
//!
//!   cargo run --release -p tollgate-crypto --example verify_speed [--target wasm32-wasip1] -- [ITERATIONS [WARMUP [ALGS]]]
//!
//! ALGS (say `RS256,EdDSA`) runs only those: one algorithm alone, under callgrind, gives its
//! instructions per verification, which a busy machine does not change.

use std::error::Error;
use std::hint::black_box;
use std::time::Instant;

use serde_json::Value;
use tollgate_crypto::{Algorithm, PublicKey};

macro_rules! wycheproof {
    ($file:literal) => {
        include_str!(concat!("../../tests/vectors/wycheproof/", $file))
    };
}

type Result<T> = std::result::Result<T, Box<dyn Error>>;
type KeyOf = fn(&Value) -> Result<PublicKey>;

fn hex(text: &str) -> Result<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return Err(format!("odd hex length: {text}").into());
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            let pair = text.get(i..i + 2).ok_or("bad hex")?;
            Ok(u8::from_str_radix(pair, 16)?)
        })
        .collect()
}

fn field<'a>(value: &'a Value, name: &str) -> Result<&'a Value> {
    value.get(name).ok_or_else(|| format!("no {name}").into())
}

fn string<'a>(value: &'a Value, name: &str) -> Result<&'a str> {
    field(value, name)?
        .as_str()
        .ok_or_else(|| format!("{name} is not a string").into())
}

fn array<'a>(value: &'a Value, name: &str) -> Result<&'a Vec<Value>> {
    field(value, name)?
        .as_array()
        .ok_or_else(|| format!("{name} is not an array").into())
}

/// A big-endian integer as exactly `len` bytes (Wycheproof adds a sign byte or drops zeros).
fn fixed(text: &str, len: usize) -> Result<Vec<u8>> {
    let bytes = hex(text)?;
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    let digits = bytes.get(start..).unwrap_or_default();
    let pad = len
        .checked_sub(digits.len())
        .ok_or("integer longer than the field")?;
    Ok([vec![0; pad], digits.to_vec()].concat())
}

/// The key, message and signature of the first valid vector whose message is not empty.
fn first_valid(
    text: &str,
    key_of: impl Fn(&Value) -> Result<PublicKey>,
) -> Result<(PublicKey, Vec<u8>, Vec<u8>)> {
    let file: Value = serde_json::from_str(text)?;
    for group in array(&file, "testGroups")? {
        for test in array(group, "tests")? {
            if string(test, "result")? == "valid" && !string(test, "msg")?.is_empty() {
                let key = key_of(group)?;
                return Ok((key, hex(string(test, "msg")?)?, hex(string(test, "sig")?)?));
            }
        }
    }
    Err("no valid vector".into())
}

fn rsa(group: &Value) -> Result<PublicKey> {
    let key = field(group, "publicKey")?;
    Ok(PublicKey::rsa(
        &hex(string(key, "modulus")?)?,
        &hex(string(key, "publicExponent")?)?,
    )?)
}

fn ec(crv: &'static str, len: usize) -> impl Fn(&Value) -> Result<PublicKey> {
    move |group| {
        let key = field(group, "publicKey")?;
        Ok(PublicKey::ec(
            crv,
            &fixed(string(key, "wx")?, len)?,
            &fixed(string(key, "wy")?, len)?,
        )?)
    }
}

fn ed25519(group: &Value) -> Result<PublicKey> {
    Ok(PublicKey::ed25519(&hex(string(
        field(group, "publicKey")?,
        "pk",
    )?)?)?)
}

/// CPU time this process has used, in nanoseconds: what the table's CPU column is made of, so
/// that other work on the machine (which stretches wall-clock times) does not count.
mod cpu {
    #[cfg(target_os = "wasi")]
    #[link(wasm_import_module = "wasi_snapshot_preview1")]
    extern "C" {
        #[link_name = "clock_time_get"]
        fn wasi_clock_time_get(id: u32, precision: u64, time: *mut u64) -> u16;
    }

    /// WASI's process CPU clock (Node answers it with getrusage: user + system time).
    #[cfg(target_os = "wasi")]
    pub fn now() -> Option<u64> {
        const PROCESS_CPUTIME_ID: u32 = 2;
        let mut time = 0u64;
        // SAFETY: clock_time_get writes one u64 through the pointer, which is valid for it.
        let errno = unsafe { wasi_clock_time_get(PROCESS_CPUTIME_ID, 1, &mut time) };
        (errno == 0).then_some(time)
    }

    #[cfg(all(target_os = "linux", target_pointer_width = "64"))]
    #[repr(C)]
    pub struct Timespec {
        sec: i64,
        nsec: i64,
    }

    #[cfg(all(target_os = "linux", target_pointer_width = "64"))]
    extern "C" {
        fn clock_gettime(clock: i32, time: *mut Timespec) -> i32;
    }

    #[cfg(all(target_os = "linux", target_pointer_width = "64"))]
    pub fn now() -> Option<u64> {
        const CLOCK_PROCESS_CPUTIME_ID: i32 = 2;
        let mut time = Timespec { sec: 0, nsec: 0 };
        // SAFETY: clock_gettime writes one timespec through the pointer, which is valid for it.
        let status = unsafe { clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &mut time) };
        let nanos =
            u64::try_from(time.sec).ok()? * 1_000_000_000 + u64::try_from(time.nsec).ok()?;
        (status == 0).then_some(nanos)
    }

    #[cfg(not(any(
        target_os = "wasi",
        all(target_os = "linux", target_pointer_width = "64")
    )))]
    pub fn now() -> Option<u64> {
        None
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Microseconds per verification, each call timed on its own: (median CPU time, median wall
/// time, fastest wall time).
fn measure(
    alg: Algorithm,
    key: &PublicKey,
    msg: &[u8],
    sig: &[u8],
    iterations: usize,
    warmup: usize,
) -> Result<(f64, f64, f64)> {
    for _ in 0..warmup {
        key.verify(alg, black_box(msg), black_box(sig))?;
    }
    let mut cpu = Vec::with_capacity(iterations);
    let mut wall = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let cpu_start = cpu::now();
        let start = Instant::now();
        let outcome = key.verify(alg, black_box(msg), black_box(sig));
        wall.push(start.elapsed().as_secs_f64() * 1e6);
        if let (Some(end), Some(start)) = (cpu::now(), cpu_start) {
            cpu.push(end.saturating_sub(start) as f64 / 1e3);
        }
        black_box(outcome)?;
    }
    let fastest = wall.iter().copied().fold(f64::INFINITY, f64::min);
    Ok((median(cpu), median(wall), fastest))
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let iterations: usize = args.next().map_or(Ok(300), |a| a.parse())?.max(1);
    let warmup: usize = args.next().map_or(Ok(100), |a| a.parse())?;
    // Optionally, the algorithms to run (JOSE names, comma-separated): one alone under a counting
    // tool such as callgrind.
    let only: Option<Vec<String>> = args
        .next()
        .map(|a| a.split(',').map(str::to_string).collect());

    let cases: [(Algorithm, &str, &str, KeyOf); 6] = [
        (
            Algorithm::Rs256,
            "RSA 2048, e=65537",
            wycheproof!("rsa_signature_2048_sha256_test.json"),
            rsa,
        ),
        (
            Algorithm::Ps256,
            "RSA 2048, e=65537",
            wycheproof!("rsa_pss_2048_sha256_mgf1_32_test.json"),
            rsa,
        ),
        (
            Algorithm::Es256,
            "P-256",
            wycheproof!("ecdsa_secp256r1_sha256_p1363_test.json"),
            |g| ec("P-256", 32)(g),
        ),
        (
            Algorithm::Es384,
            "P-384",
            wycheproof!("ecdsa_secp384r1_sha384_p1363_test.json"),
            |g| ec("P-384", 48)(g),
        ),
        (
            Algorithm::Es512,
            "P-521",
            wycheproof!("ecdsa_secp521r1_sha512_p1363_test.json"),
            |g| ec("P-521", 66)(g),
        ),
        (
            Algorithm::EdDsa,
            "Ed25519",
            wycheproof!("ed25519_test.json"),
            ed25519,
        ),
    ];

    let platform = if cfg!(target_os = "wasi") {
        "wasm32-wasip1 (32-bit), under the host's wasm engine".to_string()
    } else {
        format!(
            "{}-{} ({}-bit), native",
            std::env::consts::ARCH,
            std::env::consts::OS,
            usize::BITS
        )
    };
    println!(
        "verify_speed on {platform}: median of {iterations} verifications after {warmup} warm-up"
    );
    println!(
        "| {:<5} | {:<17} | {:>15} | {:>16} | {:>14} | {:>14} |",
        "alg", "key", "median CPU (us)", "median wall (us)", "min wall (us)", "verify/s (CPU)"
    );
    println!(
        "|{:-<7}|{:-<19}|{:->17}|{:->18}|{:->16}|{:->16}|",
        "", "", ":", ":", ":", ":"
    );
    for (alg, key_name, text, key_of) in cases {
        if only
            .as_ref()
            .is_some_and(|only| !only.iter().any(|a| a == alg.name()))
        {
            continue;
        }
        let (key, msg, sig) = first_valid(text, key_of)?;
        let (cpu, wall, fastest) = measure(alg, &key, &msg, &sig, iterations, warmup)
            .map_err(|e| format!("{alg}: {e}"))?;
        println!(
            "| {:<5} | {:<17} | {:>15.1} | {:>16.1} | {:>14.1} | {:>14.0} |",
            alg.name(),
            key_name,
            cpu,
            wall,
            fastest,
            1e6 / cpu
        );
    }
    Ok(())
}
