//! tollgate's engine: every decision the gateway filter makes, as plain Rust.
//!
//! Nothing here knows about proxy-wasm. Time and I/O results come in as arguments, so the whole
//! decision path runs natively under `cargo test` and compiles unchanged to `wasm32-wasip1`,
//! where the `tollgate-filter` crate translates host callbacks into calls to this crate.
//!
//! # Function size
//!
//! Envoy compiles every function of the module with V8's optimizing compiler (TurboFan; its
//! baseline compiler is off) when it loads the filter, and its allocator keeps the peak memory
//! that took. TurboFan's memory grows faster than a function's size: the configuration's
//! compile step, with its one-call helpers inlined, took 11 MB alone. So code that runs once
//! (configuration, key import) or off the hot path (first sight of a token, each signature
//! scheme) is kept out of line with `#[inline(never)]`: Envoy idles ~5 MiB smaller for it, and a
//! call costs nothing next to what these functions do. `make bench` measures the memory.
//!
//! # Optimized for size
//!
//! The module builds with `opt-level = "z"` for this crate ("s" for the filter's glue), all but
//! signature verification (`tollgate-crypto`, at 3): most of the code runs once, and the module
//! is held under 500 KB. A size build inlines little and unrolls nothing, so the loops a
//! request runs over its whole token or headers are written for it: indices rather than
//! iterator adapters, one vector load rather than sixteen lanes (`scan`).

pub mod audit;
pub mod b64;
pub mod civil;
pub mod claims;
pub mod config;
/// Signature verification and SipHash: the `tollgate-crypto` crate (`crypto/`), which builds
/// at full optimization while the rest of the module builds for size (see its crate docs).
pub use tollgate_crypto as crypto;
pub mod decimal;
pub mod denial;
pub mod explain;
pub mod gate;
pub mod introspection;
pub mod json;
pub mod jwk;
pub mod jws;
pub mod keys;
pub mod policy;
pub mod ratelimit;
pub mod request;
pub mod scan;
pub mod slots;
pub mod verified;
