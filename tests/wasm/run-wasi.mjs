#!/usr/bin/env node
// Runs a wasm32-wasip1 program (a test binary, a bench) under V8, the wasm engine Envoy uses,
// through Node's built-in WASI preview1.
//
//   node tests/wasm/run-wasi.mjs PROGRAM.wasm [ARGS...]
//
// Also the cargo runner for wasm32-wasip1 (.cargo/config.toml), so that
// `cargo test --target wasm32-wasip1` just works. Arguments are passed through, stdin/stdout/
// stderr are the process's own, the environment is passed through, and the working directory is
// preopened as "." (what `wasmtime --dir .` does). The exit code is the program's. wasm32-wasip1
// has no unwinding, so a panic (a failed test) aborts with a trap: we report it on stderr and exit
// with 134, as a native abort would. libtest has already printed "test NAME ... " by then, and the
// panic message follows it because we default RUST_TEST_NOCAPTURE to 1: with capture on, libtest
// would hold the message in a buffer that the abort throws away. Set RUST_TEST_NOCAPTURE=0 to
// capture anyway. (The variable means nothing to programs other than libtest test binaries.)
import { readFile } from "node:fs/promises";
import process from "node:process";

// Node 20 warns on every run that WASI is experimental; that is noise in test output.
process.removeAllListeners("warning");
const { WASI } = await import("node:wasi");

const [program, ...args] = process.argv.slice(2);
if (!program) {
  process.stderr.write("usage: run-wasi.mjs PROGRAM.wasm [ARGS...]\n");
  process.exit(2);
}

const wasi = new WASI({
  version: "preview1",
  args: [program, ...args],
  env: { RUST_TEST_NOCAPTURE: "1", ...process.env },
  preopens: { ".": process.cwd() },
  returnOnExit: true,
});

let code;
try {
  const module = await WebAssembly.compile(await readFile(program));
  const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
  code = wasi.start(instance);
} catch (error) {
  const trap = error instanceof WebAssembly.RuntimeError;
  const stack = String(error?.stack ?? error);
  // A Rust panic ends in abort(): its message is already on stderr, the wasm stack adds nothing.
  const panicked = trap && /rust_begin_unwind|rust_panic|panicking/.test(stack);
  const what = panicked
    ? "aborted after a panic (see the message above; wasm32-wasip1 cannot unwind)"
    : `${trap ? "trapped" : "failed"}: ${stack}`;
  process.stderr.write(`\nrun-wasi: ${program}: ${what}\n`);
  code = trap ? 134 : 1;
}
process.exitCode = code;
