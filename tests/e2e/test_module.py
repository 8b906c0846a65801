"""The built module itself: Envoy compiles every function of it with V8's optimizing compiler
when it loads the filter, and keeps the peak memory that took, which grows faster than the
largest function. So no function may grow past a bound (see "Function size" in `src/lib.rs`):
one-call helpers inlined into the configuration's compile step made it a 33 KB body, and keeping
such code out of line took ~5 MiB off Envoy's idle memory."""

from __future__ import annotations

from pathlib import Path

import pytest

import harness
import wasm_code

# The largest bodies are 13 KB now (a serde-derived reader of the configuration).
MAX_FUNCTION_BYTES = 16 * 1024


def test_no_function_of_the_filter_is_large_enough_to_swell_envoys_compile():
    path = harness.wasm_path()
    if path is None:
        pytest.skip("TOLLGATE_WASM is not set (make e2e sets it)")
    sizes = wasm_code.function_body_sizes(Path(path).read_bytes())
    assert len(sizes) > 100, "the code section was not read"
    largest = max(sizes)
    assert largest <= MAX_FUNCTION_BYTES, (
        f"a function body of {largest:,} bytes (bound {MAX_FUNCTION_BYTES:,}): keep one-call "
        "helpers out of line with #[inline(never)]")


def test_the_code_section_reader_reads_a_module_it_builds():
    # A module of two functions, bodies of 4 and 130 bytes (130 needs a two-byte LEB128 size).
    def leb(n: int) -> bytes:
        out = bytearray()
        while True:
            byte, n = n & 0x7F, n >> 7
            out.append(byte | (0x80 if n else 0))
            if not n:
                return bytes(out)

    bodies = [bytes([0, 0x41, 0, 0x0B]), bytes([0]) + bytes([0x01] * 128) + bytes([0x0B])]
    code = leb(len(bodies)) + b"".join(leb(len(b)) + b for b in bodies)
    custom = b"\x04name"  # a custom section before it, skipped
    module = (b"\0asm\x01\0\0\0" + bytes([0]) + leb(len(custom)) + custom
              + bytes([10]) + leb(len(code)) + code)
    assert wasm_code.function_body_sizes(module) == [4, 130]
    with pytest.raises(ValueError):
        wasm_code.function_body_sizes(module[:-3])
