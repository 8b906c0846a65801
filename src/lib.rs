//! tollgate's engine: every decision the gateway filter makes, as plain Rust.
//!
//! Nothing here knows about proxy-wasm. Time and I/O results come in as arguments, so the whole
//! decision path runs natively under `cargo test` and compiles unchanged to `wasm32-wasip1`,
//! where the `tollgate-filter` crate translates host callbacks into calls to this crate.

pub mod audit;
pub mod b64;
pub mod civil;
pub mod claims;
pub mod config;
pub mod crypto;
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
pub mod slots;
pub mod verified;
