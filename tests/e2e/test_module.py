"""The built module itself: Envoy compiles every function of it with V8's optimizing compiler
when it loads the filter, and keeps the peak memory that took, which grows faster than the
largest function. So no function may grow past a bound (see "Function size" in `src/lib.rs`):
one-call helpers inlined into the configuration's compile step made it a 33 KB body, and keeping
such code out of line took ~5 MiB off Envoy's idle memory."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import pytest

import harness
import wasm_code

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import module_profile  # noqa: E402

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


def test_the_filter_is_linked_with_its_call_targets_at_their_shortest():
    # `.cargo/config.toml` links with `--compress-relocations`: without it the module is 5%
    # larger (798 KB against 841 KB), with ~8,400 calls through a padded index.
    path = harness.wasm_path()
    if path is None:
        pytest.skip("TOLLGATE_WASM is not set (make e2e sets it)")
    module = Path(path).read_bytes()
    assert wasm_code.function_body_sizes(module), "the code section was not read"
    padded = wasm_code.padded_calls(module)
    assert padded < 20, (
        f"{padded:,} calls through a padded function index: link with --compress-relocations")
    debug = [name for name in wasm_code.custom_section_names(module) if name.startswith(".debug")]
    assert not debug, f"the shipped module carries DWARF: {debug}"


def leb(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def test_the_code_section_reader_reads_a_module_it_builds():
    # A module of two functions, bodies of 4 and 130 bytes (130 needs a two-byte LEB128 size).
    bodies = [bytes([0, 0x41, 0, 0x0B]), bytes([0]) + bytes([0x01] * 128) + bytes([0x0B])]
    code = leb(len(bodies)) + b"".join(leb(len(b)) + b for b in bodies)
    custom = b"\x04name"  # a custom section before it, skipped
    module = (b"\0asm\x01\0\0\0" + bytes([0]) + leb(len(custom)) + custom
              + bytes([10]) + leb(len(code)) + code)
    assert wasm_code.function_body_sizes(module) == [4, 130]
    with pytest.raises(ValueError):
        wasm_code.function_body_sizes(module[:-3])


def test_the_padded_call_reader_tells_a_padded_index_from_a_short_one():
    padded_call = bytes([0x10, 0x85, 0x80, 0x80, 0x80, 0x00])  # call 5, padded to five bytes
    short_call = bytes([0x10, 0x05])                           # call 5
    bodies = [bytes([0]) + padded_call + short_call + bytes([0x0B]),
              bytes([0]) + short_call + padded_call + padded_call + bytes([0x0B])]
    code = leb(len(bodies)) + b"".join(leb(len(b)) + b for b in bodies)
    custom = leb(len(".debug_info")) + b".debug_info" + padded_call  # outside the code: not counted
    module = (b"\0asm\x01\0\0\0" + bytes([0]) + leb(len(custom)) + custom
              + bytes([10]) + leb(len(code)) + code)
    assert wasm_code.padded_calls(module) == 3
    assert wasm_code.custom_section_names(module) == [".debug_info"]


def test_the_name_reader_numbers_functions_after_the_imports():
    def name(text: str) -> bytes:
        return leb(len(text)) + text.encode()

    # Imports: a function, a memory (limits with a maximum), another function.
    imports = (leb(3) + name("env") + name("log") + b"\x00" + leb(0)
               + name("env") + name("memory") + b"\x02\x01" + leb(1) + leb(2)
               + name("env") + name("tick") + b"\x00" + leb(1))
    names = leb(2) + leb(2) + name("first") + leb(4) + name("third")
    custom = name("name") + b"\x00" + leb(4) + name("mod") + b"\x01" + leb(len(names)) + names
    module = (b"\0asm\x01\0\0\0" + bytes([2]) + leb(len(imports)) + imports
              + bytes([0]) + leb(len(custom)) + custom)
    assert wasm_code.function_names(module) == (2, {2: "first", 4: "third"})


def test_the_profile_finds_each_function_through_v8s_jump_table():
    # Three functions at 0x1040, 0x1100 and 0x1080 of a code space mapped at 0x1000, behind a
    # table of 8-byte slots at its start: a `jmp rel32` each, padded.
    base, starts = 0x1000, [0x1040, 0x1100, 0x1080]
    code = bytearray(b"\xcc" * 0x200)
    for k, target in enumerate(starts):
        at = 8 * k
        code[at] = 0xE9
        struct.pack_into("<i", code, at + 1, target - (base + at + 5))
    assert module_profile.jump_table(base, bytes(code), 3) == starts
    assert module_profile.jump_table(base, bytes(code), 4) is None, "a fourth slot is not there"
    shifted = b"\xcc" * 8 + bytes(code)
    assert module_profile.jump_table(base, shifted, 3) is None, "only at the start"
    # Wasm bodies of 16 bytes: the last function (b, at 0x1100) may span 8 * 16 + 256 bytes;
    # past that is V8's, as is what lies before the first function.
    costs = {0x1010: 4, 0x1041: 5, 0x1050: 1, 0x1099: 7, 0x1100: 2, 0x1180: 3, 0x1300: 9}
    names = {10: "a", 11: "b", 12: "c"}
    assert module_profile.attribute(costs, starts, [16, 16, 16], names, imported=10) == {
        "a": 6, "c": 7, "b": 5, module_profile.BEFORE: 4, module_profile.AFTER: 9}
    assert (module_profile.demangle("_ZN8tollgate4gate4Gate6decide17h436af81a77d86aa5E")
            == "tollgate::gate::Gate::decide")
    assert (module_profile.demangle("_ZN72_$LT$tollgate_filter..worker..Worker$u20$as$u20$tollgate.."
                                    "gate..Host$GT$8verified17h2d29e535e79fd894E")
            == "<tollgate_filter::worker::Worker as tollgate::gate::Host>::verified")
    assert module_profile.demangle("dlmalloc") == "dlmalloc"


def test_the_profile_reads_the_event_it_is_asked_for_at_each_address(tmp_path):
    dump = tmp_path / "envoy.callgrind.2"
    # Trailing zero costs are left out of a line; a call's line is followed by its inclusive
    # cost at the call site, which is not the caller's own.
    dump.write_text("events: Ir Dr Dw I1mr D1mr D1mw\nfn=(1) a\n0x1000 10 2 1 1\n0x1004 3\n"
                    "calls=1 0x2000\n0x1008 500 90 80 40\n0x1000 5 0 0 2 1\n")
    assert module_profile.costs_by_address(dump) == {0x1000: 15, 0x1004: 3}
    assert module_profile.costs_by_address(dump, "I1mr") == {0x1000: 3}
    assert module_profile.costs_by_address(dump, "D1mr") == {0x1000: 1}
    with pytest.raises(ValueError, match="no ILmr"):
        module_profile.costs_by_address(dump, "ILmr")
